import { describe, expect, it } from 'vitest';
import {
  EDGES_SECONDS,
  EXPORT_EDGES_SECONDS,
  LogHistogram,
  QUANTILE_RELATIVE_ERROR,
  bucketOf,
} from '../../../src/engine/histogram.js';

describe('LogHistogram', () => {
  it('puts a duration in the first bucket whose edge is at least it', () => {
    expect(bucketOf(0)).toBe(0);
    expect(bucketOf(2 ** -10)).toBe(0);
    expect(bucketOf(1)).toBe(40); // 2^0 is edge 10 octaves x 4 up
    expect(EDGES_SECONDS[40]).toBe(1);
    expect(bucketOf(1.0001)).toBe(41);
    expect(bucketOf(2 ** 21)).toBe(EDGES_SECONDS.length); // the open bucket
    for (const s of [0.003, 0.7, 1, 29.9, 30, 120, 432000]) {
      const i = bucketOf(s);
      expect(EDGES_SECONDS[i]!).toBeGreaterThanOrEqual(s);
      if (i > 0) expect(EDGES_SECONDS[i - 1]!).toBeLessThan(s);
    }
  });

  it('reports quantiles within the stated relative error, and the exact max', () => {
    const h = new LogHistogram();
    const values: number[] = [];
    let seed = 7;
    const rand = () => ((seed = (seed * 16807) % 2147483647) / 2147483647);
    for (let i = 0; i < 10000; i++) {
      const v = 0.01 * Math.exp(rand() * 12); // 10 ms .. ~16 min, log-uniform
      values.push(v);
      h.add(v);
    }
    values.sort((a, b) => a - b);
    for (const q of [0.5, 0.9, 0.99]) {
      const truth = values[Math.ceil(q * values.length) - 1]!;
      const got = h.quantile(q)!;
      expect(Math.abs(got - truth) / truth).toBeLessThanOrEqual(QUANTILE_RELATIVE_ERROR + 1e-12);
    }
    expect(h.summary().max).toBe(values.at(-1));
    expect(h.summary().count).toBe(10000);
  });

  it('is empty-safe and caps a quantile at the max', () => {
    const h = new LogHistogram();
    expect(h.summary()).toEqual({ count: 0, p50: null, p90: null, p99: null, max: null, sum: 0 });
    h.add(1.0001);
    expect(h.quantile(0.5)).toBe(1.0001);
  });

  it('exports cumulative counts at the powers of two', () => {
    const h = new LogHistogram();
    for (const s of [0.5, 1, 1.5, 3, 1e9]) h.add(s);
    const buckets = h.exportBuckets();
    expect(buckets).toHaveLength(EXPORT_EDGES_SECONDS.length);
    const at = (edge: number) => buckets[EXPORT_EDGES_SECONDS.indexOf(edge)];
    expect(at(0.5)).toBe(1);
    expect(at(1)).toBe(2);
    expect(at(2)).toBe(3);
    expect(at(4)).toBe(4);
    expect(buckets.at(-1)).toBe(4); // 1e9 s is past the last edge: only in the count
  });
});

describe('mean lifetime corrected for the watch', () => {
  it('weights each lifetime by how likely a watch of T seconds sees it', () => {
    // Inserts spread evenly over a 10 s watch, half living 2.5 s and half 7.5 s:
    // the watch sees 75 % of the short ones and 25 % of the long ones.
    const h = new LogHistogram();
    for (let i = 0; i < 75; i++) h.add(2.5);
    for (let i = 0; i < 25; i++) h.add(7.5);
    expect(h.sum / h.count).toBeCloseTo(3.75, 9); // the naive mean
    const corrected = h.meanWatched(10)!;
    expect(Math.abs(corrected - 5) / 5).toBeLessThan(0.1); // the true mean is 5
    expect(h.meanWatched(Infinity)).toBeCloseTo(3.75, 9);
    expect(new LogHistogram().meanWatched(10)).toBeNull();
  });
});
