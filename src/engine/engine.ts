// The churn engine: records in, a view out. Pure: no I/O and no timers; time is
// the probe's clock (CLOCK_MONOTONIC ns), passed in. It reads each record's fields
// in place from the batch and builds no object per record.
import type { Named, ProcessNamed } from '../attribution/namer.js';
import type { StormCause } from '../attribution/storm-cause.js';
import { protoName, tcpStateName } from '../protocols.js';
import { RecordBatch, RecordContext, RecordFlag, RecordType } from '../record.js';
import { LogHistogram, type Quantiles } from './histogram.js';
import { HotBuckets, type HotBucketsView } from './hot-buckets.js';
import { netnsKey } from './table-fill.js';
import { SecondSlots, SLOT_SECONDS } from './slots.js';
import { IntCounter } from './int-counter.js';
import { SpaceSaving } from './space-saving.js';
import { DEFAULT_STORM_CONFIG, StormDetector, type Storm, type StormConfig } from './storms.js';

/** Seconds a second is given for its late records (a poll's worth) before the
 * storm detector takes it as complete. */
export const STORM_GRACE_SECONDS = 2;

export const WINDOWS_SECONDS = [1, 10, 60] as const;
/** Time constant of the EWMA of the per-second insert and destroy rates. */
export const EWMA_SECONDS = 10;
/** Chain lengths counted one by one up to this; longer ones share the last bin. */
export const CHAIN_BINS = 128;
const AF_INET = 2;
const TCP = 6;

export interface EngineOptions {
  /** Heavy hitters kept per epoch (sources, destinations). */
  topCapacity?: number;
  /** Length of a top-talker epoch, in seconds. */
  topEpochSeconds?: number;
  storms?: StormConfig;
  /** The table's bucket count (nf_conntrack_buckets), for the hot-bucket test. */
  buckets?: number;
  /** When watching started (the probe's clock, ns): windows longer than what was
   * watched so far are rates over the seconds watched. */
  startNs?: number;
}

export interface StormView extends Omit<Storm, 'netns'> {
  netns: Array<{ cookie: number; inode: number; inserts: number }>;
  /** The peers that dominate the storm's inserts (heavy hitters from the epoch
   * its onset fell in until its end). */
  sources: Talker[];
  destinations: Talker[];
  /** The local processes that made most of its inserts (inserts made in a
   * process context only). */
  processes: ProcessTalker[];
  /** Inserts its peer lists counted (from the top-talker epoch its onset fell
   * in, so a little more than `inserts`): what their shares are of. */
  peerInserts: number;
  /** Set by the monitor when names are known: the workload, pod or process
   * behind most of its inserts. */
  cause?: StormCause | null;
}

/** Peers kept per storm, and shown of the last epoch. */
const STORM_PEERS = 5;
const TOP_PEERS = 10;

interface PeerSketches {
  sources: SpaceSaving<number | string>;
  destinations: SpaceSaving<number | string>;
  processes: SpaceSaving<number>;
}

interface Peers {
  sources: Talker[];
  destinations: Talker[];
  processes: ProcessTalker[];
}

export interface Rates {
  insertsPerSecond: number;
  destroysPerSecond: number;
  /** Inserts minus destroys per second: the table's growth. */
  netPerSecond: number;
}

export type WindowRates = Record<'1s' | '10s' | '60s' | 'ewma', Rates>;

export interface Talker extends Named {
  address: string;
  port?: number;
  inserts: number;
  /** The count may be over by at most this (Space-Saving). */
  error: number;
}

/** A local process that made inserts (their first packet was its own). */
export interface ProcessTalker extends ProcessNamed {
  pid: number;
  /** Its command name when last seen. */
  comm: string;
  /** Its cgroup v2 id when last seen (the cgroup directory's inode). */
  cgroupId: number;
  inserts: number;
  /** The count may be over by at most this (Space-Saving). */
  error: number;
}

/** Inserts by where the kernel made them: in a process (a local client's first
 * packet), in softirq (received or forwarded: no process), in a kernel thread
 * (threaded NAPI, a kworker), or unknown (late inserts, a CPU not yet seen
 * outside a softirq). */
export interface InsertContexts {
  process: number;
  softirq: number;
  kernel: number;
  unknown: number;
}

