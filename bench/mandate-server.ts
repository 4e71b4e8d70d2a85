/**
 * Mandate's authorization server alone in a process, for `bench/run.ts`: one resource
 * (`https://api.bench.test`, scope `api:read`) and one confidential client `bench` allowed the
 * client_credentials grant, whose secret is the BENCH_SECRET environment variable. SQLite storage
 * in a temporary data dir that is removed on exit. Prints one ready line on stdout.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import pino from 'pino';
import { ACCESS_TOKEN_TTL, BENCH_UPSTREAM_RESOURCE, BENCH_CLIENT_ID, BENCH_RESOURCE, BENCH_SCOPE, announceReady, exitOnSignal, freePort } from './lib/child.ts';

// BENCH_MANDATE_ROOT (set by `run.ts --compare=<dir>`) loads Mandate from another checkout, to
// measure a change against this one in the same run.
const mandateRoot = resolve(process.env.BENCH_MANDATE_ROOT ?? join(import.meta.dirname, '..'));
const load = (path: string) => import(pathToFileURL(join(mandateRoot, path)).href);
const { authServerConfigSchema }: typeof import('../src/config/schema.ts') = await load('src/config/schema.ts');
const { startAuthServer }: typeof import('../src/auth-server/server.ts') = await load('src/auth-server/server.ts');

if (!process.env.BENCH_SECRET) throw new Error('BENCH_SECRET is not set');
process.env.LOG_LEVEL = 'silent';

const port = Number(process.env.BENCH_PORT) || (await freePort());
const dataDir = mkdtempSync(join(tmpdir(), 'mandate-bench-'));
const issuer = `http://127.0.0.1:${port}`;

const config = authServerConfigSchema.parse({
  issuer,
  listen: { host: '127.0.0.1', port },
  data_dir: dataDir,
  storage: { driver: 'sqlite' },
  tokens: { access_token_ttl: ACCESS_TOKEN_TTL },
  resources: [
    { id: BENCH_RESOURCE, name: 'Bench API', scopes: [{ name: BENCH_SCOPE }], exchange: { allowed_actors: [BENCH_CLIENT_ID] } },
    // The exchange scenario's subject tokens are for this resource and name the bench client in may_act.
    { id: BENCH_UPSTREAM_RESOURCE, name: 'Bench MCP server', scopes: [{ name: BENCH_SCOPE }], may_act: { client_id: BENCH_CLIENT_ID } },
  ],
  clients: [
    {
      client_id: BENCH_CLIENT_ID,
      token_endpoint_auth_method: 'client_secret_basic',
      grant_types: ['client_credentials', 'urn:ietf:params:oauth:grant-type:token-exchange'],
      client_secret_env: 'BENCH_SECRET',
    },
  ],
});

let handle: Awaited<ReturnType<typeof startAuthServer>> | undefined;
exitOnSignal(async () => {
  try {
    await handle?.close();
  } finally {
    rmSync(dataDir, { recursive: true, force: true });
  }
});

try {
  handle = await startAuthServer(config, { log: pino({ level: 'silent' }) });
} catch (error) {
  rmSync(dataDir, { recursive: true, force: true });
  throw error;
}
// BENCH_SCENARIO=exchange: the load is RFC 8693 token exchange of a user token (issued here, as
// the authorization code grant would: sub = a user, aud = the MCP server, may_act = the client)
// for a token for the API, with the client as actor.
let body: string | undefined;
if (process.env.BENCH_SCENARIO === 'exchange') {
  const { issueAccessToken }: typeof import('../src/auth-server/tokens.ts') = await load('src/auth-server/tokens.ts');
  const client = (await handle.ctx.findClient(BENCH_CLIENT_ID))!;
  // A real user grant, so each exchanged token is recorded under it (revocable), as in production.
  const now = Math.floor(Date.now() / 1000);
  const grant = { id: 'bench-grant', sub: 'bench-user', clientId: BENCH_CLIENT_ID, resource: BENCH_UPSTREAM_RESOURCE, scope: BENCH_SCOPE, authTime: now, createdAt: now, expiresAt: now + 86_400 };
  await handle.store.grants.createGrant(grant);
  const { token } = await issueAccessToken(handle.ctx, {
    sub: 'bench-user',
    client,
    resource: handle.ctx.resource(BENCH_UPSTREAM_RESOURCE)!,
    scopes: [BENCH_SCOPE],
    grantType: 'authorization_code',
    grant,
  });
  body = new URLSearchParams({
    grant_type: 'urn:ietf:params:oauth:grant-type:token-exchange',
    subject_token: token,
    subject_token_type: 'urn:ietf:params:oauth:token-type:access_token',
    resource: BENCH_RESOURCE,
    scope: BENCH_SCOPE,
  }).toString();
}
announceReady({ name: `mandate (${mandateRoot})`, url: handle.url, tokenEndpoint: `${handle.url}/token`, body });
