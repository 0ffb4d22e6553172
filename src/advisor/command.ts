// `ctstorm advise`: measurements (watched here, or a running serve's), the
// settings of the netns advised, the model, then a report, JSON or a sysctl
// snippet; with --apply, the changes after a diff and a yes.
import { statSync } from 'node:fs';
import { CtstormError } from '../errors.js';
import type { NativeBinding } from '../native.js';
import { takeSnapshot, type Snapshot, type SnapshotOptions } from '../snapshot.js';
import { applyChanges, NetnsSysctl, type Change } from './apply.js';
import { measurementsOf } from './from-snapshot.js';
import { readEntryCost } from './memory.js';
import { advise, type Advice } from './model.js';
import { adviceChanges, adviceReport, sysctlSnippet } from './report.js';
import { readOwnSettings, resolveNetns } from './settings.js';

export interface AdviseCommand {
  /** Watch this long when no --from is given. */
  durationSeconds: number;
  /** A running `ctstorm serve`'s base URL. */
  from?: string;
  netns?: string;
  headroom: number;
  whatIf?: { reconnects: number; withinSeconds: number };
  output: 'report' | 'json' | 'sysctl';
  apply: boolean;
  yes: boolean;
  /** How the snapshot is taken (mode, ring, test stand-ins). */
  snapshot: Omit<SnapshotOptions, 'durationSeconds'>;
  native?: NativeBinding;
}

export interface AdviseIO {
  out: (text: string) => void;
  err: (text: string) => void;
  /** Asks a yes/no question on a terminal; undefined when there is none. */
  confirm?: (question: string) => Promise<boolean>;
}

export interface AdviseJson {
  version: 1;
  source: string;
  watchedSeconds: number;
  netns: { inode: number; initial: boolean };
  settings: Record<string, number>;
  advice: Advice;
  /** What --apply would write in that netns. */
  changes: Change[];
}

async function fetchSnapshot(base: string): Promise<Snapshot> {
  let url: URL;
  try {
    url = new URL('/api/v1/churn', base);
  } catch {
    throw new CtstormError(`bad --from "${base}"`, 'give the address of a ctstorm serve, e.g. --from http://127.0.0.1:9477', 'EUSAGE');
  }
  let body: unknown;
  try {
    const res = await fetch(url, { signal: AbortSignal.timeout(10_000) });
    if (!res.ok) throw new Error(`HTTP ${res.status}`);
    body = await res.json();
  } catch (err) {
    throw new CtstormError(`cannot read ${url} (${(err as Error).message})`, 'check that ctstorm serve runs there (curl it), or drop --from to watch here', 'EFROM');
  }
  const snap = body as Partial<Snapshot>;
  if (snap.version !== 1 || !Array.isArray(snap.netns) || !Array.isArray(snap.lifetimes)) {
    throw new CtstormError(`${url} did not answer with ctstorm's churn JSON (version 1)`, 'point --from at a ctstorm serve of the same version', 'EFROM');
  }
  return snap as Snapshot;
}

export async function runAdvise(c: AdviseCommand, io: AdviseIO): Promise<number> {
  // Everything that can be refused is checked before the probe loads.
  const target = c.netns === undefined ? undefined : resolveNetns(c.netns);
  const here = new NetnsSysctl(target);
  const own = readOwnSettings();
  const targetSettings = target ? here.read() : own;
  if (c.apply && !c.yes && !io.confirm) {
    throw new CtstormError('--apply needs a yes, and this shell cannot ask', 'add --yes to apply without asking (the diff is still printed)', 'EUSAGE');
  }
  const ownInode = statSync('/proc/self/ns/net').ino;
  const targetInode = target?.inode ?? ownInode;

  const snap = c.from ? await fetchSnapshot(c.from) : await takeSnapshot({ ...c.snapshot, durationSeconds: c.durationSeconds, census: true });
  const source = c.from ? `${c.from} (ctstorm serve)` : `a ${c.durationSeconds} s watch here`;
  const cost = readEntryCost(own, c.native?.structSizes?.bind(c.native));
  const advice = advise(measurementsOf(snap), own, targetSettings, cost, { headroom: c.headroom, whatIf: c.whatIf, targetInode });
  // The limit and buckets are writable only in the initial netns; the kernel says which.
  const initial = here.writable('nf_conntrack_max');
  const changes = adviceChanges(advice, initial).filter((ch) => here.writable(ch.key));

  if (c.output === 'json') {
    const json: AdviseJson = { version: 1, source, watchedSeconds: snap.durationSeconds, netns: { inode: targetInode, initial }, settings: targetSettings, advice, changes };
    io.out(JSON.stringify(json));
  } else if (c.output === 'sysctl') {
    io.out(sysctlSnippet(advice, changes, new Date().toISOString().slice(0, 10)));
  } else {
    io.out(adviceReport(advice, { watchedSeconds: snap.durationSeconds, source, targetInode, ownInode }));
  }
  if (!c.apply) return 0;

  const where = `netns ${targetInode}${target ? ` (${target.given})` : ''}`;
  if (changes.length === 0) {
    io.err(`ctstorm: nothing to apply in ${where}`);
    return 0;
  }
  io.err(`ctstorm: --apply in ${where}:`);
  for (const ch of changes) io.err(`  net.netfilter.${ch.key}: ${ch.from} -> ${ch.to}`);
  if (!c.yes && !(await io.confirm!(`apply these ${changes.length} changes? [y/N] `))) {
    io.err('ctstorm: nothing changed');
    return 1;
  }
  applyChanges(here, changes, targetSettings);
  io.err(`ctstorm: applied ${changes.length} changes in ${where}`);
  return 0;
}
