// Names for what the engine counts by number: a netns inode, a process and its
// cgroup id, a pod's IP address. Three layered sources, each optional: /proc
// (which processes live in which netns, and their cgroups), the cgroup2 tree
// (cgroup id -> path -> pod UID, container, unit) and a pod directory (pod UID,
// IP or container -> namespace, name, workload). Without the directory a pod
// is named by its UID; without cgroup2, processes by their command alone.
import { readlinkSync } from 'node:fs';
import { NETNS_LINK } from '../netns-live.js';
import type { CgroupIndex } from './cgroup-index.js';
import { identityOf, type CgroupIdentity } from './cgroup-names.js';
import { NetnsNames, type NetnsName } from './netns-names.js';
import type { PodDirectory } from './pod-directory.js';
import type { PodInfo } from './pod-info.js';

/** Who a row belongs to, as far as it is known. */
export interface Named {
  /** Pod name (from a pod directory; without one only `podUid` is known). */
  pod?: string;
  namespace?: string;
  podUid?: string;
  /** The owning workload, "<kind>/<name>" in the pod's namespace ("deployment/checkout"). */
  workload?: string;
  /** Container name, or the first 12 characters of its ID. */
  container?: string;
  /** A systemd unit, outside any container. */
  unit?: string;
}

export interface NetnsNamed extends Named {
  /** The machine's own netns (the one pid 1 runs in). */
  host?: boolean;
  /** Pods sharing it (hostNetwork pods all share the host's); `pod` is set only when one does. */
  pods?: number;
  /** Containers in it (names or short IDs), and the commands most of its processes run. */
  containers?: string[];
  processes?: string[];
}

export interface ProcessNamed extends Named {
  /** The cgroup path (cgroup v2), when the id is found. */
  cgroup?: string;
}

export interface NamerOptions {
  /** Where /proc is (tests give a made-up one). */
  proc?: string;
  cgroups?: CgroupIndex | null;
  pods?: PodDirectory | null;
  /** Least time between two /proc refreshes (a refresh lists /proc and reads only new processes). */
  refreshMs?: number;
  /** Clock in ms for the refresh interval. */
  now?: () => number;
}

const DEFAULT_REFRESH_MS = 5000;
const SHORT_ID = 12;
const PROCESSES_SHOWN = 3;

export class Namer {
  private readonly netnsNames: NetnsNames;
  private readonly cgroups: CgroupIndex | null;
  private readonly pods: PodDirectory | null;
  private readonly refreshMs: number;
  private readonly now: () => number;
  private readonly hostInode: number | undefined;
  private lastRefresh = -Infinity;

  constructor(options: NamerOptions = {}) {
    const proc = options.proc ?? '/proc';
    this.netnsNames = new NetnsNames(proc);
    this.cgroups = options.cgroups ?? null;
    this.pods = options.pods ?? null;
    this.refreshMs = options.refreshMs ?? DEFAULT_REFRESH_MS;
    this.now = options.now ?? Date.now;
    // pid 1's link may be unreadable (a sandbox's init); kthreadd (pid 2) is in the host's netns too.
    this.hostInode = netnsInodeOf(`${proc}/1/ns/net`) ?? netnsInodeOf(`${proc}/2/ns/net`);
  }

  /** Starts re-reading /proc when the last read began longer ago than the refresh
   * interval, and returns at once: names change when the read completes. A read
   * that fails keeps the last names. */
  refresh(): void {
    const now = this.now();
    if (now - this.lastRefresh < this.refreshMs) return;
    this.lastRefresh = now;
    this.netnsNames.refresh().catch(() => {});
  }

  /** Re-reads /proc now (a test or a caller that just made a netns); resolves when
   * the names are updated. While a read runs, this is that read, which may have
   * listed /proc before the caller's change. */
  refreshNow(): Promise<void> {
    this.lastRefresh = this.now();
    return this.netnsNames.refresh();
  }

  netns(inode: number): NetnsNamed | undefined {
    const n = this.netnsNames.nameOf(inode);
    const host = inode === this.hostInode;
    if (!n) return host ? { host } : undefined;
    return this.fromNetnsName(n, host);
  }

  process(cgroupId: number): ProcessNamed {
    const path = cgroupId > 0 ? this.cgroups?.pathOf(cgroupId) : undefined;
    if (path === undefined) return {};
    return { ...this.fromCgroup(identityOf(path)), cgroup: path };
  }

  /** The pod an address belongs to (hostNetwork pods share the node's and name none). */
  address(ip: string): Named | undefined {
    const pod = this.pods?.byIp(ip);
    return pod && podNames(pod);
  }

  private fromNetnsName(n: NetnsName, host: boolean): NetnsNamed {
    const out: NetnsNamed = host ? { host } : {};
    // The host's netns is nobody's pod, even with one hostNetwork pod in it.
    if (n.pods.length === 1 && !host) Object.assign(out, this.podByUid(n.pods[0]!));
    if (n.pods.length > 0) out.pods = n.pods.length;
    const pod = out.podUid ? this.pods?.byUid(out.podUid) : undefined;
    const containers = n.containers.map((c) => containerName(c.id, pod));
    if (containers.length > 0) out.containers = containers;
    if (n.pods.length === 0 && n.units.length === 1) out.unit = n.units[0]!;
    const processes = n.processes.slice(0, PROCESSES_SHOWN).map((p) => p.comm);
    if (processes.length > 0) out.processes = processes;
    return out;
  }

  private fromCgroup(id: CgroupIdentity): Named {
    const out: Named = id.podUid ? this.podByUid(id.podUid) : {};
    if (id.containerId) {
      const pod = this.pods?.byContainer(id.containerId) ?? (id.podUid ? this.pods?.byUid(id.podUid) : undefined);
      if (pod && !out.pod) Object.assign(out, podNames(pod));
      out.container = containerName(id.containerId, pod);
    }
    if (id.unit && !id.podUid && !id.containerId) out.unit = id.unit;
    return out;
  }

  private podByUid(uid: string): Named {
    const pod = this.pods?.byUid(uid);
    return pod ? podNames(pod) : { podUid: uid }; // no name without a pod directory: `pod` stays a name
  }
}

function podNames(pod: PodInfo): Named {
  return {
    pod: pod.name,
    namespace: pod.namespace,
    podUid: pod.uid,
    ...(pod.workload ? { workload: `${pod.workload.kind.toLowerCase()}/${pod.workload.name}` } : {}),
  };
}

function containerName(id: string, pod: PodInfo | undefined): string {
  return pod?.containers.find((c) => c.id === id)?.name ?? id.slice(0, SHORT_ID);
}

/** Why other processes' netns links cannot be read (then netns are named by
 * addresses and cgroups only), or undefined when they can. */
export function procNetnsUnreadable(proc = '/proc'): string | undefined {
  const codes: string[] = [];
  for (const pid of [1, 2]) {
    try {
      readlinkSync(`${proc}/${pid}/ns/net`);
      return undefined;
    } catch (err) {
      codes.push(`${proc}/${pid}/ns/net: ${(err as NodeJS.ErrnoException).code ?? 'unreadable'}`);
    }
  }
  return codes.join(', ');
}

function netnsInodeOf(link: string): number | undefined {
  try {
    const m = NETNS_LINK.exec(readlinkSync(link));
    return m ? Number(m[1]) : undefined;
  } catch {
    return undefined;
  }
}
