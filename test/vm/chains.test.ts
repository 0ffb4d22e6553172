// Hash chains, checked node by node: the table shrunk to its smallest hash (a
// global sysctl, so VM only: asking for 1 bucket gives one page of heads, 512)
// holds 300 entries, so chains of several nodes are common. Both directions of
// every entry are hashed at insert, so from the buckets of the inserts made
// before it, the exact chain length each insert found is known. fentry and kprobe
// modes walk the chain at the insert itself and must report exactly that; with the
// walk limited to one node they must flag as capped exactly the entries whose
// chains go past it. Destroys carry the buckets their insert saw.
import { execFileSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { CtRecord } from '../../src/index.js';
import { NetnsPair } from '../live/netns.js';
import { testModes } from '../live/modes.js';
import { useRecorder, type Recorder } from '../live/recorder.js';
import { until } from '../live/wait.js';

const FLOWS = 300;
const sysctl = (name: string) => `/proc/sys/net/netfilter/${name}`;
const read = (name: string): string => readFileSync(sysctl(name), 'utf8').trim();
const write = (name: string, value: string): void => writeFileSync(sysctl(name), value);

/** Chain lengths each insert found: its own nodes and those of the inserts before it. */
function expectedChains(inserts: CtRecord[]): Array<{ orig: number; reply: number }> {
  const nodes = new Map<number, number>();
  return inserts.map((r) => {
    const { orig, reply } = r.buckets!;
    nodes.set(orig, (nodes.get(orig) ?? 0) + 1);
    nodes.set(reply, (nodes.get(reply) ?? 0) + 1);
    return { orig: nodes.get(orig)!, reply: nodes.get(reply)! };
  });
}

/** Sends the flows, waits for their inserts; returns them in insert order. */
async function fill(pair: NetnsPair, rec: Recorder): Promise<CtRecord[]> {
  const ports = await pair.oneway(FLOWS);
  expect(ports).toHaveLength(FLOWS);
  await until(() => pair.count() === FLOWS, 30_000, `${FLOWS} entries in the table`, () => `${pair.count()}`);
  await until(() => rec.of('insert').length >= FLOWS, 30_000, `${FLOWS} inserts`, () => JSON.stringify(rec.counters()));
  expect(rec.counters()).toMatchObject({ inserts: FLOWS, destroys: 0, lost: 0 });
  const inserts = [...rec.of('insert')].sort((a, b) => a.tsNs - b.tsNs);
  // The sweep (tracepoint mode) learns the bucket from the walk's end marker: a
  // capped walk has none. fentry and kprobe are handed the buckets by the kernel.
  const sweptCapped = (r: CtRecord) => rec.source.mode === 'tracepoint' && r.chainCapped;
  for (const r of inserts) if (!sweptCapped(r)) expect(r.buckets, `insert from port ${r.orig.sport}`).toBeDefined();
  return inserts;
}

/** Flushes; every destroy must carry the buckets of its insert. */
async function flushAndCheckBuckets(pair: NetnsPair, rec: Recorder, inserts: CtRecord[]): Promise<void> {
  pair.flush();
  await until(() => rec.of('destroy').length >= FLOWS, 30_000, 'destroys on flush', () => JSON.stringify(rec.counters()));
  expect(rec.counters()).toMatchObject({ inserts: FLOWS, destroys: FLOWS, lost: 0 });
  const bucketsOf = new Map(inserts.map((r) => [r.orig.sport, r.buckets]));
  for (const r of rec.of('destroy')) expect([r.orig.sport, r.buckets]).toEqual([r.orig.sport, bucketsOf.get(r.orig.sport)]);
}

describe('hash chains in a 512-bucket table, VM only', () => {
  const pair = new NetnsPair('chain');
  let savedBuckets = '';
  let buckets = 0;
  beforeAll(() => {
    if (process.env.CTSTORM_VM !== '1') {
      throw new Error('refusing to shrink the global conntrack hash outside the test VM (npm run test:vm runs this)');
    }
    savedBuckets = read('nf_conntrack_buckets');
    write('nf_conntrack_buckets', '1');
    buckets = Number(read('nf_conntrack_buckets'));
    pair.up();
    // Nothing may expire while chains are counted.
    pair.exec(pair.server, 'sysctl', '-qw', 'net.netfilter.nf_conntrack_udp_timeout=600');
  });
  afterAll(() => {
    if (savedBuckets) write('nf_conntrack_buckets', savedBuckets);
    pair.down();
  });

  describe.each(testModes())('in %s mode', (mode) => {
    describe('walked to the end', () => {
      const rec = useRecorder(pair, mode);

      it('reports each insert\'s buckets and exact chain lengths, and the buckets again at destroy', async () => {
        const inserts = await fill(pair, rec());
        const want = expectedChains(inserts);
        expect(Math.max(...want.map((w) => Math.max(w.orig, w.reply)))).toBeGreaterThan(1); // chains really formed
        inserts.forEach((r, i) => {
          expect(r.buckets!.orig).toBeLessThan(buckets);
          expect(r.buckets!.reply).toBeLessThan(buckets);
          expect(r.chainCapped).toBe(false);
          if (rec().source.mode === 'tracepoint') {
            // Swept a little after the insert: at least what the insert found.
            expect(r.chain!.orig).toBeGreaterThanOrEqual(want[i]!.orig);
            expect(r.chain!.reply).toBeGreaterThanOrEqual(want[i]!.reply);
          } else {
            expect([r.orig.sport, r.chain]).toEqual([r.orig.sport, want[i]]);
          }
        });
        await flushAndCheckBuckets(pair, rec(), inserts);
      });
    });

    describe('census', () => {
      const rec = useRecorder(pair, mode);

      it('finds the chains the inserts made, and after a resize waits for an insert to find the new table', async () => {
        const inserts = await fill(pair, rec());
        const rootEntries = Number(execFileSync('conntrack', ['-C'], { encoding: 'utf8' }));
        const census = await rec().monitor.census({ fresh: true });
        expect(census).not.toBeNull();
        // Nodes per bucket from the inserts' own buckets: the chain-length histogram exactly
        // (the root netns holds nothing in the guest).
        expect(rootEntries).toBe(0);
        const nodes = new Array<number>(buckets).fill(0);
        for (const r of inserts) {
          nodes[r.buckets!.orig]!++;
          nodes[r.buckets!.reply]!++;
        }
        const want = new Map<number, number>();
        for (const n of nodes) want.set(n, (want.get(n) ?? 0) + 1);
        expect(census!.buckets).toBe(buckets);
        expect(new Map(census!.chains.filter((c) => c.buckets > 0).map((c) => [c.length, c.buckets]))).toEqual(want);
        expect(census!.netns).toEqual([{ cookie: expect.any(Number), inode: pair.serverInode, entries: FLOWS }]);
        expect([census!.nodes, census!.moved, census!.readErrors]).toEqual([2 * FLOWS, 0, 0]);

        // A resize moves every entry to a new array and frees the old one: until an
        // insert shows the new array, there is no census (never a count of freed memory).
        write('nf_conntrack_buckets', String(2 * buckets));
        try {
          expect(await rec().monitor.census()).toBeNull();
          expect(rec().monitor.view().census.pending).toMatch(/resized/);
          await pair.oneway(1, 7310);
          await until(() => rec().of('insert').length >= FLOWS + 1, 30_000, 'the insert after the resize');
          const after = await rec().monitor.census({ fresh: true });
          expect(after).toMatchObject({ buckets: 2 * buckets, nodes: 2 * (FLOWS + 1), entries: FLOWS + 1, moved: 0, readErrors: 0 });
        } finally {
          write('nf_conntrack_buckets', '1');
        }
        pair.flush();
        await until(() => rec().of('destroy').length >= FLOWS + 1, 30_000, 'destroys on flush');
      });
    });

    describe('walked one node at most', () => {
      const rec = useRecorder(pair, mode, { chainWalk: 1 });

      it('flags as capped exactly the chains longer than the walk, with a floor for their length', async () => {
        const inserts = await fill(pair, rec());
        const atInsert = rec().source.mode !== 'tracepoint';
        const want = atInsert ? expectedChains(inserts) : [];
        let capped = 0;
        inserts.forEach((r, i) => {
          const w = want[i] ?? { orig: Infinity, reply: Infinity };
          // A new entry's nodes are at the head of their chains (reply first when both
          // share one): one node walked either way covers chains of up to 2 nodes.
          if (atInsert) expect([r.orig.sport, r.chainCapped]).toEqual([r.orig.sport, Math.max(w.orig, w.reply) > 2]);
          if (r.chainCapped) {
            capped++;
            expect(Math.min(r.chain!.orig, r.chain!.reply)).toBeGreaterThanOrEqual(1);
            if (atInsert) {
              expect(r.chain!.orig).toBeLessThanOrEqual(w.orig);
              expect(r.chain!.reply).toBeLessThanOrEqual(w.reply);
            }
          } else if (atInsert) {
            expect([r.orig.sport, r.chain]).toEqual([r.orig.sport, w]);
          }
        });
        if (atInsert) expect(capped).toBeGreaterThan(0); // the capped path was taken
        await flushAndCheckBuckets(pair, rec(), inserts);
      });
    });
  });
});
