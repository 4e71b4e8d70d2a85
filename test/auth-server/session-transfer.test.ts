import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { Browser } from 'playwright-core';
import { FormBrowser } from '../helpers/browser-driver.ts';
import { freePort, pkcePair, postForm, startTestAuthServer, type TestAuthServer } from '../helpers/auth-server.ts';
import { launchChromium, navigating } from '../helpers/chromium.ts';
import { needsChromium } from '../helpers/services.ts';
import { pushSessionTransfer } from '../../examples/handoff/native-app.ts';
import { startHandoffWebApp, type HandoffWebApp } from '../../examples/handoff/web-app.ts';

/**
 * App-to-web session transfer (seed 002, "Hardening the handoff"; docs/browser-sessions.md). The
 * test plays the native app with fetch (its user's token pushed to /par through the transfer
 * client), then the web view: Chromium opens the request_uri, gets a session with no sign-in page
 * and lands on the example web app, which signs in with prompt=none. Every refusal asserts the
 * status, the error code and the audit event's reason.
 */
const APP_REDIRECT = 'http://127.0.0.1:4000/callback';
const TOKEN_TYPE = 'urn:ietf:params:oauth:token-type:access_token';
/** The test server's resource (startTestAuthServer): the app's tokens are for it. */
const TRANSFER_AUDIENCE = 'https://mcp.example.test/mcp';
const MACHINE_SECRET = 'machine-secret-for-the-session-transfer-test-0123456789';

