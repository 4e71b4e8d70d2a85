import assert from 'node:assert/strict';
import { after, afterEach, before, beforeEach, describe, it } from 'node:test';
import type { Browser, BrowserContext, Page } from 'playwright-core';
import type { TestAuthServer } from '../helpers/auth-server.ts';
import { launchChromium, navigating, shootLightAndDark } from '../helpers/chromium.ts';
import { needsChromium } from '../helpers/services.ts';
import { agentToken, create, startTransactionServer, use } from './helpers.ts';

/**
 * The approval page in a real browser (issue 14): a person who is not signed in opens the link
 * the agent showed, signs in, reads who asks for what, enters the password again and approves;
 * the gateway can then spend the approval once. No script runs; the pages are photographed in
 * light and dark (docs/screenshots/approval-*.png with SCREENSHOTS=1).
 */
describe('transactions: the approval page in Chromium', needsChromium(), () => {
  let as: TestAuthServer;
  let browser: Browser;
  let context: BrowserContext;
  let page: Page;
  let dialogs: string[];
  let token: string;

  before(async () => {
    as = await startTransactionServer();
    browser = await launchChromium();
    token = (await agentToken(as)).accessToken;
  });
  after(async () => {
    await browser?.close();
    await as?.close();
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
  afterEach(async () => {
    assert.deepEqual(dialogs, [], 'no script ran');
    await context?.close();
  });

  const signIn = async () => {
    assert.match(await page.locator('main').innerText(), /Sign in to review an action that waits for your approval\./);
    await page.getByLabel('Username').fill('demo');
    await page.getByLabel('Password').fill('demo');
    await navigating(page, () => page.getByRole('button', { name: 'Sign in' }).click());
  };

  it('signs in, shows exactly what will happen and for whom, approves with the password; the approval is then spent once', async () => {
    const created = await create(as, token, { summary: 'Transfer 250.00 EUR to Bob', details: { amount: '250.00', currency: 'EUR', to: 'Bob', reference: 'Rent, November' } });
    const { id, approval_uri: uri } = created.json as { id: string; approval_uri: string };
    await navigating(page, () => page.goto(uri));
    await signIn();
    assert.equal(new URL(page.url()).pathname, `/approve/${id}`, 'back on the request after signing in');
    assert.equal(await page.title(), 'Approve an action · Mandate');
    assert.equal(await page.getByRole('heading', { level: 1 }).innerText(), 'Approve this action?');
    assert.equal((await page.locator('#chain').innerText()).trim(), 'Sample agent (sample-agent) asks, acting for you.');
    assert.equal(await page.locator('#summary').innerText(), 'Transfer 250.00 EUR to Bob');
    assert.equal(await page.locator('#tool').innerText(), 'transfer');
    assert.equal(await page.locator('#resource-name').innerText(), 'Example Bank');
    const rows = await page.locator('#details tr').allInnerTexts();
    assert.deepEqual(
      rows.map((r) => r.replace(/\s+/g, ' ').trim()),
      ['amount 250.00', 'currency EUR', 'to Bob', 'reference Rent, November'],
    );
    assert.match(await page.locator('#time-left').innerText(), /^[45] min \d+ s$/);
    const approve = page.getByRole('button', { name: 'Approve' });
    const deny = page.getByRole('button', { name: 'Deny' });
    assert.equal(await approve.getAttribute('class'), 'primary');
    assert.equal(await deny.getAttribute('class'), 'secondary');
    const [a, d] = [await approve.boundingBox(), await deny.boundingBox()];
    assert.ok(a && d && a.x > d.x, 'Approve on the right');
    await shootLightAndDark(page, 'approval');

    // Approve without the password: the browser asks for it (required), nothing is sent.
    await approve.click();
    assert.equal(new URL(page.url()).pathname, `/approve/${id}`);
    assert.equal(await page.locator('#password').evaluate((el) => (el as HTMLInputElement).validity.valueMissing), true);

    await page.getByLabel('Your password').fill('wrong');
    await navigating(page, () => approve.click());
    assert.equal(await page.getByRole('alert').innerText(), 'Wrong password. Nothing was approved.');
    await page.getByLabel('Your password').fill('demo');
    await navigating(page, () => page.getByRole('button', { name: 'Approve' }).click());
    assert.equal(await page.getByRole('heading', { level: 1 }).innerText(), 'Approved');
    assert.equal(await page.locator('#approval-outcome').innerText(), 'The agent can now make this call, once. You can close this page.');
    await shootLightAndDark(page, 'approval-approved');

    assert.equal((await use(as, id, token)).status, 200);
    assert.equal((await use(as, id, token)).json.error, 'transaction_used');
  });

  it('Deny needs no password; the list of pending approvals links to each', async () => {
    const first = (await create(as, token, { summary: 'Transfer 1,200.00 EUR to Carol' })).json.id as string;
    const second = (await create(as, token, { summary: 'Transfer 80.00 EUR to Dave', details: { amount: '80.00', to: 'Dave' } })).json.id as string;
    await navigating(page, () => page.goto(`${as.issuer}/approvals`));
    await signIn();
    assert.equal(await page.getByRole('heading', { level: 1 }).innerText(), 'Pending approvals');
    const links = await page.locator('#approvals a').allInnerTexts();
    assert.ok(links.includes('Transfer 80.00 EUR to Dave') && links.includes('Transfer 1,200.00 EUR to Carol'), links.join(' | '));
    await shootLightAndDark(page, 'approvals');
    await navigating(page, () => page.getByRole('link', { name: 'Transfer 80.00 EUR to Dave' }).click());
    assert.equal(new URL(page.url()).pathname, `/approve/${second}`);
    await navigating(page, () => page.getByRole('button', { name: 'Deny' }).click());
    assert.equal(await page.getByRole('heading', { level: 1 }).innerText(), 'Denied');
    assert.equal((await use(as, second, token)).json.error, 'transaction_denied');
    assert.equal((await use(as, first, token)).json.error, 'transaction_pending');
  });
});
