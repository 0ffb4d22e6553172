// ctstorm's Prometheus metrics, one function per concern, every sample read from
// the monitor's view at scrape time. Names follow Prometheus practice: base
// units, `_total` for counters, `_seconds` for durations. Label values are
// bounded: netns beyond `maxNetns` fold into netns="other" (see netns-fold.ts).
import type { Named } from '../attribution/namer.js';
import { EXPORT_EDGES_SECONDS } from '../engine/histogram.js';
import type { MonitorView } from '../monitor.js';
import { ownNetnsInode } from '../netns-live.js';
import { protoName } from '../protocols.js';
import { NetnsFold, PRECREATED_PROTOCOLS } from './netns-fold.js';
import { AdviceHeadline } from '../advisor/headline.js';
import { adviceMetrics } from './advice-metrics.js';
import { histogramSamples, topAndOther, ViewMetric, type ViewMetricSpec } from './view-metric.js';

/** ctstorm's own netns (undefined where /proc cannot say). */
const ownNetns = ((): number | undefined => {
  try {
    return ownNetnsInode();
  } catch {
    return undefined;
  }
})();

export interface MetricsOptions {
  /** Netns label values at most, ctstorm's own netns included; netns seen once
   * they are taken are "other" for good. Default 20. */
  maxNetns?: number;
  /** ctstorm's version, for ctstorm_build_info. */
  version: string;
  /** Which netns have a label (from newNetnsFold), to keep across registrations
   * (a Collector has one); by default each call starts its own. */
  netnsFold?: NetnsFold;
  /** The tuning model's headline (ctstorm_advice_*); none without it. */
  advice?: AdviceHeadline;
}

export const DEFAULT_MAX_NETNS = 20;
/** What the metric groups read of the options, defaults filled in. */
type FoldOptions = Required<Omit<MetricsOptions, 'advice'>>;
/** Chain-length buckets of the joined-chain histogram (nodes). */
const CHAIN_EDGES = [1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 96];
/** The kernel's statistics exported as counters (where the kernel has them). */
const KERNEL_STATS = ['found', 'invalid', 'insert', 'insert_failed', 'drop', 'early_drop', 'error', 'expect_new', 'expect_create', 'expect_delete', 'search_restart', 'clash_resolve', 'chaintoolong'];

const netnsLabel = (inode: number | 'other'): string => String(inode);
/** Protocols kept as label values; any other IP protocol number is "other"
 * (conntrack tracks them all, as generic entries). */
const PROTOCOLS = new Set(['tcp', 'udp', 'udplite', 'icmp', 'icmpv6', 'sctp', 'dccp', 'gre']);
const protocolLabel = (l4proto: number): string => {
  const name = protoName(l4proto);
  return PROTOCOLS.has(name) ? name : 'other';
};

/** Per netns label state for the counters, with ctstorm's own netns labelled from the start. */
export function newNetnsFold(maxNetns = DEFAULT_MAX_NETNS): NetnsFold {
  return new NetnsFold(maxNetns, protocolLabel, ownNetns);
}

function tableMetrics(o: FoldOptions): ViewMetricSpec[] {
  return [
    {
      name: 'ctstorm_conntrack_entries',
      help: 'Conntrack entries per network namespace, by inode (census carried forward by exact counters; before the first census, ctstorm\'s own netns only).',
      type: 'gauge',
      samples: (v) => {
        if (!v.table.fill.known) return ownNetns === undefined ? [] : [{ labels: { netns: netnsLabel(ownNetns) }, value: v.table.entries }];
        // One series per inode (a reused inode's rows add up), the rest folded.
        const byInode = new Map<number, number>();
        for (const n of v.table.fill.netns) byInode.set(n.inode, (byInode.get(n.inode) ?? 0) + n.entries);
        const rows = topAndOther([...byInode].map(([inode, entries]) => ({ inode, entries })), o.maxNetns, (n) => n.entries, (rest) => ({
          inode: -1, entries: rest.reduce((n, r) => n + r.entries, 0),
        }));
        return rows.map((n) => ({ labels: { netns: n.inode === -1 ? 'other' : netnsLabel(n.inode) }, value: n.entries }));
      },
    },
    {
      name: 'ctstorm_conntrack_entries_all',
      help: 'Conntrack entries in every network namespace together (what the table costs in memory); absent before the first census.',
      type: 'gauge',
      samples: (v) => (v.table.fill.total === null ? [] : [{ value: v.table.fill.total }]),
    },
    { name: 'ctstorm_conntrack_limit', help: 'nf_conntrack_max: the limit each netns\'s own count is checked against.', type: 'gauge', samples: (v) => [{ value: v.table.max }] },
    { name: 'ctstorm_conntrack_buckets', help: 'nf_conntrack_buckets: hash chains of the table.', type: 'gauge', samples: (v) => [{ value: v.table.buckets }] },
    {
      name: 'ctstorm_conntrack_fullest_entries',
      help: 'Entries in the fullest netns (the one that drops first), labelled with its inode; absent before the first census.',
      type: 'gauge',
      samples: (v) => {
        const f = v.table.fill.fullest;
        return f ? [{ labels: { netns: netnsLabel(f.inode) }, value: f.entries }] : [];
      },
    },
    {
      name: 'ctstorm_conntrack_fill_ratio',
      help: 'Entries over the limit in the fullest netns (the one that drops first); absent before the first census or without a limit.',
      type: 'gauge',
      samples: (v) => {
        const f = v.table.fill.fullest;
        if (!v.table.fill.known || v.table.max <= 0) return [];
        return [{ value: f ? f.entries / v.table.max : 0 }];
      },
    },
    {
      name: 'ctstorm_conntrack_seconds_to_full',
      help: 'Seconds until the fullest netns reaches the limit at its net growth over the last 10 s; absent when not growing.',
      type: 'gauge',
      samples: (v) => {
        const f = v.table.fill.fullest;
        return f?.secondsToFull == null ? [] : [{ value: f.secondsToFull }];
      },
    },
  ];
}

