/**
 * Mandate's MCP security gateway (`startGateway`) in a process, for the gateway benchmark, with one
 * route to BENCH_UPSTREAM_URL that does what a production route does on every tool call:
 *
 * - JWT check (RFC 9068, ES256) against the keys of a tiny issuer in this same process (the tests'
 *   fake issuer: RFC 8414 metadata and a JWKS, fetched once at start and every 300 s);
 * - one tool rule: `echo` needs scope `bench:call` and passes the CEL rule `size(act) <= 1`;
 * - one rate limit keyed by subject (in memory), too high to ever trigger;
 * - the audit log on: a JSONL file in a temporary dir (removed on exit), rotated at 50 MB;
 * - `unlisted_tools: allow`.
 *
 * The ready line carries the bearer token to load it with: signed here, valid for an hour, for the
 * route's resource, with a one-actor `act` chain. Every request reuses it, so after the first one
 * the verified-token cache answers (signature and claims checked once per token).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import pino from 'pino';
import type { GatewayHandle } from '../src/gateway/node/server.ts';
import { startFakeIssuer } from '../test/helpers/gateway.ts';
import { BENCH_CLIENT_ID, GATEWAY_SCOPE, GATEWAY_TOOL, announceReady, exitOnSignal, freePort } from './lib/child.ts';

// BENCH_MANDATE_ROOT (set by `run.ts --gateway-compare=<dir>`) loads the gateway from another
// checkout, to measure a change against this one in the same run.
// BENCH_GATEWAY_BUILD=dist loads the compiled gateway (`npm run build`'s dist/, what ships) instead of
// the TypeScript through tsx, whose esbuild transform wraps every named function a request creates
// in a `__name()` call (keepNames) that the shipped code does not make.
const mandateRoot = resolve(process.env.BENCH_MANDATE_ROOT ?? join(import.meta.dirname, '..'));
const built = process.env.BENCH_GATEWAY_BUILD === 'dist';
const load = (path: string) => import(pathToFileURL(join(mandateRoot, built ? `dist/${path.replace(/\.ts$/, '.js')}` : path)).href);
const { gatewayConfigSchema }: typeof import('../src/config/gateway-schema.ts') = await load('src/config/gateway-schema.ts');
const { startGateway }: typeof import('../src/gateway/node/server.ts') = await load('src/gateway/node/server.ts');

const upstream = process.env.BENCH_UPSTREAM_URL;
if (!upstream) throw new Error('BENCH_UPSTREAM_URL is not set');
process.env.LOG_LEVEL = 'silent';

const port = Number(process.env.BENCH_PORT) || (await freePort());
const url = `http://127.0.0.1:${port}`;
const resource = `${url}/mcp`;
const dir = mkdtempSync(join(tmpdir(), 'mandate-bench-gateway-'));
const issuer = await startFakeIssuer();

const config = gatewayConfigSchema.parse({
  listen: { host: '127.0.0.1', port },
  admin: { listen: { host: '127.0.0.1', port: 0 } },
  audit: { file: join(dir, 'audit.jsonl'), keep: 1 },
  routes: [
    {
      path: '/mcp',
      upstream: `${upstream}/mcp`,
      resource,
      authorization_servers: [issuer.issuer],
      tools: { [GATEWAY_TOOL]: { scopes: [GATEWAY_SCOPE], allow: 'size(act) <= 1', reason: 'no chains of delegation' } },
      unlisted_tools: 'allow',
      rate_limits: [{ name: 'calls-per-subject', key: ['subject'], limit: 100_000_000, window_seconds: 60 }],
    },
  ],
});

let handle: GatewayHandle | undefined;
exitOnSignal(async () => {
  try {
    if (handle) {
      await handle.close();
      const [written, dropped] = await Promise.all([handle.metrics.auditWritten.get(), handle.metrics.auditDropped.get()]);
      console.log(`audit: ${written.values[0]?.value ?? 0} events written, ${dropped.values[0]?.value ?? 0} dropped`);
    }
    await issuer.close();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

try {
  // No REDIS_URL from the environment: the limit stays in this process, as with one gateway.
  handle = await startGateway(config, { log: pino({ level: 'silent' }), env: {} });
} catch (error) {
  rmSync(dir, { recursive: true, force: true });
  throw error;
}
const token = await issuer.sign({
  sub: 'bench-user',
  aud: resource,
  client_id: BENCH_CLIENT_ID,
  scope: GATEWAY_SCOPE,
  act: { sub: 'bench-agent', client_id: BENCH_CLIENT_ID },
  exp: Math.floor(Date.now() / 1000) + 3600,
});
announceReady({ name: 'mandate gateway', url, tokenEndpoint: resource, headers: { authorization: `Bearer ${token}` } });