export interface LifetimeRow extends Quantiles {
  proto: string;
  /** Final TCP state of the entries (TCP only). */
  state?: string;
  /** Destroys of entries inserted before ctstorm started: no lifetime, counted apart. */
  predating: number;
  /** Mean lifetime corrected for the watch's length (short watches see short
   * lifetimes more often); null when none ended. */
  meanSeconds: number | null;
}

/** IPS_DST_NAT: the entry's destination was translated (a Service's VIP to a backend). */
const IPS_DST_NAT = 1 << 5;

export interface EngineView {
  atSeconds: number;
  totals: { inserts: number; destroys: number };
  windows: WindowRates;
  /** Inserts per second over the last 60 s, oldest first. */
  insertsSeries: number[];
  protocols: Array<{ proto: string; windows: WindowRates }>;
  netns: Array<{ cookie: number; inode: number; inserts: number; destroys: number; windows: WindowRates }>;
  /** Destroys by the TCP state the entry ended in. */
  tcpStates: Array<{ state: string; destroys: number; destroysPerSecond10s: number }>;
  lifetimes: LifetimeRow[];
  /** The same lifetimes as cumulative counts at EXPORT_EDGES_SECONDS (the
   * exporter's histogram buckets, powers of two from 1/1024 s to 2^20 s). */
  lifetimeHistograms: Array<{ proto: string; state?: string; cumulative: number[]; count: number; sum: number }>;
  /** Heavy hitters of the last complete epoch; while that saw no insert (the
   * first epoch watched, or after a quiet one), of the current epoch so far, and
   * `partial` is true (added later). `backends`: DNAT'd inserts by the address
   * they were translated to (a Service's backend pods; the destinations show the
   * Service's address). */
  top: { epochSeconds: number; partial: boolean; backends: Talker[] } & Peers;
  contexts: InsertContexts;
  storms: {
    baselinePerSecond: number;
    /** Seconds the baseline has learned from; the detector's time constant is 60 s. */
    baselineLearnedSeconds: number;
    /** Storms started since the engine started (past keeps the last 20). */
    started: number;
    current: StormView | null;
    past: StormView[];
  };
  chains: {
    /** Inserts with a chain length. */
    inserts: number;
    /** Inserts that joined a chain already holding another entry's node. */
    collisions: number;
    longest: number;
    /** Chain lengths joined (both directions of each insert): length -> count. */
    histogram: Record<number, number>;
    /** Walks that stopped before the end: their lengths are floors. */
    capped: number;
  };
  /** Buckets that took far more inserts than uniform hashing explains, in the
   * last complete top-talker epoch. */
  hotBuckets: HotBucketsView;
}

class Churn {
  readonly inserts = new SecondSlots();
  readonly destroys = new SecondSlots();
  insertTotal = 0;
  destroyTotal = 0;

  count(type: number, sec: number, n = 1): void {
    if (type === RecordType.insert) {
      this.insertTotal += n;
      this.inserts.add(sec, n);
    } else {
      this.destroyTotal += n;
      this.destroys.add(sec, n);
    }
  }

  /** `first`: the first whole second being watched; a window longer than what
   * was watched is divided by the seconds watched, not by its length. */
  windows(now: number, first = -Infinity): WindowRates {
    const rates = (window: number): Rates => {
      const seconds = Math.max(1, Math.min(window, now - first));
      const i = this.inserts.sum(now, window) / seconds;
      const d = this.destroys.sum(now, window) / seconds;
      return { insertsPerSecond: i, destroysPerSecond: d, netPerSecond: i - d };
    };
    const ewma = (slots: SecondSlots): number => {
      const alpha = 1 - Math.exp(-1 / EWMA_SECONDS);
      const series = slots.series(now, SLOT_SECONDS);
      let value = 0;
      let weight = 0;
      for (let j = 1; j <= series.length; j++) {
        const w = alpha * (1 - alpha) ** (j - 1);
        value += w * series[series.length - j]!;
        weight += w;
      }
      return value / weight;
    };
    const ei = ewma(this.inserts);
    const ed = ewma(this.destroys);
    return {
      '1s': rates(1),
      '10s': rates(10),
      '60s': rates(60),
      ewma: { insertsPerSecond: ei, destroysPerSecond: ed, netPerSecond: ei - ed },
    };
  }
}

