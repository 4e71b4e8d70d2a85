import type { Hono } from 'hono';
import type { AppEnv } from '../context.ts';
import { authenticateClient } from '../client-auth/index.ts';
import { endpointUrls, type ServerContext } from '../context.ts';
import { formParams } from '../params.ts';
import { lookupToken } from '../token-lookup.ts';

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
    const found = await lookupToken(ctx, params.require('token'), params.get('token_type_hint'));
    const now = ctx.now();
    if (found?.kind === 'refresh_token' && found.record.clientId === client.clientId) {
      await ctx.store.grants.revokeGrant(found.grant.id, now);
      ctx.audit.record({ at: now, type: 'token.revoked', outcome: 'success', clientId: client.clientId, sub: found.grant.sub, data: { kind: 'refresh_token', grant_id: found.grant.id } });
    } else if (found?.kind === 'access_token' && found.claims.client_id === client.clientId) {
      const { jti, exp } = found.claims;
      await ctx.store.grants.revokeAccessToken({ jti, clientId: client.clientId, expiresAt: exp }, now);
      ctx.audit.record({ at: now, type: 'token.revoked', outcome: 'success', clientId: client.clientId, sub: found.claims.sub, data: { kind: 'access_token', jti } });
    }
    return c.body(null, 200, { 'Cache-Control': 'no-store' });
  });
}
