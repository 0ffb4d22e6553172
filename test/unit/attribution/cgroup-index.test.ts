// Cgroup ids to paths: the cgroup2 mount from mountinfo, then an index over a
// directory tree shaped like kubelet's (systemd driver) with containerd scopes,
// where ids are the directories' inodes as in the cgroup2 filesystem. One test
// runs against this machine's own cgroup2 mount.
import { mkdirSync, mkdtempSync, readFileSync, renameSync, rmdirSync, rmSync, statfsSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { CgroupIndex, cgroup2MountOf } from '../../../src/attribution/cgroup-index.js';
import { identityOf } from '../../../src/attribution/cgroup-names.js';

const CGROUP2_SUPER_MAGIC = 0x63677270;
const UID = '7f9d2c4a-1b2c-4d5e-8f90-a1b2c3d4e5f6';
const ID1 = 'a'.repeat(64);
const ID2 = 'b'.repeat(64);
const POD = `/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod${UID.replaceAll('-', '_')}.slice`;
/** An id no test directory has. */
const UNKNOWN = Number.MAX_SAFE_INTEGER;

describe('cgroup2MountOf', () => {
  it('finds /sys/fs/cgroup on a unified (systemd) host', () => {
    const mountinfo = [
      '22 1 252:1 / / rw,relatime shared:1 - ext4 /dev/vda1 rw',
      '23 22 0:21 / /proc rw,nosuid,nodev,noexec,relatime shared:12 - proc proc rw',
      '24 22 0:22 / /sys rw,nosuid,nodev,noexec,relatime shared:2 - sysfs sysfs rw',
      '25 24 0:23 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:3 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot',
      '26 24 0:24 / /sys/fs/bpf rw,nosuid,nodev,noexec,relatime shared:4 - bpf bpf rw,mode=700',
      '',
    ].join('\n');
    expect(cgroup2MountOf(mountinfo)).toBe('/sys/fs/cgroup');
  });

  it('finds /sys/fs/cgroup/unified on a hybrid host, by file system type rather than by name', () => {
    const mountinfo = [
      '30 22 0:27 / /sys/fs/cgroup ro,nosuid,nodev,noexec shared:9 - tmpfs tmpfs ro,mode=755',
      '31 30 0:28 / /mnt/cgroup2 rw,relatime shared:10 - tmpfs cgroup2 rw', // named cgroup2, is not
      '32 30 0:29 / /sys/fs/cgroup/unified rw,nosuid,nodev,noexec,relatime shared:11 master:2 - cgroup2 cgroup2 rw,nsdelegate',
      '33 30 0:30 / /sys/fs/cgroup/systemd rw,nosuid,nodev,noexec,relatime shared:12 - cgroup cgroup rw,xattr,name=systemd',
      '34 30 0:31 / /sys/fs/cgroup/memory rw,nosuid,nodev,noexec,relatime shared:13 - cgroup cgroup rw,memory',
    ].join('\n');
    expect(cgroup2MountOf(mountinfo)).toBe('/sys/fs/cgroup/unified');
  });

  it('finds none on a cgroup v1 host', () => {
    const mountinfo = [
      '30 22 0:27 / /sys/fs/cgroup ro,nosuid,nodev,noexec shared:9 - tmpfs tmpfs ro,mode=755',
      '31 30 0:28 / /sys/fs/cgroup/systemd rw,nosuid,nodev,noexec,relatime shared:10 - cgroup cgroup rw,xattr,release_agent=/usr/lib/systemd/systemd-cgroups-agent,name=systemd',
      '32 30 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid,nodev,noexec,relatime shared:11 - cgroup cgroup rw,cpu,cpuacct',
    ].join('\n');
    expect(cgroup2MountOf(mountinfo)).toBeUndefined();
    expect(cgroup2MountOf('')).toBeUndefined();
  });

  it('unescapes octal escapes in the mount point', () => {
    expect(cgroup2MountOf('40 22 0:37 / /mnt/my\\040cgroups\\134v2 rw,relatime - cgroup2 none rw')).toBe('/mnt/my cgroups\\v2');
  });

  it('prefers the whole hierarchy to a bind mount of a subtree, and takes the subtree when it is all there is', () => {
    const subtree = `50 40 0:37 ${POD} /host/pod rw,relatime - cgroup2 cgroup2 rw`;
    const whole = '51 40 0:37 / /sys/fs/cgroup rw,relatime - cgroup2 cgroup2 rw';
    expect(cgroup2MountOf(`${subtree}\n${whole}\n`)).toBe('/sys/fs/cgroup');
    expect(cgroup2MountOf(`${subtree}\n`)).toBe('/host/pod');
  });
});

describe('CgroupIndex', () => {
  const roots: string[] = [];
  afterEach(() => {
    for (const d of roots.splice(0)) rmSync(d, { recursive: true, force: true });
  });

  /** A cgroup tree of directories, each with a controller file as cgroupfs has.
   * stage() makes a directory beside the tree and moveIn() renames it in: the
   * inode is taken before anything is removed, so none is reused (ext4 would). */
  function fakeCgroupTree(paths: string[]) {
    const top = mkdtempSync(join(tmpdir(), 'ctstorm-cgroup-'));
    roots.push(top);
    const root = join(top, 'mount');
    const make = (dir: string): number => {
      mkdirSync(dir, { recursive: true });
      writeFileSync(join(dir, 'cgroup.procs'), '');
      return statSync(dir).ino;
    };
    make(root);
    for (const path of paths) make(join(root, path));
    return {
      root,
      add: (path: string) => make(join(root, path)),
      stage: (name: string) => make(join(top, 'staging', name)),
      moveIn: (name: string) => renameSync(join(top, 'staging', name), join(root, name)),
      remove: (path: string) => rmSync(join(root, path), { recursive: true }),
      idOf: (path: string) => statSync(join(root, path)).ino,
    };
  }

  const KUBELET_TREE = [`${POD}/cri-containerd-${ID1}.scope`, `${POD}/cri-containerd-${ID2}.scope`, '/system.slice/containerd.service'];

  it('maps each directory\'s inode to its path below the mount', () => {
    const tree = fakeCgroupTree(KUBELET_TREE);
    const index = new CgroupIndex({ mount: tree.root });
    expect(index.available).toBe(true);
    expect(index.pathOf(tree.idOf('/'))).toBe('/');
    expect(index.lastWalk.dirs).toBe(8); // root, kubepods, burstable, pod, 2 scopes, system.slice, containerd.service
    for (const path of ['/kubepods.slice', POD, `${POD}/cri-containerd-${ID1}.scope`, `${POD}/cri-containerd-${ID2}.scope`, '/system.slice', '/system.slice/containerd.service']) {
      expect(index.pathOf(tree.idOf(path))).toBe(path);
    }
    expect(identityOf(index.pathOf(tree.idOf(`${POD}/cri-containerd-${ID2}.scope`))!)).toEqual({ podUid: UID, qos: 'burstable', containerId: ID2, runtime: 'containerd' });
  });

  it('finds a new cgroup on a miss, walking at most once per minRefreshMs however many misses', () => {
    const tree = fakeCgroupTree(KUBELET_TREE);
    let now = 0;
    const index = new CgroupIndex({ mount: tree.root, minRefreshMs: 1000, now: () => now });
    expect(index.pathOf(UNKNOWN)).toBeUndefined(); // the first walk
    const scope = `${POD}/cri-containerd-${'c'.repeat(64)}.scope`;
    const id = tree.add(scope);
    for (now = 0; now < 1000; now += 10) {
      expect(index.pathOf(UNKNOWN)).toBeUndefined();
      expect(index.pathOf(id)).toBeUndefined(); // no walk yet: the new scope is unseen
    }
    now = 1000;
    expect(index.pathOf(id)).toBe(scope);
    expect(index.lastWalk.dirs).toBe(9);
    const later = tree.add('/system.slice/sshd.service');
    now = 1999;
    expect(index.pathOf(UNKNOWN)).toBeUndefined();
    expect(index.pathOf(later)).toBeUndefined();
    now = 2000;
    expect(index.pathOf(later)).toBe('/system.slice/sshd.service');
  });

  it('keeps the path of a removed cgroup', () => {
    const tree = fakeCgroupTree(KUBELET_TREE);
    const scope = `${POD}/cri-containerd-${ID1}.scope`;
    const id = tree.idOf(scope);
    const index = new CgroupIndex({ mount: tree.root });
    index.refresh();
    tree.remove(scope);
    index.refresh();
    expect(index.lastWalk.dirs).toBe(7);
    expect(index.pathOf(id)).toBe(scope);
  });

  it('holds at most maxEntries cgroups, dropping the earliest removed first', () => {
    const tree = fakeCgroupTree(['/a', '/b']);
    for (const name of ['c', 'd', 'e', 'f']) tree.stage(name);
    const [a, b] = [tree.idOf('/a'), tree.idOf('/b')];
    const index = new CgroupIndex({ mount: tree.root, maxEntries: 4 });
    index.refresh(); // root, a, b
    tree.moveIn('c');
    tree.remove('/a');
    index.refresh(); // root, b, c; a removed: 4 held
    expect(index.pathOf(a)).toBe('/a');
    tree.moveIn('d');
    tree.remove('/b');
    index.refresh(); // root, c, d; b and a removed: 5, so a goes
    expect(index.pathOf(b)).toBe('/b');
    expect(index.pathOf(a)).toBeUndefined();
    tree.moveIn('e');
    tree.moveIn('f');
    index.refresh(); // root, c, d, e, f: the walk stops at four
    expect(index.lastWalk.dirs).toBe(4);
  });

  it('knows no path and walks nothing without a cgroup2 mount', () => {
    const index = new CgroupIndex({ mount: null });
    expect(index.available).toBe(false);
    expect(index.pathOf(1)).toBeUndefined();
    expect(index.lastWalk).toEqual({ dirs: 0, ms: 0 });
  });

  it('on this machine: finds its cgroup2 mount, whose root is id 1, and a cgroup made in it (root)', () => {
    const mount = cgroup2MountOf(readFileSync('/proc/self/mountinfo', 'utf8'));
    const index = new CgroupIndex({ minRefreshMs: 0 }); // the cgroup made below is new to it
    if (mount === undefined) {
      expect(index.available).toBe(false);
      expect(index.pathOf(1)).toBeUndefined();
      for (const candidate of ['/sys/fs/cgroup', '/sys/fs/cgroup/unified']) {
        let type: number | undefined;
        try {
          type = statfsSync(candidate).type;
        } catch {
          // not there at all
        }
        expect(type).not.toBe(CGROUP2_SUPER_MAGIC);
      }
      return;
    }
    expect(statfsSync(mount).type).toBe(CGROUP2_SUPER_MAGIC);
    expect(index.available).toBe(true);
    // The root cgroup's id, which bpf_get_current_cgroup_id() returns in it, is 1.
    expect(statSync(mount).ino).toBe(1);
    expect(index.pathOf(1)).toBe('/');
    if (process.getuid?.() !== 0) return; // making a cgroup needs root; the root's id is checked above
    const name = `ctstorm-test-${process.pid}`;
    mkdirSync(join(mount, name));
    try {
      expect(index.pathOf(statSync(join(mount, name)).ino)).toBe(`/${name}`);
    } finally {
      rmdirSync(join(mount, name));
    }
  });
});
