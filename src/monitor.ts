// The one owner of the drain loop: opens a source, drains it continuously into
// the engine, and on every tick reads the kernel's statistics, keeps the census
// current and builds one view that every consumer reads (snapshot, watch, the
// coming exporter and API, library users). Consumers never poll the source.
import { CgroupIndex } from './attribution/cgroup-index.js';
import { nameView } from './attribution/name-view.js';
import { Namer, type NamerOptions, type NetnsNamed } from './attribution/namer.js';
import { exactness, type Exactness, type KernelCounters, type NetnsProtoCounts } from './counters.js';
import { censusView, type CensusView } from './engine/census-view.js';
import { Engine, type EngineOptions, type EngineView } from './engine/engine.js';
import { poissonPmf } from './engine/poisson.js';
import { entriesByNetns, FillAverage, fillBaseline, netnsKey, tableFill, type NetnsEntries, type TableFill } from './engine/table-fill.js';
import { errorLine } from './errors.js';
import { readConntrackStat, statDeltas, statRates, type KernelStats } from './kernel-stats.js';
import { RECORD_SIZE, type RecordBatch } from './record.js';
import { openSource, type Source, type SourceOptions } from './source.js';
import { readTable, type TableInfo } from './table.js';

export interface MonitorOptions extends SourceOptions {
  /** How often the view is rebuilt and subscribers are called. */
  tickMs?: number;
  engine?: EngineOptions;
  /** A census at start (once an insert has shown where the table is) and then
   * every this many seconds, to keep per-netns counts true; 0: at start only. */
  censusIntervalSeconds?: number;
  /** The probe's clock, CLOCK_MONOTONIC in ns (process.hrtime is that clock on Linux). */
  clockNs?: () => number;
  /** For tests: a source already opened, and where the table size and the
   * kernel's statistics come from. */
  source?: Source;
  readTable?: () => TableInfo;
  readKernelStats?: () => KernelStats;
  /** Names for netns, processes and pod addresses: a Namer, its options (a pod
   * directory among them), or false for none. Default: /proc and cgroup2. */
  names?: Namer | NamerOptions | false;
}

export interface KernelStatsView {
  /** The counters as the kernel has them (since boot, or since the netns was made). */
  current: KernelStats;
  /** Each counter's growth since the probe attached (`entries`: the value now). */
  sinceStart: KernelStats;
  /** Per second over the last tick. */
  perSecond: KernelStats;
}

export interface TableView extends TableInfo {
  /** Entries per netns from the census carried forward by the exact counters. */
  fill: TableFill;
}

export interface CensusState {
  /** The last complete census. */
  last: CensusView | null;
  /** Why there is none yet, or why the last attempt failed. */
  pending: string | null;
  /** Set when waiting cannot bring a census: this source cannot walk the table,
   * or the last walk failed (its error is in `pending`). */
  blocked: 'unsupported' | 'failed' | null;
  /** Inserts plus destroys counted while the last census walked: its per-netns
   * counts may be off by at most this many. */
  churnDuring: number;
}

export interface MonitorView {
  mode: string;
  hooks: string;
  /** Seconds since the probe attached. */
  uptimeSeconds: number;
  /** Exact kernel counters since the probe attached. */
  counters: KernelCounters;
  exactness: Exactness;
  records: { drained: number };
  engine: EngineView;
  table: TableView;
  /** Chain lengths that inserts joined, against uniform hashing: a new node joins
   * a chain of 1 + Poisson(2 x entries / buckets). Null before the entry count is known. */
  chainsExpected: Record<number, number> | null;
  /** /proc/net/stat/nf_conntrack of ctstorm's own netns; null when unreadable. */
  kernelStats: KernelStatsView | null;
  census: CensusState;
  /** Who each netns the view shows belongs to, by inode (absent: nothing known). */
  netnsNames: Record<string, NetnsNamed>;
}

export type Subscriber = (view: MonitorView) => void;

const monotonicNs = (): number => Number(process.hrtime.bigint());
const DEFAULT_CENSUS_INTERVAL_SECONDS = 300;
/** A census counts each bucket when it walks it, so every insert or destroy during
 * the walk, in a bucket not yet walked, is counted twice or missed once the
 * counters carry it forward (up to `churnDuring` entries off). The first census
 * runs at the first insert, often in a burst: after one that met churn, up to this
 * many more run, each on a tick whose churn rate is under half the walk's (a walk
 * in the same storm would be as far off, and costs ~0.3 s of CPU at a full
 * table), and the quietest is kept. */
const CENSUS_RETRIES = 3;
/** A census whose walks met moved entries in more than this share of the buckets
 * is not used (a busy table moves a few; a stale address moves nearly all). */
const MAX_MOVED_FRACTION = 0.01;
/** settle() waits at most this long (a storm may never leave the ring empty). */
const SETTLE_MS = 2000;

