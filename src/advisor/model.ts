// The tuning model: pure (measurements and settings in, advice out).
// - Steady state per netns and protocol by Little's law: entries = insert rate x
//   mean time in the table (the mean lifetime of the entries destroyed while
//   watched). A netns holds at least what the census counted there.
// - The peak adds the largest net growth a storm brought (inserts - destroys
//   while it ran), and a what-if storm adds N reconnects in W seconds times the
//   share of them still in the table at the window's end (from the measured
//   lifetime distribution).
// - The limit is per netns: nf_conntrack_max is sized for the fullest netns plus
//   headroom; the hash is shared by all netns, so buckets are sized for the total.
// - A timeout pins (rate of entries ending by it) x (timeout) entries: lowering
//   it from t to t' frees rate x (t - t').
import { EXPORT_EDGES_SECONDS } from '../engine/histogram.js';
import type { EntryCost } from './memory.js';
import type { ConntrackSettings } from './settings.js';

export interface Measurements {
  durationSeconds: number;
  netns: Array<{
    inode: number;
    /** Census count carried forward; null before a census. */
    entries: number | null;
    /** Inserts per second now (the 60 s window, or the whole watch if shorter). */
    insertsPerSecond: number;
    protocols: Array<{ proto: string; inserts: number }>;
  }>;
  /** Entries destroyed while watched, by protocol and final TCP state. */
  lifetimes: Array<{ proto: string; state?: string; count: number; sum: number; max: number | null; predating: number; meanSeconds?: number | null }>;
  /** The same as cumulative counts at EXPORT_EDGES_SECONDS. */
  lifetimeHistograms: Array<{ proto: string; state?: string; cumulative: number[]; count: number }>;
  storms: Array<{ inserts: number; destroys: number; peakPerSecond: number }>;
  /** Chain lengths inserts joined (nodes -> count). */
  chains: Record<number, number>;
  /** Entries in every netns together; null before a census. */
  totalEntries: number | null;
}

export interface AdviseOptions {
  /** Extra room over the entries needed, e.g. 0.5 for 50 %. */
  headroom: number;
  whatIf?: { reconnects: number; withinSeconds: number };
  /** The netns whose timeouts are advised (its inode); its settings are `targetSettings`. */
  targetInode: number;
}

export interface TimeoutAdvice {
  key: string;
  current: number;
  proposed: number;
  /** Entries this timeout holds in the target netns now (rate x timeout). */
  pinned: number;
  /** Entries the proposed value frees there. */
  freed: number;
  risk: string;
}

export interface NetnsAdvice {
  inode: number;
  measured: number | null;
  /** Sum over protocols of rate x mean lifetime, for the protocols with a lifetime. */
  modeled: number;
  /** max(measured, modeled): what the netns holds in steady state. */
  steady: number;
  protocols: Array<{ proto: string; insertsPerSecond: number; meanLifetimeSeconds: number | null; entries: number | null }>;
}

export interface Advice {
  netns: NetnsAdvice[];
  fullest: { inode: number; steady: number } | null;
  storm: { growth: number } | null;
  whatIf: { reconnects: number; withinSeconds: number; aliveFraction: number; entries: number } | null;
  /** Entries the fullest netns must hold: steady + the larger of storm growth and what-if. */
  required: number;
  max: { current: number; recommended: number; headroom: number; raise: boolean; headroomLeft: number };
  buckets: {
    current: number;
    recommended: number;
    raise: boolean;
    /** Entries of all netns at the peak. */
    totalEntries: number;
    /** Mean chain a new node joins at recommended and at current buckets (1 + 2n/B). */
    expectedChain: number;
    expectedChainNow: number;
    /** Mean chain inserts joined while watched; null without chain data. */
    measuredChain: number | null;
  };
  timeouts: TimeoutAdvice[];
  memory: { cost: EntryCost; nowBytes: number | null; peakBytes: number; fullestAtLimitBytes: number; hashBytes: number };
  notes: string[];
}

interface Target {
  proposed: number;
  risk: string;
  /** Proposed only when lifetimes seen allow it (no flow of the class lived longer). */
  needsLifetimesUnder?: boolean;
}

