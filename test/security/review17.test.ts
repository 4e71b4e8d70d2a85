import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { basic, decodeJwt, DEMO_PASSWORD_HASH, pkcePair, postForm, startTestAuthServer, type TestAuthServer } from '../helpers/auth-server.ts';
import { startFakeIdp, type FakeIdp } from '../helpers/id-jag.ts';
import { FormBrowser } from '../helpers/browser-driver.ts';
import { adminAccess } from '../helpers/admin.ts';
import { createDpopProof, generateDpopKey, jwkThumbprint, type DpopKey } from '../../src/core/dpop.ts';
import { CacheFullError, memoryCache } from '../../src/store/memory-cache.ts';

/**
 * Regression tests of the issue-17 security review (REVIEW-17: F1, F2, F3, F6, F8): each proof of
 * concept of the review, turned around to assert the safe behaviour — the exact status, the OAuth
 * error code, and the reason in the audit log.
 */
const JWT_BEARER = 'urn:ietf:params:oauth:grant-type:jwt-bearer';
const TOKEN_EXCHANGE = 'urn:ietf:params:oauth:grant-type:token-exchange';
const MCP = 'https://mcp.example.test/mcp';
const SECRET = 'review17-mcp-client-secret-0123456789abcdef';
const now = () => Math.floor(Date.now() / 1000);
const sha256 = (value: string) => createHash('sha256').update(value).digest('base64url');

async function lastEvent(as: TestAuthServer, type: string) {
  await as.ctx.audit.flush();
  const [event] = await as.store.audit.list({ type, limit: 1 });
  return event;
}

/** Asserts a refusal: status, error, and the audit event of `type` with that error and a reason matching `reason`. */
async function refused(as: TestAuthServer, res: { status: number; json: Record<string, unknown>; text: string }, status: number, error: string, type: string, reason: RegExp) {
  assert.equal(res.status, status, res.text);
  assert.equal(res.json.error, error, res.text);
  assert.equal(res.json.access_token, undefined);
  const event = await lastEvent(as, type);
  assert.equal(event?.error, error);
  assert.match(String(event?.reason), reason);
}

/** Starts an AS without REDIS_URL: the embedded memory cache (F2 is about it). */
async function withoutRedis<T>(start: () => Promise<T>): Promise<T> {
  const saved = process.env.REDIS_URL;
  delete process.env.REDIS_URL;
  try {
    return await start();
  } finally {
    if (saved !== undefined) process.env.REDIS_URL = saved;
  }
}

