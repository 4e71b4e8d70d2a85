import type { Hono } from 'hono';
import type { AppEnv } from '../context.ts';
import { OAuthError } from '../../core/errors.ts';
import { isPublicClient } from '../../core/client-metadata.ts';
import { authenticateClient } from '../client-auth/index.ts';
import { endpointUrls, type ServerContext } from '../context.ts';
import { formParams } from '../params.ts';
import { lookupToken } from '../token-lookup.ts';
import { introspectionRefusal } from '../introspection-access.ts';
import { tokenTypeOf } from '../tokens.ts';

/**
 * Token introspection (RFC 7662), for authenticated confidential clients with a reason to see the
 * token (see `introspection-access.ts`); others are answered `{"active": false}` and audited.
 */
export function introspectEndpoint(app: Hono<AppEnv>, ctx: ServerContext) {
  const url = endpointUrls(ctx.issuer).introspection;
  app.post('/introspect', async (c) => {
    const params = await formParams(c);
    const client = await authenticateClient(ctx, c, params, url);
    c.set('clientId', client.clientId);
    if (isPublicClient(client)) throw new OAuthError('invalid_client', 'introspection needs an authenticated client', { status: 401 });
    const found = await lookupToken(ctx, params.require('token'), params.get('token_type_hint'));
    const headers = { 'Cache-Control': 'no-store' };
    if (!found) return c.json({ active: false }, 200, headers);
    const refusal = introspectionRefusal(ctx, client.clientId, found);
    if (refusal) {
      ctx.audit.record({ at: ctx.now(), type: 'introspection.refused', outcome: 'failure', clientId: client.clientId, error: 'inactive', reason: refusal });
      return c.json({ active: false }, 200, headers);
    }
    if (found.kind === 'access_token') {
      const { claims } = found;
      // RFC 9449 §6.2: a bound token is introspected as token_type DPoP, with its cnf.
      return c.json({ active: true, token_type: tokenTypeOf(claims), ...claims }, 200, headers);
    }
    const { record, grant } = found;
    return c.json(
      {
        active: true,
        token_type: 'refresh_token',
        client_id: record.clientId,
        sub: grant.sub,
        aud: grant.resource,
        scope: record.scope,
        iss: ctx.issuer,
        iat: record.createdAt,
        exp: record.expiresAt,
      },
      200,
      headers,
    );
  });
}
