// The advisor's model on hand-computed cases: every number below is worked out
// in the comments from the inputs, not read back from the code.
import { describe, expect, it } from 'vitest';
import { EXPORT_EDGES_SECONDS } from '../../../src/engine/histogram.js';
import { advise, aliveFraction, meanLifetimes, survival, type Measurements } from '../../../src/advisor/model.js';
import type { EntryCost } from '../../../src/advisor/memory.js';

const cost: EntryCost = { objectBytes: 256, objectSource: 'test', extensionBytes: 128, extensionSource: 'test', bucketBytes: 8, perEntryBytes: 384 };
const settings = {
  nf_conntrack_max: 16384,
  nf_conntrack_buckets: 16384,
  nf_conntrack_tcp_timeout_established: 432000,
  nf_conntrack_tcp_timeout_time_wait: 120,
  nf_conntrack_udp_timeout: 30,
  nf_conntrack_udp_timeout_stream: 120,
};

/** One netns (inode 100): 100 inserts/s, 60 % TCP and 40 % UDP; census 1000 entries. */
function measurements(over: Partial<Measurements> = {}): Measurements {
  return {
    durationSeconds: 600,
    averagedSeconds: null,
    netns: [{ inode: 100, entries: 1000, meanEntries: null, insertsPerSecond: 100, protocols: [{ proto: 'tcp', inserts: 600 }, { proto: 'udp', inserts: 400 }] }],
    lifetimes: [
      // TCP: 50 ended in time_wait after 120 s each, 10 in established after 100 s.
      { proto: 'tcp', state: 'time_wait', count: 50, sum: 6000, max: 130, predating: 0 },
      { proto: 'tcp', state: 'established', count: 10, sum: 1000, max: 200, predating: 0 },
      { proto: 'udp', count: 100, sum: 3000, max: 31, predating: 0 },
    ],
    lifetimeHistograms: [],
    storms: [{ inserts: 5000, destroys: 1000, peakPerSecond: 2000, netns: [{ inode: 100, inserts: 5000 }] }],
    chains: { 1: 90, 2: 10 },
    totalEntries: 1000,
    drops: 0,
    lost: 0,
    ...over,
  };
}

