// The kernel's own conntrack statistics (/proc/net/stat/nf_conntrack): one row of
// hex counters per CPU, summed. O(CPUs), never a table scan. They say when the
// table is already losing packets (drop, early_drop, insert_failed, chaintoolong).
// The columns differ between kernels: whatever the header names is read.
import { readFileSync } from 'node:fs';

export type KernelStats = Record<string, number>;

/** Sums the per-CPU rows; `entries` (the table's count, not per CPU) is taken once. */
export function parseConntrackStat(text: string): KernelStats {
  const [header, ...rows] = text.trim().split('\n');
  const names = (header ?? '').trim().split(/\s+/).filter(Boolean);
  const out: KernelStats = {};
  for (const row of rows) {
    const cells = row.trim().split(/\s+/);
    names.forEach((name, i) => {
      const value = Number.parseInt(cells[i] ?? '', 16);
      if (!Number.isFinite(value)) return;
      if (name === 'entries') out[name] = value;
      else out[name] = (out[name] ?? 0) + value;
    });
  }
  return out;
}

/** This process's netns's statistics (the file is per netns). */
export function readConntrackStat(path = '/proc/net/stat/nf_conntrack'): KernelStats {
  return parseConntrackStat(readFileSync(path, 'utf8'));
}

/** Per-second rates of every counter between two readings (entries: the later value). */
export function statRates(before: KernelStats, after: KernelStats, seconds: number): KernelStats {
  const out: KernelStats = {};
  for (const [name, value] of Object.entries(after)) {
    out[name] = name === 'entries' ? value : Math.max(0, value - (before[name] ?? 0)) / seconds;
  }
  return out;
}

/** Each counter's growth between two readings (entries: the later value). */
export function statDeltas(before: KernelStats, after: KernelStats): KernelStats {
  const out: KernelStats = {};
  for (const [name, value] of Object.entries(after)) out[name] = name === 'entries' ? value : value - (before[name] ?? 0);
  return out;
}
