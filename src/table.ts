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

const sysctlDir = '/proc/sys/net/netfilter';

function readNumber(name: string): number {
  return Number.parseInt(readFileSync(`${sysctlDir}/${name}`, 'utf8'), 10);
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
    throw new CtstormError(
      `conntrack is not active in this kernel (${sysctlDir}/nf_conntrack_max is missing)`,
      'load it with: modprobe nf_conntrack',
      'ENOCONNTRACK',
    );
  }
}
