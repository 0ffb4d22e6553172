// What caused a storm, in one line: of the storm's inserts, the largest share
// that one named workload, pod, unit or process accounts for as the initiator.
// Two witnesses, each counted on its own (never added together, so nothing
// counts twice): the inserts' source addresses (pod IPs: traffic from a pod,
// whichever netns tracked it) and the local processes that made them. Not the
// netns an insert was made in: a pod's netns also tracks what it receives, and
// would name the victim. A count is taken at its lower bound, over the inserts
// the same sketches counted: the share is a lower bound.
import type { ProcessTalker, StormView, Talker } from '../engine/engine.js';
import type { Named } from './namer.js';

export interface StormCause {
  /** "deployment shop/checkout", "pod shop/cart-0", "unit kubelet.service", "process curl". */
  name: string;
  /** Its share of the storm's inserts, 0..1 (a lower bound; below 0.5, no single cause). */
  share: number;
  inserts: number;
  /** Which witness named it. */
  by: 'source' | 'process';
}

/** How a named row reads in a cause, or undefined when it names nobody. */
export function causeName(n: Named | undefined): string | undefined {
  if (!n) return undefined;
  if (n.workload) {
    const [kind, ...rest] = n.workload.split('/');
    return `${kind} ${n.namespace ? `${n.namespace}/` : ''}${rest.join('/')}`;
  }
  if (n.pod) return `pod ${n.namespace ? `${n.namespace}/` : ''}${n.pod}`;
  if (n.podUid) return `pod uid ${n.podUid}`;
  if (n.unit) return `unit ${n.unit}`;
  return undefined;
}

export function stormCause(storm: StormView & { sources: Array<Talker & Named>; processes: Array<ProcessTalker & Named> }): StormCause | null {
  const total = storm.peerInserts;
  if (total <= 0) return null;
  let best: StormCause | null = null;
  const consider = (by: StormCause['by'], rows: Array<{ name: string | undefined; inserts: number }>): void => {
    const sums = new Map<string, number>();
    for (const r of rows) if (r.name !== undefined && r.inserts > 0) sums.set(r.name, (sums.get(r.name) ?? 0) + r.inserts);
    for (const [name, inserts] of sums) {
      if (!best || inserts > best.inserts) best = { name, inserts, share: Math.min(1, inserts / total), by };
    }
  };
  consider('source', storm.sources.map((t) => ({ name: causeName(t), inserts: t.inserts - t.error })));
  consider('process', storm.processes.map((p) => ({ name: causeName(p) ?? (p.comm ? `process ${p.comm}` : undefined), inserts: p.inserts - p.error })));
  return best;
}
