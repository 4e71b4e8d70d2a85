/**
 * The login and consent pages in a real browser (Chromium): what a user sees and can do, what the
 * client gets back, and the pages' defences (anti-framing headers, nothing loaded from elsewhere).
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, beforeEach, afterEach, describe, it } from 'node:test';
import type { Browser, BrowserContext, Page, Response } from 'playwright-core';
import { startCallbackServer, type CallbackServer } from '../helpers/callback-server.ts';
import { authorizeInChromium, launchChromium, navigating } from '../helpers/chromium.ts';
import { pkcePair, registerClient, startTestAuthServer, type TestAuthServer } from '../helpers/auth-server.ts';
import { needsChromium } from '../helpers/services.ts';

/** Markup characters in the name: it must be shown as text, never interpreted. */
const CLIENT_NAME = 'Pages & Co <Test App>';

describe('interaction pages in Chromium', needsChromium(), () => {
  let as: TestAuthServer;
  let callback: CallbackServer;
  let browser: Browser;
  let clientId: string;
  let context: BrowserContext;
  let page: Page;
  /** Every HTML document the authorization server sent to the page. */
  let documents: Response[];

  before(async () => {
    as = await startTestAuthServer();
    callback = await startCallbackServer();
    browser = await launchChromium();
    const client = await registerClient(as.issuer, {
      client_name: CLIENT_NAME,
      redirect_uris: [callback.redirectUri],
      token_endpoint_auth_method: 'none',
      grant_types: ['authorization_code'],
    });
    clientId = client.client_id;
  });
  after(async () => {
    await browser?.close();
    await callback?.close();
    await as?.close();
  });
  beforeEach(async () => {
    context = await browser.newContext();
    page = await context.newPage();
    documents = [];
    page.on('response', (response) => {
      if (response.request().resourceType() === 'document' && response.url().startsWith(`${as.issuer}/`)) documents.push(response);
    });
  });
  afterEach(async () => context?.close());

  const authorizationUrl = (state = randomBytes(8).toString('hex')) => {
    const url = new URL(`${as.issuer}/authorize`);
    url.search = new URLSearchParams({
      response_type: 'code',
      client_id: clientId,
      redirect_uri: callback.redirectUri,
      code_challenge: pkcePair().challenge,
      code_challenge_method: 'S256',
      state,
      scope: 'mcp:read mcp:write',
      resource: as.resource,
    }).toString();
    return url.href;
  };

  const signIn = async (password = 'demo') => {
    await page.getByLabel('Username').fill('demo');
    await page.getByLabel('Password').fill(password);
    await navigating(page, () => page.getByRole('button', { name: 'Sign in' }).click());
  };

  it('the login page has labelled Username and Password inputs and a Sign in button', async () => {
    await navigating(page, () => page.goto(authorizationUrl()));
    assert.equal(new URL(page.url()).origin, as.issuer);
    const username = page.getByLabel('Username');
    const password = page.getByLabel('Password');
    assert.ok(await username.isVisible());
    assert.equal(await username.getAttribute('type'), 'text');
    assert.equal(await username.getAttribute('autocomplete'), 'username');
    assert.ok(await password.isVisible());
    assert.equal(await password.getAttribute('type'), 'password');
    assert.equal(await password.getAttribute('autocomplete'), 'current-password');
    assert.ok(await page.getByRole('button', { name: 'Sign in' }).isVisible());
    assert.ok(await page.getByRole('heading', { name: 'Sign in' }).isVisible());
    assert.match(await page.locator('main').innerText(), new RegExp(`to continue to ${escapeRegExp(CLIENT_NAME)}`));
  });

  it('a wrong password shows an error and stays on the login page; the right one continues', async () => {
    await navigating(page, () => page.goto(authorizationUrl()));
    const callbacksBefore = callback.received.length;
    await signIn('wrong-password');
    assert.equal(new URL(page.url()).origin, as.issuer, 'still on the authorization server');
    assert.equal((await page.getByRole('alert').innerText()).trim(), 'Wrong username or password.');
    assert.ok(await page.getByLabel('Password').isVisible(), 'the login form is shown again');
    assert.equal(await page.getByLabel('Username').inputValue(), 'demo', 'the username is kept');
    assert.equal(await page.getByLabel('Password').inputValue(), '', 'the password is not echoed back');
    assert.equal(documents.at(-1)?.status(), 401);
    assert.equal(callback.received.length, callbacksBefore, 'nothing was sent to the client');

    await signIn('demo');
    assert.ok(await page.getByRole('button', { name: 'Allow' }).isVisible(), 'the consent page follows a correct sign-in');
  });

  it('the consent page names the client, the resource and each scope', async () => {
    await navigating(page, () => page.goto(authorizationUrl()));
    await signIn();
    assert.ok(await page.getByRole('button', { name: 'Allow' }).isVisible());
    assert.ok(await page.getByRole('button', { name: 'Deny' }).isVisible());
    assert.equal(await page.locator('#client-name').innerText(), CLIENT_NAME, 'client_name shown as text, markup escaped');
    assert.equal(await page.locator('#client-name *').count(), 0, 'no element was injected by the client name');
    assert.equal(await page.locator('#resource-name').innerText(), 'Test MCP server');
    const text = await page.locator('main').innerText();
    assert.ok(text.includes(as.resource), 'the resource identifier is shown');
    assert.ok(text.includes(clientId), 'the client_id is shown');
    const scopes = await page.locator('#scopes li').allInnerTexts();
    assert.equal(scopes.length, 2);
    assert.match(scopes[0]!, /^mcp:read\b.*Read things/);
    assert.match(scopes[1]!, /^mcp:write\b.*Change things/);
  });

  it('Allow returns a code with state and iss; then the signed-in browser is not asked again', async () => {
    const first = await authorizeInChromium(page, authorizationUrl('state-allow'), { callback });
    assert.deepEqual(first.steps, ['login', 'consent']);
    assert.ok(first.redirect.searchParams.get('code'));
    assert.equal(first.redirect.searchParams.get('state'), 'state-allow');
    assert.equal(first.redirect.searchParams.get('iss'), as.issuer);
    const cookies = await context.cookies(as.issuer);
    const session = cookies.find((c) => c.name === 'mandate_session');
    assert.ok(session, `a session cookie; got ${cookies.map((c) => c.name).join(', ')}`);
    assert.equal(session.httpOnly, true);
    assert.equal(session.sameSite, 'Lax');

    // Same browser, same client, resource and scopes: straight back to the client.
    const second = await authorizeInChromium(page, authorizationUrl('state-again'), { callback });
    assert.deepEqual(second.steps, []);
    assert.ok(second.redirect.searchParams.get('code'));
    assert.equal(second.redirect.searchParams.get('state'), 'state-again');
  });

  it('Deny returns to the client with error=access_denied, state and iss', async () => {
    const { redirect, steps } = await authorizeInChromium(page, authorizationUrl('state-deny'), { callback, decision: 'deny' });
    assert.deepEqual(steps, ['login', 'consent']);
    assert.equal(redirect.origin + redirect.pathname, callback.redirectUri);
    assert.equal(redirect.searchParams.get('error'), 'access_denied');
    assert.equal(redirect.searchParams.get('state'), 'state-deny');
    assert.equal(redirect.searchParams.get('iss'), as.issuer);
    assert.equal(redirect.searchParams.get('code'), null);
  });

  it('every page forbids framing: CSP frame-ancestors none and X-Frame-Options DENY', async () => {
    await navigating(page, () => page.goto(authorizationUrl()));
    await signIn('wrong-password');
    await signIn('demo');
    // And an error page: an unknown client is refused on the authorization server itself.
    await navigating(page, () => page.goto(`${as.issuer}/authorize?response_type=code&client_id=unknown&redirect_uri=${encodeURIComponent(callback.redirectUri)}`));
    assert.match(await page.locator('#error-code').innerText(), /invalid_client/);

    const pages = documents.filter((r) => (r.headers()['content-type'] ?? '').startsWith('text/html'));
    assert.equal(pages.length, 4, `login, login with error, consent, error page; got ${documents.map((r) => `${r.status()} ${r.url()}`).join(', ')}`);
    for (const response of pages) {
      const headers = await response.allHeaders();
      const csp = (headers['content-security-policy'] ?? '').split(';').map((d) => d.trim());
      assert.ok(csp.includes("frame-ancestors 'none'"), `${response.url()}: CSP ${headers['content-security-policy']}`);
      assert.equal(headers['x-frame-options'], 'DENY', response.url());
    }
  });

  it('the login page does not render inside a frame of another origin', async () => {
    const framer = 'http://framer.example.test';
    const control = `${callback.origin}/framing-control`;
    await page.route(`${framer}/**`, (route) =>
      route.fulfill({
        contentType: 'text/html',
        body: `<!doctype html><title>framer</title><iframe name="control" src="${control}"></iframe><iframe name="victim" src="${authorizationUrl()}"></iframe>`,
      }),
    );
    const interaction = page.waitForResponse((r) => r.url().startsWith(`${as.issuer}/interaction/`) && r.request().resourceType() === 'document');
    await page.goto(`${framer}/`);
    const response = await interaction;
    assert.equal(response.status(), 200, 'the authorization server answered the framed request with the login page');
    await page.waitForLoadState('load');

    // Control: a page without anti-framing headers does render in the same kind of frame.
    const controlFrame = page.frame({ name: 'control' });
    assert.ok(controlFrame);
    assert.match(await controlFrame.locator('body').innerText(), /not found/);

    const victim = page.frame({ name: 'victim' });
    assert.ok(victim);
    assert.ok(!victim.url().startsWith(`${as.issuer}/`) || (await victim.locator('#username').count()) === 0, `framed login page rendered at ${victim.url()}`);
    assert.equal(await victim.locator('#username').count(), 0, 'the login form is not in the frame');
  });

  it('the pages make no request to any origin other than the authorization server', async () => {
    const requests: { url: string; type: string }[] = [];
    context.on('request', (request) => requests.push({ url: request.url(), type: request.resourceType() }));
    const { redirect } = await authorizeInChromium(page, authorizationUrl(), { callback });
    // The only request elsewhere is the final navigation back to the client's redirect URI.
    const last = requests.at(-1)!;
    assert.equal(last.url, redirect.href);
    assert.equal(last.type, 'document');
    const elsewhere = requests.slice(0, -1).filter((r) => new URL(r.url).origin !== as.issuer);
    assert.deepEqual(elsewhere, [], 'requests to other origins');
    const subresources = requests.filter((r) => r.type !== 'document' && new URL(r.url).origin === as.issuer && new URL(r.url).pathname !== '/favicon.ico');
    assert.deepEqual(subresources, [], 'the pages load no scripts, styles, fonts or images');
  });
});

function escapeRegExp(s: string) {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}
