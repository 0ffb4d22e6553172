// Which pods, containers, units and processes live in each network namespace,
// from /proc: each process's netns (ns/net), cgroup and command name. Refreshed
// incrementally: a refresh lists /proc and reads (three small reads each) the
// processes not seen before, those still young (see YOUNG_MS) and a rotating
// twelfth of the rest; processes gone are dropped. A netns keeps its
// last name after its processes are gone, until forget() (its final rows still
// need one).
import { readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { NETNS_LINK } from '../netns-live.js';
import { cgroupPathOf, identityOf, type CgroupIdentity } from './cgroup-names.js';

interface ProcessInfo {
  netns: number;
  comm: string;
  identity: CgroupIdentity;
  /** When it was first seen (ms): young processes are read again. */
  firstSeen: number;
}

/** A process is read again at every refresh while younger than this: right after
 * it starts it usually execs, joins its cgroup and enters its netns (a runtime's
 * shim, `ip netns exec`), and its first reading was of what it was before. */
const YOUNG_MS = 30_000;
/** Older processes are read again one in this many per refresh, in turn: a
 * process that moves later, or a pid reused between two refreshes, is put right
 * within this many refreshes. */
const ROTATION = 12;

export interface NetnsName {
  inode: number;
  /** Pod UIDs whose containers share this netns (one for a pod's netns; several
   * hostNetwork pods share the host's). */
  pods: string[];
  containers: Array<{ id: string; runtime?: string; podUid?: string }>;
  /** systemd units of processes outside any container. */
  units: string[];
  /** Command names, most processes first. */
  processes: Array<{ comm: string; count: number }>;
}

export class NetnsNames {
  private readonly processes = new Map<number, ProcessInfo>();
  private readonly names = new Map<number, NetnsName>();
  /** Reads done by the last refresh (for cost figures). */
  lastReads = 0;

  private round = 0;

  constructor(
    private readonly proc = '/proc',
    private readonly now: () => number = Date.now,
  ) {}

  refresh(): void {
    let pids: number[];
    try {
      pids = readdirSync(this.proc).filter((d) => /^\d+$/.test(d)).map(Number);
    } catch {
      return;
    }
    this.lastReads = 0;
    this.round++;
    const now = this.now();
    const alive = new Set(pids);
    for (const pid of this.processes.keys()) if (!alive.has(pid)) this.processes.delete(pid);
    for (const pid of pids) {
      const known = this.processes.get(pid);
      if (known && now - known.firstSeen >= YOUNG_MS && pid % ROTATION !== this.round % ROTATION) continue;
      const info = this.read(pid, known?.firstSeen ?? now);
      if (info) this.processes.set(pid, info);
      else this.processes.delete(pid);
    }
    this.rebuild();
  }

  nameOf(inode: number): NetnsName | undefined {
    return this.names.get(inode);
  }

  /** Drops the name of a netns whose rows are gone too. */
  forget(inode: number): void {
    this.names.delete(inode);
  }

  private read(pid: number, firstSeen: number): ProcessInfo | undefined {
    try {
      this.lastReads += 3;
      const m = NETNS_LINK.exec(readlinkSync(`${this.proc}/${pid}/ns/net`));
      if (!m) return undefined;
      const comm = readFileSync(`${this.proc}/${pid}/comm`, 'utf8').trim();
      const path = cgroupPathOf(readFileSync(`${this.proc}/${pid}/cgroup`, 'utf8'));
      return { netns: Number(m[1]), comm, identity: path ? identityOf(path) : {}, firstSeen };
    } catch {
      return undefined; // exited meanwhile, or a kernel thread without a netns link
    }
  }

  private rebuild(): void {
    const fresh = new Map<number, { pods: Set<string>; containers: Map<string, NetnsName['containers'][number]>; units: Set<string>; comms: Map<string, number> }>();
    for (const p of this.processes.values()) {
      let n = fresh.get(p.netns);
      if (!n) fresh.set(p.netns, (n = { pods: new Set(), containers: new Map(), units: new Set(), comms: new Map() }));
      const id = p.identity;
      if (id.podUid) n.pods.add(id.podUid);
      if (id.containerId) n.containers.set(id.containerId, { id: id.containerId, ...(id.runtime ? { runtime: id.runtime } : {}), ...(id.podUid ? { podUid: id.podUid } : {}) });
      if (id.unit) n.units.add(id.unit);
      n.comms.set(p.comm, (n.comms.get(p.comm) ?? 0) + 1);
    }
    // Netns without processes now keep their last name (see forget()).
    for (const [inode, n] of fresh) {
      this.names.set(inode, {
        inode,
        pods: [...n.pods].sort(),
        containers: [...n.containers.values()].sort((a, b) => a.id.localeCompare(b.id)),
        units: [...n.units].sort(),
        processes: [...n.comms].map(([comm, count]) => ({ comm, count })).sort((a, b) => b.count - a.count || a.comm.localeCompare(b.comm)),
      });
    }
  }
}
