// The library face of the exporter: `createCollector()` starts a Monitor and
// adds ctstorm's metrics to an application's own prom-client registry; events
// for every update and for storms; close() detaches everything.
import { EventEmitter } from 'node:events';
import type { Metric, Registry } from 'prom-client';
import type { StormView } from '../engine/engine.js';
import { Monitor, type MonitorOptions, type MonitorView } from '../monitor.js';
import { AdviceHeadline, type HeadlineOptions } from '../advisor/headline.js';
import { ctstormMetrics, newNetnsFold } from './metrics.js';
import type { NetnsFold } from './netns-fold.js';

import { VERSION } from '../version.js';

export { VERSION };
/** A scrape reads the view once: views this young are reused. */
const VIEW_CACHE_MS = 250;

export interface CollectorOptions extends MonitorOptions {
  /** Netns label values in metrics at most, ctstorm's own netns included (netns
   * seen once they are taken are "other"). Default 20. */
  maxNetns?: number;
  /** The tuning model's headline (ctstorm_advice_*): headroom (default 0.5) and an
   * optional what-if storm; false leaves those metrics out. */
  advice?: Partial<HeadlineOptions> | false;
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
  private readonly registries = new Map<Registry, string[]>();
  /** One for the collector's life: a netns keeps its label (and its counters
   * keep growing) across scrapes and registrations. */
  private readonly netnsFold: NetnsFold;
  private readonly advice: AdviceHeadline | undefined;
  private stormStart: number | null = null;
  private closing: Promise<void> | undefined;
  private down = false;

  constructor(options: CollectorOptions = {}) {
    super();
    this.monitor = new Monitor(options);
    this.netnsFold = newNetnsFold(options.maxNetns);
    this.advice = options.advice === false ? undefined : new AdviceHeadline({ ...options.advice, headroom: options.advice?.headroom ?? 0.5 });
    this.monitor.subscribe((view) => {
      this.cached = { at: performance.now(), view };
      // A listener's bug is the application's: it must not stop the probe.
      this.safeEmit('update', view);
      this.followStorms(view);
    });
    void this.monitor.ended.then(() => {
      this.down = true;
      // The drain failed (close() was not called): say so if anyone listens;
      // ctstorm_up reads 0 from now on.
      if (!this.closing) this.monitor.close().catch((err: unknown) => this.safeEmit('error', err));
    });
  }

  /** The monitor's view, at most VIEW_CACHE_MS old. Throws once the monitor failed. */
  view(): MonitorView {
    const now = performance.now();
    if (!this.cached || now - this.cached.at > VIEW_CACHE_MS) this.cached = { at: now, view: this.monitor.view() };
    return this.cached.view;
  }

  /** Adds ctstorm's metrics (all named ctstorm_*) to a prom-client registry: all
   * of them or, on a name clash, none. */
  register(registry: Registry): void {
    if (this.closing) throw new Error('ctstorm collector is closed');
    const metrics = ctstormMetrics(() => this.liveView(), { version: VERSION, netnsFold: this.netnsFold, advice: this.advice });
    const added: string[] = [];
    try {
      for (const metric of metrics) {
        registry.registerMetric(metric as unknown as Metric);
        added.push(metric.name);
      }
    } catch (err) {
      for (const name of added) registry.removeSingleMetric(name);
      throw err;
    }
    this.registries.set(registry, added);
  }

  /** Removes ctstorm's metrics from a registry register() added them to. */
  unregister(registry: Registry): void {
    for (const name of this.registries.get(registry) ?? []) registry.removeSingleMetric(name);
    this.registries.delete(registry);
  }

  /** Removes the metrics from every registry, detaches the probe; rethrows a drain failure. */
  close(): Promise<void> {
    this.closing ??= (async () => {
      this.down = true;
      for (const registry of [...this.registries.keys()]) this.unregister(registry);
      await this.monitor.close();
    })();
    return this.closing;
  }

  /** The view for metrics: null once closed or failed (they then serve no samples). */
  private liveView(): MonitorView | null {
    if (this.down) return null;
    try {
      return this.view();
    } catch {
      return null;
    }
  }

  private safeEmit<K extends keyof CollectorEvents>(event: K, ...args: CollectorEvents[K]): void {
    if (event === 'error' && this.listenerCount('error') === 0) return; // no one to tell: ctstorm_up says it
    try {
      (this.emit as (e: K, ...a: CollectorEvents[K]) => boolean)(event, ...args);
    } catch (err) {
      if (event !== 'error' && this.listenerCount('error') > 0) this.emit('error', err);
    }
  }

  private followStorms(view: MonitorView): void {
    const current = view.engine.storms.current;
    if (current && this.stormStart !== current.startSeconds) {
      this.stormStart = current.startSeconds;
      this.safeEmit('storm', current);
    } else if (!current && this.stormStart !== null) {
      const ended = view.engine.storms.past.find((s) => s.startSeconds === this.stormStart);
      this.stormStart = null;
      if (ended) this.safeEmit('stormEnd', ended);
    }
  }
}

/** Starts a Monitor (loads and attaches the probe) and returns its collector. */
export function createCollector(options: CollectorOptions = {}): Collector {
  return new Collector(options);
}
