import { spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream, existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { exportJWK, generateKeyPair } from 'jose';
import { ConfigError, loadYaml } from '../config/load.ts';
import { identityKeyFile, webSessionKey } from '../gateway/node/identity-key.ts';
import { compileEdgeConfig } from './edge-config.ts';

/**
 * `npm run edge` (`mandate demo --edge`): the demo's gateway and Todo MCP server run as Workers in
 * workerd (Miniflare, under the Node 22 that `npm run edge:install` puts in .cache/edge), each in
 * its own `scripts/edge-workerd.mjs` process, on the demo's ports; the rest of the demo stays on
 * Node. Checkout only: the bundles (dist-edge/, `npm run edge:build`) and .cache are not published.
 */

/**
 * The keys of the gateway Worker's `kind: web` routes (the example web app's sign-in), made on the
 * first `npm run edge` and kept in `<data dir>/edge/` (0600, as the Node gateway keeps its own in its
 * data_dir): the cookie sealing key (web-session.key) and the identity assertions' private JWK
 * (identity-key.json). The Worker gets them as the secrets MANDATE_WEB_COOKIE_KEY and
 * MANDATE_WEB_IDENTITY_KEY (through the environment, never on a command line), so sessions and the
 * apps' trust in the gateway's key survive a restart of the demo.
 */
export async function edgeWebKeys(dir: string): Promise<{ MANDATE_WEB_COOKIE_KEY: string; MANDATE_WEB_IDENTITY_KEY: string }> {
  const fail = (error: Error) => {
    throw new ConfigError(`mandate demo --edge: cannot read the web route keys in ${dir}: ${error.message}`);
  };
  const cookieKey = Buffer.from(webSessionKey(dir, fail)).toString('base64url');
  const keyFile = identityKeyFile(dir);
  let jwk = keyFile.load(fail);
  if (!jwk) {
    const { privateKey } = await generateKeyPair('ES256', { extractable: true });
    jwk = { ...(await exportJWK(privateKey)), alg: 'ES256', use: 'sig' };
    keyFile.save(jwk);
  }
  return { MANDATE_WEB_COOKIE_KEY: cookieKey, MANDATE_WEB_IDENTITY_KEY: JSON.stringify(jwk) };
}

/** The checkout's root: the directory above this file that holds scripts/edge-workerd.mjs. */
function checkoutRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    if (existsSync(join(dir, 'scripts', 'edge-workerd.mjs'))) return dir;
    const up = dirname(dir);
    if (up === dir) throw new ConfigError('mandate demo --edge runs in a checkout of Mandate (scripts/edge-workerd.mjs and .cache/edge are not in the package)');
    dir = up;
  }
}

export interface EdgeWorkerProcess {
  url: string;
  log: string;
  close(): Promise<void>;
}

export interface EdgeDemoOptions {
  gatewayFile: string;
  gatewayPort: number;
  todoMcpPort: number;
  dataDir: string;
  /** TODO_MCP_* values but the secret. */
  todoMcp: { issuer: string; resource: string; todoApi: string; clientId: string; allowedOrigins: string[] };
  /** Secrets, passed to the Workers through the environment (never on a command line). */
  secrets: { MANDATE_GATEWAY_CLIENT_SECRET: string; MANDATE_WEB_APP_CLIENT_SECRET: string; TODO_MCP_CLIENT_SECRET: string };
  timeoutMs?: number;
}

export interface EdgeDemo {
  gateway: EdgeWorkerProcess;
  todoMcp: EdgeWorkerProcess;
  close(): Promise<void>;
}

/** What is missing to run `mandate demo --edge`, or undefined. */
export function edgeMissing(): string | undefined {
  const root = checkoutRoot();
  const node = join(root, '.cache', 'edge', 'node_modules', 'node', 'bin', 'node');
  if (!existsSync(node) || !existsSync(join(root, '.cache', 'edge', 'node_modules', 'miniflare', 'package.json'))) {
    return 'Miniflare and workerd are not installed: run `npm run edge:install` first (once; Miniflare, workerd and the Node 22 they need go under .cache/edge)';
  }
  for (const bundle of ['gateway.js', 'todo-mcp.js']) {
    if (!existsSync(join(root, 'dist-edge', bundle))) return `dist-edge/${bundle} is missing: run \`npm run edge:build\` (\`npm run edge\` does)`;
  }
  return undefined;
}

