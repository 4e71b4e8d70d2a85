import type { JWK } from 'jose';
import { isOAuthError } from '../core/errors.ts';
import type { VerificationKey } from '../core/jwt.ts';
import { parseScope } from '../core/scopes.ts';
import { issuerMetadata, jwtValidator, type TokenClaims, type ValidationContext } from './token-validator.ts';
import type { RevocationVerdict } from './revocation-list.ts';

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
}

export type BearerCheck =
  | { ok: true; token: string; claims: TokenClaims; scopes: string[] }
  | { ok: false; status: 401 | 403 | 503; headers: Record<string, string>; body: { error: string; error_description: string }; reason?: string };

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
  const challenge = (scopes: string[], error?: string) =>
    `Bearer resource_metadata="${metadataUrl}"${scopes.length ? `, scope="${scopes.join(' ')}"` : ''}${error ? `, error="${error}"` : ''}`;

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
    },
    /**
     * Checks `Authorization: Bearer …` and that the token carries every scope in `required`.
     * `context.waitUntil` (Workers) keeps a key set fetch or revocation poll begun here running
     * after the response.
     */
    async check(authorization: string | undefined | null, required: string[] = [], context?: ValidationContext): Promise<BearerCheck> {
      const token = authorization ? /^Bearer +([A-Za-z0-9\-._~+/]+=*) *$/i.exec(authorization)?.[1] : undefined;
      if (!token) {
        return { ok: false, status: 401, headers: { 'WWW-Authenticate': challenge(required) }, body: { error: 'invalid_request', error_description: 'a bearer token is required' } };
      }
      let claims: TokenClaims;
      try {
        claims = await validator.validate(token, context);
      } catch (error) {
        if (isOAuthError(error) && error.code === 'temporarily_unavailable') {
          return { ok: false, status: 503, headers: { 'Retry-After': '5' }, body: { error: 'temporarily_unavailable', error_description: error.message } };
        }
        return { ok: false, status: 401, headers: { 'WWW-Authenticate': challenge(required, 'invalid_token') }, body: { error: 'invalid_token', error_description: 'the access token is invalid or expired' } };
      }
      const verdict = await options.revocations?.verdictFor(claims, context);
      if (verdict?.refuse === 'unavailable') {
        return { ok: false, status: 503, headers: { 'Retry-After': '1' }, body: { error: 'temporarily_unavailable', error_description: 'the revocation list is not loaded yet; retry shortly' } };
      }
      if (verdict) {
        return { ok: false, status: 401, headers: { 'WWW-Authenticate': challenge(required, 'invalid_token') }, body: { error: 'invalid_token', error_description: 'the access token is invalid or expired' }, reason: verdict.reason };
      }
      const scopes = parseScope(claims.scope);
      const missing = required.filter((scope) => !scopes.includes(scope));
      if (missing.length > 0) {
        return {
          ok: false,
          status: 403,
          headers: { 'WWW-Authenticate': challenge(required, 'insufficient_scope') },
          body: { error: 'insufficient_scope', error_description: `this needs ${missing.join(' ')}` },
        };
      }
      return { ok: true, token, claims, scopes };
    },
    close: () => validator.close(),
  };
}

export type ResourceServer = ReturnType<typeof resourceServer>;
