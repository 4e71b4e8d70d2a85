import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { isolateRateLimits } from '../../src/gateway/workers/rate-limits.ts';

describe('the Worker\'s per-isolate rate limit store (fixed windows)', () => {
  const spec = { name: 'calls', points: 2, windowSeconds: 10, keyPrefix: 'p:/mcp:calls' };

  it('allows `points` per window and key, refuses with the time to the window\'s end, and starts a new window', async () => {
    let now = 1_000_000;
    const limiter = isolateRateLimits({ now: () => now }).limiter(spec);
    assert.deepEqual(await limiter.consume('alice'), { allowed: true, msBeforeNext: 0 });
    now += 1_000;
    assert.deepEqual(await limiter.consume('alice'), { allowed: true, msBeforeNext: 0 });
    now += 1_500;
    assert.deepEqual(await limiter.consume('alice'), { allowed: false, msBeforeNext: 7_500 });
    assert.equal((await limiter.consume('bob')).allowed, true, 'each key has its own bucket');
    now += 7_500;
    assert.deepEqual(await limiter.consume('alice'), { allowed: true, msBeforeNext: 0 }, 'a new window');
  });

  it('limits of one store do not share buckets (the key prefix), and the bucket count is bounded', async () => {
    const store = isolateRateLimits({ maxBuckets: 2 });
    const a = store.limiter({ ...spec, points: 1 });
    const b = store.limiter({ ...spec, points: 1, keyPrefix: 'p:/mcp:other' });
    assert.equal((await a.consume('alice')).allowed, true);
    assert.equal((await b.consume('alice')).allowed, true);
    assert.equal((await a.consume('alice')).allowed, false);
    // A third bucket evicts the oldest (a's alice): its budget starts over — bounded memory over exactness.
    assert.equal((await a.consume('carol')).allowed, true);
    assert.equal((await a.consume('alice')).allowed, true);
  });
});
