// The model's measurements from a snapshot JSON: one taken here, or fetched from
// a running `ctstorm serve` (/api/v1/churn), whose watch may be days long.
import type { Snapshot } from '../snapshot.js';
import type { Measurements } from './model.js';

export function measurementsOf(s: Snapshot): Measurements {
  const netns: Measurements['netns'] = s.netns.map((n) => ({
    inode: n.inode,
    entries: n.entries,
    insertsPerSecond: n.windows?.['60s'].insertsPerSecond ?? n.inserts / Math.max(1e-9, s.durationSeconds),
    protocols: n.protocols.map((p) => ({ proto: p.proto, inserts: p.inserts })),
  }));
  // The fullest netns may have inserted nothing while watched: it still counts.
  const f = s.table.fullest;
  if (f && !netns.some((n) => n.inode === f.inode)) netns.push({ inode: f.inode, entries: f.entries, insertsPerSecond: 0, protocols: [] });
  const storms = [...s.storms.past, ...(s.storms.current ? [s.storms.current] : [])];
  return {
    durationSeconds: s.durationSeconds,
    netns,
    lifetimes: s.lifetimes.map((l) => ({ proto: l.proto, ...(l.state ? { state: l.state } : {}), count: l.count, sum: l.sum, max: l.max, predating: l.predating, meanSeconds: l.meanSeconds ?? null })),
    lifetimeHistograms: s.lifetimeHistograms?.rows ?? [],
    storms: storms.map((x) => ({ inserts: x.inserts, destroys: x.destroys, peakPerSecond: x.peakPerSecond, netns: x.netns.map((n) => ({ inode: n.inode, inserts: n.inserts })) })),
    drops: (s.kernelStats?.sinceStart.drop ?? 0) + (s.kernelStats?.sinceStart.early_drop ?? 0),
    lost: s.totals.lost,
    chains: s.chains.histogram,
    totalEntries: s.table.totalEntries,
  };
}
