// Who made each entry, named as on a Kubernetes node: real cgroup v2 directories
// named exactly as kubelet (systemd and cgroupfs drivers) with containerd, and
// systemd, name them; a process moved into each makes real flows from a netns;
// and a pod directory (as the Kubernetes API would fill it) names pod IPs. In
// every mode: the probe records the process (pid, command, cgroup id) for the
// flows it sends and softirq for the same flows received, and the view names
// the pod, container, workload and unit behind them.
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmdirSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { execFileSync } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CgroupIndex, cgroup2MountOf } from '../../src/attribution/cgroup-index.js';
import { Namer } from '../../src/attribution/namer.js';
import { PodDirectory } from '../../src/attribution/pod-directory.js';
import { Registry, type Metric } from 'prom-client';
import { ctstormMetrics } from '../../src/exporter/metrics.js';
import { Monitor, type CtRecord } from '../../src/index.js';
import { renderSnapshot } from '../../src/snapshot.js';
import { renderFrame } from '../../src/watch.js';
import { testModes } from './modes.js';
import { NetnsPair } from './netns.js';
import { liveSkipReason } from './privileges.js';
import { until } from './wait.js';

const skip = liveSkipReason();
const senderScript = fileURLToPath(new URL('./cgroup-sender.py', import.meta.url));
const PORT = 7400; // nobody listens: one-way datagrams, one entry each
const POD_UID = '5f3c2a1e-9b7d-4c6e-8a2f-1d0e9c8b7a65';
const POD2_UID = '0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d';
const CONTAINER = 'c0ffee'.padEnd(64, '0');
const CONTAINER2 = 'beef'.padEnd(64, '1');
const UNIT = `ctstorm-test-${process.pid}.service`;
const EPOCH_SECONDS = 5;
/** A Service's address (198.18.0.0/15 is for tests), DNAT'd to the server netns's own. */
const SERVICE_VIP = '198.19.200.10';
const BACKEND_PORT = 7401;

/** The cgroup2 mount, or one made for the test (QEMU guests mount none). */
function cgroup2(): { mount: string; made: boolean } {
  const found = cgroup2MountOf(readFileSync('/proc/self/mountinfo', 'utf8'));
  if (found) return { mount: found, made: false };
  const mount = mkdtempSync(join(tmpdir(), 'ctstorm-cgroup2-'));
  execFileSync('mount', ['-t', 'cgroup2', 'none', mount]);
  return { mount, made: true };
}

/** A process in a cgroup and a netns that sends datagrams when told. */
class Sender {
  private readonly proc: ChildProcessWithoutNullStreams;
  private readonly lines: string[] = [];
  pid = 0;

  constructor(netns: string, cgroupDir: string, addr: string, firstPort: number) {
    // Into the cgroup first: `ip netns exec` mounts a sysfs of the netns's own.
    const script = 'echo $$ > "$0/cgroup.procs" && exec ip netns exec "$1" python3 "$2" "$3" "$4" "$5"';
    this.proc = spawn('sh', ['-c', script, cgroupDir, netns, senderScript, addr, String(PORT), String(firstPort)]);
    this.proc.stderr.pipe(process.stderr);
    createInterface({ input: this.proc.stdout }).on('line', (l) => this.lines.push(l));
  }

  async started(): Promise<number> {
    await until(() => this.lines.length >= 1, 30_000, 'the sender to start');
    this.pid = Number(this.lines[0]);
    return this.pid;
  }

  async send(n: number): Promise<void> {
    const answers = this.lines.length;
    this.proc.stdin.write(`send ${n}\n`);
    await until(() => this.lines.length > answers, 120_000, `the sender to send ${n}`);
    expect(this.lines[answers]).toBe(`sent ${n}`);
  }

  stop(): void {
    this.proc.stdin.end();
    this.proc.kill();
  }
}

/** The pod object the Kubernetes API would return for the "pod" made here. */
function podObject(ip: string): object {
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: {
      name: 'checkout-7d9f8c6b5-x2k4q',
      namespace: 'shop',
      uid: POD_UID,
      labels: { app: 'checkout', 'pod-template-hash': '7d9f8c6b5' },
      ownerReferences: [{ apiVersion: 'apps/v1', kind: 'ReplicaSet', name: 'checkout-7d9f8c6b5', uid: '11111111-2222-4333-8444-555555555555', controller: true, blockOwnerDeletion: true }],
    },
    spec: { nodeName: 'node-a', containers: [{ name: 'app', image: 'registry.example/checkout:1.4' }] },
    status: { phase: 'Running', podIP: ip, podIPs: [{ ip }], containerStatuses: [{ name: 'app', containerID: `containerd://${CONTAINER}`, ready: true, restartCount: 0, image: 'registry.example/checkout:1.4', imageID: '', started: true, state: { running: { startedAt: '2026-11-26T10:00:00Z' } } }] },
  };
}

