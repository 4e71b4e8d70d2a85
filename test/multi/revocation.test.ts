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
import { DEMO_PASSWORD_HASH, basic, freePort, pkcePair, postForm } from '../helpers/auth-server.ts';
import { FormBrowser } from '../helpers/browser-driver.ts';
import { listedTools, mcpPost, startScriptedUpstream, startTestGateway, toolCall, type TestGateway } from '../helpers/gateway.ts';
import { needsPostgres, needsRedis, postgresUrl, redisUrl } from '../helpers/services.ts';

/**
 * Two authorization server instances and two gateways sharing one PostgreSQL database (of this
 * test's own) and, in the first run, Redis: something revoked or disabled on instance A must be
 * refused by the gateway that reads instance B, within the revocation window — ≤ 1 s with Redis
 * (pub/sub), ≤ the poll interval without. Each window is measured and printed.
 */
const TOKEN_EXCHANGE = 'urn:ietf:params:oauth:grant-type:token-exchange';
const ACCESS_TOKEN_TYPE = 'urn:ietf:params:oauth:token-type:access_token';
const R_AGENT = 'https://agent.multi.test';
const R_GW = 'https://gateway.multi.test/mcp';
const REDIRECT = 'http://localhost:3000/callback';
const SECRETS = { MULTI_GW_SECRET: 'multi-gateway-secret-0123456789abcdef', MULTI_AGENT_SECRET: 'multi-agent-secret-0123456789abcdef0' };
const POLL_SECONDS = 2;
/** Without Redis a list read (one HTTP round trip) may be under way when the poll interval ends. */
const POLL_ROUND_TRIP_MS = 300;

