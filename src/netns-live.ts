// The network namespaces that exist now, by inode: those of every process and
// those kept by a bind mount (ip netns). A netns held only by an open file
// elsewhere, or only by its own sockets, is missed: an orphaned TCP socket whose
// FIN goes unanswered holds its netns ~110 s (8 backed-off retries, ~102 s from
// the FIN, then the teardown), and the flush of its conntrack entries waits with
// it. Only its balanced, idle rows are then retired early; one that comes back is
// added to them (see NetnsRows.merge). A count the probe adds to a row between
// its last reading and its deletion is lost with it: a row idle 60 s, in a
// namespace nothing seems to hold, makes that window narrow, not closed.
import { readdirSync, readlinkSync, statSync } from 'node:fs';

/** What /proc/PID/ns/net links to: `net:[<inode>]`. */
export const NETNS_LINK = /^net:\[(\d+)\]$/;

/** Inode of ctstorm's own netns (what nf_conntrack_count and its stat file count). */
export function ownNetnsInode(): number {
  return statSync('/proc/self/ns/net').ino;
}

export function liveNetnsInodes(): Set<number> {
  const inodes = new Set<number>();
  let pids: string[] = [];
  try {
    pids = readdirSync('/proc').filter((d) => /^\d+$/.test(d));
  } catch {
    return inodes;
  }
  for (const pid of pids) {
    try {
      const m = NETNS_LINK.exec(readlinkSync(`/proc/${pid}/ns/net`));
      if (m) inodes.add(Number(m[1]));
    } catch {
      // exited meanwhile, or not ours to read
    }
  }
  for (const dir of ['/run/netns', '/var/run/netns']) {
    try {
      for (const name of readdirSync(dir)) inodes.add(statSync(`${dir}/${name}`).ino);
    } catch {
      // no such directory
    }
  }
  return inodes;
}