/** The Service's backend, a StatefulSet's pod, as the API would return it. */
function backendPod(ip: string): object {
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: {
      name: 'cart-0',
      namespace: 'shop',
      uid: '9c8b7a65-1d0e-4f2a-8b7c-6e5d4c3b2a10',
      labels: { app: 'cart', 'statefulset.kubernetes.io/pod-name': 'cart-0' },
      ownerReferences: [{ apiVersion: 'apps/v1', kind: 'StatefulSet', name: 'cart', uid: '66666666-7777-4888-9999-aaaaaaaaaaaa', controller: true, blockOwnerDeletion: true }],
    },
    spec: { nodeName: 'node-a', containers: [{ name: 'cart', image: 'registry.example/cart:2.0' }] },
    status: { phase: 'Running', podIP: ip, podIPs: [{ ip }], containerStatuses: [] },
  };
}

describe.skipIf(skip !== undefined)('attribution: processes, cgroups, pods', () => {
  const pair = new NetnsPair('attr');
  let cg: { mount: string; made: boolean };
  const dirs: string[] = [];
  let podDir = '';
  let pod2Dir = '';
  let unitDir = '';

  beforeAll(() => {
    pair.up();
    // Conntrack in the client netns too: its entries are made by the sending process.
    pair.exec(pair.client, 'nft', 'add table ip ctstorm_test; add chain ip ctstorm_test output { type filter hook output priority 0; }; add rule ip ctstorm_test output ct state new accept');
    // A Service: its VIP, routed to the server netns, DNAT'd there to a "backend pod" (the server's address).
    pair.exec(pair.client, 'ip', 'route', 'add', `${SERVICE_VIP}/32`, 'via', pair.serverAddr);
    pair.exec(pair.server, 'nft', `add table ip ctstorm_nat; add chain ip ctstorm_nat prerouting { type nat hook prerouting priority -100; }; add rule ip ctstorm_nat prerouting ip daddr ${SERVICE_VIP} udp dport ${PORT} dnat to ${pair.serverAddr}:${BACKEND_PORT}`);
    cg = cgroup2();
    const mk = (...parts: string[]): string => {
      let path = cg.mount;
      for (const p of parts) {
        path = join(path, p);
        try {
          mkdirSync(path);
          dirs.push(path);
        } catch (err) {
          if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
        }
      }
      return path;
    };
    // kubelet with the systemd driver, containerd's scope
    podDir = mk('kubepods.slice', 'kubepods-burstable.slice', `kubepods-burstable-pod${POD_UID.replaceAll('-', '_')}.slice`, `cri-containerd-${CONTAINER}.scope`);
    // kubelet with the cgroupfs driver, a best-effort pod
    pod2Dir = mk('kubepods', 'besteffort', `pod${POD2_UID}`, CONTAINER2);
    // a plain systemd service
    unitDir = mk('system.slice', UNIT);
  });

  afterAll(() => {
    pair.down();
    for (const d of dirs.reverse()) {
      try {
        rmdirSync(d);
      } catch {
        // still holds a process that is exiting: left for the next run's EEXIST
      }
    }
    if (cg?.made) execFileSync('umount', [cg.mount]);
  });

  describe.each(testModes().map((mode, i) => [mode, i] as const))('in %s mode', (mode, i) => {
    // Source ports of this mode's senders, apart from the other modes' (whose UDP
    // entries may still be in the table: a tuple seen again is no new entry).
    const ports = { pod: 20000 + 4000 * i, pod2: 21600 + 4000 * i, unit: 21700 + 4000 * i, service: 21800 + 4000 * i };
    let monitor: Monitor;
    let namer: Namer;
    const records: CtRecord[] = [];
    const senders: Sender[] = [];
    const pods = new PodDirectory();
    const inodes = () => ({ client: statSync(`/run/netns/${pair.client}`).ino, server: pair.serverInode });

    beforeAll(async () => {
      namer = new Namer({ cgroups: new CgroupIndex({ mount: cg.mount, minRefreshMs: 0 }), pods, refreshMs: 0 });
      pair.exec(pair.client, 'conntrack', '-F');
      await pair.empty();
      pods.upsertPod(podObject(pair.clientAddr));
      pods.upsertPod(backendPod(pair.serverAddr));
      const { client, server } = inodes();
      monitor = new Monitor({
        mode,
        censusIntervalSeconds: 0,
        // A storm stays current for 60 quiet seconds: /metrics shows a running storm's cause.
        engine: {
          topEpochSeconds: EPOCH_SECONDS,
        storms: { factor: 5, floorPerSecond: 100, baselineSeconds: 60, quietSeconds: 60, maxPast: 20, topNetns: 5 } },
        names: namer,
      });
      monitor.onBatch((batch) => {
        for (let i = 0; i < batch.count; i++) if (batch.netns(i) === client || batch.netns(i) === server) records.push(batch.decode(i));
      });
    });

    afterAll(async () => {
      for (const s of senders) s.stop();
      await monitor?.close();
    });

    const inserts = (netns: number, pid?: number) => records.filter((r) => r.type === 'insert' && r.netns === netns && (pid === undefined || r.task?.pid === pid));
    // The top lists show the last complete epoch (of the probe's clock, CLOCK_MONOTONIC,
    // which process.hrtime reads): a test reads the view just after the epoch that
    // holds a process's last insert has ended, so that process is in it.
    const viewAfterLastInsert = async (of: CtRecord[]) => {
      const last = Math.max(...of.map((r) => r.tsNs)) / 1e9;
      const end = (Math.floor(last / EPOCH_SECONDS) + 1) * EPOCH_SECONDS;
      const wait = end - Number(process.hrtime.bigint()) / 1e9;
      expect(wait, 'the epoch of the last insert is still the last complete one').toBeGreaterThan(-EPOCH_SECONDS);
      if (wait > 0) await new Promise((r) => setTimeout(r, wait * 1000 + 50));
      // Names come from the last completed read of /proc: one that began after the senders did.
      await namer.refreshNow();
      await namer.refreshNow();
      return monitor.view();
    };

    it('records the sending process for flows it makes, softirq where they are received, and names its pod', async () => {
      const { client, server } = inodes();
      const sender = new Sender(pair.client, podDir, pair.serverAddr, ports.pod);
      senders.push(sender);
      const pid = await sender.started();
      const before = { client: inserts(client).length, server: inserts(server).length };
      await sender.send(20);
      const state = () => `client ${inserts(client).length - before.client}, server ${inserts(server).length - before.server}`;
      await until(() => inserts(client).length - before.client >= 20 && inserts(server).length - before.server >= 20, 60_000, '20 inserts in each netns', state);
      const mine = inserts(client).slice(before.client);
      expect(mine).toHaveLength(20);
      for (const r of mine) expect([r.context, r.task]).toEqual(['task', { pid, comm: 'python3', cgroupId: statSync(podDir).ino }]);
      const received = inserts(server).slice(before.server);
      expect(received).toHaveLength(20);
      for (const r of received) expect([r.context, r.task]).toEqual(['interrupt', undefined]);

      const view = await viewAfterLastInsert([...mine, ...received]);
      const named = view.engine.top.processes.find((p) => p.pid === pid);
      expect(named).toMatchObject({
        comm: 'python3',
        cgroupId: statSync(podDir).ino,
        cgroup: podDir.slice(cg.mount.length),
        pod: 'checkout-7d9f8c6b5-x2k4q',
        namespace: 'shop',
        podUid: POD_UID,
        workload: 'deployment/checkout',
        container: 'app',
      });
      // Its inserts in that epoch (all 20 unless they straddled two); exact counts are the records'.
      expect(named!.inserts).toBeGreaterThan(0);
      expect(named!.inserts).toBeLessThanOrEqual(20);
      // The received half has no process; its source address is the pod's IP.
      expect(view.engine.top.sources.find((t) => t.address === pair.clientAddr)).toMatchObject({ pod: 'checkout-7d9f8c6b5-x2k4q', namespace: 'shop', workload: 'deployment/checkout' });
      expect(view.netnsNames[client]).toMatchObject({ pod: 'checkout-7d9f8c6b5-x2k4q', namespace: 'shop', podUid: POD_UID, workload: 'deployment/checkout', pods: 1, containers: ['app'], processes: ['python3'] });
      expect(view.engine.contexts.process).toBeGreaterThanOrEqual(20);
    });

    it('tells apart two processes in two cgroups sharing one netns (hostNetwork), by process and cgroup', async () => {
      const { client } = inodes();
      const b = new Sender(pair.client, pod2Dir, pair.serverAddr, ports.pod2);
      const c = new Sender(pair.client, unitDir, pair.serverAddr, ports.unit);
      senders.push(b, c);
      const [pidB, pidC] = [await b.started(), await c.started()];
      await Promise.all([b.send(7), c.send(5)]);
      await until(() => inserts(client, pidB).length >= 7 && inserts(client, pidC).length >= 5, 60_000, '7 + 5 inserts', () => `${inserts(client, pidB).length} + ${inserts(client, pidC).length}`);
      expect(inserts(client, pidB).map((r) => r.task!.cgroupId)).toEqual(Array(7).fill(statSync(pod2Dir).ino));
      expect(inserts(client, pidC).map((r) => r.task!.cgroupId)).toEqual(Array(5).fill(statSync(unitDir).ino));

      const viewB = await viewAfterLastInsert(inserts(client, pidB));
      expect(viewB.engine.top.processes.find((p) => p.pid === pidB)).toMatchObject({ comm: 'python3', podUid: POD2_UID, container: CONTAINER2.slice(0, 12) });
      // No pod directory knows it: a UID, not a name.
      expect(viewB.engine.top.processes.find((p) => p.pid === pidB)?.pod).toBeUndefined();
      const view = await viewAfterLastInsert(inserts(client, pidC));
      expect(view.engine.top.processes.find((p) => p.pid === pidC)).toMatchObject({ comm: 'python3', unit: UNIT, cgroup: `/system.slice/${UNIT}` });
      expect(view.engine.top.processes.find((p) => p.pid === pidC)?.pod).toBeUndefined();
      // Two pods share it now: the netns names neither.
      expect(view.netnsNames[client]).toMatchObject({ pods: 2 });
      expect(view.netnsNames[client]?.pod).toBeUndefined();
      b.stop();
      c.stop();
    });

    it('names the backend pod of DNAT\'d Service traffic, by the address it was translated to', async () => {
      const { server } = inodes();
      const sender = new Sender(pair.client, podDir, SERVICE_VIP, ports.service);
      senders.push(sender);
      await sender.started();
      await sender.send(10);
      const dnatd = () => inserts(server).filter((r) => r.orig.dst === SERVICE_VIP);
      await until(() => dnatd().length >= 10, 60_000, '10 DNAT\'d inserts', () => `${dnatd().length}`);
      expect(dnatd().map((r) => [r.reply.src, r.reply.sport, (r.status & 0x20) !== 0])).toEqual(Array(10).fill([pair.serverAddr, BACKEND_PORT, true]));
      const view = await viewAfterLastInsert(dnatd());
      expect(view.engine.top.backends.find((t) => t.address === pair.serverAddr && t.port === BACKEND_PORT)).toMatchObject({ pod: 'cart-0', namespace: 'shop', workload: 'statefulset/cart' });
      expect(view.engine.top.destinations.find((t) => t.address === SERVICE_VIP)).toMatchObject({ port: PORT });
      sender.stop();
    });

    it('names a storm from the pod by its workload, alike in the snapshot, watch and /metrics', async () => {
      const sender = senders[0]!;
      const { client } = inodes();
      // Quiet seconds first: the storm's threshold is 5 x the baseline, at least 100/s.
      await new Promise((r) => setTimeout(r, 3000));
      await sender.send(1500);
      await until(() => monitor.view().engine.storms.current !== null, 60_000, 'the storm to be seen');
      await namer.refreshNow();
      await namer.refreshNow();
      const view = monitor.view();
      const storm = view.engine.storms.current!;
      expect(storm.cause).toMatchObject({ name: 'deployment shop/checkout' });
      expect(storm.cause!.share).toBeGreaterThan(0.9);

      // One view, three renderings: each names the same pod and workload.
      const snap = renderSnapshot(view, view.uptimeSeconds);
      expect(snap.storms.current?.cause?.name).toBe('deployment shop/checkout');
      expect(snap.netns.find((n) => n.inode === client)).toMatchObject({ pod: 'checkout-7d9f8c6b5-x2k4q', namespace: 'shop', workload: 'deployment/checkout' });
      const frame = renderFrame(view, { width: Infinity, unicode: false, drainedPerSecond: 0 });
      expect(frame).toContain(`% from deployment shop/checkout`);
      expect(frame).toMatch(new RegExp(`\\n  ${client} .* shop/checkout-7d9f8c6b5-x2k4q\\n`));
      const registry = new Registry();
      for (const m of ctstormMetrics(() => view, { version: 'test' })) registry.registerMetric(m as unknown as Metric);
      const text = await registry.metrics();
      expect(text).toMatch(/^ctstorm_storm_cause_share\{cause="deployment shop\/checkout",by="(netns|source|process)"\} (0\.9\d*|1)$/m);
      expect(text).toContain(`ctstorm_netns_info{netns="${client}",k8s_namespace="shop",k8s_pod="checkout-7d9f8c6b5-x2k4q",k8s_workload="deployment/checkout",host="false"} 1`);
    });
  });
});
