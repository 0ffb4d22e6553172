// Keeps the records of one netns from a Monitor (the one drain loop), so a test
// can act, then wait for exactly what it expects to see.
import { afterAll, beforeAll } from 'vitest';
import { byNetns, Monitor, type CtRecord, type ModeChoice, type MonitorOptions, type NetnsCounts, type Source } from '../../src/index.js';
import type { NetnsPair } from './netns.js';

export class Recorder {
  readonly records: CtRecord[] = [];
  readonly monitor: Monitor;

  constructor(
    private readonly inode: number,
    mode: ModeChoice,
    options: Omit<MonitorOptions, 'mode'> = {},
  ) {
    this.monitor = new Monitor({ censusIntervalSeconds: 0, ...options, mode });
    this.monitor.onBatch((batch) => {
      for (let i = 0; i < batch.count; i++) if (batch.netns(i) === inode) this.records.push(batch.decode(i));
    });
  }

  get source(): Source {
    return this.monitor.source;
  }

  /** Stops draining (and so, in tracepoint mode, sweeping) until resume(). */
  async pause(): Promise<void> {
    await this.monitor.pauseDrain();
  }

  resume(): void {
    this.monitor.resumeDrain();
  }

  of(type: 'insert' | 'destroy'): CtRecord[] {
    return this.records.filter((r) => r.type === type);
  }

  /** Exact kernel counters of this netns since the probe loaded. */
  counters(): NetnsCounts | undefined {
    return byNetns(this.source.counters()).find((n) => n.inode === this.inode);
  }

  async close(): Promise<void> {
    await this.monitor.close();
  }
}

/** Call inside a per-mode describe block: before its tests, empties the pair's
 * table and starts a Recorder in that mode; after them, closes it. */
export function useRecorder(pair: NetnsPair, mode: ModeChoice, options: Omit<MonitorOptions, 'mode'> = {}): () => Recorder {
  let rec: Recorder | undefined;
  beforeAll(async () => {
    await pair.empty();
    rec = new Recorder(pair.serverInode, mode, options);
  });
  afterAll(async () => rec?.close());
  return () => {
    if (!rec) throw new Error('useRecorder: no recorder outside the tests of its describe block');
    return rec;
  };
}
