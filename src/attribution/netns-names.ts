// Which pods, containers, units and processes live in each network namespace,
// from /proc: each process's netns (ns/net), cgroup and command name. Refreshed
// incrementally: a refresh lists /proc and reads (three small reads each) the
// processes not seen before, those still young (see YOUNG_MS) and a rotating
// twelfth of the rest; processes gone are dropped. It runs beside a ring buffer
// drain on the main thread, so it reads asynchronously, BATCH processes at a
// time with the event loop let run between batches, and keeps per-netns counts
// up to date as processes come, change and go: only the netns that changed are
// named again, so a refresh that finds nothing new costs the listing and the
// rotation's reads, not a renaming of every netns. Names change only when a
// refresh completes. A netns keeps its last name after its processes are gone,
// until forget() (its final rows still need one).
import { readFile as readFileCallback, readlink as readlinkCallback } from 'node:fs';
import { readdir } from 'node:fs/promises';
import { promisify } from 'node:util';
import { NETNS_LINK } from '../netns-live.js';
import { cgroupPathOf, identityOf, type CgroupIdentity } from './cgroup-names.js';

interface ProcessInfo {
  netns: number;
  comm: string;
  identity: CgroupIdentity;
  /** When it was first seen (ms): young processes are read again. */
  firstSeen: number;
  /** The last refresh whose listing of /proc showed it. */
  listed: number;
}

/** What the reads of a process find. */
type Reading = Omit<ProcessInfo, 'firstSeen' | 'listed'>;

/** A process is read again at every refresh while younger than this: right after
 * it starts it usually execs, joins its cgroup and enters its netns (a runtime's
 * shim, `ip netns exec`), and its first reading was of what it was before. */
const YOUNG_MS = 30_000;
/** Older processes are read again one in this many per refresh, in turn: a
 * process that moves later, or a pid reused between two refreshes, is put right
 * within this many refreshes. */
const ROTATION = 12;
/** How long a netns without processes keeps its name (its last rows outlive it a
 * while; then the name goes, so names held stay bounded by the netns alive). */
const KEEP_GONE_MS = 10 * 60_000;
/** Processes read at once (three reads each); the event loop runs between batches. */
const BATCH = 64;
/** Entries of the listing, processes held or netns named between two turns of the
 * event loop (the first refreshes run before V8 has compiled this code: a few
 * ms at most, then). */
const CHUNK = 1024;
const nextTurn = () => new Promise<void>((resolve) => setImmediate(resolve));
/** The callback forms, promisified: for these small reads they cost the main
 * thread about half what fs/promises does with its FileHandle per read (a first
 * refresh of bench/names.mjs's 10,000 processes: 0.63 s of CPU against 1.14 s). */
const readFile = promisify(readFileCallback);
const readlink = promisify(readlinkCallback);

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

/** What a netns's live processes have, each with how many processes have it. */
interface Tally {
  processes: number;
  pods: Map<string, number>;
  containers: Map<string, { container: NetnsName['containers'][number]; count: number }>;
  units: Map<string, number>;
  comms: Map<string, number>;
}

export class NetnsNames {
  private readonly processes = new Map<number, ProcessInfo>();
  private readonly tallies = new Map<number, Tally>();
  /** Netns whose tally changed since their name was last made. */
  private readonly dirty = new Set<number>();
  private readonly names = new Map<number, NetnsName>();
  /** Named netns left without processes, since when (ms). */
  private readonly emptySince = new Map<number, number>();
  private running: Promise<void> | undefined;
  /** Reads done by the last refresh (for cost figures). */
  lastReads = 0;

  private round = 0;

  constructor(
    private readonly proc = '/proc',
    private readonly now: () => number = Date.now,
  ) {}

  /** Reads /proc again; while one refresh runs, a call returns its promise. An
   * unreadable /proc leaves the names as they were. */
  refresh(): Promise<void> {
    return (this.running ??= this.readProc().finally(() => {
      this.running = undefined;
    }));
  }

  /** The name as of the last completed refresh. */
  nameOf(inode: number): NetnsName | undefined {
    return this.names.get(inode);
  }

  /** Drops the name of a netns whose rows are gone too (one with processes again
   * is named again by the next refresh). */
  forget(inode: number): void {
    this.names.delete(inode);
    this.emptySince.delete(inode);
    if (this.tallies.has(inode)) this.dirty.add(inode);
  }

