// A real Prometheus (Debian's package) scrapes a running `ctstorm serve` every
// 5 s while a storm is generated in a test netns: the shipped alerts stay quiet
// before it, the storm's exact count comes back through Prometheus's HTTP API, the
// storm alert fires, and every PromQL expression the project ships (dashboard
// panels and variables, alert rules, recording rules) returns series there, with
// the windows they ship with ([5m], Grafana's $__rate_interval). This host only:
// one Prometheus, tracepoint or whatever mode the host kernel has. The
// kube-state-metrics alerts are not loaded: there is no kube-state-metrics here.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse as parseYaml } from 'yaml';
import { NetnsPair } from '../live/netns.js';
import { liveSkipReason } from '../live/privileges.js';
import { spawnCaptured, type Spawned } from '../live/spawned.js';
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
/** Prometheus's scrape and rule evaluation interval, and the range queries' step (s). */
const SCRAPE = 5;
const STEP = SCRAPE;
/** Grafana's $__rate_interval: max($__interval + scrape interval, 4 x scrape
 * interval), the data source's scrape interval set to Prometheus's. */
const RATE_INTERVAL = `${Math.max(STEP + SCRAPE, 4 * SCRAPE)}s`;
/** Alerts that must stay quiet on a healthy node whatever its own traffic. */
const QUIET_WHEN_HEALTHY = ['ConntrackStorm', 'CtstormDown', 'CtstormAbsent', 'CtstormFlapping'];

/** A free loopback port (Prometheus takes a fixed listen address). */
async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as { port: number }).port;
  await new Promise((resolve) => server.close(resolve));
  return port;
}


type Series = { metric: Record<string, string>; value?: [number, string]; values?: Array<[number, string]> };
interface Alert {
  labels: Record<string, string>;
  state: 'pending' | 'firing';
}
/** What ctstorm's /api/v1/storms answers (the fields read here). */
interface Storms {
  started: number;
  current: { peakPerSecond: number } | null;
  past: Array<{ peakPerSecond: number }>;
}

/** Every "expr" in the dashboard (panels, annotations), with Grafana's variables
 * given the values a dashboard user would have: every job and instance, the rate
 * interval Grafana would pick, and the query's span as the range. */
