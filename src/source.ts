// Record sources. The BPF source is the only one today; a netlink (ctnetlink
// events) source for kernels where no BPF mode loads can implement the same
// interface (census is optional for that reason).
import { existsSync, readFileSync } from 'node:fs';
import { getSystemErrorName } from 'node:util';
import { CtstormError } from './errors.js';
import { healthFromArray, type KernelCounters, type NetnsProtoCounts } from './counters.js';
import { loadNative, MODE_NAMES, type NativeBinding, type NativeCensus, type NativeProbe } from './native.js';
import { RECORD_SIZE, RecordBatch } from './record.js';
import { conntrackLoaded, readTable } from './table.js';
import { liveNetnsInodes } from './netns-live.js';
import { NetnsRows } from './netns-rows.js';

export const MODES = MODE_NAMES;
export type Mode = (typeof MODES)[number];
export type ModeChoice = Mode | 'auto';

export interface ModeReport {
  mode: Mode;
  /** Which kernel functions or tracepoints the mode hooks. */
  hooks: string;
  available: boolean;
  /** Why the kernel refused the mode; absent when it loaded or was not tried. */
  reason?: string;
  tried: boolean;
}

export interface Source {
  readonly mode: Mode;
  readonly hooks: string;
  /** What was tried to get here, best mode first. */
  readonly report: readonly ModeReport[];
  /** Waits up to timeoutMs for records. The batch is valid until the next poll. */
  poll(timeoutMs: number): Promise<RecordBatch>;
  /** Exact counters since the probe was loaded. */
  counters(): KernelCounters;
  /** Walks the whole hash table of `buckets` chains in the kernel (BPF source
   * only). One at a time. */
  census?(buckets: number): Promise<CensusOutcome>;
  close(): Promise<void>;
}

export interface Census extends NativeCensus {
  /** Wall time the walk took. */
  seconds: number;
}

/** A census, or why there is none: no insert has shown where the table is yet,
 * the table was resized (before or during the walk) and no insert has shown the
 * new one, or the source closed. */
export type CensusOutcome = Census | 'not-located' | 'resized' | 'closed';

/** Census program runs (~2048 steps each) between yields to the event loop. */
const CENSUS_RUNS_PER_SLICE = 16;

export interface SourceOptions {
  mode?: ModeChoice;
  /** Ring buffer size in bytes: a power of two, at least 4096. */
  ringBytes?: number;
  /** Records copied per poll at most. */
  batchRecords?: number;
  /** libbpf's log on stderr. */
  debug?: boolean;
  /** Capacities of the probe's maps; the defaults fit the table. Tests shrink them
   * to drive the overflow paths (each overflow is counted in health). */
  mapSizes?: { live?: number; pending?: number; netns?: number };
  /** Hash-chain nodes walked at most per direction (1-96, default 96, above the
   * kernel's own chain limit). Tests lower it to drive the "capped" path. */
  chainWalk?: number;
  /** For tests: a stand-in for the compiled addon. */
  native?: NativeBinding;
  /** For tests: the inodes of the network namespaces that exist. */
  liveNetns?: () => ReadonlySet<number>;
}

export const DEFAULT_RING_BYTES = 16 << 20;
/** CTSTORM_MAX_WALK in bpf/ctstorm.h (test/unit/layout.test.ts checks it). */
export const MAX_CHAIN_WALK = 96;
const DEFAULT_BATCH_RECORDS = 4096;

export function isMode(s: string): s is Mode {
  return (MODES as readonly string[]).includes(s);
}

function errnoName(err: unknown): string | undefined {
  const errno = (err as { errno?: unknown }).errno;
  if (typeof errno !== 'number' || errno >= 0) return undefined;
  try {
    return getSystemErrorName(errno);
  } catch {
    return undefined;
  }
}

