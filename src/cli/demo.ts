import { mkdirSync, writeFileSync } from 'node:fs';
import { isAbsolute, join, relative } from 'node:path';
import { performance } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import { stringify } from 'yaml';
import { ConfigError, loadYaml, parseConfig } from '../config/load.ts';
import { authServerConfigSchema } from '../config/schema.ts';
import { gatewayConfigSchema } from '../config/gateway-schema.ts';
import { startAuthServer } from '../auth-server/server.ts';
import { clientSecretFor, generatedPasswordFor } from '../auth-server/bootstrap.ts';
import { startGateway } from '../gateway/node/server.ts';
import { startBankingServer } from '../../examples/banking/server.ts';
import { startTodoApi } from '../../examples/todo-api/server.ts';
import { startTodoMcpServer } from '../../examples/todo-mcp/server.ts';
import { startWebApp } from '../../examples/web-app/server.ts';
import { untilSignal } from './serve.ts';
import { edgeMissing, startEdgeDemo } from './demo-edge.ts';

const DEMO_AUTH = new URL('../../examples/demo/auth-server.yaml', import.meta.url).pathname;
const DEMO_GATEWAY = new URL('../../examples/demo/gateway.yaml', import.meta.url).pathname;

/** The demo's ports (DESIGN §6: the docs use them); `--port-offset` moves every one by the same amount. */
export const DEMO_PORTS = { issuer: 9000, gateway: 8080, metrics: 9464, banking: 8000, todoApi: 8001, webApp: 8002, todoMcp: 8787 } as const;

/** The default data directory, relative to where the demo runs (the README's commands read `.mandate/secrets/`). */
export const DEMO_DATA_DIR = '.mandate';

/**
 * MCP Inspector's web UI (2.x: `CLIENT_PORT`, default 6274; the 1.x UI used the same port). Inspector
 * 2 sends its MCP and OAuth requests from its own Node back end (`/api/mcp/*`, `/api/fetch`), which
 * sends no `Origin`; its sign-in comes back to http://localhost:6274/oauth/callback. A browser page
 * that calls the servers directly (Inspector 1.x "direct" connections) comes from this origin.
 */
export const INSPECTOR_ORIGINS = ['http://localhost:6274', 'http://127.0.0.1:6274'] as const;

/** The demo's service URLs for a port offset. */
export function demoUrls(offset = 0) {
  const at = (port: number, path = '') => `http://localhost:${port + offset}${path}`;
  return {
    issuer: at(DEMO_PORTS.issuer),
    gateway: at(DEMO_PORTS.gateway, '/mcp'),
    metrics: at(DEMO_PORTS.metrics, '/metrics'),
    banking: at(DEMO_PORTS.banking, '/'),
    todoMcp: at(DEMO_PORTS.todoMcp, '/mcp'),
    todoApi: at(DEMO_PORTS.todoApi),
    /** The example web app, signed in by the gateway (issue 15), and the app itself (its upstream). */
    webApp: at(DEMO_PORTS.gateway, '/app/'),
    webAppUpstream: at(DEMO_PORTS.webApp, '/'),
  };
}

/** The demo's services on their default ports (what the README and DESIGN.md use). */
export const DEMO = { ...demoUrls(0), inspectorOrigins: INSPECTOR_ORIGINS } as const;

export interface DemoOptions {
  /** Added to every demo port (`--port-offset`, `MANDATE_DEMO_PORT_OFFSET`); 0 = the documented ports. */
  portOffset: number;
  /** Where the demo keeps its SQLite file, keys, secrets and audit log (`--data-dir`, `MANDATE_DEMO_DATA_DIR`). */
  dataDir: string;
  /** The gateway and the Todo MCP server as Workers in workerd (`--edge`, `npm run edge`). */
  edge?: boolean;
}

const HIGHEST_PORT = Math.max(...Object.values(DEMO_PORTS));
const LOWEST_PORT = Math.min(...Object.values(DEMO_PORTS));

/** The Fetch standard's "bad ports": no browser, and no fetch in Node, connects to them. */
const FETCH_BAD_PORTS = new Set([
  1, 7, 9, 11, 13, 15, 17, 19, 20, 21, 22, 23, 25, 37, 42, 43, 53, 69, 77, 79, 87, 95, 101, 102, 103, 104, 109, 110, 111, 113, 115, 117, 119, 123, 135, 137, 139, 143, 161, 179, 389, 427, 465,
  512, 513, 514, 515, 526, 530, 531, 532, 540, 548, 554, 556, 563, 587, 601, 636, 989, 990, 993, 995, 1719, 1720, 1723, 2049, 3659, 4045, 4190, 5060, 5061, 6000, 6566, 6665, 6666, 6667,
  6668, 6669, 6679, 6697, 10080,
]);

