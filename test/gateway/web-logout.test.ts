import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { SignJWT, generateKeyPair } from 'jose';
import type { Browser, BrowserContext } from 'playwright-core';
import { signJwt } from '../../src/core/jwt.ts';
import { launchChromium } from '../helpers/chromium.ts';
import { needsChromium } from '../helpers/services.ts';
import { signInThroughGateway, startWebSso, type WebSso } from '../helpers/web-sso.ts';

const EVENT = 'http://schemas.openid.net/event/backchannel-logout';

/**
 * OpenID Connect Back-Channel Logout 1.0 at the gateway's web route: logout tokens signed with the
 * test AS's own keys (as the AS's back-channel sender signs them), checked per §2.6, ending the
 * sessions they name (§2.7) — and the access token refresh that keeps a session going.
 */
describe('gateway web route: back-channel logout and token refresh (Chromium)', needsChromium(), () => {
  let sso: WebSso;
  let browser: Browser;

  before(async () => {
    // Access tokens of 2 s, a grant of 6 s: the first refresh succeeds, a later one finds the grant expired.
    sso = await startWebSso({ as: { tokens: { access_token_ttl: 2, refresh_token_ttl: 6 } as never }, route: { session: { refresh_before_seconds: 0 } } });
    browser = await launchChromium();
  });
  after(async () => {
    await browser?.close();
    await sso?.close();
  });

  const signedIn = async (username = 'demo'): Promise<{ context: BrowserContext; sid: string; sub: string }> => {
    const context = await browser.newContext();
    const page = await context.newPage();
    await signInThroughGateway(page, sso.start, sso.gatewayUrl, username);
    const asCookie = (await context.cookies(sso.as.issuer)).find((cookie) => cookie.name === 'mandate_session')!;
    const session = (await sso.as.ctx.cache.get<{ sid: string; sub: string }>(`session:${asCookie.value}`))!;
    return { context, sid: session.sid, sub: session.sub };
  };
  /** The status of the start page for this browser: 200 signed in, 302 sent to sign in. */
  const status = async (context: BrowserContext) => (await context.request.get(sso.start, { maxRedirects: 0 })).status();
  const logoutToken = (claims: Record<string, unknown>, typ = 'logout+jwt') =>
    signJwt(sso.as.ctx.keys, { iss: sso.as.issuer, aud: 'web-app', iat: Math.floor(Date.now() / 1000), jti: crypto.randomUUID(), events: { [EVENT]: {} }, ...claims }, typ);
  const post = (token: string, url = `${sso.gatewayUrl}/app/backchannel-logout`) =>
    fetch(url, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: new URLSearchParams({ logout_token: token }) });
  const lastEvent = async () => (await sso.auditEvents()).filter((event) => event.path === '/app/backchannel-logout').at(-1)!;

  it('a logout token naming the AS session (sid) ends that session only; replaying it is refused', async () => {
    const one = await signedIn();
    const two = await signedIn();
    assert.equal(await status(one.context), 200);
    const token = await logoutToken({ sid: one.sid, sub: one.sub });
    const response = await post(token);
    assert.equal(response.status, 200);
    assert.equal(response.headers.get('cache-control'), 'no-store');
    assert.equal(await status(one.context), 302, 'the session of that sid has ended');
    assert.equal(await status(two.context), 200, 'another sign-in of the same person is untouched');
    const ended = await lastEvent();
    assert.equal(ended.web, 'backchannel_logout');
    assert.equal(ended.decision, 'allow');
    assert.equal(ended.reason, `ended 1 session(s) for sid ${one.sid}`);

    const replay = await post(token);
    assert.equal(replay.status, 400);
    assert.deepEqual(await replay.json(), { error: 'invalid_request', error_description: 'the logout token was refused' });
    const refused = await lastEvent();
    assert.equal(refused.rejection, 'logout_token_replayed');
    assert.match(String(refused.reason), /was already used/);
    await one.context.close();
    await two.context.close();
  });

  it('a logout token with only sub ends every session of that person', async () => {
    const one = await signedIn();
    const two = await signedIn();
    const other = await signedIn('admin');
    const response = await post(await logoutToken({ sub: one.sub }));
    assert.equal(response.status, 200);
    assert.equal(await status(one.context), 302);
    assert.equal(await status(two.context), 302);
    assert.equal(await status(other.context), 200, 'someone else stays signed in');
    // These two, and the second browser of the test above (still signed in as demo).
    assert.equal((await lastEvent()).reason, `ended 3 session(s) for sub ${one.sub}`);
    for (const { context } of [one, two, other]) await context.close();
  });

  it('refuses logout tokens that break Back-Channel Logout 1.0 §2.6, each with its audit reason', async () => {
    const who = await signedIn();
    const { privateKey } = await generateKeyPair('ES256');
    const now = Math.floor(Date.now() / 1000);
    const base = { iss: sso.as.issuer, aud: 'web-app', iat: now, jti: crypto.randomUUID(), sid: who.sid, events: { [EVENT]: {} } };
    const kid = (await sso.as.ctx.keys.current()).kid;
    const cases: [string, Promise<string>, RegExp][] = [
      ['typ JWT, not logout+jwt', logoutToken({ sid: who.sid }, 'JWT'), /typ/],
      ['a nonce', logoutToken({ sid: who.sid, nonce: 'n' }), /nonce/],
      ['another audience', logoutToken({ sid: who.sid, aud: 'someone-else' }), /aud/],
      ['another issuer', logoutToken({ sid: who.sid, iss: 'https://evil.example' }), /iss/],
      ['no events claim', logoutToken({ sid: who.sid, events: undefined }), /back-channel logout event/],
      ['neither sid nor sub', logoutToken({ sub: undefined }), /neither sub nor sid/],
      ['no jti', logoutToken({ sid: who.sid, jti: undefined }), /jti/],
      ['too old', logoutToken({ sid: who.sid, iat: now - 3600 }), /iat|too old|age/],
      ['signed by a key the AS does not have', new SignJWT(base).setProtectedHeader({ alg: 'ES256', typ: 'logout+jwt', kid }).sign(privateKey), /signature/],
    ];
    for (const [name, token, reason] of cases) {
      const response = await post(await token);
      assert.equal(response.status, 400, name);
      assert.equal(((await response.json()) as { error: string }).error, 'invalid_request', name);
      const event = await lastEvent();
      assert.equal(event.rejection, 'logout_token_invalid', name);
      assert.match(String(event.reason), reason, `${name}: ${String(event.reason)}`);
    }
    const get = await fetch(`${sso.gatewayUrl}/app/backchannel-logout`);
    assert.equal(get.status, 405);
    assert.equal(await status(who.context), 200, 'none of them ended the session');
    await who.context.close();
  });

  it('refreshes the access token before it expires; when the AS refuses, the person signs in again', async () => {
    const context = await browser.newContext();
    const page = await context.newPage();
    await signInThroughGateway(page, sso.start, sso.gatewayUrl);
    await new Promise((resolve) => setTimeout(resolve, 2_200));
    await page.reload();
    assert.equal(await page.locator('h1').first().innerText(), 'Signed in as Demo User', 'still signed in after the access token expired');
    const refreshed = (await sso.auditEvents()).filter((event) => event.web === 'refreshed');
    assert.ok(refreshed.length >= 1, 'the refresh is audited');
    assert.equal(refreshed.at(-1)!.decision, 'allow');
    // The grant (6 s) ends: the refresh is refused, the session ends, and the browser goes back to
    // the AS — which still has its own session, so the person comes back signed in, without a password.
    await new Promise((resolve) => setTimeout(resolve, 4_500));
    const steps = await signInThroughGateway(page, sso.start, sso.gatewayUrl);
    assert.ok(!steps.includes('login'), `no password asked: ${steps.join(', ')}`);
    assert.equal(await page.locator('h1').first().innerText(), 'Signed in as Demo User');
    const failed = (await sso.auditEvents()).find((event) => event.rejection === 'no_session' && String(event.reason).startsWith('refreshing the access token failed'));
    assert.ok(failed, 'the failed refresh is audited');
    await context.close();
  });
});
