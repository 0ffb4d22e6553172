// A real Prometheus (Debian's package) scrapes a running `ctstorm serve` while a
// storm is generated in a test netns: the storm's exact count comes back through
// Prometheus's HTTP API, the storm alert fires, and every PromQL expression the
// project ships (dashboard panels and variables, alert rules, recording rules)
// returns series there. This host only: one Prometheus, tracepoint or whatever
// mode the host kernel has.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse as parseYaml } from 'yaml';
import { NetnsPair } from '../live/netns.js';
import { liveSkipReason } from '../live/privileges.js';
import { until } from '../live/wait.js';
import { withBoolComparisons } from './promql.js';

const root = (p: string): string => fileURLToPath(new URL(`../../${p}`, import.meta.url));
const cli = root('dist/cli.js');
const alertsFile = root('deploy/prometheus/ctstorm-alerts.yml');
const recordingFile = root('deploy/prometheus/ctstorm-recording.yml');
const dashboardFile = root('deploy/grafana/ctstorm.json');
const skip = liveSkipReason();
/** TCP connections made before the storm, counted with it. */
const WARMUP = 5;

/** A free loopback port (Prometheus takes a fixed listen address). */
async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as { port: number }).port;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

interface Proc {
  proc: ChildProcess;
  output: () => string;
  exited: () => boolean;
}

function run(cmd: string, args: string[]): Proc {
  const proc = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  let exited = false;
  proc.stdout!.on('data', (d: Buffer) => (output += d.toString()));
  proc.stderr!.on('data', (d: Buffer) => (output += d.toString()));
  proc.on('exit', () => (exited = true));
  return { proc, output: () => output, exited: () => exited };
}

type Series = { metric: Record<string, string>; value?: [number, string]; values?: Array<[number, string]> };

/** Every "expr" in the dashboard (panels, annotations), with Grafana's variables
 * given the values a dashboard user would have: all instances, a 1m rate window. */
function dashboardExprs(): Array<{ where: string; expr: string }> {
  const found: Array<{ where: string; expr: string }> = [];
  const walk = (node: unknown, where: string): void => {
    if (Array.isArray(node)) node.forEach((n, i) => walk(n, `${where}[${i}]`));
    else if (node && typeof node === 'object') {
      const obj = node as Record<string, unknown>;
      const title = typeof obj.title === 'string' ? `${where} "${obj.title}"` : where;
      for (const [k, v] of Object.entries(obj)) {
        if (k === 'expr' && typeof v === 'string') found.push({ where: title, expr: v.replaceAll('$instance', '.*').replaceAll('$__rate_interval', '1m') });
        else walk(v, `${title}.${k}`);
      }
    }
  };
  walk(JSON.parse(readFileSync(dashboardFile, 'utf8')), 'dashboard');
  return found;
}

function ruleExprs(file: string): Array<{ name: string; expr: string }> {
  const doc = parseYaml(readFileSync(file, 'utf8')) as { groups: Array<{ rules: Array<{ alert?: string; record?: string; expr: string }> }> };
  return doc.groups.flatMap((g) => g.rules.map((r) => ({ name: r.alert ?? r.record ?? '?', expr: r.expr })));
}

