import { Redis } from 'ioredis';
import type { TtlCache } from './types.ts';

/**
 * Short-lived state in Redis (`REDIS_URL`): interactions, sign-in sessions and replay caches are
 * then shared by every instance, so a browser may land on any of them. Values are JSON; every key
 * carries its TTL and a prefix.
 */
export function redisCache(url: string, options: { prefix?: string; onError?: (error: Error) => void } = {}): TtlCache & { close(): Promise<void> } {
  // While Redis is down a command waits for at most one reconnection (≤ 1 s) and then fails, and
  // the request is answered 503; reconnection goes on in the background.
  const redis = new Redis(url, { lazyConnect: false, maxRetriesPerRequest: 1, enableOfflineQueue: true, retryStrategy: (times) => Math.min(times * 100, 1_000) });
  // Without a listener ioredis prints every failed reconnection to the console.
  redis.on('error', (error: Error) => options.onError?.(error));
  const prefix = options.prefix ?? 'mandate:';
  const key = (k: string) => `${prefix}${k}`;
  const seconds = (ttl: number) => Math.max(1, Math.ceil(ttl));
  return {
    async get<T>(k: string) {
      const value = await redis.get(key(k));
      return value === null ? undefined : (JSON.parse(value) as T);
    },
    async set(k, value, ttlSeconds) {
      await redis.set(key(k), JSON.stringify(value), 'EX', seconds(ttlSeconds));
    },
    async delete(k) {
      await redis.del(key(k));
    },
    async add(k, value, ttlSeconds) {
      // SET NX is atomic across instances: exactly one caller wins (replay detection).
      return (await redis.set(key(k), JSON.stringify(value), 'EX', seconds(ttlSeconds), 'NX')) === 'OK';
    },
    async close() {
      await redis.quit().catch(() => redis.disconnect());
    },
  };
}
