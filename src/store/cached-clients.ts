import type { ClientRecord, ClientStore } from './types.ts';

/** A client store whose cached records another instance's change can drop (pub/sub, see server.ts). */
export type CachedClientStore = ClientStore & { invalidate(clientId: string): void };

/**
 * Keeps client records in memory for `ttlSeconds`: a client is read on every token request, and
 * the database round trip was a fifth of the token endpoint's cost. Writes through this store
 * invalidate at once; a change made by another instance arrives by `invalidate()` (Redis pub/sub)
 * or, without Redis, is seen within the TTL. Unknown client ids are not cached, so a client
 * registered elsewhere is found immediately.
 */
export function cachedClientStore(inner: ClientStore, options: { ttlSeconds: number; maxEntries?: number }): CachedClientStore {
  if (options.ttlSeconds <= 0) return { ...inner, invalidate: () => undefined };
  const max = options.maxEntries ?? 10_000;
  const entries = new Map<string, { record: ClientRecord; expiresAt: number }>();
  // A read that started before an invalidation must not put back what it read.
  let generation = 0;
  return {
    invalidate: (clientId) => {
      generation++;
      entries.delete(clientId);
    },
    async find(clientId) {
      const hit = entries.get(clientId);
      if (hit && hit.expiresAt > Date.now()) return hit.record;
      const started = generation;
      const record = await inner.find(clientId);
      entries.delete(clientId);
      if (record && started === generation) {
        if (entries.size >= max) entries.delete(entries.keys().next().value as string);
        entries.set(clientId, { record, expiresAt: Date.now() + options.ttlSeconds * 1000 });
      }
      return record;
    },
    async upsert(client) {
      entries.delete(client.clientId);
      await inner.upsert(client);
      entries.delete(client.clientId);
    },
    async update(clientId, patch, updateOptions) {
      entries.delete(clientId);
      const updated = await inner.update(clientId, patch, updateOptions);
      entries.delete(clientId);
      return updated;
    },
    async delete(clientId) {
      entries.delete(clientId);
      return inner.delete(clientId);
    },
    async deleteUnused(before) {
      entries.clear();
      return inner.deleteUnused(before);
    },
    touch: (clientId, at) => inner.touch(clientId, at),
    list: () => inner.list(),
    findByFingerprint: (fingerprint) => inner.findByFingerprint(fingerprint),
    findByWorkload: (issuer, subject) => inner.findByWorkload(issuer, subject),
    countDynamic: () => inner.countDynamic(),
    listRestricted: () => inner.listRestricted(),
  };
}
