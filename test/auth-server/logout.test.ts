/**
 * OpenID Connect RP-Initiated Logout 1.0 at /logout, black-box over HTTP: the metadata, an
 * openid-client (v6) end-session URL, the confirmation page when the ID token hint is missing or
 * not for this session, the grants a logout revokes, and every refusal (status, error code, audit
 * reason). Back-channel delivery is in backchannel.test.ts; the pages in Chromium in
 * logout-chromium.test.ts.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import * as client from 'openid-client';
import { SignJWT, generateKeyPair } from 'jose';
import { FormBrowser } from '../helpers/browser-driver.ts';
import { postForm, registerClient, startTestAuthServer, type TestAuthServer } from '../helpers/auth-server.ts';
import { signJwt } from '../../src/core/jwt.ts';
import { CALLBACK, LOGGED_OUT, auditOf, claimsOf, rpClient, signIn, signedIn, startLogoutServer } from './logout-fixture.ts';

const insecure = { execute: [client.allowInsecureRequests] };
const errorCode = (html: string) => /<code id="error-code">([^<]+)<\/code>/.exec(html)?.[1];

describe('RP-initiated logout (/logout)', () => {
  let as: TestAuthServer;
  before(async () => {
    as = await startLogoutServer([rpClient('rp-one'), rpClient('rp-two', { post_logout_redirect_uris: ['https://two.example.test/bye'] })]);
  });
  after(async () => as?.close());

  /** The last audit event of a type. */
  const lastAudit = async (type: string) => (await auditOf(as, type)).at(-1);

  /** Opens a logout URL and expects the refusal page: status, error code and the audit reason. */
  async function refused(url: string, expected: { status: number; code: string; reason: string | RegExp }, browser = new FormBrowser(as.issuer)) {
    const page = await browser.open(url);
    assert.equal(page.external, undefined, 'never a redirect');
    assert.equal(page.status, expected.status, page.html.slice(0, 300));
    assert.equal(errorCode(page.html), expected.code);
    const event = await lastAudit('logout.refused');
    assert.equal(event?.outcome, 'failure');
    assert.equal(event?.error, expected.code);
    if (typeof expected.reason === 'string') assert.equal(event?.reason, expected.reason);
    else assert.match(event?.reason ?? '', expected.reason);
  }

  it('is advertised in the metadata with back-channel logout', async () => {
    const metadata = (await (await fetch(`${as.issuer}/.well-known/openid-configuration`)).json()) as Record<string, unknown>;
    assert.equal(metadata.end_session_endpoint, `${as.issuer}/logout`);
    assert.equal(metadata.backchannel_logout_supported, true);
    assert.equal(metadata.backchannel_logout_session_supported, true);
  });

  it('signs out at once with openid-client’s end-session URL for this session, back to the registered URI with state', async () => {
    const browser = new FormBrowser(as.issuer);
    const tokens = await signIn(as, browser, 'rp-one');
    assert.ok(tokens.refresh_token, 'a refresh token without offline_access');
    const config = await client.discovery(new URL(as.issuer), 'rp-one', undefined, client.None(), insecure);
    const url = client.buildEndSessionUrl(config, { id_token_hint: tokens.id_token, post_logout_redirect_uri: LOGGED_OUT, state: 'bye-1', ui_locales: 'fr' });
    assert.equal(url.origin + url.pathname, `${as.issuer}/logout`);
    const page = await browser.open(url.href);
    assert.equal(page.status, 303);
    const back = new URL(page.external!);
    assert.equal(back.origin + back.pathname, LOGGED_OUT);
    assert.equal(back.searchParams.get('state'), 'bye-1');
    assert.equal(await signedIn(browser), false, 'the browser session ended');

    const done = await lastAudit('logout.completed');
    assert.equal(done?.clientId, 'rp-one');
    assert.equal(done?.sub, claimsOf(tokens.id_token).sub);
    assert.deepEqual({ via: done?.data?.via, sessions: done?.data?.sessions, confirmed: done?.data?.confirmed, revoked: done?.data?.revoked_grants }, { via: 'rp_logout', sessions: 1, confirmed: false, revoked: 1 });
    assert.deepEqual(done?.data?.sids, [claimsOf(tokens.id_token).sid]);
    // The grant made in the session, without offline_access, is revoked with its refresh token.
    const refresh = await postForm(`${as.issuer}/token`, { grant_type: 'refresh_token', refresh_token: tokens.refresh_token!, client_id: 'rp-one' });
    assert.equal(refresh.status, 400);
    assert.equal(refresh.json.error, 'invalid_grant');
  });

  it('keeps a grant holding offline_access (the user consented to access while away)', async () => {
    const browser = new FormBrowser(as.issuer);
    const tokens = await signIn(as, browser, 'rp-one', 'openid offline_access');
    const page = await browser.open(`${as.issuer}/logout?id_token_hint=${tokens.id_token}`);
    assert.equal(page.status, 200);
    assert.match(page.html, /You are signed out of Mandate/);
    assert.equal(await signedIn(browser), false);
    const refresh = await postForm(`${as.issuer}/token`, { grant_type: 'refresh_token', refresh_token: tokens.refresh_token!, client_id: 'rp-one' });
    assert.equal(refresh.status, 200, refresh.text);
  });

  it('accepts the RP-initiated request as a form POST, and an expired ID token hint', async () => {
    const browser = new FormBrowser(as.issuer);
    const tokens = await signIn(as, browser, 'rp-one');
    const claims = claimsOf(tokens.id_token);
    const now = Math.floor(Date.now() / 1000);
    const expired = await signJwt(as.ctx.keys, { ...claims, iat: now - 7200, exp: now - 3600 }, 'JWT');
    const page = await browser.open('/logout', { method: 'POST', form: { id_token_hint: expired, post_logout_redirect_uri: LOGGED_OUT, state: 'form' } });
    assert.equal(new URL(page.external!).searchParams.get('state'), 'form');
    assert.equal(await signedIn(browser), false);
  });

  it('asks for confirmation without a hint; "Sign out" then ends the session and goes back with state', async () => {
    const browser = new FormBrowser(as.issuer);
    await signIn(as, browser, 'rp-one');
    const page = await browser.open(`/logout?client_id=rp-one&post_logout_redirect_uri=${encodeURIComponent(LOGGED_OUT)}&state=c1`);
    assert.equal(page.status, 200);
    assert.match(page.html, /Sign out of Mandate\?/);
    assert.match(page.html, /App rp-one<\/strong> asks to sign you out/);
    assert.equal(await signedIn(browser), true, 'a GET alone signs nobody out');
    const done = await browser.submit(page, { decision: 'logout' });
    const back = new URL(done.external!);
    assert.equal(back.origin + back.pathname, LOGGED_OUT);
    assert.equal(back.searchParams.get('state'), 'c1');
    assert.equal(await signedIn(browser), false);
    assert.equal((await lastAudit('logout.completed'))?.data?.confirmed, true);
    // The page's request is single use.
    const again = await browser.submit(page, { decision: 'logout' });
    assert.equal(again.status, 400);
    assert.equal((await lastAudit('logout.refused'))?.reason, 'logout request unknown or expired');
  });

  it('asks for confirmation when the hint is for another session, and "Stay signed in" keeps the session', async () => {
    const other = new FormBrowser(as.issuer);
    const foreign = await signIn(as, other, 'rp-one');
    const browser = new FormBrowser(as.issuer);
    await signIn(as, browser, 'rp-one');
    const page = await browser.open(`/logout?id_token_hint=${foreign.id_token}`);
    assert.match(page.html, /Sign out of Mandate\?/);
    const stayed = await browser.submit(page, { decision: 'stay' });
    assert.match(stayed.html, /You are still signed in/);
    assert.equal(await signedIn(browser), true);
    assert.equal(await signedIn(other), true, 'the hint’s own session is not ended from another browser');
    assert.equal((await lastAudit('logout.cancelled'))?.outcome, 'success');
  });

  it('without a session, goes straight back to a registered URI (nothing to end)', async () => {
    const page = await new FormBrowser(as.issuer).open(`/logout?client_id=rp-two&post_logout_redirect_uri=${encodeURIComponent('https://two.example.test/bye')}&state=x`);
    assert.equal(page.external, 'https://two.example.test/bye?state=x');
    const event = await lastAudit('logout.completed');
    assert.deepEqual([event?.clientId, event?.data?.sessions], ['rp-two', 0]);
  });

  it('refuses a post_logout_redirect_uri that is not registered, or registered for another client: a page, never a redirect', async () => {
    await refused(`/logout?client_id=rp-one&post_logout_redirect_uri=${encodeURIComponent('https://evil.example/')}`, {
      status: 400,
      code: 'invalid_request',
      reason: 'post_logout_redirect_uri not registered: https://evil.example/',
    });
    await refused(`/logout?client_id=rp-one&post_logout_redirect_uri=${encodeURIComponent('https://two.example.test/bye')}`, {
      status: 400,
      code: 'invalid_request',
      reason: 'post_logout_redirect_uri not registered: https://two.example.test/bye',
    });
    // Exact match: another spelling of the registered URI is another URI.
    await refused(`/logout?client_id=rp-one&post_logout_redirect_uri=${encodeURIComponent(`${LOGGED_OUT}/`)}`, { status: 400, code: 'invalid_request', reason: `post_logout_redirect_uri not registered: ${LOGGED_OUT}/` });
    await refused(`/logout?post_logout_redirect_uri=${encodeURIComponent(LOGGED_OUT)}`, { status: 400, code: 'invalid_request', reason: 'post_logout_redirect_uri without client_id or id_token_hint' });
  });

  it('refuses an unknown client, a client_id that the hint is not for, and repeated parameters', async () => {
    await refused('/logout?client_id=nobody', { status: 400, code: 'invalid_client', reason: 'client_id=nobody' });
    const tokens = await signIn(as, new FormBrowser(as.issuer), 'rp-one');
    await refused(`/logout?client_id=rp-two&id_token_hint=${tokens.id_token}`, { status: 400, code: 'invalid_request', reason: 'client_id=rp-two; id_token_hint aud=rp-one' });
    await refused('/logout?state=a&state=b', { status: 400, code: 'invalid_request', reason: 'parameter state is repeated' });
  });

  it('refuses a hint that is not an ID token issued here: an access token, a forged or foreign-signed token, another issuer', async () => {
    const browser = new FormBrowser(as.issuer);
    const tokens = await signIn(as, browser, 'rp-one');
    await refused(`/logout?id_token_hint=${tokens.access_token}`, { status: 400, code: 'invalid_request', reason: 'id_token_hint: typ at+jwt' });
    const [h, p, s] = tokens.id_token.split('.');
    const tampered = `${h}.${Buffer.from(JSON.stringify({ ...claimsOf(tokens.id_token), sub: 'someone-else' })).toString('base64url')}.${s}`;
    assert.notEqual(tampered, `${h}.${p}.${s}`);
    await refused(`/logout?id_token_hint=${tampered}`, { status: 400, code: 'invalid_request', reason: 'id_token_hint: ERR_JWS_SIGNATURE_VERIFICATION_FAILED' });
    const { privateKey } = await generateKeyPair('ES256');
    const foreign = await new SignJWT(claimsOf(tokens.id_token)).setProtectedHeader({ alg: 'ES256', typ: 'JWT', kid: 'not-ours' }).sign(privateKey);
    await refused(`/logout?id_token_hint=${foreign}`, { status: 400, code: 'invalid_request', reason: 'id_token_hint: unknown signing key kid=not-ours' });
    const otherIssuer = await signJwt(as.ctx.keys, { ...claimsOf(tokens.id_token), iss: 'https://other.example' }, 'JWT');
    await refused(`/logout?id_token_hint=${otherIssuer}`, { status: 400, code: 'invalid_request', reason: 'id_token_hint: iss https://other.example' });
    await refused('/logout?id_token_hint=not-a-jwt', { status: 400, code: 'invalid_request', reason: 'id_token_hint: ERR_JWS_INVALID' });
    assert.equal(await signedIn(browser), true, 'no refusal signs anyone out');
  });

  it('refuses a confirmation without the page’s CSRF token, from another session, or without a session', async () => {
    const browser = new FormBrowser(as.issuer);
    await signIn(as, browser, 'rp-one');
    const page = await browser.open('/logout?client_id=rp-one');
    const request = /name="logout_request" value="([^"]+)"/.exec(page.html)![1]!;
    const forged = await browser.open('/logout/confirm', { method: 'POST', form: { logout_request: request, csrf: 'guess', decision: 'logout' } });
    assert.equal(forged.status, 403);
    assert.equal(errorCode(forged.html), 'invalid_request');
    assert.equal((await lastAudit('logout.refused'))?.reason, 'CSRF token mismatch');

    const csrf = /name="csrf" value="([^"]+)"/.exec(page.html)![1]!;
    const attacker = new FormBrowser(as.issuer);
    await signIn(as, attacker, 'rp-one');
    const otherSession = await attacker.open('/logout/confirm', { method: 'POST', form: { logout_request: request, csrf, decision: 'logout' } });
    assert.equal(otherSession.status, 403);
    assert.equal((await lastAudit('logout.refused'))?.reason, 'CSRF token mismatch');

    const cookieless = await new FormBrowser(as.issuer).open('/logout/confirm', { method: 'POST', form: { logout_request: request, csrf, decision: 'logout' } });
    assert.equal(cookieless.status, 403);
    assert.equal(errorCode(cookieless.html), 'invalid_request');
    assert.equal((await lastAudit('logout.refused'))?.reason, 'no signed-in session');
    assert.equal(await signedIn(browser), true);
    assert.equal(await signedIn(attacker), true);
  });
});

