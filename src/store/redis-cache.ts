import { Redis } from 'ioredis';
import type { TtlCache } from './types.ts';

/**
 * Compare-and-set in one Lua script (Redis runs a script atomically): the value is replaced, or
 * deleted when the new value is empty, only if it is still the JSON the caller read. Values are
 * written by JSON.stringify and read by JSON.parse, so a re-stringified read matches byte for byte.
 */
const SWAP = `if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
if ARGV[2] == '' then redis.call('DEL', KEYS[1]) else redis.call('SET', KEYS[1], ARGV[2], 'EX', ARGV[3]) end
return 1`;

/**
 * Short-lived state in Redis (`REDIS_URL`): interactions, sign-in sessions and replay caches are
 * then shared by every instance, so a browser may land on any of them. Values are JSON; every key
 * carries its TTL and a prefix.
 */
export function redisCache(url: string, options: { prefix?: string; onError?: (error: Error) => void } = {}): TtlCache & { client: Redis; close(): Promise<void> } {
  // While Redis is down a command waits for at most one reconnection (≤ 1 s) and then fails, and
  // the request is answered 503; reconnection goes on in the background.
  const redis = new Redis(url, { lazyConnect: false, maxRetriesPerRequest: 1, enableOfflineQueue: true, retryStrategy: (times) => Math.min(times * 100, 1_000) });
  // Without a listener ioredis prints every failed reconnection to the console.
  redis.on('error', (error: Error) => options.onError?.(error));
  const prefix = options.prefix ?? 'mandate:';
  const key = (k: string) => `${prefix}${k}`;
  const seconds = (ttl: number) => Math.max(1, Math.ceil(ttl));
  return {
    /** The connection, for state that needs Redis itself (shared rate limits). */
    client: redis,
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
    async swap(k, expected, next, ttlSeconds) {
      const replaced = await redis.eval(SWAP, 1, key(k), JSON.stringify(expected), next === undefined ? '' : JSON.stringify(next), seconds(ttlSeconds));
      return replaced === 1;
    },
    async close() {
      await redis.quit().catch(() => redis.disconnect());
    },
  };
}
