import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { Browser, BrowserContext, Page } from 'playwright-core';
import { DEMO_PASSWORD_HASH, basic, postForm } from '../helpers/auth-server.ts';
import { launchChromium, navigating, shootLightAndDark } from '../helpers/chromium.ts';
import { ACCESS_TOKEN_TYPE, AGENT_REDIRECT, R, auth, exchange, startDelegationServer, userToken } from '../helpers/delegation-server.ts';
import { needsChromium } from '../helpers/services.ts';

/**
 * The web console in a real browser (Chromium): sign-in through the authorization server, every
 * page, writes confirmed by reading back, the delegation chain picture of a real chain, refusals
 * (a non-admin, a read-only admin, a POST without its CSRF token). With SCREENSHOTS=1 each page
 * is photographed in light and dark into docs/screenshots/console-*.png.
 */

describe('web console in Chromium', needsChromium(), () => {
  let as: Awaited<ReturnType<typeof startDelegationServer>>;
  let browser: Browser;
  let context: BrowserContext;
  let page: Page;
  const dialogs: string[] = [];
  const url = (path: string) => `${as.issuer}/console${path}`;

  const events = async () => {
    await as.ctx.audit.flush();
    return as.store.audit.list({ limit: 2000 });
  };

  /** Signs in through the console's own button, the login page and (the first time) the consent page. */
  const signIn = async (p: Page, username: string) => {
    await navigating(p, () => p.goto(url('')));
    await navigating(p, () => p.getByRole('button', { name: 'Sign in' }).click());
    for (let i = 0; i < 4 && !new URL(p.url()).pathname.startsWith('/console'); i++) {
      if ((await p.getByLabel('Password').count()) > 0) {
        await p.getByLabel('Username').fill(username);
        await p.getByLabel('Password').fill('demo');
        await navigating(p, () => p.getByRole('button', { name: 'Sign in' }).click());
      } else if ((await p.getByRole('button', { name: 'Allow' }).count()) > 0) {
        await navigating(p, () => p.getByRole('button', { name: 'Allow' }).click());
      } else {
        throw new Error(`unexpected page ${p.url()}: ${(await p.locator('body').innerText()).slice(0, 300)}`);
      }
    }
  };

  const shoot = (name: string) => shootLightAndDark(page, `console-${name}`);

  const open = async (path: string) => {
    let status = 0;
    await navigating(page, async () => {
      status = (await page.goto(url(path)))?.status() ?? 0;
    });
    return status;
  };

  before(async () => {
    as = await startDelegationServer({
      users: [
        { username: 'demo', name: 'Demo User', email: 'demo@example.com', password_hash: DEMO_PASSWORD_HASH },
        { username: 'admin', name: 'Ada Admin', password_hash: DEMO_PASSWORD_HASH, roles: ['admin:write'] },
        { username: 'auditor', password_hash: DEMO_PASSWORD_HASH, roles: ['admin:read'] },
      ],
    });
    browser = await launchChromium();
    context = await browser.newContext({ viewport: { width: 1280, height: 820 }, deviceScaleFactor: 1 });
    page = await context.newPage();
    page.on('dialog', (dialog) => {
      dialogs.push(dialog.message());
      void dialog.dismiss();
    });
  });
  after(async () => {
    await browser?.close();
    await as?.close();
  });

  /** A real chain: demo signs in to the sample agent, which calls the gateway's MCP server, which calls the Todo API. */
  const delegatedCall = async () => {
    const actor = await postForm(`${as.issuer}/token`, { grant_type: 'client_credentials', resource: R.agent }, auth.agent);
    assert.equal(actor.status, 200, actor.text);
    const { token } = await userToken(as, { clientId: 'sample-agent', redirectUri: AGENT_REDIRECT, resource: R.agent, scope: 'banking:read', clientAuth: auth.agent });
    const gateway = await exchange(as, { subject_token: token.access_token, actor_token: actor.json.access_token as string, actor_token_type: ACCESS_TOKEN_TYPE, resource: R.gateway }, auth.agent);
    assert.equal(gateway.status, 200, gateway.text);
    const api = await exchange(as, { subject_token: gateway.json.access_token as string, resource: R.api, scope: 'banking:read' }, auth.mcp);
    assert.equal(api.status, 200, api.text);
  };

  it('signs an admin in through the authorization server (PKCE, the built-in console client) and keeps the tokens server-side', async () => {
    const sent: string[] = [];
    page.on('request', (r) => {
      if (r.url().includes('/authorize?')) sent.push(r.url());
    });
    await signIn(page, 'admin');
    assert.equal(new URL(page.url()).pathname, '/console/agents');
    assert.equal(await page.locator('#admin-name').innerText(), 'admin');
    const authorize = new URL(sent[0]!);
    assert.equal(authorize.searchParams.get('client_id'), 'mandate-console');
    assert.equal(authorize.searchParams.get('code_challenge_method'), 'S256');
    assert.equal(authorize.searchParams.get('redirect_uri'), `${as.issuer}/console/callback`);
    assert.equal(authorize.searchParams.get('resource'), `${as.issuer}/admin`);
    const client = await as.store.clients.find('mandate-console');
    assert.equal(client?.metadata.token_endpoint_auth_method, 'none');
    assert.equal(client?.source, 'config');
    // The browser holds one random, HttpOnly, SameSite=Lax key; no token.
    const cookies = (await context.cookies(url('/agents'))).filter((c) => c.name.startsWith('mandate_console'));
    assert.equal(cookies.length, 1);
    assert.equal(cookies[0]!.httpOnly, true);
    assert.equal(cookies[0]!.sameSite, 'Lax');
    assert.equal(cookies[0]!.path, '/console');
    assert.doesNotMatch(cookies[0]!.value, /^eyJ/);
    const res = await page.request.get(url('/agents'));
    const csp = res.headers()['content-security-policy'] ?? '';
    assert.match(csp, /default-src 'none'/);
    assert.doesNotMatch(csp, /script-src/);
    assert.equal(res.headers()['x-frame-options'], 'DENY');
    // The admin's token was issued to the console for the admin resource.
    const issued = (await events()).find((e) => e.type === 'token.issued' && e.clientId === 'mandate-console');
    assert.equal(issued?.data?.resource, `${as.issuer}/admin`);
    assert.match(String(issued?.data?.scope), /admin:write/);
  });

  it('shows the delegation chain of a real delegated call as a picture: user → agent → MCP server → API', async () => {
    await delegatedCall();
    await open(`/audit?agent=sample-agent&type=token.issued&client_id=mcp-server`);
    const row = page.locator('#audit-events tr[data-event]').first();
    const nodes = await row.locator('.chain li.node').evaluateAll((els) => els.map((el) => `${el.className.replace('node ', '')}:${el.getAttribute('data-id')}`));
    const demo = (await as.store.users.findByUsername('demo'))!;
    assert.deepEqual(nodes, [`user:${demo.sub}`, 'agent:sample-agent', 'client:mcp-server', `resource:${R.api}`]);
    assert.match(await row.locator('.chain li.node.user').innerText(), /demo$/);
    assert.match((await row.locator('.chain').getAttribute('aria-label')) ?? '', /user demo → agent sample-agent → client mcp-server → API Todo API/);
    assert.equal(await page.locator('#audit-events .chain li.arrow').first().isVisible(), true);
    await shoot('audit');
  });

  it('searches the audit log: by decision, admin and time range', async () => {
    const wrong = await postForm(`${as.issuer}/token`, { grant_type: 'client_credentials' }, { authorization: basic('sample-agent', 'not-the-secret-0123456789abcdef0123') });
    assert.equal(wrong.status, 401);
    await open('/audit?decision=failure');
    const outcomes = await page.locator('#audit-events tr[data-event] td:last-child .badge').allInnerTexts();
    assert.ok(outcomes.length > 0 && outcomes.every((o) => o === 'refused'), `only refusals: ${outcomes.join(',')}`);
    await open('/audit?until=2000-01-01T00:00');
    assert.equal(await page.locator('#audit-events tr[data-event]').count(), 0, 'nothing before 2000');
    await open('/audit');
    await page.locator('#f-actor').fill('admin');
    await navigating(page, () => page.getByRole('button', { name: 'Search' }).click());
    // The console's own reads are audited as the admin, through the console.
    const types = await page.locator('#audit-events tr[data-event] td:nth-child(2) code').allInnerTexts();
    assert.ok(types.length > 0 && types.every((t) => t.startsWith('admin.')), types.join(','));
    assert.equal(await page.locator('#audit-events tr[data-event] .chain li.node.resource').first().innerText().then((t) => t.split('\n').pop()), 'Admin API');
  });

  it('disables and enables an agent, each write read back, and the disabled agent is refused a token', async () => {
    await open('/agents');
    await shoot('agents');
    await navigating(page, () => page.getByRole('link', { name: 'Sample agent' }).click());
    assert.match(await page.locator('#agent-state').innerText(), /enabled/);
    assert.ok((await page.locator('#agent-events tr[data-event]').count()) > 0, "the agent's recent events");
    assert.ok((await page.locator('#agent-events .chain').count()) > 0, "the agent's chains");
    await shoot('agent');

    // Without the tick the browser does not send the form (required), and the server refuses it anyway.
    const unconfirmed = await page.request.post(url('/agents/sample-agent'), { form: { csrf: await page.locator('input[name=csrf]').first().inputValue(), action: 'disable' }, maxRedirects: 0 });
    assert.equal(unconfirmed.status(), 400);
    assert.match(await unconfirmed.text(), /tick &quot;Revoke everything it holds now&quot; to disable the agent|tick "Revoke everything it holds now" to disable the agent/);
    assert.equal((await as.store.clients.find('sample-agent'))?.disabledAt, undefined, 'nothing disabled without the tick');
    await page.locator('#confirm-disable').check();
    await navigating(page, () => page.locator('#disable').click());
    assert.match(await page.locator('#flash').innerText(), /Disabled/);
    assert.match(await page.locator('#agent-state').innerText(), /disabled/, 'read back: disabled');
    assert.ok((await as.store.clients.find('sample-agent'))?.disabledAt !== undefined);
    const refused = await postForm(`${as.issuer}/token`, { grant_type: 'client_credentials', resource: R.agent }, auth.agent);
    assert.equal(refused.status, 401);
    assert.equal(refused.json.error, 'invalid_client');

    await navigating(page, () => page.locator('#enable').click());
    assert.match(await page.locator('#agent-state').innerText(), /enabled/, 'read back: enabled');
    assert.equal((await as.store.clients.find('sample-agent'))?.disabledAt, undefined);
    const update = (await events()).filter((e) => e.type === 'admin.agents.update' && e.outcome === 'success');
    assert.equal(update.length, 2);
    assert.deepEqual([update[0]!.data?.admin, update[0]!.data?.front_end, update[0]!.data?.via_client], ['admin', 'console', 'mandate-console']);
    assert.ok(typeof update[0]!.data?.session_id === 'string');

    // Expiry and owner, read back too.
    await page.locator('#expires_at').fill('2031-05-01T12:00');
    await navigating(page, () => page.getByRole('button', { name: 'Set expiry' }).click());
    assert.equal(await page.locator('#agent-expiry').innerText(), '2031-05-01T12:00:00.000Z');
    await navigating(page, () => page.getByRole('button', { name: 'Never expires' }).click());
    assert.equal(await page.locator('#agent-expiry').innerText(), 'never');
    // The file sets this agent's owner: the refusal shows as a page.
    await page.locator('#owner').fill('admin');
    const res = page.waitForResponse((r) => r.url().endsWith('/console/agents/sample-agent') && r.request().method() === 'POST');
    await navigating(page, () => page.getByRole('button', { name: 'Set owner' }).click());
    assert.equal((await res).status(), 409);
    assert.equal(await page.locator('#error-code').innerText(), 'conflict');
  });

  it('renders every page: users (roles, grants, consents), clients, resources, agreements, keys', async () => {
    // The disable above revoked demo's grants to the agent: one more sign-in.
    await userToken(as, { clientId: 'sample-agent', redirectUri: AGENT_REDIRECT, resource: R.agent, scope: 'banking:read', clientAuth: auth.agent });
    await open('/users');
    assert.deepEqual(await page.locator('#users tbody tr td:first-child').allInnerTexts(), ['admin', 'auditor', 'demo']);
    await shoot('users');
    await open('/users/demo');
    assert.ok((await page.locator('#grants tbody tr form').count()) > 0, "demo's grants, with revoke");
    assert.ok((await page.locator('#consents tbody tr').count()) > 0);
    // demo comes from the configuration file: its roles are changed there, so no form that could only fail.
    assert.equal(await page.locator('#save-roles').count(), 0);
    assert.match(await page.locator('#roles-from-config').innerText(), /configuration file/);
    await shoot('user');
    await open('/clients');
    assert.ok((await page.locator('#clients').innerText()).includes('mandate-console'));
    await shoot('clients');
    await open('/clients/mcp-server');
    assert.match(await page.locator('#client-state').innerText(), /enabled/);
    await shoot('client');
    await open('/resources');
    assert.ok((await page.locator('#resources').innerText()).includes(R.gateway));
    await shoot('resources');
    await open(`/resource?id=${encodeURIComponent(R.gateway)}`);
    assert.ok((await page.locator('#mappings').innerText()).includes('agent_owner'));
    await open('/agreements');
    assert.match(await page.locator('.agreement-item').first().innerText(), /act on my behalf/);
    await shoot('agreements');
    await open('/keys');
    await shoot('keys');
    await open('/usage');
    const today = new Date().toISOString().slice(0, 10);
    const issued = Number(await page.locator('#usage-totals th:nth-child(2)').innerText());
    assert.ok(issued >= 6, `tokens issued so far: ${issued}`);
    assert.ok(Number(await page.locator('#usage-totals th:nth-child(3)').innerText()) >= 2, 'the two exchanges');
    assert.equal(await page.locator(`#usage tr[data-day="${today}"] meter`).count(), 3);
    await shoot('usage');
    assert.equal(await open('/nothing-here'), 404);
    assert.deepEqual(dialogs, [], 'no page runs script');
  });

  it('revokes a grant of a user, read back', async () => {
    await open('/users/demo');
    const before = await page.locator('#grants tbody tr form').count();
    await navigating(page, () => page.locator('#grants tbody tr form button').first().click());
    assert.match(await page.locator('#flash').innerText(), /Grant revoked/);
    assert.equal(await page.locator('#grants tbody tr form').count(), before - 1);
    const revoked = (await events()).find((e) => e.type === 'admin.grants.revoke');
    assert.equal(revoked?.outcome, 'success');
    assert.equal(revoked?.data?.username, 'demo');
  });

  it('tries a claim mapping on a sample token with the CEL engine tokens are issued with', async () => {
    await open(`/resource?id=${encodeURIComponent(R.gateway)}`);
    await page.locator('#sample').fill(JSON.stringify({ client: { client_id: 'sample-agent', agent: { owner: 'demo' } }, actor: { sub: 'sample-agent' } }));
    await page.locator('#expression').fill('"mapping:" + actor.sub');
    await navigating(page, () => page.locator('#try').click());
    assert.equal(await page.locator('#try-results tr[data-claim="agent_owner"] .value').innerText(), '"demo"');
    assert.equal(await page.locator('#try-results tr[data-claim="(your expression)"] .value').innerText(), '"mapping:sample-agent"');
    await shoot('resource');
    // A broken expression is an answer, not a crash.
    await page.locator('#expression').fill('actor.nope.deeper');
    await navigating(page, () => page.locator('#try').click());
    assert.match(await page.locator('#try-results tr[data-claim="(your expression)"] .fail').innerText(), /CEL/);
    await page.locator('#sample').fill('{not json');
    await navigating(page, () => page.locator('#try').click());
    assert.match(await page.locator('#try-error').innerText(), /not JSON/);
  });

  it('rotates the signing keys, read back', async () => {
    await open('/keys');
    const before = await page.locator('#keys tbody tr').count();
    await navigating(page, () => page.locator('#rotate').click());
    assert.match(await page.locator('#flash').innerText(), /Rotated/);
    assert.equal(await page.locator('#keys tbody tr').count(), before + 1);
    assert.equal(await page.locator('#keys tbody tr td:nth-child(2)').filter({ hasText: 'next' }).count(), 1);
  });

  it('refuses a POST without the CSRF token (or with a wrong one): 403, nothing changed, audited', async () => {
    const forms: Record<string, string>[] = [{ action: 'disable' }, { action: 'disable', csrf: 'forged' }];
    for (const form of forms) {
      const res = await page.request.post(url('/agents/sample-agent'), { form, maxRedirects: 0 });
      assert.equal(res.status(), 403);
      assert.match(await res.text(), /id="error-code">invalid_request</);
    }
    assert.equal((await as.store.clients.find('sample-agent'))?.disabledAt, undefined, 'still enabled');
    const refused = (await events()).filter((e) => e.type === 'console.refused');
    assert.equal(refused.length, 2);
    assert.equal(refused[0]!.reason, 'CSRF token missing or wrong');
    assert.equal(refused[0]!.error, 'invalid_request');
    assert.equal(refused[0]!.data?.admin, 'admin');
  });

  it('tells a user without an admin role they are not an administrator (403), audited', async () => {
    const other = await browser.newContext();
    const p = await other.newPage();
    try {
      let status = 0;
      p.on('response', (r) => {
        if (r.url().includes('/console/callback')) status = r.status();
      });
      await signIn(p, 'demo');
      assert.equal(status, 403);
      assert.equal(await p.locator('h1').innerText(), 'You are not an administrator');
      assert.equal((await other.cookies(url('/agents'))).filter((c) => c.name.startsWith('mandate_console')).length, 0, 'no console session');
      const refused = (await events()).find((e) => e.type === 'authorize.refused' && e.clientId === 'mandate-console');
      assert.equal(refused?.error, 'invalid_scope');
      assert.match(refused?.reason ?? '', /^user demo holds no admin role allowing/);
    } finally {
      await other.close();
    }
  });

  it('lets a read-only admin read but not write: the refusal names the scope, audited', async () => {
    const other = await browser.newContext();
    const p = await other.newPage();
    try {
      await signIn(p, 'auditor');
      assert.equal(new URL(p.url()).pathname, '/console/agents');
      await navigating(p, () => p.goto(url('/agents/sample-agent')));
      const res = p.waitForResponse((r) => r.url().endsWith('/console/agents/sample-agent') && r.request().method() === 'POST');
      await p.locator('#confirm-disable').check();
      await navigating(p, () => p.locator('#disable').click());
      assert.equal((await res).status(), 403);
      assert.equal(await p.locator('#error-code').innerText(), 'insufficient_scope');
      const refused = (await events()).find((e) => e.type === 'admin.agents.update' && e.outcome === 'failure' && e.data?.admin === 'auditor');
      assert.equal(refused?.error, 'insufficient_scope');
      assert.equal(refused?.reason, 'auditor holds admin:read; agents.update needs one of admin:write admin:agents:write');
      assert.equal((await as.store.clients.find('sample-agent'))?.disabledAt, undefined);
    } finally {
      await other.close();
    }
  });

  it('refreshes the admin token server-side when it is about to expire', async () => {
    const key = (await context.cookies(url('/agents'))).find((c) => c.name === 'mandate_console')!.value;
    const session = (await as.ctx.cache.get<{ accessToken: string; refreshToken?: string; expiresAt: number }>(`console:${key}`))!;
    assert.ok(session.refreshToken, 'a refresh token, kept server-side');
    await as.ctx.cache.set(`console:${key}`, { ...session, expiresAt: as.ctx.now() }, 600);
    assert.equal(await open('/agents'), 200);
    const after = (await as.ctx.cache.get<{ accessToken: string; refreshToken?: string; expiresAt: number }>(`console:${key}`))!;
    assert.notEqual(after.accessToken, session.accessToken, 'a new access token');
    assert.notEqual(after.refreshToken, session.refreshToken, 'the refresh token rotated');
    assert.ok(after.expiresAt > as.ctx.now() + 60);
    assert.ok((await events()).some((e) => e.type === 'token.issued' && e.clientId === 'mandate-console' && e.data?.grant_type === 'refresh_token'));
  });

  it('signs out: the tokens are revoked and the console asks to sign in again', async () => {
    const admin = (await as.store.users.findByUsername('admin'))!;
    await open('/agents');
    await navigating(page, () => page.getByRole('button', { name: 'Sign out' }).click());
    assert.equal(await page.locator('#signed-out').count(), 1);
    await shoot('signed-out');
    const grants = (await as.store.grants.listGrantsBySub(admin.sub)).filter((g) => g.clientId === 'mandate-console');
    assert.ok(grants.length > 0 && grants.every((g) => g.revokedAt !== undefined), 'the console grant is revoked');
    assert.ok((await events()).some((e) => e.type === 'token.revoked' && e.clientId === 'mandate-console' && e.data?.kind === 'refresh_token'));
    const res = await page.request.get(url('/agents'), { maxRedirects: 0 });
    assert.equal(res.status(), 303);
    assert.equal(res.headers().location, '/console');
  });
});
