// Log-scale histogram of durations: four buckets per octave from 1/1024 s to
// 2^20 s (about 12 days), so any quantile it reports is within 2^(1/4) - 1
// (under 19%) of a true value in the same bucket, and within 2^(1/8) - 1 (under
// 9.1%) when reported as the bucket's geometric middle. The exporter's
// histograms use every fourth edge (the powers of two), so their buckets are
// exact sums of these.

export const BUCKETS_PER_OCTAVE = 4;
export const MIN_EXPONENT = -10; // 2^-10 s ~ 1 ms
export const MAX_EXPONENT = 20; // 2^20 s ~ 12 days

/** Upper edges in seconds, ascending; a last, open bucket holds the rest. */
export const EDGES_SECONDS: readonly number[] = Array.from(
  { length: (MAX_EXPONENT - MIN_EXPONENT) * BUCKETS_PER_OCTAVE + 1 },
  (_, i) => 2 ** (MIN_EXPONENT + i / BUCKETS_PER_OCTAVE),
);

/** The exporter's coarser edges: the powers of two among EDGES_SECONDS. */
export const EXPORT_EDGES_SECONDS: readonly number[] = EDGES_SECONDS.filter((_, i) => i % BUCKETS_PER_OCTAVE === 0);

/** Largest relative error of a reported quantile (geometric middle of its bucket). */
export const QUANTILE_RELATIVE_ERROR = 2 ** (1 / (2 * BUCKETS_PER_OCTAVE)) - 1;

/** Index of the bucket a duration falls in: the first edge >= seconds. */
export function bucketOf(seconds: number): number {
  if (!(seconds > EDGES_SECONDS[0]!)) return 0;
  const i = Math.ceil((Math.log2(seconds) - MIN_EXPONENT) * BUCKETS_PER_OCTAVE - 1e-9);
  return Math.min(i, EDGES_SECONDS.length);
}

export interface Quantiles {
  count: number;
  p50: number | null;
  p90: number | null;
  p99: number | null;
  /** Exact: the longest duration seen. */
  max: number | null;
  sum: number;
}

export class LogHistogram {
  /** One count per edge, plus the open bucket above the last edge. */
  readonly counts = new Float64Array(EDGES_SECONDS.length + 1);
  count = 0;
  sum = 0;
  max = 0;

  add(seconds: number): void {
    this.counts[bucketOf(seconds)]! += 1;
    this.count++;
    this.sum += seconds;
    if (seconds > this.max) this.max = seconds;
  }

  /** The q-quantile (0 < q <= 1) as the geometric middle of its bucket, capped at max. */
  quantile(q: number): number | null {
    if (this.count === 0) return null;
    const rank = Math.ceil(q * this.count);
    let seen = 0;
    for (let i = 0; i < this.counts.length; i++) {
      seen += this.counts[i]!;
      if (seen >= rank) {
        if (i === 0) return Math.min(EDGES_SECONDS[0]!, this.max);
        if (i === EDGES_SECONDS.length) return this.max;
        const middle = Math.sqrt(EDGES_SECONDS[i - 1]! * EDGES_SECONDS[i]!);
        return Math.min(middle, this.max);
      }
    }
    return this.max;
  }

  summary(): Quantiles {
    return {
      count: this.count,
      p50: this.quantile(0.5),
      p90: this.quantile(0.9),
      p99: this.quantile(0.99),
      max: this.count ? this.max : null,
      sum: this.sum,
    };
  }

  /** The mean lifetime corrected for a watch of `watchedSeconds`: an entry that
   * lives l seconds is seen (inserted and destroyed while watched) only if it was
   * inserted in the first T - l seconds, so each is weighted by 1 / (T - l)
   * (bucket middles for the weights, applied as a ratio to the exact mean).
   * Lifetimes longer than the watch cannot be seen at all. Null when empty. */
  meanWatched(watchedSeconds: number): number | null {
    if (this.count === 0) return null;
    const mean = this.sum / this.count;
    if (!Number.isFinite(watchedSeconds)) return mean;
    let plain = 0;
    let weighted = 0;
    let weights = 0;
    for (let i = 0; i < this.counts.length; i++) {
      const c = this.counts[i]!;
      if (c === 0) continue;
      const m = i === 0 ? EDGES_SECONDS[0]! / 2 : i === EDGES_SECONDS.length ? this.max : Math.min(Math.sqrt(EDGES_SECONDS[i - 1]! * EDGES_SECONDS[i]!), this.max);
      // A lifetime near the watch's length has a tiny chance to be seen: cap its weight.
      const w = 1 / Math.max(watchedSeconds - m, watchedSeconds / 20);
      plain += c * m;
      weighted += c * m * w;
      weights += c * w;
    }
    return plain > 0 ? mean * (weighted / weights) / (plain / this.count) : mean;
  }

  /** Cumulative counts at EXPORT_EDGES_SECONDS (Prometheus `le` buckets). */
  exportBuckets(): number[] {
    const out: number[] = [];
    let cumulative = 0;
    for (let i = 0; i < EDGES_SECONDS.length; i++) {
      cumulative += this.counts[i]!;
      if (i % BUCKETS_PER_OCTAVE === 0) out.push(cumulative);
    }
    return out;
  }
}
