import { describe, expect, it } from 'vitest';
import { SecondSlots } from '../../../src/engine/slots.js';

describe('SecondSlots', () => {
  it('sums exactly the whole seconds before now', () => {
    const s = new SecondSlots(60);
    for (let sec = 100; sec < 170; sec++) s.add(sec, sec - 100); // 0, 1, 2, ... 69
    // At 170: the last 10 whole seconds are 160..169 -> 60..69.
    expect(s.sum(170, 10)).toBe(645);
    expect(s.sum(170, 1)).toBe(69);
    // 60 s: 110..169 -> 10..69.
    expect(s.sum(170, 60)).toBe(2370);
    // The second still filling is not counted.
    s.add(170, 1000);
    expect(s.sum(170, 1)).toBe(69);
    expect(s.sum(171, 1)).toBe(1000);
  });

  it('forgets seconds that passed without events, and drops events older than the ring', () => {
    const s = new SecondSlots(10);
    s.add(5, 7);
    expect(s.add(100, 1)).toBe(true); // jumps far ahead: the old slot is cleared
    expect(s.sum(101, 10)).toBe(1);
    expect(s.add(90, 5)).toBe(false); // 10 s before the newest: outside the ring
    expect(s.add(91, 5)).toBe(true);
    expect(s.sum(101, 10)).toBe(6);
    expect(s.series(101, 3)).toEqual([0, 0, 1]);
  });

  it('refuses a window longer than the ring', () => {
    expect(() => new SecondSlots(10).sum(20, 11)).toThrow(RangeError);
  });

  it('matches a brute-force count on a random stream', () => {
    const s = new SecondSlots(60);
    const events: number[] = [];
    let seed = 12345;
    const rand = () => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
    let sec = 1000;
    for (let i = 0; i < 5000; i++) {
      sec += rand() < 0.05 ? Math.floor(rand() * 5) : 0;
      const at = sec - Math.floor(rand() * 3); // a little out of order
      if (s.add(at)) events.push(at);
    }
    for (const window of [1, 10, 60]) {
      const now = sec + 1;
      expect(s.sum(now, window)).toBe(events.filter((e) => e >= now - window && e < now).length);
    }
  });
});
