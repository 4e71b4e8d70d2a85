import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { Browser, BrowserContext, Page } from 'playwright-core';
import { DEMO_PASSWORD_HASH, type TestAuthServer } from '../helpers/auth-server.ts';
import { launchChromium, navigating, shootLightAndDark } from '../helpers/chromium.ts';
import { needsChromium } from '../helpers/services.ts';
import { agentToken, auditEvents, BANK, create, decide, startTransactionServer } from '../transactions/helpers.ts';

/**
 * The console's Approvals page in Chromium (issue 14, part 4): approvals made through the real
 * transactions API and decided on the real approval page, listed read-only with their status and
 * delegation chain, filtered by status and user. With SCREENSHOTS=1 the page is photographed into
 * docs/screenshots/console-approvals-{light,dark}.png.
 */
describe('console: the Approvals page in Chromium', needsChromium(), () => {
  let as: TestAuthServer;
  let browser: Browser;
  let context: BrowserContext;
  let page: Page;
  const dialogs: string[] = [];
  const ids = { pending: '', approved: '', denied: '' };
  const url = (path: string) => `${as.issuer}/console${path}`;

  const open = async (path: string) => {
    let status = 0;
    await navigating(page, async () => {
      status = (await page.goto(url(path)))?.status() ?? 0;
    });
    return status;
  };
  const row = (id: string) => page.locator(`#approvals tr[data-id="${id}"]`);
  const listed = () => page.locator('#approvals tr[data-id]').evaluateAll((rows) => rows.map((r) => r.getAttribute('data-id')));

  before(async () => {
    as = await startTransactionServer({
      users: [
        { username: 'demo', name: 'Demo User', password_hash: DEMO_PASSWORD_HASH },
        { username: 'bob', name: 'Bob', password_hash: DEMO_PASSWORD_HASH },
        { username: 'admin', name: 'Ada Admin', password_hash: DEMO_PASSWORD_HASH, roles: ['admin:read'] },
      ],
    });
    const demo = await agentToken(as);
    const made = async (summary: string, details: Record<string, string>) => {
      const res = await create(as, demo.accessToken, { summary, details });
      assert.equal(res.status, 201, res.text);
      return res.json.id as string;
    };
    ids.approved = await made('Transfer 250.00 EUR to Bob', { amount: '250.00', currency: 'EUR', to: 'Bob' });
    ids.denied = await made('Transfer 900.00 EUR to Eve', { amount: '900.00', currency: 'EUR', to: 'Eve' });
    ids.pending = await made('Transfer 120.00 EUR to Carol', { amount: '120.00', currency: 'EUR', to: 'Carol' });
    await decide(demo.browser, ids.approved, 'approve');
    await decide(demo.browser, ids.denied, 'deny');

    browser = await launchChromium();
    context = await browser.newContext({ viewport: { width: 1280, height: 760 }, deviceScaleFactor: 1 });
    page = await context.newPage();
    page.on('dialog', (dialog) => {
      dialogs.push(dialog.message());
      void dialog.dismiss();
    });
    // Sign in through the console: the AS's login page, then (the first time) its consent page.
    await navigating(page, () => page.goto(url('')));
    await navigating(page, () => page.getByRole('button', { name: 'Sign in' }).click());
    for (let i = 0; i < 4 && !new URL(page.url()).pathname.startsWith('/console'); i++) {
      if ((await page.getByLabel('Password').count()) > 0) {
        await page.getByLabel('Username').fill('admin');
        await page.getByLabel('Password').fill('demo');
        await navigating(page, () => page.getByRole('button', { name: 'Sign in' }).click());
      } else {
        await navigating(page, () => page.getByRole('button', { name: 'Allow' }).click());
      }
    }
    assert.equal(new URL(page.url()).pathname, '/console/agents');
  });
  after(async () => {
    await browser?.close();
    await as?.close();
  });

  it('lists the approvals with their status, summary, details and the chain user → agent → API; read-only, under the strict CSP', async () => {
    await navigating(page, () => page.getByRole('link', { name: 'Approvals' }).click());
    assert.equal(new URL(page.url()).pathname, '/console/approvals');
    assert.equal(await page.locator('nav.menu a[aria-current=page]').innerText(), 'Approvals');
    assert.deepEqual((await listed()).sort(), [ids.pending, ids.approved, ids.denied].sort());
    assert.equal(await row(ids.pending).locator('.badge.status').innerText(), 'pending');
    assert.equal(await row(ids.approved).locator('.badge.status').innerText(), 'approved');
    assert.equal(await row(ids.denied).locator('.badge.status').innerText(), 'denied');
    assert.equal(await row(ids.pending).locator('.summary').innerText(), 'Transfer 120.00 EUR to Carol');
    assert.match(await row(ids.pending).locator('.details').innerText(), /amount: 120\.00 · currency: EUR · to: Carol/);
    assert.match(await row(ids.approved).locator('td:last-child').innerText(), /^approved .* UTC \(password\)$/);
    assert.match(await row(ids.pending).locator('td:last-child').innerText(), /^expires .* UTC$/);
    const demo = (await as.store.users.findByUsername('demo'))!;
    const nodes = await row(ids.pending).locator('.chain li.node').evaluateAll((els) => els.map((el) => `${el.className.replace('node ', '')}:${el.getAttribute('data-id')}`));
    assert.deepEqual(nodes, [`user:${demo.sub}`, 'agent:sample-agent', `resource:${BANK}`]);
    assert.match((await row(ids.pending).locator('.chain').getAttribute('aria-label')) ?? '', /user demo → agent sample-agent → API Example Bank/);
    // Read-only: no form on the page but the filter and the sign-out.
    assert.equal(await page.locator('main form').count(), 1);
    assert.equal(await page.locator('main form').getAttribute('method'), 'get');
    const res = await page.request.get(url('/approvals'));
    assert.match(res.headers()['content-security-policy'] ?? '', /^default-src 'none'; style-src 'nonce-/);
    assert.doesNotMatch(res.headers()['content-security-policy'] ?? '', /script-src/);
    await shootLightAndDark(page, 'console-approvals');
    const read = (await auditEvents(as)).find((e) => e.type === 'admin.transactions.list');
    assert.deepEqual([read?.outcome, read?.data?.admin, read?.data?.front_end], ['success', 'admin', 'console']);
  });

  it('filters by status and by user', async () => {
    await open('/approvals');
    await page.locator('#a-status').selectOption('pending');
    await navigating(page, () => page.getByRole('button', { name: 'Filter' }).click());
    assert.equal(new URL(page.url()).searchParams.get('status'), 'pending');
    assert.deepEqual(await listed(), [ids.pending]);
    await page.locator('#a-status').selectOption('');
    await page.locator('#a-user').fill('bob');
    await navigating(page, () => page.getByRole('button', { name: 'Filter' }).click());
    assert.deepEqual(await listed(), []);
    assert.equal(await page.locator('#approvals tbody td').innerText(), 'No approvals.');
    await open('/approvals?user=demo&status=denied');
    assert.deepEqual(await listed(), [ids.denied]);
    // An unknown user is an answer, not a crash.
    assert.equal(await open('/approvals?user=nobody'), 404);
    assert.equal(await page.locator('#error-code').innerText(), 'not_found');
    assert.deepEqual(dialogs, [], 'no page runs script');
  });

  it("links each approval to its user's transaction events in the audit log", async () => {
    await open('/approvals?status=approved');
    await navigating(page, () => row(ids.approved).getByRole('link', { name: 'events' }).click());
    assert.equal(new URL(page.url()).pathname, '/console/audit');
    const types = await page.locator('#audit-events tr[data-event] td:nth-child(2) > code').allInnerTexts();
    assert.ok(types.includes('transaction.created') && types.includes('transaction.approved'), types.join(','));
    assert.ok(types.every((t) => t.startsWith('transaction.')), types.join(','));
  });
});