function churnMetrics(o: FoldOptions): ViewMetricSpec[] {
  return [
    {
      name: 'ctstorm_conntrack_inserts_total',
      help: 'Entries inserted into the conntrack table since ctstorm started, exact (in-kernel counters).',
      type: 'counter',
      samples: (v) => o.netnsFold.fold(v.counters.netns).map((r) => ({ labels: { netns: r.netns, protocol: r.protocol }, value: r.inserts })),
    },
    {
      name: 'ctstorm_conntrack_destroys_total',
      help: 'Entries destroyed (that were in the table) since ctstorm started, exact (in-kernel counters).',
      type: 'counter',
      samples: (v) => o.netnsFold.fold(v.counters.netns).map((r) => ({ labels: { netns: r.netns, protocol: r.protocol }, value: r.destroys })),
    },
    {
      name: 'ctstorm_records_lost_total',
      help: 'Insert and destroy records the ring buffer could not take (the counters above still include them).',
      type: 'counter',
      samples: (v) => {
        // At 0 before the first event: a quiet node has the series too.
        const lost = new Map<string, number>(PRECREATED_PROTOCOLS.map((p) => [p, 0]));
        for (const p of v.counters.protocols) {
          const protocol = protocolLabel(p.l4proto);
          lost.set(protocol, (lost.get(protocol) ?? 0) + p.lost);
        }
        return [...lost].map(([protocol, value]) => ({ labels: { protocol }, value }));
      },
    },
    {
      name: 'ctstorm_conntrack_inserts_per_second',
      help: 'Inserts per second over the window (1s, 10s, 60s exact; ewma: 10 s time constant).',
      type: 'gauge',
      samples: (v) => Object.entries(v.engine.windows).map(([window, r]) => ({ labels: { window }, value: r.insertsPerSecond })),
    },
    {
      name: 'ctstorm_conntrack_destroys_per_second',
      help: 'Destroys per second over the window (1s, 10s, 60s exact; ewma: 10 s time constant).',
      type: 'gauge',
      samples: (v) => Object.entries(v.engine.windows).map(([window, r]) => ({ labels: { window }, value: r.destroysPerSecond })),
    },
  ];
}

function lifetimeMetrics(): ViewMetricSpec[] {
  // Every protocol outside PROTOCOLS is "other": rows that get the same labels
  // are summed, so each series appears once.
  const labels = (r: { proto: string; state?: string }): { protocol: string; state: string } => ({
    protocol: PROTOCOLS.has(r.proto) ? r.proto : 'other',
    state: r.state ?? '',
  });
  const key = (l: { protocol: string; state: string }): string => `${l.protocol}/${l.state}`;
  return [
    {
      name: 'ctstorm_entry_lifetime_seconds',
      help: 'Lifetime of entries destroyed while ctstorm watched, by protocol and final TCP state (entries inserted before it started are not included).',
      type: 'histogram',
      samples: (v) => {
        const sums = new Map<string, { labels: { protocol: string; state: string }; cumulative: number[]; count: number; sum: number }>();
        for (const h of v.engine.lifetimeHistograms) {
          const l = labels(h);
          const s = sums.get(key(l));
          if (!s) sums.set(key(l), { labels: l, cumulative: [...h.cumulative], count: h.count, sum: h.sum });
          else {
            h.cumulative.forEach((n, i) => (s.cumulative[i] = (s.cumulative[i] ?? 0) + n));
            s.count += h.count;
            s.sum += h.sum;
          }
        }
        return [...sums.values()].flatMap((s) => histogramSamples(s.labels, EXPORT_EDGES_SECONDS, s.cumulative, s.count, s.sum));
      },
    },
    {
      name: 'ctstorm_entries_predating_total',
      help: 'Entries destroyed that were inserted before ctstorm started (no lifetime).',
      type: 'counter',
      samples: (v) => {
        const sums = new Map<string, { labels: { protocol: string; state: string }; value: number }>();
        for (const r of v.engine.lifetimes) {
          const l = labels(r);
          const s = sums.get(key(l));
          if (s) s.value += r.predating;
          else sums.set(key(l), { labels: l, value: r.predating });
        }
        return [...sums.values()];
      },
    },
  ];
}