interface NetnsChurn extends Churn {
  cookie: number;
  inode: number;
}

function ipv4(n: number): string {
  return `${n >>> 24}.${(n >>> 16) & 255}.${(n >>> 8) & 255}.${n & 255}`;
}

export class Engine {
  private readonly total = new Churn();
  private readonly byProto = new Map<number, Churn>();
  private readonly byNetns = new Map<number, NetnsChurn>();
  /** The netns of the last record: records come in runs from one netns. */
  private lastNetns: NetnsChurn | null = null;
  private readonly endStates = new Map<number, Churn>();
  private readonly lifetimes = new Map<number, LogHistogram>();
  private readonly predating = new Map<number, number>();
  private readonly chainBins = new Float64Array(CHAIN_BINS + 1);
  private chainInserts = 0;
  private collisions = 0;
  private longest = 0;
  private capped = 0;
  private readonly topEpochSeconds: number;
  private epoch = -1;
  private readonly storms: StormDetector;
  private readonly hot: HotBuckets;
  /** The first whole second watched. */
  private readonly firstWatched: number;
  /** When watching began, seconds (-Infinity when unknown). */
  private readonly startSeconds: number;
  private stormTicked = -1;
  /** The first second any record came from: the storm baseline starts there. */
  private firstSecond = Infinity;
  /** Peers of the storm running now, and of past storms by start second. */
  private stormPeers: PeerSketches | null = null;
  private readonly pastPeers = new Map<number, Peers & { peerInserts: number }>();
  private readonly topCapacity: number;
  /** IPv4 sources of the batch (int32 keys), and the others (text). */
  private readonly batchSourcesV4 = new IntCounter();
  private readonly batchSources = new Map<number | string, number>();
  private readonly flushSource = (key: number | string, n: number): void => {
    this.sources.add(key, n);
    this.stormPeers?.sources.add(key, n);
  };
  private readonly batchDestinations = new Map<number | string, number>();
  /** The destination of the last inserts and how many in a row: a storm's
   * clients mostly reconnect to one service, so most inserts skip the map. */
  private runDestination: number | string | null = null;
  private runLength = 0;
  private sources: SpaceSaving<number | string>;
  private destinations: SpaceSaving<number | string>;
  private lastSources: SpaceSaving<number | string>;
  private lastDestinations: SpaceSaving<number | string>;
  private processes: SpaceSaving<number>;
  private lastProcesses: SpaceSaving<number>;
  /** DNAT'd inserts by their real destination (reply source), this epoch and the last. */
  private backends: SpaceSaving<number | string>;
  private lastBackends: SpaceSaving<number | string>;
  private readonly batchBackends = new Map<number | string, number>();
  /** Inserts by process id within the batch. */
  private readonly batchProcesses = new IntCounter(1 << 10);
  /** Command name and cgroup of each process in a sketch, as last seen. */
  private readonly processMeta = new Map<number, { comm: string; cgroupId: number }>();
  private readonly contexts: InsertContexts = { process: 0, softirq: 0, kernel: 0, unknown: 0 };
  private lastPid = -1;

  constructor(options: EngineOptions = {}) {
    const k = options.topCapacity ?? 100;
    this.topCapacity = k;
    this.topEpochSeconds = options.topEpochSeconds ?? 10;
    this.storms = new StormDetector(options.storms ?? DEFAULT_STORM_CONFIG);
    this.hot = new HotBuckets(options.buckets ?? 1 << 18);
    this.startSeconds = options.startNs === undefined ? -Infinity : options.startNs / 1e9;
    this.firstWatched = Math.ceil(this.startSeconds);
    this.sources = new SpaceSaving(k);
    this.destinations = new SpaceSaving(k);
    this.lastSources = new SpaceSaving(k);
    this.lastDestinations = new SpaceSaving(k);
    this.processes = new SpaceSaving(k);
    this.lastProcesses = new SpaceSaving(k);
    this.backends = new SpaceSaving(k);
    this.lastBackends = new SpaceSaving(k);
  }

