// The advice as people read it: a report with its reasoning, and a ready
// /etc/sysctl.d/ snippet.
import type { Advice } from './model.js';
import { fmt } from '../format.js';

const pct = (x: number): string => `${(x * 100).toFixed(0)} %`;
const secs = (s: number | null): string => (s === null ? '-' : s >= 100 ? `${fmt(s)} s` : `${s.toFixed(1)} s`);
const mib = (bytes: number): string => `${(bytes / 2 ** 20).toFixed(1)} MiB`;
const sysctlName = (key: string): string => `net.netfilter.${key}`;

export interface ReportContext {
  watchedSeconds: number;
  /** Seconds the netns's averaged counts cover; null when the source gave none. */
  averagedSeconds: number | null;
  /** Where the measurements come from ("watched here for 60 s", a URL). */
  source: string;
  targetInode: number;
  ownInode: number;
}

export function adviceReport(a: Advice, c: ReportContext): string {
  const lines: string[] = [];
  lines.push(`ctstorm advise: from ${c.source} (${fmt(c.watchedSeconds)} s of measurements)`);
  lines.push('');
  const averaged = c.averagedSeconds === null
    ? 'no time average from this source: a netns holds at least its count now'
    : `a netns holds at least its count averaged over the ${fmt(Math.round(c.averagedSeconds))} s since the first census`;
  lines.push(`Steady state (Little's law: entries = inserts/s x mean time in the table; ${averaged})`);
  for (const n of a.netns.slice(0, 10)) {
    const parts = n.protocols
      .filter((p) => p.insertsPerSecond > 0)
      .map((p) => `${p.proto} ${p.insertsPerSecond.toFixed(1)}/s x ${secs(p.meanLifetimeSeconds)} = ${p.entries === null ? 'lifetime unknown' : fmt(p.entries)}`);
    lines.push(`  netns ${n.inode}${n.inode === c.ownInode ? ' (ctstorm\'s)' : ''}: ${fmt(n.steady)} entries (now ${n.measured === null ? '-' : fmt(n.measured)}, averaged ${n.averaged === null ? '-' : fmt(n.averaged)}${n.stormGrowth > 0 ? ' with a storm in it' : ''}, modeled ${fmt(n.modeled)}${n.stormGrowth > 0 ? ' outside the storms' : ''})${parts.length ? `: ${parts.join('; ')}` : ''}`);
  }
  if (a.netns.length > 10) lines.push(`  ... and ${a.netns.length - 10} more netns`);
  lines.push('');
  lines.push('Peak');
  lines.push(`  fullest netns at the peak: ${a.fullest ? `${a.fullest.inode}, ${fmt(a.fullest.steady)} entries in steady state` : '-'}`);
  lines.push(a.storm ? `  storms seen: the largest grew this netns by ${fmt(a.storm.growth)} entries while it ran (its inserts then, less the storm's share destroyed)` : '  no storm seen while watched');
  if (a.whatIf) {
    lines.push(`  what-if: ${fmt(a.whatIf.reconnects)} reconnects within ${a.whatIf.withinSeconds} s, ${pct(a.whatIf.aliveFraction)} of them still in the table at the end (measured lifetimes): ${fmt(a.whatIf.entries)} entries`);
  }
  const setBy = { now: 'its count now', storm: 'its steady state + its storm growth', 'what-if': 'the what-if', none: 'no netns' }[a.requiredBy];
  lines.push(`  needed in the fullest netns: ${fmt(a.required)} entries, set by ${setBy} (the largest of its count now, its steady state + its storm growth${a.whatIf ? ', and the what-if' : ''})`);
  lines.push('');
  lines.push('nf_conntrack_max (checked against each netns\'s own count)');
  lines.push(
    a.max.raise
      ? `  raise ${fmt(a.max.current)} -> ${fmt(a.max.recommended)}: ${fmt(a.required)} needed + ${pct(a.max.headroom)} headroom`
      : `  keep ${fmt(a.max.current)}: ${fmt(a.required)} needed + ${pct(a.max.headroom)} headroom fits (${pct(a.max.headroomLeft)} of the limit left at the peak)`,
  );
  lines.push('');
  lines.push('nf_conntrack_buckets (one hash shared by every netns)');
  const b = a.buckets;
  const measured = b.measuredChain === null ? '' : `, inserts joined chains of ${b.measuredChain.toFixed(2)} while watched`;
  lines.push(
    b.raise
      ? `  raise ${fmt(b.current)} -> ${fmt(b.recommended)} (a power of two): ${fmt(b.totalEntries)} entries at the peak, ${(b.totalEntries / b.recommended).toFixed(2)} per bucket, a new node joins a chain of ${b.expectedChain.toFixed(2)} on average (${b.expectedChainAtPeakNow.toFixed(2)} with today's buckets)`
      : `  keep ${fmt(b.current)}: ${fmt(b.totalEntries)} entries at the peak, ${(b.totalEntries / Math.max(1, b.current)).toFixed(2)} per bucket, a new node joins a chain of ${b.expectedChainAtPeakNow.toFixed(2)} on average`,
  );
  lines.push(`  today: uniform hashing gives chains of ${b.expectedChainNow.toFixed(2)} nodes${measured}`);
  if (b.raise) lines.push('  (a resize rehashes the whole table under a lock: --apply leaves it to you, do it off-peak)');
  lines.push('');
  lines.push(`Timeouts in netns ${c.targetInode} (each pins rate x timeout entries; lowering frees rate x the difference)`);
  if (a.timeouts.length === 0) lines.push('  none worth lowering: no timeout above its proposed value holds 1 % of the entries');
  for (const t of a.timeouts) {
    lines.push(`  ${t.key} ${fmt(t.current)} -> ${fmt(t.proposed)}: frees ${fmt(t.freed)} of the ${fmt(t.pinned)} entries it holds; risk: ${t.risk}`);
  }
  lines.push('');
  const m = a.memory;
  lines.push('Memory (the kernel\'s own sizes)');
  lines.push(`  per entry ${m.cost.perEntryBytes} bytes: object ${m.cost.objectBytes} (${m.cost.objectSource}) + extensions ${m.cost.extensionBytes} (${m.cost.extensionSource}); per bucket ${m.cost.bucketBytes}`);
  if (m.nowBytes !== null) lines.push(`  now: ${mib(m.nowBytes)}`);
  lines.push(`  at the peak, every netns: ${mib(m.peakBytes)} (hash ${mib(m.hashBytes)}); the fullest netns at the limit alone: ${mib(m.fullestAtLimitBytes)}`);
  if (a.notes.length) {
    lines.push('');
    lines.push('Notes');
    for (const n of a.notes) lines.push(`  ${n}`);
  }
  return lines.join('\n');
}

