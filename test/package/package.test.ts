// ctstorm as users install it. scripts/image.sh packs it (npm pack), installs the
// tarball with npm into a Debian root made by mmdebstrap with no compiler in it,
// and imports that root as the container image; here the tarball, that install,
// and the image are checked, the image run by podman with the privileges the
// DaemonSet manifest grants (read from the manifest) and no more, counting real
// flows exactly. The source build, forced, is built from the tarball and counts; where
// there is no compiler, forced or for a prebuild that does not load, it says why and
// what it needs in one line. And the host service's unit is checked by systemd-analyze.
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { parseAllDocuments } from 'yaml';
import { NetnsPair } from '../live/netns.js';
import { liveSkipReason } from '../live/privileges.js';
import { loadedPrograms } from '../live/programs.js';
import { spawnCaptured, type Spawned } from '../live/spawned.js';
import { until } from '../live/wait.js';

const root = fileURLToPath(new URL('../..', import.meta.url));
const version = (JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as { version: string }).version;
const out = join(root, '.cache/image');
const tarball = join(out, `ctstorm-${version}.tgz`);
const rootfs = join(out, 'rootfs');
const image = `localhost/ctstorm:${version}`;
const skip = liveSkipReason();
/** The prebuild for this machine, as prebuildify names it. */
const prebuild = `prebuilds/linux-${process.arch}/ctstorm.glibc.node`;
const prebuilds = ['x64', 'arm64'].map((arch) => `prebuilds/linux-${arch}/ctstorm.glibc.node`);

interface Container {
  securityContext: {
    privileged: boolean;
    allowPrivilegeEscalation: boolean;
    readOnlyRootFilesystem: boolean;
    seccompProfile?: { type: string };
    capabilities: { drop: string[]; add: string[] };
  };
  volumeMounts: Array<{ name: string; mountPath: string; readOnly?: boolean }>;
}

/** `podman run` flags for what the DaemonSet grants, read from its manifest. */
function daemonSetFlags(): string[] {
  const docs = parseAllDocuments(readFileSync(join(root, 'deploy/kubernetes/ctstorm.yaml'), 'utf8')).map((d) => d.toJS());
  const ds = docs.find((d) => d?.kind === 'DaemonSet');
  const spec = ds.spec.template.spec;
  const c = spec.containers[0] as Container;
  const sc = c.securityContext;
  expect(sc.privileged).toBe(false);
  expect(sc.capabilities.drop).toEqual(['ALL']);
  const flags = ['--cap-drop', 'all', ...sc.capabilities.add.flatMap((cap) => ['--cap-add', cap])];
  if (spec.hostNetwork) flags.push('--network', 'host');
  if (spec.hostPID) flags.push('--pid', 'host');
  if (!sc.allowPrivilegeEscalation) flags.push('--security-opt', 'no-new-privileges');
  if (sc.readOnlyRootFilesystem) flags.push('--read-only');
  if (sc.seccompProfile?.type === 'Unconfined') flags.push('--security-opt', 'seccomp=unconfined');
  const volumes = new Map<string, string>(spec.volumes.map((v: { name: string; hostPath: { path: string } }) => [v.name, v.hostPath.path]));
  for (const m of c.volumeMounts) {
    const host = volumes.get(m.name)!;
    if (!existsSync(host)) continue; // /run/netns: DirectoryOrCreate, made by the pair below
    flags.push('-v', `${host}:${m.mountPath}:${m.readOnly ? 'ro' : 'rw'}`);
  }
  return flags;
}

/** This machine's podman: runc (crun refuses hosts with hybrid cgroups), and
 * ulimits within this process's own (podman's defaults exceed them here, and
 * raising them needs CAP_SYS_RESOURCE). Not privileges. */
function podmanRun(args: string[]): Spawned {
  const limits = ['--ulimit', 'nofile=1024:1024', '--ulimit', 'nproc=4096:4096'];
  return spawnCaptured('podman', ['--runtime', 'runc', 'run', '--rm', ...limits, ...args]);
}

