import assert from 'node:assert/strict';
import { mkdirSync, writeFileSync } from 'node:fs';
import { chromium, type Browser, type Page } from 'playwright-core';
import type { CallbackServer } from './callback-server.ts';
import { chromiumPath } from './services.ts';

/**
 * Real-browser driving of the login and consent pages with Chromium (playwright-core, no bundled
 * browsers). Tests using it put `needsChromium()` in their options, so they skip with a reason
 * where Chromium is absent and fail in CI.
 */
export const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-background-networking',
  '--disable-quic',
  '--no-first-run',
  '--disable-component-update',
  '--disable-sync',
];

export function launchChromium(): Promise<Browser> {
  return chromium.launch({ executablePath: chromiumPath, args: CHROMIUM_ARGS });
}

export interface ChromiumAuthorizeOptions {
  /** The client's redirect URI: the loopback server the authorization server sends the browser back to. */
  callback: CallbackServer;
  username?: string;
  password?: string;
  decision?: 'allow' | 'deny';
  /** Per-step timeout in milliseconds. */
  timeout?: number;
}

export interface ChromiumAuthorizeResult {
  /** The authorization response as the client's redirect URI received it. */
  redirect: URL;
  /** The interaction pages met on the way, in order: 'login', 'consent'. */
  steps: ('login' | 'consent')[];
}

/** Runs `action` and waits until the main frame has navigated to a new document and parsed it. */
export async function navigating(page: Page, action: () => Promise<unknown>, timeout = 15_000): Promise<void> {
  const navigated = page.waitForEvent('framenavigated', { predicate: (frame) => frame === page.mainFrame(), timeout });
  await action();
  await navigated;
  await page.waitForLoadState('domcontentloaded', { timeout });
}

/**
 * Opens an authorization URL, signs in through the login page if it appears (labelled inputs and
 * the "Sign in" button, as a user would), answers the consent page if it appears, and returns the
 * redirect received by the client's callback server. Pass a `Page` to keep its cookies and to
 * observe it; pass a `Browser` to use a fresh context that is closed afterwards.
 */
export async function authorizeInChromium(
  target: Browser | Page,
  authorizationUrl: string,
  options: ChromiumAuthorizeOptions,
): Promise<ChromiumAuthorizeResult> {
  const ownContext = 'newContext' in target ? await target.newContext() : undefined;
  const page = ownContext ? await ownContext.newPage() : (target as Page);
  const timeout = options.timeout ?? 15_000;
  const steps: ChromiumAuthorizeResult['steps'] = [];
  try {
    await navigating(page, () => page.goto(authorizationUrl, { timeout }), timeout);
    for (let i = 0; i < 4 && !page.url().startsWith(options.callback.redirectUri); i++) {
      if ((await page.getByLabel('Password').count()) > 0) {
        if (steps.includes('login')) {
          const alert = await page.getByRole('alert').allInnerTexts();
          throw new Error(`sign-in failed, still on the login page: ${alert.join(' ') || '(no error shown)'}`);
        }
        steps.push('login');
        await page.getByLabel('Username').fill(options.username ?? 'demo');
        await page.getByLabel('Password').fill(options.password ?? 'demo');
        await navigating(page, () => page.getByRole('button', { name: 'Sign in' }).click({ timeout }), timeout);
        continue;
      }
      if ((await page.getByRole('button', { name: 'Allow' }).count()) > 0) {
        steps.push('consent');
        const label = options.decision === 'deny' ? 'Deny' : 'Allow';
        await navigating(page, () => page.getByRole('button', { name: label }).click({ timeout }), timeout);
        continue;
      }
      throw new Error(`unexpected page ${page.url()}: ${(await page.locator('body').innerText()).slice(0, 400)}`);
    }
    if (!page.url().startsWith(options.callback.redirectUri)) throw new Error(`the browser did not return to the client; it is at ${page.url()}`);
    // The browser shows the callback's answer, so the callback server has received this very request.
    const redirect = await options.callback.expect(page.url(), timeout);
    return { redirect, steps };
  } finally {
    await ownContext?.close();
  }
}

/** Where `SCREENSHOTS=1` writes the pages' pictures (docs/); otherwise they are taken and checked only. */
const SCREENSHOTS_DIR = process.env.SCREENSHOTS === '1' ? 'docs/screenshots' : undefined;

/**
 * Photographs the page in light and dark (as `<file>-light.png`, `<file>-dark.png` under
 * docs/screenshots with SCREENSHOTS=1), checks each is a real picture and that the dark scheme
 * really changes the page, and leaves the page light.
 */
export async function shootLightAndDark(page: Page, file: string): Promise<void> {
  const backgrounds: string[] = [];
  for (const colorScheme of ['light', 'dark'] as const) {
    await page.emulateMedia({ colorScheme });
    backgrounds.push(await page.evaluate(() => getComputedStyle(document.body).backgroundColor));
    const png = await page.screenshot({ fullPage: true });
    assert.ok(png.length > 3000, `${file}-${colorScheme}: a real picture (${png.length} bytes)`);
    if (SCREENSHOTS_DIR) {
      mkdirSync(SCREENSHOTS_DIR, { recursive: true });
      writeFileSync(`${SCREENSHOTS_DIR}/${file}-${colorScheme}.png`, png);
    }
  }
  assert.notEqual(backgrounds[0], backgrounds[1], `${file}: dark mode changes the page`);
  await page.emulateMedia({ colorScheme: 'light' });
}
