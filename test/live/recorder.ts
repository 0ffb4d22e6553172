// Drains a source in the background and keeps the records of one netns, so a
// test can act, then wait for exactly what it expects to see.
import { afterAll, beforeAll } from 'vitest';
import { byNetns, openSource, type CtRecord, type ModeChoice, type NetnsCounts, type Source } from '../../src/index.js';
import type { NetnsPair } from './netns.js';

export class Recorder {
  readonly records: CtRecord[] = [];
  private stopped = false;
  private loop: Promise<void> | undefined;
  readonly source: Source;

  constructor(
    private readonly inode: number,
    mode: ModeChoice,
  ) {
    this.source = openSource({ mode });
    this.loop = this.run();
  }

  private async run(): Promise<void> {
    while (!this.stopped) {
      for (const r of await this.source.poll(50)) if (r.netns === this.inode) this.records.push(r);
    }
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
    await this.loop;
    await this.source.close();
  }
}

/** Call inside a per-mode describe block: before its tests, empties the pair's
 * table and starts a Recorder in that mode; after them, closes it. */
export function useRecorder(pair: NetnsPair, mode: ModeChoice): () => Recorder {
  let rec: Recorder | undefined;
  beforeAll(async () => {
    await pair.empty();
    rec = new Recorder(pair.serverInode, mode);
  });
  afterAll(async () => rec?.close());
  return () => {
    if (!rec) throw new Error('useRecorder: no recorder outside the tests of its describe block');
    return rec;
  };
}
