import { performance } from 'node:perf_hooks';
import { loadAuthServerConfig } from '../config/load.ts';
import { startAuthServer } from '../auth-server/server.ts';
import { clientSecretFor } from '../auth-server/bootstrap.ts';
import { loadGatewayConfig, startGateway } from '../gateway/node/server.ts';
import { startBankingServer } from '../../examples/banking/server.ts';
import { startTodoApi } from '../../examples/todo-api/server.ts';
import { startTodoMcpServer } from '../../examples/todo-mcp/server.ts';
import { untilSignal } from './serve.ts';

const DEMO_AUTH = new URL('../../examples/demo/auth-server.yaml', import.meta.url).pathname;
const DEMO_GATEWAY = new URL('../../examples/demo/gateway.yaml', import.meta.url).pathname;

/** The demo's services and their ports (DESIGN §6: tests and docs rely on them). */
export const DEMO = {
  issuer: 'http://localhost:9000',
  gateway: 'http://localhost:8080/mcp',
  banking: 'http://localhost:8000/',
  todoMcp: 'http://localhost:8787/mcp',
  todoApi: 'http://localhost:8001',
  inspectorOrigins: ['http://localhost:6277', 'http://localhost:6274'],
} as const;

/**
 * `mandate demo` (= `npm start`): the whole system on its embedded defaults — the authorization
 * server, the gateway in front of the banking MCP server, the Todo API and the Todo MCP server —
 * in one process; Ctrl-C stops everything.
 */
export async function demoCommand(_args: string[]): Promise<number> {
  const started = performance.now();
  const config = await loadAuthServerConfig(DEMO_AUTH);
  const auth = await startAuthServer(config);
  const stops: (() => Promise<void>)[] = [() => auth.close()];
  const stopAll = async () => {
    for (const stop of stops.reverse()) await stop().catch(() => undefined);
  };
  try {
    const todoMcpClient = config.clients.find((client) => client.client_id === 'todo-mcp')!;
    const gatewayClient = config.clients.find((client) => client.client_id === 'gateway')!;
    const gatewayEnv = { ...process.env, MANDATE_GATEWAY_CLIENT_SECRET: clientSecretFor(config, gatewayClient) };
    const [banking, todoApi, todoMcp, gateway] = await Promise.all([
      startBankingServer({ port: 8000 }),
      startTodoApi({ issuer: DEMO.issuer, resource: DEMO.todoApi, port: 8001 }),
      startTodoMcpServer({
        issuer: DEMO.issuer,
        resource: DEMO.todoMcp,
        todoApi: DEMO.todoApi,
        clientId: 'todo-mcp',
        clientSecret: clientSecretFor(config, todoMcpClient),
        allowedOrigins: [...DEMO.inspectorOrigins],
        port: 8787,
      }),
      loadGatewayConfig(DEMO_GATEWAY).then((gatewayConfig) => startGateway(gatewayConfig, { configFile: DEMO_GATEWAY, log: auth.ctx.log, env: gatewayEnv })),
    ]);
    stops.push(() => banking.close(), () => todoApi.close(), () => todoMcp.close(), () => gateway.close());
  } catch (error) {
    await stopAll();
    throw error;
  }
  const ms = Math.round(performance.now() - started);
  const issuer = auth.ctx.issuer;
  const data = config.data_dir;
  process.stdout.write(`
Mandate demo is running (ready in ${ms} ms; data in ${data}/).

  Authorization server   ${issuer}            (demo user: demo / demo)
  Todo MCP server        ${DEMO.todoMcp}   protects itself; exchanges your token for the Todo API
  Todo API               ${DEMO.todoApi}
  Gateway (banking)      ${DEMO.gateway}   in front of the banking MCP server at ${DEMO.banking}
    audit log            ${data}/gateway-audit.jsonl      metrics: http://localhost:9464/metrics

  Secrets (generated on first start): ${data}/secrets/todo-mcp.secret, sample-agent.secret, gateway.secret, admin.token

Try it:
  MCP Inspector:  npx @modelcontextprotocol/inspector   then connect (Streamable HTTP) to
                  ${DEMO.todoMcp}  — it finds the authorization server, registers itself,
                  and sends you to sign in (demo / demo). Call who_am_I, peek_api_token_claims,
                  add_todo, list_todos.
  The gateway:    ${DEMO.gateway} needs a token for the gateway that an agent obtained for you;
                  the README's "Walkthrough: delegation" (flow B) gets one with curl.

Press Ctrl-C to stop.
`);
  await untilSignal();
  process.stdout.write('stopping…\n');
  await stopAll();
  return 0;
}
