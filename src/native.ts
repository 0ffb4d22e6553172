// The only file that loads the compiled addon: a local build (build/Release) first,
// else the package's prebuild for this platform (prebuilds/linux-<arch>), as
// node-gyp-build finds them.
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { CtstormError } from './errors.js';
import { RECORD_SIZE, RECORD_VERSION } from './record.js';

export interface NativeCounts {
  inserts: number;
  destroys: number;
  lost: number;
}

export interface NativeCounters {
  protocols: Array<NativeCounts & { l4proto: number }>;
  netns: Array<NativeCounts & { cookie: number; inode: number; l4proto: number }>;
  /** Indexed by the ctstorm_health enum in bpf/ctstorm.h. */
  health: number[];
  /** Runs of the attached programs the kernel skipped (recursion, kprobe misses). */
  missedRuns: number;
  /** False when this kernel cannot report every kind of skipped run. */
  missesVisible: boolean;
}

export interface NativeProbeOptions {
  ringBytes: number;
  liveEntries: number;
  /** 0: the probe's default. */
  pendingEntries: number;
  netnsEntries: number;
  /** Chain steps walked at most per direction; 0: the probe's own limit. */
  chainWalk: number;
  debug: boolean;
}

/** What a census found (bpf/census.c, struct ctstorm_census). */
export interface NativeCensus {
  done: boolean;
  buckets: number;
  bucketsWalked: number;
  /** Hash nodes: two per entry, one for a NAT clash entry. */
  nodes: number;
  entries: number;
  empty: number;
  longest: number;
  /** Bucket walks that met another bucket's marker (an entry moved meanwhile):
   * each was walked again, up to 3 times. */
  moved: number;
  readErrors: number;
  netnsOverflow: number;
  /** NAT clash entries (in the table by their reply node alone). */
  natClash: number;
  /** Buckets by chain length (nodes); the last bin holds that length and longer. */
  histogram: number[];
  netns: Array<{ cookie: number; inode: number; entries: number }>;
}

export interface NativeProbe {
  readonly mode: string;
  /** Resolves with the number of bytes (whole records) written into buf. */
  poll(buf: Uint8Array, timeoutMs: number): Promise<number>;
  /** Reads the counters as they are (see sweep). */
  counters(): NativeCounters;
  /** Tracepoint mode: reports entries inserted since the last sweep (the drain
   * sweeps every ~5 ms too). A no-op in the other modes. */
  sweep(): void;
  /** Deletes one per-netns counter row; true when there was one. */
  deleteNetnsRow(cookie: number, inode: number, l4proto: number): boolean;
  /** Starts a census of a table of this many buckets: "not-located" while no
   * insert has shown where the table is, "resized" when it was resized since and
   * no insert has shown the new one. */
  censusStart(buckets: number): 'started' | 'not-located' | 'resized';
  /** Up to maxRuns runs of the census program (700-2048 steps each): "resized"
   * when the table was resized under the walk (its counts are void). */
  censusRun(maxRuns: number): 'running' | 'done' | 'resized';
  censusRead(): NativeCensus;
  close(): void;
}

export interface NativeBinding {
  Probe: new (mode: string, options: NativeProbeOptions) => NativeProbe;
  recordSize: number;
  recordVersion: number;
  hooks: Record<string, string>;
  /** sizeof each named struct in the running kernel's BTF (vmlinux, then the
   * module's when it is loaded); -1 for one not found. Throws without BTF. */
  structSizes?(module: string, names: string[]): Record<string, number>;
}

/** The attach modes, in the addon's order (enum ct_mode); source.ts's MODES. */
export const MODE_NAMES = ['fentry', 'kprobe', 'tracepoint'] as const;

const packageRoot = fileURLToPath(new URL('..', import.meta.url));
/** What a machine needs to build the addon when no prebuild fits it: the Debian
 * packages are listed once, in scripts/build-packages, for the scripts and this. */
export function sourceBuildFix(): string {
  let packages = "the packages in ctstorm's scripts/build-packages";
  try {
    packages = readFileSync(join(packageRoot, 'scripts', 'build-packages'), 'utf8').trim();
  } catch {
    // a copy of dist without the scripts: name the file
  }
  return `build it from source: apt-get install ${packages}, then CTSTORM_BUILD_FROM_SOURCE=1 npm rebuild ctstorm`;
}
/** A load error that names a shared library the machine lacks. */
function missingLibraryFix(why: string): string | undefined {
  if (/libelf\.so/.test(why)) return 'install libelf (Debian 13: libelf1t64; Debian 12, Ubuntu: libelf1), or ' + sourceBuildFix();
  if (/libz\.so/.test(why)) return 'install zlib (zlib1g), or ' + sourceBuildFix();
  return undefined;
}
let binding: NativeBinding | undefined;

/** The addon file this machine would load, or an error saying why there is none. */
export function findAddon(): string {
  const require = createRequire(import.meta.url);
  const nodeGypBuild = require('node-gyp-build') as { path(dir: string): string };
  try {
    return nodeGypBuild.path(packageRoot);
  } catch (err) {
    const why = err instanceof Error ? err.message.split('\n')[0] : String(err);
    throw new CtstormError(`no native addon for this machine (${why})`, sourceBuildFix(), 'ENOADDON');
  }
}

export function loadNative(): NativeBinding {
  if (binding) return binding;
  const addonPath = findAddon();
  const require = createRequire(import.meta.url);
  try {
    binding = require(addonPath) as NativeBinding;
  } catch (err) {
    const why = (err instanceof Error ? err.message.split('\n')[0] : undefined) ?? String(err);
    throw new CtstormError(`native addon ${addonPath} failed to load (${why})`, missingLibraryFix(why) ?? sourceBuildFix(), 'ENOADDON');
  }
  const modes = Object.keys(binding.hooks).join(',');
  if (modes !== MODE_NAMES.join(',')) {
    binding = undefined;
    throw new CtstormError(`the native addon has modes ${modes}, this code knows ${MODE_NAMES.join(',')}`, 'rebuild both from one checkout: npm run build', 'ENOADDON');
  }
  if (binding.recordSize !== RECORD_SIZE || binding.recordVersion !== RECORD_VERSION) {
    const found = `${binding.recordSize}-byte v${binding.recordVersion}`;
    binding = undefined;
    throw new CtstormError(
      `the native addon writes ${found} records, this code reads ${RECORD_SIZE}-byte v${RECORD_VERSION}`,
      'rebuild both from one checkout: npm run build',
      'ENOADDON',
    );
  }
  return binding;
}
