/**
 * The access token of a request to one of the authorization server's own protected resources (the
 * admin API, the admin MCP server, `/userinfo`, the transactions API), with RFC 9449 §7 applied as
 * the gateway and `resourceServer()` do (src/gateway/dpop.ts):
 * - a DPoP-bound token (`cnf.jkt`) under the `Bearer` scheme is refused, 401 `invalid_token` with a
 *   `DPoP` challenge (§7.1: no downgrade, a stolen bound token is worth nothing without its key);
 * - the `DPoP` scheme needs a proof: `htm`, `htu` = our issuer + the path (never the Host header),
 *   `ath`, `iat`, the `jti` once (the server's cache: Redis or the bounded memory, which fails
 *   closed: 503), and its key = the token's `cnf.jkt`.
 */
import type { Context } from 'hono';
import { OAuthError } from '../core/errors.ts';
import type { AccessTokenClaims } from '../core/jwt.ts';
import { boundJkt, checkDpopPresentation, parseCredential, type AuthScheme, type CompiledDpop } from '../gateway/dpop.ts';
import type { ServerContext } from './context.ts';
import { lookupToken } from './token-lookup.ts';

/** What a protected resource of the AS learns from a request's credentials. */
export type RequestToken =
  /** No `Authorization: Bearer|DPoP` credential. */
  | { kind: 'none' }
  /** An active access token of this issuer, its binding checked. */
  | { kind: 'token'; token: string; scheme: AuthScheme; claims: AccessTokenClaims; grantId?: string; jkt?: string }
  /** Refused: answer `status` with `error` and `challenge`; `reason` is for the audit log only. */
  | { kind: 'refused'; status: 401 | 503; error: 'invalid_token' | 'invalid_dpop_proof' | 'use_dpop_nonce' | 'temporarily_unavailable'; reason: string; description: string; challenge: string };

/** The refusal reason of a token that is not an active access token of this issuer. */
export const TOKEN_NOT_ACTIVE = 'token invalid, expired or revoked';

const compiled = new WeakMap<ServerContext, CompiledDpop>();

/** The AS's own resources take proofs as its token endpoint does (`dpop.*`); proofs' jtis go to its cache. */
function dpopOf(ctx: ServerContext): CompiledDpop {
  let dpop = compiled.get(ctx);
  if (!dpop) {
    const { signing_alg_values, proof_max_age_seconds } = ctx.config.dpop;
    dpop = { mode: 'allow', algorithms: signing_alg_values, maxAgeSeconds: proof_max_age_seconds, contentDigest: 'ignore', replay: { claim: (key, ttl) => ctx.cache.add(key, 1, ttl) } };
    compiled.set(ctx, dpop);
  }
  return dpop;
}

/**
 * RFC 9449 §7.1 challenge of a refusal: `DPoP algs=…` with the error, or `Bearer` for an unbound
 * token presented as Bearer. `extra` (already formatted, e.g. `resource_metadata="…"`) goes first.
 */
function challengeOf(ctx: ServerContext, scheme: 'Bearer' | 'DPoP', error: string, extra?: string): string {
  const params = [...(extra ? [extra] : []), `error="${error}"`];
  return scheme === 'DPoP' ? `DPoP algs="${ctx.config.dpop.signing_alg_values.join(' ')}", ${params.join(', ')}` : `Bearer ${params.join(', ')}`;
}

/**
 * The request's access token. Several credentials (two Authorization headers, a header and an
 * `access_token` query parameter) are `invalid_request` (thrown, RFC 6750 §3.1), as bearerToken()
 * does. `challengeParams`: the resource's own challenge parameters (its `resource_metadata`).
 */
export async function accessTokenFromRequest(ctx: ServerContext, c: Context, options: { challengeParams?: string } = {}): Promise<RequestToken> {
  const header = c.req.header('authorization');
  const several = header?.includes(',') ? 'more than one Authorization header' : header && c.req.query('access_token') !== undefined ? 'a token in both the Authorization header and the query' : undefined;
  if (several) {
    throw new OAuthError('invalid_request', 'send the access token once, in the Authorization header', { reason: several, headers: { 'WWW-Authenticate': 'Bearer error="invalid_request"' } });
  }
  const credential = header ? parseCredential(header.trim()) : undefined;
  if (!credential) return { kind: 'none' };
  const { scheme, token } = credential;
  const refused = (status: 401 | 503, error: Extract<RequestToken, { kind: 'refused' }>['error'], reason: string, description: string, challengeScheme: 'Bearer' | 'DPoP' = scheme): RequestToken => ({
    kind: 'refused',
    status,
    error,
    reason,
    description,
    challenge: challengeOf(ctx, challengeScheme, error, options.challengeParams),
  });
  const found = await lookupToken(ctx, token, 'access_token');
  if (found?.kind !== 'access_token') return refused(401, 'invalid_token', TOKEN_NOT_ACTIVE, 'the access token is invalid or expired');
  const bound = boundJkt(found.claims);
  if (scheme === 'Bearer') {
    if (bound !== undefined) return refused(401, 'invalid_token', 'dpop_downgrade: a DPoP-bound token (cnf.jkt) presented as Bearer', 'the access token is DPoP-bound: use the DPoP scheme with a proof', 'DPoP');
    return { kind: 'token', token, scheme, claims: found.claims, ...(found.grantId !== undefined ? { grantId: found.grantId } : {}) };
  }
  const checked = await checkDpopPresentation(dpopOf(ctx), { proofs: c.req.raw.headers.get('dpop') ?? undefined, method: c.req.method, url: ctx.url(c.req.path), token, claims: found.claims, now: ctx.now() });
  if (!checked.ok) {
    const description = checked.status === 503 ? 'the service is temporarily unavailable; try again shortly' : checked.error === 'invalid_token' ? 'the access token is not bound to the proof key' : 'the DPoP proof is invalid';
    return refused(checked.status, checked.error, `${checked.rejection}: ${checked.reason}`, description);
  }
  return { kind: 'token', token, scheme, claims: found.claims, jkt: checked.jkt, ...(found.grantId !== undefined ? { grantId: found.grantId } : {}) };
}

/** A refusal as an OAuthError (for endpoints answered by the AS's error handler, which audits the reason). */
export function refusalError(refusal: Extract<RequestToken, { kind: 'refused' }>): OAuthError {
  return new OAuthError(refusal.error, refusal.description, { status: refusal.status, reason: refusal.reason, headers: { 'WWW-Authenticate': refusal.challenge } });
}
