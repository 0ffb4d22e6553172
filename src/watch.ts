// `ctstorm watch`: the live view an operator keeps open through an incident,
// redrawn every interval from the monitor's view. Rendering is a pure function
// of the view, so it is testable without a terminal or a kernel.
import { exactness } from './counters.js';
import type { Named } from './attribution/namer.js';
import type { Rates, StormView, Talker } from './engine/engine.js';
import { Monitor, type MonitorOptions, type MonitorView } from './monitor.js';
import { fmt } from './format.js';

export interface FrameOptions {
  /** Terminal columns (lines are cut to fit); Infinity when not a terminal. */
  width: number;
  /** Unicode bars and sparklines; plain ASCII when false (not a terminal). */
  unicode: boolean;
  /** Records drained per second since the previous frame. */
  drainedPerSecond: number;
  /** Rows of top netns and peers shown. */
  topN?: number;
  /** Terminal rows: sections that do not fit are left out, most important first
   * kept. Infinity (default) when not a terminal. */
  height?: number;
  /** Wall clock (ms) for the census's age; Date.now() by default. */
  nowMs?: number;
}

const pad = (s: string, n: number): string => s.padStart(n);
const SPARKS = '▁▂▃▄▅▆▇█';

function sparkline(series: readonly number[], unicode: boolean): string {
  const max = Math.max(...series, 0);
  if (max === 0) return unicode ? SPARKS[0]!.repeat(series.length) : '.'.repeat(series.length);
  const marks = unicode ? SPARKS : ' .:-=+*#';
  return series.map((v) => marks[Math.min(marks.length - 1, Math.floor((v / max) * (marks.length - 1) + (v > 0 ? 0.999 : 0)))]).join('');
}

function bar(fraction: number, width: number, unicode: boolean): string {
  const filled = Math.round(Math.min(1, Math.max(0, fraction)) * width);
  return unicode ? '█'.repeat(filled) + '░'.repeat(width - filled) : `[${'#'.repeat(filled)}${'.'.repeat(width - filled)}]`;
}

function duration(seconds: number): string {
  if (seconds < 60) return `${seconds.toFixed(seconds < 10 ? 1 : 0)} s`;
  if (seconds < 3600) return `${Math.floor(seconds / 60)} min ${Math.round(seconds % 60)} s`;
  if (seconds < 86400) return `${(seconds / 3600).toFixed(1)} h`;
  return `${(seconds / 86400).toFixed(1)} d`;
}

function lifetime(seconds: number | null): string {
  if (seconds === null) return '-';
  if (seconds < 1) return `${Math.round(seconds * 1000)}ms`;
  return duration(seconds).replace(' ', '');
}

/** "shop/checkout-7d9f8c6b5-x2k4q" or a unit, for a named row; '' when nothing is known. */
function who(n: Named | undefined): string {
  if (!n) return '';
  if (n.pod) return n.namespace ? `${n.namespace}/${n.pod}` : n.pod;
  if (n.podUid) return `pod uid ${n.podUid}`;
  return n.unit ?? '';
}

function peer(t: Talker): string {
  const at = t.port === undefined ? t.address : t.address.includes(':') ? `[${t.address}]:${t.port}` : `${t.address}:${t.port}`;
  const name = who(t);
  return `${at}${name ? ` (${name})` : ''} ${fmt(t.inserts)}${t.error > 0 ? ` (±${fmt(t.error)})` : ''}`;
}

/** A netns as people know it: its pod, unit or main processes; '' when unknown. */
function netnsName(v: MonitorView, inode: number): string {
  const n = v.netnsNames[inode];
  return n?.host ? 'host' : who(n) || (n?.processes ? n.processes.join(',') : '');
}

