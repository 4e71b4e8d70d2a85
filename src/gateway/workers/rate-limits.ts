import type { RateLimitStore } from '../rate-limits.ts';

/**
 * A fixed-window rate limit store in the isolate's memory: the fallback of a Worker without the
 * `GATEWAY_STATE` Durable Object binding (durable-state.ts).
 *
 * PER ISOLATE: Cloudflare runs many isolates of one Worker (one or more per location) and may evict
 * any of them at any time, so each isolate counts its own requests and a budget of N per window is
 * really N per isolate. It is exact under `workerd` locally and in tests (one isolate), and a
 * best-effort brake in production. With the binding, `durableRateLimits` (one object per bucket
 * key, the budget shared by every isolate) implements the same `RateLimitStore`.
 */
export function isolateRateLimits(options: { maxBuckets?: number; now?: () => number } = {}): RateLimitStore {
  const maxBuckets = options.maxBuckets ?? 10_000;
  const now = options.now ?? Date.now;
  // One map for every limit: keys carry the limit's prefix. Oldest-inserted evicted first.
  const buckets = new Map<string, { windowEnds: number; count: number }>();
  return {
    limiter(spec) {
      const windowMs = spec.windowSeconds * 1000;
      return {
        consume(key) {
          const id = `${spec.keyPrefix}:${key}`;
          const at = now();
          let bucket = buckets.get(id);
          if (!bucket || bucket.windowEnds <= at) {
            buckets.delete(id);
            if (buckets.size >= maxBuckets) buckets.delete(buckets.keys().next().value as string);
            bucket = { windowEnds: at + windowMs, count: 0 };
            buckets.set(id, bucket);
          }
          bucket.count++;
          return Promise.resolve(bucket.count <= spec.points ? { allowed: true, msBeforeNext: 0 } : { allowed: false, msBeforeNext: bucket.windowEnds - at });
        },
      };
    },
  };
}
