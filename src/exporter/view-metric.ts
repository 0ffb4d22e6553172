// A prom-client metric whose samples are computed at scrape time from the
// monitor's view: the exporter does no work per event, and every number it
// serves is the one watch and snapshot show. Registered like any prom-client
// metric (registry.registerMetric), so it sits in an application's own registry.
import type { MonitorView } from '../monitor.js';

export type MetricType = 'counter' | 'gauge' | 'histogram';

export interface Sample {
  labels?: Record<string, string | number>;
  value: number;
  /** For histograms: `_bucket`, `_sum`, `_count`. */
  suffix?: '_bucket' | '_sum' | '_count';
}

export interface ViewMetricSpec {
  name: string;
  help: string;
  type: MetricType;
  samples: (view: MonitorView) => Sample[];
  /** Samples while there is no view (monitor closed or failed); none by default. */
  whenDown?: () => Sample[];
}

/** The shape prom-client's Registry reads from a metric. */
export class ViewMetric {
  readonly name: string;
  readonly help: string;
  readonly type: MetricType;

  readonly aggregator: 'sum' | 'first';

  /** `view` returns null once the monitor is closed or failed: no samples then
   * (a scrape of the application's registry still succeeds). */
  constructor(
    private readonly spec: ViewMetricSpec,
    private readonly view: () => MonitorView | null,
  ) {
    this.name = spec.name;
    this.help = spec.help;
    this.type = spec.type;
    // Under prom-client's AggregatorRegistry: counts add up, levels do not.
    this.aggregator = spec.type === 'gauge' ? 'first' : 'sum';
  }

  get(): { name: string; help: string; type: MetricType; aggregator: 'sum' | 'first'; values: Array<{ value: number; labels: Record<string, string | number>; metricName?: string }> } {
    const view = this.view();
    const samples = view ? this.spec.samples(view) : (this.spec.whenDown?.() ?? []);
    const values = samples.map((s) => ({
      value: s.value,
      labels: s.labels ?? {},
      ...(s.suffix ? { metricName: `${this.name}${s.suffix}` } : {}),
    }));
    return { name: this.name, help: this.help, type: this.type, aggregator: this.aggregator, values };
  }

  /** prom-client calls this on registry.resetMetrics(): nothing is kept here. */
  reset(): void {}
}

/** Prometheus histogram samples from cumulative counts at `edges`. */
export function histogramSamples(
  labels: Record<string, string | number>,
  edges: readonly number[],
  cumulative: readonly number[],
  count: number,
  sum: number,
): Sample[] {
  const out: Sample[] = edges.map((le, i) => ({ labels: { ...labels, le: String(le) }, value: cumulative[i] ?? count, suffix: '_bucket' as const }));
  out.push({ labels: { ...labels, le: '+Inf' }, value: count, suffix: '_bucket' });
  out.push({ labels, value: sum, suffix: '_sum' });
  out.push({ labels, value: count, suffix: '_count' });
  return out;
}

/** Keeps the `limit` largest rows by `weight` and folds the rest into one row
 * (cardinality stays bounded however many netns or peers there are). */
export function topAndOther<T>(rows: readonly T[], limit: number, weight: (r: T) => number, fold: (rest: T[]) => T | null): T[] {
  if (rows.length <= limit) return [...rows];
  const sorted = [...rows].sort((a, b) => weight(b) - weight(a));
  const other = fold(sorted.slice(limit));
  return other ? [...sorted.slice(0, limit), other] : sorted.slice(0, limit);
}
