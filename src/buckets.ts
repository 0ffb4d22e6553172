// `ctstorm buckets`: one census of the whole hash table, told as a chart of
// chain lengths against uniform hashing, and the entries of every netns.
import type { CensusView } from './engine/census-view.js';
import { CtstormError } from './errors.js';
import { Monitor, type MonitorOptions } from './monitor.js';
import { fmt } from './format.js';

export interface BucketsOptions extends MonitorOptions {
  /** How long to wait for the insert that shows where the table is. */
  waitSeconds: number;
  signal?: AbortSignal;
  onReady?: (monitor: Monitor) => void;
}

const RETRY_MS = 200;

/** Attaches, waits until an insert has located the table, walks it once. */
export async function bucketsWait(options: BucketsOptions): Promise<CensusView> {
  const monitor = new Monitor({ ...options, censusIntervalSeconds: 0 });
  try {
    options.onReady?.(monitor);
    const deadline = performance.now() + options.waitSeconds * 1000;
    for (;;) {
      const census = await monitor.census();
      if (census) return census;
      const { pending, blocked } = monitor.view().census;
      const why = pending ?? '';
      if (blocked === 'failed') throw new CtstormError(why, 'run with --debug for the libbpf log', 'ECENSUS');
      if (blocked === 'unsupported') throw new CtstormError(why, 'use a BPF mode: ctstorm modes', 'ECENSUS');
      if (options.signal?.aborted) throw new CtstormError('interrupted before the table was located', 'let it run until one conntrack entry is created', 'EINTR');
      if (performance.now() >= deadline) {
        throw new CtstormError(
          `no census in ${options.waitSeconds} s (${why})`,
          'make one connection through conntrack (any netns), or wait longer: --duration 60',
          'ENOTLOCATED',
        );
      }
      await new Promise((r) => setTimeout(r, RETRY_MS));
    }
  } finally {
    await monitor.close();
  }
}


/** The census as text: one row per chain length, a bar for the buckets found and
 * the count uniform hashing predicts beside it. */
export function bucketsChart(c: CensusView, columns: number): string {
  const lines = [
    `census: ${fmt(c.buckets)} buckets, ${fmt(c.entries)} entries, ${fmt(c.nodes)} nodes`,
    `         mean chain ${c.meanChain.toFixed(3)} nodes, walked in ${(c.seconds * 1000).toFixed(0)} ms`,
    '',
    `${'chain'.padStart(5)} ${'buckets'.padStart(11)} ${'share'.padStart(7)}   ${'uniform'.padStart(11)} ${'share'.padStart(7)}`,
  ];
  // 47 columns of numbers, two of space, the bar and its '|' mark: within `columns`.
  const barWidth = Math.max(0, Math.min(40, columns - 47 - 3));
  const top = Math.max(1, ...c.chains.map((r) => Math.max(r.buckets, r.expected)));
  const pct = (n: number): string => `${((100 * n) / Math.max(1, c.buckets)).toFixed(2)}%`;
  c.chains.forEach((r, i) => {
    const label = i === c.chains.length - 1 && r.length === 128 ? `${r.length}+` : String(r.length);
    const bar = '#'.repeat(Math.round((r.buckets / top) * barWidth));
    const mark = Math.min(barWidth, Math.round((r.expected / top) * barWidth));
    // The bar is what the table holds; '|' marks where uniform hashing would end it.
    const cells = bar.padEnd(barWidth + 1).split('');
    cells[mark] = '|';
    const drawn = barWidth > 0 ? `  ${cells.join('').trimEnd()}` : '';
    lines.push(`${label.padStart(5)} ${fmt(r.buckets).padStart(11)} ${pct(r.buckets).padStart(7)}   ${fmt(r.expected).padStart(11)} ${pct(r.expected).padStart(7)}${drawn}`);
  });
  if (barWidth > 0) lines.push('  bars: # buckets found, | where uniform hashing ends the bar');
  lines.push('', `longest chain ${c.longest} · empty buckets ${fmt(c.empty)} (uniform: ${fmt(c.emptyExpected)})`);
  if (c.netns.length > 0) {
    lines.push('entries by netns (inode: entries)');
    for (const n of c.netns.slice(0, 10)) lines.push(`  ${n.inode}: ${fmt(n.entries)}`);
    if (c.netns.length > 10) lines.push(`  ... ${c.netns.length - 10} more (--json lists all)`);
  }
  const unsure = c.moved + c.readErrors + c.netnsOverflow;
  lines.push(
    unsure === 0
      ? 'every chain walked to its own end: exact for the moment of the walk'
      : `the table changed during the walk: ${c.moved} chains moved, ${c.readErrors} reads failed, ${c.netnsOverflow} entries without a netns row`,
  );
  return lines.join('\n');
}
