import assert from 'node:assert/strict';
import { statSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import { SignJWT, exportJWK, generateKeyPair, createRemoteJWKSet, jwtVerify } from 'jose';
import { KeyManager } from '../../src/auth-server/keys.ts';
import { decodeJwt, postForm, registerClient, startTestAuthServer, type TestAuthServer } from '../helpers/auth-server.ts';

describe('signing keys', () => {
  let as: TestAuthServer;
  before(async () => {
    // This suite's clients register themselves: the deployment's scope allowlist (the default grants none).
    as = await startTestAuthServer({ registration: { allowed_scopes: ['mcp:read', 'mcp:write', 'api:read'], client_credentials: true } });
  });
  after(async () => as.close());

  const header = (jwt: string) => JSON.parse(Buffer.from(jwt.split('.')[0]!, 'base64url').toString()) as { kid: string };
  const issue = async (client: { client_id: string; client_secret?: string }) =>
    (await postForm(`${as.issuer}/token`, { grant_type: 'client_credentials', client_id: client.client_id, client_secret: client.client_secret!, resource: as.resource })).json
      .access_token as string;

  it('keeps the private key file readable by its owner only', () => {
    assert.equal(statSync(as.ctx.keys.file).mode & 0o777, 0o600);
  });

  it('publishes a rotated key before it signs, and keeps the old key until its tokens expire', async () => {
    const client = await registerClient(as.issuer, { grant_types: ['client_credentials'], token_endpoint_auth_method: 'client_secret_post' });
    const before = await issue(client);
    const oldKid = header(before).kid;

    // What `mandate keys rotate` does, from another process: the server notices the file change.
    const cli = new KeyManager({ dataDir: as.dataDir, maxTokenTtl: 900 });
    await cli.init();
    const { kid: newKid } = await cli.rotate(3600);
    await new Promise((r) => setTimeout(r, 1100));
    const jwks = (await (await fetch(`${as.issuer}/jwks`)).json()) as { keys: { kid: string }[] };
    assert.deepEqual(jwks.keys.map((k) => k.kid).sort(), [oldKid, newKid].sort(), 'new key published at once');
    assert.equal(header(await issue(client)).kid, oldKid, 'but it does not sign yet');

    await cli.rotate(0);
    await new Promise((r) => setTimeout(r, 1100));
    const latest = await issue(client);
    assert.notEqual(header(latest).kid, oldKid, 'a key with no publication delay signs now');
    const remote = createRemoteJWKSet(new URL(`${as.issuer}/jwks`));
    await jwtVerify(before, remote, { issuer: as.issuer });
    await jwtVerify(latest, remote, { issuer: as.issuer });
    const introspected = await postForm(`${as.issuer}/introspect`, { token: before, client_id: client.client_id, client_secret: client.client_secret! });
    assert.equal(introspected.json.active, true, 'tokens of the retired key still verify');
  });

  it('drops a retired key from the JWKS once its last token has expired', async () => {
    let now = 1_000_000;
    const manager = new KeyManager({ dataDir: `${as.dataDir}/clock`, maxTokenTtl: 900, now: () => now });
    await manager.init();
    const first = (await manager.current()).kid;
    await manager.rotate(0);
    now += 10;
    assert.equal((await manager.jwks()).keys.length, 2);
    now += 901;
    const kids = (await manager.jwks()).keys.map((k) => k.kid);
    assert.equal(kids.length, 1);
    assert.ok(!kids.includes(first!));
  });
});

describe('private_key_jwt client authentication', () => {
  let as: TestAuthServer;
  before(async () => {
    // This suite's clients register themselves: the deployment's scope allowlist (the default grants none).
    as = await startTestAuthServer({ registration: { allowed_scopes: ['mcp:read', 'mcp:write', 'api:read'], client_credentials: true } });
  });
  after(async () => as.close());

  it('authenticates with a signed assertion and refuses its replay', async () => {
    const { privateKey, publicKey } = await generateKeyPair('ES256');
    const jwk = { ...(await exportJWK(publicKey)), kid: 'k1', alg: 'ES256' };
    const client = await registerClient(as.issuer, { grant_types: ['client_credentials'], token_endpoint_auth_method: 'private_key_jwt', jwks: { keys: [jwk] } });
    const assertion = (aud: string, jti = crypto.randomUUID()) =>
      new SignJWT({})
        .setProtectedHeader({ alg: 'ES256', kid: 'k1' })
        .setIssuer(client.client_id)
        .setSubject(client.client_id)
        .setAudience(aud)
        .setJti(jti)
        .setIssuedAt()
        .setExpirationTime('60s')
        .sign(privateKey);
    const form = (jwt: string) => ({
      grant_type: 'client_credentials',
      resource: as.resource,
      client_assertion_type: 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer',
      client_assertion: jwt,
    });
    const jwt = await assertion(`${as.issuer}/token`);
    const ok = await postForm(`${as.issuer}/token`, form(jwt));
    assert.equal(ok.status, 200, ok.text);
    assert.equal(decodeJwt(ok.json.access_token as string).sub, client.client_id);
    const replay = await postForm(`${as.issuer}/token`, form(jwt));
    assert.equal(replay.json.error, 'invalid_client');
    const wrongAudience = await postForm(`${as.issuer}/token`, form(await assertion('https://elsewhere.example/token')));
    assert.equal(wrongAudience.json.error, 'invalid_client');
    const { privateKey: otherKey } = await generateKeyPair('ES256');
    const forged = await new SignJWT({})
      .setProtectedHeader({ alg: 'ES256', kid: 'k1' })
      .setIssuer(client.client_id)
      .setSubject(client.client_id)
      .setAudience(as.issuer)
      .setJti('x')
      .setExpirationTime('60s')
      .sign(otherKey);
    assert.equal((await postForm(`${as.issuer}/token`, form(forged))).json.error, 'invalid_client');
  });
});
