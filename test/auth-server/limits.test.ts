import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { FormBrowser } from '../helpers/browser-driver.ts';
import { pkcePair, startTestAuthServer, type TestAuthServer } from '../helpers/auth-server.ts';
import { needsRedis } from '../helpers/services.ts';
import { startPrivateRedis, type PrivateRedis } from '../helpers/private-services.ts';
import { addressBucket } from '../../src/auth-server/client-address.ts';

/**
 * Item 16: sign-in, registration and device-code limits per account and per client address;
 * `trusted_proxies` for X-Forwarded-For; IPv6 counted per /64. With REDIS_URL set (CI) the limits
 * live in the shared Redis, under this process's own key prefix.
 */
describe('limits per account and per client address', () => {
  const authorizeUrl = (as: TestAuthServer) =>
    `${as.issuer}/authorize?${new URLSearchParams({
      response_type: 'code',
      client_id: 'limits-app',
      redirect_uri: 'http://127.0.0.1:4000/cb',
      code_challenge: pkcePair().challenge,
      code_challenge_method: 'S256',
      resource: as.resource,
      scope: 'mcp:read',
    })}`;
  const app = { client_id: 'limits-app', token_endpoint_auth_method: 'none' as const, redirect_uris: ['http://127.0.0.1:4000/cb'] };

  /** One sign-in attempt in a fresh browser; returns the page after the password was sent. */
  const login = async (as: TestAuthServer, username: string, password: string, headers: Record<string, string> = {}) => {
    const browser = new FormBrowser(as.issuer, headers);
    const page = await browser.open(authorizeUrl(as));
    assert.match(page.html, /name="password"/);
    return browser.submit(page, { username, password });
  };
  const lastThrottle = async (as: TestAuthServer) => {
    await as.ctx.audit.flush();
    const [event] = await as.store.audit.list({ type: 'login.throttled' });
    assert.equal(event?.error, 'slow_down');
    return event?.reason;
  };

  describe('sign-in, as shipped (no trusted proxies)', () => {
    let as: TestAuthServer;
    // A short window for the account case, so the test can see it end; its own server.
    let brief: TestAuthServer;
    before(async () => {
      as = await startTestAuthServer({ clients: [app], limits: { login_per_address: 4, login_per_account: 3 } });
      brief = await startTestAuthServer({ clients: [app], limits: { login_per_account: 3, login_window_seconds: 5 } });
    });
    after(async () => {
      await as.close();
      await brief.close();
    });

    it('bounds password spraying across accounts from one address, and ignores X-Forwarded-For from an untrusted peer', async () => {
      for (const [i, user] of ['spray-1', 'spray-2', 'spray-3', 'spray-4'].entries()) {
        // A forged X-Forwarded-For must not buy a fresh bucket.
        const page = await login(as, user, 'Winter2026!', { 'x-forwarded-for': `198.51.100.${i}` });
        assert.match(page.html, /Wrong username or password/, user);
      }
      const page = await login(as, 'spray-5', 'Winter2026!', { 'x-forwarded-for': '198.51.100.99' });
      assert.match(page.html, /Too many sign-in attempts/);
      assert.equal(await lastThrottle(as), 'too many failed sign-ins from 127.0.0.1');
    });

    it('an account over its budget is delayed for one window, not locked out', async () => {
      for (let i = 0; i < 3; i++) assert.match((await login(brief, 'demo', `wrong-${i}`)).html, /Wrong username or password/);
      let page = await login(brief, 'Demo', 'demo');
      assert.match(page.html, /Too many sign-in attempts/, 'the right password waits too: no oracle');
      assert.equal(await lastThrottle(brief), 'too many sign-in attempts for username=Demo');
      // Bounded: once the window has passed, the owner signs in.
      for (let i = 0; i < 40 && !page.html.includes('name="decision"'); i++) {
        await new Promise((r) => setTimeout(r, 250));
        page = await login(brief, 'demo', 'demo');
      }
      assert.match(page.html, /name="decision"/, 'signed in after the window');
    });
  });

  describe('behind a trusted proxy', () => {
    let as: TestAuthServer;
    before(async () => {
      as = await startTestAuthServer({
        clients: [app],
        trusted_proxies: ['127.0.0.0/8', '10.0.0.0/8'],
        limits: { login_per_address: 2, login_per_account: 100, device_codes_per_address: 2 },
        registration: { rate_limit_per_minute: 2 },
      });
    });
    after(async () => as.close());

    it('counts the rightmost untrusted X-Forwarded-For address, not the proxy', async () => {
      for (const user of ['p-1', 'p-2']) assert.match((await login(as, user, 'x', { 'x-forwarded-for': '203.0.113.5' })).html, /Wrong username/);
      // The client prepends a forged address; the proxies (10.0.0.7 appended by the outer one) are skipped.
      const spoofed = await login(as, 'p-3', 'x', { 'x-forwarded-for': '192.0.2.1, 203.0.113.5, 10.0.0.7' });
      assert.match(spoofed.html, /Too many sign-in attempts/);
      assert.equal(await lastThrottle(as), 'too many failed sign-ins from 203.0.113.5');
      assert.match((await login(as, 'p-4', 'x', { 'x-forwarded-for': '203.0.113.6' })).html, /Wrong username/, 'another client keeps its budget');
    });

    it('counts IPv6 clients per /64', async () => {
      for (const host of ['2001:db8:7:1::a', '2001:db8:7:1::b']) assert.match((await login(as, `v6-${host}`, 'x', { 'x-forwarded-for': host })).html, /Wrong username/);
      assert.match((await login(as, 'v6-c', 'x', { 'x-forwarded-for': '2001:db8:7:1:ffff::c' })).html, /Too many sign-in attempts/);
      assert.equal(await lastThrottle(as), 'too many failed sign-ins from 2001:db8:7:1::/64');
      assert.match((await login(as, 'v6-d', 'x', { 'x-forwarded-for': '2001:db8:7:2::a' })).html, /Wrong username/, 'the next /64 is another client');
    });

    it('limits registrations per client address', async () => {
      const register = (address: string) =>
        fetch(`${as.issuer}/register`, {
          method: 'POST',
          headers: { 'content-type': 'application/json', 'x-forwarded-for': address },
          body: JSON.stringify({ client_name: crypto.randomUUID(), redirect_uris: ['http://127.0.0.1:4000/cb'], token_endpoint_auth_method: 'none' }),
        });
      assert.equal((await register('203.0.113.20')).status, 201);
      assert.equal((await register('203.0.113.20')).status, 201);
      const limited = await register('203.0.113.20');
      assert.equal(limited.status, 429);
      assert.equal(((await limited.json()) as { error: string }).error, 'temporarily_unavailable');
      assert.ok(Number(limited.headers.get('retry-after')) >= 1);
      await as.ctx.audit.flush();
      const [event] = await as.store.audit.list({ type: 'register.refused' });
      assert.equal(event?.error, 'temporarily_unavailable');
      assert.equal(event?.reason, 'registration rate limit for 203.0.113.20');
      assert.equal((await register('203.0.113.21')).status, 201, 'another client address keeps its budget');
    });

    it('limits user codes tried at /device per client address', async () => {
      const tryCode = (address: string) =>
        fetch(`${as.issuer}/device`, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded', 'x-forwarded-for': address }, body: 'user_code=BCDF-GHJK' });
      for (let i = 0; i < 2; i++) assert.match(await (await tryCode('203.0.113.30')).text(), /This code is not valid/);
      const limited = await tryCode('203.0.113.30');
      assert.equal(limited.status, 400);
      assert.match(await limited.text(), /Too many codes tried/);
      await as.ctx.audit.flush();
      const [event] = await as.store.audit.list({ type: 'device.code_refused' });
      assert.equal(event?.error, 'slow_down');
      assert.equal(event?.reason, 'too many codes from 203.0.113.30');
      assert.match(await (await tryCode('203.0.113.31')).text(), /This code is not valid/);
    });
  });

  it('groups IPv6 addresses per /64 and IPv4-mapped addresses as IPv4', () => {
    assert.equal(addressBucket('2001:db8:1:2:3:4:5:6'), '2001:db8:1:2::/64');
    assert.equal(addressBucket('2001:DB8:1:2::9'), '2001:db8:1:2::/64');
    assert.equal(addressBucket('2001:db8::1'), '2001:db8:0:0::/64');
    // A dotted IPv4 tail is two groups, not one: the /64 is the same as the hex spelling's.
    assert.equal(addressBucket('2001:db8::5:6:1.2.3.4'), addressBucket('2001:db8::5:6:102:304'));
    assert.equal(addressBucket('1::3:4:5:1.2.3.4'), '1:0:0:3::/64');
    assert.equal(addressBucket('::ffff:198.51.100.4'), '198.51.100.4');
    assert.equal(addressBucket('198.51.100.4'), '198.51.100.4');
  });

  it('refuses a malformed trusted_proxies entry at start', async () => {
    await assert.rejects(startTestAuthServer({ trusted_proxies: ['10.0.0.0/33'] }), /trusted_proxies: 10\.0\.0\.0\/33 has a bad prefix length/);
    await assert.rejects(startTestAuthServer({ trusted_proxies: ['proxy.internal'] }), /trusted_proxies: proxy\.internal is not an address or CIDR/);
  });

  describe('when Redis fails', needsRedis(), () => {
    let as: TestAuthServer;
    /** A private Redis (never the shared one: this test stops it). */
    let redis: PrivateRedis;
    before(async () => {
      redis = await startPrivateRedis();
      const shared = process.env.REDIS_URL;
      process.env.REDIS_URL = redis.url;
      try {
        as = await startTestAuthServer({ trusted_proxies: ['127.0.0.1'] });
      } finally {
        process.env.REDIS_URL = shared;
      }
    });
    after(async () => {
      await as?.close();
      await redis?.close();
    });

    const register = () =>
      fetch(`${as.issuer}/register`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'x-forwarded-for': '203.0.113.40' },
        body: JSON.stringify({ client_name: crypto.randomUUID(), redirect_uris: ['http://127.0.0.1:4000/cb'], token_endpoint_auth_method: 'none' }),
      });

    it('fails closed with 503 temporarily_unavailable, never an unlimited allowance, and recovers', async () => {
      assert.equal((await register()).status, 201);
      await redis.kill();
      let res = await register();
      for (let i = 0; i < 50 && res.status !== 503; i++) {
        assert.equal(res.status, 201, 'until the client notices the outage');
        await new Promise((r) => setTimeout(r, 100));
        res = await register();
      }
      assert.equal(res.status, 503);
      assert.equal(((await res.json()) as { error: string }).error, 'temporarily_unavailable');
      await as.ctx.audit.flush();
      const [event] = await as.store.audit.list({ type: 'limit.unavailable' });
      assert.equal(event?.error, 'temporarily_unavailable');
      assert.match(event?.reason ?? '', /^rate limit store unavailable \(registration\): /);
      await redis.start();
      res = await register();
      for (let i = 0; i < 100 && res.status === 503; i++) {
        await new Promise((r) => setTimeout(r, 100));
        res = await register();
      }
      assert.equal(res.status, 201, 'back once Redis is');
    });
  });
});
