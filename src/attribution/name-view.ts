// Puts names on a view: the top talkers and processes, the storms and their
// cause, and every netns the view shows. The engine's view is built afresh for
// each call, so its rows are named in place.
import type { EngineView, ProcessTalker, StormView, Talker } from '../engine/engine.js';
import type { Namer, NetnsNamed } from './namer.js';
import { stormCause } from './storm-cause.js';

function nameTalkers(rows: Talker[], namer: Namer): void {
  for (const t of rows) Object.assign(t, namer.address(t.address));
}

function nameProcesses(rows: ProcessTalker[], namer: Namer): void {
  for (const p of rows) Object.assign(p, namer.process(p.cgroupId));
}

function nameStorm(storm: StormView, namer: Namer): void {
  nameTalkers(storm.sources, namer);
  nameTalkers(storm.destinations, namer);
  nameProcesses(storm.processes, namer);
  storm.cause = stormCause(storm);
}

/** Names the engine's rows in place; returns the names of `inodes` and of the
 * netns the engine and its storms show, by inode (as text: a JSON object's keys). */
export function nameView(engine: EngineView, inodes: Iterable<number>, namer: Namer): Record<string, NetnsNamed> {
  nameTalkers(engine.top.sources, namer);
  nameTalkers(engine.top.destinations, namer);
  nameTalkers(engine.top.backends, namer);
  nameProcesses(engine.top.processes, namer);
  const storms = [...(engine.storms.current ? [engine.storms.current] : []), ...engine.storms.past];
  for (const st of storms) nameStorm(st, namer);
  const all = new Set(inodes);
  for (const n of engine.netns) all.add(n.inode);
  for (const st of storms) for (const n of st.netns) all.add(n.inode);
  const out: Record<string, NetnsNamed> = {};
  for (const inode of all) {
    const named = namer.netns(inode);
    if (named && Object.keys(named).length > 0) out[inode] = named;
  }
  return out;
}
