// Who a cgroup path belongs to, from the names kubelet, the container runtimes
// and systemd give their cgroups (cgroup v2 paths, or a v1 hierarchy's path):
//   kubelet, systemd driver: /kubepods.slice/kubepods-burstable.slice/
//       kubepods-burstable-pod<uid, _ for ->.slice/cri-containerd-<id>.scope
//   kubelet, cgroupfs driver: /kubepods/burstable/pod<uid>/<id>  (no QoS level: guaranteed)
//   containerd/CRI-O/Docker/Podman scopes: cri-containerd-, crio-, docker-, libpod-<id>.scope
//   plain Docker with cgroupfs: /docker/<id>
//   systemd: /system.slice/<unit>.service, user sessions under /user.slice
// Pure: the path in, what it names out; nothing is guessed from a name that does
// not follow one of these shapes.

export type QosClass = 'guaranteed' | 'burstable' | 'besteffort';

export interface CgroupIdentity {
  /** Kubernetes pod UID (dashes restored). */
  podUid?: string;
  qos?: QosClass;
  /** Container ID (64 hex characters) and the runtime that named it. */
  containerId?: string;
  runtime?: 'containerd' | 'cri-o' | 'docker' | 'podman';
  /** The systemd unit (service or scope) outside any pod or container. */
  unit?: string;
}

// A UUID, or the 32 hex digits kubelet gives a static pod (a hash of its manifest).
const POD_UID = /^([0-9a-f]{8}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{12}|[0-9a-f]{32})$/;
const CONTAINER_ID = /^[0-9a-f]{64}$/;
const SCOPE_RUNTIMES: Array<[prefix: string, runtime: NonNullable<CgroupIdentity['runtime']>]> = [
  ['cri-containerd-', 'containerd'],
  ['crio-', 'cri-o'],
  ['docker-', 'docker'],
  ['libpod-', 'podman'],
];

function qosOf(name: string): QosClass | undefined {
  if (/(^|-)besteffort(\.slice)?$/.test(name)) return 'besteffort';
  if (/(^|-)burstable(\.slice)?$/.test(name)) return 'burstable';
  return undefined;
}

/** A pod component: `pod<uid>` (cgroupfs) or `kubepods[-<qos>]-pod<uid>.slice` (systemd). */
function podOf(name: string): string | undefined {
  const m = /^(?:kubepods(?:-(?:burstable|besteffort))?-)?pod([0-9a-f_-]{36}|[0-9a-f]{32})(?:\.slice)?$/.exec(name);
  return m && POD_UID.test(m[1]!) ? m[1]!.replaceAll('_', '-') : undefined;
}

/** A container component: a runtime's `<prefix><id>.scope`, or a bare ID. */
function containerOf(name: string): Pick<CgroupIdentity, 'containerId' | 'runtime'> | undefined {
  for (const [prefix, runtime] of SCOPE_RUNTIMES) {
    if (name.startsWith(prefix) && name.endsWith('.scope')) {
      const id = name.slice(prefix.length, -'.scope'.length);
      if (CONTAINER_ID.test(id)) return { containerId: id, runtime };
    }
  }
  if (CONTAINER_ID.test(name)) return { containerId: name };
  return undefined;
}

export function identityOf(path: string): CgroupIdentity {
  // Read from inside a cgroup namespace (ctstorm in a pod), a path outside it
  // starts with "..": it climbs out of ctstorm's own pod, into kubepods.
  const raw = path.split('/').filter(Boolean);
  const outside = raw[0] === '..';
  const parts = raw.filter((p) => p !== '..');
  const out: CgroupIdentity = {};
  const kubeletNamed = (p: string): boolean => /^kubepods|^pod[0-9a-f]|^(burstable|besteffort)$/.test(p);
  const inKubepods = parts[0] === 'kubepods' || parts[0] === 'kubepods.slice' || (outside && parts.some(kubeletNamed));
  for (let i = 0; i < parts.length; i++) {
    const name = parts[i]!;
    if (inKubepods) {
      out.qos ??= qosOf(name);
      const pod = podOf(name);
      if (pod) {
        out.podUid = pod;
        out.qos ??= 'guaranteed'; // a pod directly under kubepods has no QoS level
        continue;
      }
    }
    const container = containerOf(name);
    if (container && (out.podUid || !inKubepods)) {
      // Plain Docker under cgroupfs: /docker/<id>; a bare ID elsewhere names nothing.
      if (container.runtime || out.podUid || parts[i - 1] === 'docker') {
        Object.assign(out, container, parts[i - 1] === 'docker' && !container.runtime ? { runtime: 'docker' as const } : {});
      }
      continue;
    }
    if (!inKubepods && /\.(service|scope)$/.test(name) && !out.containerId) out.unit = name;
  }
  if (out.podUid === undefined) delete out.qos;
  return out;
}

/** The cgroup path of a process from /proc/<pid>/cgroup text: the v2 ("0::")
 * line's, unless it is the root on a hybrid host whose v1 hierarchies place the
 * process (then the first named v1 hierarchy's). */
export function cgroupPathOf(procCgroup: string): string | undefined {
  let v1: string | undefined;
  let v2: string | undefined;
  for (const line of procCgroup.split('\n')) {
    const m = /^(\d+):([^:]*):(.*)$/.exec(line);
    if (!m) continue;
    if (m[1] === '0' && m[2] === '') v2 = m[3];
    else if (v1 === undefined && m[3] !== '/' && m[2] !== '') v1 = m[3];
  }
  return v2 !== undefined && (v2 !== '/' || v1 === undefined) ? v2 : v1;
}
