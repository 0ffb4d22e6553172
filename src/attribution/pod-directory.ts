// This node's pods by UID, IP and container ID: the index a source (pods.ts)
// keeps up to date and lookups read. A pod deleted stays nameable for a grace
// period, its last conntrack rows outliving it.
import { podInfoOf, record, text, type PodInfo } from './pod-info.js';

export interface PodDirectoryOptions {
  /** Fill this directory instead of a new one (a caller that hands it out before the first list). */
  directory?: PodDirectory;
  /** How long a deleted pod stays nameable: its last conntrack rows outlive it. */
  graceMs?: number;
  /** At most this many deleted pods are kept; the longest gone go first. */
  maxDeleted?: number;
  now?: () => number;
}

interface Entry { info: PodInfo; seq: number; deletedAt?: number }

/** This node's pods by UID, IP and container ID, fed by one source. */
export class PodDirectory {
  readonly #graceMs: number;
  readonly #maxDeleted: number;
  readonly #now: () => number;
  readonly #entries = new Map<string, Entry>(); // uid -> pod, live or within its grace
  readonly #uidByName = new Map<string, string>(); // namespace/name -> uid of the live pod
  readonly #uidsByIp = new Map<string, Set<string>>(); // an IP freed by one pod can go to the next
  readonly #uidByContainer = new Map<string, string>();
  readonly #uidByStaticUid = new Map<string, string>();
  readonly #deleted = new Map<string, number>(); // uid -> deletedAt, oldest first
  #seq = 0;
  #ready = false;
  #lastError: string | undefined;
  #stopSource: (() => Promise<void> | void) | undefined;

  constructor(options: PodDirectoryOptions = {}) {
    this.#graceMs = options.graceMs ?? 5 * 60_000;
    this.#maxDeleted = options.maxDeleted ?? 4096;
    this.#now = options.now ?? Date.now;
  }

  /** True once the source's first list is in. */
  get ready(): boolean { return this.#ready; }
  /** The source's latest failure, until it next succeeds. */
  get lastError(): string | undefined { return this.#lastError; }
  /** Pods that can be named: live ones and those deleted within the grace period. */
  get size(): number { this.#sweep(); return this.#entries.size; }

  byUid(uid: string): PodInfo | undefined {
    this.#sweep();
    return (this.#entries.get(uid) ?? this.#entries.get(this.#uidByStaticUid.get(uid) ?? ''))?.info;
  }

  /** Prefers a running pod over a finished or deleted one that held the IP before. */
  byIp(ip: string): PodInfo | undefined {
    this.#sweep();
    let best: Entry | undefined;
    for (const uid of this.#uidsByIp.get(ip) ?? []) {
      const e = this.#entries.get(uid);
      if (e && (!best || rank(e) > rank(best) || (rank(e) === rank(best) && e.seq > best.seq))) best = e;
    }
    return best?.info;
  }

  byContainer(id: string): PodInfo | undefined {
    this.#sweep();
    return this.#entries.get(this.#uidByContainer.get(id) ?? '')?.info;
  }

  // ---- for sources ----

  /** Adds or updates a pod; returns its UID (undefined: not a pod). */
  upsertPod(obj: unknown): string | undefined {
    const info = podInfoOf(obj);
    if (!info) return undefined;
    const key = `${info.namespace}/${info.name}`;
    const previous = this.#uidByName.get(key);
    if (previous !== undefined && previous !== info.uid) this.#retire(previous); // same name, new pod (web-0 recreated)
    this.#unindex(info.uid);
    this.#deleted.delete(info.uid);
    this.#entries.set(info.uid, { info, seq: ++this.#seq });
    this.#uidByName.set(key, info.uid);
    for (const ip of info.ips) {
      const uids = this.#uidsByIp.get(ip) ?? new Set<string>();
      this.#uidsByIp.set(ip, uids.add(info.uid));
    }
    for (const c of info.containers) this.#uidByContainer.set(c.id, info.uid);
    if (info.staticUid) this.#uidByStaticUid.set(info.staticUid, info.uid);
    this.#sweep();
    return info.uid;
  }

  deletePod(obj: unknown): void {
    const uid = text(record(record(obj)?.metadata)?.uid);
    if (uid) this.#retire(uid);
  }

  /** A full list: pods not in it are deleted. */
  replacePods(objs: unknown[]): void {
    const listed = new Set(objs.map((obj) => this.upsertPod(obj)));
    for (const [uid, e] of this.#entries) if (e.deletedAt === undefined && !listed.has(uid)) this.#retire(uid);
  }

  markReady(): void { this.#ready = true; }
  setLastError(message?: string): void { this.#lastError = message; }
  stopSourceOnClose(stop: () => Promise<void> | void): void { this.#stopSource = stop; }

  async close(): Promise<void> {
    const stop = this.#stopSource;
    this.#stopSource = undefined;
    await stop?.();
  }

  #retire(uid: string): void {
    const e = this.#entries.get(uid);
    if (!e || e.deletedAt !== undefined) return;
    e.deletedAt = this.#now();
    this.#deleted.set(uid, e.deletedAt);
    const key = `${e.info.namespace}/${e.info.name}`;
    if (this.#uidByName.get(key) === uid) this.#uidByName.delete(key);
    for (const [oldest] of this.#deleted) {
      if (this.#deleted.size <= this.#maxDeleted) break;
      this.#forget(oldest);
    }
  }

  #sweep(): void {
    const cutoff = this.#now() - this.#graceMs;
    for (const [uid, at] of this.#deleted) {
      if (at > cutoff) break;
      this.#forget(uid);
    }
  }

  #forget(uid: string): void {
    this.#unindex(uid);
    this.#entries.delete(uid);
    this.#deleted.delete(uid);
  }

  /** Drops the IP, container and static-UID keys that point at this pod. */
  #unindex(uid: string): void {
    const info = this.#entries.get(uid)?.info;
    if (!info) return;
    for (const ip of info.ips) {
      const uids = this.#uidsByIp.get(ip);
      uids?.delete(uid);
      if (uids?.size === 0) this.#uidsByIp.delete(ip);
    }
    for (const c of info.containers) if (this.#uidByContainer.get(c.id) === uid) this.#uidByContainer.delete(c.id);
    if (info.staticUid && this.#uidByStaticUid.get(info.staticUid) === uid) this.#uidByStaticUid.delete(info.staticUid);
  }
}

/** Live and running beats live and finished (its IP may be reused) beats deleted. */
function rank(e: Entry): number {
  if (e.deletedAt !== undefined) return 0;
  return e.info.phase === 'Succeeded' || e.info.phase === 'Failed' ? 1 : 2;
}
