#!/usr/bin/env node
// The cost of keeping names current on a busy Kubernetes node: 10,000 processes
// in 1,000 network namespaces, 1,000 pods with 2 containers each. Builds a
// synthetic /proc (ns/net link, comm, cgroup per pid, as the kernel shows them)
// and a cgroup tree of the same pods (kubelet systemd driver, containerd scopes,
// cgroup v2 control files in each directory) on tmpfs, then times
//   NetnsNames.refresh(): first (every pid new), again with nothing changed,
//     and after 1 % of the processes were replaced;
//   CgroupIndex: the first walk, a re-walk, a lookup that hits, and a miss
//     inside the rate limit (what each record of a storm of unknown ids costs);
// beside the same on this machine's real /proc and cgroup2 mount, and (root, a
// cgroup2 mount, no --no-kernfs) the same cgroup tree made as real cgroups,
// since kernfs is not tmpfs. Median of `runs` runs each; prints a table and
// writes bench/results/names-<date>.json. No root needed but for the kernfs row.
//   npm run build && node bench/names.mjs [runs=7] [--no-kernfs]
import { closeSync, existsSync, mkdirSync, mkdtempSync, openSync, readdirSync, readFileSync, rmdirSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { cpus, release, tmpdir } from 'node:os';
import { join } from 'node:path';
import { CgroupIndex, cgroup2MountOf } from '../dist/attribution/cgroup-index.js';
import { NetnsNames } from '../dist/attribution/netns-names.js';

const args = process.argv.slice(2);
const runs = Number(args.find((a) => /^\d+$/.test(a)) ?? 7);
const withKernfs = !args.includes('--no-kernfs');
const PROCESSES = 10_000;
const NETNS = 1_000;
const PODS = 1_000;
const HOST_NETNS = 4026531840;
/** A leaf's files with the cpu, io, memory and pids controllers on (kernel 6.x). */
const CONTROL_FILES = `cgroup.controllers cgroup.events cgroup.freeze cgroup.kill cgroup.max.depth cgroup.max.descendants
  cgroup.pressure cgroup.procs cgroup.stat cgroup.subtree_control cgroup.threads cgroup.type cpu.idle cpu.max cpu.max.burst
  cpu.pressure cpu.stat cpu.weight cpu.weight.nice io.max io.pressure io.prio.class io.stat io.weight memory.current
  memory.events memory.events.local memory.high memory.low memory.max memory.min memory.numa_stat memory.oom.group
  memory.peak memory.pressure memory.reclaim memory.stat memory.swap.current memory.swap.events memory.swap.high
  memory.swap.max memory.zswap.current memory.zswap.max pids.current pids.events pids.max pids.peak`.split(/\s+/);

const hex = (n, width) => n.toString(16).padStart(width, '0');
const podUid = (i) => `${hex(i, 8)}-0000-4000-8000-${hex(i, 12)}`;
const containerId = (pod, c) => hex(pod, 8) + hex(c, 8) + 'c'.repeat(48);

/** Pod i's cgroup: a third each guaranteed (no QoS level), burstable, besteffort. */
function podSlice(i) {
  const uid = podUid(i).replaceAll('-', '_');
  const qos = ['', 'burstable', 'besteffort'][i % 3];
  return qos ? `/kubepods.slice/kubepods-${qos}.slice/kubepods-${qos}-pod${uid}.slice` : `/kubepods.slice/kubepods-pod${uid}.slice`;
}

/** The cgroup paths: every pod's two container scopes, and the host's units. */
function cgroupPaths() {
  const paths = ['/init.scope', '/user.slice/user-0.slice/session-1.scope'];
  for (let s = 0; s < 40; s++) paths.push(`/system.slice/unit-${s}.service`);
  for (let i = 0; i < PODS; i++) for (let c = 0; c < 2; c++) paths.push(`${podSlice(i)}/cri-containerd-${containerId(i, c)}.scope`);
  return paths;
}

/** Process n: 1,000 on the host (units, kernel threads in the root cgroup), the
 * rest in pods; pods 0..998 have a netns each, pod 999 is hostNetwork. */
function processOf(n) {
  if (n < 1000) return { netns: HOST_NETNS, comm: n % 2 ? `kworker/${n}` : `svc-${n % 40}`, cgroup: n % 2 ? '/' : `/system.slice/unit-${n % 40}.service` };
  const pod = n % PODS;
  const scope = `${podSlice(pod)}/cri-containerd-${containerId(pod, n % 9 === 0 ? 0 : 1)}.scope`;
  return { netns: pod < NETNS - 1 ? 4026532000 + pod : HOST_NETNS, comm: n % 9 === 0 ? 'pause' : `app-${pod % 50}`, cgroup: scope };
}

function addProcess(proc, pid, n) {
  const p = processOf(n);
  mkdirSync(join(proc, String(pid), 'ns'), { recursive: true });
  symlinkSync(`net:[${p.netns}]`, join(proc, String(pid), 'ns', 'net'));
  writeFileSync(join(proc, String(pid), 'comm'), `${p.comm}\n`);
  writeFileSync(join(proc, String(pid), 'cgroup'), `0::${p.cgroup}\n`);
}

function makeCgroupTree(root, withFiles) {
  const dirs = new Set(['']);
  for (const path of cgroupPaths()) {
    const parts = path.split('/');
    for (let i = 2; i <= parts.length; i++) dirs.add(parts.slice(0, i).join('/'));
  }
  for (const dir of dirs) {
    mkdirSync(join(root, dir), { recursive: true });
    if (withFiles) for (const f of CONTROL_FILES) closeSync(openSync(join(root, dir, f), 'w'));
  }
  return [...dirs];
}

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
function timed(fn) {
  const t = performance.now();
  fn();
  return performance.now() - t;
}
/** Median, min and max ms of `runs` runs of `setup` (untimed) then `fn`. */
function measure(runsOf, setup, fn) {
  const ms = [];
  for (let r = 0; r < runsOf; r++) {
    const state = setup();
    ms.push(timed(() => fn(state)));
  }
  return { ms: median(ms), min: Math.min(...ms), max: Math.max(...ms) };
}

const rows = [];
const row = (name, m, extra) => rows.push({ name, ...m, ...extra });

function benchNetnsNames(label, proc, pids, replace) {
  row(`${label}: readdir of the /proc dir alone (a refresh's floor)`, measure(runs, () => 0, () => readdirSync(proc)), { pids });
  row(`${label}: NetnsNames first refresh (all new)`, measure(runs, () => new NetnsNames(proc), (n) => n.refresh()), { pids });
  const names = new NetnsNames(proc);
  names.refresh();
  row(`${label}: NetnsNames refresh, nothing changed`, measure(runs, () => names, (n) => n.refresh()), { pids, reads: names.lastReads });
  if (!replace) return names;
  row(`${label}: NetnsNames refresh, 1 % replaced`, measure(runs, () => (replace(), names), (n) => n.refresh()), { pids, reads: names.lastReads });
  return names;
}

function benchCgroupIndex(label, mount, expect) {
  const first = measure(runs, () => new CgroupIndex({ mount }), (i) => i.refresh());
  const index = new CgroupIndex({ mount });
  index.refresh();
  const dirs = index.lastWalk.dirs;
  row(`${label}: CgroupIndex first walk`, first, { dirs });
  row(`${label}: CgroupIndex re-walk`, measure(runs, () => index, (i) => i.refresh()), { dirs });
  let wrong = 0;
  for (const [id, path] of expect(index)) if (index.pathOf(id) !== path) wrong++;
  if (wrong) throw new Error(`${label}: ${wrong} cgroup ids not mapped to their paths`);
  const ids = [...expect(index).keys()];
  const LOOKUPS = 1_000_000;
  const hit = measure(runs, () => 0, () => { for (let k = 0; k < LOOKUPS; k++) index.pathOf(ids[k % ids.length]); });
  row(`${label}: pathOf hit, per 1M lookups`, hit, { nsPerLookup: Math.round((hit.ms * 1e6) / LOOKUPS) });
  const limited = new CgroupIndex({ mount, minRefreshMs: 1e12 });
  limited.refresh();
  const miss = measure(runs, () => 0, () => { for (let k = 0; k < LOOKUPS; k++) limited.pathOf(2 ** 52 + k); });
  row(`${label}: pathOf miss inside the rate limit, per 1M`, miss, { nsPerLookup: Math.round((miss.ms * 1e6) / LOOKUPS) });
}

const base = mkdtempSync(join(existsSync('/dev/shm') ? '/dev/shm' : tmpdir(), 'ctstorm-names-'));
const realMount = cgroup2MountOf(readFileSync('/proc/self/mountinfo', 'utf8'));
const kernfsRoot = realMount && withKernfs && process.getuid?.() === 0 ? join(realMount, `ctstorm-bench-${process.pid}`) : undefined;
let kernfsDirs = [];
try {
  // Synthetic /proc: pids 1..10,000, then 1 % replaced by fresh pids per run.
  const proc = join(base, 'proc');
  for (let n = 0; n < PROCESSES; n++) addProcess(proc, n + 1, n);
  let nextPid = PROCESSES + 1;
  let alive = Array.from({ length: PROCESSES }, (_, i) => i + 1);
  const replaceOnePercent = () => {
    for (let k = 0; k < PROCESSES / 100; k++) {
      const victim = alive.splice((k * 97) % alive.length, 1)[0];
      rmSync(join(proc, String(victim)), { recursive: true });
      addProcess(proc, nextPid, 1000 + ((nextPid * 7) % (PROCESSES - 1000)));
      alive.push(nextPid++);
    }
  };
  const names = benchNetnsNames('synthetic', proc, PROCESSES, replaceOnePercent);
  const podNetns = names.nameOf(4026532000 + 5);
  if (podNetns?.pods.length !== 1 || podNetns.containers.length !== 2) throw new Error(`synthetic: pod 5's netns is misnamed: ${JSON.stringify(podNetns)}`);
  const realPids = readdirSync('/proc').filter((d) => /^\d+$/.test(d)).length;
  benchNetnsNames('this host', '/proc', realPids);

  // Cgroup trees: tmpfs with cgroupfs's files, this host's cgroup2, the tree as real cgroups.
  const expectIn = (root, dirs) => () => new Map(dirs.map((d) => [statSync(join(root, d)).ino, d === '' ? '/' : d]));
  const tree = join(base, 'cgroup');
  const dirs = makeCgroupTree(tree, true);
  benchCgroupIndex('synthetic (tmpfs)', tree, expectIn(tree, dirs));
  if (realMount) benchCgroupIndex(`this host (${realMount})`, realMount, () => new Map([[statSync(realMount).ino, '/']]));
  if (kernfsRoot) {
    kernfsDirs = makeCgroupTree(kernfsRoot, false);
    const expectKernfs = () => new Map(kernfsDirs.map((d) => [statSync(join(kernfsRoot, d)).ino, `/ctstorm-bench-${process.pid}${d}`]));
    benchCgroupIndex('synthetic (real cgroups)', realMount, expectKernfs);
  }
} finally {
  rmSync(base, { recursive: true, force: true });
  // Cgroups go leaves first; a cgroup directory is removed with rmdir only.
  for (const d of kernfsDirs.sort((a, b) => b.split('/').length - a.split('/').length)) {
    try {
      rmdirSync(join(kernfsRoot, d));
    } catch (e) {
      console.error(`could not remove cgroup ${join(kernfsRoot, d)}: ${e.message}`);
    }
  }
}

const fmt = (x) => (x < 10 ? x.toFixed(2) : x.toFixed(1));
console.log(`names: ${PROCESSES.toLocaleString('en')} processes in ${NETNS.toLocaleString('en')} netns, ${PODS.toLocaleString('en')} pods x 2 containers; median of ${runs} (ms; min-max)`);
console.log('| what | ms | min-max | size |\n|---|---|---|---|');
for (const r of rows) {
  const size = [r.pids !== undefined && `${r.pids.toLocaleString('en')} pids`, r.reads !== undefined && `${r.reads.toLocaleString('en')} reads`, r.dirs !== undefined && `${r.dirs.toLocaleString('en')} dirs`, r.nsPerLookup !== undefined && `${r.nsPerLookup} ns/lookup`].filter(Boolean).join(', ');
  console.log(`| ${r.name} | ${fmt(r.ms)} | ${fmt(r.min)}-${fmt(r.max)} | ${size} |`);
}
const date = new Date().toISOString().slice(0, 10);
const result = { date, kernel: release(), cpu: cpus()[0]?.model, cpus: cpus().length, node: process.version, runs, syntheticOn: existsSync('/dev/shm') ? '/dev/shm (tmpfs)' : tmpdir(), rows };
mkdirSync(new URL('./results/', import.meta.url), { recursive: true });
writeFileSync(new URL(`./results/names-${date}.json`, import.meta.url), `${JSON.stringify(result, null, 2)}\n`);
