// The CLI against a fake addon: contract of the snapshot JSON, and one-line
// errors with non-zero exits for bad input.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { main, type CliIO } from '../../src/cli.js';
import type { NativeCensus, NativeCounters } from '../../src/native.js';
import { fakeNative, type FakeScript } from './fake-native.js';

const zero: NativeCounters = { protocols: [], netns: [], health: [0, 0, 0, 0, 0, 0, 0, 0], missedRuns: 0, missesVisible: true };
/** The probe's counters since it attached. */
const after: NativeCounters = {
  protocols: [
    { l4proto: 6, inserts: 30, destroys: 12, lost: 0 },
    { l4proto: 17, inserts: 5, destroys: 5, lost: 2 },
  ],
  netns: [
    { cookie: 4097, inode: 4026532000, l4proto: 6, inserts: 30, destroys: 12, lost: 0 },
    { cookie: 8193, inode: 4026532111, l4proto: 17, inserts: 5, destroys: 5, lost: 2 },
  ],
  health: [3, 0, 0, 1, 0, 0, 0, 0],
  missedRuns: 0,
  missesVisible: true,
};
const table = () => ({ entries: 18, max: 262144, buckets: 262144 });
const kernelStats = () => ({ entries: 18, drop: 0, early_drop: 0, insert_failed: 0 });
const census: NativeCensus = {
  done: true, buckets: 262144, bucketsWalked: 262144, nodes: 80, entries: 40, empty: 262064, longest: 1,
  moved: 0, readErrors: 0, netnsOverflow: 0, natClash: 0, histogram: [262064, 80], netns: [{ cookie: 4097, inode: 4026532000, entries: 40 }],
};

async function run(argv: string[], script: FakeScript = { counters: [after] }) {
  const out: string[] = [];
  const err: string[] = [];
  const native = fakeNative(script);
  const io: CliIO = { out: (t) => out.push(t), err: (t) => err.push(t), native, readTable: table, readKernelStats: kernelStats };
  const code = await main(argv, io);
  return { code, out, err, native };
}

