import { OAuthError } from '../../core/errors.ts';
import { JWT_BEARER_GRANT, ID_JAG_PROFILE } from '../../core/delegation.ts';
import { formatScope } from '../../core/scopes.ts';
import { isPublicClient, type Client } from '../../core/client-metadata.ts';
import type { ServerContext } from '../context.ts';
import type { Params } from '../params.ts';
import { issueAccessToken } from '../tokens.ts';
import { isIdJagTyp, peekAssertion, spendJti, verifyIdJag } from '../id-jag/verify.ts';
import { linkUser } from '../id-jag/link-user.ts';
import { workloadAuthenticate, workloadGrant } from '../workload/grant.ts';
import type { DpopProof, GrantHandler, GrantAudit } from './types.ts';
import type { TokenResponse } from '../tokens.ts';

/**
 * The JWT bearer grant (RFC 7523 §2.1): `assertion` is a JWT that stands for the authorization.
 * Two kinds are accepted, told apart from the unverified header and issuer (then verified as
 * that kind only):
 * - an ID-JAG (`typ: oauth-id-jag+jwt`, draft-ietf-oauth-identity-assertion-authz-grant §4.4) from a
 *   `trusted_idps` issuer, presented by an authenticated confidential client: a token for the user
 *   the IdP vouches for (src/auth-server/id-jag/);
 * - a workload JWT from a `workload_identity.issuers` issuer (SEP-1933): WP-C's branch.
 * Anything else is `invalid_grant` ("the assertion is invalid"; the audit reason says why). The grant is offered
 * (metadata, token endpoint) only when one of the two is configured.
 */
export const jwtBearerGrant: GrantHandler = {
  grantType: JWT_BEARER_GRANT,
  parameters: ['assertion', 'scope', 'resource'],
  enabled: (ctx) => ctx.config.trusted_idps.length > 0 || ctx.config.workload_identity.issuers.length > 0,
  authenticate: workloadAuthenticate,
  async handler(ctx, { client, params, dpop, c }) {
    const assertion = params.get('assertion');
    const peeked = assertion ? peekAssertion(assertion) : undefined;
    // SEP-1933 workload grant (issue 17 §3.4, src/auth-server/workload/).
    if (peeked && !isIdJagTyp(peeked.typ) && ctx.config.workload_identity.issuers.some((i) => i.issuer === peeked.iss)) return workloadGrant(ctx, { client, params, dpop, c });
    const trace: Record<string, unknown> = { profile: 'id-jag', ...(peeked?.iss ? { idp: peeked.iss } : {}), scope_requested: params.get('scope') };
    try {
      if (!assertion) throw new OAuthError('invalid_request', 'assertion is required', { reason: 'no assertion parameter' });
      return await idJagGrant(ctx, client, assertion, params, dpop, trace);
    } catch (error) {
      if (error instanceof OAuthError) {
        ctx.audit.record({
          at: ctx.now(),
          type: 'token.jwt_bearer_refused',
          outcome: 'failure',
          clientId: client.clientId,
          sub: trace.sub as string | undefined,
          error: error.code,
          reason: error.reason ?? error.message,
          data: trace,
        });
        error.audited = true;
      }
      throw error;
    }
  },
};

/**
 * The ID-JAG branch: a confidential client (§8.1; a CIMD client uses private_key_jwt) presents
 * the assertion its IdP issued for it; the user is linked (or created, `jit_users`) only after
 * every check passed and the `jti` was spent, so a replay never creates anyone. No refresh token
 * (§4.4.3: the client presents the ID-JAG again, then asks its IdP for a new one).
 */
async function idJagGrant(ctx: ServerContext, client: Client, assertion: string, params: Params, dpop: DpopProof | undefined, trace: Record<string, unknown>): Promise<{ response: TokenResponse; audit: GrantAudit }> {
  if (isPublicClient(client)) throw new OAuthError('unauthorized_client', 'an identity assertion is accepted from a confidential client only', { reason: 'public client presented an ID-JAG' });
  const verified = await verifyIdJag(ctx, { assertion, client, params, dpop });
  const { claims, resource, scopes, jkt } = verified;
  Object.assign(trace, { idp_sub: claims.sub, idjag_jti: verified.jtiHash, resource: resource.id, scope_granted: formatScope(scopes) });
  await spendJti(ctx, verified);
  const linked = await linkUser(ctx, verified.idp, claims);
  trace.sub = linked.sub;
  trace.linked_by = linked.by;
  const extra: Record<string, unknown> = { idp: claims.iss };
  if (typeof claims.auth_time === 'number') extra.auth_time = claims.auth_time;
  if (typeof claims.acr === 'string') extra.acr = claims.acr;
  const { token, claims: issued, expiresIn } = await issueAccessToken(ctx, { sub: linked.sub, client, resource, scopes, grantType: JWT_BEARER_GRANT, jkt, extra });
  return {
    response: { access_token: token, token_type: jkt ? 'DPoP' : 'Bearer', expires_in: expiresIn, ...(scopes.length > 0 ? { scope: formatScope(scopes) } : {}) },
    audit: {
      sub: linked.sub,
      resource: resource.id,
      scope: formatScope(scopes),
      jti: issued.jti,
      profile: 'id-jag',
      grant_profile: ID_JAG_PROFILE,
      idp: claims.iss,
      idp_sub: claims.sub,
      idjag_jti: verified.jtiHash,
      linked_by: linked.by,
      ...(jkt ? { jkt } : {}),
    },
  };
}