function tableLines(v: MonitorView, o: FrameOptions): string[] {
  const t = v.table;
  const fill = t.fill;
  const lines: string[] = [];
  if (!fill.known) {
    const own = t.max > 0 ? ` (${((100 * t.entries) / t.max).toFixed(1)}%)` : '';
    lines.push(`table     ${fmt(t.entries)} / ${fmt(t.max)} entries in ctstorm's netns${own}; other netns unknown until the census (${v.census.pending ?? 'pending'})`);
  } else if (!fill.fullest) {
    lines.push(`table     empty in every netns · limit ${fmt(t.max)} per netns`);
  } else {
    // The numbers first: on a narrow terminal the bar is what gets cut.
    const f = fill.fullest;
    const pct = f.fillPercent === null ? 'no limit' : `${f.fillPercent.toFixed(1)}% full`;
    const full = f.secondsToFull === null ? 'not growing' : `full in ${duration(f.secondsToFull)}`;
    const barWidth = Math.max(10, Math.min(30, o.width - 75));
    lines.push(`fullest   ${pct}, ${full}: netns ${f.inode} ${fmt(f.entries)} / ${fmt(t.max)} ${bar(f.fillPercent === null ? 0 : f.fillPercent / 100, barWidth, o.unicode)}`);
  }
  const total = fill.total === null ? 'unknown' : fmt(fill.total);
  const last = v.census.last;
  const census = last
    ? ` · census ${duration(Math.max(0, ((o.nowMs ?? Date.now()) - Date.parse(last.at)) / 1000))} ago${v.census.churnDuring ? ` (±${fmt(v.census.churnDuring)})` : ''}`
    : '';
  lines.push(`          ${total} entries in all netns · ${fmt(t.entries)} in ctstorm's · ${fmt(t.buckets)} buckets${census}`);
  return lines;
}

function churnLines(v: MonitorView, o: FrameOptions): string[] {
  const w = v.engine.windows;
  const cols = ['1s', '10s', '60s', 'ewma'] as const;
  const row = (name: string, pick: (r: Rates) => number): string =>
    `  ${name.padEnd(11)}${cols.map((c) => pad(fmt(pick(w[c])), 11)).join('')}`;
  const series = v.engine.insertsSeries;
  const width = Math.max(10, Math.min(series.length, o.width - 30));
  return [
    `churn      ${cols.map((c) => pad(c, 11)).join('')}`,
    row('inserts/s', (r) => r.insertsPerSecond),
    row('destroys/s', (r) => r.destroysPerSecond),
    row('net/s', (r) => r.netPerSecond),
    `  inserts/s, last ${width} s ${sparkline(series.slice(-width), o.unicode)} peak ${fmt(Math.max(0, ...series.slice(-width)))}`,
  ];
}

function kernelLines(v: MonitorView): string[] {
  const k = v.kernelStats;
  if (!k) return ['kernel    no /proc/net/stat/nf_conntrack in this netns'];
  const names = ['drop', 'early_drop', 'insert_failed', 'chaintoolong', 'clash_resolve', 'search_restart'];
  const shown = names.filter((n) => n in k.sinceStart).map((n) => `${n} ${fmt(k.perSecond[n] ?? 0)}/s (${fmt(k.sinceStart[n] ?? 0)})`);
  return [`kernel    in ctstorm's netns, per second (since start): ${shown.join(' · ')}`];
}

function stormLine(s: StormView, now: number, running: boolean, names?: (inode: number) => string): string {
  const ago = running ? `since ${duration(s.durationSeconds)}` : `${duration(now - (s.endSeconds ?? now))} ago, lasted ${duration(s.durationSeconds)}`;
  const ns = s.netns[0] ? ` · netns ${s.netns[0].inode}${names?.(s.netns[0].inode) ? ` (${names(s.netns[0].inode)})` : ''} ${fmt(s.netns[0].inserts)}` : '';
  const pct = s.cause ? Math.floor(100 * s.cause.share) : 0;
  const cause = !s.cause ? '' : s.cause.share >= 0.5 ? ` · ${pct}% from ${s.cause.name}` : ` · no single cause (the largest, ${s.cause.name}, ${pct}%)`;
  const src = s.sources[0] ? ` · from ${peer(s.sources[0])}` : '';
  const dst = s.destinations[0] ? ` · to ${peer(s.destinations[0])}` : '';
  return `${ago}: peak ${fmt(s.peakPerSecond)}/s (baseline ${fmt(s.baselinePerSecond)}/s), +${fmt(s.inserts)} inserts, -${fmt(s.destroys)} destroys${cause}${ns}${src}${dst}`;
}

function stormLines(v: MonitorView): string[] {
  const st = v.engine.storms;
  const now = v.engine.atSeconds;
  const learning = st.baselineLearnedSeconds < 60 ? `, learned from ${st.baselineLearnedSeconds} s: a storm already running at the start is taken as normal` : '';
  const names = (inode: number): string => netnsName(v, inode);
  const lines = [st.current ? `STORM     ${stormLine(st.current, now, true, names)}` : `storms    none now (baseline ${fmt(st.baselinePerSecond)} inserts/s${learning})`];
  for (const past of st.past.slice(0, 3)) lines.push(`  past    ${stormLine(past, now, false, names)}`);
  if (st.past.length > 3) lines.push(`  ... ${st.past.length - 3} more (snapshot --json lists them)`);
  return lines;
}

