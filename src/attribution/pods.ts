// Pod UID, pod IP and container ID -> namespace, pod name and owning workload.
// Two sources, either optional: the Kubernetes API (list+watch of this node's
// pods through @kubernetes/client-node's ListWatch) or the kubelet's read-only
// /pods, polled. Reading a pod object is pure; a PodDirectory is the index a
// source keeps up to date, and what lookups read.

import { STATUS_CODES } from 'node:http';
import { setTimeout as sleep } from 'node:timers/promises';
import type { V1Pod, Watch } from '@kubernetes/client-node';

export interface Workload { kind: string; name: string }
export interface PodContainer { id: string; runtime?: string; name: string }
export interface PodInfo {
  uid: string;
  namespace: string;
  name: string;
  workload?: Workload;
  /** status.podIPs (or podIP); empty for hostNetwork pods, whose IP is the node's. */
  ips: string[];
  hostNetwork: boolean;
  containers: PodContainer[];
  phase?: string;
  /** For a static pod's mirror: the UID kubelet runs it under (and names its cgroups after). */
  staticUid?: string;
}

type Json = Record<string, unknown>;
const record = (v: unknown): Json | undefined =>
  typeof v === 'object' && v !== null && !Array.isArray(v) ? (v as Json) : undefined;
const text = (v: unknown): string | undefined => (typeof v === 'string' && v !== '' ? v : undefined);
const records = (v: unknown): Json[] =>
  (Array.isArray(v) ? v.map(record).filter((x): x is Json => x !== undefined) : []);

/** The workload that owns a pod: its controller ownerReference, with a Deployment's
 * ReplicaSet (`<deployment>-<pod-template-hash>`) named after the Deployment. */
export function workloadOf(pod: unknown): Workload | undefined {
  const meta = record(record(pod)?.metadata);
  const owner = records(meta?.ownerReferences).find((o) => o.controller === true);
  const kind = text(owner?.kind);
  const name = text(owner?.name);
  // A static pod's mirror is "owned" by its Node: the pod is its own workload.
  if (!kind || !name || kind === 'Node') return undefined;
  const hash = text(record(meta?.labels)?.['pod-template-hash']);
  if (kind === 'ReplicaSet' && hash && name.endsWith(`-${hash}`) && name.length > hash.length + 1) {
    return { kind: 'Deployment', name: name.slice(0, -hash.length - 1) };
  }
  return { kind, name };
}

function ipsOf(status: Json | undefined): string[] {
  const ips = records(status?.podIPs).flatMap((p) => text(p.ip) ?? []);
  const single = text(status?.podIP);
  if (ips.length === 0 && single) ips.push(single);
  return [...new Set(ips)];
}

/** "containerd://<id>" -> id and runtime; containers not started yet have no ID. */
function containersOf(status: Json | undefined): PodContainer[] {
  const all = ['initContainerStatuses', 'containerStatuses', 'ephemeralContainerStatuses']
    .flatMap((field) => records(status?.[field]));
  return all.flatMap((c) => {
    const m = /^([a-z0-9.-]+):\/\/(.+)$/.exec(text(c.containerID) ?? '');
    return m ? [{ id: m[2]!, runtime: m[1]!, name: text(c.name) ?? '' }] : [];
  });
}

/** A pod object (API list item, watch event object or kubelet /pods item) read
 * tolerantly; undefined unless it is a pod with a uid, name and namespace. */
export function podInfoOf(obj: unknown): PodInfo | undefined {
  const pod = record(obj);
  const meta = record(pod?.metadata);
  const uid = text(meta?.uid);
  const name = text(meta?.name);
  const namespace = text(meta?.namespace);
  // List items come without kind; anything that says it is not a Pod is not one.
  if (!pod || !uid || !name || !namespace || (pod.kind !== undefined && pod.kind !== 'Pod')) return undefined;
  const status = record(pod.status);
  const hostNetwork = record(pod.spec)?.hostNetwork === true;
  const info: PodInfo = { uid, namespace, name, ips: hostNetwork ? [] : ipsOf(status), hostNetwork, containers: containersOf(status) };
  const workload = workloadOf(pod);
  if (workload) info.workload = workload;
  const phase = text(status?.phase);
  if (phase) info.phase = phase;
  const staticUid = text(record(meta?.annotations)?.['kubernetes.io/config.mirror']);
  if (staticUid && staticUid !== uid) info.staticUid = staticUid;
  return info;
}

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

