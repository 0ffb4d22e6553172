#!/usr/bin/env node
// Storm benchmark: an hping3 UDP flood with random sources from one namespace
// into another fills the conntrack table; ctstorm's monitor drains the records
// into the engine. Prints records/s drained, records lost, the monitor's CPU (and
// per 100k records/s) and a census of the full table, for the default ring and a
// deliberately tiny one, and checks that kernel counts are exact:
// inserts + destroys = records drained + records lost.
//   node bench/storm.mjs [seconds=5] [mode=auto]      (root; npm run build first)
import { execFileSync, spawn } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { release } from 'node:os';
import { Monitor, totals } from '../dist/index.js';

const seconds = Number(process.argv[2] ?? 5);
const mode = process.argv[3] ?? 'auto';
const tag = `bst${process.pid % 10000}`;
const [client, server] = [`${tag}-c`, `${tag}-s`];
const serverAddr = '198.19.7.2';

const sh = (...args) => execFileSync(args[0], args.slice(1), { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
const inNs = (ns, ...args) => sh('ip', 'netns', 'exec', ns, ...args);

function up() {
  down();
  sh('ip', 'netns', 'add', client);
  sh('ip', 'netns', 'add', server);
  sh('ip', 'link', 'add', `${tag}c`, 'netns', client, 'type', 'veth', 'peer', 'name', `${tag}s`, 'netns', server);
  inNs(client, 'ip', 'addr', 'add', '198.19.7.1/24', 'dev', `${tag}c`);
  inNs(server, 'ip', 'addr', 'add', `${serverAddr}/24`, 'dev', `${tag}s`);
  for (const [ns, dev] of [[client, `${tag}c`], [server, `${tag}s`]]) inNs(ns, 'ip', 'link', 'set', dev, 'up');
  inNs(server, 'nft', 'add table ip b; add chain ip b in { type filter hook input priority 0; }; add rule ip b in ct state new accept');
}

function down() {
  for (const ns of [client, server]) {
    try { sh('ip', 'netns', 'del', ns); } catch { /* not there */ }
  }
}

async function run(ringBytes) {
  inNs(server, 'conntrack', '-F');
  // The one drain loop: the monitor drains into the engine, as `ctstorm watch` does.
  const monitor = new Monitor({ mode, ringBytes, censusIntervalSeconds: 0 });
  let drained = 0;
  let batches = 0;
  monitor.onBatch((b) => {
    drained += b.count;
    batches++;
  });
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  const flood = spawn('ip', ['netns', 'exec', client, 'hping3', '--udp', '--flood', '--rand-source', '-q', '-p', '53', serverAddr], { stdio: 'ignore' });
  await new Promise((r) => setTimeout(r, seconds * 1000));
  flood.kill('SIGKILL');
  await new Promise((r) => flood.once('exit', r));
  await monitor.settle(); // what the kernel wrote is drained
  const wall = (performance.now() - t0) / 1000;
  const cpu = process.cpuUsage(cpu0);
  const view = monitor.view();
  const sum = totals(view.counters);
  // The whole table, just filled by the flood.
  const census = await monitor.census();
  await monitor.close();
  const cpuSeconds = (cpu.user + cpu.system) / 1e6;
  const recordsPerSecond = drained / wall;
  return {
    mode: view.mode,
    ringBytes,
    seconds: Number(wall.toFixed(2)),
    inserts: sum.inserts,
    destroys: sum.destroys,
    recordsDrained: drained,
    recordsLost: sum.lost,
    exact: sum.inserts + sum.destroys === drained + sum.lost,
    recordsPerSecond: Math.round(recordsPerSecond),
    batches,
    recordsPerBatch: Math.round(drained / Math.max(1, batches)),
    cpuPercent: Number(((100 * cpuSeconds) / wall).toFixed(1)),
    // System time is kernel work in ctstorm's context: the ring's wakeups and, in
    // tracepoint mode, the sweep (BPF_PROG_TEST_RUN every 10 ms); user time is the
    // addon's copy and the engine.
    userPercent: Number(((100 * cpu.user) / 1e6 / wall).toFixed(1)),
    systemPercent: Number(((100 * cpu.system) / 1e6 / wall).toFixed(1)),
    cpuPercentPer100k: recordsPerSecond > 0 ? Number(((100 * cpuSeconds) / wall / (recordsPerSecond / 1e5)).toFixed(1)) : null,
    nsPerRecord: drained ? Math.round((cpuSeconds * 1e9) / drained) : 0,
    censusEntries: census?.entries ?? null,
    censusMs: census ? Math.round(census.seconds * 1000) : null,
  };
}

if (process.getuid() !== 0) {
  console.error('bench/storm.mjs: needs root (BPF, namespaces); run it with sudo');
  process.exit(1);
}
up();
try {
  const results = [await run(16 << 20), await run(64 << 10)];
  console.log(`kernel ${release()}, flood ${seconds} s per run`);
  console.table(results);
  mkdirSync('bench/results', { recursive: true });
  writeFileSync('bench/results/storm.json', JSON.stringify({ kernel: release(), date: new Date().toISOString(), results }, null, 2));
  if (!results.every((r) => r.exact)) {
    console.error('counts are not exact: inserts + destroys != drained + lost');
    process.exitCode = 1;
  }
} finally {
  down();
}
