// The sources of the pod directory, either optional: the Kubernetes API
// (list+watch of this node's pods through @kubernetes/client-node's ListWatch)
// or the kubelet's read-only /pods, polled.
import { STATUS_CODES } from 'node:http';
import { setTimeout as sleep } from 'node:timers/promises';
import type { V1Pod, Watch } from '@kubernetes/client-node';
import { PodDirectory, type PodDirectoryOptions } from './pod-directory.js';
import { record, text } from './pod-info.js';

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
