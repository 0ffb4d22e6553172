// Entries per netns: a census count carried forward by exact counters; the
// fullest netns, its fill and seconds to full.
import { describe, expect, it } from 'vitest';
import { entriesByNetns, FillAverage, fillBaseline, netnsKey, tableFill } from '../../../src/engine/table-fill.js';
import { censusView } from '../../../src/engine/census-view.js';

/** Entry counts per netns key, as the monitor samples them. */
const counts = (pairs: Array<[number, number]>) => new Map(pairs.map(([key, entries]) => [key, { entries }]));
const row = (cookie: number, inode: number, l4proto: number, inserts: number, destroys: number) => ({ cookie, inode, l4proto, inserts, destroys, lost: 0 });

describe('tableFill', () => {
  it('is unknown before a census', () => {
    expect(tableFill({ max: 100, entries: null, growth: new Map() })).toEqual({
      known: false, total: null, netns: [], fullest: null, averagedSeconds: 0,
    });
  });

  it('carries the census forward by inserts minus destroys of every protocol, per netns', () => {
    // At the census: netns A had 50 entries and counters +30 (tcp) -10 (udp); B had 7, no counters yet.
    const atCensus = [row(1, 11, 6, 30, 0), row(1, 11, 17, 0, 10)];
    const baseline = fillBaseline([{ cookie: 1, inode: 11, entries: 50 }, { cookie: 2, inode: 22, entries: 7 }], atCensus);
    // Since: A +5 tcp; B +3 -1; C (new, no cookie: kernel before 5.12) +4.
    const now = [row(1, 11, 6, 35, 0), row(1, 11, 17, 0, 10), row(2, 22, 17, 3, 1), row(0, 33, 17, 4, 0)];
    const growth = new Map([[netnsKey(1, 11), 2], [netnsKey(2, 22), -1]]);
    const fill = tableFill({ max: 100, entries: entriesByNetns(baseline, [{ cookie: 1, inode: 11 }, { cookie: 2, inode: 22 }], now), growth });
    expect(fill.total).toBe(55 + 9 + 4);
    expect(fill.netns.map((n) => [n.inode, n.entries])).toEqual([[11, 55], [22, 9], [33, 4]]);
    expect(fill.fullest).toEqual({ cookie: 1, inode: 11, entries: 55, fillPercent: 55, netPerSecond: 2, secondsToFull: 22.5, meanEntries: null });
    expect(fill.netns[1]!.secondsToFull).toBeNull(); // shrinking
  });

  it('no limit (max 0): no fill and no seconds to full', () => {
    const fill = tableFill({ max: 0, entries: entriesByNetns(new Map([[netnsKey(1, 11), 10]]), [{ cookie: 1, inode: 11 }], []), growth: new Map([[netnsKey(1, 11), 5]]) });
    expect(fill.fullest).toMatchObject({ entries: 10, fillPercent: null, secondsToFull: null });
  });
});

describe('FillAverage', () => {
  it('weights each sample by the time it held, and forgets a netns gone from the samples', () => {
    const avg = new FillAverage();
    avg.sample(counts([[1, 100], [2, 10]]), 0);
    expect(avg.mean(1)).toBeNull(); // nothing averaged yet
    avg.sample(counts([[1, 300], [2, 10]]), 1000); // 100 held for 1 s
    avg.sample(counts([[1, 0], [3, 7]]), 4000); // 300 held for 3 s; netns 2 gone; 3 new
    // netns 1: (100 x 1 + 300 x 3) / 4 = 250; netns 3: nothing averaged yet; 2: forgotten.
    expect(avg.seconds).toBe(4);
    expect([avg.mean(1), avg.mean(2), avg.mean(3)]).toEqual([250, null, null]);
    avg.sample(counts([[1, 0], [3, 7]]), 6000);
    // netns 3 came 4 s in: averaged over its own 2 s, not diluted by the 4 before.
    expect([avg.mean(1), avg.mean(3)]).toEqual([1000 / 6, 7]);
  });

  it('gives tableFill each netns\'s mean', () => {
    const avg = new FillAverage();
    avg.sample(counts([[netnsKey(1, 11), 40]]), 0);
    avg.sample(counts([[netnsKey(1, 11), 60]]), 2000);
    const fill = tableFill({ max: 100, entries: entriesByNetns(new Map([[netnsKey(1, 11), 60]]), [{ cookie: 1, inode: 11 }], []), growth: new Map(), means: avg });
    expect(fill.fullest).toMatchObject({ entries: 60, meanEntries: 40 });
  });
});

describe('censusView', () => {
  it('sets the histogram beside Poisson(nodes / buckets)', () => {
    const v = censusView(
      {
        done: true, buckets: 1000, bucketsWalked: 1000, nodes: 2000, entries: 1000, empty: 140, longest: 3,
        moved: 0, readErrors: 0, netnsOverflow: 0, natClash: 0, histogram: [140, 270, 270, 320, ...new Array<number>(125).fill(0)], netns: [{ cookie: 1, inode: 5, entries: 1000 }], seconds: 0.01,
      },
      new Date(0),
    );
    expect(v.meanChain).toBe(2);
    expect(v.emptyExpected).toBeCloseTo(1000 * Math.exp(-2), 9);
    // Rows go on while uniform hashing still expects half a bucket: P(X = 7) * 1000 = 3.4, P(X = 9) * 1000 = 0.19.
    expect(v.chains.map((r) => r.length)).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8]);
    expect(v.chains[3]).toEqual({ length: 3, buckets: 320, expected: expect.closeTo(1000 * ((8 * Math.exp(-2)) / 6), 9) });
    expect(v.at).toBe('1970-01-01T00:00:00.000Z');
  });
});
