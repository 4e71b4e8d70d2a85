import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { FormBrowser } from '../helpers/browser-driver.ts';
import { Browser } from './remember-helpers.ts';
import { DEMO_PASSWORD_HASH, pkcePair, postForm, startTestAuthServer, type TestAuthServer } from '../helpers/auth-server.ts';

/**
 * Session transfer as an attacker would use it (security review of issue 15). Each refusal asserts
 * the status, the error code and the audit event's reason.
 */
const APP_REDIRECT = 'http://127.0.0.1:4000/callback';
const RETURN_TO = 'http://127.0.0.1:4001/app/';
const CONSOLE_REDIRECT = 'http://127.0.0.1:4002/callback';
const TOKEN_TYPE = 'urn:ietf:params:oauth:token-type:access_token';
/** The victim and the attacker share one public address (a carrier-grade NAT, a café's Wi-Fi). */
const SHARED_NAT = '203.0.113.7';

describe('session transfer: attacks', () => {
  let as: TestAuthServer;

  before(async () => {
    as = await startTestAuthServer({
      trusted_proxies: ['127.0.0.1'],
      remember_me: { enabled: true },
      users: [
        { username: 'victim', password_hash: DEMO_PASSWORD_HASH },
        { username: 'attacker', password_hash: DEMO_PASSWORD_HASH },
        { username: 'boss', password_hash: DEMO_PASSWORD_HASH, roles: ['admin:write'] },
        { username: 'keeper', password_hash: DEMO_PASSWORD_HASH },
      ],
      clients: [
        { client_id: 'native-app', token_endpoint_auth_method: 'none', redirect_uris: [APP_REDIRECT], grant_types: ['authorization_code'] },
        { client_id: 'console', token_endpoint_auth_method: 'none', redirect_uris: [CONSOLE_REDIRECT], grant_types: ['authorization_code'], first_party: true },
        { client_id: 'session-transfer', token_endpoint_auth_method: 'none', grant_types: ['authorization_code'], session_transfer: true, allowed_return_urls: [RETURN_TO], session_transfer_subject_clients: ['native-app'], session_transfer_audiences: ['https://mcp.example.test/mcp'] },
      ],
    });
  });
  after(async () => as?.close());

  async function appToken(username: string): Promise<string> {
    const { verifier, challenge } = pkcePair();
    const query = new URLSearchParams({ response_type: 'code', client_id: 'native-app', redirect_uri: APP_REDIRECT, code_challenge: challenge, code_challenge_method: 'S256', resource: as.resource, scope: 'mcp:read' });
    const back = await new FormBrowser(as.issuer).authorize(`${as.issuer}/authorize?${query}`, { username, password: 'demo' });
    const res = await postForm(`${as.issuer}/token`, { grant_type: 'authorization_code', code: back.searchParams.get('code')!, redirect_uri: APP_REDIRECT, client_id: 'native-app', code_verifier: verifier });
    assert.equal(res.status, 200, res.text);
    return res.json.access_token as string;
  }

  const push = async (token: string) => {
    const res = await postForm(
      `${as.issuer}/par`,
      { client_id: 'session-transfer', response_type: 'code', scope: 'session_transfer', code_challenge: pkcePair().challenge, code_challenge_method: 'S256', subject_token: token, subject_token_type: TOKEN_TYPE, return_to: RETURN_TO },
      { 'x-forwarded-for': SHARED_NAT },
    );
    assert.equal(res.status, 201, res.text);
    return res.json.request_uri as string;
  };

  const visit = async (requestUri: string, cookie = '') => {
    const res = await fetch(`${as.issuer}/authorize?client_id=session-transfer&request_uri=${encodeURIComponent(requestUri)}`, {
      redirect: 'manual',
      headers: { accept: 'application/json', 'x-forwarded-for': SHARED_NAT, ...(cookie ? { cookie } : {}) },
    });
    const body = res.status === 303 ? {} : ((await res.json()) as { error?: string });
    const session = /mandate_session=([^;]*)/.exec(res.headers.getSetCookie().join('; '))?.[1];
    return { status: res.status, error: body.error, session };
  };

  const lastAudit = async (type: string) => {
    await as.ctx.audit.flush();
    return (await as.store.audit.list({ type }))[0];
  };

  it("an attacker's request_uri opened by a signed-in victim behind the same address does not swap the victim's session → 403 access_denied", async () => {
    // The victim's own transfer: the victim's browser holds a session for the victim.
    const own = await visit(await push(await appToken('victim')));
    assert.equal(own.status, 303);
    assert.ok(own.session, 'the victim has a session');
    const victimSub = (await as.store.users.findByUsername('victim'))!.sub;

    // The attacker pushes their own token (from the shared address) and makes the victim open the URL.
    const forged = await visit(await push(await appToken('attacker')), `mandate_session=${own.session}`);
    assert.deepEqual([forged.status, forged.error], [403, 'access_denied']);
    assert.equal(forged.session, undefined, 'no session cookie set');
    assert.equal((await lastAudit('session_transfer.refused'))?.reason, `browser signed in as another user (sub=${victimSub})`);

    // The victim is still the victim.
    const session = await as.ctx.cache.get<{ sub: string }>(`session:${own.session}`);
    assert.equal(session?.sub, victimSub);
  });

  it('the same user transferring again into a browser they are signed in to is fine', async () => {
    const first = await visit(await push(await appToken('victim')));
    const again = await visit(await push(await appToken('victim')), `mandate_session=${first.session}`);
    assert.equal(again.status, 303);
  });

  it("an admin's app token (mcp:read) transferred into a browser opens no admin token without the password", async () => {
    const transferred = await visit(await push(await appToken('boss')));
    assert.equal(transferred.status, 303);
    const cookie = `mandate_session=${transferred.session}`;
    const authorize = (extra: Record<string, string>) =>
      fetch(
        `${as.issuer}/authorize?${new URLSearchParams({ response_type: 'code', client_id: 'console', redirect_uri: CONSOLE_REDIRECT, code_challenge: pkcePair().challenge, code_challenge_method: 'S256', resource: `${as.issuer}/admin`, scope: 'admin:read admin:write', state: 's', ...extra })}`,
        { redirect: 'manual', headers: { cookie } },
      );
    const follow = async (res: Response) => {
      const bind = res.headers.getSetCookie().map((c) => c.split(';')[0]).join('; ');
      return fetch(new URL(res.headers.get('location')!, as.issuer), { redirect: 'manual', headers: { cookie: `${cookie}; ${bind}` } });
    };
    // prompt=none: no code, login_required at the console's redirect URI.
    const silent = await follow(await authorize({ prompt: 'none' }));
    assert.equal(silent.status, 303);
    const back = new URL(silent.headers.get('location')!);
    assert.equal(back.origin + back.pathname, CONSOLE_REDIRECT);
    assert.deepEqual([back.searchParams.get('error'), back.searchParams.get('code')], ['login_required', null]);
    const event = await lastAudit('authorize.password_required');
    assert.deepEqual([event?.error, event?.reason], ['login_required', 'the admin resource needs a password sign-in; the session came from a session transfer']);
    // Otherwise: the password page.
    const page = await follow(await authorize({}));
    assert.equal(page.status, 200);
    assert.match(await page.text(), /name="password"/);
  });

  it('a token for a resource server not named in session_transfer_audiences (it could replay what it receives) → 400 invalid_request at the push', async () => {
    const { verifier, challenge } = pkcePair();
    const query = new URLSearchParams({ response_type: 'code', client_id: 'native-app', redirect_uri: APP_REDIRECT, code_challenge: challenge, code_challenge_method: 'S256', resource: 'https://api.example.test', scope: 'api:read' });
    const back = await new FormBrowser(as.issuer).authorize(`${as.issuer}/authorize?${query}`, { username: 'victim', password: 'demo' });
    const token = await postForm(`${as.issuer}/token`, { grant_type: 'authorization_code', code: back.searchParams.get('code')!, redirect_uri: APP_REDIRECT, client_id: 'native-app', code_verifier: verifier });
    assert.equal(token.status, 200, token.text);
    const res = await postForm(
      `${as.issuer}/par`,
      { client_id: 'session-transfer', response_type: 'code', scope: 'session_transfer', code_challenge: pkcePair().challenge, code_challenge_method: 'S256', subject_token: token.json.access_token as string, subject_token_type: TOKEN_TYPE, return_to: RETURN_TO },
      { 'x-forwarded-for': SHARED_NAT },
    );
    assert.deepEqual([res.status, res.json.error], [400, 'invalid_request']);
    assert.equal((await lastAudit('session_transfer.refused'))?.reason, 'subject token audience https://api.example.test is not accepted');
  });

  it("a victim with no session but a remembered sign-in is not switched to the attacker either → 403 access_denied", async () => {
    // The victim signed in with "Keep me signed in"; the session ended, the remember cookie stays.
    const victim = new Browser(as, { 'x-forwarded-for': SHARED_NAT });
    const { challenge } = pkcePair();
    let page = await victim.open(`${as.issuer}/authorize?${new URLSearchParams({ response_type: 'code', client_id: 'native-app', redirect_uri: APP_REDIRECT, code_challenge: challenge, code_challenge_method: 'S256', resource: as.resource, scope: 'mcp:read' })}`);
    page = await victim.submit(page, { username: 'keeper', password: 'demo', remember: '1' });
    if (page.html.includes('name="decision"')) page = await victim.submit(page, { decision: 'allow' });
    assert.ok(page.external, 'signed in');
    assert.ok(victim.jar.has('mandate_remember'), 'remembered');
    victim.closeSession();

    const cookie = [...victim.jar].map(([k, v]) => `${k}=${v}`).join('; ');
    const forged = await visit(await push(await appToken('attacker')), cookie);
    assert.deepEqual([forged.status, forged.error], [403, 'access_denied']);
    assert.equal(forged.session, undefined, 'no session cookie set');
    const keeperSub = (await as.store.users.findByUsername('keeper'))!.sub;
    assert.equal((await lastAudit('session_transfer.refused'))?.reason, `browser remembers another user (sub=${keeperSub})`);
  });

  // Last: the transfer client stays disabled.
  it('a transfer client disabled after the push → 400 invalid_client at the visit, no session', async () => {
    const requestUri = await push(await appToken('victim'));
    await as.store.clients.update('session-transfer', { disabledAt: as.ctx.now() });
    const res = await visit(requestUri);
    assert.deepEqual([res.status, res.error], [400, 'invalid_client']);
    assert.equal(res.session, undefined, 'no session cookie set');
    assert.equal((await lastAudit('session_transfer.refused'))?.reason, 'transfer client: client is disabled');
  });
});
