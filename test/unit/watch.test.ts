// The watch screen from a monitor's view (fake addon, fake clock), and watch()'s
// lifecycle: a failed drain ends it with that error and detaches.
import { describe, expect, it } from 'vitest';
import { Monitor, type MonitorView } from '../../src/monitor.js';
import type { NativeCensus, NativeCounters } from '../../src/native.js';
import { openSource } from '../../src/source.js';
import { renderFrame, watch } from '../../src/watch.js';
import { fakeNative } from './fake-native.js';
import { buildRecords, ipv4, type RawRecord } from './records.js';

const S = 1_000_000_000n;
const table = () => ({ entries: 10, max: 1000, buckets: 1024 });
const stats = () => ({ drop: 0, early_drop: 0, insert_failed: 0, entries: 10 });
const noCensus = undefined;

const counters = (inserts: number, destroys = 0, missedRuns = 0): NativeCounters => ({
  protocols: inserts > 0 ? [{ l4proto: 17, inserts, destroys, lost: 4 }] : [],
  netns: inserts > 0 ? [{ cookie: 9, inode: 4026532009, l4proto: 17, inserts, destroys, lost: 4 }] : [],
  health: [],
  missedRuns,
  missesVisible: true,
});

const insert = (sec: bigint, sport: number): RawRecord => ({
  type: 'insert', l4proto: 17, tsNs: sec * S, netns: 4026532009, netnsCookie: 9n,
  buckets: [sport % 1024, (sport * 7) % 1024], chain: [1, 1],
  orig: { src: ipv4(10, 0, 0, 1), dst: ipv4(10, 0, 0, 2), sport, dport: 53 },
  reply: { src: ipv4(10, 0, 0, 2), dst: ipv4(10, 0, 0, 1), sport: 53, dport: sport },
});

/** A view after 200 inserts in second 100 (and none since), seen at second 101. */
async function viewOf(c: NativeCounters, census: NativeCensus | undefined = noCensus, atSecond = 101n): Promise<MonitorView> {
  const records = Array.from({ length: 200 }, (_, i) => insert(100n, 1000 + i));
  const native = fakeNative({ counters: [c], batches: [buildRecords(records)], census });
  let clock = 30n * S; // watching since second 30
  const monitor = new Monitor({
    source: openSource({ native, mode: 'fentry', liveNetns: () => new Set() }),
    clockNs: () => Number(clock),
    readTable: table,
    readKernelStats: stats,
    tickMs: 3_600_000,
  });
  clock = atSecond * S;
  const seen = new Promise<void>((r) => monitor.onBatch(() => r()));
  await seen;
  if (census) await monitor.census();
  const v = monitor.view();
  await monitor.close();
  return v;
}

const census: NativeCensus = {
  done: true, buckets: 1024, bucketsWalked: 1024, nodes: 440, entries: 220, empty: 700, longest: 3,
  moved: 0, readErrors: 0, netnsOverflow: 0, natClash: 0, histogram: [700, 250, 70, 4], netns: [{ cookie: 9, inode: 4026532009, entries: 20 }],
};

