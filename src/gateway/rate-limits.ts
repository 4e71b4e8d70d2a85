/**
 * Rate limit buckets behind an interface, so the gateway's core stays runtime-neutral (issue 16):
 * the throttle filter counts requests through a `RateLimiter`, and the host supplies the store —
 * rate-limiter-flexible in memory or in Redis on Node (`node/rate-limits.ts`), a Durable Object on
 * Workers.
 */

/** One configured limit: `points` requests per fixed window of `windowSeconds`, keys under `keyPrefix`. */
export interface RateLimitSpec {
  name: string;
  points: number;
  windowSeconds: number;
  keyPrefix: string;
}

export interface RateLimitOutcome {
  allowed: boolean;
  /** Until the window ends (the `Retry-After` of a refusal). */
  msBeforeNext: number;
}

export interface RateLimiter {
  /** Counts one request in the bucket `key`. Throws when the store cannot answer: the filter then fails closed (503). */
  consume(key: string): Promise<RateLimitOutcome>;
  /** The same count at once, for a store in this process's memory: the filter then waits for nothing. */
  consumeNow?(key: string): RateLimitOutcome;
}

/** Where a host keeps rate limit buckets: one limiter per configured limit of a route. */
export interface RateLimitStore {
  limiter(spec: RateLimitSpec): RateLimiter;
}
