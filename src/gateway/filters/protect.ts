import type { Context, MiddlewareHandler, Next } from 'hono';
import { isOAuthError } from '../../core/errors.ts';
import type { CompiledRoute } from '../route.ts';
import { SessionStoreUnavailable, type SessionStore } from '../sessions.ts';
import type { TokenClaims, ValidationContext } from '../token-validator.ts';
import type { GatewayAuditEvent, GatewayEnv, GatewayFilter, Principal } from '../types.ts';
import { auditedActor, principalOf } from '../principal.ts';
import { celVariables, scopeChallenge } from './authorize.ts';
import { GATEWAY_ERRORS, refuse } from './refuse.ts';
import { evaluateRule } from '../rule-verdicts.ts';
import { credentialRepeated, requestHeader } from '../headers.ts';
import { JSON_RPC_ERRORS } from '../mcp-message.ts';
import { posesAsAnotherIssuer, qualifiedPrincipal, UnknownIssuerError, type TrustedIssuer } from '../issuers.ts';
import { boundJkt, checkDpopPresentation, parseCredential, type AuthScheme } from '../dpop.ts';

/** RFC 6750 §2.3's query parameter, refused here: query tokens end up in logs and history. */
const hasQueryToken = (url: string): boolean => {
  const query = url.indexOf('?');
  return query >= 0 && new URLSearchParams(url.slice(query + 1)).has('access_token');
};

/** The code the MCP SDK servers answer an unknown session with (with HTTP 404). */
const SESSION_NOT_FOUND = -32001;
const SESSION_REASONS = {
  unknown: 'no binding for this Mcp-Session-Id (never opened through a gateway sharing these bindings, ended, or idle past its lifetime)',
  other_subject: 'session opened by another subject',
  other_client: 'session opened by the same subject through another client',
} as const;

/**
 * The protection filter (RFC 6750, RFC 9728, RFC 9068 §4): a valid token for this route's resource,
 * the route's scopes, and the route's CEL rules. A 401 points the client at the protected
 * resource metadata so it can find the authorization server on its own (MCP authorization).
 */
