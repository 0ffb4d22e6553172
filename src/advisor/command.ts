// `ctstorm advise`: measurements (watched here, or a running serve's), the
// settings of the netns advised, the model, then a report, JSON or a sysctl
// snippet; with --apply, the changes after a diff and a yes.
import { existsSync } from 'node:fs';
import { ownNetnsInode } from '../netns-live.js';
import { release } from 'node:os';
import { CtstormError } from '../errors.js';
import type { NativeBinding } from '../native.js';
import { takeSnapshot, type Snapshot, type SnapshotOptions } from '../snapshot.js';
import { applyChanges, NetnsSysctl, type Change } from './apply.js';
import { measurementsOf } from './from-snapshot.js';
import { readEntryCost } from './memory.js';
import { advise, type Advice } from './model.js';

/** sysctls are C ints: a larger value cannot be written. */
const INT32_MAX = 2 ** 31 - 1;
import { adviceChanges, adviceReport, sysctlSnippet } from './report.js';
import { isInitialNetns, readOwnSettings, resolveNetns, type NetnsTarget } from './settings.js';

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
  /** Asks a yes/no question on a terminal (false once `signal` fires); undefined when there is none. */
  confirm?: (question: string, signal?: AbortSignal) => Promise<boolean>;
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

/** An error's first line, short, for a one-line message. */
const brief = (text: string): string => (text.split('\n')[0] ?? '').slice(0, 120);

async function fetchSnapshot(base: string, signal: AbortSignal | undefined): Promise<Snapshot> {
  let url: URL;
  try {
    // Relative to the base's path, so a serve behind a proxy prefix is reached.
    url = new URL('api/v1/churn', base.endsWith('/') ? base : `${base}/`);
  } catch {
    throw new CtstormError(`bad --from "${brief(base)}"`, 'give the address of a ctstorm serve, e.g. --from http://127.0.0.1:9477', 'EUSAGE');
  }
  const shown = new URL(url);
  shown.username = '';
  shown.password = ''; // never echo a password in a message
  const auth = url.username ? { authorization: `Basic ${Buffer.from(`${decodeURIComponent(url.username)}:${decodeURIComponent(url.password)}`).toString('base64')}` } : undefined;
  url.username = '';
  url.password = '';
  let body: unknown;
  try {
    const timeout = AbortSignal.timeout(10_000);
    const res = await fetch(url, { signal: signal ? AbortSignal.any([signal, timeout]) : timeout, headers: auth });
    if (!res.ok) throw new Error(`HTTP ${res.status}`);
    body = await res.json();
  } catch (err) {
    throw new CtstormError(`cannot read ${shown} (${brief((err as Error).message)})`, 'check that ctstorm serve runs there (curl it), or drop --from to watch here', 'EFROM');
  }
  const snap = body as Partial<Snapshot> | null;
  const shaped =
    snap !== null && typeof snap === 'object' && snap.version === 1 && Array.isArray(snap.netns) && Array.isArray(snap.lifetimes) &&
    typeof snap.table === 'object' && snap.table !== null && typeof snap.storms === 'object' && snap.storms !== null && Array.isArray(snap.storms.past) &&
    typeof snap.chains === 'object' && snap.chains !== null && typeof snap.totals === 'object' && snap.totals !== null;
  if (!shaped) throw new CtstormError(`${shown} did not answer with ctstorm's churn JSON (version 1)`, 'point --from at a ctstorm serve of the same version', 'EFROM');
  if (!(typeof snap.durationSeconds === 'number' && snap.durationSeconds >= 1)) {
    throw new CtstormError(`${shown} has watched for under a second (durationSeconds ${String(snap.durationSeconds)})`, 'let ctstorm serve run first, or drop --from to watch here', 'EFROM');
  }
  return snap as Snapshot;
}

