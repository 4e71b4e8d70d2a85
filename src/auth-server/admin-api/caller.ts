import type { Caller, FrontEnd } from '../../admin/index.ts';
import { adminResourceId, coveredScopes, isAdminScope } from '../../admin/scopes.ts';
import { actorChain } from '../../core/delegation.ts';
import { parseScope } from '../../core/scopes.ts';
import type { ServerContext } from '../context.ts';
import { lookupToken } from '../token-lookup.ts';

/**
 * The admin behind a bearer token, for every admin front end (API, console, admin MCP server):
 * a token of this issuer for the admin resource (signature, audience, expiry, revocation, disabled
 * clients), of a user who exists. Roles are read on every call, so removing one takes effect at
 * once whatever tokens are out; the caller's scopes are the token's, narrowed to them.
 */
export async function adminCaller(
  ctx: ServerContext,
  token: string | undefined,
  where: { frontEnd: FrontEnd; requestId?: string; sessionId?: string },
): Promise<{ caller: Caller } | { refused: string; description?: string }> {
  if (!token) return { refused: 'no bearer token' };
  const found = await lookupToken(ctx, token, 'access_token');
  if (found?.kind !== 'access_token') return { refused: 'token invalid, expired or revoked', description: 'the access token is invalid or expired' };
  const { claims } = found;
  const audience = adminResourceId(ctx.issuer);
  const aud = Array.isArray(claims.aud) ? claims.aud : [claims.aud];
  if (!aud.includes(audience)) return { refused: `token audience ${aud.join(' ')} is not ${audience}`, description: 'the access token is not for the admin resource' };
  // Only an admin's own sign-in: a grant of that user (no client credentials, whatever the client
  // is called), and no one acting for them (exchange into the admin resource is refused anyway).
  if (claims.act !== undefined) return { refused: 'token carries act: someone acts for the admin', description: "the access token is not an admin's own" };
  const grant = typeof claims.grant_id === 'string' ? await ctx.store.grants.findGrant(claims.grant_id) : undefined;
  if (!grant || grant.sub !== claims.sub || grant.resource !== audience) {
    return { refused: grant ? `grant ${grant.id} is not ${String(claims.sub)}'s sign-in for the admin resource` : 'token is not from a sign-in (no grant)', description: "the access token is not from an admin's sign-in" };
  }
  const user = await ctx.store.users.findBySub(claims.sub);
  if (!user) return { refused: `subject ${claims.sub} is not a user`, description: "the access token is not an admin's" };
  const allowed = coveredScopes(user.roles ?? []);
  const scopes = parseScope(claims.scope).filter((s) => isAdminScope(s) && allowed.has(s));
  return {
    caller: {
      sub: user.sub,
      username: user.username,
      scopes,
      clientId: claims.client_id,
      act: claims.act ? actorChain(claims.act) : undefined,
      frontEnd: where.frontEnd,
      requestId: where.requestId,
      sessionId: where.sessionId,
    },
  };
}
