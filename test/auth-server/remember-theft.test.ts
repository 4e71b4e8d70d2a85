import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { TestAuthServer } from '../helpers/auth-server.ts';
import { Browser, comeBack, events, passwordSignIn, REDIRECT, startRememberServer, subOf } from './remember-helpers.ts';

/**
 * Security review of issue 15: a thief who copied the remember and device cookies and used them
 * first gets a session; when the owner then presents the value the thief's use rotated away, the
 * reuse is detected — and the thief's session must end with the remembered sign-in, not live on.
 */
describe('remember me: reuse detection ends the sessions the stolen cookie opened', () => {
  let as: TestAuthServer;
  before(async () => {
    as = await startRememberServer();
  });
  after(async () => as?.close());

  it('the thief used it first: on the owner\'s next visit the thief\'s session ends, audited', async () => {
    const owner = new Browser(as);
    await passwordSignIn(as, owner, 'cat');
    owner.closeSession();

    // The thief copies both cookies and comes from the same network and browser family: low risk.
    const thief = new Browser(as);
    thief.jar.set('mandate_remember', owner.jar.get('mandate_remember')!);
    thief.jar.set('mandate_device', owner.jar.get('mandate_device')!);
    const silent = await comeBack(as, thief);
    assert.ok(silent.external?.startsWith(REDIRECT) && new URL(silent.external).searchParams.get('code'), 'the thief is signed in silently');
    const sub = await subOf(as, 'cat');
    const [used] = await events(as, 'remember_me.used', sub);
    const thiefSid = ((await as.ctx.cache.get<{ sid: string }>(`session:${thief.jar.get('mandate_session')}`)) ?? { sid: '' }).sid;
    assert.ok(used && thiefSid);

    // Past the two-tab grace, the owner comes back with the value the thief's use rotated away.
    await as.store.db.updateTable('remembered_devices').set({ rotated_at: as.ctx.now() - 60 }).where('sub', '=', sub).execute();
    const back = await comeBack(as, owner);
    assert.match(back.html, /name="password"/);
    const [reuse] = await events(as, 'remember_me.reuse_detected', sub);
    assert.deepEqual([reuse?.outcome, reuse?.reason, reuse?.data?.sessions_ended], ['failure', 'a rotated remember cookie was presented again; the remembered sign-in is revoked', 1]);
    const [ended] = await events(as, 'logout.completed', sub);
    assert.deepEqual([ended?.data?.via, ended?.data?.sids], ['remember_reuse', [thiefSid]]);

    // The thief's session is over: the password is asked.
    const again = await comeBack(as, thief);
    assert.equal(again.external, undefined, 'no silent code for the thief');
    assert.match(again.html, /name="password"/);
  });
});
