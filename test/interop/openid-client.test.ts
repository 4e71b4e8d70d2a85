/**
 * Interoperability with openid-client v6 (panva), a certified OpenID Connect relying party library
 * this project did not write: discovery, dynamic registration, authorization code + PKCE with a
 * resource indicator and RFC 9207 `iss` validation, refresh, introspection, revocation, client
 * credentials (client_secret_basic and private_key_jwt), and an OpenID Connect sign-in with a
 * signature-checked ID token and userinfo. The code flows run twice: with the FormBrowser (every
 * machine) and with Chromium (skipped with a reason where it is absent, required in CI).
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

/** The test issuer is plain http on loopback; openid-client refuses that unless told otherwise. */
const insecure = { execute: [client.allowInsecureRequests] };

/** Drives an authorization URL through login and consent; returns the redirect to the client. */
type Drive = (authorizationUrl: URL, options?: { decision?: 'allow' | 'deny' }) => Promise<URL>;

const jwtHeader = (jwt: string) => JSON.parse(Buffer.from(jwt.split('.')[0]!, 'base64url').toString('utf8')) as Record<string, unknown>;

/** openid-client wraps protocol failures in ClientError (code, cause) or ResponseBodyError (error). */
const failsWith = (pattern: RegExp) => (error: unknown) => {
  const e = error as { message?: string; code?: string; error?: string; cause?: { message?: string } };
  const text = [e.message, e.code, e.error, e.cause?.message].join(' | ');
  assert.match(text, pattern);
  return true;
};


/** A PKCE (S256) authorization URL with fresh state (and nonce), as openid-client builds it. */
async function authorizationRequest(config: client.Configuration, params: Record<string, string>, options: { nonce?: boolean } = {}) {
  const verifier = client.randomPKCECodeVerifier();
  const state = client.randomState();
  const nonce = options.nonce ? client.randomNonce() : undefined;
  const url = client.buildAuthorizationUrl(config, {
    ...params,
    code_challenge: await client.calculatePKCECodeChallenge(verifier),
    code_challenge_method: 'S256',
    state,
    ...(nonce ? { nonce } : {}),
  });
  return { url, verifier, state, nonce: nonce! };
}

