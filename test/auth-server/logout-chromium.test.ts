/**
 * Signing out in a real browser: an RP sends Chromium to /logout without an ID token hint, the
 * confirmation page asks "Sign out of Mandate?", "Sign out" ends the session, the RP's back-channel
 * endpoint gets its logout token and the browser lands on the registered post-logout URI with
 * state. A cross-site page that GETs /logout signs nobody out. The account page's "Sign out" does
 * the same from the user's side. With SCREENSHOTS=1 the confirmation page is written to
 * docs/screenshots/.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { Browser } from 'playwright-core';
import { startCallbackServer, type CallbackServer } from '../helpers/callback-server.ts';
import { authorizeInChromium, launchChromium, navigating, shootLightAndDark } from '../helpers/chromium.ts';
import { pkcePair, type TestAuthServer } from '../helpers/auth-server.ts';
import { needsChromium } from '../helpers/services.ts';
import { logoutDeliveriesSettled } from '../../src/auth-server/backchannel-logout.ts';
import { claimsOf, startLogoutServer, startReceiver, type Receiver } from './logout-fixture.ts';

describe('signing out in Chromium', needsChromium(), () => {
  let as: TestAuthServer;
  let browser: Browser;
  let callback: CallbackServer;
  let loggedOut: CallbackServer;
  let receiver: Receiver;
  before(async () => {
    [callback, loggedOut, receiver] = await Promise.all([startCallbackServer(), startCallbackServer('/logged-out'), startReceiver([200])]);
    as = await startLogoutServer([
      {
        client_id: 'web-rp',
        client_name: 'Notes web app',
        token_endpoint_auth_method: 'none',
        redirect_uris: [callback.redirectUri],
        post_logout_redirect_uris: [`${loggedOut.origin}/logged-out`],
        backchannel_logout_uri: receiver.uri,
      },
    ]);
    browser = await launchChromium();
  });
  after(async () => {
    await browser?.close();
    await as?.close();
    await Promise.all([callback?.close(), loggedOut?.close(), receiver?.close()]);
  });

  const authorizeUrl = () => {
    const url = new URL(`${as.issuer}/authorize`);
    url.search = new URLSearchParams({ response_type: 'code', client_id: 'web-rp', redirect_uri: callback.redirectUri, code_challenge: pkcePair().challenge, code_challenge_method: 'S256', scope: 'openid', state: 'in' }).toString();
    return url.href;
  };

  /** The browser's session id (sid) as the server knows it, from the grant its sign-in made. */
  const sidOfLastGrant = async () => (await as.store.grants.listGrantsBySub((await as.store.users.findByUsername('demo'))!.sub))[0]!.sid;

  it('confirms a logout without a hint, sends the logout token, returns with state; a cross-site GET signs nobody out', async () => {
    const context = await browser.newContext({ viewport: { width: 520, height: 720 } });
    const page = await context.newPage();
    try {
      await authorizeInChromium(page, authorizeUrl(), { callback });
      const sid = await sidOfLastGrant();

      // Another site makes the browser GET /logout (an image, a link): only the page is shown.
      const evil = await context.newPage();
      await evil.setContent(`<img src="${as.issuer}/logout">`);
      await evil.waitForLoadState('networkidle');
      await evil.close();
      await navigating(page, () => page.goto(`${as.issuer}/account/security`));
      assert.equal(await page.title(), 'Account security · Mandate', 'still signed in');

      const logout = `${as.issuer}/logout?client_id=web-rp&post_logout_redirect_uri=${encodeURIComponent(`${loggedOut.origin}/logged-out`)}&state=out-1`;
      await navigating(page, () => page.goto(logout));
      assert.equal(await page.title(), 'Sign out · Mandate');
      assert.equal(await page.locator('#logout-heading').innerText(), 'Sign out of Mandate?');
      assert.match(await page.locator('#logout-client').innerText(), /Notes web app asks to sign you out/);
      await shootLightAndDark(page, 'logout-confirm');
      await navigating(page, () => page.getByRole('button', { name: 'Sign out' }).click());
      const back = await loggedOut.next();
      assert.equal(back.searchParams.get('state'), 'out-1');
      assert.equal(new URL(page.url()).pathname, '/logged-out');

      await logoutDeliveriesSettled(as.ctx);
      assert.equal(receiver.received.length, 1);
      const token = claimsOf(receiver.tokens()[0]!);
      assert.deepEqual([token.aud, token.sid], ['web-rp', sid]);

      await navigating(page, () => page.goto(`${as.issuer}/account/security`));
      assert.equal(await page.title(), 'Sign in · Mandate', 'signed out: the account page asks to sign in');
    } finally {
      await context.close();
    }
  });

  it("the account page's Sign out button ends the session and notifies", async () => {
    receiver.received.splice(0);
    const context = await browser.newContext();
    const page = await context.newPage();
    try {
      await authorizeInChromium(page, authorizeUrl(), { callback });
      const sid = await sidOfLastGrant();
      await navigating(page, () => page.goto(`${as.issuer}/account/security`));
      await navigating(page, () => page.getByRole('button', { name: 'Sign out' }).click());
      assert.equal(await page.locator('#logout-done').innerText(), 'You are signed out of Mandate');
      await logoutDeliveriesSettled(as.ctx);
      assert.deepEqual(receiver.tokens().map((t) => claimsOf(t).sid), [sid]);
      const cookies = await context.cookies(as.issuer);
      assert.equal(cookies.find((c) => c.name === 'mandate_session'), undefined, 'the session cookie is gone');
    } finally {
      await context.close();
    }
  });
});
