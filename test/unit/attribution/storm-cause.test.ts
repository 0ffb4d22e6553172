// A storm's cause from its witnesses, with hand-computed shares.
import { describe, expect, it } from 'vitest';
import { causeName, stormCause } from '../../../src/attribution/storm-cause.js';
import type { StormView } from '../../../src/engine/engine.js';

function storm(over: Partial<StormView>): StormView {
  return {
    startSeconds: 100, endSeconds: null, durationSeconds: 3, baselinePerSecond: 10, peakPerSecond: 900, inserts: 2000, destroys: 0,
    netns: [], sources: [], destinations: [], processes: [], peerInserts: 2200, ...over,
  };
}

describe('stormCause', () => {
  it('names the workload behind most inserts by source, as a lower bound of the inserts the sketches counted', () => {
    const c = stormCause(storm({
      sources: [
        { address: '10.244.1.5', inserts: 1500, error: 100, pod: 'checkout-1', namespace: 'shop', workload: 'deployment/checkout' },
        { address: '10.244.1.6', inserts: 500, error: 0, pod: 'checkout-2', namespace: 'shop', workload: 'deployment/checkout' },
        { address: '10.0.0.1', inserts: 200, error: 0 },
      ],
    }));
    // (1500 - 100 + 500) / 2200
    expect(c).toEqual({ name: 'deployment shop/checkout', inserts: 1900, share: 1900 / 2200, by: 'source' });
  });

  it('names a host process by its unit or command when no address is a pod\'s', () => {
    const c = stormCause(storm({
      sources: [{ address: '192.168.1.10', inserts: 2200, error: 0 }],
      processes: [
        { pid: 7, comm: 'backup', cgroupId: 9, inserts: 1800, error: 0, unit: 'backup.service' },
        { pid: 8, comm: 'curl', cgroupId: 1, inserts: 400, error: 0 },
      ],
    }));
    expect(c).toEqual({ name: 'unit backup.service', inserts: 1800, share: 1800 / 2200, by: 'process' });
  });

  it('does not name the netns the inserts landed in (a pod receiving a flood is its victim)', () => {
    const c = stormCause(storm({ netns: [{ cookie: 1, inode: 4026532000, inserts: 2000 }], sources: [{ address: '203.0.113.9', inserts: 2200, error: 0 }] }));
    expect(c).toBeNull();
  });

  it('reads workload, pod and unit names as an operator would', () => {
    expect(causeName({ workload: 'statefulset/cart', namespace: 'shop', pod: 'cart-0' })).toBe('statefulset shop/cart');
    expect(causeName({ pod: 'debug', namespace: 'default' })).toBe('pod default/debug');
    expect(causeName({ unit: 'kubelet.service' })).toBe('unit kubelet.service');
    expect(causeName({})).toBeUndefined();
  });
});
