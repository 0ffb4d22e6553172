// Traffic that no one on this project wrote: some of the kernel's own netfilter
// selftests (NAT, unreplied TCP, ICMP related, conntrack helpers, thousands of
// entries in zones through the packet path and ctnetlink), run while the probe
// watches. Each makes its own namespaces and deletes them when done, and every
// entry of a deleted namespace is destroyed with it: so every namespace that came
// and went while the probe watched must end with exactly as many destroys as
// inserts, and the probe must not have missed anything.
import { execFile, execFileSync } from 'node:child_process';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { byNetns, exactness, openSource, type Census, type Source } from '../../src/index.js';
import { liveNetnsInodes } from '../../src/netns-live.js';
import { readTable } from '../../src/table.js';
import { testModes } from '../live/modes.js';
import { liveSkipReason } from '../live/privileges.js';
import { until } from '../live/wait.js';
import { netfilterSelftests } from './kernel-source.js';

const run = promisify(execFile);
const skip = liveSkipReason();
/** Scripts that pass on this project's machines, with what they drive. */
const SCRIPTS = [
  'nf_nat_edemux.sh', // NAT'd and redirected TCP through socat
  'nft_conntrack_helper.sh', // ftp helper assignment, IPv4 and IPv6
  'conntrack_icmp_related.sh', // ICMP errors as RELATED entries
  'conntrack_tcp_unreplied.sh', // unreplied SYNs, then a NAT redirect
  'nft_nat.sh', // masquerade, redirect, SNAT/DNAT, port shadowing
  'nft_zones_many.sh', // 2000 entries in zones from packets, then 2000 by ctnetlink
];
const SCRIPT_TIMEOUT_MS = 240_000;

const key = (n: { cookie: number; inode: number }) => `${n.cookie}/${n.inode}`;

/**
 * The namespaces there before the probe watched: the live ones, by inode, and,
 * by cookie and inode, every one the table holds entries of (a namespace deleted
 * earlier but still held by its sockets may destroy entries made before the probe
 * attached). A census finds the table from an insert, so one is made in a
 * namespace of our own, deleted after. Cookies cannot order namespaces: some
 * kernels hand them out in per-CPU batches (gen_cookie_next).
 */
async function namespacesBefore(source: Source): Promise<{ inodes: Set<number>; keys: Set<string> }> {
  const inodes = liveNetnsInodes();
  const ns = `cts-st-ref-${process.pid}`;
  const ip = (...args: string[]) => execFileSync('ip', args, { stdio: ['ignore', 'ignore', 'pipe'] });
  const drop = () => {
    try {
      ip('netns', 'del', ns);
    } catch {
      // not there
    }
  };
  drop(); // a killed earlier run's, if this pid was its too
  ip('netns', 'add', ns);
  try {
    ip('-n', ns, 'link', 'set', 'lo', 'up');
    // Any conntrack match registers conntrack in a netns; each datagram (a new
    // source port) makes one entry.
    ip('netns', 'exec', ns, 'nft', 'add table ip ref; add chain ip ref out { type filter hook output priority 0; }; add rule ip ref out ct state new accept');
    for (let tries = 0; tries < 40; tries++) {
      ip('netns', 'exec', ns, 'bash', '-c', 'echo > /dev/udp/127.0.0.1/9');
      source.counters(); // nothing drains here: this sweep reports the insert (tracepoint mode)
      const census = await source.census!(readTable().buckets);
      if (census === 'not-located') {
        await new Promise((r) => setTimeout(r, 250));
        continue;
      }
      if (typeof census === 'string') throw new Error(`no census: ${census}`);
      const keys = new Set([...census.netns, ...byNetns(source.counters())].map(key));
      return { inodes, keys };
    }
    throw new Error(`no insert located the table in 10 s of datagrams in ${ns}`);
  } finally {
    drop();
  }
}

