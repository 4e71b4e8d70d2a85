/**
 * Interoperability of the authorization server's DPoP (RFC 9449) with openid-client v6 (panva):
 * `getDPoPHandle` through `buildAuthorizationUrlWithPAR` (§10.1), `authorizationCodeGrant`,
 * `refreshTokenGrant` (a public client's bound refresh token, §5) and `clientCredentialsGrant`;
 * the token type is DPoP and `cnf.jkt` is the handle's thumbprint. With server nonces on,
 * openid-client retries a `use_dpop_nonce` answer by itself: the AS audit shows the one refusal.
 * The gateway half (fetchProtectedResource) belongs to WP-D's tests.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import * as client from 'openid-client';
import { FormBrowser } from '../helpers/browser-driver.ts';
import { decodeJwt, startTestAuthServer, type TestAuthServer } from '../helpers/auth-server.ts';

const REDIRECT = 'http://127.0.0.1:4000/callback';
const SECRET = 'oc-conf-secret-0123456789abcdef0123456';
const insecure = { execute: [client.allowInsecureRequests] };

for (const requireNonce of [false, true]) {
  describe(`openid-client DPoP against the authorization server (nonces ${requireNonce ? 'on' : 'off'})`, () => {
    let as: TestAuthServer;
    before(async () => {
      process.env.TEST_OC_SECRET = SECRET;
      as = await startTestAuthServer({
        dpop: { enabled: true, require_nonce: requireNonce },
        clients: [
          { client_id: 'pub', token_endpoint_auth_method: 'none', redirect_uris: [REDIRECT], grant_types: ['authorization_code', 'refresh_token'] },
          { client_id: 'conf', client_secret_env: 'TEST_OC_SECRET', grant_types: ['client_credentials'] },
        ] as never,
      });
    });
    after(async () => as?.close());

    const nonceRefusals = async () => {
      await as.ctx.audit.flush();
      return (await as.store.audit.list({ type: 'token.dpop_refused' })).length + (await as.store.audit.list({ type: 'par.dpop_refused' })).length;
    };

    it('PAR + code + refresh (public client): DPoP tokens bound to the handle key', async () => {
      const config = await client.discovery(new URL(as.issuer), 'pub', undefined, client.None(), insecure);
      const DPoP = client.getDPoPHandle(config, await client.randomDPoPKeyPair('ES256'));
      const jkt = await DPoP.calculateThumbprint();
      const verifier = client.randomPKCECodeVerifier();
      const state = client.randomState();
      const url = await client.buildAuthorizationUrlWithPAR(
        config,
        { redirect_uri: REDIRECT, scope: 'mcp:read', resource: as.resource, code_challenge: await client.calculatePKCECodeChallenge(verifier), code_challenge_method: 'S256', state },
        { DPoP },
      );
      const back = await new FormBrowser(as.issuer).authorize(url.href);
      const tokens = await client.authorizationCodeGrant(config, back, { pkceCodeVerifier: verifier, expectedState: state }, undefined, { DPoP });
      assert.equal(tokens.token_type, 'dpop');
      assert.deepEqual(decodeJwt(tokens.access_token).cnf, { jkt });

      const refreshed = await client.refreshTokenGrant(config, tokens.refresh_token!, undefined, { DPoP });
      assert.equal(refreshed.token_type, 'dpop');
      assert.deepEqual(decodeJwt(refreshed.access_token).cnf, { jkt });

      const stranger = client.getDPoPHandle(config, await client.randomDPoPKeyPair('ES256'));
      await assert.rejects(client.refreshTokenGrant(config, refreshed.refresh_token!, undefined, { DPoP: stranger }), (e: unknown) => (e as { error?: string }).error === 'invalid_grant');
      // Nonces on: the first /par call was answered use_dpop_nonce and retried by the library;
      // the stranger's first refresh too (a new handle has no nonce yet). Off: none at all.
      assert.equal(await nonceRefusals(), requireNonce ? 2 : 0);
    });

    it('client credentials with DPoP (RS256 key)', async () => {
      const config = await client.discovery(new URL(as.issuer), 'conf', SECRET, client.ClientSecretBasic(SECRET), insecure);
      const DPoP = client.getDPoPHandle(config, await client.randomDPoPKeyPair('RS256'));
      const tokens = await client.clientCredentialsGrant(config, { resource: as.resource, scope: 'mcp:read' }, { DPoP });
      assert.equal(tokens.token_type, 'dpop');
      assert.deepEqual(decodeJwt(tokens.access_token).cnf, { jkt: await DPoP.calculateThumbprint() });
    });
  });
}
