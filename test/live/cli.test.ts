// The `ctstorm` command as an operator runs it: a real process, real traffic,
// and no BPF program left behind however it ends.
import { execFileSync, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { connect } from 'node:net';
import { fileURLToPath } from 'node:url';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { ModeChoice } from '../../src/index.js';
import { NetnsPair } from './netns.js';
import { testModes } from './modes.js';
import { liveSkipReason } from './privileges.js';
import { spawnCaptured, type Spawned } from './spawned.js';
import { until } from './wait.js';
import { loadedPrograms } from './programs.js';

const cli = fileURLToPath(new URL('../../dist/cli.js', import.meta.url));
const embedExample = fileURLToPath(new URL('../../examples/embed.mjs', import.meta.url));
const skip = liveSkipReason();
/** Attachments a process holds: BPF link fds, or perf event fds (kprobes on kernels
 * before 5.15 attach through a perf event, without a link). */
function attachFds(pid: number): number {
  let n = 0;
  for (const fd of readdirSync(`/proc/${pid}/fdinfo`)) {
    try {
      if (readlinkSync(`/proc/${pid}/fd/${fd}`) === 'anon_inode:[perf_event]') n++;
      else if (readFileSync(`/proc/${pid}/fdinfo/${fd}`, 'utf8').includes('link_type:')) n++;
    } catch {
      // fd closed meanwhile
    }
  }
  return n;
}

/** Every ctstorm process a test started, killed after it whatever happened. */
const started = new Set<ChildProcess>();
afterEach(() => {
  for (const proc of started) if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGKILL');
  started.clear();
});

function start(args: string[]): Spawned {
  const run = spawnCaptured(process.execPath, [cli, ...args]);
  started.add(run.proc);
  return run;
}

/** Waits for the line ctstorm writes on stderr once it counts, and checks that
 * the probe is attached by then. */
async function attached(proc: ChildProcess, exit: Promise<number | null>, err: () => string): Promise<void> {
  let exited = false;
  void exit.then(() => (exited = true));
  await until(() => exited || /^ctstorm: attached in \w+ mode, counting\n/.test(err()), 60_000, 'ctstorm to say it is attached');
  if (exited) throw new Error(`ctstorm exited before attaching: ${err()}`);
  expect(attachFds(proc.pid!)).toBeGreaterThanOrEqual(2);
}

describe.skipIf(skip !== undefined)('ctstorm CLI, live', () => {
  const pair = new NetnsPair('cli');
  beforeAll(async () => {
    pair.up();
    await pair.startServer();
  });
  afterAll(() => pair.down());

  // Once, in the default mode: watch reads the same source as snapshot, which runs in
  // every mode below (a Node.js start costs seconds in the TCG guest).
  it('watch draws frames with the churn and detaches on Ctrl-C', async () => {
    const run = start(['watch']);
    await attached(run.proc, run.exit, run.err);
    await pair.runClient(5, 0);
    await until(() => run.out().includes('inserts/s'), 30_000, 'a frame');
    run.proc.kill('SIGINT');
    expect(await run.exit).toBe(0);
    expect(run.out()).toMatch(/table\s+\d/);
    await until(() => loadedPrograms().length === 0, 10_000, 'programs to be unloaded');
  });

  // Once, in the default mode, like watch: the exporter renders the same view.
  it('serve: /metrics counts exactly the connections made, promtool finds it clean, the API and the stream answer', async () => {
    await pair.empty();
    const run = start(['serve', '--listen', '127.0.0.1:0', '--max-netns', '1000']);
    let exited = false;
    void run.exit.then(() => (exited = true));
    await until(() => exited || /serving http:\/\/127\.0\.0\.1:\d+\/metrics\n/.test(run.err()), 60_000, 'ctstorm serve to listen');
    if (exited) throw new Error(`ctstorm serve exited: ${run.err()}`);
    const base = /(http:\/\/127\.0\.0\.1:\d+)\//.exec(run.err())![1]!;
    const get = async (path: string, init?: RequestInit) => fetch(`${base}${path}`, init);
    const metric = async (protocol: string): Promise<number> => {
      const text = await (await get('/metrics')).text();
      const line = text.split('\n').find((l) => l.startsWith(`ctstorm_conntrack_inserts_total{netns="${pair.serverInode}",protocol="${protocol}"}`));
      return line ? Number(line.split(' ').pop()) : 0;
    };

    await pair.runClient(9, 4);
    let tcp = 0;
    let udp = 0;
    // Polled (bounded, 30 s): the counters reach exactly 9 and 4 and stay there.
    for (let i = 0; i < 300 && (tcp !== 9 || udp !== 4); i++) {
      [tcp, udp] = [await metric('tcp'), await metric('udp')];
      if (tcp !== 9 || udp !== 4) await new Promise((r) => setTimeout(r, 100));
    }
    expect({ tcp, udp }).toEqual({ tcp: 9, udp: 4 });

    const metrics = await (await get('/metrics')).text();
    const check = spawnSync('promtool', ['check', 'metrics'], { input: metrics, encoding: 'utf8' });
    expect([check.error?.message, check.status, check.stdout + check.stderr]).toEqual([undefined, 0, '']);

    const churn = (await (await get('/api/v1/churn')).json()) as { version: number; netns: Array<{ inode: number; inserts: number }> };
    expect(churn.version).toBe(1);
    expect(churn.netns.find((n) => n.inode === pair.serverInode)).toMatchObject({ inserts: 13 });
    expect((await get('/api/v1/storms')).status).toBe(200);
    expect(await (await get('/healthz')).text()).toBe('ok\n');
    expect((await get('/nope')).status).toBe(404);
    expect((await get('/metrics', { method: 'POST' })).status).toBe(405);

    // The stream: a frame at once, then one a second.
    const stream = await get('/api/v1/stream');
    expect(stream.headers.get('content-type')).toBe('text/event-stream');
    const reader = stream.body!.getReader();
    let text = '';
    const decoder = new TextDecoder();
    const deadline = Date.now() + 30_000;
    while ((text.match(/^event: churn$/gm) ?? []).length < 2 && Date.now() < deadline) {
      const { value, done } = await reader.read();
      if (done) break;
      text += decoder.decode(value);
    }
    await reader.cancel();
    expect((text.match(/^event: churn$/gm) ?? []).length).toBeGreaterThanOrEqual(2);

    // A client that never finishes its request must not hold the shutdown.
    const half = connect(Number(new URL(base).port), '127.0.0.1');
    half.on('error', () => undefined);
    await new Promise<void>((resolve) => half.once('connect', () => resolve()));
    half.write('GET /metrics HTTP/1.1\r\nHost: x\r\n');
    run.proc.kill('SIGINT');
    await until(() => exited, 15_000, 'serve to exit with a half-sent request open');
    half.destroy();
    expect(await run.exit).toBe(0);
    await until(() => loadedPrograms().length === 0, 10_000, 'programs to be unloaded');
  });

  it('examples/embed.mjs: the app\'s own metrics and ctstorm\'s on one /metrics, nothing left attached', async () => {
    await pair.empty();
    const proc = spawn(process.execPath, [embedExample, '0'], { stdio: ['ignore', 'pipe', 'pipe'] });
    started.add(proc);
    let out = '';
    proc.stdout!.on('data', (d: Buffer) => (out += d.toString()));
    const exit = new Promise<number | null>((resolve) => proc.on('exit', (code) => resolve(code)));
    await until(() => /listening on \d+/.test(out) || proc.exitCode !== null, 60_000, 'the example to listen');
    const port = /listening on (\d+)/.exec(out)![1];
    await pair.runClient(3, 0);
    let text = '';
    const want = `ctstorm_conntrack_inserts_total{netns="${pair.serverInode}",protocol="tcp"} 3`;
    for (let i = 0; i < 300 && !text.includes(want); i++) {
      text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
      if (!text.includes(want)) await new Promise((r) => setTimeout(r, 100));
    }
    expect(text).toContain('process_cpu_user_seconds_total'); // the app's
    expect(text).toContain(want); // ctstorm's, exact
    proc.kill('SIGINT');
    expect(await exit).toBe(0);
    await until(() => loadedPrograms().length === 0, 10_000, 'programs to be unloaded');
  });

  describe.each(testModes())('in %s mode', (mode) => {
    const modeArgs = (): string[] => ['--mode', mode];
    beforeEach(() => pair.empty());

    it('snapshot --json counts exactly the connections made while it ran, then detaches', async () => {
      const run = start(['snapshot', '--duration', '600', '--json', ...modeArgs()]);
      await attached(run.proc, run.exit, run.err);
      await pair.runClient(12, 7);
      pair.flush();
      await until(() => pair.count() === 0, 10_000, 'the flush');
      run.proc.kill('SIGINT'); // ends the snapshot early; it still prints its JSON
      expect(await run.exit).toBe(0);
      expect(run.err()).toMatch(/^ctstorm: attached in (fentry|kprobe|tracepoint) mode, counting\n$/);
      const snap = JSON.parse(run.out());
      if (mode !== 'auto') expect(snap.mode).toBe(mode);
      const ns = snap.netns.find((n: { inode: number }) => n.inode === pair.serverInode);
      expect(ns).toMatchObject({ inserts: 19, destroys: 19, lost: 0 });
      expect(ns.protocols).toEqual([
        { proto: 'tcp', inserts: 12, destroys: 12, lost: 0 },
        { proto: 'udp', inserts: 7, destroys: 7, lost: 0 },
      ]);
      await until(() => loadedPrograms().length === 0, 10_000, 'programs to be unloaded');
    });

    it('leaves nothing attached when killed with SIGKILL', async () => {
      const run = start(['snapshot', '--duration', '600', '--json', ...modeArgs()]);
      await attached(run.proc, run.exit, run.err);
      expect(loadedPrograms().length).toBeGreaterThanOrEqual(2);
      run.proc.kill('SIGKILL');
      await run.exit;
      await until(() => loadedPrograms().length === 0, 10_000, 'programs to be unloaded');
    });
  });
});

describe.skipIf(skip !== undefined)('ctstorm without the capabilities BPF needs', () => {
  it('says so in one line and exits 1, even as root (a container without CAP_BPF)', () => {
    const result = spawnSync('capsh', ['--drop=cap_bpf,cap_perfmon,cap_sys_admin', '--', '-c', `"${process.execPath}" "${cli}" snapshot --duration 1`], {
      encoding: 'utf8',
    });
    expect([result.status, result.stdout, result.stderr]).toEqual([
      1,
      '',
      'ctstorm: permission denied loading BPF; run as root (or with CAP_BPF and CAP_PERFMON)\n',
    ]);
    expect(loadedPrograms()).toEqual([]);
  });
});

describe.skipIf(skip !== undefined)('ctstorm modes, live', () => {
  it('modes says which modes load, and snapshot agrees: refused ones fail in one line, nothing attached', async () => {
    const report = start(['modes', '--json']);
    expect(await report.exit).toBe(0);
    const modes = JSON.parse(report.out()) as Array<{ mode: string; available: boolean; reason?: string }>;
    expect(modes.map((m) => m.mode)).toEqual(['fentry', 'kprobe', 'tracepoint']);
    for (const want of testModes()) if (want !== 'auto') expect(modes.find((m) => m.mode === want)?.available).toBe(true);
    // The VM matrix says which modes each kernel must refuse, and why (mode=words|...).
    const refused = process.env.CTSTORM_EXPECT_REFUSED;
    if (refused !== undefined) {
      const expected = new Map(refused.split('|').filter(Boolean).map((e) => e.split('=') as [string, string]));
      for (const m of modes) {
        const why = expected.get(m.mode);
        expect([m.mode, m.available]).toEqual([m.mode, why === undefined]);
        if (why !== undefined) expect(m.reason).toContain(why);
      }
    }
    for (const m of modes) {
      // The snapshot test above already ran snapshot in each of the test modes.
      if (m.available && testModes().includes(m.mode as ModeChoice)) continue;
      const run = start(['snapshot', '--duration', '0.5', '--json', '--mode', m.mode]);
      const code = await run.exit;
      if (m.available) {
        expect([m.mode, code, run.err()]).toEqual([m.mode, 0, `ctstorm: attached in ${m.mode} mode, counting\n`]);
        expect(JSON.parse(run.out()).mode).toBe(m.mode);
      } else {
        expect(m.reason).toBeTruthy();
        expect(code).toBe(1);
        expect(run.err().trim().split('\n')).toHaveLength(1);
        expect(run.err()).toMatch(new RegExp(`^ctstorm: the kernel refused ${m.mode} mode .*; use --mode auto`));
      }
      await until(() => loadedPrograms().length === 0, 10_000, 'programs to be unloaded');
    }
  });

  it('doctor finds nothing missing for a mode that loads, and says of each mode what modes says', async () => {
    const [doc, listed] = [start(['doctor', '--json']), start(['modes', '--json'])];
    expect([await doc.exit, await listed.exit]).toEqual([0, 0]);
    const report = JSON.parse(doc.out()) as { checks: Array<{ name: string; ok: boolean; optional?: boolean }>; modes: Array<{ mode: string; available: boolean }> };
    expect(report.checks.filter((c) => !c.ok && !c.optional)).toEqual([]);
    expect(report.checks.map((c) => c.name)).toEqual(['node', 'addon', 'privileges', 'btf', 'conntrack', 'names', 'cgroups']);
    const available = (r: Array<{ mode: string; available: boolean }>): string[] => r.map((m) => `${m.mode}=${m.available}`);
    expect(available(report.modes)).toEqual(available(JSON.parse(listed.out())));
    await until(() => loadedPrograms().length === 0, 10_000, 'programs to be unloaded');
  });
});
