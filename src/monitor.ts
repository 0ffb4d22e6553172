// The one owner of the drain loop: opens a source, drains it continuously into
// the engine, and on every tick reads the kernel counters and builds one view
// that every consumer reads (snapshot, watch, the coming exporter and API, library
// users). Consumers never poll the source themselves.
import { exactness, type Exactness, type KernelCounters } from './counters.js';
import { Engine, type EngineOptions, type EngineView } from './engine/engine.js';
import type { RecordBatch } from './record.js';
import { openSource, type Source, type SourceOptions } from './source.js';

export interface MonitorOptions extends SourceOptions {
  /** How often the view is rebuilt and subscribers are called. */
  tickMs?: number;
  engine?: EngineOptions;
  /** The probe's clock, CLOCK_MONOTONIC in ns (process.hrtime is that clock on Linux). */
  clockNs?: () => number;
  /** For tests: a source already opened. */
  source?: Source;
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
}

export type Subscriber = (view: MonitorView) => void;

const monotonicNs = (): number => Number(process.hrtime.bigint());

export class Monitor {
  readonly source: Source;
  private readonly engine: Engine;
  private readonly clockNs: () => number;
  private readonly startNs: number;
  private readonly subscribers = new Set<Subscriber>();
  private readonly batchListeners = new Set<(batch: RecordBatch) => void>();
  private readonly loop: Promise<void>;
  private readonly timer: NodeJS.Timeout;
  private drained = 0;
  private closed = false;
  private failure: unknown;
  private latest: MonitorView | undefined;

  constructor(options: MonitorOptions = {}) {
    this.source = options.source ?? openSource(options);
    this.engine = new Engine(options.engine);
    this.clockNs = options.clockNs ?? monotonicNs;
    this.startNs = this.clockNs();
    this.loop = this.drain();
    this.timer = setInterval(() => this.tick(), options.tickMs ?? 1000);
    this.timer.unref?.();
  }

  /** The view now (rebuilt on every call; ticks rebuild it for subscribers). */
  view(): MonitorView {
    if (this.failure !== undefined) throw this.failure;
    const counters = this.source.counters();
    this.latest = {
      mode: this.source.mode,
      hooks: this.source.hooks,
      uptimeSeconds: (this.clockNs() - this.startNs) / 1e9,
      counters,
      exactness: exactness(this.source.mode, counters),
      records: { drained: this.drained },
      engine: this.engine.view(this.clockNs()),
    };
    return this.latest;
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
    if (!this.closed) {
      this.closed = true;
      clearInterval(this.timer);
      await this.loop;
      await this.source.close();
    }
    if (this.failure !== undefined) throw this.failure;
  }

  private async drain(): Promise<void> {
    try {
      while (!this.closed) {
        const batch = await this.source.poll(100);
        if (batch.count === 0) continue;
        this.drained += batch.count;
        this.engine.ingest(batch);
        for (const fn of this.batchListeners) fn(batch);
      }
    } catch (err) {
      this.failure = err;
      this.closed = true;
      clearInterval(this.timer);
    }
  }

  private tick(): void {
    if (this.closed || this.subscribers.size === 0) return;
    const view = this.view();
    for (const fn of this.subscribers) fn(view);
  }
}
