#!/usr/bin/env node
// The cost of keeping names current on a busy Kubernetes node: 10,000 processes
// in 1,000 network namespaces, 1,000 pods with 2 containers each. Builds a
// synthetic /proc (ns/net link, comm, cgroup per pid, as the kernel shows them)
// and a cgroup tree of the same pods (kubelet systemd driver, containerd scopes,
// cgroup v2 control files in each directory) on tmpfs, then times
//   NetnsNames.refresh(): first (every pid new), again with nothing changed,
//     and after 1 % of the processes were replaced, each with the longest the
//     event loop was held meanwhile (it reads asynchronously: its time is wall
//     time, not time the loop was blocked); its clock moves on a minute before
//     each later run, so only that run's new processes are young;
//   CgroupIndex: the first walk, a re-walk, a lookup that hits, and a miss
//     inside the rate limit (what each record of a storm of unknown ids costs);
// beside the same on this machine's real /proc and cgroup2 mount, the longest
// block of an idle event loop (this machine's floor for that figure), and (root, a
// cgroup2 mount, no --no-kernfs) the same cgroup tree made as real cgroups,
// since kernfs is not tmpfs. Median of `runs` runs each; prints a table and
// writes bench/results/names-<date>.json. No root needed but for the kernfs row.
//   npm run build && node bench/names.mjs [runs=7] [--no-kernfs]
import { closeSync, existsSync, mkdirSync, mkdtempSync, openSync, readdirSync, readFileSync, rmdirSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { cpus, release, tmpdir } from 'node:os';
import { join } from 'node:path';
import { monitorEventLoopDelay } from 'node:perf_hooks';
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
/** CPU ms the main thread has used: its utime + stime, in USER_HZ (100) ticks. */
function mainThreadCpuMs() {
  const fields = readFileSync(`/proc/self/task/${process.pid}/stat`, 'utf8').split(') ')[1].split(' ');
  return (Number(fields[11]) + Number(fields[12])) * 10;
}
/** Median, min and max ms of `runs` runs of `setup` (untimed) then `fn` (awaited);
 * the median main thread CPU ms of a run; the longest the event loop was held (the
 * longest gap between a 1 ms timer's ticks: 1 ms at least) in the worst run and in
 * the best: on a busy machine a run's longest also counts time its thread waited
 * for a CPU, and a stretch of the code's own is there in every run. */
async function measure(runsOf, setup, fn) {
  const ms = [];
  const cpu = [];
  const blocks = [];
  for (let r = 0; r < runsOf; r++) {
    const state = setup();
    const delay = monitorEventLoopDelay({ resolution: 1 });
    delay.enable();
    await new Promise((resolve) => setTimeout(resolve, 3)); // its first tick only starts its clock
    const cpu0 = mainThreadCpuMs();
    const t = performance.now();
    await fn(state);
    ms.push(performance.now() - t);
    cpu.push(mainThreadCpuMs() - cpu0);
    await new Promise((resolve) => setTimeout(resolve, 2)); // the tick after a synchronous fn measures its block
    delay.disable();
    blocks.push(delay.max / 1e6);
  }
  return { ms: median(ms), min: Math.min(...ms), max: Math.max(...ms), cpuMs: median(cpu), blockMs: Math.max(...blocks), blockBestMs: Math.min(...blocks) };
}

const rows = [];
const row = (name, m, extra) => rows.push({ name, ...m, ...extra });

/** A clock moved on by hand, a minute at a time: past NetnsNames's young age, so a
 * refresh reads only the processes new since the last one (and the rotating
 * twelfth of the rest). */
function minutes() {
  let now = 0;
  return { now: () => now, advance: () => (now += 60_000) };
}

async function benchNetnsNames(label, proc, pids, replace) {
  row(`${label}: readdir of the /proc dir alone (a refresh's floor)`, await measure(runs, () => 0, () => readdirSync(proc)), { pids });
  const first = await measure(runs, () => new NetnsNames(proc), (n) => n.refresh());
  const clock = minutes();
  const names = new NetnsNames(proc, clock.now);
  await names.refresh();
  row(`${label}: NetnsNames first refresh (all new)`, first, { pids, reads: names.lastReads });
  const reads = [];
  const refresh = async (n) => {
    await n.refresh();
    reads.push(n.lastReads);
  };
  row(`${label}: NetnsNames refresh, nothing changed`, await measure(runs, () => (clock.advance(), names), refresh), { pids, reads: median(reads.splice(0)) });
  if (!replace) return names;
  row(`${label}: NetnsNames refresh, 1 % replaced`, await measure(runs, () => (replace(), clock.advance(), names), refresh), { pids, reads: median(reads.splice(0)) });
  return names;
}

async function benchCgroupIndex(label, mount, expect) {
  const first = await measure(runs, () => new CgroupIndex({ mount }), (i) => i.refresh());
  const index = new CgroupIndex({ mount });
  index.refresh();
  const dirs = index.lastWalk.dirs;
  row(`${label}: CgroupIndex first walk`, first, { dirs });
  row(`${label}: CgroupIndex re-walk`, await measure(runs, () => index, (i) => i.refresh()), { dirs });
  let wrong = 0;
  for (const [id, path] of expect(index)) if (index.pathOf(id) !== path) wrong++;
  if (wrong) throw new Error(`${label}: ${wrong} cgroup ids not mapped to their paths`);
  const ids = [...expect(index).keys()];
  const LOOKUPS = 1_000_000;
  const hit = await measure(runs, () => 0, () => { for (let k = 0; k < LOOKUPS; k++) index.pathOf(ids[k % ids.length]); });
  row(`${label}: pathOf hit, per 1M lookups`, hit, { nsPerLookup: Math.round((hit.ms * 1e6) / LOOKUPS) });
  const limited = new CgroupIndex({ mount, minRefreshMs: 1e12 });
  limited.refresh();
  const miss = await measure(runs, () => 0, () => { for (let k = 0; k < LOOKUPS; k++) limited.pathOf(2 ** 52 + k); });
  row(`${label}: pathOf miss inside the rate limit, per 1M`, miss, { nsPerLookup: Math.round((miss.ms * 1e6) / LOOKUPS) });
}

const base = mkdtempSync(join(existsSync('/dev/shm') ? '/dev/shm' : tmpdir(), 'ctstorm-names-'));
const realMount = cgroup2MountOf(readFileSync('/proc/self/mountinfo', 'utf8'));
const kernfsRoot = realMount && withKernfs && process.getuid?.() === 0 ? join(realMount, `ctstorm-bench-${process.pid}`) : undefined;
let kernfsDirs = [];
try {
  // What "longest block" reads on this machine when nothing runs (a thread waiting for a CPU, timer slack).
  row('idle event loop for 1 s (the longest block\'s floor)', await measure(3, () => 0, () => new Promise((resolve) => setTimeout(resolve, 1000))), {});
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
  const names = await benchNetnsNames('synthetic', proc, PROCESSES, replaceOnePercent);
  const podNetns = names.nameOf(4026532000 + 5);
  if (podNetns?.pods.length !== 1 || podNetns.containers.length !== 2) throw new Error(`synthetic: pod 5's netns is misnamed: ${JSON.stringify(podNetns)}`);
  const realPids = readdirSync('/proc').filter((d) => /^\d+$/.test(d)).length;
  await benchNetnsNames('this host', '/proc', realPids);

  // Cgroup trees: tmpfs with cgroupfs's files, this host's cgroup2, the tree as real cgroups.
  const expectIn = (root, dirs) => () => new Map(dirs.map((d) => [statSync(join(root, d)).ino, d === '' ? '/' : d]));
  const tree = join(base, 'cgroup');
  const dirs = makeCgroupTree(tree, true);
  await benchCgroupIndex('synthetic (tmpfs)', tree, expectIn(tree, dirs));
  if (realMount) await benchCgroupIndex(`this host (${realMount})`, realMount, () => new Map([[statSync(realMount).ino, '/']]));
  if (kernfsRoot) {
    kernfsDirs = makeCgroupTree(kernfsRoot, false);
    const expectKernfs = () => new Map(kernfsDirs.map((d) => [statSync(join(kernfsRoot, d)).ino, `/ctstorm-bench-${process.pid}${d}`]));
    await benchCgroupIndex('synthetic (real cgroups)', realMount, expectKernfs);
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
console.log(`names: ${PROCESSES.toLocaleString('en')} processes in ${NETNS.toLocaleString('en')} netns, ${PODS.toLocaleString('en')} pods x 2 containers; median of ${runs} (ms; min-max; main thread CPU ms, 10 ms ticks; longest event loop block, ms, in the worst run and the best)`);
console.log('| what | ms | min-max | main thread CPU | longest block (worst/best run) | size |\n|---|---|---|---|---|---|');
for (const r of rows) {
  const size = [r.pids !== undefined && `${r.pids.toLocaleString('en')} pids`, r.reads !== undefined && `${r.reads.toLocaleString('en')} reads`, r.dirs !== undefined && `${r.dirs.toLocaleString('en')} dirs`, r.nsPerLookup !== undefined && `${r.nsPerLookup} ns/lookup`].filter(Boolean).join(', ');
  console.log(`| ${r.name} | ${fmt(r.ms)} | ${fmt(r.min)}-${fmt(r.max)} | ${r.cpuMs} | ${fmt(r.blockMs)}/${fmt(r.blockBestMs)} | ${size} |`);
}
const date = new Date().toISOString().slice(0, 10);
const result = { date, kernel: release(), cpu: cpus()[0]?.model, cpus: cpus().length, node: process.version, runs, syntheticOn: existsSync('/dev/shm') ? '/dev/shm (tmpfs)' : tmpdir(), rows };
mkdirSync(new URL('./results/', import.meta.url), { recursive: true });
writeFileSync(new URL(`./results/names-${date}.json`, import.meta.url), `${JSON.stringify(result, null, 2)}\n`);
