// The advisor's model on hand-computed cases: every number below is worked out
// in the comments from the inputs, not read back from the code.
import { describe, expect, it } from 'vitest';
import { EXPORT_EDGES_SECONDS } from '../../../src/engine/histogram.js';
import { advise, aliveFraction, survival, type Measurements } from '../../../src/advisor/model.js';
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
    netns: [{ inode: 100, entries: 1000, insertsPerSecond: 100, protocols: [{ proto: 'tcp', inserts: 600 }, { proto: 'udp', inserts: 400 }] }],
    lifetimes: [
      // TCP: 50 ended in time_wait after 120 s each, 10 in established after 100 s.
      { proto: 'tcp', state: 'time_wait', count: 50, sum: 6000, max: 130, predating: 0 },
      { proto: 'tcp', state: 'established', count: 10, sum: 1000, max: 200, predating: 0 },
      { proto: 'udp', count: 100, sum: 3000, max: 31, predating: 0 },
    ],
    lifetimeHistograms: [],
    storms: [{ inserts: 5000, destroys: 1000, peakPerSecond: 2000 }],
    chains: { 1: 90, 2: 10 },
    totalEntries: 1000,
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
      expectedChainNow: 1 + 24400 / 16384,
      measuredChain: 1.1, // (90 x 1 + 10 x 2) / 100
    });
  });

  it('ranks the timeouts by entries freed, with what each holds', () => {
    // TCP's 60/s split by final state: 50/60 time_wait (50/s), 10/60 established (10/s).
    expect(a.timeouts.map(({ key, current, proposed, pinned, freed }) => ({ key, current, proposed, pinned, freed }))).toEqual([
      { key: 'nf_conntrack_tcp_timeout_established', current: 432000, proposed: 86400, pinned: expect.closeTo(4_320_000, 6), freed: expect.closeTo(3_456_000, 6) },
      { key: 'nf_conntrack_tcp_timeout_time_wait', current: 120, proposed: 60, pinned: expect.closeTo(6000, 9), freed: expect.closeTo(3000, 9) },
    ]);
  });

  it('keeps established when a TCP flow lived longer than the proposed value', () => {
    const m = measurements();
    m.lifetimes[1]!.max = 90000;
    const b = advise(m, settings, settings, cost, { headroom: 0.5, targetInode: 100 });
    expect(b.timeouts.map((t) => t.key)).toEqual(['nf_conntrack_tcp_timeout_time_wait']);
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
    expect(b.notes.join('\n')).toMatch(/no tcp entry ended while watched/);
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
