// Which attach modes the live suite runs in. The VM matrix sets
// CTSTORM_TEST_MODES=fentry,kprobe,tracepoint so one test process (one boot)
// covers them all; on the host the suite runs once, in the mode `auto` picks.
import type { ModeChoice } from '../../src/index.js';

export type TestMode = ModeChoice;
const KNOWN: readonly TestMode[] = ['auto', 'fentry', 'kprobe', 'tracepoint'];

export function testModes(): TestMode[] {
  const raw = process.env.CTSTORM_TEST_MODES ?? process.env.CTSTORM_TEST_MODE ?? 'auto';
  const modes = raw
    .split(',')
    .map((m) => m.trim())
    .filter(Boolean);
  for (const m of modes) {
    if (!KNOWN.includes(m as TestMode)) throw new Error(`bad CTSTORM_TEST_MODES entry "${m}" (expected ${KNOWN.join(', ')})`);
  }
  if (modes.length === 0) throw new Error('CTSTORM_TEST_MODES is empty');
  return modes as TestMode[];
}
