// Destroys on the timeout path: entries expire under a short per-netns UDP
// timeout and are reaped by the kernel (GC, or a table dump that evicts expired
// entries), with no flush.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LogHistogram, QUANTILE_RELATIVE_ERROR } from '../../src/engine/histogram.js';
import { NetnsPair } from './netns.js';
import { testModes } from './modes.js';
import { liveSkipReason } from './privileges.js';
import { useRecorder } from './recorder.js';
import { until } from './wait.js';

const skip = liveSkipReason();
const FLOWS = 15;

describe.skipIf(skip !== undefined)('destroy on timeout', () => {
  const pair = new NetnsPair('tmo');
  beforeAll(async () => {
    pair.up();
    // Per-netns sysctls: only this test namespace is changed.
    for (const name of ['nf_conntrack_udp_timeout', 'nf_conntrack_udp_timeout_stream']) {
      pair.exec(pair.server, 'sysctl', '-qw', `net.netfilter.${name}=1`);
    }
    await pair.startServer();
  });
  afterAll(() => pair.down());

  describe.each(testModes())('in %s mode', (mode) => {
    const rec = useRecorder(pair, mode);

    it('sees a destroy with a lifetime for every expired entry', async () => {
      const { udp } = await pair.runClient(0, FLOWS);
      await until(() => rec().of('insert').length >= FLOWS, 30_000, 'insert records');
      // Expired entries are removed by the GC worker, or at once when a dump finds them.
      await until(
        () => {
          pair.exec(pair.server, 'conntrack', '-L');
          return rec().of('destroy').length >= FLOWS;
        },
        90_000,
        'the entries to time out',
      );
      expect(rec().counters()).toMatchObject({ inserts: FLOWS, destroys: FLOWS, lost: 0 });
      const destroys = rec().of('destroy');
      expect(destroys.map((r) => r.orig.sport).sort((a, b) => a - b)).toEqual([...udp].sort((a, b) => a - b));
      // Lived at least the 1 s timeout, less one jiffy: the kernel arms the timeout
      // in jiffies, so an entry refreshed late in a tick expires up to 1/HZ (<= 10 ms) early.
      for (const r of destroys) expect(r.lifetimeNs).toBeGreaterThanOrEqual(1e9 - 10e6);
      expect(pair.count()).toBe(0);
      // The engine's UDP lifetimes are these (nothing else on a test machine times
      // out UDP entries): the same count, each in the bucket its lifetime falls in.
      const expected = new LogHistogram();
      for (const r of destroys) expected.add(r.lifetimeNs! / 1e9);
      const lifetimes = rec().monitor.view().engine.lifetimes.find((l) => l.proto === 'udp');
      expect(lifetimes).toMatchObject({ ...expected.summary(), predating: 0 });
      expect(lifetimes!.p50).toBeGreaterThanOrEqual(1 / (1 + QUANTILE_RELATIVE_ERROR));
    });
  });
});