/** The settings the advice changes in a netns, current -> advised. Limit and
 * buckets are global (initial netns only); timeouts are per netns. */
export function adviceChanges(a: Advice, initialNetns: boolean): Array<{ key: string; from: number; to: number }> {
  const out: Array<{ key: string; from: number; to: number }> = [];
  if (initialNetns && a.max.raise) out.push({ key: 'nf_conntrack_max', from: a.max.current, to: a.max.recommended });
  if (initialNetns && a.buckets.raise) out.push({ key: 'nf_conntrack_buckets', from: a.buckets.current, to: a.buckets.recommended });
  for (const t of a.timeouts) out.push({ key: t.key, from: t.current, to: t.proposed });
  return out;
}

export interface SnippetContext {
  /** The netns advised is the initial one (sysctl.d sets it). */
  initial: boolean;
  /** The netns advised, when not ctstorm's: its name and the command that enters it. */
  target?: { name: string; enter: string };
  /** nf_conntrack is a loadable module (sysctl.d may run before it loads). */
  conntrackModule: boolean;
}

/** A ready /etc/sysctl.d/ file: the global keys (limit, buckets) always, the
 * timeouts too when the netns advised is the initial one; another netns's
 * timeouts as commands to run there (sysctl.d does not reach it). */
export function sysctlSnippet(a: Advice, changes: Array<{ key: string; from: number; to: number }>, date: string, ctx: SnippetContext): string {
  const global = new Set(['nf_conntrack_max', 'nf_conntrack_buckets']);
  const lines = [
    `# /etc/sysctl.d/90-conntrack.conf, written by ctstorm advise on ${date}:`,
    `# ${fmt(a.required)} entries needed in the fullest netns + ${pct(a.max.headroom)} headroom.`,
  ];
  if (ctx.conntrackModule) {
    lines.push('# nf_conntrack is a module: list it in /etc/modules-load.d/ so it is loaded');
    lines.push('# before systemd-sysctl runs, or these keys do not exist yet at boot.');
  }
  const globals: Array<[string, number]> = [];
  if (a.max.raise) globals.push(['nf_conntrack_max', a.max.recommended]);
  if (a.buckets.raise) globals.push(['nf_conntrack_buckets', a.buckets.recommended]);
  const timeouts = changes.filter((c) => !global.has(c.key));
  if (globals.length === 0 && (timeouts.length === 0 || !ctx.initial)) lines.push('# no global setting to change');
  for (const [key, value] of globals) lines.push(`${sysctlName(key)} = ${value}`);
  if (ctx.initial) {
    for (const c of timeouts) lines.push(`${sysctlName(c.key)} = ${c.to}`);
  } else if (timeouts.length > 0) {
    lines.push(`# Timeouts of netns ${ctx.target?.name ?? '?'} (per netns; sysctl.d sets only the initial one):`);
    for (const c of timeouts) lines.push(`#   ${ctx.target?.enter ?? 'nsenter --net=PATH'} sysctl -w ${sysctlName(c.key)}=${c.to}`);
  }
  return lines.join('\n');
}
