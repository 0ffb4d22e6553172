import { describe, expect, it } from 'vitest';
import { byNetns, diffCounters, totals, type KernelCounters } from '../../src/counters.js';

const health = { unconfirmedFrees: 0, untracked: 0, netnsOverflow: 0, unknownStart: 0, natClashes: 0 };

const start: KernelCounters = {
  protocols: [{ l4proto: 6, inserts: 10, destroys: 4, lost: 0 }],
  netns: [{ inode: 100, l4proto: 6, inserts: 10, destroys: 4, lost: 0 }],
  health: { ...health, unconfirmedFrees: 2, natClashes: 1 },
};
const end: KernelCounters = {
  protocols: [
    { l4proto: 6, inserts: 25, destroys: 24, lost: 1 },
    { l4proto: 17, inserts: 7, destroys: 0, lost: 0 },
  ],
  netns: [
    { inode: 100, l4proto: 6, inserts: 10, destroys: 4, lost: 0 },
    { inode: 200, l4proto: 6, inserts: 15, destroys: 20, lost: 1 },
    { inode: 200, l4proto: 17, inserts: 7, destroys: 0, lost: 0 },
  ],
  health: { ...health, unconfirmedFrees: 9, unknownStart: 3, natClashes: 5 },
};

describe('counters', () => {
  const delta = diffCounters(end, start);

  it('subtracts per protocol and per netns, dropping rows that did not move', () => {
    expect(delta.protocols).toEqual([
      { l4proto: 6, inserts: 15, destroys: 20, lost: 1 },
      { l4proto: 17, inserts: 7, destroys: 0, lost: 0 },
    ]);
    expect(delta.netns.map((n) => n.inode)).toEqual([200, 200]);
    expect(delta.health).toEqual({ ...health, unconfirmedFrees: 7, unknownStart: 3, natClashes: 4 });
  });

  it('sums totals', () => {
    expect(totals(delta)).toEqual({ inserts: 22, destroys: 20, lost: 1 });
  });

  it('groups by netns with per-protocol rows, most inserts first', () => {
    expect(byNetns(end)).toEqual([
      {
        inode: 200, inserts: 22, destroys: 20, lost: 1,
        protocols: [
          { l4proto: 6, inserts: 15, destroys: 20, lost: 1 },
          { l4proto: 17, inserts: 7, destroys: 0, lost: 0 },
        ],
      },
      { inode: 100, inserts: 10, destroys: 4, lost: 0, protocols: [{ l4proto: 6, inserts: 10, destroys: 4, lost: 0 }] },
    ]);
  });
});
