import type { JWK } from 'jose';
import { isOAuthError } from '../core/errors.ts';
import type { VerificationKey } from '../core/jwt.ts';
import { parseScope } from '../core/scopes.ts';
import { issuerMetadata, jwtValidator, type TokenClaims, type ValidationContext } from './token-validator.ts';
import type { RevocationVerdict } from './revocation-list.ts';
import type { RouteDpopConfig } from '../config/gateway-schema.ts';
import { boundJkt, challenge as wwwAuthenticate, checkDpopPresentation, compileDpop, dpopMetadata, parseCredential, type AuthScheme, type DpopReplayStore } from './dpop.ts';

/** The route defaults of `dpop` (docs/configuration.md). */
const DPOP_DEFAULTS: RouteDpopConfig = { mode: 'off', algorithms: ['ES256', 'ES384', 'PS256', 'RS256', 'EdDSA'], proof_max_age_seconds: 300, require_nonce: false, replay: true, content_digest: 'verify' };

export interface ResourceServerOptions {
  /** The resource identifier: the `aud` tokens must carry, and the base of the metadata URL. */
  resource: string;
  issuer: string;
  scopesSupported?: string[];
  resourceName?: string;
  createVerifier?: (jwk: JWK, alg: string) => VerificationKey['verify'];
  /** The AS's revocation feed (`RevocationList`): revoked tokens, grants and disabled clients are refused; 503 until it is loaded. */
  revocations?: { verdictFor(claims: TokenClaims, context?: ValidationContext): RevocationVerdict | Promise<RevocationVerdict> };
  /**
   * How the AS's key set stays fresh: `timer` (a server, the default) or `on-use` (Workers, where
   * a timer set in a request never fires after it: a use that finds the set stale fetches it again,
   * under the `waitUntil` given to `check`).
   */
  jwksSchedule?: 'timer' | 'on-use';
  /** DPoP (RFC 9449 §7), as a gateway route's `dpop` block; off by default. Needs `check`'s object form. */
  dpop?: Partial<RouteDpopConfig>;
  /** Where proof `jti`s are remembered; default this process's memory. */
  dpopReplay?: DpopReplayStore;
  /** The key of the stateless nonces (`require_nonce`), shared by every instance; default a random key of this process. */
  dpopNonceKey?: Uint8Array;
}

export type BearerCheck =
  | { ok: true; token: string; claims: TokenClaims; scopes: string[]; scheme: AuthScheme; /** The proof key's thumbprint (DPoP). */ jkt?: string }
  | { ok: false; status: 401 | 403 | 503; headers: Record<string, string>; body: { error: string; error_description: string }; reason?: string; /** Short kind for a log, as the gateway's audit `rejection`. */ rejection?: string };

/** One request, for `check`'s object form (needed for DPoP). */
export interface ResourceRequest {
  authorization: string | undefined | null;
  /** The `DPoP` header(s). */
  dpop?: string | string[] | null;
  method: string;
  /** The request's public URL (this resource's origin and the path), never built from the Host header. */
  url: string;
  /** The raw body, for the proof's `content_digest`. */
  body?: Uint8Array | string;
}

/**
 * Bearer-token protection for any HTTP framework (what the gateway does, for a resource server
 * that protects itself, e.g. the Todo MCP server and the Todo API): a local JWT check against the
 * AS's keys (RFC 9068), the challenge of RFC 6750 §3 with the protected resource metadata URL of
 * RFC 9728 §5.1, and the metadata document itself.
 */
