/**
 * Pushed authorization requests (RFC 9126) with openid-client v6 (panva), a certified relying
 * party library this project did not write: it reads `pushed_authorization_request_endpoint` from
 * discovery, pushes the request (authenticating as at the token endpoint), and sends the browser
 * with client_id and request_uri alone. Full code flows: a confidential client (client_secret_basic)
 * with an OpenID Connect sign-in, a public client, and a private_key_jwt client whose assertion
 * names the issuer; in Chromium too.
 */
import assert from 'node:assert/strict';
import { webcrypto } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import * as client from 'openid-client';
import type { Browser } from 'playwright-core';
import { FormBrowser } from '../helpers/browser-driver.ts';
import { startCallbackServer, type CallbackServer } from '../helpers/callback-server.ts';
import { authorizeInChromium, launchChromium } from '../helpers/chromium.ts';
import { decodeJwt, startTestAuthServer, type TestAuthServer } from '../helpers/auth-server.ts';
import { needsChromium } from '../helpers/services.ts';

const insecure = { execute: [client.allowInsecureRequests] };
type Drive = (authorizationUrl: URL) => Promise<URL>;

describe('openid-client v6: pushed authorization requests', () => {
  let as: TestAuthServer;
  let callback: CallbackServer;

  before(async () => {
    // PAR required for everyone: openid-client must really push (a front-channel request would be refused).
    as = await startTestAuthServer({ par: { required: true }, registration: { allowed_scopes: ['mcp:read'] } });
    callback = await startCallbackServer();
  });
  after(async () => {
    await callback?.close();
    await as?.close();
  });

  const formBrowser: Drive = (url) => new FormBrowser(as.issuer).authorize(url.href);

  /** A pushed request, as openid-client builds it; the URL it returns carries only client_id and request_uri. */
  async function pushed(config: client.Configuration, params: Record<string, string>) {
    const verifier = client.randomPKCECodeVerifier();
    const state = client.randomState();
    const nonce = client.randomNonce();
    const url = await client.buildAuthorizationUrlWithPAR(config, {
      redirect_uri: callback.redirectUri,
      code_challenge: await client.calculatePKCECodeChallenge(verifier),
      code_challenge_method: 'S256',
      state,
      nonce,
      ...params,
    });
    assert.equal(url.origin + url.pathname, `${as.issuer}/authorize`);
    assert.deepEqual([...url.searchParams.keys()].sort(), ['client_id', 'request_uri']);
    assert.match(url.searchParams.get('request_uri')!, /^urn:ietf:params:oauth:request_uri:/);
    return { url, verifier, state, nonce };
  }

  async function confidentialOidc(drive: Drive) {
    const config = await client.dynamicClientRegistration(
      new URL(as.issuer),
      { redirect_uris: [callback.redirectUri], grant_types: ['authorization_code'], token_endpoint_auth_method: 'client_secret_basic' },
      client.ClientSecretBasic(),
      { execute: [client.allowInsecureRequests, client.enableNonRepudiationChecks] },
    );
    assert.equal(config.serverMetadata().pushed_authorization_request_endpoint, `${as.issuer}/par`);
    assert.equal(config.serverMetadata().require_pushed_authorization_requests, true);
    const { url, verifier, state, nonce } = await pushed(config, { scope: 'openid profile' });
    const back = await drive(url);
    assert.equal(back.searchParams.get('iss'), as.issuer);
    const tokens = await client.authorizationCodeGrant(config, back, { pkceCodeVerifier: verifier, expectedState: state, expectedNonce: nonce });
    const idToken = tokens.claims();
    assert.equal(idToken?.preferred_username, 'demo');
    assert.equal(idToken?.nonce, nonce);
    const userinfo = await client.fetchUserInfo(config, tokens.access_token, idToken!.sub);
    assert.equal(userinfo.name, 'Demo User');
    // The request_uri was spent by the visit: the same URL again is refused.
    const again = await fetch(url, { redirect: 'manual', headers: { accept: 'application/json' } });
    assert.equal(again.status, 400);
    assert.equal(((await again.json()) as { error: string }).error, 'invalid_request_uri');
  }

  it('a confidential client: push, sign-in, code, ID token checked by openid-client, userinfo (FormBrowser)', () => confidentialOidc(formBrowser));

  it('a public client with a resource (FormBrowser)', async () => {
    const config = await client.dynamicClientRegistration(
      new URL(as.issuer),
      { redirect_uris: [callback.redirectUri], grant_types: ['authorization_code'], token_endpoint_auth_method: 'none' },
      client.None(),
      insecure,
    );
    const { url, verifier, state } = await pushed(config, { scope: 'mcp:read', resource: as.resource });
    const tokens = await client.authorizationCodeGrant(config, await formBrowser(url), { pkceCodeVerifier: verifier, expectedState: state });
    assert.equal(decodeJwt(tokens.access_token).aud, as.resource);
    assert.equal(tokens.scope, 'mcp:read');
  });

  it('a private_key_jwt client authenticates its push with an assertion (RFC 9126 §2)', async () => {
    const { privateKey, publicKey } = await webcrypto.subtle.generateKey({ name: 'ECDSA', namedCurve: 'P-256' }, true, ['sign', 'verify']);
    const { kty, crv, x, y } = await webcrypto.subtle.exportKey('jwk', publicKey);
    const config = await client.dynamicClientRegistration(
      new URL(as.issuer),
      { redirect_uris: [callback.redirectUri], grant_types: ['authorization_code'], token_endpoint_auth_method: 'private_key_jwt', jwks: { keys: [{ kty: kty!, crv: crv!, x: x!, y: y!, kid: 'par-1', alg: 'ES256', use: 'sig' }] } },
      client.PrivateKeyJwt({ key: privateKey, kid: 'par-1' }),
      insecure,
    );
    const { url, verifier, state } = await pushed(config, { scope: 'mcp:read', resource: as.resource });
    const tokens = await client.authorizationCodeGrant(config, await formBrowser(url), { pkceCodeVerifier: verifier, expectedState: state });
    assert.equal(decodeJwt(tokens.access_token).client_id, config.clientMetadata().client_id);
  });

  it('without PAR, openid-client\'s plain authorization URL is refused (par.required)', async () => {
    const config = await client.dynamicClientRegistration(new URL(as.issuer), { client_name: 'no PAR', redirect_uris: [callback.redirectUri], grant_types: ['authorization_code'], token_endpoint_auth_method: 'none' }, client.None(), insecure);
    const url = client.buildAuthorizationUrl(config, { redirect_uri: callback.redirectUri, scope: 'mcp:read', resource: as.resource, code_challenge: await client.calculatePKCECodeChallenge(client.randomPKCECodeVerifier()), code_challenge_method: 'S256', state: 'plain' });
    const res = await fetch(url, { redirect: 'manual' });
    const back = new URL(res.headers.get('location')!);
    await assert.rejects(client.authorizationCodeGrant(config, back, { pkceCodeVerifier: client.randomPKCECodeVerifier(), expectedState: 'plain' }), (error: unknown) => {
      assert.ok(error instanceof client.AuthorizationResponseError, String(error));
      assert.equal(error.error, 'invalid_request');
      return true;
    });
  });

  describe('in Chromium', needsChromium(), () => {
    let browser: Browser;
    before(async () => {
      browser = await launchChromium();
    });
    after(async () => browser?.close());

    it('a confidential client: push, sign-in, code, ID token, userinfo', () => confidentialOidc(async (url) => (await authorizeInChromium(browser, url.href, { callback })).redirect));
  });
});