/** How a shell enters the netns: by its ip-netns name where it has one. */
function snippetTarget(t: NetnsTarget): { name: string; enter: string } {
  const named = /^\/(?:var\/)?run\/netns\/([^/]+)$/.exec(t.path)?.[1];
  return { name: named ?? t.given, enter: named ? `ip netns exec ${named}` : `nsenter --net=${t.path}` };
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
  const ownInode = ownNetnsInode();
  const targetInode = target?.inode ?? ownInode;

  const snap = c.from ? await fetchSnapshot(c.from, c.snapshot.signal) : await takeSnapshot({ ...c.snapshot, durationSeconds: c.durationSeconds, census: true });
  const interrupted = c.snapshot.signal?.aborted ?? false;
  const source = c.from ? `${c.from} (ctstorm serve)` : `a ${c.durationSeconds} s watch here${interrupted ? ', cut short' : ''}`;
  // Measurements from another machine do not fit this one's settings.
  const otherHost = snap.kernel !== release() || snap.table.max !== own.nf_conntrack_max || snap.table.buckets !== own.nf_conntrack_buckets;
  if (otherHost && c.apply) {
    throw new CtstormError(`--from measured another host (kernel ${snap.kernel}, nf_conntrack_max ${snap.table.max}), and --apply writes here`, 'run ctstorm advise on that node', 'EUSAGE');
  }
  const cost = readEntryCost(own, c.native?.structSizes?.bind(c.native));
  let advice: Advice;
  try {
    advice = advise(measurementsOf(snap), own, targetSettings, cost, { headroom: c.headroom, whatIf: c.whatIf, targetInode });
  } catch (err) {
    if (!c.from) throw err;
    throw new CtstormError(`the churn JSON of ${c.from} is not what this ctstorm reads (${brief((err as Error).message)})`, 'point --from at a ctstorm serve of the same version', 'EFROM');
  }
  if (otherHost) advice.notes.unshift(`the measurements come from another host (kernel ${snap.kernel}, nf_conntrack_max ${snap.table.max}); the settings and sizes shown are this host's`);
  // The limit and buckets belong to the initial netns (PID 1's; when that cannot be
  // read, the netns where the kernel lets nf_conntrack_max be written).
  const initial = isInitialNetns(targetInode) ?? here.writable('nf_conntrack_max');
  const all = adviceChanges(advice, initial);
  const advised = all.filter((ch) => here.writable(ch.key) && ch.to <= INT32_MAX);
  if (all.some((ch) => ch.to > INT32_MAX)) advice.notes.push(`a value above ${INT32_MAX} cannot be written (the kernel's int): not applied`);
  // A bucket resize rehashes the whole table under every bucket lock: never as a side effect.
  const changes = advised.filter((ch) => ch.key !== 'nf_conntrack_buckets');
  const resize = advised.find((ch) => ch.key === 'nf_conntrack_buckets');

  if (c.output === 'json') {
    const json: AdviseJson = { version: 1, source, watchedSeconds: snap.durationSeconds, netns: { inode: targetInode, initial }, settings: targetSettings, advice, changes };
    io.out(JSON.stringify(json));
  } else if (c.output === 'sysctl') {
    const where = target ? snippetTarget(target) : initial ? undefined : { name: `ctstorm's (inode ${ownInode})`, enter: `nsenter --net=<a path to netns ${ownInode}>` };
    io.out(sysctlSnippet(advice, all, new Date().toISOString().slice(0, 10), { initial, target: where, conntrackModule: existsSync('/sys/module/nf_conntrack/initstate') }));
  } else {
    io.out(adviceReport(advice, { watchedSeconds: snap.durationSeconds, averagedSeconds: snap.table.averagedSeconds ?? null, source, targetInode, ownInode }));
  }
  if (!c.apply) return 0;
  // A signal during the watch or at the prompt applies nothing.
  const stopped = (): number => {
    io.err('ctstorm: interrupted: nothing applied');
    return 130;
  };
  if (interrupted) return stopped();

  const where = `netns ${targetInode}${target ? ` (${target.given})` : ''}`;
  if (resize) io.err(`ctstorm: net.netfilter.nf_conntrack_buckets ${resize.from} -> ${resize.to} not applied: a resize rehashes the whole table under a lock; off-peak, run: sysctl -w net.netfilter.nf_conntrack_buckets=${resize.to}`);
  if (changes.length === 0) {
    io.err(`ctstorm: nothing to apply in ${where}`);
    return 0;
  }
  io.err(`ctstorm: --apply in ${where}:`);
  for (const ch of changes) io.err(`  net.netfilter.${ch.key}: ${ch.from} -> ${ch.to}`);
  const agreed = c.yes || (await io.confirm!(`apply these ${changes.length} changes? [y/N] `, c.snapshot.signal));
  if (c.snapshot.signal?.aborted) return stopped();
  if (!agreed) {
    io.err('ctstorm: nothing changed');
    return 1;
  }
  applyChanges(here, changes);
  io.err(`ctstorm: applied ${changes.length} changes in ${where}`);
  return 0;
}
