import type { Hono } from 'hono';
import type { AppEnv } from '../context.ts';
import { authenticateClient } from '../client-auth/index.ts';
import { endpointUrls, type ServerContext } from '../context.ts';
import { formParams } from '../params.ts';
import { lookupToken } from '../token-lookup.ts';
import { hashSecret } from '../hash.ts';

/**
 * Token revocation (RFC 7009). Revoking a refresh token revokes its grant and every token of it;
 * revoking an access token puts its `jti` on the revocation list that introspection honours.
 * Unknown tokens, and tokens of other clients, are answered 200 and left alone (RFC 7009 §2.2).
 */
export function revokeEndpoint(app: Hono<AppEnv>, ctx: ServerContext) {
  const url = endpointUrls(ctx.issuer).revocation;
  app.post('/revoke', async (c) => {
    const params = await formParams(c);
    const client = await authenticateClient(ctx, c, params, url);
    c.set('clientId', client.clientId);
    const token = params.require('token');
    const found = await lookupToken(ctx, token, params.get('token_type_hint'));
    const now = ctx.now();
    // A refresh token that was already rotated still names its grant: a client ending the grant
    // with an older refresh token of its own means it.
    const refresh = found?.kind === 'refresh_token' ? found.record : await ctx.store.grants.findRefreshToken(hashSecret(token));
    if (refresh && refresh.clientId === client.clientId && !refresh.revokedAt) {
      await ctx.store.grants.revokeGrant(refresh.grantId, now);
      ctx.audit.record({ at: now, type: 'token.revoked', outcome: 'success', clientId: client.clientId, data: { kind: 'refresh_token', grant_id: refresh.grantId } });
    } else if (found?.kind === 'access_token' && found.claims.client_id === client.clientId) {
      const { jti, exp } = found.claims;
      await ctx.store.grants.revokeAccessToken({ jti, clientId: client.clientId, expiresAt: exp }, now);
      ctx.audit.record({ at: now, type: 'token.revoked', outcome: 'success', clientId: client.clientId, sub: found.claims.sub, data: { kind: 'access_token', jti } });
    }
    return c.body(null, 200, { 'Cache-Control': 'no-store' });
  });
}
