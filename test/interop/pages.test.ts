import { randomUUID } from 'node:crypto';
/**
 * The login and consent pages in a real browser (Chromium): what a user sees and can do, what the
 * client gets back, and the pages' defences (anti-framing headers, nothing loaded from elsewhere).
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { createServer } from 'node:http';
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
    // This suite's clients register themselves: the deployment's scope allowlist (the default grants none).
    as = await startTestAuthServer({ registration: { allowed_scopes: ['mcp:read', 'mcp:write'] } });
    callback = await startCallbackServer();
    browser = await launchChromium();
  });
  after(async () => {
    await browser?.close();
    await callback?.close();
    await as?.close();
  });
  beforeEach(async () => {
    // A client per test: consent is remembered per user and client, and each test wants a fresh one.
    // (The same metadata from the same address would return the same public client: software_id differs.)
    const client = await registerClient(as.issuer, {
      client_name: CLIENT_NAME,
      software_id: randomUUID(),
      redirect_uris: [callback.redirectUri],
      token_endpoint_auth_method: 'none',
      grant_types: ['authorization_code'],
    });
    clientId = client.client_id;
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
    assert.match(await page.locator('main').innerText(), new RegExp(`to continue to “${escapeRegExp(CLIENT_NAME)}” Unverified`), 'a self-registered client: its chosen name quoted and marked');
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
    assert.match(scopes[0]!, /^Read things\s+mcp:read$/);
    assert.match(scopes[1]!, /^Change things\s+mcp:write$/);
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
    assert.equal(callback.headers.get(redirect.href)?.referer, undefined, 'Referrer-Policy: no-referrer; the interaction URL does not leak to the client');
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
    // A page on another loopback origin frames a harmless control page and the login page.
    const framer = createServer((req, res) => {
      if (req.url === '/control') {
        res.writeHead(200, { 'content-type': 'text/html' }).end('<!doctype html><p>control page</p>');
        return;
      }
      const src = authorizationUrl().replace(/&/g, '&amp;');
      res.writeHead(200, { 'content-type': 'text/html' }).end(`<!doctype html><title>framer</title><iframe name="control" src="/control"></iframe><iframe name="victim" src="${src}"></iframe>`);
    });
    await new Promise<void>((resolve) => framer.listen(0, '127.0.0.1', resolve));
    try {
      const framerOrigin = `http://127.0.0.1:${(framer.address() as { port: number }).port}`;
      const blocked = page.waitForEvent('requestfailed', (r) => r.url().startsWith(`${as.issuer}/interaction/`));
      const consoleMessages: string[] = [];
      page.on('console', (m) => consoleMessages.push(m.text()));
      await page.goto(`${framerOrigin}/`);
      const failed = await blocked;
      assert.equal(failed.failure()?.errorText, 'net::ERR_BLOCKED_BY_RESPONSE', 'the browser refused the framed login page because of its headers');
      const response = await failed.response();
      assert.equal(response?.status(), 200, 'the authorization server did answer with the login page');
      await page.waitForLoadState('load');

      const control = page.frame({ name: 'control' });
      assert.match(await control!.locator('body').innerText(), /control page/, 'the control page renders in a frame');
      const victim = page.frame({ name: 'victim' });
      assert.ok(victim);
      assert.ok(!victim.url().startsWith(as.issuer), `the frame shows ${victim.url()}`);
      assert.equal(await victim.locator('#username').count(), 0, 'the login form is not in the frame');
      assert.ok(
        consoleMessages.some((m) => m.includes("frame-ancestors 'none'")),
        `Chromium names frame-ancestors as the reason; console: ${consoleMessages.join(' | ')}`,
      );
    } finally {
      framer.closeAllConnections();
      await new Promise<void>((resolve) => framer.close(() => resolve()));
    }
  });

  it('the pages make no request to any origin other than the authorization server', async () => {
    const requests: { url: string; type: string }[] = [];
    context.on('request', (request) => requests.push({ url: request.url(), type: request.resourceType() }));
    const { redirect } = await authorizeInChromium(page, authorizationUrl(), { callback });
    // The only request elsewhere is the final navigation back to the client's redirect URI.
    const back = requests.findIndex((r) => r.url === redirect.href);
    assert.ok(back > 0, 'the browser navigated to the redirect URI');
    assert.equal(requests[back]!.type, 'document');
    const elsewhere = requests.slice(0, back).filter((r) => new URL(r.url).origin !== as.issuer);
    assert.deepEqual(elsewhere, [], 'requests to other origins');
    assert.ok(
      requests.slice(back).every((r) => new URL(r.url).origin === callback.origin),
      'after the redirect, only the client is contacted',
    );
    const subresources = requests.filter((r) => r.type !== 'document' && new URL(r.url).origin === as.issuer && new URL(r.url).pathname !== '/favicon.ico');
    assert.deepEqual(subresources, [], 'the pages load no scripts, styles, fonts or images');
  });
});

function escapeRegExp(s: string) {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}