  /** Counts the run of inserts to one destination that just ended. */
  private endDestinationRun(): void {
    const dst = this.runDestination;
    if (dst !== null) this.batchDestinations.set(dst, (this.batchDestinations.get(dst) ?? 0) + this.runLength);
    this.runDestination = null;
    this.runLength = 0;
  }

  /** Adds the peers counted since the last flush to the sketches: weighted
   * Space-Saving keeps its bounds, and a storm's few peers cost a few updates a
   * batch instead of one per record. */
  private flushTalkers(): void {
    this.endDestinationRun();
    const peers = this.stormPeers;
    const v4 = this.batchSourcesV4.entries();
    this.sources.addBatch(v4.keys, v4.counts, v4.length);
    peers?.sources.addBatch(v4.keys, v4.counts, v4.length);
    for (const [key, n] of this.batchSources) this.flushSource(key, n);
    for (const [key, n] of this.batchDestinations) {
      this.destinations.add(key, n);
      peers?.destinations.add(key, n);
    }
    const pids = this.batchProcesses.entries();
    this.processes.addBatch(pids.keys, pids.counts, pids.length);
    peers?.processes.addBatch(pids.keys, pids.counts, pids.length);
    for (const [key, n] of this.batchBackends) this.backends.add(key, n);
    this.batchBackends.clear();
    this.batchSourcesV4.clear();
    this.batchSources.clear();
    this.batchDestinations.clear();
    this.batchProcesses.clear();
  }

  /** Adds every record of a batch. */
  ingest(batch: RecordBatch): void {
    // Records come in runs of one type, second, protocol and netns (a storm's
    // inserts): the churn counters take each run once.
    let runType = -1;
    let runSec = -1;
    let runL4 = -1;
    let runNetns: Churn | null = null;
    let run = 0;
    for (let i = 0; i < batch.count; i++) {
      const type = batch.type(i);
      const sec = Math.floor(batch.tsNs(i) / 1e9);
      const l4 = batch.l4proto(i);
      const netns = this.netnsChurn(batch, i);
      if (type !== runType || sec !== runSec || l4 !== runL4 || netns !== runNetns) {
        if (run > 0) this.countRun(runType, runSec, runL4, runNetns!, run);
        runType = type;
        runSec = sec;
        runL4 = l4;
        runNetns = netns;
        run = 0;
      }
      run++;
      if (type === RecordType.insert) this.onInsert(batch, i, sec);
      else this.onDestroy(batch, i, sec, l4);
    }
    if (run > 0) this.countRun(runType, runSec, runL4, runNetns!, run);
    this.flushTalkers();
  }

  private countRun(type: number, sec: number, l4: number, netns: Churn, n: number): void {
    if (sec < this.firstSecond) this.firstSecond = sec;
    this.total.count(type, sec, n);
    this.churn(this.byProto, l4).count(type, sec, n);
    netns.count(type, sec, n);
  }

  /** Moves time on: closes top-talker epochs and feeds complete seconds to the
   * storm detector. The monitor calls it every tick, so storms are followed as
   * they happen even when nobody asks for a view. */
  advance(nowNs: number): void {
    const now = Math.floor(nowNs / 1e9);
    this.rotate(now);
    this.tickStorms(now - STORM_GRACE_SECONDS);
  }

