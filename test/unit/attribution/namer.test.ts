// The layers together: a /proc and a cgroup tree made of files, a pod directory
// filled as the Kubernetes API would, and what each kind of row is named.
import { mkdirSync, mkdtempSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { CgroupIndex } from '../../../src/attribution/cgroup-index.js';
import { Namer, procNetnsUnreadable } from '../../../src/attribution/namer.js';
import { PodDirectory } from '../../../src/attribution/pod-directory.js';

const UID = '5f3c2a1e-9b7d-4c6e-8a2f-1d0e9c8b7a65';
const OTHER_UID = '0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d';
const APP = 'a'.repeat(64);
const SIDECAR = 'b'.repeat(64);
const HOST_NETNS = 4026531840;
const POD_NETNS = 4026532100;
const POD_SLICE = `/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod${UID.replaceAll('-', '_')}.slice`;
const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

function tmp(prefix: string): string {
  const d = mkdtempSync(join(tmpdir(), prefix));
  dirs.push(d);
  return d;
}

function addProcess(proc: string, pid: number, netns: number, comm: string, cgroup: string): void {
  mkdirSync(join(proc, String(pid), 'ns'), { recursive: true });
  symlinkSync(`net:[${netns}]`, join(proc, String(pid), 'ns', 'net'));
  writeFileSync(join(proc, String(pid), 'comm'), `${comm}\n`);
  writeFileSync(join(proc, String(pid), 'cgroup'), `0::${cgroup}\n`);
}

function pod(uid: string, name: string, ip: string, extra: object = {}): object {
  return {
    apiVersion: 'v1', kind: 'Pod',
    metadata: { name, namespace: 'shop', uid, labels: { 'pod-template-hash': '7d9f8c6b5' },
      ownerReferences: [{ apiVersion: 'apps/v1', kind: 'ReplicaSet', name: 'checkout-7d9f8c6b5', uid: '11111111-2222-4333-8444-555555555555', controller: true }] },
    spec: { nodeName: 'node-a' },
    status: { phase: 'Running', podIP: ip, podIPs: [{ ip }], containerStatuses: [
      { name: 'app', containerID: `containerd://${APP}` }, { name: 'envoy', containerID: `containerd://${SIDECAR}` }] },
    ...extra,
  };
}

async function setUp(withPods: boolean) {
  const proc = tmp('ctstorm-proc-');
  const cgroups = tmp('ctstorm-cgroup-');
  mkdirSync(join(cgroups, POD_SLICE, `cri-containerd-${APP}.scope`), { recursive: true });
  mkdirSync(join(cgroups, 'system.slice', 'kubelet.service'), { recursive: true });
  addProcess(proc, 1, HOST_NETNS, 'systemd', '/init.scope');
  addProcess(proc, 300, HOST_NETNS, 'kubelet', '/system.slice/kubelet.service');
  addProcess(proc, 400, POD_NETNS, 'checkout', `${POD_SLICE}/cri-containerd-${APP}.scope`);
  addProcess(proc, 401, POD_NETNS, 'envoy', `${POD_SLICE}/cri-containerd-${SIDECAR}.scope`);
  // A hostNetwork pod's process: in the host's netns, in a pod's cgroup.
  addProcess(proc, 500, HOST_NETNS, 'kube-proxy', `/kubepods.slice/kubepods-pod${OTHER_UID.replaceAll('-', '_')}.slice/cri-containerd-${'c'.repeat(64)}.scope`);
  const pods = withPods ? new PodDirectory() : null;
  pods?.upsertPod(pod(UID, 'checkout-7d9f8c6b5-x2k4q', '10.244.1.5'));
  pods?.upsertPod(pod(OTHER_UID, 'kube-proxy-abcde', '192.168.1.10', { spec: { nodeName: 'node-a', hostNetwork: true } }));
  const namer = new Namer({ proc, cgroups: new CgroupIndex({ mount: cgroups, minRefreshMs: 0 }), pods, refreshMs: 0 });
  await namer.refreshNow();
  const id = (path: string) => statSync(join(cgroups, path)).ino;
  return { namer, id };
}

describe('Namer', () => {
  it('names a pod\'s netns by its pod, workload and container names; the host\'s as the host, never as its one hostNetwork pod', async () => {
    const { namer } = await setUp(true);
    expect(namer.netns(POD_NETNS)).toEqual({
      pod: 'checkout-7d9f8c6b5-x2k4q', namespace: 'shop', podUid: UID, workload: 'deployment/checkout', pods: 1,
      containers: ['app', 'envoy'], processes: ['checkout', 'envoy'],
    });
    const host = namer.netns(HOST_NETNS);
    expect(host).toMatchObject({ host: true, pods: 1 });
    expect(host?.pod).toBeUndefined();
  });

  it('names a process by its cgroup: pod, workload and container name; a host service by its unit', async () => {
    const { namer, id } = await setUp(true);
    expect(namer.process(id(`${POD_SLICE}/cri-containerd-${APP}.scope`))).toEqual({
      pod: 'checkout-7d9f8c6b5-x2k4q', namespace: 'shop', podUid: UID, workload: 'deployment/checkout', container: 'app',
      cgroup: `${POD_SLICE}/cri-containerd-${APP}.scope`,
    });
    expect(namer.process(id('/system.slice/kubelet.service'))).toEqual({ unit: 'kubelet.service', cgroup: '/system.slice/kubelet.service' });
    expect(namer.process(123_456_789)).toEqual({}); // a cgroup not in the tree
  });

  it('without a pod directory, knows pods by UID and containers by short ID, and names no pod', async () => {
    const { namer, id } = await setUp(false);
    expect(namer.netns(POD_NETNS)).toMatchObject({ podUid: UID, containers: [APP.slice(0, 12), SIDECAR.slice(0, 12)] });
    expect(namer.netns(POD_NETNS)?.pod).toBeUndefined();
    expect(namer.process(id(`${POD_SLICE}/cri-containerd-${APP}.scope`))).toMatchObject({ podUid: UID, container: APP.slice(0, 12) });
    expect(namer.address('10.244.1.5')).toBeUndefined();
  });

  it('names a pod\'s address, never a hostNetwork pod\'s (the node\'s own)', async () => {
    const { namer } = await setUp(true);
    expect(namer.address('10.244.1.5')).toEqual({ pod: 'checkout-7d9f8c6b5-x2k4q', namespace: 'shop', podUid: UID, workload: 'deployment/checkout' });
    expect(namer.address('192.168.1.10')).toBeUndefined();
  });
  it('says when no process\'s netns link can be read (pid 1, then kthreadd)', async () => {
    const proc = tmp('ctstorm-proc-');
    expect(procNetnsUnreadable(proc)).toBe(`${proc}/1/ns/net: ENOENT, ${proc}/2/ns/net: ENOENT`);
    addProcess(proc, 2, HOST_NETNS, 'kthreadd', '/');
    expect(procNetnsUnreadable(proc)).toBeUndefined();
  });
});
