// A census of the hash table told against what uniform hashing predicts: with
// n nodes (two per entry) in B buckets, a chain's length is Poisson(n / B).
import type { NativeCensus } from '../native.js';
import { poissonPmf } from './poisson.js';

export interface ChainRow {
  /** Nodes in the chain (the last row: this many or more). */
  length: number;
  buckets: number;
  /** Buckets with this length under uniform hashing. */
  expected: number;
}

export interface CensusView {
  /** Wall-clock time the census ended (ISO 8601). */
  at: string;
  seconds: number;
  buckets: number;
  nodes: number;
  entries: number;
  /** Mean chain length, nodes / buckets. */
  meanChain: number;
  empty: number;
  emptyExpected: number;
  longest: number;
  chains: ChainRow[];
  /** Entries per netns at the census, most first. */
  netns: Array<{ cookie: number; inode: number; entries: number }>;
  /** Bucket walks that met another bucket's marker (an entry moved during the
   * walk; the bucket was walked again), unreadable buckets or nodes, entries the
   * census map had no room for: all 0 on a quiet table, where the counts are exact. */
  moved: number;
  readErrors: number;
  netnsOverflow: number;
  /** NAT clash entries (in the table by their reply node alone). */
  natClash: number;
}

export function censusView(c: NativeCensus & { seconds: number }, at: Date): CensusView {
  const mean = c.buckets > 0 ? c.nodes / c.buckets : 0;
  const last = c.histogram.length - 1;
  // Rows up to the longest chain seen, and on while uniform hashing expects a bucket.
  let rows = Math.max(c.longest, 1);
  while (rows < last && c.buckets * poissonPmf(mean, rows + 1) >= 0.5) rows++;
  const chains: ChainRow[] = [];
  let expectedSoFar = 0;
  for (let len = 0; len <= Math.min(rows, last); len++) {
    const tail = len === last;
    const expected = tail ? c.buckets * (1 - expectedSoFar / Math.max(c.buckets, 1)) : c.buckets * poissonPmf(mean, len);
    expectedSoFar += expected;
    chains.push({ length: len, buckets: c.histogram[len] ?? 0, expected });
  }
  return {
    at: at.toISOString(),
    seconds: c.seconds,
    buckets: c.buckets,
    nodes: c.nodes,
    entries: c.entries,
    meanChain: mean,
    empty: c.empty,
    emptyExpected: c.buckets * poissonPmf(mean, 0),
    longest: c.longest,
    chains,
    netns: [...c.netns].sort((a, b) => b.entries - a.entries || a.inode - b.inode),
    moved: c.moved,
    readErrors: c.readErrors,
    netnsOverflow: c.netnsOverflow,
    natClash: c.natClash,
  };
}