describe('openid-client v6 interoperability', () => {
  let as: TestAuthServer;
  let callback: CallbackServer;

  before(async () => {
    // This suite's clients register themselves: the deployment's scope allowlist (the default grants none).
    as = await startTestAuthServer({ registration: { allowed_scopes: ['mcp:read', 'mcp:write', 'api:read'], client_credentials: true } });
    callback = await startCallbackServer();
  });
  after(async () => {
    await callback?.close();
    await as?.close();
  });

  const registerConfidential = (metadata: Partial<client.ClientMetadata>) =>
    client.dynamicClientRegistration(new URL(as.issuer), { token_endpoint_auth_method: 'client_secret_basic', ...metadata }, client.ClientSecretBasic(), insecure);

  const formBrowser: Drive = (url, options) => new FormBrowser(as.issuer).authorize(url.href, options);

  /** Dynamic registration, then authorization code + PKCE for one resource, then refresh, introspection and revocation. */
  async function codeFlowWithResource(drive: Drive) {
    const config = await registerConfidential({
      client_name: 'openid-client interop app',
      redirect_uris: [callback.redirectUri],
      grant_types: ['authorization_code', 'refresh_token'],
    });
    const registered = config.clientMetadata();
    assert.equal(typeof registered.client_id, 'string');
    assert.equal(typeof registered.client_secret, 'string', 'a confidential client gets a secret');
    assert.equal(registered.token_endpoint_auth_method, 'client_secret_basic');

    const { url, verifier, state } = await authorizationRequest(config, {
      redirect_uri: callback.redirectUri,
      scope: 'mcp:read mcp:write',
      resource: as.resource,
    });
    assert.equal(url.origin + url.pathname, `${as.issuer}/authorize`);
    const back = await drive(url);
    assert.equal(back.origin + back.pathname, callback.redirectUri);
    assert.equal(back.searchParams.get('iss'), as.issuer);

    // RFC 9207: the server advertises authorization_response_iss_parameter_supported, so
    // openid-client requires `iss` and compares it with the issuer before it redeems the code.
    const mixedUp = new URL(back);
    mixedUp.searchParams.set('iss', 'https://attacker.example');
    await assert.rejects(client.authorizationCodeGrant(config, mixedUp, { pkceCodeVerifier: verifier, expectedState: state }), failsWith(/iss/));
    const withoutIss = new URL(back);
    withoutIss.searchParams.delete('iss');
    await assert.rejects(client.authorizationCodeGrant(config, withoutIss, { pkceCodeVerifier: verifier, expectedState: state }), failsWith(/iss.*missing/));
    // The state check is the client's own, and it still works with this server's responses.
    await assert.rejects(client.authorizationCodeGrant(config, back, { pkceCodeVerifier: verifier, expectedState: 'other' }), failsWith(/state/));

    const tokens = await client.authorizationCodeGrant(config, back, { pkceCodeVerifier: verifier, expectedState: state });
    assert.equal(tokens.token_type, 'bearer');
    assert.equal(tokens.scope, 'mcp:read mcp:write');
    assert.ok((tokens.expiresIn() ?? 0) > 0);
    assert.equal(tokens.id_token, undefined, 'no openid scope, no ID token');
    assert.ok(tokens.refresh_token, 'registered for refresh_token');
    assert.equal(jwtHeader(tokens.access_token).typ, 'at+jwt');
    const claims = decodeJwt(tokens.access_token);
    assert.equal(claims.iss, as.issuer);
    assert.equal(claims.aud, as.resource);
    assert.equal(claims.client_id, registered.client_id);
    assert.equal(claims.scope, 'mcp:read mcp:write');

    // Refresh rotates the refresh token; a refresh may narrow the scope and name the same resource.
    const refreshed = await client.refreshTokenGrant(config, tokens.refresh_token!);
    assert.ok(refreshed.refresh_token);
    assert.notEqual(refreshed.refresh_token, tokens.refresh_token);
    assert.equal(decodeJwt(refreshed.access_token).sub, claims.sub);
    assert.equal(decodeJwt(refreshed.access_token).aud, as.resource);
    const narrowed = await client.refreshTokenGrant(config, refreshed.refresh_token!, { scope: 'mcp:read', resource: as.resource });
    assert.equal(narrowed.scope, 'mcp:read');
    assert.equal(decodeJwt(narrowed.access_token).scope, 'mcp:read');

    // Introspection (RFC 7662) with the client's own authentication method.
    const active = await client.tokenIntrospection(config, narrowed.access_token);
    assert.equal(active.active, true);
    assert.equal(active.client_id, registered.client_id);
    assert.equal(active.sub, claims.sub);
    assert.equal(active.aud, as.resource);
    assert.equal(active.scope, 'mcp:read');
    const refreshInfo = await client.tokenIntrospection(config, narrowed.refresh_token!, { token_type_hint: 'refresh_token' });
    assert.equal(refreshInfo.active, true);

    // Revocation (RFC 7009): the access token first, then the refresh token and its whole grant.
    await client.tokenRevocation(config, narrowed.access_token);
    assert.deepEqual(await client.tokenIntrospection(config, narrowed.access_token), { active: false });
    assert.equal((await client.tokenIntrospection(config, refreshed.access_token)).active, true, 'other tokens of the grant stay valid');
    await client.tokenRevocation(config, narrowed.refresh_token!, { token_type_hint: 'refresh_token' });
    assert.equal((await client.tokenIntrospection(config, narrowed.refresh_token!, { token_type_hint: 'refresh_token' })).active, false);
    assert.equal((await client.tokenIntrospection(config, refreshed.access_token)).active, false, 'revoking the refresh token ends the grant');
    await assert.rejects(client.refreshTokenGrant(config, narrowed.refresh_token!), failsWith(/invalid_grant/));
  }

  /** OpenID Connect sign-in without a resource: ID token checked (signature included) and userinfo. */
  async function openIdSignIn(drive: Drive) {
    const fetched: string[] = [];
    const config = await client.dynamicClientRegistration(
      new URL(as.issuer),
      { client_name: 'openid-client OIDC app', redirect_uris: [callback.redirectUri], grant_types: ['authorization_code'], token_endpoint_auth_method: 'client_secret_basic' },
      client.ClientSecretBasic(),
      // Also verify the ID token's signature against jwks_uri (off by default for code flow responses).
      {
        execute: [client.allowInsecureRequests, client.enableNonRepudiationChecks],
        [client.customFetch]: (url, options) => {
          fetched.push(url);
          return fetch(url, options as RequestInit);
        },
      },
    );
    const { url, verifier, state, nonce } = await authorizationRequest(config, { redirect_uri: callback.redirectUri, scope: 'openid profile email' }, { nonce: true });
    const back = await drive(url);
    const tokens = await client.authorizationCodeGrant(config, back, { pkceCodeVerifier: verifier, expectedNonce: nonce, expectedState: state, maxAge: 600 });
    const idToken = tokens.claims();
    assert.ok(idToken, 'an ID token for the openid scope');
    assert.equal(idToken.iss, as.issuer);
    assert.equal(idToken.aud, config.clientMetadata().client_id);
    assert.equal(idToken.nonce, nonce);
    assert.equal(idToken.preferred_username, 'demo');
    assert.equal(idToken.email, 'demo@example.com');
    assert.equal(typeof idToken.auth_time, 'number');
    assert.equal(jwtHeader(tokens.id_token!).alg, 'ES256');
    assert.ok(fetched.includes(`${as.issuer}/jwks`), `the ID token signature was checked against jwks_uri; fetched ${fetched.join(', ')}`);
    assert.equal(decodeJwt(tokens.access_token).aud, as.issuer, 'no resource: the token is for the authorization server (userinfo)');

    const userinfo = await client.fetchUserInfo(config, tokens.access_token, idToken.sub);
    assert.equal(userinfo.sub, idToken.sub);
    assert.equal(userinfo.preferred_username, 'demo');
    assert.equal(userinfo.name, 'Demo User');
    assert.equal(userinfo.email, 'demo@example.com');
    await assert.rejects(client.fetchUserInfo(config, tokens.access_token, 'someone-else'), failsWith(/sub/));

    // The code is single-use, and a replay revokes what was issued from it (OAuth 2.1 §4.1.3).
    await assert.rejects(
      client.authorizationCodeGrant(config, back, { pkceCodeVerifier: verifier, expectedNonce: nonce, expectedState: state, maxAge: 600 }),
      failsWith(/invalid_grant/),
    );
    await assert.rejects(client.fetchUserInfo(config, tokens.access_token, idToken.sub), (error: unknown) => {
      assert.ok(error instanceof client.WWWAuthenticateChallengeError, String(error));
      assert.equal(error.status, 401);
      assert.equal(error.cause[0]?.scheme, 'bearer');
      assert.equal(error.cause[0]?.parameters.error, 'invalid_token');
      return true;
    });
  }

  it('discovers the server through OpenID Connect discovery and RFC 8414 metadata', async () => {
    for (const algorithm of ['oidc', 'oauth2'] as const) {
      const config = await client.discovery(new URL(as.issuer), 'some-client', undefined, undefined, { ...insecure, algorithm });
      const metadata = config.serverMetadata();
      assert.equal(metadata.issuer, as.issuer, algorithm);
      assert.equal(metadata.authorization_endpoint, `${as.issuer}/authorize`);
      assert.equal(metadata.token_endpoint, `${as.issuer}/token`);
      assert.equal(metadata.registration_endpoint, `${as.issuer}/register`);
      assert.equal(metadata.authorization_response_iss_parameter_supported, true);
      assert.ok(metadata.supportsPKCE('S256'), 'openid-client sees S256 PKCE support');
      assert.ok(metadata.code_challenge_methods_supported?.includes('S256'));
    }
  });

  it('authorization code + PKCE with a resource, refresh, introspection and revocation (FormBrowser)', () => codeFlowWithResource(formBrowser));

  it('an access_denied response is surfaced by openid-client as an authorization error (FormBrowser)', async () => {
    const config = await registerConfidential({ redirect_uris: [callback.redirectUri], grant_types: ['authorization_code'] });
    const { url, verifier, state } = await authorizationRequest(config, {
      redirect_uri: callback.redirectUri,
      scope: 'mcp:read',
      resource: as.resource,
    });
    const back = await formBrowser(url, { decision: 'deny' });
    await assert.rejects(client.authorizationCodeGrant(config, back, { pkceCodeVerifier: verifier, expectedState: state }), (error: unknown) => {
      assert.ok(error instanceof client.AuthorizationResponseError, String(error));
      assert.equal(error.error, 'access_denied');
      return true;
    });
  });

  it('OpenID Connect sign-in: ID token validated by openid-client, userinfo (FormBrowser)', () => openIdSignIn(formBrowser));

  it('max_age=0 makes a signed-in user authenticate again, and auth_time says so (OIDC Core §3.1.2.1)', async () => {
    const config = await registerConfidential({ redirect_uris: [callback.redirectUri], grant_types: ['authorization_code'] });
    const browser = new FormBrowser(as.issuer);
    const signIn = async (extra: Record<string, string>) => {
      const verifier = client.randomPKCECodeVerifier();
      const nonce = client.randomNonce();
      const url = client.buildAuthorizationUrl(config, {
        redirect_uri: callback.redirectUri,
        scope: 'openid',
        code_challenge: await client.calculatePKCECodeChallenge(verifier),
        code_challenge_method: 'S256',
        nonce,
        ...extra,
      });
      const back = await browser.authorize(url.href);
      const tokens = await client.authorizationCodeGrant(config, back, { pkceCodeVerifier: verifier, expectedNonce: nonce, ...(extra.max_age ? { maxAge: Number(extra.max_age) } : {}) });
      return tokens.claims()!;
    };
    const loginPages = () => browser.pages.filter((p) => p.html.includes('name="password"')).length;
    const first = await signIn({});
    assert.equal(loginPages(), 1);
    await new Promise((resolve) => setTimeout(resolve, 1100));
    const before = Math.floor(Date.now() / 1000);
    const second = await signIn({ max_age: '0' });
    assert.equal(loginPages(), 2, 'max_age=0: the session is older than 0 seconds, so the user must sign in again');
    assert.ok((second.auth_time ?? 0) >= before, `auth_time ${second.auth_time} is the new sign-in, not the first one (${first.auth_time})`);
  });

  it('client credentials with client_secret_basic', async () => {
    const config = await registerConfidential({ client_name: 'openid-client service', grant_types: ['client_credentials'], scope: 'api:read' });
    const tokens = await client.clientCredentialsGrant(config, { resource: 'https://api.example.test', scope: 'api:read' });
    assert.equal(tokens.token_type, 'bearer');
    assert.equal(tokens.refresh_token, undefined);
    const claims = decodeJwt(tokens.access_token);
    assert.equal(claims.sub, config.clientMetadata().client_id);
    assert.equal(claims.aud, 'https://api.example.test');
    assert.equal(claims.scope, 'api:read');
    assert.equal((await client.tokenIntrospection(config, tokens.access_token)).active, true);
    await client.tokenRevocation(config, tokens.access_token);
    assert.equal((await client.tokenIntrospection(config, tokens.access_token)).active, false);
  });

  it('client credentials with client_secret_post, openid-client\'s default authentication', async () => {
    const config = await client.dynamicClientRegistration(
      new URL(as.issuer),
      { grant_types: ['client_credentials'], token_endpoint_auth_method: 'client_secret_post' },
      undefined,
      insecure,
    );
    const tokens = await client.clientCredentialsGrant(config, { resource: 'https://api.example.test' });
    assert.equal(decodeJwt(tokens.access_token).sub, config.clientMetadata().client_id);
    assert.equal(decodeJwt(tokens.access_token).scope, 'api:read', 'no scope asked: all scopes of the resource');
  });

  it('a public client (none) runs the code flow and refreshes (FormBrowser)', async () => {
    const config = await client.dynamicClientRegistration(
      new URL(as.issuer),
      { redirect_uris: [callback.redirectUri], grant_types: ['authorization_code', 'refresh_token'], token_endpoint_auth_method: 'none' },
      client.None(),
      insecure,
    );
    assert.equal(config.clientMetadata().client_secret, undefined);
    const verifier = client.randomPKCECodeVerifier();
    const url = client.buildAuthorizationUrl(config, {
      redirect_uri: callback.redirectUri,
      scope: 'mcp:read',
      resource: as.resource,
      code_challenge: await client.calculatePKCECodeChallenge(verifier),
      code_challenge_method: 'S256',
    });
    const back = await formBrowser(url);
    assert.equal(back.searchParams.get('state'), null, 'no state sent, none returned');
    const tokens = await client.authorizationCodeGrant(config, back, { pkceCodeVerifier: verifier });
    assert.equal(decodeJwt(tokens.access_token).aud, as.resource);
    const refreshed = await client.refreshTokenGrant(config, tokens.refresh_token!);
    assert.equal(decodeJwt(refreshed.access_token).aud, as.resource);
    // A wrong PKCE verifier is refused by the server.
    const verifier2 = client.randomPKCECodeVerifier();
    const url2 = new URL(url);
    url2.searchParams.set('code_challenge', await client.calculatePKCECodeChallenge(verifier2));
    const back2 = await formBrowser(url2);
    await assert.rejects(client.authorizationCodeGrant(config, back2, { pkceCodeVerifier: client.randomPKCECodeVerifier() }), failsWith(/invalid_grant/));
  });

  it('client credentials with private_key_jwt', async () => {
    const { privateKey, publicKey } = await webcrypto.subtle.generateKey({ name: 'ECDSA', namedCurve: 'P-256' }, true, ['sign', 'verify']);
    const kid = 'interop-key-1';
    const { kty, crv, x, y } = await webcrypto.subtle.exportKey('jwk', publicKey);
    const jwk = { kty: kty!, crv: crv!, x: x!, y: y!, kid, alg: 'ES256', use: 'sig' };
    const config = await client.dynamicClientRegistration(
      new URL(as.issuer),
      { client_name: 'openid-client jwt service', grant_types: ['client_credentials'], token_endpoint_auth_method: 'private_key_jwt', jwks: { keys: [jwk] } },
      client.PrivateKeyJwt({ key: privateKey, kid }),
      insecure,
    );
    assert.equal(config.clientMetadata().client_secret, undefined, 'no secret for private_key_jwt');
    const tokens = await client.clientCredentialsGrant(config, { resource: as.resource, scope: 'mcp:read' });
    const claims = decodeJwt(tokens.access_token);
    assert.equal(claims.sub, config.clientMetadata().client_id);
    assert.equal(claims.aud, as.resource);
    // A fresh assertion (new jti) each time: a second request works too.
    assert.ok((await client.clientCredentialsGrant(config, { resource: as.resource, scope: 'mcp:read' })).access_token);
  });

  describe('in Chromium', needsChromium(), () => {
    let browser: Browser;
    before(async () => {
      browser = await launchChromium();
    });
    after(async () => browser?.close());

    const chromium: Drive = async (url, options) => (await authorizeInChromium(browser, url.href, { callback, decision: options?.decision })).redirect;

    it('authorization code + PKCE with a resource, refresh, introspection and revocation', () => codeFlowWithResource(chromium));

    it('OpenID Connect sign-in: ID token validated by openid-client, userinfo', () => openIdSignIn(chromium));
  });
});