/** A failed request in one line: "403 Forbidden (pods is forbidden: ...)" or "connect ECONNREFUSED ...". */
function describeFailure(err: unknown): { status?: number; text: string } {
  const e = record(err) ?? {};
  const status = typeof e.code === 'number' ? e.code : typeof e.statusCode === 'number' ? e.statusCode : undefined;
  if (status !== undefined) {
    let detail: string | undefined;
    try {
      detail = text(record(typeof e.body === 'string' ? JSON.parse(e.body) : e.body)?.message);
    } catch { /* a body that is not a Status says nothing more */ }
    return { status, text: `${status} ${STATUS_CODES[status] ?? ''}${detail ? ` (${detail})` : ''}` };
  }
  const cause = record(e.cause);
  const message = String((err instanceof Error ? err.message : err) ?? 'unknown error');
  // node-fetch: "request to <url> failed, reason: <why>"; undici: "fetch failed" with a cause.
  const why = /reason: (.*)$/s.exec(message)?.[1] ?? (text(cause?.code) ? `${text(cause?.message) ?? cause?.code}` : message);
  return { text: why.replace(/\s+/g, ' ').trim() };
}

/** listPods' own failures, already worded for the user. */
class ListFailure extends Error {}

export interface ApiPodsOptions extends PodDirectoryOptions {
  nodeName: string;
  /** A kubeconfig path; undefined: the pod's own service account (in-cluster). */
  kubeconfig?: string;
  onError?: (message: string) => void;
  /** First delay before retrying after an error (doubling to 30 s); also the least
   * time between two watch requests, which the library would otherwise reopen at once. */
  retryMs?: number;
}

/** This node's pods from the Kubernetes API. Resolves once the first list is in. */
export async function watchApiPods(opts: ApiPodsOptions): Promise<PodDirectory> {
  if (!opts.nodeName) throw new Error('watching pods needs this node\'s name; pass it (in a DaemonSet, from the downward API: spec.nodeName)');
  if (opts.kubeconfig === undefined && !process.env.KUBERNETES_SERVICE_HOST) {
    throw new Error('not running in a Kubernetes pod (KUBERNETES_SERVICE_HOST is unset); pass a kubeconfig path');
  }
  // Loading the client takes about a second: only when this source is used.
  const k8s = await import('@kubernetes/client-node');
  const kc = new k8s.KubeConfig();
  try {
    if (opts.kubeconfig === undefined) kc.loadFromCluster();
    else kc.loadFromFile(opts.kubeconfig);
  } catch (err) {
    throw new Error(`cannot load kubeconfig ${opts.kubeconfig}: ${describeFailure(err).text}; pass a readable kubeconfig file`);
  }
  const server = kc.getCurrentCluster()?.server;
  if (!server) throw new Error(`kubeconfig ${opts.kubeconfig} names no current cluster; set its current-context`);

  const fieldSelector = `spec.nodeName=${opts.nodeName}`;
  const url = `${server}/api/v1/pods?fieldSelector=${encodeURIComponent(fieldSelector)}`;
  const retryMs = opts.retryMs ?? 1000;
  const dir = opts.directory ?? new PodDirectory(opts);
  const api = kc.makeApiClient(k8s.CoreV1Api);
  let listed = false;
  let closed = false;
  let backoffMs = retryMs;
  let retry: NodeJS.Timeout | undefined;
  let lastWatchAt = -Infinity;

  const listPods = async () => {
    try {
      const list = await api.listPodForAllNamespaces({ fieldSelector });
      listed = true;
      backoffMs = retryMs;
      dir.setLastError();
      return list;
    } catch (err) {
      const { status, text: why } = describeFailure(err);
      const fix = status === 401 ? 'check the kubeconfig user or the service account token'
        : status === 403 ? 'grant get/list/watch on pods to ctstorm\'s service account (see deploy/)'
        : 'check that the API server is reachable from this node';
      throw new ListFailure(`cannot list pods from ${url}: ${why}; ${fix}`);
    }
  };

  // Settles once the first list is in the directory (or has failed), not when the
  // watch opens: the informer applies a list, then asks PacedWatch for a watch.
  let firstList!: { resolve: () => void; reject: (err: unknown) => void };
  const firstListed = new Promise<void>((resolve, reject) => { firstList = { resolve, reject }; });

  class PacedWatch extends k8s.Watch {
    override async watch(...[path, query, onEvent, done]: Parameters<Watch['watch']>): Promise<AbortController> {
      firstList.resolve();
      const wait = lastWatchAt + retryMs - Date.now();
      if (wait > 0) await sleep(wait);
      if (closed) return new AbortController(); // closed meanwhile: open nothing
      lastWatchAt = Date.now();
      let failed = false;
      try {
        const request = await super.watch(path, query, onEvent, (err) => { failed ||= !!err; done(err); });
        // stop() aborts only a watch that is already open: one closed while opening is ended here.
        if (closed) request.abort();
        else if (!failed) { backoffMs = retryMs; dir.setLastError(); }
        return request;
      } catch (err) {
        done(err); // e.g. credentials that cannot be read: a failure to retry, not a crash
        return new AbortController();
      }
    }
  }

  // makeInformer() would send the fieldSelector on the list only and watch every pod in the cluster.
  const informer = new k8s.ListWatch<V1Pod>('/api/v1/pods', new PacedWatch(kc), listPods, false, undefined, fieldSelector);
  informer.on('add', (pod) => dir.upsertPod(pod));
  informer.on('update', (pod) => dir.upsertPod(pod));
  informer.on('delete', (pod) => dir.deletePod(pod));
  // The informer stops on any error but a 410 (it relists for that itself): start it again.
  informer.on('error', (err) => {
    if (closed) return; // stop() aborts the open watch: not a failure
    const message = err instanceof ListFailure ? err.message : `cannot watch pods on ${url}: ${describeFailure(err).text}`;
    if (!listed) return firstList.reject(new Error(message));
    const delay = backoffMs;
    backoffMs = Math.min(backoffMs * 2, 30_000);
    dir.setLastError(`${message}; retrying in ${delay} ms`);
    opts.onError?.(`${message}; retrying in ${delay} ms`);
    retry = setTimeout(() => void informer.start(), delay);
  });

  const stop = async () => {
    closed = true;
    clearTimeout(retry);
    await informer.stop();
  };
  informer.start().catch((err) => firstList.reject(err));
  try {
    await firstListed;
  } catch (err) {
    await stop();
    throw err;
  }
  dir.markReady();
  dir.stopSourceOnClose(stop);
  return dir;
}

