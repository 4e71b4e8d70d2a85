import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { Secret, TOTP } from 'otpauth';
import { beginTotpEnrolment, confirmTotpEnrolment, totpEnrolled } from '../../src/auth-server/totp.ts';
import { api, auditEvents, signIn, startAdminServer } from '../admin/helpers.ts';

type Server = Awaited<ReturnType<typeof startAdminServer>>;

/** The admin plane shows whether a user enrolled TOTP and resets it (a lost phone), within its roles. */
describe('TOTP in the admin plane', () => {
  let as: Server;
  const tokens: Record<string, string> = {};
  let sub: string;

  before(async () => {
    as = await startAdminServer();
    for (const [user, scope] of [
      ['alice', 'admin:read admin:write'],
      ['reader', 'admin:read'],
      ['agents-admin', 'admin:agents:write'],
    ] as const) {
      const result = await signIn(as, user, { scope });
      tokens[user] = result.accessToken!;
    }
    sub = (await as.store.users.findByUsername('demo'))!.sub;
    const session = { sub, sid: 'admin-test-session', username: 'demo' };
    const pending = await beginTotpEnrolment(as.ctx, session);
    assert.ok(pending);
    const code = TOTP.generate({ secret: Secret.fromBase32(pending.secret), algorithm: 'SHA1', digits: 6, period: 30 });
    assert.deepEqual(await confirmTotpEnrolment(as.ctx, session, code), { ok: true });
  });
  after(async () => as?.close());

  it('shows totp: enrolled | not enrolled in the user views', async () => {
    const one = await api(as, tokens.reader, 'GET', '/users/demo');
    assert.equal(one.status, 200);
    assert.equal(one.json.totp, 'enrolled');
    const list = await api(as, tokens.reader, 'GET', '/users');
    assert.deepEqual(Object.fromEntries(list.json.items!.map((u) => [u.username, u.totp])), { 'agents-admin': 'not enrolled', alice: 'not enrolled', demo: 'enrolled', reader: 'not enrolled' });
  });

  it('resets only with users write: 403 insufficient_scope for a reader or another area, audited', async () => {
    for (const who of ['reader', 'agents-admin']) {
      const res = await api(as, tokens[who], 'DELETE', '/users/demo/totp');
      assert.equal(res.status, 403, who);
      assert.equal(res.json.error, 'insufficient_scope');
    }
    assert.equal(await totpEnrolled(as.ctx, sub), true);
    const refused = (await auditEvents(as)).filter((e) => e.type === 'admin.users.reset_totp' && e.outcome === 'failure');
    assert.equal(refused.length, 2);
  });

  it('resets it for a user with users write: removed, audited as totp.removed by the admin', async () => {
    const res = await api(as, tokens.alice, 'DELETE', '/users/demo/totp');
    assert.equal(res.status, 200);
    assert.deepEqual(res.json, { removed: true });
    assert.equal(await totpEnrolled(as.ctx, sub), false);
    assert.equal((await api(as, tokens.alice, 'GET', '/users/demo')).json.totp, 'not enrolled');
    assert.deepEqual((await api(as, tokens.alice, 'DELETE', '/users/demo/totp')).json, { removed: false });
    const events = await auditEvents(as);
    const removed = events.filter((e) => e.type === 'totp.removed');
    assert.equal(removed.length, 1);
    assert.equal(removed[0]?.sub, sub);
    assert.deepEqual(removed[0]?.data, { how: 'admin', by: 'alice' });
    const admin = events.find((e) => e.type === 'admin.users.reset_totp' && e.outcome === 'success');
    assert.equal(admin?.data?.username, 'demo');
    assert.equal((await api(as, tokens.alice, 'DELETE', '/users/nobody/totp')).status, 404);
  });
});
