import assert from 'node:assert/strict';
import { createPublicKey, createSecretKey } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { SignJWT, generateKeyPair } from 'jose';
import { mcpPost, startFakeIssuer, startScriptedUpstream, startTestGateway, toolCall, listedTools, type TestGateway } from '../helpers/gateway.ts';

const b64 = (value: unknown) => Buffer.from(JSON.stringify(value)).toString('base64url');

describe('gateway protection filter: tokens (RFC 6750, RFC 9068, RFC 9728)', () => {
  let issuer: Awaited<ReturnType<typeof startFakeIssuer>>;
  let upstream: Awaited<ReturnType<typeof startScriptedUpstream>>;
  let gateway: TestGateway;
  let resource: string;
  let good: Record<string, unknown>;

  before(async () => {
    issuer = await startFakeIssuer();
    upstream = await startScriptedUpstream();
    process.env.TEST_GW_INTROSPECT_SECRET = 'introspection-secret';
    gateway = await startTestGateway((url) => [
      { path: '/mcp', upstream: upstream.url, resource: `${url}/mcp`, resource_name: 'Banking', authorization_servers: [issuer.issuer], scopes: ['banking:read'], tools: { ...listedTools(), transfer: { scopes: ['banking:transfer'] } } },
      {
        path: '/introspected',
        upstream: upstream.url,
        resource: `${url}/introspected`,
        authorization_servers: [issuer.issuer],
        tools: listedTools(),
        token: { mode: 'introspection', introspection: { client_id: 'gateway', client_secret_env: 'TEST_GW_INTROSPECT_SECRET', negative_cache_seconds: 1 } },
      },
      { path: '/rotating', upstream: upstream.url, resource: `${url}/rotating`, authorization_servers: [issuer.issuer], token: { jwks_min_refresh_seconds: 0 }, tools: listedTools() },
    ]);
    resource = `${gateway.url}/mcp`;
    good = { sub: 'alice', aud: resource, client_id: 'agent-1', scope: 'banking:read' };
  });
  after(async () => {
    await gateway.close();
    await upstream.close();
    await issuer.close();
  });

  const call = (token: string | undefined, url = resource) => mcpPost(url, toolCall('read_balance'), token === undefined ? {} : { authorization: `Bearer ${token}` });
  const metadataUrl = () => `${gateway.url}/.well-known/oauth-protected-resource/mcp`;

  it('serves protected resource metadata at the path-inserted well-known URL (RFC 9728 §3.1)', async () => {
    const res = await fetch(metadataUrl());
    assert.equal(res.status, 200);
    assert.deepEqual(await res.json(), {
      resource,
      authorization_servers: [issuer.issuer],
      scopes_supported: ['banking:read', 'banking:transfer'],
      bearer_methods_supported: ['header'],
      resource_name: 'Banking',
    });
  });

  it('accepts a valid token', async () => {
    const res = await call(await issuer.sign(good));
    assert.equal(res.status, 200, res.text);
  });

  it('no token: 401 with resource_metadata and the scopes to ask for', async () => {
    const res = await call(undefined);
    assert.equal(res.status, 401);
    assert.equal(res.headers.get('www-authenticate'), `Bearer resource_metadata="${metadataUrl()}", scope="banking:read"`);
    assert.equal((res.json!.error as { code: number }).code, -32001);
    assert.equal(res.json!.id, 1);
  });

  it('a tool call without a token is challenged with the scopes that tool needs too', async () => {
    const res = await mcpPost(resource, toolCall('transfer'));
    assert.equal(res.status, 401);
    assert.match(res.headers.get('www-authenticate')!, /scope="banking:read banking:transfer"/);
  });

  const invalid: [string, () => Promise<string>][] = [
    ['a token signed by another key under a known kid', async () => issuer.sign(good, { key: (await generateKeyPair('ES256')).privateKey })],
    ['alg none', async () => `${b64({ alg: 'none', typ: 'at+jwt', kid: 'k1' })}.${b64({ ...good, iss: issuer.issuer, exp: Math.floor(Date.now() / 1000) + 60 })}.`],
    [
      'HS256 signed with the public key as the HMAC secret',
      async () => {
        const pem = createPublicKey({ key: issuer.keys[0]!.jwk as never, format: 'jwk' }).export({ type: 'spki', format: 'pem' });
        return new SignJWT({ ...good, iss: issuer.issuer, exp: Math.floor(Date.now() / 1000) + 60 }).setProtectedHeader({ alg: 'HS256', kid: 'k1', typ: 'at+jwt' }).sign(createSecretKey(Buffer.from(pem)));
      },
    ],
    ['the wrong audience', () => issuer.sign({ ...good, aud: 'https://elsewhere.example/mcp' })],
    ['the audience of another route on the same gateway', () => issuer.sign({ ...good, aud: `${gateway.url}/introspected` })],
    ['the wrong issuer', () => issuer.sign({ ...good, iss: 'https://evil.example' })],
    ['an expired token', () => issuer.sign({ ...good, exp: Math.floor(Date.now() / 1000) - 60 })],
    ['a token not yet valid', () => issuer.sign({ ...good, nbf: Math.floor(Date.now() / 1000) + 120 })],
    ['an unknown kid', () => issuer.sign(good, { kid: 'nobody' })],
    ['typ JWT (an ID token, not an access token)', () => issuer.sign(good, { typ: 'JWT' })],
    ['no exp', () => issuer.sign({ ...good, exp: undefined })],
    ['no sub', () => issuer.sign({ ...good, sub: undefined })],
    ['garbage', async () => 'not.a.jwt'],
    ['a truncated signature', async () => (await issuer.sign(good)).slice(0, -10)],
  ];
  for (const [name, make] of invalid) {
    it(`401 invalid_token: ${name}`, async () => {
      const res = await call(await make());
      assert.equal(res.status, 401, res.text);
      assert.equal(res.headers.get('www-authenticate'), `Bearer resource_metadata="${metadataUrl()}", scope="banking:read", error="invalid_token"`);
      assert.equal((res.json!.error as { code: number }).code, -32001);
    });
  }

  it('401 for a non-Bearer Authorization header', async () => {
    const res = await mcpPost(resource, toolCall('read_balance'), { authorization: 'Basic YTpi' });
    assert.equal(res.status, 401);
    assert.match(res.headers.get('www-authenticate')!, /error="invalid_request"/);
  });

  it('403 insufficient_scope when the token lacks the route scope', async () => {
    const res = await call(await issuer.sign({ ...good, scope: 'other' }));
    assert.equal(res.status, 403);
    assert.equal(res.headers.get('www-authenticate'), `Bearer resource_metadata="${metadataUrl()}", scope="banking:read", error="insufficient_scope"`);
  });

  it('a new signing key is picked up on its first unknown kid', async () => {
    const rotating = `${gateway.url}/rotating`;
    assert.equal((await call(await issuer.sign({ ...good, aud: rotating }), rotating)).status, 200);
    await issuer.addKey('k2');
    const res = await call(await issuer.sign({ ...good, aud: rotating }, { kid: 'k2' }), rotating);
    assert.equal(res.status, 200, res.text);
  });

  it('made-up kids do not make the gateway hammer the JWKS', async () => {
    const hits = issuer.jwksHits;
    for (let i = 0; i < 5; i++) assert.equal((await call(await issuer.sign(good, { kid: `made-up-${i}` }))).status, 401);
    assert.equal(issuer.jwksHits, hits, 'no refetch within the minimum refresh interval');
  });

  it('keeps validating with cached keys while the AS is unreachable', async () => {
    issuer.setUp(false);
    try {
      assert.equal((await call(await issuer.sign({ ...good, jti: 'while-down' }))).status, 200);
    } finally {
      issuer.setUp(true);
    }
  });

  describe('introspection mode (RFC 7662)', () => {
    const url = () => `${gateway.url}/introspected`;
    it('accepts an active token for this resource, and caches the answer', async () => {
      issuer.introspection.set('opaque-good', { active: true, sub: 'bob', aud: url(), iss: issuer.issuer, client_id: 'c', scope: '', exp: Math.floor(Date.now() / 1000) + 60 });
      const hits = issuer.introspectionHits;
      assert.equal((await call('opaque-good', url())).status, 200);
      assert.equal((await call('opaque-good', url())).status, 200);
      assert.equal(issuer.introspectionHits, hits + 1);
    });
    it('401 for a revoked (inactive) token', async () => {
      assert.equal((await call('opaque-revoked', url())).status, 401);
    });
    it('401 for an active token for another audience', async () => {
      issuer.introspection.set('opaque-other', { active: true, sub: 'bob', aud: 'https://other.example', exp: Math.floor(Date.now() / 1000) + 60 });
      assert.equal((await call('opaque-other', url())).status, 401);
    });
    it('503 (fail closed, not cached) when the AS cannot answer', async () => {
      issuer.setUp(false);
      try {
        const res = await call('opaque-unknown-while-down', url());
        assert.equal(res.status, 503);
        assert.equal(res.headers.get('retry-after'), '5');
      } finally {
        issuer.setUp(true);
      }
    });
  });
});
