/**
 * OpenID Connect Back-Channel Logout 1.0: when a session ends — /logout, the account page's
 * "Sign out", an admin's sessions.revoke, a new password — every client that got a grant in it and
 * has a backchannel_logout_uri receives a logout token (a loopback receiver here verifies it with
 * jose against the JWKS); failed deliveries are retried, then given up on, each audited.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { createRemoteJWKSet, jwtVerify } from 'jose';
import { FormBrowser } from '../helpers/browser-driver.ts';
import type { TestAuthServer } from '../helpers/auth-server.ts';
import { ADMIN_OPERATIONS as ops, invoke, type Caller } from '../../src/admin/index.ts';
import { BACKCHANNEL_LOGOUT_EVENT, logoutDeliveriesSettled } from '../../src/auth-server/backchannel-logout.ts';
import { endSessionsAndNotify } from '../../src/auth-server/sign-out.ts';
import { endSessions } from '../../src/auth-server/session-index.ts';
import { auditOf, claimsOf, headerOf, rpClient, signIn, signedIn, startLogoutServer, startReceiver, type Receiver } from './logout-fixture.ts';

const admin: Caller = { sub: 'sub-admin', username: 'admin', scopes: ['admin:write'], frontEnd: 'api', requestId: 'req-1' };

describe('back-channel logout', () => {
  let as: TestAuthServer;
  let ok: Receiver;
  let other: Receiver;
  let failing: Receiver;
  let refusing: Receiver;
  let hanging: Receiver;
  before(async () => {
    [ok, other, failing, refusing, hanging] = await Promise.all([startReceiver([200]), startReceiver([204]), startReceiver([500]), startReceiver([400]), startReceiver(['hang', 200])]);
    as = await startLogoutServer(
      [
        rpClient('rp-ok', { backchannel_logout_uri: ok.uri, backchannel_logout_session_required: true }),
        rpClient('rp-other', { backchannel_logout_uri: other.uri }),
        rpClient('rp-failing', { backchannel_logout_uri: failing.uri }),
        rpClient('rp-refusing', { backchannel_logout_uri: refusing.uri }),
        rpClient('rp-hanging', { backchannel_logout_uri: hanging.uri }),
        rpClient('rp-silent'),
      ],
      { logout: { backchannel_retry_delay_ms: 20, backchannel_timeout_ms: 400, backchannel_attempts: 3 } },
    );
  });
  after(async () => {
    await as?.close();
    await Promise.all([ok, other, failing, refusing, hanging].map((r) => r?.close()));
  });

  const jwks = () => createRemoteJWKSet(new URL(`${as.issuer}/jwks`));
  const reset = () => [ok, other, failing, refusing, hanging].forEach((r) => r.received.splice(0));

  it('sends a logout token, verifiable against the JWKS, to each client that got a grant in the ended session', async () => {
    reset();
    const browser = new FormBrowser(as.issuer);
    const tokens = await signIn(as, browser, 'rp-ok');
    await signIn(as, browser, 'rp-other');
    await signIn(as, new FormBrowser(as.issuer), 'rp-other'); // another session: not ended
    const idToken = claimsOf(tokens.id_token);
    const page = await browser.open(`/logout?id_token_hint=${tokens.id_token}`);
    assert.match(page.html, /You are signed out/);
    await logoutDeliveriesSettled(as.ctx);

    assert.equal(ok.received.length, 1);
    const { body, headers } = ok.received[0]!;
    assert.equal(headers['content-type'], 'application/x-www-form-urlencoded');
    assert.deepEqual([...body.keys()], ['logout_token']);
    const token = body.get('logout_token')!;
    const { payload, protectedHeader } = await jwtVerify(token, jwks(), { issuer: as.issuer, audience: 'rp-ok', typ: 'logout+jwt', algorithms: ['ES256'] });
    assert.equal(protectedHeader.typ, 'logout+jwt');
    assert.deepEqual(Object.keys(payload).sort(), ['aud', 'events', 'exp', 'iat', 'iss', 'jti', 'sid', 'sub']);
    assert.equal(payload.sub, idToken.sub);
    assert.equal(payload.sid, idToken.sid);
    assert.deepEqual(payload.events, { [BACKCHANNEL_LOGOUT_EVENT]: {} });
    assert.ok(payload.exp! - payload.iat! <= 120 && payload.exp! > payload.iat!, 'a lifetime of at most two minutes');
    assert.ok(typeof payload.jti === 'string' && payload.jti.length >= 16);
    assert.equal('nonce' in payload, false);

    assert.equal(other.received.length, 1, 'one token for rp-other: the session it got a grant in (a 204 counts as success)');
    assert.equal(claimsOf(other.tokens()[0]!).aud, 'rp-other');
    assert.equal(claimsOf(other.tokens()[0]!).sid, idToken.sid);

    const sent = (await auditOf(as, 'logout.backchannel_sent')).slice(-2);
    assert.deepEqual(sent.map((e) => e.clientId).sort(), ['rp-ok', 'rp-other']);
    assert.deepEqual(sent.map((e) => [e.outcome, e.sub, e.data?.sid, e.data?.attempts]), sent.map(() => ['success', idToken.sub, idToken.sid, 1]));
    const done = (await auditOf(as, 'logout.completed')).at(-1);
    assert.deepEqual((done?.data?.backchannel as string[]).sort(), ['rp-ok', 'rp-other']);
  });

  it('retries a 500 with backoff, then gives up and audits the failure; a 400 is not retried; a silent client times out', async () => {
    reset();
    const browser = new FormBrowser(as.issuer);
    await signIn(as, browser, 'rp-failing');
    await signIn(as, browser, 'rp-refusing');
    await signIn(as, browser, 'rp-hanging');
    await signIn(as, browser, 'rp-silent');
    const session = claimsOf((await signIn(as, browser, 'rp-ok')).id_token);
    const started = Date.now();
    const result = await endSessionsAndNotify(as.ctx, String(session.sub), String(session.sid), { via: 'test' });
    assert.ok(Date.now() - started < 300, 'ending the session does not wait for deliveries');
    assert.deepEqual(result.notified.map((n) => n.clientId).sort(), ['rp-failing', 'rp-hanging', 'rp-ok', 'rp-refusing'], 'rp-silent has no back-channel URI');
    const outcomes = await result.deliveries;
    const by = Object.fromEntries(outcomes.map((o) => [o.clientId, o]));

    assert.equal(failing.received.length, 3, 'three attempts');
    assert.equal(new Set(failing.tokens().map((t) => claimsOf(t).jti)).size, 3, 'a fresh token (jti) per attempt');
    assert.deepEqual([by['rp-failing']?.delivered, by['rp-failing']?.attempts], [false, 3]);
    assert.equal(refusing.received.length, 1, 'a 400 is final');
    assert.equal(hanging.received.length, 2, 'the first attempt timed out, the second was answered');
    assert.deepEqual([by['rp-hanging']?.delivered, by['rp-hanging']?.attempts], [true, 2]);

    const failed = await auditOf(as, 'logout.backchannel_failed');
    const reasons = Object.fromEntries(failed.map((e) => [e.clientId, e]));
    assert.equal(reasons['rp-failing']?.outcome, 'failure');
    assert.equal(reasons['rp-failing']?.error, 'backchannel_logout_failed');
    assert.equal(reasons['rp-failing']?.reason, 'the client answered HTTP 500 (3 attempts)');
    assert.equal(reasons['rp-refusing']?.reason, 'the client answered HTTP 400 (1 attempt)');
    const hung = (await auditOf(as, 'logout.backchannel_sent')).find((e) => e.clientId === 'rp-hanging');
    assert.equal(hung?.data?.attempts, 2);
  });

  it("the account page's Sign out notifies the session's clients", async () => {
    reset();
    const browser = new FormBrowser(as.issuer);
    const session = claimsOf((await signIn(as, browser, 'rp-ok')).id_token);
    const page = await browser.open('/account/security');
    const csrf = /name="csrf" value="([^"]+)"/.exec(page.html)![1]!;
    assert.match(page.html, /id="sign-out"/);
    const done = await browser.open('/account/security/sign-out', { method: 'POST', form: { csrf } });
    assert.match(done.html, /You are signed out of Mandate/);
    assert.equal(await signedIn(browser), false);
    await logoutDeliveriesSettled(as.ctx);
    assert.equal(ok.received.length, 1);
    assert.equal(claimsOf(ok.tokens()[0]!).sid, session.sid);
    assert.equal((await auditOf(as, 'logout.completed')).at(-1)?.data?.via, 'account');

    // Without the page's CSRF token nothing happens.
    const again = new FormBrowser(as.issuer);
    await signIn(as, again, 'rp-ok');
    const forged = await again.open('/account/security/sign-out', { method: 'POST', form: { csrf: 'guess' } });
    assert.equal(forged.status, 403);
    assert.equal(/<code id="error-code">([^<]+)<\/code>/.exec(forged.html)?.[1], 'invalid_request');
    assert.equal((await auditOf(as, 'account.refused')).at(-1)?.reason, 'POST /account/security/sign-out: CSRF token mismatch');
    assert.equal(await signedIn(again), true);
  });

  it("an admin's sessions.revoke notifies, for one session or all", async () => {
    reset();
    const first = new FormBrowser(as.issuer);
    const one = claimsOf((await signIn(as, first, 'rp-ok')).id_token);
    const second = new FormBrowser(as.issuer);
    const two = claimsOf((await signIn(as, second, 'rp-other')).id_token);
    const single = await invoke(as.ctx, admin, ops.signOut, { username: 'demo', sid: String(one.sid) });
    assert.deepEqual(single, { signed_out: 1, revoked_grants: 1 });
    await logoutDeliveriesSettled(as.ctx);
    assert.deepEqual(ok.tokens().map((t) => claimsOf(t).sid), [one.sid]);
    assert.equal(other.received.length, 0);
    assert.equal(await signedIn(second), true);

    await invoke(as.ctx, admin, ops.signOut, { username: 'demo' });
    await logoutDeliveriesSettled(as.ctx);
    assert.ok(other.tokens().some((t) => claimsOf(t).sid === two.sid));
    assert.equal(await signedIn(second), false);
    const done = (await auditOf(as, 'logout.completed')).at(-1);
    assert.deepEqual([done?.data?.via, done?.data?.by], ['admin', 'admin']);
  });

  it('an admin-created client (clients.create) may set logout metadata, checked as a configured client’s', async () => {
    reset();
    const created = await invoke(as.ctx, admin, ops.createClient, {
      client_id: 'rp-admin',
      token_endpoint_auth_method: 'none',
      redirect_uris: ['http://127.0.0.1:4000/callback'],
      post_logout_redirect_uris: ['http://127.0.0.1:4000/logged-out'],
      backchannel_logout_uri: ok.uri,
    });
    assert.deepEqual([created.post_logout_redirect_uris, created.backchannel_logout_uri], [['http://127.0.0.1:4000/logged-out'], ok.uri]);
    const browser = new FormBrowser(as.issuer);
    const tokens = await signIn(as, browser, 'rp-admin', 'openid');
    const page = await browser.open(`/logout?id_token_hint=${tokens.id_token}&post_logout_redirect_uri=${encodeURIComponent('http://127.0.0.1:4000/logged-out')}`);
    assert.equal(page.external, 'http://127.0.0.1:4000/logged-out');
    await logoutDeliveriesSettled(as.ctx);
    assert.deepEqual(ok.tokens().map((t) => claimsOf(t).aud), ['rp-admin']);
    await assert.rejects(invoke(as.ctx, admin, ops.updateClient, { id: 'rp-admin', backchannel_logout_uri: 'ftp://x/#y' }), {
      code: 'invalid_request',
      message: 'invalid input: client rp-admin: "ftp://x/#y" must be an absolute http or https URI without a fragment',
    });
    const [event] = (await auditOf(as, 'admin.clients.update')).slice(-1);
    assert.deepEqual([event?.outcome, event?.error], ['failure', 'invalid_request']);
    assert.equal(event?.reason, 'invalid input: client rp-admin: "ftp://x/#y" must be an absolute http or https URI without a fragment');
  });

  it('a new password (admin users.update) signs the user out everywhere and notifies, sessions already expired here included', async () => {
    reset();
    await invoke(as.ctx, admin, ops.createUser, { username: 'carol', password: 'correct horse battery', roles: [] });
    const carol = { username: 'carol', password: 'correct horse battery' };
    const demo = new FormBrowser(as.issuer);
    await signIn(as, demo, 'rp-ok', 'openid');
    const laptop = new FormBrowser(as.issuer);
    const old = claimsOf((await signIn(as, laptop, 'rp-other', 'openid', carol)).id_token);
    const phone = new FormBrowser(as.issuer);
    const current = claimsOf((await signIn(as, phone, 'rp-ok', 'openid', carol)).id_token);
    // The laptop's session expires here; rp-other's own session, and its grant, live on.
    await endSessions(as.ctx.cache, String(old.sub), String(old.sid));
    reset();

    await invoke(as.ctx, admin, ops.updateUser, { username: 'carol', password: 'another long passphrase' });
    await logoutDeliveriesSettled(as.ctx);
    assert.deepEqual(other.tokens().map((t) => [claimsOf(t).sub, claimsOf(t).sid]), [[old.sub, old.sid]]);
    assert.deepEqual(ok.tokens().map((t) => [claimsOf(t).sub, claimsOf(t).sid]), [[current.sub, current.sid]], 'only carol’s session, not demo’s');
    assert.equal(await signedIn(phone), false);
    assert.equal(await signedIn(demo), true, 'demo is not affected');
    const done = (await auditOf(as, 'logout.completed')).at(-1);
    assert.deepEqual([done?.sub, done?.data?.via, done?.data?.sessions, done?.data?.revoked_grants], [current.sub, 'password_change', 1, 2]);
  });
});

describe('back-channel logout to a self-registered client (SSRF guard)', () => {
  let as: TestAuthServer;
  let receiver: Receiver;
  before(async () => {
    receiver = await startReceiver([200]);
    as = await startLogoutServer([]);
  });
  after(async () => {
    await as?.close();
    await receiver?.close();
  });

  it('never posts to a non-public address for a client that registered itself', async () => {
    const url = new URL(receiver.uri);
    // https passes the registration rule; the address is what the guard refuses.
    const uri = `https://127.0.0.1:${url.port}${url.pathname}`;
    await as.store.clients.upsert({
      clientId: 'mc_self',
      source: 'dynamic',
      metadata: { redirect_uris: ['http://127.0.0.1:4000/callback'], token_endpoint_auth_method: 'none', grant_types: ['authorization_code'], response_types: ['code'], backchannel_logout_uri: uri },
      createdAt: Math.floor(Date.now() / 1000),
    });
    const browser = new FormBrowser(as.issuer);
    const tokens = await signIn(as, browser, 'mc_self', 'openid');
    await browser.open(`/logout?id_token_hint=${tokens.id_token}`);
    await logoutDeliveriesSettled(as.ctx);
    assert.equal(receiver.received.length, 0);
    const [failed] = (await auditOf(as, 'logout.backchannel_failed')).slice(-1);
    assert.equal(failed?.clientId, 'mc_self');
    assert.equal(failed?.reason, 'refused by the network guard: 127.0.0.1 resolves to the non-public address 127.0.0.1 (1 attempt)');
  });
});

describe('back-channel logout to a self-registered client on loopback (development)', () => {
  let as: TestAuthServer;
  let receiver: Receiver;
  before(async () => {
    receiver = await startReceiver([200]);
    as = await startLogoutServer([], { client_id_metadata_documents: { allow_loopback: true } });
  });
  after(async () => {
    await as?.close();
    await receiver?.close();
  });

  it('registers an http loopback URI when allow_loopback is on and delivers through the guarded fetch', async () => {
    const res = await fetch(`${as.issuer}/register`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ redirect_uris: ['http://127.0.0.1:4000/callback'], token_endpoint_auth_method: 'none', backchannel_logout_uri: receiver.uri, post_logout_redirect_uris: ['http://127.0.0.1:4000/logged-out'] }),
    });
    assert.equal(res.status, 201);
    const { client_id: clientId } = (await res.json()) as { client_id: string };
    const browser = new FormBrowser(as.issuer);
    const tokens = await signIn(as, browser, clientId, 'openid');
    const page = await browser.open(`/logout?id_token_hint=${tokens.id_token}&post_logout_redirect_uri=${encodeURIComponent('http://127.0.0.1:4000/logged-out')}`);
    assert.equal(page.external, 'http://127.0.0.1:4000/logged-out');
    await logoutDeliveriesSettled(as.ctx);
    assert.equal(receiver.received.length, 1);
    assert.equal(headerOf(receiver.tokens()[0]!).typ, 'logout+jwt');
    assert.equal(claimsOf(receiver.tokens()[0]!).aud, clientId);
  });
});
