// Option checks and map sizes, against the fake addon: nothing loads.
import { afterEach, describe, expect, it, vi } from 'vitest';
import { CtstormError } from '../../src/errors.js';
import { PRUNE_INTERVAL_MS } from '../../src/netns-rows.js';
import { liveEntriesFor, openSource, probeModes, type SourceOptions } from '../../src/source.js';
import { fakeNative } from './fake-native.js';

const zero = { protocols: [], netns: [], health: [], missedRuns: 0, missesVisible: true };

function refusal(options: SourceOptions): unknown {
  try {
    openSource(options);
  } catch (err) {
    return err;
  }
  return undefined;
}

describe('liveEntriesFor', () => {
  it('is twice the table limit, between 64Ki and 4Mi entries', () => {
    expect(liveEntriesFor(262144)).toBe(524288);
    expect(liveEntriesFor(0)).toBe(4194304); // no limit: the most
    expect(liveEntriesFor(10)).toBe(65536);
    expect(liveEntriesFor(1 << 24)).toBe(4194304);
    expect(liveEntriesFor(32768)).toBe(65536);
    expect(liveEntriesFor(32769)).toBe(65538);
    expect(liveEntriesFor(1 << 21)).toBe(4194304);
  });
});

describe('map sizes', () => {
  const bad: Array<[string, SourceOptions['mapSizes'], RegExp]> = [
    ['live 0', { live: 0 }, /^bad live map size 0$/],
    ['pending above 16Mi', { pending: (1 << 24) + 1 }, /^bad pending map size 16777217$/],
    ['netns not an integer', { netns: 1.5 }, /^bad netns map size 1.5$/],
    ['live negative', { live: -4 }, /^bad live map size -4$/],
    ['netns NaN', { netns: Number.NaN }, /^bad netns map size NaN$/],
  ];
  for (const [name, mapSizes, message] of bad) {
    it(`${name}: EINVAL before anything loads`, () => {
      const native = fakeNative({ counters: [zero] });
      const err = refusal({ native, mapSizes });
      expect(err).toBeInstanceOf(CtstormError);
      expect((err as CtstormError).code).toBe('EINVAL');
      expect((err as CtstormError).message).toMatch(message);
      expect((err as CtstormError).fix).toBe('use 1 to 16777216 entries');
      expect(native.opened).toHaveLength(0);
    });
  }

  it('probeModes checks them too', () => {
    const native = fakeNative({ counters: [zero] });
    expect(() => probeModes({ native, mapSizes: { pending: 0 } })).toThrow(/bad pending map size 0/);
    expect(native.opened).toHaveLength(0);
  });

  it('accepts the bounds, 1 and 16777216, and hands them to the probe', async () => {
    const native = fakeNative({ counters: [zero] });
    const source = openSource({ native, mapSizes: { live: 1, pending: 1 << 24, netns: 1 } });
    await source.close();
    expect(native.opened).toHaveLength(1);
    expect(native.opened[0]).toMatchObject({ liveEntries: 1, pendingEntries: 1 << 24, netnsEntries: 1 });
  });

  it('defaults: live sized from the table, pending and netns left to the probe (0)', async () => {
    const native = fakeNative({ counters: [zero] });
    const source = openSource({ native }); // the fake's table limit is 262144
    await source.close();
    expect(native.opened[0]).toMatchObject({ liveEntries: 524288, pendingEntries: 0, netnsEntries: 0 });
  });
});

describe('counters through the source', () => {
  it('names the health slots and carries missed runs, cookies and missesVisible', async () => {
    const native = fakeNative({
      counters: [{
        protocols: [{ l4proto: 6, inserts: 2, destroys: 1, lost: 0 }],
        netns: [{ cookie: 77, inode: 4026532000, l4proto: 6, inserts: 2, destroys: 1, lost: 0 }],
        health: [1, 2, 3, 4, 5, 6, 7, 8, 10],
        missedRuns: 9,
        missesVisible: false,
      }],
    });
    const source = openSource({ native, mode: 'kprobe', liveNetns: () => new Set([4026532000]) });
    const c = source.counters();
    await source.close();
    expect(c).toEqual({
      protocols: [{ l4proto: 6, inserts: 2, destroys: 1, lost: 0 }],
      netns: [{ cookie: 77, inode: 4026532000, l4proto: 6, inserts: 2, destroys: 1, lost: 0 }],
      health: {
        unconfirmedFrees: 1, untracked: 2, netnsOverflow: 3, unknownStart: 4, natClashes: 5,
        neverHashed: 6, pendingOverflow: 7, insertUnpaired: 8, pendingExpired: 10, missedRuns: 9,
      },
      missesVisible: false,
    });
    expect(native.closed).toBe(1);
  });
});

describe('rows of namespaces that are gone', () => {
  afterEach(() => vi.useRealTimers());

  it('are deleted from the kernel map once idle for a scan, and still reported', async () => {
    vi.useFakeTimers({ now: 1_000_000 });
    const gone = { cookie: 5, inode: 4026532100, l4proto: 17, inserts: 3, destroys: 3, lost: 0 };
    const alive = { cookie: 6, inode: 4026532200, l4proto: 17, inserts: 4, destroys: 1, lost: 0 };
    const reading = { protocols: [], netns: [gone, alive], health: [], missedRuns: 0, missesVisible: true };
    const afterDelete = { ...reading, netns: [alive] };
    const native = fakeNative({ counters: [reading, reading, afterDelete] });
    const source = openSource({ native, mode: 'fentry', liveNetns: () => new Set([alive.inode]) });
    expect(source.counters().netns).toEqual([gone, alive]); // first scan: nothing retired yet
    expect(native.deleted).toEqual([]);
    vi.setSystemTime(1_000_000 + PRUNE_INTERVAL_MS);
    expect(source.counters().netns).toEqual([alive, gone]);
    expect(native.deleted).toEqual([{ cookie: 5, inode: 4026532100, l4proto: 17 }]);
    expect(source.counters().netns).toEqual([alive, gone]); // the kernel no longer has it
    await source.close();
  });

  it('stay in the kernel\'s rows, counted once, when the kernel did not delete them', async () => {
    vi.useFakeTimers({ now: 1_000_000 });
    const gone = { cookie: 5, inode: 4026532100, l4proto: 17, inserts: 3, destroys: 3, lost: 0 };
    const reading = { protocols: [], netns: [gone], health: [], missedRuns: 0, missesVisible: true };
    const native = fakeNative({ counters: [reading], deleteFails: true });
    const source = openSource({ native, mode: 'fentry', liveNetns: () => new Set<number>() });
    source.counters();
    vi.setSystemTime(1_000_000 + PRUNE_INTERVAL_MS);
    expect(source.counters().netns).toEqual([gone]);
    expect(native.deleted).toEqual([]);
    await source.close();
  });
});