/** Values proposed for timeouts that are higher, with what lowering them risks. */
export const TIMEOUT_TARGETS: Record<string, Target> = {
  nf_conntrack_tcp_timeout_established: {
    proposed: 86400,
    risk: 'TCP flows idle for over 24 h lose their entry (kube-proxy sets 86400)',
    needsLifetimesUnder: true,
  },
  nf_conntrack_tcp_timeout_close_wait: { proposed: 600, risk: 'a half-closed connection silent for over 10 min loses its entry' },
  nf_conntrack_tcp_timeout_time_wait: { proposed: 60, risk: 'a 4-tuple reused 60-120 s after close is tracked as new (Linux TIME_WAIT is 60 s)' },
  nf_conntrack_tcp_timeout_fin_wait: { proposed: 60, risk: 'a peer slower than 60 s to finish closing loses its entry' },
  nf_conntrack_tcp_timeout_syn_sent: { proposed: 60, risk: 'connection attempts retried for over 60 s are tracked anew' },
  nf_conntrack_udp_timeout: { proposed: 30, risk: 'a UDP exchange whose answer comes after 30 s is tracked anew' },
  nf_conntrack_udp_timeout_stream: { proposed: 120, risk: 'UDP streams silent for over 120 s (keepalives slower than that) lose their entry' },
  nf_conntrack_icmp_timeout: { proposed: 30, risk: 'an ICMP echo answered after 30 s is not matched' },
  nf_conntrack_generic_timeout: { proposed: 600, risk: 'flows of other protocols silent for over 10 min lose their entry' },
};

const TCP_STATE_KEYS: Record<string, string> = {
  established: 'nf_conntrack_tcp_timeout_established',
  time_wait: 'nf_conntrack_tcp_timeout_time_wait',
  close_wait: 'nf_conntrack_tcp_timeout_close_wait',
  fin_wait: 'nf_conntrack_tcp_timeout_fin_wait',
  last_ack: 'nf_conntrack_tcp_timeout_last_ack',
  syn_sent: 'nf_conntrack_tcp_timeout_syn_sent',
  syn_recv: 'nf_conntrack_tcp_timeout_syn_recv',
  close: 'nf_conntrack_tcp_timeout_close',
};

/** A timeout is worth lowering when it frees at least this share of the netns's entries. */
const MIN_FREED_SHARE = 0.01;
/** Buckets: at most one entry per bucket at the peak (the kernel's own default ratio). */
const ENTRIES_PER_BUCKET = 1;

const nextPow2 = (n: number): number => 2 ** Math.ceil(Math.log2(Math.max(1, n)));
const roundUp = (n: number, to: number): number => Math.ceil(n / to) * to;

/** Mean lifetime per protocol (entries destroyed while watched, each state's
 * mean corrected for the watch's length where the engine gave one); null when
 * none ended. */
export function meanLifetimes(m: Measurements): Map<string, number | null> {
  const acc = new Map<string, { count: number; sum: number }>();
  for (const l of m.lifetimes) {
    const a = acc.get(l.proto) ?? { count: 0, sum: 0 };
    a.count += l.count;
    a.sum += l.count > 0 ? (l.meanSeconds ?? l.sum / l.count) * l.count : 0;
    acc.set(l.proto, a);
  }
  return new Map([...acc].map(([p, a]) => [p, a.count > 0 ? a.sum / a.count : null]));
}

/** P(lifetime > s) from cumulative counts at the export edges, linear between edges. */
export function survival(cumulative: readonly number[], count: number, s: number): number {
  if (count <= 0) return 1;
  const edges = EXPORT_EDGES_SECONDS;
  let prevEdge = 0;
  let prevCum = 0;
  for (let i = 0; i < edges.length; i++) {
    const edge = edges[i]!;
    const cum = cumulative[i] ?? prevCum;
    if (s <= edge) return 1 - (prevCum + ((cum - prevCum) * (s - prevEdge)) / (edge - prevEdge)) / count;
    prevEdge = edge;
    prevCum = cum;
  }
  return 1 - prevCum / count;
}

/** Share of N inserts spread evenly over W seconds still in the table at W:
 * (1/W) x integral over [0, W] of P(lifetime > s), lifetimes of every protocol pooled. */
export function aliveFraction(m: Measurements, withinSeconds: number): number {
  const hists = m.lifetimeHistograms.filter((h) => h.count > 0);
  const total = hists.reduce((n, h) => n + h.count, 0);
  if (total === 0) return 1; // no lifetime seen: every reconnect stays
  if (withinSeconds <= 0) return 1;
  const steps = 1000;
  let integral = 0;
  for (let i = 0; i < steps; i++) {
    const s = ((i + 0.5) / steps) * withinSeconds;
    integral += hists.reduce((acc, h) => acc + h.count * survival(h.cumulative, h.count, s), 0) / total;
  }
  return integral / steps;
}

