// Cgroup paths by cgroup id. The probe records bpf_get_current_cgroup_id(): a
// cgroup v2 id, which on 64-bit kernels is the st_ino of that cgroup's directory
// in the cgroup2 filesystem (kernfs node id). The index walks that filesystem to
// map ids to paths such as /kubepods.slice/.../cri-containerd-<id>.scope, which
// identityOf() (cgroup-names.ts) then names. A miss re-walks the tree, at most
// once per minRefreshMs; a cgroup removed keeps its last path until the bound
// needs the room (its final conntrack records still need a name).
import { readdirSync, readFileSync, statSync } from 'node:fs';

/** Where the cgroup2 filesystem is mounted, from /proc/self/mountinfo text:
 * /sys/fs/cgroup on a unified host, /sys/fs/cgroup/unified on a hybrid one,
 * undefined without one. A mount of the whole hierarchy (root "/") wins over a
 * bind mount of a subtree, whose paths would lack the subtree's prefix. */
export function cgroup2MountOf(mountinfo: string): string | undefined {
  let subtree: string | undefined;
  for (const line of mountinfo.split('\n')) {
    // "<id> <parent> <maj:min> <root> <mount point> <options> [optional...] - <fstype> <source> <super options>"
    const sep = line.indexOf(' - ');
    if (sep < 0) continue;
    const [fstype] = line.slice(sep + 3).split(' ');
    if (fstype !== 'cgroup2') continue;
    const [, , , root, mountPoint] = line.slice(0, sep).split(' ');
    if (root === undefined || mountPoint === undefined) continue;
    if (unescapeMountinfo(root) === '/') return unescapeMountinfo(mountPoint);
    subtree ??= unescapeMountinfo(mountPoint);
  }
  return subtree;
}

/** The kernel writes space, tab, newline and backslash in mountinfo paths as
 * octal escapes (\040, \011, \012, \134). */
function unescapeMountinfo(field: string): string {
  return field.replace(/\\([0-7]{3})/g, (_, octal: string) => String.fromCharCode(parseInt(octal, 8)));
}

export function cgroup2MountOfThisHost(): string | undefined {
  try {
    return cgroup2MountOf(readFileSync('/proc/self/mountinfo', 'utf8'));
  } catch {
    return undefined;
  }
}

export interface CgroupIndexOptions {
  /** The cgroup2 mount point; found in /proc/self/mountinfo by default; null
   * for none (then nothing is walked). */
  mount?: string | null;
  /** Least time between two walks triggered by misses (default 1000 ms). */
  minRefreshMs?: number;
  /** Clock for the rate limit, in ms (default performance.now). */
  now?: () => number;
  /** Most cgroups held, live and removed together (default 65,536). */
  maxEntries?: number;
}

/** Deeper than any cgroup tree seen in practice (kubelet's are 5 levels). */
const MAX_DEPTH = 32;

export class CgroupIndex {
  /** False without a cgroup2 mount: then nothing is walked and no path is known. */
  readonly available: boolean;
  /** Directories and wall time of the last walk (for cost figures). */
  lastWalk = { dirs: 0, ms: 0 };

  private readonly mount: string | undefined;
  private readonly minRefreshMs: number;
  private readonly now: () => number;
  private readonly maxEntries: number;
  /** Cgroups found by the last walk. */
  private live = new Map<number, string>();
  /** Cgroups gone since, oldest removal first (Map keeps insertion order). */
  private readonly removed = new Map<number, string>();
  private lastWalkAt = -Infinity;

  constructor(options: CgroupIndexOptions = {}) {
    this.mount = options.mount === null ? undefined : (options.mount ?? cgroup2MountOfThisHost());
    this.available = this.mount !== undefined;
    this.minRefreshMs = options.minRefreshMs ?? 1000;
    this.now = options.now ?? (() => performance.now());
    this.maxEntries = options.maxEntries ?? 65_536;
  }

  /** The cgroup's path below the mount ('/' for the root), or undefined if it
   * is not found even after a walk (or a walk was done too recently to try). */
  pathOf(id: number): string | undefined {
    if (!this.available) return undefined;
    const known = this.live.get(id) ?? this.removed.get(id);
    if (known !== undefined) return known;
    if (this.now() - this.lastWalkAt < this.minRefreshMs) return undefined;
    this.refresh();
    return this.live.get(id);
  }

  /** Walks the cgroup tree now, whatever the rate limit. */
  refresh(): void {
    if (this.mount === undefined) return;
    const started = performance.now();
    this.lastWalkAt = this.now();
    const found = this.walk(this.mount);
    for (const [id, path] of this.live) {
      if (!found.has(id)) this.removed.set(id, path);
    }
    for (const id of found.keys()) this.removed.delete(id);
    this.live = found;
    for (const id of this.removed.keys()) {
      if (this.live.size + this.removed.size <= this.maxEntries) break;
      this.removed.delete(id);
    }
    this.lastWalk = { dirs: found.size, ms: performance.now() - started };
  }

  /** Every cgroup directory under the mount, up to maxEntries and MAX_DEPTH. */
  private walk(mount: string): Map<number, string> {
    const found = new Map<number, string>();
    const stack: Array<{ dir: string; path: string; depth: number }> = [{ dir: mount, path: '/', depth: 0 }];
    while (stack.length > 0 && found.size < this.maxEntries) {
      const { dir, path, depth } = stack.pop()!;
      const id = idOf(dir);
      if (id === undefined) continue;
      found.set(id, path);
      if (depth >= MAX_DEPTH) continue;
      let entries;
      try {
        entries = readdirSync(dir, { withFileTypes: true });
      } catch {
        continue; // removed during the walk
      }
      for (const entry of entries) {
        if (!entry.isDirectory()) continue; // controller files; no symlinks are followed
        stack.push({ dir: `${dir}/${entry.name}`, path: path === '/' ? `/${entry.name}` : `${path}/${entry.name}`, depth: depth + 1 });
      }
    }
    return found;
  }
}

/** The directory's inode as a Number, undefined if it is gone or the id would
 * not be exact (kernfs puts a generation in the high 32 bits, so ids only pass
 * 2^53 after 2^21 wraps of the 32-bit counter). */
function idOf(dir: string): number | undefined {
  try {
    const ino = statSync(dir, { bigint: true }).ino;
    return ino <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(ino) : undefined;
  } catch {
    return undefined;
  }
}
