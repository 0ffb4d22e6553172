// Counts of 32-bit integer keys (IPv4 sources) within one batch, in typed arrays
// with open addressing: a storm brings thousands of distinct sources a batch, and
// a Map of them, filled and cleared every batch, cost the engine a fifth of its
// time in garbage collection. Cleared by the slots it touched, not by size.

export class IntCounter {
  private keys: Int32Array;
  private counts: Float64Array;
  private used: Uint8Array;
  /** Slots in first-seen order: iteration and clearing cost what was added. */
  private touched: Int32Array;
  private mask: number;
  size = 0;

  constructor(capacity = 1 << 14) {
    const slots = 2 ** Math.ceil(Math.log2(Math.max(16, capacity)));
    this.keys = new Int32Array(slots);
    this.counts = new Float64Array(slots);
    this.used = new Uint8Array(slots);
    this.touched = new Int32Array(slots);
    this.mask = slots - 1;
  }

  /** Adds one to `key` (an int32). */
  add(key: number): void {
    let slot = Math.imul(key, 0x9e3779b1) & this.mask;
    for (;;) {
      if (!this.used[slot]) {
        this.used[slot] = 1;
        this.keys[slot] = key;
        this.counts[slot] = 1;
        this.touched[this.size++] = slot;
        if (this.size * 2 > this.mask + 1) this.grow();
        return;
      }
      if (this.keys[slot] === key) {
        this.counts[slot]! += 1;
        return;
      }
      slot = (slot + 1) & this.mask;
    }
  }

  forEach(fn: (key: number, count: number) => void): void {
    for (let i = 0; i < this.size; i++) {
      const slot = this.touched[i]!;
      fn(this.keys[slot]!, this.counts[slot]!);
    }
  }

  /** The keys and their counts in first-seen order, in two arrays of the
   * counter's own (valid until the next add or clear): a sketch's addBatch takes
   * them as they are. */
  entries(): { keys: Int32Array; counts: Float64Array; length: number } {
    if (this.outKeys.length < this.size) {
      this.outKeys = new Int32Array(this.keys.length);
      this.outCounts = new Float64Array(this.keys.length);
    }
    for (let i = 0; i < this.size; i++) {
      const slot = this.touched[i]!;
      this.outKeys[i] = this.keys[slot]!;
      this.outCounts[i] = this.counts[slot]!;
    }
    return { keys: this.outKeys, counts: this.outCounts, length: this.size };
  }

  private outKeys = new Int32Array(0);
  private outCounts = new Float64Array(0);

  clear(): void {
    for (let i = 0; i < this.size; i++) this.used[this.touched[i]!] = 0;
    this.size = 0;
  }

  /** Keeps the table at most half full: twice the slots, every key placed again. */
  private grow(): void {
    const entries: Array<[number, number]> = [];
    this.forEach((k, n) => entries.push([k, n]));
    const slots = (this.mask + 1) * 2;
    this.keys = new Int32Array(slots);
    this.counts = new Float64Array(slots);
    this.used = new Uint8Array(slots);
    this.touched = new Int32Array(slots);
    this.mask = slots - 1;
    this.size = 0;
    for (const [k, n] of entries) {
      this.add(k);
      this.counts[this.touched[this.size - 1]!] = n;
    }
  }
}
