// The model's measurements from a snapshot JSON: one taken here, or fetched from
// a running `ctstorm serve` (/api/v1/churn), whose watch may be days long.
import type { Snapshot } from '../snapshot.js';
import type { Measurements } from './model.js';

/** A count or rate the model reads: finite and not negative, or the JSON is not ctstorm's. */
function num(x: unknown, what: string): number {
  if (typeof x !== 'number' || !Number.isFinite(x) || x < 0) throw new Error(`${what} is ${JSON.stringify(x)}`);
  return x;
}

export function measurementsOf(s: Snapshot): Measurements {
  const netns: Measurements['netns'] = s.netns.map((n) => ({
    inode: n.inode,
    entries: n.entries === null ? null : num(n.entries, 'a netns entry count'),
    meanEntries: n.meanEntries == null ? null : num(n.meanEntries, 'a netns mean entry count'),
    insertsPerSecond: num(n.windows?.['60s'].insertsPerSecond ?? n.inserts / Math.max(1, s.durationSeconds), 'a netns insert rate'),
    protocols: n.protocols.map((p) => ({ proto: p.proto, inserts: num(p.inserts, 'a protocol\'s inserts') })),
  }));
  // The fullest netns may have inserted nothing while watched: it still counts.
  const f = s.table.fullest;
  if (f && !netns.some((n) => n.inode === f.inode)) netns.push({ inode: f.inode, entries: f.entries, meanEntries: f.meanEntries ?? null, insertsPerSecond: 0, protocols: [] });
  const storms = [...s.storms.past, ...(s.storms.current ? [s.storms.current] : [])];
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
