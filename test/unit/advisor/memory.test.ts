import { describe, expect, it } from 'vitest';
import { entryCost, slabObjectSize } from '../../../src/advisor/memory.js';
import { parseSysctlDump } from '../../../src/advisor/settings.js';

const sizes = { nf_conn: 248, nf_ct_ext: 16, nf_conntrack_ecache: 32, nf_conn_acct: 32, nf_conn_tstamp: 16, nf_conn_nat: 8, hlist_nulls_head: 8 };

describe('entry cost', () => {
  it('slab object plus an extension block of at least 128 bytes', () => {
    // ext: 16 header + 32 ecache + 8 nat = 56 -> NF_CT_EXT_PREALLOC 128.
    const c = entryCost(sizes, 256, { nf_conntrack_events: 1 }, true);
    expect([c.objectBytes, c.extensionBytes, c.perEntryBytes, c.bucketBytes]).toEqual([256, 128, 384, 8]);
    expect(c.extensionSource).toBe('ecache + nat: 56 bytes, allocated as at least 128 (kmalloc-128)');
  });

  it('every extension on: 16 + 32 + 32 + 16 + 8 = 104 still fits 128; BTF size cache-aligned without slabinfo', () => {
    const c = entryCost(sizes, undefined, { nf_conntrack_events: 2, nf_conntrack_acct: 1, nf_conntrack_timestamp: 1 }, true);
    expect([c.objectBytes, c.extensionBytes, c.perEntryBytes]).toEqual([256, 128, 384]);
  });

  it('no extension in use costs none', () => {
    const c = entryCost(sizes, 320, { nf_conntrack_events: 0 }, false);
    expect([c.extensionBytes, c.perEntryBytes]).toEqual([0, 320]);
  });

  it('reads the nf_conntrack cache from slabinfo', () => {
    const text = '# name <active_objs> ...\nnf_conntrack_expect 0 0 208 19 1 : tunables\nnf_conntrack          80    144    320   16    1 : tunables    0    0    0\n';
    expect(slabObjectSize(text)).toBe(320);
    expect(slabObjectSize('kmalloc-8 1 2 8 1 1\n')).toBeUndefined();
  });
});

describe('settings', () => {
  it('parses grep -r output of /proc/sys/net/netfilter', () => {
    const text = '/proc/sys/net/netfilter/nf_conntrack_max:262144\n/proc/sys/net/netfilter/nf_conntrack_udp_timeout:10\n/proc/sys/net/netfilter/nf_log/2:NONE\n';
    expect(parseSysctlDump(text)).toEqual({ nf_conntrack_max: 262144, nf_conntrack_udp_timeout: 10 });
  });
});