function chainMetrics(): ViewMetricSpec[] {
  return [
    {
      name: 'ctstorm_chain_length_joined',
      help: 'Hash chain length (nodes) each insert joined, both directions of each insert.',
      type: 'histogram',
      samples: (v) => {
        const hist = v.engine.chains.histogram;
        let count = 0;
        let sum = 0;
        for (const [len, n] of Object.entries(hist)) {
          count += n;
          sum += Number(len) * n;
        }
        const cumulative = CHAIN_EDGES.map((le) => Object.entries(hist).reduce((acc, [len, n]) => acc + (Number(len) <= le ? n : 0), 0));
        return histogramSamples({}, CHAIN_EDGES, cumulative, count, sum);
      },
    },
    { name: 'ctstorm_chain_longest', help: 'Longest chain an insert joined since ctstorm started (nodes).', type: 'gauge', samples: (v) => [{ value: v.engine.chains.longest }] },
    {
      name: 'ctstorm_chain_collisions_total',
      help: 'Inserts that joined a chain already holding another entry.',
      type: 'counter',
      samples: (v) => [{ value: v.engine.chains.collisions }],
    },
    {
      name: 'ctstorm_hot_buckets',
      help: 'Buckets that took far more inserts in the last 10 s than uniform hashing explains (false alarm <= 1e-6 per epoch).',
      type: 'gauge',
      samples: (v) => [{ value: v.engine.hotBuckets.buckets.length }],
    },
    {
      name: 'ctstorm_census_duration_seconds',
      help: 'How long the last census (walk of the whole table) took; absent before the first.',
      type: 'gauge',
      samples: (v) => (v.census.last ? [{ value: v.census.last.seconds }] : []),
    },
  ];
}

function stormMetrics(): ViewMetricSpec[] {
  return [
    { name: 'ctstorm_storm_active', help: '1 while an insert storm runs.', type: 'gauge', samples: (v) => [{ value: v.engine.storms.current ? 1 : 0 }] },
    {
      name: 'ctstorm_storms_total',
      help: 'Insert storms that started since ctstorm started (running one included).',
      type: 'counter',
      samples: (v) => [{ value: v.engine.storms.started }],
    },
    {
      name: 'ctstorm_storm_baseline_inserts_per_second',
      help: 'The storm detector\'s baseline: EWMA of inserts/s over a minute, frozen during a storm.',
      type: 'gauge',
      samples: (v) => [{ value: v.engine.storms.baselinePerSecond }],
    },
  ];
}

/** The labels a named row has (an unknown one is left out: to Prometheus, the
 * same as empty). Prefixed: a scrape of ctstorm's own pod adds namespace, pod
 * and container target labels, which would rename these to exported_*. */
function whoLabels(n: Named | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  for (const k of ['namespace', 'pod', 'workload', 'container'] as const) if (n?.[k]) out[`k8s_${k}`] = n[k];
  if (n?.unit) out.unit = n.unit;
  return out;
}