/** Why the kernel refused a mode, in words an operator can act on. */
function refusal(mode: Mode, err: unknown): string {
  const code = errnoName(err);
  const message = err instanceof Error ? err.message : String(err);
  if (code === 'EPERM' && !canLoadBpf()) {
    return 'EPERM: loading BPF needs root (or CAP_BPF + CAP_PERFMON)';
  }
  if (mode === 'kprobe' && !existsSync('/sys/bus/event_source/devices/kprobe')) {
    return `kernel has no kprobes (CONFIG_KPROBES unset): ${message}`;
  }
  if (mode === 'fentry' && code === 'ESRCH' && conntrackIsModuleWithoutBtf()) {
    return 'kernel has no BTF for the nf_conntrack module (kernels before 5.11, or built without CONFIG_DEBUG_INFO_BTF_MODULES), so fentry cannot attach to its functions';
  }
  // With CAP_BPF + CAP_PERFMON but not CAP_SYS_ADMIN (a sandboxed unit, a container):
  // the kernel lists BTF objects (BPF_BTF_GET_NEXT_ID) to CAP_SYS_ADMIN only, so
  // libbpf cannot find the nf_conntrack module's BTF for fentry's targets.
  if (mode === 'fentry' && !hasCapability(CAP_SYS_ADMIN) && existsSync('/sys/kernel/btf/nf_conntrack')) {
    return `finding the nf_conntrack module's BTF needs CAP_SYS_ADMIN, which this process lacks (${message}); add CAP_SYS_ADMIN for fentry mode, or use tracepoint mode`;
  }
  // Debian's kernels restrict perf_event_open further at perf_event_paranoid 3 (their
  // default): then only CAP_SYS_ADMIN may open the kprobe events kprobe mode uses.
  const paranoid = perfEventParanoid();
  if (mode === 'kprobe' && !hasCapability(CAP_SYS_ADMIN) && paranoid !== undefined && paranoid > 2) {
    return `kernel.perf_event_paranoid is ${paranoid}, above 2, so opening kprobes needs CAP_SYS_ADMIN, which this process lacks (${message}); add CAP_SYS_ADMIN, or set kernel.perf_event_paranoid=2, or use tracepoint mode`;
  }
  return code ? `${code}: ${message}` : message;
}

const CAP_SYS_ADMIN = 21;
const CAP_PERFMON = 38;
const CAP_BPF = 39;

/** Whether this process holds what loading tracing BPF needs: CAP_BPF and
 * CAP_PERFMON, or CAP_SYS_ADMIN (root in a container may hold neither). */
export function canLoadBpf(): boolean {
  return hasCapability(CAP_SYS_ADMIN) || (hasCapability(CAP_BPF) && hasCapability(CAP_PERFMON));
}

/** A capability in this process's effective set (unreadable status: root has all). */
function hasCapability(cap: number): boolean {
  try {
    const hex = /^CapEff:\s*([0-9a-f]+)$/m.exec(readFileSync('/proc/self/status', 'utf8'))?.[1];
    if (!hex) return process.getuid?.() === 0;
    return (BigInt(`0x${hex}`) & (1n << BigInt(cap))) !== 0n;
  } catch {
    return process.getuid?.() === 0;
  }
}

function perfEventParanoid(): number | undefined {
  try {
    const n = Number.parseInt(readFileSync('/proc/sys/kernel/perf_event_paranoid', 'utf8'), 10);
    return Number.isNaN(n) ? undefined : n;
  } catch {
    return undefined;
  }
}

function conntrackIsModuleWithoutBtf(): boolean {
  return existsSync('/sys/module/nf_conntrack/initstate') && !existsSync('/sys/kernel/btf/nf_conntrack');
}

function preflight(): void {
  if (!existsSync('/sys/kernel/btf/vmlinux')) {
    throw new CtstormError(
      'kernel has no BTF (/sys/kernel/btf/vmlinux is missing)',
      'use a kernel built with CONFIG_DEBUG_INFO_BTF=y (Debian, Ubuntu and RHEL kernels are)',
      'ENOBTF',
    );
  }
  if (!conntrackLoaded()) readTable(); // throws the "load nf_conntrack" error
}

