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

type AddProcess = (pid: number, netns: number, comm: string, cgroup: string) => void;
function fakeProc(): { root: string; add: AddProcess; remove: (pid: number) => void; move: AddProcess } {
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
    move: (pid, netns, comm, cgroup) => {
      rmSync(join(root, String(pid), 'ns', 'net'));
      symlinkSync(`net:[${netns}]`, join(root, String(pid), 'ns', 'net'));
      writeFileSync(join(root, String(pid), 'comm'), `${comm}\n`);
      writeFileSync(join(root, String(pid), 'cgroup'), `0::${cgroup}\n`);
    },
  };
}

describe('NetnsNames', () => {
  it('names a pod netns by its pod and containers, the host netns by its units and processes', async () => {
    const proc = fakeProc();
    const pod = `/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod${UID.replaceAll('-', '_')}.slice`;
    proc.add(100, 4026532500, 'pause', `${pod}/cri-containerd-${ID1}.scope`);
    proc.add(101, 4026532500, 'checkout', `${pod}/cri-containerd-${ID2}.scope`);
    proc.add(1, 4026531840, 'systemd', '/init.scope');
    proc.add(200, 4026531840, 'nginx', '/system.slice/nginx.service');
    proc.add(201, 4026531840, 'nginx', '/system.slice/nginx.service');
    const names = new NetnsNames(proc.root);
    await names.refresh();
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

  it('reads only new processes on a refresh, and keeps a netns\'s last name until forgotten', async () => {
    const proc = fakeProc();
    proc.add(10, 7, 'a', '/system.slice/a.service');
    let now = 0;
    const names = new NetnsNames(proc.root, () => now);
    await names.refresh();
    expect(names.lastReads).toBe(3);
    now = 60_000; // pid 10 is no longer young
    proc.add(11, 7, 'b', '/system.slice/b.service');
    await names.refresh();
    expect(names.lastReads).toBe(3); // pid 10 was not read again (not its turn: 10 % 12 is not 2)
    expect(names.nameOf(7)?.units).toEqual(['a.service', 'b.service']);
    const named = names.nameOf(7);
    await names.refresh(); // pid 11 read again (young), found the same: netns 7 is not named again
    expect(names.lastReads).toBe(3);
    expect(names.nameOf(7)).toBe(named);
    proc.remove(10);
    proc.remove(11);
    await names.refresh();
    expect(names.nameOf(7)?.units).toEqual(['a.service', 'b.service']); // its final rows still need a name
    names.forget(7);
    expect(names.nameOf(7)).toBeUndefined();
  });

  it('reads a young process again (it execs, joins its cgroup and netns right after it starts), and older ones in turn', async () => {
    const proc = fakeProc();
    let now = 0;
    const names = new NetnsNames(proc.root, () => now);
    // As `sh -c 'echo $$ > cgroup.procs; exec ip netns exec ns python3'` looks at first...
    proc.add(40, 1, 'sh', '/user.slice/session-1.scope');
    await names.refresh();
    expect(names.nameOf(1)?.processes).toEqual([{ comm: 'sh', count: 1 }]);
    // ...and a moment later, in the pod's netns and cgroup.
    proc.remove(40);
    proc.add(40, 9, 'python3', `/kubepods/besteffort/pod${UID}/${ID1}`);
    now = 1_000;
    await names.refresh();
    expect(names.nameOf(9)).toMatchObject({ pods: [UID], processes: [{ comm: 'python3', count: 1 }] });
    // An old process that moved is seen at its turn: within 12 refreshes.
    now = 100_000;
    proc.remove(40);
    proc.add(40, 11, 'python3', `/kubepods/besteffort/pod${UID}/${ID1}`);
    let refreshes = 0;
    while (names.nameOf(11) === undefined && refreshes < 12) {
      await names.refresh();
      refreshes++;
    }
    expect(names.nameOf(11)).toMatchObject({ pods: [UID] });
    expect(refreshes).toBeLessThanOrEqual(12);
  });

  it('names again a process that moved: at once while young, within twelve refreshes when old', async () => {
    const proc = fakeProc();
    let now = 0;
    proc.add(10, 7, 'a', '/system.slice/a.service');
    proc.add(20, 7, 'b', '/system.slice/b.service');
    const names = new NetnsNames(proc.root, () => now);
    await names.refresh();
    now = 60_000; // pid 10 and 20 are old
    proc.add(30, 7, 'c', '/system.slice/c.service');
    await names.refresh(); // pid 30 is new: young
    expect(names.lastReads).toBe(3);
    proc.move(30, 8, 'c', '/system.slice/c.service');
    await names.refresh();
    expect(names.lastReads).toBe(3); // pid 30 again, not 10 or 20 (rounds 3, not 10 or 8 of 12)
    expect(names.nameOf(7)?.units).toEqual(['a.service', 'b.service']);
    expect(names.nameOf(8)?.units).toEqual(['c.service']);

    now += 30_000; // pid 30 is old now
    proc.move(20, 8, 'b2', '/system.slice/b.service');
    proc.move(30, 9, 'c', '/system.slice/c.service');
    const rounds: Array<string[] | undefined> = [];
    for (let r = 4; r <= 15; r++) {
      await names.refresh(); // round r reads pids with pid % 12 === r % 12: 30 in round 6, 20 in round 8
      rounds.push(names.nameOf(8)?.processes.map((p) => p.comm));
    }
    expect(rounds.slice(0, 5)).toEqual([['c'], ['c'], ['c'], ['c'], ['b2']]); // round 6: 30 left netns 8 (its last name kept), round 8: 20 came
    expect(names.nameOf(7)?.processes).toEqual([{ comm: 'a', count: 1 }]);
    expect(names.nameOf(9)?.units).toEqual(['c.service']);
  });

  it('keeps names equal to a fresh reading as processes come, go and move', async () => {
    const proc = fakeProc();
    const now = 0; // every process young: each refresh reads them all, and moves show at once
    const pod = (i: number) => `/kubepods.slice/kubepods-pod${`0000000${i}-1b2c-4d5e-8f90-a1b2c3d4e5f6`.slice(-36).replaceAll('-', '_')}.slice/cri-containerd-${String(i % 10).repeat(64)}.scope`;
    const cgroupOf = (n: number) => (n % 3 === 0 ? `/system.slice/unit-${n % 4}.service` : pod(n % 5));
    for (let pid = 1; pid <= 200; pid++) proc.add(pid, 100 + (pid % 10), `cmd-${pid % 6}`, cgroupOf(pid));
    proc.add(300, 150, 'gone', cgroupOf(300));
    proc.add(301, 150, 'gone', cgroupOf(301));
    const names = new NetnsNames(proc.root, () => now);
    await names.refresh();
    const lastOf150 = names.nameOf(150);
    // Processes come, some move, some go.
    for (let pid = 201; pid <= 260; pid++) proc.add(pid, 100 + (pid % 12), `cmd-${pid % 4}`, cgroupOf(pid));
    for (let pid = 1; pid <= 200; pid += 7) proc.remove(pid);
    await names.refresh();
    for (let pid = 201; pid <= 260; pid += 3) proc.move(pid, 100 + ((pid * 7) % 13), `moved-${pid % 2}`, cgroupOf(pid + 1));
    for (let pid = 202; pid <= 260; pid += 5) proc.remove(pid);
    for (let pid = 2; pid <= 200; pid += 10) if (pid % 7 !== 1) proc.remove(pid); // most of netns 102's
    proc.remove(300);
    proc.remove(301);
    await names.refresh();

    const fresh = new NetnsNames(proc.root, () => now);
    await fresh.refresh();
    for (let inode = 100; inode < 113; inode++) expect(names.nameOf(inode), `netns ${inode}`).toEqual(fresh.nameOf(inode));
    expect(fresh.nameOf(150)).toBeUndefined();
    expect(names.nameOf(150)).toBe(lastOf150); // its processes are gone: its last name stays
    expect(lastOf150?.processes).toEqual([{ comm: 'gone', count: 2 }]);
  });

  it('runs one refresh at a time, and answers from the last completed one meanwhile', async () => {
    const proc = fakeProc();
    proc.add(10, 7, 'a', '/system.slice/a.service');
    const names = new NetnsNames(proc.root);
    await names.refresh();
    proc.add(11, 7, 'b', '/system.slice/b.service');
    const running = names.refresh();
    expect(names.refresh()).toBe(running);
    expect(names.nameOf(7)?.units).toEqual(['a.service']);
    await running;
    expect(names.nameOf(7)?.units).toEqual(['a.service', 'b.service']);
    expect(names.refresh()).not.toBe(running);
  });

  it('reads a large /proc in batches, letting the event loop run between them', { timeout: 30_000 }, async () => {
    const proc = fakeProc();
    const PROCESSES = 3000;
    for (let pid = 1; pid <= PROCESSES; pid++) proc.add(pid, 4026532000 + (pid % 100), `app-${pid % 7}`, `/system.slice/unit-${pid % 10}.service`);
    const names = new NetnsNames(proc.root);
    // One turn of the event loop's check phase each: the refresh yields with setImmediate between batches of 64.
    let turns = 0;
    let namedMeanwhile = false;
    let longest = 0;
    let last = performance.now();
    let done = false;
    const turn = () => {
      const t = performance.now();
      longest = Math.max(longest, t - last);
      last = t;
      turns++;
      namedMeanwhile ||= names.nameOf(4026532000) !== undefined;
      if (!done) setImmediate(turn);
    };
    setImmediate(turn);
    const start = performance.now();
    await names.refresh();
    const total = performance.now() - start;
    done = true;
    expect(turns).toBeGreaterThanOrEqual(Math.ceil(PROCESSES / 64) - 1);
    expect(namedMeanwhile).toBe(false); // names appear when the refresh completes
    expect(names.nameOf(4026532000)?.processes.reduce((n, p) => n + p.count, 0)).toBe(30);
    expect(names.lastReads).toBe(3 * PROCESSES);
    // No single stretch holds the loop for a good part of the refresh (the synchronous one was all of it).
    expect(longest).toBeLessThan(total / 2);
  });
  it('drops the name of a netns left without processes after 10 minutes (names stay bounded by the netns alive)', async () => {
    const proc = fakeProc();
    let now = 0;
    const names = new NetnsNames(proc.root, () => now);
    proc.add(50, 21, 'envoy', `/kubepods/besteffort/pod${UID}/${ID1}`);
    await names.refresh();
    proc.remove(50);
    now = 1_000;
    await names.refresh();
    now = 1_000 + 10 * 60_000 - 1;
    await names.refresh();
    expect(names.nameOf(21)?.pods).toEqual([UID]); // its final rows still need it
    now = 1_000 + 10 * 60_000;
    await names.refresh();
    expect(names.nameOf(21)).toBeUndefined();
  });
});