describe('ctstorm snapshot', () => {
  it('counts while the Kubernetes API cannot be reached: the failure is one line, the snapshot comes anyway', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'ctstorm-kubeconfig-'));
    const kubeconfig = join(dir, 'config');
    // Port 1 on loopback: refused at once.
    writeFileSync(kubeconfig, ['apiVersion: v1', 'kind: Config', 'clusters: [{name: c, cluster: {server: "http://127.0.0.1:1", insecure-skip-tls-verify: true}}]',
      'users: [{name: u, user: {token: t}}]', 'contexts: [{name: x, context: {cluster: c, user: u}}]', 'current-context: x', ''].join('\n'));
    const out: string[] = [];
    const err: string[] = [];
    const stop = new AbortController();
    const io: CliIO = {
      out: (t) => out.push(t),
      // The snapshot (asked for 60 s) ends once the failure has been told: no race with it.
      err: (t) => (err.push(t), t.startsWith('ctstorm: naming pods:') && stop.abort()),
      native: fakeNative({ counters: [after] }),
      readTable: table,
      readKernelStats: kernelStats,
      signal: stop.signal,
    };
    const limit = setTimeout(() => stop.abort(), 30_000);
    try {
      const code = await main(['snapshot', '--duration', '60', '--json', '--kubeconfig', kubeconfig, '--node', 'node-a'], io);
      expect(code).toBe(0);
      expect(JSON.parse(out[0]!)).toMatchObject({ totals: { inserts: 35, destroys: 17, lost: 2 } });
      expect(err).toHaveLength(2);
      expect(err[0]).toBe('ctstorm: attached in fentry mode, counting');
      expect(err[1]).toMatch(/^ctstorm: naming pods: cannot list pods from http:\/\/127\.0\.0\.1:1\/api\/v1\/pods\?fieldSelector=spec\.nodeName%3Dnode-a: .*; check that the API server is reachable from this node \(pods are named by UID until it works; trying again in 30 s\)$/);
    } finally {
      clearTimeout(limit);
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('prints one JSON object with the documented fields and the probe\'s counters since attach', async () => {
    // The fake answers every counters() call with the same reading: a snapshot that
    // still subtracted a start reading would report zeros.
    const { code, out, err, native } = await run(['snapshot', '--duration', '0.2', '--json']);
    expect(err).toEqual(['ctstorm: attached in fentry mode, counting']);
    expect(code).toBe(0);
    expect(out).toHaveLength(1);
    const s = JSON.parse(out[0]!);
    expect(s).toMatchObject({
      version: 1,
      mode: 'fentry',
      table: { entries: 18, max: 262144, buckets: 262144 },
      totals: { inserts: 35, destroys: 17, lost: 2 },
      netns: [
        { inode: 4026532000, cookie: 4097, inserts: 30, destroys: 12, lost: 0, protocols: [{ proto: 'tcp', inserts: 30, destroys: 12 }] },
        { inode: 4026532111, cookie: 8193, inserts: 5, destroys: 5, lost: 2, protocols: [{ proto: 'udp', inserts: 5, destroys: 5 }] },
      ],
      protocols: [
        { proto: 'tcp', inserts: 30, destroys: 12, lost: 0 },
        { proto: 'udp', inserts: 5, destroys: 5, lost: 2 },
      ],
      health: {
        unconfirmedFrees: 3, untracked: 0, netnsOverflow: 0, unknownStart: 1, natClashes: 0,
        neverHashed: 0, pendingOverflow: 0, insertUnpaired: 0, pendingExpired: 0, missedRuns: 0,
      },
      exactness: { exact: true, notes: [] },
    });
    expect(typeof s.kernel).toBe('string');
    expect(s.durationSeconds).toBeGreaterThanOrEqual(0.2);
    // durationSeconds is rounded to ms; the rate uses the unrounded time.
    expect(Math.abs(s.rates.insertsPerSecond * s.durationSeconds - 35)).toBeLessThan(0.5);
    expect(native.closed).toBe(1);
  });

  it('adds the engine\'s view (windows, lifetimes, top, storms, chains, kernel statistics) and, with --census, the table walk', async () => {
    const { code, out } = await run(['snapshot', '--duration', '0.05', '--json', '--census'], { counters: [after], census });
    expect(code).toBe(0);
    const s = JSON.parse(out[0]!);
    for (const key of ['windows', 'lifetimes', 'top', 'storms', 'chains', 'hotBuckets', 'kernelStats', 'census']) expect(s).toHaveProperty(key);
    expect(s.windows['10s']).toEqual({ insertsPerSecond: 0, destroysPerSecond: 0, netPerSecond: 0 });
    expect(s.kernelStats.sinceStart).toEqual({ entries: 18, drop: 0, early_drop: 0, insert_failed: 0 });
    expect(s.buckets).toMatchObject({ buckets: 262144, nodes: 80, entries: 40, longest: 1, chains: [{ length: 0, buckets: 262064 }, { length: 1, buckets: 80 }] });
    // The census's 40 entries carried forward by 30 - 12 TCP counted since... it ran after the
    // counters read 18, so the netns holds 40 now; the other netns balanced (5 - 5).
    expect(s.netns.map((n: { inode: number; entries: number }) => [n.inode, n.entries])).toEqual([[4026532000, 40], [4026532111, 0]]);
    expect(s.table).toMatchObject({ totalEntries: 40, fullest: { inode: 4026532000, entries: 40 } });
    expect(s.table.fillPercent).toBeCloseTo((100 * 40) / 262144, 9);
    expect(s.table.secondsToFull).toBe(null); // not growing: no records
  });

  it('without a census: per-netns entries are null, and the fill is unknown', async () => {
    const { out } = await run(['snapshot', '--duration', '0.05', '--json']);
    const s = JSON.parse(out[0]!);
    expect(s.netns.every((n: { entries: unknown }) => n.entries === null)).toBe(true);
    expect(s.table).toMatchObject({ fillPercent: null, secondsToFull: null, fullest: null, totalEntries: null });
    expect(s.buckets).toBeUndefined();
    expect(s.census.pending).toMatch(/^no census yet/);
  });

  it('says the counts are inexact, and why, when the probe\'s health says so', async () => {
    const lossy: NativeCounters = { ...after, health: [0, 5, 0, 0, 0, 0, 0, 0], missedRuns: 2, missesVisible: false };
    const { code, out } = await run(['snapshot', '--duration', '0.05', '--json', '--mode', 'tracepoint'], { counters: [lossy] });
    expect(code).toBe(0);
    const s = JSON.parse(out[0]!);
    expect(s.mode).toBe('tracepoint');
    expect(s.health).toMatchObject({ untracked: 5, missedRuns: 2 });
    expect(s.exactness.exact).toBe(false);
    expect(s.exactness.notes).toHaveLength(3);
    expect(s.exactness.notes[0]).toMatch(/skipped 2 nested runs of the slab tracepoints/);
    expect(s.exactness.notes[1]).toMatch(/^5 new entries found the live map full/);
    expect(s.exactness.notes[2]).toMatch(/does not report every skipped run/);
  });

  it('falls back from refused modes in auto and uses the next one', async () => {
    const { code, out } = await run(['snapshot', '--duration', '0.1', '--json'], {
      refuse: { fentry: { errno: -1, message: 'load fentry programs: Operation not permitted' } },
      counters: [zero],
    });
    expect(code).toBe(0);
    expect(JSON.parse(out[0]!).mode).toBe('kprobe');
  });
});

