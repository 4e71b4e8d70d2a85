import { decodeJwt } from 'jose';
import { authorizationServerMetadata } from './discovery.ts';
import { AgentError, fromOAuthError } from './errors.ts';
import { deviceAuthorization, pkce, pollDevice, revokeToken, startLoopbackSignIn, tokenRequest, type ClientCredentials, type TokenResponse } from './oauth.ts';
import type { EnterpriseOptions } from './options.ts';
import type { CredentialStore, IdpSignIn } from './store.ts';

/**
 * The person's sign-in at the enterprise IdP, for `mode: 'enterprise'` (MCP EMA §4: the client
 * holds the person's ID token from the IdP). Made once — in a browser (authorization code + PKCE on
 * a loopback redirect) or on another device (RFC 8628) — and kept in the credentials file under the
 * IdP's issuer: the ID token, and the refresh token that gets a fresh one (OIDC Core §12.2) when it
 * expires. Later runs exchange it for ID-JAGs without a browser anywhere.
 */
export interface IdpSignInOptions {
  store: CredentialStore;
  /** Port of the loopback redirect (0 = any free port). */
  callbackPort: number;
  onAuthorizationUrl?: (url: string) => void | Promise<void>;
  onDeviceCode?: (verification: { verificationUri: string; verificationUriComplete?: string; userCode: string; expiresIn: number }) => void | Promise<void>;
}

/** The IdP's metadata (RFC 8414 / OIDC discovery, its issuer checked), a usage error without an issuer. */
export async function idpMetadata(enterprise: EnterpriseOptions): Promise<Record<string, unknown>> {
  if (!enterprise.idpIssuer) throw new AgentError('usage', 'signing in at the identity provider needs its issuer (--idp)');
  try {
    return await authorizationServerMetadata(enterprise.idpIssuer);
  } catch (error) {
    if (error instanceof AgentError) throw error;
    throw new AgentError('unreachable', `cannot use the identity provider ${enterprise.idpIssuer}: ${(error as Error).message}`);
  }
}

/** The agent's client at the IdP, authenticating the way the IdP takes (Basic unless it lists only `client_secret_post`). */
export function idpClient(enterprise: EnterpriseOptions, metadata: Record<string, unknown> = {}): ClientCredentials {
  const supported = metadata.token_endpoint_auth_methods_supported;
  const postOnly = Array.isArray(supported) && !supported.includes('client_secret_basic') && supported.includes('client_secret_post');
  return {
    clientId: enterprise.idpClientId,
    clientSecret: enterprise.idpClientSecret,
    ...(enterprise.idpClientSecret && postOnly ? { authMethod: 'client_secret_post' as const } : {}),
    ...(enterprise.idpIssuer ? { assertionAudience: enterprise.idpIssuer } : {}),
  };
}

const endpoint = (metadata: Record<string, unknown>, name: string, issuer: string): string => {
  const value = metadata[name];
  if (typeof value !== 'string') throw new AgentError('protocol', `the identity provider ${issuer} names no ${name}`);
  return value;
};

/** The scopes of the sign-in: an ID token (`openid`), the person's email for linking at the MCP AS, and a refresh token where the IdP lists `offline_access`. */
function scopesFor(metadata: Record<string, unknown>): string {
  const supported = Array.isArray(metadata.scopes_supported) ? (metadata.scopes_supported as string[]) : [];
  return ['openid', 'profile', 'email', ...(supported.includes('offline_access') ? ['offline_access'] : [])].filter((scope) => scope === 'openid' || supported.length === 0 || supported.includes(scope)).join(' ');
}

/** What is kept of an IdP token response: the ID token (its `exp` is when it must be renewed) and the refresh token. */
function kept(token: TokenResponse, clientId: string, previous?: IdpSignIn): IdpSignIn {
  if (!token.id_token) throw new AgentError('protocol', 'the identity provider issued no ID token (was openid granted?)');
  const exp = decodeJwt(token.id_token).exp;
  return {
    client_id: clientId,
    id_token: token.id_token,
    expires_at: typeof exp === 'number' ? exp : Math.floor(Date.now() / 1000) + (token.expires_in ?? 300),
    ...((token.refresh_token ?? previous?.refresh_token) ? { refresh_token: token.refresh_token ?? previous?.refresh_token } : {}),
  };
}

async function save(store: CredentialStore, issuer: string, signIn: IdpSignIn): Promise<IdpSignIn> {
  await store.update(issuer, (current) => ({ ...current, idp_sign_in: signIn }));
  return signIn;
}

