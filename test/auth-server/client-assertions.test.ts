import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import { after, before, describe, it } from 'node:test';
import { exportJWK, generateKeyPair, SignJWT, type CryptoKey, type JWK } from 'jose';
import { freePort, postForm, startTestAuthServer, type TestAuthServer } from '../helpers/auth-server.ts';

const ASSERTION_TYPE = 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer';
const HMAC_SECRET = new TextEncoder().encode('a-shared-secret-of-32-bytes-long!');

/**
 * Item 14: private_key_jwt (RFC 7523, draft-ietf-oauth-rfc7523bis). Client authentication is
 * exercised at /revoke, which needs nothing but an authenticated client: a refusal there is 401
 * `invalid_client` with the reason in a `client.auth_failed` audit event.
 */
describe('private_key_jwt client assertions', () => {
  let as: TestAuthServer;
  let shipped: TestAuthServer;
  let jwksServer: Server;
  let jwksUrl: string;
  let jwksHits = 0;
  let brokenHits = 0;
  let served: JWK[] = [];
  const keys = new Map<string, CryptoKey>();

  const newKey = async (kid: string) => {
    const { privateKey, publicKey } = await generateKeyPair('ES256');
    keys.set(kid, privateKey);
    return { ...(await exportJWK(publicKey)), kid, alg: 'ES256', use: 'sig' };
  };

  before(async () => {
    const port = await freePort();
    jwksUrl = `http://127.0.0.1:${port}/jwks`;
    jwksServer = createServer((req, res) => {
      if (req.url === '/broken') {
        brokenHits++;
        res.writeHead(500);
        return res.end();
      }
      jwksHits++;
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ keys: served }));
    });
    await new Promise<void>((r) => jwksServer.listen(port, '127.0.0.1', r));
    const inline = await newKey('inline-1');
    served = [await newKey('remote-1')];
    const oct = { kty: 'oct', kid: 'shared', k: Buffer.from(HMAC_SECRET).toString('base64url') };
    const client = (client_id: string, extra: Record<string, unknown>) => ({ client_id, token_endpoint_auth_method: 'private_key_jwt' as const, grant_types: ['authorization_code' as const], redirect_uris: ['http://127.0.0.1:4000/cb'], ...extra });
    // Development rule on: http jwks_uri on loopback is allowed here, as for metadata documents.
    as = await startTestAuthServer({
      client_id_metadata_documents: { allow_loopback: true },
      clients: [client('inline', { jwks: { keys: [inline, oct] } }), client('remote', { jwks_uri: jwksUrl }), client('broken', { jwks_uri: jwksUrl.replace('/jwks', '/broken') })],
    });
    shipped = await startTestAuthServer({
      clients: [client('loopback-http', { jwks_uri: jwksUrl }), client('plain-http', { jwks_uri: 'http://jwks.example.test/keys' })],
    });
  });
  after(async () => {
    await as?.close();
    await shipped?.close();
    jwksServer.closeAllConnections();
    await new Promise((r) => jwksServer.close(r));
  });

  const sign = async (clientId: string, options: { kid: string; aud?: string | string[]; jti?: string; alg?: string; secret?: Uint8Array }) => {
    const jwt = new SignJWT({})
      .setProtectedHeader({ alg: options.alg ?? 'ES256', kid: options.kid })
      .setIssuer(clientId)
      .setSubject(clientId)
      .setAudience(options.aud ?? as.issuer)
      .setJti(options.jti ?? crypto.randomUUID())
      .setIssuedAt()
      .setExpirationTime('60s');
    return jwt.sign(options.secret ?? keys.get(options.kid)!);
  };
  const unsigned = (clientId: string, aud: string) => {
    const part = (value: unknown) => Buffer.from(JSON.stringify(value)).toString('base64url');
    const now = Math.floor(Date.now() / 1000);
    return `${part({ alg: 'none' })}.${part({ iss: clientId, sub: clientId, aud, jti: crypto.randomUUID(), iat: now, exp: now + 60 })}.`;
  };
  const revokeWith = (server: TestAuthServer, assertion: string) =>
    postForm(`${server.issuer}/revoke`, { token: 'not-a-token', client_assertion_type: ASSERTION_TYPE, client_assertion: assertion });

  /** Asserts 401 invalid_client and returns the audited reason of the latest failure of this client. */
  const refused = async (server: TestAuthServer, clientId: string, assertion: string) => {
    const res = await revokeWith(server, assertion);
    assert.equal(res.status, 401, res.text);
    assert.equal(res.json.error, 'invalid_client');
    await server.ctx.audit.flush();
    const [event] = await server.store.audit.list({ type: 'client.auth_failed', clientId });
    assert.equal(event?.error, 'invalid_client');
    return event?.reason ?? '';
  };

  it('accepts an ES256 assertion whose aud is the issuer, or (compatibility) the token endpoint', async () => {
    assert.equal((await revokeWith(as, await sign('inline', { kid: 'inline-1' }))).status, 200);
    assert.equal((await revokeWith(as, await sign('inline', { kid: 'inline-1', aud: `${as.issuer}/token` }))).status, 200);
  });

  it('refuses HS256 even with an oct key in the client JWKS', async () => {
    const reason = await refused(as, 'inline', await sign('inline', { kid: 'shared', alg: 'HS256', secret: HMAC_SECRET }));
    assert.equal(reason, 'client assertion: ERR_JOSE_ALG_NOT_ALLOWED');
  });

  it('refuses alg none', async () => {
    const reason = await refused(as, 'inline', unsigned('inline', as.issuer));
    assert.match(reason, /^client assertion: ERR_(JOSE_ALG_NOT_ALLOWED|JWS_INVALID|JOSE_NOT_SUPPORTED)$/);
  });

  it('refuses an aud array, even one holding the issuer (rfc7523bis)', async () => {
    const reason = await refused(as, 'inline', await sign('inline', { kid: 'inline-1', aud: [as.issuer, 'https://other.example'] }));
    assert.equal(reason, 'client assertion aud must be one string (draft-ietf-oauth-rfc7523bis)');
  });

  it('refuses an aud naming another endpoint of this server, or another server', async () => {
    assert.equal(await refused(as, 'inline', await sign('inline', { kid: 'inline-1', aud: `${as.issuer}/revoke` })), `client assertion aud "${as.issuer}/revoke" is not this issuer`);
    assert.equal(await refused(as, 'inline', await sign('inline', { kid: 'inline-1', aud: 'https://elsewhere.example' })), 'client assertion aud "https://elsewhere.example" is not this issuer');
  });

  it('refuses a replayed jti', async () => {
    const assertion = await sign('inline', { kid: 'inline-1' });
    assert.equal((await revokeWith(as, assertion)).status, 200);
    assert.equal(await refused(as, 'inline', assertion), 'client assertion jti replayed');
  });

  it('refuses a plain-http jwks_uri as shipped, loopback or not', async () => {
    assert.equal(await refused(shipped, 'plain-http', await sign('plain-http', { kid: 'remote-1', aud: shipped.issuer })), 'jwks_uri must use https: http://jwks.example.test/keys');
    assert.equal(await refused(shipped, 'loopback-http', await sign('loopback-http', { kid: 'remote-1', aud: shipped.issuer })), `jwks_uri must use https: ${jwksUrl}`);
  });

  it('refuses a plain-http jwks_uri at registration already', async () => {
    const res = await fetch(`${shipped.issuer}/register`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ client_name: 'http-keys', redirect_uris: ['http://127.0.0.1:4000/cb'], token_endpoint_auth_method: 'private_key_jwt', jwks_uri: 'http://jwks.example.test/keys' }),
    });
    assert.equal(res.status, 400);
    assert.equal(((await res.json()) as { error: string }).error, 'invalid_client_metadata');
    await shipped.ctx.audit.flush();
    const [event] = await shipped.store.audit.list({ type: 'register.refused' });
    assert.equal(event?.error, 'invalid_client_metadata');
    assert.equal(event?.reason, 'jwks_uri must use https');
  });

  it('fetches the client JWKS again, at a bounded rate, when an assertion names an unknown kid', async () => {
    assert.equal((await revokeWith(as, await sign('remote', { kid: 'remote-1' }))).status, 200);
    const fetchesBefore = jwksHits;
    assert.equal(fetchesBefore, 1, 'the set was fetched once and cached');
    assert.equal((await revokeWith(as, await sign('remote', { kid: 'remote-1' }))).status, 200);
    assert.equal(jwksHits, 1, 'a known kid uses the cached set');
    // The client rotates its key: the server must pick the new one up without a restart.
    served = [await newKey('remote-2')];
    let tries = 0;
    let status = 0;
    for (; tries < 80 && status !== 200; tries++) {
      const res = await revokeWith(as, await sign('remote', { kid: 'remote-2' }));
      status = res.status;
      if (status !== 200) {
        assert.equal(res.status, 401);
        await new Promise((r) => setTimeout(r, 100));
      }
    }
    assert.equal(status, 200, 'the rotated key is fetched');
    assert.ok(jwksHits - fetchesBefore <= 2, `refetches are rate-limited: ${jwksHits - fetchesBefore} fetches for ${tries} tries`);
    if (tries > 1) {
      await as.ctx.audit.flush();
      const [event] = await as.store.audit.list({ type: 'client.auth_failed', clientId: 'remote' });
      assert.equal(event?.reason, 'client assertion: ERR_JWKS_NO_MATCHING_KEY');
    }
  });

  it('remembers a failed key set fetch: /token is no reflector towards a jwks_uri', async () => {
    assert.equal(await refused(as, 'broken', await sign('broken', { kid: 'remote-1' })), 'client assertion: jwks_uri answered HTTP 500');
    for (let i = 0; i < 3; i++) {
      assert.equal(await refused(as, 'broken', await sign('broken', { kid: 'remote-1' })), 'client assertion: jwks_uri fetch failed recently; not fetched again');
    }
    assert.equal(brokenHits, 1);
  });
});
