// Pods as the Kubernetes API and the kubelet show them. The API tests run the real
// @kubernetes/client-node against a small apiserver on 127.0.0.1 that keeps an
// event log like the real one: list, watch from a resourceVersion, watches it
// drops, and a watch from a compacted resourceVersion answered as the real
// apiserver does (HTTP 200, an ERROR event carrying a 410 Expired Status, end of
// stream; kubernetes/kubernetes#25151, #35068).
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { PodDirectory } from '../../../src/attribution/pod-directory.js';
import { podInfoOf, workloadOf } from '../../../src/attribution/pod-info.js';
import { pollKubeletPods, watchApiPods } from '../../../src/attribution/pods.js';

type Json = Record<string, unknown>;
const NODE = 'node-a';
const GRACE = 300_000;
const U = {
  checkout: '3f1e2d4c-5b6a-4789-9abc-def012345601',
  exporter: '3f1e2d4c-5b6a-4789-9abc-def012345602',
  web0: '3f1e2d4c-5b6a-4789-9abc-def012345603',
  backup: '3f1e2d4c-5b6a-4789-9abc-def012345604',
  web0again: '3f1e2d4c-5b6a-4789-9abc-def012345605',
  debug: '3f1e2d4c-5b6a-4789-9abc-def012345606',
};
const CID = { checkout: 'a'.repeat(64), exporter: 'b'.repeat(64), web0: 'c'.repeat(64), backup: 'd'.repeat(64), web0again: 'e'.repeat(64), debug: 'f'.repeat(64) };

interface PodSpec {
  name: string; namespace: string; uid: string;
  owner?: { kind: string; name: string; apiVersion?: string; controller?: boolean };
  hash?: string; ip?: string; hostNetwork?: boolean; phase?: string;
  containers?: Array<{ name: string; containerID?: string }>;
  annotations?: Record<string, string>;
}

/** A Pod as the API serves it (list items carry no kind/apiVersion; watch objects do). */
function pod(p: PodSpec): Json {
  const ip = p.hostNetwork ? '192.168.1.10' : p.ip;
  return {
    metadata: {
      name: p.name, namespace: p.namespace, uid: p.uid, resourceVersion: '0',
      creationTimestamp: '2024-05-01T10:00:00Z',
      labels: { app: p.name.split('-')[0]!, ...(p.hash ? { 'pod-template-hash': p.hash } : {}) },
      ...(p.annotations ? { annotations: p.annotations } : {}),
      ...(p.owner ? {
        ownerReferences: [{
          apiVersion: p.owner.apiVersion ?? 'apps/v1', kind: p.owner.kind, name: p.owner.name,
          uid: '9d0c1b2a-0000-4000-8000-00000000000a', controller: p.owner.controller ?? true, blockOwnerDeletion: true,
        }],
      } : {}),
    },
    spec: {
      nodeName: NODE, ...(p.hostNetwork ? { hostNetwork: true } : {}),
      containers: (p.containers ?? []).map((c) => ({ name: c.name, image: `registry.example/${c.name}:1` })),
    },
    status: {
      phase: p.phase ?? 'Running', hostIP: '192.168.1.10', hostIPs: [{ ip: '192.168.1.10' }],
      ...(ip ? { podIP: ip, podIPs: [{ ip }] } : {}),
      containerStatuses: (p.containers ?? []).map((c) => ({
        name: c.name, image: `registry.example/${c.name}:1`, imageID: '', ready: !!c.containerID, restartCount: 0,
        started: !!c.containerID,
        state: c.containerID ? { running: { startedAt: '2024-05-01T10:00:05Z' } } : { waiting: { reason: 'ContainerCreating' } },
        ...(c.containerID ? { containerID: c.containerID } : {}),
      })),
    },
  };
}

