// `ctstorm snapshot`: watch for a while, then one JSON object rendered from the
// monitor's view. The field names are a stable contract (README "Snapshot JSON"):
// add fields, never rename.
import { release } from 'node:os';
import { byNetns, totals, type Counts, type Exactness, type Health } from './counters.js';
import type { CensusView } from './engine/census-view.js';
import { EXPORT_EDGES_SECONDS } from './engine/histogram.js';
import type { NetnsNamed } from './attribution/namer.js';
import type { EngineView, InsertContexts, LifetimeRow, Rates, WindowRates } from './engine/engine.js';
import type { HotBucketsView } from './engine/hot-buckets.js';
import { netnsKey, type NetnsFill } from './engine/table-fill.js';
import type { KernelStats } from './kernel-stats.js';
import { Monitor, type MonitorOptions, type MonitorView } from './monitor.js';
import { protoName } from './protocols.js';
import type { RecordBatch } from './record.js';
import type { Mode, Source } from './source.js';
import type { TableInfo } from './table.js';

export interface Snapshot {
  version: 1;
  mode: Mode;
  kernel: string;
  durationSeconds: number;
  table: TableInfo & {
    /** Fill of the fullest netns (the kernel checks each netns's count against max). */
    fillPercent: number | null;
    /** Seconds until the fullest netns is full at its current growth; null when not growing. */
    secondsToFull: number | null;
    fullest: NetnsFill | null;
    /** Entries in every netns together; null before a census. */
    totalEntries: number | null;
    /** Added later: seconds the netns rows' meanEntries cover at most (since the first census). */
    averagedSeconds?: number;
  };
  totals: Counts;
  rates: { insertsPerSecond: number; destroysPerSecond: number };
  netns: Array<
    Counts & {
      inode: number;
      cookie: number;
      entries: number | null;
      /** Added later: entries averaged over time since the first census (null
       * before a second of it; absent from older snapshots). */
      meanEntries?: number | null;
      protocols: Array<Counts & { proto: string }>;
      /** Added later: this netns's rates (absent for a netns the engine has no row for). */
      windows?: WindowRates;
    } & NetnsNamed
  >;
  protocols: Array<Counts & { proto: string }>;
  /** Added after version 1's first cut; safe to ignore. */
  hooks: string;
  records: { drained: number };
  health: Health;
  /** Whether the counts are exact, and what this kernel cannot verify. */
  exactness: Exactness;
  windows: WindowRates;
  lifetimes: LifetimeRow[];
  /** Added later: the lifetimes as cumulative counts at `edgesSeconds` (powers of two). */
  lifetimeHistograms: { edgesSeconds: readonly number[]; rows: EngineView['lifetimeHistograms'] };
  /** `processes` added later (inserts made in a process context); talkers and
   * processes carry pod, namespace, workload, container where known. */
  top: EngineView['top'];
  /** Added later: inserts by where the kernel made them (process, softirq, unknown). */
  contexts?: InsertContexts;
  storms: EngineView['storms'];
  chains: EngineView['chains'] & { expected: Record<number, number> | null };
  hotBuckets: HotBucketsView;
  kernelStats: { current: KernelStats; sinceStart: KernelStats; perSecond: KernelStats } | null;
  /** With --census: a walk of the whole table at the end (null when it could not
   * run; `census.pending` says why). */
  buckets?: CensusView | null;
  census: { at: string | null; pending: string | null; churnDuring: number };
}

export interface SnapshotOptions extends MonitorOptions {
  durationSeconds: number;
  /** Walk the whole table at the end (the `buckets` field). */
  census?: boolean;
  /** Called once the probe is attached (its counters start then). */
  onReady?: (source: Source) => void | Promise<void>;
  /** Every drained batch, in order; valid only during the call. */
  onBatch?: (batch: RecordBatch) => void;
  /** Ends the snapshot early; the result covers the time until then. */
  signal?: AbortSignal;
}

const round = (x: number, digits: number): number => Number(x.toFixed(digits));
const nullableRound = (x: number | null, digits: number): number | null => (x === null ? null : round(x, digits));

function roundWindows(w: WindowRates): WindowRates {
  const r = (x: Rates): Rates => ({ insertsPerSecond: round(x.insertsPerSecond, 2), destroysPerSecond: round(x.destroysPerSecond, 2), netPerSecond: round(x.netPerSecond, 2) });
  return { '1s': r(w['1s']), '10s': r(w['10s']), '60s': r(w['60s']), ewma: r(w.ewma) };
}