describe('session transfer', () => {
  let as: TestAuthServer;
  let web: HandoffWebApp;
  let returnTo: string;

  before(async () => {
    process.env.ST_MACHINE_SECRET = MACHINE_SECRET;
    const webPort = await freePort();
    const webUrl = `http://127.0.0.1:${webPort}`;
    returnTo = `${webUrl}/app/`;
    as = await startTestAuthServer({
      // The loopback peer is a trusted proxy: X-Forwarded-For then sets the address a request comes from.
      trusted_proxies: ['127.0.0.1'],
      clients: [
        { client_id: 'native-app', token_endpoint_auth_method: 'none', redirect_uris: [APP_REDIRECT], grant_types: ['authorization_code'] },
        { client_id: 'other-app', token_endpoint_auth_method: 'none', redirect_uris: [APP_REDIRECT], grant_types: ['authorization_code'] },
        { client_id: 'machine', client_secret_env: 'ST_MACHINE_SECRET', grant_types: ['client_credentials'] },
        { client_id: 'session-transfer', token_endpoint_auth_method: 'none', grant_types: ['authorization_code'], session_transfer: true, allowed_return_urls: [returnTo], session_transfer_subject_clients: ['native-app', 'machine'], session_transfer_audiences: [TRANSFER_AUDIENCE] },
        { client_id: 'handoff-web', token_endpoint_auth_method: 'none', redirect_uris: [`${webUrl}/app/callback`], grant_types: ['authorization_code'], first_party: true },
      ],
    });
    web = await startHandoffWebApp({ issuer: as.issuer, clientId: 'handoff-web', port: webPort });
  });
  after(async () => {
    await web?.close();
    await as?.close();
  });

  /** The app's user signs in once (password, consent), as a native app's own sign-in would. */
  async function appToken(clientId = 'native-app'): Promise<string> {
    const { verifier, challenge } = pkcePair();
    const query = new URLSearchParams({ response_type: 'code', client_id: clientId, redirect_uri: APP_REDIRECT, code_challenge: challenge, code_challenge_method: 'S256', resource: as.resource, scope: 'mcp:read' });
    const back = await new FormBrowser(as.issuer).authorize(`${as.issuer}/authorize?${query}`);
    const res = await postForm(`${as.issuer}/token`, { grant_type: 'authorization_code', code: back.searchParams.get('code')!, redirect_uri: APP_REDIRECT, client_id: clientId, code_verifier: verifier });
    assert.equal(res.status, 200, res.text);
    return res.json.access_token as string;
  }

  /** The back-channel push, from the address `from` (X-Forwarded-For through the trusted loopback proxy). */
  const push = (token: string, options: { from?: string; returnTo?: string; extra?: Record<string, string> } = {}) =>
    postForm(
      `${as.issuer}/par`,
      { client_id: 'session-transfer', response_type: 'code', scope: 'session_transfer', code_challenge: pkcePair().challenge, code_challenge_method: 'S256', subject_token: token, subject_token_type: TOKEN_TYPE, return_to: options.returnTo ?? returnTo, ...options.extra },
      options.from ? { 'x-forwarded-for': options.from } : {},
    );
  /** The browser's visit with the request_uri, from `from`; JSON asked for, so a refusal is readable. */
  const visit = async (requestUri: string, from?: string) => {
    const res = await fetch(`${as.issuer}/authorize?client_id=session-transfer&request_uri=${encodeURIComponent(requestUri)}`, {
      redirect: 'manual',
      headers: { accept: 'application/json', ...(from ? { 'x-forwarded-for': from } : {}) },
    });
    const body = res.status === 303 ? {} : ((await res.json()) as { error?: string });
    return { status: res.status, location: res.headers.get('location'), error: body.error, cookie: res.headers.getSetCookie().join('; ') };
  };
  const lastAudit = async (type: string) => {
    await as.ctx.audit.flush();
    return (await as.store.audit.list({ type }))[0];
  };

  it('happy path in Chromium: the web view lands signed in on the web app, no password page, no code for the transfer client', needsChromium(), async () => {
    const token = await appToken();
    await as.ctx.audit.flush();
    const loginsBefore = (await as.store.audit.list({ type: 'login.succeeded' })).length;
    const { url, expiresIn } = await pushSessionTransfer({ issuer: as.issuer, clientId: 'session-transfer', accessToken: token, returnTo });
    assert.equal(expiresIn, 60);
    assert.ok(!url.includes(token), 'the token never travels in the URL');
    const started = await lastAudit('session_transfer.started');
    assert.equal(started?.data?.subject_client, 'native-app');
    assert.equal(started?.data?.address, '127.0.0.1');

    let browser: Browser | undefined;
    try {
      browser = await launchChromium();
      const context = await browser.newContext();
      const page = await context.newPage();
      const visited: string[] = [];
      page.on('framenavigated', (frame) => {
        if (frame === page.mainFrame()) visited.push(frame.url());
      });
      await navigating(page, () => page.goto(url));
      await page.locator('#signed-in').waitFor({ timeout: 15_000 });
      assert.match(await page.locator('#signed-in').innerText(), /Signed in as Demo User \(demo\)/);
      assert.equal(new URL(page.url()).href, returnTo);
      assert.equal(await page.getByLabel('Password').count(), 0);
      // Only redirects on the way (never a rendered sign-in or consent page of the AS).
      assert.ok(!visited.some((u) => u.startsWith(as.issuer)), `no page of the authorization server was shown: ${visited.join(' → ')}`);
      const cookies = await context.cookies(as.issuer);
      const session = cookies.find((c) => c.name === 'mandate_session');
      assert.ok(session?.httpOnly, 'the browser holds an HttpOnly session cookie of the authorization server');
    } finally {
      await browser?.close();
    }

    const completed = await lastAudit('session_transfer.completed');
    assert.equal(completed?.clientId, 'session-transfer');
    assert.equal(completed?.data?.return_to, returnTo);
    assert.equal((await as.store.audit.list({ type: 'login.succeeded' })).length, loginsBefore, 'nobody typed a password');
    const codes = await as.store.audit.list({ type: 'authorize.code_issued' });
    assert.ok(codes.some((e) => e.clientId === 'handoff-web'), 'the web app signed in with its own code flow');
    assert.ok(!codes.some((e) => e.clientId === 'session-transfer'), 'no code was ever issued to the transfer client');
  });

  it('the session carries amr ["session_transfer"] and the token\'s sign-in time', async () => {
    const token = await appToken();
    const { json } = await push(token);
    const res = await visit(json.request_uri as string);
    assert.equal(res.status, 303);
    assert.equal(res.location, returnTo);
    const id = /mandate_session=([^;]+)/.exec(res.cookie)?.[1];
    assert.ok(id, 'a session cookie is set');
    const session = await as.ctx.cache.get<{ amr?: string[]; authTime: number; username: string }>(`session:${id}`);
    assert.deepEqual(session?.amr, ['session_transfer']);
    assert.equal(session?.username, 'demo');
    const claims = JSON.parse(Buffer.from(token.split('.')[1]!, 'base64url').toString()) as { auth_time: number };
    assert.equal(session?.authTime, claims.auth_time);
  });

  describe('refused', () => {
    it('a reused request_uri → 400 invalid_request_uri', async () => {
      const { json } = await push(await appToken());
      assert.equal((await visit(json.request_uri as string)).status, 303);
      const again = await visit(json.request_uri as string);
      assert.deepEqual([again.status, again.error], [400, 'invalid_request_uri']);
      assert.equal((await lastAudit('authorize.refused'))?.reason, 'request_uri already used');
    });

    it('a second request_uri for the same token (its jti serves one transfer) → 400 invalid_request', async () => {
      const token = await appToken();
      const first = await push(token);
      const second = await push(token);
      assert.equal(second.status, 201, 'not used yet at push time');
      assert.equal((await visit(first.json.request_uri as string)).status, 303);
      const res = await visit(second.json.request_uri as string);
      assert.deepEqual([res.status, res.error], [400, 'invalid_request']);
      assert.equal((await lastAudit('session_transfer.refused'))?.reason, 'subject token already used for a session transfer');
      const third = await push(token);
      assert.deepEqual([third.status, third.json.error], [400, 'invalid_request']);
      assert.equal((await lastAudit('session_transfer.refused'))?.reason, 'subject token already used for a session transfer');
    });

    it('a token of a client the transfer client does not accept → 400 invalid_request at the push', async () => {
      const res = await push(await appToken('other-app'));
      assert.deepEqual([res.status, res.json.error], [400, 'invalid_request']);
      assert.equal((await lastAudit('session_transfer.refused'))?.reason, 'subject token client other-app is not accepted');
    });

    it('a client credentials token (no user) → 400 invalid_request', async () => {
      const cc = await postForm(`${as.issuer}/token`, { grant_type: 'client_credentials', scope: 'mcp:read', resource: as.resource }, { authorization: `Basic ${Buffer.from(`machine:${MACHINE_SECRET}`).toString('base64')}` });
      assert.equal(cc.status, 200, cc.text);
      const res = await push(cc.json.access_token as string);
      assert.deepEqual([res.status, res.json.error], [400, 'invalid_request']);
      assert.equal((await lastAudit('session_transfer.refused'))?.reason, 'subject token has no user grant (client credentials?)');
    });

    it('a revoked token → 400 invalid_request at the push; revoked after the push → refused at the visit', async () => {
      const token = await appToken();
      const pushed = await push(token);
      assert.equal(pushed.status, 201);
      assert.equal((await postForm(`${as.issuer}/revoke`, { token, client_id: 'native-app' })).status, 200);
      const res = await visit(pushed.json.request_uri as string);
      assert.deepEqual([res.status, res.error], [400, 'invalid_request']);
      assert.equal((await lastAudit('session_transfer.refused'))?.reason, 'subject token revoked');
      const again = await push(token);
      assert.deepEqual([again.status, again.json.error], [400, 'invalid_request']);
      assert.equal((await lastAudit('session_transfer.refused'))?.reason, 'subject token inactive (unknown, expired or revoked)');
    });

    it('a browser at another address than the push → 403 access_denied, and the request_uri is spent', async () => {
      const { json } = await push(await appToken(), { from: '203.0.113.7' });
      const res = await visit(json.request_uri as string, '198.51.100.9');
      assert.deepEqual([res.status, res.error], [403, 'access_denied']);
      assert.equal(res.cookie.includes('mandate_session='), false, 'no session');
      assert.equal((await lastAudit('session_transfer.refused'))?.reason, 'address mismatch: pushed from 203.0.113.7, browser at 198.51.100.9');
      const retry = await visit(json.request_uri as string, '203.0.113.7');
      assert.deepEqual([retry.status, retry.error], [400, 'invalid_request_uri']);
    });

    it('the same address through the trusted proxy is accepted', async () => {
      const { json } = await push(await appToken(), { from: '203.0.113.7' });
      const res = await visit(json.request_uri as string, '203.0.113.7');
      assert.equal(res.status, 303);
      assert.equal(res.location, returnTo);
    });

    it('a return_to not allowed (exact match) → 400 invalid_request', async () => {
      const token = await appToken();
      for (const bad of ['https://attacker.test/', `${returnTo}x`, returnTo.replace('/app/', '/app')]) {
        const res = await push(token, { returnTo: bad });
        assert.deepEqual([res.status, res.json.error], [400, 'invalid_request']);
        assert.equal((await lastAudit('session_transfer.refused'))?.reason, `return_to not allowed: ${bad}`);
      }
    });

    it('a push off the transfer shape → 400 (scope, subject_token_type, extra parameters, redirect_uri)', async () => {
      const token = await appToken();
      const cases: [Record<string, string>, string, string][] = [
        [{ scope: 'openid' }, 'invalid_scope', 'scope=openid'],
        [{ subject_token_type: 'urn:ietf:params:oauth:token-type:id_token' }, 'invalid_request', `subject_token_type must be ${TOKEN_TYPE}`],
        [{ redirect_uri: APP_REDIRECT }, 'invalid_request', 'parameter redirect_uri is not taken in a session transfer'],
        [{ code_challenge_method: 'plain' }, 'invalid_request', 'code_challenge_method=plain'],
      ];
      for (const [extra, error, reason] of cases) {
        const res = await push(token, { extra });
        assert.deepEqual([res.status, res.json.error], [400, error], JSON.stringify(extra));
        assert.equal((await lastAudit('session_transfer.refused'))?.reason, reason);
      }
    });

    it('the transfer client at /authorize without a request_uri → 400 invalid_request, and at /token → unauthorized_client', async () => {
      const res = await fetch(`${as.issuer}/authorize?client_id=session-transfer&response_type=code&scope=session_transfer&code_challenge=${pkcePair().challenge}&code_challenge_method=S256`, { redirect: 'manual', headers: { accept: 'application/json' } });
      assert.equal(res.status, 400);
      assert.equal(((await res.json()) as { error: string }).error, 'invalid_request');
      assert.equal((await lastAudit('authorize.refused'))?.reason, 'session transfer client without request_uri');
      const token = await postForm(`${as.issuer}/token`, { grant_type: 'authorization_code', code: 'x', client_id: 'session-transfer', code_verifier: 'x'.repeat(43) });
      assert.deepEqual([token.status, token.json.error], [400, 'unauthorized_client']);
      assert.equal((await lastAudit('token.refused'))?.reason, 'session transfer client at the token endpoint');
    });
  });

  it('an expired request_uri → 400 invalid_request_uri', async () => {
    const short = await startTestAuthServer({
      par: { request_uri_ttl: 1 },
      clients: [
        { client_id: 'native-app', token_endpoint_auth_method: 'none', redirect_uris: [APP_REDIRECT], grant_types: ['authorization_code'] },
        { client_id: 'session-transfer', token_endpoint_auth_method: 'none', grant_types: ['authorization_code'], session_transfer: true, allowed_return_urls: [returnTo], session_transfer_subject_clients: ['native-app'], session_transfer_audiences: [TRANSFER_AUDIENCE] },
      ],
    });
    try {
      const { verifier, challenge } = pkcePair();
      const query = new URLSearchParams({ response_type: 'code', client_id: 'native-app', redirect_uri: APP_REDIRECT, code_challenge: challenge, code_challenge_method: 'S256', resource: short.resource, scope: 'mcp:read' });
      const back = await new FormBrowser(short.issuer).authorize(`${short.issuer}/authorize?${query}`);
      const token = (await postForm(`${short.issuer}/token`, { grant_type: 'authorization_code', code: back.searchParams.get('code')!, redirect_uri: APP_REDIRECT, client_id: 'native-app', code_verifier: verifier })).json.access_token as string;
      const { requestUri } = await pushSessionTransfer({ issuer: short.issuer, clientId: 'session-transfer', accessToken: token, returnTo });
      await new Promise((resolve) => setTimeout(resolve, 2100));
      const res = await fetch(`${short.issuer}/authorize?client_id=session-transfer&request_uri=${encodeURIComponent(requestUri)}`, { redirect: 'manual', headers: { accept: 'application/json' } });
      assert.equal(res.status, 400);
      assert.equal(((await res.json()) as { error: string }).error, 'invalid_request_uri');
      await short.ctx.audit.flush();
      assert.equal((await short.store.audit.list({ type: 'authorize.refused' }))[0]?.reason, 'request_uri expired');
    } finally {
      await short.close();
    }
  });
});
