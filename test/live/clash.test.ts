// Clashes: two CPUs send the same new UDP flow at the same instant, so two
// unconfirmed entries race to confirm and the loser is dropped (kernel stat
// `clashres`). A loser never was in the table: it is neither an insert nor a
// destroy, so the counts stay exactly one per flow.
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { testModes } from './modes.js';
import { NetnsPair } from './netns.js';
import { liveSkipReason } from './privileges.js';
import { Recorder } from './recorder.js';
import { until } from './wait.js';

const skip = liveSkipReason();
const sender = fileURLToPath(new URL('./clash-sender.py', import.meta.url));
const FLOWS = 600;
const FIRST_PORT = 20000;
// Debian's interpreter (scripts/setup.sh installs it), not whatever shim is first on PATH.
const PYTHON = '/usr/bin/python3';

describe.skipIf(skip !== undefined)('clash losers', () => {
  const pair = new NetnsPair('clash');
  beforeAll(() => pair.up());
  afterAll(() => pair.down());

  describe.each(testModes())('in %s mode', (mode) => {
    let rec: Recorder;
    beforeAll(async () => {
      await pair.empty();
      rec = new Recorder(pair.serverInode, mode);
    });
    afterAll(async () => rec?.close());

    it('are neither inserts nor destroys: one of each per flow', async () => {
      const before = pair.stats();
      const healthBefore = rec.source.counters().health;
      await pair.execAsync(pair.client, PYTHON, sender, pair.serverAddr, '7300', String(FIRST_PORT), String(FLOWS));
      const state = () => `inserts ${rec.of('insert').length}, in table ${pair.count()}, counters ${JSON.stringify(rec.counters())}`;
      await until(() => pair.count() === FLOWS && rec.of('insert').length >= FLOWS, 30_000, `${FLOWS} entries and inserts`, state);
      const clashes = pair.stats().clashres! - before.clashres!;
      expect(clashes).toBeGreaterThan(0); // the race was really run
      expect(rec.counters()).toMatchObject({ inserts: FLOWS, destroys: 0, lost: 0 });
      const ports = rec.of('insert').map((r) => r.orig.sport);
      expect(new Set(ports).size).toBe(FLOWS);
      expect(Math.min(...ports)).toBe(FIRST_PORT);
      expect(Math.max(...ports)).toBe(FIRST_PORT + FLOWS - 1);
      if (rec.source.mode === 'tracepoint') {
        // The losers are the objects freed without ever being confirmed.
        expect(rec.source.counters().health.unconfirmedFrees - healthBefore.unconfirmedFrees).toBeGreaterThanOrEqual(clashes);
      }

      pair.flush();
      await until(() => rec.of('destroy').length >= FLOWS, 30_000, 'flush destroy records', state);
      expect(rec.counters()).toMatchObject({ inserts: FLOWS, destroys: FLOWS, lost: 0 });
    });
  });
});
