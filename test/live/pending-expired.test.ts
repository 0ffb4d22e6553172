// Tracepoint mode's sweep gives up on an entry still unconfirmed 10 s after its
// allocation (CTSTORM_PENDING_MAX_AGE_NS): health.pendingExpired counts it. If the
// entry is then freed without ever having been in the table, the free path counts
// it in health.unconfirmedFrees, and it is neither an insert nor a destroy.
// An entry is held unconfirmed by NFQUEUE: conntrack confirms an entry only when
// its packet leaves the last input hook accepted, and a queued packet on which
// userspace never gives a verdict does not leave. nfqueue-hold.py binds the
// queue and never answers; when its socket closes the kernel drops the queued
// packets, freeing their entries (never hashed). In fentry and kprobe modes,
// which hook the insert itself, the same entries are simply never seen.
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { performance } from 'node:perf_hooks';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { exactness } from '../../src/index.js';
import { testModes } from './modes.js';
import { NetnsPair } from './netns.js';
import { liveSkipReason } from './privileges.js';
import { useRecorder } from './recorder.js';
import { until } from './wait.js';

const skip = liveSkipReason();
const holderScript = fileURLToPath(new URL('./nfqueue-hold.py', import.meta.url));
// Debian's interpreter (scripts/setup.sh installs it), not whatever shim is first on PATH.
const PYTHON = '/usr/bin/python3';
const FLOWS = 20;
const PORT = 7400; // nobody listens there; the packets never get past the queue anyway
const QUEUE = 7; // queues are per netns: any number works
const MAX_AGE_MS = 10_000; // CTSTORM_PENDING_MAX_AGE_NS in bpf/ctstorm.h
// Inside the test VM nothing else allocates conntrack entries, so machine-wide
// health counters can be matched over the whole test; on a host they are matched
// over the shortest window that contains the events (see below).
const alone = process.env.CTSTORM_VM === '1';


/** nfqueue-hold.py running in a namespace, its output captured. */
class Holder {
  private readonly proc: ChildProcessWithoutNullStreams;
  private out = '';
  private err = '';
  private code: number | null | undefined;
  readonly exit: Promise<number | null>;

  constructor(netns: string, queue: number) {
    this.proc = spawn('ip', ['netns', 'exec', netns, PYTHON, holderScript, String(queue)]);
    this.proc.stdout.on('data', (d: Buffer) => (this.out += d.toString()));
    this.proc.stderr.on('data', (d: Buffer) => (this.err += d.toString()));
    this.proc.stdin.on('error', () => {}); // it may have exited already
    this.exit = new Promise((resolve) =>
      this.proc.on('exit', (code, signal) => {
        this.code = code ?? (signal ? -1 : null);
        resolve(this.code);
      }),
    );
  }

  get exited(): boolean {
    return this.code !== undefined;
  }

  get bound(): boolean {
    return /^bound$/m.test(this.out);
  }

  /** Queued packets it has read (and not answered). */
  get packets(): number {
    const all = [...this.out.matchAll(/^packets (\d+)$/gm)];
    return all.length ? Number(all[all.length - 1]![1]) : 0;
  }

  /** What it printed when it ended: the packets it held until then. */
  get held(): number | undefined {
    const m = /^held (\d+)$/m.exec(this.out);
    return m ? Number(m[1]) : undefined;
  }

  describe(): string {
    return `holder stdout ${JSON.stringify(this.out)}, stderr ${JSON.stringify(this.err)}, exit ${String(this.code)}`;
  }

  /** Closes its stdin: it closes its socket (the kernel drops what is queued) and exits. */
  release(): void {
    this.proc.stdin.end();
  }

  kill(): void {
    if (!this.exited) this.proc.kill('SIGKILL');
  }
}

/** The input rule that queues the test's new UDP packets: nft's `queue` where the kernel
 * has it; else iptables' NFQUEUE target (this host's kernel has no CONFIG_NFT_QUEUE but
 * has xt_NFQUEUE, which iptables-nft reaches through nft_compat). Returns its removal. */
function queueRule(pair: NetnsPair): () => void {
  try {
    pair.exec(
      pair.server,
      'nft',
      `add table ip ctstorm_queue; add chain ip ctstorm_queue input { type filter hook input priority 0; }; ` +
        `add rule ip ctstorm_queue input udp dport ${PORT} ct state new queue num ${QUEUE}`,
    );
    return () => pair.exec(pair.server, 'nft', 'delete table ip ctstorm_queue');
  } catch {
    // An nft transaction is all or nothing: nothing of it is left to undo.
  }
  const rule = ['INPUT', '-p', 'udp', '--dport', String(PORT), '-m', 'conntrack', '--ctstate', 'NEW', '-j', 'NFQUEUE', '--queue-num', String(QUEUE)];
  pair.exec(pair.server, 'iptables', '-I', ...rule);
  return () => pair.exec(pair.server, 'iptables', '-D', ...rule);
}

