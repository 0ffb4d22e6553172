// A /proc made of files: pids with their netns link, command and cgroup, shaped
// as the kernel shows them, refreshed as processes come and go.
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { NetnsNames } from '../../../src/attribution/netns-names.js';

const UID = '7f9d2c4a-1b2c-4d5e-8f90-a1b2c3d4e5f6';
const ID1 = 'a'.repeat(64);
const ID2 = 'b'.repeat(64);
const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

function fakeProc(): { root: string; add: (pid: number, netns: number, comm: string, cgroup: string) => void; remove: (pid: number) => void } {
  const root = mkdtempSync(join(tmpdir(), 'ctstorm-proc-'));
  dirs.push(root);
  return {
    root,
    add: (pid, netns, comm, cgroup) => {
      mkdirSync(join(root, String(pid), 'ns'), { recursive: true });
      symlinkSync(`net:[${netns}]`, join(root, String(pid), 'ns', 'net'));
      writeFileSync(join(root, String(pid), 'comm'), `${comm}\n`);
      writeFileSync(join(root, String(pid), 'cgroup'), `0::${cgroup}\n`);
    },
    remove: (pid) => rmSync(join(root, String(pid)), { recursive: true }),
  };
}

describe('NetnsNames', () => {
  it('names a pod netns by its pod and containers, the host netns by its units and processes', () => {
    const proc = fakeProc();
    const pod = `/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod${UID.replaceAll('-', '_')}.slice`;
    proc.add(100, 4026532500, 'pause', `${pod}/cri-containerd-${ID1}.scope`);
    proc.add(101, 4026532500, 'checkout', `${pod}/cri-containerd-${ID2}.scope`);
    proc.add(1, 4026531840, 'systemd', '/init.scope');
    proc.add(200, 4026531840, 'nginx', '/system.slice/nginx.service');
    proc.add(201, 4026531840, 'nginx', '/system.slice/nginx.service');
    const names = new NetnsNames(proc.root);
    names.refresh();
    expect(names.nameOf(4026532500)).toEqual({
      inode: 4026532500,
      pods: [UID],
      containers: [
        { id: ID1, runtime: 'containerd', podUid: UID },
        { id: ID2, runtime: 'containerd', podUid: UID },
      ],
      units: [],
      processes: [
        { comm: 'checkout', count: 1 },
        { comm: 'pause', count: 1 },
      ],
    });
    expect(names.nameOf(4026531840)).toMatchObject({ pods: [], units: ['init.scope', 'nginx.service'], processes: [{ comm: 'nginx', count: 2 }, { comm: 'systemd', count: 1 }] });
  });

  it('reads only new processes on a refresh, and keeps a netns\'s last name until forgotten', () => {
    const proc = fakeProc();
    proc.add(10, 7, 'a', '/system.slice/a.service');
    let now = 0;
    const names = new NetnsNames(proc.root, () => now);
    names.refresh();
    expect(names.lastReads).toBe(3);
    now = 60_000; // pid 10 is no longer young
    proc.add(11, 7, 'b', '/system.slice/b.service');
    names.refresh();
    expect(names.lastReads).toBe(3); // pid 10 was not read again (not its turn: 10 % 12 is not 2)
    expect(names.nameOf(7)?.units).toEqual(['a.service', 'b.service']);
    proc.remove(10);
    proc.remove(11);
    names.refresh();
    expect(names.nameOf(7)?.units).toEqual(['a.service', 'b.service']); // its final rows still need a name
    names.forget(7);
    expect(names.nameOf(7)).toBeUndefined();
  });

  it('reads a young process again (it execs, joins its cgroup and netns right after it starts), and older ones in turn', () => {
    const proc = fakeProc();
    let now = 0;
    const names = new NetnsNames(proc.root, () => now);
    // As `sh -c 'echo $$ > cgroup.procs; exec ip netns exec ns python3'` looks at first...
    proc.add(40, 1, 'sh', '/user.slice/session-1.scope');
    names.refresh();
    expect(names.nameOf(1)?.processes).toEqual([{ comm: 'sh', count: 1 }]);
    // ...and a moment later, in the pod's netns and cgroup.
    proc.remove(40);
    proc.add(40, 9, 'python3', `/kubepods/besteffort/pod${UID}/${ID1}`);
    now = 1_000;
    names.refresh();
    expect(names.nameOf(9)).toMatchObject({ pods: [UID], processes: [{ comm: 'python3', count: 1 }] });
    // An old process that moved is seen at its turn: within 12 refreshes.
    now = 100_000;
    proc.remove(40);
    proc.add(40, 11, 'python3', `/kubepods/besteffort/pod${UID}/${ID1}`);
    let refreshes = 0;
    while (names.nameOf(11) === undefined && refreshes < 12) {
      names.refresh();
      refreshes++;
    }
    expect(names.nameOf(11)).toMatchObject({ pods: [UID] });
    expect(refreshes).toBeLessThanOrEqual(12);
  });
});
