// `ctstorm snapshot`: watch for a while, then one JSON object. The field names
// are a stable contract (README "Snapshot JSON"): add fields, never rename.
import { release } from 'node:os';
import { byNetns, exactness, totals, type Counts, type Exactness, type Health } from './counters.js';
import { protoName } from './protocols.js';
import type { RecordBatch } from './record.js';
import { openSource, type Mode, type Source, type SourceOptions } from './source.js';
import { readTable, type TableInfo } from './table.js';

export interface Snapshot {
  version: 1;
  mode: Mode;
  kernel: string;
  durationSeconds: number;
  table: TableInfo;
  totals: Counts;
  rates: { insertsPerSecond: number; destroysPerSecond: number };
  netns: Array<Counts & { inode: number; cookie: number; protocols: Array<Counts & { proto: string }> }>;
  protocols: Array<Counts & { proto: string }>;
  /** Added after version 1's first cut; safe to ignore. */
  hooks: string;
  records: { drained: number };
  health: Health;
  /** Whether the counts are exact, and what this kernel cannot verify. */
  exactness: Exactness;
}

export interface SnapshotOptions extends SourceOptions {
  durationSeconds: number;
  /** Called once the probe is attached (its counters start then). */
  onReady?: (source: Source) => void | Promise<void>;
  /** Every drained batch, in order; valid only during the call. */
  onBatch?: (batch: RecordBatch) => void;
  /** Ends the snapshot early; the result covers the time until then. */
  signal?: AbortSignal;
  /** For tests: where the table size comes from. */
  readTable?: () => TableInfo;
}

const round = (x: number, digits: number): number => Number(x.toFixed(digits));

export async function takeSnapshot(options: SnapshotOptions): Promise<Snapshot> {
  const source = openSource(options);
  // The probe's counters start at zero when it attaches, and every record drained
  // from here on was emitted since then: counters and records cover one window.
  const t0 = performance.now();
  try {
    await options.onReady?.(source);
    const deadline = t0 + options.durationSeconds * 1000;
    let drained = 0;
    for (let now = t0; now < deadline && !options.signal?.aborted; now = performance.now()) {
      const batch = await source.poll(Math.min(100, deadline - now));
      drained += batch.count;
      options.onBatch?.(batch);
    }
    const seconds = (performance.now() - t0) / 1000;
    const delta = source.counters();
    const sum = totals(delta);
    return {
      version: 1,
      mode: source.mode,
      kernel: release(),
      durationSeconds: round(seconds, 3),
      table: (options.readTable ?? readTable)(),
      totals: sum,
      rates: {
        insertsPerSecond: round(sum.inserts / seconds, 2),
        destroysPerSecond: round(sum.destroys / seconds, 2),
      },
      netns: byNetns(delta).map((n) => ({
        inode: n.inode,
        cookie: n.cookie,
        inserts: n.inserts,
        destroys: n.destroys,
        lost: n.lost,
        protocols: n.protocols.map(({ l4proto, ...c }) => ({ proto: protoName(l4proto), ...c })),
      })),
      protocols: delta.protocols
        .sort((a, b) => b.inserts - a.inserts || a.l4proto - b.l4proto)
        .map(({ l4proto, ...c }) => ({ proto: protoName(l4proto), ...c })),
      hooks: source.hooks,
      records: { drained },
      health: delta.health,
      exactness: exactness(source.mode, delta),
    };
  } finally {
    await source.close();
  }
}
