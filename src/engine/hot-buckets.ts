// Hot buckets: hash chains that receive far more inserts than uniform hashing
// explains, the mark of a hash flood. Exact per-bucket insert counts (one
// Uint32 per bucket) over epochs of the top-talker length; when an epoch ends,
// each bucket's count is tested against Poisson(m / B), m being the bucket hits
// of the epoch (two per insert: both directions) and B the bucket count.
//
// The test: a bucket is hot when P(X >= count) <= FALSE_ALARM / B under that
// Poisson law (Bonferroni over all buckets), so in an epoch of uniform hashing
// the chance that any bucket at all is flagged is at most FALSE_ALARM (1e-6: once
// in ~115 days of 10 s epochs). The Poisson law is the limit of the binomial
// B(m, 1/B) and bounds it from above in the tail, so the rate holds.

import { poissonThreshold } from './poisson.js';

export const HOT_BUCKET_FALSE_ALARM = 1e-6;
/** Buckets counted at most (64 MiB of counts). */
export const MAX_BUCKETS = 1 << 24;
/** Hot buckets reported per epoch at most (the hottest first). */
export const HOT_BUCKETS_KEPT = 10;

export interface HotBucket {
  bucket: number;
  /** Inserts that joined this bucket's chain in the epoch (either direction). */
  hits: number;
}

export interface HotBucketsView {
  /** Bucket hits in the last complete epoch (two per insert). */
  hits: number;
  /** Hits per bucket expected under uniform hashing. */
  expectedPerBucket: number;
  /** A bucket with at least this many hits is hot. */
  threshold: number;
  buckets: HotBucket[];
}

export class HotBuckets {
  private counts: Uint32Array;
  private hits = 0;
  private last: HotBucketsView;

  constructor(private size: number) {
    this.counts = new Uint32Array(size);
    this.last = { hits: 0, expectedPerBucket: 0, threshold: 0, buckets: [] };
  }

  add(bucket: number): void {
    if (bucket >= this.size) {
      // A bucket past the size given: the table was resized. Grow to it, up to a
      // bound on memory (the kernel's own hash is never this large in practice).
      if (bucket >= MAX_BUCKETS) return;
      this.grow(bucket + 1);
    }
    this.counts[bucket]!++;
    this.hits++;
  }

  /** Closes the epoch: tests its counts and starts a new one. `skipped` epochs
   * with no insert at all came in between. */
  endEpoch(skipped = false): void {
    this.last = skipped ? { hits: 0, expectedPerBucket: 0, threshold: 0, buckets: [] } : this.test();
    this.counts.fill(0);
    this.hits = 0;
  }

  view(): HotBucketsView {
    return this.last;
  }

  private test(): HotBucketsView {
    const mean = this.hits / this.size;
    if (this.hits === 0) return { hits: 0, expectedPerBucket: 0, threshold: 0, buckets: [] };
    const threshold = poissonThreshold(mean, HOT_BUCKET_FALSE_ALARM / this.size);
    const hot: HotBucket[] = [];
    for (let b = 0; b < this.size; b++) {
      const n = this.counts[b]!;
      if (n >= threshold) hot.push({ bucket: b, hits: n });
    }
    hot.sort((a, b) => b.hits - a.hits || a.bucket - b.bucket);
    return { hits: this.hits, expectedPerBucket: mean, threshold, buckets: hot.slice(0, HOT_BUCKETS_KEPT) };
  }

  private grow(size: number): void {
    // Exactly what the records show: the size is the test's B.
    const next = new Uint32Array(size);
    next.set(this.counts);
    this.counts = next;
    this.size = next.length;
  }
}
