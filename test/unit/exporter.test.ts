// The exporter over a fake addon: every metric renders in the Prometheus text
// format from the monitor's view, counters carry the exact kernel counts, netns
// labels stay bounded without a counter ever going down, and an application's
// own registry keeps its metrics too.
import { statSync } from 'node:fs';
import { collectDefaultMetrics, Registry } from 'prom-client';
import { afterEach, describe, expect, it } from 'vitest';
import { type CollectorOptions, Collector } from '../../src/exporter/collector.js';
import { metricNames } from '../../src/exporter/metrics.js';
import type { NativeCounters } from '../../src/native.js';
import { openSource } from '../../src/source.js';
import { fakeNative } from './fake-native.js';
import { buildRecords, ipv4, type RawRecord } from './records.js';

// Fake netns inodes below the kernel's netns inode range (from 0xEFFFFFF9): never ctstorm's own.
const NS = 1000;
const own = statSync('/proc/self/ns/net').ino;
const io = { readTable: () => ({ entries: 3, max: 1000, buckets: 1024 }), readKernelStats: () => ({ entries: 3, drop: 7, early_drop: 2, insert_failed: 1 }) };
const counters = (netns: number): NativeCounters => ({
  protocols: [{ l4proto: 6, inserts: 10 * netns, destroys: 4 * netns, lost: 1 }],
  netns: Array.from({ length: netns }, (_, i) => ({ cookie: 100 + i, inode: NS + i, l4proto: 6, inserts: 10 + i, destroys: 4, lost: 0 })),
  health: [0, 0, 0, 0, 0, 0, 0, 0],
  missedRuns: 0,
  missesVisible: true,
});

const open: Collector[] = [];
afterEach(async () => {
  for (const c of open.splice(0)) await c.close();
});

function collector(netns: number, maxNetns?: number, advice?: CollectorOptions['advice']): Collector {
  const native = fakeNative({ counters: [counters(netns)] });
  const c = new Collector({ source: openSource({ native, mode: 'fentry', liveNetns: () => new Set() }), ...io, maxNetns, tickMs: 3_600_000, advice });
  open.push(c);
  return c;
}

type Row = NativeCounters['netns'][number];
const tcp = (cookie: number, inode: number, inserts: number, destroys = 0): Row => ({ cookie, inode, l4proto: 6, inserts, destroys, lost: 0 });
const udp = (cookie: number, inode: number, inserts: number): Row => ({ ...tcp(cookie, inode, inserts), l4proto: 17 });

/** Every counter sample of a scrape (`_total`, and histograms' `_bucket`, `_sum`, `_count`), by series. */
function counterSamples(text: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of text.split('\n')) {
    const m = /^(\w+?(?:_total|_bucket|_sum|_count))((?:\{.*\})?) (\S+)$/.exec(line);
    if (m) out.set(`${m[1]}${m[2]}`, Number(m[3]));
  }
  return out;
}

/** The sample lines of a metric, without HELP and TYPE. */
const samples = (text: string, name: string): string[] => text.split('\n').filter((l) => l.startsWith(`${name}{`) || l.startsWith(`${name} `));