export function resourceServer(options: ResourceServerOptions) {
  const resource = new URL(options.resource);
  const metadataPath = `/.well-known/oauth-protected-resource${resource.pathname === '/' ? '' : resource.pathname.replace(/\/$/, '')}`;
  const metadataUrl = `${resource.origin}${metadataPath}`;
  const validator = jwtValidator({
    issuer: options.issuer,
    audience: options.resource,
    metadata: issuerMetadata(options.issuer),
    algorithms: ['ES256', 'RS256', 'PS256', 'EdDSA'],
    typ: 'at+jwt',
    clockSkewSeconds: 5,
    refreshSeconds: 300,
    minRefreshSeconds: 10,
    cacheEntries: 10_000,
    createVerifier: options.createVerifier,
    schedule: options.jwksSchedule,
  });
  const dpop = compileDpop({ ...DPOP_DEFAULTS, ...options.dpop }, { replay: options.dpopReplay, nonceKey: options.dpopNonceKey });
  const challenge = (scopes: string[], error?: string, scheme: AuthScheme = dpop?.mode === 'require' ? 'DPoP' : 'Bearer', description?: string) =>
    wwwAuthenticate(dpop, { metadataUrl, scopes, error, scheme, description });
  const refused = (status: 401 | 403, scheme: AuthScheme, required: string[], error: string, description: string, rejection: string, reason?: string, headers: Record<string, string> = {}) =>
    // Bearer challenges stay as they were (no error_description); DPoP ones say what went wrong.
    ({ ok: false, status, headers: { 'WWW-Authenticate': challenge(required, error, scheme, scheme === 'DPoP' || rejection === 'dpop_downgrade' ? description : undefined), ...headers }, body: { error, error_description: description }, reason, rejection }) as const;

  return {
    metadataPath,
    metadataUrl,
    /** RFC 9728 §2 */
    metadata: {
      resource: options.resource,
      authorization_servers: [options.issuer],
      scopes_supported: options.scopesSupported ?? [],
      bearer_methods_supported: ['header'],
      ...(options.resourceName ? { resource_name: options.resourceName } : {}),
      ...dpopMetadata(dpop),
    },
    /**
     * Checks the credentials (`Authorization: Bearer …`, or `DPoP …` with its proof when `dpop` is
     * on) and that the token carries every scope in `required`. The positional form (the
     * Authorization header alone) cannot check a proof: it takes Bearer tokens only.
     * `context.waitUntil` (Workers) keeps a key set fetch or revocation poll begun here running
     * after the response.
     */
    async check(request: ResourceRequest | string | undefined | null, required: string[] = [], context?: ValidationContext): Promise<BearerCheck> {
      const full = typeof request === 'object' && request !== null ? request : undefined;
      const authorization = full ? full.authorization : (request as string | undefined | null);
      const credential = authorization ? parseCredential(authorization) : undefined;
      if (!credential || (credential.scheme === 'DPoP' && (!dpop || !full))) {
        if (!authorization) return { ok: false, status: 401, headers: { 'WWW-Authenticate': challenge(required) }, body: { error: 'invalid_request', error_description: 'a bearer token is required' }, rejection: 'no_token' };
        return refused(401, 'Bearer', required, 'invalid_request', 'a bearer token is required', 'invalid_token', 'Authorization is not a token of an accepted scheme');
      }
      const { token, scheme } = credential;
      let claims: TokenClaims;
      try {
        claims = await validator.validate(token, context);
      } catch (error) {
        if (isOAuthError(error) && error.code === 'temporarily_unavailable') {
          return { ok: false, status: 503, headers: { 'Retry-After': '5' }, body: { error: 'temporarily_unavailable', error_description: error.message } };
        }
        return refused(401, scheme, required, 'invalid_token', 'the access token is invalid or expired', 'invalid_token', isOAuthError(error) ? error.reason : undefined);
      }
      const verdict = await options.revocations?.verdictFor(claims, context);
      if (verdict?.refuse === 'unavailable') {
        return { ok: false, status: 503, headers: { 'Retry-After': '1' }, body: { error: 'temporarily_unavailable', error_description: 'the revocation list is not loaded yet; retry shortly' } };
      }
      if (verdict) return refused(401, scheme, required, 'invalid_token', 'the access token is invalid or expired', 'invalid_token', verdict.reason);
      let jkt: string | undefined;
      if (scheme === 'Bearer') {
        // RFC 9449 §7.2: a bound token is never accepted as a Bearer token, DPoP on or off here.
        if (boundJkt(claims) !== undefined) return refused(401, 'Bearer', required, 'invalid_token', 'the access token is DPoP-bound: present it with the DPoP scheme and a proof', 'dpop_downgrade', 'a DPoP-bound access token (cnf.jkt) was presented with the Bearer scheme');
        if (dpop?.mode === 'require') return refused(401, 'DPoP', required, 'invalid_token', 'this resource requires a DPoP-bound access token', 'dpop_required', 'this resource accepts DPoP-bound access tokens only');
      } else {
        const body = full!.body;
        const outcome = await checkDpopPresentation(dpop!, {
          proofs: full!.dpop ?? undefined,
          method: full!.method,
          url: full!.url,
          token,
          claims,
          body: body === undefined ? undefined : () => (typeof body === 'string' ? new TextEncoder().encode(body) : body),
        });
        if (!outcome.ok) {
          if (outcome.status === 503) return { ok: false, status: 503, headers: { 'Retry-After': '1' }, body: { error: 'temporarily_unavailable', error_description: 'retry shortly' }, reason: outcome.reason, rejection: outcome.rejection };
          const description = outcome.error === 'use_dpop_nonce' ? 'use the DPoP nonce this response carries' : outcome.error === 'invalid_token' ? 'the access token is not bound to the key of this proof' : 'the DPoP proof is invalid';
          return refused(401, 'DPoP', required, outcome.error, description, outcome.rejection, outcome.reason, outcome.nonce ? { 'DPoP-Nonce': outcome.nonce } : {});
        }
        jkt = outcome.jkt;
      }
      const scopes = parseScope(claims.scope);
      const missing = required.filter((scope) => !scopes.includes(scope));
      if (missing.length > 0) {
        return refused(403, scheme, required, 'insufficient_scope', `this needs ${missing.join(' ')}`, 'insufficient_scope');
      }
      return { ok: true, token, claims, scopes, scheme, ...(jkt ? { jkt } : {}) };
    },
    close: () => validator.close(),
  };
}

export type ResourceServer = ReturnType<typeof resourceServer>;