function attributionMetrics(o: FoldOptions): ViewMetricSpec[] {
  return [
    {
      name: 'ctstorm_netns_info',
      help: 'Who each netns with a label of its own belongs to: its pod (k8s_namespace, k8s_pod, k8s_workload), unit, or host="true" for the machine\'s own. Join per node: ctstorm_conntrack_inserts_total * on(instance, netns) group_left(k8s_namespace, k8s_pod, k8s_workload) ctstorm_netns_info.',
      type: 'gauge',
      samples: (v) => {
        o.netnsFold.fold(v.counters.netns); // the labels as the counters have them
        return [...o.netnsFold.labelledNetns()].flatMap((inode) => {
          const n = v.netnsNames[inode];
          if (!n) return [];
          const { k8s_container: _, ...who } = whoLabels(n);
          return [{ labels: { netns: String(inode), ...who, host: n.host ? 'true' : 'false' }, value: 1 }];
        });
      },
    },
    {
      name: 'ctstorm_conntrack_inserts_by_context_total',
      help: 'Inserts by where the kernel made them: context="process" (a local process sent the first packet: see ctstorm_top_process_inserts), "softirq" (received or forwarded), "kernel" (a kernel thread: threaded NAPI, a kworker), "unknown".',
      type: 'counter',
      samples: (v) => Object.entries(v.engine.contexts).map(([context, value]) => ({ labels: { context }, value })),
    },
    {
      name: 'ctstorm_top_process_inserts',
      help: 'Inserts made by the local processes that made the most, in the last complete top-talker epoch, or the current one so far while that saw none (10 processes at most), by command and the pod, container or unit their cgroup names (no pid label: a new series per process would grow without bound).',
      type: 'gauge',
      samples: (v) => {
        const byLabels = new Map<string, { labels: Record<string, string>; value: number }>();
        for (const p of v.engine.top.processes) {
          const labels = { comm: p.comm, ...whoLabels(p) };
          const key = JSON.stringify(labels);
          const row = byLabels.get(key) ?? { labels, value: 0 };
          row.value += p.inserts;
          byLabels.set(key, row);
        }
        return [...byLabels.values()];
      },
    },
    {
      name: 'ctstorm_storm_cause_share',
      help: 'While a storm runs: the share of its inserts (0..1, a lower bound) that its largest named cause accounts for; cause="deployment shop/checkout", by="source|process" (which witness named it).',
      type: 'gauge',
      samples: (v) => {
        const c = v.engine.storms.current?.cause;
        return c ? [{ labels: { cause: c.name, by: c.by }, value: c.share }] : [];
      },
    },
  ];
}

function kernelMetrics(): ViewMetricSpec[] {
  return [
    {
      name: 'ctstorm_kernel_conntrack_stat_total',
      help: 'The kernel\'s conntrack statistics (/proc/net/stat/nf_conntrack of ctstorm\'s netns, CPUs summed), as the kernel counts them.',
      type: 'counter',
      samples: (v) => {
        const k = v.kernelStats?.current;
        if (!k) return [];
        return KERNEL_STATS.filter((s) => s in k).map((stat) => ({ labels: { stat }, value: k[stat]! }));
      },
    },
  ];
}

function healthMetrics(o: FoldOptions): ViewMetricSpec[] {
  return [
    {
      name: 'ctstorm_up',
      help: '1 while the probe is attached and drained; 0 once it failed or was closed (the other ctstorm metrics are then absent).',
      type: 'gauge',
      samples: () => [{ value: 1 }],
      whenDown: () => [{ value: 0 }],
    },
    {
      name: 'ctstorm_build_info',
      help: 'ctstorm\'s version and the attach mode it runs in (value 1).',
      type: 'gauge',
      samples: (v) => [{ labels: { version: o.version, mode: v.mode }, value: 1 }],
    },
    { name: 'ctstorm_records_drained_total', help: 'Records drained from the ring buffer.', type: 'counter', samples: (v) => [{ value: v.records.drained }] },
    {
      name: 'ctstorm_probe_health_total',
      help: 'The probe\'s health counters (see the README: untracked, neverHashed, missedRuns, ...).',
      type: 'counter',
      samples: (v) => Object.entries(v.counters.health).map(([kind, value]) => ({ labels: { kind }, value })),
    },
    {
      name: 'ctstorm_counts_exact',
      help: '1 while ctstorm knows of no event it failed to count; 0 otherwise (snapshot\'s exactness.notes say why).',
      type: 'gauge',
      samples: (v) => [{ value: v.exactness.exact ? 1 : 0 }],
    },
    { name: 'ctstorm_uptime_seconds', help: 'Seconds since the probe attached.', type: 'gauge', samples: (v) => [{ value: v.uptimeSeconds }] },
  ];
}

/** Every ctstorm metric, reading the view from `view` (called once per metric a
 * scrape: cache it); `view` returns null once the monitor is closed or failed. */
export function ctstormMetrics(view: () => MonitorView | null, options: MetricsOptions): ViewMetric[] {
  const maxNetns = options.maxNetns ?? DEFAULT_MAX_NETNS;
  const o = { maxNetns, version: options.version, netnsFold: options.netnsFold ?? newNetnsFold(maxNetns) };
  const specs = [
    ...tableMetrics(o),
    ...churnMetrics(o),
    ...lifetimeMetrics(),
    ...chainMetrics(),
    ...stormMetrics(),
    ...attributionMetrics(o),
    ...kernelMetrics(),
    ...healthMetrics(o),
    ...(options.advice ? adviceMetrics(options.advice) : []),
  ];
  return specs.map((spec) => new ViewMetric(spec, view));
}

/** For tests and documentation: the metric names. */
export function metricNames(): string[] {
  const dummy = (): MonitorView => {
    throw new Error('not for sampling');
  };
  const advice = new AdviceHeadline({ headroom: 0.5, whatIf: { reconnects: 1, withinSeconds: 1 } });
  return ctstormMetrics(dummy, { version: '', advice }).map((m) => m.name);
}
