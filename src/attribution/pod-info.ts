// A pod object (an API list item, a watch event's object, a kubelet /pods item)
// read as what ctstorm needs: UID, name, namespace, owning workload, IPs and
// container IDs. Pure: tolerant of missing fields, no I/O.

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

export type Json = Record<string, unknown>;
export const record = (v: unknown): Json | undefined =>
  typeof v === 'object' && v !== null && !Array.isArray(v) ? (v as Json) : undefined;
export const text = (v: unknown): string | undefined => (typeof v === 'string' && v !== '' ? v : undefined);
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
