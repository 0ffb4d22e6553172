// The host service under a real systemd: a Debian 13 root with systemd, its own kernel
// and the packed ctstorm installed by npm, deploy/ctstorm.service copied and enabled
// as its comment tells users (test/package/guest-root.sh systemd). QEMU boots it with
// systemd as PID 1 (test/vm/run.sh --systemd); systemd starts ctstorm in the unit's
// sandbox, and test/package/systemd-guest.sh, run once the system is up, makes flows,
// scrapes /metrics and stops the service. Here its results are held to the exact
// values, and the sandbox to what the unit asks for.
import { beforeAll, describe, expect, it } from 'vitest';
import { liveSkipReason } from '../live/privileges.js';
import { ourProgramsIn } from '../live/programs.js';
import { BOOT_HOOK_TIMEOUT_MS, guest } from './guest.js';

const skip = liveSkipReason();
const systemd = guest('systemd');
const read = systemd.read;

/** `systemctl show -p A -p B` output as an object. */
function props(name: string): Record<string, string> {
  return Object.fromEntries(read(name).split('\n').map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]));
}

/** Capability names in a /proc/<pid>/status mask (the numbers of linux/capability.h). */
function capabilities(hex: string): string[] {
  const names: Record<number, string> = { 19: 'CAP_SYS_PTRACE', 38: 'CAP_PERFMON', 39: 'CAP_BPF' };
  const mask = BigInt(`0x${hex}`);
  const out: string[] = [];
  for (let bit = 0; bit < 64; bit++) if ((mask >> BigInt(bit)) & 1n) out.push(names[bit] ?? `bit ${bit}`);
  return out;
}

describe.skipIf(skip !== undefined)('the host service, started by systemd and scraped', () => {
  // Packing, perhaps a fresh Debian root, then the guest.
  beforeAll(() => systemd.boot(), BOOT_HOOK_TIMEOUT_MS);

  it('starts at boot and serves, without a restart', () => {
    expect(props('state.start')).toEqual({ ActiveState: 'active', SubState: 'running', NRestarts: '0' });
    expect(read('journal.start')).toMatch(/attached in \w+ mode, serving http:\/\/127\.0\.0\.1:9477\/metrics/);
  });

  it('runs with only the capabilities, privileges and syscalls the unit grants', () => {
    const status = Object.fromEntries(read('status').split('\n').map((l) => l.split(/:\s+/)));
    for (const set of ['CapPrm', 'CapEff', 'CapBnd']) {
      expect([set, capabilities(status[set]!)]).toEqual([set, ['CAP_SYS_PTRACE', 'CAP_PERFMON', 'CAP_BPF']]);
    }
    expect([capabilities(status.CapInh!), capabilities(status.CapAmb!)]).toEqual([[], []]);
    expect(status.NoNewPrivs).toBe('1');
    expect(status.Seccomp).toBe('2'); // a filter: SystemCallFilter
    // ProtectSystem=strict: no file it can write; ProtectKernelTunables: nor a sysctl.
    // Outside its sandbox both writes succeed.
    expect(read('outside')).toBe('0');
    expect(read('sandbox').split('\n')).toEqual([
      "touch: cannot touch 'probe': Read-only file system",
      'sh: 1: cannot create /proc/sys/net/netfilter/nf_conntrack_max: Read-only file system',
    ]);
  });

  it('attaches in tracepoint mode: the capabilities it is given refuse the others, each saying why', () => {
    // Listing BTF objects (the nf_conntrack module's, for fentry) needs CAP_SYS_ADMIN,
    // and so does opening kprobes where perf_event_paranoid is above 2 (Debian's 3).
    expect(read('journal.start')).toContain('attached in tracepoint mode');
    expect(capabilities(read('modes.caps').split(/\s+/)[1]!)).toEqual(['CAP_SYS_PTRACE', 'CAP_PERFMON', 'CAP_BPF']); // what modes ran with
    const modes = JSON.parse(read('modes.json')) as Array<{ mode: string; available: boolean; reason?: string }>;
    const paranoid = Number(read('paranoid'));
    expect(modes.map((m) => [m.mode, m.available])).toEqual([
      ['fentry', false],
      ['kprobe', paranoid <= 2],
      ['tracepoint', true],
    ]);
    expect(modes[0]!.reason).toMatch(/^finding the nf_conntrack module's BTF needs CAP_SYS_ADMIN/);
    if (paranoid > 2) expect(modes[1]!.reason).toMatch(new RegExp(`^kernel.perf_event_paranoid is ${paranoid}, above 2, so opening kprobes needs CAP_SYS_ADMIN`));
  });

  it('serves the flows exactly on /metrics', () => {
    const ino = read('netns');
    const metrics = read('metrics');
    const inserts = (proto: string) => new RegExp(`^ctstorm_conntrack_inserts_total\\{netns="${ino}",protocol="${proto}"\\} (\\d+)$`, 'm').exec(metrics)?.[1];
    expect([inserts('tcp'), inserts('udp')]).toEqual(['3', '2']);
  });

  it('stops cleanly on systemctl stop and leaves no program loaded', () => {
    expect(props('state.stop')).toEqual({ ActiveState: 'inactive', Result: 'success', ExecMainStatus: '0', NRestarts: '0' });
    expect(ourProgramsIn(JSON.parse(read('progs.json')))).toEqual([]);
  });
});
