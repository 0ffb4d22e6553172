// What one conntrack entry and one hash bucket cost in kernel memory, from the
// running kernel's own numbers: the nf_conntrack slab's object size
// (/proc/slabinfo) or sizeof(struct nf_conn) from BTF, plus the extension block
// that entries with NAT, events, accounting or timestamps carry.
import { existsSync, readFileSync } from 'node:fs';
import type { ConntrackSettings } from './settings.js';

export interface EntryCost {
  /** The nf_conn object as the slab allocates it. */
  objectBytes: number;
  /** Where objectBytes comes from. */
  objectSource: string;
  /** The extension block (kmalloc'ed beside it), 0 when no extension is in use. */
  extensionBytes: number;
  extensionSource: string;
  /** One hash bucket (struct hlist_nulls_head). */
  bucketBytes: number;
  perEntryBytes: number;
}

/** nf_ct_ext_add allocates at least this (NF_CT_EXT_PREALLOC, "conntrack events
 * are on by default"), rounded to a kmalloc size class. */
const EXT_PREALLOC = 128;
const KMALLOC_CLASSES = [8, 16, 32, 64, 96, 128, 192, 256, 512, 1024, 2048, 4096];
/** Slab objects of nf_conntrack are cache-line aligned (SLAB_HWCACHE_ALIGN). */
const CACHE_LINE = 64;

export interface StructSizes {
  nf_conn?: number;
  nf_ct_ext?: number;
  nf_conntrack_ecache?: number;
  nf_conn_acct?: number;
  nf_conn_tstamp?: number;
  nf_conn_nat?: number;
  hlist_nulls_head?: number;
}

export const STRUCT_NAMES: Array<keyof StructSizes> = ['nf_conn', 'nf_ct_ext', 'nf_conntrack_ecache', 'nf_conn_acct', 'nf_conn_tstamp', 'nf_conn_nat', 'hlist_nulls_head'];

const align = (n: number, a: number): number => Math.ceil(n / a) * a;
const kmallocClass = (n: number): number => KMALLOC_CLASSES.find((c) => c >= n) ?? align(n, 4096);

/** The nf_conntrack cache's object size from /proc/slabinfo text; undefined when absent. */
export function slabObjectSize(slabinfo: string): number | undefined {
  const m = /^nf_conntrack\s+\d+\s+\d+\s+(\d+)/m.exec(slabinfo);
  return m ? Number(m[1]) : undefined;
}

/** Pure: the cost from what was read. `natLoaded`: the nf_nat module is in the kernel. */
export function entryCost(sizes: StructSizes, slabObject: number | undefined, settings: ConntrackSettings, natLoaded: boolean): EntryCost {
  const objectBytes = slabObject ?? align(sizes.nf_conn ?? 256, CACHE_LINE);
  const objectSource = slabObject !== undefined ? '/proc/slabinfo nf_conntrack objsize' : sizes.nf_conn ? 'sizeof(struct nf_conn) from BTF, cache-line aligned' : 'assumed 256 (no slabinfo, no BTF)';
  const parts: Array<[string, number]> = [];
  // events=2 (the default since 6.0) adds the ecache extension only while a conntrack
  // event listener runs; counted anyway, as the cost an operator must plan for.
  const events = settings.nf_conntrack_events ?? 0;
  if (events !== 0) parts.push([events === 2 ? 'ecache (while an event listener runs)' : 'ecache', sizes.nf_conntrack_ecache ?? 32]);
  if ((settings.nf_conntrack_acct ?? 0) !== 0) parts.push(['acct', sizes.nf_conn_acct ?? 32]);
  if ((settings.nf_conntrack_timestamp ?? 0) !== 0) parts.push(['tstamp', sizes.nf_conn_tstamp ?? 16]);
  if (natLoaded) parts.push(['nat', sizes.nf_conn_nat ?? 8]);
  let extensionBytes = 0;
  let extensionSource = 'no extension in use (events, accounting and timestamps off, no NAT)';
  if (parts.length > 0) {
    const raw = (sizes.nf_ct_ext ?? 16) + parts.reduce((n, [, b]) => n + align(b, 8), 0);
    extensionBytes = kmallocClass(Math.max(raw, EXT_PREALLOC));
    extensionSource = `${parts.map(([n]) => n).join(' + ')}: ${raw} bytes, allocated as at least ${EXT_PREALLOC} (kmalloc-${extensionBytes})`;
  }
  return { objectBytes, objectSource, extensionBytes, extensionSource, bucketBytes: sizes.hlist_nulls_head ?? 8, perEntryBytes: objectBytes + extensionBytes };
}

/** Reads the kernel's numbers; BTF through the addon when it can. */
export function readEntryCost(settings: ConntrackSettings, structSizes?: (module: string, names: string[]) => Record<string, number>): EntryCost {
  let sizes: StructSizes = {};
  try {
    const found = structSizes?.('nf_conntrack', STRUCT_NAMES) ?? {};
    sizes = Object.fromEntries(Object.entries(found).filter(([, v]) => v > 0));
  } catch {
    // no BTF: the slab size and defaults below
  }
  let slab: number | undefined;
  try {
    slab = slabObjectSize(readFileSync('/proc/slabinfo', 'utf8'));
  } catch {
    slab = undefined; // not root, or no slabinfo
  }
  return entryCost(sizes, slab, settings, existsSync('/sys/module/nf_nat'));
}
