import assert from 'node:assert/strict';
import { readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { Secret, TOTP } from 'otpauth';
import { renderSVG } from 'uqr';
import { checkTotp, totpAttempts, totpEnrolled, verifyTotp } from '../../src/auth-server/totp.ts';
import { openTotpSecret, sealTotpSecret, totpSealKey } from '../../src/auth-server/totp-seal.ts';
import { FormBrowser } from '../helpers/browser-driver.ts';
import { startTestAuthServer, type TestAuthServer } from '../helpers/auth-server.ts';

/**
 * TOTP (RFC 6238) as a second factor: the library against the RFC's vectors, enrolment over HTTP
 * on /account/security (codes computed by the library, as an authenticator app would), replay and
 * wrong codes refused and audited, the secret encrypted at rest, removal, and the two functions
 * the approval page calls.
 */

/** RFC 6238 Appendix B: the SHA-1 seed is the ASCII string "12345678901234567890". */
const RFC_SECRET = Secret.fromUTF8('12345678901234567890');

const code = (secret: string, at = Date.now()) => TOTP.generate({ secret: Secret.fromBase32(secret), algorithm: 'SHA1', digits: 6, period: 30, timestamp: at });

describe('RFC 6238 test vectors (Appendix B, SHA-1) through otpauth', () => {
  const vectors: [seconds: number, code: string][] = [
    [59, '94287082'],
    [1_111_111_109, '07081804'],
    [1_111_111_111, '14050471'],
    [1_234_567_890, '89005924'],
    [2_000_000_000, '69279037'],
    [20_000_000_000, '65353130'],
  ];
  for (const [seconds, expected] of vectors) {
    it(`T=${seconds} → ${expected}`, () => {
      assert.equal(TOTP.generate({ secret: RFC_SECRET, algorithm: 'SHA1', digits: 8, period: 30, timestamp: seconds * 1000 }), expected);
      // Six digits are the last six of the same truncation (RFC 4226 §5.3: modulo 10^digits).
      assert.equal(TOTP.generate({ secret: RFC_SECRET, algorithm: 'SHA1', digits: 6, period: 30, timestamp: seconds * 1000 }), expected.slice(2));
    });
  }
  it('validates within one step either side, not two (RFC 6238 §5.2)', () => {
    const at = 1_111_111_111_000;
    const validate = (token: string) => TOTP.validate({ token, secret: RFC_SECRET, algorithm: 'SHA1', digits: 6, period: 30, timestamp: at, window: 1 });
    const gen = (offset: number) => TOTP.generate({ secret: RFC_SECRET, algorithm: 'SHA1', digits: 6, period: 30, timestamp: at + offset * 30_000 });
    assert.deepEqual([validate(gen(-1)), validate(gen(0)), validate(gen(1))], [-1, 0, 1]);
    assert.equal(validate(gen(-2)), null);
    assert.equal(validate(gen(2)), null);
  });
});

describe('TOTP enrolment on /account/security', () => {
  let as: TestAuthServer;
  before(async () => {
    as = await startTestAuthServer();
  });
  after(async () => as?.close());

  const sub = async () => (await as.store.users.findByUsername('demo'))!.sub;
  const events = async (type: string) => {
    await as.ctx.audit.flush();
    return as.store.audit.list({ type, limit: 50 });
  };
  /** Signs in through the page's own sign-in (which returns to the page) and starts a setup; returns the key shown. */
  const signInAndSetUp = async (browser: FormBrowser) => {
    const login = await browser.open('/account/security');
    assert.match(login.url, /\/interaction\//, 'not signed in: the sign-in page first');
    assert.match(login.html, /to continue to/);
    const page = await browser.submit(login, { username: 'demo', password: 'demo' });
    assert.equal(new URL(page.url).pathname, '/account/security', 'back on the account page after signing in');
    assert.match(page.html, /id="totp-status" data-state="none"/);
    const pending = await browser.submit(page, { password: 'demo' });
    assert.match(pending.html, /data-state="pending"/);
    const grouped = /id="totp-secret">([A-Z2-7 ]+)</.exec(pending.html)?.[1];
    assert.ok(grouped, 'the key is shown as text');
    assert.match(grouped, /^([A-Z2-7]{4} )+[A-Z2-7]{1,4}$/, 'in groups of four');
    const secret = grouped.replace(/ /g, '');
    assert.equal(secret.length, 32, '160 bits (RFC 4226 §4 R6)');
    const uri = /id="totp-uri">([^<]+)</.exec(pending.html)?.[1]?.replace(/&amp;/g, '&');
    assert.ok(uri);
    // The QR code encodes exactly the URI (uqr is deterministic), as inline SVG of shapes only.
    const qr = /<div class="qr" id="totp-qr"[^>]*>(<svg[^]*?<\/svg>)<\/div>/.exec(pending.html)?.[1];
    assert.equal(qr, renderSVG(uri, { ecc: 'M', border: 2 }));
    assert.doesNotMatch(qr, /<script|style=|href=/);
    const parsed = new URL(uri);
    assert.equal(parsed.protocol, 'otpauth:');
    assert.equal(parsed.searchParams.get('secret'), secret);
    assert.equal(parsed.searchParams.get('algorithm'), 'SHA1');
    assert.equal(parsed.searchParams.get('digits'), '6');
    assert.equal(parsed.searchParams.get('period'), '30');
    assert.equal(parsed.searchParams.get('issuer'), 'Mandate');
    return { page: pending, secret };
  };

  it('sets up, confirms with a first code, refuses a replay and a wrong code (audited), then verifies a later code once', async () => {
    const browser = new FormBrowser(as.issuer);
    const { page, secret } = await signInAndSetUp(browser);
    const user = await sub();
    assert.equal(await totpEnrolled(as.ctx, user), false, 'pending is not enrolled');
    assert.equal(await verifyTotp(as.ctx, user, code(secret)), false, 'a pending secret verifies nothing');

    const wrong = await browser.submit(page, { code: code(secret) === '000000' ? '111111' : '000000' });
    assert.equal(wrong.status, 400);
    assert.match(wrong.html, /id="account-error"/);
    assert.match(wrong.html, /data-state="pending"/);
    assert.doesNotMatch(wrong.html, new RegExp(secret), 'the key is shown once, in the answer to the setup');
    assert.match(wrong.html, /action="\/account\/security\/totp\/confirm"/, 'the same session may try another code');
    assert.equal(await totpEnrolled(as.ctx, user), false);

    const first = code(secret);
    const done = await browser.submit(wrong, { code: first });
    assert.equal(done.status, 200);
    assert.match(done.html, /id="account-notice"/);
    assert.match(done.html, /data-state="enrolled"/);
    assert.doesNotMatch(done.html, new RegExp(secret), 'the key is not shown once enrolled');
    assert.equal(await totpEnrolled(as.ctx, user), true);
    const [enrolled] = await events('totp.enrolled');
    assert.equal(enrolled?.sub, user);

    // The confirming code is spent: the approval page cannot take it again.
    assert.equal(await verifyTotp(as.ctx, user, first), false);
    const refusals = await events('totp.refused');
    const replay = refusals.find((e) => e.reason === 'code already used');
    assert.ok(replay, 'replay audited with its reason');
    assert.equal(replay.sub, user);
    assert.equal(replay.error, 'access_denied');
    assert.deepEqual(replay.data, { purpose: 'verify' });
    const wrongConfirm = refusals.find((e) => e.reason === 'wrong code' && (e.data as { purpose?: string }).purpose === 'confirm');
    assert.ok(wrongConfirm, 'the wrong first code audited');
    assert.ok(!JSON.stringify(refusals).includes(first), 'never the code in the audit log');

    // The next step's code (within the ±1 window) passes once, then is a replay; an earlier one too.
    const next = code(secret, Date.now() + 30_000);
    assert.equal(await verifyTotp(as.ctx, user, next), true);
    assert.equal(await verifyTotp(as.ctx, user, next), false);
    assert.equal(await verifyTotp(as.ctx, user, code(secret)), false, 'a code of an earlier step than the last used is refused');
    assert.deepEqual(await checkTotp(as.ctx, user, '12345', 'verify'), { ok: false, reason: 'malformed code' });
    assert.deepEqual(await checkTotp(as.ctx, user, '１２３４５６', 'verify'), { ok: false, reason: 'malformed code' }, 'full-width digits are no digits');

    // Four refusals so far draw on the account's budget (5 per window): start a fresh window.
    await totpAttempts(as.ctx).reset(user);
    // Removal asks for a current code only: the form has no password field, and the page points to the admin reset.
    const account = await browser.open('/account/security');
    const removeForm = account.html.slice(account.html.indexOf('<form method="post" action="/account/security/totp/remove"'));
    assert.doesNotMatch(removeForm.slice(0, removeForm.indexOf('</form>')), /name="password"/);
    assert.match(account.html, /id="totp-lost">Lost your phone\? An administrator can reset/);
    const wrongRemoval = await browser.submit(account, { code: code(secret) === '000000' ? '111111' : '000000' });
    assert.equal(wrongRemoval.status, 400);
    assert.match(wrongRemoval.html, /id="account-error">That code is not right/);
    assert.equal(await totpEnrolled(as.ctx, user), true);
    const wrongRemovalEvent = (await events('totp.refused')).find((e) => (e.data as { purpose?: string }).purpose === 'remove');
    assert.deepEqual([wrongRemovalEvent?.reason, wrongRemovalEvent?.error], ['wrong code', 'access_denied']);
    await as.store.totp.delete(user);
    await totpAttempts(as.ctx).reset(user);
  });

  it('removes with a current code; keeps the secret encrypted at rest under data_dir/secrets/totp.key', async () => {
    const browser = new FormBrowser(as.issuer);
    const { page, secret } = await signInAndSetUp(browser);
    const user = await sub();
    const row = await as.store.db.selectFrom('totp_credentials').selectAll().where('sub', '=', user).executeTakeFirstOrThrow();
    assert.ok(!row.secret.includes(secret), 'the base32 secret is not in the row');
    assert.match(row.secret, /^v1\.[A-Za-z0-9_-]{16}\.[A-Za-z0-9_-]+$/);
    assert.equal(row.confirmed_at, null);
    const keyFile = join(as.dataDir, 'secrets', 'totp.key');
    assert.equal(statSync(keyFile).mode & 0o777, 0o600);
    assert.ok(readFileSync(keyFile, 'utf8').trim().length >= 32);
    // Sealed to this user: another sub (the row copied onto another account) does not open it.
    const key = totpSealKey(as.ctx.config);
    assert.equal(openTotpSecret(key, user, row.secret), secret);
    assert.equal(openTotpSecret(key, 'someone-else', row.secret), undefined);
    assert.equal(openTotpSecret(key, user, `${row.secret.slice(0, -2)}AA`), undefined, 'tampering is detected');
    assert.notEqual(sealTotpSecret(key, user, secret), sealTotpSecret(key, user, secret), 'a fresh IV each time');

    await browser.submit(page, { code: code(secret) });
    assert.equal(await totpEnrolled(as.ctx, user), true);
    const account = await browser.open('/account/security');
    const removed = await browser.submit(account, { code: code(secret, Date.now() + 30_000) });
    assert.match(removed.html, /data-state="none"/);
    const removals = await events('totp.removed');
    assert.deepEqual(removals[0]?.data, { how: 'totp' });
  });

  it('cancels a pending setup; a new setup gets a new key', async () => {
    const browser = new FormBrowser(as.issuer);
    const { page, secret } = await signInAndSetUp(browser);
    const cancelForm = page.html.slice(page.html.indexOf('<form method="post" action="/account/security/totp/cancel"'));
    const cancelled = await browser.submit({ url: page.url, html: cancelForm }, {});
    assert.match(cancelled.html, /data-state="none"/);
    const again = await browser.submit(cancelled, { password: 'demo' });
    const secret2 = /id="totp-secret">([A-Z2-7 ]+)</.exec(again.html)?.[1]?.replace(/ /g, '');
    assert.ok(secret2 && secret2 !== secret);
    // The old key no longer confirms.
    const refused = await browser.submit(again, { code: code(secret) });
    assert.equal(refused.status, 400);
    await browser.submit(again, { code: code(secret2) });
    assert.equal(await totpEnrolled(as.ctx, await sub()), true);
    // Clean up for the other tests.
    await as.store.totp.delete(await sub());
  });

  it('sets up only with the password typed again: a stolen session cannot enrol its own app (audited)', async () => {
    const browser = new FormBrowser(as.issuer);
    const login = await browser.open('/account/security');
    const page = await browser.submit(login, { username: 'demo', password: 'demo' });
    const refused = await browser.submit(page, { password: 'guess' });
    assert.equal(refused.status, 400);
    assert.match(refused.html, /id="account-error">Wrong password\.</);
    assert.match(refused.html, /data-state="none"/);
    assert.equal(await as.store.totp.find(await sub()), undefined);
    const [event] = await events('totp.refused');
    assert.deepEqual([event?.reason, event?.error, event?.data], ['wrong password', 'access_denied', { purpose: 'setup' }]);
    const noPassword = await browser.open('/account/security/totp/setup', { method: 'POST', form: { csrf: /name="csrf" value="([^"]+)"/.exec(page.html)![1]! } });
    assert.equal(noPassword.status, 400);
    assert.equal(await as.store.totp.find(await sub()), undefined);
  });

  it('refuses a POST without the CSRF token or without a session (audited)', async () => {
    const browser = new FormBrowser(as.issuer);
    const { page } = await signInAndSetUp(browser);
    const forged = await browser.open('/account/security/totp/confirm', { method: 'POST', form: { code: '123456' } });
    assert.equal(forged.status, 403);
    assert.match(forged.html, /id="error-code">invalid_request</);
    const stranger = new FormBrowser(as.issuer);
    const csrf = /name="csrf" value="([^"]+)"/.exec(page.html)![1]!;
    const noSession = await stranger.open('/account/security/totp/setup', { method: 'POST', form: { csrf } });
    assert.equal(noSession.status, 403);
    const reasons = (await events('account.refused')).map((e) => e.reason);
    assert.ok(reasons.includes('POST /account/security/totp/confirm: CSRF token mismatch'));
    assert.ok(reasons.includes('POST /account/security/totp/setup: no signed-in session'));
    await as.store.totp.delete(await sub());
  });

  it('limits wrong codes per account (totp_per_account), audited as too many attempts', async () => {
    const limited = await startTestAuthServer({ limits: { totp_per_account: 3 } });
    try {
      const browser = new FormBrowser(limited.issuer);
      const login = await browser.open('/account/security');
      const page = await browser.submit(await browser.submit(login, { username: 'demo', password: 'demo' }), { password: 'demo' });
      const secret = /id="totp-secret">([A-Z2-7 ]+)</.exec(page.html)![1]!.replace(/ /g, '');
      const bad = code(secret) === '000000' ? '111111' : '000000';
      for (let i = 0; i < 3; i++) assert.equal((await browser.submit(page, { code: bad })).status, 400);
      // The fourth try, even with the right code, is not checked.
      const throttled = await browser.submit(page, { code: code(secret) });
      assert.equal(throttled.status, 400);
      assert.match(throttled.html, /Too many attempts/);
      const user = (await limited.store.users.findByUsername('demo'))!.sub;
      assert.equal(await totpEnrolled(limited.ctx, user), false);
      await limited.ctx.audit.flush();
      const [event] = await limited.store.audit.list({ type: 'totp.refused', limit: 1 });
      assert.equal(event?.reason, 'too many attempts');
      assert.equal(event?.error, 'slow_down');
    } finally {
      await limited.close();
    }
  });

  it('takes the key from totp.key_env when set: a secret sealed under another key does not open', async () => {
    process.env.TEST_TOTP_KEY = 'k'.repeat(16) + 'x'.repeat(24);
    const other = await startTestAuthServer({ totp: { key_env: 'TEST_TOTP_KEY' } });
    try {
      const key = totpSealKey(other.ctx.config);
      assert.notDeepEqual(key, totpSealKey(as.ctx.config));
      const sealed = sealTotpSecret(totpSealKey(as.ctx.config), 'u', 'JBSWY3DPEHPK3PXP');
      assert.equal(openTotpSecret(key, 'u', sealed), undefined);
      assert.equal(openTotpSecret(key, 'u', sealTotpSecret(key, 'u', 'JBSWY3DPEHPK3PXP')), 'JBSWY3DPEHPK3PXP');
    } finally {
      await other.close();
      delete process.env.TEST_TOTP_KEY;
    }
  });
});
