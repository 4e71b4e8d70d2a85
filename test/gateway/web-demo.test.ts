import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { Browser } from 'playwright-core';
import { launchChromium, navigating } from '../helpers/chromium.ts';
import { freeDemoOffset, startDemo, type RunningDemo } from '../helpers/demo.ts';
import { needsChromium } from '../helpers/services.ts';
import { signInThroughGateway } from '../helpers/web-sso.ts';

/**
 * The web SSO walkthrough on `mandate demo` (npm start, on free ports): the example web app at
 * <gateway>/app/, signed in by the gateway, the admin area refused to the demo user, sign-out.
 * Runs the built CLI: `npm run build` first.
 */
describe('the demo: single sign-on to the example web app through the gateway (Chromium)', needsChromium(), () => {
  let cwd: string;
  let demo: RunningDemo;
  let browser: Browser;
  let offset: number;
  const at = (port: number, path = '') => `http://localhost:${port + offset}${path}`;

  before(async () => {
    offset = await freeDemoOffset();
    cwd = mkdtempSync(join(tmpdir(), 'mandate-web-demo-'));
    demo = await startDemo({ cwd, portOffset: offset, dataDir: join(cwd, 'data') });
    browser = await launchChromium();
  });
  after(async () => {
    await browser?.close();
    demo?.kill();
    if (cwd) rmSync(cwd, { recursive: true, force: true });
  });

  it('the guide names the app; demo / demo signs in, the admin area is refused, Sign out ends it', async () => {
    assert.ok(demo.out().includes(at(8080, '/app/')), demo.out());
    const context = await browser.newContext();
    const page = await context.newPage();
    await signInThroughGateway(page, at(8080, '/app/'), at(8080));
    assert.equal(await page.locator('h1').first().innerText(), 'Signed in as Demo User');
    const response = await page.goto(at(8080, '/app/admin/'));
    assert.equal(response!.status(), 403);
    assert.match(await page.locator('body').innerText(), /the admin area is for administrators/);
    await navigating(page, () => page.getByRole('link', { name: 'Sign out' }).click());
    await page.waitForURL(at(8080, '/app/signed-out'));
    assert.equal(await page.locator('h1').innerText(), 'You are signed out');
    // The app itself (port 8002 + offset) refuses a request that did not come through the gateway.
    assert.equal((await fetch(at(8002, '/'))).status, 401);
    // The identity assertion key is kept in the gateway's data dir, readable by its owner only.
    assert.equal(statSync(join(cwd, 'data', 'gateway', 'identity-key.json')).mode & 0o777, 0o600);
    await context.close();
  });
});