describe.skipIf(skip !== undefined)('a real Prometheus scraping ctstorm serve', () => {
  const pair = new NetnsPair('prom');
  const dir = mkdtempSync(join(tmpdir(), 'ctstorm-prom-'));
  let ctstorm: Proc;
  let prometheus: Proc;
  let api = '';
  let startedAt = 0;

  async function query(expr: string): Promise<Series[]> {
    const res = await fetch(`${api}/api/v1/query?query=${encodeURIComponent(expr)}`);
    const body = (await res.json()) as { status: string; error?: string; data: { result: Series[] } };
    if (body.status !== 'success') throw new Error(`Prometheus refused ${expr}: ${body.error}`);
    return body.data.result;
  }

  async function queryRange(expr: string): Promise<Series[]> {
    const end = Date.now() / 1000;
    const params = new URLSearchParams({ query: expr, start: String(startedAt), end: String(end), step: '1' });
    const res = await fetch(`${api}/api/v1/query_range?${params}`);
    const body = (await res.json()) as { status: string; error?: string; data: { result: Series[] } };
    if (body.status !== 'success') throw new Error(`Prometheus refused ${expr}: ${body.error}`);
    return body.data.result;
  }

  /** The newest value of a one-series query, or undefined while it has none. */
  async function scalar(expr: string): Promise<number | undefined> {
    const result = await query(expr);
    return result.length === 1 ? Number(result[0]!.value![1]) : undefined;
  }

  /** Polls (bounded) until Prometheus's answer for expr equals want (or passes
   * `done`); returns the last answer. */
  async function settlesAt(expr: string, want: number, ms: number, done = (v: number | undefined) => v === want): Promise<number | undefined> {
    const end = Date.now() + ms;
    let got = await scalar(expr);
    while (!done(got) && Date.now() < end) {
      await new Promise((r) => setTimeout(r, 250));
      got = await scalar(expr);
    }
    return got;
  }

  beforeAll(async () => {
    pair.up();
    await pair.startServer();
    startedAt = Date.now() / 1000;

    ctstorm = run(process.execPath, [cli, 'serve', '--listen', '127.0.0.1:0']);
    await until(() => ctstorm.exited() || /serving http:\/\/127\.0\.0\.1:\d+\/metrics\n/.test(ctstorm.output()), 60_000, 'ctstorm serve to listen');
    if (ctstorm.exited()) throw new Error(`ctstorm serve exited: ${ctstorm.output()}`);
    const target = /http:\/\/(127\.0\.0\.1:\d+)\//.exec(ctstorm.output())![1]!;

    const port = await freePort();
    api = `http://127.0.0.1:${port}`;
    writeFileSync(
      join(dir, 'prometheus.yml'),
      [
        'global: { scrape_interval: 1s, evaluation_interval: 1s }',
        `rule_files: [${JSON.stringify(alertsFile)}, ${JSON.stringify(recordingFile)}]`,
        'scrape_configs:',
        `  - { job_name: ctstorm, static_configs: [{ targets: [${JSON.stringify(target)}] }] }`,
      ].join('\n'),
    );
    prometheus = run('prometheus', [
      `--config.file=${join(dir, 'prometheus.yml')}`,
      `--storage.tsdb.path=${join(dir, 'data')}`,
      `--web.listen-address=127.0.0.1:${port}`,
    ]);
    // A few flows first: the census (per-netns fill) starts once an insert has shown
    // ctstorm where the table is.
    await pair.runClient(WARMUP, 0);
    const ready = async (): Promise<boolean> => {
      try {
        return (await scalar('up{job="ctstorm"}')) === 1 && (await scalar('ctstorm_conntrack_fill_ratio')) !== undefined;
      } catch {
        return false;
      }
    };
    // Bounded: Prometheus up, ctstorm scraped, and its first census done (fill known).
    const end = Date.now() + 60_000;
    while (!(await ready())) {
      if (prometheus.exited()) throw new Error(`prometheus exited: ${prometheus.output()}`);
      if (Date.now() > end) throw new Error(`Prometheus did not scrape ctstorm with a census in 60 s: ${prometheus.output().slice(-2000)}`);
      await new Promise((r) => setTimeout(r, 250));
    }
  }, 120_000);

  afterAll(async () => {
    for (const p of [prometheus, ctstorm]) {
      if (p && !p.exited()) {
        p.proc.kill('SIGTERM');
        await until(() => p.exited(), 15_000, `${p.proc.spawnfile} to exit`).catch(() => p.proc.kill('SIGKILL'));
      }
    }
    pair.down();
    rmSync(dir, { recursive: true, force: true });
  });

  it('shows the storm: its exact insert and destroy counts, the storm alert firing, and every shipped expression answering', async () => {
    const inode = pair.serverInode;
    const inserts = `sum(ctstorm_conntrack_inserts_total{job="ctstorm",netns="${inode}"})`;
    const destroys = `sum(ctstorm_conntrack_destroys_total{job="ctstorm",netns="${inode}"})`;

    // The storm: 4000 one-way UDP flows (each its own entry, well over the detector's
    // 1000/s floor) and 100 TCP connections, in the server netns only.
    const udp = await pair.oneway(4000);
    const tcp = await pair.runClient(100, 0);
    expect([new Set(udp).size, new Set(tcp.tcp).size]).toEqual([4000, 100]);
    expect(await settlesAt(inserts, WARMUP + 4100, 30_000)).toBe(WARMUP + 4100);

    // The storm ends 3 quiet seconds after its last loud one; the alert has no `for`.
    expect(await settlesAt('max(max_over_time(ALERTS{alertname="ConntrackStorm",alertstate="firing"}[10m]))', 1, 30_000)).toBe(1);
    expect(await settlesAt('ctstorm_storms_total', 1, 30_000)).toBe(1);

    // Every entry destroyed: lifetimes and destroys counted, exactly.
    pair.flush();
    expect(await settlesAt(destroys, WARMUP + 4100, 30_000)).toBe(WARMUP + 4100);
    // Lifetimes have no netns label: other namespaces' destroys may add to these.
    const lifetimes = await settlesAt('sum(ctstorm_entry_lifetime_seconds_count{job="ctstorm"})', 4100, 30_000, (v) => (v ?? 0) >= 4100);
    expect(lifetimes).toBeGreaterThanOrEqual(4100);
    // Recording rules run every second: give them two evaluations past the last scrape.
    await new Promise((r) => setTimeout(r, 2500));

    // Each shipped expression over the test's span: an empty answer is a broken panel or rule.
    const empty: string[] = [];
    for (const { where, expr } of dashboardExprs()) if ((await queryRange(expr)).length === 0) empty.push(`${where}: ${expr}`);
    // Alerts with their comparisons as `bool`: the expression must select series
    // whether or not it fires (ctstorm_storm_active == bool 1 answers 0 or 1).
    for (const { name, expr } of ruleExprs(alertsFile)) if ((await queryRange(withBoolComparisons(expr))).length === 0) empty.push(`alert ${name}: ${expr}`);
    for (const { name } of ruleExprs(recordingFile)) if ((await queryRange(name)).length === 0) empty.push(`recording rule ${name}`);
    // The dashboard's instance variable.
    const instances = (await (await fetch(`${api}/api/v1/label/instance/values?match[]=ctstorm_up`)).json()) as { data: string[] };
    if (instances.data.length !== 1) empty.push(`variable instance: ${JSON.stringify(instances.data)}`);
    expect(empty).toEqual([]);

    // The storm's own account, by Prometheus: its peak went past the floor.
    const peak = await queryRange('max_over_time(ctstorm_conntrack_inserts_per_second{window="1s"}[10m])');
    expect(Math.max(...peak[0]!.values!.map(([, v]) => Number(v)))).toBeGreaterThanOrEqual(1000);
  });
});
