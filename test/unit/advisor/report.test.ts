import { describe, expect, it } from 'vitest';
import { advise, type Measurements } from '../../../src/advisor/model.js';
import { adviceChanges, adviceReport, sysctlSnippet } from '../../../src/advisor/report.js';

const cost = { objectBytes: 256, objectSource: 'slab', extensionBytes: 128, extensionSource: 'ecache', bucketBytes: 8, perEntryBytes: 384 };
const settings = { nf_conntrack_max: 16384, nf_conntrack_buckets: 16384, nf_conntrack_tcp_timeout_time_wait: 120, nf_conntrack_udp_timeout: 30 };
const m: Measurements = {
  durationSeconds: 600,
  averagedSeconds: null,
  netns: [{ inode: 100, entries: 1000, meanEntries: null, insertsPerSecond: 100, protocols: [{ proto: 'tcp', inserts: 1 }] }],
  // 100 TCP inserts/s, all ending in time_wait after 120 s: 12000 entries.
  lifetimes: [{ proto: 'tcp', state: 'time_wait', count: 50, sum: 6000, max: 121, predating: 0 }],
  lifetimeHistograms: [],
  storms: [],
  chains: {},
  totalEntries: 1000,
  drops: 0,
  lost: 0,
};
const advice = advise(m, settings, settings, cost, { headroom: 0.5, targetInode: 100 });

describe('advice output', () => {
  it('changes: the limit and buckets only where they can be set (the initial netns)', () => {
    // 12000 x 1.5 = 18000 -> 18432; buckets 32768; time_wait 120 -> 60 frees 6000.
    expect(adviceChanges(advice, true)).toEqual([
      { key: 'nf_conntrack_max', from: 16384, to: 18432 },
      { key: 'nf_conntrack_buckets', from: 16384, to: 32768 },
      { key: 'nf_conntrack_tcp_timeout_time_wait', from: 120, to: 60 },
    ]);
    expect(adviceChanges(advice, false)).toEqual([{ key: 'nf_conntrack_tcp_timeout_time_wait', from: 120, to: 60 }]);
  });

  it('a sysctl.d snippet: global keys always, timeouts there only for the initial netns', () => {
    const initial = sysctlSnippet(advice, adviceChanges(advice, true), '2026-11-26', { initial: true, conntrackModule: false });
    expect(initial.split('\n').filter((l) => !l.startsWith('#'))).toEqual([
      'net.netfilter.nf_conntrack_max = 18432',
      'net.netfilter.nf_conntrack_buckets = 32768',
      'net.netfilter.nf_conntrack_tcp_timeout_time_wait = 60',
    ]);
    // Another netns: its timeout as a command to run there, never a sysctl.d line
    // (which would set the host's); the module needs loading before sysctl.d runs.
    const other = sysctlSnippet(advice, adviceChanges(advice, false), '2026-11-26', {
      initial: false,
      target: { name: 'pod-a', enter: 'ip netns exec pod-a' },
      conntrackModule: true,
    });
    expect(other.split('\n').filter((l) => !l.startsWith('# /etc') && !l.startsWith('# 12,000'))).toEqual([
      '# nf_conntrack is a module: list it in /etc/modules-load.d/ so it is loaded',
      '# before systemd-sysctl runs, or these keys do not exist yet at boot.',
      'net.netfilter.nf_conntrack_max = 18432',
      'net.netfilter.nf_conntrack_buckets = 32768',
      '# Timeouts of netns pod-a (per netns; sysctl.d sets only the initial one):',
      '#   ip netns exec pod-a sysctl -w net.netfilter.nf_conntrack_tcp_timeout_time_wait=60',
    ]);
  });

  it('the report gives the reasoning behind each number', () => {
    const text = adviceReport(advice, { watchedSeconds: 600, averagedSeconds: null, source: 'a test', targetInode: 100, ownInode: 100 });
    expect(text).toContain("netns 100 (ctstorm's): 12,000 entries (now 1,000, averaged -, modeled 12,000): tcp 100.0/s x 120 s = 12,000");
    expect(text).toContain('raise 16,384 -> 18,432: 12,000 needed + 50 % headroom');
    expect(text).toContain('raise 16,384 -> 32,768 (a power of two)');
    expect(text).toContain('nf_conntrack_tcp_timeout_time_wait 120 -> 60: frees 6,000 of the 12,000 entries it holds');
    expect(text).toContain('per entry 384 bytes: object 256 (slab) + extensions 128 (ecache); per bucket 8');
  });
});

describe('netns left out', () => {
  it('a netns the census finds empty is history, not a steady state', () => {
    const two: Measurements = { ...m, netns: [...m.netns, { inode: 200, entries: 0, meanEntries: null, insertsPerSecond: 50, protocols: [{ proto: 'tcp', inserts: 1 }] }] };
    const a = advise(two, settings, settings, cost, { headroom: 0.5, targetInode: 100 });
    expect(a.netns.map((n) => n.inode)).toEqual([100]);
    expect(a.notes).toContain('1 netns with no entries now or on average (gone or idle) left out');
  });
});
