// The advisor's memory cost on each Debian kernel: sizeof(struct nf_conn) from
// the nf_conntrack module's BTF (5.11+; 5.10 has no module BTF, so the slab's
// object size must carry it alone), agreeing with the slab the kernel allocates
// entries from. Read-only; runs in the guest because the kernels differ.
import { existsSync, readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { readEntryCost, slabObjectSize, STRUCT_NAMES } from '../../src/advisor/memory.js';
import { readOwnSettings } from '../../src/advisor/settings.js';
import { loadNative } from '../../src/native.js';

describe('entry cost from the running kernel', () => {
  it('reads struct sizes from BTF where the kernel has them, and the nf_conntrack slab', () => {
    const native = loadNative();
    const sizes = native.structSizes!('nf_conntrack', STRUCT_NAMES);
    const slab = slabObjectSize(readFileSync('/proc/slabinfo', 'utf8'));
    expect(slab, 'the nf_conntrack slab (conntrack is loaded by the live tests)').toBeGreaterThan(0);
    expect(sizes.hlist_nulls_head).toBe(8); // vmlinux BTF on every kernel here
    // Built in (no initstate file), its types are in vmlinux's BTF; as a module, in its own.
    const builtIn = !existsSync('/sys/module/nf_conntrack/initstate');
    if (builtIn || existsSync('/sys/kernel/btf/nf_conntrack')) {
      // The object holds the struct (plus, for an RCU-typesafe cache, the free
      // pointer), rounded up to cache lines.
      expect(sizes.nf_conn).toBeGreaterThan(200);
      expect(slab! - sizes.nf_conn!).toBeGreaterThanOrEqual(0);
      expect(slab! - sizes.nf_conn!).toBeLessThan(128);
    } else if (sizes.nf_conn !== -1) {
      // No module BTF (5.10): vmlinux's BTF may still hold the struct, when built-in
      // code refers to it; then it must fit the slab all the same.
      expect(slab! - sizes.nf_conn!).toBeGreaterThanOrEqual(0);
      expect(slab! - sizes.nf_conn!).toBeLessThan(128);
    }
    const cost = readEntryCost(readOwnSettings(), native.structSizes!.bind(native));
    expect([cost.objectBytes, cost.objectSource]).toEqual([slab, '/proc/slabinfo nf_conntrack objsize']);
  });
});
