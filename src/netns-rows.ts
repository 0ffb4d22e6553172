// Keeps the probe's per-netns counter map to the namespaces that exist. A row
// whose netns is gone, that holds no live entry and has not moved since the last
// scan can receive no more events: it is deleted from the kernel map and kept
// here, so counters still report it, in bounded memory. Pure: the caller passes
// the live netns inodes and the time.
import type { NetnsProtoCounts } from './counters.js';

/** Rows retired at most; the oldest go first past it. */
export const MAX_RETIRED_ROWS = 4096;
/** Scans at most this often: listing every process's netns costs milliseconds. */
export const PRUNE_INTERVAL_MS = 60_000;

const rowKey = (r: NetnsProtoCounts): string => `${r.cookie}/${r.inode}/${r.l4proto}`;

/** Whether a row's netns is gone: its inode is no netns now, or the kernel gave
 * the inode to a newer netns, whose row is the one that moved since the last scan
 * (a netns's events end before its inode is freed; cookies are unique but not
 * ordered, so they cannot tell which is newer). */
function netnsGone(row: NetnsProtoCounts, liveInodes: ReadonlySet<number>, moved: ReadonlySet<string>): boolean {
  if (!liveInodes.has(row.inode)) return true;
  return row.cookie !== 0 && moved.has(`${row.inode}`) && !moved.has(`${row.inode}/${row.cookie}`);
}

export class NetnsRows {
  private readonly retired = new Map<string, NetnsProtoCounts>();
  private lastScan = new Map<string, NetnsProtoCounts>();
  private nextScanMs = 0;

  constructor(private readonly maxRetired = MAX_RETIRED_ROWS) {}

  /** Rows to delete from the kernel map now, or [] between scans; the caller
   * retire()s each one the kernel deleted. liveInodes is read only when a scan is due. */
  toRetire(rows: readonly NetnsProtoCounts[], nowMs: number, liveInodes: () => ReadonlySet<number>): NetnsProtoCounts[] {
    if (nowMs < this.nextScanMs) return [];
    this.nextScanMs = nowMs + PRUNE_INTERVAL_MS;
    const live = liveInodes();
    const previous = this.lastScan;
    this.lastScan = new Map(rows.map((r) => [rowKey(r), r]));
    const idle = (r: NetnsProtoCounts): boolean => {
      const before = previous.get(rowKey(r));
      return before !== undefined && before.inserts === r.inserts && before.destroys === r.destroys && before.lost === r.lost;
    };
    // Inodes, and inode/cookie pairs, with a row that moved since the last scan.
    const moved = new Set<string>();
    for (const r of rows) {
      if (idle(r)) continue;
      moved.add(`${r.inode}`);
      moved.add(`${r.inode}/${r.cookie}`);
    }
    const out = rows.filter((r) => idle(r) && r.destroys >= r.inserts && netnsGone(r, live, moved));
    return out;
  }

  /** The kernel's rows plus the retired ones (summed where a retired row came back). */
  merge(rows: readonly NetnsProtoCounts[]): NetnsProtoCounts[] {
    if (this.retired.size === 0) return [...rows];
    const out = new Map(rows.map((r) => [rowKey(r), { ...r }]));
    for (const [key, r] of this.retired) {
      const row = out.get(key);
      if (!row) out.set(key, { ...r });
      else {
        row.inserts += r.inserts;
        row.destroys += r.destroys;
        row.lost += r.lost;
      }
    }
    return [...out.values()];
  }

  get retiredCount(): number {
    return this.retired.size;
  }

  /** Keeps a row the kernel map no longer has. */
  retire(r: NetnsProtoCounts): void {
    const key = rowKey(r);
    const had = this.retired.get(key);
    this.retired.delete(key); // re-inserted last: the newest retired
    this.retired.set(key, had ? { ...r, inserts: had.inserts + r.inserts, destroys: had.destroys + r.destroys, lost: had.lost + r.lost } : { ...r });
    while (this.retired.size > this.maxRetired) {
      const oldest = this.retired.keys().next().value as string;
      this.retired.delete(oldest);
    }
  }
}
