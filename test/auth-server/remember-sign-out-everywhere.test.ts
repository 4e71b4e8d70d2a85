import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { ADMIN_CLIENT, api, REDIRECT_URI, signIn, startAdminServer } from '../admin/helpers.ts';
import type { TestAuthServer } from '../helpers/auth-server.ts';
import { Browser, comeBack, events, passwordSignIn, REDIRECT, subOf } from './remember-helpers.ts';

/**
 * Security review of issue 15: an administrator signing a user out of every session (the answer
 * to a compromise) must not leave a remembered browser that opens a new session at its next visit.
 */
describe('remember me: signed out everywhere is kept signed in nowhere', () => {
  let as: TestAuthServer;
  let admin: string;
  before(async () => {
    as = await startAdminServer({
      clients: [
        { client_id: ADMIN_CLIENT, client_name: 'Admin test console', token_endpoint_auth_method: 'none', redirect_uris: [REDIRECT_URI] },
        { client_id: 'remember-app', client_name: 'Remember app', token_endpoint_auth_method: 'none', redirect_uris: [REDIRECT] },
      ],
      remember_me: { enabled: true },
    });
    const result = await signIn(as, 'alice', { scope: 'admin:read admin:write' });
    assert.ok('accessToken' in result);
    admin = result.accessToken!;
  });
  after(async () => as?.close());

  it("sessions.revoke of all a user's sessions forgets their remembered browsers: the next visit asks for the password", async () => {
    const browser = new Browser(as);
    await passwordSignIn(as, browser, 'demo');
    const id = browser.jar.get('mandate_remember')?.split('.')[0];
    assert.ok(id, 'remembered');

    const out = await api(as, admin, 'DELETE', '/users/demo/sessions');
    assert.equal(out.status, 200);
    const sub = await subOf(as, 'demo');
    const [forgotten] = await events(as, 'remember_me.forgotten', sub);
    assert.deepEqual(forgotten?.data, { by: 'admin', count: 1, actor: 'alice' });

    const back = await comeBack(as, browser);
    assert.equal(back.external, undefined, 'no silent sign-in');
    assert.equal(back.status, 200);
    assert.match(back.html, /name="password"/);
    const [refused] = await events(as, 'remember_me.refused');
    assert.deepEqual([refused?.outcome, refused?.reason, refused?.data?.remembered_id], ['failure', 'unknown or forgotten', id]);
    assert.equal(await as.store.remembered.find(id), undefined);
  });
});
