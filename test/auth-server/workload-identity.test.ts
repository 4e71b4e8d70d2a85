import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { generateKeyPair } from 'jose';
import { decodeJwt, postForm, registerClient, startTestAuthServer, type TestAuthServer } from '../helpers/auth-server.ts';
import { startFakePlatformIssuer, type FakePlatformIssuer } from '../helpers/fake-platform-issuer.ts';
import { adminAccess } from '../helpers/admin.ts';

const JWT_BEARER = 'urn:ietf:params:oauth:grant-type:jwt-bearer';
const ASSERTION_TYPE = 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer';
const API = 'https://api.example.test';
const PLANNER_SA = 'system:serviceaccount:agents:planner';

/**
 * Workload identity federation (SEP-1933, RFC 7523): a platform JWT authenticates a client at
 * /token — as a client assertion with client_id in the body (path A, refusals 401 invalid_client,
 * audited client.auth_failed) and as the jwt-bearer grant without client authentication (path B,
 * refusals 400 invalid_grant, audited token.jwt_bearer_refused). Keys from the platform's OpenID
 * discovery, on loopback.
 */
describe('workload identity', () => {
  let as: TestAuthServer;
  let platform: FakePlatformIssuer;
  let other: FakePlatformIssuer;
  let liar: FakePlatformIssuer;
  let stranger: FakePlatformIssuer;
  before(async () => {
    [platform, other, liar, stranger] = await Promise.all([startFakePlatformIssuer(), startFakePlatformIssuer(), startFakePlatformIssuer(), startFakePlatformIssuer()]);
    liar.documentIssuer = 'https://someone-else.example';
    as = await startTestAuthServer({
      workload_identity: {
        issuers: [
          { issuer: platform.issuer, allow_loopback: true, max_lifetime_seconds: 3600 },
          { issuer: other.issuer, allow_loopback: true, require_jti: false },
          { issuer: liar.issuer, allow_loopback: true },
        ],
      },
      clients: [
        { client_id: 'planner', workload_identity: { issuer: platform.issuer, subject: PLANNER_SA, claims: { 'kubernetes.io.namespace': 'agents' } }, grant_types: ['client_credentials', JWT_BEARER], scope: 'api:read' },
        { client_id: 'spiffe-svc', workload_identity: { issuer: other.issuer, subject: 'spiffe://example.org/svc' }, grant_types: ['client_credentials', JWT_BEARER] },
        { client_id: 'cc-only', workload_identity: { issuer: platform.issuer, subject: 'system:serviceaccount:agents:cc-only' }, grant_types: ['client_credentials'] },
        { client_id: 'lied-to', workload_identity: { issuer: liar.issuer, subject: 'x' }, grant_types: ['client_credentials', JWT_BEARER] },
        { client_id: 'to-disable', workload_identity: { issuer: platform.issuer, subject: 'system:serviceaccount:agents:off' }, grant_types: ['client_credentials', JWT_BEARER] },
      ],
    });
  });
  after(async () => {
    await as.close();
    await Promise.all([platform, other, liar, stranger].map((p) => p.close()));
  });

  const plannerJwt = (claims: Record<string, unknown> = {}, header?: Parameters<FakePlatformIssuer['sign']>[1]) =>
    platform.sign({ sub: PLANNER_SA, aud: as.issuer, 'kubernetes.io': { namespace: 'agents', serviceaccount: { name: 'planner' } }, ...claims }, header);
  const viaAssertion = (jwt: string, extra: Record<string, string> = {}) =>
    postForm(`${as.issuer}/token`, { grant_type: 'client_credentials', client_id: 'planner', client_assertion_type: ASSERTION_TYPE, client_assertion: jwt, resource: API, ...extra });
  const viaGrant = (jwt: string, extra: Record<string, string> = {}) => postForm(`${as.issuer}/token`, { grant_type: JWT_BEARER, assertion: jwt, resource: API, ...extra });
  const lastEvent = async (type: string) => {
    await as.ctx.audit.flush();
    const events = await as.store.audit.list({ type });
    return events.sort((a, b) => b.at - a.at || 0).at(0);
  };

  describe('path A: the platform JWT as a client assertion (client_id in the body)', () => {
    it('authenticates the client registered with that workload identity; a client token, sub = client_id', async () => {
      const res = await viaAssertion(await plannerJwt());
      assert.equal(res.status, 200, res.text);
      assert.equal(res.json.token_type, 'Bearer');
      const claims = decodeJwt(res.json.access_token as string);
      assert.deepEqual([claims.sub, claims.client_id, claims.aud, claims.scope], ['planner', 'planner', API, 'api:read']);
      assert.ok(platform.hits.includes('/.well-known/openid-configuration') && platform.hits.includes('/jwks'), 'keys from the discovery document');
    });

    it('works at /introspect too (the same client authentication)', async () => {
      const token = (await viaAssertion(await plannerJwt())).json.access_token as string;
      const res = await postForm(`${as.issuer}/introspect`, { token, client_id: 'planner', client_assertion_type: ASSERTION_TYPE, client_assertion: await plannerJwt() });
      assert.equal(res.status, 200, res.text);
      assert.equal(res.json.active, true);
    });

    it('an RS256 key of the platform works too', async () => {
      assert.equal((await viaAssertion(await plannerJwt({}, { alg: 'RS256' }))).status, 200);
    });

    const refusals: [string, () => Promise<string>, RegExp, Record<string, string>?][] = [
      ['an issuer not on the allow-list', async () => stranger.sign({ sub: PLANNER_SA, aud: as.issuer }), /issuer is not in workload_identity\.issuers/],
      ["an allowed issuer that is not the client's", async () => other.sign({ sub: PLANNER_SA, aud: as.issuer }), /issuer http:\/\/127\.0\.0\.1:\d+ is not the client's/],
      ['another subject', () => plannerJwt({ sub: 'system:serviceaccount:agents:intruder' }), /sub system:serviceaccount:agents:intruder is not the workload identity of planner/],
      ['an extra claim that differs', () => plannerJwt({ 'kubernetes.io': { namespace: 'default' } }), /claim kubernetes\.io\.namespace is "default", not "agents"/],
      ['an audience of another server', () => plannerJwt({ aud: 'https://other-as.example' }), /aud "https:\/\/other-as\.example" is not this server/],
      ['two audiences', () => plannerJwt({ aud: [as.issuer, 'https://other-as.example'] }), /aud must be one value/],
      ['an expired JWT', () => plannerJwt({ iat: Math.floor(Date.now() / 1000) - 900, exp: Math.floor(Date.now() / 1000) - 300 }), /ERR_JWT_EXPIRED/],
      ['a lifetime over max_lifetime_seconds', () => plannerJwt({ exp: Math.floor(Date.now() / 1000) + 7200 }), /lives 7200 s, more than 3600 s/],
      ['an iat in the future', () => plannerJwt({ iat: Math.floor(Date.now() / 1000) + 120 }), /iat is in the future/],
      ['no jti (require_jti)', () => plannerJwt({ jti: undefined }), /has no jti/],
      ['an ID-JAG-typed JWT', () => plannerJwt({}, { typ: 'oauth-id-jag+jwt' }), /typ oauth-id-jag\+jwt is not a workload identity/],
      ['an access-token-typed JWT', () => plannerJwt({}, { typ: 'at+jwt' }), /typ at\+jwt is not a workload identity/],
      ['a signature by a key the platform does not publish', async () => plannerJwt({}, { key: (await generateKeyPair('ES256')).privateKey }), /ERR_JWS_SIGNATURE_VERIFICATION_FAILED/],
      ['HS256 (no shared keys)', async () => plannerJwt({}, { alg: 'HS256', key: new Uint8Array(32) }), /ERR_JOSE_ALG_NOT_ALLOWED/],
      ['no client_id in the body (the JWT sub is not a client)', () => plannerJwt(), /unknown client_id/, { client_id: '' }],
    ];
    for (const [name, make, reason, extra] of refusals) {
      it(`401 invalid_client: ${name}`, async () => {
        const jwt = await make();
        const form: Record<string, string> = { grant_type: 'client_credentials', client_id: 'planner', client_assertion_type: ASSERTION_TYPE, client_assertion: jwt, resource: API, ...extra };
        if (form.client_id === '') delete form.client_id;
        const res = await postForm(`${as.issuer}/token`, form);
        assert.equal(res.status, 401, res.text);
        assert.equal(res.json.error, 'invalid_client');
        const event = await lastEvent('client.auth_failed');
        assert.match(event?.reason ?? '', reason);
      });
    }

    it('a replayed jti: the first use succeeds, the second is refused', async () => {
      const jwt = await plannerJwt();
      assert.equal((await viaAssertion(jwt)).status, 200);
      const again = await viaAssertion(jwt);
      assert.equal(again.status, 401);
      assert.equal(again.json.error, 'invalid_client');
      assert.match((await lastEvent('client.auth_failed'))?.reason ?? '', /jti replayed/);
    });

    it('an issuer with require_jti: false takes a JWT without jti (Kubernetes reuses its tokens)', async () => {
      const jwt = await other.sign({ sub: 'spiffe://example.org/svc', aud: `${as.issuer}/token`, jti: undefined });
      const form = { grant_type: 'client_credentials', client_id: 'spiffe-svc', client_assertion_type: ASSERTION_TYPE, client_assertion: jwt, resource: API };
      assert.equal((await postForm(`${as.issuer}/token`, form)).status, 200, 'the token endpoint URL is an accepted audience');
      assert.equal((await postForm(`${as.issuer}/token`, form)).status, 200, 'no jti: nothing to replay-check');
    });

    it('a discovery document naming another issuer gives no keys', async () => {
      const jwt = await liar.sign({ sub: 'x', aud: as.issuer });
      const res = await postForm(`${as.issuer}/token`, { grant_type: 'client_credentials', client_id: 'lied-to', client_assertion_type: ASSERTION_TYPE, client_assertion: jwt, resource: API });
      assert.equal(res.status, 401);
      assert.equal(res.json.error, 'invalid_client');
      assert.match((await lastEvent('client.auth_failed'))?.reason ?? '', /names issuer "https:\/\/someone-else\.example"/);
    });

    it('a secret is not accepted from a workload client (the registered method only)', async () => {
      const res = await postForm(`${as.issuer}/token`, { grant_type: 'client_credentials', client_id: 'planner', client_secret: 'guess', resource: API });
      assert.equal(res.status, 401);
      assert.match((await lastEvent('client.auth_failed'))?.reason ?? '', /used client_secret_post, registered workload_identity/);
    });

    it('a rotated platform key: the unknown kid refetches the JWKS, then verifies', async () => {
      await plannerJwt().then(viaAssertion);
      await platform.rotate();
      // jose refetches on an unknown kid at most every 5 s (issuer-keys.ts cooldown).
      await new Promise((resolve) => setTimeout(resolve, 5_100));
      const fetched = platform.hits.filter((h) => h === '/jwks').length;
      const res = await viaAssertion(await plannerJwt());
      assert.equal(res.status, 200, res.text);
      assert.ok(platform.hits.filter((h) => h === '/jwks').length > fetched, 'fetched again');
    });
  });

  describe('path B: the SEP-1933 jwt-bearer grant (no client authentication)', () => {
    it("issues the workload's client a token, audited with the workload identity", async () => {
      const res = await viaGrant(await plannerJwt());
      assert.equal(res.status, 200, res.text);
      assert.equal(res.json.token_type, 'Bearer');
      assert.equal(res.json.refresh_token, undefined);
      assert.equal(res.json.scope, 'api:read');
      const claims = decodeJwt(res.json.access_token as string);
      assert.deepEqual([claims.sub, claims.client_id, claims.aud], ['planner', 'planner', API]);
      const event = await lastEvent('token.issued');
      assert.equal(event?.clientId, 'planner');
      assert.equal(event?.data?.grant_type, JWT_BEARER);
      assert.equal(event?.data?.profile, 'workload');
      assert.deepEqual(event?.data?.workload, { iss: platform.issuer, sub: PLANNER_SA });
    });

    const refusals: [string, () => Promise<string>, RegExp, string?][] = [
      ['an issuer not on the allow-list', async () => stranger.sign({ sub: PLANNER_SA, aud: as.issuer }), /in workload_identity\.issuers/],
      ['not a JWT', async () => 'not-a-jwt', /not a JWT/],
      ['a subject no client has', () => plannerJwt({ sub: 'system:serviceaccount:agents:nobody' }), /no client has the workload identity system:serviceaccount:agents:nobody/],
      ['an extra claim that differs', () => plannerJwt({ 'kubernetes.io': { namespace: 'default' } }), /claim kubernetes\.io\.namespace/],
      ['an audience of another server', () => plannerJwt({ aud: 'https://other-as.example' }), /is not this server/],
      ['an expired JWT', () => plannerJwt({ iat: Math.floor(Date.now() / 1000) - 900, exp: Math.floor(Date.now() / 1000) - 300 }), /ERR_JWT_EXPIRED/],
      ['a lifetime over max_lifetime_seconds', () => plannerJwt({ exp: Math.floor(Date.now() / 1000) + 7200 }), /more than 3600 s/],
      ['no jti', () => plannerJwt({ jti: undefined }), /has no jti/],
      ['an access-token-typed JWT', () => plannerJwt({}, { typ: 'at+jwt' }), /typ at\+jwt/],
    ];
    for (const [name, make, reason] of refusals) {
      it(`400 invalid_grant: ${name}`, async () => {
        const res = await viaGrant(await make());
        assert.equal(res.status, 400, res.text);
        assert.equal(res.json.error, 'invalid_grant');
        const event = await lastEvent('token.jwt_bearer_refused');
        assert.equal(event?.data?.profile, 'workload');
        assert.match(event?.reason ?? '', reason);
      });
    }

    it('a replayed jti: the first use succeeds, the second is invalid_grant', async () => {
      const jwt = await plannerJwt();
      assert.equal((await viaGrant(jwt)).status, 200);
      const again = await viaGrant(jwt);
      assert.deepEqual([again.status, again.json.error], [400, 'invalid_grant']);
      assert.match((await lastEvent('token.jwt_bearer_refused'))?.reason ?? '', /jti replayed/);
    });

    it('a refused request does not burn the jti (it is spent last)', async () => {
      const jwt = await plannerJwt();
      const wide = await viaGrant(jwt, { scope: 'api:write' });
      assert.deepEqual([wide.status, wide.json.error], [400, 'invalid_scope']);
      assert.equal((await viaGrant(jwt)).status, 200);
    });

    it("400 invalid_scope: a scope outside the client's", async () => {
      const res = await viaGrant(await plannerJwt(), { resource: as.resource, scope: 'mcp:write' });
      assert.deepEqual([res.status, res.json.error], [400, 'invalid_scope']);
      assert.match((await lastEvent('token.jwt_bearer_refused'))?.reason ?? res.json.error_description as string, /scope/);
    });

    it('400 unauthorized_client: a workload client not registered for the grant', async () => {
      const jwt = await platform.sign({ sub: 'system:serviceaccount:agents:cc-only', aud: as.issuer });
      const res = await viaGrant(jwt);
      assert.deepEqual([res.status, res.json.error], [400, 'unauthorized_client']);
    });

    it("400 invalid_grant: the workload's client is disabled", async () => {
      const jwt = await platform.sign({ sub: 'system:serviceaccount:agents:off', aud: as.issuer });
      await as.store.clients.update('to-disable', { disabledAt: as.ctx.now() - 1 });
      const res = await viaGrant(jwt);
      assert.deepEqual([res.status, res.json.error], [400, 'invalid_grant']);
      assert.match((await lastEvent('token.jwt_bearer_refused'))?.reason ?? '', /disabled/);
    });

    it('an ID-JAG-typed assertion without client authentication: 401 invalid_client (an ID-JAG needs the client)', async () => {
      const res = await viaGrant(await plannerJwt({}, { typ: 'oauth-id-jag+jwt' }));
      assert.deepEqual([res.status, res.json.error], [401, 'invalid_client']);
    });

    it('with client authentication too, the JWT must be that client\'s own', async () => {
      // spiffe-svc authenticates with its own platform JWT and presents the planner's as the grant.
      const own = await other.sign({ sub: 'spiffe://example.org/svc', aud: as.issuer });
      const res = await postForm(`${as.issuer}/token`, { grant_type: JWT_BEARER, assertion: await plannerJwt(), resource: API, client_id: 'spiffe-svc', client_assertion_type: ASSERTION_TYPE, client_assertion: own });
      assert.deepEqual([res.status, res.json.error], [400, 'invalid_grant']);
      assert.match((await lastEvent('token.jwt_bearer_refused'))?.reason ?? '', /is not the client's/);
    });
  });

  it('metadata: workload_identity among the auth methods and jwt-bearer among the grants, only when configured', async () => {
    const metadata = (await (await fetch(`${as.issuer}/.well-known/oauth-authorization-server`)).json()) as Record<string, string[]>;
    assert.ok(metadata.token_endpoint_auth_methods_supported!.includes('workload_identity'));
    assert.ok(metadata.grant_types_supported!.includes(JWT_BEARER));
    assert.ok(!JSON.stringify(metadata).includes(platform.issuer), 'the platform issuers are not published');
    const plain = await startTestAuthServer();
    try {
      const bare = (await (await fetch(`${plain.issuer}/.well-known/oauth-authorization-server`)).json()) as Record<string, string[]>;
      assert.ok(!bare.token_endpoint_auth_methods_supported!.includes('workload_identity'));
    } finally {
      await plain.close();
    }
  });

  it('the admin API creates a workload client (no secret); a taken identity is 409, an issuer off the list 400', async () => {
    const admin = await adminAccess(as);
    const created = await admin.api('POST', '/clients', { client_id: 'admin-wl', grant_types: ['client_credentials'], workload_identity: { issuer: platform.issuer, subject: 'system:serviceaccount:agents:admin-wl' } });
    assert.equal(created.status, 201, created.text);
    assert.equal((created.json as { client_secret: unknown }).client_secret, null);
    assert.equal((created.json as { token_endpoint_auth_method: string }).token_endpoint_auth_method, 'workload_identity');
    const jwt = await platform.sign({ sub: 'system:serviceaccount:agents:admin-wl', aud: as.issuer });
    const res = await postForm(`${as.issuer}/token`, { grant_type: 'client_credentials', client_id: 'admin-wl', client_assertion_type: ASSERTION_TYPE, client_assertion: jwt, resource: API });
    assert.equal(res.status, 200, res.text);
    const taken = await admin.api('POST', '/clients', { client_id: 'admin-wl-2', workload_identity: { issuer: platform.issuer, subject: PLANNER_SA } });
    assert.equal(taken.status, 409, taken.text);
    const offList = await admin.api('POST', '/clients', { client_id: 'admin-wl-3', workload_identity: { issuer: stranger.issuer, subject: 'x' } });
    assert.equal(offList.status, 400, offList.text);
    assert.match(offList.text, /not listed in workload_identity\.issuers/);
  });

  it('self-registration cannot claim the workload_identity method', async () => {
    const open = await startTestAuthServer({ registration: { enabled: true, dynamic_clients: true } as never });
    try {
      await assert.rejects(registerClient(open.issuer, { client_name: 'sneaky', grant_types: ['client_credentials'], token_endpoint_auth_method: 'workload_identity' }), /workload_identity is set by an administrator/);
    } finally {
      await open.close();
    }
  });
});