/** Reads `--port-offset`, `--data-dir` (or their environment variables); a bad value is a ConfigError (exit 2). */
export function demoOptions(args: string[], env: NodeJS.ProcessEnv = process.env): DemoOptions {
  const { values } = parseArgs({ args, options: { 'port-offset': { type: 'string' }, 'data-dir': { type: 'string' }, edge: { type: 'boolean' } } });
  const rawOffset = values['port-offset'] ?? env.MANDATE_DEMO_PORT_OFFSET ?? '0';
  const portOffset = Number(rawOffset);
  if (!/^-?\d+$/.test(rawOffset.trim()) || LOWEST_PORT + portOffset < 1 || HIGHEST_PORT + portOffset > 65535) {
    throw new ConfigError(`mandate demo: --port-offset must be a whole number from ${1 - LOWEST_PORT} to ${65535 - HIGHEST_PORT}, not "${rawOffset}"`);
  }
  const blocked = Object.values(DEMO_PORTS).map((port) => port + portOffset).filter((port) => FETCH_BAD_PORTS.has(port));
  if (blocked.length > 0) {
    throw new ConfigError(`mandate demo: --port-offset ${portOffset} puts a service on port ${blocked.join(', ')}, which fetch (browsers, Node, the agent CLI) refuses to connect to; choose another offset`);
  }
  const dataDir = values['data-dir'] ?? env.MANDATE_DEMO_DATA_DIR ?? DEMO_DATA_DIR;
  if (!dataDir.trim()) throw new ConfigError('mandate demo: --data-dir must not be empty');
  return { portOffset, dataDir, ...(values.edge ? { edge: true } : {}) };
}

/** Replaces each demo URL's port (`http://localhost:<demo port>`) inside every string of a configuration. */
function movePorts<T>(value: T, offset: number): T {
  if (offset === 0) return value;
  const ports = new Set<number>(Object.values(DEMO_PORTS));
  const move = (text: string) => text.replace(/(http:\/\/localhost:)(\d+)/g, (whole, prefix: string, port: string) => (ports.has(Number(port)) ? `${prefix}${Number(port) + offset}` : whole));
  const walk = (node: unknown): unknown => {
    if (typeof node === 'string') return move(node);
    if (Array.isArray(node)) return node.map(walk);
    if (node && typeof node === 'object') return Object.fromEntries(Object.entries(node).map(([key, child]) => [key, walk(child)]));
    return node;
  };
  return walk(value) as T;
}

/** Puts a path of the demo files (`.mandate/…`) under the chosen data dir. */
function inDataDir(path: string, dataDir: string): string {
  const rel = relative(DEMO_DATA_DIR, path);
  return rel.startsWith('..') || isAbsolute(rel) ? path : join(dataDir, rel);
}

/**
 * The demo's two configuration files with the ports and data dir moved. With the defaults they are
 * the files as written; otherwise the gateway's is also written to `<data dir>/demo-gateway.yaml`,
 * the file its route reload watches (so a reload keeps the moved ports).
 */
export async function demoConfigs(options: DemoOptions) {
  const auth = movePorts((await loadYaml(DEMO_AUTH)) as Record<string, unknown>, options.portOffset);
  auth.data_dir = options.dataDir;
  auth.listen = { ...(auth.listen as object), port: DEMO_PORTS.issuer + options.portOffset };
  const gateway = movePorts((await loadYaml(DEMO_GATEWAY)) as Record<string, Record<string, unknown>>, options.portOffset);
  gateway.listen = { ...gateway.listen, port: DEMO_PORTS.gateway + options.portOffset };
  gateway.admin = { ...gateway.admin, listen: { ...(gateway.admin!.listen as object), port: DEMO_PORTS.metrics + options.portOffset } };
  gateway.audit = { ...gateway.audit, file: inDataDir(String(gateway.audit!.file), options.dataDir) };
  (gateway as Record<string, unknown>).data_dir = inDataDir(String(gateway.data_dir), options.dataDir);
  let gatewayFile = DEMO_GATEWAY;
  if (options.portOffset !== 0 || options.dataDir !== DEMO_DATA_DIR) {
    mkdirSync(options.dataDir, { recursive: true });
    gatewayFile = join(options.dataDir, 'demo-gateway.yaml');
    writeFileSync(gatewayFile, `# Written by \`mandate demo\` from examples/demo/gateway.yaml with its ports and data dir moved.\n${stringify(gateway)}`);
  }
  return {
    auth: parseConfig(authServerConfigSchema, auth, DEMO_AUTH),
    gateway: parseConfig(gatewayConfigSchema, gateway, DEMO_GATEWAY),
    gatewayFile,
  };
}