  private async readProc(): Promise<void> {
    let entries: string[];
    try {
      entries = await readdir(this.proc);
    } catch {
      return;
    }
    const round = ++this.round;
    const now = this.now();
    // One pass over the listing (pids are its entries that are numbers), one over
    // the processes held: those the listing did not show are gone.
    const due: number[] = [];
    let steps = 0;
    for (const entry of entries) {
      if (++steps % CHUNK === 0) await nextTurn();
      const pid = Number(entry);
      if (!Number.isInteger(pid)) continue;
      const known = this.processes.get(pid);
      if (known) known.listed = round;
      if (!known || now - known.firstSeen < YOUNG_MS || pid % ROTATION === round % ROTATION) due.push(pid);
    }
    for (const [pid, p] of this.processes) {
      if (++steps % CHUNK === 0) await nextTurn();
      if (p.listed === round) continue;
      this.processes.delete(pid);
      this.count(p, -1);
    }
    for (let i = 0; i < due.length; i += BATCH) {
      await nextTurn();
      const batch = due.slice(i, i + BATCH);
      const readings = await Promise.all(batch.map((pid) => this.read(pid)));
      for (let k = 0; k < batch.length; k++) this.record(batch[k]!, readings[k], now, round);
    }
    // The netns that changed are named anew, then all at once take their new names.
    const changed = [...this.dirty];
    this.dirty.clear();
    const fresh: NetnsName[] = [];
    for (const inode of changed) {
      if (++steps % CHUNK === 0) await nextTurn();
      const tally = this.tallies.get(inode);
      if (tally) {
        fresh.push(nameFrom(inode, tally));
        this.emptySince.delete(inode);
      } else if (this.names.has(inode) && !this.emptySince.has(inode)) {
        this.emptySince.set(inode, now); // without processes: its last name stays, for a while
      }
    }
    for (const n of fresh) this.names.set(n.inode, n);
    for (const [inode, since] of this.emptySince) {
      if (now - since < KEEP_GONE_MS) continue;
      this.names.delete(inode);
      this.emptySince.delete(inode);
    }
    this.lastReads = 3 * due.length;
  }

  /** Records what a read of `pid` found (undefined: gone, or no netns link). */
  private record(pid: number, read: Reading | undefined, firstSeen: number, listed: number): void {
    const known = this.processes.get(pid);
    if (known && read && sameProcess(known, read)) return;
    if (known) {
      this.processes.delete(pid);
      this.count(known, -1);
    }
    if (!read) return;
    const p = { ...read, firstSeen: known?.firstSeen ?? firstSeen, listed };
    this.processes.set(pid, p);
    this.count(p, 1);
  }

  private async read(pid: number): Promise<Reading | undefined> {
    try {
      const m = NETNS_LINK.exec(await readlink(`${this.proc}/${pid}/ns/net`));
      if (!m) return undefined;
      const [comm, cgroup] = await Promise.all([readFile(`${this.proc}/${pid}/comm`, 'utf8'), readFile(`${this.proc}/${pid}/cgroup`, 'utf8')]);
      const path = cgroupPathOf(cgroup);
      return { netns: Number(m[1]), comm: comm.trim(), identity: path ? identityOf(path) : {} };
    } catch {
      return undefined; // exited meanwhile, or a zombie without a netns link
    }
  }

  /** Adds (1) or takes away (-1) a process from its netns's tally. */
  private count(p: ProcessInfo, by: 1 | -1): void {
    let t = this.tallies.get(p.netns);
    if (!t) this.tallies.set(p.netns, (t = { processes: 0, pods: new Map(), containers: new Map(), units: new Map(), comms: new Map() }));
    this.dirty.add(p.netns);
    t.processes += by;
    if (t.processes === 0) {
      this.tallies.delete(p.netns);
      return;
    }
    const id = p.identity;
    if (id.podUid) bump(t.pods, id.podUid, by);
    if (id.unit) bump(t.units, id.unit, by);
    bump(t.comms, p.comm, by);
    if (id.containerId) {
      const c = t.containers.get(id.containerId);
      const count = (c?.count ?? 0) + by;
      if (count <= 0) t.containers.delete(id.containerId);
      else if (c) c.count = count;
      else t.containers.set(id.containerId, { container: { id: id.containerId, ...(id.runtime ? { runtime: id.runtime } : {}), ...(id.podUid ? { podUid: id.podUid } : {}) }, count });
    }
  }
}

function bump(counts: Map<string, number>, key: string, by: 1 | -1): void {
  const n = (counts.get(key) ?? 0) + by;
  if (n > 0) counts.set(key, n);
  else counts.delete(key);
}

function sameProcess(a: Reading, b: Reading): boolean {
  const x = a.identity;
  const y = b.identity;
  return a.netns === b.netns && a.comm === b.comm && x.podUid === y.podUid && x.containerId === y.containerId && x.runtime === y.runtime && x.unit === y.unit;
}

function nameFrom(inode: number, t: Tally): NetnsName {
  return {
    inode,
    pods: [...t.pods.keys()].sort(),
    containers: [...t.containers.values()].map((c) => c.container).sort((a, b) => a.id.localeCompare(b.id)),
    units: [...t.units.keys()].sort(),
    processes: [...t.comms].map(([comm, count]) => ({ comm, count })).sort((a, b) => b.count - a.count || a.comm.localeCompare(b.comm)),
  };
}
