import assert from 'node:assert/strict';
import { mkdirSync, writeFileSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import type { Browser as Chromium, BrowserContext, Page } from 'playwright-core';
import { authorizeInChromium, launchChromium, navigating } from '../helpers/chromium.ts';
import { startCallbackServer, type CallbackServer } from '../helpers/callback-server.ts';
import { DEMO_PASSWORD_HASH, pkcePair, startTestAuthServer, type TestAuthServer } from '../helpers/auth-server.ts';
import { needsChromium } from '../helpers/services.ts';
import { events, signals, subOf } from './remember-helpers.ts';

/**
 * "Keep me signed in" in Chromium: the box is on the login page, labelled and described; ticked,
 * the browser whose session cookie is gone (the session ended) comes back without the password
 * page; from another address (a trusted proxy's X-Forwarded-For) the password is asked and the
 * refusal audited. With SCREENSHOTS=1 the login page with the box is written to docs/screenshots.
 */
describe('remember me in Chromium', needsChromium(), () => {
  let as: TestAuthServer;
  let callback: CallbackServer;
  let chromium: Chromium;
  before(async () => {
    callback = await startCallbackServer();
    as = await startTestAuthServer({
      users: ['demo', 'ann'].map((username) => ({ username, name: 'Demo User', password_hash: DEMO_PASSWORD_HASH })),
      clients: [{ client_id: 'remember-app', client_name: 'Remember app', token_endpoint_auth_method: 'none', redirect_uris: [callback.redirectUri] }],
      trusted_proxies: ['127.0.0.1', '::1'],
      remember_me: { enabled: true },
    });
    chromium = await launchChromium();
  });
  after(async () => {
    await chromium?.close();
    await as?.close();
    await callback?.close();
  });

  const authorizeUrl = () =>
    `${as.issuer}/authorize?${new URLSearchParams({
      response_type: 'code',
      client_id: 'remember-app',
      redirect_uri: callback.redirectUri,
      code_challenge: pkcePair().challenge,
      code_challenge_method: 'S256',
      resource: as.resource,
      scope: 'mcp:read',
      state: 'chromium',
    })}`;

  /** A light picture of the page, written to docs/screenshots with SCREENSHOTS=1. */
  const shoot = async (page: Page, name: string) => {
    await page.emulateMedia({ colorScheme: 'light' });
    const png = await page.screenshot({ fullPage: true });
    assert.ok(png.length > 3000, 'a real picture');
    if (process.env.SCREENSHOTS === '1') {
      mkdirSync('docs/screenshots', { recursive: true });
      writeFileSync(`docs/screenshots/${name}.png`, png);
    }
  };

  /** Ticks the box, signs in and allows; returns the context (a browser profile). */
  const signInRemembered = async (context: BrowserContext, username: string, screenshot?: string) => {
    const page = await context.newPage();
    await navigating(page, () => page.goto(authorizeUrl()));
    const box = page.getByRole('checkbox', { name: 'Keep me signed in' });
    assert.equal(await box.count(), 1, 'the box, found by its label');
    assert.equal(await box.isChecked(), false, 'unticked by default');
    assert.match((await page.locator('#remember').getAttribute('aria-describedby')) ?? '', /remember-hint/);
    assert.match(await page.locator('#remember-hint').innerText(), /Only on a device you do not share/);
    await page.getByLabel('Username').fill(username);
    await page.getByLabel('Password').fill('demo');
    await box.check();
    if (screenshot) await shoot(page, screenshot);
    await navigating(page, () => page.getByRole('button', { name: 'Sign in' }).click());
    await navigating(page, () => page.getByRole('button', { name: 'Allow' }).click());
    assert.ok(page.url().startsWith(callback.redirectUri), `back at the client: ${page.url()}`);
    await callback.expect(page.url());
    await page.close();
    const cookies = await context.cookies(as.issuer);
    const remember = cookies.find((c) => c.name === 'mandate_remember');
    assert.ok(remember, 'the remember cookie');
    assert.deepEqual([remember.httpOnly, remember.sameSite, remember.path], [true, 'Lax', '/']);
    assert.ok(remember.expires > Date.now() / 1000 + 29 * 86_400, 'persistent, for the lifetime');
  };

  /** The session ended (its 8 hours passed): its cookie is gone, the device and remember cookies stay. */
  const dropSession = (context: BrowserContext) => context.clearCookies({ name: 'mandate_session' });

  it('low risk: ticked, signed in, session cookie cleared, back at the client without the password page', async () => {
    const context = await chromium.newContext({ extraHTTPHeaders: { 'x-forwarded-for': '203.0.113.5' } });
    try {
      await signInRemembered(context, 'demo', 'login-remember');
      await dropSession(context);
      const page = await context.newPage();
      const result = await authorizeInChromium(page, authorizeUrl(), { callback });
      assert.deepEqual(result.steps, [], 'no login page, no consent page');
      assert.ok(result.redirect.searchParams.get('code'));
      const [used] = await events(as, 'remember_me.used', await subOf(as, 'demo'));
      assert.equal(used?.data?.level, 'low');
      assert.equal(signals(used)?.user_agent, 'Chrome on Linux');

      // The account page lists this browser; "Forget" is a button named after it.
      await navigating(page, () => page.goto(`${as.issuer}/account/security`));
      const forget = page.getByRole('button', { name: 'Forget: Chrome on Linux' });
      assert.equal(await forget.count(), 1);
      assert.match(await page.locator('#remembered li').innerText(), /Chrome on Linux\s+This browser/);
      await shoot(page, 'account-remembered');
      await navigating(page, () => forget.click());
      assert.equal(await page.getByRole('status').innerText(), 'The browser was forgotten: it will ask for your password.');
      assert.equal((await context.cookies(as.issuer)).some((c) => c.name === 'mandate_remember'), false);
    } finally {
      await context.close();
    }
  });

  it('another address: the cookie is deleted and the password page shows a neutral note; the password still works', async () => {
    const headers = { 'x-forwarded-for': '203.0.113.5' };
    const context = await chromium.newContext({ extraHTTPHeaders: headers });
    try {
      await signInRemembered(context, 'ann');
      await dropSession(context);
      await context.setExtraHTTPHeaders({ 'x-forwarded-for': '198.51.100.7' });
      const page = await context.newPage();
      await navigating(page, () => page.goto(authorizeUrl()));
      assert.equal(await page.getByLabel('Password').count(), 1, 'the password page');
      assert.equal(await page.getByRole('status').innerText(), 'Please sign in again.');
      assert.equal((await context.cookies(as.issuer)).some((c) => c.name === 'mandate_remember'), false, 'cookie deleted');
      const [refused] = await events(as, 'remember_me.refused', await subOf(as, 'ann'));
      assert.equal(refused?.reason, 'risk medium: address_changed');
      assert.equal(signals(refused)?.address_prefix, '198.51.100.0/24');
      const result = await authorizeInChromium(page, authorizeUrl(), { callback, username: 'ann' });
      assert.deepEqual(result.steps, ['login']);
    } finally {
      await context.close();
    }
  });
});
