// Retiring the per-netns rows of namespaces that are gone: which rows, when, and
// that their counts are still reported, in bounded memory.
import { describe, expect, it } from 'vitest';
import type { NetnsProtoCounts } from '../../src/counters.js';
import { NetnsRows, PRUNE_INTERVAL_MS } from '../../src/netns-rows.js';

const row = (cookie: number, inode: number, inserts: number, destroys: number, l4proto = 17): NetnsProtoCounts => ({
  cookie,
  inode,
  l4proto,
  inserts,
  destroys,
  lost: 0,
});
const live = (...inodes: number[]) => () => new Set(inodes);

describe('NetnsRows', () => {
  it('retires a row only when its netns is gone, it holds no entry and it did not move since the last scan', () => {
    const rows = new NetnsRows();
    const gone = row(1, 100, 5, 5);
    const alive = row(2, 200, 5, 5);
    const holding = row(3, 300, 5, 4); // one entry still in the table
    const all = [gone, alive, holding];
    expect(rows.toRetire(all, 0, live(200))).toEqual([]); // first scan: nothing to compare with
    expect(rows.toRetire(all, 1000, live(200))).toEqual([]); // not due yet
    expect(rows.toRetire(all, PRUNE_INTERVAL_MS, live(200))).toEqual([gone]);
  });

  it('keeps a row that moved since the last scan', () => {
    const rows = new NetnsRows();
    rows.toRetire([row(1, 100, 5, 5)], 0, live());
    expect(rows.toRetire([row(1, 100, 6, 6)], PRUNE_INTERVAL_MS, live())).toEqual([]);
    expect(rows.toRetire([row(1, 100, 6, 6)], 2 * PRUNE_INTERVAL_MS, live())).toEqual([row(1, 100, 6, 6)]);
  });

  it('retires the dead one of two namespaces that had the same inode: the live one is the one that moves', () => {
    const rows = new NetnsRows();
    // Cookies are unique but not ordered (per-CPU batches): the dead netns may have the larger one.
    const dead = row(9, 100, 3, 3);
    const reused = row(7, 100, 2, 0);
    rows.toRetire([dead, reused], 0, live(100));
    // Both idle: no telling which is alive, both kept.
    expect(rows.toRetire([dead, reused], PRUNE_INTERVAL_MS, live(100))).toEqual([]);
    const moved = row(7, 100, 4, 1);
    expect(rows.toRetire([dead, moved], 2 * PRUNE_INTERVAL_MS, live(100))).toEqual([dead]);
  });

  it('still reports retired rows, summed with a row that came back', () => {
    const rows = new NetnsRows();
    const gone = row(1, 100, 5, 5);
    rows.toRetire([gone], 0, live());
    expect(rows.toRetire([gone], PRUNE_INTERVAL_MS, live())).toEqual([gone]);
    expect(rows.merge([gone])).toEqual([gone]); // not retired until the caller says the kernel deleted it
    rows.retire(gone);
    expect(rows.merge([])).toEqual([gone]);
    // The kernel row was deleted; events after that start a new one from zero.
    expect(rows.merge([row(1, 100, 1, 0), row(2, 200, 4, 0)])).toEqual([row(1, 100, 6, 5), row(2, 200, 4, 0)]);
  });

  it('keeps at most its bound of retired rows, dropping the oldest', () => {
    const rows = new NetnsRows(2);
    const all = [row(1, 101, 1, 1), row(2, 102, 1, 1), row(3, 103, 1, 1)];
    rows.toRetire(all, 0, live());
    const out = rows.toRetire(all, PRUNE_INTERVAL_MS, live());
    expect(out).toHaveLength(3);
    for (const r of out) rows.retire(r);
    expect(rows.retiredCount).toBe(2);
    expect(rows.merge([]).map((r) => r.cookie)).toEqual([2, 3]);
  });
});
