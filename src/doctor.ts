// `ctstorm doctor`: everything this machine needs to run ctstorm, each check with
// its fix, never stopping at the first missing piece (every other command stops
// there, with one line). Ends with the modes the kernel really loads, as `modes`.
import { existsSync, statSync } from 'node:fs';
import { relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { findAddon, loadNative, type NativeBinding } from './native.js';
import { canLoadBpf, probeModes, type ModeReport } from './source.js';
import { conntrackLoaded } from './table.js';
import { procNetnsUnreadable } from './attribution/namer.js';
import { cgroup2MountOfThisHost } from './attribution/cgroup-index.js';
import { CtstormError, errorLine } from './errors.js';

export interface Check {
  name: string;
  ok: boolean;
  /** What was found, or what is wrong. */
  detail: string;
  /** How to fix it, when not ok. */
  fix?: string;
  /** A missing optional piece: ctstorm runs, with less. */
  optional?: boolean;
}

export interface DoctorReport {
  checks: Check[];
  modes: ModeReport[] | { skipped: string };
}

const packageRoot = fileURLToPath(new URL('..', import.meta.url));
const MIN_NODE_MAJOR = 20;
/** Wide enough for "mode tracepoint". */
const NAME_WIDTH = 15;

export function doctor(options: { native?: NativeBinding; ringBytes?: number; debug?: boolean } = {}): DoctorReport {
  const checks: Check[] = [];
  const major = Number(process.versions.node.split('.')[0]);
  checks.push({
    name: 'node',
    ok: major >= MIN_NODE_MAJOR,
    detail: `Node.js ${process.versions.node}`,
    fix: `install Node.js ${MIN_NODE_MAJOR} or later`,
  });

  let native = options.native;
  if (!native) {
    try {
      const path = findAddon();
      native = loadNative();
      const where = relative(packageRoot, path);
      checks.push({ name: 'addon', ok: true, detail: `${where}${where.startsWith('prebuilds') ? ' (prebuild)' : ' (built here)'}` });
    } catch (err) {
      checks.push({ name: 'addon', ok: false, ...split(err) });
    }
  }

  const bpf = canLoadBpf();
  checks.push({
    name: 'privileges',
    ok: bpf,
    detail: bpf ? 'may load tracing BPF (CAP_BPF + CAP_PERFMON, or CAP_SYS_ADMIN)' : 'this process may not load tracing BPF',
    fix: 'run as root (or with CAP_BPF and CAP_PERFMON; a container: --cap-add BPF,PERFMON)',
  });
  const btf = existsSync('/sys/kernel/btf/vmlinux');
  checks.push({
    name: 'btf',
    ok: btf,
    detail: btf ? '/sys/kernel/btf/vmlinux' : 'the kernel has no BTF (/sys/kernel/btf/vmlinux is missing)',
    fix: 'use a kernel built with CONFIG_DEBUG_INFO_BTF=y (Debian, Ubuntu and RHEL kernels are)',
  });
  const conntrack = conntrackLoaded();
  checks.push({
    name: 'conntrack',
    ok: conntrack,
    detail: conntrack ? `nf_conntrack ${existsSync('/sys/module/nf_conntrack/initstate') ? 'module loaded' : 'built in'}` : 'nf_conntrack is not loaded',
    fix: 'modprobe nf_conntrack (a firewall or kube-proxy rule loads it too)',
  });

  const netns = hostPidNamespace() ? procNetnsUnreadable() : "not in the host's PID namespace: only this container's processes are seen, so netns are named by addresses and cgroups only";
  checks.push({
    name: 'names',
    ok: netns === undefined,
    optional: true,
    detail: netns === undefined ? "processes' netns links readable: netns named by pod, container and unit" : netns,
    fix: 'run in the host PID namespace with CAP_SYS_PTRACE (the DaemonSet has hostPID: true; podman: --pid host --cap-add SYS_PTRACE)',
  });
  const cgroup2 = cgroup2MountOfThisHost();
  checks.push({
    name: 'cgroups',
    ok: cgroup2 !== undefined,
    optional: true,
    detail: cgroup2 ? `cgroup v2 at ${cgroup2}` : 'no cgroup v2 mount: processes are named without their cgroup',
    fix: 'mount cgroup2, or pass --cgroupfs <dir> where it is mounted',
  });

  for (const c of checks) if (c.ok) delete c.fix;
  const blockers = checks.filter((c) => !c.ok && !c.optional && c.name !== 'node');
  const modes = native && blockers.length === 0
    ? probeModes({ native: options.native, ringBytes: options.ringBytes, debug: options.debug })
    : { skipped: `not tried: fix ${blockers.map((c) => c.name).join(', ')} first` };
  return { checks, modes };
}

/** The report as lines for a terminal; the exit code is 0 when a mode loads. */
export function renderDoctor(report: DoctorReport): { lines: string[]; code: number } {
  const lines = report.checks.map((c) => {
    const mark = c.ok ? 'ok  ' : c.optional ? 'warn' : 'FAIL';
    return `${mark}  ${c.name.padEnd(NAME_WIDTH)} ${c.detail}${c.ok || !c.fix ? '' : `; fix: ${c.fix}`}`;
  });
  if ('skipped' in report.modes) {
    lines.push(`FAIL  ${'modes'.padEnd(NAME_WIDTH)} ${report.modes.skipped}`);
    return { lines, code: 1 };
  }
  for (const m of report.modes) {
    lines.push(`${m.available ? 'ok  ' : 'no  '}  ${`mode ${m.mode}`.padEnd(NAME_WIDTH)} ${m.available ? m.hooks : m.reason}`);
  }
  return { lines, code: report.modes.some((m) => m.available) ? 0 : 1 };
}

function split(err: unknown): { detail: string; fix?: string } {
  return err instanceof CtstormError ? { detail: err.message, fix: err.fix } : { detail: errorLine(err) };
}

/** The initial PID namespace has a fixed inode (PROC_PID_INIT_INO). */
const INIT_PID_NS_INODE = 0xeffffffc;

function hostPidNamespace(): boolean {
  try {
    return statSync('/proc/self/ns/pid').ino === INIT_PID_NS_INODE;
  } catch {
    return false;
  }
}
