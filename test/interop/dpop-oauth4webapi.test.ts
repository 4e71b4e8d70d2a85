/**
 * Interoperability of the authorization server's DPoP (RFC 9449) with oauth4webapi (panva), a DPoP
 * client this project did not write: PAR with a proof (§10.1), the code grant, a public client's
 * bound refresh token (§5), client credentials, all with server nonces on (§8): the library's first
 * call fails with a DPoP nonce error, it remembers the DPoP-Nonce, and the retry succeeds. The
 * gateway half (protectedResourceRequest) belongs to WP-D's tests.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import * as oauth from 'oauth4webapi';
import { exportJWK } from 'jose';
import { FormBrowser } from '../helpers/browser-driver.ts';
import { decodeJwt, startTestAuthServer, type TestAuthServer } from '../helpers/auth-server.ts';
import { jwkThumbprint } from '../../src/core/dpop.ts';

const REDIRECT = 'http://127.0.0.1:4000/callback';
const SECRET = 'o4w-conf-secret-0123456789abcdef012345';
const insecure = { [oauth.allowInsecureRequests]: true } as const;

/** Calls `fn`; the first attempt must fail with a DPoP nonce error, the retry (the handle now holds the nonce) must not. */
async function afterNonce<T>(fn: () => Promise<T>): Promise<T> {
  await assert.rejects(fn(), (e: unknown) => oauth.isDPoPNonceError(e) || assert.fail(`not a nonce error: ${JSON.stringify((e as { cause?: unknown }).cause)}`));
  return fn();
}

describe('oauth4webapi DPoP against the authorization server (nonces on)', () => {
  let as: TestAuthServer;
  let server: oauth.AuthorizationServer;
  const pub: oauth.Client = { client_id: 'pub' };
  const conf: oauth.Client = { client_id: 'conf' };

  before(async () => {
    process.env.TEST_O4W_SECRET = SECRET;
    as = await startTestAuthServer({
      dpop: { enabled: true, require_nonce: true },
      clients: [
        { client_id: 'pub', token_endpoint_auth_method: 'none', redirect_uris: [REDIRECT], grant_types: ['authorization_code', 'refresh_token'] },
        { client_id: 'conf', client_secret_env: 'TEST_O4W_SECRET', grant_types: ['client_credentials'] },
      ] as never,
    });
    const issuer = new URL(as.issuer);
    server = await oauth.processDiscoveryResponse(issuer, await oauth.discoveryRequest(issuer, { algorithm: 'oauth2', ...insecure }));
    assert.ok(server.dpop_signing_alg_values_supported?.includes('ES256'));
  });
  after(async () => as?.close());

  it('PAR + code + refresh for a public client: DPoP-bound tokens, a bound refresh token', async () => {
    const keyPair = await oauth.generateKeyPair('ES256');
    const jkt = await jwkThumbprint(await exportJWK(keyPair.publicKey));
    const DPoP = oauth.DPoP(pub, keyPair);
    const verifier = oauth.generateRandomCodeVerifier();
    const params = {
      response_type: 'code',
      redirect_uri: REDIRECT,
      code_challenge: await oauth.calculatePKCECodeChallenge(verifier),
      code_challenge_method: 'S256',
      resource: as.resource,
      scope: 'mcp:read',
      state: 'st',
    };
    const pushed = await afterNonce(async () => oauth.processPushedAuthorizationResponse(server, pub, await oauth.pushedAuthorizationRequest(server, pub, oauth.None(), params, { DPoP, ...insecure })));
    const back = await new FormBrowser(as.issuer).authorize(`${as.issuer}/authorize?client_id=pub&request_uri=${encodeURIComponent(pushed.request_uri)}`);
    const callback = oauth.validateAuthResponse(server, pub, back, 'st');
    // The handle already holds the AS's nonce (from the /par answer): no nonce error this time.
    const tokens = await oauth.processAuthorizationCodeResponse(server, pub, await oauth.authorizationCodeGrantRequest(server, pub, oauth.None(), callback, REDIRECT, verifier, { DPoP, ...insecure }));
    assert.equal(tokens.token_type, 'dpop');
    assert.deepEqual(decodeJwt(tokens.access_token).cnf, { jkt });
    assert.ok(tokens.refresh_token);

    const refreshed = await oauth.processRefreshTokenResponse(server, pub, await oauth.refreshTokenGrantRequest(server, pub, oauth.None(), tokens.refresh_token, { DPoP, ...insecure }));
    assert.equal(refreshed.token_type, 'dpop');
    assert.deepEqual(decodeJwt(refreshed.access_token).cnf, { jkt });

    // Another key cannot use the bound refresh token.
    const stranger = oauth.DPoP(pub, await oauth.generateKeyPair('ES256'));
    await assert.rejects(
      afterNonce(async () => oauth.processRefreshTokenResponse(server, pub, await oauth.refreshTokenGrantRequest(server, pub, oauth.None(), refreshed.refresh_token!, { DPoP: stranger, ...insecure }))),
      (e: unknown) => (e as { error?: string }).error === 'invalid_grant',
    );
  });

  it('client credentials with DPoP', async () => {
    const keyPair = await oauth.generateKeyPair('EdDSA');
    const DPoP = oauth.DPoP(conf, keyPair);
    const tokens = await afterNonce(async () =>
      oauth.processClientCredentialsResponse(server, conf, await oauth.clientCredentialsGrantRequest(server, conf, oauth.ClientSecretBasic(SECRET), { resource: as.resource, scope: 'mcp:read' }, { DPoP, ...insecure })),
    );
    assert.equal(tokens.token_type, 'dpop');
    assert.deepEqual(decodeJwt(tokens.access_token).cnf, { jkt: await jwkThumbprint(await exportJWK(keyPair.publicKey)) });
  });
});
