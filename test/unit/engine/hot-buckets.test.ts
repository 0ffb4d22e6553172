// Hot buckets: the Poisson test flags a flooded bucket, and uniform hashing raises
// no alarm (its false-alarm bound, checked on many random epochs).
import { describe, expect, it } from 'vitest';
import { HOT_BUCKET_FALSE_ALARM, HotBuckets } from '../../../src/engine/hot-buckets.js';
import { poissonPmf, poissonTail, poissonThreshold } from '../../../src/engine/poisson.js';

/** A small deterministic PRNG (mulberry32): the same streams every run. */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

describe('Poisson', () => {
  it('pmf sums to 1 and the tail is its complement, also far out', () => {
    let sum = 0;
    for (let k = 0; k < 100; k++) sum += poissonPmf(7.5, k);
    expect(sum).toBeCloseTo(1, 12);
    expect(poissonTail(7.5, 0)).toBe(1);
    expect(poissonTail(2, 3)).toBeCloseTo(1 - (poissonPmf(2, 0) + poissonPmf(2, 1) + poissonPmf(2, 2)), 12);
    // P(X >= 30) for mean 2: 5.85e-25 (P(X = 30) x (1 + 2/31 + ...)), where 1 - cdf would be 0.
    expect(poissonTail(2, 30)).toBeGreaterThan(5.8e-25);
    expect(poissonTail(2, 30)).toBeLessThan(5.9e-25);
  });

  it('the threshold is the smallest count at or under the tail probability', () => {
    const k = poissonThreshold(0.5, 1e-9);
    expect(poissonTail(0.5, k)).toBeLessThanOrEqual(1e-9);
    expect(poissonTail(0.5, k - 1)).toBeGreaterThan(1e-9);
  });
});

describe('HotBuckets', () => {
  const B = 4096;

  it('flags the flooded bucket and only it', () => {
    const hot = new HotBuckets(B);
    const r = rng(1);
    for (let i = 0; i < 20_000; i++) hot.add(Math.floor(r() * B));
    for (let i = 0; i < 60; i++) hot.add(1234);
    hot.endEpoch();
    const v = hot.view();
    expect(v.hits).toBe(20_060);
    expect(v.expectedPerBucket).toBeCloseTo(20_060 / B, 9);
    expect(v.buckets.map((b) => b.bucket)).toEqual([1234]);
    expect(v.buckets[0]!.hits).toBeGreaterThanOrEqual(60);
  });

  it('raises no alarm on uniform hashing in 200 epochs (bound: 1e-6 per epoch)', () => {
    const hot = new HotBuckets(B);
    const r = rng(7);
    let alarms = 0;
    for (let epoch = 0; epoch < 200; epoch++) {
      const n = 1000 + epoch * 100; // light to heavy tables
      for (let i = 0; i < n; i++) hot.add(Math.floor(r() * B));
      hot.endEpoch();
      alarms += hot.view().buckets.length;
    }
    expect(HOT_BUCKET_FALSE_ALARM).toBe(1e-6);
    expect(alarms).toBe(0);
  });

  it('an epoch with no insert, or a skipped one, reports nothing', () => {
    const hot = new HotBuckets(B);
    for (let i = 0; i < 100; i++) hot.add(5);
    hot.endEpoch(true);
    expect(hot.view()).toEqual({ hits: 0, expectedPerBucket: 0, threshold: 0, buckets: [] });
    hot.endEpoch();
    expect(hot.view().buckets).toEqual([]);
  });

  it('grows to a bucket past its size (a resized table) and tests against the new size', () => {
    const hot = new HotBuckets(16);
    hot.add(100);
    hot.endEpoch();
    expect(hot.view().expectedPerBucket).toBeCloseTo(1 / 101, 12);
  });
});
