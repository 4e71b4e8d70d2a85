import type { Caller, FrontEnd } from '../../admin/index.ts';
import { adminResourceId, coveredScopes, isAdminScope } from '../../admin/scopes.ts';
import { actorChain } from '../../core/delegation.ts';
import { parseScope } from '../../core/scopes.ts';
import type { ServerContext } from '../context.ts';
import { lookupToken } from '../token-lookup.ts';
import { accessTokenFromRequest, type RequestToken } from '../resource-token.ts';
import type { AccessTokenClaims } from '../../core/jwt.ts';
import type { Context } from 'hono';

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
  return adminCallerOf(ctx, found.claims, where);
}

/**
 * The admin behind a request to an admin front end over HTTP (API, admin MCP server): its token as
 * resource-token.ts reads it (a DPoP-bound token only with its proof), then adminCallerOf. A refusal
 * carries the status, error and DPoP challenge of the presentation when the token was not taken.
 */
export async function adminCallerOfRequest(
  ctx: ServerContext,
  c: Context,
  where: { frontEnd: FrontEnd; requestId?: string; sessionId?: string },
): Promise<{ caller: Caller } | { refused: string; description?: string; presentation?: Extract<RequestToken, { kind: 'refused' }> }> {
  const presented = await accessTokenFromRequest(ctx, c);
  if (presented.kind === 'none') return { refused: 'no bearer token' };
  if (presented.kind === 'refused') return { refused: presented.reason, description: presented.description, presentation: presented };
  return adminCallerOf(ctx, presented.claims, where);
}

/** adminCaller's checks of an active access token's claims. */
export async function adminCallerOf(
  ctx: ServerContext,
  claims: AccessTokenClaims,
  where: { frontEnd: FrontEnd; requestId?: string; sessionId?: string },
): Promise<{ caller: Caller } | { refused: string; description?: string }> {
  const audience = adminResourceId(ctx.issuer);
  const aud = Array.isArray(claims.aud) ? claims.aud : [claims.aud];
  if (!aud.includes(audience)) return { refused: `token audience ${aud.join(' ')} is not ${audience}`, description: 'the access token is not for the admin resource' };
  // Only an admin's own sign-in: a grant of that user (no client credentials, whatever the client
  // is called), or that sign-in exchanged by an agent admin.delegation.actors names (still named
  // now: removing an agent from the list stops the tokens it holds).
  const act = claims.act ? actorChain(claims.act) : undefined;
  if (act) {
    const allowed = ctx.config.admin.delegation.actors;
    const stranger = act.find((a) => !allowed.includes(a.sub));
    if (stranger || act.length > 1) {
      return { refused: stranger ? `token carries act: ${stranger.sub} is not in admin.delegation.actors` : 'token carries a chain of actors', description: 'no agent may act for an administrator here' };
    }
  }
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
      act,
      frontEnd: where.frontEnd,
      requestId: where.requestId,
      sessionId: where.sessionId,
    },
  };
}