describe('review 17 F1: no account takeover through email linking', () => {
  let as: TestAuthServer;
  let tenantA: FakeIdp; // JIT users, links by email for tenant-a.example (not local users)
  let tenantB: FakeIdp; // defaults: link by the remembered link only
  let corp: FakeIdp; // links example.com users by email, local users included
  let corp2: FakeIdp; // the same rule: a second IdP claiming example.com
  let strict: FakeIdp; // example.com by email, local users not allowed
  const auth = { authorization: basic('mcp-client', SECRET) };
  before(async () => {
    process.env.REVIEW17_SECRET = SECRET;
    const start = () => startFakeIdp({ discovery: 'none' });
    [tenantA, tenantB, corp, corp2, strict] = await Promise.all([start(), start(), start(), start(), start()]);
    const jwks = (idp: FakeIdp) => ({ issuer: idp.issuer, jwks_uri: `${idp.issuer}/jwks`, allow_loopback: true });
    as = await startTestAuthServer({
      users: [
        { username: 'demo', name: 'Demo User', email: 'demo@example.com', password_hash: DEMO_PASSWORD_HASH },
        { username: 'boss', email: 'boss@example.com', password_hash: DEMO_PASSWORD_HASH, roles: ['admin:read'] },
      ],
      clients: [{ client_id: 'mcp-client', client_secret_env: 'REVIEW17_SECRET', grant_types: [JWT_BEARER], scope: 'mcp:read mcp:write' }],
      trusted_idps: [
        { ...jwks(tenantA), jit_users: true, link: { claims: ['sub', 'email'], email_domains: ['tenant-a.example'] } },
        jwks(tenantB),
        { ...jwks(corp), link: { claims: ['email'], email_domains: ['example.com'], local_users: true } },
        { ...jwks(corp2), link: { claims: ['email'], email_domains: ['example.com'], local_users: true } },
        { ...jwks(strict), link: { claims: ['email'], email_domains: ['example.com'] } },
      ],
    });
  });
  after(async () => {
    await as?.close();
    await Promise.all([tenantA, tenantB, corp, corp2, strict].map((i) => i?.close()));
  });
  const idJag = (idp: FakeIdp, claims: Record<string, unknown>) =>
    idp.sign({ iss: idp.issuer, aud: as.issuer, client_id: 'mcp-client', jti: crypto.randomUUID(), iat: now(), exp: now() + 300, resource: MCP, scope: 'mcp:read', ...claims });
  const grant = async (idp: FakeIdp, claims: Record<string, unknown>) => postForm(`${as.issuer}/token`, { grant_type: JWT_BEARER, assertion: await idJag(idp, claims) }, auth);
  const subOf = async (username: string) => (await as.store.users.findByUsername(username))!.sub;

  it("tenant B asserting the email of tenant A's JIT user → 400 invalid_grant (not a link rule of B); no link written", async () => {
    const victim = await grant(tenantA, { sub: 'alice-at-a', email: 'alice@tenant-a.example', email_verified: true });
    assert.equal(victim.status, 200, victim.text);
    const victimSub = decodeJwt(victim.json.access_token as string).sub;
    assert.equal((await as.store.users.findBySub(victimSub as string))?.username, `${new URL(tenantA.issuer).host}:alice@tenant-a.example`, 'JIT usernames are per issuer');
    await refused(as, await grant(tenantB, { sub: 'mallory-at-b', email: 'alice@tenant-a.example', email_verified: true }), 400, 'invalid_grant', 'token.jwt_bearer_refused', /link\.claims has no 'email'/);
    assert.equal(await as.store.federation.findLink(tenantB.issuer, 'mallory-at-b'), undefined);
    // Later, without an email: still nobody.
    await refused(as, await grant(tenantB, { sub: 'mallory-at-b' }), 400, 'invalid_grant', 'token.jwt_bearer_refused', /no local user for .* subject mallory-at-b/);
  });

  it('tenant B asserting a configured user (demo) → 400 invalid_grant; no link', async () => {
    await refused(as, await grant(tenantB, { sub: 'mallory-2', email: 'DEMO@example.com', email_verified: true }), 400, 'invalid_grant', 'token.jwt_bearer_refused', /link\.claims has no 'email'/);
    assert.equal(await as.store.federation.findLink(tenantB.issuer, 'mallory-2'), undefined);
  });

  it("an IdP with email linking cannot reach another IdP's JIT user with the same address: its own user is created", async () => {
    const alice = await subOf(`${new URL(tenantA.issuer).host}:alice@tenant-a.example`);
    const res = await grant(tenantA, { sub: 'second-alice', email: 'alice@tenant-a.example', email_verified: true });
    assert.equal(res.status, 200, res.text);
    assert.notEqual(decodeJwt(res.json.access_token as string).sub, alice);
    assert.equal((await lastEvent(as, 'federation.user_created'))?.data?.idp_sub, 'second-alice');
  });

  it('no email_verified → not linked: 400 invalid_grant, the reason names the rule', async () => {
    await refused(as, await grant(corp, { sub: 'unverified', email: 'demo@example.com' }), 400, 'invalid_grant', 'token.jwt_bearer_refused', /email_verified is null, not true/);
    await refused(as, await grant(corp, { sub: 'unverified-2', email: 'demo@example.com', email_verified: 'true' }), 400, 'invalid_grant', 'token.jwt_bearer_refused', /email_verified is "true", not true/);
    assert.equal(await as.store.federation.findLink(corp.issuer, 'unverified'), undefined);
  });

  it("an address outside the IdP's email_domains → not linked", async () =>
    refused(as, await grant(corp, { sub: 'outsider', email: 'alice@tenant-a.example', email_verified: true }), 400, 'invalid_grant', 'token.jwt_bearer_refused', /domain tenant-a\.example is not in link\.email_domains/));

  it('local users only with link.local_users; an admin-role user neither', async () => {
    await refused(as, await grant(strict, { sub: 'd', email: 'demo@example.com', email_verified: true }), 400, 'invalid_grant', 'token.jwt_bearer_refused', /user demo is a config user \(link\.local_users off\)/);
    await refused(as, await grant(strict, { sub: 'b', email: 'boss@example.com', email_verified: true }), 400, 'invalid_grant', 'token.jwt_bearer_refused', /user boss has admin roles/);
    assert.equal(await as.store.federation.findLink(strict.issuer, 'd'), undefined);
  });

  it('with every rule met the link is made; a user linked from one IdP is never linked from another by email', async () => {
    const linked = await grant(corp, { sub: 'demo-at-corp', email: 'demo@example.com', email_verified: true });
    assert.equal(linked.status, 200, linked.text);
    assert.equal(decodeJwt(linked.json.access_token as string).sub, await subOf('demo'));
    assert.equal((await lastEvent(as, 'federation.user_linked'))?.data?.by, 'email');
    await refused(as, await grant(corp2, { sub: 'demo-at-corp2', email: 'demo@example.com', email_verified: true }), 400, 'invalid_grant', 'token.jwt_bearer_refused', /user demo is linked from another issuer/);
    assert.equal(await as.store.federation.findLink(corp2.issuer, 'demo-at-corp2'), undefined);
  });

  it("configuration: 'email' in link.claims without link.email_domains is refused at start", async () => {
    await assert.rejects(startTestAuthServer({ trusted_idps: [{ issuer: 'https://idp.example.test', jwks_uri: 'https://idp.example.test/jwks', link: { claims: ['sub', 'email'] } }] }), /email_domains/);
  });
});

