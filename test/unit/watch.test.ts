import { describe, expect, it, vi } from 'vitest';
import { healthFromArray } from '../../src/counters.js';
import type { NativeCounters } from '../../src/native.js';
import { renderFrame, watch } from '../../src/watch.js';
import { fakeNative } from './fake-native.js';
import { buildRecords, ipv4, type RawRecord } from './records.js';

// watch() reads the table size from /proc; a unit test must not depend on the host.
vi.mock('../../src/table.js', () => ({
  conntrackLoaded: () => true,
  readTable: () => ({ entries: 10, max: 262144, buckets: 65536 }),
}));

const health = healthFromArray([]);

describe('watch frame', () => {
  it('says nothing of exactness while the counts are exact, and why not when they are not', () => {
    const counters = (h: typeof health) => ({ protocols: [], netns: [], health: h, missesVisible: true });
    const frame = (h: typeof health) =>
      renderFrame({ source: { mode: 'fentry', hooks: '' }, table: { entries: 0, max: 1, buckets: 1 }, seconds: 1, before: counters(health), now: counters(h), drainedRecords: 0 });
    expect(frame(health)).not.toContain('exact');
    const lines = frame({ ...health, missedRuns: 3 }).split('\n');
    const at = lines.indexOf('counts NOT exact:');
    expect(at).toBeGreaterThan(0);
    expect(lines[at + 1]).toBe('  the kernel skipped 3 runs of the probe (recursion or kprobe misses): events in them were not counted');
  });

  it('shows fill, rates per second over the interval, lost records and top netns', () => {
    const frame = renderFrame({
      source: { mode: 'tracepoint', hooks: 'tp hooks' },
      table: { entries: 131072, max: 262144, buckets: 65536 },
      seconds: 2,
      before: {
        protocols: [{ l4proto: 17, inserts: 100, destroys: 0, lost: 0 }],
        netns: [{ cookie: 1, inode: 7, l4proto: 17, inserts: 100, destroys: 0, lost: 0 }],
        health,
        missesVisible: true,
      },
      now: {
        protocols: [{ l4proto: 17, inserts: 5100, destroys: 3000, lost: 4 }],
        netns: [
          { cookie: 1, inode: 7, l4proto: 17, inserts: 1100, destroys: 1000, lost: 0 },
          { cookie: 2, inode: 9, l4proto: 17, inserts: 4000, destroys: 2000, lost: 4 },
        ],
        health,
        missesVisible: true,
      },
      drainedRecords: 16000,
    });
    expect(frame).toContain('131,072 / 262,144 entries in this netns (50.0% full), 65,536 buckets');
    expect(frame).toContain('2,500 inserts/s   1,500 destroys/s');
    expect(frame).toContain('8,000 drained/s   4 lost since start');
    const rows = frame.split('\n').slice(-2).map((l) => l.trim().split(/\s+/));
    expect(rows).toEqual([
      ['9', '2,000', '1,000'],
      ['7', '500', '500'],
    ]);
  });
});

const counters = (inserts: number): NativeCounters => ({
  protocols: inserts > 0 ? [{ l4proto: 17, inserts, destroys: 0, lost: 0 }] : [],
  netns: inserts > 0 ? [{ cookie: 1, inode: 7, l4proto: 17, inserts, destroys: 0, lost: 0 }] : [],
  health: [],
  missedRuns: 0,
  missesVisible: true,
});

const inserts = (n: number): Uint8Array => {
  const one: RawRecord = {
    type: 'insert', l4proto: 17, netns: 7, netnsCookie: 1n,
    orig: { src: ipv4(10, 0, 0, 1), dst: ipv4(10, 0, 0, 2), sport: 1, dport: 53 },
    reply: { src: ipv4(10, 0, 0, 2), dst: ipv4(10, 0, 0, 1), sport: 53, dport: 1 },
  };
  return buildRecords(new Array<RawRecord>(n).fill(one));
};

/** The numbers a frame shows before "inserts/s" and before "drained/s". */
function rates(frame: string): { inserts: number; drained: number } {
  const num = (re: RegExp): number => Number(re.exec(frame)![1]!.replaceAll(',', ''));
  return { inserts: num(/churn\s+([\d,]+) inserts\/s/), drained: num(/records\s+([\d,]+) drained\/s/) };
}

describe('watch()', () => {
  it('a rejected poll ends the watch with that error and closes the probe', async () => {
    const boom = new Error('ring buffer poll failed: EBADF');
    const native = fakeNative({ counters: [counters(0)], pollError: boom });
    const frames: string[] = [];
    const never = new AbortController(); // only the failure can end this watch
    const guard = setTimeout(() => never.abort(), 2000);
    try {
      await expect(watch({ native, intervalSeconds: 0.05, signal: never.signal, write: (f) => frames.push(f) })).rejects.toBe(boom);
    } finally {
      clearTimeout(guard);
    }
    expect(never.signal.aborted).toBe(false); // it ended by itself, not by the guard
    expect(native.opened).toHaveLength(1);
    expect(native.closed).toBe(1);
  });

  it('a poll that fails after some batches still ends the watch with its error', async () => {
    const boom = new Error('late failure');
    const native = fakeNative({ counters: [counters(0)], batches: [inserts(3), inserts(2)], pollError: boom });
    const stop = new AbortController();
    const guard = setTimeout(() => stop.abort(), 2000);
    try {
      await expect(watch({ native, intervalSeconds: 0.05, signal: stop.signal, write: () => undefined })).rejects.toBe(boom);
    } finally {
      clearTimeout(guard);
    }
    expect(stop.signal.aborted).toBe(false);
    expect(native.closed).toBe(1);
  });

  it('shows records drained per second over each interval, not since start', async () => {
    // Interval 1 drains 300 records, interval 2 drains 100; the probe's insert
    // counters move by the same numbers, so each frame's drained/s must equal its
    // inserts/s (the same count over the same seconds). A total that is not reset
    // would show 400 records in frame 2: four times its inserts/s.
    const script = { counters: [counters(0), counters(300), counters(400)], batches: [inserts(300)] };
    const native = fakeNative(script);
    const stop = new AbortController();
    const frames: string[] = [];
    const guard = setTimeout(() => stop.abort(), 3000);
    try {
      await watch({
        native,
        intervalSeconds: 0.05,
        signal: stop.signal,
        write: (frame) => {
          frames.push(frame);
          // The fake's idle poll waits 20 ms, well inside the next 50 ms interval.
          if (frames.length === 1) script.batches.push(inserts(100));
          if (frames.length === 2) stop.abort();
        },
      });
    } finally {
      clearTimeout(guard);
    }
    expect(frames).toHaveLength(2);
    const [first, second] = frames.map(rates);
    expect(first!.inserts).toBeGreaterThan(0);
    expect(first!.drained).toBe(first!.inserts);
    expect(second!.inserts).toBeGreaterThan(0);
    expect(second!.drained).toBe(second!.inserts);
    expect(frames[1]).toContain('400 inserts, 0 destroys'); // since start
    expect(native.closed).toBe(1);
  });
});