/** Polls `check` every 10 ms until it holds; returns how long that took. Fails past `boundMs`. */
async function until(what: string, check: () => Promise<boolean>, boundMs: number, since = performance.now()): Promise<number> {
  while (performance.now() - since <= boundMs + 2_000) {
    if (await check()) return Math.round(performance.now() - since);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  assert.fail(`${what}: still not the case after ${boundMs + 2_000} ms`);
}

for (const mode of ['redis', 'polling'] as const) {
  describe(`revocation across two AS instances and two gateways (${mode === 'redis' ? 'Redis pub/sub' : 'polling only'})`, { ...needsPostgres(), ...(mode === 'redis' ? needsRedis() : {}) }, () => {
    const windowMs = mode === 'redis' ? 1_000 : POLL_SECONDS * 1000 + POLL_ROUND_TRIP_MS;
    const database = `mandate_revoke_${process.pid}_${mode}_${Date.now()}`;
    const channel = `mandate-test:${crypto.randomUUID()}:revocations`;
    const dataDir = mkdtempSync(join(tmpdir(), 'mandate-multi-'));
    let admin: pg.Client;
    let a: AuthServerHandle;
    let b: AuthServerHandle;
    let issuer: string;
    let urlB: string;
    let gw1: TestGateway;
    let gw2: TestGateway;
    let upstream: Awaited<ReturnType<typeof startScriptedUpstream>>;
    const agentAuth = { authorization: basic('multi-agent', SECRETS.MULTI_AGENT_SECRET) };
    const gwAuth = { authorization: basic('multi-gateway', SECRETS.MULTI_GW_SECRET) };

    before(async () => {
      Object.assign(process.env, SECRETS);
      admin = new pg.Client({ connectionString: postgresUrl });
      await admin.connect();
      await admin.query(`CREATE DATABASE "${database}"`);
      const databaseUrl = Object.assign(new URL(postgresUrl!), { pathname: `/${database}` }).toString();
      const env = { ...process.env, DATABASE_URL: databaseUrl, REDIS_URL: mode === 'redis' ? redisUrl : undefined };
      const [portA, portB] = [await freePort(), await freePort()];
      issuer = `http://127.0.0.1:${portA}`;
      urlB = `http://127.0.0.1:${portB}`;
      const config = (port: number) =>
        authServerConfigSchema.parse({
          issuer,
          listen: { host: '127.0.0.1', port },
          data_dir: dataDir,
          // Without Redis, the client cache is held to the gateways' poll interval.
          storage: { driver: 'postgres', revocation_channel: channel, client_cache_seconds: mode === 'redis' ? 5 : POLL_SECONDS },
          users: [{ username: 'demo', password_hash: DEMO_PASSWORD_HASH }],
          clients: [{ client_id: 'multi-gateway', client_secret_env: 'MULTI_GW_SECRET', grant_types: [] }],
          agents: [{ client_id: 'multi-agent', client_secret_env: 'MULTI_AGENT_SECRET', redirect_uris: [REDIRECT] }],
          resources: [
            { id: R_AGENT, name: 'The agent', scopes: [{ name: 'banking:read' }], may_act: 'requesting_client' },
            { id: R_GW, name: 'Banking through the gateway', scopes: [{ name: 'banking:read' }], resource_servers: ['multi-gateway'] },
          ],
        });
      const log = pino({ level: process.env.TEST_LOG_LEVEL ?? 'silent' });
      // The instances share the data dir (signing keys, generated secrets) as they share the database.
      a = await startAuthServer(config(portA), { log, env });
      b = await startAuthServer(config(portB), { log, env });
      upstream = await startScriptedUpstream();
      const route = (asUrl: string) => [
        {
          path: '/mcp',
          upstream: upstream.url,
          tools: listedTools(),
          resource: R_GW,
          authorization_servers: [issuer],
          token: {
            jwks_uri: `${asUrl}/jwks`,
            revocation_list: { endpoint: `${asUrl}/revocations`, client_id: 'multi-gateway', client_secret_env: 'MULTI_GW_SECRET', poll_seconds: POLL_SECONDS, channel },
          },
        },
      ];
      const gatewayEnv = { ...SECRETS, REDIS_URL: mode === 'redis' ? redisUrl : undefined };
      gw1 = await startTestGateway(() => route(issuer), {}, gatewayEnv);
      gw2 = await startTestGateway(() => route(urlB), {}, gatewayEnv);
    });

    after(async () => {
      await gw1?.close();
      await gw2?.close();
      await upstream?.close();
      await a?.close();
      await b?.close();
      await admin.query(`DROP DATABASE IF EXISTS "${database}"`);
      await admin.end();
      rmSync(dataDir, { recursive: true, force: true });
    });

    const call = async (gateway: TestGateway, token: string) => (await mcpPost(`${gateway.url}/mcp`, toolCall('read_balance'), { authorization: `Bearer ${token}` })).status;
    const agentToken = async (at: string) => postForm(`${at}/token`, { grant_type: 'client_credentials', resource: R_GW, scope: 'banking:read' }, agentAuth);
    const introspect = async (at: string, token: string) => (await postForm(`${at}/introspect`, { token }, gwAuth)).json.active;
    const lastReason = async (gateway: TestGateway) => (await gateway.auditEvents()).at(-1)?.reason;
    const report = (what: string, ms: number) => console.log(`# revocation window (${mode}): ${what}: ${ms} ms (bound ${windowMs} ms)`);

    it('both gateways load the feed and accept a token issued by either instance', async () => {
      for (const at of [issuer, urlB]) {
        const token = await agentToken(at);
        assert.equal(token.status, 200, token.text);
        // The first list load may still be under way: 503 until then (fail closed), never 200 before.
        for (const gateway of [gw1, gw2]) await until('the gateway accepts a good token', async () => (await call(gateway, token.json.access_token as string)) === 200, 5_000);
      }
    });

    it('a token revoked on instance A is refused by the gateway reading instance B within the window', async () => {
      const token = (await agentToken(urlB)).json.access_token as string;
      assert.equal(await call(gw2, token), 200);
      assert.equal((await postForm(`${issuer}/revoke`, { token }, agentAuth)).status, 200);
      const started = performance.now();
      // Both gateways watched at once: B's is the two-instance window, A's own the one-instance one.
      const [ms, own] = await Promise.all([
        until('gateway 2 refuses the revoked token', async () => (await call(gw2, token)) === 401, windowMs, started),
        until('gateway 1 refuses it too', async () => (await call(gw1, token)) === 401, windowMs, started),
      ]);
      report('token revoked on A, refused at gateway of B', ms);
      report('one instance: token revoked on A, refused at gateway of A', own);
      assert.ok(ms <= windowMs, `${ms} ms > ${windowMs} ms`);
      assert.ok(own <= windowMs, `${own} ms > ${windowMs} ms`);
      assert.equal(await lastReason(gw2), 'the token was revoked');
      assert.equal(await introspect(urlB, token), false);
    });

    it('a token exchanged on instance B just before its grant is revoked on A dies everywhere (no batch can hide it)', async () => {
      const { verifier, challenge } = pkcePair();
      const browser = new FormBrowser(issuer);
      const back = await browser.authorize(
        `${issuer}/authorize?${new URLSearchParams({ response_type: 'code', client_id: 'multi-agent', redirect_uri: REDIRECT, code_challenge: challenge, code_challenge_method: 'S256', resource: R_AGENT, scope: 'banking:read', state: 's' })}`,
      );
      const user = await postForm(`${issuer}/token`, { grant_type: 'authorization_code', code: back.searchParams.get('code')!, code_verifier: verifier, redirect_uri: REDIRECT }, agentAuth);
      assert.equal(user.status, 200, user.text);
      assert.ok(user.json.refresh_token, 'the grant has a refresh token to revoke it with');
      const exchanged = await postForm(
        `${urlB}/token`,
        { grant_type: TOKEN_EXCHANGE, subject_token: user.json.access_token as string, subject_token_type: ACCESS_TOKEN_TYPE, resource: R_GW, scope: 'banking:read' },
        agentAuth,
      );
      assert.equal(exchanged.status, 200, exchanged.text);
      const token = exchanged.json.access_token as string;
      // At once, before instance B's 100 ms batch of exchanged-token records can have been written.
      assert.equal((await postForm(`${issuer}/revoke`, { token: user.json.refresh_token as string, token_type_hint: 'refresh_token' }, agentAuth)).status, 200);
      const started = performance.now();
      assert.equal(await introspect(issuer, token), false, 'instance A knows at once');
      const ms = await until('gateway 2 refuses the exchanged token', async () => (await call(gw2, token)) === 401, windowMs, started);
      report('grant revoked on A, token exchanged on B refused at gateway of B', ms);
      assert.ok(ms <= windowMs, `${ms} ms > ${windowMs} ms`);
      assert.equal(await lastReason(gw2), 'the grant of the token was revoked');
      // Long after B's batch was written (not revoked), the token is still dead on both instances.
      await until('gateway 1 refuses it too', async () => (await call(gw1, token)) === 401, windowMs, started);
      assert.equal(await introspect(urlB, token), false);
      assert.equal(await introspect(issuer, token), false);
    });

    it('an agent disabled on A is cut off on B (tokens and the token endpoint) within the window, and its old tokens stay dead after re-enabling', async () => {
      // The first admin (bootstrapped with the static token of the shared data dir), signed in on A.
      const admin = await adminAccess({ issuer, dataDir });
      const old = (await agentToken(urlB)).json.access_token as string;
      const other = (await agentToken(issuer)).json.access_token as string;
      assert.equal(await call(gw2, old), 200);
      const patch = (enabled: boolean) => admin.api('PATCH', '/agents/multi-agent', { enabled });
      assert.equal((await patch(false)).status, 200);
      const started = performance.now();
      const leaked: string[] = [];
      const issuance = await until(
        'instance B stops issuing tokens to the disabled agent',
        async () => {
          const res = await agentToken(urlB);
          if (res.status === 200) leaked.push(res.json.access_token as string);
          return res.status === 401 && res.json.error === 'invalid_client';
        },
        windowMs,
        started,
      );
      const refusal = await until('gateway 2 refuses the agent token', async () => (await call(gw2, old)) === 401, windowMs, started);
      report('agent disabled on A, token endpoint of B refuses it', issuance);
      report('agent disabled on A, refused at gateway of B', refusal);
      assert.ok(issuance <= windowMs, `token endpoint: ${issuance} ms > ${windowMs} ms`);
      assert.ok(refusal <= windowMs, `gateway: ${refusal} ms > ${windowMs} ms`);
      assert.equal(await lastReason(gw2), 'client multi-agent is disabled');
      await b.ctx.audit.flush();
      const refused = (await b.store.audit.list({ clientId: 'multi-agent', limit: 20 })).find((event) => event.type === 'client.auth_failed' || event.error === 'invalid_client');
      assert.match(String(refused?.reason), /disabled/);

      assert.equal((await patch(true)).status, 200);
      const stale = [old, other, ...leaked];
      for (const token of stale) {
        for (const gateway of [gw1, gw2]) {
          // Refused, and for the right reason once the gateway has seen the re-enabling.
          await until('the old token is refused as cut off after re-enabling', async () => (await call(gateway, token)) === 401 && /tokens of multi-agent issued before \d+ are cut off/.test(String(await lastReason(gateway))), windowMs);
        }
        assert.equal(await introspect(issuer, token), false);
        assert.equal(await introspect(urlB, token), false);
      }
      // A token issued after the cut-off (the second of re-enabling may still be inside it) works on both.
      await until(
        'a fresh token works again',
        async () => {
          const fresh = await agentToken(urlB);
          return fresh.status === 200 && (await call(gw2, fresh.json.access_token as string)) === 200 && (await call(gw1, fresh.json.access_token as string)) === 200;
        },
        3_000,
      );
    });
  });
}
