#!/usr/bin/env node
// The `ctstorm` command: parse, call the library, print. Failures print one
// line ("ctstorm: problem; fix") and exit non-zero; never a stack trace.
import { realpathSync, statfsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { CgroupIndex } from './attribution/cgroup-index.js';
import { procNetnsUnreadable } from './attribution/namer.js';
import { startPodDirectory } from './attribution/pod-source.js';
import { CtstormError, errorLine } from './errors.js';
import type { NativeBinding } from './native.js';
import { takeSnapshot } from './snapshot.js';
import { MODES, isMode, probeModes, type ModeChoice } from './source.js';
import { bucketsChart, bucketsWait } from './buckets.js';
import { runAdvise } from './advisor/command.js';
import { createInterface } from 'node:readline/promises';
import type { KernelStats } from './kernel-stats.js';
import type { Snapshot } from './snapshot.js';
import type { TableInfo } from './table.js';
import { watch } from './watch.js';

import { VERSION } from './version.js';
import { fmt } from './format.js';
import { doctor, renderDoctor } from './doctor.js';
/** watch redraws at most ten times a second. */
const MIN_INTERVAL_SECONDS = 0.1;
/** A second SIGINT/TERM this soon after the first is the same request (a wrapper such
 * as timeout(1) may signal both ctstorm and its process group). */
const REPEAT_SIGNAL_MS = 1000;

const USAGE = `usage: ctstorm <command> [options]

commands
  watch       live view of conntrack churn, redrawn every second (Ctrl-C ends)
  snapshot    watch for --duration seconds, then print one summary
  buckets     walk the whole hash table once: chain lengths against uniform
              hashing, entries per netns
  serve       Prometheus exporter and churn API over HTTP (Ctrl-C ends)
  advise      conntrack settings from what was measured: nf_conntrack_max,
              buckets, timeouts, memory (read-only unless --apply)
  modes       which attach modes this kernel allows, and why not the others
  doctor      what this machine has and lacks for ctstorm, each with its fix

options
  --mode <m>          auto (default), ${MODES.join(', ')}
  --duration <s>      snapshot length in seconds (required for snapshot);
                      buckets: how long to wait for the insert that locates
                      the table (default 10)
  --census            snapshot: add a whole-table census at the end ("buckets")
  --json              snapshot/buckets/modes/doctor: print JSON
  --interval <s>      watch refresh period (default 1)
  --listen <h:p>      serve: address to listen on (default 127.0.0.1:9477)
  --max-netns <n>     serve: netns label values in metrics, ctstorm's own included;
                      netns seen after they are taken are "other" (default 20)
  --web-config <f>    serve: TLS and basic auth, node_exporter's web config format
  --from <url>        advise: use a running ctstorm serve's measurements
                      (e.g. http://127.0.0.1:9477) instead of watching
                      --duration seconds here (default 60)
  --headroom <pct>    advise, serve: room over the entries needed (default 50)
  --what-if-reconnects <n> --within <s>
                      advise, serve: size for n clients reconnecting within
                      s seconds (serve: the ctstorm_advice_* metrics)
  --sysctl            advise: print an /etc/sysctl.d/ snippet
  --netns <ns>        advise: the netns whose timeouts are advised and applied
                      (ip netns name, /proc/PID/ns/net, or inode; default ctstorm's)
  --apply             advise: write the advised settings after showing the diff
  --yes               advise --apply: do not ask (required without a terminal)
  --kubeconfig <f>    watch, snapshot, serve: name pods (namespace, pod, workload)
                      from the Kubernetes API with this kubeconfig
  --in-cluster        the same, with the pod's own service account (DaemonSet)
  --kubelet <url>     the same, from the kubelet's read-only /pods
                      (e.g. http://127.0.0.1:10255/pods)
  --node <name>       this node, whose pods the API is asked for
                      (default $NODE_NAME, then the hostname)
  --cgroupfs <dir>    watch, snapshot, serve: the host's cgroup2 mount, where
                      processes' cgroups are named (default: from mountinfo;
                      in a container, mount the host's /sys/fs/cgroup and give it)
  --ring-bytes <n>    ring buffer size, a power of two (default 16777216)
  --debug             libbpf's log on stderr
  -h, --help          this text
  --version           ctstorm's version`;

export interface CliIO {
  out: (text: string) => void;
  err: (text: string) => void;
  /** For tests: a stand-in for the compiled addon and the sysctl files. */
  native?: NativeBinding;
  readTable?: () => TableInfo;
  readKernelStats?: () => KernelStats;
  /** Terminal columns and rows for watch; undefined when stdout is not a terminal. */
  columns?: () => number | undefined;
  rows?: () => number | undefined;
  signal?: AbortSignal;
  /** Asks a yes/no question (false once `signal` fires); undefined when there is no terminal to ask on. */
  confirm?: (question: string, signal?: AbortSignal) => Promise<boolean>;
}

const options = {
  mode: { type: 'string' },
  duration: { type: 'string' },
  json: { type: 'boolean' },
  census: { type: 'boolean' },
  listen: { type: 'string' },
  'web-config': { type: 'string' },
  'max-netns': { type: 'string' },
  interval: { type: 'string' },
  'ring-bytes': { type: 'string' },
  from: { type: 'string' },
  headroom: { type: 'string' },
  'what-if-reconnects': { type: 'string' },
  within: { type: 'string' },
  sysctl: { type: 'boolean' },
  netns: { type: 'string' },
  apply: { type: 'boolean' },
  yes: { type: 'boolean' },
  kubeconfig: { type: 'string' },
  'in-cluster': { type: 'boolean' },
  kubelet: { type: 'string' },
  node: { type: 'string' },
  cgroupfs: { type: 'string' },
  debug: { type: 'boolean' },
  help: { type: 'boolean', short: 'h' },
  version: { type: 'boolean' },
} satisfies ParseArgsConfig['options'];

const usageError = (problem: string, fix = 'see: ctstorm --help'): CtstormError => new CtstormError(problem, fix, 'EUSAGE');

const NEGATIVE_FIX: Record<string, string> = {
  'ring-bytes': 'use a power of two between 4096 and 1073741824',
  headroom: 'give a percentage from 0 to 1000, e.g. --headroom 50',
};

const POD_OPTIONS = ['kubeconfig', 'in-cluster', 'kubelet', 'node', 'cgroupfs'] as const;
const CGROUP2_SUPER_MAGIC = 0x63677270;

/** --cgroupfs: a cgroup2 mount, or on a hybrid host (v1 controllers) the
 * cgroup2 mount in its `unified` directory; else a one-line error. */
function cgroupfs(raw: string | undefined): CgroupIndex | undefined {
  if (raw === undefined) return undefined;
  const isCgroup2 = (dir: string): boolean => {
    try {
      return Number(statfsSync(dir).type) === CGROUP2_SUPER_MAGIC;
    } catch {
      return false;
    }
  };
  try {
    statfsSync(raw);
  } catch (err) {
    throw usageError(`--cgroupfs ${raw}: ${(err as NodeJS.ErrnoException).code ?? 'unreadable'}`, 'give the host\'s cgroup2 mount, e.g. /sys/fs/cgroup');
  }
  if (isCgroup2(raw)) return new CgroupIndex({ mount: raw });
  if (isCgroup2(`${raw}/unified`)) return new CgroupIndex({ mount: `${raw}/unified` });
  throw usageError(`--cgroupfs ${raw} is not a cgroup2 mount, nor holds one in unified/`, 'give the host\'s cgroup2 mount, e.g. /sys/fs/cgroup');
}

/** The options each command takes (besides --help and --version). */
const COMMAND_OPTIONS: Record<string, ReadonlyArray<keyof typeof options>> = {
  watch: ['mode', 'interval', 'ring-bytes', 'debug', ...POD_OPTIONS],
  snapshot: ['mode', 'duration', 'json', 'census', 'ring-bytes', 'debug', ...POD_OPTIONS],
  buckets: ['mode', 'duration', 'json', 'ring-bytes', 'debug'],
  serve: ['mode', 'listen', 'max-netns', 'web-config', 'headroom', 'what-if-reconnects', 'within', 'ring-bytes', 'debug', ...POD_OPTIONS],
  modes: ['json', 'ring-bytes', 'debug'],
  doctor: ['json', 'ring-bytes', 'debug'],
  advise: ['mode', 'duration', 'from', 'headroom', 'what-if-reconnects', 'within', 'json', 'sysctl', 'netns', 'apply', 'yes', 'ring-bytes', 'debug'],
};

/** A flag given to a command it does not apply to is a usage error, not ignored. */
function checkApplies(command: string, given: Record<string, unknown>): void {
  const allowed = COMMAND_OPTIONS[command];
  if (!allowed) return;
  for (const name of Object.keys(given)) {
    if (name === 'help' || name === 'version' || given[name] === undefined) continue;
    if (!allowed.includes(name as keyof typeof options)) {
      throw usageError(`option --${name} does not apply to ${command}`, `${command} takes: ${allowed.map((o) => `--${o}`).join(', ')}`);
    }
  }
}

function parse(argv: string[]): ReturnType<typeof parseArgs<{ options: typeof options; allowPositionals: true }>> {
  // parseArgs reads "--duration -1" as a flag with no value: name the bad value instead.
  argv.forEach((arg, i) => {
    const name = arg.startsWith('--') ? arg.slice(2) : undefined;
    const next = argv[i + 1];
    if (name && options[name as keyof typeof options]?.type === 'string' && next !== undefined && /^-\d/.test(next)) {
      throw usageError(`bad --${name} "${next}"`, NEGATIVE_FIX[name] ?? `give --${name} a value above 0`);
    }
  });
  try {
    return parseArgs({ args: argv, options, allowPositionals: true, strict: true });
  } catch (err) {
    const code = (err as { code?: string }).code;
    const message = err instanceof Error ? err.message : String(err);
    const flag = /'([^']+)'/.exec(message)?.[1];
    if (code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION') throw usageError(`unknown option ${flag ?? ''}`.trim());
    if (code === 'ERR_PARSE_ARGS_INVALID_OPTION_VALUE') throw usageError(`option ${flag ?? ''} needs a value`.trim());
    throw usageError(message.split('.')[0] ?? message);
  }
}

