import * as oauth from 'oauth4webapi';
import { createRemoteJWKSet, jwtVerify, type JWTPayload } from 'jose';
import { isLoopbackUrl } from '../../config/gateway-web-schema.ts';

/** What a web route's relying party needs: its client at the AS and where the AS sends people back. */
export interface RelyingPartyOptions {
  issuer: string;
  clientId: string;
  /** Absent: a public client (PKCE only). */
  clientSecret?: string;
  redirectUri: string;
  scopes: string[];
  par: 'auto' | 'required' | 'off';
  userinfo: boolean;
  fetch?: typeof fetch;
}

/** A sign-in whose tokens the gateway has checked. */
export interface SignedIn {
  sub: string;
  sid?: string;
  claims: Record<string, unknown>;
  idToken: string;
  accessToken: string;
  refreshToken?: string;
  accessExpiresAt?: number;
}

/** Why a sign-in or logout message was refused: written to the audit log, never shown in full. */
export class RelyingPartyError extends Error {
  constructor(
    readonly rejection: 'signin_failed' | 'signin_denied' | 'as_unavailable' | 'par_failed' | 'logout_token_invalid' | 'refresh_failed',
    message: string,
  ) {
    super(message);
  }
}

/** OpenID Connect Back-Channel Logout 1.0 §2.4: the event a logout token must carry. */
export const BACKCHANNEL_LOGOUT_EVENT = 'http://schemas.openid.net/event/backchannel-logout';
/** §2.6: logout tokens older than this are refused (the AS sends them at once; a few minutes of skew). */
const LOGOUT_TOKEN_MAX_AGE_SECONDS = 300;

/**
 * The gateway as an OpenID Connect relying party for one web route (issue 15), on oauth4webapi:
 * discovery, the authorization request (code + PKCE S256 + state + nonce, pushed with PAR when the
 * AS offers it), the callback's checks (state, `iss` per RFC 9207, ID token, nonce), refresh,
 * userinfo, RP-initiated logout and the back-channel logout token.
 */
export class RelyingParty {
  private readonly client: oauth.Client;
  private readonly auth: oauth.ClientAuth;
  private readonly httpOptions: { [oauth.allowInsecureRequests]?: boolean; [oauth.customFetch]?: typeof fetch };
  private server: Promise<oauth.AuthorizationServer> | undefined;
  private jwks: ReturnType<typeof createRemoteJWKSet> | undefined;

  constructor(private readonly options: RelyingPartyOptions) {
    this.client = { client_id: options.clientId };
    this.auth = options.clientSecret ? oauth.ClientSecretBasic(options.clientSecret) : oauth.None();
    this.httpOptions = {
      // http only for an AS on this machine (the demo); the config schema refuses it elsewhere.
      ...(options.issuer.startsWith('http:') && isLoopbackUrl(options.issuer) ? { [oauth.allowInsecureRequests]: true } : {}),
      ...(options.fetch ? { [oauth.customFetch]: options.fetch } : {}),
    };
  }

  /** The AS metadata (OpenID Connect Discovery), fetched once; a failure is retried at the next use. */
  metadata(): Promise<oauth.AuthorizationServer> {
    this.server ??= (async () => {
      const issuer = new URL(this.options.issuer);
      const response = await oauth.discoveryRequest(issuer, { algorithm: 'oidc', ...this.httpOptions });
      return oauth.processDiscoveryResponse(issuer, response);
    })().catch((error: unknown) => {
      this.server = undefined;
      throw new RelyingPartyError('as_unavailable', `cannot read the authorization server metadata: ${(error as Error).message}`);
    });
    return this.server;
  }

