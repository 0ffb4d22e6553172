// The kernel reuses the proc inode of a network namespace that is gone (the
// lowest free number comes back first). Counter rows are keyed by the netns
// cookie, which is never reused, so a new namespace with an old inode gets a row
// of its own instead of adding to the dead one's.
import { execFileSync } from 'node:child_process';
import { statSync } from 'node:fs';
import { afterAll, describe, expect, it } from 'vitest';
import { byNetns, openSource, type Source } from '../../src/index.js';
import { testModes } from './modes.js';
import { liveSkipReason } from './privileges.js';
import { until } from './wait.js';

const skip = liveSkipReason();
const NAME = 'cts-reuse';
const REUSE_WAIT_MS = 60_000;
const MAX_HELD = 300;

const ip = (...args: string[]): void => void execFileSync('ip', args, { stdio: 'ignore' });
const inode = (ns = NAME): number => statSync(`/run/netns/${ns}`).ino;
const remove = (ns = NAME): void => {
  try {
    ip('netns', 'del', ns);
  } catch {
    // not there
  }
};

/** `conntrack -I` n UDP entries into the namespace (ctnetlink: no traffic needed). */
function insert(ns: string, n: number, firstPort: number): void {
  for (let i = 0; i < n; i++) {
    execFileSync('ip', ['netns', 'exec', ns, 'conntrack', '-I', '-p', 'udp', '-s', '198.18.250.1', '-d', '198.18.250.2',
      '--sport', String(firstPort + i), '--dport', '53', '-t', '300'], { stdio: 'ignore' });
  }
}

describe.skipIf(skip !== undefined)('a reused netns inode', () => {
  const cleanups: Array<() => void> = [];
  afterAll(() => {
    remove();
    for (const c of cleanups) c();
  });

  describe.each(testModes())('in %s mode', (mode) => {
    let source: Source | undefined;
    afterAll(async () => source?.close());

    it('starts a row of its own: rows are keyed by the netns cookie', async () => {
      remove(); // an earlier mode's namespaces: their teardown may still be under way
      for (const c of cleanups.splice(0)) c();
      source = openSource({ mode });
      ip('netns', 'add', NAME);
      const first = inode();
      insert(NAME, 3, 1000);
      remove(); // its entries are destroyed as the namespace goes
      // Rows of this inode with inserts: the namespaces made here (an earlier mode's
      // namespace may still be dying under the same inode, with destroys only).
      const rowsOf = () => byNetns(source!.counters()).filter((n) => n.inode === first && n.inserts > 0);
      // The inode is freed once the namespace's teardown (asynchronous, and slow in
      // a TCG guest) has run: after its entries were destroyed.
      await until(() => rowsOf().some((n) => n.destroys >= 3), 60_000, 'the deleted namespace\'s entries to be destroyed', () => JSON.stringify(rowsOf()));
      // The kernel hands out the lowest free inode: a namespace that got another one
      // is kept (deleting it would free that lower inode again) until one gets `first`.
      const held: string[] = [];
      let reused = '';
      const deadline = Date.now() + REUSE_WAIT_MS;
      try {
        for (let tries = 0; !reused; tries++) {
          const name = `${NAME}-${mode}-${tries}`;
          ip('netns', 'add', name);
          if (inode(name) === first) reused = name;
          else held.push(name);
          if (!reused && (Date.now() > deadline || held.length >= MAX_HELD)) {
            throw new Error(`the kernel did not reuse netns inode ${first} in ${tries + 1} namespaces and ${REUSE_WAIT_MS} ms`);
          }
          if (!reused) await new Promise((r) => setTimeout(r, 100));
        }
      } finally {
        for (const h of held) remove(h);
      }
      cleanups.push(() => remove(reused));
      insert(reused, 2, 2000);
      const rows = rowsOf;
      const state = () => JSON.stringify(rows());
      await until(() => rows().reduce((sum, n) => sum + n.inserts, 0) >= 5, 30_000, 'both namespaces\' counts', state);
      const got = rows().map(({ cookie, inserts, destroys }) => ({ cookie, inserts, destroys }));
      if (got.every((r) => r.cookie === 0)) {
        // A kernel without netns cookies (before 5.12): the two namespaces cannot be
        // told apart.
        expect(got).toEqual([{ cookie: 0, inserts: 5, destroys: 3 }]);
        return;
      }
      // Cookies are unique, not ordered (the kernel hands them out in per-CPU batches).
      expect(got).toHaveLength(2);
      expect(got[0]!.cookie).not.toBe(got[1]!.cookie);
      expect(got.map(({ inserts, destroys }) => ({ inserts, destroys })).sort((a, b) => b.inserts - a.inserts)).toEqual([
        { inserts: 3, destroys: 3 },
        { inserts: 2, destroys: 0 },
      ]);
    });
  });
});