  view(nowNs: number): EngineView {
    const now = Math.floor(nowNs / 1e9);
    this.advance(nowNs);
    const stormView = (st: Storm): StormView => ({
      ...st,
      netns: st.netns.map(({ key, inserts }) => ({ ...this.netnsOfKey(key), inserts })),
      ...(st.endSeconds === null && this.stormPeers
        ? { ...this.peersOf(this.stormPeers), peerInserts: this.stormPeers.sources.total }
        : (this.pastPeers.get(st.startSeconds) ?? { sources: [], destinations: [], processes: [], peerInserts: 0 })),
    });
    const current = this.storms.current();
    return {
      atSeconds: now,
      totals: { inserts: this.total.insertTotal, destroys: this.total.destroyTotal },
      windows: this.total.windows(now, this.firstWatched),
      insertsSeries: this.total.inserts.series(now, SLOT_SECONDS),
      protocols: [...this.byProto]
        .sort(([, a], [, b]) => b.insertTotal - a.insertTotal)
        .map(([l4, c]) => ({ proto: protoName(l4), windows: c.windows(now, this.firstWatched) })),
      netns: [...this.byNetns.values()]
        .map((c) => ({ cookie: c.cookie, inode: c.inode, inserts: c.insertTotal, destroys: c.destroyTotal, windows: c.windows(now, this.firstWatched) }))
        .sort((a, b) => b.windows['10s'].insertsPerSecond - a.windows['10s'].insertsPerSecond || b.inserts - a.inserts),
      tcpStates: [...this.endStates]
        .map(([state, c]) => ({ state: tcpStateName(state), destroys: c.destroyTotal, destroysPerSecond10s: c.destroys.sum(now, 10) / 10 }))
        .sort((a, b) => b.destroys - a.destroys),
      lifetimes: this.lifetimeRows(nowNs / 1e9 - this.startSeconds),
      lifetimeHistograms: [...this.lifetimes]
        .sort(([a], [b]) => a - b)
        .map(([key, h]) => ({
          proto: protoName(key >> 8),
          ...((key >> 8) === TCP ? { state: tcpStateName(key & 255) } : {}),
          cumulative: h.exportBuckets(),
          count: h.count,
          sum: h.sum,
        })),
      top: this.topView(),
      contexts: { ...this.contexts },
      storms: {
        baselinePerSecond: this.storms.baselinePerSecond,
        baselineLearnedSeconds: this.storms.learnedSeconds,
        started: this.storms.started,
        current: current ? stormView(current) : null,
        past: this.storms.past().map(stormView),
      },
      chains: {
        inserts: this.chainInserts,
        collisions: this.collisions,
        longest: this.longest,
        histogram: Object.fromEntries([...this.chainBins].flatMap((n, len) => (n > 0 ? [[len, n]] : []))),
        capped: this.capped,
      },
      hotBuckets: this.hot.view(),
    };
  }

  private onInsert(batch: RecordBatch, i: number, sec: number): void {
    this.rotate(sec);
    // IPv4 keys are numbers (destination: address * 2^16 + port, below 2^48).
    // Source as int32 (a small integer to V8, no boxing); counted per batch first
    // and added to the sketches once per distinct peer (flushTalkers).
    const v4 = batch.l3proto(i) === AF_INET;
    if (v4) {
      this.batchSourcesV4.add(batch.origSrcV4(i) | 0);
    } else {
      const src = batch.origAddress(i, 'src');
      this.batchSources.set(src, (this.batchSources.get(src) ?? 0) + 1);
    }
    const dst = v4 ? batch.origDstV4(i) * 65536 + batch.origDport(i) : `${batch.origAddress(i, 'dst')}|${batch.origDport(i)}`;
    if (dst === this.runDestination) {
      this.runLength++;
    } else {
      this.endDestinationRun();
      this.runDestination = dst;
      this.runLength = 1;
    }
    if (batch.status(i) & IPS_DST_NAT) {
      const backend = v4 ? batch.replySrcV4(i) * 65536 + batch.replySport(i) : `${batch.replyAddress(i, 'src')}|${batch.replySport(i)}`;
      this.batchBackends.set(backend, (this.batchBackends.get(backend) ?? 0) + 1);
    }
    const context = batch.context(i);
    if (context === RecordContext.task) {
      const pid = batch.tgid(i);
      this.contexts.process++;
      this.batchProcesses.add(pid);
      // A storm's inserts come in runs from one process: its name is read once a run.
      if (pid !== this.lastPid) {
        this.processMeta.set(pid, { comm: batch.comm(i), cgroupId: batch.cgroupId(i) });
        this.lastPid = pid;
      }
    } else if (context === RecordContext.interrupt) {
      this.contexts.softirq++;
    } else if (context === RecordContext.kernel) {
      this.contexts.kernel++;
    } else {
      this.contexts.unknown++;
    }
    const flags = batch.flags(i);
    if (flags & RecordFlag.buckets) {
      this.hot.add(batch.bucketOrig(i));
      this.hot.add(batch.bucketReply(i));
    }
    if (!(flags & RecordFlag.chain)) return;
    const co = batch.chainOrig(i);
    const cr = batch.chainReply(i);
    this.chainInserts++;
    this.chainBins[Math.min(co, CHAIN_BINS)]! += 1;
    this.chainBins[Math.min(cr, CHAIN_BINS)]! += 1;
    this.longest = Math.max(this.longest, co, cr);
    if (flags & RecordFlag.chainCapped) this.capped++;
    // A new entry's own nodes: one per chain, or two when both directions share it.
    const own = flags & RecordFlag.buckets && batch.bucketOrig(i) === batch.bucketReply(i) ? 2 : 1;
    if (co > own || cr > own) this.collisions++;
  }

