// The benchmarks' lab: two network namespaces joined by a veth, conntrack
// active in the server one (an nftables `ct state new accept` rule), and the
// settings a run changes put back afterwards. Root only.
import { execFile, execFileSync } from 'node:child_process';
import { promisify } from 'node:util';

const execFileAsync = promisify(execFile);

export const sh = (...args) => execFileSync(args[0], args.slice(1), { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });

export class Lab {
  constructor(tag = `cb${process.pid % 10000}`) {
    this.client = `${tag}-c`;
    this.server = `${tag}-s`;
    this.clientDev = `${tag}c`;
    this.serverDev = `${tag}s`;
    this.clientAddr = '198.19.11.1';
    this.serverAddr = '198.19.11.2';
  }

  inNs(ns, ...args) {
    return sh('ip', 'netns', 'exec', ns, ...args);
  }

  async inNsAsync(ns, ...args) {
    return (await execFileAsync('ip', ['netns', 'exec', ns, ...args], { encoding: 'utf8' })).stdout;
  }

  /** @param {{ udpTimeout?: number }} o UDP timeout in the server netns: longer than a run, so nothing expires in it. */
  up(o = {}) {
    this.down();
    sh('ip', 'netns', 'add', this.client);
    sh('ip', 'netns', 'add', this.server);
    sh('ip', 'link', 'add', this.clientDev, 'netns', this.client, 'type', 'veth', 'peer', 'name', this.serverDev, 'netns', this.server);
    this.inNs(this.client, 'ip', 'addr', 'add', `${this.clientAddr}/24`, 'dev', this.clientDev);
    this.inNs(this.server, 'ip', 'addr', 'add', `${this.serverAddr}/24`, 'dev', this.serverDev);
    for (const [ns, dev] of [[this.client, this.clientDev], [this.server, this.serverDev]]) {
      this.inNs(ns, 'ip', 'link', 'set', dev, 'up');
      this.inNs(ns, 'ip', 'link', 'set', 'lo', 'up');
    }
    // The generator's packets come from addresses nobody routes back to.
    for (const key of ['all', 'default', this.serverDev]) this.inNs(this.server, 'sysctl', '-qw', `net.ipv4.conf.${key}.rp_filter=0`);
    this.inNs(this.server, 'nft', 'add table ip bench; add chain ip bench in { type filter hook input priority 0; }; add rule ip bench in ct state new accept');
    if (o.udpTimeout) this.inNs(this.server, 'sysctl', '-qw', `net.netfilter.nf_conntrack_udp_timeout=${o.udpTimeout}`);
    // SYNs nobody listens for are answered by a reset, which would close their
    // entries, and UDP to a closed port by an ICMP error: the server drops both
    // before conntrack sees them (priority -300, ahead of conntrack's -200), so
    // each packet stays one new entry, as in a storm of real clients.
    this.inNs(this.server, 'nft', 'add table ip quiet; add chain ip quiet out { type filter hook output priority -300; }; add rule ip quiet out tcp flags rst drop; add rule ip quiet out icmp type destination-unreachable drop');
    this.inNs(this.server, 'sysctl', '-qw', 'net.netfilter.nf_conntrack_tcp_timeout_syn_sent=600');
    return this;
  }

  down() {
    for (const ns of [this.client, this.server]) {
      try {
        sh('ip', 'netns', 'del', ns);
      } catch {
        // not there
      }
    }
  }

  /** The server netns's inode (ctstorm's rows name a netns by it). */
  serverInode() {
    return Number(sh('stat', '-L', '-c', '%i', `/run/netns/${this.server}`).trim());
  }

  count() {
    return Number.parseInt(this.inNs(this.server, 'conntrack', '-C'), 10);
  }

  /** Empties the server netns's table, and waits until its count says so: freed
   * entries leave the count a little later (RCU), and a storm that starts before
   * would meet a limit not yet lowered (an early drop). */
  async flush() {
    this.inNs(this.server, 'conntrack', '-F');
    for (let i = 0; i < 200 && this.count() !== 0; i++) await new Promise((r) => setTimeout(r, 50));
    if (this.count() !== 0) throw new Error(`the server netns still holds ${this.count()} entries 10 s after a flush`);
  }
}

/** CPU seconds (user, system) a process has used, from /proc/<pid>/stat. */
export function processCpu(pid) {
  const stat = sh('cat', `/proc/${pid}/stat`);
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const tick = Number(sh('getconf', 'CLK_TCK').trim());
  return { user: Number(fields[11]) / tick, system: Number(fields[12]) / tick };
}

/** Sets a sysctl of ctstorm's (the initial) netns; returns the function that puts it back. */
export function setSysctl(key, value) {
  const path = `/proc/sys/${key.replaceAll('.', '/')}`;
  const before = sh('cat', path).trim();
  if (before === String(value)) return () => {};
  sh('sysctl', '-qw', `${key}=${value}`);
  return () => sh('sysctl', '-qw', `${key}=${before}`);
}

/** Run counts and run time of ctstorm's BPF programs (kernel.bpf_stats_enabled on). */
export function bpfProgramStats(names) {
  const progs = JSON.parse(sh('bpftool', 'prog', 'show', '-j'));
  const out = {};
  for (const p of progs) {
    // The kernel keeps 15 characters of a program's name; bpftool shows the whole
    // one when the program carries BTF function info.
    const name = names.find((n) => n === p.name || n.slice(0, 15) === p.name);
    if (!name) continue;
    const cur = out[name] ?? { runs: 0, ns: 0 };
    out[name] = { runs: cur.runs + (p.run_cnt ?? 0), ns: cur.ns + (p.run_time_ns ?? 0) };
  }
  return out;
}

export function percentile(sorted, p) {
  if (sorted.length === 0) return null;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
}