function netnsAdvice(m: Measurements, means: Map<string, number | null>): NetnsAdvice[] {
  return m.netns.map((n) => {
    const inserts = n.protocols.reduce((acc, p) => acc + p.inserts, 0);
    const protocols = n.protocols.map((p) => {
      const rate = inserts > 0 ? (n.insertsPerSecond * p.inserts) / inserts : 0;
      const mean = means.get(p.proto) ?? null;
      return { proto: p.proto, insertsPerSecond: rate, meanLifetimeSeconds: mean, entries: mean === null ? null : rate * mean };
    });
    const modeled = protocols.reduce((acc, p) => acc + (p.entries ?? 0), 0);
    return { inode: n.inode, measured: n.entries, modeled, steady: Math.max(n.entries ?? 0, modeled), protocols };
  });
}

/** The timeouts of the target netns worth lowering, most entries freed first. */
function timeoutAdvice(m: Measurements, target: NetnsAdvice | undefined, settings: ConntrackSettings): TimeoutAdvice[] {
  if (!target) return [];
  const rate = (proto: string): number => target.protocols.filter((p) => p.proto === proto).reduce((n, p) => n + p.insertsPerSecond, 0);
  // Rate of entries ending by each timeout.
  const byKey = new Map<string, number>();
  const add = (key: string, r: number): void => void byKey.set(key, (byKey.get(key) ?? 0) + r);
  // TCP: the insert rate split by the final states destroys ended in.
  const tcp = m.lifetimes.filter((l) => l.proto === 'tcp' && l.state);
  const tcpDestroys = tcp.reduce((n, l) => n + l.count + l.predating, 0);
  for (const l of tcp) {
    const key = TCP_STATE_KEYS[l.state!];
    if (key && tcpDestroys > 0) add(key, (rate('tcp') * (l.count + l.predating)) / tcpDestroys);
  }
  // UDP: entries living past 1.5 x udp_timeout had a reply (the stream timeout).
  const udpRate = rate('udp');
  if (udpRate > 0) {
    const unrepliedTimeout = settings.nf_conntrack_udp_timeout ?? 30;
    const h = m.lifetimeHistograms.find((x) => x.proto === 'udp');
    const stream = h && h.count > 0 ? survival(h.cumulative, h.count, 1.5 * unrepliedTimeout) : 0;
    add('nf_conntrack_udp_timeout', udpRate * (1 - stream));
    add('nf_conntrack_udp_timeout_stream', udpRate * stream);
  }
  add('nf_conntrack_icmp_timeout', rate('icmp'));
  const others = target.protocols.filter((p) => !['tcp', 'udp', 'icmp', 'icmpv6'].includes(p.proto)).reduce((n, p) => n + p.insertsPerSecond, 0);
  add('nf_conntrack_generic_timeout', others);

  const tcpLongest = Math.max(0, ...m.lifetimes.filter((l) => l.proto === 'tcp').map((l) => l.max ?? 0));
  const out: TimeoutAdvice[] = [];
  for (const [key, r] of byKey) {
    const t = TIMEOUT_TARGETS[key];
    const current = settings[key];
    if (!t || current === undefined || r <= 0 || t.proposed >= current) continue;
    if (t.needsLifetimesUnder && tcpLongest >= t.proposed) continue;
    const pinned = r * current;
    const freed = r * (current - t.proposed);
    if (freed < Math.max(1, MIN_FREED_SHARE * target.steady)) continue;
    out.push({ key, current, proposed: t.proposed, pinned, freed, risk: t.risk });
  }
  return out.sort((a, b) => b.freed - a.freed);
}

function meanChain(chains: Record<number, number>): number | null {
  let count = 0;
  let sum = 0;
  for (const [len, n] of Object.entries(chains)) {
    count += n;
    sum += Number(len) * n;
  }
  return count > 0 ? sum / count : null;
}

/** The whole advice. `settings`: ctstorm's netns (limit and buckets are global);
 * `targetSettings`: the netns whose timeouts are advised. */
