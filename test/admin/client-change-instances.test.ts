import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { after, before, describe, it } from 'node:test';
import pg from 'pg';
import pino from 'pino';
import { authServerConfigSchema } from '../../src/config/schema.ts';
import { startAuthServer, type AuthServerHandle } from '../../src/auth-server/server.ts';
import { adminAccess } from '../helpers/admin.ts';
import { DEMO_PASSWORD_HASH, basic, freePort, postForm } from '../helpers/auth-server.ts';
import { needsPostgres, needsRedis, postgresUrl, redisUrl } from '../helpers/services.ts';

const RESOURCE = 'https://api.instances.test';
/** Far longer than the test: only the published change can drop instance B's cached client. */
const CLIENT_CACHE_SECONDS = 600;

/** Polls `check` every 10 ms until it holds; fails past `boundMs`. */
async function until(what: string, check: () => Promise<boolean>, boundMs: number): Promise<void> {
  const since = performance.now();
  while (performance.now() - since <= boundMs) {
    if (await check()) return;
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  assert.fail(`${what}: still not the case after ${boundMs} ms`);
}

/**
 * An admin's change to a client (here `dpop_bound_access_tokens`) made on instance A applies on
 * instance B at once: B holds the client in its cache for 10 minutes, and only the change published
 * on the revocation channel (Redis) makes it read the client again.
 */
describe('admin: a client change reaches every instance (Redis pub/sub)', { ...needsPostgres(), ...needsRedis() }, () => {
  const database = `mandate_client_change_${process.pid}_${Date.now()}`;
  const channel = `mandate-test:${crypto.randomUUID()}:revocations`;
  const dataDir = mkdtempSync(join(tmpdir(), 'mandate-client-change-'));
  let pgAdmin: pg.Client;
  let a: AuthServerHandle;
  let b: AuthServerHandle;
  let issuer: string;
  let urlB: string;

  before(async () => {
    pgAdmin = new pg.Client({ connectionString: postgresUrl });
    await pgAdmin.connect();
    await pgAdmin.query(`CREATE DATABASE "${database}"`);
    const databaseUrl = Object.assign(new URL(postgresUrl!), { pathname: `/${database}` }).toString();
    const env = { ...process.env, DATABASE_URL: databaseUrl, REDIS_URL: redisUrl };
    const [portA, portB] = [await freePort(), await freePort()];
    issuer = `http://127.0.0.1:${portA}`;
    urlB = `http://127.0.0.1:${portB}`;
    const config = (port: number) =>
      authServerConfigSchema.parse({
        issuer,
        listen: { host: '127.0.0.1', port },
        data_dir: dataDir,
        storage: { driver: 'postgres', revocation_channel: channel, client_cache_seconds: CLIENT_CACHE_SECONDS },
        users: [{ username: 'demo', password_hash: DEMO_PASSWORD_HASH }],
        dpop: { enabled: true },
        resources: [{ id: RESOURCE, name: 'API', scopes: [{ name: 'api:read' }] }],
      });
    const log = pino({ level: process.env.TEST_LOG_LEVEL ?? 'silent' });
    a = await startAuthServer(config(portA), { log, env });
    b = await startAuthServer(config(portB), { log, env });
  });
  after(async () => {
    await a?.close();
    await b?.close();
    await pgAdmin?.query(`DROP DATABASE IF EXISTS "${database}"`);
    await pgAdmin?.end();
    rmSync(dataDir, { recursive: true, force: true });
  });

  it('dpop_bound_access_tokens set on A: B refuses the next token request without a proof (400 invalid_request, audited)', async () => {
    const admin = await adminAccess({ issuer, dataDir });
    const created = await admin.api('POST', '/clients', { client_id: 'cached-svc', grant_types: ['client_credentials'] });
    assert.equal(created.status, 201, created.text);
    const secret = created.json.client_secret as string;
    const tokenAtB = () => postForm(`${urlB}/token`, { grant_type: 'client_credentials', resource: RESOURCE }, { authorization: basic('cached-svc', secret) });
    // B reads the client now and keeps it for CLIENT_CACHE_SECONDS.
    assert.equal((await tokenAtB()).status, 200);

    const changed = await admin.api('PATCH', '/clients/cached-svc', { dpop_bound_access_tokens: true });
    assert.equal(changed.status, 200, changed.text);
    await until('instance B refuses a token request without a DPoP proof', async () => (await tokenAtB()).status === 400, 2_000);
    const refused = await tokenAtB();
    assert.deepEqual([refused.status, refused.json.error], [400, 'invalid_request']);
    await b.ctx.audit.flush();
    const event = (await b.store.audit.list({ type: 'token.refused', clientId: 'cached-svc' })).at(0);
    assert.equal(event?.reason, 'no DPoP proof from a dpop_bound_access_tokens client');
  });
});
