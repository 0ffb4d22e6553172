// A stand-in for the compiled addon: scripted counters and record batches, and
// modes that "the kernel" refuses with a given errno.
import type { NativeBinding, NativeCensus, NativeCounters, NativeProbe, NativeProbeOptions } from '../../src/native.js';
import { RECORD_SIZE, RECORD_VERSION } from '../../src/record.js';

export interface FakeScript {
  /** errno (negative) per refused mode, with the loader's message. */
  refuse?: Partial<Record<string, { errno: number; message: string }>>;
  /** Successive counters() answers; the last one repeats. */
  counters: NativeCounters[];
  /** poll() answers (record bytes), one per poll in order; then empty polls. A test
   * may push more while the probe runs: each is handed out once. */
  batches?: Uint8Array[];
  /** Once the batches are used up, poll() rejects with this (a failed drain). */
  pollError?: Error;
  /** deleteNetnsRow() answers false (the kernel had no such row). */
  deleteFails?: boolean;
  /** What a census finds; absent: the table is never located. censusRuns: how
   * many censusRun() calls it takes. */
  census?: NativeCensus;
  censusRuns?: number;
}

export interface DeletedRow {
  cookie: number;
  inode: number;
  l4proto: number;
}

export function fakeNative(script: FakeScript): NativeBinding & { opened: NativeProbeOptions[]; closed: number; deleted: DeletedRow[] } {
  const state = { opened: [] as NativeProbeOptions[], closed: 0, deleted: [] as DeletedRow[] };
  class FakeProbe implements NativeProbe {
    private reads = 0;
    private delivered = 0;
    constructor(readonly mode: string, options: NativeProbeOptions) {
      const refused = script.refuse?.[mode];
      if (refused) throw Object.assign(new Error(refused.message), { errno: refused.errno });
      state.opened.push(options);
    }
    async poll(buf: Uint8Array, timeoutMs: number): Promise<number> {
      const next = script.batches?.[this.delivered];
      if (!next) {
        if (script.pollError) throw script.pollError;
        await new Promise((r) => setTimeout(r, Math.min(timeoutMs, 20)));
        return 0;
      }
      this.delivered++;
      buf.set(next);
      return next.byteLength;
    }
    counters(): NativeCounters {
      const i = Math.min(this.reads++, script.counters.length - 1);
      return structuredClone(script.counters[i]!); // a fresh answer each time, as the addon gives
    }
    sweep(): void {}
    private censusLeft = 0;
    censusStart(): 'started' | 'not-located' {
      this.censusLeft = script.censusRuns ?? 1;
      return script.census !== undefined ? 'started' : 'not-located';
    }
    censusRun(): 'running' | 'done' {
      return --this.censusLeft <= 0 ? 'done' : 'running';
    }
    censusRead(): NativeCensus {
      return script.census!;
    }
    deleteNetnsRow(cookie: number, inode: number, l4proto: number): boolean {
      if (script.deleteFails) return false;
      state.deleted.push({ cookie, inode, l4proto });
      return true;
    }
    close(): void {
      state.closed++;
    }
  }
  return Object.assign(state, {
    Probe: FakeProbe,
    recordSize: RECORD_SIZE,
    recordVersion: RECORD_VERSION,
    hooks: { fentry: 'fentry hooks', kprobe: 'kprobe hooks', tracepoint: 'tracepoint hooks' },
  });
}
