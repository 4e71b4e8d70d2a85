import type { Context, Hono } from 'hono';
import { OAuthError } from '../../core/errors.ts';
import { isPublicClient } from '../../core/client-metadata.ts';
import { authenticateClient } from '../client-auth/index.ts';
import type { AppEnv, ServerContext } from '../context.ts';
import { hashSecret } from '../hash.ts';
import { mayReadRevocations } from '../introspection-access.ts';
import { formParams, Params } from '../params.ts';

/**
 * How far back an incremental answer reaches before the `since` a client was handed: a revocation
 * stamped at second T may commit a little later than a poll made during T, so answers overlap and
 * the reader merges (adding a jti twice is harmless).
 */
export const REVOCATIONS_OVERLAP_SECONDS = 10;

/**
 * The revocation list, for resource servers and gateways that verify JWTs locally: access tokens
 * revoked before they expire (by `jti`), revoked grants (tokens carry `grant_id`), and restricted
 * clients: a token whose `client_id` or `act` chain names a disabled client must be refused, and
 * so must one issued (`iat`) at or before that client's `tokens_valid_after`.
 *
 * Readable only by a resource server or gateway (`resources[].resource_servers`) or a client with
 * `introspection: allowed` (GET with HTTP Basic, or POST with any client authentication).
 * Incremental: `?since=<next_since of the last answer>` returns only tokens and grants revoked
 * since (clients, a short list, always in full); `If-None-Match` with the last `ETag` gets 304
 * when nothing changed. With REDIS_URL the same events are also pushed (see `revocation-bus.ts`).
 */
export function revocationsEndpoint(app: Hono<AppEnv>, ctx: ServerContext) {
  const handle = async (c: Context, params: Params, sinceParam: string | undefined) => {
    const client = await authenticateClient(ctx, c, params, ctx.url('/revocations'));
    c.set('clientId', client.clientId);
    if (isPublicClient(client)) throw new OAuthError('invalid_client', 'the revocation list needs an authenticated client', { status: 401 });
    if (!mayReadRevocations(ctx, client.clientId)) {
      throw new OAuthError('access_denied', 'this client may not read the revocation list', { reason: `${client.clientId} serves no resource and has no introspection permission` });
    }
    if (sinceParam !== undefined && !/^\d{1,12}$/.test(sinceParam)) throw new OAuthError('invalid_request', 'since must be epoch seconds');
    const now = ctx.now();
    // Tokens outlive no grant revocation by more than the longest access token lifetime.
    const longest = Math.max(ctx.config.tokens.access_token_ttl, ...ctx.resources().map((r) => r.accessTokenTtl));
    const since = sinceParam === undefined ? 0 : Number(sinceParam);
    const [tokens, grants, clients] = await Promise.all([
      ctx.store.grants.listRevokedAccessTokens(now, since),
      ctx.store.grants.listRevokedGrants(Math.max(since, now - longest)),
      ctx.store.clients.listRestricted(),
    ]);
    const content = {
      tokens: tokens.map((t) => ({ jti: t.jti, exp: t.expiresAt, revoked_at: t.revokedAt })),
      grants: grants.map((g) => ({ grant_id: g.id, revoked_at: g.revokedAt, until: g.revokedAt + longest })),
      clients: clients
        // Agents with an expiry are listed before it: a reader refuses them the moment it passes.
        .filter((d) => d.disabledAt !== undefined || d.tokensValidAfter !== undefined || d.expiresAt !== undefined)
        .map((d) => ({ client_id: d.clientId, disabled_at: d.disabledAt ?? null, tokens_valid_after: d.tokensValidAfter ?? null, expired_at: d.expiresAt ?? null })),
    };
    const etag = `"${hashSecret(JSON.stringify(content))}"`;
    const headers = { 'Cache-Control': 'no-store', ETag: etag };
    // RFC 9110 §13.1.2
    if (c.req.header('if-none-match') === etag) return c.body(null, 304, headers);
    return c.json({ issuer: ctx.issuer, generated_at: now, since, next_since: Math.max(0, now - REVOCATIONS_OVERLAP_SECONDS), ...content }, 200, headers);
  };
  // GET authenticates with the Authorization header only: credentials never travel in a URL.
  app.get('/revocations', (c) => handle(c, Params.fromSearch(new URLSearchParams()), c.req.query('since')));
  app.post('/revocations', async (c) => {
    const params = await formParams(c);
    return handle(c, params, params.get('since'));
  });
}
