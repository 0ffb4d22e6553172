// Destroys on the early-drop path: a table shrunk to 32 entries and 8 buckets
// (global sysctls, so this runs only inside the test VM) takes 200 unreplied
// UDP flows. Each new flow past the limit either evicts an unassured entry
// (stat `early_drop`) or, when the kernel finds none to evict, is dropped
// (stat `drop`, "table full"). The kernel's own statistics give the exact
// numbers the probe must match.
import { readFileSync, writeFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { NetnsPair } from '../live/netns.js';
import { testModes } from '../live/modes.js';
import { useRecorder } from '../live/recorder.js';
import { until } from '../live/wait.js';

const FLOWS = 200;
const MAX = 32;
const sysctl = (name: string) => `/proc/sys/net/netfilter/${name}`;
const read = (name: string): string => readFileSync(sysctl(name), 'utf8').trim();
const write = (name: string, value: string): void => writeFileSync(sysctl(name), value);

describe('destroy on early drop, VM only', () => {
  const pair = new NetnsPair('edrop');
  const saved = { max: '', buckets: '' };
  beforeAll(() => {
    if (process.env.CTSTORM_VM !== '1') {
      throw new Error('refusing to shrink the global conntrack table outside the test VM (npm run test:vm runs this)');
    }
    saved.max = read('nf_conntrack_max');
    saved.buckets = read('nf_conntrack_buckets');
    pair.up();
  });
  afterAll(() => {
    if (saved.max) write('nf_conntrack_max', saved.max);
    if (saved.buckets) write('nf_conntrack_buckets', saved.buckets);
    pair.down();
  });

  describe.each(testModes())('in %s mode', (mode) => {
    const rec = useRecorder(pair, mode);
    beforeAll(() => {
      write('nf_conntrack_buckets', '8'); // early_drop scans 8 buckets: all of them
      write('nf_conntrack_max', String(MAX));
    });
    // After hooks run in reverse: the table is restored before the recorder closes.
    afterAll(() => {
      write('nf_conntrack_max', saved.max);
      write('nf_conntrack_buckets', saved.buckets);
    });

    it('counts every eviction as a destroy, and the rest on flush', async () => {
      const before = pair.stats();
      const ports = await pair.oneway(FLOWS);
      expect(ports).toHaveLength(FLOWS);
      // The sender returns before the receiving side's softirq has seen every packet
      // (under load it runs later, in ksoftirqd). Each packet ends as exactly one of:
      // refused (`drop`), or an entry that is still in the table or was evicted
      // (`early_drop`): wait until all of them are accounted for.
      let dropped = 0;
      let evicted = 0;
      let left = 0;
      const account = (): boolean => {
        const now = pair.stats();
        dropped = now.drop! - before.drop!;
        evicted = now.early_drop! - before.early_drop!;
        left = pair.count();
        return dropped + evicted + left === FLOWS;
      };
      await until(account, 30_000, `all ${FLOWS} packets accounted for`, () => `drop ${dropped}, early_drop ${evicted}, in table ${left}`);
      expect(evicted).toBeGreaterThan(0); // the path under test was taken
      expect(left).toBeLessThanOrEqual(MAX);
      const inserted = FLOWS - dropped; // refused packets allocate nothing and insert nothing

      const state = () => `inserts ${rec().of('insert').length}, destroys ${rec().of('destroy').length}, counters ${JSON.stringify(rec().counters())}`;
      await until(
        () => rec().of('insert').length >= inserted && rec().of('destroy').length >= evicted,
        60_000,
        `${inserted} inserts and ${evicted} evictions`,
        state,
      );
      expect(rec().counters()).toMatchObject({ inserts: inserted, destroys: evicted, lost: 0 });
      // Every evicted entry was one the test inserted, and one it inserted early.
      const insertedPorts = new Set(
        rec()
          .of('insert')
          .map((r) => r.orig.sport),
      );
      for (const r of rec().of('destroy')) expect(insertedPorts.has(r.orig.sport)).toBe(true);
      expect(
        rec()
          .of('insert')
          .every((r) => ports.includes(r.orig.sport)),
      ).toBe(true);

      pair.flush();
      await until(() => rec().of('destroy').length >= inserted, 30_000, 'flush destroy records', state);
      expect(rec().counters()).toMatchObject({ inserts: inserted, destroys: inserted, lost: 0 });
      expect(
        rec()
          .of('destroy')
          .every((r) => r.lifetimeNs !== undefined && r.lifetimeNs > 0),
      ).toBe(true);
    });
  });
});