function startWorker(root: string, name: string, args: string[], env: NodeJS.ProcessEnv, log: string, timeoutMs: number): Promise<EdgeWorkerProcess> {
  const node = join(root, '.cache', 'edge', 'node_modules', 'node', 'bin', 'node');
  // stdin a pipe: if this process dies, the pipe closes and edge-workerd stops workerd too.
  const child: ChildProcess = spawn(node, [join(root, 'scripts', 'edge-workerd.mjs'), ...args], { cwd: root, env, stdio: ['pipe', 'pipe', 'pipe'] });
  const file = createWriteStream(log, { flags: 'a' });
  let head = '';
  child.stdout!.pipe(file);
  child.stderr!.pipe(file);
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const close = async () => {
    if (child.exitCode === null && child.signalCode === null) {
      child.stdin!.end();
      const timer = setTimeout(() => child.kill('SIGTERM'), 10_000);
      await exited;
      clearTimeout(timer);
    }
    await new Promise<void>((resolve) => file.end(() => resolve()));
  };
  return new Promise<EdgeWorkerProcess>((resolve, reject) => {
    const fail = (message: string) => {
      clearTimeout(timer);
      void close().then(() => reject(new Error(`${name} in workerd: ${message}; its output is in ${log}:\n${head.slice(-2000)}`)));
    };
    const timer = setTimeout(() => fail(`not listening after ${timeoutMs} ms`), timeoutMs);
    const onData = (chunk: Buffer) => {
      head += chunk.toString();
      const line = head.split('\n').find((l) => l.startsWith('{"url":'));
      if (line && head.slice(head.indexOf(line) + line.length).includes('\n')) {
        clearTimeout(timer);
        child.stdout!.off('data', onData);
        child.stderr!.off('data', onData);
        child.off('exit', onExit);
        resolve({ url: (JSON.parse(line) as { url: string }).url, log, close });
      }
    };
    const onExit = (code: number | null) => fail(`exited (${code}) before listening`);
    child.stdout!.on('data', onData);
    child.stderr!.on('data', onData);
    child.once('exit', onExit);
  });
}

/** Starts the gateway and the Todo MCP server in workerd; both or neither. */
export async function startEdgeDemo(options: EdgeDemoOptions): Promise<EdgeDemo> {
  const root = checkoutRoot();
  const dir = join(options.dataDir, 'edge');
  mkdirSync(dir, { recursive: true });
  // The demo's file compiled as for a deployment (`mandate gateway edge-config`: validated, listen,
  // admin, audit and data_dir left out); its web route's public_url is already the Worker's origin.
  const config = join(dir, 'gateway.json');
  writeFileSync(config, `${compileEdgeConfig(await loadYaml(options.gatewayFile), options.gatewayFile).json}\n`);
  // The key that authenticates the Worker's shared caches (verified tokens in KV, the AS key set in
  // the Cache API; docs/edge.md): a new one per run is enough, as both are caches.
  const cacheKey = Buffer.from(crypto.getRandomValues(new Uint8Array(32))).toString('base64url');
  const env = { ...process.env, ...options.secrets, ...(await edgeWebKeys(dir)), MANDATE_EDGE_CACHE_KEY: cacheKey };
  const timeoutMs = options.timeoutMs ?? 60_000;
  const common = ['--host', '127.0.0.1'];
  const [gw, todo] = await Promise.allSettled([
    startWorker(root, 'the gateway', [...common, '--config', config, '--port', String(options.gatewayPort), '--persist', join(dir, 'gateway-state'), ...['MANDATE_GATEWAY_CLIENT_SECRET', 'MANDATE_WEB_APP_CLIENT_SECRET', 'MANDATE_WEB_COOKIE_KEY', 'MANDATE_WEB_IDENTITY_KEY', 'MANDATE_EDGE_CACHE_KEY'].flatMap((name) => ['--env-binding', name])], env, join(dir, 'gateway.log'), timeoutMs),
    startWorker(
      root,
      'the Todo MCP server',
      [
        ...common,
        '--entry', 'todo-mcp',
        '--port', String(options.todoMcpPort),
        '--persist', join(dir, 'todo-mcp-state'),
        '--binding', `TODO_MCP_ISSUER=${options.todoMcp.issuer}`,
        '--binding', `TODO_MCP_RESOURCE=${options.todoMcp.resource}`,
        '--binding', `TODO_API_URL=${options.todoMcp.todoApi}`,
        '--binding', `TODO_MCP_CLIENT_ID=${options.todoMcp.clientId}`,
        '--binding', `TODO_MCP_ALLOWED_ORIGINS=${options.todoMcp.allowedOrigins.join(',')}`,
        '--env-binding', 'TODO_MCP_CLIENT_SECRET',
      ],
      env,
      join(dir, 'todo-mcp.log'),
      timeoutMs,
    ),
  ]);
  if (gw.status === 'rejected' || todo.status === 'rejected') {
    if (gw.status === 'fulfilled') await gw.value.close();
    if (todo.status === 'fulfilled') await todo.value.close();
    throw (gw.status === 'rejected' ? gw.reason : (todo as PromiseRejectedResult).reason) as Error;
  }
  return {
    gateway: gw.value,
    todoMcp: todo.value,
    close: async () => {
      await Promise.all([gw.value.close(), todo.value.close()]);
    },
  };
}
