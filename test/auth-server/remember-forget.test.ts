import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { Hono } from 'hono';
import { forgetThisBrowser } from '../../src/auth-server/remember/index.ts';
import { ADMIN_CLIENT, api, REDIRECT_URI, signIn, startAdminServer } from '../admin/helpers.ts';
import type { TestAuthServer } from '../helpers/auth-server.ts';
import { Browser, comeBack, events, passwordSignIn, REDIRECT, subOf } from './remember-helpers.ts';

/**
 * Forgetting remembered browsers: the user on the account page ("Forget"), an admin through the
 * admin API (`remembered.list` / `remembered.revoke`), and a password change. Each forgotten
 * browser is asked for the password next time; refusals assert status, error and audit reason.
 */
describe('remember me: forgetting browsers', () => {
  let as: TestAuthServer;
  const tokens: Record<string, string> = {};
  before(async () => {
    as = await startAdminServer({
      clients: [
        { client_id: ADMIN_CLIENT, client_name: 'Admin test console', token_endpoint_auth_method: 'none', redirect_uris: [REDIRECT_URI] },
        { client_id: 'remember-app', client_name: 'Remember app', token_endpoint_auth_method: 'none', redirect_uris: [REDIRECT] },
      ],
      remember_me: { enabled: true },
    });
    for (const [user, scope] of [
      ['alice', 'admin:read admin:write'],
      ['reader', 'admin:read'],
    ] as const) {
      const result = await signIn(as, user, { scope });
      assert.ok('accessToken' in result, `${user} signs in`);
      tokens[user] = result.accessToken!;
    }
  });
  after(async () => as?.close());

  const accountPage = (browser: Browser) => browser.open('/account/security');
  const csrfOf = (html: string) => /name="csrf" value="([^"]+)"/.exec(html)![1]!;
  const forget = (browser: Browser, csrf: string, id: string) => browser.open('/account/security/remembered/forget', { method: 'POST', form: { csrf, id } });
  const idOf = (browser: Browser) => browser.jar.get('mandate_remember')!.split('.')[0]!;

  it('the account page lists remembered browsers, this one marked; "Forget" ends one, audited', async () => {
    const here = new Browser(as);
    const there = new Browser(as);
    await passwordSignIn(as, here, 'demo');
    await passwordSignIn(as, there, 'demo');
    let page = await accountPage(here);
    assert.equal(page.status, 200);
    assert.match(page.html, /Browsers that keep you signed in/);
    const items = [...page.html.matchAll(/<li data-id="([^"]+)">/g)].map((m) => m[1]);
    assert.deepEqual(items.sort(), [idOf(here), idOf(there)].sort());
    assert.match(page.html, new RegExp(`data-id="${idOf(here)}"><span><strong>Chrome on Linux</strong> <span class="badge verified">This browser`));
    assert.match(page.html, /aria-label="Forget: Chrome on Linux"/);

    const gone = idOf(there);
    page = await forget(here, csrfOf(page.html), gone);
    assert.match(page.html, /id="account-notice"[^>]*>The browser was forgotten/);
    assert.doesNotMatch(page.html, new RegExp(gone));
    const [forgotten] = await events(as, 'remember_me.forgotten', await subOf(as, 'demo'));
    assert.deepEqual(forgotten?.data, { by: 'user', remembered_id: gone, count: 1 });
    there.closeSession();
    const back = await comeBack(as, there);
    assert.match(back.html, /name="password"/, 'the forgotten browser asks for the password');
    assert.ok(here.jar.has('mandate_remember'), 'the other one is untouched');

    // Forgetting this browser deletes its cookie too.
    page = await forget(here, csrfOf((await accountPage(here)).html), idOf(here));
    assert.equal(here.jar.has('mandate_remember'), false);
    assert.match(page.html, /id="remembered-none"/);
  });

  it('refuses to forget without the CSRF token, or a browser that is not the user\'s', async () => {
    const mine = new Browser(as);
    const theirs = new Browser(as);
    await passwordSignIn(as, mine, 'demo');
    await passwordSignIn(as, theirs, 'agents-admin');
    const csrf = csrfOf((await accountPage(mine)).html);
    let page = await forget(mine, 'forged', idOf(mine));
    assert.equal(page.status, 403);
    let [refused] = await events(as, 'account.refused');
    assert.deepEqual([refused?.error, refused?.reason], ['invalid_request', 'POST /account/security/remembered/forget: CSRF token mismatch']);
    page = await forget(mine, csrf, idOf(theirs));
    assert.equal(page.status, 400);
    [refused] = await events(as, 'account.refused');
    assert.deepEqual([refused?.error, refused?.reason], ['invalid_request', 'POST /account/security/remembered/forget: no such remembered browser']);
    assert.ok(await as.store.remembered.find(idOf(theirs)), "the other user's browser stays");
  });

  it('admins list and revoke remembered browsers (remembered.list / remembered.revoke); readers may not revoke', async () => {
    const browser = new Browser(as);
    // The reader signed in before from another program (the admin sign-in): a first sign-in from
    // this browser is a change of browser family, so it is not remembered; the second one is.
    await passwordSignIn(as, browser, 'reader');
    assert.equal(browser.jar.has('mandate_remember'), false);
    await passwordSignIn(as, browser, 'reader', { extra: { prompt: 'login' } });
    const id = idOf(browser);
    const listed = await api(as, tokens.reader, 'GET', '/users/reader/remembered');
    assert.equal(listed.status, 200);
    const item = listed.json.items!.find((i) => i.id === id);
    assert.deepEqual(Object.keys(item!).sort(), ['address_prefix', 'country', 'created_at', 'expires_at', 'id', 'last_used_at', 'user_agent']);
    assert.deepEqual([item?.user_agent, item?.address_prefix, item?.country], ['Chrome on Linux', '127.0.0.0/24', null]);
    assert.equal((item!.expires_at as number) - (item!.created_at as number), 30 * 86_400, 'the default lifetime, 30 days');

    const refused = await api(as, tokens.reader, 'DELETE', `/users/reader/remembered?id=${id}`);
    assert.deepEqual([refused.status, refused.json.error], [403, 'insufficient_scope']);
    const [denied] = (await events(as, 'admin.remembered.revoke')).filter((e) => e.outcome === 'failure');
    assert.match(denied?.reason ?? '', /^reader holds admin:read; remembered.revoke needs one of admin:write admin:sessions:write/);

    const done = await api(as, tokens.alice, 'DELETE', `/users/reader/remembered?id=${id}`);
    assert.deepEqual([done.status, done.json], [200, { revoked: 1 }]);
    const again = await api(as, tokens.alice, 'DELETE', `/users/reader/remembered?id=${id}`);
    assert.deepEqual([again.status, again.json.error], [404, 'not_found']);
    const [forgotten] = await events(as, 'remember_me.forgotten', await subOf(as, 'reader'));
    assert.deepEqual(forgotten?.data, { by: 'admin', remembered_id: id, count: 1, actor: 'alice' });
    browser.closeSession();
    assert.match((await comeBack(as, browser)).html, /name="password"/);

    const openapi = (await (await fetch(`${as.issuer}/admin/api/v1/openapi.json`)).json()) as { paths: Record<string, Record<string, unknown>> };
    assert.deepEqual(Object.keys(openapi.paths['/users/{username}/remembered'] ?? {}).sort(), ['delete', 'get']);
  });

  it('forgetThisBrowser (for sign-out endpoints) forgets only with the current token, and deletes the cookie', async () => {
    const browser = new Browser(as);
    await passwordSignIn(as, browser, 'demo', { extra: { prompt: 'login' } });
    const value = browser.jar.get('mandate_remember')!;
    const signOut = new Hono().post('/out', async (c) => {
      await forgetThisBrowser(as.ctx, c);
      return c.text('out');
    });
    const post = (cookie: string) => signOut.request('/out', { method: 'POST', headers: { cookie: `mandate_remember=${cookie}` } });
    const forged = await post(`${value.split('.')[0]}.${'x'.repeat(43)}`);
    assert.match(forged.headers.get('set-cookie') ?? '', /^mandate_remember=; Max-Age=0/);
    assert.ok(await as.store.remembered.find(value.split('.')[0]!), 'a forged token deletes nothing');
    await post(value);
    assert.equal(await as.store.remembered.find(value.split('.')[0]!), undefined);
    const [forgotten] = await events(as, 'remember_me.forgotten', await subOf(as, 'demo'));
    assert.deepEqual(forgotten?.data, { by: 'sign_out', remembered_id: value.split('.')[0], count: 1 });
  });

  it('signing out (the account page, or /logout confirmed) forgets this browser too', async () => {
    const viaAccount = new Browser(as);
    await passwordSignIn(as, viaAccount, 'agents-admin', { extra: { prompt: 'login' } });
    const first = idOf(viaAccount);
    const page = await accountPage(viaAccount);
    await viaAccount.open('/account/security/sign-out', { method: 'POST', form: { csrf: csrfOf(page.html) } });
    assert.equal(viaAccount.jar.has('mandate_remember'), false);
    assert.equal(await as.store.remembered.find(first), undefined);
    assert.match((await comeBack(as, viaAccount)).html, /name="password"/, 'the next visit asks for the password');

    const viaLogout = new Browser(as);
    await passwordSignIn(as, viaLogout, 'agents-admin', { extra: { prompt: 'login' } });
    const second = idOf(viaLogout);
    const confirm = await viaLogout.open('/logout');
    assert.match(confirm.html, /name="logout_request"/);
    await viaLogout.submit(confirm, { decision: 'logout' });
    assert.equal(viaLogout.jar.has('mandate_remember'), false);
    assert.equal(await as.store.remembered.find(second), undefined);
    const forgotten = (await events(as, 'remember_me.forgotten', await subOf(as, 'agents-admin'))).filter((e) => e.data?.by === 'sign_out').map((e) => e.data?.remembered_id);
    assert.deepEqual(forgotten.slice(0, 2).sort(), [first, second].sort());
  });

  it('a password change forgets every remembered browser of the user', async () => {
    const created = await api(as, tokens.alice, 'POST', '/users', { username: 'newbie', password: 'a-long-password-1' });
    assert.equal(created.status, 201);
    const browser = new Browser(as);
    await passwordSignIn(as, browser, 'newbie', { password: 'a-long-password-1' });
    const sub = await subOf(as, 'newbie');
    assert.equal((await as.store.remembered.listBySub(sub, as.ctx.now())).length, 1);
    const changed = await api(as, tokens.alice, 'PATCH', '/users/newbie', { password: 'another-long-password-2' });
    assert.equal(changed.status, 200);
    assert.deepEqual(await as.store.remembered.listBySub(sub, as.ctx.now()), []);
    const [forgotten] = await events(as, 'remember_me.forgotten', sub);
    assert.deepEqual(forgotten?.data, { by: 'password_change', count: 1 });
    browser.closeSession();
    assert.match((await comeBack(as, browser)).html, /name="password"/);
  });
});
