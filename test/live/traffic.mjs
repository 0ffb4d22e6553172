// Test traffic between two network namespaces. Run under `ip netns exec`.
//   server <addr> <tcpPort> <udpPort>  accept TCP (read to end, close), echo UDP; prints "ready"
//   client <addr>                      a long-lived client: reads one JSON command per stdin
//                                      line, answers one JSON line per command. One process
//                                      serves a whole test file: starting node costs seconds
//                                      in the QEMU guest.
// Client commands:
//   {"op":"flows","tcpPort":p,"udpPort":q,"tcp":n,"udp":m}
//       n TCP connections and m UDP flows (one source port each), all answered
//       -> {"tcp":[ports],"udp":[ports]}
//   {"op":"oneway","port":p,"n":n}
//       n UDP datagrams from n source ports, no answer awaited (unreplied entries:
//       the ones early drop evicts) -> {"udp":[ports]}
// A failed command answers {"error":"..."}.
import net from 'node:net';
import dgram from 'node:dgram';
import readline from 'node:readline';

const [role, addr, tcpPortArg, udpPortArg] = process.argv.slice(2);
const TIMEOUT_MS = 10_000;

function withTimeout(promise, what) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} timed out`)), TIMEOUT_MS);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

function server(tcpPort, udpPort) {
  const tcp = net.createServer((sock) => {
    sock.on('data', () => {});
    sock.on('end', () => sock.end());
    sock.on('error', () => {});
  });
  const udp = dgram.createSocket('udp4');
  udp.on('message', (msg, rinfo) => udp.send(msg, rinfo.port, rinfo.address));
  let ready = 0;
  const up = () => ++ready === 2 && process.stdout.write('ready\n');
  tcp.listen(tcpPort, addr, up);
  udp.bind(udpPort, addr, up);
}

function tcpOnce(port) {
  return withTimeout(
    new Promise((resolve, reject) => {
      const sock = net.connect({ host: addr, port }, () => {
        const local = sock.localPort;
        sock.end('x');
        sock.on('close', () => resolve(local));
      });
      sock.on('data', () => {});
      sock.on('error', reject);
    }),
    'tcp connection',
  );
}

// The socket stays open (bound) until the caller closes it, so no later flow of the
// same command can get its source port and ride on its conntrack entry.
function udpOnce(port, open) {
  return withTimeout(
    new Promise((resolve, reject) => {
      const sock = dgram.createSocket('udp4');
      open.push(sock);
      sock.on('error', reject);
      sock.on('message', () => resolve(sock.address().port));
      sock.send('x', port, addr);
    }),
    'udp flow',
  );
}

function closeAll(socks) {
  return Promise.all(socks.map((sock) => new Promise((resolve) => sock.close(resolve))));
}

async function inBatches(n, once, width = 16) {
  const ports = [];
  for (let i = 0; i < n; i += width) {
    const batch = [];
    for (let j = i; j < Math.min(n, i + width); j++) batch.push(once());
    ports.push(...(await Promise.all(batch)));
  }
  return ports;
}

async function flows({ tcpPort, udpPort, tcp, udp }) {
  const open = [];
  try {
    return {
      tcp: await inBatches(tcp, () => tcpOnce(tcpPort)),
      udp: await inBatches(udp, () => udpOnce(udpPort, open)),
    };
  } finally {
    await closeAll(open);
  }
}

async function oneway({ port, n }) {
  const open = [];
  const ports = [];
  try {
    for (let i = 0; i < n; i++) {
      const sock = dgram.createSocket('udp4');
      open.push(sock);
      sock.on('error', () => {}); // ICMP port unreachable comes back as an error
      await new Promise((resolve) => sock.send('x', port, addr, resolve));
      ports.push(sock.address().port);
    }
  } finally {
    await closeAll(open);
  }
  return { udp: ports };
}

async function client() {
  const ops = { flows, oneway };
  // One command at a time, in order: the test waits for each answer anyway.
  for await (const line of readline.createInterface({ input: process.stdin })) {
    let answer;
    try {
      const cmd = JSON.parse(line);
      if (!ops[cmd.op]) throw new Error(`unknown op ${cmd.op}`);
      answer = await ops[cmd.op](cmd);
    } catch (e) {
      answer = { error: String(e?.message ?? e) };
    }
    process.stdout.write(`${JSON.stringify(answer)}\n`);
  }
}

if (role === 'server') server(Number(tcpPortArg), Number(udpPortArg));
else if (role === 'client') await client();
else {
  process.stderr.write('usage: traffic.mjs server <addr> <tcpPort> <udpPort> | client <addr>\n');
  process.exit(2);
}