describe('watch frame', () => {
  it('says nothing of exactness while the counts are exact, and why not when they are not', async () => {
    const exact = renderFrame(await viewOf(counters(200)), { width: Infinity, unicode: false, drainedPerSecond: 0 });
    expect(exact).not.toContain('exact');
    const lines = renderFrame(await viewOf(counters(200, 0, 3)), { width: Infinity, unicode: false, drainedPerSecond: 0 }).split('\n');
    const at = lines.indexOf('counts NOT exact:');
    expect(at).toBeGreaterThan(0);
    expect(lines[at + 1]).toBe('  the kernel skipped 3 runs of the probe (recursion or kprobe misses): events in them were not counted');
  });

  it('before a census: the own netns from the sysctl, the others named unknown', async () => {
    const frame = renderFrame(await viewOf(counters(200)), { width: Infinity, unicode: false, drainedPerSecond: 1234.4 });
    expect(frame).toContain("10 / 1,000 entries in ctstorm's netns (1.0%); other netns unknown until the census");
    expect(frame).toContain('1,234 drained/s - 4 lost - since start 200 inserts, 0 destroys');
    // 200 inserts in the last complete second: the 1 s window; 20/s over 10 s.
    expect(frame).toMatch(/inserts\/s\s+200\s+20\s+3\s+/);
    // Inserts at 100 s, the view at 101 s: no epoch complete yet, so the current one so far.
    expect(frame).toContain('top peers by inserts, so far in this 10 s');
  });

  it('after a census: the fullest netns with its fill bar, total entries, and its row in top netns', async () => {
    const v = await viewOf(counters(200), census);
    // census 20 entries, counted +200 since: the census ran after the counters read 200,
    // so its baseline is 20 - 200 and the netns holds 20 now.
    expect(v.table.fill.fullest).toMatchObject({ inode: 4026532009, entries: 20, fillPercent: 2 });
    const frame = renderFrame(v, { width: Infinity, unicode: true, drainedPerSecond: 0 });
    expect(frame).toContain('fullest   2.0% full, full in 49 s: netns 4026532009 20 / 1,000 █');
    expect(frame).toContain('20 entries in all netns');
    expect(frame).toMatch(/4026532009\s+20\s+0\s+20\s+2\.0%/);
  });

  it('cuts every line to a narrow terminal and puts peers in one column', async () => {
    // At second 111 the inserts of second 100 are the last complete 10 s epoch's.
    const frame = renderFrame(await viewOf(counters(200), noCensus, 111n), { width: 40, unicode: true, drainedPerSecond: 0 });
    for (const line of frame.split('\n')) expect(line.length).toBeLessThanOrEqual(40);
    expect(frame).toContain('  sources\n    10.0.0.1 200');
  });

  it('fits a short terminal: the most important sections first, and says what was left out', async () => {
    const frame = renderFrame(await viewOf(counters(200)), { width: 100, height: 24, unicode: true, drainedPerSecond: 0 });
    const lines = frame.split('\n');
    expect(lines.length).toBeLessThanOrEqual(24);
    expect(frame).toContain("10 / 1,000 entries in ctstorm's netns"); // the table, first
    expect(frame).toContain('inserts/s');
    expect(lines.at(-1)).toMatch(/^\(\d+ more sections: a taller terminal shows them, or: ctstorm snapshot --json\)$/);
  });

  it('draws ASCII only when not a terminal', async () => {
    const frame = renderFrame(await viewOf(counters(200)), { width: Infinity, unicode: false, drainedPerSecond: 0 });
    expect(/[^\x00-\x7f]/.test(frame)).toBe(false);
  });
});

describe('watch()', () => {
  const monitorIO = { readTable: table, readKernelStats: stats, liveNetns: () => new Set<number>() };

  it('a rejected poll ends the watch with that error and closes the probe', async () => {
    const boom = new Error('ring buffer poll failed: EBADF');
    const native = fakeNative({ counters: [counters(0)], pollError: boom });
    const never = new AbortController(); // only the failure can end this watch
    const guard = setTimeout(() => never.abort(), 2000);
    try {
      await expect(watch({ native, ...monitorIO, intervalSeconds: 0.05, signal: never.signal, write: () => undefined })).rejects.toBe(boom);
    } finally {
      clearTimeout(guard);
    }
    expect(never.signal.aborted).toBe(false); // it ended by itself, not by the guard
    expect(native.opened).toHaveLength(1);
    expect(native.closed).toBe(1);
  });

  it('a poll that fails after some batches still ends the watch with its error', async () => {
    const boom = new Error('late failure');
    const records = buildRecords([insert(1n, 1), insert(1n, 2)]);
    const native = fakeNative({ counters: [counters(0)], batches: [records, records], pollError: boom });
    const stop = new AbortController();
    const guard = setTimeout(() => stop.abort(), 2000);
    try {
      await expect(watch({ native, ...monitorIO, intervalSeconds: 0.05, signal: stop.signal, write: () => undefined })).rejects.toBe(boom);
    } finally {
      clearTimeout(guard);
    }
    expect(stop.signal.aborted).toBe(false);
    expect(native.closed).toBe(1);
  });

  it('draws a frame every interval until aborted, counting the records drained since start', async () => {
    const script = { counters: [counters(300)], batches: [buildRecords(Array.from({ length: 300 }, (_, i) => insert(1n, i)))] };
    const native = fakeNative(script);
    const stop = new AbortController();
    const frames: string[] = [];
    const guard = setTimeout(() => stop.abort(), 3000);
    try {
      await watch({
        native,
        ...monitorIO,
        intervalSeconds: 0.05,
        signal: stop.signal,
        write: (frame) => {
          frames.push(frame);
          if (frames.length === 1) script.batches.push(buildRecords([insert(1n, 7)]));
          if (frames.length === 3) stop.abort();
        },
      });
    } finally {
      clearTimeout(guard);
    }
    expect(frames).toHaveLength(3);
    expect(frames[2]).toContain('since start 301 inserts');
    expect(native.closed).toBe(1);
  });
});