function readStats(read: () => KernelStats): KernelStats | null {
  try {
    return read();
  } catch {
    return null; // no conntrack stat file in this netns: the view says null
  }
}

function churn(rows: readonly NetnsProtoCounts[]): number {
  return rows.reduce((n, r) => n + r.inserts + r.destroys, 0);
}

export class Monitor {
  readonly source: Source;
  private readonly engine: Engine;
  private readonly clockNs: () => number;
  private readonly readTable: () => TableInfo;
  private readonly readKernelStats: () => KernelStats;
  private readonly censusIntervalMs: number;
  private readonly startNs: number;
  private readonly subscribers = new Set<Subscriber>();
  private readonly batchListeners = new Set<(batch: RecordBatch) => void>();
  private readonly loop: Promise<void>;
  private readonly timer: NodeJS.Timeout;
  private drained = 0;
  private pollsStarted = 0;
  private readonly settleWaiters = new Set<{ after: number; resolve: () => void }>();
  private closed = false;
  private released = false;
  private paused: { reached: Promise<void>; signal: () => void; resume: () => void } | undefined;
  private failure: unknown;
  private readonly statsAtStart: KernelStats | null;
  private statsBefore: { at: number; stats: KernelStats } | null;
  private statsPerSecond: KernelStats = {};
  private baseline: Map<number, number> | null = null;
  private readonly fillAverage = new FillAverage();
  private censusState: CensusState = { last: null, pending: 'no census yet: it runs once an insert has shown where the table is', blocked: null, churnDuring: 0 };
  private censusRunning: Promise<CensusView | null> | null = null;
  private lastCensusMs = 0;
  /** Censuses still to try, on quieter ticks, after one that met churn (see CENSUS_RETRIES). */
  private censusRetriesLeft = 0;
  /** Inserts and destroys a second during the last census, and at the last tick. */
  private censusChurnRate = 0;
  private tickChurn: { at: number; churn: number; perSecond: number } | null = null;
  private readonly namer: Namer | null;

  constructor(options: MonitorOptions = {}) {
    this.source = options.source ?? openSource(options);
    this.readTable = options.readTable ?? readTable;
    this.readKernelStats = options.readKernelStats ?? readConntrackStat;
    const table = this.readTable();
    this.clockNs = options.clockNs ?? monotonicNs;
    this.startNs = this.clockNs();
    this.engine = new Engine({ buckets: table.buckets, startNs: this.startNs, ...options.engine });
    this.censusIntervalMs = (options.censusIntervalSeconds ?? DEFAULT_CENSUS_INTERVAL_SECONDS) * 1000;
    this.statsAtStart = readStats(this.readKernelStats);
    this.statsBefore = this.statsAtStart && { at: this.nowMs(), stats: this.statsAtStart };
    this.namer = options.names === false ? null : options.names instanceof Namer ? options.names : new Namer({ cgroups: new CgroupIndex(), ...options.names });
    this.loop = this.drain();
    this.timer = setInterval(() => this.tick(), options.tickMs ?? 1000);
    this.timer.unref?.();
  }

  /** Milliseconds on the probe's clock: every interval the monitor times (ticks,
   * walks, rates) is read from the clock it was given, so tests can pass time in. */
  private nowMs(): number {
    return this.clockNs() / 1e6;
  }

  /** The view now (rebuilt on every call; ticks rebuild it for subscribers). */
  view(): MonitorView {
    return this.buildView(readStats(this.readKernelStats));
  }

  /** The view, with a reading of the kernel's statistics taken by the caller. */
  private buildView(stats: KernelStats | null, counters = this.source.counters(), entries = this.entriesNow(counters)): MonitorView {
    if (this.failure !== undefined) throw this.failure;
    const table = this.readTable();
    const engine = this.engine.view(this.clockNs());
    const netnsNames = this.namer ? nameView(engine, counters.netns.map((r) => r.inode), this.namer) : {};
    const growth = new Map(engine.netns.map((n) => [netnsKey(n.cookie, n.inode), n.windows['10s'].netPerSecond]));
    const fill = tableFill({
      max: table.max,
      entries,
      growth,
      means: this.fillAverage,
    });
    return {
      mode: this.source.mode,
      hooks: this.source.hooks,
      uptimeSeconds: (this.clockNs() - this.startNs) / 1e9,
      counters,
      exactness: exactness(this.source.mode, counters),
      records: { drained: this.drained },
      engine,
      table: { ...table, fill },
      chainsExpected: fill.total === null ? null : expectedJoins(fill.total, table.buckets, engine.chains.inserts),
      kernelStats: stats && this.statsAtStart ? { current: stats, sinceStart: statDeltas(this.statsAtStart, stats), perSecond: this.statsPerSecond } : null,
      census: { ...this.censusState },
      netnsNames,
    };
  }

