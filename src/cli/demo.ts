import { performance } from 'node:perf_hooks';
import { loadAuthServerConfig } from '../config/load.ts';
import { startAuthServer } from '../auth-server/server.ts';
import { untilSignal } from './serve.ts';

const DEMO_CONFIG = new URL('../../examples/demo/auth-server.yaml', import.meta.url);

/** `mandate demo` (= `npm start`): the whole system on its embedded defaults. */
export async function demoCommand(_args: string[]): Promise<number> {
  const started = performance.now();
  const config = await loadAuthServerConfig(DEMO_CONFIG.pathname);
  const auth = await startAuthServer(config);
  const ms = Math.round(performance.now() - started);
  const issuer = auth.ctx.issuer;
  process.stdout.write(`
Mandate demo is running (ready in ${ms} ms; data in ${config.data_dir}/).

  Authorization server   ${issuer}
    metadata             ${issuer}/.well-known/oauth-authorization-server
    demo user            demo / demo
    resources            ${config.resources.map((r) => r.id).join(', ')}
    clients              todo-mcp (secret in ${config.data_dir}/secrets/todo-mcp.secret)
    agents               sample-agent (secret in ${config.data_dir}/secrets/sample-agent.secret)
    admin API            ${issuer}/admin/api/agents (token in ${config.data_dir}/secrets/admin.token)

Try it:
  curl -s ${issuer}/.well-known/oauth-authorization-server
  register a client:   curl -s -X POST ${issuer}/register -H 'content-type: application/json' \\
                         -d '{"client_name":"cli","redirect_uris":["http://127.0.0.1:3000/callback"],"token_endpoint_auth_method":"none"}'
  then open ${issuer}/authorize?... with PKCE (see README, "Walkthrough").

Press Ctrl-C to stop.
`);
  await untilSignal();
  process.stdout.write('stopping…\n');
  await auth.close();
  return 0;
}
