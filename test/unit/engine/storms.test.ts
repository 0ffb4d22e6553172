import { describe, expect, it } from 'vitest';
import { DEFAULT_STORM_CONFIG, StormDetector } from '../../../src/engine/storms.js';

/** Feeds per-second insert counts starting at second 0. */
function feed(d: StormDetector, perSecond: number[], netns?: (sec: number) => Map<number, number>): void {
  perSecond.forEach((n, sec) => d.tick(sec, n, Math.floor(n / 10), netns?.(sec)));
}

describe('StormDetector', () => {
  it('starts a storm at the first second over factor x baseline and the floor, ends it after the quiet seconds', () => {
    const d = new StormDetector();
    const quiet = new Array(120).fill(200); // baseline 200/s: the threshold is max(1000, 5 x 200) = 1000
    const storm = [900, 5000, 8000, 3000, 600, 100, 700, 100, 100, 100];
    feed(d, [...quiet, ...storm, ...new Array(10).fill(200)], (sec) => new Map([[sec >= 120 ? 7 : 1, 1]]));
    expect(d.current()).toBeNull();
    const [s] = d.past();
    // 900 is under the floor; onset at 5000/s (second 121). 600 and 700 are not below
    // half the threshold (500): still the storm, and the 100 between them with it;
    // the three seconds of 100/s after 700 end it, and are not part of it.
    expect(s).toEqual({
      startSeconds: 121,
      endSeconds: 126,
      durationSeconds: 6,
      baselinePerSecond: expect.closeTo(200 + (1 - Math.exp(-1 / 60)) * 700, 9), // the 900/s second counted in it
      peakPerSecond: 8000,
      inserts: 5000 + 8000 + 3000 + 600 + 100 + 700,
      destroys: 500 + 800 + 300 + 60 + 10 + 70,
      netns: [{ key: 7, inserts: 6 }],
    });
  });

  it('needs the absolute floor on a quiet table, and reports a running storm', () => {
    const d = new StormDetector();
    feed(d, [...new Array(60).fill(1), 500, 900]); // 500x the baseline but under the floor
    expect(d.current()).toBeNull();
    d.tick(62, 1500, 0);
    expect(d.current()).toMatchObject({ startSeconds: 62, endSeconds: null, peakPerSecond: 1500, inserts: 1500 });
  });

  it('does not let a long storm raise its own baseline', () => {
    const d = new StormDetector();
    feed(d, [...new Array(60).fill(100), ...new Array(600).fill(20000)]);
    expect(d.baselinePerSecond).toBeCloseTo(100, 6);
    expect(d.current()?.durationSeconds).toBe(600);
  });

  it('keeps a bounded list of past storms, newest first', () => {
    const d = new StormDetector({ ...DEFAULT_STORM_CONFIG, maxPast: 2 });
    const seconds: number[] = new Array(30).fill(0);
    for (let k = 0; k < 3; k++) seconds.push(5000, 0, 0, 0, 0);
    feed(d, seconds);
    expect(d.past().map((s) => s.startSeconds)).toEqual([40, 35]);
  });
});