function netnsLines(v: MonitorView, o: FrameOptions): string[] {
  const fill = new Map(v.table.fill.netns.map((n) => [`${n.cookie}/${n.inode}`, n]));
  const rows = v.engine.netns.slice(0, o.topN ?? 5);
  const lines = [`top netns  ${pad('inserts/s', 10)} ${pad('destroys/s', 11)} ${pad('entries', 10)} ${pad('fill', 7)}  (10 s)`];
  if (rows.length === 0) lines.push('  (no churn)');
  for (const n of rows) {
    const f = fill.get(`${n.cookie}/${n.inode}`);
    const entries = v.table.fill.known ? fmt(f?.entries ?? 0) : '?';
    const pct = f?.fillPercent == null ? '' : `${f.fillPercent.toFixed(1)}%`;
    const w = n.windows['10s'];
    const name = netnsName(v, n.inode);
    lines.push(`  ${String(n.inode).padEnd(11)}${pad(fmt(w.insertsPerSecond), 8)} ${pad(fmt(w.destroysPerSecond), 11)} ${pad(entries, 10)} ${pad(pct, 7)}${name ? `  ${name}` : ''}`);
  }
  return lines;
}

function epochWords(top: { epochSeconds: number; partial: boolean }): string {
  return top.partial ? `so far in this ${top.epochSeconds} s` : `in the last complete ${top.epochSeconds} s`;
}

function processLines(v: MonitorView, o: FrameOptions): string[] {
  const top = v.engine.top.processes.slice(0, o.topN ?? 5);
  const c = v.engine.contexts;
  const made = c.process + c.softirq + c.kernel + c.unknown;
  const share = made > 0 ? ` · ${((100 * c.process) / made).toFixed(0)}% of inserts made by a local process, ${((100 * c.softirq) / made).toFixed(0)}% in softirq (received, forwarded, or crossing into another netns: a pod's own traffic seen by the host's)` : '';
  const lines = [`top processes by inserts, ${epochWords(v.engine.top)}${share}`];
  if (top.length === 0) lines.push('  (none)');
  for (const p of top) {
    const name = who(p) || p.cgroup || '';
    const container = p.container ? ` container ${p.container}` : '';
    lines.push(`  ${pad(fmt(p.inserts), 8)}  ${p.comm} (${p.pid})${name ? ` ${name}` : ''}${container}`);
  }
  return lines;
}

function peerLines(v: MonitorView, o: FrameOptions): string[] {
  const top = v.engine.top;
  const n = o.topN ?? 5;
  const src = top.sources.slice(0, n).map(peer);
  const dst = top.destinations.slice(0, n).map(peer);
  const title = `top peers by inserts, ${epochWords(top)}`;
  if (src.length === 0) return [title, '  (no inserts)'];
  const colWidth = Math.max(...src.map((s) => s.length), 'sources'.length) + 3;
  if (o.width < colWidth + 30) return [title, '  sources', ...src.map((s) => `    ${s}`), '  destinations', ...dst.map((s) => `    ${s}`)];
  const lines = [title, `  ${'sources'.padEnd(colWidth)}destinations`];
  for (let i = 0; i < Math.max(src.length, dst.length); i++) lines.push(`  ${(src[i] ?? '').padEnd(colWidth)}${dst[i] ?? ''}`);
  if (top.backends.length > 0) lines.push(`  DNAT'd to ${top.backends.slice(0, 3).map(peer).join(' · ')}`);
  return lines;
}

function lifetimeLines(v: MonitorView): string[] {
  const rows = v.engine.lifetimes.filter((r) => r.count > 0 || r.predating > 0);
  const lines = [`lifetimes  ${'proto/state'.padEnd(16)}${pad('ended', 9)}${pad('p50', 9)}${pad('p90', 9)}${pad('p99', 9)}${pad('max', 9)}${pad('older', 8)}`];
  if (rows.length === 0) lines.push('  (no entry ended yet)');
  for (const r of rows.slice(0, 8)) {
    const name = r.state ? `${r.proto}/${r.state}` : r.proto;
    lines.push(`  ${name.padEnd(25)}${pad(fmt(r.count), 9)}${pad(lifetime(r.p50), 9)}${pad(lifetime(r.p90), 9)}${pad(lifetime(r.p99), 9)}${pad(lifetime(r.max), 9)}${pad(fmt(r.predating), 8)}`);
  }
  return lines;
}

