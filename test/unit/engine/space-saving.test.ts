import { describe, expect, it } from 'vitest';
import { SpaceSaving } from '../../../src/engine/space-saving.js';

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

  it('refuses a capacity below one', () => {
    expect(() => new SpaceSaving(0)).toThrow(RangeError);
  });
});
