// The linux-arm64 prebuild on an arm64 machine: a Debian 13 arm64 root with no
// compiler (test/package/guest-root.sh arm64), the packed ctstorm installed in it as npm
// installs it, booted on its own arm64 kernel in QEMU (test/vm/run.sh --root). Inside,
// test/package/arm64-guest.sh runs npm's install step, then a snapshot in each attach
// mode over real flows; here its results are held to the exact counts.
import { beforeAll, describe, expect, it } from 'vitest';
import { liveSkipReason } from '../live/privileges.js';
import { ourProgramsIn } from '../live/programs.js';
import { BOOT_HOOK_TIMEOUT_MS, guest } from './guest.js';

const skip = liveSkipReason();
const arm64 = guest('arm64');
const read = arm64.read;
const modes = ['fentry', 'kprobe', 'tracepoint'] as const;
// What arm64-guest.sh sends: 500 one-way UDP flows, 5 TCP connections, 5 answered UDP flows.
const flows = { udp: 505, tcp: 5 };

describe.skipIf(skip !== undefined)('the linux-arm64 prebuild, installed and run on an arm64 kernel', () => {
  // Packing, perhaps a fresh Debian root, then the guest.
  beforeAll(() => arm64.boot(), BOOT_HOOK_TIMEOUT_MS);

  it('is an aarch64 machine whose npm install step takes the prebuild, compiling nothing', () => {
    expect(read('machine')).toBe('aarch64');
    expect([read('install.rc'), read('install.out')]).toEqual(['0', '']);
    expect(read('addon')).toBe('/usr/lib/node_modules/ctstorm/prebuilds/linux-arm64/ctstorm.glibc.node');
  });

  it('loads the probe in every attach mode', () => {
    const report = JSON.parse(read('modes.json')) as Array<{ mode: string; available: boolean }>;
    expect(report.map((m) => [m.mode, m.available])).toEqual(modes.map((m) => [m, true]));
  });

  it.each(modes)('counts every flow exactly in %s mode, and leaves no program loaded once it ends', (mode) => {
    expect([read(`${mode}.rc`), read(`${mode}.err`)]).toEqual(['0', `ctstorm: attached in ${mode} mode, counting`]);
    const netns = Number(read('netns'));
    const snap = JSON.parse(read(`${mode}.json`)) as {
      mode: string;
      netns: Array<{ inode: number; inserts: number; destroys: number; lost: number; protocols: Array<{ proto: string; inserts: number; destroys: number }> }>;
    };
    const server = snap.netns.find((n) => n.inode === netns);
    const total = flows.udp + flows.tcp;
    expect(server).toMatchObject({ inserts: total, destroys: total, lost: 0 });
    const byProto = Object.fromEntries(server!.protocols.map((p) => [p.proto, [p.inserts, p.destroys]]));
    expect(byProto).toEqual({ udp: [flows.udp, flows.udp], tcp: [flows.tcp, flows.tcp] });
    expect(ourProgramsIn(JSON.parse(read(`${mode}.progs.json`)))).toEqual([]);
  });
});
