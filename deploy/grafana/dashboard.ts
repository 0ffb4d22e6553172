// The Grafana dashboard, typed against @grafana/schema (the typecheck fails on a
// field Grafana does not know). `npm run dashboard` writes ctstorm.json from it;
// test/unit/deploy.test.ts checks the two agree.
import type { Dashboard, DataQuery, Panel } from '@grafana/schema';

const datasource = { type: 'prometheus', uid: '${datasource}' };

/** A Prometheus query as Grafana stores it. */
interface PromQuery extends DataQuery {
  expr: string;
}
let nextId = 1;

interface PanelSpec {
  title: string;
  description: string;
  type: 'timeseries' | 'stat' | 'heatmap' | 'bargauge';
  w: number;
  h: number;
  x: number;
  y: number;
  unit?: string;
  /** instant: one value at the range's end (for panels showing the whole range). */
  targets: Array<{ expr: string; legend?: string; format?: 'time_series' | 'heatmap'; instant?: boolean }>;
}

function panel(p: PanelSpec): Panel {
  return {
    id: nextId++,
    type: p.type,
    title: p.title,
    description: p.description,
    datasource,
    gridPos: { w: p.w, h: p.h, x: p.x, y: p.y },
    fieldConfig: { defaults: p.unit ? { unit: p.unit } : {}, overrides: [] },
    options: {},
    targets: p.targets.map((t, i) => ({
      refId: String.fromCharCode(65 + i),
      datasource,
      expr: t.expr,
      legendFormat: t.legend ?? '',
      format: t.format ?? 'time_series',
      ...(t.instant ? { instant: true, range: false } : {}),
    })),
  };
}

// $job: the scrape job(s) ctstorm runs under (kubernetes-pods with annotation
// discovery); it also keeps `up` to ctstorm's targets.
const node = '{job=~"$job",instance=~"$instance"}';
const nodeAnd = (labels: string): string => `{job=~"$job",instance=~"$instance",${labels}}`;

// A storm can be over between two scrapes: the counter marks it even then.
const stormQuery: PromQuery = {
  refId: 'Anno',
  expr: `ctstorm_storm_active${node} == 1 or increase(ctstorm_storms_total${node}[$__rate_interval]) > 0`,
};