describe('review 17 F2: single-use markers are never evicted (memory cache, no Redis)', () => {
  let as: TestAuthServer;
  let idp: FakeIdp;
  const auth = { authorization: basic('mcp-client', SECRET) };
  before(async () => {
    process.env.REVIEW17_SECRET = SECRET;
    idp = await startFakeIdp({ discovery: 'none' });
    as = await withoutRedis(() =>
      startTestAuthServer({
        dpop: { enabled: true },
        clients: [
          { client_id: 'mcp-client', client_secret_env: 'REVIEW17_SECRET', grant_types: [JWT_BEARER, 'client_credentials'], scope: 'mcp:read mcp:write' },
          { client_id: 'spa', token_endpoint_auth_method: 'none', grant_types: ['authorization_code', 'refresh_token'], redirect_uris: ['http://127.0.0.1/cb'] },
        ],
        trusted_idps: [{ issuer: idp.issuer, jwks_uri: `${idp.issuer}/jwks`, allow_loopback: true, jit_users: true }],
      }),
    );
  });
  after(async () => {
    await as?.close();
    await idp?.close();
  });
  const tokenUrl = () => `${as.issuer}/token`;
  const idJag = () => idp.sign({ iss: idp.issuer, aud: as.issuer, client_id: 'mcp-client', sub: 'someone', jti: crypto.randomUUID(), iat: now(), exp: now() + 300, resource: MCP, scope: 'mcp:read' });
  const replayKey = async (key: DpopKey, jti: string) => `dpop:${await jwkThumbprint(key.publicJwk)}:${sha256(jti)}`;

  it('the memory cache, full of live entries, refuses a new key (CacheFullError) and forgets none; a known key may still be rewritten', async () => {
    const cache = memoryCache({ maxEntries: 3 });
    try {
      for (const key of ['a', 'b', 'c']) assert.equal(await cache.add(key, 1, 600), true);
      await assert.rejects(cache.add('d', 1, 600), CacheFullError);
      await assert.rejects(cache.set('d', 1, 600), CacheFullError);
      for (const key of ['a', 'b', 'c']) assert.equal(await cache.add(key, 1, 600), false, `${key} is still spent`);
      await cache.set('a', 2, 600);
      assert.equal(await cache.get('a'), 2);
      await cache.delete('b');
      assert.equal(await cache.add('d', 1, 600), true, 'room again once an entry is gone');
    } finally {
      await cache.close();
    }
  });

  it("a DPoP proof at /token that gets no token leaves nothing in the replay store (a public client's made-up refresh token)", async () => {
    const key = await generateDpopKey('ES256');
    const jti = crypto.randomUUID();
    const proof = await createDpopProof(key, { htm: 'POST', htu: tokenUrl(), jti });
    const res = await postForm(tokenUrl(), { grant_type: 'refresh_token', client_id: 'spa', refresh_token: 'made-up' }, { dpop: proof });
    await refused(as, res, 400, 'invalid_grant', 'token.refused', /refresh/i);
    assert.equal(await as.ctx.cache.get(await replayKey(key, jti)), undefined, 'no entry for a request that got nothing');
  });

  it('a proof that got a token is spent: its replay → 400 invalid_dpop_proof, audited', async () => {
    const key = await generateDpopKey('ES256');
    const jti = crypto.randomUUID();
    const proof = await createDpopProof(key, { htm: 'POST', htu: tokenUrl(), jti });
    const first = await postForm(tokenUrl(), { grant_type: 'client_credentials', resource: MCP, scope: 'mcp:read' }, { ...auth, dpop: proof });
    assert.equal(first.status, 200, first.text);
    assert.equal(first.json.token_type, 'DPoP');
    assert.equal(await as.ctx.cache.get(await replayKey(key, jti)), 1);
    await refused(as, await postForm(tokenUrl(), { grant_type: 'client_credentials', resource: MCP, scope: 'mcp:read' }, { ...auth, dpop: proof }), 400, 'invalid_dpop_proof', 'token.dpop_refused', /jti was used before/);
  });

  it('a full cache keeps every spent jti and refuses new ones: 503 temporarily_unavailable, audited (cache.full); a replay stays refused', async () => {
    const spent = await idJag();
    assert.equal((await postForm(tokenUrl(), { grant_type: JWT_BEARER, assertion: spent }, auth)).status, 200);
    // Fill the cache to its bound (100,000 entries), as a flood of requests would.
    let full = false;
    for (let i = 0; i < 200_000 && !full; i++) {
      await as.ctx.cache.add(`filler:${i}`, 1, 601).catch(() => {
        full = true;
      });
    }
    assert.ok(full, 'the memory cache refuses beyond its bound');
    // The spent ID-JAG was not forgotten: its replay is refused as a replay.
    await refused(as, await postForm(tokenUrl(), { grant_type: JWT_BEARER, assertion: spent }, auth), 400, 'invalid_grant', 'token.jwt_bearer_refused', /jti replayed/);
    // A new single-use marker cannot be stored: the request is refused, never let through.
    await refused(as, await postForm(tokenUrl(), { grant_type: JWT_BEARER, assertion: await idJag() }, auth), 503, 'temporarily_unavailable', 'token.jwt_bearer_refused', /in-memory cache is full/);
    const event = await lastEvent(as, 'cache.full');
    assert.equal(event?.error, 'temporarily_unavailable');
    assert.match(String(event?.reason), /in-memory cache is full \(100000 live entries\).*refused a idjag entry/);
    // A DPoP proof's jti neither: 503, no token.
    const key = await generateDpopKey('ES256');
    const res = await postForm(tokenUrl(), { grant_type: 'client_credentials', resource: MCP, scope: 'mcp:read' }, { ...auth, dpop: await createDpopProof(key, { htm: 'POST', htu: tokenUrl() }) });
    assert.equal(res.status, 503, res.text);
    assert.equal(res.json.error, 'temporarily_unavailable');
    assert.equal(res.json.access_token, undefined);
    assert.match(String((await lastEvent(as, 'cache.full'))?.reason), /refused a dpop entry/);
  });
});