const USAGE = `Usage: mandate demo [--port-offset N] [--data-dir DIR] [--edge]

  --port-offset N   add N to every demo port (AS 9000, gateway 8080, metrics 9464, banking 8000,
                    Todo API 8001, web app 8002, Todo MCP 8787); env MANDATE_DEMO_PORT_OFFSET. Default 0.
  --data-dir DIR    SQLite file, keys, secrets and audit log; env MANDATE_DEMO_DATA_DIR. Default .mandate
  --edge            the gateway and the Todo MCP server as Cloudflare Workers in workerd (what
                    \`npm run edge\` runs, after \`npm run edge:build\`; needs \`npm run edge:install\`)
`;

/**
 * `mandate demo` (= `npm start`): the whole system on its embedded defaults — the authorization
 * server, the gateway in front of the banking MCP server, the Todo API and the Todo MCP server —
 * in one process; Ctrl-C stops everything.
 */
/** The demo gateway's environment: the secrets of its clients at the AS (generated on first start). */
export function demoGatewayEnv(config: Awaited<ReturnType<typeof demoConfigs>>['auth'], env: NodeJS.ProcessEnv = process.env): NodeJS.ProcessEnv {
  const secret = (id: string) => clientSecretFor(config, config.clients.find((client) => client.client_id === id)!);
  return { ...env, MANDATE_GATEWAY_CLIENT_SECRET: secret('gateway'), MANDATE_WEB_APP_CLIENT_SECRET: secret('web-app') };
}