function seconds(name: string, raw: string | undefined, fallback?: number, min = 0): number {
  if (raw === undefined) {
    if (fallback !== undefined) return fallback;
    throw usageError(`--${name} is required`, `give it in seconds, e.g. --${name} 5`);
  }
  const value = Number(raw);
  if (!/^(\d+(\.\d*)?|\.\d+)$/.test(raw.trim()) || !Number.isFinite(value) || value <= 0 || value > 86400) {
    throw usageError(`bad --${name} "${raw}"`, `give seconds as a number above 0 and at most 86400, e.g. --${name} 5`);
  }
  if (value < min) throw usageError(`bad --${name} "${raw}"`, `give at least ${min} seconds`);
  return value;
}

function listenAddress(raw: string | undefined): { host: string; port: number } {
  if (raw === undefined) return { host: '127.0.0.1', port: 9477 };
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([^:\s]*)):(\d{1,5})$/.exec(raw.trim());
  const port = Number(m?.[3]);
  if (!m || !Number.isInteger(port) || port > 65535) {
    throw usageError(`bad --listen "${raw}"`, 'give host:port, e.g. --listen 127.0.0.1:9477 or --listen [::1]:9477');
  }
  return { host: m[1] ?? (m[2] || '0.0.0.0'), port };
}

function count(name: string, raw: string | undefined, fallback: number, max: number): number {
  if (raw === undefined) return fallback;
  const value = Number(raw);
  if (!/^\d+$/.test(raw.trim()) || value < 1 || value > max) throw usageError(`bad --${name} "${raw}"`, `give a whole number from 1 to ${max}`);
  return value;
}

