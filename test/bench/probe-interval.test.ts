import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { medianInterval, pairedDifferences } from '../../bench/lib/probe.ts';

/** A seeded generator (mulberry32): the same draws on every run. */
function seeded(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

describe("the bench probe's confidence interval for a median", () => {
  it('takes the textbook order statistics (n = 100: the 40th and 61st values), whatever the order given', () => {
    const values = Array.from({ length: 100 }, (_, i) => 100 - i);
    assert.deepEqual(medianInterval(values), { low: 40, high: 61 });
  });

  it('gives none for fewer than 6 values, and stays within the values for few', () => {
    assert.equal(medianInterval([1, 2, 3, 4, 5]), undefined);
    assert.deepEqual(medianInterval([1, 2, 3, 4, 5, 6]), { low: 1, high: 6 });
  });

  it('covers the true median in about 95 % of samples (n = 60, a skewed distribution)', () => {
    const random = seeded(18);
    // Exponential draws: the true median is ln 2.
    const median = Math.LN2;
    let covered = 0;
    const trials = 2000;
    for (let t = 0; t < trials; t++) {
      const sample = Array.from({ length: 60 }, () => -Math.log(1 - random()));
      const ci = medianInterval(sample)!;
      if (ci.low <= median && median <= ci.high) covered++;
    }
    const coverage = covered / trials;
    assert.ok(coverage >= 0.93 && coverage <= 0.99, `coverage ${coverage}`);
  });

  it('pairs the rounds: differences of the same round', () => {
    assert.deepEqual(pairedDifferences([3, 5, 9], [1, 1, 4]), [2, 4, 5]);
  });
});
