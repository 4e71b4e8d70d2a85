import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { jwtVerify } from 'jose';
import { startTestAuthServer, type TestAuthServer } from '../helpers/auth-server.ts';
import { startFakeIdp, type FakeIdp } from '../helpers/id-jag.ts';
import { IssuerKeysUnavailable, issuerKeys } from '../../src/auth-server/federation/issuer-keys.ts';

/**
 * `issuerKeys`: the keys of a trusted issuer from inline `jwks`, a `jwks_uri`, or discovery
 * (RFC 8414, then OpenID discovery), fetched through the SSRF guard, https only unless loopback is
 * allowed for the entry. Each server has its own caches.
 */
describe('issuerKeys', () => {
  let as: TestAuthServer;
  const idps: FakeIdp[] = [];
  const idp = async (discovery?: 'rfc8414' | 'oidc' | 'none') => {
    const started = await startFakeIdp({ discovery });
    idps.push(started);
    return started;
  };
  before(async () => {
    as = await startTestAuthServer();
  });
  after(async () => {
    await as.close();
    await Promise.all(idps.map((i) => i.close()));
  });

  const verify = (jwt: string, keys: ReturnType<typeof issuerKeys>) => jwtVerify(jwt, keys, { algorithms: ['ES256', 'RS256'] });

  it('inline jwks verify without any fetch', async () => {
    const fake = await idp();
    const jwt = await fake.sign({ iss: fake.issuer, sub: 'u' });
    const { payload } = await verify(jwt, issuerKeys(as.ctx, { issuer: fake.issuer, jwks: fake.jwks as never, allowLoopback: false }));
    assert.equal(payload.sub, 'u');
    assert.deepEqual(fake.hits, []);
  });

  it('a jwks_uri is fetched (ES256 and RS256 keys)', async () => {
    const fake = await idp();
    const keys = issuerKeys(as.ctx, { issuer: fake.issuer, jwks_uri: `${fake.issuer}/jwks`, allowLoopback: true });
    assert.equal((await verify(await fake.sign({ sub: 'es' }), keys)).payload.sub, 'es');
    assert.equal((await verify(await fake.sign({ sub: 'rs' }, { alg: 'RS256' }), keys)).payload.sub, 'rs');
    assert.deepEqual(fake.hits, ['/jwks']);
  });

  it('discovery: RFC 8414 metadata names the jwks_uri; the result is cached', async () => {
    const fake = await idp('rfc8414');
    const jwt = await fake.sign({ sub: 'x' });
    await verify(jwt, issuerKeys(as.ctx, { issuer: fake.issuer, allowLoopback: true }));
    await verify(jwt, issuerKeys(as.ctx, { issuer: fake.issuer, allowLoopback: true }));
    assert.deepEqual(fake.hits, ['/.well-known/oauth-authorization-server', '/jwks']);
  });

  it('discovery falls back to OpenID discovery', async () => {
    const fake = await idp('oidc');
    await verify(await fake.sign({ sub: 'x' }), issuerKeys(as.ctx, { issuer: fake.issuer, allowLoopback: true }));
    assert.deepEqual(fake.hits, ['/.well-known/oauth-authorization-server', '/.well-known/openid-configuration', '/jwks']);
  });

  it('metadata naming another issuer is refused (RFC 8414 §3.3), nothing else fetched', async () => {
    const fake = await idp('rfc8414');
    fake.metadata.rfc8414 = { issuer: 'https://evil.example', jwks_uri: `${fake.issuer}/jwks` };
    await assert.rejects(verify(await fake.sign({ sub: 'x' }), issuerKeys(as.ctx, { issuer: fake.issuer, allowLoopback: true })), (error: Error) => {
      assert.ok(error instanceof IssuerKeysUnavailable, String(error));
      assert.match(error.message, /names issuer "https:\/\/evil\.example"/);
      return true;
    });
    assert.deepEqual(fake.hits, ['/.well-known/oauth-authorization-server']);
  });

  it('no metadata at all → IssuerKeysUnavailable naming both attempts', async () => {
    const fake = await idp('none');
    await assert.rejects(verify(await fake.sign({ sub: 'x' }), issuerKeys(as.ctx, { issuer: fake.issuer, allowLoopback: true })), (error: Error) => {
      assert.ok(error instanceof IssuerKeysUnavailable, String(error));
      assert.match(error.message, /cannot fetch the metadata.*HTTP 404.*HTTP 404/);
      return true;
    });
  });

  it('plain http is refused without allowLoopback, before any fetch', async () => {
    const fake = await idp();
    for (const entry of [{ issuer: fake.issuer }, { issuer: fake.issuer, jwks_uri: `${fake.issuer}/jwks` }]) {
      await assert.rejects(verify(await fake.sign({ sub: 'x' }), issuerKeys(as.ctx, { ...entry, allowLoopback: false })), (error: Error) => {
        assert.ok(error instanceof IssuerKeysUnavailable, String(error));
        assert.match(error.message, /must use https/);
        return true;
      });
    }
    assert.deepEqual(fake.hits, []);
  });

  it('a key of another issuer does not verify', async () => {
    const [a, b] = [await idp(), await idp()];
    await assert.rejects(verify(await b.sign({ sub: 'x' }, { kid: 'es-1' }), issuerKeys(as.ctx, { issuer: a.issuer, jwks_uri: `${a.issuer}/jwks`, allowLoopback: true })), {
      code: 'ERR_JWS_SIGNATURE_VERIFICATION_FAILED',
    });
  });

  it('a failed key set fetch is not repeated at once (no reflector)', async () => {
    const fake = await idp();
    const uri = `${fake.issuer}/missing-jwks`;
    const keys = issuerKeys(as.ctx, { issuer: fake.issuer, jwks_uri: uri, allowLoopback: true });
    const jwt = await fake.sign({ sub: 'x' });
    await assert.rejects(verify(jwt, keys), /HTTP 404/);
    await assert.rejects(verify(jwt, issuerKeys(as.ctx, { issuer: fake.issuer, jwks_uri: uri, allowLoopback: true })), /failed recently/);
    assert.deepEqual(fake.hits, ['/missing-jwks']);
  });

  it('another server has its own cache', async () => {
    const fake = await idp();
    const other = await startTestAuthServer();
    try {
      const jwt = await fake.sign({ sub: 'x' });
      await verify(jwt, issuerKeys(as.ctx, { issuer: fake.issuer, jwks_uri: `${fake.issuer}/jwks`, allowLoopback: true }));
      await verify(jwt, issuerKeys(other.ctx, { issuer: fake.issuer, jwks_uri: `${fake.issuer}/jwks`, allowLoopback: true }));
      assert.deepEqual(fake.hits, ['/jwks', '/jwks']);
    } finally {
      await other.close();
    }
  });
});
