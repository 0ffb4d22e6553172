// The conntrack settings a netns has: every nf_conntrack_* sysctl that holds a
// number (limits, buckets, timeouts, switches), read from /proc/sys, in
// ctstorm's own netns or, through nsenter, in another one.
import { execFileSync } from 'node:child_process';
import { closeSync, existsSync, fstatSync, openSync, readdirSync, readFileSync, readlinkSync, statSync } from 'node:fs';
import { CtstormError } from '../errors.js';
import { NETNS_LINK } from '../netns-live.js';
import { conntrackNotActive, SYSCTL_DIR } from '../table.js';


/** nf_conntrack_* sysctls by their name under net.netfilter (e.g. nf_conntrack_max). */
export type ConntrackSettings = Record<string, number>;

/** A network namespace an operator can name: a path to its nsfs file, held open
 * (`fd`) so every later read and write enters this netns, even if the name or the
 * path comes to mean another one meanwhile. */
export interface NetnsTarget {
  /** What the operator gave (name, path or inode). */
  given: string;
  path: string;
  inode: number;
  fd: number;
}

/** Runs a command inside the target netns, entered through its held fd (passed
 * as the child's fd 3). */
export function inNetns(target: NetnsTarget, argv: string[], stdout: 'pipe' | 'ignore' = 'pipe'): string {
  return execFileSync('nsenter', ['--net=/proc/self/fd/3', ...argv], { encoding: 'utf8', stdio: ['ignore', stdout, 'pipe', target.fd] }) ?? '';
}

export function parseSysctlDump(text: string): ConntrackSettings {
  const out: ConntrackSettings = {};
  for (const line of text.split('\n')) {
    const m = /(?:^|\/)(nf_conntrack_\w+):\s*(-?\d+)\s*$/.exec(line);
    if (m) out[m[1]!] = Number(m[2]);
  }
  return out;
}

/** Settings of ctstorm's own netns. */
export function readOwnSettings(): ConntrackSettings {
  const out: ConntrackSettings = {};
  let names: string[];
  try {
    names = readdirSync(SYSCTL_DIR).filter((n) => n.startsWith('nf_conntrack_'));
  } catch {
    names = [];
  }
  for (const name of names) {
    try {
      const v = readFileSync(`${SYSCTL_DIR}/${name}`, 'utf8').trim();
      if (/^-?\d+$/.test(v)) out[name] = Number(v);
    } catch {
      // write-only or vanished
    }
  }
  if (out.nf_conntrack_max === undefined) {
    throw conntrackNotActive();
  }
  return out;
}

/** Settings of another netns (nsenter runs a grep there: /proc/sys shows the
 * reader's netns, so it must be read from inside). */
export function readSettingsIn(target: NetnsTarget): ConntrackSettings {
  let text: string;
  try {
    text = inNetns(target, ['grep', '-rs', '.', SYSCTL_DIR]);
  } catch (err) {
    const out = (err as { stdout?: string }).stdout ?? '';
    if (!out) throw new CtstormError(`cannot read conntrack settings in netns ${target.given} (${target.path})`, 'check that nsenter (util-linux) is installed and that you are root', 'ENETNS');
    text = out; // grep exits 2 when one file is unreadable but prints the rest
  }
  const settings = parseSysctlDump(text);
  if (settings.nf_conntrack_max === undefined) {
    throw new CtstormError(`conntrack is not active in netns ${target.given}`, 'it starts once a conntrack rule or NAT is used there', 'ENOCONNTRACK');
  }
  return settings;
}

/** A netns by name (ip netns), path, or inode (found among /run/netns and processes). */
export function resolveNetns(given: string): NetnsTarget {
  const byName = `/run/netns/${given}`;
  const path = given.includes('/') ? given : /^\d+$/.test(given) ? findNetnsByInode(Number(given)) : existsSync(byName) ? byName : undefined;
  if (!path) {
    throw new CtstormError(`no network namespace ${given}`, 'give a name from `ip netns list`, a path such as /proc/PID/ns/net, or an inode that a process or /run/netns holds', 'ENETNS');
  }
  let inode: number;
  try {
    inode = statSync(path).ino;
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? 'error';
    if (code === 'EACCES' || code === 'EPERM') throw new CtstormError(`cannot open ${path} (${code})`, 'run as root', 'ENETNS');
    throw new CtstormError(`no network namespace at ${path} (${code})`, 'give a name from `ip netns list` or a path such as /proc/PID/ns/net', 'ENETNS');
  }
  let fd: number;
  try {
    fd = openSync(path, 'r');
  } catch (err) {
    throw new CtstormError(`cannot open ${path} (${(err as NodeJS.ErrnoException).code ?? 'error'})`, 'run as root', 'ENETNS');
  }
  // Entering it is the test that it is a network namespace (an nsfs file of type net),
  // and the fd held from here on is what every later command enters.
  try {
    if (fstatSync(fd).ino !== inode) throw new Error('moved');
    inNetns({ given, path, inode, fd }, ['true'], 'ignore');
  } catch (err) {
    closeSync(fd);
    const why = (err as { stderr?: Buffer }).stderr?.toString() ?? '';
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') throw new CtstormError('nsenter is missing', 'install util-linux', 'ENETNS');
    if (/permission|not permitted/i.test(why)) throw new CtstormError(`cannot enter the network namespace at ${path} (permission denied)`, 'run as root', 'ENETNS');
    throw new CtstormError(`${path} is not a network namespace`, 'give a name from `ip netns list` or a path such as /proc/PID/ns/net', 'ENETNS');
  }
  return { given, path, inode, fd };
}

/** A path to the netns with this inode: a bind mount under /run/netns, or a process's. */
export function findNetnsByInode(inode: number): string | undefined {
  const candidates: string[] = [];
  try {
    for (const n of readdirSync('/run/netns')) candidates.push(`/run/netns/${n}`);
  } catch {
    // no named namespaces
  }
  try {
    for (const pid of readdirSync('/proc')) if (/^\d+$/.test(pid)) candidates.push(`/proc/${pid}/ns/net`);
  } catch {
    // no /proc
  }
  for (const path of candidates) {
    try {
      if (path.startsWith('/proc/') ? Number(NETNS_LINK.exec(readlinkSync(path))?.[1]) === inode : statSync(path).ino === inode) return path;
    } catch {
      // gone meanwhile, or not ours to read
    }
  }
  return undefined;
}

/** Whether a netns is the initial one (PID 1's, where nf_conntrack_max and the
 * buckets live and sysctl.d applies); undefined when PID 1's netns is unreadable. */
export function isInitialNetns(inode: number): boolean | undefined {
  try {
    return Number(NETNS_LINK.exec(readlinkSync('/proc/1/ns/net'))?.[1]) === inode;
  } catch {
    return undefined;
  }
}