  /** Entries per netns now: the last census carried forward by the counters;
   * null before a census. */
  private entriesNow(counters: KernelCounters): Map<number, NetnsEntries> | null {
    return this.baseline && entriesByNetns(this.baseline, this.censusState.last?.netns ?? [], counters.netns);
  }

  /** Walks the whole table now (one walk at a time: a second caller shares the
   * first's). Null while the table is not located (no insert seen yet, or none
   * since a resize) or when this source cannot; `view().census.pending` says why.
   * A walk that met too many moved chains is returned but not counted from.
   * `fresh`: a walk that begins after this call, not one already under way (which
   * may have begun before the caller's traffic ended: a walk counts what it meets,
   * and entries inserted during it and met later are counted twice once the
   * counters carry the census forward). */
  async census(options: { fresh?: boolean } = {}): Promise<CensusView | null> {
    if (options.fresh && this.censusRunning) await this.censusRunning;
    this.censusRunning ??= this.runCensus().finally(() => {
      this.censusRunning = null;
    });
    return await this.censusRunning;
  }

  /** Resolves once everything the kernel wrote before the call is drained: a poll
   * started after it came back with room to spare (the ring was empty). At most
   * SETTLE_MS; at once when closed. */
  settle(): Promise<void> {
    if (this.closed) return Promise.resolve();
    return new Promise((resolve) => {
      const timer = setTimeout(done, SETTLE_MS);
      const waiter = { after: this.pollsStarted, resolve: done };
      this.settleWaiters.add(waiter);
      const waiters = this.settleWaiters;
      function done(): void {
        clearTimeout(timer);
        waiters.delete(waiter);
        resolve();
      }
    });
  }

  /** Calls fn with a new view every tick; returns the unsubscribe function. */
  subscribe(fn: Subscriber): () => void {
    this.subscribers.add(fn);
    return () => this.subscribers.delete(fn);
  }

  /** Every drained batch that holds records, in order; valid only during the call. */
  onBatch(fn: (batch: RecordBatch) => void): () => void {
    this.batchListeners.add(fn);
    return () => this.batchListeners.delete(fn);
  }

  /** Stops draining and detaches; rethrows a drain failure, if any. */
  async close(): Promise<void> {
    this.closed = true; // also set by a failure, which leaves the source open until here
    clearInterval(this.timer);
    this.resumeDrain();
    await this.loop;
    if (!this.released) {
      this.released = true;
      await this.source.close();
    }
    await this.censusRunning;
    if (this.failure !== undefined) throw this.failure;
  }

  /** No census this time, and why (the last good one, if any, stays). */
  private noCensus(pending: string, blocked: CensusState['blocked'] = null): null {
    this.censusState = { ...this.censusState, pending, blocked };
    return null;
  }

  private async runCensus(): Promise<CensusView | null> {
    if (!this.source.census) return this.noCensus('this source cannot walk the table', 'unsupported');
    if (this.closed) return null;
    try {
      const before = this.source.counters().netns;
      const buckets = this.readTable().buckets;
      const walkStarted = this.nowMs();
      const result = await this.source.census(buckets);
      if (result === 'closed') return null;
      if (result === 'resized') return this.noCensus('the table was resized: the census waits for an insert to show the new one');
      if (result === 'not-located') return this.noCensus('the table is not located yet: the census needs one insert seen since start');
      if (this.readTable().buckets !== buckets) {
        return this.noCensus('the table was resized during the census: the next one runs at the next tick');
      }
      if (result.bucketsWalked !== result.buckets) {
        this.lastCensusMs = 0;
        return this.noCensus(`the census walked ${result.bucketsWalked} of ${result.buckets} buckets: not used; the next one runs at the next tick`);
      }
      const after = this.source.counters().netns;
      const view = censusView(result, new Date());
      // A walk that kept meeting moved entries, or unreadable buckets: not a
      // table to count from (a stale address); the previous baseline stays.
      if (result.readErrors > 0 || result.moved > MAX_MOVED_FRACTION * result.buckets) {
        this.noCensus(`the last census met ${result.moved} moved chains and ${result.readErrors} unreadable buckets: not used for the per-netns counts; the next one runs at the next tick`);
        this.lastCensusMs = 0;
        return view; // still worth showing (`ctstorm buckets`), not worth counting from
      }
      const churnDuring = churn(after) - churn(before);
      this.censusChurnRate = churnDuring / Math.max((this.nowMs() - walkStarted) / 1000, 1e-3);
      const retry = this.censusRetriesLeft > 0;
      this.censusRetriesLeft = churnDuring === 0 ? 0 : retry ? this.censusRetriesLeft - 1 : CENSUS_RETRIES;
      // A retry busier than the census it retries: that one stays the baseline.
      if (retry && this.censusState.last !== null && churnDuring > this.censusState.churnDuring) return view;
      this.baseline = fillBaseline(result.netns, before);
      this.censusState = { last: view, pending: null, blocked: null, churnDuring };
      this.lastCensusMs = this.nowMs();
      return view;
    } catch (err) {
      if (this.closed) return null;
      return this.noCensus(`census failed: ${errorLine(err)}`, 'failed');
    }
  }

