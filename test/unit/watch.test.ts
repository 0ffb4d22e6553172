import { describe, expect, it } from 'vitest';
import { renderFrame } from '../../src/watch.js';

const health = { unconfirmedFrees: 0, untracked: 0, netnsOverflow: 0, unknownStart: 0, natClashes: 0 };

describe('watch frame', () => {
  it('shows fill, rates per second over the interval, lost records and top netns', () => {
    const frame = renderFrame({
      source: { mode: 'tracepoint', hooks: 'tp hooks' },
      table: { entries: 131072, max: 262144, buckets: 65536 },
      seconds: 2,
      before: { protocols: [{ l4proto: 17, inserts: 100, destroys: 0, lost: 0 }], netns: [{ inode: 7, l4proto: 17, inserts: 100, destroys: 0, lost: 0 }], health },
      now: {
        protocols: [{ l4proto: 17, inserts: 5100, destroys: 3000, lost: 4 }],
        netns: [
          { inode: 7, l4proto: 17, inserts: 1100, destroys: 1000, lost: 0 },
          { inode: 9, l4proto: 17, inserts: 4000, destroys: 2000, lost: 4 },
        ],
        health,
      },
      drainedRecords: 16000,
    });
    expect(frame).toContain('131,072 / 262,144 entries (50.0% full), 65,536 buckets');
    expect(frame).toContain('2,500 inserts/s   1,500 destroys/s');
    expect(frame).toContain('8,000 drained/s   4 lost since start');
    const rows = frame.split('\n').slice(-2).map((l) => l.trim().split(/\s+/));
    expect(rows).toEqual([
      ['9', '2,000', '1,000'],
      ['7', '500', '500'],
    ]);
  });
});
