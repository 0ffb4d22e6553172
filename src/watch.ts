// `ctstorm watch`: a live view, redrawn every interval. Rendering is a pure
// function of two counter readings so it is testable without a terminal.
import { byNetns, diffCounters, exactness, totals, type KernelCounters } from './counters.js';
import { openSource, type Source, type SourceOptions } from './source.js';
import { readTable, type TableInfo } from './table.js';

export interface WatchFrame {
  source: Pick<Source, 'mode' | 'hooks'>;
  table: TableInfo;
  seconds: number;
  /** Counters now, and at the previous frame. */
  now: KernelCounters;
  before: KernelCounters;
  drainedRecords: number;
  topN?: number;
}

const fmt = (n: number): string => Math.round(n).toLocaleString('en-US');

/** Nothing while the counts are exact; otherwise why not, one line each. */
function exactLines(mode: string, c: KernelCounters): string[] {
  const e = exactness(mode, c);
  return e.exact ? [] : ['counts NOT exact:', ...e.notes.map((n) => `  ${n}`)];
}

export function renderFrame(f: WatchFrame): string {
  const delta = diffCounters(f.now, f.before);
  const rate = totals(delta);
  const all = totals(f.now);
  const fill = f.table.max > 0 ? (100 * f.table.entries) / f.table.max : 0;
  const lines = [
    `ctstorm watch · mode ${f.source.mode} · ${f.source.hooks}`,
    `table     ${fmt(f.table.entries)} / ${fmt(f.table.max)} entries in this netns (${fill.toFixed(1)}% full), ${fmt(f.table.buckets)} buckets`,
    `churn     ${fmt(rate.inserts / f.seconds)} inserts/s   ${fmt(rate.destroys / f.seconds)} destroys/s`,
    `records   ${fmt(f.drainedRecords / f.seconds)} drained/s   ${fmt(all.lost)} lost since start`,
    `since start ${fmt(all.inserts)} inserts, ${fmt(all.destroys)} destroys`,
    ...exactLines(f.source.mode, f.now),
    '',
    'top netns by inserts/s',
    `  ${'netns inode'.padEnd(12)} ${'inserts/s'.padStart(10)} ${'destroys/s'.padStart(11)}`,
  ];
  const top = byNetns(delta).slice(0, f.topN ?? 5);
  if (top.length === 0) lines.push('  (no churn)');
  for (const n of top) {
    lines.push(
      `  ${String(n.inode).padEnd(12)} ${fmt(n.inserts / f.seconds).padStart(10)} ${fmt(n.destroys / f.seconds).padStart(11)}`,
    );
  }
  return lines.join('\n');
}

export interface WatchOptions extends SourceOptions {
  intervalSeconds: number;
  signal: AbortSignal;
  write: (frame: string) => void;
}

/** Runs until the signal aborts: drains continuously, draws every interval. A
 * failed drain ends the watch with its error (never an unhandled rejection). */
export async function watch(options: WatchOptions): Promise<void> {
  const source = openSource(options);
  const stop = new AbortController();
  const onAbort = (): void => stop.abort();
  options.signal.addEventListener('abort', onAbort, { once: true });
  if (options.signal.aborted) stop.abort(); // aborted before the listener was added
  let drained = 0;
  let failure: unknown;
  const drain = (async () => {
    try {
      while (!stop.signal.aborted) {
        const batch = await source.poll(100);
        drained += batch.count; // after the await: a reset made meanwhile is kept
      }
    } catch (err) {
      failure = err;
      stop.abort();
    }
  })();
  try {
    let before = source.counters();
    let last = performance.now();
    while (!stop.signal.aborted) {
      await sleep(options.intervalSeconds * 1000, stop.signal);
      if (stop.signal.aborted) break;
      const now = source.counters();
      const t = performance.now();
      options.write(
        renderFrame({ source, table: readTable(), seconds: (t - last) / 1000, now, before, drainedRecords: drained }),
      );
      before = now;
      last = t;
      drained = 0;
    }
  } finally {
    stop.abort();
    options.signal.removeEventListener('abort', onAbort);
    await drain;
    await source.close();
  }
  if (failure !== undefined) throw failure;
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(done, ms);
    signal.addEventListener('abort', done, { once: true });
    function done(): void {
      clearTimeout(timer);
      signal.removeEventListener('abort', done);
      resolve();
    }
  });
}
