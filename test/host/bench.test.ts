// `npm run bench -- --quick` on this host, as the figures' own check: every count
// the benchmark reports must be exact (the speeds are printed, not asserted:
// BENCHMARKS.md). Each storm's producer sends a known number of new entries, and
// every observer's figures are held against the table: ctstorm's records and
// counters equal it, the full table holds exactly 262,144 entries and
// node_exporter and ctstorm's /metrics both say so. This host only: QEMU guests
// run the storms in `npm run bench` itself.
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { liveSkipReason } from '../live/privileges.js';
import { spawnCaptured } from '../live/spawned.js';

const bench = fileURLToPath(new URL('../../bench/run.mjs', import.meta.url));
const skip = liveSkipReason();

interface StormRun {
  sent: number;
  truth: number;
  records: number;
  counted?: { inserts: number; destroys: number; lost: number };
  lost?: number;
  healthDelta?: Record<string, number>;
}

describe.skipIf(skip !== undefined)('npm run bench -- --quick', () => {
  it('reports exact counts for every storm and the full table', async () => {
    const run = spawnCaptured(process.execPath, [bench, '--quick']);
    const code = await run.exit;
    expect(code, run.err()).toBe(0);
    const file = /^results: (\S+)$/m.exec(run.out())?.[1];
    expect(file, run.out()).toBeDefined();
    const r = JSON.parse(readFileSync(file!, 'utf8'));
    console.log(run.out());
    const entries = r.storm.entries as number;
    for (const name of ['none', 'ctstorm', 'conntrackE', 'conntrackEBig', 'synNone', 'synCtstorm']) {
      const s = r.storm[name] as StormRun;
      // Nothing evicted: every packet sent is one entry in the table.
      expect([name, s.sent, s.truth]).toEqual([name, entries, entries]);
    }
    for (const name of ['ctstorm', 'synCtstorm']) {
      const s = r.storm[name] as StormRun;
      expect([name, s.records, s.counted]).toEqual([name, entries, { inserts: entries, destroys: 0, lost: 0 }]);
      // Nothing ctstorm could not follow exactly during the storm (queue or map full, a skipped run).
      expect([name, s.healthDelta]).toEqual([name, {}]);
    }
    expect([r.storm.ctstorm.worstMissed, r.storm.synCtstorm.missed]).toEqual([0, 0]);
    // conntrack -E may lose events in a storm (the figure BENCHMARKS.md gives), but
    // never prints more NEW events than entries were made.
    expect(r.storm.conntrackE.records).toBeLessThanOrEqual(entries);
    expect(r.storm.conntrackEBig.records).toBeLessThanOrEqual(entries);
    // The paced run, in ctstorm's own process and in the bench's.
    expect(r.paced.counted).toEqual({ inserts: r.paced.truth, destroys: 0, lost: 0 });
    expect([r.paced.inProcess.records, r.paced.inProcess.counted.inserts]).toEqual([r.paced.inProcess.truth, r.paced.inProcess.truth]);
    expect(r.paced.delayMs.samples).toBeGreaterThan(1000);
    // Started cold in a storm: once it is over, the netns's entries it reports
    // (its census, retried when quieter, plus the exact counts since) are the table's.
    expect([r.cold.entries, r.cold.stormSent]).toEqual([r.cold.truth, r.cold.truth - r.cold.prefill]);
    // The full table, as each tool counts it, against the table's count right after.
    expect(r.full.entries).toBe(262_144);
    expect([Number(r.full.procScan.output), r.full.procScan.tableThen]).toEqual([262_144, 262_144]);
    expect([Number(r.full.conntrackL.output), r.full.conntrackL.tableThen]).toEqual([262_144, 262_144]);
    expect(Number(r.full.conntrackC.output)).toBe(262_144);
    // node_exporter is scraped over the server netns's loopback: each scrape is a
    // tracked TCP connection there, so the table has grown by the scrapes by then.
    expect(r.full.nodeExporter.value).toBe(r.full.nodeExporter.tableThen);
    expect(r.full.nodeExporter.value).toBeGreaterThan(262_144);
    // ctstorm's count (census + exact counters, across the top-up storm's 50 new
    // entries, each evicting one at the limit) is the table's.
    expect(r.full.ctstormMetrics.serverNetnsEntries).toBe(r.full.ctstormMetrics.tableThen);
    expect(r.full.census.entries).toBeGreaterThanOrEqual(262_144);
    expect(r.drain).toMatchObject({ lost: 0 });
    expect(r.drain.records).toBeGreaterThanOrEqual(60_000);
  });
});
