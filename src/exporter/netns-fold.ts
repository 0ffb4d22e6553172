// Per netns x protocol counter series with a bounded number of netns labels,
// none of which ever goes down between scrapes (Prometheus reads a drop in a
// counter as a restart and counts the whole value again).
//
// Which netns gets its own label is decided once, when the netns is first seen:
// the new netns with the most inserts (ties: lowest inode) take the free label
// slots, the others go to netns="other" for good. Re-ranking every scrape would
// move rows between series and make "other" drop. A netns keeps its label until
// it has no row left (its retired rows were evicted): its series then disappear,
// which Prometheus handles, and the slot is free for a netns seen later.
// ctstorm's own netns has a label from the start, and its tcp/udp/icmp series
// exist at 0 before the first event (a quiet node still has the series).
//
// Each series is `base + sum of its rows now`: when a row disappears, or its
// count drops (a retired part evicted under a live row), what was lost goes into
// base, so a series grows by exactly its rows' increases.
import type { NetnsProtoCounts } from '../counters.js';

export interface CounterSeries {
  netns: string;
  protocol: string;
  inserts: number;
  destroys: number;
  lost: number;
}

type Counts = { inserts: number; destroys: number; lost: number };
const FIELDS = ['inserts', 'destroys', 'lost'] as const;
const zero = (): Counts => ({ inserts: 0, destroys: 0, lost: 0 });
const rowKey = (r: NetnsProtoCounts): string => `${r.cookie}/${r.inode}/${r.l4proto}`;

interface Series {
  netns: string;
  protocol: string;
  /** What rows that left the series (or dropped) had counted. */
  base: Counts;
  /** Each row's counts at the last fold. */
  rows: Map<string, Counts>;
}

/** Protocols whose series exist from the start for ctstorm's own netns. */
export const PRECREATED_PROTOCOLS = ['tcp', 'udp', 'icmp'];

export class NetnsFold {
  /** Netns with their own label (`pinned` included), at most maxNetns. */
  private readonly labelled = new Set<number>();
  /** Netns counted in "other" for good (while they have rows). */
  private readonly folded = new Set<number>();
  private readonly series = new Map<string, Series>();
  private last: { rows: readonly NetnsProtoCounts[]; out: CounterSeries[] } | undefined;

  /** `pinned`: ctstorm's own netns inode, labelled from the start (one of the maxNetns). */
  constructor(
    private readonly maxNetns: number,
    private readonly protocolLabel: (l4proto: number) => string,
    private readonly pinned?: number,
  ) {
    if (pinned !== undefined && maxNetns > 0) {
      this.labelled.add(pinned);
      for (const protocol of PRECREATED_PROTOCOLS) this.seriesFor(String(pinned), protocol);
    }
  }

  /** The series for one reading of the counters (the same array again: the same answer). */
  fold(rows: readonly NetnsProtoCounts[]): CounterSeries[] {
    if (this.last?.rows === rows) return this.last.out;
    this.assignLabels(rows);
    const now = new Map<Series, Map<string, Counts>>();
    for (const r of rows) {
      const s = this.seriesFor(this.labelled.has(r.inode) ? String(r.inode) : 'other', this.protocolLabel(r.l4proto));
      let counts = now.get(s);
      if (!counts) now.set(s, (counts = new Map()));
      const c = counts.get(rowKey(r)) ?? zero();
      for (const f of FIELDS) c[f] += r[f];
      counts.set(rowKey(r), c);
    }
    const out: CounterSeries[] = [];
    for (const s of this.series.values()) {
      const current = now.get(s) ?? new Map<string, Counts>();
      for (const [key, before] of s.rows) {
        const c = current.get(key) ?? zero();
        for (const f of FIELDS) s.base[f] += Math.max(0, before[f] - c[f]);
      }
      s.rows = current;
      const total = { ...s.base };
      for (const c of current.values()) for (const f of FIELDS) total[f] += c[f];
      out.push({ netns: s.netns, protocol: s.protocol, ...total });
    }
    // Most inserts first, "other" last: stable output for people reading /metrics.
    out.sort((a, b) => Number(a.netns === 'other') - Number(b.netns === 'other') || b.inserts - a.inserts || a.protocol.localeCompare(b.protocol) || a.netns.localeCompare(b.netns));
    this.last = { rows, out };
    return out;
  }

  /** Netns with a label of their own after the last fold (for series that name them). */
  labelledNetns(): ReadonlySet<number> {
    return this.labelled;
  }

  private assignLabels(rows: readonly NetnsProtoCounts[]): void {
    const inserts = new Map<number, number>();
    for (const r of rows) inserts.set(r.inode, (inserts.get(r.inode) ?? 0) + r.inserts);
    // A netns with no row left can count nothing more: its label (and its
    // series) go, and an inode reused later is a new netns.
    for (const inode of this.labelled) {
      if (inode === this.pinned || inserts.has(inode)) continue;
      this.labelled.delete(inode);
      for (const [key, s] of this.series) if (s.netns === String(inode)) this.series.delete(key);
    }
    for (const inode of this.folded) if (!inserts.has(inode)) this.folded.delete(inode);
    const fresh = [...inserts].filter(([inode]) => !this.labelled.has(inode) && !this.folded.has(inode));
    fresh.sort(([ia, a], [ib, b]) => b - a || ia - ib);
    for (const [inode] of fresh) (this.labelled.size < this.maxNetns ? this.labelled : this.folded).add(inode);
  }

  private seriesFor(netns: string, protocol: string): Series {
    const key = `${netns}/${protocol}`;
    let s = this.series.get(key);
    if (!s) this.series.set(key, (s = { netns, protocol, base: zero(), rows: new Map() }));
    return s;
  }
}
