// Drains a source in the background and keeps the records of one netns, so a
// test can act, then wait for exactly what it expects to see.
import { afterAll, beforeAll } from 'vitest';
import { byNetns, openSource, type CtRecord, type ModeChoice, type NetnsCounts, type Source, type SourceOptions } from '../../src/index.js';
import type { NetnsPair } from './netns.js';

export class Recorder {
  readonly records: CtRecord[] = [];
  private stopped = false;
  private paused: (() => void) | undefined;
  private pausing: Promise<void> | undefined;
  private loop: Promise<void> | undefined;
  readonly source: Source;

  constructor(
    private readonly inode: number,
    mode: ModeChoice,
    options: Omit<SourceOptions, 'mode'> = {},
  ) {
    this.source = openSource({ ...options, mode });
    this.loop = this.run();
  }

  private async run(): Promise<void> {
    while (!this.stopped) {
      if (this.pausing) {
        await new Promise<void>((resume) => {
          this.paused!();
          this.paused = resume;
        });
        continue;
      }
      for (const r of await this.source.poll(50)) if (r.netns === this.inode) this.records.push(r);
    }
  }

  /** Stops draining (and so, in tracepoint mode, sweeping) until resume(). */
  async pause(): Promise<void> {
    this.pausing = new Promise<void>((r) => (this.paused = r));
    await this.pausing;
  }

  resume(): void {
    const resume = this.paused;
    this.pausing = undefined;
    this.paused = undefined;
    resume?.();
  }

  of(type: 'insert' | 'destroy'): CtRecord[] {
    return this.records.filter((r) => r.type === type);
  }

  /** Exact kernel counters of this netns since the probe loaded. */
  counters(): NetnsCounts | undefined {
    return byNetns(this.source.counters()).find((n) => n.inode === this.inode);
  }

  async close(): Promise<void> {
    this.stopped = true;
    this.resume();
    await this.loop;
    await this.source.close();
  }
}

/** Call inside a per-mode describe block: before its tests, empties the pair's
 * table and starts a Recorder in that mode; after them, closes it. */
export function useRecorder(pair: NetnsPair, mode: ModeChoice, options: Omit<SourceOptions, 'mode'> = {}): () => Recorder {
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