describe.skipIf(skip !== undefined)('the package, installed and run as users get it', () => {
  const pair = new NetnsPair('pkg');
  const running = new Set<Spawned>();

  beforeAll(async () => {
    const built = spawnSync('bash', [join(root, 'scripts/image.sh')], { cwd: root, encoding: 'utf8' });
    if (built.status !== 0) throw new Error(`scripts/image.sh failed (${built.status}): ${built.stderr.split('\n').slice(-15).join('\n')}`);
    pair.up();
    await pair.startServer();
  });
  afterEach(() => {
    for (const r of running) if (!r.exited()) r.proc.kill('SIGKILL');
    running.clear();
  });
  afterAll(() => pair.down());

  /** Runs a `ctstorm snapshot --json` through `oneway` one-way UDP flows and 5 TCP
   * connections into the pair's server, ends it with SIGINT, and holds it to exactly
   * those inserts and destroys, none lost, and no program left loaded. */
  async function countsExactly(run: Spawned, oneway: number, attachMs: number, who: string): Promise<void> {
    running.add(run);
    await until(() => run.exited() || /attached in \w+ mode, counting/.test(run.err()), attachMs, `${who} to attach`);
    expect(run.exited()).toBe(false);
    await pair.oneway(oneway);
    await pair.runClient(5, 0);
    pair.flush();
    await until(() => pair.count() === 0, 10_000, 'the flush');
    run.proc.kill('SIGINT');
    expect(await run.exit).toBe(0);
    const ns = JSON.parse(run.out()).netns.find((n: { inode: number }) => n.inode === pair.serverInode);
    expect(ns).toMatchObject({ inserts: oneway + 5, destroys: oneway + 5, lost: 0 });
    await until(() => loadedPrograms().length === 0, 10_000, 'programs to be unloaded');
  }

  it('packs the built addon and what running needs, and no test machinery', () => {
    const files = execFileSync('tar', ['-tzf', tarball], { encoding: 'utf8' }).trim().split('\n');
    for (const f of ['dist/cli.js', 'dist/index.js', 'dist/index.d.ts', ...prebuilds, 'bpf/ctstorm.bpf.c', 'native/probe.c', 'binding.gyp', 'scripts/install.sh', 'scripts/build-packages', 'scripts/private-apt.sh', 'deploy/ctstorm.service', 'deploy/kubernetes/ctstorm.yaml']) {
      expect(files).toContain(`package/${f}`);
    }
    expect(files.filter((f) => /^package\/(test|bench|src|gen|build|\.cache|examples)\//.test(f) || /\.(test\.yml|map)$/.test(f))).toEqual([]);
    expect(files).toContain('package/prebuilds/libbpf-LICENSE.BSD-2-Clause'); // linked in: its licence ships
    console.log(`ctstorm package: ${files.length} files, ${(statSync(tarball).size / 1e6).toFixed(2)} MB packed`);

    // libbpf is linked in: the addon needs no libbpf on the machine. Each prebuild is
    // for its own machine (the arm64 one also runs: arm64.test.ts).
    for (const [arch, machine] of [['x64', 'Advanced Micro Devices X86-64'], ['arm64', 'AArch64']]) {
      const file = join(root, `prebuilds/linux-${arch}/ctstorm.glibc.node`);
      const needed = execFileSync('readelf', ['-d', file], { encoding: 'utf8' })
        .split('\n')
        .flatMap((l) => /\(NEEDED\).*\[(.+)\]/.exec(l)?.[1] ?? [])
        .sort();
      expect([arch, needed]).toEqual([arch, ['libc.so.6', 'libelf.so.1', 'libgcc_s.so.1', 'libstdc++.so.6', 'libz.so.1']]);
      expect([arch, /Machine:\s+(.+)/.exec(execFileSync('readelf', ['-h', file], { encoding: 'utf8' }))?.[1]]).toEqual([arch, machine]);
      // The oldest C and C++ libraries it runs with, as the README states them: a
      // pack built against newer headers would raise them without anyone noticing.
      const versions = execFileSync('readelf', ['-V', file], { encoding: 'utf8' });
      const newest = (lib: string) =>
        [...versions.matchAll(new RegExp(`${lib}_([\\d.]+)`, 'g'))].map((m) => m[1]!).sort((a, b) => a.localeCompare(b, 'en', { numeric: true })).at(-1);
      expect([arch, newest('GLIBC'), newest('GLIBCXX')]).toEqual([arch, '2.32', '3.4.26']);
    }
  });

  it('installs with npm into a Debian root without a compiler, from the prebuild', () => {
    for (const tool of ['cc', 'gcc', 'g++', 'c++', 'clang', 'make', 'bpftool', 'ld']) {
      expect([tool, existsSync(join(rootfs, 'usr/bin', tool))]).toEqual([tool, false]);
    }
    const installed = join(rootfs, 'usr/lib/node_modules/ctstorm');
    expect(existsSync(join(installed, prebuild))).toBe(true);
    expect(existsSync(join(installed, 'build'))).toBe(false); // nothing was compiled
    const found = execFileSync('chroot', [rootfs, '/usr/bin/node', '-e', "console.log(require('/usr/lib/node_modules/ctstorm/node_modules/node-gyp-build').path('/usr/lib/node_modules/ctstorm'))"], { encoding: 'utf8' });
    expect(found.trim()).toBe(`/usr/lib/node_modules/ctstorm/${prebuild}`);
    expect(execFileSync('chroot', [rootfs, '/usr/bin/ctstorm', '--version'], { encoding: 'utf8' }).trim()).toContain(version);
  });

  it('counts flows exactly from inside the image, with only the DaemonSet\'s privileges, and detaches', async () => {
    await pair.empty();
    // podman passes the SIGINT on; the snapshot still prints its JSON.
    await countsExactly(podmanRun([...daemonSetFlags(), image, 'snapshot', '--duration', '600', '--json']), 1500, 120_000, 'ctstorm in the image');
  });

  it('serves /metrics from the image, exactly, and stops cleanly', async () => {
    await pair.empty();
    const port = 19477;
    const run = podmanRun([...daemonSetFlags(), image, 'serve', '--listen', `127.0.0.1:${port}`]);
    running.add(run);
    await until(() => run.exited() || /serving http/.test(run.err()), 120_000, 'serve in the image to listen');
    expect(run.exited()).toBe(false);
    await pair.runClient(3, 2);
    const want = [`ctstorm_conntrack_inserts_total{netns="${pair.serverInode}",protocol="tcp"} 3`, `ctstorm_conntrack_inserts_total{netns="${pair.serverInode}",protocol="udp"} 2`];
    let text = '';
    for (let i = 0; i < 300 && !want.every((w) => text.includes(w)); i++) {
      if (i > 0) await new Promise((r) => setTimeout(r, 100));
      text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
    }
    for (const w of want) expect(text).toContain(w);
    run.proc.kill('SIGTERM');
    expect(await run.exit).toBe(0);
    await until(() => loadedPrograms().length === 0, 10_000, 'programs to be unloaded');
  });

  it('builds from source when told to, from the packed tarball, and that build counts exactly', async () => {
    // This machine has the build packages (scripts/setup.sh). Dependencies come
    // from the npm cache image.sh filled for this tarball, offline; nothing from
    // the checkout: no npm_* settings, no node_modules/.bin on PATH.
    const prefix = mkdtempSync(join(tmpdir(), 'ctstorm-source-'));
    const env: NodeJS.ProcessEnv = { CTSTORM_BUILD_FROM_SOURCE: '1' };
    for (const [k, v] of Object.entries(process.env)) if (!/^npm_|^INIT_CWD$|^CTSTORM_/i.test(k)) env[k] = v;
    env.PATH = (process.env.PATH ?? '').split(':').filter((d) => !d.includes('node_modules')).join(':');
    try {
      const t0 = Date.now();
      const install = spawnSync(
        'npm',
        ['install', '--prefix', prefix, '--offline', '--cache', join(out, 'npm-cache'), '--omit=dev', '--no-audit', '--no-fund', '--foreground-scripts', tarball],
        { encoding: 'utf8', env, timeout: 240_000, maxBuffer: 64 << 20 },
      );
      expect([install.status, install.stderr]).toEqual([0, expect.stringContaining('ctstorm: CTSTORM_BUILD_FROM_SOURCE is set: building the probe and the addon from source')]);
      console.log(`source build from the tarball: ${((Date.now() - t0) / 1000).toFixed(0)} s (npm install, libbpf, probe, addon)`);
      // Debian's libbpf, built and linked in as in the prebuilds, not the system's shared one.
      expect(install.stderr).toMatch(/LIBBPF\s+\S+ \(static, PIC, (x64|arm64)\)/);
      expect(install.stderr).not.toContain("linking the system's shared libbpf");
      const pkg = join(prefix, 'node_modules/ctstorm');
      const addon = join(pkg, 'build/Release/ctstorm.node');
      expect(execFileSync('readelf', ['-d', addon], { encoding: 'utf8' })).not.toMatch(/NEEDED.*libbpf/);
      const found = execFileSync(process.execPath, ['-e', `console.log(require(${JSON.stringify(join(prefix, 'node_modules/node-gyp-build'))}).path(${JSON.stringify(pkg)}))`], { encoding: 'utf8' });
      expect(found.trim()).toBe(addon);

      await pair.empty();
      await countsExactly(spawnCaptured(process.execPath, [join(pkg, 'dist/cli.js'), 'snapshot', '--duration', '600', '--json']), 300, 60_000, 'the source-built ctstorm');
    } finally {
      rmSync(prefix, { recursive: true, force: true });
    }
  }, 300_000);

  it('says in one line why it builds from source and which packages that needs, where there is no compiler', () => {
    // What a source build checks for, and which of it this root has (none of the tools).
    const needs = ['clang', 'bpftool', 'make', 'g++', 'python3', '/usr/include/bpf/libbpf.h', '/usr/include/libelf.h', '/usr/include/zlib.h'];
    const missing = needs.filter((n) => !existsSync(join(rootfs, n.startsWith('/') ? n : `usr/bin/${n}`))).join(' ');
    const packages = readFileSync(join(root, 'scripts/build-packages'), 'utf8').trim();
    const line = (why: string) =>
      `ctstorm: ${why}, and building from source needs ${missing}; install them (Debian, Ubuntu: apt-get install ${packages}, and libnode-dev with Debian's nodejs), then run the npm install again (a failed install leaves nothing to rebuild)`;
    const installSh = (pkg: string, extra: Record<string, string>) =>
      spawnSync('chroot', [rootfs, '/usr/bin/bash', `${pkg}/scripts/install.sh`], { encoding: 'utf8', env: { PATH: '/usr/sbin:/usr/bin:/sbin:/bin', ...extra } });

    // Forced.
    const forced = installSh('/usr/lib/node_modules/ctstorm', { CTSTORM_BUILD_FROM_SOURCE: '1' });
    expect([forced.status, forced.stderr]).toEqual([1, `${line('CTSTORM_BUILD_FROM_SOURCE is set')}\n`]);
    // A prebuild that does not load here: in a copy of the package, the other
    // architecture's in its place (as a machine with an older C library or no
    // libelf, it fails to load, and the install says why).
    const copy = '/tmp/ctstorm-broken-prebuild';
    const other = prebuilds.find((p) => p !== prebuild)!;
    rmSync(join(rootfs, copy), { recursive: true, force: true });
    execFileSync('cp', ['-a', join(rootfs, 'usr/lib/node_modules/ctstorm'), join(rootfs, copy)]);
    try {
      execFileSync('cp', [join(rootfs, copy, other), join(rootfs, copy, prebuild)]);
      const fallback = installSh(copy, {});
      const reason = /^ctstorm: the prebuild does not load here \((.+?)\), and building/.exec(fallback.stderr)?.[1] ?? '(no reason)';
      expect(reason.startsWith(`${copy}/${prebuild}: `)).toBe(true); // the loader's own words follow
      expect([fallback.status, fallback.stderr]).toEqual([1, `${line(`the prebuild does not load here (${reason})`)}\n`]);
      expect(existsSync(join(rootfs, copy, 'build'))).toBe(false); // nothing was attempted
    } finally {
      rmSync(join(rootfs, copy), { recursive: true, force: true });
    }
    expect(existsSync(join(rootfs, 'usr/lib/node_modules/ctstorm/build'))).toBe(false);
  });

  it('has a host service unit systemd-analyze verifies', () => {
    // verify wants ExecStart's program to exist: the one npm installed in the root.
    const dir = mkdtempSync(join(tmpdir(), 'ctstorm-unit-'));
    try {
      const unit = readFileSync(join(root, 'deploy/ctstorm.service'), 'utf8');
      expect(unit).toMatch(/^ExecStart=\/usr\/bin\/ctstorm serve /m);
      writeFileSync(join(dir, 'ctstorm.service'), unit.replace('ExecStart=/usr/bin/ctstorm', `ExecStart=${rootfs}/usr/bin/ctstorm`));
      const verify = spawnSync('systemd-analyze', ['verify', join(dir, 'ctstorm.service')], { encoding: 'utf8' });
      expect([verify.status, verify.stderr]).toEqual([0, '']);
      const security = spawnSync('systemd-analyze', ['security', '--offline=yes', join(dir, 'ctstorm.service')], { encoding: 'utf8' });
      const exposure = /Overall exposure level for ctstorm.service: ([\d.]+)/.exec(security.stdout)?.[1];
      console.log(`ctstorm.service: systemd-analyze security exposure ${exposure} (0 best, 10 worst)`);
      expect(Number(exposure)).toBeLessThan(4);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