describe("review 17 F3: the AS's own resources refuse a DPoP-bound token without its proof", () => {
  let as: TestAuthServer;
  const REDIRECT = 'http://127.0.0.1:4000/callback';
  let key: DpopKey;
  let userToken: string; // demo's, for /userinfo, bound to key
  let adminToken: string; // demo's (admin:read), for the admin resource, bound to key
  before(async () => {
    as = await startTestAuthServer({
      dpop: { enabled: true },
      users: [{ username: 'demo', name: 'Demo User', email: 'demo@example.com', password_hash: DEMO_PASSWORD_HASH, roles: ['admin:read'] }],
      clients: [{ client_id: 'pub', token_endpoint_auth_method: 'none', redirect_uris: [REDIRECT], grant_types: ['authorization_code', 'refresh_token'] }],
    });
    key = await generateDpopKey('ES256');
    const boundToken = async (resource: string, scope: string) => {
      const { verifier, challenge } = pkcePair();
      const query = new URLSearchParams({ response_type: 'code', client_id: 'pub', redirect_uri: REDIRECT, code_challenge: challenge, code_challenge_method: 'S256', resource, scope, state: 's', dpop_jkt: await jwkThumbprint(key.publicJwk) });
      const back = await new FormBrowser(as.issuer).authorize(`${as.issuer}/authorize?${query}`);
      const tokenUrl = `${as.issuer}/token`;
      const res = await postForm(tokenUrl, { grant_type: 'authorization_code', client_id: 'pub', code: back.searchParams.get('code')!, code_verifier: verifier, redirect_uri: REDIRECT }, { dpop: await createDpopProof(key, { htm: 'POST', htu: tokenUrl }) });
      assert.equal(res.json.token_type, 'DPoP', res.text);
      return res.json.access_token as string;
    };
    userToken = await boundToken(as.issuer, 'openid profile email');
    adminToken = await boundToken(`${as.issuer}/admin`, 'admin:read');
  });
  after(async () => as?.close());

  const call = async (method: string, path: string, token: string, options: { scheme?: 'Bearer' | 'DPoP'; proofKey?: DpopKey; proof?: string; body?: unknown } = {}) => {
    const url = `${as.issuer}${path}`;
    const proof = options.proof ?? (options.proofKey ? await createDpopProof(options.proofKey, { htm: method, htu: url, accessToken: token }) : undefined);
    const res = await fetch(url, {
      method,
      headers: {
        authorization: `${options.scheme ?? 'Bearer'} ${token}`,
        ...(proof ? { dpop: proof } : {}),
        ...(options.body !== undefined ? { 'content-type': 'application/json', accept: 'application/json, text/event-stream' } : {}),
      },
      body: options.body === undefined ? undefined : JSON.stringify(options.body),
    });
    const text = await res.text();
    let json: Record<string, unknown> = {};
    try {
      json = JSON.parse(text) as Record<string, unknown>;
    } catch {
      // not JSON
    }
    return { status: res.status, json, text, challenge: res.headers.get('www-authenticate') ?? '' };
  };
  const initialize = { jsonrpc: '2.0', id: 1, method: 'initialize', params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 'review17', version: '1' } } };
  const targets = [
    { name: '/userinfo', method: 'GET', path: '/userinfo', token: () => userToken, body: undefined, audit: 'userinfo.refused' },
    { name: 'the admin API', method: 'GET', path: '/admin/api/v1/users', token: () => adminToken, body: undefined, audit: 'admin.refused' },
    { name: 'the admin MCP server', method: 'POST', path: '/admin/mcp', token: () => adminToken, body: initialize, audit: 'admin.refused' },
  ];
  for (const t of targets) {
    describe(t.name, () => {
      it('a bound token as Bearer → 401 invalid_token with a DPoP challenge; audited dpop_downgrade', async () => {
        const res = await call(t.method, t.path, t.token(), { body: t.body });
        await refused(as, res, 401, 'invalid_token', t.audit, /dpop_downgrade/);
        assert.match(res.challenge, /^DPoP algs="[^"]+", error="invalid_token"/);
      });
      it('the DPoP scheme with a proof of the bound key → 200', async () => {
        const res = await call(t.method, t.path, t.token(), { scheme: 'DPoP', proofKey: key, body: t.body });
        assert.equal(res.status, 200, res.text);
      });
      it('a proof of another key → 401 invalid_token; audited dpop_binding_mismatch', async () => {
        const res = await call(t.method, t.path, t.token(), { scheme: 'DPoP', proofKey: await generateDpopKey('ES256'), body: t.body });
        await refused(as, res, 401, 'invalid_token', t.audit, /dpop_binding_mismatch/);
      });
      it('no proof, or a replayed one → 401 invalid_dpop_proof; audited', async () => {
        await refused(as, await call(t.method, t.path, t.token(), { scheme: 'DPoP', body: t.body }), 401, 'invalid_dpop_proof', t.audit, /no DPoP proof/);
        const proof = await createDpopProof(key, { htm: t.method, htu: `${as.issuer}${t.path}`, accessToken: t.token() });
        assert.equal((await call(t.method, t.path, t.token(), { scheme: 'DPoP', proof, body: t.body })).status, 200);
        await refused(as, await call(t.method, t.path, t.token(), { scheme: 'DPoP', proof, body: t.body }), 401, 'invalid_dpop_proof', t.audit, /dpop_replay/);
      });
      it("a proof for another URL (htu) → 401 invalid_dpop_proof", async () => {
        const proof = await createDpopProof(key, { htm: t.method, htu: `${as.issuer}/elsewhere`, accessToken: t.token() });
        await refused(as, await call(t.method, t.path, t.token(), { scheme: 'DPoP', proof, body: t.body }), 401, 'invalid_dpop_proof', t.audit, /htu/);
      });
    });
  }

  it('the transactions API (the agent polling its transaction): a bound token as Bearer → 401 invalid_token, audited dpop_downgrade; with its proof it gets through to the lookup', async () => {
    const path = '/transactions/no-such-transaction';
    const bearer = await call('GET', path, userToken);
    await refused(as, bearer, 401, 'invalid_token', 'transaction.refused', /dpop_downgrade/);
    assert.match(bearer.challenge, /^DPoP algs="[^"]+", error="invalid_token"/);
    const proven = await call('GET', path, userToken, { scheme: 'DPoP', proofKey: key });
    assert.equal(proven.status, 404, proven.text);
  });

  it("the admin resource's metadata names the DPoP algorithms (RFC 9728, RFC 9449 §5.1)", async () => {
    const prm = (await (await fetch(`${as.issuer}/.well-known/oauth-protected-resource/admin`)).json()) as Record<string, unknown>;
    assert.ok(Array.isArray(prm.dpop_signing_alg_values_supported) && (prm.dpop_signing_alg_values_supported as string[]).includes('ES256'), JSON.stringify(prm));
  });
});