describe.skipIf(skip !== undefined).each(testModes())('kernel netfilter selftests in %s mode', (mode) => {
  let dir = '';
  let source: Source;
  let before: { inodes: Set<number>; keys: Set<string> };
  beforeAll(async () => {
    dir = netfilterSelftests();
    source = openSource({ mode });
    before = await namespacesBefore(source);
  });
  afterAll(async () => source?.close());

  it.each(SCRIPTS)('%s passes while the probe watches', async (script) => {
    // Exit 0 is the verdict (4 would be a skip: a missing tool, a failure here).
    const { stdout, stderr } = await run('bash', [`./${script}`], { cwd: dir, timeout: SCRIPT_TIMEOUT_MS, maxBuffer: 64 << 20 });
    expect(stdout + stderr).toMatch(/PASS/);
  });

  it('balances every namespace that came and went: its destroys and the entries the table still holds for it add up to its inserts, nothing missed', async () => {
    const gone = () => {
      const live = liveNetnsInodes();
      return byNetns(source.counters()).filter((n) => !before.inodes.has(n.inode) && !before.keys.has(key(n)) && !live.has(n.inode));
    };
    // A namespace with no process and no mount left is not always freed: an
    // orphaned TCP socket whose FIN goes unanswered (nf_nat_edemux.sh kills its
    // socats, then deletes both namespaces) holds it for 8 backed-off retries,
    // ~102 s from the FIN, and the flush of its entries at teardown waits with
    // it. So each such namespace is held to what a census finds of it, taken
    // between two equal readings of the counters: none, once it has been freed.
    const buckets = readTable().buckets;
    const reading = (rows: ReturnType<typeof gone>) => JSON.stringify(rows.map((n) => [key(n), n.inserts, n.destroys, n.lost]));
    const imbalance = (rows: ReturnType<typeof gone>, census: Census) => {
      const held = new Map(census.netns.map((n) => [key(n), n.entries]));
      return rows
        .map((n) => ({ netns: key(n), inserts: n.inserts, destroys: n.destroys, held: held.get(key(n)) ?? 0, lost: n.lost }))
        .filter((n) => n.inserts !== n.destroys + n.held || n.lost !== 0);
    };
    let rows = gone();
    let census: Census | undefined;
    // Bounded: a namespace being torn down destroys its entries within seconds,
    // and an entry unhashed but not yet freed during a walk is a passing race.
    for (let tries = 0; tries < 30; tries++) {
      if (tries > 0) await new Promise((r) => setTimeout(r, 1000));
      rows = gone();
      const walk = await source.census!(buckets);
      if (typeof walk === 'string') throw new Error(`no census: ${walk}`);
      census = walk;
      const clean = walk.readErrors === 0 && walk.netnsOverflow === 0;
      if (clean && reading(gone()) === reading(rows) && imbalance(rows, walk).length === 0) break;
    }
    if (!census) throw new Error('no census');
    expect([census.readErrors, census.netnsOverflow]).toEqual([0, 0]);
    expect(rows.length).toBeGreaterThanOrEqual(SCRIPTS.length); // the selftests' namespaces were seen
    expect(rows.reduce((sum, n) => sum + n.inserts, 0)).toBeGreaterThan(4000); // nft_zones_many alone makes 4000
    const c = source.counters();
    const off = imbalance(rows, census);
    if (source.mode === 'tracepoint' && c.health.missedRuns > 0) {
      // Each run the kernel skipped can have cost one insert or one destroy at most.
      const missing = off.reduce((sum, n) => sum + Math.abs(n.inserts - n.destroys - n.held), 0);
      console.log(`tracepoint mode: ${c.health.missedRuns} runs skipped by the kernel; ${missing} events off in the deleted namespaces`);
      expect(missing, JSON.stringify(off)).toBeLessThanOrEqual(c.health.missedRuns);
      expect(off.filter((n) => n.lost !== 0)).toEqual([]);
    } else {
      expect(off).toEqual([]);
    }
    // Not asserted: unknownStart, machine-wide (the host's own namespaces may
    // destroy entries made before the probe attached).
    const verdict = exactness(source.mode, c);
    if (source.mode === 'tracepoint' && c.health.missedRuns > 0) {
      // The slab tracepoints fire for every cache and the kernel skips nested runs
      // (an IRQ during a slab operation): ctstorm cannot vouch, and says only that.
      expect(verdict.exact).toBe(false);
      expect(verdict.notes).toEqual([expect.stringMatching(/^the kernel skipped \d+ nested runs of the slab tracepoints/)]);
    } else {
      expect(verdict).toEqual({ exact: true, notes: [] });
    }
  });
});
