import { describe, expect, it } from 'vitest';
import { byNetns, diffCounters, exactness, healthFromArray, totals, type Health, type KernelCounters } from '../../src/counters.js';

const health: Health = healthFromArray([]);

const start: KernelCounters = {
  protocols: [{ l4proto: 6, inserts: 10, destroys: 4, lost: 0 }],
  netns: [{ cookie: 1, inode: 100, l4proto: 6, inserts: 10, destroys: 4, lost: 0 }],
  health: { ...health, unconfirmedFrees: 2, natClashes: 1, missedRuns: 1 },
  missesVisible: true,
};
const end: KernelCounters = {
  protocols: [
    { l4proto: 6, inserts: 25, destroys: 24, lost: 1 },
    { l4proto: 17, inserts: 7, destroys: 0, lost: 0 },
  ],
  netns: [
    { cookie: 1, inode: 100, l4proto: 6, inserts: 10, destroys: 4, lost: 0 },
    { cookie: 2, inode: 200, l4proto: 6, inserts: 15, destroys: 20, lost: 1 },
    { cookie: 2, inode: 200, l4proto: 17, inserts: 7, destroys: 0, lost: 0 },
  ],
  health: { ...health, unconfirmedFrees: 9, unknownStart: 3, natClashes: 5, neverHashed: 2, missedRuns: 4 },
  missesVisible: true,
};

describe('counters', () => {
  const delta = diffCounters(end, start);

  it('subtracts per protocol and per netns, dropping rows that did not move', () => {
    expect(delta.protocols).toEqual([
      { l4proto: 6, inserts: 15, destroys: 20, lost: 1 },
      { l4proto: 17, inserts: 7, destroys: 0, lost: 0 },
    ]);
    expect(delta.netns).toEqual([
      { cookie: 2, inode: 200, l4proto: 6, inserts: 15, destroys: 20, lost: 1 },
      { cookie: 2, inode: 200, l4proto: 17, inserts: 7, destroys: 0, lost: 0 },
    ]);
    expect(delta.health).toEqual({ ...health, unconfirmedFrees: 7, unknownStart: 3, natClashes: 4, neverHashed: 2, missedRuns: 3 });
    expect(delta.missesVisible).toBe(true);
  });

  it('sums totals', () => {
    expect(totals(delta)).toEqual({ inserts: 22, destroys: 20, lost: 1 });
  });

  it('groups by netns with per-protocol rows, most inserts first', () => {
    expect(byNetns(end)).toEqual([
      {
        cookie: 2, inode: 200, inserts: 22, destroys: 20, lost: 1,
        protocols: [
          { l4proto: 6, inserts: 15, destroys: 20, lost: 1 },
          { l4proto: 17, inserts: 7, destroys: 0, lost: 0 },
        ],
      },
      { cookie: 1, inode: 100, inserts: 10, destroys: 4, lost: 0, protocols: [{ l4proto: 6, inserts: 10, destroys: 4, lost: 0 }] },
    ]);
  });
});

describe('a netns inode the kernel reused (same inode, another cookie)', () => {
  // Netns cookie 11 had inode 300 and is gone; netns cookie 12 got inode 300 again.
  const before: KernelCounters = {
    protocols: [{ l4proto: 6, inserts: 10, destroys: 10, lost: 0 }],
    netns: [{ cookie: 11, inode: 300, l4proto: 6, inserts: 10, destroys: 10, lost: 0 }],
    health,
    missesVisible: true,
  };
  const after: KernelCounters = {
    protocols: [{ l4proto: 6, inserts: 13, destroys: 11, lost: 0 }],
    netns: [
      { cookie: 11, inode: 300, l4proto: 6, inserts: 10, destroys: 10, lost: 0 },
      { cookie: 12, inode: 300, l4proto: 6, inserts: 3, destroys: 1, lost: 0 },
    ],
    health,
    missesVisible: true,
  };

  it('byNetns keeps two rows, one per cookie', () => {
    expect(byNetns(after)).toEqual([
      { cookie: 11, inode: 300, inserts: 10, destroys: 10, lost: 0, protocols: [{ l4proto: 6, inserts: 10, destroys: 10, lost: 0 }] },
      { cookie: 12, inode: 300, inserts: 3, destroys: 1, lost: 0, protocols: [{ l4proto: 6, inserts: 3, destroys: 1, lost: 0 }] },
    ]);
  });

  it('diffCounters pairs rows by cookie, not by inode', () => {
    // Paired by inode, the new netns would come out as 3 - 10 = -7 inserts.
    expect(diffCounters(after, before).netns).toEqual([
      { cookie: 12, inode: 300, l4proto: 6, inserts: 3, destroys: 1, lost: 0 },
    ]);
  });

  it('orders rows with equal counts and inode by cookie', () => {
    const twins: KernelCounters = {
      ...after,
      netns: [
        { cookie: 9, inode: 300, l4proto: 17, inserts: 1, destroys: 0, lost: 0 },
        { cookie: 5, inode: 300, l4proto: 17, inserts: 1, destroys: 0, lost: 0 },
      ],
    };
    expect(byNetns(twins).map((n) => n.cookie)).toEqual([5, 9]);
  });
});

