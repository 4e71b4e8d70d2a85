import type { Store } from '../store/types.ts';
import { revocationChannel, type ListedClient, type RevocationEvent } from '../store/revocation-channel.ts';
import type { ServerContext } from './context.ts';

/**
 * Makes every revocation reach other instances and gateways at once (REDIS_URL): the store's
 * revoking writes are wrapped so that, once committed, they are published on the revocation
 * channel. Every instance also listens: a client change made elsewhere drops this instance's
 * cached copy of that client and its restriction cache, so no cache here lets a disabled client
 * through after the message arrives. Without Redis nothing is published; caches expire on their
 * own (storage.client_cache_seconds, 2 s for restrictions) and gateways poll.
 */
const PUBLISH_TIMEOUT_MS = 500;

export function publishRevocations(options: { ctx: ServerContext; store: Store; redisUrl?: string; onClientChanged: (clientId: string) => void }): { close(): Promise<void> } {
  const { ctx, store } = options;
  if (!options.redisUrl) return { close: async () => undefined };
  const channel = revocationChannel({
    url: options.redisUrl,
    channel: ctx.config.storage.revocation_channel,
    onEvent: (event) => {
      if (event.iss !== ctx.issuer || event.type !== 'client') return;
      options.onClientChanged(event.client.client_id);
      void ctx.refreshDisabled().catch((error: Error) => ctx.log.warn({ err: error.message }, 'cannot re-read client restrictions'));
    },
    onError: (error) => ctx.log.warn({ err: error.message }, 'revocation channel (redis) error'),
  });
  // The write is committed before this runs; the message is best effort (the poll is the fallback),
  // bounded so that a Redis outage never holds a revocation request for long.
  const publish = async (event: RevocationEvent) => {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error('publish timed out')), PUBLISH_TIMEOUT_MS)));
    await Promise.race([channel.publish(event), timeout])
      .catch((error: Error) => ctx.log.warn({ err: error.message, type: event.type }, 'revocation not published; gateways will see it at their next poll'))
      .finally(() => clearTimeout(timer));
  };
  const longest = () => Math.max(ctx.config.tokens.access_token_ttl, ...ctx.resources().map((r) => r.accessTokenTtl));
  const publishClient = async (clientId: string) => {
    const record = (await store.clients.listRestricted()).find((r) => r.clientId === clientId);
    const client: ListedClient = {
      client_id: clientId,
      disabled_at: record?.disabledAt ?? null,
      tokens_valid_after: record?.tokensValidAfter ?? null,
      expired_at: record?.expiresAt ?? null,
    };
    await publish({ iss: ctx.issuer, type: 'client', client });
  };

  const grants = store.grants;
  store.grants = {
    ...grants,
    async revokeGrant(id, at) {
      await grants.revokeGrant(id, at);
      await publish({ iss: ctx.issuer, type: 'grant', grant_id: id, revoked_at: at, until: at + longest() });
    },
    async revokeAccessToken(token, at) {
      await grants.revokeAccessToken(token, at);
      await publish({ iss: ctx.issuer, type: 'token', jti: token.jti, exp: token.expiresAt, revoked_at: at });
    },
  };
  const clients = store.clients;
  store.clients = {
    ...clients,
    async update(clientId, patch, updateOptions) {
      const updated = await clients.update(clientId, patch, updateOptions);
      // Metadata and the workload identity too: another instance's cached copy of the client (how
      // it authenticates, dpop_bound_access_tokens, sub_profile) is dropped at once.
      if (updated && ('disabledAt' in patch || 'tokensValidAfter' in patch || 'agent' in patch || 'metadata' in patch || 'workloadIdentity' in patch)) await publishClient(clientId);
      return updated;
    },
  };
  return { close: () => channel.close() };
}
