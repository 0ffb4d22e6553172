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
  /** Entries averaged over time since the first census (Little's law's L, measured
   * rather than modeled); null until a second has been averaged. */
  meanEntries: number | null;
}

export interface TableFill {
  /** False until a census has given the starting counts. */
  known: boolean;
  /** Entries in every netns together. */
  total: number | null;
  /** Namespaces holding entries (now or on average), fullest first. */
  netns: NetnsFill[];
  /** Seconds the time averages (meanEntries) cover at most: since the first census. */
  averagedSeconds: number;
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
  /** Entries per netns key now (entriesByNetns); null before the first census. */
  entries: ReadonlyMap<number, NetnsEntries> | null;
  /** Net growth per netns key, entries/s. */
  growth: ReadonlyMap<number, number>;
  /** Time-averaged entries per netns key (FillAverage). */
  means?: FillAverage;
}

/** Entries per netns key now: the census baseline plus the counters' inserts
 * minus destroys since, for every netns the census or the counters know. */
export interface NetnsEntries {
  cookie: number;
  inode: number;
  entries: number;
}

export function entriesByNetns(
  baseline: ReadonlyMap<number, number>,
  censusNetns: ReadonlyArray<{ cookie: number; inode: number }>,
  counters: readonly NetnsProtoCounts[],
): Map<number, NetnsEntries> {
  const out = new Map<number, NetnsEntries>();
  for (const n of censusNetns) out.set(netnsKey(n.cookie, n.inode), { cookie: n.cookie, inode: n.inode, entries: 0 });
  const net = netByNetns(counters);
  for (const [key, n] of net) out.set(key, { cookie: n.cookie, inode: n.inode, entries: 0 });
  for (const [key, row] of out) {
    // A race between the census and the counters can leave a count a little
    // below zero on a busy table: a netns never holds fewer than none.
    row.entries = Math.max(0, (baseline.get(key) ?? 0) + (net.get(key)?.net ?? 0));
  }
  return out;
}

/** Each netns's entries averaged over time, from samples taken as time passes
 * (every tick): a sample's count holds until the next one. Over a watch this is
 * the L of Little's law measured, which stays right when the kernel's GC reaps
 * late (entries then outlive their timeouts past the end of the watch, where no
 * lifetime is seen). A netns is averaged over the time since it was first
 * sampled (one created mid-watch is not diluted by the time before it existed);
 * one gone from the samples is forgotten. */
export class FillAverage {
  private readonly sums = new Map<number, { sum: number; firstMs: number }>();
  private last: { atMs: number; entries: ReadonlyMap<number, { entries: number }> } | null = null;
  private firstMs: number | null = null;

  sample(entries: ReadonlyMap<number, { entries: number }>, atMs: number): void {
    const last = this.last;
    if (last) {
      const dt = Math.max(0, atMs - last.atMs) / 1000;
      for (const [key, n] of last.entries) {
        const s = this.sums.get(key);
        if (s && entries.has(key)) s.sum += n.entries * dt;
      }
      for (const key of this.sums.keys()) if (!entries.has(key)) this.sums.delete(key);
    }
    for (const key of entries.keys()) if (!this.sums.has(key)) this.sums.set(key, { sum: 0, firstMs: atMs });
    this.firstMs ??= atMs;
    this.last = { atMs, entries };
  }

  /** Seconds averaged so far (the longest any netns has been). */
  get seconds(): number {
    return this.last && this.firstMs !== null ? (this.last.atMs - this.firstMs) / 1000 : 0;
  }

  /** The mean for a netns key over the time since it was first sampled; null
   * before a second of it has been averaged. */
  mean(key: number): number | null {
    const s = this.sums.get(key);
    if (!s || !this.last) return null;
    const seconds = (this.last.atMs - s.firstMs) / 1000;
    return seconds >= 1 ? s.sum / seconds : null;
  }
}

export function tableFill(input: FillInput): TableFill {
  if (!input.entries) return { known: false, total: null, netns: [], fullest: null, averagedSeconds: 0 };
  const rows: NetnsFill[] = [];
  let total = 0;
  for (const [key, { cookie, inode, entries }] of input.entries) {
    const growth = input.growth.get(key) ?? 0;
    const meanEntries = input.means?.mean(key) ?? null;
    total += entries;
    // A netns empty now but not on average (drained at the end) keeps its row.
    if (entries === 0 && growth === 0 && !(meanEntries !== null && meanEntries > 0)) continue;
    const limited = input.max > 0;
    rows.push({
      cookie,
      inode,
      entries,
      fillPercent: limited ? (100 * entries) / input.max : null,
      netPerSecond: growth,
      secondsToFull: limited && growth > 0 ? Math.max(0, input.max - entries) / growth : null,
      meanEntries,
    });
  }
  rows.sort((a, b) => b.entries - a.entries || a.inode - b.inode);
  return { known: true, total, netns: rows, fullest: rows[0] ?? null, averagedSeconds: input.means?.seconds ?? 0 };
}
