// The conntrack table's size, from the three sysctl files: O(1), never a scan.
import { readFileSync } from 'node:fs';
import { CtstormError } from './errors.js';

export interface TableInfo {
  /** Entries in ctstorm's own netns (the kernel counts per netns). */
  entries: number;
  /** nf_conntrack_max: one limit every netns's count is compared against. */
  max: number;
  buckets: number;
}

/** Where the conntrack sysctls are (for ctstorm's own netns). */
export const SYSCTL_DIR = '/proc/sys/net/netfilter';

/** The one error for a kernel without conntrack active. */
export function conntrackNotActive(): CtstormError {
  return new CtstormError(`conntrack is not active in this kernel (${SYSCTL_DIR}/nf_conntrack_max is missing)`, 'load it with: modprobe nf_conntrack', 'ENOCONNTRACK');
}

function readNumber(name: string): number {
  return Number.parseInt(readFileSync(`${SYSCTL_DIR}/${name}`, 'utf8'), 10);
}

export function conntrackLoaded(): boolean {
  try {
    readNumber('nf_conntrack_max');
    return true;
  } catch {
    return false;
  }
}

export function readTable(): TableInfo {
  try {
    return {
      entries: readNumber('nf_conntrack_count'),
      max: readNumber('nf_conntrack_max'),
      buckets: readNumber('nf_conntrack_buckets'),
    };
  } catch {
    throw conntrackNotActive();
  }
}