describe('ctstorm buckets', () => {
  it('charts the census against uniform hashing', async () => {
    const { code, out, err } = await run(['buckets'], { counters: [after], census });
    expect([code, err]).toEqual([0, ['ctstorm: attached in fentry mode, counting']]);
    expect(out[0]).toContain('census: 262,144 buckets, 40 entries, 80 nodes');
    expect(out[0]).toMatch(/^\s+1\s+80\s+0\.03%\s+80\s+0\.03%/m);
    expect(out[0]).toContain('every chain walked to its own end');
  });

  it('--json prints the census view', async () => {
    const { out } = await run(['buckets', '--json'], { counters: [after], census });
    expect(JSON.parse(out[0]!)).toMatchObject({ buckets: 262144, nodes: 80, entries: 40, emptyExpected: expect.any(Number) });
  });

  it('no insert to locate the table within --duration: one line naming the fix, exit 1', async () => {
    const { code, out, err, native } = await run(['buckets', '--duration', '0.3'], { counters: [after] });
    expect(code).toBe(1);
    expect(out).toEqual([]);
    expect(err[1]).toMatch(/^ctstorm: no census in 0.3 s \(the table is not located yet: the census needs one insert seen since start\); make one connection/);
    expect(native.closed).toBe(1);
  });
});