describe('metrics', () => {
  it('renders every metric with HELP and TYPE, counters named _total', async () => {
    const registry = new Registry();
    collector(3, undefined, { whatIf: { reconnects: 10, withinSeconds: 5 } }).register(registry);
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

  it('serves the tuning model\'s headline', async () => {
    // No census and no lifetime yet: the what-if's 500 reconnects all stay, so the
    // fullest netns needs 500; x 1.5 = 750, up to 1024; half of the 1000 limit is left.
    const cost = { objectBytes: 256, objectSource: '', extensionBytes: 0, extensionSource: '', bucketBytes: 8, perEntryBytes: 256 };
    const registry = new Registry();
    collector(2, undefined, { whatIf: { reconnects: 500, withinSeconds: 10 }, readSettings: () => ({ nf_conntrack_max: 1000, nf_conntrack_buckets: 1024 }), entryCost: cost }).register(registry);
    const text = await registry.metrics();
    expect(['required_entries', 'recommended_max', 'headroom_ratio', 'what_if_entries'].flatMap((n) => samples(text, `ctstorm_advice_${n}`))).toEqual([
      'ctstorm_advice_required_entries 500',
      'ctstorm_advice_recommended_max 1024',
      'ctstorm_advice_headroom_ratio 0.5',
      'ctstorm_advice_what_if_entries 500',
    ]);
  });

  it('carries the exact counters per netns and protocol, and the kernel\'s statistics', async () => {
    const registry = new Registry();
    collector(2).register(registry);
    const text = await registry.metrics();
    // ctstorm's own netns has its series from the start, at 0 on a quiet node.
    expect(samples(text, 'ctstorm_conntrack_inserts_total')).toEqual([
      'ctstorm_conntrack_inserts_total{netns="1001",protocol="tcp"} 11',
      'ctstorm_conntrack_inserts_total{netns="1000",protocol="tcp"} 10',
      `ctstorm_conntrack_inserts_total{netns="${own}",protocol="icmp"} 0`,
      `ctstorm_conntrack_inserts_total{netns="${own}",protocol="tcp"} 0`,
      `ctstorm_conntrack_inserts_total{netns="${own}",protocol="udp"} 0`,
    ]);
    expect(samples(text, 'ctstorm_conntrack_destroys_total')).toContain(`ctstorm_conntrack_destroys_total{netns="${own}",protocol="udp"} 0`);
    expect(samples(text, 'ctstorm_records_lost_total')).toEqual([
      'ctstorm_records_lost_total{protocol="tcp"} 1',
      'ctstorm_records_lost_total{protocol="udp"} 0',
      'ctstorm_records_lost_total{protocol="icmp"} 0',
    ]);
    expect(samples(text, 'ctstorm_kernel_conntrack_stat_total')).toEqual([
      'ctstorm_kernel_conntrack_stat_total{stat="insert_failed"} 1',
      'ctstorm_kernel_conntrack_stat_total{stat="drop"} 7',
      'ctstorm_kernel_conntrack_stat_total{stat="early_drop"} 2',
    ]);
    expect(samples(text, 'ctstorm_conntrack_limit')).toEqual(['ctstorm_conntrack_limit 1000']);
    expect(samples(text, 'ctstorm_build_info')).toEqual(['ctstorm_build_info{version="0.1.0",mode="fentry"} 1']);
    // Before any census, only ctstorm's own netns is known (by its inode, as later).
    expect(samples(text, 'ctstorm_conntrack_entries')).toEqual([`ctstorm_conntrack_entries{netns="${own}"} 3`]);
    expect(samples(text, 'ctstorm_up')).toEqual(['ctstorm_up 1']);
  });

  it('keeps netns labels to N (ctstorm\'s own and the top by inserts when first seen) and folds the rest into "other", whatever the number of netns', async () => {
    const registry = new Registry();
    collector(500, 5).register(registry);
    const rows = samples(await registry.metrics(), 'ctstorm_conntrack_inserts_total');
    // Own netns (3 protocols at 0), the four with the most inserts (1499..1496: 509..506), then the other 496 summed.
    expect(rows).toHaveLength(8);
    expect(rows.slice(0, 4).map((r) => /netns="(\d+)"/.exec(r)![1])).toEqual(['1499', '1498', '1497', '1496']);
    expect(rows.slice(4, 7).map((r) => /netns="(\d+)"/.exec(r)![1])).toEqual([String(own), String(own), String(own)]);
    const other = Array.from({ length: 496 }, (_, i) => 10 + i).reduce((a, b) => a + b, 0);
    expect(rows[7]).toBe(`ctstorm_conntrack_inserts_total{netns="other",protocol="tcp"} ${other}`);
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

  it('no counter series ever goes down while netns ranks change, ties come and rows are evicted', async () => {
    // The counters the fake kernel answers now; the test changes them between scrapes.
    const script = { counters: [{ protocols: [{ l4proto: 6, inserts: 0, destroys: 0, lost: 0 }], netns: [] as Row[], health: [], missedRuns: 0, missesVisible: true }] };
    const c = new Collector({ source: openSource({ native: fakeNative(script), mode: 'fentry', liveNetns: () => new Set() }), ...io, maxNetns: 3, tickMs: 3_600_000 });
    open.push(c);
    const registry = new Registry();
    c.register(registry);
    const highest = new Map<string, number>();
    const scrape = async (netns: Row[]): Promise<string[]> => {
      script.counters[0] = { ...script.counters[0]!, netns };
      (c.monitor as unknown as { tickOnce(): void }).tickOnce(); // a new view
      const text = await registry.metrics();
      for (const [series, value] of counterSamples(text)) {
        expect(value, series).toBeGreaterThanOrEqual(highest.get(series) ?? 0);
        highest.set(series, value);
      }
      return samples(text, 'ctstorm_conntrack_inserts_total').filter((l) => !l.includes(`netns="${own}"`));
    };
    const line = (netns: string | number, protocol: string, n: number): string => `ctstorm_conntrack_inserts_total{netns="${netns}",protocol="${protocol}"} ${n}`;

    // Own netns takes one of the 3 labels. 1002 and 1003 tie at 3 inserts: the lower inode gets the last label.
    expect(await scrape([tcp(1, NS + 1, 5), tcp(2, NS + 2, 3), tcp(3, NS + 3, 1), udp(3, NS + 3, 2)])).toEqual([
      line(NS + 1, 'tcp', 5),
      line(NS + 2, 'tcp', 3),
      line('other', 'udp', 2),
      line('other', 'tcp', 1),
    ]);
    // 1003 now outranks both labelled netns and a new 1004 more still: they stay "other".
    expect(await scrape([tcp(1, NS + 1, 6), tcp(2, NS + 2, 3), tcp(3, NS + 3, 50), udp(3, NS + 3, 2), tcp(4, NS + 4, 100), tcp(9, own, 7)])).toEqual([
      line(NS + 1, 'tcp', 6),
      line(NS + 2, 'tcp', 3),
      line('other', 'tcp', 150),
      line('other', 'udp', 2),
    ]);
    // 1002's row is evicted: its series goes and its label is free; of two new
    // netns tied at 7, the lower inode takes it.
    expect(await scrape([tcp(1, NS + 1, 6), tcp(3, NS + 3, 50), udp(3, NS + 3, 2), tcp(4, NS + 4, 100), tcp(5, NS + 5, 7), tcp(6, NS + 6, 7), tcp(9, own, 7)])).toEqual([
      line(NS + 5, 'tcp', 7),
      line(NS + 1, 'tcp', 6),
      line('other', 'tcp', 157),
      line('other', 'udp', 2),
    ]);
    // 1003's udp row is evicted, 1004's row drops from 100 to 40 (a retired part
    // evicted under a live row), 1003 and 1006 take one insert each: "other" grows by 2.
    expect(await scrape([tcp(1, NS + 1, 6), tcp(3, NS + 3, 51), tcp(4, NS + 4, 40), tcp(5, NS + 5, 7), tcp(6, NS + 6, 8), tcp(9, own, 7)])).toEqual([
      line(NS + 5, 'tcp', 7),
      line(NS + 1, 'tcp', 6),
      line('other', 'tcp', 159),
      line('other', 'udp', 2),
    ]);
    expect(await scrape([tcp(1, NS + 1, 6), tcp(3, NS + 3, 51), tcp(4, NS + 4, 45), tcp(5, NS + 5, 7), tcp(6, NS + 6, 8), tcp(9, own, 8)])).toEqual([
      line(NS + 5, 'tcp', 7),
      line(NS + 1, 'tcp', 6),
      line('other', 'tcp', 164),
      line('other', 'udp', 2),
    ]);
    expect(highest.get(`ctstorm_conntrack_inserts_total{netns="${own}",protocol="tcp"}`)).toBe(8);
  });

  it('sums the protocols outside the known list into one "other" series (lifetimes and predating entries)', async () => {
    const S = 1_000_000_000n;
    const destroy = (l4proto: number, lifetimeNs?: bigint): RawRecord => ({
      type: 'destroy',
      l4proto,
      tsNs: 100n * S,
      ...(lifetimeNs === undefined ? {} : { lifetimeNs }),
      netns: NS,
      orig: { src: ipv4(10, 0, 0, 1), dst: ipv4(10, 0, 0, 2), sport: 0, dport: 0 },
      reply: { src: ipv4(10, 0, 0, 2), dst: ipv4(10, 0, 0, 1), sport: 0, dport: 0 },
    });
    // IP-in-IP (4) and ESP (50): conntrack tracks both as generic entries.
    const native = fakeNative({ counters: [counters(1)], batches: [buildRecords([destroy(4, 1n * S), destroy(50, 2n * S), destroy(50, 3n * S), destroy(4), destroy(50)])] });
    const c = new Collector({ source: openSource({ native, mode: 'fentry', liveNetns: () => new Set() }), ...io, tickMs: 3_600_000 });
    open.push(c);
    for (let i = 0; i < 200 && c.monitor.view().records.drained < 5; i++) await new Promise((r) => setTimeout(r, 10));
    const registry = new Registry();
    c.register(registry);
    const text = await registry.metrics();
    const hist = samples(text, 'ctstorm_entry_lifetime_seconds_count').concat(samples(text, 'ctstorm_entry_lifetime_seconds_sum'));
    expect(hist).toEqual(['ctstorm_entry_lifetime_seconds_count{protocol="other",state=""} 3', 'ctstorm_entry_lifetime_seconds_sum{protocol="other",state=""} 6']);
    const buckets = samples(text, 'ctstorm_entry_lifetime_seconds_bucket');
    expect(new Set(buckets.map((l) => l.replace(/ \S+$/, ''))).size).toBe(buckets.length); // one series each
    expect(buckets.at(-1)).toBe('ctstorm_entry_lifetime_seconds_bucket{protocol="other",state="",le="+Inf"} 3');
    expect(samples(text, 'ctstorm_entries_predating_total')).toEqual(['ctstorm_entries_predating_total{protocol="other",state=""} 2']);
  });
});
