import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { Secret, TOTP } from 'otpauth';
import { PENDING_TTL_SECONDS, totpAttempts, totpEnrolled } from '../../src/auth-server/totp.ts';
import { FormBrowser } from '../helpers/browser-driver.ts';
import type { TestAuthServer } from '../helpers/auth-server.ts';
import { agentToken, create, startTransactionServer } from '../transactions/helpers.ts';

/**
 * The two attacks of the security review on /account/security, as regressions: (1) a phished
 * password removing the second factor, or buying code guesses; (2) a setup left unfinished, read
 * and confirmed later by whoever holds a session of the user. Each asserts the exact refusal: the
 * status, the page's message and the `totp.refused` audit event with its reason.
 */

const code = (secret: string, at = Date.now()) => TOTP.generate({ secret: Secret.fromBase32(secret), algorithm: 'SHA1', digits: 6, period: 30, timestamp: at });
const wrongCode = (secret: string) => (code(secret) === '000000' ? '111111' : '000000');
/** The page cut to the form posting to `action`, so that FormBrowser submits that one. */
const form = (page: { url: string; html: string }, action: string) => ({ url: page.url, html: page.html.slice(page.html.indexOf(`<form method="post" action="/account/security/totp/${action}"`)) });
const keyOn = (html: string) => /id="totp-secret">([A-Z2-7 ]+)</.exec(html)?.[1]?.replace(/ /g, '');

async function signedIn(as: TestAuthServer) {
  const browser = new FormBrowser(as.issuer);
  const login = await browser.open('/account/security');
  const page = await browser.submit(login, { username: 'demo', password: 'demo' });
  assert.equal(new URL(page.url).pathname, '/account/security');
  return { browser, page };
}

/** A browser that signs in, sets up and confirms: the victim's enrolled app. Returns its secret. */
async function enrol(as: TestAuthServer) {
  const { browser, page } = await signedIn(as);
  const pending = await browser.submit(page, { password: 'demo' });
  const secret = keyOn(pending.html)!;
  const done = await browser.submit(pending, { code: code(secret) });
  assert.match(done.html, /data-state="enrolled"/);
  return secret;
}

async function lastRefusal(as: TestAuthServer, purpose: string) {
  await as.ctx.audit.flush();
  return (await as.store.audit.list({ type: 'totp.refused', limit: 50 })).find((e) => (e.data as { purpose?: string }).purpose === purpose);
}

describe('TOTP account page: a phished password does not undo the second factor', () => {
  let as: TestAuthServer;
  let sub: string;
  before(async () => {
    as = await startTransactionServer({ limits: { totp_per_account: 3 } });
    sub = (await as.store.users.findByUsername('demo'))!.sub;
  });
  after(async () => as?.close());

  it('refuses to remove a confirmed app with the password alone; the approval page still asks for a code', async () => {
    const secret = await enrol(as);
    // The attacker signs in with the phished password, in a browser of their own.
    const { browser: attacker, page } = await signedIn(as);
    const refused = await attacker.submit(form(page, 'remove'), { password: 'demo' });
    assert.equal(refused.status, 400);
    assert.match(refused.html, /id="account-error">That code is not right, or was already used\./);
    assert.match(refused.html, /id="totp-status" data-state="enrolled"/);
    assert.equal(await totpEnrolled(as.ctx, sub), true, 'still enrolled');
    const event = await lastRefusal(as, 'remove');
    assert.deepEqual([event?.sub, event?.error, event?.reason], [sub, 'access_denied', 'malformed code']);
    await as.ctx.audit.flush();
    assert.deepEqual(await as.store.audit.list({ type: 'totp.removed', limit: 5 }), []);

    const demo = await agentToken(as);
    const tx = (await create(as, demo.accessToken)).json.id as string;
    const approval = await attacker.open(`/approve/${tx}`);
    assert.match(approval.html, /name="code"/, 'the approval page asks for the code, not the password');
    assert.doesNotMatch(approval.html, /name="password"/);
    const denied = await attacker.submit(approval, { decision: 'approve', password: 'demo' });
    assert.doesNotMatch(denied.html, /data-outcome="approved"/);
    assert.equal((await as.store.transactions.find(tx))!.status, 'pending');

    // The owner, with the app, removes it with a current code.
    const owner = await signedIn(as);
    const removed = await owner.browser.submit(form(owner.page, 'remove'), { code: code(secret, Date.now() + 30_000) });
    assert.match(removed.html, /id="account-notice">The authenticator app was removed\./);
    assert.equal(await totpEnrolled(as.ctx, sub), false);
    await as.ctx.audit.flush();
    const [removal] = await as.store.audit.list({ type: 'totp.removed', limit: 1 });
    assert.deepEqual(removal?.data, { how: 'totp' });
  });

  it('a right password never refills the code budget: guesses through remove stay limited (totp_per_account)', async () => {
    const secret = await enrol(as);
    await totpAttempts(as.ctx).reset(sub);
    const { browser, page } = await signedIn(as);
    const bad = wrongCode(secret);
    assert.equal((await browser.submit(form(page, 'remove'), { code: bad })).status, 400);
    assert.equal((await browser.submit(form(page, 'remove'), { code: bad })).status, 400);
    // Password successes in between: a setup request (which changes nothing, one is confirmed) and a new sign-in.
    const csrf = /name="csrf" value="([^"]+)"/.exec(page.html)![1]!;
    const setup = await browser.open('/account/security/totp/setup', { method: 'POST', form: { csrf, password: 'demo' } });
    assert.equal(setup.status, 200);
    assert.match(setup.html, /data-state="enrolled"/);
    const again = await signedIn(as);
    assert.equal((await again.browser.submit(form(again.page, 'remove'), { code: bad })).status, 400);
    // The budget (3) is spent: even the right code is not checked.
    const throttled = await again.browser.submit(form(again.page, 'remove'), { code: code(secret, Date.now() + 30_000) });
    assert.equal(throttled.status, 400);
    assert.match(throttled.html, /id="account-error">Too many attempts\./);
    assert.equal(await totpEnrolled(as.ctx, sub), true);
    const event = await lastRefusal(as, 'remove');
    assert.deepEqual([event?.error, event?.reason], ['slow_down', 'too many attempts']);
    await as.store.totp.delete(sub);
    await totpAttempts(as.ctx).reset(sub);
  });
});

