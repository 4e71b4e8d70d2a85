import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { FormBrowser } from '../helpers/browser-driver.ts';
import { startTestAuthServer, type TestAuthServer } from '../helpers/auth-server.ts';
import { Browser, comeBack, COUNTRY_HEADER, events, FIREFOX_WINDOWS, passwordSignIn, REDIRECT, signals, startRememberServer, subOf, authorizeUrl } from './remember-helpers.ts';

/**
 * "Keep me signed in", decided by risk, over HTTP: set only at a low-risk sign-in, used silently
 * while the risk stays low, and otherwise deleted with the password asked (never blocked). Every
 * refusal asserts its audit event, reason and signals. The browser sits behind a trusted proxy
 * (127.0.0.1) that sets X-Forwarded-For and the country header.
 */
describe('remember me over HTTP', () => {
  let as: TestAuthServer;
  before(async () => {
    as = await startRememberServer();
  });
  after(async () => as?.close());

  const isCodeRedirect = (page: { external?: string }) => {
    assert.ok(page.external?.startsWith(REDIRECT), `back at the client, not ${page.external ?? 'a page'}`);
    const url = new URL(page.external!);
    assert.ok(url.searchParams.get('code'), `a code: ${url.search}`);
    return url;
  };

  it('low risk: the box sets the cookie; with the session gone the browser signs in silently, keeping auth_time', async () => {
    const browser = new Browser(as);
    isCodeRedirect(await passwordSignIn(as, browser, 'demo'));
    const cookie = browser.jar.get('mandate_remember');
    assert.match(cookie ?? '', /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/);
    assert.ok(browser.jar.get('mandate_device'), 'a device cookie');
    const sub = await subOf(as, 'demo');
    const [set] = await events(as, 'remember_me.set', sub);
    assert.equal(set?.data?.level, 'low');
    assert.deepEqual(set?.data?.reasons, ['new_device'], 'a first sign-in: only the new device');
    // Only the hash is stored.
    const [record] = await as.store.remembered.listBySub(sub, as.ctx.now());
    assert.ok(record);
    assert.ok(!JSON.stringify(record).includes(cookie!.split('.')[1]!), 'the token is not stored');
    const firstAuthTime = record.authTime;

    browser.closeSession();
    const page = await comeBack(as, browser);
    isCodeRedirect(page);
    assert.equal(browser.pages.filter((p) => p.html.includes('name="password"')).length, 1, 'the password page was shown once only');
    const [used] = await events(as, 'remember_me.used', sub);
    assert.equal(used?.outcome, 'success');
    assert.equal(used?.data?.score, 0);
    assert.deepEqual(used?.data?.reasons, []);
    assert.equal(signals(used)?.device, 'known');
    // A new session, with the password sign-in's auth_time and amr.
    const sessionId = browser.jar.get('mandate_session')!;
    const session = await as.ctx.cache.get<{ authTime: number; amr?: string[] }>(`session:${sessionId}`);
    assert.equal(session?.authTime, firstAuthTime);
    assert.deepEqual(session?.amr, ['pwd', 'remembered']);
  });

  it('rotates the cookie at each use; the rotated value presented again revokes the whole remembered sign-in', async () => {
    const browser = new Browser(as);
    await passwordSignIn(as, browser, 'ann');
    const first = browser.jar.get('mandate_remember')!;
    browser.closeSession();
    isCodeRedirect(await comeBack(as, browser));
    const second = browser.jar.get('mandate_remember')!;
    assert.notEqual(second, first, 'rotated');
    assert.equal(second.split('.')[0], first.split('.')[0], 'same remembered sign-in');

    // A thief replays the first value, device cookie and all, a minute after it was rotated away.
    const sub = await subOf(as, 'ann');
    await as.store.db.updateTable('remembered_devices').set({ rotated_at: as.ctx.now() - 60 }).where('sub', '=', sub).execute();
    const thief = new Browser(as);
    thief.jar.set('mandate_remember', first);
    thief.jar.set('mandate_device', browser.jar.get('mandate_device')!);
    const page = await comeBack(as, thief);
    assert.match(page.html, /name="password"/, 'the thief is asked for the password');
    assert.match(page.html, /Please sign in again/);
    assert.equal(thief.jar.has('mandate_remember'), false, 'cookie deleted');
    const [reuse] = await events(as, 'remember_me.reuse_detected', sub);
    assert.equal(reuse?.outcome, 'failure');
    assert.equal(reuse?.reason, 'a rotated remember cookie was presented again; the remembered sign-in is revoked');
    assert.equal(reuse?.data?.same_device, true);
    assert.deepEqual(await as.store.remembered.listBySub(sub, as.ctx.now()), [], 'the whole record is gone');

    // The owner's current value is dead too: the password, not an error.
    browser.closeSession();
    const owner = await comeBack(as, browser);
    assert.match(owner.html, /name="password"/);
    const refused = (await events(as, 'remember_me.refused')).find((e) => e.data?.remembered_id === second.split('.')[0]);
    assert.equal(refused?.reason, 'unknown or forgotten');
  });

  it('a second tab sending the value just rotated away, from the same device, within seconds, is no theft', async () => {
    const browser = new Browser(as);
    await passwordSignIn(as, browser, 'ben');
    const first = browser.jar.get('mandate_remember')!;
    browser.closeSession();
    isCodeRedirect(await comeBack(as, browser));
    const tab = new Browser(as);
    tab.jar.set('mandate_remember', first);
    tab.jar.set('mandate_device', browser.jar.get('mandate_device')!);
    isCodeRedirect(await comeBack(as, tab));
    assert.equal((await events(as, 'remember_me.reuse_detected', await subOf(as, 'ben'))).length, 0);
    // From another device it is theft, even within seconds.
    const other = new Browser(as);
    other.jar.set('mandate_remember', first);
    assert.match((await comeBack(as, other)).html, /name="password"/);
    const [reuse] = await events(as, 'remember_me.reuse_detected', await subOf(as, 'ben'));
    assert.equal(reuse?.data?.same_device, false);
  });

  it('changed device: the cookie without its device cookie is deleted and the password asked', async () => {
    const browser = new Browser(as);
    await passwordSignIn(as, browser, 'cat');
    browser.closeSession();
    browser.jar.delete('mandate_device');
    const page = await comeBack(as, browser);
    assert.equal(page.status, 200);
    assert.match(page.html, /name="password"/);
    assert.match(page.html, /id="login-note"[^>]*>Please sign in again\./);
    assert.equal(browser.jar.has('mandate_remember'), false, 'cookie deleted');
    const [refused] = await events(as, 'remember_me.refused', await subOf(as, 'cat'));
    assert.equal(refused?.outcome, 'failure');
    assert.equal(refused?.reason, 'risk high: device_mismatch');
    assert.deepEqual([refused?.data?.score, refused?.data?.level, refused?.data?.reasons], [100, 'high', ['device_mismatch']]);
    assert.equal(signals(refused)?.device, 'mismatch');
    // Never blocked: the password signs in.
    const after = await browser.submit(page, { username: 'cat', password: 'demo' });
    isCodeRedirect(after.html.includes('name="decision"') ? await browser.submit(after, { decision: 'allow' }) : after);
  });

  it('changed address (another /24 through the trusted proxy): cookie deleted, password asked, signals audited', async () => {
    const browser = new Browser(as);
    await passwordSignIn(as, browser, 'dan');
    browser.closeSession();
    // Same /24: still low.
    browser.sent['x-forwarded-for'] = '203.0.113.200';
    isCodeRedirect(await comeBack(as, browser));
    browser.closeSession();
    browser.sent['x-forwarded-for'] = '198.51.100.7';
    const page = await comeBack(as, browser);
    assert.match(page.html, /name="password"/);
    assert.equal(browser.jar.has('mandate_remember'), false);
    const [refused] = await events(as, 'remember_me.refused', await subOf(as, 'dan'));
    assert.equal(refused?.reason, 'risk medium: address_changed');
    assert.deepEqual([refused?.data?.score, refused?.data?.level], [40, 'medium']);
    assert.equal(signals(refused)?.address_prefix, '198.51.100.0/24');
    assert.equal((signals(refused)?.previous as Record<string, unknown>).address_prefix, '203.0.113.0/24');
  });

  it('changed browser family: refused with user_agent_changed', async () => {
    const browser = new Browser(as);
    await passwordSignIn(as, browser, 'eve');
    browser.closeSession();
    browser.sent['user-agent'] = FIREFOX_WINDOWS;
    assert.match((await comeBack(as, browser)).html, /name="password"/);
    const [refused] = await events(as, 'remember_me.refused', await subOf(as, 'eve'));
    assert.equal(refused?.reason, 'risk medium: user_agent_changed');
    assert.equal(signals(refused)?.user_agent, 'Firefox on Windows');
  });

  it('impossible travel: another country from the trusted proxy an hour later is high risk', async () => {
    const browser = new Browser(as, { [COUNTRY_HEADER]: 'GB' });
    await passwordSignIn(as, browser, 'fay');
    browser.closeSession();
    browser.sent[COUNTRY_HEADER] = 'SG';
    assert.match((await comeBack(as, browser)).html, /name="password"/);
    const [refused] = await events(as, 'remember_me.refused', await subOf(as, 'fay'));
    assert.equal(refused?.reason, 'risk high: impossible_travel');
    assert.equal(signals(refused)?.country, 'SG');
    assert.equal((signals(refused)?.previous as Record<string, unknown>).country, 'GB');
  });

  it('a risky sign-in does not set the cookie (skipped, audited): recent failed passwords', async () => {
    const browser = new Browser(as);
    let page = await browser.open(authorizeUrl(as));
    for (let i = 0; i < 3; i++) page = await browser.submit(page, { username: 'gus', password: `wrong-${i}`, remember: '1' });
    assert.match(page.html, /id="remember"[^>]*checked/, 'the box stays ticked on the error page');
    page = await browser.submit(page, { username: 'gus', password: 'demo', remember: '1' });
    if (page.html.includes('name="decision"')) page = await browser.submit(page, { decision: 'allow' });
    isCodeRedirect(page);
    assert.equal(browser.jar.has('mandate_remember'), false, 'not remembered, but signed in');
    const [skipped] = await events(as, 'remember_me.skipped', await subOf(as, 'gus'));
    assert.equal(skipped?.reason, 'risk medium: new_device failed_attempts');
    assert.equal(signals(skipped)?.recent_failures, 3);
  });

  it('a risky sign-in does not set the cookie: sign-in velocity', async () => {
    for (let i = 0; i < 5; i++) await passwordSignIn(as, new Browser(as), 'hal', { remember: false });
    const browser = new Browser(as);
    isCodeRedirect(await passwordSignIn(as, browser, 'hal'));
    assert.equal(browser.jar.has('mandate_remember'), false);
    const [skipped] = await events(as, 'remember_me.skipped', await subOf(as, 'hal'));
    assert.deepEqual(skipped?.data?.reasons, ['new_device', 'velocity']);
    assert.equal(signals(skipped)?.recent_sign_ins, 6);
  });

  it('a new browser at a new place after a known sign-in elsewhere is not remembered', async () => {
    await passwordSignIn(as, new Browser(as), 'ivy', { remember: false });
    const browser = new Browser(as, { 'x-forwarded-for': '192.0.2.9' });
    await passwordSignIn(as, browser, 'ivy');
    assert.equal(browser.jar.has('mandate_remember'), false);
    const [skipped] = await events(as, 'remember_me.skipped', await subOf(as, 'ivy'));
    assert.equal(skipped?.reason, 'risk medium: new_device address_changed');
  });

  it('no box ticked: no remember cookie, no audit event', async () => {
    const browser = new Browser(as);
    isCodeRedirect(await passwordSignIn(as, browser, 'jon', { remember: false }));
    assert.equal(browser.jar.has('mandate_remember'), false);
    assert.equal((await events(as, 'remember_me.set', await subOf(as, 'jon'))).length, 0);
    assert.equal((await events(as, 'remember_me.skipped', await subOf(as, 'jon'))).length, 0);
  });

  it('prompt=login and an exceeded max_age bypass the cookie (kept); prompt=none uses it', async () => {
    const browser = new Browser(as);
    await passwordSignIn(as, browser, 'kim');
    browser.closeSession();
    let page = await comeBack(as, browser, { prompt: 'login' });
    assert.match(page.html, /name="password"/);
    assert.doesNotMatch(page.html, /Please sign in again/, 'no note: nothing was refused');
    assert.ok(browser.jar.has('mandate_remember'), 'kept');
    page = await comeBack(as, browser, { max_age: '0' });
    assert.match(page.html, /name="password"/);
    assert.ok(browser.jar.has('mandate_remember'), 'kept');
    isCodeRedirect(await comeBack(as, browser, { prompt: 'none' }));
    assert.equal((await events(as, 'remember_me.refused', await subOf(as, 'kim'))).length, 0);
  });

  it('a password sign-in replaces the browser\'s remembered sign-in; unticked, it forgets it', async () => {
    const browser = new Browser(as);
    await passwordSignIn(as, browser, 'lou');
    const sub = await subOf(as, 'lou');
    assert.equal((await as.store.remembered.listBySub(sub, as.ctx.now())).length, 1);
    browser.closeSession();
    await passwordSignIn(as, browser, 'lou', { extra: { prompt: 'login' }, remember: false });
    assert.equal(browser.jar.has('mandate_remember'), false);
    assert.deepEqual(await as.store.remembered.listBySub(sub, as.ctx.now()), []);
  });

  it("the server's own pages too: the account page signs in silently (the README's walkthrough)", async () => {
    const browser = new Browser(as);
    let page = await browser.open('/account/security');
    assert.match(page.html, /<label class="check" for="remember"><input id="remember" name="remember" type="checkbox" value="1"/);
    page = await browser.submit(page, { username: 'jon', password: 'demo', remember: '1' });
    assert.match(page.html, /id="account-username">jon</);
    browser.closeSession();
    page = await browser.open('/account/security');
    assert.match(page.html, /id="account-username">jon</, 'no password page');
    assert.match(page.html, /This browser/);
    assert.equal(browser.pages.filter((p) => p.html.includes('name="password"') && p.html.includes('id="username"')).length, 1);
  });

  it('a malformed remember cookie is dropped without a word', async () => {
    const browser = new Browser(as);
    browser.jar.set('mandate_remember', 'not-a-remember-cookie');
    const page = await comeBack(as, browser);
    assert.match(page.html, /name="password"/);
    assert.doesNotMatch(page.html, /Please sign in again/);
    assert.equal(browser.jar.has('mandate_remember'), false);
  });

  it('an expired remembered sign-in is refused and deleted', async () => {
    const browser = new Browser(as);
    await passwordSignIn(as, browser, 'max');
    const sub = await subOf(as, 'max');
    await as.store.db.updateTable('remembered_devices').set({ expires_at: as.ctx.now() - 1 }).where('sub', '=', sub).execute();
    browser.closeSession();
    assert.match((await comeBack(as, browser)).html, /name="password"/);
    const [refused] = await events(as, 'remember_me.refused', sub);
    assert.equal(refused?.reason, 'expired');
    assert.equal((await as.store.db.selectFrom('remembered_devices').select('id').where('sub', '=', sub).execute()).length, 0);
  });
});