  /** The URL to send the browser to, and what the callback needs to finish (kept server-side). */
  async startSignIn(): Promise<{ url: string; state: string; codeVerifier: string; nonce: string }> {
    const as = await this.metadata();
    const codeVerifier = oauth.generateRandomCodeVerifier();
    const state = oauth.generateRandomState();
    const nonce = oauth.generateRandomNonce();
    const params: Record<string, string> = {
      client_id: this.options.clientId,
      redirect_uri: this.options.redirectUri,
      response_type: 'code',
      scope: this.options.scopes.join(' '),
      state,
      nonce,
      code_challenge: await oauth.calculatePKCECodeChallenge(codeVerifier),
      code_challenge_method: 'S256',
    };
    const endpoint = new URL(as.authorization_endpoint!);
    const usePar = this.options.par !== 'off' && (as.pushed_authorization_request_endpoint !== undefined || as.require_pushed_authorization_requests === true);
    if (this.options.par === 'required' && !as.pushed_authorization_request_endpoint) {
      throw new RelyingPartyError('as_unavailable', 'oidc.par is required but the authorization server offers no pushed_authorization_request_endpoint');
    }
    if (usePar && as.pushed_authorization_request_endpoint) {
      // RFC 9126 §4: the browser carries only client_id and the request_uri.
      try {
        const response = await oauth.pushedAuthorizationRequest(as, this.client, this.auth, params, this.httpOptions);
        const pushed = await oauth.processPushedAuthorizationResponse(as, this.client, response);
        endpoint.searchParams.set('client_id', this.options.clientId);
        endpoint.searchParams.set('request_uri', pushed.request_uri);
      } catch (error) {
        // An OAuth error from /par is the AS refusing this request (a redirect URI it does not know…).
        const refused = error instanceof oauth.ResponseBodyError;
        throw new RelyingPartyError(refused ? 'par_failed' : 'as_unavailable', `the pushed authorization request failed: ${describe(error)}`);
      }
    } else {
      for (const [name, value] of Object.entries(params)) endpoint.searchParams.set(name, value);
    }
    return { url: endpoint.href, state, codeVerifier, nonce };
  }

  /** Checks the authorization response and redeems the code; `callback` is the full callback URL. */
  async finishSignIn(callback: URL, expected: { state: string; codeVerifier: string; nonce: string }): Promise<SignedIn> {
    const as = await this.metadata();
    let params: URLSearchParams;
    try {
      params = oauth.validateAuthResponse(as, this.client, callback, expected.state);
    } catch (error) {
      if (error instanceof oauth.AuthorizationResponseError) {
        throw new RelyingPartyError('signin_denied', `the authorization server answered ${error.error}${error.error_description ? `: ${error.error_description}` : ''}`);
      }
      throw new RelyingPartyError('signin_failed', `invalid authorization response: ${describe(error)}`);
    }
    let result: oauth.TokenEndpointResponse;
    try {
      const response = await oauth.authorizationCodeGrantRequest(as, this.client, this.auth, params, this.options.redirectUri, expected.codeVerifier, this.httpOptions);
      result = await oauth.processAuthorizationCodeResponse(as, this.client, response, { expectedNonce: expected.nonce, requireIdToken: true });
    } catch (error) {
      throw new RelyingPartyError('signin_failed', `the code could not be redeemed: ${describe(error)}`);
    }
    const idClaims = oauth.getValidatedIdTokenClaims(result)!;
    const claims: Record<string, unknown> = {};
    if (this.options.userinfo && as.userinfo_endpoint) {
      try {
        const response = await oauth.userInfoRequest(as, this.client, result.access_token, this.httpOptions);
        Object.assign(claims, await oauth.processUserInfoResponse(as, this.client, idClaims.sub, response));
      } catch {
        // userinfo adds claims; the ID token alone is a complete sign-in.
      }
    }
    Object.assign(claims, idClaims);
    return {
      sub: idClaims.sub,
      sid: typeof idClaims.sid === 'string' ? idClaims.sid : undefined,
      claims,
      idToken: result.id_token!,
      accessToken: result.access_token,
      refreshToken: result.refresh_token,
      accessExpiresAt: result.expires_in === undefined ? undefined : Math.floor(Date.now() / 1000) + result.expires_in,
    };
  }

