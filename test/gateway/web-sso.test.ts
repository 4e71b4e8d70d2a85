import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import type { Browser, Page } from 'playwright-core';
import { launchChromium, navigating } from '../helpers/chromium.ts';
import { needsChromium } from '../helpers/services.ts';
import { signInThroughGateway, startWebSso, type WebSso } from '../helpers/web-sso.ts';

/**
 * Issue 15, item 3: single sign-on for a plain web app behind the gateway, in Chromium. The app
 * (examples/web-app) has no sign-in code: it shows who the gateway's signed identity assertion
 * names. A CEL rule keeps /app/admin/ for the admin user.
 */
/** `SCREENSHOTS=1`: the pictures of docs/browser-sessions.md (light), into docs/screenshots/. */
async function shoot(page: Page, name: string): Promise<void> {
  await page.emulateMedia({ colorScheme: 'light' });
  await page.setViewportSize({ width: 1000, height: 620 });
  const png = await page.screenshot();
  assert.ok(png.length > 3000, `${name}: a real picture`);
  if (process.env.SCREENSHOTS === '1') {
    mkdirSync('docs/screenshots', { recursive: true });
    await page.screenshot({ path: `docs/screenshots/${name}.png` });
  }
}

describe('gateway web route: sign-in, rules, sign-out (Chromium)', needsChromium(), () => {
  let sso: WebSso;
  let browser: Browser;

  before(async () => {
    sso = await startWebSso();
    browser = await launchChromium();
  });
  after(async () => {
    await browser?.close();
    await sso?.close();
  });

  it('anonymous → AS login → back at the page asked for, signed in; the session cookie is HttpOnly, SameSite=Lax, Path=/app/', async () => {
    const context = await browser.newContext();
    const page = await context.newPage();
    // The AS offers PAR (RFC 9126): the browser is sent with only client_id and request_uri.
    const first = await page.request.get(`${sso.gatewayUrl}/app/?tab=1`, { maxRedirects: 0 });
    const authorize = new URL(first.headers().location!);
    assert.deepEqual([...authorize.searchParams.keys()].sort(), ['client_id', 'request_uri']);
    const steps = await signInThroughGateway(page, `${sso.gatewayUrl}/app/?tab=1`, sso.gatewayUrl);
    assert.deepEqual(steps, ['login'], 'a first-party client: the password, no consent page');
    assert.equal(page.url(), `${sso.gatewayUrl}/app/?tab=1`, 'back where the person was going');
    assert.equal(await page.locator('h1').first().innerText(), 'Signed in as Demo User');
    assert.match(await page.locator('body').innerText(), /demo@example\.com/);
    const cookies = await context.cookies(sso.start);
    const session = cookies.find((cookie) => cookie.name === 'mandate_web');
    assert.ok(session, `session cookie set: ${cookies.map((cookie) => cookie.name).join(', ')}`);
    assert.equal(session.httpOnly, true);
    assert.equal(session.sameSite, 'Lax');
    assert.equal(session.path, '/app/');
    assert.equal(session.secure, false, 'http on loopback: not Secure (https public URLs are, see web-config.test.ts)');
    assert.equal(session.expires, -1, 'a browser-session cookie: the server-side record decides the lifetime');
    assert.ok(!cookies.some((cookie) => cookie.name === 'mandate_web_signin'), 'the sign-in state cookie is gone after the callback');
    await shoot(page, 'web-app-signed-in');
    const events = await sso.auditEvents();
    const signedIn = events.find((event) => event.web === 'signed_in');
    assert.ok(signedIn, 'the sign-in is audited');
    assert.equal(signedIn.route, '/app/');
    const forwarded = events.find((event) => event.path === '/app/' && event.decision === 'allow' && event.upstream_status === 200);
    assert.ok(forwarded, 'the page load is audited as forwarded');
    assert.equal(typeof forwarded.sub, 'string');

    // The rule: /app/admin/ is for the admin user only → the gateway's 403 page, audited with the reason.
    const response = await page.goto(`${sso.gatewayUrl}/app/admin/`);
    assert.equal(response!.status(), 403);
    assert.equal(await page.locator('h1').innerText(), 'Access denied');
    assert.equal(await page.evaluate(() => getComputedStyle(document.body).backgroundColor), 'rgb(243, 244, 247)', 'its style is allowed by the page CSP');
    assert.match(await page.locator('body').innerText(), /the admin area is for administrators/);
    await shoot(page, 'web-app-forbidden');
    const denied = (await sso.auditEvents()).find((event) => event.path === '/app/admin/');
    assert.equal(denied?.decision, 'deny');
    assert.equal(denied?.rejection, 'rule_denied');
    assert.equal(denied?.reason, 'the admin area is for administrators');
    assert.equal(denied?.status, 403);
    await context.close();
  });

  it('the admin user may open /app/admin/', async () => {
    const context = await browser.newContext();
    const page = await context.newPage();
    await signInThroughGateway(page, `${sso.gatewayUrl}/app/admin/`, sso.gatewayUrl, 'admin', 'demo');
    assert.equal(page.url(), `${sso.gatewayUrl}/app/admin/`);
    assert.equal(await page.locator('h1').innerText(), 'Admin area');
    await context.close();
  });

  it('Sign out in the app: the gateway session ends, then RP-initiated logout at the AS ends the AS session too', async () => {
    const context = await browser.newContext();
    const page = await context.newPage();
    await signInThroughGateway(page, sso.start, sso.gatewayUrl);
    const logoutHops: string[] = [];
    page.on('request', (request) => {
      if (request.isNavigationRequest()) logoutHops.push(request.url());
    });
    await navigating(page, () => page.getByRole('link', { name: 'Sign out' }).click());
    await page.waitForURL(`${sso.gatewayUrl}/app/signed-out`);
    assert.equal(await page.locator('h1').innerText(), 'You are signed out');
    const endSession = logoutHops.map((url) => new URL(url)).find((url) => url.href.startsWith(`${sso.as.issuer}/logout`));
    assert.ok(endSession, `the browser went through the AS end_session_endpoint: ${logoutHops.join(' → ')}`);
    assert.ok(endSession.searchParams.get('id_token_hint'), 'with the ID token as hint');
    assert.equal(endSession.searchParams.get('client_id'), 'web-app');
    assert.equal(endSession.searchParams.get('post_logout_redirect_uri'), `${sso.gatewayUrl}/app/signed-out`);
    assert.ok(!(await context.cookies(sso.start)).some((cookie) => cookie.name === 'mandate_web'), 'the cookie is deleted');
    const out = (await sso.auditEvents()).find((event) => event.web === 'signed_out');
    assert.ok(out?.sub, 'the sign-out is audited with the person');
    // Signed out at the AS too: the next visit needs the password again.
    const steps = await signInThroughGateway(page, sso.start, sso.gatewayUrl);
    assert.equal(steps[0], 'login', 'the AS asks for the password again');
    await context.close();
  });

  it('logout everywhere: signing out at the AS (account page) ends the gateway session by back-channel logout', async () => {
    const context = await browser.newContext();
    const page = await context.newPage();
    await signInThroughGateway(page, sso.start, sso.gatewayUrl);
    const asCookie = (await context.cookies(sso.as.issuer)).find((cookie) => cookie.name === 'mandate_session')!;
    const { sid } = (await sso.as.ctx.cache.get<{ sid: string }>(`session:${asCookie.value}`))!;
    await navigating(page, () => page.goto(`${sso.as.issuer}/account/security`));
    await navigating(page, () => page.getByRole('button', { name: 'Sign out' }).click());
    // The AS delivers the logout token in the background: wait for the gateway to have it.
    let ended: Record<string, unknown> | undefined;
    for (let i = 0; i < 50 && !ended; i++) {
      ended = (await sso.auditEvents()).find((event) => event.web === 'backchannel_logout' && String(event.reason).includes(sid));
      if (!ended) await new Promise((resolve) => setTimeout(resolve, 100));
    }
    assert.ok(ended, 'the AS told the gateway');
    assert.equal(ended.reason, `ended 1 session(s) for sid ${sid}`);
    const response = await context.request.get(sso.start, { maxRedirects: 0 });
    assert.equal(response.status(), 302, 'the gateway session is gone: back to the AS');
    await context.close();
  });
});