describe('exactness', () => {
  const clean = { health, missesVisible: true };
  const withHealth = (h: Partial<Health>, missesVisible = true) => ({ health: { ...health, ...h }, missesVisible });

  it('is exact, with no notes, when health is clean in every mode', () => {
    for (const mode of ['fentry', 'kprobe', 'tracepoint']) {
      expect(exactness(mode, clean)).toEqual({ exact: true, notes: [] });
    }
  });

  it('skipped runs make it inexact, with a note giving their number', () => {
    const e = exactness('fentry', withHealth({ missedRuns: 3 }));
    expect(e.exact).toBe(false);
    expect(e.notes).toHaveLength(1);
    expect(e.notes[0]).toMatch(/skipped 3 runs/);
  });

  it('unpaired kprobe inserts make it inexact, with a note giving their number', () => {
    const e = exactness('kprobe', withHealth({ insertUnpaired: 2 }));
    expect(e.exact).toBe(false);
    expect(e.notes).toHaveLength(1);
    expect(e.notes[0]).toMatch(/^2 inserts lost half of their kprobe\/kretprobe pair/);
  });

  it('a full live map makes tracepoint mode inexact (its inserts are uncounted)', () => {
    const e = exactness('tracepoint', withHealth({ untracked: 5 }));
    expect(e.exact).toBe(false);
    expect(e.notes).toHaveLength(1);
    expect(e.notes[0]).toMatch(/^5 new entries found the live map full/);
  });

  it('a full live map leaves fentry and kprobe modes exact (only lifetimes are lost)', () => {
    expect(exactness('fentry', withHealth({ untracked: 5 }))).toEqual({ exact: true, notes: [] });
    expect(exactness('kprobe', withHealth({ untracked: 5 }))).toEqual({ exact: true, notes: [] });
  });

  it('a full per-netns map makes it inexact, with a note giving the number', () => {
    const e = exactness('fentry', withHealth({ netnsOverflow: 4 }));
    expect(e.exact).toBe(false);
    expect(e.notes).toHaveLength(1);
    expect(e.notes[0]).toMatch(/^4 events found the per-netns counter map full/);
  });

  it('health counters that lose no count leave it exact', () => {
    const h = { unconfirmedFrees: 7, unknownStart: 8, natClashes: 9, neverHashed: 10, pendingOverflow: 11 };
    for (const mode of ['fentry', 'kprobe', 'tracepoint']) {
      expect(exactness(mode, withHealth(h))).toEqual({ exact: true, notes: [] });
    }
  });

  it('a kernel that hides skipped runs adds a note but stays exact', () => {
    const e = exactness('kprobe', withHealth({}, false));
    expect(e.exact).toBe(true);
    expect(e.notes).toHaveLength(1);
    expect(e.notes[0]).toMatch(/does not report every skipped run/);
  });

  it('names every cause at once, hidden misses last', () => {
    const e = exactness('tracepoint', withHealth({ missedRuns: 1, insertUnpaired: 2, untracked: 3, netnsOverflow: 4 }, false));
    expect(e.exact).toBe(false);
    expect(e.notes).toHaveLength(5);
    expect(e.notes[0]).toMatch(/skipped 1 nested runs of the slab tracepoints/);
    expect(e.notes[1]).toMatch(/^2 inserts/);
    expect(e.notes[2]).toMatch(/^3 new entries/);
    expect(e.notes[3]).toMatch(/^4 events/);
    expect(e.notes[4]).toMatch(/does not report every skipped run/);
  });
});
