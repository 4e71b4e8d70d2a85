import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { RateLimiterMemory, RateLimiterRes } from 'rate-limiter-flexible';
import { MemoryWindows } from '../../src/gateway/node/memory-windows.ts';

/** A small deterministic PRNG (mulberry32): the same traffic on every run. */
function random(seed: number): () => number {
  let a = seed;
  return () => {
    a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

describe('in-memory rate limit windows (differential against rate-limiter-flexible)', () => {
  it('allows and refuses as RateLimiterMemory does, with the same time to wait, on random traffic', async () => {
    const realNow = Date.now;
    let now = 1_764_500_000_000;
    // The library reads Date.now(); both read the same made-up clock.
    Date.now = () => now;
    try {
      for (const [points, seconds, seed] of [[3, 1, 1], [1, 2, 2], [5, 1, 3], [0, 1, 4]] as const) {
        const library = new RateLimiterMemory({ points, duration: seconds, keyPrefix: `diff-${seed}` });
        const ours = new MemoryWindows(points, seconds * 1000, () => now);
        const next = random(seed);
        let refused = 0;
        for (let step = 0; step < 3_000; step++) {
          // Bursts and pauses: most steps a few ms, some across a window's end (exactly at it too).
          const roll = next();
          now += roll < 0.7 ? Math.floor(next() * 20) : roll < 0.95 ? Math.floor(next() * 700) : seconds * 1000;
          const key = `key-${Math.floor(next() * 4)}`;
          let expected: { allowed: boolean; msBeforeNext: number };
          try {
            await library.consume(key);
            expected = { allowed: true, msBeforeNext: 0 };
          } catch (error) {
            assert.ok(error instanceof RateLimiterRes);
            expected = { allowed: false, msBeforeNext: error.msBeforeNext };
          }
          const actual = ours.consume(key);
          assert.deepEqual({ allowed: actual.allowed, msBeforeNext: actual.msBeforeNext }, expected, `points ${points}, step ${step}, ${key}`);
          if (!actual.allowed) refused++;
        }
        // The traffic exercised both answers.
        assert.ok(refused > 0, `points ${points}: some requests refused`);
        if (points > 0) assert.ok(refused < 3_000, `points ${points}: some requests allowed`);
      }
    } finally {
      Date.now = realNow;
    }
  });

  it('forgets ended windows: keys do not pile up', () => {
    let now = 0;
    const windows = new MemoryWindows(10, 1_000, () => now);
    for (let i = 0; i < 1_000; i++) windows.consume(`caller-${i}`);
    assert.equal(windows.size, 1_000);
    now += 1_000;
    // The first new window after the end sweeps the ended ones.
    windows.consume('late');
    assert.equal(windows.size, 1);
    assert.equal(windows.consume('caller-1').allowed, true, 'a caller seen in an ended window starts afresh');
  });
});