describe.skipIf(skip !== undefined)('entries held unconfirmed past the sweep\'s 10 s (NFQUEUE)', () => {
  const pair = new NetnsPair('pexp');
  beforeAll(() => pair.up());
  afterAll(() => pair.down());

  describe.each(testModes())('in %s mode', (mode) => {
    describe('held, then dropped by the queue', () => {
      const rec = useRecorder(pair, mode);
      let holder: Holder | undefined;
      let removeRule: (() => void) | undefined;
      const cleanUp = async (): Promise<void> => {
        holder?.kill();
        if (holder) await Promise.race([holder.exit, new Promise((r) => setTimeout(r, 5_000))]);
        holder = undefined;
        try {
          removeRule?.();
        } finally {
          removeRule = undefined;
        }
      };
      afterAll(cleanUp);

      it('are never an insert or a destroy; tracepoint mode stops watching them after 10 s (pendingExpired) and counts their frees as unconfirmed', async () => {
        // fentry and kprobe hook the insert itself: nothing to expire, nothing to wait for.
        const queued = rec().source.mode === 'tracepoint';
        try {
          removeRule = queueRule(pair);
          const h = new Holder(pair.server, QUEUE);
          holder = h;
          await until(() => h.bound || h.exited, 15_000, 'nfqueue-hold.py to bind its queue', () => h.describe());
          expect(h.bound, h.describe()).toBe(true);

          const health = () => rec().source.counters().health;
          const netns = () => rec().counters() ?? { inserts: 0, destroys: 0, lost: 0 };
          const state = () =>
            `netns counters ${JSON.stringify(netns())}, records ${rec().records.length}, in table ${pair.count()}, health ${JSON.stringify(health())}; ${h.describe()}`;
          const h0 = health();
          const sent = performance.now();
          const ports = await pair.oneway(FLOWS, PORT);
          expect(new Set(ports).size).toBe(FLOWS);
          await until(() => h.packets >= FLOWS, 15_000, `${FLOWS} packets in the queue`, state);
          expect(h.packets).toBe(FLOWS);
          // Allocated and held: the netns's entry count includes unconfirmed entries.
          expect(pair.count()).toBe(FLOWS);
          // Still inside the 10 s: nothing expired yet, nothing inserted.
          const early = health();
          if (performance.now() - sent < MAX_AGE_MS - 1_000) expect(early.pendingExpired - h0.pendingExpired).toBe(0);

          if (queued) {
            await until(() => health().pendingExpired - h0.pendingExpired >= FLOWS, 30_000, `${FLOWS} expired pending items`, state);
            // Each entry was allocated after `sent`; the sweep drops it only once it is older than 10 s.
            expect(performance.now() - sent).toBeGreaterThan(MAX_AGE_MS);
          } else {
            await new Promise((r) => setTimeout(r, 2_000)); // held across many drains
          }
          const h1 = health();
          expect(h1.pendingExpired - h0.pendingExpired).toBe(queued ? FLOWS : 0);
          expect(netns()).toMatchObject({ inserts: 0, destroys: 0, lost: 0 });
          expect(rec().of('insert')).toHaveLength(0);
          expect(pair.count()).toBe(FLOWS); // still held, still unconfirmed
          expect(h.packets).toBe(FLOWS);
          // The queued entries are not freed while held.
          if (alone) expect(h1.unconfirmedFrees - h0.unconfirmedFrees).toBe(0);

          // Release: the kernel drops the queued packets and frees their entries.
          const u0 = health().unconfirmedFrees;
          h.release();
          await Promise.race([h.exit, new Promise((r) => setTimeout(r, 10_000))]);
          expect(h.exited, h.describe()).toBe(true);
          expect(await h.exit, h.describe()).toBe(0);
          expect(h.held, h.describe()).toBe(FLOWS);
          // Only tracepoint mode sees frees of entries never inserted (its hook is the slab's).
          await until(() => (!queued || health().unconfirmedFrees - u0 >= FLOWS) && pair.count() === 0, 10_000, `${FLOWS} entries freed`, state);
          await new Promise((r) => setTimeout(r, 250)); // some drains, for any record they might have made
          const c = rec().source.counters();
          // On a host other namespaces may free unconfirmed entries too; the window
          // from just before the release holds only these frees unless they do.
          if (queued) expect(c.health.unconfirmedFrees - u0, state()).toBe(FLOWS);
          if (queued && alone) expect(c.health.unconfirmedFrees - h0.unconfirmedFrees).toBe(FLOWS);
          expect(c.health.pendingExpired - h0.pendingExpired).toBe(queued ? FLOWS : 0);
          expect(c.health.neverHashed - h0.neverHashed).toBe(0); // IPS_CONFIRMED was never set
          expect(netns()).toMatchObject({ inserts: 0, destroys: 0, lost: 0 });
          expect(rec().records).toHaveLength(0);
          if (queued) expect(exactness('tracepoint', c).exact).toBe(c.health.missedRuns === 0);
        } finally {
          await cleanUp();
        }
      });
    });
  });
});
