// The monitor over a fake addon: one drain loop feeding the engine, one view.
import { describe, expect, it } from 'vitest';
import { Monitor } from '../../src/monitor.js';
import { openSource } from '../../src/source.js';
import { fakeNative } from './fake-native.js';
import { buildRecords, ipv4, type RawRecord } from './records.js';

const S = 1_000_000_000n;
const rec = (type: 'insert' | 'destroy', sec: bigint): RawRecord => ({
  type,
  l4proto: 17,
  tsNs: sec * S,
  netns: 4026532000,
  netnsCookie: 3n,
  orig: { src: ipv4(10, 0, 0, 1), dst: ipv4(10, 0, 0, 2), sport: 1, dport: 53 },
  reply: { src: ipv4(10, 0, 0, 2), dst: ipv4(10, 0, 0, 1), sport: 53, dport: 1 },
});
const counters = {
  protocols: [{ l4proto: 17, inserts: 3, destroys: 1, lost: 0 }],
  netns: [{ cookie: 3, inode: 4026532000, l4proto: 17, inserts: 3, destroys: 1, lost: 0 }],
  health: [],
  missedRuns: 0,
  missesVisible: true,
};
const until = async (check: () => boolean): Promise<void> => {
  for (let i = 0; i < 200 && !check(); i++) await new Promise((r) => setTimeout(r, 10));
};

describe('Monitor', () => {
  it('drains every batch into one view: engine figures, counters, exactness, records drained', async () => {
    const native = fakeNative({
      counters: [counters],
      batches: [buildRecords([rec('insert', 100n), rec('insert', 100n)]), buildRecords([rec('insert', 101n), rec('destroy', 101n)])],
    });
    let now = Number(102n * S);
    const monitor = new Monitor({ source: openSource({ native, mode: 'fentry', liveNetns: () => new Set() }), clockNs: () => now, tickMs: 20 });
    const seen: number[] = [];
    monitor.onBatch((b) => seen.push(b.count));
    await until(() => seen.length === 2);
    const views: number[] = [];
    const stop = monitor.subscribe((v) => views.push(v.records.drained));
    await until(() => views.length >= 2);
    stop();
    now = Number(102n * S);
    const v = monitor.view();
    expect(seen).toEqual([2, 2]);
    expect(v.records.drained).toBe(4);
    expect(v.engine.totals).toEqual({ inserts: 3, destroys: 1 });
    expect(v.engine.windows['1s']).toEqual({ insertsPerSecond: 1, destroysPerSecond: 1, netPerSecond: 0 });
    expect(v.counters.protocols).toEqual(counters.protocols);
    expect(v.exactness).toEqual({ exact: true, notes: [] });
    expect(views.length).toBeGreaterThanOrEqual(2); // subscribers were called on ticks
    expect(views.every((d) => d === 4)).toBe(true);
    await monitor.close();
    expect(native.closed).toBe(1);
  });

  it('ends on a drain failure and rethrows it from close() and view()', async () => {
    const failure = new Error('draining the ring buffer failed: EIO');
    const native = fakeNative({ counters: [counters], pollError: failure });
    const monitor = new Monitor({ source: openSource({ native, mode: 'fentry', liveNetns: () => new Set() }) });
    await expect(monitor.close()).rejects.toBe(failure);
    expect(() => monitor.view()).toThrow(failure);
    expect(native.closed).toBe(1);
  });
});

/** A monitor over a fake probe whose census finds 40 entries in netns
 * 4026532000 of a 1024-bucket table; `n` inserts are added to its counters by
 * `bump(n)`, as the kernel would, and `firstWalk` runs inside the first walk. */
function censusMonitor(firstWalk: (bump: (n: number) => void) => void, clockNs?: () => number) {
  // Counters the fake hands out by reference: what bump() adds, the next read sees.
  const live = { ...counters, netns: [{ ...counters.netns[0]! }], protocols: [{ ...counters.protocols[0]! }] };
  const census = {
    done: true, buckets: 1024, bucketsWalked: 1024, nodes: 80, entries: 40, empty: 984, longest: 1,
    moved: 0, readErrors: 0, netnsOverflow: 0, natClash: 0, histogram: [984, 40], netns: [{ cookie: 3, inode: 4026532000, entries: 40 }],
  };
  const bump = (n: number): void => {
    live.netns[0]!.inserts += n;
    live.protocols[0]!.inserts += n;
  };
  const native = fakeNative({ counters: [live], census });
  let walks = 0;
  const run = native.Probe.prototype.censusRun;
  native.Probe.prototype.censusRun = function (this: unknown, ...args: unknown[]) {
    if (walks++ === 0) firstWalk(bump);
    return (run as (...a: unknown[]) => unknown).apply(this, args);
  } as typeof run;
  const monitor = new Monitor({
    source: openSource({ native, mode: 'fentry', liveNetns: () => new Set() }),
    tickMs: 20,
    readTable: () => ({ entries: 40, max: 262144, buckets: 1024 }),
    ...(clockNs && { clockNs }),
  });
  return { monitor, bump, walks: () => walks };
}

describe('Monitor census', () => {
  it('runs a census that met churn again on the next tick and counts from the quiet one', async () => {
    // 5 inserts during the first walk, into buckets it had not reached.
    const { monitor, walks } = censusMonitor((bump) => bump(5));
    await until(() => walks() >= 2 && monitor.view().census.churnDuring === 0);
    const v = monitor.view();
    expect(walks()).toBe(2); // quiet the second time: no more
    expect(v.census.churnDuring).toBe(0);
    // 40 found by the quiet walk, nothing since: the 5 inserts are not counted twice.
    expect(v.table.fill.netns.find((n) => n.inode === 4026532000)?.entries).toBe(40);
    await monitor.close();
  });

  it('waits for a quieter tick than the walk saw before it walks again', async () => {
    // Time passed in: every tick moves the clock 20 ms on, and the first walk takes
    // 20 ms and meets 1 insert, plus the storm's 1,000 if a tick's come in its window
    // (at most ~50,000/s). The storm adds 1,000 inserts a tick (50,000/s): never
    // quieter than half the walk, however slowly this machine runs the ticks.
    let clock = 1e12;
    let storming = true;
    const { monitor, bump, walks } = censusMonitor(
      (bump) => {
        bump(1);
        clock += 20e6;
      },
      () => clock,
    );
    const ticks: number[] = [];
    monitor.subscribe(() => {
      clock += 20e6;
      if (storming) bump(1000);
      ticks.push(walks());
    });
    await until(() => walks() >= 1 && monitor.view().census.churnDuring > 0);
    const seen = ticks.length;
    await until(() => ticks.length >= seen + 10); // ten more ticks of the storm
    expect(walks()).toBe(1); // the storm goes on: a second walk would meet as much churn
    storming = false;
    await until(() => walks() >= 2 && monitor.view().census.churnDuring === 0);
    expect(walks()).toBe(2);
    await monitor.close();
  });
});