describe('bad input', () => {
  const cases: Array<[string, string[], RegExp]> = [
    ['unknown flag', ['snapshot', '--duration', '1', '--frobnicate'], /^ctstorm: unknown option --frobnicate; see: ctstorm --help$/],
    ['non-numeric duration', ['snapshot', '--duration', 'abc'], /^ctstorm: bad --duration "abc"; give seconds/],
    ['negative duration', ['snapshot', '--duration', '-3'], /^ctstorm: bad --duration "-3"; give --duration a value above 0$/],
    ['negative ring size', ['snapshot', '--duration', '1', '--ring-bytes', '-1'], /^ctstorm: bad --ring-bytes "-1"/],
    ['too short an interval', ['watch', '--interval', '0.01'], /^ctstorm: bad --interval "0.01"; give at least 0.1 seconds$/],
    ['zero duration', ['snapshot', '--duration', '0'], /^ctstorm: bad --duration "0"/],
    ['missing duration', ['snapshot', '--json'], /^ctstorm: --duration is required; give it in seconds/],
    ['unknown mode', ['snapshot', '--duration', '1', '--mode', 'ebpf'], /^ctstorm: unknown mode "ebpf"; use one of: auto, fentry, kprobe, tracepoint$/],
    ['unknown command', ['frobnicate'], /^ctstorm: unknown command "frobnicate"/],
    ['no command', [], /^ctstorm: no command given; use: ctstorm watch/],
    ['bad ring size', ['snapshot', '--duration', '1', '--ring-bytes', '5000'], /^ctstorm: bad --ring-bytes "5000"/],
    ['negative ring size names the rule', ['watch', '--ring-bytes', '-1'], /^ctstorm: bad --ring-bytes "-1"; use a power of two between 4096 and 1073741824$/],
    ['an option of another command', ['watch', '--json'], /^ctstorm: option --json does not apply to watch; watch takes: --mode, --interval, --ring-bytes, --debug, --kubeconfig, --in-cluster, --kubelet, --node, --cgroupfs$/],
    ['census outside snapshot', ['watch', '--census'], /^ctstorm: option --census does not apply to watch/],
    ['interval on snapshot', ['snapshot', '--duration', '1', '--interval', '2'], /^ctstorm: option --interval does not apply to snapshot/],
    ['bad listen address', ['serve', '--listen', 'localhost'], /^ctstorm: bad --listen "localhost"; give host:port/],
    ['bad max-netns', ['serve', '--max-netns', '0'], /^ctstorm: bad --max-netns "0"; give a whole number from 1 to 1000$/],
    ['advise: --from with --duration', ['advise', '--from', 'http://127.0.0.1:9477', '--duration', '5'], /^ctstorm: --from and --duration exclude each other; /],
    ['advise: two outputs', ['advise', '--json', '--sysctl'], /^ctstorm: --json and --sysctl exclude each other; pick one output$/],
    ['advise: --yes alone', ['advise', '--yes'], /^ctstorm: --yes applies to --apply only; add --apply, or drop --yes$/],
    ['advise: what-if without a window', ['advise', '--what-if-reconnects', '1000'], /^ctstorm: --what-if-reconnects and --within go together; e.g./],
    ['advise: bad what-if count', ['advise', '--what-if-reconnects', 'many', '--within', '30'], /^ctstorm: bad --what-if-reconnects "many"; give a whole number/],
    ['advise: bad window', ['advise', '--what-if-reconnects', '1000', '--within', '0'], /^ctstorm: bad --within "0"/],
    ['advise: bad headroom', ['advise', '--headroom', 'lots'], /^ctstorm: bad --headroom "lots"; give a percentage from 0 to 1000/],
    ['advise: --apply with nobody to ask', ['advise', '--apply'], /^ctstorm: --apply needs a yes, and this shell cannot ask; add --yes/],
    ['advise: an option of another command', ['advise', '--listen', '127.0.0.1:1'], /^ctstorm: option --listen does not apply to advise/],
    ['two pod sources', ['watch', '--in-cluster', '--kubelet', 'http://127.0.0.1:10255/pods'], /^ctstorm: --in-cluster and --kubelet both name pods; give one of them$/],
    ['--node alone', ['snapshot', '--duration', '1', '--node', 'node-a'], /^ctstorm: --node names this node for the Kubernetes API; add --kubeconfig <file> or --in-cluster$/],
    ['--cgroupfs not cgroup2', ['watch', '--cgroupfs', '/proc'], /^ctstorm: --cgroupfs \/proc is not a cgroup2 mount, nor holds one in unified\/; give the host's cgroup2 mount/],
    ['a kubelet URL that is not one', ['watch', '--kubelet', 'localhost:10255'], /^ctstorm: --kubelet "localhost:10255" is not a URL; give the kubelet's read-only \/pods, e\.g\. http:\/\/127\.0\.0\.1:10255\/pods$/],
    ['--cgroupfs missing', ['watch', '--cgroupfs', '/nonexistent'], /^ctstorm: --cgroupfs \/nonexistent: ENOENT; give the host's cgroup2 mount/],
    ['pods for a command that names none', ['buckets', '--kubelet', 'http://127.0.0.1:10255/pods'], /^ctstorm: option --kubelet does not apply to buckets/],
  ];
  // Pod sources that cannot be read: one line naming the problem and the fix, the probe never loaded.
  const podFailures: Array<[string, string[], RegExp]> = [
    ['a kubeconfig that is not there', ['snapshot', '--duration', '1', '--kubeconfig', '/nonexistent/kubeconfig', '--node', 'n'], /^ctstorm: cannot name pods: cannot read kubeconfig \/nonexistent\/kubeconfig \(ENOENT\); pass a readable kubeconfig file$/],
    ['--in-cluster outside a pod', ['serve', '--in-cluster', '--node', 'n'], /^ctstorm: cannot name pods: not running in a Kubernetes pod \(KUBERNETES_SERVICE_HOST is unset\); pass a kubeconfig path, or drop --in-cluster$/],
  ];
  for (const [name, argv, want] of podFailures) {
    it(`${name}: one line, exit 1, nothing loaded`, async () => {
      const saved = process.env.KUBERNETES_SERVICE_HOST;
      delete process.env.KUBERNETES_SERVICE_HOST;
      try {
        const { code, out, err, native } = await run(argv);
        expect([code, out, err.length]).toEqual([1, [], 1]);
        expect(err[0]).toMatch(want);
        expect(native.opened).toHaveLength(0);
      } finally {
        if (saved !== undefined) process.env.KUBERNETES_SERVICE_HOST = saved;
      }
    });
  }

  for (const [name, argv, want] of cases) {
    it(`${name}: one line, exit 2, nothing loaded`, async () => {
      const { code, out, err, native } = await run(argv);
      expect(code).toBe(2);
      expect(out).toEqual([]);
      expect(err).toHaveLength(1);
      expect(err[0]).toMatch(want);
      expect(native.opened).toHaveLength(0);
    });
  }

  it('a mode the kernel refuses: one line naming the mode and the fix, exit 1', async () => {
    const { code, err, native } = await run(['snapshot', '--duration', '1', '--mode', 'fentry'], {
      refuse: { fentry: { errno: -1, message: 'load fentry programs: Operation not permitted' } },
      counters: [zero],
    });
    expect(code).toBe(1);
    expect(err).toHaveLength(1);
    expect(err[0]).toMatch(/^ctstorm: the kernel refused fentry mode \(fentry: EPERM: load fentry programs: Operation not permitted\); use --mode auto/);
    expect(native.opened).toHaveLength(0);
  });

  it('--help prints usage and exits 0', async () => {
    const { code, out } = await run(['--help']);
    expect(code).toBe(0);
    expect(out[0]).toContain('usage: ctstorm');
  });
});

describe('ctstorm modes', () => {
  it('reports each mode with the reason the kernel refused it', async () => {
    const { code, out } = await run(['modes', '--json'], {
      refuse: {
        fentry: { errno: -1, message: 'load fentry programs: Operation not permitted' },
        kprobe: { errno: -2, message: 'attach kprobe/__nf_conntrack_hash_insert: No such file or directory' },
      },
      counters: [zero],
    });
    expect(code).toBe(0);
    const report = JSON.parse(out[0]!);
    expect(report.map((r: { mode: string; available: boolean }) => [r.mode, r.available])).toEqual([
      ['fentry', false],
      ['kprobe', false],
      ['tracepoint', true],
    ]);
    expect(report[0].reason).toBe('EPERM: load fentry programs: Operation not permitted');
    expect(report[1].reason).toMatch(/ENOENT|kprobes/);
  });
});

describe('advise --from', () => {
  // A stand-in for a serve that answers the wrong thing (advise reads this host's
  // sysctls first: conntrack must be loaded, as on every machine the suite runs on).
  async function serving(body: string, type = 'application/json'): Promise<{ url: string; close: () => Promise<void> }> {
    const { createServer } = await import('node:http');
    const server = createServer((_req, res) => res.writeHead(200, { 'content-type': type, connection: 'close' }).end(body));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const port = (server.address() as { port: number }).port;
    return { url: `http://user:secret@127.0.0.1:${port}/prefix`, close: () => new Promise((resolve) => server.close(() => resolve())) };
  }

  it('JSON of another shape: one line naming the URL without its password, exit 1, nothing loaded', async () => {
    const s = await serving(JSON.stringify({ version: 1, netns: [], lifetimes: [] }));
    try {
      const { code, out, err, native } = await run(['advise', '--from', s.url]);
      expect([code, out, native.opened]).toEqual([1, [], []]);
      expect(err).toEqual([`ctstorm: ${s.url.replace('user:secret@', '')}/api/v1/churn did not answer with ctstorm's churn JSON (version 1); point --from at a ctstorm serve of the same version`]);
    } finally {
      await s.close();
    }
  });

  it('an HTML page: still one line', async () => {
    const s = await serving('<html>\n<body>login</body>\n</html>', 'text/html');
    try {
      const { code, err } = await run(['advise', '--from', s.url]);
      expect(code).toBe(1);
      expect(err).toHaveLength(1);
      expect(err[0]).toMatch(/^ctstorm: cannot read http:\/\/127\.0\.0\.1:\d+\/prefix\/api\/v1\/churn \([^\n]*\); check that ctstorm serve runs there/);
      expect(err[0]).not.toContain('secret');
    } finally {
      await s.close();
    }
  });
});

describe('advise --from numbers', () => {
  const shaped = (over: object): string =>
    JSON.stringify({
      version: 1, kernel: 'x', durationSeconds: 60, netns: [], lifetimes: [], lifetimeHistograms: { edgesSeconds: [], rows: [] },
      table: { entries: 0, max: 1, buckets: 1, fullest: null, totalEntries: 0 }, storms: { past: [], current: null }, chains: { histogram: {} },
      totals: { inserts: 0, destroys: 0, lost: 0 }, kernelStats: null, ...over,
    });
  async function advising(body: string): Promise<string[]> {
    const { createServer } = await import('node:http');
    const server = createServer((_req, res) => res.writeHead(200, { 'content-type': 'application/json', connection: 'close' }).end(body));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    try {
      const { code, err } = await run(['advise', '--from', `http://127.0.0.1:${(server.address() as { port: number }).port}`]);
      expect(code).toBe(1);
      return err;
    } finally {
      await new Promise((resolve) => server.close(resolve));
    }
  }

  it('a serve that watched under a second is refused', async () => {
    expect(await advising(shaped({ durationSeconds: 0 }))).toEqual([expect.stringMatching(/has watched for under a second \(durationSeconds 0\); let ctstorm serve run first/)]);
  });

  it('a count that is not a number never reaches the advice', async () => {
    const netns = [{ inode: 5, cookie: 0, inserts: 'many', destroys: 0, lost: 0, entries: 3, protocols: [{ proto: 'udp', inserts: 'many', destroys: 0, lost: 0 }] }];
    expect(await advising(shaped({ netns }))).toEqual([expect.stringMatching(/is not what this ctstorm reads \(a netns insert rate is null\)|is not what this ctstorm reads \(a protocol's inserts is "many"\)/)]);
  });
});
