// Entries freed with IPS_CONFIRMED set that never were in the table.
// ctnetlink_create_conntrack sets IPS_CONFIRMED before steps that can still fail
// (a status it refuses, a reply tuple already in the table), then frees the entry:
// it was never hashed, so it is neither an insert nor a destroy, in every mode, and
// health.neverHashed counts it. `conntrack -I` drives that path from userspace.
import { execFileSync } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { testModes } from './modes.js';
import { NetnsPair } from './netns.js';
import { liveSkipReason } from './privileges.js';
import { useRecorder } from './recorder.js';
import { until } from './wait.js';

const skip = liveSkipReason();
const REFUSED_EACH = 5;

/** Runs `conntrack -I ...` in the namespace; true when the kernel created the entry. */
function create(pair: NetnsPair, args: string[]): boolean {
  try {
    execFileSync('ip', ['netns', 'exec', pair.server, 'conntrack', '-I', '-p', 'udp', '-t', '300', ...args], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

describe.skipIf(skip !== undefined)('entries freed after IPS_CONFIRMED but never hashed', () => {
  const pair = new NetnsPair('nohash');
  beforeAll(() => pair.up());
  afterAll(() => pair.down());

  describe.each(testModes())('in %s mode', (mode) => {
    const rec = useRecorder(pair, mode);

    it('are neither inserts nor destroys, and health.neverHashed counts each', async () => {
      const a = pair.clientAddr;
      const b = pair.serverAddr;
      const before = rec().source.counters().health.neverHashed;
      // One real entry: a:1000 -> b:2000, reply b:2000 -> a:1000.
      expect(create(pair, ['-s', a, '-d', b, '--sport', '1000', '--dport', '2000'])).toBe(true);
      for (let i = 0; i < REFUSED_EACH; i++) {
        // A new original tuple whose reply tuple is the real entry's: EEXIST from
        // nf_conntrack_hash_check_insert, after IPS_CONFIRMED was set.
        const clash = ['-s', b, '-d', a, '--sport', String(3000 + i), '--dport', '4000', '-r', b, '-q', a, '--reply-port-src', '2000', '--reply-port-dst', '1000'];
        expect(create(pair, clash)).toBe(false);
        // A status bit ctnetlink refuses to set (EBUSY), also after IPS_CONFIRMED.
        expect(create(pair, ['-s', a, '-d', b, '--sport', String(5000 + i), '--dport', '2000', '-u', 'EXPECTED'])).toBe(false);
      }
      const refused = 2 * REFUSED_EACH;
      const state = () => `counters ${JSON.stringify(rec().counters())}, health ${JSON.stringify(rec().source.counters().health)}`;
      await until(() => rec().of('insert').length >= 1, 30_000, 'the real entry\'s insert', state);
      await until(() => rec().source.counters().health.neverHashed - before >= refused, 30_000, `${refused} refused creates`, state);
      expect(rec().source.counters().health.neverHashed - before).toBe(refused);
      expect(pair.count()).toBe(1);
      expect(rec().counters()).toMatchObject({ inserts: 1, destroys: 0, lost: 0 });
      expect(rec().of('insert').map((r) => [r.orig.src, r.orig.sport, r.orig.dst, r.orig.dport])).toEqual([[a, 1000, b, 2000]]);

      pair.flush();
      await until(() => rec().of('destroy').length >= 1, 30_000, 'the destroy on flush', state);
      expect(rec().counters()).toMatchObject({ inserts: 1, destroys: 1, lost: 0 });
      expect(rec().of('destroy').map((r) => r.orig.sport)).toEqual([1000]);
      expect(rec().source.counters().health.neverHashed - before).toBe(refused);
    });
  });
});
