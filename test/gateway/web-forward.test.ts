import assert from 'node:assert/strict';
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { createRemoteJWKSet, decodeProtectedHeader, jwtVerify } from 'jose';
import type { Browser } from 'playwright-core';
import { launchChromium } from '../helpers/chromium.ts';
import { needsChromium } from '../helpers/services.ts';
import { signInThroughGateway, startWebSso, type WebSso } from '../helpers/web-sso.ts';

/**
 * What the app behind a web route receives (issue 15): its own cookies but never the gateway's,
 * no identity header a browser sent, no token (no passthrough by default), and one fresh identity
 * assertion per request that verifies against the gateway's JWKS.
 */
describe('gateway web route: what the app receives (Chromium)', needsChromium(), () => {
  let sso: WebSso;
  let browser: Browser;
  let app: Server;
  const seen: { url: string; method: string; headers: IncomingHttpHeaders; body: string }[] = [];

  before(async () => {
    app = createServer((req, res) => {
      let body = '';
      req.on('data', (chunk: Buffer) => (body += chunk));
      req.on('end', () => {
        seen.push({ url: req.url!, method: req.method!, headers: req.headers, body });
        // The app tries to plant Mandate cookies (its own passes).
        const cookies = req.url === '/plant' ? ['mandate_session=planted; Path=/', 'mandate_web=planted; Path=/app/', 'app_theme=dark; Path=/'] : [];
        res.writeHead(200, { 'content-type': 'text/html', 'set-cookie': cookies }).end('<!doctype html><title>app</title><h1>app</h1>');
      });
    });
    await new Promise<void>((resolve) => app.listen(0, '127.0.0.1', resolve));
    sso = await startWebSso({ route: { upstream: `http://127.0.0.1:${(app.address() as AddressInfo).port}/` } });
    browser = await launchChromium();
  });
  after(async () => {
    await browser?.close();
    await sso?.close();
    await new Promise<void>((resolve) => app.close(() => resolve()));
  });

  it('strips the gateway cookie and forged identity headers, forwards an assertion the app can verify, never the token', async () => {
    const context = await browser.newContext();
    const page = await context.newPage();
    await signInThroughGateway(page, sso.start, sso.gatewayUrl);
    await context.addCookies([{ name: 'app_pref', value: 'dark', url: sso.start }]);
    await page.setExtraHTTPHeaders({ 'x-mandate-identity': 'forged', 'x-mandate-sub': 'someone-else', authorization: 'Bearer stolen' });
    seen.length = 0;
    await page.goto(`${sso.gatewayUrl}/app/reports?month=11`);
    const request = seen.find((r) => r.url === '/reports?month=11');
    assert.ok(request, `the app got the request: ${seen.map((r) => r.url).join(', ')}`);
    assert.equal(request.headers.cookie, 'app_pref=dark', "the app's own cookie only");
    assert.equal(request.headers['x-mandate-sub'], undefined, 'a forged identity header is removed');
    assert.equal(request.headers.authorization, undefined, 'no token passthrough');
    const assertion = request.headers['x-mandate-identity'] as string;
    assert.notEqual(assertion, 'forged');
    assert.equal(decodeProtectedHeader(assertion).typ, 'mandate-id+jwt');
    const jwks = createRemoteJWKSet(new URL(`${sso.gatewayUrl}/.well-known/mandate-gateway-jwks.json`));
    const { payload } = await jwtVerify(assertion, jwks, { issuer: sso.gatewayUrl, audience: `http://127.0.0.1:${(app.address() as AddressInfo).port}/`, typ: 'mandate-id+jwt', algorithms: ['ES256'] });
    assert.equal(payload.preferred_username, 'demo');
    assert.equal(payload.email, 'demo@example.com');
    assert.equal(payload.exp! - payload.iat!, 60, 'short-lived: 60 s');
    assert.ok(typeof payload.jti === 'string' && typeof payload.sub === 'string');

    // A form post passes byte for byte, with a new assertion.
    seen.length = 0;
    const posted = await page.evaluate(async () => (await fetch('/app/form', { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: 'a=1&b=%C3%A9' })).status);
    assert.equal(posted, 200);
    const form = seen.find((r) => r.url === '/form')!;
    assert.equal(form.method, 'POST');
    assert.equal(form.body, 'a=1&b=%C3%A9');
    assert.notEqual(form.headers['x-mandate-identity'], assertion, 'one assertion per request');

    // The app cannot set Mandate's cookies (a planted session, at the gateway or at the AS).
    const planted = await page.goto(`${sso.gatewayUrl}/app/plant`);
    const setCookies = (await planted!.headersArray()).filter((header) => header.name.toLowerCase() === 'set-cookie').map((header) => header.value);
    assert.deepEqual(setCookies, ['app_theme=dark; Path=/']);
    assert.equal((await page.reload())!.status(), 200, 'still signed in');

    // The metrics count web requests as they do MCP ones.
    const metrics = await sso.gateway.metrics.registry.metrics();
    assert.match(metrics, /mandate_gateway_requests_total\{route="\/app\/",method="http:GET",tool="",decision="allow",status="200"\} [1-9]/);
    await context.close();
  });

  it('identity.headers and identity.access_token, when a route asks for them: plain headers and the Bearer token', async () => {
    const loose = await startWebSso({ route: { upstream: `http://127.0.0.1:${(app.address() as AddressInfo).port}/`, identity: { assertion: false, headers: true, access_token: true } } });
    try {
      const context = await browser.newContext();
      const page = await context.newPage();
      await signInThroughGateway(page, loose.start, loose.gatewayUrl);
      seen.length = 0;
      await page.reload();
      const request = seen.at(-1)!;
      assert.equal(request.headers['x-mandate-identity'], undefined, 'assertion: false');
      assert.equal(request.headers['x-mandate-username'], 'demo');
      assert.equal(request.headers['x-mandate-name'], 'Demo User');
      assert.equal(request.headers['x-mandate-email'], 'demo@example.com');
      assert.equal(typeof request.headers['x-mandate-sub'], 'string');
      assert.match(String(request.headers.authorization), /^Bearer [\w-]+\.[\w-]+\.[\w-]+$/, 'the access token, only because the route says so');
      await context.close();
    } finally {
      await loose.close();
    }
  });
});