const PODS = {
  checkout: pod({ name: 'checkout-7d4b9c8f6d-x2x9k', namespace: 'shop', uid: U.checkout, hash: '7d4b9c8f6d',
    owner: { kind: 'ReplicaSet', name: 'checkout-7d4b9c8f6d' }, ip: '10.244.1.5',
    containers: [{ name: 'app', containerID: `containerd://${CID.checkout}` }] }),
  exporter: pod({ name: 'node-exporter-5vt2m', namespace: 'monitoring', uid: U.exporter, hostNetwork: true,
    owner: { kind: 'DaemonSet', name: 'node-exporter' }, containers: [{ name: 'exporter', containerID: `containerd://${CID.exporter}` }] }),
  web0Pending: pod({ name: 'web-0', namespace: 'shop', uid: U.web0, owner: { kind: 'StatefulSet', name: 'web' },
    phase: 'Pending', containers: [{ name: 'nginx' }] }),
  web0: pod({ name: 'web-0', namespace: 'shop', uid: U.web0, owner: { kind: 'StatefulSet', name: 'web' },
    ip: '10.244.1.6', containers: [{ name: 'nginx', containerID: `containerd://${CID.web0}` }] }),
  backup: pod({ name: 'backup-28573920-q7w2p', namespace: 'ops', uid: U.backup, owner: { kind: 'Job', name: 'backup-28573920', apiVersion: 'batch/v1' },
    ip: '10.244.1.7', containers: [{ name: 'dump', containerID: `containerd://${CID.backup}` }] }),
  web0again: pod({ name: 'web-0', namespace: 'shop', uid: U.web0again, owner: { kind: 'StatefulSet', name: 'web' },
    ip: '10.244.1.9', containers: [{ name: 'nginx', containerID: `containerd://${CID.web0again}` }] }),
  debug: pod({ name: 'debug', namespace: 'default', uid: U.debug, ip: '10.244.1.6',
    containers: [{ name: 'shell', containerID: `containerd://${CID.debug}` }] }),
};

/** The same pod in another phase (what a MODIFIED event carries). */
function withPhase(p: Json, phase: string): Json {
  const copy = structuredClone(p);
  (copy.status as Json).phase = phase;
  return copy;
}

/** Polls until cond holds; fails after ms. */
async function until(cond: () => boolean, what: string, ms = 5000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

// Loading the client takes about a second (more on a busy machine): once, outside the tests' time.
// Network tests get room for a loaded machine; each takes about a second.
const NETWORK_TEST = { timeout: 20_000 };
beforeAll(async () => {
  await import('@kubernetes/client-node');
  await fetch('data:,warm'); // the first fetch sets up undici
}, 60_000);

const cleanups: Array<() => unknown> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
  vi.unstubAllEnvs();
});

