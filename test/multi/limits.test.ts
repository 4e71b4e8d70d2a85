import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { FormBrowser } from '../helpers/browser-driver.ts';
import { DEMO_PASSWORD_HASH, freePort, pkcePair, startTestAuthServer, type TestAuthServer } from '../helpers/auth-server.ts';
import { needsPostgres, needsRedis } from '../helpers/services.ts';

const services = needsPostgres().skip || needsRedis().skip;

/**
 * Two authorization server instances of one deployment (one issuer) on the shared PostgreSQL and
 * Redis: the sign-in, registration and device-code limits hold across both, to the exact number
 * configured — alternating instances never buys an attacker a second budget. Ids are unique per
 * run; the Redis keys carry this process's prefix (test/helpers/auth-server.ts).
 */
describe('limits across two instances', { skip: services }, () => {
  const run = randomUUID().slice(0, 8);
  const clientId = `multi-limits-${run}`;
  const redirect = 'http://127.0.0.1:4000/cb';
  let a: TestAuthServer;
  let b: TestAuthServer;
  let urls: string[];
  const startedAt = Math.floor(Date.now() / 1000);
  /** An address of this run's own (other runs may share the database's audit log). */
  const runAddress = (k: number) => `10.${k}.${parseInt(run.slice(0, 2), 16)}.${parseInt(run.slice(2, 4), 16)}`;

  before(async () => {
    const shared = {
      storage: { driver: 'postgres' as const },
      users: [{ username: `multi-${run}`, password_hash: DEMO_PASSWORD_HASH }],
      clients: [{ client_id: clientId, token_endpoint_auth_method: 'none' as const, redirect_uris: [redirect] }],
      trusted_proxies: ['127.0.0.1'],
      limits: { login_per_account: 4, login_per_address: 6, device_codes_per_address: 3 },
      registration: { rate_limit_per_minute: 3 },
    };
    a = await startTestAuthServer(shared);
    // The second instance serves the same issuer, as behind one load balancer.
    const port = await freePort();
    b = await startTestAuthServer({ ...shared, issuer: a.issuer, listen: { host: '127.0.0.1', port } });
    urls = [a.url, b.url];
  });
  after(async () => {
    await b?.close();
    await a?.close();
  });

  const login = async (n: number, username: string, address: string) => {
    const origin = urls[n % 2]!;
    const browser = new FormBrowser(origin, { 'x-forwarded-for': address });
    const authorize = `${origin}/authorize?${new URLSearchParams({ response_type: 'code', client_id: clientId, redirect_uri: redirect, code_challenge: pkcePair().challenge, code_challenge_method: 'S256', resource: a.resource, scope: 'mcp:read' })}`;
    const page = await browser.open(authorize);
    assert.match(page.html, /name="password"/);
    return (await browser.submit(page, { username, password: 'wrong' })).html;
  };
  /** Audit events of one type since this run began, from both instances (one database). */
  const audited = async (type: string, reason: string) => {
    await a.ctx.audit.flush();
    await b.ctx.audit.flush();
    const events = await a.store.audit.list({ type, limit: 500 });
    return events.filter((e) => e.reason === reason && e.at >= startedAt);
  };

  it('sign-in guesses per account: exactly the configured number across both instances', async () => {
    const username = `multi-${run}`;
    // A new address for each guess: only the account budget counts.
    for (let n = 0; n < 4; n++) assert.match(await login(n, username, `198.51.100.${n + 1}`), /Wrong username or password/, `guess ${n + 1}`);
    assert.match(await login(4, username, '198.51.100.50'), /Too many sign-in attempts/);
    assert.match(await login(5, username, '198.51.100.51'), /Too many sign-in attempts/, 'on the other instance too');
    const events = await audited('login.throttled', `too many sign-in attempts for username=${username}`);
    assert.equal(events.length, 2);
    assert.ok(events.every((e) => e.error === 'slow_down' && e.clientId === clientId));
  });

  it('failed sign-ins per client address: exactly the configured number across both instances', async () => {
    const address = runAddress(1);
    for (let n = 0; n < 6; n++) assert.match(await login(n, `spray-${run}-${n}`, address), /Wrong username or password/, `attempt ${n + 1}`);
    assert.match(await login(6, `spray-${run}-6`, address), /Too many sign-in attempts/);
    assert.match(await login(7, `spray-${run}-7`, address), /Too many sign-in attempts/);
    const events = await audited('login.throttled', `too many failed sign-ins from ${address}`);
    assert.equal(events.length, 2);
    assert.ok(events.every((e) => e.error === 'slow_down' && e.clientId === clientId));
  });

  it('registrations per client address: exactly the configured number across both instances', async () => {
    const address = runAddress(2);
    const statuses: number[] = [];
    for (let n = 0; n < 6; n++) {
      const res = await fetch(`${urls[n % 2]}/register`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'x-forwarded-for': address },
        body: JSON.stringify({ client_name: `multi-${run}-${n}`, redirect_uris: [redirect], token_endpoint_auth_method: 'none' }),
      });
      statuses.push(res.status);
      if (res.status === 429) assert.equal(((await res.json()) as { error: string }).error, 'temporarily_unavailable');
    }
    assert.deepEqual(statuses, [201, 201, 201, 429, 429, 429]);
    const events = await audited('register.refused', `registration rate limit for ${address}`);
    assert.equal(events.length, 3);
    assert.ok(events.every((e) => e.error === 'temporarily_unavailable'));
  });

  it('user codes tried at /device per client address: exactly the configured number across both instances', async () => {
    const address = runAddress(3);
    const pages: string[] = [];
    for (let n = 0; n < 5; n++) {
      const res = await fetch(`${urls[n % 2]}/device`, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded', 'x-forwarded-for': address }, body: 'user_code=BCDF-GHJK' });
      pages.push((await res.text()).includes('Too many codes tried') ? 'limited' : 'tried');
    }
    assert.deepEqual(pages, ['tried', 'tried', 'tried', 'limited', 'limited']);
    const events = await audited('device.code_refused', `too many codes from ${address}`);
    assert.equal(events.length, 2);
    assert.ok(events.every((e) => e.error === 'slow_down'));
  });
});