describe('remember me as shipped (off)', () => {
  let as: TestAuthServer;
  before(async () => {
    as = await startTestAuthServer({ clients: [{ client_id: 'remember-app', token_endpoint_auth_method: 'none', redirect_uris: [REDIRECT] }] });
  });
  after(async () => as?.close());

  it('no box, and a forged remember field sets nothing', async () => {
    const browser = new FormBrowser(as.issuer);
    const page = await browser.open(authorizeUrl(as));
    assert.doesNotMatch(page.html, /name="remember"/);
    const res = await fetch(new URL(/<form[^>]*action="([^"]+)"/.exec(page.html)![1]!, as.issuer), { method: 'POST', redirect: 'manual', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: 'x' });
    assert.equal(res.status, 400, 'no interaction cookie: refused');
    const signedIn = await browser.submit(page, { username: 'demo', password: 'demo', remember: '1' });
    assert.match(signedIn.html, /name="decision"/);
    const cookies = (browser as unknown as { cookies: Map<string, string> }).cookies;
    assert.deepEqual([cookies.has('mandate_remember'), cookies.has('mandate_device')], [false, false]);
    await as.ctx.audit.flush();
    assert.equal((await as.store.audit.list({ type: 'remember_me.set' })).length, 0);
  });

  it('ignores a remember cookie it did not set', async () => {
    const res = await fetch(authorizeUrl(as), { redirect: 'manual' });
    const interaction = res.headers.get('location')!;
    const bind = res.headers.getSetCookie().map((c) => c.split(';')[0]).join('; ');
    const page = await fetch(new URL(interaction, as.issuer), { headers: { cookie: `${bind}; mandate_remember=aaaaaaaaaaaaaaaaaaaaaa.bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb` } });
    assert.match(await page.text(), /name="password"/);
    assert.equal(page.headers.getSetCookie().some((c) => c.startsWith('mandate_remember=')), false);
  });
});

describe('remember me without trusted proxies', () => {
  let as: TestAuthServer;
  before(async () => {
    as = await startRememberServer({ trusted_proxies: [] });
  });
  after(async () => as?.close());

  it('ignores the country header and X-Forwarded-For from an untrusted peer', async () => {
    const browser = new Browser(as, { [COUNTRY_HEADER]: 'GB' });
    await passwordSignIn(as, browser, 'demo');
    browser.closeSession();
    browser.sent[COUNTRY_HEADER] = 'SG';
    browser.sent['x-forwarded-for'] = '198.51.100.7';
    const page = await comeBack(as, browser);
    assert.ok(page.external?.startsWith(REDIRECT), 'silent: the forged headers count for nothing');
    const [used] = await events(as, 'remember_me.used');
    assert.equal(signals(used)?.country, undefined);
    assert.equal(signals(used)?.address_prefix, '127.0.0.0/24');
  });
});
