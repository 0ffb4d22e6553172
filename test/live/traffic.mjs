// Test traffic between two network namespaces. Run under `ip netns exec`.
//   server <addr> <tcpPort> <udpPort>   accept TCP (read to end, close), echo UDP; prints "ready"
//   client <addr> <tcpPort> <udpPort> <nTcp> <nUdp>
//                                      nTcp TCP connections and nUdp UDP flows (one source port
//                                      each), all answered; prints {"tcp":[ports],"udp":[ports]}
//   oneway <addr> <udpPort> <n>       n UDP datagrams from n source ports, no answer awaited
//                                      (unreplied entries: the ones early drop evicts)
import net from 'node:net';
import dgram from 'node:dgram';

const [role, addr, tcpPortArg, udpPortArg, nTcpArg = '0', nUdpArg = '0'] = process.argv.slice(2);
const tcpPort = Number(tcpPortArg);
const udpPort = Number(udpPortArg);
const TIMEOUT_MS = 10_000;

function withTimeout(promise, what) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} timed out`)), TIMEOUT_MS);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

function server() {
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

function tcpOnce() {
  return withTimeout(
    new Promise((resolve, reject) => {
      const sock = net.connect({ host: addr, port: tcpPort }, () => {
        const port = sock.localPort;
        sock.end('x');
        sock.on('close', () => resolve(port));
      });
      sock.on('data', () => {});
      sock.on('error', reject);
    }),
    'tcp connection',
  );
}

function udpOnce() {
  return withTimeout(
    new Promise((resolve, reject) => {
      const sock = dgram.createSocket('udp4');
      sock.on('error', reject);
      sock.on('message', () => {
        const port = sock.address().port;
        sock.close(() => resolve(port));
      });
      sock.send('x', udpPort, addr);
    }),
    'udp flow',
  );
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

async function client() {
  const tcp = await inBatches(Number(nTcpArg), tcpOnce);
  const udp = await inBatches(Number(nUdpArg), udpOnce);
  process.stdout.write(`${JSON.stringify({ tcp, udp })}\n`);
}

// Arguments: <addr> <port> <n>, so the port sits where client's tcpPort does.
async function oneway(port = tcpPort, n = udpPort) {
  const ports = [];
  for (let i = 0; i < n; i++) {
    const sock = dgram.createSocket('udp4');
    sock.on('error', () => {}); // ICMP port unreachable comes back as an error
    await new Promise((resolve) => sock.send('x', port, addr, resolve));
    ports.push(sock.address().port);
    await new Promise((resolve) => sock.close(resolve));
  }
  process.stdout.write(`${JSON.stringify({ udp: ports })}\n`);
}

if (role === 'server') server();
else if (role === 'oneway') await oneway();
else if (role === 'client') await client();
else {
  process.stderr.write('usage: traffic.mjs server|client ...\n');
  process.exit(2);
}
