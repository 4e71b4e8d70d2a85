import type { Context, Hono } from 'hono';
import { OAuthError } from '../../core/errors.ts';
import { isPublicClient } from '../../core/client-metadata.ts';
import { authenticateClient } from '../client-auth/index.ts';
import type { AppEnv, ServerContext } from '../context.ts';
import { formParams, Params } from '../params.ts';

/**
 * The revocation list, for resource servers and gateways that verify JWTs locally: access tokens
 * revoked before they expire (by `jti`) and restricted clients: a token whose `client_id` or `act`
 * chain names a disabled client must be refused, and so must one issued (`iat`) at or before that
 * client's `tokens_valid_after`. Read by an authenticated confidential client, like
 * introspection (GET with HTTP Basic, or POST with any client authentication); poll it, or use
 * introspection for each token.
 */
export function revocationsEndpoint(app: Hono<AppEnv>, ctx: ServerContext) {
  const handle = async (c: Context, params: Params) => {
    const client = await authenticateClient(ctx, c, params, ctx.url('/revocations'));
    c.set('clientId', client.clientId);
    if (isPublicClient(client)) throw new OAuthError('invalid_client', 'the revocation list needs an authenticated client', { status: 401 });
    const now = ctx.now();
    const [tokens, clients] = await Promise.all([ctx.store.grants.listRevokedAccessTokens(now), ctx.store.clients.listRestricted()]);
    return c.json(
      {
        issuer: ctx.issuer,
        generated_at: now,
        tokens: tokens.map((t) => ({ jti: t.jti, exp: t.expiresAt, revoked_at: t.revokedAt })),
        clients: clients
          .filter((d) => d.disabledAt !== undefined || d.tokensValidAfter !== undefined || (d.expiresAt !== undefined && d.expiresAt <= now))
          .map((d) => ({ client_id: d.clientId, disabled_at: d.disabledAt ?? null, tokens_valid_after: d.tokensValidAfter ?? null, expired_at: d.expiresAt ?? null })),
      },
      200,
      { 'Cache-Control': 'no-store' },
    );
  };
  // GET authenticates with the Authorization header only: credentials never travel in a URL.
  app.get('/revocations', (c) => handle(c, Params.fromSearch(new URLSearchParams())));
  app.post('/revocations', async (c) => handle(c, await formParams(c)));
}