describe('TOTP account page: an unfinished setup is no offer to a stolen session', () => {
  let as: TestAuthServer;
  let sub: string;
  before(async () => {
    as = await startTransactionServer();
    sub = (await as.store.users.findByUsername('demo'))!.sub;
  });
  after(async () => as?.close());

  it('shows the key only in the answer to the setup: a later visit of the same session says "start again"', async () => {
    const { browser, page } = await signedIn(as);
    const pending = await browser.submit(page, { password: 'demo' });
    const secret = keyOn(pending.html);
    assert.ok(secret, 'the key in the answer to the password-checked setup');
    assert.match(pending.html, /This key is shown only now/);
    // Later, whoever holds this session cookie (never the password) looks at the page.
    const later = await browser.open('/account/security');
    assert.equal(later.status, 200);
    assert.match(later.html, /data-state="pending"/);
    assert.equal(keyOn(later.html), undefined, 'no key');
    assert.doesNotMatch(later.html, new RegExp(secret));
    assert.doesNotMatch(later.html, /id="totp-qr"|otpauth:/);
    assert.doesNotMatch(later.html, /action="\/account\/security\/totp\/confirm"/, 'no confirmation form');
    assert.match(later.html, /id="totp-unfinished">Setup not finished: start again\./);
    // Starting again asks for the password, and replaces the key.
    const guessed = await browser.submit(later, { password: 'guess' });
    assert.equal(guessed.status, 400);
    assert.equal(keyOn(guessed.html), undefined);
    const restarted = await browser.submit(later, { password: 'demo' });
    const secret2 = keyOn(restarted.html);
    assert.ok(secret2 && secret2 !== secret);
    const done = await browser.submit(restarted, { code: code(secret2) });
    assert.match(done.html, /id="account-notice">Your authenticator app is set up\./);
    assert.equal(await totpEnrolled(as.ctx, sub), true);
    await as.store.totp.delete(sub);
  });

  it('confirms only from the session that started the setup (audited: setup of another session)', async () => {
    const victim = await signedIn(as);
    const secret = keyOn((await victim.browser.submit(victim.page, { password: 'demo' })).html)!;
    // Another session of the user, even one that learnt the key, cannot confirm it.
    const thief = await signedIn(as);
    const csrf = /name="csrf" value="([^"]+)"/.exec(thief.page.html)![1]!;
    const refused = await thief.browser.open('/account/security/totp/confirm', { method: 'POST', form: { csrf, code: code(secret) } });
    assert.equal(refused.status, 400);
    assert.match(refused.html, /id="account-error">This setup was started in another browser or session\. Start again here\./);
    assert.match(refused.html, /id="totp-unfinished"/);
    assert.equal(await totpEnrolled(as.ctx, sub), false);
    const event = await lastRefusal(as, 'confirm');
    assert.deepEqual([event?.sub, event?.error, event?.reason], [sub, 'access_denied', 'setup of another session']);
    await as.store.totp.delete(sub);
  });

  it('expires a pending setup after 10 minutes, even for its own session (audited: setup expired)', async () => {
    const { browser, page } = await signedIn(as);
    const pending = await browser.submit(page, { password: 'demo' });
    const secret = keyOn(pending.html)!;
    // The setup began PENDING_TTL_SECONDS ago (the row's clock, as a walk-away would leave it).
    assert.equal(PENDING_TTL_SECONDS, 600);
    await as.store.db.updateTable('totp_credentials').set({ created_at: as.ctx.now() - PENDING_TTL_SECONDS }).where('sub', '=', sub).execute();
    const refused = await browser.submit(pending, { code: code(secret) });
    assert.equal(refused.status, 400);
    assert.match(refused.html, /id="account-error">This setup expired \(after 10 minutes\)\. Start again\./);
    assert.match(refused.html, /id="totp-unfinished"/);
    assert.equal(await totpEnrolled(as.ctx, sub), false);
    const event = await lastRefusal(as, 'confirm');
    assert.deepEqual([event?.error, event?.reason], ['access_denied', 'setup expired']);
    // A new setup replaces the stale row and confirms.
    const restarted = await browser.submit(refused, { password: 'demo' });
    await browser.submit(restarted, { code: code(keyOn(restarted.html)!) });
    assert.equal(await totpEnrolled(as.ctx, sub), true);
    await as.store.totp.delete(sub);
  });
});
