
import { verifyJwt, ACCESS_TOKEN_TYP, type AccessTokenClaims } from '../core/jwt.ts';
import { hashSecret } from './hash.ts';
import type { GrantRecord, RefreshTokenRecord } from '../store/types.ts';
import type { ServerContext } from './context.ts';

export type TokenLookup =
  | { kind: 'access_token'; claims: AccessTokenClaims }
  | { kind: 'refresh_token'; record: RefreshTokenRecord; grant: GrantRecord };

/**
 * Finds what a presented token is, if it is active: a JWT access token of this issuer that is not
 * revoked (nor its grant), or a refresh token that is neither rotated, revoked nor expired.
 */
export async function lookupToken(ctx: ServerContext, token: string, hint?: string): Promise<TokenLookup | undefined> {
  const tryAccess = async () => {
    if (token.split('.').length !== 3) return undefined;
    const claims = await verifyJwt(ctx.keys, token, { issuer: ctx.issuer, typ: ACCESS_TOKEN_TYP }).catch(() => undefined);
    if (!claims) return undefined;
    const tracked = await ctx.store.grants.findAccessToken(claims.jti);
    if (tracked?.revokedAt) return undefined;
    return { kind: 'access_token' as const, claims };
  };
  const tryRefresh = async () => {
    const record = await ctx.store.grants.findRefreshToken(hashSecret(token));
    if (!record || record.revokedAt || record.rotatedAt || record.expiresAt <= ctx.now()) return undefined;
    const grant = await ctx.store.grants.findGrant(record.grantId);
    if (!grant || grant.revokedAt) return undefined;
    return { kind: 'refresh_token' as const, record, grant };
  };
  // RFC 7662 §2.1 / RFC 7009 §2.1: the hint orders the search, it does not limit it.
  return hint === 'refresh_token' ? ((await tryRefresh()) ?? tryAccess()) : ((await tryAccess()) ?? tryRefresh());
}