describe('logout metadata at registration (RFC 7591)', () => {
  let as: TestAuthServer;
  before(async () => {
    as = await startTestAuthServer();
  });
  after(async () => as?.close());
  const base = { redirect_uris: [CALLBACK], token_endpoint_auth_method: 'none' };

  it('keeps post_logout_redirect_uris and an https backchannel_logout_uri', async () => {
    const registered = await registerClient(as.issuer, { ...base, post_logout_redirect_uris: ['https://app.example.test/bye'], backchannel_logout_uri: 'https://app.example.test/bcl', backchannel_logout_session_required: true });
    assert.deepEqual(registered.post_logout_redirect_uris, ['https://app.example.test/bye']);
    assert.equal(registered.backchannel_logout_uri, 'https://app.example.test/bcl');
    assert.equal(registered.backchannel_logout_session_required, true);
  });

  it('refuses a backchannel_logout_uri over http (even loopback, unless allowed for development), with a fragment, and a bad post-logout URI', async () => {
    const cases: [Record<string, unknown>, string][] = [
      [{ backchannel_logout_uri: 'http://app.example.test/bcl' }, 'backchannel_logout_uri "http://app.example.test/bcl" must be an absolute https URI without a fragment'],
      [{ backchannel_logout_uri: 'http://127.0.0.1:9/bcl' }, 'backchannel_logout_uri "http://127.0.0.1:9/bcl" must be an absolute https URI without a fragment'],
      [{ backchannel_logout_uri: 'https://app.example.test/bcl#x' }, 'backchannel_logout_uri "https://app.example.test/bcl#x" must be an absolute https URI without a fragment'],
      [{ post_logout_redirect_uris: ['https://app.example.test/bye#x'] }, 'post_logout_redirect_uris: "https://app.example.test/bye#x" must not contain a fragment'],
      [{ post_logout_redirect_uris: ['http://app.example.test/bye'] }, 'post_logout_redirect_uris: "http://app.example.test/bye" must use https unless it is a loopback address'],
      [{ backchannel_logout_session_required: 'yes' }, 'backchannel_logout_session_required: Invalid input: expected boolean, received string'],
    ];
    for (const [metadata, reason] of cases) {
      const res = await fetch(`${as.issuer}/register`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ ...base, ...metadata }) });
      const body = (await res.json()) as { error: string; error_description: string };
      assert.equal(res.status, 400, JSON.stringify(metadata));
      assert.equal(body.error, 'invalid_client_metadata');
      assert.equal(body.error_description, reason);
      await as.ctx.audit.flush();
      const [event] = await as.store.audit.list({ type: 'register.refused', limit: 1 });
      assert.equal(event?.reason, reason);
    }
  });
});