export function advise(m: Measurements, settings: ConntrackSettings, targetSettings: ConntrackSettings, cost: EntryCost, o: AdviseOptions): Advice {
  const notes: string[] = [];
  const means = meanLifetimes(m);
  // A netns the census finds empty has no traffic now (gone, or idle): its rates
  // are history, not a steady state.
  const all = netnsAdvice(m, means);
  const netns = all.filter((n) => n.measured !== 0).sort((a, b) => b.steady - a.steady);
  if (netns.length < all.length) notes.push(`${all.length - netns.length} netns with no entries now (gone or idle) left out`);
  const fullest = netns[0] ? { inode: netns[0].inode, steady: netns[0].steady } : null;
  for (const [proto, mean] of means) if (mean === null) notes.push(`no ${proto} entry ended while watched: ${proto}'s steady state is the census count (watch longer than its lifetimes)`);
  for (const n of netns) for (const p of n.protocols) if (p.meanLifetimeSeconds === null && p.insertsPerSecond > 0 && !means.has(p.proto)) notes.push(`no ${p.proto} entry ended while watched: its steady state is the census count`);
  if (m.netns.some((n) => n.entries === null)) notes.push('no census yet: entries per netns are modeled only');
  const longest = Math.max(0, ...m.lifetimes.map((l) => l.max ?? 0));
  if (longest > m.durationSeconds / 3) {
    notes.push(`lifetimes up to ${longest.toFixed(0)} s in a ${m.durationSeconds.toFixed(0)} s watch: means are corrected for it, but watch 3x the longest lifetime (or use --from a long-running serve) for a firm model`);
  }

  const growth = Math.max(0, ...m.storms.map((s) => s.inserts - s.destroys));
  const storm = m.storms.length > 0 ? { growth } : null;
  let whatIf: Advice['whatIf'] = null;
  if (o.whatIf) {
    const f = aliveFraction(m, o.whatIf.withinSeconds);
    whatIf = { ...o.whatIf, aliveFraction: f, entries: (fullest?.steady ?? 0) + o.whatIf.reconnects * f };
  }
  const steady = fullest?.steady ?? 0;
  const required = Math.ceil(steady + Math.max(growth, whatIf ? whatIf.entries - steady : 0));

  const currentMax = settings.nf_conntrack_max ?? 0;
  const wanted = roundUp(Math.max(1, required * (1 + o.headroom)), 1024);
  const raise = currentMax > 0 && wanted > currentMax;
  const max = { current: currentMax, recommended: raise ? wanted : currentMax, headroom: o.headroom, raise, headroomLeft: currentMax > 0 ? 1 - required / currentMax : 0 };
  if (currentMax === 0) notes.push('nf_conntrack_max is 0 (no limit): every netns can grow until memory runs out');

  const totalSteady = Math.max(m.totalEntries ?? 0, netns.reduce((n, x) => n + x.steady, 0));
  const totalPeak = Math.ceil(totalSteady + (required - steady));
  const currentBuckets = settings.nf_conntrack_buckets ?? 0;
  const wantedBuckets = nextPow2(Math.max(max.recommended, totalPeak) / ENTRIES_PER_BUCKET);
  const raiseBuckets = wantedBuckets > currentBuckets;
  const bucketsRecommended = raiseBuckets ? wantedBuckets : currentBuckets;
  const buckets = {
    current: currentBuckets,
    recommended: bucketsRecommended,
    raise: raiseBuckets,
    totalEntries: totalPeak,
    expectedChain: 1 + (2 * totalPeak) / Math.max(1, bucketsRecommended),
    expectedChainNow: 1 + (2 * totalPeak) / Math.max(1, currentBuckets),
    measuredChain: meanChain(m.chains),
  };

  const target = netns.find((n) => n.inode === o.targetInode);
  const timeouts = timeoutAdvice(m, target, targetSettings);

  const memory = {
    cost,
    nowBytes: m.totalEntries === null ? null : m.totalEntries * cost.perEntryBytes + currentBuckets * cost.bucketBytes,
    peakBytes: totalPeak * cost.perEntryBytes + bucketsRecommended * cost.bucketBytes,
    fullestAtLimitBytes: max.recommended * cost.perEntryBytes,
    hashBytes: bucketsRecommended * cost.bucketBytes,
  };
  return { netns, fullest, storm, whatIf, required, max, buckets, timeouts, memory, notes: [...new Set(notes)] };
}
