// Destroys on the early-drop path: a table shrunk to 32 entries and 8 buckets
// (global sysctls, so this runs only inside the test VM) takes 200 unreplied
// UDP flows; each new one past the limit evicts an unassured entry.
import { readFileSync, writeFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { NetnsPair } from '../live/netns.js';
import { Recorder, until } from '../live/recorder.js';

const FLOWS = 200;
const MAX = 32;
const sysctl = (name: string) => `/proc/sys/net/netfilter/${name}`;
const read = (name: string): string => readFileSync(sysctl(name), 'utf8').trim();
const write = (name: string, value: string): void => writeFileSync(sysctl(name), value);

describe('destroy on early drop (VM only)', () => {
  const pair = new NetnsPair('edrop');
  const saved = { max: '', buckets: '' };
  let rec: Recorder;

  beforeAll(async () => {
    if (process.env.CTSTORM_VM !== '1') {
      throw new Error('refusing to shrink the global conntrack table outside the test VM (npm run test:vm runs this)');
    }
    saved.max = read('nf_conntrack_max');
    saved.buckets = read('nf_conntrack_buckets');
    pair.up();
    rec = new Recorder(pair.serverInode);
    write('nf_conntrack_buckets', '8'); // early_drop scans 8 buckets: all of them
    write('nf_conntrack_max', String(MAX));
  });
  afterAll(async () => {
    if (saved.max) write('nf_conntrack_max', saved.max);
    if (saved.buckets) write('nf_conntrack_buckets', saved.buckets);
    await rec?.close();
    pair.down();
  });

  it('counts every eviction as a destroy, and the rest on flush', async () => {
    const ports = await pair.oneway(FLOWS);
    expect(ports).toHaveLength(FLOWS);
    await until(() => rec.of('insert').length >= FLOWS, 60_000, 'insert records');
    const left = pair.count();
    expect(left).toBeLessThanOrEqual(MAX);
    await until(() => rec.of('destroy').length >= FLOWS - left, 30_000, 'eviction destroy records');
    expect(rec.counters()).toMatchObject({ inserts: FLOWS, destroys: FLOWS - left, lost: 0 });
    // Every evicted entry was one the test inserted.
    const inserted = new Set(rec.of('insert').map((r) => r.orig.sport));
    for (const r of rec.of('destroy')) expect(inserted.has(r.orig.sport)).toBe(true);

    pair.flush();
    await until(() => rec.of('destroy').length >= FLOWS, 30_000, 'flush destroy records');
    expect(rec.counters()).toMatchObject({ inserts: FLOWS, destroys: FLOWS, lost: 0 });
    expect(rec.of('destroy').every((r) => r.lifetimeNs !== undefined && r.lifetimeNs > 0)).toBe(true);
  });
});
