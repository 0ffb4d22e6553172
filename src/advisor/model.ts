// The tuning model: pure (measurements and settings in, advice out).
// - Steady state per netns and protocol by Little's law: entries = insert rate x
//   mean time in the table (the mean lifetime of the entries destroyed while
//   watched). A netns holds at least its count averaged over the watch: Little's
//   L measured, which the model misses when the kernel's GC reaps late (entries
//   outliving the watch end unseen).
// - With a storm in a netns, its steady state is the model alone, its insert rate
//   taken outside the storms (the counts and the last minute's rate hold the storm).
// - A netns's peak is the larger of its count now and its steady state plus its
//   share of the largest net growth a storm brought (inserts - destroys while it
//   ran); a what-if storm adds N reconnects in W seconds times the share of them
//   still in the table at the window's end (the measured lifetimes).
// - The limit is per netns: nf_conntrack_max is sized for the fullest netns plus
//   headroom; the hash is shared by all netns, so buckets are sized for the total.
// - A timeout pins (rate of entries ending by it) x (timeout) entries: lowering
//   it from t to t' frees rate x (t - t').
import { EXPORT_EDGES_SECONDS } from '../engine/histogram.js';
import type { EntryCost } from './memory.js';
import type { ConntrackSettings } from './settings.js';

export interface Measurements {
  durationSeconds: number;
  /** Seconds the netns's meanEntries cover at most (since the first census); null when not given. */
  averagedSeconds: number | null;
  netns: Array<{
    inode: number;
    /** Census count carried forward; null before a census. */
    entries: number | null;
    /** The same averaged over time since the census; null without one. */
    meanEntries: number | null;
    /** Inserts per second now (the 60 s window, or the whole watch if shorter). */
    insertsPerSecond: number;
    protocols: Array<{ proto: string; inserts: number }>;
  }>;
  /** Entries destroyed while watched, by protocol and final TCP state. */
  lifetimes: Array<{ proto: string; state?: string; count: number; sum: number; max: number | null; predating: number; meanSeconds?: number | null }>;
  /** The same as cumulative counts at EXPORT_EDGES_SECONDS. */
  lifetimeHistograms: Array<{ proto: string; state?: string; cumulative: number[]; count: number }>;
  storms: Array<{ inserts: number; destroys: number; peakPerSecond: number; netns: Array<{ inode: number; inserts: number }> }>;
  /** Drops and early drops of ctstorm's netns while watched (the table was full). */
  drops: number;
  /** Records the ring could not take (counts stay exact; lifetimes miss them). */
  lost: number;
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
  /** Entries averaged over the watch (census + exact counters, every second). */
  averaged: number | null;
  /** Sum over protocols of rate x mean lifetime, for the protocols with a lifetime. */
  modeled: number;
  /** What the netns holds in steady state: the larger of the time-averaged count
   * (the census count when there is no average) and the model; the model alone
   * when a storm ran in the netns (the counts hold the storm). */
  steady: number;
  /** The largest net growth a storm brought this netns. */
  stormGrowth: number;
  protocols: Array<{ proto: string; insertsPerSecond: number; meanLifetimeSeconds: number | null; entries: number | null }>;
}

