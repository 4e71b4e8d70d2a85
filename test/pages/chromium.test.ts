import assert from 'node:assert/strict';
import { after, afterEach, before, beforeEach, describe, it } from 'node:test';
import type { Browser, BrowserContext, Page } from 'playwright-core';
import { startLoopbackSignIn } from '../../src/agent/oauth.ts';
import { postForm, startTestAuthServer, type TestAuthServer } from '../helpers/auth-server.ts';
import { startCallbackServer, type CallbackServer } from '../helpers/callback-server.ts';
import { launchChromium, navigating, shootLightAndDark } from '../helpers/chromium.ts';
import { needsChromium } from '../helpers/services.ts';
import { AGENT_RESOURCE, BANK, NOTES, authorization, redeem, selfRegistered, startPagesServer } from './fixture.ts';

/**
 * Every page a person meets, in a real browser (Chromium): it renders with the product's look,
 * Allow is the primary button, trust marks and high-risk scopes show, hostile names stay text,
 * and each page is photographed in light and dark. With SCREENSHOTS=1 the pictures are written
 * to docs/screenshots/ (the ones docs/pages.md shows); otherwise they are taken and checked only.
 */
const PRIMARY = 'rgb(47, 91, 234)'; // #2f5bea, the fixture's branding.primary_color
const PRIMARY_DARK = 'rgb(124, 155, 255)'; // #7c9bff