function mode(raw: string | undefined): ModeChoice {
  if (raw === undefined || raw === 'auto') return 'auto';
  if (isMode(raw)) return raw;
  throw usageError(`unknown mode "${raw}"`, `use one of: auto, ${MODES.join(', ')}`);
}

function ringBytes(raw: string | undefined): number | undefined {
  if (raw === undefined) return undefined;
  const value = Number(raw);
  if (!/^\d+$/.test(raw) || value < 4096 || (value & (value - 1)) !== 0 || value > 1 << 30) {
    throw usageError(`bad --ring-bytes "${raw}"`, 'use a power of two between 4096 and 1073741824');
  }
  return value;
}

/** --headroom and --what-if-reconnects/--within, for advise and serve's headline. */
function adviceFlags(values: { headroom?: string; 'what-if-reconnects'?: string; within?: string }): {
  headroom: number;
  whatIf: { reconnects: number; withinSeconds: number } | undefined;
} {
  const reconnects = values['what-if-reconnects'];
  if ((reconnects === undefined) !== (values.within === undefined)) {
    throw usageError('--what-if-reconnects and --within go together', 'e.g. --what-if-reconnects 200000 --within 30');
  }
  const pct = values.headroom === undefined ? 50 : Number(values.headroom);
  if (values.headroom !== undefined && (!/^\d+(\.\d+)?$/.test(values.headroom.trim()) || pct > 1000)) {
    throw usageError(`bad --headroom "${values.headroom}"`, 'give a percentage from 0 to 1000, e.g. --headroom 50');
  }
  return {
    headroom: pct / 100,
    whatIf: reconnects === undefined ? undefined : { reconnects: count('what-if-reconnects', reconnects, 0, 1e9), withinSeconds: seconds('within', values.within) },
  };
}


