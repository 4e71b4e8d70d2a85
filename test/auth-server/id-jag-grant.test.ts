import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { SignJWT, base64url } from 'jose';
import { basic, decodeJwt, postForm, startTestAuthServer, type TestAuthServer } from '../helpers/auth-server.ts';
import { startFakeIdp, type FakeIdp } from '../helpers/id-jag.ts';
import { needsPostgres, needsRedis } from '../helpers/services.ts';
import { createDpopProof, generateDpopKey, jwkThumbprint, type DpopKey } from '../../src/core/dpop.ts';

/**
 * Mandate as the MCP server's authorization server: the jwt-bearer grant with an ID-JAG
 * (draft-ietf-oauth-identity-assertion-authz-grant §4.4, MCP EMA §§5–7). ID-JAGs are forged with
 * the keys of stand-in IdPs (test/helpers/id-jag.ts). Every refusal: exact status, `error`, and
 * the reason in the audit log.
 */
const JWT_BEARER = 'urn:ietf:params:oauth:grant-type:jwt-bearer';
const MCP = 'https://mcp.example.test/mcp';
const API = 'https://api.example.test';
const SECRETS = { mcp: 'idjag-mcp-client-secret-0123456789abcdef', other: 'idjag-other-client-secret-0123456789abcd', plain: 'idjag-plain-client-secret-0123456789abcd' };
const sha256 = (value: string) => createHash('sha256').update(value).digest('base64url');