describe('pages in Chromium', needsChromium(), () => {
  let as: TestAuthServer;
  let callback: CallbackServer;
  let browser: Browser;
  let context: BrowserContext;
  let page: Page;
  /** Set by a dialog (alert): no page may run script. */
  let dialogs: string[];

  before(async () => {
    callback = await startCallbackServer();
    as = await startPagesServer(callback.redirectUri);
    browser = await launchChromium();
  });
  after(async () => {
    await browser?.close();
    await as?.close();
    await callback?.close();
  });
  beforeEach(async () => {
    context = await browser.newContext({ viewport: { width: 520, height: 760 }, deviceScaleFactor: 1 });
    page = await context.newPage();
    dialogs = [];
    page.on('dialog', (dialog) => {
      dialogs.push(dialog.message());
      void dialog.dismiss();
    });
  });
  afterEach(async () => context?.close());

  const shoot = (name: string) => shootLightAndDark(page, `${name}`);
  const styleOf = (selector: string, property: string) => page.locator(selector).first().evaluate((el, p) => getComputedStyle(el).getPropertyValue(p), property);
  const signIn = async () => {
    await page.getByLabel('Username').fill('demo');
    await page.getByLabel('Password').fill('demo');
    await navigating(page, () => page.getByRole('button', { name: 'Sign in' }).click());
  };
  /** Allow is the filled primary button; Deny an outlined secondary one. */
  const assertAllowIsPrimary = async () => {
    const allow = page.getByRole('button', { name: 'Allow' });
    const deny = page.getByRole('button', { name: 'Deny' });
    assert.equal(await allow.getAttribute('class'), 'primary');
    assert.equal(await deny.getAttribute('class'), 'secondary');
    assert.equal(await allow.evaluate((el) => getComputedStyle(el).backgroundColor), PRIMARY);
    assert.equal(await allow.evaluate((el) => getComputedStyle(el).color), 'rgb(255, 255, 255)');
    assert.equal(await deny.evaluate((el) => getComputedStyle(el).backgroundColor), 'rgba(0, 0, 0, 0)', 'Deny is not filled');
    const [a, d] = [await allow.boundingBox(), await deny.boundingBox()];
    assert.ok(a && d && a.x > d.x, 'Allow sits on the right, where the eye ends');
  };

  it('login: product name, labelled inputs, a primary Sign in, the support link; no script runs', async () => {
    const auth = authorization(as, { clientId: 'notes-app', redirectUri: callback.redirectUri, resource: NOTES, scope: 'notes:read' });
    await navigating(page, () => page.goto(auth.url));
    assert.equal(await page.title(), 'Sign in · Mandate');
    assert.equal(await page.locator('#product-name').innerText(), 'Mandate');
    assert.ok(await page.getByRole('heading', { name: 'Sign in' }).isVisible());
    assert.match(await page.locator('main').innerText(), /to continue to Notes web app\s+Verified/);
    assert.equal(await styleOf('button.primary', 'background-color'), PRIMARY);
    assert.equal(await page.locator('#support-link').getAttribute('href'), 'mailto:support@example.com');
    assert.equal(await page.locator('#support-link').innerText(), 'Help');
    await shoot('login');
    await page.emulateMedia({ colorScheme: 'dark' });
    assert.equal(await styleOf('button.primary', 'background-color'), PRIMARY_DARK, 'branding.primary_color_dark in dark mode');
    await page.emulateMedia({ colorScheme: 'light' });
  });

  it('consent for a person (a verified app): names it, describes each scope, sums up; Allow is primary and returns a code', async () => {
    const auth = authorization(as, { clientId: 'notes-app', redirectUri: callback.redirectUri, resource: NOTES, scope: 'openid profile offline_access notes:read notes:write', state: 'user' });
    await navigating(page, () => page.goto(auth.url));
    await signIn();
    assert.equal(await page.locator('#client-name').first().innerText(), 'Notes web app');
    assert.equal(await page.locator('.badge.verified').first().innerText(), 'Verified');
    assert.equal(await page.locator('#resource-name').innerText(), 'Notes');
    const scopes = await page.locator('#scopes li').allInnerTexts();
    assert.deepEqual(
      scopes.map((s) => s.split('\n')[0]),
      ['Confirm who you are', 'See your name and profile', 'Stay connected when you are away (until you revoke it)', 'Read your notes', 'Create and change your notes'],
    );
    assert.equal(await page.locator('#summary').innerText(), 'If you allow, Notes web app can act for you at Notes with these 5 permissions.');
    await assertAllowIsPrimary();
    await shoot('consent-user');
    await navigating(page, () => page.getByRole('button', { name: 'Allow' }).click());
    const back = await callback.expect(page.url());
    assert.equal(back.searchParams.get('state'), 'user');
    assert.ok(back.searchParams.get('code'));
  });

  it('agreement then consent for an agent: full versioned text; the agent named once, the bank named, the high-risk scope marked', async () => {
    const auth = authorization(as, { clientId: 'sample-agent', redirectUri: callback.redirectUri, resource: AGENT_RESOURCE, scope: 'banking:read banking:transfer' });
    await navigating(page, () => page.goto(auth.url));
    await signIn();
    assert.equal(await page.locator('#agreement-name').innerText(), 'Digital assistant consent');
    assert.equal(await page.locator('#agreement-version').innerText(), 'Version 3');
    const text = await page.locator('#agreement-text').innerText();
    assert.match(text, /^I allow digital assistants[\s\S]*\n\n1\. An assistant acts only[\s\S]*3\. I can withdraw this agreement, or any assistant's access, at any time\.$/, 'every paragraph, line breaks kept');
    assert.equal(await page.getByRole('button', { name: 'Accept' }).getAttribute('class'), 'primary');
    assert.equal(await page.getByRole('button', { name: 'Decline' }).getAttribute('class'), 'secondary');
    await shoot('agreement');
    await navigating(page, () => page.getByRole('button', { name: 'Accept' }).click());

    assert.equal((await page.locator('#actor').innerText()).replace(/\s+/g, ' ').trim(), 'Sample agent AI agent sample-agent');
    assert.equal(await page.locator('#resource-name').innerText(), 'Example Bank');
    const transfer = page.locator('li[data-scope="banking:transfer"]');
    assert.equal(await transfer.getAttribute('class'), 'high');
    assert.match(await transfer.innerText(), /Move money from your account\s+High risk/);
    assert.notEqual(await transfer.evaluate((el) => getComputedStyle(el).backgroundColor), await page.locator('li[data-scope="banking:read"]').evaluate((el) => getComputedStyle(el).backgroundColor), 'it stands out');
    assert.equal(await page.locator('input[name=high_risk]').count(), 0, 'a configured agent needs no tick');
    assert.match(await page.locator('#summary').innerText(), /^If you allow, Sample agent can act for you at Example Bank with these 2 permissions, including one that is high risk\.$/);
    await assertAllowIsPrimary();
    await shoot('consent-agent');
  });

  it('consent for a self-registered client: "unverified", its name quoted, the high-risk scope unticked; Allow alone leaves it out', async () => {
    const clientId = await selfRegistered(as, callback.redirectUri, 'MCP Inspector');
    const auth = authorization(as, { clientId, redirectUri: callback.redirectUri, resource: BANK, scope: 'banking:read banking:transfer' });
    await navigating(page, () => page.goto(auth.url));
    await signIn();
    assert.match(await page.locator('h1').innerText(), /^Allow “MCP Inspector” Unverified to act for you\?$/);
    assert.ok(await page.locator('#client-name-unverified').isVisible());
    assert.match(await page.locator('#trust-note').innerText(), /registered itself/);
    const box = page.getByRole('checkbox', { name: 'Also allow this' });
    assert.equal(await box.isChecked(), false, 'never pre-checked');
    assert.match(await page.locator('#summary').innerText(), /with this permission\. High-risk permissions are left out unless you tick them\.$/);
    await assertAllowIsPrimary();
    await shoot('consent-unverified');
    await navigating(page, () => page.getByRole('button', { name: 'Allow' }).click());
    const back = await callback.expect(page.url());
    const token = await redeem(as, back.searchParams.get('code')!, auth.verifier, clientId, callback.redirectUri);
    assert.equal(token.json.scope, 'banking:read', 'no tick, no transfer');

    // Ticked in the browser: granted.
    const again = authorization(as, { clientId, redirectUri: callback.redirectUri, resource: BANK, scope: 'banking:read banking:transfer' });
    await navigating(page, () => page.goto(again.url));
    await page.getByRole('checkbox', { name: 'Also allow this' }).check();
    await navigating(page, () => page.getByRole('button', { name: 'Allow' }).click());
    const second = await redeem(as, (await callback.expect(page.url())).searchParams.get('code')!, again.verifier, clientId, callback.redirectUri);
    assert.equal(second.json.scope, 'banking:read banking:transfer');
  });

  it('a hostile client name shows as text: no element, no script, no dialog', async () => {
    const hostile = `<img src=x onerror="alert('img')"><script>alert('script')</script>Evil & Co`;
    const clientId = await selfRegistered(as, callback.redirectUri, hostile);
    await navigating(page, () => page.goto(authorization(as, { clientId, redirectUri: callback.redirectUri, resource: NOTES, scope: 'notes:read' }).url));
    assert.equal(await page.locator('#client-name').innerText(), hostile);
    await signIn();
    assert.equal(await page.locator('#client-name').innerText(), hostile);
    assert.equal(await page.locator('main img, main script').count(), 0);
    assert.deepEqual(dialogs, []);
  });

  it('device: enter the code, sign in and allow on the shared layout, then "Device connected"', async () => {
    const started = await postForm(`${as.issuer}/device_authorization`, { client_id: 'tv-app', resource: NOTES, scope: 'notes:read' });
    assert.equal(started.status, 200, started.text);
    await navigating(page, () => page.goto(`${as.issuer}/device`));
    assert.equal(await page.title(), 'Connect a device · Mandate');
    assert.equal(await styleOf('button.primary', 'background-color'), PRIMARY);
    await page.getByLabel('Code').fill(started.json.user_code as string);
    await shoot('device');
    await navigating(page, () => page.getByRole('button', { name: 'Continue' }).click());
    await signIn();
    assert.equal(await page.locator('#client-name').first().innerText(), 'Living-room TV');
    await assertAllowIsPrimary();
    await shoot('device-consent');
    await navigating(page, () => page.getByRole('button', { name: 'Allow' }).click());
    assert.equal(await page.locator('h1').innerText(), 'Device connected');
    await shoot('device-done');
  });

  it("the agent's callback page has the same look, inline and hash-allowed by its CSP, and needs nothing else", async () => {
    const requests: string[] = [];
    page.on('request', (request) => requests.push(request.url()));
    const signIn = await startLoopbackSignIn({ port: 0 });
    try {
      await page.goto(`${signIn.redirectUri}?code=abc&state=xyz`);
      assert.equal((await signIn.result).get('code'), 'abc');
      assert.equal(await page.locator('h1').innerText(), 'Signed in');
      assert.equal(await styleOf('main', 'border-top-left-radius'), '14px', 'the inline style is applied: its hash is in the CSP');
      assert.match((await page.locator('meta[http-equiv="Content-Security-Policy"]').getAttribute('content')) ?? '', /^default-src 'none'; style-src 'sha256-[A-Za-z0-9+/]+=*'/);
      await shoot('callback');
      assert.deepEqual(requests.filter((url) => !url.startsWith(signIn.redirectUri.replace(/\/callback$/, '/callback?'))).filter((url) => !url.endsWith('/favicon.ico')), []);
    } finally {
      signIn.close();
    }
    const failed = await startLoopbackSignIn({ port: 0 });
    try {
      await page.goto(`${failed.redirectUri}?error=access_denied&error_description=${encodeURIComponent('<b>no</b>')}`);
      await failed.result;
      assert.equal(await page.locator('h1').innerText(), 'Sign-in not completed');
    } finally {
      failed.close();
    }
  });

  it('branding: another name, a data: logo allowed by img-src, a light primary colour with dark text', async () => {
    const logo = `data:image/svg+xml;base64,${Buffer.from('<svg xmlns="http://www.w3.org/2000/svg" width="64" height="64"><rect width="64" height="64" rx="14" fill="#0a7"/></svg>').toString('base64')}`;
    const branded = await startTestAuthServer({
      branding: { product_name: 'Acme ID', logo_url: logo, primary_color: '#ffcc00' },
      clients: [{ client_id: 'web', client_name: 'Acme Web', token_endpoint_auth_method: 'none', redirect_uris: [callback.redirectUri] }],
    });
    try {
      const response = await page.goto(authorization(branded, { clientId: 'web', redirectUri: callback.redirectUri, resource: branded.resource, scope: 'mcp:read' }).url);
      assert.match((await response!.allHeaders())['content-security-policy'] ?? '', /; img-src data:;/);
      assert.equal(await page.title(), 'Sign in · Acme ID');
      assert.equal(await page.locator('#product-name').innerText(), 'Acme ID');
      const logoWidth = await page.locator('#brand img').evaluate((img) => (img as HTMLImageElement).naturalWidth);
      assert.equal(logoWidth, 64, 'the logo loaded under the CSP');
      assert.equal(await styleOf('button.primary', 'background-color'), 'rgb(255, 204, 0)');
      assert.equal(await styleOf('button.primary', 'color'), 'rgb(17, 17, 17)', 'dark text on a light primary colour');
      assert.equal(await page.locator('#support-link').count(), 0, 'no support link unless configured');
    } finally {
      await branded.close();
    }
  });
});
