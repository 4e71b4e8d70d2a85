import type { Context, Hono } from 'hono';
import type { AppEnv } from '../context.ts';
import { OAuthError } from '../../core/errors.ts';
import { parseScope } from '../../core/scopes.ts';
import type { ServerContext } from '../context.ts';
import { TOKEN_NOT_ACTIVE, accessTokenFromRequest, refusalError, type RequestToken } from '../resource-token.ts';
import { boundJkt } from '../../gateway/dpop.ts';
import { lookupToken } from '../token-lookup.ts';
import { profileClaims } from '../tokens.ts';

const invalidToken = (description: string) =>
  new OAuthError('invalid_token', description, { headers: { 'WWW-Authenticate': `Bearer error="invalid_token", error_description="${description}"` } });

/**
 * `/userinfo` (OIDC Core §5.3) serves tokens whose audience is this server and that carry `openid`;
 * `/tokeninfo` returns the claims of any active access token of this issuer to its bearer.
 */
export function userinfoEndpoints(app: Hono<AppEnv>, ctx: ServerContext) {
  /** The active access token of the Authorization header (Bearer, or DPoP with its proof: resource-token.ts). */
  const activeAccessToken = async (c: Context) => {
    const presented = await accessTokenFromRequest(ctx, c);
    if (presented.kind === 'none') {
      throw new OAuthError('invalid_token', 'a bearer token is required', { status: 401, headers: { 'WWW-Authenticate': ctx.config.dpop.enabled ? `Bearer, DPoP algs="${ctx.config.dpop.signing_alg_values.join(' ')}"` : 'Bearer' } });
    }
    if (presented.kind === 'refused') {
      if (presented.reason === TOKEN_NOT_ACTIVE) throw invalidToken('the access token is invalid, expired or revoked');
      throw refused(c, presented);
    }
    return presented.claims;
  };
  /** A refusal; the AS's error handler audits those under 500, a 503 is audited here. */
  const refused = (c: Context, refusal: Extract<RequestToken, { kind: 'refused' }>) => {
    if (refusal.status >= 500) ctx.audit.record({ at: ctx.now(), type: `${c.req.path.split('/')[1] ?? 'userinfo'}.refused`, outcome: 'failure', error: refusal.error, reason: refusal.reason });
    return refusalError(refusal);
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
    if (query !== undefined && c.req.header('authorization') !== undefined) {
      throw new OAuthError('invalid_request', 'send the token one way only', { reason: 'a token in both the Authorization header and the query', headers: { 'WWW-Authenticate': 'Bearer error="invalid_request"' } });
    }
    let claims;
    if (query !== undefined) {
      const found = await lookupToken(ctx, query, 'access_token');
      if (found?.kind !== 'access_token') throw invalidToken('the access token is invalid, expired or revoked');
      // RFC 9449 §7.1: a bound token is never a bearer token, in the query either.
      if (boundJkt(found.claims) !== undefined) throw new OAuthError('invalid_token', 'the access token is DPoP-bound: use the DPoP scheme with a proof', { reason: 'dpop_downgrade: a DPoP-bound token (cnf.jkt) presented in the query', headers: { 'WWW-Authenticate': `DPoP algs="${ctx.config.dpop.signing_alg_values.join(' ')}", error="invalid_token"` } });
      claims = found.claims;
    } else claims = await activeAccessToken(c);
    return c.json({ active: true, ...claims, expires_in: Math.max(claims.exp - ctx.now(), 0) }, 200, { 'Cache-Control': 'no-store' });
  });
}