describe('advise', () => {
  const a = advise(measurements(), settings, settings, cost, { headroom: 0.5, targetInode: 100 });

  it('steady state by Little\'s law: rate x mean lifetime per protocol', () => {
    // tcp: 60/s x (6000 + 1000) / 60 s = 7000; udp: 40/s x 30 s = 1200.
    expect(a.netns[0]!.protocols.map((p) => [p.proto, p.insertsPerSecond, p.entries])).toEqual([
      ['tcp', 60, expect.closeTo(7000, 9)],
      ['udp', 40, 1200],
    ]);
    expect(a.netns[0]!.modeled).toBeCloseTo(8200, 9);
    expect(a.netns[0]!.steady).toBeCloseTo(8200, 9); // above the census's 1000
  });

  it('a netns holds at least its count averaged over the watch (Little\'s L measured)', () => {
    // No storm; the GC reaped late: 20,000 entries on average while the model gives 8200.
    const late = measurements({ storms: [], netns: [{ ...measurements().netns[0]!, meanEntries: 20000 }] });
    const b = advise(late, settings, settings, cost, { headroom: 0.5, targetInode: 100 });
    expect(b.netns[0]).toMatchObject({ measured: 1000, averaged: 20000, modeled: expect.closeTo(8200, 9), steady: 20000 });
    // Peak: max(1000 now, 20000 steady + 0 storm growth).
    expect([b.required, b.requiredBy]).toEqual([20000, 'storm']);
    // Below the model, the average changes nothing.
    const low = advise(measurements({ storms: [], netns: [{ ...measurements().netns[0]!, meanEntries: 500 }] }), settings, settings, cost, { headroom: 0.5, targetInode: 100 });
    expect([low.netns[0]!.steady, low.required]).toEqual([expect.closeTo(8200, 9), 8200]);
    // A storm ran in the netns: its entries are in the average, so the model
    // stands alone and the storm's growth goes on it: max(1000, 8200 + 4000).
    const stormy = advise(measurements({ netns: [{ ...measurements().netns[0]!, meanEntries: 20000 }] }), settings, settings, cost, { headroom: 0.5, targetInode: 100 });
    expect([stormy.netns[0]!.steady, stormy.required, stormy.requiredBy]).toEqual([expect.closeTo(8200, 9), 12200, 'storm']);
    // The count now sets the need when it is the largest.
    const full = advise(measurements({ netns: [{ ...measurements().netns[0]!, entries: 30000, meanEntries: 500 }] }), settings, settings, cost, { headroom: 0.5, targetInode: 100 });
    expect([full.required, full.requiredBy]).toEqual([30000, 'now']);
    // Every netns at the larger of now and steady, the fullest's need on top, once:
    // netns 100 holds 30000 now (its need), netns 200 8 now and 12 on average.
    const two = advise(
      measurements({ totalEntries: null, netns: [{ ...measurements().netns[0]!, entries: 30000, meanEntries: 500 }, { inode: 200, entries: 8, meanEntries: 12, insertsPerSecond: 0, protocols: [] }] }),
      settings, settings, cost, { headroom: 0.5, targetInode: 100 },
    );
    expect(two.buckets.totalEntries).toBe(30000 + 12);
    // A netns empty now but not on average stays in.
    const drained = advise(measurements({ netns: [...measurements().netns, { inode: 300, entries: 0, meanEntries: 40, insertsPerSecond: 0, protocols: [] }] }), settings, settings, cost, { headroom: 0.5, targetInode: 100 });
    expect(drained.netns.map((n) => n.inode)).toEqual([100, 300]);
  });

  it('sizes the limit for the fullest netns plus the largest storm growth and headroom', () => {
    // 8200 + (5000 - 1000) = 12200 needed; x 1.5 = 18300, up to a multiple of 1024: 18432.
    expect(a.required).toBe(12200);
    expect(a.max).toEqual({ current: 16384, recommended: 18432, headroom: 0.5, raise: true, headroomLeft: 1 - 12200 / 16384 });
  });

  it('sizes buckets as a power of two for every netns at the peak', () => {
    // 12200 entries at the peak; max(18432, 12200) -> 32768 buckets.
    expect(a.buckets).toEqual({
      current: 16384,
      recommended: 32768,
      raise: true,
      totalEntries: 12200,
      expectedChain: 1 + 24400 / 32768,
      expectedChainAtPeakNow: 1 + 24400 / 16384,
      expectedChainNow: 1 + 2000 / 16384, // today's 1000 entries, beside the measured chains
      measuredChain: 1.1, // (90 x 1 + 10 x 2) / 100
    });
  });

  it('advises the timeouts that hold entries, with what each holds and frees', () => {
    // TCP's 60/s split by final state: 50/60 time_wait (50/s x 120 s = 6000 held,
    // half freed at 60 s). Established is not advised on a 600 s watch.
    expect(a.timeouts.map(({ key, current, proposed, pinned, freed }) => ({ key, current, proposed, pinned, freed }))).toEqual([
      { key: 'nf_conntrack_tcp_timeout_time_wait', current: 120, proposed: 60, pinned: expect.closeTo(6000, 9), freed: expect.closeTo(3000, 9) },
    ]);
    // Established entries ended after 100 s: not by the 432000 s timeout. Only
    // destroys of entries older than the watch could have; a short watch cannot tell.
    const m = measurements({ lifetimes: [...measurements().lifetimes.slice(0, 1), { proto: 'tcp', state: 'established', count: 0, sum: 0, max: null, predating: 10 }] });
    expect(advise(m, settings, settings, cost, { headroom: 0.5, targetInode: 100 }).notes).toContain(
      'nf_conntrack_tcp_timeout_established 432000 -> 86400 not advised: needs 86400 s watched (use --from a serve running that long), had 600 s',
    );
  });

  it('advises established only after a day watched, from entries that idled out, with no closed flow living past 24 h', () => {
    // Watched 1e6 s: 10 of 60 TCP destroys ended in established after ~433000 s (idle
    // timeouts): 10/s x 432000 s = 4.32 M held, 80 % freed at 86400.
    const long = (closedMax: number): Measurements =>
      measurements({
        durationSeconds: 1e6,
        lifetimes: [
          { proto: 'tcp', state: 'time_wait', count: 50, sum: 6000, max: closedMax, predating: 0 },
          { proto: 'tcp', state: 'established', count: 10, sum: 4_330_000, max: 433_500, predating: 0 },
        ],
        storms: [],
      });
    const ok = advise(long(130), settings, settings, cost, { headroom: 0.5, targetInode: 100 });
    // time_wait's 3000 freed is under 1 % of the 4.34 M the netns now holds: left out.
    expect(ok.timeouts.map((t) => [t.key, Math.round(t.pinned), Math.round(t.freed)])).toEqual([['nf_conntrack_tcp_timeout_established', 4_320_000, 3_456_000]]);
    const kept = advise(long(90_000), settings, settings, cost, { headroom: 0.5, targetInode: 100 });
    expect(kept.timeouts).toEqual([]);
    expect(kept.notes).toContain('nf_conntrack_tcp_timeout_established 432000 -> 86400 not advised: a TCP flow that closed lived 90000 s');
  });

  it('does not advise a timeout its entries did not end by (a flush ends them early)', () => {
    // time_wait entries destroyed after 10 s (a flush), far below their 120 s timeout.
    const m = measurements({ lifetimes: [{ proto: 'tcp', state: 'time_wait', count: 50, sum: 500, max: 11, predating: 0 }], storms: [] });
    expect(advise(m, settings, settings, cost, { headroom: 0.5, targetInode: 100 }).timeouts).toEqual([]);
  });

  it('never says a timeout holds more than the netns does', () => {
    // 10 TCP/s ending in time_wait would hold 1200 by rate x timeout; the netns holds 116.
    const m = measurements({
      netns: [{ inode: 100, entries: 116, meanEntries: null, insertsPerSecond: 10, protocols: [{ proto: 'tcp', inserts: 1 }] }],
      lifetimes: [{ proto: 'tcp', state: 'time_wait', count: 0, sum: 0, max: null, predating: 30 }],
      storms: [],
    });
    const t = advise(m, settings, settings, cost, { headroom: 0.5, targetInode: 100 }).timeouts;
    expect(t.map((x) => [x.key, x.pinned, x.freed])).toEqual([['nf_conntrack_tcp_timeout_time_wait', 116, 58]]);
  });

  it('pools final states by their share of destroys, not by how many ended inside the watch', () => {
    // Equal insert rates (1/s) of 1 s and 50 s flows over a 60 s watch: each class
    // has 60 destroys, but 59 vs 10 of them were inserted while watched. True mean 25.5 s.
    const m = measurements({
      durationSeconds: 60,
      lifetimes: [
        { proto: 'tcp', state: 'close', count: 59, sum: 59, max: 1, predating: 1 },
        { proto: 'tcp', state: 'time_wait', count: 10, sum: 500, max: 50, predating: 50 },
      ],
    });
    expect(meanLifetimes(m, settings).get('tcp')).toBeCloseTo(25.5, 9);
  });

  it('floors a timeout-ended protocol\'s time in the table at its timeout', () => {
    // No UDP entry ended: 40/s x udp_timeout 30 s = 1200, and a note says it is a floor.
    const m = measurements({ lifetimes: [{ proto: 'tcp', state: 'time_wait', count: 50, sum: 6000, max: 130, predating: 0 }], storms: [] });
    const b = advise(m, settings, settings, cost, { headroom: 0.5, targetInode: 100 });
    expect(b.netns[0]!.protocols.find((p) => p.proto === 'udp')).toMatchObject({ meanLifetimeSeconds: 30, entries: 1200 });
    expect(b.notes).toContain('no udp entry ended while watched: its time in the table is taken as its timeout (a floor)');
    // UDP lifetimes below the timeout (a flush) are raised to it too.
    expect(meanLifetimes(measurements({ lifetimes: [{ proto: 'udp', count: 10, sum: 50, max: 6, predating: 0 }] }), settings).get('udp')).toBe(30);
  });

  it('adds a storm\'s growth to the netns that stormed, not to the fullest', () => {
    // The storm was all netns 200's: netns 100 keeps its 8200; 200 peaks at 0 + 4000.
    const m = measurements({
      netns: [...measurements().netns, { inode: 200, entries: 10, meanEntries: null, insertsPerSecond: 0, protocols: [] }],
      storms: [{ inserts: 5000, destroys: 1000, peakPerSecond: 2000, netns: [{ inode: 200, inserts: 5000 }] }],
    });
    const b = advise(m, settings, settings, cost, { headroom: 0.5, targetInode: 100 });
    expect(b.netns.map((n) => [n.inode, n.stormGrowth])).toEqual([[100, 0], [200, 4000]]);
    expect([b.fullest, b.required]).toEqual([{ inode: 100, steady: expect.closeTo(8200, 9) }, 8200]);
  });

  it('says when the table dropped entries or records were lost', () => {
    const b = advise(measurements({ drops: 7, lost: 3 }), settings, settings, cost, { headroom: 0.5, targetInode: 100 });
    expect(b.notes.join('\n')).toMatch(/dropped 7 new entries.*growth measured is a floor/);
    expect(b.notes.join('\n')).toMatch(/3 records lost/);
  });

  it('costs memory from the entry and bucket sizes', () => {
    expect(a.memory.nowBytes).toBe(1000 * 384 + 16384 * 8);
    expect(a.memory.peakBytes).toBe(12200 * 384 + 32768 * 8);
    expect(a.memory.fullestAtLimitBytes).toBe(18432 * 384);
  });

  it('keeps the limit when it already has the headroom', () => {
    const big = { ...settings, nf_conntrack_max: 65536, nf_conntrack_buckets: 65536 };
    const b = advise(measurements(), big, big, cost, { headroom: 0.5, targetInode: 100 });
    expect([b.max.raise, b.max.recommended, b.max.headroomLeft, b.buckets.raise]).toEqual([false, 65536, 1 - 12200 / 65536, false]);
  });

  it('a netns holds at least its census count; a protocol without lifetimes is noted', () => {
    const m = measurements({ lifetimes: [{ proto: 'udp', count: 100, sum: 3000, max: 31, predating: 0 }], storms: [] });
    const b = advise(m, settings, settings, cost, { headroom: 0.5, targetInode: 100 });
    // udp 40/s x 30 = 1200 modeled; TCP unknown; the census's 1000 is below it.
    expect([b.netns[0]!.modeled, b.netns[0]!.steady, b.required]).toEqual([1200, 1200, 1200]);
    expect(b.notes.join('\n')).toMatch(/no tcp entry ended while watched: TCP's steady state is the census count/);
  });

  it('uses the engine\'s watch-corrected mean where given', () => {
    const m = measurements({ lifetimes: [{ proto: 'udp', count: 100, sum: 3000, max: 31, predating: 0, meanSeconds: 45 }], storms: [] });
    expect(advise(m, settings, settings, cost, { headroom: 0.5, targetInode: 100 }).netns[0]!.modeled).toBe(40 * 45);
  });
});

describe('what-if storms', () => {
  // 100 lifetimes, all between 16 and 32 s: P(L > s) is 1 up to 16 s, then falls
  // linearly to 0 at 32 s. Over a 32 s window: (16 + 8) / 32 = 0.75 still in the table.
  const cumulative = EXPORT_EDGES_SECONDS.map((edge) => (edge >= 32 ? 100 : 0));
  const m = measurements({ lifetimeHistograms: [{ proto: 'udp', cumulative, count: 100 }], storms: [] });

  it('survival interpolates the histogram', () => {
    expect([survival(cumulative, 100, 10), survival(cumulative, 100, 24), survival(cumulative, 100, 40)]).toEqual([1, 0.5, 0]);
  });

  it('the share alive at the window\'s end, and the entries the fullest netns then needs', () => {
    expect(aliveFraction(m, 32)).toBeCloseTo(0.75, 9);
    expect(aliveFraction(m, 8)).toBeCloseTo(1, 9);
    const a = advise(m, settings, settings, cost, { headroom: 0.5, targetInode: 100, whatIf: { reconnects: 100000, withinSeconds: 32 } });
    // 8200 steady + 100000 x 0.75 = 83200 needed; x 1.5 = 124800 -> 124928 (122 x 1024).
    expect(a.whatIf).toEqual({ reconnects: 100000, withinSeconds: 32, aliveFraction: expect.closeTo(0.75, 9), entries: expect.closeTo(83200, 6) });
    expect([a.required, a.max.recommended, a.buckets.recommended]).toEqual([83200, 124928, 131072]);
  });

  it('without any lifetime every reconnect is assumed to stay', () => {
    expect(aliveFraction(measurements(), 30)).toBe(1);
  });
});