function summary(s: Snapshot): string {
  const t = s.table;
  const fullest = t.fullest
    ? `fullest netns ${t.fullest.inode}: ${fmt(t.fullest.entries)} / ${fmt(t.max)} (${t.fillPercent?.toFixed(1) ?? '-'}%), ${t.secondsToFull === null ? 'not growing' : `full in ${t.secondsToFull.toFixed(0)} s`}; ${fmt(t.totalEntries ?? 0)} entries in all netns`
    : `per-netns entries unknown (${s.census.pending ?? 'no census'}); ${fmt(t.entries)} / ${fmt(t.max)} in ctstorm's netns`;
  const w = s.windows;
  const lines = [
    `mode ${s.mode} on ${s.kernel}, ${s.durationSeconds} s`,
    `table ${fullest}, ${fmt(t.buckets)} buckets`,
    `inserts ${fmt(s.totals.inserts)} (${fmt(s.rates.insertsPerSecond)}/s), destroys ${fmt(s.totals.destroys)} (${fmt(s.rates.destroysPerSecond)}/s), lost ${fmt(s.totals.lost)}`,
    `inserts/s over 1 s ${fmt(w['1s'].insertsPerSecond)}, 10 s ${fmt(w['10s'].insertsPerSecond)}, 60 s ${fmt(w['60s'].insertsPerSecond)}`,
  ];
  for (const p of s.protocols) lines.push(`  ${p.proto.padEnd(8)} ${fmt(p.inserts)} inserts, ${fmt(p.destroys)} destroys`);
  for (const n of s.netns.slice(0, 10)) {
    lines.push(`  netns ${n.inode}: ${fmt(n.inserts)} inserts, ${fmt(n.destroys)} destroys${n.entries === null ? '' : `, ${fmt(n.entries)} entries`}`);
  }
  const src = s.top.sources[0];
  const dst = s.top.destinations[0];
  if (src && dst) lines.push(`top source ${src.address} (${fmt(src.inserts)} inserts), top destination ${dst.address}:${dst.port} (${fmt(dst.inserts)}), in the last complete ${s.top.epochSeconds} s`);
  if (s.kernelStats) {
    const k = s.kernelStats.sinceStart;
    lines.push(`kernel (ctstorm's netns, since start): drop ${fmt(k.drop ?? 0)}, early_drop ${fmt(k.early_drop ?? 0)}, insert_failed ${fmt(k.insert_failed ?? 0)}`);
  }
  const storm = s.storms.current;
  if (storm) lines.push(`storm running for ${storm.durationSeconds} s: peak ${fmt(storm.peakPerSecond)} inserts/s (baseline ${fmt(storm.baselinePerSecond)}/s)`);
  for (const past of s.storms.past.slice(0, 3)) {
    lines.push(`storm of ${past.durationSeconds} s: peak ${fmt(past.peakPerSecond)} inserts/s, ${fmt(past.inserts)} inserts${past.netns[0] ? `, mostly netns ${past.netns[0].inode}` : ''}`);
  }
  if (s.buckets) {
    const b = s.buckets;
    lines.push(`census: ${fmt(b.entries)} entries in ${fmt(b.buckets)} buckets, longest chain ${b.longest}, ${fmt(b.empty)} empty (uniform hashing: ${fmt(b.emptyExpected)}), ${(b.seconds * 1000).toFixed(0)} ms`);
  } else if (s.buckets === null) {
    lines.push(`census: none (${s.census.pending ?? 'unknown'})`);
  }
  lines.push(s.exactness.exact ? 'counts exact' : 'counts NOT exact:');
  for (const note of s.exactness.notes) lines.push(`  ${note}`);
  return lines.join('\n');
}

