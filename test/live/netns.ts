// Two network namespaces joined by a veth pair, conntrack active in the server
// namespace only (an nftables "ct state" rule), and the traffic helper run in them.
import { execFile, execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { statSync } from 'node:fs';
import { promisify } from 'node:util';
import { parseConntrackStat, type KernelStats } from '../../src/kernel-stats.js';
import { TrafficClient, trafficScript } from './traffic-client.js';
import { until } from './wait.js';

const execFileAsync = promisify(execFile);

function sh(cmd: string, args: string[]): string {
  return execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}

export class NetnsPair {
  readonly client: string;
  readonly server: string;
  readonly clientAddr: string;
  readonly serverAddr: string;
  readonly tcpPort = 7100;
  readonly udpPort = 7200;
  private serverProc: ChildProcess | undefined;
  private trafficClient: TrafficClient | undefined;

  constructor(tag: string) {
    const n = (process.pid % 200) + 20;
    this.client = `cts-${tag}-c`;
    this.server = `cts-${tag}-s`;
    // 198.18.0.0/15 is reserved for tests; these addresses exist only inside
    // the namespaces made here.
    this.clientAddr = `198.18.${n}.1`;
    this.serverAddr = `198.18.${n}.2`;
  }

  /** Inode of the server namespace: what `stat -L -c %i /run/netns/NAME` prints. */
  get serverInode(): number {
    return statSync(`/run/netns/${this.server}`).ino;
  }

  exec(ns: string, cmd: string, ...args: string[]): string {
    return sh('ip', ['netns', 'exec', ns, cmd, ...args]);
  }

  /** exec without blocking the event loop (a probe keeps draining meanwhile). */
  async execAsync(ns: string, cmd: string, ...args: string[]): Promise<string> {
    return (await execFileAsync('ip', ['netns', 'exec', ns, cmd, ...args], { encoding: 'utf8' })).stdout;
  }

  up(): void {
    this.down();
    const vc = `ctv${process.pid % 100000}c`;
    const vs = `ctv${process.pid % 100000}s`;
    sh('ip', ['netns', 'add', this.client]);
    sh('ip', ['netns', 'add', this.server]);
    sh('ip', ['link', 'add', vc, 'netns', this.client, 'type', 'veth', 'peer', 'name', vs, 'netns', this.server]);
    for (const [ns, dev, addr] of [
      [this.client, vc, this.clientAddr],
      [this.server, vs, this.serverAddr],
    ] as const) {
      this.exec(ns, 'sysctl', '-qw', 'net.ipv6.conf.all.disable_ipv6=1');
      this.exec(ns, 'ip', 'addr', 'add', `${addr}/24`, 'dev', dev);
      this.exec(ns, 'ip', 'link', 'set', dev, 'up');
      this.exec(ns, 'ip', 'link', 'set', 'lo', 'up');
    }
    // Any conntrack match registers conntrack in this netns, IPv4 only.
    this.exec(
      this.server,
      'nft',
      'add table ip ctstorm_test; add chain ip ctstorm_test input { type filter hook input priority 0; }; add rule ip ctstorm_test input ct state new accept',
    );
  }

  async startServer(): Promise<void> {
    const proc = spawn(
      'ip',
      ['netns', 'exec', this.server, process.execPath, trafficScript, 'server', this.serverAddr, String(this.tcpPort), String(this.udpPort)],
      { stdio: ['ignore', 'pipe', 'inherit'] },
    );
    this.serverProc = proc;
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('traffic server did not start in 30 s')), 30_000);
      proc.stdout!.on('data', (d: Buffer) => {
        if (d.toString().includes('ready')) {
          clearTimeout(timer);
          resolve();
        }
      });
      proc.on('exit', (code) => reject(new Error(`traffic server exited with ${code}`)));
    });
  }

  /** Opens nTcp TCP connections and nUdp UDP flows; returns the client ports used. */
  async runClient(nTcp: number, nUdp: number): Promise<{ tcp: number[]; udp: number[] }> {
    return (await this.ask({ op: 'flows', tcpPort: this.tcpPort, udpPort: this.udpPort, tcp: nTcp, udp: nUdp })) as { tcp: number[]; udp: number[] };
  }

  /** n one-way UDP datagrams to a port nobody listens on, each from its own port. */
  async oneway(n: number, port = 7300): Promise<number[]> {
    return ((await this.ask({ op: 'oneway', port, n })) as { udp: number[] }).udp;
  }

  /** Sends one command to the client process (started on first use), in order. */
  private ask(command: object): Promise<unknown> {
    this.trafficClient ??= new TrafficClient(this.client, this.serverAddr);
    return this.trafficClient.ask(command);
  }

  /** Entries in the server namespace's table, by `conntrack -C`. */
  count(): number {
    return Number.parseInt(this.exec(this.server, 'conntrack', '-C'), 10);
  }

  /** The server namespace's conntrack statistics (/proc/net/stat/nf_conntrack, per-CPU rows summed). */
  stats(): KernelStats {
    return parseConntrackStat(this.exec(this.server, 'cat', '/proc/net/stat/nf_conntrack'));
  }

  /** Flushes the server table and waits (bounded) until it is empty: a clean slate
   * for the next probe, so no entry made earlier is destroyed while it watches. */
  async empty(): Promise<void> {
    this.flush();
    await until(() => this.count() === 0, 10_000, `the ${this.server} conntrack table to empty after a flush`);
  }

  flush(): void {
    this.exec(this.server, 'conntrack', '-F');
  }

  down(): void {
    this.serverProc?.kill('SIGKILL');
    this.serverProc = undefined;
    this.trafficClient?.close();
    this.trafficClient = undefined;
    for (const ns of [this.client, this.server]) {
      try {
        sh('ip', ['netns', 'del', ns]);
      } catch {
        // not there
      }
    }
  }
}
