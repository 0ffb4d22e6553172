// Which attach modes the live suite runs in. The VM matrix sets
// CTSTORM_TEST_MODES=fentry,kprobe,tracepoint so one test process (one boot)
// covers them all; on the host the suite runs once, in the mode `auto` picks.
import { MODES, type ModeChoice } from '../../src/index.js';

const KNOWN: readonly ModeChoice[] = ['auto', ...MODES];

export function testModes(): ModeChoice[] {
  const raw = process.env.CTSTORM_TEST_MODES ?? process.env.CTSTORM_TEST_MODE ?? 'auto';
  const modes = raw
    .split(',')
    .map((m) => m.trim())
    .filter(Boolean);
  for (const m of modes) {
    if (!KNOWN.includes(m as ModeChoice)) throw new Error(`bad CTSTORM_TEST_MODES entry "${m}" (expected ${KNOWN.join(', ')})`);
  }
  if (modes.length === 0) throw new Error('CTSTORM_TEST_MODES is empty');
  return modes as ModeChoice[];
}