  private onDestroy(batch: RecordBatch, i: number, sec: number, l4: number): void {
    const state = l4 === TCP ? batch.tcpState(i) : 0;
    const key = (l4 << 8) | state;
    if (l4 === TCP) this.churn(this.endStates, state).count(RecordType.destroy, sec);
    if (batch.flags(i) & RecordFlag.lifetime) {
      let h = this.lifetimes.get(key);
      if (!h) this.lifetimes.set(key, (h = new LogHistogram()));
      h.add(batch.lifetimeNs(i) / 1e9);
    } else {
      this.predating.set(key, (this.predating.get(key) ?? 0) + 1);
    }
  }

  private lifetimeRows(watchedSeconds: number): LifetimeRow[] {
    const keys = new Set([...this.lifetimes.keys(), ...this.predating.keys()]);
    return [...keys]
      .sort((a, b) => a - b)
      .map((key) => {
        const l4 = key >> 8;
        const h = this.lifetimes.get(key) ?? new LogHistogram();
        return {
          proto: protoName(l4),
          ...(l4 === TCP ? { state: tcpStateName(key & 255) } : {}),
          ...h.summary(),
          predating: this.predating.get(key) ?? 0,
          meanSeconds: h.meanWatched(watchedSeconds),
        };
      });
  }

  /** Feeds the storm detector every second up to `last` it has not seen (at most
   * the ring's length back). */
  private tickStorms(last: number): void {
    const first = Math.max(this.stormTicked + 1, last - SLOT_SECONDS + 1, this.firstSecond);
    for (let sec = first; sec <= last; sec++) {
      const byNetns = new Map<number, number>();
      for (const [key, c] of this.byNetns) {
        const n = c.inserts.at(sec);
        if (n > 0) byNetns.set(key, n);
      }
      this.storms.tick(sec, this.total.inserts.at(sec), this.total.destroys.at(sec), byNetns);
      this.followStormPeers();
    }
    this.stormTicked = Math.max(this.stormTicked, last);
  }

  /** Starts a storm's peer sketches at its onset, seeded with the current epoch's
   * (the onset's records came in before the detector, which lags, saw it), and
   * keeps them with the storm when it ends. */
  private followStormPeers(): void {
    const current = this.storms.current();
    if (current && !this.stormPeers) {
      this.stormPeers = { sources: new SpaceSaving(this.topCapacity), destinations: new SpaceSaving(this.topCapacity), processes: new SpaceSaving(this.topCapacity) };
      // The detector lags by the grace seconds: the onset may lie in the epoch before.
      if (Math.floor(current.startSeconds / this.topEpochSeconds) < this.epoch) {
        this.stormPeers.sources.merge(this.lastSources);
        this.stormPeers.destinations.merge(this.lastDestinations);
        this.stormPeers.processes.merge(this.lastProcesses);
      }
      this.stormPeers.sources.merge(this.sources);
      this.stormPeers.destinations.merge(this.destinations);
      this.stormPeers.processes.merge(this.processes);
    } else if (!current && this.stormPeers) {
      const ended = this.storms.past()[0];
      if (ended) this.pastPeers.set(ended.startSeconds, { ...this.peersOf(this.stormPeers), peerInserts: this.stormPeers.sources.total });
      this.stormPeers = null;
      const kept = new Set(this.storms.past().map((st) => st.startSeconds));
      for (const start of this.pastPeers.keys()) if (!kept.has(start)) this.pastPeers.delete(start);
    }
  }