/** Entries the live map holds. nf_conntrack_max bounds each netns on its own (0:
 * no limit), so no size covers every machine: room for twice the limit (the
 * table plus objects in flight, or two full netns), at most 4M entries (64 MiB
 * of hash buckets; elements are allocated only when used). A full map is
 * counted in health.untracked. */
export function liveEntriesFor(max: number): number {
  const want = max > 0 ? 2 * max : 1 << 22;
  return Math.min(Math.max(want, 1 << 16), 1 << 22);
}

class BpfSource implements Source {
  readonly hooks: string;
  private readonly buffer: Uint8Array;
  private inflight: Promise<unknown> | undefined;
  private closed = false;
  private censusRunning = false;
  private readonly netnsRows = new NetnsRows();

  constructor(
    private readonly probe: NativeProbe,
    private readonly liveNetns: () => ReadonlySet<number>,
    readonly mode: Mode,
    readonly report: readonly ModeReport[],
    hooks: string,
    batchRecords: number,
  ) {
    this.hooks = hooks;
    this.buffer = new Uint8Array(batchRecords * RECORD_SIZE);
  }

  async poll(timeoutMs: number): Promise<RecordBatch> {
    if (this.closed) throw new Error('source is closed');
    const pending = this.probe.poll(this.buffer, Math.max(0, Math.floor(timeoutMs)));
    this.inflight = pending;
    try {
      return new RecordBatch(this.buffer, await pending);
    } finally {
      this.inflight = undefined;
    }
  }

  counters(): KernelCounters {
    this.probe.sweep(); // tracepoint mode: count what was inserted since the drain's last sweep
    const raw = this.probe.counters();
    const gone = new Set<NetnsProtoCounts>();
    for (const r of this.netnsRows.toRetire(raw.netns, Date.now(), this.liveNetns)) {
      // Kept here only once the kernel no longer has it: never counted twice.
      if (this.probe.deleteNetnsRow(r.cookie, r.inode, r.l4proto)) {
        this.netnsRows.retire(r);
        gone.add(r);
      }
    }
    return {
      protocols: raw.protocols,
      netns: this.netnsRows.merge(raw.netns.filter((r) => !gone.has(r))),
      health: healthFromArray(raw.health, raw.missedRuns),
      missesVisible: raw.missesVisible,
    };
  }

  async census(buckets: number): Promise<CensusOutcome> {
    if (this.closed) return 'closed';
    if (this.censusRunning) throw new CtstormError('a census is already running', 'wait for it to finish', 'EBUSY');
    this.censusRunning = true;
    try {
      const started = this.probe.censusStart(buckets);
      if (started !== 'started') return started;
      const t0 = performance.now();
      for (;;) {
        if (this.closed) return 'closed';
        const state = this.probe.censusRun(CENSUS_RUNS_PER_SLICE);
        if (state === 'resized') return state;
        if (state === 'done') break;
        await new Promise((resolve) => setImmediate(resolve)); // keep the event loop (and the drain) going
      }
      return { ...this.probe.censusRead(), seconds: (performance.now() - t0) / 1000 };
    } finally {
      this.censusRunning = false;
    }
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.probe.close(); // detaches now, or as soon as the in-flight drain returns
    await this.inflight?.catch(() => undefined);
  }
}

function checkOptions(o: SourceOptions): void {
  const ring = o.ringBytes ?? DEFAULT_RING_BYTES;
  if (!Number.isInteger(ring) || ring < 4096 || (ring & (ring - 1)) !== 0 || ring > 1 << 30) {
    throw new CtstormError(`bad ring buffer size ${ring}`, 'use a power of two between 4096 and 1 GiB', 'EINVAL');
  }
  const batch = o.batchRecords ?? DEFAULT_BATCH_RECORDS;
  if (!Number.isInteger(batch) || batch < 1 || batch > 1 << 20) {
    throw new CtstormError(`bad batch size ${batch}`, 'use 1 to 1048576 records', 'EINVAL');
  }
  for (const [name, size] of Object.entries(o.mapSizes ?? {})) {
    if (size !== undefined && (!Number.isInteger(size) || size < 1 || size > 1 << 24)) {
      throw new CtstormError(`bad ${name} map size ${size}`, 'use 1 to 16777216 entries', 'EINVAL');
    }
  }
  const walk = o.chainWalk;
  if (walk !== undefined && (!Number.isInteger(walk) || walk < 1 || walk > MAX_CHAIN_WALK)) {
    throw new CtstormError(`bad chain walk ${walk}`, `use 1 to ${MAX_CHAIN_WALK} nodes`, 'EINVAL');
  }
  if (o.mode !== undefined && o.mode !== 'auto' && !isMode(o.mode)) {
    throw new CtstormError(`unknown mode "${String(o.mode)}"`, `use one of: auto, ${MODES.join(', ')}`, 'EINVAL');
  }
}