describe('review 17 F6: an ID token no longer becomes an ID-JAG once the sign-in is revoked (password change)', () => {
  let as: TestAuthServer;
  const CB = 'http://127.0.0.1:7799/cb';
  const AGENT_SECRET = 'review17-agent-secret-0123456789abcdefgh';
  before(async () => {
    process.env.REVIEW17_AGENT_SECRET = AGENT_SECRET;
    as = await startTestAuthServer({
      clients: [{ client_id: 'agent-1', client_secret_env: 'REVIEW17_AGENT_SECRET', redirect_uris: [CB], first_party: true, grant_types: ['authorization_code', TOKEN_EXCHANGE] }],
      id_jag: { audiences: [{ audience: 'https://mcp-as.example.test', resources: [MCP], clients: ['agent-1'], scopes: ['mcp:read'] }] },
    });
  });
  after(async () => as?.close());

  it('sign in, keep the ID token, change the password through the admin API → the exchange is 400 invalid_request, audited', async () => {
    const admin = await adminAccess({ issuer: as.issuer, dataDir: as.dataDir });
    const created = await admin.api('POST', '/users', { username: 'frank', password: 'frank-first-password-1' });
    assert.equal(created.status, 201, created.text);
    const { verifier, challenge } = pkcePair();
    const url = `${as.issuer}/authorize?${new URLSearchParams({ response_type: 'code', client_id: 'agent-1', redirect_uri: CB, code_challenge: challenge, code_challenge_method: 'S256', resource: as.issuer, scope: 'openid', state: 's' })}`;
    const back = await new FormBrowser(as.issuer).authorize(url, { username: 'frank', password: 'frank-first-password-1' });
    const agent = { authorization: basic('agent-1', AGENT_SECRET) };
    const signIn = await postForm(`${as.issuer}/token`, { grant_type: 'authorization_code', code: back.searchParams.get('code')!, code_verifier: verifier, redirect_uri: CB }, agent);
    assert.equal(signIn.status, 200, signIn.text);
    const idToken = signIn.json.id_token as string;
    const exchange = () =>
      postForm(`${as.issuer}/token`, { grant_type: TOKEN_EXCHANGE, requested_token_type: 'urn:ietf:params:oauth:token-type:id-jag', subject_token: idToken, subject_token_type: 'urn:ietf:params:oauth:token-type:id_token', audience: 'https://mcp-as.example.test', resource: MCP }, agent);
    assert.equal((await exchange()).status, 200);
    const changed = await admin.api('PATCH', '/users/frank', { password: 'frank-second-password-2' });
    assert.equal(changed.status, 200, changed.text);
    await refused(as, await exchange(), 400, 'invalid_request', 'token.exchange_refused', /no standing grant of .* to agent-1/);
    // A new sign-in does not revive the older ID token.
    const { verifier: v2, challenge: c2 } = pkcePair();
    const url2 = `${as.issuer}/authorize?${new URLSearchParams({ response_type: 'code', client_id: 'agent-1', redirect_uri: CB, code_challenge: c2, code_challenge_method: 'S256', resource: as.issuer, scope: 'openid', state: 's' })}`;
    const back2 = await new FormBrowser(as.issuer).authorize(url2, { username: 'frank', password: 'frank-second-password-2' });
    assert.equal((await postForm(`${as.issuer}/token`, { grant_type: 'authorization_code', code: back2.searchParams.get('code')!, code_verifier: v2, redirect_uri: CB }, agent)).status, 200);
    await refused(as, await exchange(), 400, 'invalid_request', 'token.exchange_refused', /no standing grant/);
  });
});

