import type { Context, Hono } from 'hono';
import type { AppEnv } from '../context.ts';
import { OAuthError } from '../../core/errors.ts';
import { parseScope } from '../../core/scopes.ts';
import type { ServerContext } from '../context.ts';
import { bearerToken } from '../bearer.ts';
import { lookupToken } from '../token-lookup.ts';
import { profileClaims } from '../tokens.ts';

const invalidToken = (description: string) =>
  new OAuthError('invalid_token', description, { headers: { 'WWW-Authenticate': `Bearer error="invalid_token", error_description="${description}"` } });

/**
 * `/userinfo` (OIDC Core §5.3) serves tokens whose audience is this server and that carry `openid`;
 * `/tokeninfo` returns the claims of any active access token of this issuer to its bearer.
 */
export function userinfoEndpoints(app: Hono<AppEnv>, ctx: ServerContext) {
  const activeAccessToken = async (c: Context, token = bearerToken(c)) => {
    if (!token) {
      throw new OAuthError('invalid_token', 'a bearer token is required', { status: 401, headers: { 'WWW-Authenticate': 'Bearer' } });
    }
    const found = await lookupToken(ctx, token, 'access_token');
    if (found?.kind !== 'access_token') throw invalidToken('the access token is invalid, expired or revoked');
    return found.claims;
  };

  const userinfo = async (c: Context) => {
    const claims = await activeAccessToken(c);
    const scopes = parseScope(claims.scope);
    if (claims.aud !== ctx.issuer || !scopes.includes('openid')) {
      throw new OAuthError('insufficient_scope', 'userinfo needs a token for this server with the openid scope', {
        headers: { 'WWW-Authenticate': 'Bearer error="insufficient_scope", scope="openid"' },
      });
    }
    const user = await ctx.store.users.findBySub(claims.sub);
    if (!user) throw invalidToken('the user no longer exists');
    return c.json({ sub: user.sub, ...profileClaims(user.username, user.profile, scopes) }, 200, { 'Cache-Control': 'no-store' });
  };
  app.get('/userinfo', userinfo);
  app.post('/userinfo', userinfo);

  app.get('/tokeninfo', async (c) => {
    // RFC 6750 §2.3: the token may come as the access_token query parameter (seed 003's request
    // does), but by one method only (§2).
    const query = c.req.query('access_token');
    const header = bearerToken(c);
    if (query !== undefined && c.req.header('authorization') !== undefined) throw new OAuthError('invalid_request', 'send the token one way only');
    const claims = await activeAccessToken(c, query ?? header);
    return c.json({ active: true, ...claims, expires_in: Math.max(claims.exp - ctx.now(), 0) }, 200, { 'Cache-Control': 'no-store' });
  });
}
