// The probe's maps shrunk until they overflow: every overflow is counted in
// health, the counts stay exact where the design allows it, and the snapshot's
// exactness says so where it does not.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { exactness } from '../../src/index.js';
import { testModes } from './modes.js';
import { NetnsPair } from './netns.js';
import { liveSkipReason } from './privileges.js';
import { useRecorder } from './recorder.js';
import { until } from './wait.js';

const skip = liveSkipReason();
const FLOWS = 30;
// Inside the test VM nothing else allocates conntrack entries, so machine-wide
// health counters can be matched exactly; on a host other namespaces may add to them.
const alone = process.env.CTSTORM_VM === '1';
const expectMachineWide = (got: number, want: number): void => {
  if (alone) expect(got).toBe(want);
  else expect(got).toBeGreaterThanOrEqual(want);
};

describe.skipIf(skip !== undefined)('map overflow', () => {
  const pair = new NetnsPair('ovf');
  beforeAll(async () => {
    pair.up();
    await pair.startServer();
  });
  afterAll(() => pair.down());

  describe.each(testModes())('in %s mode', (mode) => {
    describe('a live map of 4 entries', () => {
      const LIVE = 4;
      const rec = useRecorder(pair, mode, { mapSizes: { live: LIVE } });

      it('counts the entries it could not watch; fentry and kprobe stay exact, tracepoint says it is not', async () => {
        const h0 = rec().source.counters().health;
        await pair.oneway(FLOWS);
        await until(() => pair.count() === FLOWS, 30_000, `${FLOWS} entries in the table`);
        const state = () => `counters ${JSON.stringify(rec().counters())}, health ${JSON.stringify(rec().source.counters().health)}`;
        const tracepoint = rec().source.mode === 'tracepoint';
        if (!tracepoint) {
          await until(() => rec().of('insert').length >= FLOWS, 30_000, 'insert records', state);
        }
        pair.flush();
        await until(() => rec().of('destroy').length >= FLOWS, 30_000, 'destroy records', state);
        const c = rec().source.counters();
        const untracked = c.health.untracked - h0.untracked;
        // The live map holds at most LIVE entries, all of which stay in the table.
        expectMachineWide(untracked, FLOWS - LIVE);
        if (tracepoint) {
          // An entry the live map had no room for is never swept: its insert is not seen.
          expect(rec().counters()).toMatchObject({ inserts: FLOWS - untracked, destroys: FLOWS, lost: 0 });
          const verdict = exactness(rec().source.mode, c);
          expect(verdict.exact).toBe(false);
          expect(verdict.notes.join('; ')).toContain(`${c.health.untracked} new entries found the live map full`);
        } else {
          expect(rec().counters()).toMatchObject({ inserts: FLOWS, destroys: FLOWS, lost: 0 });
          // Their lifetimes are unknown, their counts are not.
          const unknown = rec().of('destroy').filter((r) => r.lifetimeNs === undefined).length;
          if (alone) expect(unknown).toBe(untracked);
          else expect(unknown).toBeLessThanOrEqual(untracked);
          expect(unknown).toBeGreaterThanOrEqual(FLOWS - LIVE); // at most LIVE of them had room
          expect(exactness(rec().source.mode, c).exact).toBe(c.health.missedRuns === 0);
        }
      });
    });

    describe('a per-netns counter map of 1 row', () => {
      const rec = useRecorder(pair, mode, { mapSizes: { netns: 1 } });

      it('keeps the first netns x protocol row exact and counts the events of the others as overflow', async () => {
        const h0 = rec().source.counters().health;
        const p0 = rec().source.counters().protocols;
        const N_TCP = 10;
        const { udp } = await pair.runClient(0, FLOWS);
        expect(udp).toHaveLength(FLOWS);
        await until(() => rec().of('insert').length >= FLOWS, 30_000, 'UDP inserts');
        await pair.runClient(N_TCP, 0);
        await until(() => rec().of('insert').length >= FLOWS + N_TCP, 30_000, 'TCP inserts');
        const c = rec().source.counters();
        const overflow = c.health.netnsOverflow - h0.netnsOverflow;
        expect(c.netns).toHaveLength(1); // never more rows than the map holds
        const row = c.netns[0]!;
        if (row.inode === pair.serverInode) {
          // The row is this netns's UDP row: exact; each TCP insert found no room.
          expect(row).toMatchObject({ l4proto: 17, inserts: FLOWS, destroys: 0 });
          expectMachineWide(overflow, N_TCP);
        } else {
          // Another namespace's event (one still being torn down) took the row
          // first: every event of this netns overflowed, and was counted so.
          expect(overflow).toBeGreaterThanOrEqual(FLOWS + N_TCP);
        }
        // The protocol totals count every insert, row or no row.
        const tcp = (ps: typeof p0) => ps.find((p) => p.l4proto === 6)?.inserts ?? 0;
        expectMachineWide(tcp(c.protocols) - tcp(p0), N_TCP);
        expect(exactness(rec().source.mode, c).exact).toBe(false);
      });
    });

    if (mode === 'tracepoint' || (mode === 'auto' && process.env.CTSTORM_VM !== '1')) {
      describe('a pending map of 1 entry (tracepoint mode)', () => {
        const rec = useRecorder(pair, mode, { mapSizes: { pending: 1 } });

        it('reports the inserts the sweep could not watch when they are freed: exact, late', async () => {
          if (rec().source.mode !== 'tracepoint') return; // auto picked another mode on this host
          const h0 = rec().source.counters().health;
          await rec().pause(); // no sweep: the one pending slot stays taken
          await pair.oneway(FLOWS);
          await until(() => pair.count() === FLOWS, 30_000, `${FLOWS} entries in the table`);
          rec().resume();
          const state = () => `counters ${JSON.stringify(rec().counters())}`;
          await until(() => rec().of('insert').length >= 1, 30_000, 'the swept insert', state);
          pair.flush();
          await until(() => rec().of('destroy').length >= FLOWS, 30_000, 'destroy records', state);
          const c = rec().source.counters();
          const overflow = c.health.pendingOverflow - h0.pendingOverflow;
          expectMachineWide(overflow, FLOWS - 1);
          expect(rec().counters()).toMatchObject({ inserts: FLOWS, destroys: FLOWS, lost: 0 });
          expect(rec().of('insert').filter((r) => r.late)).toHaveLength(FLOWS - 1);
          expect(exactness('tracepoint', c).exact).toBe(c.health.missedRuns === 0);
        });
      });
    }
  });
});