  /** Stops draining (and so, in tracepoint mode, sweeping) until resumeDrain():
   * resolves once no poll is in flight. For tests that need the ring or the
   * sweep's map to fill. */
  async pauseDrain(): Promise<void> {
    if (this.paused) return this.paused.reached;
    let reached!: () => void;
    const p = { reached: new Promise<void>((r) => (reached = r)), signal: reached, resume: (): void => undefined };
    this.paused = p;
    return p.reached;
  }

  resumeDrain(): void {
    const p = this.paused;
    this.paused = undefined;
    p?.resume();
  }

  private async drain(): Promise<void> {
    try {
      while (!this.closed) {
        const p = this.paused;
        if (p) {
          await new Promise<void>((resume) => {
            p.resume = resume;
            p.signal();
          });
          continue;
        }
        const started = ++this.pollsStarted;
        const batch = await this.source.poll(100);
        if (batch.count > 0) {
          this.drained += batch.count;
          this.engine.ingest(batch);
          for (const fn of this.batchListeners) fn(batch);
        }
        if ((batch.count + 1) * RECORD_SIZE > batch.bytes.byteLength) continue; // full: more may wait
        for (const w of this.settleWaiters) if (w.after < started) w.resolve();
      }
    } catch (err) {
      this.fail(err);
    } finally {
      for (const w of this.settleWaiters) w.resolve();
    }
  }

  /** Resolves when the drain loop ends: close(), or a failure (close() rethrows it). */
  get ended(): Promise<void> {
    return this.loop;
  }

  /** Resolves when the signal aborts or the drain loop ends, whichever comes first:
   * how long a command runs (watch, serve). */
  until(signal: AbortSignal): Promise<void> {
    return new Promise((resolve) => {
      if (signal.aborted) return resolve();
      const done = (): void => {
        signal.removeEventListener('abort', done);
        resolve();
      };
      signal.addEventListener('abort', done, { once: true });
      void this.loop.then(done);
    });
  }

  private fail(err: unknown): void {
    this.failure ??= err;
    this.closed = true;
    clearInterval(this.timer);
  }

  private tick(): void {
    try {
      this.tickOnce();
    } catch (err) {
      this.fail(err); // a failed counter read or subscriber ends the monitor like a failed drain
    }
  }

  private tickOnce(): void {
    if (this.closed) return;
    this.engine.advance(this.clockNs());
    const now = this.nowMs();
    const stats = readStats(this.readKernelStats);
    if (stats && this.statsBefore) {
      const seconds = (now - this.statsBefore.at) / 1000;
      if (seconds > 0) this.statsPerSecond = statRates(this.statsBefore.stats, stats, seconds);
    }
    this.statsBefore = stats && { at: now, stats };
    const counters = this.source.counters();
    const churnNow = churn(counters.netns);
    if (this.tickChurn && now > this.tickChurn.at) {
      this.tickChurn = { at: now, churn: churnNow, perSecond: ((churnNow - this.tickChurn.churn) * 1000) / (now - this.tickChurn.at) };
    } else {
      this.tickChurn = { at: now, churn: churnNow, perSecond: Infinity };
    }
    const due =
      this.censusState.last === null ||
      (this.censusRetriesLeft > 0 && this.tickChurn.perSecond < this.censusChurnRate / 2) ||
      (this.censusIntervalMs > 0 && now - this.lastCensusMs >= this.censusIntervalMs);
    if (due && !this.censusRunning) void this.census();
    const entries = this.entriesNow(counters);
    if (entries) this.fillAverage.sample(entries, now);
    this.namer?.refresh(); // every tick, at most once per its interval: views read the last completed read
    if (this.subscribers.size === 0) return;
    const view = this.buildView(stats, counters, entries); // the readings just taken: one read of each a tick
    for (const fn of this.subscribers) fn(view);
  }
}

/** Of `inserts` chain lengths joined (two per insert), how many of each length
 * uniform hashing predicts: 1 + Poisson(2 x entries / buckets). */
function expectedJoins(entries: number, buckets: number, inserts: number): Record<number, number> | null {
  if (buckets <= 0) return null;
  const mean = (2 * entries) / buckets;
  const out: Record<number, number> = {};
  for (let k = 0; k < 64; k++) {
    const p = poissonPmf(mean, k);
    if (k > mean && p * 2 * inserts < 0.5) break;
    out[k + 1] = p * 2 * inserts;
  }
  return out;
}
