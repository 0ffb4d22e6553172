import { describe, expect, it } from 'vitest';
import { parseConntrackStat, statRates } from '../../src/kernel-stats.js';

// Two CPUs, as 6.x prints it (a trailing column some kernels lack).
const SAMPLE = `entries  clashres found new invalid ignore delete chainlength insert insert_failed drop early_drop icmp_error  expect_new expect_create expect_delete search_restart
0000002a  00000001 00000000 00000000 00000003 00000000 00000000 00000000 00000000 00000002 00000010 00000005 00000000  00000000 00000000 00000000 00000000
0000002a  00000002 00000000 00000000 00000001 00000000 00000000 00000000 00000000 00000001 00000020 0000000a 00000000  00000000 00000000 00000000 0000000f
`;

describe('kernel conntrack statistics', () => {
  it('sums the per-CPU rows by the header\'s column names, entries once', () => {
    const s = parseConntrackStat(SAMPLE);
    expect(s).toMatchObject({ entries: 42, clashres: 3, invalid: 4, insert_failed: 3, drop: 48, early_drop: 15, search_restart: 15 });
  });

  it('gives per-second rates between two readings', () => {
    const a = parseConntrackStat(SAMPLE);
    const b = { ...a, drop: a.drop! + 100, entries: 50 };
    expect(statRates(a, b, 2)).toMatchObject({ drop: 50, early_drop: 0, entries: 50 });
  });
});
