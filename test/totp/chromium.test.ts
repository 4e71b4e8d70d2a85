import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { Browser } from 'playwright-core';
import { Secret, TOTP } from 'otpauth';
import { launchChromium, navigating, shootLightAndDark } from '../helpers/chromium.ts';
import { needsChromium } from '../helpers/services.ts';
import type { TestAuthServer } from '../helpers/auth-server.ts';
import { startPagesServer } from '../pages/fixture.ts';

/**
 * The account page in a real browser: sign in and come back, set up an authenticator app (the key
 * read off the page, the code computed as an app would), confirm, remove. With SCREENSHOTS=1 the
 * setup and enrolled states are written to docs/screenshots/ (docs/totp.md shows them).
 */
const PRIMARY = 'rgb(47, 91, 234)'; // the fixture's branding.primary_color

describe('account security page in Chromium', needsChromium(), () => {
  let as: TestAuthServer;
  let browser: Browser;
  before(async () => {
    as = await startPagesServer('http://127.0.0.1:9/callback');
    browser = await launchChromium();
  });
  after(async () => {
    await browser?.close();
    await as?.close();
  });

  it('signs in, sets up, leaves, starts again, refuses a wrong code, confirms, removes with a code; no script runs', async () => {
    const context = await browser.newContext({ viewport: { width: 520, height: 760 }, deviceScaleFactor: 1 });
    const page = await context.newPage();
    const dialogs: string[] = [];
    page.on('dialog', (dialog) => {
      dialogs.push(dialog.message());
      void dialog.dismiss();
    });
    try {
      const response = await page.goto(`${as.issuer}/account/security`);
      assert.ok(response);
      assert.equal(await page.title(), 'Sign in · Mandate');
      assert.match(await page.locator('main').innerText(), /to continue to Mandate\s+Verified/);
      await page.getByLabel('Username').fill('demo');
      await page.getByLabel('Password').fill('demo');
      await navigating(page, () => page.getByRole('button', { name: 'Sign in' }).click());
      assert.equal(new URL(page.url()).pathname, '/account/security');
      assert.equal(await page.title(), 'Account security · Mandate');
      assert.equal(await page.locator('#totp-status').innerText(), 'Not set up');
      assert.equal(await page.getByRole('button', { name: 'Set up' }).evaluate((el) => getComputedStyle(el).backgroundColor), PRIMARY);
      await shootLightAndDark(page, 'account-security');

      await page.getByLabel('Your password, to confirm it is you').fill('demo');
      await navigating(page, () => page.getByRole('button', { name: 'Set up' }).click());
      const abandoned = await page.locator('#totp-secret').innerText();
      // Coming back later: the key is not shown again, the setup starts again with the password.
      await navigating(page, () => page.goto(`${as.issuer}/account/security`));
      assert.equal(await page.locator('#totp-secret').count(), 0, 'the key is shown once');
      assert.match(await page.locator('#totp-unfinished').innerText(), /^Setup not finished: start again\./);
      await shootLightAndDark(page, 'totp-unfinished');
      await page.getByLabel('Your password, to confirm it is you').fill('demo');
      await navigating(page, () => page.getByRole('button', { name: 'Start again' }).click());
      const grouped = await page.locator('#totp-secret').innerText();
      assert.match(grouped, /^([A-Z2-7]{4} )+[A-Z2-7]{1,4}$/);
      assert.notEqual(grouped, abandoned, 'a new key');
      const secret = grouped.replace(/ /g, '');
      assert.match((await page.locator('#totp-link').getAttribute('href')) ?? '', /^otpauth:\/\/totp\/Mandate:demo\?/);
      assert.ok(await page.getByLabel('Code from the app').isVisible());
      const qr = await page.locator('#totp-qr svg').boundingBox();
      assert.ok(qr && qr.width >= 170 && Math.abs(qr.width - qr.height) < 1, 'a square QR code is shown');
      // The long otpauth URI wraps inside the card instead of widening the page.
      const overflow = await page.evaluate(() => document.documentElement.scrollWidth - document.documentElement.clientWidth);
      assert.ok(overflow <= 0, `no horizontal scrolling (${overflow}px)`);
      await shootLightAndDark(page, 'totp-setup');

      const code = (at = Date.now()) => TOTP.generate({ secret: Secret.fromBase32(secret), algorithm: 'SHA1', digits: 6, period: 30, timestamp: at });
      await page.getByLabel('Code from the app').fill(code() === '000000' ? '111111' : '000000');
      await navigating(page, () => page.getByRole('button', { name: 'Confirm' }).click());
      assert.match(await page.getByRole('alert').innerText(), /not right/);
      assert.equal(await page.locator('#totp-secret').count(), 0, 'a retry does not show the key again');

      await page.getByLabel('Code from the app').fill(code());
      await navigating(page, () => page.getByRole('button', { name: 'Confirm' }).click());
      assert.equal(await page.locator('#account-notice').innerText(), 'Your authenticator app is set up.');
      assert.match(await page.locator('#totp-status').innerText(), /^On since \d{4}-\d{2}-\d{2}$/);
      assert.equal(await page.locator('#totp-secret').count(), 0, 'the key is not shown again');
      await shootLightAndDark(page, 'totp-enrolled');

      assert.equal(await page.getByLabel('Password').count(), 0, 'no password removes the app');
      assert.match(await page.locator('#totp-lost').innerText(), /administrator can reset/);
      await page.getByLabel('Current code from the app').fill(code(Date.now() + 30_000));
      await navigating(page, () => page.getByRole('button', { name: 'Remove' }).click());
      assert.equal(await page.locator('#account-notice').innerText(), 'The authenticator app was removed.');
      assert.equal(await page.locator('#totp-status').innerText(), 'Not set up');
      assert.deepEqual(dialogs, []);
    } finally {
      await context.close();
    }
  });
});