  /** A new access token (and refresh token, ID token when the AS rotates them). */
  async refresh(refreshToken: string, expectedSub: string): Promise<Pick<SignedIn, 'accessToken' | 'refreshToken' | 'accessExpiresAt'> & { idToken?: string; idClaims?: Record<string, unknown> }> {
    const as = await this.metadata();
    try {
      const response = await oauth.refreshTokenGrantRequest(as, this.client, this.auth, refreshToken, this.httpOptions);
      const result = await oauth.processRefreshTokenResponse(as, this.client, response);
      const idClaims = oauth.getValidatedIdTokenClaims(result);
      if (idClaims && idClaims.sub !== expectedSub) throw new Error('the refreshed ID token names another subject');
      return {
        accessToken: result.access_token,
        refreshToken: result.refresh_token ?? refreshToken,
        accessExpiresAt: result.expires_in === undefined ? undefined : Math.floor(Date.now() / 1000) + result.expires_in,
        ...(idClaims ? { idToken: result.id_token, idClaims: { ...idClaims } } : {}),
      };
    } catch (error) {
      throw new RelyingPartyError('refresh_failed', `refreshing the access token failed: ${describe(error)}`);
    }
  }

  /** RP-Initiated Logout 1.0 §2: where to send the browser, when the AS has an end_session_endpoint. */
  async endSessionUrl(idToken: string | undefined, postLogoutRedirectUri: string): Promise<string | undefined> {
    let as: oauth.AuthorizationServer;
    try {
      as = await this.metadata();
    } catch {
      return undefined;
    }
    if (!as.end_session_endpoint) return undefined;
    const url = new URL(as.end_session_endpoint);
    if (idToken) url.searchParams.set('id_token_hint', idToken);
    url.searchParams.set('client_id', this.options.clientId);
    url.searchParams.set('post_logout_redirect_uri', postLogoutRedirectUri);
    return url.href;
  }

  /**
   * Verifies a logout token (OpenID Connect Back-Channel Logout 1.0 §2.6): signed by the AS keys,
   * `typ: logout+jwt`, `iss`, `aud` = this client, `iat` recent, the back-channel logout event,
   * `sid` and/or `sub`, no `nonce`, a `jti` (whose replay the caller refuses).
   */
  async verifyLogoutToken(token: string): Promise<{ sub?: string; sid?: string; jti: string; iat: number }> {
    const as = await this.metadata();
    if (!as.jwks_uri) throw new RelyingPartyError('as_unavailable', 'the authorization server metadata has no jwks_uri');
    this.jwks ??= createRemoteJWKSet(new URL(as.jwks_uri), { cooldownDuration: 10_000 });
    let payload: JWTPayload;
    try {
      ({ payload } = await jwtVerify(token, this.jwks, {
        issuer: as.issuer,
        audience: this.options.clientId,
        typ: 'logout+jwt',
        algorithms: ['ES256', 'ES384', 'RS256', 'PS256', 'EdDSA'],
        maxTokenAge: LOGOUT_TOKEN_MAX_AGE_SECONDS,
        clockTolerance: 30,
        requiredClaims: ['iat', 'jti'],
      }));
    } catch (error) {
      throw new RelyingPartyError('logout_token_invalid', `logout token refused: ${describe(error)}`);
    }
    const events = payload.events as Record<string, unknown> | undefined;
    const event = events && typeof events === 'object' ? events[BACKCHANNEL_LOGOUT_EVENT] : undefined;
    if (!event || typeof event !== 'object' || Array.isArray(event)) throw new RelyingPartyError('logout_token_invalid', 'logout token refused: no back-channel logout event');
    if ('nonce' in payload) throw new RelyingPartyError('logout_token_invalid', 'logout token refused: it carries a nonce');
    const sub = typeof payload.sub === 'string' ? payload.sub : undefined;
    const sid = typeof payload.sid === 'string' ? payload.sid : undefined;
    if (sub === undefined && sid === undefined) throw new RelyingPartyError('logout_token_invalid', 'logout token refused: neither sub nor sid');
    if (typeof payload.jti !== 'string' || payload.jti.length === 0) throw new RelyingPartyError('logout_token_invalid', 'logout token refused: no jti');
    return { sub, sid, jti: payload.jti, iat: payload.iat! };
  }
}

function describe(error: unknown): string {
  const e = error as { message?: string; code?: string; error?: string; cause?: { error?: string; error_description?: string } };
  if (e.cause && typeof e.cause === 'object' && typeof e.cause.error === 'string') return `${e.cause.error}${e.cause.error_description ? ` (${e.cause.error_description})` : ''}`;
  return `${e.code ? `${e.code}: ` : ''}${e.message ?? String(error)}`;
}
