// Exact per-second counts over a sliding window: a ring of one-second slots.
// Pure: time comes in as whole seconds of the probe's clock (CLOCK_MONOTONIC).

/** Seconds the ring remembers; the longest window the engine reports. */
export const SLOT_SECONDS = 60;

export class SecondSlots {
  private readonly slots: Float64Array;
  /** The second the newest slot holds; -1 before the first add. */
  private head = -1;

  constructor(readonly seconds = SLOT_SECONDS) {
    this.slots = new Float64Array(seconds);
  }

  /** Adds n events that happened in second `sec`. Events older than the ring are
   * dropped (they are in the totals, not in any window); returns false for them. */
  add(sec: number, n = 1): boolean {
    if (sec > this.head) this.advance(sec);
    if (sec <= this.head - this.seconds) return false;
    this.slots[sec % this.seconds]! += n;
    return true;
  }

  /** Events in the `window` whole seconds before `nowSec` (nowSec itself, still
   * filling, is not counted): exact for window <= the ring's length. */
  sum(nowSec: number, window: number): number {
    if (window > this.seconds) throw new RangeError(`window ${window} s is longer than the ring (${this.seconds} s)`);
    let total = 0;
    for (let s = nowSec - window; s < nowSec; s++) {
      if (s > this.head || s <= this.head - this.seconds || s < 0) continue;
      total += this.slots[s % this.seconds]!;
    }
    return total;
  }

  /** Events in second `sec` (0 when outside the ring). */
  at(sec: number): number {
    return sec > this.head || sec <= this.head - this.seconds || sec < 0 ? 0 : this.slots[sec % this.seconds]!;
  }

  /** Counts of the `window` whole seconds before nowSec, oldest first (sparklines). */
  series(nowSec: number, window: number): number[] {
    const out: number[] = [];
    for (let s = nowSec - window; s < nowSec; s++) {
      out.push(s > this.head || s <= this.head - this.seconds || s < 0 ? 0 : this.slots[s % this.seconds]!);
    }
    return out;
  }

  private advance(sec: number): void {
    // Clear the slots of the seconds skipped since the newest one.
    const from = Math.max(this.head + 1, sec - this.seconds + 1);
    for (let s = from; s <= sec; s++) this.slots[s % this.seconds] = 0;
    this.head = sec;
  }
}
