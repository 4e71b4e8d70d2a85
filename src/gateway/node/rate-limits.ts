import { RateLimiterMemory, RateLimiterRedis, RateLimiterRes } from 'rate-limiter-flexible';
import type { RateLimitStore } from '../rate-limits.ts';

/**
 * The Node gateway's rate limit store: rate-limiter-flexible's fixed windows, in this process's
 * memory, or in Redis (an ioredis client) so every gateway instance shares each budget.
 */
export function nodeRateLimits(options: { redis?: unknown } = {}): RateLimitStore {
  return {
    limiter(spec) {
      const settings = { points: spec.points, duration: spec.windowSeconds, keyPrefix: spec.keyPrefix };
      const limiter = options.redis ? new RateLimiterRedis({ ...settings, storeClient: options.redis }) : new RateLimiterMemory(settings);
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