export interface KubeletPodsOptions extends PodDirectoryOptions {
  /** The kubelet's read-only /pods, e.g. http://127.0.0.1:10255/pods. */
  url: string;
  intervalMs?: number;
  timeoutMs?: number;
  onError?: (message: string) => void;
}

async function fetchPodList(url: string, timeoutMs: number, signal: AbortSignal): Promise<unknown[]> {
  let response: Response;
  try {
    response = await fetch(url, { signal: AbortSignal.any([signal, AbortSignal.timeout(timeoutMs)]) });
  } catch (err) {
    if (err instanceof Error && err.name === 'TimeoutError') throw new Error(`no answer within ${timeoutMs} ms; check the kubelet is up`);
    throw new Error(`${describeFailure(err).text}; enable the kubelet read-only port (readOnlyPort: 10255) or use the Kubernetes API`);
  }
  if (!response.ok) {
    await response.body?.cancel();
    const fix = response.status === 401 || response.status === 403
      ? 'that is the authenticated kubelet port: use the read-only port (10255) or the Kubernetes API'
      : 'check the URL ends in /pods';
    throw new Error(`${response.status} ${STATUS_CODES[response.status] ?? ''}; ${fix}`);
  }
  const list = record(await response.json().catch(() => undefined));
  if (!Array.isArray(list?.items)) throw new Error('the answer is not a PodList; check the URL ends in /pods');
  return list.items;
}

/** This node's pods from the kubelet's /pods, polled. Resolves once the first list is in;
 * a failed poll later keeps the last list. */
export async function pollKubeletPods(opts: KubeletPodsOptions): Promise<PodDirectory> {
  const intervalMs = opts.intervalMs ?? 10_000;
  const timeoutMs = opts.timeoutMs ?? Math.min(5_000, intervalMs);
  const dir = opts.directory ?? new PodDirectory(opts);
  const closing = new AbortController();
  let timer: NodeJS.Timeout | undefined;
  const poll = async () => {
    const items = await fetchPodList(opts.url, timeoutMs, closing.signal);
    if (closing.signal.aborted) return;
    dir.replacePods(items);
    dir.setLastError();
  };
  try {
    await poll();
  } catch (err) {
    throw new Error(`cannot poll pods from ${opts.url}: ${(err as Error).message}`);
  }
  dir.markReady();
  const next = () => {
    timer = setTimeout(async () => {
      try {
        await poll();
      } catch (err) {
        if (closing.signal.aborted) return;
        const message = `cannot poll pods from ${opts.url}: ${(err as Error).message}; keeping the last list`;
        dir.setLastError(message);
        opts.onError?.(message);
      }
      if (!closing.signal.aborted) next();
    }, intervalMs);
  };
  next();
  dir.stopSourceOnClose(() => { closing.abort(); clearTimeout(timer); });
  return dir;
}