function chainLines(v: MonitorView): string[] {
  const c = v.engine.chains;
  if (c.inserts === 0) return ['chains    no insert with a chain length yet'];
  const joined = 2 * c.inserts;
  const cells = Object.entries(c.histogram)
    .slice(0, 6)
    .map(([len, n]) => {
      const ideal = v.chainsExpected?.[Number(len)];
      return `${len}: ${((100 * n) / joined).toFixed(1)}%${ideal === undefined ? '' : ` (${((100 * ideal) / joined).toFixed(1)}%)`}`;
    });
  const hot = v.engine.hotBuckets;
  const lines = [
    `chains    length joined: share of joins (uniform hashing's share): ${cells.join('  ')}`,
    `          longest ${c.longest}${c.capped ? ` (${fmt(c.capped)} walks capped)` : ''} · collisions ${((100 * c.collisions) / c.inserts).toFixed(1)}% of inserts · hot buckets ${hot.buckets.length === 0 ? 'none' : hot.buckets.map((b) => `${b.bucket} (${fmt(b.hits)}, expected ${hot.expectedPerBucket.toFixed(1)})`).join(', ')}`,
  ];
  return lines;
}

/** One frame of the watch screen. */
export function renderFrame(v: MonitorView, o: FrameOptions): string {
  const e = exactness(v.mode, v.counters);
  const totals = v.engine.totals;
  const lost = v.counters.protocols.reduce((n, p) => n + p.lost, 0);
  // Most important first: on a short terminal the last sections are left out.
  const sections = [
    [`ctstorm watch · mode ${v.mode} · up ${duration(v.uptimeSeconds)} · ${v.hooks}`],
    tableLines(v, o),
    churnLines(v, o),
    [
      `records   ${fmt(o.drainedPerSecond)} drained/s · ${fmt(lost)} lost · since start ${fmt(totals.inserts)} inserts, ${fmt(totals.destroys)} destroys`,
      ...(e.exact ? [] : ['counts NOT exact:', ...e.notes.map((n) => `  ${n}`)]),
    ],
    stormLines(v),
    kernelLines(v),
    netnsLines(v, o),
    processLines(v, o),
    peerLines(v, o),
    lifetimeLines(v),
    chainLines(v),
  ];
  const height = o.height ?? Infinity;
  const shown: string[][] = [];
  let used = 0;
  for (const [i, section] of sections.entries()) {
    const need = section.length + (shown.length > 0 ? 1 : 0);
    const left = sections.length - i - 1;
    // Room for it, and for the line that says what was left out if anything is.
    if (used + need + (left > 0 ? 2 : 0) > height && i > 0) {
      shown.push([`(${sections.length - i} more sections: a taller terminal shows them, or: ctstorm snapshot --json)`]);
      break;
    }
    shown.push(section);
    used += need;
  }
  // Not a terminal: plain ASCII for logs and pagers.
  const ascii = (line: string): string => (o.unicode ? line : line.replaceAll('·', '-').replaceAll('±', '+/-'));
  const cut = (line: string): string => (line.length > o.width ? `${line.slice(0, Math.max(0, o.width - 1))}${o.unicode ? '…' : '~'}` : line);
  return shown.map((s) => s.map((line) => cut(ascii(line))).join('\n')).join('\n\n');
}

export interface WatchOptions extends MonitorOptions {
  intervalSeconds: number;
  signal: AbortSignal;
  write: (frame: string) => void;
  /** Terminal columns, read for every frame; undefined when not a terminal. */
  columns?: () => number | undefined;
  /** Terminal rows, read for every frame; undefined when not a terminal. */
  rows?: () => number | undefined;
  /** Called once the probe is attached and counting. */
  onReady?: (monitor: Monitor) => void;
}

/** Runs until the signal aborts: the monitor drains continuously, a frame is drawn
 * every interval. A failed drain ends the watch with its error. */
export async function watch(options: WatchOptions): Promise<void> {
  const monitor = new Monitor({ ...options, tickMs: options.intervalSeconds * 1000 });
  options.onReady?.(monitor);
  let before = { at: performance.now(), drained: 0 };
  const stop = monitor.subscribe((view) => {
    const now = performance.now();
    const seconds = (now - before.at) / 1000;
    const columns = options.columns?.();
    options.write(
      renderFrame(view, {
        width: columns ?? Infinity,
        height: options.rows?.() ?? Infinity,
        unicode: columns !== undefined,
        drainedPerSecond: seconds > 0 ? (view.records.drained - before.drained) / seconds : 0,
      }),
    );
    before = { at: now, drained: view.records.drained };
  });
  try {
    await monitor.until(options.signal);
  } finally {
    stop();
    await monitor.close(); // rethrows a drain failure
  }
}
