// Exact kernel counters as the engine sees them, and the arithmetic on them.
// Pure: no I/O, so the CLI and the engine are testable without a kernel.

export interface Counts {
  inserts: number;
  destroys: number;
  lost: number;
}

export interface NetnsProtoCounts extends Counts {
  inode: number;
  l4proto: number;
}

/** Health counters kept by the probe (see enum ctstorm_health in bpf/ctstorm.h). */
export interface Health {
  /** Tracepoint mode: objects freed that were never inserted (clash losers, drops). */
  unconfirmedFrees: number;
  /** Entries the live map had no room for: their lifetime is unknown. */
  untracked: number;
  /** Rows the per-netns counter map had no room for. */
  netnsOverflow: number;
  /** Destroyed entries inserted before ctstorm started. */
  unknownStart: number;
  /** NAT clash losers freed: entries the kernel added beside a clash winner (reply
   * direction only, ~1 s); fentry/kprobe modes report their insert when they are freed. */
  natClashes: number;
}

export interface KernelCounters {
  protocols: Array<Counts & { l4proto: number }>;
  netns: NetnsProtoCounts[];
  health: Health;
}

export const zeroCounts = (): Counts => ({ inserts: 0, destroys: 0, lost: 0 });

export function addCounts(to: Counts, from: Counts): Counts {
  to.inserts += from.inserts;
  to.destroys += from.destroys;
  to.lost += from.lost;
  return to;
}

export function subCounts(a: Counts, b: Counts | undefined): Counts {
  if (!b) return { ...a };
  return { inserts: a.inserts - b.inserts, destroys: a.destroys - b.destroys, lost: a.lost - b.lost };
}

export function healthFromArray(values: readonly number[]): Health {
  return {
    unconfirmedFrees: values[0] ?? 0,
    untracked: values[1] ?? 0,
    netnsOverflow: values[2] ?? 0,
    unknownStart: values[3] ?? 0,
    natClashes: values[4] ?? 0,
  };
}

export function totals(c: KernelCounters): Counts {
  return c.protocols.reduce((acc, p) => addCounts(acc, p), zeroCounts());
}

const nsKey = (inode: number, l4proto: number): string => `${inode}/${l4proto}`;

/** What happened between two readings of the counters (end - start). */
export function diffCounters(end: KernelCounters, start: KernelCounters): KernelCounters {
  const startProto = new Map(start.protocols.map((p) => [p.l4proto, p]));
  const startNs = new Map(start.netns.map((n) => [nsKey(n.inode, n.l4proto), n]));
  const nonzero = (c: Counts): boolean => c.inserts !== 0 || c.destroys !== 0 || c.lost !== 0;
  return {
    protocols: end.protocols
      .map((p) => ({ l4proto: p.l4proto, ...subCounts(p, startProto.get(p.l4proto)) }))
      .filter(nonzero),
    netns: end.netns
      .map((n) => ({ inode: n.inode, l4proto: n.l4proto, ...subCounts(n, startNs.get(nsKey(n.inode, n.l4proto))) }))
      .filter(nonzero),
    health: Object.fromEntries(
      Object.entries(end.health).map(([k, v]) => [k, v - start.health[k as keyof Health]]),
    ) as unknown as Health,
  };
}

export interface NetnsCounts extends Counts {
  inode: number;
  protocols: Array<Counts & { l4proto: number }>;
}

/** Per-netns rows (summed over protocols), most inserts first. */
export function byNetns(c: KernelCounters): NetnsCounts[] {
  const rows = new Map<number, NetnsCounts>();
  for (const n of c.netns) {
    let row = rows.get(n.inode);
    if (!row) {
      row = { inode: n.inode, ...zeroCounts(), protocols: [] };
      rows.set(n.inode, row);
    }
    addCounts(row, n);
    row.protocols.push({ l4proto: n.l4proto, inserts: n.inserts, destroys: n.destroys, lost: n.lost });
  }
  const out = [...rows.values()];
  for (const row of out) row.protocols.sort((a, b) => b.inserts - a.inserts || a.l4proto - b.l4proto);
  return out.sort((a, b) => b.inserts - a.inserts || b.destroys - a.destroys || a.inode - b.inode);
}