describe('ID-JAG at the resource authorization server (jwt-bearer grant)', () => {
  let as: TestAuthServer;
  let idpA: FakeIdp; // discovery, link [sub, email] for example.com users (local ones too), no JIT
  let idpB: FakeIdp; // jwks_uri, JIT users, resource optional, clients [mcp-client]
  let idpC: FakeIdp; // inline jwks, local_sub, ES256 only
  let untrusted: FakeIdp;
  const auth = { mcp: { authorization: basic('mcp-client', SECRETS.mcp) }, other: { authorization: basic('other-client', SECRETS.other) }, plain: { authorization: basic('plain-client', SECRETS.plain) } };

  before(async () => {
    process.env.IDJAG_MCP_SECRET = SECRETS.mcp;
    process.env.IDJAG_OTHER_SECRET = SECRETS.other;
    process.env.IDJAG_PLAIN_SECRET = SECRETS.plain;
    [idpA, idpB, idpC, untrusted] = await Promise.all([startFakeIdp({ discovery: 'rfc8414' }), startFakeIdp({ discovery: 'none' }), startFakeIdp({ discovery: 'none' }), startFakeIdp()]);
    as = await startTestAuthServer({
      clients: [
        { client_id: 'mcp-client', client_secret_env: 'IDJAG_MCP_SECRET', grant_types: [JWT_BEARER], scope: 'mcp:read mcp:write api:read' },
        { client_id: 'other-client', client_secret_env: 'IDJAG_OTHER_SECRET', grant_types: [JWT_BEARER] },
        { client_id: 'plain-client', client_secret_env: 'IDJAG_PLAIN_SECRET', grant_types: ['client_credentials'] },
        { client_id: 'public-client', token_endpoint_auth_method: 'none', grant_types: [JWT_BEARER] },
      ],
      trusted_idps: [
        { issuer: idpA.issuer, allow_loopback: true, link: { claims: ['sub', 'email'], email_domains: ['example.com'], local_users: true } },
        { issuer: idpB.issuer, jwks_uri: `${idpB.issuer}/jwks`, allow_loopback: true, jit_users: true, require_resource: false, clients: ['mcp-client'] },
        { issuer: idpC.issuer, jwks: idpC.jwks as never, algorithms: ['ES256'], link: { claims: ['sub'], local_sub: true } },
      ],
    });
  });
  after(async () => {
    await as?.close();
    await Promise.all([idpA, idpB, idpC, untrusted].map((i) => i?.close()));
  });

  const now = () => Math.floor(Date.now() / 1000);
  /** A valid ID-JAG's claims from `idp` for mcp-client, overridable. */
  const claimsOf = (idp: FakeIdp, overrides: Record<string, unknown> = {}) => ({
    iss: idp.issuer,
    sub: 'idp-user-1',
    aud: as.issuer,
    client_id: 'mcp-client',
    jti: crypto.randomUUID(),
    iat: now(),
    exp: now() + 300,
    resource: MCP,
    scope: 'mcp:read mcp:write',
    email: 'demo@example.com',
    email_verified: true,
    ...overrides,
  });
  const idJag = (idp: FakeIdp, overrides: Record<string, unknown> = {}, header?: Parameters<FakeIdp['sign']>[1]) => idp.sign(claimsOf(idp, overrides), header);
  const without = async (idp: FakeIdp, claim: string) => {
    const claims: Record<string, unknown> = claimsOf(idp);
    delete claims[claim];
    return idp.sign(claims);
  };
  const grant = (assertion: string | undefined, headers: Record<string, string> = auth.mcp, extra: Record<string, string> = {}) =>
    postForm(`${as.issuer}/token`, { grant_type: JWT_BEARER, ...(assertion !== undefined ? { assertion } : {}), ...extra }, headers);
  const lastEvent = async (type: string) => {
    await as.ctx.audit.flush();
    const [event] = await as.store.audit.list({ type, limit: 1 });
    return event;
  };
  /** Asserts the refusal and its audit event (type, error, reason). */
  const refused = async (res: Awaited<ReturnType<typeof grant>>, status: number, error: string, reason: RegExp, type = 'token.jwt_bearer_refused') => {
    assert.equal(res.status, status, res.text);
    assert.equal(res.json.error, error, res.text);
    assert.equal(res.json.access_token, undefined);
    const event = await lastEvent(type);
    assert.equal(event?.error, error);
    assert.match(String(event?.reason), reason);
  };
  const demoSub = async () => (await as.store.users.findByUsername('demo'))!.sub;

  describe('accepted', () => {
    it('links by email, issues a token for the resource with the intersected scopes and no refresh token; audited', async () => {
      const assertion = await idJag(idpA, { sub: 'alice@idp-a' });
      const res = await grant(assertion, auth.mcp, { scope: 'mcp:read api:read' });
      assert.equal(res.status, 200, res.text);
      assert.equal(res.json.token_type, 'Bearer');
      assert.equal(res.json.scope, 'mcp:read');
      assert.equal(res.json.refresh_token, undefined);
      assert.equal(res.json.id_token, undefined);
      const token = decodeJwt(res.json.access_token as string);
      assert.equal(token.sub, await demoSub());
      assert.equal(token.aud, MCP);
      assert.equal(token.client_id, 'mcp-client');
      assert.equal(token.scope, 'mcp:read');
      assert.equal(token.idp, idpA.issuer);
      assert.equal(token.iss, as.issuer);
      const linked = await lastEvent('federation.user_linked');
      assert.equal(linked?.sub, await demoSub());
      assert.deepEqual(linked?.data, { idp: idpA.issuer, idp_sub: 'alice@idp-a', by: 'email' });
      const issued = await lastEvent('token.issued');
      const jti = decodeJwt(assertion).jti as string;
      assert.equal(issued?.data?.grant_type, JWT_BEARER);
      assert.equal(issued?.data?.profile, 'id-jag');
      assert.equal(issued?.data?.idp, idpA.issuer);
      assert.equal(issued?.data?.idp_sub, 'alice@idp-a');
      assert.equal(issued?.data?.idjag_jti, sha256(jti));
      assert.equal(issued?.data?.linked_by, 'email');
      assert.ok(!JSON.stringify(issued).includes(jti), 'the raw jti is not in the audit log');
      assert.deepEqual(await as.store.federation.findLink(idpA.issuer, 'alice@idp-a').then((l) => l?.sub), await demoSub());
    });

    it('the remembered link is used next time, even without an email claim', async () => {
      await grant(await idJag(idpA, { sub: 'bob@idp-a' }));
      const res = await grant(await idJag(idpA, { sub: 'bob@idp-a', email: undefined }));
      assert.equal(res.status, 200, res.text);
      assert.equal(decodeJwt(res.json.access_token as string).sub, await demoSub());
      assert.equal((await lastEvent('token.issued'))?.data?.linked_by, 'link');
    });

    it('no scope requested → the ID-JAG scopes the resource offers and the client may hold', async () => {
      const res = await grant(await idJag(idpA, { scope: 'mcp:write unknown:scope' }));
      assert.equal(res.status, 200, res.text);
      assert.equal(res.json.scope, 'mcp:write');
    });

    it('jit_users: a user is created (source federated, username <issuer host>:<email>) and linked', async () => {
      const res = await grant(await idJag(idpB, { sub: 'new-person', email: 'New.Person@Example.org', name: 'New Person' }));
      assert.equal(res.status, 200, res.text);
      const user = await as.store.users.findByUsername(`${new URL(idpB.issuer).host}:new.person@example.org`);
      assert.ok(user, 'created');
      assert.equal(user.source, 'federated');
      assert.deepEqual(user.profile, { name: 'New Person', email: 'New.Person@Example.org' });
      assert.equal(user.passwordHash, undefined);
      assert.equal(decodeJwt(res.json.access_token as string).sub, user.sub);
      const created = await lastEvent('federation.user_created');
      assert.equal(created?.sub, user.sub);
      assert.equal(created?.data?.idp_sub, 'new-person');
      // Again: the same user, nobody created.
      const again = await grant(await idJag(idpB, { sub: 'new-person', email: 'New.Person@Example.org' }));
      assert.equal(decodeJwt(again.json.access_token as string).sub, user.sub);
      assert.equal((await lastEvent('token.issued'))?.data?.linked_by, 'link');
    });

    it('concurrent first uses of one identity: one user, one link, every request answered with it', async () => {
      const results = await Promise.all(Array.from({ length: 5 }, async () => grant(await idJag(idpB, { sub: 'rush', email: 'rush@example.org' }))));
      for (const res of results) assert.equal(res.status, 200, res.text);
      const user = await as.store.users.findByUsername(`${new URL(idpB.issuer).host}:rush@example.org`);
      assert.ok(user);
      assert.deepEqual(new Set(results.map((r) => decodeJwt(r.json.access_token as string).sub)), new Set([user.sub]));
      assert.equal((await as.store.users.findByEmail('rush@example.org')).length, 1);
      await as.ctx.audit.flush();
      const created = (await as.store.audit.list({ type: 'federation.user_created', limit: 50 })).filter((e) => e.data?.idp_sub === 'rush');
      assert.equal(created.length, 1);
    });

    it('jit_users without email: username <issuer host>:<sub>', async () => {
      const res = await grant(await idJag(idpB, { sub: 'no-mail', email: undefined }));
      assert.equal(res.status, 200, res.text);
      assert.ok(await as.store.users.findByUsername(`${new URL(idpB.issuer).host}:no-mail`));
    });

    it('link.local_sub: the IdP sub taken as a local sub', async () => {
      const res = await grant(await idJag(idpC, { sub: await demoSub(), email: undefined }));
      assert.equal(res.status, 200, res.text);
      assert.equal(decodeJwt(res.json.access_token as string).sub, await demoSub());
      assert.equal((await lastEvent('federation.user_linked'))?.data?.by, 'sub');
    });

    it('resource: the request picks one of the claim array', async () => {
      const res = await grant(await idJag(idpA, { resource: [MCP, API], scope: 'api:read' }), auth.mcp, { resource: API });
      assert.equal(res.status, 200, res.text);
      assert.equal(decodeJwt(res.json.access_token as string).aud, API);
      assert.equal(res.json.scope, 'api:read');
    });

    it('require_resource off: no resource claim, the requested resource', async () => {
      const res = await grant(await idJag(idpB, { resource: undefined, sub: 'no-resource', scope: 'api:read' }), auth.mcp, { resource: API });
      assert.equal(res.status, 200, res.text);
      assert.equal(decodeJwt(res.json.access_token as string).aud, API);
    });

    it('typ with the application/ prefix, RS256 signature', async () => {
      const res = await grant(await idJag(idpA, {}, { typ: 'application/oauth-id-jag+jwt', alg: 'RS256' }));
      assert.equal(res.status, 200, res.text);
    });

    it('aud as an array of one (this issuer)', async () => {
      const res = await grant(await idJag(idpA, { aud: [as.issuer] }));
      assert.equal(res.status, 200, res.text);
    });

    it('a refused grant does not spend the jti', async () => {
      const assertion = await idJag(idpA, { scope: 'mcp:read' });
      await refused(await grant(assertion, auth.mcp, { scope: 'mcp:write' }), 400, 'invalid_scope', /requested mcp:write/);
      assert.equal((await grant(assertion)).status, 200);
    });
  });

  describe('refused', () => {
    it('missing assertion → 400 invalid_request', async () => refused(await grant(undefined), 400, 'invalid_request', /no assertion/));
    it('not a JWT → invalid_grant', async () => refused(await grant('not.a-jwt'), 400, 'invalid_grant', /not a JWT/));
    it('typ JWT from a trusted IdP → invalid_grant', async () => refused(await grant(await idJag(idpA, {}, { typ: 'JWT' })), 400, 'invalid_grant', /typ "JWT" is not oauth-id-jag\+jwt/));
    it('typ at+jwt → invalid_grant', async () => refused(await grant(await idJag(idpA, {}, { typ: 'at+jwt' })), 400, 'invalid_grant', /typ "at\+jwt"/));
    it('an issuer not in trusted_idps → invalid_grant', async () =>
      refused(await grant(await idJag(untrusted)), 400, 'invalid_grant', new RegExp(`issuer "${untrusted.issuer}" is not a trusted IdP`)));
    it('our own issuer → invalid_grant', async () => {
      const key = await as.ctx.keys.current();
      const own = await new SignJWT(claimsOf(idpA, { iss: as.issuer })).setProtectedHeader({ alg: 'ES256', typ: 'oauth-id-jag+jwt', kid: key.kid }).sign(key.privateKey);
      await refused(await grant(own), 400, 'invalid_grant', /is not a trusted IdP/);
    });
    it('a tampered payload (bad signature) → invalid_grant', async () => {
      const [h, , s] = (await idJag(idpA)).split('.');
      const payload = base64url.encode(JSON.stringify(claimsOf(idpA, { sub: 'someone-else' })));
      await refused(await grant(`${h}.${payload}.${s}`), 400, 'invalid_grant', /ERR_JWS_SIGNATURE_VERIFICATION_FAILED/);
    });
    it("another IdP's key under the same kid → invalid_grant", async () =>
      refused(await grant(await untrusted.sign(claimsOf(idpA))), 400, 'invalid_grant', /ERR_JWS_SIGNATURE_VERIFICATION_FAILED/));
    it('alg none → invalid_grant', async () => {
      const header = base64url.encode(JSON.stringify({ alg: 'none', typ: 'oauth-id-jag+jwt' }));
      await refused(await grant(`${header}.${base64url.encode(JSON.stringify(claimsOf(idpA)))}.`), 400, 'invalid_grant', /ERR_JOSE_ALG_NOT_ALLOWED|Unsecured/);
    });
    it('HS256 → invalid_grant', async () => {
      const hs = await new SignJWT(claimsOf(idpA)).setProtectedHeader({ alg: 'HS256', typ: 'oauth-id-jag+jwt', kid: 'es-1' }).sign(new TextEncoder().encode('a-shared-secret-of-32-bytes-000000'));
      await refused(await grant(hs), 400, 'invalid_grant', /ERR_JOSE_ALG_NOT_ALLOWED/);
    });
    it('an algorithm not in the entry (RS256 where ES256 only) → invalid_grant', async () =>
      refused(await grant(await idJag(idpC, { sub: 'x' }, { alg: 'RS256' })), 400, 'invalid_grant', /ERR_JOSE_ALG_NOT_ALLOWED/));
    it('aud another AS → invalid_grant', async () => refused(await grant(await idJag(idpA, { aud: 'https://other-as.example' })), 400, 'invalid_grant', /aud "https:\/\/other-as\.example" is not this issuer/));
    it('aud an array of two other → invalid_grant', async () => refused(await grant(await idJag(idpA, { aud: ['https://a.example', 'https://b.example'] })), 400, 'invalid_grant', /is not this issuer alone/));
    it('aud ours plus another → invalid_grant', async () => refused(await grant(await idJag(idpA, { aud: [as.issuer, 'https://b.example'] })), 400, 'invalid_grant', /is not this issuer alone/));
    it('aud with a trailing slash → invalid_grant', async () => refused(await grant(await idJag(idpA, { aud: `${as.issuer}/` })), 400, 'invalid_grant', /is not this issuer alone/));
    it('expired → invalid_grant', async () => refused(await grant(await idJag(idpA, { iat: now() - 400, exp: now() - 60 })), 400, 'invalid_grant', /expired at/));
    it('iat in the future → invalid_grant', async () => refused(await grant(await idJag(idpA, { iat: now() + 120, exp: now() + 300 })), 400, 'invalid_grant', /is in the future/));
    it('nbf in the future → invalid_grant', async () => refused(await grant(await idJag(idpA, { nbf: now() + 120 })), 400, 'invalid_grant', /not valid before/));
    it('lifetime 3600 s > 600 s → invalid_grant', async () => refused(await grant(await idJag(idpA, { exp: now() + 3600 })), 400, 'invalid_grant', /lives 3600 s, longer than 600 s/));
    for (const claim of ['sub', 'jti', 'client_id', 'exp', 'iat']) {
      it(`claim ${claim} missing → invalid_grant`, async () => refused(await grant(await without(idpA, claim)), 400, 'invalid_grant', new RegExp(`claim ${claim} is missing`)));
    }
    it('claim aud missing → invalid_grant', async () => refused(await grant(await without(idpA, 'aud')), 400, 'invalid_grant', /claim aud is missing/));
    it('claim iss missing → invalid_grant (not trusted)', async () => refused(await grant(await without(idpA, 'iss')), 400, 'invalid_grant', /issuer undefined is not a trusted IdP/));
    it('client_id another client than the authenticated one → invalid_grant', async () =>
      refused(await grant(await idJag(idpA, { client_id: 'other-client' })), 400, 'invalid_grant', /client_id other-client is not the authenticated client mcp-client/));
    it('a client outside the entry clients → 400 unauthorized_client', async () =>
      refused(await grant(await idJag(idpB, { client_id: 'other-client' }), auth.other), 400, 'unauthorized_client', /other-client is not in trusted_idps\[.*\]\.clients/));
    it('a public client → 400 unauthorized_client', async () =>
      refused(await grant(await idJag(idpA, { client_id: 'public-client' }), {}, { client_id: 'public-client' }), 400, 'unauthorized_client', /public client presented an ID-JAG/));
    it('a client not registered for jwt-bearer → 400 unauthorized_client', async () =>
      refused(await grant(await idJag(idpA, { client_id: 'plain-client' }), auth.plain), 400, 'unauthorized_client', /not registered for urn:ietf:params:oauth:grant-type:jwt-bearer/, 'token.refused'));
    it('no client authentication → 401 invalid_client', async () => {
      const res = await grant(await idJag(idpA), {});
      assert.equal(res.status, 401, res.text);
      assert.equal(res.json.error, 'invalid_client');
      const event = await lastEvent('client.auth_failed');
      assert.equal(event?.error, 'invalid_client');
      assert.match(String(event?.reason), /client authentication is required/);
    });
    it('a wrong client secret → 401 invalid_client', async () => {
      const res = await grant(await idJag(idpA), { authorization: basic('mcp-client', 'wrong') });
      assert.equal(res.status, 401, res.text);
      assert.equal(res.json.error, 'invalid_client');
      const event = await lastEvent('client.auth_failed');
      assert.equal(event?.clientId, 'mcp-client');
      assert.match(String(event?.reason), /secret/);
    });
    it('replayed jti → invalid_grant (first use succeeds)', async () => {
      const assertion = await idJag(idpA);
      assert.equal((await grant(assertion)).status, 200);
      await refused(await grant(assertion), 400, 'invalid_grant', new RegExp(`jti replayed \\(sha-256 ${sha256(decodeJwt(assertion).jti as string)}\\)`));
    });
    it('the same jti from another IdP is another assertion', async () => {
      const jti = crypto.randomUUID();
      assert.equal((await grant(await idJag(idpA, { jti }))).status, 200);
      assert.equal((await grant(await idJag(idpB, { jti, sub: 'jti-twin' }))).status, 200);
    });
    it('a resource claim not served here → invalid_grant', async () =>
      refused(await grant(await idJag(idpA, { resource: 'https://elsewhere.example/mcp' })), 400, 'invalid_grant', /resource https:\/\/elsewhere\.example\/mcp is not served here/));
    it('the admin resource → invalid_grant', async () =>
      refused(await grant(await idJag(idpA, { resource: `${as.issuer}/admin`, scope: 'admin:read' })), 400, 'invalid_grant', /\/admin is not served here/));
    it('request resource not in the claim → 400 invalid_target', async () =>
      refused(await grant(await idJag(idpA), auth.mcp, { resource: API }), 400, 'invalid_target', /resource=https:\/\/api\.example\.test, ID-JAG resource/));
    it('several resources in the claim and none requested → 400 invalid_target', async () =>
      refused(await grant(await idJag(idpA, { resource: [MCP, API] })), 400, 'invalid_target', /ID-JAG resource \[/));
    it('no resource claim (require_resource) → invalid_grant', async () => refused(await grant(await idJag(idpA, { resource: undefined })), 400, 'invalid_grant', /names no resource/));
    it('requested scopes outside the ID-JAG → 400 invalid_scope', async () =>
      refused(await grant(await idJag(idpA, { scope: 'mcp:read' }), auth.mcp, { scope: 'mcp:write' }), 400, 'invalid_scope', /requested mcp:write, ID-JAG scope "mcp:read"/));
    it('an ID-JAG without scope for a resource with scopes → 400 invalid_scope', async () =>
      refused(await grant(await idJag(idpA, { scope: undefined })), 400, 'invalid_scope', /ID-JAG scope ""/));
    it('cnf.jkt and no DPoP proof → invalid_grant', async () =>
      refused(await grant(await idJag(idpA, { cnf: { jkt: 'x'.repeat(43) } })), 400, 'invalid_grant', /bound to a key \(cnf\.jkt\) and no DPoP proof/));
    it('no account and jit_users off → invalid_grant; nothing created', async () => {
      await refused(await grant(await idJag(idpA, { sub: 'stranger', email: 'stranger@example.org' })), 400, 'invalid_grant', /no local user for .* subject stranger/);
      assert.equal(await as.store.users.findByUsername('stranger@example.org'), undefined);
      assert.equal(await as.store.federation.findLink(idpA.issuer, 'stranger'), undefined);
    });
    it("the IdP's sub is not a local sub without link.local_sub → invalid_grant", async () =>
      refused(await grant(await idJag(idpA, { sub: await demoSub(), email: undefined })), 400, 'invalid_grant', /no local user/));
    it('email_verified false does not link → invalid_grant', async () =>
      refused(await grant(await idJag(idpA, { sub: 'unverified', email_verified: false })), 400, 'invalid_grant', /no local user/));
    it('a replayed assertion never creates a user', async () => {
      const assertion = await idJag(idpB, { sub: 'once', email: 'once@example.org' });
      assert.equal((await grant(assertion)).status, 200);
      const before = (await as.store.users.list()).length;
      await refused(await grant(assertion), 400, 'invalid_grant', /jti replayed/);
      assert.equal((await as.store.users.list()).length, before);
    });
  });

  describe('metadata', () => {
    it('advertises the ID-JAG grant profile and jwt-bearer, never the trusted issuers', async () => {
      const res = await fetch(`${as.issuer}/.well-known/oauth-authorization-server`);
      const text = await res.text();
      const metadata = JSON.parse(text) as Record<string, unknown>;
      assert.deepEqual(metadata.authorization_grant_profiles_supported, ['urn:ietf:params:oauth:grant-profile:id-jag']);
      assert.ok((metadata.grant_types_supported as string[]).includes(JWT_BEARER));
      for (const idp of [idpA, idpB, idpC]) assert.ok(!text.includes(idp.issuer), 'a trusted issuer is never published (ID-JAG §8.4)');
    });
  });
});

describe('ID-JAG not configured', () => {
  let as: TestAuthServer;
  before(async () => {
    process.env.IDJAG_MCP_SECRET = SECRETS.mcp;
    as = await startTestAuthServer({ clients: [{ client_id: 'mcp-client', client_secret_env: 'IDJAG_MCP_SECRET', grant_types: [JWT_BEARER] }] });
  });
  after(async () => as?.close());

  it('jwt-bearer → 400 unsupported_grant_type; metadata has neither the grant nor the profile', async () => {
    const res = await postForm(`${as.issuer}/token`, { grant_type: JWT_BEARER, assertion: 'x.y.z' }, { authorization: basic('mcp-client', SECRETS.mcp) });
    assert.equal(res.status, 400);
    assert.equal(res.json.error, 'unsupported_grant_type');
    await as.ctx.audit.flush();
    const [event] = await as.store.audit.list({ type: 'token.refused', limit: 1 });
    assert.equal(event?.error, 'unsupported_grant_type');
    const metadata = (await (await fetch(`${as.issuer}/.well-known/oauth-authorization-server`)).json()) as Record<string, unknown>;
    assert.equal(metadata.authorization_grant_profiles_supported, undefined);
    assert.ok(!(metadata.grant_types_supported as string[]).includes(JWT_BEARER));
  });
});

describe('ID-JAG jti replay across two instances (Redis)', needsRedis(), () => {
  let idp: FakeIdp;
  let first: TestAuthServer;
  let second: TestAuthServer;
  before(async () => {
    process.env.IDJAG_MCP_SECRET = SECRETS.mcp;
    idp = await startFakeIdp();
    const config = {
      clients: [{ client_id: 'mcp-client', client_secret_env: 'IDJAG_MCP_SECRET', grant_types: [JWT_BEARER] as never }],
      trusted_idps: [{ issuer: idp.issuer, allow_loopback: true, link: { claims: ['email' as const], email_domains: ['example.com'], local_users: true } }],
    };
    first = await startTestAuthServer(config);
    // The second instance serves the same issuer (behind one load balancer), with its own process state.
    second = await startTestAuthServer({ ...config, issuer: first.issuer });
  });
  after(async () => {
    await first?.close();
    await second?.close();
    await idp?.close();
  });

  it('an ID-JAG used at one instance is refused at the other', async () => {
    const assertion = await idp.sign({
      iss: idp.issuer, sub: 'x', aud: first.issuer, client_id: 'mcp-client', jti: crypto.randomUUID(), iat: Math.floor(Date.now() / 1000), exp: Math.floor(Date.now() / 1000) + 120,
      resource: MCP, scope: 'mcp:read', email: 'demo@example.com', email_verified: true,
    });
    const form = { grant_type: JWT_BEARER, assertion };
    const headers = { authorization: basic('mcp-client', SECRETS.mcp) };
    const secondUrl = `http://127.0.0.1:${second.ctx.config.listen.port}/token`;
    assert.equal((await postForm(`${first.issuer}/token`, form, headers)).status, 200);
    const res = await postForm(secondUrl, form, headers);
    assert.equal(res.status, 400, res.text);
    assert.equal(res.json.error, 'invalid_grant');
    await second.ctx.audit.flush();
    const [event] = await second.store.audit.list({ type: 'token.jwt_bearer_refused', limit: 1 });
    assert.match(String(event?.reason), /jti replayed/);
  });
});

describe('ID-JAG accounts on PostgreSQL', needsPostgres(), () => {
  let idp: FakeIdp;
  let as: TestAuthServer;
  const run = crypto.randomUUID().slice(0, 8);
  before(async () => {
    process.env.IDJAG_MCP_SECRET = SECRETS.mcp;
    idp = await startFakeIdp();
    as = await startTestAuthServer({
      storage: { driver: 'postgres' },
      clients: [{ client_id: 'mcp-client', client_secret_env: 'IDJAG_MCP_SECRET', grant_types: [JWT_BEARER] }],
      trusted_idps: [{ issuer: idp.issuer, allow_loopback: true, jit_users: true }],
    });
  });
  after(async () => {
    await as?.close();
    await idp?.close();
  });
  const grant = async (sub: string, email: string) => {
    const now = Math.floor(Date.now() / 1000);
    const assertion = await idp.sign({ iss: idp.issuer, sub, aud: as.issuer, client_id: 'mcp-client', jti: crypto.randomUUID(), iat: now, exp: now + 120, resource: MCP, scope: 'mcp:read', email });
    return postForm(`${as.issuer}/token`, { grant_type: JWT_BEARER, assertion }, { authorization: basic('mcp-client', SECRETS.mcp) });
  };

  it('concurrent first uses create one user; a later use of the same email from another subject is not linked to it (default link: sub only)', async () => {
    const email = `pg-${run}@example.org`;
    const results = await Promise.all(Array.from({ length: 5 }, () => grant(`pg-${run}`, email)));
    for (const res of results) assert.equal(res.status, 200, res.text);
    const users = await as.store.users.findByEmail(email);
    assert.equal(users.length, 1);
    assert.deepEqual(new Set(results.map((r) => decodeJwt(r.json.access_token as string).sub)), new Set([users[0]!.sub]));
    // Review 17 F1: an email is no key to another subject's account; that subject gets a user of its own.
    const other = await grant(`pg-${run}-second-subject`, email.toUpperCase());
    assert.equal(other.status, 200, other.text);
    const otherSub = decodeJwt(other.json.access_token as string).sub;
    assert.notEqual(otherSub, users[0]!.sub);
    assert.equal((await as.store.federation.findLink(idp.issuer, `pg-${run}-second-subject`))?.sub, otherSub);
    assert.equal((await as.store.users.findBySub(otherSub as string))?.username, `${new URL(idp.issuer).host}:pg-${run}-second-subject`);
  });
});

describe('ID-JAG with DPoP (RFC 9449; ID-JAG §8.6.1.2)', () => {
  const BOUND = 'https://bound.example.test/mcp';
  let idp: FakeIdp;
  let as: TestAuthServer;
  let tokenUrl: string;
  before(async () => {
    process.env.IDJAG_MCP_SECRET = SECRETS.mcp;
    idp = await startFakeIdp();
    as = await startTestAuthServer({
      dpop: { enabled: true },
      clients: [{ client_id: 'mcp-client', client_secret_env: 'IDJAG_MCP_SECRET', grant_types: [JWT_BEARER] }],
      resources: [
        { id: MCP, name: 'MCP', scopes: [{ name: 'mcp:read' }] },
        { id: BOUND, name: 'Bound only', scopes: [{ name: 'mcp:read' }], require_dpop: true },
      ],
      trusted_idps: [{ issuer: idp.issuer, allow_loopback: true, link: { claims: ['email'], email_domains: ['example.com'], local_users: true } }],
    });
    tokenUrl = `${as.issuer}/token`;
  });
  after(async () => {
    await as?.close();
    await idp?.close();
  });
  const idJag = (extra: Record<string, unknown> = {}) => {
    const now = Math.floor(Date.now() / 1000);
    return idp.sign({ iss: idp.issuer, sub: 'dpop-user', aud: as.issuer, client_id: 'mcp-client', jti: crypto.randomUUID(), iat: now, exp: now + 120, resource: MCP, scope: 'mcp:read', email: 'demo@example.com', email_verified: true, ...extra });
  };
  const grant = async (assertion: string, key?: DpopKey, extra: Record<string, string> = {}) =>
    postForm(tokenUrl, { grant_type: JWT_BEARER, assertion, ...extra }, { authorization: basic('mcp-client', SECRETS.mcp), ...(key ? { dpop: await createDpopProof(key, { htm: 'POST', htu: tokenUrl }) } : {}) });
  const lastRefusal = async () => {
    await as.ctx.audit.flush();
    return (await as.store.audit.list({ type: 'token.jwt_bearer_refused', limit: 1 }))[0];
  };

  it('an unbound ID-JAG with a proof: the access token is bound to the proof key (token_type DPoP)', async () => {
    const key = await generateDpopKey();
    const res = await grant(await idJag(), key);
    assert.equal(res.status, 200, res.text);
    assert.equal(res.json.token_type, 'DPoP');
    assert.deepEqual(decodeJwt(res.json.access_token as string).cnf, { jkt: await jwkThumbprint(key.publicJwk) });
  });

  it('an ID-JAG bound to a key with a proof of that key: bound to it', async () => {
    const key = await generateDpopKey();
    const jkt = await jwkThumbprint(key.publicJwk);
    const res = await grant(await idJag({ cnf: { jkt } }), key);
    assert.equal(res.status, 200, res.text);
    assert.equal(res.json.token_type, 'DPoP');
    assert.deepEqual(decodeJwt(res.json.access_token as string).cnf, { jkt });
  });

  it('an ID-JAG bound to a key with a proof of another key → 400 invalid_grant', async () => {
    const [key, other] = [await generateDpopKey(), await generateDpopKey()];
    const res = await grant(await idJag({ cnf: { jkt: await jwkThumbprint(key.publicJwk) } }), other);
    assert.equal(res.status, 400, res.text);
    assert.equal(res.json.error, 'invalid_grant');
    assert.match(String((await lastRefusal())?.reason), /the DPoP proof key is not the ID-JAG cnf\.jkt/);
  });

  it('an ID-JAG bound to a key, no proof → 400 invalid_grant', async () => {
    const key = await generateDpopKey();
    const res = await grant(await idJag({ cnf: { jkt: await jwkThumbprint(key.publicJwk) } }));
    assert.equal(res.status, 400, res.text);
    assert.equal(res.json.error, 'invalid_grant');
    assert.match(String((await lastRefusal())?.reason), /no DPoP proof was sent/);
  });

  it('a require_dpop resource without a proof → 400 invalid_request, and the ID-JAG is not spent', async () => {
    const assertion = await idJag({ resource: BOUND });
    const res = await grant(assertion);
    assert.equal(res.status, 400, res.text);
    assert.equal(res.json.error, 'invalid_request');
    assert.match(String((await lastRefusal())?.reason), /has require_dpop; no DPoP proof/);
    const retry = await grant(assertion, await generateDpopKey());
    assert.equal(retry.status, 200, retry.text);
    assert.equal(retry.json.token_type, 'DPoP');
  });
});
