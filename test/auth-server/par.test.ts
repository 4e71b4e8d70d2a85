import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { FormBrowser } from '../helpers/browser-driver.ts';
import { basic, pkcePair, postForm, registerClient, startTestAuthServer, type TestAuthServer } from '../helpers/auth-server.ts';

/**
 * Pushed authorization requests (RFC 9126), black box: the push (§2: client authentication as at
 * /token, validation as at /authorize, §2.2 the 201 answer, §2.3 the errors), the use of the
 * request_uri at /authorize (§4: once, not expired, by its client, alone in the front channel),
 * and the PAR-only policies (§5 global, §6 per client). Every refusal asserts status, error code
 * and the audit event's reason.
 */
const REDIRECT = 'http://127.0.0.1:4000/callback';
const PREFIX = 'urn:ietf:params:oauth:request_uri:';

async function auditReason(as: TestAuthServer, type: string): Promise<string | undefined> {
  await as.ctx.audit.flush();
  return (await as.store.audit.list({ type }))[0]?.reason;
}

describe('pushed authorization requests (RFC 9126)', () => {
  let as: TestAuthServer;
  let pub: { client_id: string };
  let conf: { client_id: string; client_secret?: string };

  before(async () => {
    as = await startTestAuthServer({
      registration: { allowed_scopes: ['mcp:read', 'mcp:write'] },
      clients: [{ client_id: 'par-only', token_endpoint_auth_method: 'none', redirect_uris: [REDIRECT], require_pushed_authorization_requests: true }],
    });
    pub = await registerClient(as.issuer, { redirect_uris: [REDIRECT], token_endpoint_auth_method: 'none', grant_types: ['authorization_code'] });
    conf = await registerClient(as.issuer, { redirect_uris: [REDIRECT], grant_types: ['authorization_code'] });
  });
  after(async () => as?.close());

  const request = (clientId: string, extra: Record<string, string | undefined> = {}) => {
    const { challenge, verifier } = pkcePair();
    const form: Record<string, string> = { response_type: 'code', client_id: clientId, redirect_uri: REDIRECT, code_challenge: challenge, code_challenge_method: 'S256', state: 's1', resource: as.resource, scope: 'mcp:read' };
    for (const [k, v] of Object.entries(extra)) {
      if (v === undefined) delete form[k];
      else form[k] = v;
    }
    return { form, verifier };
  };
  const push = (form: Record<string, string>, headers: Record<string, string> = {}) => postForm(`${as.issuer}/par`, form, headers);
  const confAuth = () => ({ authorization: basic(conf.client_id, conf.client_secret!) });
  const authorizeWith = (clientId: string, requestUri: string, extra = '') => `${as.issuer}/authorize?client_id=${encodeURIComponent(clientId)}&request_uri=${encodeURIComponent(requestUri)}${extra}`;
  /** An /authorize refusal shown to the user (never redirected), asked for as JSON. */
  const shown = async (url: string) => {
    const res = await fetch(url, { redirect: 'manual', headers: { accept: 'application/json' } });
    assert.equal(res.headers.get('location'), null, 'not redirected');
    return { status: res.status, error: ((await res.json()) as { error: string }).error };
  };

  it('advertises the endpoint and the global policy in metadata (§5)', async () => {
    const metadata = (await (await fetch(`${as.issuer}/.well-known/oauth-authorization-server`)).json()) as Record<string, unknown>;
    assert.equal(metadata.pushed_authorization_request_endpoint, `${as.issuer}/par`);
    assert.equal(metadata.require_pushed_authorization_requests, false);
  });

  it('a public client pushes, then signs the user in with the request_uri alone; the code redeems', async () => {
    const { form, verifier } = request(pub.client_id);
    const res = await push(form);
    assert.equal(res.status, 201);
    assert.equal(res.headers.get('cache-control'), 'no-store');
    const requestUri = res.json.request_uri as string;
    assert.ok(requestUri.startsWith(PREFIX) && requestUri.length > PREFIX.length + 30, requestUri);
    assert.equal(res.json.expires_in, 60);
    const back = await new FormBrowser(as.issuer).authorize(authorizeWith(pub.client_id, requestUri));
    assert.equal(back.origin + back.pathname, REDIRECT);
    assert.equal(back.searchParams.get('state'), 's1', 'the pushed state comes back');
    const token = await postForm(`${as.issuer}/token`, { grant_type: 'authorization_code', code: back.searchParams.get('code')!, redirect_uri: REDIRECT, client_id: pub.client_id, code_verifier: verifier });
    assert.equal(token.status, 200, token.text);
    assert.equal(token.json.scope, 'mcp:read');
  });

  it('a confidential client authenticates as at /token', async () => {
    const ok = await push(request(conf.client_id).form, confAuth());
    assert.equal(ok.status, 201);
    const anonymous = await push(request(conf.client_id).form);
    assert.equal(anonymous.status, 401);
    assert.equal(anonymous.json.error, 'invalid_client');
    assert.equal(await auditReason(as, 'client.auth_failed'), 'used none, registered client_secret_basic');
    const wrong = await push(request(conf.client_id).form, { authorization: basic(conf.client_id, 'not-the-secret') });
    assert.equal(wrong.status, 401);
    assert.equal(wrong.json.error, 'invalid_client');
    assert.ok(wrong.headers.get('www-authenticate')?.startsWith('Basic'));
    assert.equal(await auditReason(as, 'client.auth_failed'), 'wrong client secret');
  });

  describe('the push is validated as /authorize validates (§2.1, §2.3: 400, JSON, never a redirect)', () => {
    const cases: { name: string; extra: Record<string, string | undefined>; error: string; reason: string }[] = [
      { name: 'request_uri inside the push', extra: { request_uri: `${PREFIX}abc` }, error: 'invalid_request', reason: 'request_uri is not allowed in a pushed request' },
      { name: 'an unregistered redirect_uri', extra: { redirect_uri: 'https://attacker.test/cb' }, error: 'invalid_request', reason: 'redirect_uri=https://attacker.test/cb' },
      { name: 'no PKCE', extra: { code_challenge: undefined, code_challenge_method: undefined }, error: 'invalid_request', reason: 'code_challenge is required (PKCE)' },
      { name: 'PKCE plain', extra: { code_challenge_method: 'plain' }, error: 'invalid_request', reason: 'code_challenge_method=plain' },
      { name: 'response_type token', extra: { response_type: 'token' }, error: 'unsupported_response_type', reason: 'response_type must be code' },
      { name: 'a scope the resource does not offer', extra: { scope: 'api:read' }, error: 'invalid_scope', reason: 'scope api:read is not offered by https://mcp.example.test/mcp' },
      { name: 'an unknown resource', extra: { resource: 'https://attacker.test/mcp' }, error: 'invalid_target', reason: 'resource=https://attacker.test/mcp' },
      { name: 'a request object', extra: { request: 'eyJhbGciOiJub25lIn0.e30.' }, error: 'invalid_request', reason: 'request objects are not supported' },
      { name: 'a subject_token from an ordinary client', extra: { subject_token: 'x' }, error: 'invalid_request', reason: 'subject_token is taken from session transfer clients only' },
    ];
    for (const c of cases) {
      it(`${c.name} → 400 ${c.error}`, async () => {
        const res = await push(request(pub.client_id, c.extra).form);
        assert.equal(res.status, 400, res.text);
        assert.equal(res.json.error, c.error);
        assert.equal(res.headers.get('location'), null);
        assert.equal(await auditReason(as, 'par.refused'), c.reason);
      });
    }
    it('a body that is not a form → 400 invalid_request', async () => {
      const res = await fetch(`${as.issuer}/par`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}' });
      assert.equal(res.status, 400);
      assert.equal(((await res.json()) as { error: string }).error, 'invalid_request');
      assert.equal(await auditReason(as, 'par.refused'), 'the body must be application/x-www-form-urlencoded');
    });
  });

  describe('the request_uri at /authorize (§4)', () => {
    const pushed = async (clientId = pub.client_id) => (await push(request(clientId).form)).json.request_uri as string;

    it('is single-use: a second visit → 400 invalid_request_uri', async () => {
      const uri = await pushed();
      const first = await fetch(authorizeWith(pub.client_id, uri), { redirect: 'manual' });
      assert.equal(first.status, 303);
      assert.match(first.headers.get('location')!, /^\/interaction\//);
      assert.deepEqual(await shown(authorizeWith(pub.client_id, uri)), { status: 400, error: 'invalid_request_uri' });
      assert.equal(await auditReason(as, 'authorize.refused'), 'request_uri already used');
    });

    it('of concurrent visits, exactly one gets it (atomic take, shared through Redis when set)', async () => {
      const uri = await pushed();
      const statuses = await Promise.all(Array.from({ length: 8 }, () => fetch(authorizeWith(pub.client_id, uri), { redirect: 'manual', headers: { accept: 'application/json' } }).then((r) => r.status)));
      assert.deepEqual(statuses.sort(), [303, 400, 400, 400, 400, 400, 400, 400]);
    });

    it('belongs to the client that pushed it', async () => {
      const uri = await pushed();
      assert.deepEqual(await shown(authorizeWith(conf.client_id, uri)), { status: 400, error: 'invalid_request_uri' });
      assert.equal(await auditReason(as, 'authorize.refused'), `request_uri was pushed by ${pub.client_id}, not client_id=${conf.client_id}`);
      // The wrong client did not burn it.
      assert.equal((await fetch(authorizeWith(pub.client_id, uri), { redirect: 'manual' })).status, 303);
    });

    it('an unknown request_uri → invalid_request_uri', async () => {
      assert.deepEqual(await shown(authorizeWith(pub.client_id, `${PREFIX}made-up`)), { status: 400, error: 'invalid_request_uri' });
      assert.equal(await auditReason(as, 'authorize.refused'), 'request_uri unknown or expired');
      assert.deepEqual(await shown(authorizeWith(pub.client_id, 'https://attacker.test/request')), { status: 400, error: 'invalid_request_uri' });
      assert.equal(await auditReason(as, 'authorize.refused'), 'request_uri was not issued by this server');
    });

    it('refuses front-channel parameters beside it (only client_id may come along)', async () => {
      const uri = await pushed();
      assert.deepEqual(await shown(authorizeWith(pub.client_id, uri, '&scope=mcp:write')), { status: 400, error: 'invalid_request' });
      assert.equal(await auditReason(as, 'authorize.refused'), 'front-channel parameter scope beside request_uri');
      assert.deepEqual(await shown(`${as.issuer}/authorize?request_uri=${encodeURIComponent(uri)}`), { status: 400, error: 'invalid_request' });
      assert.equal(await auditReason(as, 'authorize.refused'), 'parameter client_id is required');
    });
  });

  describe('PAR-only clients (§6)', () => {
    it('a configured client with require_pushed_authorization_requests is refused without a request_uri', async () => {
      const { form } = request('par-only');
      const res = await fetch(`${as.issuer}/authorize?${new URLSearchParams(form)}`, { redirect: 'manual' });
      assert.equal(res.status, 303);
      const location = new URL(res.headers.get('location')!);
      assert.equal(location.origin + location.pathname, REDIRECT);
      assert.equal(location.searchParams.get('error'), 'invalid_request');
      assert.equal(await auditReason(as, 'authorize.refused'), 'pushed authorization request required');
      const uri = (await push(form)).json.request_uri as string;
      assert.equal((await fetch(authorizeWith('par-only', uri), { redirect: 'manual' })).status, 303);
    });

    it('a registered client (RFC 7591) may ask for it, and is held to it', async () => {
      const strict = await registerClient(as.issuer, { redirect_uris: [REDIRECT], token_endpoint_auth_method: 'none', grant_types: ['authorization_code'], require_pushed_authorization_requests: true });
      assert.equal(strict.require_pushed_authorization_requests, true);
      const { form } = request(strict.client_id);
      const res = await fetch(`${as.issuer}/authorize?${new URLSearchParams(form)}`, { redirect: 'manual' });
      assert.equal(new URL(res.headers.get('location')!).searchParams.get('error'), 'invalid_request');
      assert.equal(await auditReason(as, 'authorize.refused'), 'pushed authorization request required');
    });
  });
});

describe('PAR: global policy, lifetime and CORS', () => {
  let as: TestAuthServer;
  let pub: { client_id: string };
  const ORIGIN = 'http://localhost:6274';
  before(async () => {
    as = await startTestAuthServer({ par: { required: true, request_uri_ttl: 1 }, cors: { allowed_origins: [ORIGIN] }, registration: { allowed_scopes: ['mcp:read'] } });
    pub = await registerClient(as.issuer, { redirect_uris: [REDIRECT], token_endpoint_auth_method: 'none', grant_types: ['authorization_code'] });
  });
  after(async () => as?.close());

  const form = () => ({ response_type: 'code', client_id: pub.client_id, redirect_uri: REDIRECT, code_challenge: pkcePair().challenge, code_challenge_method: 'S256', resource: as.resource, scope: 'mcp:read' });

  it('par.required: metadata says so, and a front-channel request is refused', async () => {
    const metadata = (await (await fetch(`${as.issuer}/.well-known/openid-configuration`)).json()) as Record<string, unknown>;
    assert.equal(metadata.require_pushed_authorization_requests, true);
    const res = await fetch(`${as.issuer}/authorize?${new URLSearchParams(form())}`, { redirect: 'manual' });
    assert.equal(new URL(res.headers.get('location')!).searchParams.get('error'), 'invalid_request');
    await as.ctx.audit.flush();
    assert.equal((await as.store.audit.list({ type: 'authorize.refused' }))[0]?.reason, 'pushed authorization request required');
  });

  it('an expired request_uri → invalid_request_uri (§4: MUST be rejected)', async () => {
    const pushed = await postForm(`${as.issuer}/par`, form());
    assert.equal(pushed.json.expires_in, 1);
    await new Promise((resolve) => setTimeout(resolve, 2100));
    const res = await fetch(`${as.issuer}/authorize?client_id=${pub.client_id}&request_uri=${encodeURIComponent(pushed.json.request_uri as string)}`, { redirect: 'manual', headers: { accept: 'application/json' } });
    assert.equal(res.status, 400);
    assert.equal(((await res.json()) as { error: string }).error, 'invalid_request_uri');
    await as.ctx.audit.flush();
    assert.equal((await as.store.audit.list({ type: 'authorize.refused' }))[0]?.reason, 'request_uri expired');
  });

  it('answers CORS for configured origins, as /token does', async () => {
    const preflight = await fetch(`${as.issuer}/par`, { method: 'OPTIONS', headers: { origin: ORIGIN, 'access-control-request-method': 'POST', 'access-control-request-headers': 'content-type' } });
    assert.equal(preflight.headers.get('access-control-allow-origin'), ORIGIN);
    const res = await fetch(`${as.issuer}/par`, { method: 'POST', headers: { origin: ORIGIN, 'content-type': 'application/x-www-form-urlencoded' }, body: new URLSearchParams(form()) });
    assert.equal(res.status, 201);
    assert.equal(res.headers.get('access-control-allow-origin'), ORIGIN);
    const other = await fetch(`${as.issuer}/par`, { method: 'OPTIONS', headers: { origin: 'https://attacker.test', 'access-control-request-method': 'POST' } });
    assert.equal(other.headers.get('access-control-allow-origin'), null);
  });
});