type Attempt = { probe: NativeProbe } | { reason: string };

function tryMode(native: NativeBinding, mode: Mode, options: SourceOptions, tableMax: number): Attempt {
  try {
    const probe = new native.Probe(mode, {
      ringBytes: options.ringBytes ?? DEFAULT_RING_BYTES,
      liveEntries: options.mapSizes?.live ?? liveEntriesFor(tableMax),
      pendingEntries: options.mapSizes?.pending ?? 0,
      netnsEntries: options.mapSizes?.netns ?? 0,
      chainWalk: options.chainWalk ?? 0,
      debug: options.debug ?? false,
    });
    return { probe };
  } catch (err) {
    return { reason: refusal(mode, err) };
  }
}

function prepare(options: SourceOptions): { native: NativeBinding; tableMax: number } {
  checkOptions(options);
  if (options.native) return { native: options.native, tableMax: 1 << 18 };
  const native = loadNative();
  preflight();
  return { native, tableMax: readTable().max };
}

/**
 * Loads and attaches the probe. "auto" takes the best mode the kernel allows:
 * fentry, then kprobe, then tracepoint.
 */
export function openSource(options: SourceOptions = {}): Source {
  const { native, tableMax } = prepare(options);
  const choice = options.mode ?? 'auto';
  const report: ModeReport[] = MODES.map((mode) => ({ mode, hooks: native.hooks[mode] ?? '', available: false, tried: false }));

  for (const entry of report) {
    if (choice !== 'auto' && entry.mode !== choice) continue;
    entry.tried = true;
    const attempt = tryMode(native, entry.mode, options, tableMax);
    if ('probe' in attempt) {
      entry.available = true;
      return new BpfSource(attempt.probe, options.liveNetns ?? liveNetnsInodes, entry.mode, report, entry.hooks, options.batchRecords ?? DEFAULT_BATCH_RECORDS);
    }
    entry.reason = attempt.reason;
  }

  const tried = report.filter((r) => r.tried);
  const reasons = tried.map((r) => `${r.mode}: ${r.reason}`).join('; ');
  if (!canLoadBpf() && tried.some((r) => r.reason?.startsWith('EPERM'))) {
    throw new CtstormError('permission denied loading BPF', 'run as root (or with CAP_BPF and CAP_PERFMON)', 'EPERM');
  }
  if (choice !== 'auto') {
    throw new CtstormError(`the kernel refused ${choice} mode (${reasons})`, 'use --mode auto, or see which modes load with: ctstorm modes', 'EMODE');
  }
  throw new CtstormError(`no BPF attach mode loads on this kernel (${reasons})`, 'run with --debug for the libbpf log', 'EMODE');
}

/** Tries every mode (load, attach, detach) and says which the kernel allows. */
export function probeModes(options: Omit<SourceOptions, 'mode'> = {}): ModeReport[] {
  const { native, tableMax } = prepare(options);
  return MODES.map((mode) => {
    const attempt = tryMode(native, mode, options, tableMax);
    const hooks = native.hooks[mode] ?? '';
    if ('reason' in attempt) return { mode, hooks, available: false, tried: true, reason: attempt.reason };
    attempt.probe.close();
    return { mode, hooks, available: true, tried: true };
  });
}