async function listen(server: Server): Promise<string> {
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  cleanups.push(() => new Promise<void>((r) => { server.closeAllConnections(); server.close(() => r()); }));
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

/** The pods API of one node: an event log with resourceVersions, list and watch. */
class FakeApiServer {
  readonly requests: string[] = [];
  readonly authorizations = new Set<string>();
  /** Answer lists with this Status instead (e.g. a 403). */
  listFailure: { code: number; reason: string; message: string } | undefined;
  /** Answer this many watches with a 500. */
  failWatches = 0;
  /** Park watch requests (the client is "disconnected") until releaseWatches(). */
  holdWatches = false;
  #rv = 100;
  #compactedRv = 0;
  readonly #pods = new Map<string, Json>();
  readonly #log: Array<{ rv: number; line: string }> = [];
  readonly #open = new Set<ServerResponse>();
  readonly #held: Array<() => void> = [];
  readonly #server = createServer((req, res) => this.#handle(req, res));

  get openWatches(): number { return this.#open.size; }
  get heldWatches(): number { return this.#held.length; }
  start(): Promise<string> { return listen(this.#server); }

  /** Applies a change, logs it and streams it to open watches. */
  event(type: 'ADDED' | 'MODIFIED' | 'DELETED', p: Json): void {
    const obj: Json = { apiVersion: 'v1', kind: 'Pod', ...structuredClone(p) };
    (obj.metadata as Json).resourceVersion = String(++this.#rv);
    const uid = (obj.metadata as Json).uid as string;
    if (type === 'DELETED') this.#pods.delete(uid);
    else this.#pods.set(uid, obj);
    const line = `${JSON.stringify({ type, object: obj })}\n`;
    this.#log.push({ rv: this.#rv, line });
    for (const res of this.#open) res.write(line);
  }

  dropWatches(): void { for (const res of this.#open) res.end(); }
  /** Forgets the event log up to now: a watch from an older resourceVersion gets 410. */
  compact(): void { this.#compactedRv = this.#rv; this.#log.length = 0; }
  releaseWatches(): void { this.holdWatches = false; for (const serve of this.#held.splice(0)) serve(); }

  #handle(req: IncomingMessage, res: ServerResponse): void {
    this.requests.push(req.url!);
    this.authorizations.add(req.headers.authorization ?? '');
    const url = new URL(req.url!, 'http://x');
    if (url.pathname !== '/api/v1/pods') return void res.writeHead(404).end();
    if (url.searchParams.get('watch') !== 'true') return this.#list(res);
    const from = Number(url.searchParams.get('resourceVersion'));
    if (this.holdWatches) this.#held.push(() => this.#watch(from, res));
    else this.#watch(from, res);
  }

  #list(res: ServerResponse): void {
    if (this.listFailure) {
      const { code, reason, message } = this.listFailure;
      res.writeHead(code, { 'content-type': 'application/json' });
      return void res.end(JSON.stringify({ kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure', message, reason, details: { kind: 'pods' }, code }));
    }
    const items = [...this.#pods.values()].map(({ apiVersion: _a, kind: _k, ...item }) => item);
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ kind: 'PodList', apiVersion: 'v1', metadata: { resourceVersion: String(this.#rv) }, items }));
  }

  #watch(from: number, res: ServerResponse): void {
    if (this.failWatches > 0) {
      this.failWatches--;
      res.writeHead(500, { 'content-type': 'application/json' });
      return void res.end(JSON.stringify({ kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure', message: 'etcdserver: leader changed', reason: 'InternalError', code: 500 }));
    }
    res.writeHead(200, { 'content-type': 'application/json', 'transfer-encoding': 'chunked' });
    res.flushHeaders(); // as the apiserver does: the client sees the watch open before any event
    if (from < this.#compactedRv) {
      const status = { kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure', message: `too old resource version: ${from} (${this.#compactedRv})`, reason: 'Expired', code: 410 };
      return void res.end(`${JSON.stringify({ type: 'ERROR', object: status })}\n`);
    }
    for (const e of this.#log) if (e.rv > from) res.write(e.line);
    this.#open.add(res);
    res.on('close', () => this.#open.delete(res));
  }
}

function kubeconfigFor(server: string): string {
  const dir = mkdtempSync(join(tmpdir(), 'ctstorm-kubeconfig-'));
  cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
  const path = join(dir, 'config');
  writeFileSync(path, [
    'apiVersion: v1', 'kind: Config',
    // The client refuses an http:// server unless TLS verification is off, though there is no TLS.
    'clusters:', '- name: fake', '  cluster:', `    server: ${server}`, '    insecure-skip-tls-verify: true',
    'users:', '- name: ctstorm', '  user:', '    token: test-token',
    'contexts:', '- name: fake', '  context:', '    cluster: fake', '    user: ctstorm',
    'current-context: fake', '',
  ].join('\n'));
  return path;
}

const SELECTOR = `fieldSelector=spec.nodeName%3D${NODE}`;
const LIST = `/api/v1/pods?${SELECTOR}`;
const WATCH = (rv: number) => `/api/v1/pods?watch=true&resourceVersion=${rv}&${SELECTOR}`;

describe('podInfoOf and workloadOf', () => {
  it('reads a pod: names, workload, IPs and containers', () => {
    expect(podInfoOf(PODS.checkout)).toEqual({
      uid: U.checkout, namespace: 'shop', name: 'checkout-7d4b9c8f6d-x2x9k',
      workload: { kind: 'Deployment', name: 'checkout' },
      ips: ['10.244.1.5'], hostNetwork: false, phase: 'Running',
      containers: [{ id: CID.checkout, runtime: 'containerd', name: 'app' }],
    });
    // hostNetwork: the pod's IP is the node's, so it names no IP.
    expect(podInfoOf(PODS.exporter)).toMatchObject({ ips: [], hostNetwork: true, workload: { kind: 'DaemonSet', name: 'node-exporter' } });
    // Not started yet: no IP, no container ID.
    expect(podInfoOf(PODS.web0Pending)).toMatchObject({ ips: [], containers: [], phase: 'Pending' });
  });

  it('reads every container status and each runtime\'s ID scheme', () => {
    const p = pod({ name: 'mixed', namespace: 'ns', uid: U.debug, ip: '10.244.1.8' });
    const status = p.status as Json;
    status.podIPs = [{ ip: '10.244.1.8' }, { ip: 'fd00:10:244:1::8' }];
    status.initContainerStatuses = [{ name: 'init', containerID: `cri-o://${CID.web0}` }];
    status.containerStatuses = [{ name: 'app', containerID: `docker://${CID.backup}` }, { name: 'waiting' }];
    status.ephemeralContainerStatuses = [{ name: 'debugger', containerID: `containerd://${CID.debug}` }];
    expect(podInfoOf(p)).toMatchObject({
      ips: ['10.244.1.8', 'fd00:10:244:1::8'],
      containers: [
        { id: CID.web0, runtime: 'cri-o', name: 'init' },
        { id: CID.backup, runtime: 'docker', name: 'app' },
        { id: CID.debug, runtime: 'containerd', name: 'debugger' },
      ],
    });
  });

  it('tolerates missing fields and refuses what is not a pod', () => {
    expect(podInfoOf({ metadata: { uid: U.debug, name: 'bare', namespace: 'default' } })).toEqual({
      uid: U.debug, namespace: 'default', name: 'bare', ips: [], hostNetwork: false, containers: [],
    });
    expect(podInfoOf({ kind: 'Service', metadata: { uid: U.debug, name: 'svc', namespace: 'default' } })).toBeUndefined();
    expect(podInfoOf({ metadata: { name: 'no-uid', namespace: 'default' } })).toBeUndefined();
    expect(podInfoOf({ metadata: { uid: U.debug, name: 'no-namespace' } })).toBeUndefined();
    expect(podInfoOf(null)).toBeUndefined();
    expect(podInfoOf('pod')).toBeUndefined();
  });

  it('names the workload from the controller ownerReference', () => {
    expect(workloadOf(PODS.checkout)).toEqual({ kind: 'Deployment', name: 'checkout' });
    expect(workloadOf(PODS.exporter)).toEqual({ kind: 'DaemonSet', name: 'node-exporter' });
    expect(workloadOf(PODS.web0)).toEqual({ kind: 'StatefulSet', name: 'web' });
    expect(workloadOf(PODS.backup)).toEqual({ kind: 'Job', name: 'backup-28573920' });
    expect(workloadOf(PODS.debug)).toBeUndefined();
    // A ReplicaSet not named <deployment>-<pod-template-hash> stays a ReplicaSet.
    expect(workloadOf(pod({ name: 'legacy-abcde', namespace: 'ns', uid: U.debug, hash: '5f6c7d', owner: { kind: 'ReplicaSet', name: 'legacy' } })))
      .toEqual({ kind: 'ReplicaSet', name: 'legacy' });
    // An owner that is not the controller owns nothing here.
    expect(workloadOf(pod({ name: 'x', namespace: 'ns', uid: U.debug, owner: { kind: 'StatefulSet', name: 'web', controller: false } }))).toBeUndefined();
    // A static pod's mirror is owned by its Node: no workload but itself.
    expect(workloadOf(pod({ name: `kube-proxy-${NODE}`, namespace: 'kube-system', uid: U.debug, owner: { kind: 'Node', name: NODE, apiVersion: 'v1' } }))).toBeUndefined();
  });
});

describe('PodDirectory', () => {
  it('keeps a deleted pod for the grace period, the most recently deleted within a bound', () => {
    let clock = 1_000_000;
    const dir = new PodDirectory({ graceMs: GRACE, maxDeleted: 2, now: () => clock });
    dir.replacePods([PODS.checkout, PODS.web0, PODS.backup, PODS.exporter]);
    expect(dir.size).toBe(4);
    dir.deletePod(PODS.checkout);
    clock += 1000;
    dir.deletePod(PODS.web0);
    dir.deletePod(PODS.backup); // the third deleted: the first goes
    expect(dir.byUid(U.checkout)).toBeUndefined();
    expect(dir.byUid(U.web0)?.name).toBe('web-0');
    expect(dir.byIp('10.244.1.6')?.uid).toBe(U.web0);
    expect(dir.byContainer(CID.backup)?.uid).toBe(U.backup);
    clock += GRACE - 1;
    expect(dir.size).toBe(3);
    clock += 1;
    expect(dir.size).toBe(1);
    expect(dir.byUid(U.web0)).toBeUndefined();
    expect(dir.byIp('10.244.1.6')).toBeUndefined();
    expect(dir.byContainer(CID.backup)).toBeUndefined();
    expect(dir.byUid(U.exporter)?.name).toBe('node-exporter-5vt2m');
  });

  it('gives a reused IP to a running pod over a finished or deleted one; indexes no hostNetwork pod by IP', () => {
    let clock = 0;
    const dir = new PodDirectory({ graceMs: GRACE, now: () => clock });
    const running = pod({ name: 'api-0', namespace: 'shop', uid: U.backup, ip: '10.244.1.6' });
    dir.upsertPod(running);
    dir.upsertPod(withPhase(PODS.debug, 'Succeeded')); // also 10.244.1.6, seen later
    expect(dir.byIp('10.244.1.6')?.uid).toBe(U.backup);
    dir.deletePod(running);
    expect(dir.byIp('10.244.1.6')?.uid).toBe(U.debug);
    dir.upsertPod(PODS.web0); // 10.244.1.6 again
    expect(dir.byIp('10.244.1.6')?.uid).toBe(U.web0);
    dir.deletePod(PODS.web0);
    expect(dir.byIp('10.244.1.6')?.uid).toBe(U.debug); // finished beats deleted
    dir.upsertPod(PODS.exporter);
    expect(dir.byIp('192.168.1.10')).toBeUndefined();
    // A pod deleted by mistake (a stale list) and seen again is live: no grace clock.
    dir.deletePod(PODS.exporter);
    dir.upsertPod(PODS.exporter);
    clock += GRACE;
    expect(dir.byUid(U.exporter)?.name).toBe('node-exporter-5vt2m');
    expect(dir.byUid(U.web0)).toBeUndefined();
    expect(dir.byIp('10.244.1.6')?.uid).toBe(U.debug);
  });

  it('finds a static pod\'s mirror by the UID kubelet gave it', () => {
    const dir = new PodDirectory();
    const staticUid = '6a8c0b1e2f3d4c5b6a7980a1b2c3d4e5';
    dir.upsertPod(pod({ name: `etcd-${NODE}`, namespace: 'kube-system', uid: U.debug, hostNetwork: true,
      owner: { kind: 'Node', name: NODE, apiVersion: 'v1' }, annotations: { 'kubernetes.io/config.mirror': staticUid } }));
    expect(dir.byUid(staticUid)).toMatchObject({ uid: U.debug, name: `etcd-${NODE}`, staticUid });
  });
});

describe('watchApiPods', () => {
  it('lists and watches this node\'s pods, resumes a dropped watch, relists after a 410', NETWORK_TEST, async () => {
    const api = new FakeApiServer();
    const server = await api.start();
    api.event('ADDED', PODS.checkout); // rv 101
    api.event('ADDED', PODS.exporter); // rv 102
    let clock = 5_000_000;
    const errors: string[] = [];
    const dir = await watchApiPods({ nodeName: NODE, kubeconfig: kubeconfigFor(server), retryMs: 20, graceMs: GRACE, now: () => clock, onError: (m) => errors.push(m) });
    cleanups.push(() => dir.close());

    // Resolved once the list is in; the watch follows.
    await until(() => api.openWatches === 1, 'the watch');
    expect(api.requests).toEqual([LIST, WATCH(102)]);
    expect([...api.authorizations]).toEqual(['Bearer test-token']);
    expect(dir.ready).toBe(true);
    expect(dir.size).toBe(2);
    expect(dir.byUid(U.checkout)).toEqual(podInfoOf(PODS.checkout));
    expect(dir.byIp('10.244.1.5')?.name).toBe('checkout-7d4b9c8f6d-x2x9k');
    expect(dir.byContainer(CID.checkout)?.workload).toEqual({ kind: 'Deployment', name: 'checkout' });
    expect(dir.byUid(U.exporter)?.workload).toEqual({ kind: 'DaemonSet', name: 'node-exporter' });
    expect(dir.byIp('192.168.1.10')).toBeUndefined(); // hostNetwork

    // Changes while the watch is open.
    api.event('DELETED', PODS.checkout); // rv 103
    api.event('ADDED', PODS.web0Pending); // rv 104
    api.event('MODIFIED', PODS.web0); // rv 105
    await until(() => dir.byIp('10.244.1.6')?.uid === U.web0, 'web-0 running');
    expect(dir.byContainer(CID.web0)).toMatchObject({ name: 'web-0', workload: { kind: 'StatefulSet', name: 'web' } });
    expect(dir.byUid(U.checkout)?.name).toBe('checkout-7d4b9c8f6d-x2x9k'); // deleted, within grace
    expect(dir.byIp('10.244.1.5')?.uid).toBe(U.checkout);
    clock += GRACE - 1;
    expect(dir.byUid(U.checkout)).toBeDefined();
    clock += 1;
    expect(dir.byUid(U.checkout)).toBeUndefined();
    expect(dir.byIp('10.244.1.5')).toBeUndefined();
    expect(dir.byContainer(CID.checkout)).toBeUndefined();

    // The server drops the watch: the library watches again from the last resourceVersion, no list.
    api.dropWatches();
    await until(() => api.requests.length === 3 && api.openWatches === 1, 'a second watch');
    expect(api.requests[2]).toBe(WATCH(105));
    api.event('ADDED', PODS.backup); // rv 106
    await until(() => dir.byUid(U.backup) !== undefined, 'the Job pod');
    expect(dir.byIp('10.244.1.7')?.workload).toEqual({ kind: 'Job', name: 'backup-28573920' });

    // Dropped again; while away, web-0 is recreated under a new UID, its old IP goes to a
    // new pod, the Job finishes, and the log is compacted: the watch from rv 106 gets 410.
    api.holdWatches = true;
    api.dropWatches();
    await until(() => api.heldWatches === 1, 'the client to come back');
    api.event('DELETED', PODS.web0); // rv 107
    api.event('ADDED', PODS.web0again); // rv 108
    api.event('ADDED', PODS.debug); // rv 109
    api.event('MODIFIED', withPhase(PODS.backup, 'Succeeded')); // rv 110
    api.compact();
    api.releaseWatches();
    await until(() => api.requests.length >= 6 && api.openWatches === 1, 'the relist and a new watch');
    expect(api.requests).toEqual([LIST, WATCH(102), WATCH(105), WATCH(106), LIST, WATCH(110)]);
    expect(dir.byUid(U.web0again)).toMatchObject({ name: 'web-0', ips: ['10.244.1.9'], workload: { kind: 'StatefulSet', name: 'web' } });
    expect(dir.byIp('10.244.1.6')?.uid).toBe(U.debug); // live beats the deleted web-0
    expect(dir.byUid(U.debug)?.workload).toBeUndefined(); // a bare pod
    expect(dir.byUid(U.backup)?.phase).toBe('Succeeded');
    expect(dir.byUid(U.web0)?.name).toBe('web-0'); // the old web-0, within grace
    clock += GRACE;
    expect(dir.byUid(U.web0)).toBeUndefined();
    expect(dir.size).toBe(4); // exporter, backup, web-0 again, debug

    expect(errors).toEqual([]);
    expect(dir.lastError).toBeUndefined();
    await dir.close();
    await until(() => api.openWatches === 0, 'the watch to close');
    await new Promise((r) => setTimeout(r, 100)); // five retry periods: nothing reopens
    expect(api.requests.length).toBe(6);
    expect(errors).toEqual([]);
  });

  it('retries a failed watch, reporting the failure until it recovers', NETWORK_TEST, async () => {
    const api = new FakeApiServer();
    const server = await api.start();
    api.event('ADDED', PODS.checkout); // rv 101
    api.failWatches = 1;
    const errors: string[] = [];
    const dir = await watchApiPods({ nodeName: NODE, kubeconfig: kubeconfigFor(server), retryMs: 20, onError: (m) => errors.push(m) });
    cleanups.push(() => dir.close());
    const message = `cannot watch pods on ${server}${LIST}: 500 Internal Server Error; retrying in 20 ms`;
    await until(() => errors.length === 1, 'the failed watch');
    expect(errors).toEqual([message]);
    expect(dir.lastError).toBe(message);
    await until(() => api.openWatches === 1 && dir.lastError === undefined, 'the watch to reopen');
    expect(api.requests).toEqual([LIST, WATCH(101), WATCH(101)]);
    expect(dir.lastError).toBeUndefined();
    expect(dir.byUid(U.checkout)?.name).toBe('checkout-7d4b9c8f6d-x2x9k');
  });

  it('fails in one line when the first list is refused', NETWORK_TEST, async () => {
    const api = new FakeApiServer();
    const server = await api.start();
    api.listFailure = { code: 403, reason: 'Forbidden', message: 'pods is forbidden: User "system:serviceaccount:ctstorm:ctstorm" cannot list resource "pods" in API group "" at the cluster scope' };
    await expect(watchApiPods({ nodeName: NODE, kubeconfig: kubeconfigFor(server) })).rejects.toThrow(new Error(
      `cannot list pods from ${server}${LIST}: 403 Forbidden (pods is forbidden: User "system:serviceaccount:ctstorm:ctstorm" cannot list resource "pods" in API group "" at the cluster scope); grant get/list/watch on pods to ctstorm's service account (see deploy/)`,
    ));
    expect(api.requests).toEqual([LIST]);
  });

  it('fails in one line when the API server cannot be reached', NETWORK_TEST, async () => {
    const closed = createServer();
    const server = await listen(closed);
    await new Promise<void>((r) => closed.close(() => r()));
    await expect(watchApiPods({ nodeName: NODE, kubeconfig: kubeconfigFor(server) })).rejects.toThrow(new Error(
      `cannot list pods from ${server}${LIST}: connect ECONNREFUSED 127.0.0.1:${new URL(server).port}; check that the API server is reachable from this node`,
    ));
  });

  it('says what to pass when there is no cluster to talk to', async () => {
    vi.stubEnv('KUBERNETES_SERVICE_HOST', '');
    await expect(watchApiPods({ nodeName: NODE })).rejects.toThrow(new Error('not running in a Kubernetes pod (KUBERNETES_SERVICE_HOST is unset); pass a kubeconfig path'));
    await expect(watchApiPods({ nodeName: NODE, kubeconfig: '/nonexistent/kubeconfig' })).rejects.toThrow(new Error(
      'cannot load kubeconfig /nonexistent/kubeconfig: ENOENT: no such file or directory, open \'/nonexistent/kubeconfig\'; pass a readable kubeconfig file',
    ));
  });
});

describe('pollKubeletPods', () => {
  it('polls /pods, keeps the last list through failed polls, and stops on close', NETWORK_TEST, async () => {
    let answer: 'list' | 'error' | 'silent' = 'list';
    let items = [PODS.checkout, PODS.exporter];
    let polls = 0;
    const server = createServer((req, res) => {
      polls++;
      if (req.url !== '/pods') return void res.writeHead(404).end();
      if (answer === 'silent') return; // never answers
      if (answer === 'error') return void res.writeHead(500).end('internal error');
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ kind: 'PodList', apiVersion: 'v1', metadata: {}, items }));
    });
    const url = `${await listen(server)}/pods`;
    let clock = 0;
    const errors: string[] = [];
    const dir = await pollKubeletPods({ url, intervalMs: 20, timeoutMs: 1000, graceMs: GRACE, now: () => clock, onError: (m) => errors.push(m) });
    cleanups.push(() => dir.close());
    expect(dir.ready).toBe(true);
    expect(dir.byUid(U.checkout)).toEqual(podInfoOf(PODS.checkout));
    expect(dir.byIp('192.168.1.10')).toBeUndefined();

    items = [PODS.exporter, PODS.web0];
    await until(() => dir.byIp('10.244.1.6')?.name === 'web-0', 'the next poll');
    expect(dir.byUid(U.checkout)?.name).toBe('checkout-7d4b9c8f6d-x2x9k'); // gone from the list, within grace
    clock += GRACE;
    expect(dir.byUid(U.checkout)).toBeUndefined();
    expect(dir.size).toBe(2);

    answer = 'error';
    await until(() => errors.length >= 1, 'a failed poll');
    expect(errors[0]).toBe(`cannot poll pods from ${url}: 500 Internal Server Error; check the URL ends in /pods; keeping the last list`);
    expect(dir.lastError).toBe(errors[0]);
    expect(dir.byUid(U.web0)?.name).toBe('web-0');
    expect(dir.size).toBe(2);

    answer = 'silent';
    await until(() => errors.at(-1)?.includes('no answer') === true, 'a poll that times out');
    expect(errors.at(-1)).toBe(`cannot poll pods from ${url}: no answer within 1000 ms; check the kubelet is up; keeping the last list`);
    expect(dir.byUid(U.web0)?.name).toBe('web-0');

    answer = 'list';
    await until(() => dir.lastError === undefined, 'a good poll');
    await dir.close();
    const after = polls;
    await new Promise((r) => setTimeout(r, 100)); // five intervals
    expect(polls).toBe(after);
  });

  it('fails in one line when the first poll fails', NETWORK_TEST, async () => {
    const closed = createServer();
    const base = await listen(closed);
    await new Promise<void>((r) => closed.close(() => r()));
    const port = new URL(base).port;
    await expect(pollKubeletPods({ url: `${base}/pods` })).rejects.toThrow(new Error(
      `cannot poll pods from ${base}/pods: connect ECONNREFUSED 127.0.0.1:${port}; enable the kubelet read-only port (readOnlyPort: 10255) or use the Kubernetes API`,
    ));
  });
});
