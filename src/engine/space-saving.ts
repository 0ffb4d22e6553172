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

  /**
   * Adds a batch of distinct keys with their exact counts at once: the batch is
   * merged as a second summary (Cafaro, Pulimeno and Tempesta, "A parallel space
   * saving algorithm", 2016). A key the sketch lacks enters at the sketch's
   * minimum count plus its own (the minimum bounds what an uncounted key may
   * have had, and becomes its error), and the k largest counts stay. The
   * guarantees of one-by-one adds hold: counts sum to at most the total, every
   * key above total / k stays, every count is bracketed by count - error and
   * count. One index lookup a key and O(k + m) besides, where a storm's
   * thousands of new keys, added one by one, each replaced the minimum (three
   * map operations and a walk down the heap).
   */
  addBatch(keys: ArrayLike<K>, counts: ArrayLike<number>, length: number): void {
    const heap = this.heap;
    const floor = heap.length === this.capacity ? heap[0]!.count : 0;
    let fresh = 0;
    for (let j = 0; j < length; j++) {
      const key = keys[j]!;
      const n = counts[j]!;
      this.total += n;
      const slot = this.index.get(key);
      if (slot !== undefined) {
        slot.count += n;
      } else {
        if (fresh === this.freshCounts.length) this.growScratch();
        this.freshKeys[fresh] = key;
        this.freshCounts[fresh++] = floor + n;
      }
    }
    let next = 0; // fresh keys taken so far, in order
    while (heap.length < this.capacity && next < fresh) {
      const added = { key: this.freshKeys[next]!, count: this.freshCounts[next]!, error: floor, pos: heap.length };
      next++;
      heap.push(added);
      this.index.set(added.key, added);
    }
    if (next < fresh) this.replaceSmallest(next, fresh, floor);
    this.freshKeys.length = 0; // keys are not kept alive by the scratch
    for (let i = (heap.length >> 1) - 1; i >= 0; i--) this.down(i);
  }

  /** addBatch with a full sketch: the counts of the sketch and of the fresh keys
   * [from, to) compete for the k places; ties keep what is in the sketch. */
  private replaceSmallest(from: number, to: number, floor: number): void {
    const heap = this.heap;
    const k = heap.length;
    const all = this.scratchAll(k + to - from);
    for (let i = 0; i < k; i++) all[i] = heap[i]!.count;
    for (let j = from; j < to; j++) all[k + j - from] = this.freshCounts[j]!;
    const threshold = kthLargest(all, k + to - from, k);
    // Places at the threshold: k minus the counts above it.
    let above = 0;
    for (let i = 0; i < k; i++) if (heap[i]!.count > threshold) above++;
    for (let j = from; j < to; j++) if (this.freshCounts[j]! > threshold) above++;
    let atThreshold = k - above;
    // The sketch's entries that stay: above it, or at it while places remain.
    const out: Array<Slot<K>> = [];
    for (let i = 0; i < k; i++) {
      const slot = heap[i]!;
      if (slot.count > threshold) continue;
      if (slot.count === threshold && atThreshold > 0) {
        atThreshold--;
        continue;
      }
      out.push(slot);
    }
    // Fresh keys take the places of those that leave: all above the threshold,
    // then as many at it as places remain.
    let o = 0;
    for (let j = from; j < to && o < out.length; j++) {
      const count = this.freshCounts[j]!;
      if (count < threshold || (count === threshold && atThreshold-- <= 0)) continue;
      const slot = out[o++]!;
      this.index.delete(slot.key);
      slot.key = this.freshKeys[j]!;
      slot.count = count;
      slot.error = floor;
      this.index.set(slot.key, slot);
    }
  }

  private freshKeys: K[] = [];
  private freshCounts = new Float64Array(1024);
  private all = new Float64Array(1024);

  private growScratch(): void {
    const counts = new Float64Array(this.freshCounts.length * 2);
    counts.set(this.freshCounts);
    this.freshCounts = counts;
  }

  private scratchAll(n: number): Float64Array {
    if (this.all.length < n) this.all = new Float64Array(2 ** Math.ceil(Math.log2(n)));
    return this.all;
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

/** The k-th largest of a[0..n) (k >= 1), by quickselect; reorders a. */
export function kthLargest(a: Float64Array, n: number, k: number): number {
  let lo = 0;
  let hi = n - 1;
  const want = k - 1; // index in descending order
  while (lo < hi) {
    const pivot = a[(lo + hi) >> 1]!;
    let i = lo;
    let j = hi;
    while (i <= j) {
      while (a[i]! > pivot) i++;
      while (a[j]! < pivot) j--;
      if (i <= j) {
        const t = a[i]!;
        a[i] = a[j]!;
        a[j] = t;
        i++;
        j--;
      }
    }
    if (want <= j) hi = j;
    else if (want >= i) lo = i;
    else return a[want]!;
  }
  return a[want]!;
}
