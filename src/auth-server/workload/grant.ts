import type { Context } from 'hono';
import { OAuthError } from '../../core/errors.ts';
import { JWT_BEARER_GRANT } from '../../core/delegation.ts';
import { formatScope } from '../../core/scopes.ts';
import { resolveResourceAndScope, unusableReason, type ServerContext } from '../context.ts';
import type { Params } from '../params.ts';
import { issueAccessToken, type TokenResponse } from '../tokens.ts';
import { adminResourceId } from '../../admin/scopes.ts';
import type { ClientRecord } from '../../store/types.ts';
import type { GrantAudit, GrantRequest } from '../grants/types.ts';
import { isIdJagTyp, peekAssertion } from '../id-jag/verify.ts';
import { spendWorkloadJti, verifyWorkloadJwt, workloadIssuerOf, WorkloadRefused, type VerifiedWorkload } from './verify.ts';

/**
 * The SEP-1933 grant: `grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer` with a workload JWT
 * as `assertion` (RFC 7523 §2.1), usually without client authentication — the JWT names the
 * client. Wired into `grants/jwt-bearer.ts` (WP-A's dispatcher): `authenticate` is its hook, and
 * the handler calls `workloadGrant` for an assertion whose issuer is a platform issuer.
 * Refusals are `invalid_grant` (RFC 7521 §5.2 / RFC 6749 §5.2), audited `token.jwt_bearer_refused`
 * with `profile: workload` and the reason; scope and resource as client credentials
 * (`invalid_scope`, `invalid_target`); a client not registered for the grant `unauthorized_client`.
 */

/** Verified in `authenticate`, used by the handler of the same request. */
const verifiedByRequest = new WeakMap<Params, VerifiedWorkload>();

/** Whether the assertion is a workload JWT (not an ID-JAG, and from a configured platform issuer). */
export function isWorkloadAssertion(ctx: ServerContext, assertion: string | undefined): assertion is string {
  if (!assertion) return false;
  const peeked = peekAssertion(assertion);
  return peeked !== undefined && !isIdJagTyp(peeked.typ) && workloadIssuerOf(ctx, assertion) !== undefined;
}

function refused(ctx: ServerContext, error: OAuthError, clientId: string | undefined, data: Record<string, unknown>): OAuthError {
  ctx.audit.record({ at: ctx.now(), type: 'token.jwt_bearer_refused', outcome: 'failure', clientId, error: error.code, reason: error.reason ?? error.message, data: { profile: 'workload', ...data } });
  error.audited = true;
  return error;
}

/** Runs a workload check, its `WorkloadRefused` becoming `invalid_grant`. */
async function asGrant<T>(check: Promise<T>): Promise<T> {
  try {
    return await check;
  } catch (error) {
    throw error instanceof WorkloadRefused ? new OAuthError('invalid_grant', 'the assertion is invalid', { reason: error.reason }) : error;
  }
}

/**
 * The jwt-bearer grant's `authenticate` hook (called only when the request carries no client
 * authentication): the client of a workload JWT, verified. Undefined for any other assertion
 * (an ID-JAG needs client authentication: the token endpoint then refuses with `invalid_client`).
 */
export async function workloadAuthenticate(ctx: ServerContext, _c: Context, params: Params): Promise<ClientRecord | undefined> {
  const assertion = params.get('assertion');
  // Without platform issuers, every jwt-bearer request is an ID-JAG one: the client authenticates.
  if (!assertion || ctx.config.workload_identity.issuers.length === 0) return undefined;
  const peeked = peekAssertion(assertion);
  // An ID-JAG needs the client's own authentication (the token endpoint asks for it).
  if (peeked && isIdJagTyp(peeked.typ)) return undefined;
  try {
    // Nobody to name the client but the assertion: one that names no platform issuer is refused here.
    if (!peeked) throw new OAuthError('invalid_grant', 'the assertion is invalid', { reason: 'the assertion is not a JWT' });
    if (!isWorkloadAssertion(ctx, assertion)) throw new OAuthError('invalid_grant', 'the assertion is invalid', { reason: `issuer ${JSON.stringify(peeked.iss)} is neither a trusted IdP with client authentication nor in workload_identity.issuers` });
    const verified = await asGrant(verifyWorkloadJwt(ctx, assertion));
    // RFC 7521 §5.2 has no invalid_client without client authentication: the grant is refused.
    const unusable = unusableReason(verified.client, ctx.now());
    if (unusable) throw new OAuthError('invalid_grant', "the workload's client is disabled or has expired", { reason: unusable });
    verifiedByRequest.set(params, verified);
    return verified.client;
  } catch (error) {
    if (error instanceof OAuthError) throw refused(ctx, error, undefined, { workload: { iss: peeked?.iss } });
    throw error;
  }
}

/**
 * The token for a workload JWT: `sub` = the client (a client acting for itself, like client
 * credentials), the resource and scopes of the request within the client's, bound to the DPoP key
 * when a proof was sent. The `jti` is spent last, so a refused request does not burn it.
 */
export async function workloadGrant(ctx: ServerContext, { client, params, dpop }: GrantRequest): Promise<{ response: TokenResponse; audit: GrantAudit }> {
  const assertion = params.get('assertion')!;
  const trace: Record<string, unknown> = { scope_requested: params.get('scope') };
  try {
    // Authenticated some other way (a secret, a key): the JWT must be that client's own.
    const verified = verifiedByRequest.get(params) ?? (await asGrant(verifyWorkloadJwt(ctx, assertion, { client: client as ClientRecord })));
    trace.workload = { iss: verified.claims.iss, sub: verified.claims.sub };
    const { resource, scopes } = resolveResourceAndScope(ctx, client, { resource: params.all('resource'), scope: params.get('scope') });
    if (resource.id === adminResourceId(ctx.issuer)) throw new OAuthError('invalid_target', 'admin tokens are issued for a signed-in admin only', { reason: 'workload JWT for the admin resource' });
    if (scopes.includes('openid')) throw new OAuthError('invalid_scope', 'openid needs a user; a workload has none');
    await asGrant(spendWorkloadJti(ctx, verified));
    const jkt = dpop?.jkt;
    const { token, claims, expiresIn } = await issueAccessToken(ctx, { sub: client.clientId, client, resource, scopes, grantType: JWT_BEARER_GRANT, jkt, extra: jkt ? { cnf: { jkt } } : undefined });
    return {
      response: { access_token: token, token_type: jkt ? 'DPoP' : 'Bearer', expires_in: expiresIn, ...(scopes.length > 0 ? { scope: formatScope(scopes) } : {}) },
      audit: { sub: client.clientId, resource: resource.id, scope: formatScope(scopes), jti: claims.jti, profile: 'workload', workload: trace.workload, ...(jkt ? { jkt } : {}) },
    };
  } catch (error) {
    if (error instanceof OAuthError) throw refused(ctx, error, client.clientId, trace);
    throw error;
  }
}