  /** The n largest sources, destinations and processes of sketches, as people read them. */
  private peersOf(p: PeerSketches, n = STORM_PEERS): Peers {
    return {
      sources: p.sources.top(n).map((h) => ({ address: this.addressOf(h.key), inserts: h.count, error: h.error })),
      destinations: this.endpoints(p.destinations, n),
      processes: p.processes.top(n).map((h) => ({ pid: h.key, ...(this.processMeta.get(h.key) ?? { comm: '', cgroupId: 0 }), inserts: h.count, error: h.error })),
    };
  }

  /** The n largest address:port keys of a sketch (destinations, backends). */
  private endpoints(sketch: SpaceSaving<number | string>, n: number): Talker[] {
    return sketch.top(n).map((h) => ({ ...this.endpointOf(h.key), inserts: h.count, error: h.error }));
  }

  private netnsOfKey(key: number): { cookie: number; inode: number } {
    const c = this.byNetns.get(key);
    return { cookie: c?.cookie ?? 0, inode: c?.inode ?? 0 };
  }

  /** Starts a new top-talker epoch when `sec` is past the current one. */
  private rotate(sec: number): void {
    const epoch = Math.floor(sec / this.topEpochSeconds);
    if (epoch <= this.epoch) return;
    this.flushTalkers(); // what was counted belongs to the epoch that ends
    if (epoch === this.epoch + 1) {
      [this.lastSources, this.sources] = [this.sources, this.lastSources];
      [this.lastDestinations, this.destinations] = [this.destinations, this.lastDestinations];
      [this.lastProcesses, this.processes] = [this.processes, this.lastProcesses];
      [this.lastBackends, this.backends] = [this.backends, this.lastBackends];
      this.hot.endEpoch();
    } else {
      // The epoch just before this one saw no insert.
      this.lastSources.clear();
      this.lastDestinations.clear();
      this.lastProcesses.clear();
      this.lastBackends.clear();
      this.hot.endEpoch(true);
    }
    this.sources.clear();
    this.destinations.clear();
    this.processes.clear();
    this.backends.clear();
    this.epoch = epoch;
    this.pruneProcessMeta();
  }

  /** The last complete epoch's heavy hitters, or the current epoch's so far
   * while the last saw none (a 5 s snapshot still says who). */
  private topView(): EngineView['top'] {
    const partial = this.lastSources.total === 0 && this.sources.total > 0;
    const [sources, destinations, processes, backends] = partial
      ? [this.sources, this.destinations, this.processes, this.backends]
      : [this.lastSources, this.lastDestinations, this.lastProcesses, this.lastBackends];
    return {
      epochSeconds: this.topEpochSeconds,
      partial,
      ...this.peersOf({ sources, destinations, processes }, TOP_PEERS),
      backends: this.endpoints(backends, TOP_PEERS),
    };
  }

  /** Keeps the names of processes some sketch or past storm still shows. */
  private pruneProcessMeta(): void {
    const kept = new Set<number>();
    for (const h of this.lastProcesses.top()) kept.add(h.key);
    for (const h of this.stormPeers?.processes.top() ?? []) kept.add(h.key);
    for (const pid of this.processMeta.keys()) if (!kept.has(pid)) this.processMeta.delete(pid);
    this.lastPid = -1;
  }

  private churn(map: Map<number, Churn>, key: number): Churn {
    let c = map.get(key);
    if (!c) map.set(key, (c = new Churn()));
    return c;
  }

  private netnsChurn(batch: RecordBatch, i: number): Churn {
    const cookie = batch.netnsCookie(i);
    const inode = batch.netns(i);
    const last = this.lastNetns;
    if (last && last.cookie === cookie && last.inode === inode) return last;
    const key = netnsKey(cookie, inode);
    let c = this.byNetns.get(key);
    if (!c) this.byNetns.set(key, (c = Object.assign(new Churn(), { cookie, inode })));
    this.lastNetns = c;
    return c;
  }

  private addressOf(key: number | string): string {
    return typeof key === 'number' ? ipv4(key >>> 0) : key;
  }

  private endpointOf(key: number | string): { address: string; port: number } {
    if (typeof key === 'number') return { address: ipv4(Math.floor(key / 65536)), port: key % 65536 };
    const [address, port] = key.split('|');
    return { address: address!, port: Number(port) };
  }
}