/** Signs the person in at the IdP in a browser (authorization code + PKCE S256, loopback redirect, RFC 9207 `iss` checked) and keeps the sign-in. */
export async function signInAtIdp(enterprise: EnterpriseOptions, options: IdpSignInOptions): Promise<IdpSignIn> {
  const metadata = await idpMetadata(enterprise);
  const issuer = enterprise.idpIssuer!;
  const authorize = endpoint(metadata, 'authorization_endpoint', issuer);
  const loopback = await startLoopbackSignIn({ port: options.callbackPort });
  try {
    const { verifier, challenge } = pkce();
    const state = crypto.randomUUID();
    const url = new URL(authorize);
    url.search = new URLSearchParams({
      response_type: 'code',
      client_id: enterprise.idpClientId,
      redirect_uri: loopback.redirectUri,
      code_challenge: challenge,
      code_challenge_method: 'S256',
      scope: scopesFor(metadata),
      state,
    }).toString();
    await options.onAuthorizationUrl?.(url.href);
    const answer = await loopback.result;
    if (answer.get('error')) throw fromOAuthError(answer.get('error') ?? undefined, answer.get('error_description') ?? undefined, 'the sign-in at the identity provider');
    if (answer.get('state') !== state) throw new AgentError('protocol', 'the sign-in answer carries another state: ignored');
    const iss = answer.get('iss');
    if (iss === null && metadata.authorization_response_iss_parameter_supported === true) throw new AgentError('protocol', `the sign-in answer carries no iss, though ${issuer} says it sends one (RFC 9207): not redeemed`);
    if (iss !== null && iss !== issuer) throw new AgentError('protocol', `the sign-in answer comes from ${iss}, not ${issuer}: not redeemed`);
    const token = await tokenRequest(
      endpoint(metadata, 'token_endpoint', issuer),
      { grant_type: 'authorization_code', code: answer.get('code') ?? '', code_verifier: verifier, redirect_uri: loopback.redirectUri },
      idpClient(enterprise, metadata),
      'the sign-in at the identity provider',
    );
    return await save(options.store, issuer, kept(token, enterprise.idpClientId));
  } finally {
    loopback.close();
  }
}

/** Signs the person in at the IdP on another device (RFC 8628) and keeps the sign-in. */
export async function signInAtIdpWithDevice(enterprise: EnterpriseOptions, options: IdpSignInOptions): Promise<IdpSignIn> {
  const metadata = await idpMetadata(enterprise);
  const issuer = enterprise.idpIssuer!;
  const client = idpClient(enterprise, metadata);
  const started = await deviceAuthorization(endpoint(metadata, 'device_authorization_endpoint', issuer), { scope: scopesFor(metadata) }, client);
  await options.onDeviceCode?.({ verificationUri: started.verification_uri, verificationUriComplete: started.verification_uri_complete, userCode: started.user_code, expiresIn: started.expires_in });
  const tokenEndpoint = endpoint(metadata, 'token_endpoint', issuer);
  let interval = (started.interval ?? 5) * 1000;
  const deadline = Date.now() + started.expires_in * 1000;
  while (Date.now() < deadline) {
    await new Promise((resolve) => setTimeout(resolve, interval));
    const answer = await pollDevice(tokenEndpoint, started.device_code, client);
    if (answer === 'authorization_pending') continue;
    if (answer === 'slow_down') {
      interval += 5_000;
      continue;
    }
    return save(options.store, issuer, kept(answer, enterprise.idpClientId));
  }
  throw new AgentError('consent_denied', 'the code expired before the sign-in was completed');
}

/**
 * The person's ID token for the ID-JAG exchange: the one given in the options, else the kept
 * sign-in's while it lives (30 s margin), else a fresh one from its refresh token. No sign-in (or
 * one that cannot be renewed): `not_signed_in`, naming the command that signs in.
 */
export async function idpIdToken(enterprise: EnterpriseOptions, store: CredentialStore): Promise<string> {
  if (enterprise.idToken !== undefined) return typeof enterprise.idToken === 'function' ? enterprise.idToken() : enterprise.idToken;
  const issuer = enterprise.idpIssuer;
  const login = `\`mandate agent login --idp ${issuer ?? '<issuer>'} --idp-client-id ${enterprise.idpClientId}\``;
  if (!issuer) throw new AgentError('usage', 'enterprise mode needs the ID token, or the IdP issuer whose sign-in is kept');
  const signIn = (await store.get(issuer))?.idp_sign_in;
  if (!signIn || signIn.client_id !== enterprise.idpClientId) throw new AgentError('not_signed_in', `not signed in at the identity provider ${issuer}: run ${login}`);
  if (signIn.expires_at > Date.now() / 1000 + 30) return signIn.id_token;
  if (!signIn.refresh_token) throw new AgentError('not_signed_in', `the sign-in at ${issuer} has expired: run ${login}`);
  const metadata = await idpMetadata(enterprise);
  let token: TokenResponse;
  try {
    token = await tokenRequest(endpoint(metadata, 'token_endpoint', issuer), { grant_type: 'refresh_token', refresh_token: signIn.refresh_token }, idpClient(enterprise, metadata), 'refreshing the sign-in at the identity provider');
  } catch (error) {
    if (error instanceof AgentError && error.kind === 'not_signed_in') throw new AgentError('not_signed_in', `${error.message.replace(/ — sign in again.*$/, '')}: run ${login}`, error.oauthError, error.oauthDescription);
    throw error;
  }
  return (await save(store, issuer, kept(token, enterprise.idpClientId, signIn))).id_token;
}

/** Forgets the sign-in kept at the IdP, revoking its refresh token there (RFC 7009) when the IdP offers revocation. */
export async function signOutAtIdp(enterprise: EnterpriseOptions, store: CredentialStore): Promise<boolean> {
  const issuer = enterprise.idpIssuer;
  if (!issuer) throw new AgentError('usage', 'signing out at the identity provider needs its issuer (--idp)');
  const signIn = (await store.get(issuer))?.idp_sign_in;
  if (!signIn) return false;
  if (signIn.refresh_token) {
    const metadata = await idpMetadata(enterprise).catch(() => ({}) as Record<string, unknown>);
    if (typeof metadata.revocation_endpoint === 'string') await revokeToken(metadata.revocation_endpoint, { token: signIn.refresh_token, token_type_hint: 'refresh_token' }, idpClient(enterprise, metadata));
  }
  await store.update(issuer, (current) => {
    if (!current) return current;
    const { idp_sign_in: _gone, ...rest } = current;
    return Object.keys(rest).length > 0 ? rest : undefined;
  });
  return true;
}
