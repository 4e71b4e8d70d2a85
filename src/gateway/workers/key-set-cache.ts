/**
 * The authorization server's key set in the Cache API (`caches.default`, issue 16): a cold isolate
 * reads the set there before fetching the JWKS, and each fetch (the first, a refresh, or one forced
 * by an unknown `kid`) writes it back with `Cache-Control: max-age` = the route's
 * `jwks_refresh_seconds`. The Cache API is per data center and works only on a custom domain (on
 * `*.workers.dev` every call is a no-op: each isolate then fetches, as without it); a failing call
 * is a miss (docs/edge.md).
 *
 * `caches.default` is per zone: every Worker of the zone can write to it. The stored set is therefore
 * authenticated with `MANDATE_EDGE_CACHE_KEY` (edge-cache-key.ts): the body is `{ set, mac }`, the MAC
 * over the source and the set's JSON, checked before the set is used; one that does not verify is a
 * miss (logged) and the JWKS is fetched. Without the secret the Cache API is not used at all.
 */
import type { JWK } from 'jose';
import type { KeySetCache, StoredKeySet } from '../verification-cache.ts';
import type { EdgeCacheMac } from './edge-cache-key.ts';

const PURPOSE = 'mandate-key-set/1';

/** The part of the Workers Cache API used here. */
export interface CacheLike {
  match(request: string): Promise<Response | undefined>;
  put(request: string, response: Response): Promise<void>;
}

/** The Worker's `caches.default`, when the runtime has one (read per build, never at global scope). */
export function defaultCache(): CacheLike | undefined {
  const cache = (globalThis as { caches?: { default?: unknown } }).caches?.default;
  return typeof cache === 'object' && cache !== null && typeof (cache as CacheLike).match === 'function' && typeof (cache as CacheLike).put === 'function' ? (cache as CacheLike) : undefined;
}

/** A synthetic GET key per source, under `.internal` (a top-level name reserved for private use) so it matches no real URL. */
const keyOf = (source: string) => `https://jwks.mandate-gateway.internal/?source=${encodeURIComponent(source)}`;

function warn(operation: string, error: unknown): undefined {
  console.warn(JSON.stringify({ level: 'warn', msg: `the key set cache (Cache API) failed to ${operation}; the JWKS is fetched instead`, reason: (error as Error)?.message ?? String(error) }));
  return undefined;
}

export function cacheApiKeySets(cache: CacheLike, mac: EdgeCacheMac): KeySetCache {
  return {
    async get(source) {
      try {
        const response = await cache.match(keyOf(source));
        if (!response) return undefined;
        const stored = (await response.json()) as { set?: unknown; mac?: unknown };
        if (typeof stored.set !== 'string' || !(await mac.verify([PURPOSE, source, stored.set], stored.mac))) {
          console.warn(JSON.stringify({ level: 'warn', msg: 'the key set cache (Cache API) holds a set whose MAC does not verify; ignored, the JWKS is fetched instead', reason: 'written or altered without MANDATE_EDGE_CACHE_KEY' }));
          return undefined;
        }
        const body = JSON.parse(stored.set) as { keys?: unknown; fetched_at?: unknown };
        if (!Array.isArray(body.keys) || typeof body.fetched_at !== 'number') return undefined;
        return { keys: body.keys as JWK[], fetchedAt: body.fetched_at } satisfies StoredKeySet;
      } catch (error) {
        return warn('read', error);
      }
    },
    async put(source, set, ttlSeconds) {
      try {
        const json = JSON.stringify({ keys: set.keys, fetched_at: set.fetchedAt });
        const body = JSON.stringify({ set: json, mac: await mac.sign([PURPOSE, source, json]) });
        await cache.put(keyOf(source), new Response(body, { headers: { 'content-type': 'application/json', 'cache-control': `max-age=${ttlSeconds}` } }));
      } catch (error) {
        warn('write', error);
      }
    },
  };
}