export interface Advice {
  netns: NetnsAdvice[];
  fullest: { inode: number; steady: number } | null;
  /** The largest storm growth of the fullest netns; null when no storm was seen. */
  storm: { growth: number } | null;
  whatIf: { reconnects: number; withinSeconds: number; aliveFraction: number; entries: number } | null;
  /** Entries the fullest netns must hold: the largest of its count now, its
   * averaged count (or model) + storm growth, and the what-if. */
  required: number;
  /** Which of those set `required`. */
  requiredBy: 'now' | 'storm' | 'what-if' | 'none';
  max: { current: number; recommended: number; headroom: number; raise: boolean; headroomLeft: number };
  buckets: {
    current: number;
    recommended: number;
    raise: boolean;
    /** Entries of all netns at the peak. */
    totalEntries: number;
    /** Mean chain a new node joins (1 + 2n/B): at the peak with the recommended
     * buckets, at the peak with today's, and at today's entries and buckets (the
     * one to hold beside the measured chains). */
    expectedChain: number;
    expectedChainAtPeakNow: number;
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
  /** Proposed only after watching at least this long (a day for established: no
   * shorter watch can tell whether flows idle that long exist), and only if no
   * flow of the protocol was seen living longer than the proposed value. */
  needsWatchSeconds?: number;
}

/** Values proposed for timeouts that are higher, with what lowering them risks. */
export const TIMEOUT_TARGETS: Record<string, Target> = {
  nf_conntrack_tcp_timeout_established: {
    proposed: 86400,
    risk: 'TCP flows idle for over 24 h lose their entry (kube-proxy sets 86400)',
    needsWatchSeconds: 86400,
  },
  nf_conntrack_tcp_timeout_close_wait: { proposed: 600, risk: 'a half-closed connection silent for over 10 min loses its entry' },
  nf_conntrack_tcp_timeout_time_wait: {
    proposed: 60,
    risk: 'a 4-tuple reused 60-120 s after close (a peer\'s 2MSL longer than Linux\'s 60 s, or NAT reusing a source port) is tracked as new',
  },
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

/** Seconds an entry of a protocol that ends by timeout spends at least in the
 * table (a UDP, ICMP or other-protocol entry is destroyed only after its timeout,
 * unless flushed or early-dropped); TCP ends by state, so it has no floor. */
function timeoutFloor(proto: string, settings: ConntrackSettings): number | null {
  if (proto === 'tcp') return null;
  if (proto === 'udp' || proto === 'udplite') return settings.nf_conntrack_udp_timeout ?? 30;
  if (proto === 'icmp') return settings.nf_conntrack_icmp_timeout ?? 30;
  if (proto === 'icmpv6') return settings.nf_conntrack_icmpv6_timeout ?? 30;
  return settings.nf_conntrack_generic_timeout ?? 600;
}

/** Destroy share of each (protocol, state) within its protocol: in steady state,
 * the share of the protocol's inserts that end that way. */
function stateShares(m: Measurements): Map<string, number> {
  const totals = new Map<string, number>();
  for (const l of m.lifetimes) totals.set(l.proto, (totals.get(l.proto) ?? 0) + l.count + l.predating);
  return new Map(m.lifetimes.map((l) => [`${l.proto}/${l.state ?? ''}`, (l.count + l.predating) / Math.max(1, totals.get(l.proto) ?? 0)]));
}

/** Mean time in the table per protocol: each final state's mean (corrected for
 * the watch's length where the engine gave one) weighted by the share of the
 * protocol's entries ending in it (raw counts would favour states short enough
 * to end inside the watch), raised to the protocol's timeout floor. Null for a
 * TCP without any entry ended while watched. */
export function meanLifetimes(m: Measurements, settings: ConntrackSettings = {}): Map<string, number | null> {
  const shares = stateShares(m);
  const acc = new Map<string, { weight: number; sum: number }>();
  for (const l of m.lifetimes) {
    const a = acc.get(l.proto) ?? { weight: 0, sum: 0 };
    if (l.count > 0) {
      const w = shares.get(`${l.proto}/${l.state ?? ''}`) ?? 0;
      a.weight += w;
      a.sum += w * (l.meanSeconds ?? l.sum / l.count);
    }
    acc.set(l.proto, a);
  }
  const protos = new Set([...acc.keys(), ...m.netns.flatMap((n) => n.protocols.map((p) => p.proto))]);
  return new Map(
    [...protos].map((p) => {
      const a = acc.get(p);
      const mean = a && a.weight > 0 ? a.sum / a.weight : null;
      const floor = timeoutFloor(p, settings);
      return [p, floor === null ? mean : Math.max(mean ?? 0, floor)];
    }),
  );
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
 * (1/W) x integral over [0, W] of P(lifetime > s), the classes mixed as the
 * inserts are (protocol share of inserts x final-state share). No lifetime can be
 * seen past the watch's length: beyond it P(L > s) stays at its value there. */
export function aliveFraction(m: Measurements, withinSeconds: number): number {
  const protoInserts = new Map<string, number>();
  for (const n of m.netns) for (const p of n.protocols) protoInserts.set(p.proto, (protoInserts.get(p.proto) ?? 0) + p.inserts);
  const shares = stateShares(m);
  const classes = m.lifetimeHistograms
    .filter((h) => h.count > 0)
    .map((h) => ({ h, weight: (protoInserts.get(h.proto) ?? 0) * (shares.get(`${h.proto}/${h.state ?? ''}`) ?? 1) }))
    .filter((c) => c.weight > 0);
  const total = classes.reduce((n, c) => n + c.weight, 0);
  if (total === 0 || withinSeconds <= 0) return 1; // no lifetime seen: every reconnect stays
  const horizon = m.durationSeconds > 0 ? m.durationSeconds : Infinity;
  const steps = 1000;
  let integral = 0;
  for (let i = 0; i < steps; i++) {
    const s = Math.min(((i + 0.5) / steps) * withinSeconds, horizon);
    integral += classes.reduce((acc, c) => acc + c.weight * survival(c.h.cumulative, c.h.count, s), 0) / total;
  }
  return integral / steps;
}

function netnsAdvice(m: Measurements, means: (inode: number) => Map<string, number | null>): NetnsAdvice[] {
  return m.netns.map((n) => {
    const inserts = n.protocols.reduce((acc, p) => acc + p.inserts, 0);
    const meanOf = means(n.inode);
    const protocols = n.protocols.map((p) => {
      const rate = inserts > 0 ? (n.insertsPerSecond * p.inserts) / inserts : 0;
      const mean = meanOf.get(p.proto) ?? null;
      return { proto: p.proto, insertsPerSecond: rate, meanLifetimeSeconds: mean, entries: mean === null ? null : rate * mean };
    });
    const modeled = protocols.reduce((acc, p) => acc + (p.entries ?? 0), 0);
    const growth = stormGrowth(m, n.inode);
    // A storm's entries are in the averaged count and the count now too: with one,
    // the model (its rate taken outside the storms) is the steady state alone.
    const steady = growth > 0 ? modeled : Math.max(n.meanEntries ?? n.entries ?? 0, modeled);
    return { inode: n.inode, measured: n.entries, averaged: n.meanEntries, modeled, steady, stormGrowth: growth, protocols };
  });
}

/** The largest net growth a storm brought this netns: its inserts in the storm
 * times the storm's share of inserts that stayed (inserts - destroys). */
function stormGrowth(m: Measurements, inode: number): number {
  let most = 0;
  for (const st of m.storms) {
    const mine = st.netns.find((x) => x.inode === inode)?.inserts ?? 0;
    if (st.inserts > 0) most = Math.max(most, (mine * Math.max(0, st.inserts - st.destroys)) / st.inserts);
  }
  return most;
}

/** The timeouts of the target netns worth lowering, most entries freed first. */
function timeoutAdvice(m: Measurements, target: NetnsAdvice | undefined, settings: ConntrackSettings, notes: string[]): TimeoutAdvice[] {
  if (!target) return [];
  const rate = (proto: string): number => target.protocols.filter((p) => p.proto === proto).reduce((n, p) => n + p.insertsPerSecond, 0);
  // Rate of entries ending by each timeout, and their measured mean time in the table.
  const byKey = new Map<string, { rate: number; mean: number | null }>();
  const add = (key: string, r: number, mean: number | null = null): void => {
    const cur = byKey.get(key) ?? { rate: 0, mean: null };
    byKey.set(key, { rate: cur.rate + r, mean: mean ?? cur.mean });
  };
  // TCP: the insert rate split by the final states destroys ended in.
  const shares = stateShares(m);
  for (const l of m.lifetimes.filter((x) => x.proto === 'tcp' && x.state)) {
    const key = TCP_STATE_KEYS[l.state!];
    if (key) add(key, rate('tcp') * (shares.get(`tcp/${l.state}`) ?? 0), l.count > 0 ? (l.meanSeconds ?? l.sum / l.count) : null);
  }
  // UDP: an unreplied entry is gone within udp_timeout plus the GC's delay (up to
  // ~60 s measured); one living longer was a stream.
  const udpRate = rate('udp');
  if (udpRate > 0) {
    const unreplied = settings.nf_conntrack_udp_timeout ?? 30;
    const h = m.lifetimeHistograms.find((x) => x.proto === 'udp');
    const stream = h && h.count > 0 ? survival(h.cumulative, h.count, unreplied + 60) : 0;
    add('nf_conntrack_udp_timeout', udpRate * (1 - stream));
    add('nf_conntrack_udp_timeout_stream', udpRate * stream);
  }
  add('nf_conntrack_icmp_timeout', rate('icmp'));
  const others = target.protocols.filter((p) => !['tcp', 'udp', 'icmp', 'icmpv6'].includes(p.proto)).reduce((n, p) => n + p.insertsPerSecond, 0);
  add('nf_conntrack_generic_timeout', others);

  // A TCP flow that closed (any final state but established) after living longer
  // than a proposed established timeout may have idled that long: keep it then.
  const tcpLongest = Math.max(0, ...m.lifetimes.filter((l) => l.proto === 'tcp' && l.state !== 'established').map((l) => l.max ?? 0));
  const out: TimeoutAdvice[] = [];
  for (const [key, { rate: r, mean }] of byKey) {
    const t = TIMEOUT_TARGETS[key];
    const current = settings[key];
    if (!t || current === undefined || r <= 0 || t.proposed >= current) continue;
    // Entries ending in this state long before its timeout did not end by it (a
    // flush, an early drop, the netns deleted): lowering it frees nothing.
    if (mean !== null && mean < current / 2) continue;
    if (t.needsWatchSeconds && (m.durationSeconds < t.needsWatchSeconds || tcpLongest >= t.proposed)) {
      notes.push(`${key} ${current} -> ${t.proposed} not advised: ${m.durationSeconds < t.needsWatchSeconds ? `needs ${t.needsWatchSeconds} s watched (use --from a serve running that long), had ${Math.round(m.durationSeconds)} s` : `a TCP flow that closed lived ${Math.round(tcpLongest)} s`}`);
      continue;
    }
    // What it holds: rate x timeout, but never more than the netns holds.
    const pinned = Math.min(r * current, target.steady);
    const freed = (pinned * (current - t.proposed)) / current;
    if (!(freed >= Math.max(1, MIN_FREED_SHARE * target.steady))) continue;
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
  const ownMeans = meanLifetimes(m, settings);
  const targetMeans = meanLifetimes(m, targetSettings);
  const meansFor = (inode: number): Map<string, number | null> => (inode === o.targetInode ? targetMeans : ownMeans);
  // A netns the census finds empty has no traffic now (gone, or idle): its rates
  // are history, not a steady state.
  const all = netnsAdvice(m, meansFor);
  // The storm's growth goes on the steady state, never on the count now (which may
  // still hold the storm).
  const peakOf = (n: NetnsAdvice): number => Math.max(n.measured ?? 0, n.steady + n.stormGrowth);
  const netns = all.filter((n) => n.measured !== 0 || (n.averaged ?? 0) > 0).sort((a, b) => peakOf(b) - peakOf(a) || b.steady - a.steady);
  if (netns.length < all.length) notes.push(`${all.length - netns.length} netns with no entries now or on average (gone or idle) left out`);
  const top = netns[0];
  const fullest = top ? { inode: top.inode, steady: top.steady } : null;
  const ended = new Set(m.lifetimes.filter((l) => l.count > 0).map((l) => l.proto));
  for (const proto of new Set(m.netns.flatMap((n) => n.protocols.filter((p) => p.inserts > 0).map((p) => p.proto)))) {
    if (ended.has(proto)) continue;
    notes.push(
      proto === 'tcp'
        ? 'no tcp entry ended while watched: TCP\'s steady state is the census count (watch longer than its lifetimes)'
        : `no ${proto} entry ended while watched: its time in the table is taken as its timeout (a floor)`,
    );
  }
  if (m.netns.some((n) => n.entries === null)) notes.push('no census yet: entries per netns are modeled only');
  const longest = Math.max(0, ...m.lifetimes.map((l) => l.max ?? 0));
  if (longest > m.durationSeconds / 3) {
    notes.push(`lifetimes up to ${longest.toFixed(0)} s in a ${m.durationSeconds.toFixed(0)} s watch: means are corrected for it, but watch 3x the longest lifetime (or use --from a long-running serve) for a firm model`);
  }
  if (m.drops > 0) notes.push(`the kernel dropped ${m.drops} new entries in ctstorm's netns while watched (drop, early_drop): the table was full, so the growth measured is a floor`);
  if (m.lost > 0) notes.push(`${m.lost} records lost (ring full): counts are exact, lifetimes miss those entries`);
  notes.push('lifetimes are pooled over every netns (the probe keeps them per protocol and final state): a netns with its own timeouts is modeled with everyone\'s lifetimes, floored at its own timeouts');

  const storm = m.storms.length > 0 ? { growth: top?.stormGrowth ?? 0 } : null;
  const steady = top?.steady ?? 0;
  const peak = top ? peakOf(top) : 0;
  let whatIf: Advice['whatIf'] = null;
  if (o.whatIf) {
    const f = aliveFraction(m, o.whatIf.withinSeconds);
    whatIf = { ...o.whatIf, aliveFraction: f, entries: steady + o.whatIf.reconnects * f };
    if (o.whatIf.withinSeconds > m.durationSeconds / 2) notes.push(`the what-if window (${o.whatIf.withinSeconds} s) is long beside the ${Math.round(m.durationSeconds)} s watched: lifetimes beyond the watch are unknown and taken as lasting`);
  }
  const required = Math.ceil(Math.max(peak, whatIf?.entries ?? 0));
  const requiredBy: Advice['requiredBy'] = !top
    ? 'none'
    : whatIf && whatIf.entries > peak
      ? 'what-if'
      : (top.measured ?? 0) >= top.steady + top.stormGrowth
        ? 'now'
        : 'storm';

  const currentMax = settings.nf_conntrack_max ?? 0;
  const wanted = roundUp(Math.max(1, required * (1 + o.headroom)), 1024);
  const raise = currentMax > 0 && wanted > currentMax;
  const max = { current: currentMax, recommended: raise ? wanted : currentMax, headroom: o.headroom, raise, headroomLeft: currentMax > 0 ? 1 - required / currentMax : 0 };
  if (currentMax === 0) notes.push('nf_conntrack_max is 0 (no limit): every netns can grow until memory runs out');

  const totalNow = Math.max(m.totalEntries ?? 0, netns.reduce((n, x) => n + (x.measured ?? 0), 0));
  // Every netns at the larger of its count now and its steady state; the fullest
  // one's peak adds what it needs beyond that.
  const held = (x: NetnsAdvice): number => Math.max(x.measured ?? 0, x.steady);
  const totalSteady = Math.max(m.totalEntries ?? 0, netns.reduce((n, x) => n + held(x), 0));
  const totalPeak = Math.ceil(totalSteady + Math.max(0, required - (top ? held(top) : 0)));
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
    expectedChainAtPeakNow: 1 + (2 * totalPeak) / Math.max(1, currentBuckets),
    expectedChainNow: 1 + (2 * totalNow) / Math.max(1, currentBuckets),
    measuredChain: meanChain(m.chains),
  };

  const target = netns.find((n) => n.inode === o.targetInode);
  const timeouts = timeoutAdvice(m, target, targetSettings, notes);

  const memory = {
    cost,
    nowBytes: m.totalEntries === null ? null : m.totalEntries * cost.perEntryBytes + currentBuckets * cost.bucketBytes,
    peakBytes: totalPeak * cost.perEntryBytes + bucketsRecommended * cost.bucketBytes,
    fullestAtLimitBytes: max.recommended * cost.perEntryBytes,
    hashBytes: bucketsRecommended * cost.bucketBytes,
  };
  return { netns, fullest, storm, whatIf, required, requiredBy, max, buckets, timeouts, memory, notes: [...new Set(notes)] };
}
