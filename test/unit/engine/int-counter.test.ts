// The batch's IPv4 source counts: exact per key, in first-seen order, through
// growth and clearing.
import { describe, expect, it } from 'vitest';
import { IntCounter } from '../../../src/engine/int-counter.js';

const entries = (c: IntCounter): Array<[number, number]> => {
  const out: Array<[number, number]> = [];
  c.forEach((k, n) => out.push([k, n]));
  return out;
};

describe('IntCounter', () => {
  it('counts each key, negative int32s included, in first-seen order', () => {
    const c = new IntCounter(16);
    for (const k of [5, -7, 5, 0x7fffffff, -7, 5, -0x80000000]) c.add(k);
    expect(entries(c)).toEqual([[5, 3], [-7, 2], [0x7fffffff, 1], [-0x80000000, 1]]);
  });

  it('grows past half full without losing a count, and clears to empty', () => {
    const c = new IntCounter(16);
    for (let round = 0; round < 3; round++) for (let k = 0; k < 1000; k++) c.add(k * 7919);
    const got = entries(c);
    expect(got).toHaveLength(1000);
    expect(got.every(([k, n], i) => k === i * 7919 && n === 3)).toBe(true);
    c.clear();
    expect([c.size, entries(c)]).toEqual([0, []]);
    c.add(42);
    expect(entries(c)).toEqual([[42, 1]]);
  });
});
