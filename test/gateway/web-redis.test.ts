import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { Browser } from 'playwright-core';
import { signJwt } from '../../src/core/jwt.ts';
import type { GatewayHandle } from '../../src/gateway/node/server.ts';
import { launchChromium } from '../helpers/chromium.ts';
import { needsChromium, needsRedis, redisUrl } from '../helpers/services.ts';
import { signInThroughGateway, startWebSso, type WebSso } from '../helpers/web-sso.ts';

/**
 * Web sessions in Redis (REDIS_URL): two gateways sharing it are one gateway to the browser — a
 * session started through one is good at the other (same cookie key, same assertion key, same
 * session record), and a back-channel logout received by one ends it at both.
 */
describe('gateway web route: sessions shared through Redis by two gateways', { ...needsChromium(), ...(needsChromium().skip ? {} : needsRedis()) }, () => {
  let sso: WebSso;
  let browser: Browser;
  let second: { gateway: GatewayHandle; url: string };

  before(async () => {
    sso = await startWebSso({ env: { REDIS_URL: redisUrl! } });
    second = await sso.startAnotherGateway();
    browser = await launchChromium();
  });
  after(async () => {
    await browser?.close();
    await sso?.close();
  });

  it('signed in through one gateway, the browser is signed in at the other; a logout token at either ends it at both', async () => {
    const context = await browser.newContext();
    const page = await context.newPage();
    await signInThroughGateway(page, sso.start, sso.gatewayUrl);
    // Cookies are per host, not per port: the browser sends the same cookie to the second gateway,
    // which finds the session in Redis and signs its assertion with the shared key (the app checks it).
    const response = await page.goto(`${second.url}/app/`);
    assert.equal(response!.status(), 200);
    assert.equal(response!.request().redirectedFrom(), null, 'answered at once, no trip to the AS');
    assert.equal(page.url(), `${second.url}/app/`);
    assert.equal(await page.locator('h1').first().innerText(), 'Signed in as Demo User');
    const atSecond = (await sso.auditEvents(second.gateway)).find((event) => event.path === '/app/' && event.decision === 'allow');
    assert.ok(atSecond?.sub, 'the second gateway forwarded the request for the signed-in person');

    const asCookie = (await context.cookies(sso.as.issuer)).find((cookie) => cookie.name === 'mandate_session')!;
    const { sid } = (await sso.as.ctx.cache.get<{ sid: string }>(`session:${asCookie.value}`))!;
    const token = await signJwt(
      sso.as.ctx.keys,
      { iss: sso.as.issuer, aud: 'web-app', iat: Math.floor(Date.now() / 1000), jti: crypto.randomUUID(), sid, events: { 'http://schemas.openid.net/event/backchannel-logout': {} } },
      'logout+jwt',
    );
    const post = (url: string) => fetch(`${url}/app/backchannel-logout`, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: new URLSearchParams({ logout_token: token }) });
    assert.equal((await post(second.url)).status, 200);
    assert.equal((await post(sso.gatewayUrl)).status, 400, 'the jti is remembered in Redis: replayed at the other gateway, refused');
    for (const url of [sso.gatewayUrl, second.url]) {
      assert.equal((await context.request.get(`${url}/app/`, { maxRedirects: 0 })).status(), 302, `signed out at ${url}`);
    }
    await context.close();
  });
});
