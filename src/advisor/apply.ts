// Writing advised settings into one netns: only keys the kernel lets that netns
// write (the limit and buckets are the initial netns's), each read back.
import { accessSync, constants, writeFileSync } from 'node:fs';
import { CtstormError } from '../errors.js';
import { SYSCTL_DIR } from '../table.js';
import { inNetns, readOwnSettings, readSettingsIn, type ConntrackSettings, type NetnsTarget } from './settings.js';

export interface Change {
  key: string;
  from: number;
  to: number;
}

/** Where settings are read and written: ctstorm's own netns (target undefined) or another. */
export class NetnsSysctl {
  constructor(readonly target: NetnsTarget | undefined) {}

  read(): ConntrackSettings {
    return this.target ? readSettingsIn(this.target) : readOwnSettings();
  }

  /** The kernel's own answer (proc_sys_permission): read-only keys refuse root too. */
  writable(key: string): boolean {
    const file = `${SYSCTL_DIR}/${key}`;
    try {
      if (this.target) inNetns(this.target, ['test', '-w', file], 'ignore');
      else accessSync(file, constants.W_OK);
      return true;
    } catch {
      return false;
    }
  }

  write(key: string, value: number): void {
    const file = `${SYSCTL_DIR}/${key}`;
    try {
      if (this.target) inNetns(this.target, ['sh', '-c', 'printf %s "$1" > "$2"', 'sh', String(value), file], 'ignore');
      else writeFileSync(file, String(value));
    } catch (err) {
      const why = (err as { stderr?: Buffer }).stderr?.toString().trim() || (err as Error).message;
      throw new CtstormError(`cannot set ${key} to ${value} (${why.split('\n')[0]})`, 'run as root', 'EAPPLY');
    }
  }
}

/** Re-reads the settings, refuses if any changed since the advice read them,
 * writes each change, then reads all back: every change took, nothing else
 * moved. A failed write puts the keys already written back as they were. */
export function applyChanges(where: NetnsSysctl, changes: readonly Change[]): ConntrackSettings {
  const before = where.read();
  for (const c of changes) {
    if (before[c.key] !== c.from) {
      throw new CtstormError(`${c.key} is ${before[c.key]} now, not the ${c.from} the advice started from; nothing applied`, 'run ctstorm advise again', 'EAPPLY');
    }
  }
  const written: Change[] = [];
  try {
    for (const c of changes) {
      where.write(c.key, c.to);
      written.push(c);
    }
  } catch (err) {
    const undone: string[] = [];
    for (const c of written.reverse()) {
      try {
        where.write(c.key, c.from);
        undone.push(c.key);
      } catch {
        // reported below as not undone
      }
    }
    const left = written.filter((c) => !undone.includes(c.key)).map((c) => `${c.key}=${c.to}`);
    const why = err instanceof Error ? err.message : String(err);
    throw new CtstormError(`${why}; ${undone.length ? `put back ${undone.join(', ')}` : 'nothing was written before it'}${left.length ? `; still set: ${left.join(', ')}` : ''}`, 'check dmesg and the values with sysctl', 'EAPPLY');
  }
  const after = where.read();
  const applied = changes.map((c) => `${c.key}=${c.to}`).join(', ');
  for (const c of changes) {
    if (after[c.key] !== c.to) throw new CtstormError(`${c.key} reads ${after[c.key]} after writing ${c.to} (written: ${applied})`, 'the kernel adjusted or refused it; check dmesg', 'EAPPLY');
  }
  const want = new Map(changes.map((c) => [c.key, c.to]));
  for (const [key, value] of Object.entries(before)) {
    // nf_conntrack_count moves with traffic; every other key must be as it was.
    if (key !== 'nf_conntrack_count' && !want.has(key) && after[key] !== value) {
      throw new CtstormError(`${key} changed from ${value} to ${after[key]} meanwhile (written: ${applied})`, 'something else is writing conntrack settings; check before applying again', 'EAPPLY');
    }
  }
  return after;
}