export async function demoCommand(args: string[]): Promise<number> {
  if (args.includes('--help') || args.includes('-h')) {
    process.stdout.write(USAGE);
    return 0;
  }
  const options = demoOptions(args);
  // Before anything starts: say what to install or build, in one line.
  const missing = options.edge ? edgeMissing() : undefined;
  if (missing) throw new ConfigError(`mandate demo --edge: ${missing}`);
  const started = performance.now();
  const urls = demoUrls(options.portOffset);
  const configs = await demoConfigs(options);
  const config = configs.auth;
  const auth = await startAuthServer(config);
  const stops: (() => Promise<void>)[] = [() => auth.close()];
  let edge: Awaited<ReturnType<typeof startEdgeDemo>> | undefined;
  const stopAll = async () => {
    for (const stop of stops.reverse()) await stop().catch(() => undefined);
  };
  try {
    const todoMcpClient = config.clients.find((client) => client.client_id === 'todo-mcp')!;
    const gatewayEnv = demoGatewayEnv(config);
    if (options.edge) {
      const [banking, todoApi, webApp, workers] = await Promise.all([
        startBankingServer({ port: DEMO_PORTS.banking + options.portOffset }),
        startTodoApi({ issuer: urls.issuer, resource: urls.todoApi, port: DEMO_PORTS.todoApi + options.portOffset }),
        startWebApp({ gateway: new URL(urls.gateway).origin, audience: urls.webAppUpstream, port: DEMO_PORTS.webApp + options.portOffset }),
        startEdgeDemo({
          gatewayFile: configs.gatewayFile,
          gatewayPort: DEMO_PORTS.gateway + options.portOffset,
          todoMcpPort: DEMO_PORTS.todoMcp + options.portOffset,
          dataDir: options.dataDir,
          todoMcp: { issuer: urls.issuer, resource: urls.todoMcp, todoApi: urls.todoApi, clientId: 'todo-mcp', allowedOrigins: [...INSPECTOR_ORIGINS] },
          secrets: {
            MANDATE_GATEWAY_CLIENT_SECRET: gatewayEnv.MANDATE_GATEWAY_CLIENT_SECRET!,
            MANDATE_WEB_APP_CLIENT_SECRET: gatewayEnv.MANDATE_WEB_APP_CLIENT_SECRET!,
            TODO_MCP_CLIENT_SECRET: clientSecretFor(config, todoMcpClient),
          },
        }),
      ]);
      stops.push(() => banking.close(), () => todoApi.close(), () => webApp.close(), () => workers.close());
      edge = workers;
    } else {
      const [banking, todoApi, todoMcp, webApp, gateway] = await Promise.all([
        startBankingServer({ port: DEMO_PORTS.banking + options.portOffset }),
        startTodoApi({ issuer: urls.issuer, resource: urls.todoApi, port: DEMO_PORTS.todoApi + options.portOffset }),
        startTodoMcpServer({
          issuer: urls.issuer,
          resource: urls.todoMcp,
          todoApi: urls.todoApi,
          clientId: 'todo-mcp',
          clientSecret: clientSecretFor(config, todoMcpClient),
          allowedOrigins: [...INSPECTOR_ORIGINS],
          port: DEMO_PORTS.todoMcp + options.portOffset,
        }),
        // The plain web app behind the gateway's web route /app/: it only verifies the gateway's identity assertions.
        startWebApp({ gateway: new URL(urls.gateway).origin, audience: urls.webAppUpstream, port: DEMO_PORTS.webApp + options.portOffset }),
        startGateway(configs.gateway, { configFile: configs.gatewayFile, log: auth.ctx.log, env: gatewayEnv }),
      ]);
      stops.push(() => banking.close(), () => todoApi.close(), () => todoMcp.close(), () => webApp.close(), () => gateway.close());
    }
  } catch (error) {
    await stopAll();
    throw error;
  }
  // "ready in" counts from the start of the process (performance.timeOrigin), module loading
  // included: that is what a person waits for. The services alone took `services` ms.
  const now = performance.now();
  const ms = Math.round(now);
  const services = Math.round(now - started);
  const issuer = auth.ctx.issuer;
  const data = options.dataDir;
  const admin = config.users.find((u) => u.username === 'admin' && u.generate_password);
  const adminLine = admin
    ? `  Admin                  ${admin.username} / ${generatedPasswordFor(config, admin.username)}   console ${issuer}/console\n` +
      `                         admin API ${issuer}/admin/api/v1, admin MCP server ${issuer}/admin/mcp (docs/admin.md)\n`
    : '';
  const inWorkerd = edge ? 'a Worker in workerd; ' : '';
  const webLine = `  Web app (SSO)          ${urls.webApp}   ${edge ? 'the gateway Worker' : 'the gateway'} signs you in; the app at ${urls.webAppUpstream} has no sign-in code\n`;
  const auditLine = edge
    ? `    audit log            ${edge.gateway.log} (the Worker's output: one JSON line per request)\n` +
      `    Todo MCP log         ${edge.todoMcp.log}; Durable Objects' state and the web route keys kept in ${join(data, 'edge')}/\n`
    : `    audit log            ${configs.gateway.audit.file}      metrics: ${urls.metrics}\n`;
  process.stdout.write(`
Mandate demo is running${edge ? ' with the gateway and the Todo MCP server at the edge (Cloudflare Workers in workerd)' : ''} (ready in ${ms} ms from process start; services started in ${services} ms; data in ${data}/).

  Authorization server   ${issuer}            (demo user: demo / demo)
${adminLine}  Todo MCP server        ${urls.todoMcp}   ${inWorkerd}protects itself; exchanges your token for the Todo API
  Todo API               ${urls.todoApi}
  Gateway (banking)      ${urls.gateway}   ${inWorkerd}in front of the banking MCP server at ${urls.banking}
${webLine}${auditLine}
  Secrets (generated on first start): ${data}/secrets/todo-mcp.secret, sample-agent.secret, gateway.secret, admin.token, admin.password

Try it:
  MCP Inspector:  npm run inspector   (Inspector 2, with the Node 22 it needs; installed on first use)
                  then, in the page it opens: Add Servers →
                  + Add manually → Transport streamable-http, URL ${urls.todoMcp} → Add, and
                  switch the server on. It finds the authorization server, registers itself, and
                  sends you to sign in (demo / demo). Call who_am_I, peek_api_token_claims,
                  add_todo, list_todos.
  The gateway:    ${urls.gateway} needs a token for the gateway that an agent obtained for you;
                  the README's "Walkthrough: delegation" (flow B) gets one with curl.
  Web SSO:        open ${urls.webApp} in a browser and sign in (demo / demo); the Admin area is for
                  the admin user only (a gateway rule); Sign out ends it (docs/browser-sessions.md).
  Approvals:      a transfer over 100 EUR waits for your approval of that exact transfer: the
                  agent shows a link, or see ${issuer}/approvals (docs/high-risk-actions.md).

Press Ctrl-C to stop.
`);
  await untilSignal();
  process.stdout.write('stopping…\n');
  await stopAll();
  return 0;
}