/** Runs the CLI; resolves with the exit code. */
export async function main(argv: string[], io: CliIO): Promise<number> {
  try {
    const { values, positionals } = parse(argv);
    if (values.version) {
      io.out(VERSION);
      return 0;
    }
    const [command, ...extra] = positionals;
    if (values.help || command === 'help') {
      io.out(USAGE);
      return 0;
    }
    if (command === undefined) throw usageError('no command given', 'use: ctstorm watch, ctstorm snapshot --duration 5 --json, ctstorm buckets, or ctstorm modes');
    if (extra.length > 0) throw usageError(`unexpected argument "${extra[0]}"`);
    checkApplies(command, values);
    const common = {
      mode: mode(values.mode),
      ringBytes: ringBytes(values['ring-bytes']),
      debug: values.debug ?? false,
      native: io.native,
    };
    const signal = io.signal ?? new AbortController().signal;
    // Names: cgroups where asked, pods from the API or the kubelet (before the probe loads: a bad flag changes nothing).
    const cgroups = cgroupfs(values.cgroupfs);
    const pods = ['watch', 'snapshot', 'serve'].includes(command)
      ? startPodDirectory(
          { kubeconfig: values.kubeconfig, inCluster: values['in-cluster'], kubelet: values.kubelet, node: values.node },
          (message) => io.err(`ctstorm: naming pods: ${message}`),
        )
      : null;
    const names = { ...(pods ? { pods } : {}), ...(cgroups ? { cgroups } : {}) };
    const unreadable = ['watch', 'snapshot', 'serve'].includes(command) ? procNetnsUnreadable() : undefined;
    if (unreadable) {
      io.err(`ctstorm: cannot read other processes' netns links (${unreadable}); netns are named by pod addresses and cgroups only: run as root with CAP_SYS_PTRACE (in a container, with hostPID too)`);
    }
    const monitor = { readTable: io.readTable, readKernelStats: io.readKernelStats, ...(Object.keys(names).length > 0 ? { names } : {}) };
    // One line on stderr the moment the probe counts, so a script knows when to start.
    const attached = (mode: string): void => io.err(`ctstorm: attached in ${mode} mode, counting`);

    try {
      switch (command) {
        case 'snapshot': {
          const durationSeconds = seconds('duration', values.duration);
          const snap = await takeSnapshot({
            ...common,
            ...monitor,
            durationSeconds,
            census: values.census ?? false,
            signal,
            onReady: (source) => attached(source.mode),
          });
          io.out(values.json ? JSON.stringify(snap) : summary(snap));
          return 0;
        }
        case 'watch': {
          const intervalSeconds = seconds('interval', values.interval, 1, MIN_INTERVAL_SECONDS);
          const columns = io.columns ?? (() => (process.stdout.isTTY ? process.stdout.columns : undefined));
          // A terminal is redrawn in place; a pipe gets frames one after another.
          const write = (frame: string): void => io.out(columns() !== undefined ? `\x1b[H\x1b[2J${frame}` : `${frame}\n`);
          const rows = io.rows ?? (() => (process.stdout.isTTY ? process.stdout.rows : undefined));
          await watch({ ...common, ...monitor, intervalSeconds, signal, write, columns, rows, onReady: (m) => attached(m.source.mode) });
          return 0;
        }
        case 'buckets': {
          const waitSeconds = seconds('duration', values.duration, 10);
          const census = await bucketsWait({ ...common, ...monitor, waitSeconds, signal, onReady: (m) => attached(m.source.mode) });
          io.out(values.json ? JSON.stringify(census) : bucketsChart(census, io.columns?.() ?? (process.stdout.isTTY ? process.stdout.columns : 80)));
          return 0;
        }
        case 'serve': {
          // Loaded here only: prom-client and the web stack are ~13 MB of RSS that
          // watch, snapshot and advise do without.
          const [{ serve }, { loadWebConfig }, { createCollector }] = await Promise.all([
            import('./exporter/server.js'),
            import('./exporter/web-config.js'),
            import('./exporter/collector.js'),
          ]);
          const listen = listenAddress(values.listen);
          const maxNetns = count('max-netns', values['max-netns'], 20, 1000);
          // Read before the probe loads: a bad file changes nothing.
          const webConfig = values['web-config'] === undefined ? undefined : loadWebConfig(values['web-config']);
          const collector = createCollector({ ...common, ...monitor, maxNetns, advice: adviceFlags(values) });
          let running: Awaited<ReturnType<typeof serve>> | undefined;
          try {
            try {
              running = await serve(collector, { ...listen, webConfig });
            } catch (err) {
              const code = (err as NodeJS.ErrnoException).code ?? String(err);
              throw new CtstormError(`cannot listen on ${values.listen ?? '127.0.0.1:9477'} (${code})`, 'pick a free address with --listen host:port', 'ELISTEN');
            }
            const at = running.address;
            const scheme = webConfig?.tls ? 'https' : 'http';
            io.err(`ctstorm: attached in ${collector.monitor.source.mode} mode, serving ${scheme}://${at.family === 'IPv6' ? `[${at.address}]` : at.address}:${at.port}/metrics`);
            await collector.monitor.until(signal);
          } finally {
            // Both at once: the probe detaches whatever the clients do.
            const [server, probe] = await Promise.allSettled([running?.close(), collector.close()]);
            if (probe.status === 'rejected') throw probe.reason; // a drain failure
            if (server.status === 'rejected') throw server.reason;
          }
          return 0;
        }
        case 'advise': {
          if (values.from !== undefined && values.duration !== undefined) throw usageError('--from and --duration exclude each other', 'give --from to use a running serve, or --duration to watch here');
          if (values.json && values.sysctl) throw usageError('--json and --sysctl exclude each other', 'pick one output');
          if (values.yes && !values.apply) throw usageError('--yes applies to --apply only', 'add --apply, or drop --yes');
          if (values.apply && !values.yes && !io.confirm) throw usageError('--apply needs a yes, and this shell cannot ask', 'add --yes to apply without asking (the diff is still printed)');
          const { headroom, whatIf } = adviceFlags(values);
          return await runAdvise(
            {
              durationSeconds: seconds('duration', values.duration, 60),
              from: values.from,
              netns: values.netns,
              headroom,
              whatIf,
              output: values.json ? 'json' : values.sysctl ? 'sysctl' : 'report',
              apply: values.apply ?? false,
              yes: values.yes ?? false,
              snapshot: { ...common, ...monitor, signal, onReady: (source) => attached(source.mode) },
              native: io.native,
            },
            { out: io.out, err: io.err, confirm: io.confirm },
          );
        }
        case 'modes': {
          const report = probeModes({ ringBytes: common.ringBytes, debug: common.debug, native: io.native });
          if (values.json) io.out(JSON.stringify(report));
          else for (const r of report) io.out(`${r.mode.padEnd(10)} ${r.available ? 'yes' : 'no '}  ${r.available ? r.hooks : r.reason}`);
          return report.some((r) => r.available) ? 0 : 1; // a script can tell that nothing loads
        }
        case 'doctor': {
          const report = doctor({ native: io.native, ringBytes: common.ringBytes, debug: common.debug });
          const { lines, code } = renderDoctor(report);
          if (values.json) io.out(JSON.stringify(report));
          else for (const line of lines) io.out(line);
          return code;
        }
        default:
          throw usageError(`unknown command "${command}"`, 'use one of: watch, snapshot, buckets, serve, advise, modes, doctor');
      }
    } finally {
      await pods?.close();
    }
  } catch (err) {
    io.err(`ctstorm: ${errorLine(err)}`);
    return err instanceof CtstormError && err.code === 'EUSAGE' ? 2 : 1;
  }
}

