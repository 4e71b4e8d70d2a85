import type { Redis } from 'ioredis';
import { RateLimiterMemory, RateLimiterRedis, RateLimiterRes, type RateLimiterAbstract } from 'rate-limiter-flexible';
import { OAuthError } from '../core/errors.ts';

export interface Limiter {
  /** Counts one attempt; false when the key is over its limit (with the seconds until it may retry). */
  consume(key: string): Promise<{ allowed: true } | { allowed: false; retryAfter: number }>;
  /** Gives one attempt back (a success that should not count). */
  reward(key: string): Promise<void>;
  /** Forgets the key's attempts. */
  reset(key: string): Promise<void>;
}

export type LimiterFactory = (name: string, options: { points: number; perSeconds: number }) => Limiter;

/**
 * Rate limits, in Redis when the server has it (every instance counts into one bucket, so two
 * instances allow exactly the configured number, not twice it), else in this process.
 *
 * A Redis outage fails closed: the limited request is answered 503 `temporarily_unavailable`.
 * Falling back to a per-process count would multiply the allowance by the number of instances
 * just when an attacker may have caused the outage; and sign-in needs Redis anyway for its
 * interaction and session state.
 */
export function limiterFactory(options: { redis?: Redis; prefix: string; onUnavailable?: (reason: string) => void }): LimiterFactory {
  // One limiter per name and limits: two places counting one budget (sign-in, and the password on
  // the approval page) share it in this process too, as they do in Redis by its key prefix.
  const made = new Map<string, Limiter>();
  return (name, { points, perSeconds }) => {
    const key = `${name}\n${points}\n${perSeconds}`;
    let limiter = made.get(key);
    if (!limiter) {
      limiter = build(name, points, perSeconds);
      made.set(key, limiter);
    }
    return limiter;
  };

  function build(name: string, points: number, perSeconds: number): Limiter {
    const limiter: RateLimiterAbstract = options.redis
      ? new RateLimiterRedis({ storeClient: options.redis, keyPrefix: `${options.prefix}${name}`, points, duration: perSeconds })
      : new RateLimiterMemory({ keyPrefix: name, points, duration: perSeconds });
    const unavailable = (error: unknown): never => {
      const reason = `rate limit store unavailable (${name}): ${error instanceof Error ? error.message : String(error)}`;
      // 5xx errors are not audited by the error handler: this refusal is, here.
      options.onUnavailable?.(reason);
      throw new OAuthError('temporarily_unavailable', 'the service is temporarily unavailable; try again later', { status: 503, reason });
    };
    return {
      async consume(key) {
        try {
          await limiter.consume(key);
          return { allowed: true };
        } catch (error) {
          if (error instanceof RateLimiterRes) return { allowed: false, retryAfter: Math.max(1, Math.ceil(error.msBeforeNext / 1000)) };
          return unavailable(error);
        }
      },
      async reward(key) {
        await limiter.reward(key).catch(unavailable);
      },
      async reset(key) {
        await limiter.delete(key).catch(unavailable);
      },
    };
  }
}
