// The model's measurements from a snapshot JSON: one taken here, or fetched from
// a running `ctstorm serve` (/api/v1/churn), whose watch may be days long.
import type { Snapshot } from '../snapshot.js';
import type { Measurements } from './model.js';

/** A count or rate the model reads: finite and not negative, or the JSON is not ctstorm's. */
function num(x: unknown, what: string): number {
  if (typeof x !== 'number' || !Number.isFinite(x) || x < 0) throw new Error(`${what} is ${JSON.stringify(x)}`);
  return x;
}

/** A netns's steady insert rate: the last minute's, or, once a storm has been
 * seen, the whole watch's outside the storms (a storm's inserts are its own
 * growth, not steady traffic: counted in both, they were counted twice). */
function steadyRate(n: Snapshot['netns'][number], s: Snapshot, storms: Snapshot['storms']['past']): number {
  const inStorms = storms.reduce((acc, st) => acc + (st.netns.find((x) => x.inode === n.inode)?.inserts ?? 0), 0);
  if (inStorms === 0) return n.windows?.['60s'].insertsPerSecond ?? n.inserts / Math.max(1, s.durationSeconds);
  const stormSeconds = storms.reduce((acc, st) => acc + st.durationSeconds, 0);
  return Math.max(0, n.inserts - inStorms) / Math.max(1, s.durationSeconds - stormSeconds);
}

export function measurementsOf(s: Snapshot): Measurements {
  const storms = [...s.storms.past, ...(s.storms.current ? [s.storms.current] : [])];
  const netns: Measurements['netns'] = s.netns.map((n) => ({
    inode: n.inode,
    entries: n.entries === null ? null : num(n.entries, 'a netns entry count'),
    meanEntries: n.meanEntries == null ? null : num(n.meanEntries, 'a netns mean entry count'),
    insertsPerSecond: num(steadyRate(n, s, storms), 'a netns insert rate'),
    protocols: n.protocols.map((p) => ({ proto: p.proto, inserts: num(p.inserts, 'a protocol\'s inserts') })),
  }));
  // The fullest netns may have inserted nothing while watched: it still counts.
  const f = s.table.fullest;
  if (f && !netns.some((n) => n.inode === f.inode)) netns.push({ inode: f.inode, entries: f.entries, meanEntries: f.meanEntries ?? null, insertsPerSecond: 0, protocols: [] });
  return {
    durationSeconds: num(s.durationSeconds, 'durationSeconds'),
    averagedSeconds: s.table.averagedSeconds == null ? null : num(s.table.averagedSeconds, 'table.averagedSeconds'),
    netns,
    lifetimes: s.lifetimes.map((l) => ({
      proto: l.proto,
      ...(l.state ? { state: l.state } : {}),
      count: num(l.count, 'a lifetime count'),
      sum: num(l.sum, 'a lifetime sum'),
      max: l.max === null ? null : num(l.max, 'a lifetime max'),
      predating: num(l.predating, 'a predating count'),
      meanSeconds: l.meanSeconds == null ? null : num(l.meanSeconds, 'a mean lifetime'),
    })),
    lifetimeHistograms: (s.lifetimeHistograms?.rows ?? []).map((h) => ({ ...h, count: num(h.count, 'a histogram count'), cumulative: h.cumulative.map((c) => num(c, 'a histogram bucket')) })),
    storms: storms.map((x) => ({ inserts: x.inserts, destroys: x.destroys, peakPerSecond: x.peakPerSecond, netns: x.netns.map((n) => ({ inode: n.inode, inserts: n.inserts })) })),
    drops: (s.kernelStats?.sinceStart.drop ?? 0) + (s.kernelStats?.sinceStart.early_drop ?? 0),
    lost: s.totals.lost,
    chains: Object.fromEntries(Object.entries(s.chains.histogram).map(([len, n]) => [len, num(n, 'a chain count')])),
    totalEntries: s.table.totalEntries,
  };
}