/** y/N on the terminal; no (false) on Ctrl-C, end of input or `signal`. */
async function confirm(question: string, signal?: AbortSignal): Promise<boolean> {
  const rl = createInterface({ input: process.stdin, output: process.stderr });
  const abort = new AbortController();
  const stop = (): void => abort.abort();
  signal?.addEventListener('abort', stop, { once: true });
  // readline takes Ctrl-C from the terminal itself: pass it on as the signal it is.
  rl.on('SIGINT', () => process.kill(process.pid, 'SIGINT'));
  rl.on('close', stop);
  try {
    return /^y(es)?$/i.test((await rl.question(question, { signal: abort.signal })).trim());
  } catch {
    return false;
  } finally {
    signal?.removeEventListener('abort', stop);
    rl.close();
  }
}

function isEntryPoint(): boolean {
  try {
    return realpathSync(process.argv[1] ?? '') === realpathSync(fileURLToPath(import.meta.url));
  } catch {
    return false;
  }
}

if (isEntryPoint()) {
  const stop = new AbortController();
  // First Ctrl-C/TERM ends the run cleanly (probe detached, summary printed); one
  // more, a second or more later, exits at once.
  let firstSignalAt = 0;
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    process.on(sig, () => {
      if (!stop.signal.aborted) {
        firstSignalAt = Date.now();
        stop.abort();
      } else if (Date.now() - firstSignalAt >= REPEAT_SIGNAL_MS) {
        process.exit(130);
      }
    });
  }
  // A reader that went away (| head) ends ctstorm quietly; a full disk is one line
  // and exit 1. Neither lowers the exit code the command itself chose.
  let writeFailed = false;
  for (const stream of [process.stdout, process.stderr]) {
    stream.on('error', (err: NodeJS.ErrnoException) => {
      stop.abort();
      if (err.code === 'EPIPE') return;
      writeFailed = true;
      process.exitCode = 1;
      process.stderr.write(`ctstorm: cannot write the output (${err.code ?? err.message}); check where it goes\n`);
    });
  }
  const code = await main(process.argv.slice(2), {
    out: (t) => process.stdout.write(`${t}\n`),
    err: (t) => process.stderr.write(`${t}\n`),
    signal: stop.signal,
    confirm: process.stdin.isTTY ? confirm : undefined,
  });
  process.exitCode = code || (writeFailed ? 1 : 0);
}
