// The model's measurements read from a snapshot: the steady insert rate is the
// last minute's, or, once a storm ran in the netns, the watch's outside the storms.
import { describe, expect, it } from 'vitest';
import { measurementsOf } from '../../../src/advisor/from-snapshot.js';
import type { Snapshot } from '../../../src/snapshot.js';

const rates = (insertsPerSecond: number) => ({ insertsPerSecond, destroysPerSecond: 0, netPerSecond: insertsPerSecond });

function snapshot(storms: Array<{ durationSeconds: number; netns: Array<{ inode: number; inserts: number }> }>): Snapshot {
  return {
    durationSeconds: 100,
    table: { fullest: null, totalEntries: 9000, averagedSeconds: 98 },
    netns: [
      // 100 s watched: 20,000 inserts in all, 1,200/s over the last minute.
      { inode: 7, cookie: 1, inserts: 20_000, destroys: 0, lost: 0, entries: 9000, meanEntries: 4000, protocols: [{ proto: 'udp', inserts: 20_000, destroys: 0, lost: 0 }], windows: { '1s': rates(0), '10s': rates(0), '60s': rates(1200), ewma: rates(0) } },
    ],
    storms: { past: storms.map((st) => ({ inserts: 18_000, destroys: 0, peakPerSecond: 9000, startSeconds: 50, endSeconds: 51, baselinePerSecond: 20, ...st })), current: null },
    lifetimes: [],
    lifetimeHistograms: { edgesSeconds: [], rows: [] },
    kernelStats: null,
    totals: { inserts: 20_000, destroys: 0, lost: 0 },
    chains: { histogram: {} },
  } as unknown as Snapshot;
}

describe('measurementsOf', () => {
  it('takes the last minute\'s rate when no storm ran in the netns', () => {
    const m = measurementsOf(snapshot([]));
    expect(m.netns[0]).toMatchObject({ inode: 7, entries: 9000, meanEntries: 4000, insertsPerSecond: 1200 });
    expect(m.averagedSeconds).toBe(98);
  });

  it('takes the rate outside the storms once one ran there: (20,000 - 18,000) / (100 - 2) s', () => {
    const m = measurementsOf(snapshot([{ durationSeconds: 2, netns: [{ inode: 7, inserts: 18_000 }] }]));
    expect(m.netns[0]!.insertsPerSecond).toBeCloseTo(2000 / 98, 9);
    // A storm elsewhere changes nothing here.
    const other = measurementsOf(snapshot([{ durationSeconds: 2, netns: [{ inode: 8, inserts: 18_000 }] }]));
    expect(other.netns[0]!.insertsPerSecond).toBe(1200);
  });
});
