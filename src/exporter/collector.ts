// The library face of the exporter: `createCollector()` starts a Monitor and
// adds ctstorm's metrics to an application's own prom-client registry; events
// for every update and for storms; close() detaches everything.
import { EventEmitter } from 'node:events';
import type { Metric, Registry } from 'prom-client';
import type { StormView } from '../engine/engine.js';
import { Monitor, type MonitorOptions, type MonitorView } from '../monitor.js';
import { ctstormMetrics } from './metrics.js';

export const VERSION = '0.1.0';
/** A scrape reads the view once: views this young are reused. */
const VIEW_CACHE_MS = 250;

export interface CollectorOptions extends MonitorOptions {
  /** Netns label values kept in metrics (the rest are "other"). Default 20. */
  maxNetns?: number;
}

export interface CollectorEvents {
  update: [MonitorView];
  storm: [StormView];
  stormEnd: [StormView];
  error: [unknown];
}

export class Collector extends EventEmitter<CollectorEvents> {
  readonly monitor: Monitor;
  private cached: { at: number; view: MonitorView } | undefined;
  private readonly registries = new Set<Registry>();
  private readonly maxNetns: number | undefined;
  private stormStart: number | null = null;
  private closing: Promise<void> | undefined;

  constructor(options: CollectorOptions = {}) {
    super();
    this.monitor = new Monitor(options);
    this.maxNetns = options.maxNetns;
    this.monitor.subscribe((view) => {
      this.cached = { at: performance.now(), view };
      this.emit('update', view);
      this.followStorms(view);
    });
    void this.monitor.ended.then(() => {
      if (!this.closing) this.close().catch((err: unknown) => this.emit('error', err));
    });
  }

  /** The monitor's view, at most VIEW_CACHE_MS old. */
  view(): MonitorView {
    const now = performance.now();
    if (!this.cached || now - this.cached.at > VIEW_CACHE_MS) this.cached = { at: now, view: this.monitor.view() };
    return this.cached.view;
  }

  /** Adds ctstorm's metrics (all named ctstorm_*) to a prom-client registry. */
  register(registry: Registry): void {
    for (const metric of ctstormMetrics(() => this.view(), { version: VERSION, maxNetns: this.maxNetns })) {
      registry.registerMetric(metric as unknown as Metric);
    }
    this.registries.add(registry);
  }

  /** Removes the metrics from every registry, detaches the probe; rethrows a drain failure. */
  close(): Promise<void> {
    this.closing ??= (async () => {
      for (const registry of this.registries) {
        for (const metric of ctstormMetrics(() => this.view(), { version: VERSION })) registry.removeSingleMetric(metric.name);
      }
      this.registries.clear();
      await this.monitor.close();
    })();
    return this.closing;
  }

  private followStorms(view: MonitorView): void {
    const current = view.engine.storms.current;
    if (current && this.stormStart !== current.startSeconds) {
      this.stormStart = current.startSeconds;
      this.emit('storm', current);
    } else if (!current && this.stormStart !== null) {
      const ended = view.engine.storms.past.find((s) => s.startSeconds === this.stormStart);
      this.stormStart = null;
      if (ended) this.emit('stormEnd', ended);
    }
  }
}

/** Starts a Monitor (loads and attaches the probe) and returns its collector. */
export function createCollector(options: CollectorOptions = {}): Collector {
  return new Collector(options);
}
