/**
 * Signing out of a browser reaches every client it signed in to, also when the browser signed in
 * again in between: a second sign-in (prompt=login) continues the browser's session (same sid),
 * and with "Keep me signed in" offered, a session left behind when the session cookie was lost is
 * known by the browser's device cookie and ends with the browser's sign-out.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { FormBrowser } from '../helpers/browser-driver.ts';
import { pkcePair, postForm, type TestAuthServer } from '../helpers/auth-server.ts';
import { logoutDeliveriesSettled } from '../../src/auth-server/backchannel-logout.ts';
import { userSessions } from '../../src/auth-server/session-index.ts';
import { CALLBACK, auditOf, claimsOf, rpClient, signIn, startLogoutServer, startReceiver, type Receiver } from './logout-fixture.ts';

/** Signs in for `clientId` with `prompt` (the password asked again for `login`); the ID token's claims. */
async function signInAgain(as: TestAuthServer, browser: FormBrowser, clientId: string, prompt: string) {
  const { verifier, challenge } = pkcePair();
  const url = new URL(`${as.issuer}/authorize`);
  url.search = new URLSearchParams({ response_type: 'code', client_id: clientId, redirect_uri: CALLBACK, code_challenge: challenge, code_challenge_method: 'S256', scope: 'openid', prompt }).toString();
  const code = (await browser.authorize(url.href)).searchParams.get('code');
  assert.ok(code);
  const token = await postForm(`${as.issuer}/token`, { grant_type: 'authorization_code', code, code_verifier: verifier, redirect_uri: CALLBACK, client_id: clientId });
  assert.equal(token.status, 200, token.text);
  return claimsOf((token.json as { id_token: string }).id_token);
}

async function accountSignOut(browser: FormBrowser) {
  const page = await browser.open('/account/security');
  const csrf = /name="csrf" value="([^"]+)"/.exec(page.html)?.[1];
  assert.ok(csrf, page.html.slice(0, 500));
  const done = await browser.open('/account/security/sign-out', { method: 'POST', form: { csrf } });
  assert.match(done.html, /You are signed out of Mandate/);
}

/** What a person does in the browser's developer tools: deletes one cookie. */
const deleteCookie = (browser: FormBrowser, name: string) => (browser as unknown as { cookies: Map<string, string> }).cookies.delete(name);

describe('signing out of a browser that signed in more than once', () => {
  let as: TestAuthServer;
  let first: Receiver;
  let second: Receiver;
  before(async () => {
    [first, second] = await Promise.all([startReceiver([200]), startReceiver([200])]);
    as = await startLogoutServer([rpClient('rp-first', { backchannel_logout_uri: first.uri }), rpClient('rp-second', { backchannel_logout_uri: second.uri })], { remember_me: { enabled: true } });
  });
  after(async () => {
    await as?.close();
    await Promise.all([first, second].map((r) => r?.close()));
  });
  const reset = () => [first, second].forEach((r) => r.received.splice(0));

  it('a second sign-in (prompt=login) continues the session: same sid, one session, and its sign-out tells both clients', async () => {
    reset();
    const browser = new FormBrowser(as.issuer);
    const one = claimsOf((await signIn(as, browser, 'rp-first')).id_token);
    const two = await signInAgain(as, browser, 'rp-second', 'login');
    assert.equal(two.sid, one.sid);
    assert.ok((two.auth_time as number) >= (one.auth_time as number));
    assert.equal((await userSessions(as.ctx.cache, one.sub as string)).length, 1, 'the first cookie value no longer opens a session');

    await accountSignOut(browser);
    await logoutDeliveriesSettled(as.ctx);
    assert.deepEqual(first.tokens().map((t) => claimsOf(t).sid), [one.sid]);
    assert.deepEqual(second.tokens().map((t) => claimsOf(t).sid), [one.sid]);
  });

  it('a session left behind when its cookie was deleted ends with the browser\'s sign-out (same device cookie), and its client is told', async () => {
    reset();
    const browser = new FormBrowser(as.issuer);
    const one = claimsOf((await signIn(as, browser, 'rp-first')).id_token);
    deleteCookie(browser, 'mandate_session');
    const two = claimsOf((await signIn(as, browser, 'rp-second')).id_token);
    assert.notEqual(two.sid, one.sid, 'the AS could not know the browser: a new session');
    assert.equal((await userSessions(as.ctx.cache, one.sub as string)).length, 2);

    await accountSignOut(browser);
    await logoutDeliveriesSettled(as.ctx);
    assert.deepEqual(first.tokens().map((t) => claimsOf(t).sid), [one.sid]);
    assert.deepEqual(second.tokens().map((t) => claimsOf(t).sid), [two.sid]);
    assert.equal((await userSessions(as.ctx.cache, one.sub as string)).length, 0);
    const completed = (await auditOf(as, 'logout.completed')).at(-1);
    assert.equal(completed?.data?.sessions, 2);
    assert.deepEqual(new Set(completed?.data?.sids as string[]), new Set([one.sid, two.sid]));
  });

  it('RP-initiated logout with the ID token of the session left behind signs the browser out without asking, ending both', async () => {
    reset();
    const browser = new FormBrowser(as.issuer);
    const tokens = await signIn(as, browser, 'rp-first');
    const one = claimsOf(tokens.id_token);
    deleteCookie(browser, 'mandate_session');
    const two = claimsOf((await signIn(as, browser, 'rp-second')).id_token);
    const page = await browser.open(`/logout?id_token_hint=${tokens.id_token}`);
    assert.match(page.html, /You are signed out/);
    assert.doesNotMatch(page.html, /Stay signed in/);
    await logoutDeliveriesSettled(as.ctx);
    assert.deepEqual(first.tokens().map((t) => claimsOf(t).sid), [one.sid]);
    assert.deepEqual(second.tokens().map((t) => claimsOf(t).sid), [two.sid]);
    const completed = (await auditOf(as, 'logout.completed')).at(-1);
    assert.equal(completed?.data?.via, 'rp_logout');
    assert.equal(completed?.data?.confirmed, false);
    assert.equal(completed?.data?.sessions, 2);
  });

  it("another browser's session of the same user is left alone", async () => {
    reset();
    const mine = new FormBrowser(as.issuer);
    const theirs = new FormBrowser(as.issuer);
    const kept = claimsOf((await signIn(as, theirs, 'rp-first')).id_token);
    const ended = claimsOf((await signIn(as, mine, 'rp-second')).id_token);
    await accountSignOut(mine);
    await logoutDeliveriesSettled(as.ctx);
    assert.deepEqual(second.tokens().map((t) => claimsOf(t).sid), [ended.sid]);
    assert.equal(first.received.length, 0);
    assert.deepEqual((await userSessions(as.ctx.cache, kept.sub as string)).map((s) => s.sid), [kept.sid]);
  });
});