describe('review 17 F8: the workload grant does not tell an untrusted issuer from an invalid assertion', () => {
  let as: TestAuthServer;
  let platform: FakeIdp;
  let stranger: FakeIdp;
  before(async () => {
    [platform, stranger] = await Promise.all([startFakeIdp({ discovery: 'none' }), startFakeIdp({ discovery: 'none' })]);
    as = await startTestAuthServer({ workload_identity: { issuers: [{ issuer: platform.issuer, jwks_uri: `${platform.issuer}/jwks`, allow_loopback: true }] } });
  });
  after(async () => {
    await as?.close();
    await Promise.all([platform, stranger].map((i) => i?.close()));
  });
  const jwt = (signer: FakeIdp, iss: string) => signer.sign({ iss, sub: 'system:serviceaccount:x:y', aud: as.issuer, jti: crypto.randomUUID(), iat: now(), exp: now() + 300 }, { typ: 'JWT' });
  const grant = async (assertion: string) => postForm(`${as.issuer}/token`, { grant_type: JWT_BEARER, assertion });

  it('an issuer not on the list and a forged JWT of a listed one get the same answer; the audit tells them apart', async () => {
    const untrusted = await grant(await jwt(stranger, stranger.issuer));
    await refused(as, untrusted, 400, 'invalid_grant', 'token.jwt_bearer_refused', /is neither a trusted IdP .* nor in workload_identity\.issuers/);
    const forged = await grant(await jwt(stranger, platform.issuer));
    await refused(as, forged, 400, 'invalid_grant', 'token.jwt_bearer_refused', /signature|key/i);
    assert.equal(untrusted.json.error_description, 'the assertion is invalid');
    assert.equal(forged.json.error_description, untrusted.json.error_description);
  });
});
