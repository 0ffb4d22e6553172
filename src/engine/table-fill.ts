// Entries and fill per netns, without scanning /proc: a census gives every
// netns's count at one moment, and the exact insert/destroy counters carry it
// forward. The kernel compares each netns's own count with nf_conntrack_max, so
// the fullest netns is the one that drops packets; the sum is what costs memory.
import type { NetnsProtoCounts } from '../counters.js';

/** One key per netns: the cookie (never reused), or minus the inode on kernels
 * without cookies (before 5.12). */
export function netnsKey(cookie: number, inode: number): number {
  return cookie !== 0 ? cookie : -inode;
}

export interface NetnsFill {
  cookie: number;
  inode: number;
  entries: number;
  /** Of nf_conntrack_max; null when the kernel has no limit (max 0). */
  fillPercent: number | null;
  /** Inserts minus destroys per second over the last 10 s. */
  netPerSecond: number;
  /** At that growth; null when not growing or no limit. */
  secondsToFull: number | null;
}

export interface TableFill {
  /** False until a census has given the starting counts. */
  known: boolean;
  /** Entries in every netns together. */
  total: number | null;
  /** Namespaces holding entries, fullest first. */
  netns: NetnsFill[];
  fullest: NetnsFill | null;
}

/** Inserts minus destroys per netns, summed over protocols. */
export function netByNetns(rows: readonly NetnsProtoCounts[]): Map<number, { cookie: number; inode: number; net: number }> {
  const out = new Map<number, { cookie: number; inode: number; net: number }>();
  for (const r of rows) {
    const key = netnsKey(r.cookie, r.inode);
    const cur = out.get(key) ?? { cookie: r.cookie, inode: r.inode, net: 0 };
    cur.net += r.inserts - r.destroys;
    out.set(key, cur);
  }
  return out;
}

/** What to add to a netns's counted inserts minus destroys to get its entries:
 * its census count minus its counters at the census. */
export function fillBaseline(
  census: ReadonlyArray<{ cookie: number; inode: number; entries: number }>,
  countersAtCensus: readonly NetnsProtoCounts[],
): Map<number, number> {
  const base = new Map<number, number>();
  for (const [key, { net }] of netByNetns(countersAtCensus)) base.set(key, -net);
  for (const n of census) {
    const key = netnsKey(n.cookie, n.inode);
    base.set(key, (base.get(key) ?? 0) + n.entries);
  }
  return base;
}

export interface FillInput {
  max: number;
  /** From fillBaseline; null before the first census. */
  baseline: ReadonlyMap<number, number> | null;
  /** Census rows (for namespaces the counters have not seen since). */
  censusNetns: ReadonlyArray<{ cookie: number; inode: number }>;
  counters: readonly NetnsProtoCounts[];
  /** Net growth per netns key, entries/s. */
  growth: ReadonlyMap<number, number>;
}

export function tableFill(input: FillInput): TableFill {
  if (!input.baseline) return { known: false, total: null, netns: [], fullest: null };
  const names = new Map<number, { cookie: number; inode: number }>();
  for (const n of input.censusNetns) names.set(netnsKey(n.cookie, n.inode), { cookie: n.cookie, inode: n.inode });
  const net = netByNetns(input.counters);
  for (const [key, n] of net) names.set(key, { cookie: n.cookie, inode: n.inode });
  const rows: NetnsFill[] = [];
  let total = 0;
  for (const [key, name] of names) {
    // A race between the census and the counters can leave a count a little
    // below zero on a busy table: a netns never holds fewer than none.
    const entries = Math.max(0, (input.baseline.get(key) ?? 0) + (net.get(key)?.net ?? 0));
    const growth = input.growth.get(key) ?? 0;
    total += entries;
    if (entries === 0 && growth === 0) continue;
    const limited = input.max > 0;
    rows.push({
      ...name,
      entries,
      fillPercent: limited ? (100 * entries) / input.max : null,
      netPerSecond: growth,
      secondsToFull: limited && growth > 0 ? Math.max(0, input.max - entries) / growth : null,
    });
  }
  rows.sort((a, b) => b.entries - a.entries || a.inode - b.inode);
  return { known: true, total, netns: rows, fullest: rows[0] ?? null };
}