export function protect(route: CompiledRoute, sessions?: SessionStore): GatewayFilter {
  const routeScopes = route.config.scopes;
  const dpop = route.dpop;
  // The scheme of a challenge with an error when the request's own scheme is unknown.
  const defaultScheme: AuthScheme = dpop?.mode === 'require' ? 'DPoP' : 'Bearer';
  // DPoP `htu` (RFC 9449 §4.3 (9)): the route's public origin and the request path, not the Host header.
  const publicOrigin = new URL(route.config.resource).origin;
  const encoder = new TextEncoder();

  // Only refusals name scopes: built when one is answered, not on every request.
  const neededScopes = (c: Context<GatewayEnv>) => {
    const toolName = c.get('mcp').message?.toolName;
    return [...routeScopes, ...(toolName ? (route.tools.get(toolName)?.scopes ?? []) : [])];
  };
  const unauthorized = (c: Context<GatewayEnv>, rejection: string, reason: string, error?: string, scheme: AuthScheme = defaultScheme, extra: { description?: string; message?: string; headers?: Record<string, string> } = {}) =>
    refuse(c, {
      status: 401,
      code: GATEWAY_ERRORS.unauthorized,
      message: extra.message ?? (error ? 'the access token is invalid or expired' : 'an access token is required'),
      rejection,
      reason,
      headers: { 'WWW-Authenticate': scopeChallenge(route, neededScopes(c), error, scheme, extra.description), ...extra.headers },
    });

  /** A Bearer presentation of a token whose claims are known: refused if the token is bound, or the route wants DPoP. */
  const bearerRefusal = (c: Context<GatewayEnv>, claims: TokenClaims): Response | undefined => {
    // RFC 9449 §7.2: a bound token sent as Bearer is refused, whatever the route's mode (a thief
    // of the token alone must not get around the proof by naming the other scheme).
    if (boundJkt(claims) !== undefined) return unauthorized(c, 'dpop_downgrade', 'a DPoP-bound access token (cnf.jkt) was presented with the Bearer scheme', 'invalid_token', 'Bearer', { description: 'the access token is DPoP-bound: present it with the DPoP scheme and a proof' });
    if (dpop?.mode === 'require') return unauthorized(c, 'dpop_required', 'this route accepts DPoP-bound access tokens only', 'invalid_token', 'DPoP', { description: 'this resource requires a DPoP-bound access token', message: 'a DPoP-bound access token is required' });
    return undefined;
  };

  /** Who is calling (`c.get('principal')`, recorded in the audit event), from verified, unrevoked and properly presented claims; or the refusal. */
  const identify = (c: Context<GatewayEnv>, token: string, scheme: AuthScheme, claims: TokenClaims, issuer: TrustedIssuer): Response | undefined => {
    const plain = principalOf(token, claims);
    const principal = plain && qualifiedPrincipal(plain, issuer.subjectPrefix);
    if (!principal) return unauthorized(c, 'invalid_token', 'the token has no sub', 'invalid_token', scheme);
    const posing = posesAsAnotherIssuer(principal, issuer);
    if (posing !== undefined) return unauthorized(c, 'issuer_prefix_collision', posing, 'invalid_token', scheme);
    // draft-mcguinness-oauth-actor-profile §3.4: with actor_profile.required every act entry names its issuer.
    if (route.config.actor_profile.required && principal.actors.some((actor) => typeof actor.iss !== 'string')) return unauthorized(c, 'actor_profile_required', 'an act entry has no iss (the route requires the actor profile)', 'invalid_token', scheme);
    c.set('principal', principal);
    const audit = c.get('audit');
    audit.sub = principal.sub;
    audit.client_id = principal.clientId;
    // Made once per token (principals are cached with its verification); shared, so frozen.
    const audited = (principal.audited ??= { scope: principal.scopes.join(' '), act: principal.actors.length > 0 ? Object.freeze(principal.actors.map((actor) => Object.freeze(auditedActor(actor)))) as GatewayAuditEvent['act'] : undefined });
    audit.scope = audited.scope;
    if (audited.act) audit.act = audited.act;
    return undefined;
  };

  /** Whether the caller's session is its own (a request with an Mcp-Session-Id); undefined when it is. */
  const sessionRefusal = async (c: Context<GatewayEnv>, principal: Principal, sessionId: string): Promise<Response | undefined> => {
    let verdict;
    try {
      verdict = await sessions!.check(sessionId, { sub: principal.sub, clientId: principal.clientId });
    } catch (error) {
      if (!(error instanceof SessionStoreUnavailable)) throw error;
      // Fail closed, like the rate limiter: without the store nobody can tell whose session it is.
      return refuse(c, { status: 503, code: GATEWAY_ERRORS.unavailable, message: 'temporarily_unavailable: retry shortly', rejection: 'session_store_unavailable', reason: error.message, decision: 'error', headers: { 'Retry-After': '1' } });
    }
    if (verdict === 'own') return undefined;
    // MCP 2025-11-25 transports, session management: 404 for a session the server does not
    // know, and the client then starts a new session with a new initialize. Someone else's
    // session gets the same answer, so a probe learns nothing about which ids are live.
    return refuse(c, { status: 404, code: SESSION_NOT_FOUND, message: 'session not found: start a new session with initialize', rejection: verdict === 'unknown' ? 'unknown_session' : 'session_mismatch', reason: SESSION_REASONS[verdict] });
  };

  /** The route's scopes and rules, then the rest of the chain. */
  const permit = (c: Context<GatewayEnv>, next: Next, principal: Principal, scheme: AuthScheme): Promise<Response | void> | Response => {
    let missing: string[] | undefined;
    for (const scope of routeScopes) if (!principal.scopes.includes(scope)) (missing ??= []).push(scope);
    if (missing) {
      return refuse(c, {
        status: 403,
        code: GATEWAY_ERRORS.forbidden,
        message: `insufficient scope: this route needs ${missing.join(' ')}`,
        rejection: 'insufficient_scope',
        headers: { 'WWW-Authenticate': scopeChallenge(route, neededScopes(c), 'insufficient_scope', scheme) },
      });
    }
    if (route.rules.length > 0) {
      let variables: Record<string, unknown> | undefined;
      const variablesOnce = () => (variables ??= celVariables(c, route, principal));
      for (const rule of route.rules) {
        let allowed: unknown;
        try {
          allowed = evaluateRule(rule.allow, principal, variablesOnce);
        } catch (error) {
          allowed = (error as { reason?: string }).reason ?? false;
        }
        if (allowed !== true) {
          return refuse(c, {
            status: 403,
            code: GATEWAY_ERRORS.forbidden,
            message: 'refused by the gateway policy',
            rejection: 'rule_denied',
            reason: rule.reason ?? `rule ${rule.allow.source} gave ${JSON.stringify(allowed)}`,
          });
        }
      }
    }
    return next();
  };

  /** Every step that may wait: validation, the revocation list, a DPoP proof (its replay store), the session store. */
  const protectAsync = async (c: Context<GatewayEnv>, next: Next, token: string, scheme: AuthScheme): Promise<Response | void> => {
    const context = validationContext(c);
    let claims: TokenClaims;
    try {
      claims = await route.validator.validate(token, context);
    } catch (error) {
      if (!isOAuthError(error)) throw error;
      // The token names an issuer this route does not trust: refused before any key fetch or introspection.
      if (error instanceof UnknownIssuerError) return unauthorized(c, 'unknown_issuer', error.reason ?? error.message, 'invalid_token', scheme);
      if (error.code === 'temporarily_unavailable') {
        return refuse(c, { status: 503, code: GATEWAY_ERRORS.unavailable, message: error.message, rejection: 'validation_unavailable', reason: error.reason, decision: 'error', headers: { 'Retry-After': '5' } });
      }
      return unauthorized(c, 'invalid_token', error.reason ?? error.message, 'invalid_token', scheme);
    }
    // The issuer that vouched for the token: its revocation list, its subject prefix.
    const issuer = route.validator.issuerOf(claims);
    // Never without it: a revocation check skipped is an open door.
    if (!issuer) throw new Error('the route validator returned claims no issuer vouched for');
    // No list, no await: a route without revocation does not pay a microtask per request.
    const verdict = issuer.revocations ? await issuer.revocations.verdictFor(claims, context) : undefined;
    if (verdict?.refuse === 'unavailable') {
      // Fail closed: a token cannot be let through before the gateway knows whether it is revoked.
      return refuse(c, { status: 503, code: GATEWAY_ERRORS.unavailable, message: 'temporarily_unavailable: the revocation list is not loaded yet; retry shortly', rejection: 'revocation_list_unavailable', reason: verdict.reason, decision: 'error', headers: { 'Retry-After': '1' } });
    }
    if (verdict) return unauthorized(c, 'invalid_token', verdict.reason, 'invalid_token', scheme);
    if (scheme === 'Bearer') {
      const refusal = bearerRefusal(c, claims);
      if (refusal) return refusal;
    } else if (dpop) {
      const body = c.get('mcp').raw;
      const outcome = await checkDpopPresentation(dpop, {
        proofs: dpopProofs(c),
        method: c.req.method,
        url: `${publicOrigin}${c.req.path}`,
        token,
        claims,
        body: body === undefined ? undefined : () => encoder.encode(body),
      });
      if (!outcome.ok) {
        if (outcome.status === 503) {
          return refuse(c, { status: 503, code: GATEWAY_ERRORS.unavailable, message: 'temporarily_unavailable: retry shortly', rejection: outcome.rejection, reason: outcome.reason, decision: 'error', headers: { 'Retry-After': '1' } });
        }
        const message = outcome.error === 'use_dpop_nonce' ? 'use the DPoP nonce this response carries' : outcome.error === 'invalid_token' ? 'the access token is invalid or expired' : 'the DPoP proof is invalid';
        return unauthorized(c, outcome.rejection, outcome.reason, outcome.error, 'DPoP', { message, headers: outcome.nonce ? { 'DPoP-Nonce': outcome.nonce } : undefined });
      }
    }
    const unidentified = identify(c, token, scheme, claims, issuer);
    if (unidentified) return unidentified;
    const principal = c.get('principal');
    const sessionId = c.get('mcp').sessionId;
    if (sessions && sessionId !== undefined) {
      const refusal = await sessionRefusal(c, principal, sessionId);
      if (refusal) return refusal;
    }
    return permit(c, next, principal, scheme);
  };

  return function protectMiddleware(c, next) {
    // RFC 6750 §3.1: a request with more than one credential is invalid_request (400), whichever
    // would be used: two Authorization headers, or a header and an access_token query parameter.
    const several = credentialRepeated(c, 'authorization') ? 'two Authorization headers' : hasQueryToken(c.req.url) ? 'access_token in the query (only the Authorization header is accepted)' : undefined;
    if (several) {
      return refuse(c, { status: 400, code: JSON_RPC_ERRORS.invalidRequest, message: 'send the access token once, in the Authorization header', rejection: 'invalid_request', reason: several, headers: { 'WWW-Authenticate': `Bearer resource_metadata="${route.metadataUrl}", error="invalid_request"` } });
    }
    const header = requestHeader(c, 'authorization');
    if (!header) return unauthorized(c, 'no_token', 'no Authorization header');
    const credential = parseCredential(header);
    if (!credential || (credential.scheme === 'DPoP' && !dpop)) {
      return unauthorized(c, 'invalid_token', dpop ? 'Authorization is neither a Bearer nor a DPoP token' : 'Authorization is not a Bearer token', 'invalid_request');
    }
    const { token, scheme } = credential;
    // The common case, decided without waiting for anything: a Bearer token already verified (in
    // memory), an issuer without a revocation list, no session. The same checks as protectAsync,
    // in the same order; anything else takes that path.
    const claims = scheme === 'Bearer' ? route.validator.cached?.(token) : undefined;
    const issuer = claims && route.validator.issuerOf(claims);
    const sessionId = c.get('mcp').sessionId;
    if (!claims || !issuer || issuer.revocations || (sessions && sessionId !== undefined)) return protectAsync(c, next, token, scheme);
    const refusal = bearerRefusal(c, claims);
    if (refusal) return refusal;
    const unidentified = identify(c, token, scheme, claims, issuer);
    if (unidentified) return unidentified;
    return permit(c, next, c.get('principal'), scheme);
  };
}

/**
 * Workers: a shared cache write, a key set fetch or a revocation poll begun in a request may finish
 * after the response (ctx.waitUntil); Hono's getter throws where the host gave no context (Node),
 * and the work then runs on its own.
 */
function validationContext(c: Parameters<MiddlewareHandler<GatewayEnv>>[0]): ValidationContext {
  return {
    waitUntil: (promise: Promise<unknown>) => {
      try {
        c.executionCtx.waitUntil(promise);
      } catch {
        // No execution context: nothing to extend.
      }
    },
  };
}

/**
 * The `DPoP` request header(s): a list when sent more than once (refused by RFC 9449 §4.3 (1)). Node
 * keeps repeats of unknown headers joined with ", " (no JWT contains a comma).
 */
function dpopProofs(c: Parameters<MiddlewareHandler<GatewayEnv>>[0]): string | string[] | undefined {
  const value = requestHeader(c, 'dpop');
  if (value === undefined) return undefined;
  return value.includes(',') ? value.split(',').map((part) => part.trim()) : value;
}
