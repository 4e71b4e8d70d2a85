import { hashSecret } from './hash.ts';
import { verifyJwt, ACCESS_TOKEN_TYP, type AccessTokenClaims } from '../core/jwt.ts';
import { actorChain } from '../core/delegation.ts';
import type { GrantRecord, RefreshTokenRecord } from '../store/types.ts';
import type { ServerContext } from './context.ts';

export type TokenLookup =
  | { kind: 'access_token'; claims: AccessTokenClaims; grantId?: string }
  | { kind: 'refresh_token'; record: RefreshTokenRecord; grant: GrantRecord };

/**
 * Finds what a presented token is, if it is active: an access token of this issuer (a JWT, or an
 * opaque one by its hash) that is not revoked, nor its grant, and whose client and actors are all
 * still enabled; or a refresh token that is neither rotated, revoked nor expired.
 */
export async function lookupToken(ctx: ServerContext, token: string, hint?: string): Promise<TokenLookup | undefined> {
  const tryAccess = async () => {
    const found = token.split('.').length === 3 ? await activeJwt(ctx, token) : await activeOpaque(ctx, token);
    if (!found || (await involvesDisabledClient(ctx, found.claims))) return undefined;
    return { kind: 'access_token' as const, claims: found.claims, grantId: found.grantId };
  };
  const tryRefresh = async () => {
    const record = await ctx.store.grants.findRefreshToken(hashSecret(token));
    if (!record || record.revokedAt || record.rotatedAt || record.expiresAt <= ctx.now()) return undefined;
    const grant = await ctx.store.grants.findGrant(record.grantId);
    if (!grant || grant.revokedAt || (await ctx.isDisabled(record.clientId))) return undefined;
    return { kind: 'refresh_token' as const, record, grant };
  };
  // RFC 7662 §2.1 / RFC 7009 §2.1: the hint orders the search, it does not limit it.
  return hint === 'refresh_token' ? ((await tryRefresh()) ?? tryAccess()) : ((await tryAccess()) ?? tryRefresh());
}

async function activeJwt(ctx: ServerContext, token: string): Promise<{ claims: AccessTokenClaims; grantId?: string } | undefined> {
  let claims = ctx.verifiedTokens.get(token, ctx.now());
  if (!claims) {
    claims = await verifyJwt(ctx.keys, token, { issuer: ctx.issuer, typ: ACCESS_TOKEN_TYP }).catch(() => undefined);
    if (!claims) return undefined;
    ctx.verifiedTokens.set(token, claims);
  }
  // Revocation is never cached: checked on every use.
  let tracked = await ctx.store.grants.findAccessToken(claims.jti);
  if (!tracked && claims.act !== undefined) {
    // An exchanged token may still be in this instance's batch of records: write it, then look.
    await ctx.trackedTokens.flush();
    tracked = await ctx.store.grants.findAccessToken(claims.jti);
  }
  if (tracked?.revokedAt) return undefined;
  const grantId = tracked?.grantId ?? (typeof claims.grant_id === 'string' ? claims.grant_id : undefined);
  // The record of an exchanged token (batched, maybe on another instance) can be written after its
  // grant was revoked, unrevoked: for those the grant itself decides. Other tokens are recorded
  // before they are returned, so the revocation of their grant marks their record.
  if (claims.act !== undefined && typeof claims.grant_id === 'string' && (await ctx.store.grants.findGrant(claims.grant_id))?.revokedAt !== undefined) return undefined;
  return { claims, grantId };
}

async function activeOpaque(ctx: ServerContext, token: string): Promise<{ claims: AccessTokenClaims; grantId?: string } | undefined> {
  const record = await ctx.store.grants.findAccessTokenByHash(hashSecret(token));
  if (!record?.claims || record.revokedAt || record.expiresAt <= ctx.now()) return undefined;
  return { claims: record.claims as AccessTokenClaims, grantId: record.grantId };
}

/**
 * A token stops working when its client or any actor in its chain is disabled — and stays dead
 * when that client is enabled again (its tokens issued before the disable are cut off).
 */
async function involvesDisabledClient(ctx: ServerContext, claims: AccessTokenClaims): Promise<boolean> {
  for (const id of [claims.client_id, ...actorChain(claims.act).map((a) => a.sub)]) {
    if (await ctx.isCutOff(id, claims.iat)) return true;
  }
  return false;
}
