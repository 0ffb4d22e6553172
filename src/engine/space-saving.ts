// Heavy hitters in bounded memory: the Space-Saving algorithm (Metwally, Agrawal
// and El Abbadi, 2005). With room for k keys, after a stream of n events:
// - every key whose true count exceeds n / k is in the summary;
// - a key's reported count overestimates its true count by at most its `error`,
//   and error <= n / k (the count of the key it replaced when it came in).
// Memory is O(k); an event costs O(log k) (a min-heap on the counts).

export interface HeavyHitter<K> {
  key: K;
  /** Upper bound of the true count. */
  count: number;
  /** count - error is a lower bound of the true count. */
  error: number;
}

/** A counter in the heap; it knows its own position, so moving it in the heap
 * touches no map (the map lookup is once per add). */
interface Slot<K> extends HeavyHitter<K> {
  pos: number;
}

export class SpaceSaving<K> {
  private readonly index = new Map<K, Slot<K>>();
  private readonly heap: Array<Slot<K>> = [];
  /** Events seen. */
  total = 0;

  constructor(readonly capacity: number) {
    if (!Number.isInteger(capacity) || capacity < 1) throw new RangeError(`capacity must be a positive integer, got ${capacity}`);
  }

  /** Counts n events of key; `error`: how far n itself may be over (merging). */
  add(key: K, n = 1, error = 0): void {
    this.total += n;
    const slot = this.index.get(key);
    if (slot !== undefined) {
      slot.count += n;
      slot.error += error;
      this.down(slot.pos);
      return;
    }
    if (this.heap.length < this.capacity) {
      const added = { key, count: n, error, pos: this.heap.length };
      this.heap.push(added);
      this.index.set(key, added);
      this.up(added.pos);
      return;
    }
    // Replace the smallest: the newcomer inherits its count as possible error.
    const min = this.heap[0]!; // reused in place: no allocation per replacement
    this.index.delete(min.key);
    min.error = min.count + error;
    min.count += n;
    min.key = key;
    this.index.set(key, min);
    this.down(0);
  }

  /** Adds another summary's counts (its errors carried over). The summary of
   * both streams, with error bound at most the sum of the two bounds. */
  merge(other: SpaceSaving<K>): void {
    for (const h of other.heap) this.add(h.key, h.count, h.error); // counts sum to the total
  }

  /** The largest counts, biggest first. */
  top(n = this.capacity): Array<HeavyHitter<K>> {
    return [...this.heap]
      .sort((a, b) => b.count - a.count || a.error - b.error)
      .slice(0, n)
      .map((h) => ({ key: h.key, count: h.count, error: h.error }));
  }

  /** The bound on any reported count's overestimate: total / capacity. */
  get errorBound(): number {
    return this.total / this.capacity;
  }

  clear(): void {
    this.index.clear();
    this.heap.length = 0;
    this.total = 0;
  }

  private swap(i: number, j: number): void {
    const a = this.heap[i]!;
    const b = this.heap[j]!;
    this.heap[i] = b;
    this.heap[j] = a;
    b.pos = i;
    a.pos = j;
  }

  private up(i: number): void {
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (this.heap[parent]!.count <= this.heap[i]!.count) return;
      this.swap(i, parent);
      i = parent;
    }
  }

  private down(i: number): void {
    for (;;) {
      const l = 2 * i + 1;
      const r = l + 1;
      let smallest = i;
      if (l < this.heap.length && this.heap[l]!.count < this.heap[smallest]!.count) smallest = l;
      if (r < this.heap.length && this.heap[r]!.count < this.heap[smallest]!.count) smallest = r;
      if (smallest === i) return;
      this.swap(i, smallest);
      i = smallest;
    }
  }
}
