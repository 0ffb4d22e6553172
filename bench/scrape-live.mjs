#!/usr/bin/env node
// A scrape of a real `ctstorm serve` at a full table spread over many netns:
// creates N network namespaces, fills them through ctnetlink (`conntrack -R`, UDP
// entries with a 600 s timeout) to `entries` in all, then times GET /metrics and
// GET /api/v1/churn from a client. Root; removes its namespaces on the way out.
//   node bench/scrape-live.mjs [netns=200] [entries=262144]     (npm run build first)
import { execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const NETNS = Number(process.argv[2] ?? 200);
const ENTRIES = Number(process.argv[3] ?? 262144);
const SCRAPES = 20;
const cli = fileURLToPath(new URL('../dist/cli.js', import.meta.url));
const names = Array.from({ length: NETNS }, (_, i) => `ctsbench${i}`);
const dir = mkdtempSync(join(tmpdir(), 'ctstorm-scrape-'));
const sh = (cmd, args) => execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function cleanup() {
  for (const ns of names) {
    try {
      sh('ip', ['netns', 'del', ns]);
    } catch {
      // not made
    }
  }
  rmSync(dir, { recursive: true, force: true });
}

const serve = spawn(process.execPath, [cli, 'serve', '--listen', '127.0.0.1:0'], { stdio: ['ignore', 'ignore', 'pipe'] });
try {
  let err = '';
  serve.stderr.on('data', (d) => (err += d));
  for (let i = 0; i < 600 && !/serving (http:\/\/[\d.:]+)\//.test(err); i++) await sleep(100);
  const base = /serving (http:\/\/[\d.:]+)\//.exec(err)?.[1];
  if (!base) throw new Error(`ctstorm serve did not start: ${err}`);

  // Spread ENTRIES over the namespaces; each entry its own (source, port) tuple.
  const t0 = performance.now();
  for (const [n, ns] of names.entries()) {
    sh('ip', ['netns', 'add', ns]);
    const count = Math.floor(ENTRIES / NETNS) + (n < ENTRIES % NETNS ? 1 : 0);
    const lines = [];
    for (let i = 0; i < count; i++) lines.push(`-I -p udp -s 10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255} -d 10.255.0.1 --sport ${1024 + (i % 60000)} --dport 53 -t 600`);
    writeFileSync(join(dir, 'ct'), lines.join('\n') + '\n');
    sh('ip', ['netns', 'exec', ns, 'conntrack', '-R', join(dir, 'ct')]);
  }
  const fillSeconds = (performance.now() - t0) / 1000;

  const metric = (text, name) => Number(/^(\S+) (\S+)$/m.exec(text.split('\n').filter((l) => l.startsWith(name)).join('\n'))?.[2]);
  // Bounded: ctstorm has drained every insert (its counters are exact; the ring catches up).
  let text = '';
  for (let i = 0; i < 600; i++) {
    text = await (await fetch(`${base}/metrics`)).text();
    if (metric(text, 'ctstorm_records_drained_total') >= ENTRIES) break;
    await sleep(100);
  }

  const time = async (path) => {
    const ms = [];
    let bytes = 0;
    for (let i = 0; i < SCRAPES; i++) {
      const s = performance.now();
      bytes = (await (await fetch(`${base}${path}`)).arrayBuffer()).byteLength;
      ms.push(performance.now() - s);
      await sleep(50);
    }
    ms.sort((a, b) => a - b);
    return { median: ms[SCRAPES >> 1].toFixed(1), max: ms[SCRAPES - 1].toFixed(1), bytes };
  };
  const metrics = await time('/metrics');
  const churn = await time('/api/v1/churn');
  const series = text.split('\n').filter((l) => l && !l.startsWith('#')).length;
  const rss = Number(/VmRSS:\s+(\d+)/.exec(sh('cat', [`/proc/${serve.pid}/status`]))?.[1] ?? 0) / 1024;
  console.log(`filled ${ENTRIES} entries in ${NETNS} netns in ${fillSeconds.toFixed(1)} s; ctstorm drained ${metric(text, 'ctstorm_records_drained_total')}`);
  console.log(`/metrics: ${metrics.bytes} bytes, ${series} series, median ${metrics.median} ms, max ${metrics.max} ms over ${SCRAPES} scrapes`);
  console.log(`/api/v1/churn: ${churn.bytes} bytes, median ${churn.median} ms, max ${churn.max} ms`);
  console.log(`ctstorm serve RSS ${rss.toFixed(0)} MiB`);
} finally {
  serve.kill('SIGTERM');
  cleanup();
}
