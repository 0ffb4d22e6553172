// Storm onset and end from the per-second insert rate. Pure: fed one completed
// second at a time.
// - Baseline: an EWMA of inserts/s over about a minute, frozen while a storm runs
//   (so the storm does not become its own baseline).
// - Onset: a second with inserts >= max(floor, factor x baseline).
// - End: `quietSeconds` seconds in a row below max(floor, factor x baseline) / 2.
// Each storm keeps its peak, inserts and destroys while it ran, and the
// namespaces that inserted most; the last `maxPast` storms are kept.

export interface StormConfig {
  /** How many times its baseline the insert rate must reach. */
  factor: number;
  /** Inserts/s a storm must reach whatever the baseline (quiet tables). */
  floorPerSecond: number;
  /** Time constant of the baseline EWMA, seconds. */
  baselineSeconds: number;
  /** Seconds below half the onset threshold that end a storm. */
  quietSeconds: number;
  /** Past storms kept. */
  maxPast: number;
  /** Namespaces kept per storm (the ones with most inserts). */
  topNetns: number;
}

export const DEFAULT_STORM_CONFIG: StormConfig = {
  factor: 5,
  floorPerSecond: 1000,
  baselineSeconds: 60,
  quietSeconds: 3,
  maxPast: 20,
  topNetns: 5,
};

export interface Storm {
  startSeconds: number;
  /** Last second of the storm; null while it runs. */
  endSeconds: number | null;
  durationSeconds: number;
  baselinePerSecond: number;
  peakPerSecond: number;
  inserts: number;
  destroys: number;
  /** Namespaces by inserts during the storm (key: the engine's netns key). */
  netns: Array<{ key: number; inserts: number }>;
}

interface HeldSecond {
  sec: number;
  inserts: number;
  destroys: number;
  byNetns: ReadonlyMap<number, number> | undefined;
}

interface ActiveStorm extends Storm {
  byNetns: Map<number, number>;
  /** Quiet seconds since the last loud one (they end the storm at quietSeconds). */
  held: HeldSecond[];
}

export class StormDetector {
  private baseline: number | undefined;
  private learned = 0;
  /** Storms started, ever (the past list keeps only the last maxPast). */
  started = 0;
  private active: ActiveStorm | undefined;
  private readonly finished: Storm[] = [];
  private readonly alpha: number;

  constructor(readonly config: StormConfig = DEFAULT_STORM_CONFIG) {
    this.alpha = 1 - Math.exp(-1 / config.baselineSeconds);
  }

  /** One completed second: its inserts and destroys, and inserts by netns key. */
  tick(sec: number, inserts: number, destroys: number, insertsByNetns?: ReadonlyMap<number, number>): void {
    const base = this.baseline ?? inserts;
    const threshold = Math.max(this.config.floorPerSecond, this.config.factor * base);
    const s = this.active;
    if (!s && inserts >= threshold) {
      this.started++;
      this.active = {
        startSeconds: sec,
        endSeconds: null,
        durationSeconds: 0,
        baselinePerSecond: base,
        peakPerSecond: 0,
        inserts: 0,
        destroys: 0,
        netns: [],
        byNetns: new Map(),
        held: [],
      };
      this.add(this.active, sec, inserts, destroys, insertsByNetns);
      return;
    }
    const storm = this.active;
    if (storm) {
      const onset = Math.max(this.config.floorPerSecond, this.config.factor * storm.baselinePerSecond);
      if (inserts < onset / 2) {
        // Quiet: held apart, and part of the storm only if it flares up again.
        storm.held.push({ sec, inserts, destroys, byNetns: insertsByNetns });
        if (storm.held.length >= this.config.quietSeconds) this.end();
      } else {
        for (const h of storm.held.splice(0)) this.add(storm, h.sec, h.inserts, h.destroys, h.byNetns);
        this.add(storm, sec, inserts, destroys, insertsByNetns);
      }
      return; // the baseline stays frozen while a storm runs
    }
    this.baseline = this.baseline === undefined ? inserts : this.baseline + this.alpha * (inserts - this.baseline);
    this.learned++;
  }

  /** Seconds the baseline has learned from (a storm's seconds do not count). Until
   * about `baselineSeconds`, a storm that was already running at the start is
   * part of the baseline and not flagged. */
  get learnedSeconds(): number {
    return this.learned;
  }

  current(): Storm | null {
    return this.active ? this.snapshotOf(this.active) : null;
  }

  /** Finished storms, newest first. */
  past(): Storm[] {
    return [...this.finished].reverse();
  }

  get baselinePerSecond(): number {
    return this.baseline ?? 0;
  }

  private add(storm: ActiveStorm, sec: number, inserts: number, destroys: number, byNetns?: ReadonlyMap<number, number>): void {
    storm.durationSeconds = sec - storm.startSeconds + 1;
    storm.peakPerSecond = Math.max(storm.peakPerSecond, inserts);
    storm.inserts += inserts;
    storm.destroys += destroys;
    for (const [key, n] of byNetns ?? []) storm.byNetns.set(key, (storm.byNetns.get(key) ?? 0) + n);
  }

  private end(): void {
    const storm = this.active!;
    this.active = undefined;
    this.finished.push({ ...this.snapshotOf(storm), endSeconds: storm.startSeconds + storm.durationSeconds - 1 });
    if (this.finished.length > this.config.maxPast) this.finished.shift();
  }

  private snapshotOf(s: ActiveStorm): Storm {
    return {
      startSeconds: s.startSeconds,
      endSeconds: s.endSeconds,
      durationSeconds: s.durationSeconds,
      baselinePerSecond: s.baselinePerSecond,
      peakPerSecond: s.peakPerSecond,
      inserts: s.inserts,
      destroys: s.destroys,
      netns: [...s.byNetns]
        .map(([key, inserts]) => ({ key, inserts }))
        .sort((a, b) => b.inserts - a.inserts)
        .slice(0, this.config.topNetns),
    };
  }
}
