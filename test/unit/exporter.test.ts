// The exporter over a fake addon: every metric renders in the Prometheus text
// format from the monitor's view, counters carry the exact kernel counts, netns
// labels stay bounded, and an application's own registry keeps its metrics too.
import { statSync } from 'node:fs';
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
    // Before any census, only ctstorm's own netns is known (by its inode, as later).
    const own = statSync('/proc/self/ns/net').ino;
    expect(samples(text, 'ctstorm_conntrack_entries')).toEqual([`ctstorm_conntrack_entries{netns="${own}"} 3`]);
    expect(samples(text, 'ctstorm_up')).toEqual(['ctstorm_up 1']);
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

  it('a failed probe does not take the application down: no error event without a listener, ctstorm_up 0, the app\'s metrics still served', async () => {
    const native = fakeNative({ counters: [counters(1)], pollError: new Error('draining the ring buffer failed: EIO') });
    const c = new Collector({ source: openSource({ native, mode: 'fentry', liveNetns: () => new Set() }), ...io, tickMs: 3_600_000 });
    const registry = new Registry();
    collectDefaultMetrics({ register: registry });
    c.register(registry);
    await c.monitor.ended;
    await new Promise((r) => setTimeout(r, 10));
    const text = await registry.metrics();
    expect(samples(text, 'ctstorm_up')).toEqual(['ctstorm_up 0']);
    expect(samples(text, 'ctstorm_conntrack_limit')).toEqual([]);
    expect(text).toContain('process_cpu_user_seconds_total');
    await expect(c.close()).rejects.toThrow('EIO'); // close() says why it failed
    expect(native.closed).toBe(1);
  });

  it('a listener that throws does not stop the probe', async () => {
    const c = collector(1);
    const errors: unknown[] = [];
    c.on('update', () => {
      throw new Error('bug in the app');
    });
    c.on('error', (err) => errors.push(err));
    (c.monitor as unknown as { tickOnce(): void }).tickOnce(); // one tick, now
    expect(errors).toEqual([new Error('bug in the app')]);
    expect(() => c.monitor.view()).not.toThrow();
  });

  it('registers all its metrics or none, and refuses a registry after close()', async () => {
    const registry = new Registry();
    const c = collector(1);
    registry.registerMetric({ name: 'ctstorm_chain_longest', help: 'x', type: 'gauge', get: () => ({ name: 'ctstorm_chain_longest', help: 'x', type: 'gauge', values: [], aggregator: 'sum' }), reset: () => undefined } as never);
    expect(() => c.register(registry)).toThrow(/already been registered/);
    expect(registry.getMetricsAsArray().map((m) => m.name)).toEqual(['ctstorm_chain_longest']);
    await c.close();
    expect(() => c.register(new Registry())).toThrow(/closed/);
  });

  it('counts storms started, not the storms kept in the past list', async () => {
    const { StormDetector } = await import('../../src/engine/storms.js');
    const d = new StormDetector({ factor: 5, floorPerSecond: 10, baselineSeconds: 60, quietSeconds: 1, maxPast: 3, topNetns: 1 });
    let sec = 0;
    for (let storm = 0; storm < 5; storm++) {
      d.tick(sec++, 0, 0);
      d.tick(sec++, 100, 0);
      d.tick(sec++, 0, 0);
    }
    expect([d.started, d.past().length]).toEqual([5, 3]);
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