function dashboardExprs(rangeSeconds: number): Array<{ where: string; expr: string }> {
  const found: Array<{ where: string; expr: string }> = [];
  const walk = (node: unknown, where: string): void => {
    if (Array.isArray(node)) node.forEach((n, i) => walk(n, `${where}[${i}]`));
    else if (node && typeof node === 'object') {
      const obj = node as Record<string, unknown>;
      const title = typeof obj.title === 'string' ? `${where} "${obj.title}"` : where;
      for (const [k, v] of Object.entries(obj)) {
        if (k === 'expr' && typeof v === 'string') {
          const expr = v
            .replaceAll('$instance', '.*')
            .replaceAll('$job', '.*')
            .replaceAll('$__rate_interval', RATE_INTERVAL)
            .replaceAll('$__range', `${rangeSeconds}s`);
          expect(expr, `${title}: a Grafana variable the test does not give`).not.toContain('$');
          found.push({ where: title, expr });
        } else walk(v, `${title}.${k}`);
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
  let ctstorm: Spawned;
  let prometheus: Spawned;
  let api = '';
  let ctstormApi = '';
  let startedAt = 0;

  async function get<T>(url: string): Promise<T> {
    const res = await fetch(url);
    const body = (await res.json()) as { status?: string; error?: string; data?: T };
    if (body.status !== 'success') throw new Error(`${url}: ${body.error ?? res.status}`);
    return body.data as T;
  }

  const query = async (expr: string): Promise<Series[]> => (await get<{ result: Series[] }>(`${api}/api/v1/query?query=${encodeURIComponent(expr)}`)).result;

  async function queryRange(expr: string, end: number): Promise<Series[]> {
    // Steps counted back from `end`, so the last one is `end` itself (series born
    // in the last scrapes have their two samples there).
    const start = end - Math.floor((end - startedAt) / STEP) * STEP;
    const params = new URLSearchParams({ query: expr, start: String(start), end: String(end), step: String(STEP) });
    return (await get<{ result: Series[] }>(`${api}/api/v1/query_range?${params}`)).result;
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

  const alerts = async (): Promise<Alert[]> => (await get<{ alerts: Alert[] }>(`${api}/api/v1/alerts`)).alerts;

  /** Waits (bounded) until every rule group has been evaluated after `ms` (epoch ms). */
  async function rulesEvaluatedAfter(ms: number): Promise<void> {
    const end = Date.now() + 4 * SCRAPE * 1000;
    for (;;) {
      const { groups } = await get<{ groups: Array<{ name: string; lastEvaluation: string }> }>(`${api}/api/v1/rules`);
      if (groups.length > 0 && groups.every((g) => Date.parse(g.lastEvaluation) > ms)) return;
      if (Date.now() > end) throw new Error(`rules not evaluated since ${new Date(ms).toISOString()}: ${JSON.stringify(groups.map((g) => [g.name, g.lastEvaluation]))}`);
      await new Promise((r) => setTimeout(r, 250));
    }
  }

  /** Waits (bounded) for a scrape of ctstorm after `ms` (epoch ms); returns its time. */
  async function scrapedAfter(ms: number): Promise<number> {
    const end = Date.now() + 4 * SCRAPE * 1000;
    let at = 0;
    while ((at = ((await scalar('timestamp(up{job="ctstorm"})')) ?? 0) * 1000) <= ms) {
      if (Date.now() > end) throw new Error(`no scrape of ctstorm since ${new Date(ms).toISOString()}`);
      await new Promise((r) => setTimeout(r, 250));
    }
    return at;
  }

  const storms = async (): Promise<Storms> => (await (await fetch(`${ctstormApi}/api/v1/storms`)).json()) as Storms;

  beforeAll(async () => {
    pair.up();
    await pair.startServer();
    startedAt = Date.now() / 1000;

    // --max-netns 1000 (the most there is): the test netns keeps its own label
    // however many others the host has.
    ctstorm = spawnCaptured(process.execPath, [cli, 'serve', '--listen', '127.0.0.1:0', '--max-netns', '1000']);
    await until(() => ctstorm.exited() || /serving http:\/\/127\.0\.0\.1:\d+\/metrics\n/.test(ctstorm.output()), 60_000, 'ctstorm serve to listen');
    if (ctstorm.exited()) throw new Error(`ctstorm serve exited: ${ctstorm.output()}`);
    const target = /http:\/\/(127\.0\.0\.1:\d+)\//.exec(ctstorm.output())![1]!;
    ctstormApi = `http://${target}`;

    const port = await freePort();
    api = `http://127.0.0.1:${port}`;
    writeFileSync(
      join(dir, 'prometheus.yml'),
      [
        `global: { scrape_interval: ${SCRAPE}s, evaluation_interval: ${SCRAPE}s }`,
        `rule_files: [${JSON.stringify(alertsFile)}, ${JSON.stringify(recordingFile)}]`,
        'scrape_configs:',
        `  - { job_name: ctstorm, static_configs: [{ targets: [${JSON.stringify(target)}] }] }`,
      ].join('\n'),
    );
    prometheus = spawnCaptured('prometheus', [
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

  it('shows the storm: alerts quiet before it, its exact insert and destroy counts, the storm alert firing, and every shipped expression answering', async () => {
    const inode = pair.serverInode;
    const inserts = `sum(ctstorm_conntrack_inserts_total{job="ctstorm",netns="${inode}"})`;
    const destroys = `sum(ctstorm_conntrack_destroys_total{job="ctstorm",netns="${inode}"})`;

    // Before the storm, on rules evaluated with ctstorm scraped: the storm and
    // ctstorm-health alerts are quiet (not even pending).
    await rulesEvaluatedAfter(Date.now());
    expect((await alerts()).filter((a) => QUIET_WHEN_HEALTHY.includes(a.labels.alertname!))).toEqual([]);
    const stormsBefore = await storms();
    const totalBefore = (await scalar('ctstorm_storms_total')) ?? Number.NaN;

    // The storm: 4000 one-way UDP flows (each its own entry, well over the detector's
    // 1000/s floor) and 100 TCP connections, in the server netns only.
    const udp = await pair.oneway(4000);
    const tcp = await pair.runClient(100, 0);
    expect([new Set(udp).size, new Set(tcp.tcp).size]).toEqual([4000, 100]);
    expect(await settlesAt(inserts, WARMUP + 4100, 30_000)).toBe(WARMUP + 4100);

    // The storm lasts a few seconds, maybe no scrape sees ctstorm_storm_active at 1:
    // the alert fires on ctstorm_storms_total's increase.
    const fired = async (): Promise<boolean> => (await alerts()).some((a) => a.labels.alertname === 'ConntrackStorm' && a.state === 'firing');
    const firedBy = Date.now() + 30_000;
    while (!(await fired()) && Date.now() < firedBy) await new Promise((r) => setTimeout(r, 250));
    expect(await fired()).toBe(true);
    // At least the test's storm (the host may add its own): through Prometheus, and
    // by ctstorm, whose storm record has its peak second.
    expect(await settlesAt('ctstorm_storms_total', totalBefore + 1, 30_000, (v) => (v ?? 0) >= totalBefore + 1)).toBeGreaterThanOrEqual(totalBefore + 1);
    // The storm ends 3 quiet seconds after its last loud one.
    let after = await storms();
    const endedBy = Date.now() + 30_000;
    while (after.current !== null && Date.now() < endedBy) {
      await new Promise((r) => setTimeout(r, 250));
      after = await storms();
    }
    expect(after.current).toBeNull();
    const ours = after.past.slice(0, after.started - stormsBefore.started);
    expect(ours.length).toBeGreaterThanOrEqual(1);
    expect(Math.max(...ours.map((st) => st.peakPerSecond))).toBeGreaterThanOrEqual(1000);

    // Every entry destroyed: lifetimes and destroys counted, exactly.
    pair.flush();
    expect(await settlesAt(destroys, WARMUP + 4100, 30_000)).toBe(WARMUP + 4100);
    // Lifetimes have no netns label: other namespaces' destroys may add to these.
    const lifetimes = await settlesAt('sum(ctstorm_entry_lifetime_seconds_count{job="ctstorm"})', 4100, 30_000, (v) => (v ?? 0) >= 4100);
    expect(lifetimes).toBeGreaterThanOrEqual(4100);
    // One more scrape, so series born with the destroys (the lifetime histogram's,
    // on a quiet host) have two samples for a rate, and the rules evaluated on it.
    await rulesEvaluatedAfter(await scrapedAfter(Date.now()));

    // Each shipped expression over the test's span: an empty answer is a broken panel or rule.
    const end = Date.now() / 1000;
    const empty: string[] = [];
    for (const { where, expr } of dashboardExprs(Math.ceil(end - startedAt))) if ((await queryRange(expr, end)).length === 0) empty.push(`${where}: ${expr}`);
    // Alerts with their comparisons as `bool`: the expression must select series
    // whether or not it fires (ctstorm_storm_active == bool 1 answers 0 or 1).
    // absent(x) answers nothing while ctstorm is scraped: x must answer instead.
    for (const { name, expr } of ruleExprs(alertsFile)) {
      const absent = /^absent\((.*)\)$/.exec(expr);
      if (absent) {
        if ((await query(absent[1]!)).length === 0 || (await query(expr)).length !== 0) empty.push(`alert ${name}: ${expr} (its selector matches nothing here)`);
      } else if ((await queryRange(withBoolComparisons(expr), end)).length === 0) empty.push(`alert ${name}: ${expr}`);
    }
    for (const { name } of ruleExprs(recordingFile)) if ((await queryRange(name, end)).length === 0) empty.push(`recording rule ${name}`);
    // The dashboard's job and instance variables.
    for (const label of ['job', 'instance']) {
      const values = await get<string[]>(`${api}/api/v1/label/${label}/values?match[]=ctstorm_up`);
      if (values.length !== 1) empty.push(`variable ${label}: ${JSON.stringify(values)}`);
    }
    expect(empty).toEqual([]);
  });
});