/** The snapshot JSON of a view taken after `seconds` of watching. */
export function renderSnapshot(view: MonitorView, seconds: number, buckets?: CensusView | null): Snapshot {
  const sum = totals(view.counters);
  const fill = view.table.fill;
  const entries = new Map(fill.netns.map((n) => [netnsKey(n.cookie, n.inode), n]));
  const e = view.engine;
  // Rounded: one netns row of a 1000-netns churn JSON is mostly these rates.
  const netnsWindows = new Map(e.netns.map((n) => [netnsKey(n.cookie, n.inode), roundWindows(n.windows)]));
  return {
    version: 1,
    mode: view.mode as Mode,
    kernel: release(),
    durationSeconds: round(seconds, 3),
    table: {
      entries: view.table.entries,
      max: view.table.max,
      buckets: view.table.buckets,
      fillPercent: fill.fullest?.fillPercent ?? (fill.known && view.table.max > 0 ? 0 : null),
      secondsToFull: fill.fullest?.secondsToFull ?? null,
      fullest: fill.fullest && { ...fill.fullest, meanEntries: nullableRound(fill.fullest.meanEntries, 1) },
      totalEntries: fill.total,
      averagedSeconds: round(fill.averagedSeconds, 1),
    },
    totals: sum,
    rates: {
      insertsPerSecond: round(sum.inserts / seconds, 2),
      destroysPerSecond: round(sum.destroys / seconds, 2),
    },
    netns: byNetns(view.counters).map((n) => ({
      inode: n.inode,
      cookie: n.cookie,
      inserts: n.inserts,
      destroys: n.destroys,
      lost: n.lost,
      entries: fill.known ? (entries.get(netnsKey(n.cookie, n.inode))?.entries ?? 0) : null,
      meanEntries: fill.known ? nullableRound(entries.get(netnsKey(n.cookie, n.inode))?.meanEntries ?? null, 1) : null,
      protocols: n.protocols.map(({ l4proto, ...c }) => ({ proto: protoName(l4proto), ...c })),
      ...(netnsWindows.has(netnsKey(n.cookie, n.inode)) ? { windows: netnsWindows.get(netnsKey(n.cookie, n.inode))! } : {}),
      ...view.netnsNames[n.inode],
    })),
    protocols: [...view.counters.protocols]
      .sort((a, b) => b.inserts - a.inserts || a.l4proto - b.l4proto)
      .map(({ l4proto, ...c }) => ({ proto: protoName(l4proto), ...c })),
    hooks: view.hooks,
    records: view.records,
    health: view.counters.health,
    exactness: view.exactness,
    windows: e.windows,
    lifetimes: e.lifetimes,
    lifetimeHistograms: { edgesSeconds: EXPORT_EDGES_SECONDS, rows: e.lifetimeHistograms },
    top: e.top,
    contexts: e.contexts,
    storms: e.storms,
    chains: { ...e.chains, expected: view.chainsExpected },
    hotBuckets: e.hotBuckets,
    kernelStats: view.kernelStats,
    ...(buckets !== undefined ? { buckets } : {}),
    census: { at: view.census.last?.at ?? null, pending: view.census.pending, churnDuring: view.census.churnDuring },
  };
}

export async function takeSnapshot(options: SnapshotOptions): Promise<Snapshot> {
  const monitor = new Monitor(options);
  // The probe's counters start at zero when it attaches, and every record drained
  // from here on was emitted since then: counters and records cover one window.
  const t0 = performance.now();
  const stopBatches = options.onBatch ? monitor.onBatch(options.onBatch) : undefined;
  try {
    await options.onReady?.(monitor.source);
    const deadline = t0 + options.durationSeconds * 1000;
    await sleepUntil(deadline, options.signal);
    const buckets = options.census ? await monitor.census({ fresh: true }) : undefined;
    // Records the kernel wrote before this moment are drained before the view.
    await monitor.settle();
    const seconds = (performance.now() - t0) / 1000;
    return renderSnapshot(monitor.view(), seconds, buckets);
  } finally {
    stopBatches?.();
    await monitor.close();
  }
}

function sleepUntil(deadline: number, signal: AbortSignal | undefined): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve();
    const timer = setTimeout(done, Math.max(0, deadline - performance.now()));
    signal?.addEventListener('abort', done, { once: true });
    function done(): void {
      clearTimeout(timer);
      signal?.removeEventListener('abort', done);
      resolve();
    }
  });
}
