import { describe, expect, it } from 'vitest';
import { SpaceSaving, kthLargest } from '../../../src/engine/space-saving.js';

/** A skewed stream: key i appears with weight ~ 1 / (i + 1) (Zipf), shuffled. */
function zipfStream(keys: number, events: number, seed: number): number[] {
  let s = seed;
  const rand = () => ((s = (s * 16807) % 2147483647) / 2147483647);
  const weights = Array.from({ length: keys }, (_, i) => 1 / (i + 1));
  const total = weights.reduce((a, b) => a + b, 0);
  const cdf: number[] = [];
  weights.reduce((acc, w, i) => (cdf[i] = acc + w / total), 0);
  return Array.from({ length: events }, () => {
    const r = rand();
    let lo = 0;
    let hi = keys - 1;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (cdf[mid]! < r) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  });
}

describe('SpaceSaving', () => {
  it('is exact while the keys fit', () => {
    const ss = new SpaceSaving<string>(3);
    for (const k of ['a', 'b', 'a', 'c', 'a', 'b']) ss.add(k);
    expect(ss.top()).toEqual([
      { key: 'a', count: 3, error: 0 },
      { key: 'b', count: 2, error: 0 },
      { key: 'c', count: 1, error: 0 },
    ]);
  });

  it('keeps every key above n/k and bounds every count by its error, on a skewed stream', () => {
    const k = 50;
    const stream = zipfStream(5000, 100_000, 42);
    const ss = new SpaceSaving<number>(k);
    const truth = new Map<number, number>();
    for (const key of stream) {
      ss.add(key);
      truth.set(key, (truth.get(key) ?? 0) + 1);
    }
    expect(ss.total).toBe(stream.length);
    const top = ss.top();
    expect(top).toHaveLength(k);
    const reported = new Set(top.map((h) => h.key));
    for (const [key, count] of truth) if (count > ss.errorBound) expect(reported.has(key)).toBe(true);
    for (const h of top) {
      const real = truth.get(h.key)!;
      expect(h.count).toBeGreaterThanOrEqual(real);
      expect(h.count - h.error).toBeLessThanOrEqual(real);
      expect(h.error).toBeLessThanOrEqual(ss.errorBound);
    }
    // The heaviest keys of a Zipf stream come out first, in order.
    expect(top.slice(0, 3).map((h) => h.key)).toEqual([0, 1, 2]);
  });

  it('keeps its bounds with weighted adds (per-batch counts) and when merging two summaries', () => {
    const k = 50;
    const stream = zipfStream(5000, 100_000, 9);
    const a = new SpaceSaving<number>(k);
    const b = new SpaceSaving<number>(k);
    const truth = new Map<number, number>();
    // Two halves, each added as per-batch counts of 4096 events, as the engine does.
    stream.forEach((key) => truth.set(key, (truth.get(key) ?? 0) + 1));
    const addBatches = (ss: SpaceSaving<number>, part: number[]): void => {
      for (let at = 0; at < part.length; at += 4096) {
        const counts = new Map<number, number>();
        for (const key of part.slice(at, at + 4096)) counts.set(key, (counts.get(key) ?? 0) + 1);
        for (const [key, n] of counts) ss.add(key, n);
      }
    };
    addBatches(a, stream.slice(0, 50_000));
    addBatches(b, stream.slice(50_000));
    a.merge(b);
    expect(a.total).toBe(stream.length);
    const reported = new Set(a.top().map((h) => h.key));
    // Every key above the sum of both bounds is kept; every count is bracketed.
    for (const [key, count] of truth) if (count > stream.length / k) expect(reported.has(key)).toBe(true);
    for (const h of a.top()) {
      const real = truth.get(h.key)!;
      expect(h.count).toBeGreaterThanOrEqual(real);
      expect(h.count - h.error).toBeLessThanOrEqual(real);
    }
  });

  /** Every key above total / k kept; every count bracketed; counts sum to at most the total. */
  function expectGuarantees(ss: SpaceSaving<number>, truth: Map<number, number>, k: number): void {
    const top = ss.top();
    const reported = new Set(top.map((h) => h.key));
    for (const [key, count] of truth) if (count > ss.total / k) expect(reported.has(key)).toBe(true);
    for (const h of top) {
      const real = truth.get(h.key) ?? 0;
      expect(h.count).toBeGreaterThanOrEqual(real);
      expect(h.count - h.error).toBeLessThanOrEqual(real);
    }
    expect(top.reduce((n, h) => n + h.count, 0)).toBeLessThanOrEqual(ss.total);
  }

  it('addBatch: exact while the keys fit, as one-by-one adds', () => {
    const a = new SpaceSaving<string>(4);
    a.addBatch(['a', 'b', 'c'], [3, 1, 2], 3);
    a.addBatch(['b', 'd'], [4, 1], 2);
    expect(a.top()).toEqual([
      { key: 'b', count: 5, error: 0 },
      { key: 'a', count: 3, error: 0 },
      { key: 'c', count: 2, error: 0 },
      { key: 'd', count: 1, error: 0 },
    ]);
    expect(a.total).toBe(11);
  });

  it('addBatch keeps the bounds on a skewed stream, and on a storm of new keys around a few heavy ones', () => {
    const k = 50;
    const feed = (ss: SpaceSaving<number>, stream: number[], truth: Map<number, number>): void => {
      for (let at = 0; at < stream.length; at += 4096) {
        const counts = new Map<number, number>();
        for (const key of stream.slice(at, at + 4096)) counts.set(key, (counts.get(key) ?? 0) + 1);
        ss.addBatch([...counts.keys()], [...counts.values()], counts.size);
        for (const [key, n] of counts) truth.set(key, (truth.get(key) ?? 0) + n);
      }
    };
    const zipf = new SpaceSaving<number>(k);
    const zipfTruth = new Map<number, number>();
    feed(zipf, zipfStream(5000, 100_000, 7), zipfTruth);
    expect(zipf.total).toBe(100_000);
    expectGuarantees(zipf, zipfTruth, k);
    expect(zipf.top(3).map((h) => h.key)).toEqual([0, 1, 2]);

    // A storm: 200,000 sources seen once each, and three that send 3 % each.
    const storm: number[] = [];
    for (let i = 0; i < 200_000; i++) storm.push(1000 + i, ...(i % 33 === 0 ? [1, 2, 3] : []));
    const ss = new SpaceSaving<number>(k);
    const truth = new Map<number, number>();
    feed(ss, storm, truth);
    expectGuarantees(ss, truth, k);
    expect(ss.top(3).map((h) => h.key).sort()).toEqual([1, 2, 3]);
  });

  it('kthLargest finds the k-th largest, ties included', () => {
    let seed = 3;
    const rand = () => ((seed = (seed * 16807) % 2147483647) % 50);
    for (let round = 0; round < 200; round++) {
      const n = 1 + (round % 40);
      const values = Array.from({ length: n }, rand);
      const sorted = [...values].sort((a, b) => b - a);
      for (let k = 1; k <= n; k++) expect(kthLargest(Float64Array.from(values), n, k)).toBe(sorted[k - 1]);
    }
  });

  it('refuses a capacity below one', () => {
    expect(() => new SpaceSaving(0)).toThrow(RangeError);
  });
});
