import { RateLimiterRedis, RateLimiterRes } from 'rate-limiter-flexible';
import type { RateLimitStore } from '../rate-limits.ts';
import { MemoryWindows } from './memory-windows.ts';

/**
 * The Node gateway's rate limit store: fixed windows in this process's memory (counted without a
 * promise: memory-windows.ts), or rate-limiter-flexible in Redis (an ioredis client) so every
 * gateway instance shares each budget.
 */
export function nodeRateLimits(options: { redis?: unknown } = {}): RateLimitStore {
  return {
    limiter(spec) {
      if (!options.redis) {
        const windows = new MemoryWindows(spec.points, spec.windowSeconds * 1000);
        return {
          consume: async (key) => windows.consume(key),
          consumeNow: (key) => windows.consume(key),
        };
      }
      const limiter = new RateLimiterRedis({ points: spec.points, duration: spec.windowSeconds, keyPrefix: spec.keyPrefix, storeClient: options.redis });
      return {
        async consume(key) {
          try {
            await limiter.consume(key);
            return { allowed: true, msBeforeNext: 0 };
          } catch (error) {
            // rate-limiter-flexible rejects with a RateLimiterRes when the bucket is spent, with an Error when its store fails.
            if (error instanceof RateLimiterRes) return { allowed: false, msBeforeNext: error.msBeforeNext };
            throw error;
          }
        },
      };
    },
  };
}
