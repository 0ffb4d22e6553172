#!/usr/bin/env node
// Scrape cost with many netns: the exporter's collector over a stand-in addon
// whose counters hold N netns rows (the metrics never read the table itself, so
// the table's size does not enter; the netns rows do). No kernel, no root.
//   node bench/scrape.mjs [netns rows=5000]      (npm run build first)
import { Registry } from 'prom-client';
import { Collector, openSource } from '../dist/index.js';
import { RECORD_SIZE, RECORD_VERSION } from '../dist/record.js';
const N = Number(process.argv[2] ?? 5000);
const counters = {
  protocols: [{ l4proto: 6, inserts: 1e6, destroys: 9e5, lost: 0 }, { l4proto: 17, inserts: 2e6, destroys: 1.9e6, lost: 0 }],
  netns: Array.from({ length: N }, (_, i) => ({ cookie: 100 + i, inode: 4026532000 + i, l4proto: i % 2 ? 6 : 17, inserts: 1000 + i, destroys: 900, lost: 0 })),
  health: [0, 0, 0, 0, 0, 0, 0, 0], missedRuns: 0, missesVisible: true,
};
class P { async poll() { await new Promise((r) => setTimeout(r, 20)); return 0; } counters() { return counters; } sweep() {} deleteNetnsRow() { return false; } censusStart() { return 'not-located'; } close() {} }
const native = { Probe: P, recordSize: RECORD_SIZE, recordVersion: RECORD_VERSION, hooks: { fentry: '', kprobe: '', tracepoint: '' } };
const c = new Collector({ source: openSource({ native, mode: 'fentry', liveNetns: () => new Set() }), readTable: () => ({ entries: 262144, max: 262144, buckets: 262144 }), readKernelStats: () => ({ drop: 1 }) });
const registry = new Registry(); c.register(registry);
for (let i = 0; i < 5; i++) await registry.metrics();
const t0 = performance.now(); let bytes = 0; const runs = 20;
for (let i = 0; i < runs; i++) { await new Promise((r) => setTimeout(r, 260)); bytes = (await registry.metrics()).length; }
console.log(`netns rows ${N}: scrape ${((performance.now() - t0) / runs - 260).toFixed(1)} ms, ${bytes} bytes`);
await c.close();
