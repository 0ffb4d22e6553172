// The exporter over a fake addon: every metric renders in the Prometheus text
// format from the monitor's view, counters carry the exact kernel counts, netns
// labels stay bounded, and an application's own registry keeps its metrics too.
import { collectDefaultMetrics, Registry } from 'prom-client';
import { afterEach, describe, expect, it } from 'vitest';
import { Collector } from '../../src/exporter/collector.js';
import { metricNames } from '../../src/exporter/metrics.js';
import type { NativeCounters } from '../../src/native.js';
import { openSource } from '../../src/source.js';
import { fakeNative } from './fake-native.js';

const io = { readTable: () => ({ entries: 3, max: 1000, buckets: 1024 }), readKernelStats: () => ({ entries: 3, drop: 7, early_drop: 2, insert_failed: 1 }) };
const counters = (netns: number): NativeCounters => ({
  protocols: [{ l4proto: 6, inserts: 10 * netns, destroys: 4 * netns, lost: 1 }],
  netns: Array.from({ length: netns }, (_, i) => ({ cookie: 100 + i, inode: 4026532000 + i, l4proto: 6, inserts: 10 + i, destroys: 4, lost: 0 })),
  health: [0, 0, 0, 0, 0, 0, 0, 0],
  missedRuns: 0,
  missesVisible: true,
});

const open: Collector[] = [];
afterEach(async () => {
  for (const c of open.splice(0)) await c.close();
});

function collector(netns: number, maxNetns?: number): Collector {
  const native = fakeNative({ counters: [counters(netns)] });
  const c = new Collector({ source: openSource({ native, mode: 'fentry', liveNetns: () => new Set() }), ...io, maxNetns, tickMs: 3_600_000 });
  open.push(c);
  return c;
}

/** The sample lines of a metric, without HELP and TYPE. */
const samples = (text: string, name: string): string[] => text.split('\n').filter((l) => l.startsWith(`${name}{`) || l.startsWith(`${name} `));

describe('metrics', () => {
  it('renders every metric with HELP and TYPE, counters named _total', async () => {
    const registry = new Registry();
    collector(3).register(registry);
    const text = await registry.metrics();
    for (const name of metricNames()) {
      expect(text).toContain(`# HELP ${name} `);
      expect(text).toMatch(new RegExp(`# TYPE ${name} (counter|gauge|histogram)\\n`));
    }
    for (const m of (await registry.getMetricsAsJSON()) as unknown as Array<{ name: string; type: string }>) {
      if (m.type === 'counter') expect(m.name).toMatch(/_total$/);
      expect(m.name).toMatch(/^ctstorm_/);
    }
  });

  it('carries the exact counters per netns and protocol, and the kernel\'s statistics', async () => {
    const registry = new Registry();
    collector(2).register(registry);
    const text = await registry.metrics();
    expect(samples(text, 'ctstorm_conntrack_inserts_total')).toEqual([
      'ctstorm_conntrack_inserts_total{netns="4026532001",protocol="tcp"} 11',
      'ctstorm_conntrack_inserts_total{netns="4026532000",protocol="tcp"} 10',
    ]);
    expect(samples(text, 'ctstorm_kernel_conntrack_stat_total')).toEqual([
      'ctstorm_kernel_conntrack_stat_total{stat="insert_failed"} 1',
      'ctstorm_kernel_conntrack_stat_total{stat="drop"} 7',
      'ctstorm_kernel_conntrack_stat_total{stat="early_drop"} 2',
    ]);
    expect(samples(text, 'ctstorm_conntrack_limit')).toEqual(['ctstorm_conntrack_limit 1000']);
    expect(samples(text, 'ctstorm_build_info')).toEqual(['ctstorm_build_info{version="0.1.0",mode="fentry"} 1']);
    // Before any census, only ctstorm's own netns is known.
    expect(samples(text, 'ctstorm_conntrack_entries')).toEqual(['ctstorm_conntrack_entries{netns="self"} 3']);
  });

  it('keeps netns labels to the top N by inserts and folds the rest into "other", whatever the number of netns', async () => {
    const registry = new Registry();
    collector(500, 5).register(registry);
    const rows = samples(await registry.metrics(), 'ctstorm_conntrack_inserts_total');
    expect(rows).toHaveLength(6);
    // The five with the most inserts (4026532495..499: 505..509), then the other 495 summed.
    expect(rows.slice(0, 5).map((r) => /netns="(\d+)"/.exec(r)![1])).toEqual(['4026532499', '4026532498', '4026532497', '4026532496', '4026532495']);
    const other = Array.from({ length: 495 }, (_, i) => 10 + i).reduce((a, b) => a + b, 0);
    expect(rows[5]).toBe(`ctstorm_conntrack_inserts_total{netns="other",protocol="tcp"} ${other}`);
  });

  it('joins an application\'s registry beside its default metrics, and leaves it on close()', async () => {
    const registry = new Registry();
    collectDefaultMetrics({ register: registry });
    const c = collector(1);
    c.register(registry);
    const text = await registry.metrics();
    expect(text).toContain('process_cpu_user_seconds_total');
    expect(text).toContain('ctstorm_conntrack_inserts_total');
    await c.close();
    const after = await registry.metrics();
    expect(after).toContain('process_cpu_user_seconds_total');
    expect(after).not.toContain('ctstorm_');
  });
});
