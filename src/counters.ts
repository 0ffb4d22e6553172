// Exact kernel counters as the engine sees them, and the arithmetic on them.
// Pure: no I/O, so the CLI and the engine are testable without a kernel.

export interface Counts {
  inserts: number;
  destroys: number;
  lost: number;
}

export interface NetnsProtoCounts extends Counts {
  /** The netns cookie (never reused); 0 on kernels without one. */
  cookie: number;
  /** The netns inode, for people (the kernel reuses it). */
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
  /** Entries freed with IPS_CONFIRMED set that never were in the table (a ctnetlink
   * create that failed, clash losers on older kernels): neither inserts nor destroys. */
  neverHashed: number;
  /** Tracepoint mode: entries the sweep had no room to watch; their insert was reported when freed. */
  pendingOverflow: number;
  /** kprobe mode: an insert's kprobe and kretprobe did not pair up (the kernel skipped one). */
  insertUnpaired: number;
  /** Tracepoint mode: entries still unconfirmed 10 s after allocation, which the sweep
   * stopped watching; an insert of theirs is reported when they are freed. */
  pendingExpired: number;
  /** Runs of the probe's programs the kernel skipped (recursion on a CPU, kprobe misses):
   * events in them were not seen. */
  missedRuns: number;
}

export interface KernelCounters {
  protocols: Array<Counts & { l4proto: number }>;
  netns: NetnsProtoCounts[];
  health: Health;
  /** False when this kernel cannot report every skipped run (see Exactness). */
  missesVisible: boolean;
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

/** Names the probe's health slots (enum ctstorm_health order) and adds the missed runs. */
export function healthFromArray(values: readonly number[], missedRuns = 0): Health {
  return {
    unconfirmedFrees: values[0] ?? 0,
    untracked: values[1] ?? 0,
    netnsOverflow: values[2] ?? 0,
    unknownStart: values[3] ?? 0,
    natClashes: values[4] ?? 0,
    neverHashed: values[5] ?? 0,
    pendingOverflow: values[6] ?? 0,
    insertUnpaired: values[7] ?? 0,
    pendingExpired: values[8] ?? 0,
    missedRuns,
  };
}

export interface Exactness {
  /** False when ctstorm knows that events went uncounted. */
  exact: boolean;
  /** Why not, and what cannot be verified on this kernel. */
  notes: string[];
}

/** Whether the counters are exact, from the probe's own health counters. */
export function exactness(mode: string, c: Pick<KernelCounters, 'health' | 'missesVisible'>): Exactness {
  const h = c.health;
  const notes: string[] = [];
  if (h.missedRuns > 0) {
    notes.push(
      mode === 'tracepoint'
        ? `the kernel skipped ${h.missedRuns} nested runs of the slab tracepoints (of any cache): conntrack events may have been among them`
        : `the kernel skipped ${h.missedRuns} runs of the probe (recursion or kprobe misses): events in them were not counted`,
    );
  }
  if (h.insertUnpaired > 0) notes.push(`${h.insertUnpaired} inserts lost half of their kprobe/kretprobe pair`);
  if (mode === 'tracepoint' && h.untracked > 0) notes.push(`${h.untracked} new entries found the live map full: their inserts were not counted`);
  if (h.netnsOverflow > 0) notes.push(`${h.netnsOverflow} events found the per-netns counter map full: per-netns rows are incomplete (totals are not)`);
  const exact = notes.length === 0;
  if (!c.missesVisible) notes.push('this kernel does not report every skipped run (kprobe misses before 6.7, recursion before 5.12)');
  return { exact, notes };
}

export function totals(c: KernelCounters): Counts {
  return c.protocols.reduce((acc, p) => addCounts(acc, p), zeroCounts());
}

const nsKey = (n: { cookie: number; inode: number }, l4proto?: number): string => `${n.cookie}/${n.inode}/${l4proto ?? ''}`;

/** What happened between two readings of the counters (end - start). */
export function diffCounters(end: KernelCounters, start: KernelCounters): KernelCounters {
  const startProto = new Map(start.protocols.map((p) => [p.l4proto, p]));
  const startNs = new Map(start.netns.map((n) => [nsKey(n, n.l4proto), n]));
  const nonzero = (c: Counts): boolean => c.inserts !== 0 || c.destroys !== 0 || c.lost !== 0;
  return {
    protocols: end.protocols
      .map((p) => ({ l4proto: p.l4proto, ...subCounts(p, startProto.get(p.l4proto)) }))
      .filter(nonzero),
    netns: end.netns
      .map((n) => ({ cookie: n.cookie, inode: n.inode, l4proto: n.l4proto, ...subCounts(n, startNs.get(nsKey(n, n.l4proto))) }))
      .filter(nonzero),
    health: Object.fromEntries(
      Object.entries(end.health).map(([k, v]) => [k, v - start.health[k as keyof Health]]),
    ) as unknown as Health,
    missesVisible: end.missesVisible,
  };
}

export interface NetnsCounts extends Counts {
  cookie: number;
  inode: number;
  protocols: Array<Counts & { l4proto: number }>;
}

/** Per-netns rows (summed over protocols), most inserts first. */
export function byNetns(c: KernelCounters): NetnsCounts[] {
  const rows = new Map<string, NetnsCounts>();
  for (const n of c.netns) {
    let row = rows.get(nsKey(n));
    if (!row) {
      row = { cookie: n.cookie, inode: n.inode, ...zeroCounts(), protocols: [] };
      rows.set(nsKey(n), row);
    }
    addCounts(row, n);
    row.protocols.push({ l4proto: n.l4proto, inserts: n.inserts, destroys: n.destroys, lost: n.lost });
  }
  const out = [...rows.values()];
  for (const row of out) row.protocols.sort((a, b) => b.inserts - a.inserts || a.l4proto - b.l4proto);
  return out.sort((a, b) => b.inserts - a.inserts || b.destroys - a.destroys || a.inode - b.inode || a.cookie - b.cookie);
}