export const dashboard: Dashboard = {
  title: 'ctstorm: conntrack churn',
  uid: 'ctstorm',
  description: 'Connection tracking under connection storms: fill and time to full, churn, who causes it, lifetimes, hash chains, storms, kernel drops, ctstorm health.',
  tags: ['conntrack', 'ctstorm', 'netfilter'],
  editable: true,
  graphTooltip: 1,
  schemaVersion: 39,
  refresh: '10s',
  time: { from: 'now-1h', to: 'now' },
  timepicker: {},
  templating: {
    list: [
      { name: 'datasource', type: 'datasource', query: 'prometheus', label: 'Prometheus' },
      {
        name: 'job',
        type: 'query',
        label: 'job',
        datasource,
        query: 'label_values(ctstorm_up, job)',
        refresh: 2,
        includeAll: true,
        multi: true,
      },
      {
        name: 'instance',
        type: 'query',
        label: 'node',
        datasource,
        query: 'label_values(ctstorm_up{job=~"$job"}, instance)',
        refresh: 2,
        includeAll: true,
        multi: true,
      },
    ],
  },
  annotations: {
    list: [
      {
        name: 'Storms',
        enable: true,
        iconColor: 'red',
        datasource,
        target: stormQuery,
      },
    ],
  },
  panels: [
    panel({
      title: 'Fullest netns fill', description: 'Entries over nf_conntrack_max in the fullest netns: the kernel drops new flows there at 100 %.',
      type: 'stat', w: 6, h: 6, x: 0, y: 0, unit: 'percentunit',
      targets: [{ expr: `max(ctstorm_conntrack_fill_ratio${node})` }],
    }),
    panel({
      title: 'Seconds to full', description: 'At the fullest netns\'s net growth over the last 10 s (absent when not growing).',
      type: 'stat', w: 6, h: 6, x: 6, y: 0, unit: 's',
      targets: [{ expr: `min(ctstorm_conntrack_seconds_to_full${node})` }],
    }),
    panel({
      title: 'Entries by netns', description: 'Census carried forward by the exact insert and destroy counters; top netns and "other". A netns is its inode on its node.',
      type: 'timeseries', w: 12, h: 6, x: 12, y: 0,
      targets: [{ expr: `sum by (instance, netns) (ctstorm_conntrack_entries${node})`, legend: '{{instance}} {{netns}}' }],
    }),
    panel({
      title: 'Churn by window', description: 'Inserts and destroys per second over 1 s, 10 s, 60 s and the EWMA.',
      type: 'timeseries', w: 12, h: 8, x: 0, y: 6, unit: 'ops',
      targets: [
        { expr: `sum by (window) (ctstorm_conntrack_inserts_per_second${node})`, legend: 'inserts {{window}}' },
        { expr: `sum by (window) (ctstorm_conntrack_destroys_per_second${node})`, legend: 'destroys {{window}}' },
      ],
    }),
    panel({
      title: 'Inserts by netns and protocol', description: 'From the exact in-kernel counters. A netns is its inode on its node.',
      type: 'timeseries', w: 12, h: 8, x: 12, y: 6, unit: 'ops',
      targets: [{ expr: `sum by (instance, netns, protocol) (rate(ctstorm_conntrack_inserts_total${node}[$__rate_interval]))`, legend: '{{instance}} {{netns}} {{protocol}}' }],
    }),
    panel({
      title: 'Entry lifetimes', description: 'Lifetime of entries destroyed, by le bucket (protocol and final TCP state summed).',
      type: 'heatmap', w: 12, h: 8, x: 0, y: 14, unit: 's',
      targets: [{ expr: `sum by (le) (increase(ctstorm_entry_lifetime_seconds_bucket${node}[$__rate_interval]))`, legend: '{{le}}', format: 'heatmap' }],
    }),
    panel({
      title: 'Chain length joined', description: 'Hash chain length each insert joined (both directions) over the time range, against uniform hashing in snapshot/watch.',
      type: 'bargauge', w: 6, h: 8, x: 12, y: 14,
      targets: [{ expr: `sum by (le) (increase(ctstorm_chain_length_joined_bucket${node}[$__range]))`, legend: '{{le}}', format: 'heatmap', instant: true }],
    }),
    panel({
      title: 'Longest chain, hot buckets', description: 'Longest chain joined since start; buckets that took far more inserts than uniform hashing explains.',
      type: 'timeseries', w: 6, h: 8, x: 18, y: 14,
      targets: [
        { expr: `max(ctstorm_chain_longest${node})`, legend: 'longest chain' },
        { expr: `sum(ctstorm_hot_buckets${node})`, legend: 'hot buckets' },
      ],
    }),
    panel({
      title: 'Kernel drops', description: 'The kernel\'s own counters (ctstorm\'s netns): drop and early_drop mean the table is full; insert_failed, clashes lost.',
      type: 'timeseries', w: 12, h: 8, x: 0, y: 22, unit: 'ops',
      targets: [{ expr: `sum by (stat) (rate(ctstorm_kernel_conntrack_stat_total${nodeAnd('stat=~"drop|early_drop|insert_failed|chaintoolong"')}[$__rate_interval]))`, legend: '{{stat}}' }],
    }),
    panel({
      title: 'ctstorm health', description: 'Scrapes answered (Prometheus\'s up: 0 while a node\'s ctstorm is down), exactness, records lost, storms.',
      type: 'timeseries', w: 12, h: 8, x: 12, y: 22,
      targets: [
        { expr: `min(up${node})`, legend: 'up' },
        { expr: `min(ctstorm_counts_exact${node})`, legend: 'counts exact' },
        { expr: `sum(rate(ctstorm_records_lost_total${node}[$__rate_interval]))`, legend: 'records lost/s' },
        { expr: `sum(ctstorm_storm_active${node})`, legend: 'storms running' },
      ],
    }),
  ],
};
