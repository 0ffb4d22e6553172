#!/usr/bin/env node
// ctstorm inside an application: its metrics beside the app's own on one
// /metrics, served by a plain node:http server. Run as root (it loads the probe):
//   node examples/embed.mjs [port=9478]
// It prints "listening on <port>" once it serves, and stops on SIGINT/SIGTERM.
import http from 'node:http';
import { collectDefaultMetrics, Registry } from 'prom-client';
import { createCollector } from 'ctstorm';

const registry = new Registry();
collectDefaultMetrics({ register: registry }); // the application's own metrics
const collector = createCollector();
collector.register(registry); // ctstorm_* beside them
collector.on('storm', (storm) => console.error(`conntrack storm: ${storm.peakPerSecond} inserts/s at its peak`));
// The probe failed (the app goes on; ctstorm_up reads 0).
collector.on('error', (err) => console.error(`ctstorm: ${err.message}`));

const server = http.createServer(async (req, res) => {
  if ((req.method === 'GET' || req.method === 'HEAD') && req.url?.split('?')[0] === '/metrics') {
    res.writeHead(200, { 'content-type': registry.contentType });
    res.end(await registry.metrics());
  } else {
    res.writeHead(404).end();
  }
});
server.listen(Number(process.argv[2] ?? 9478), '127.0.0.1', () => console.log(`listening on ${server.address().port}`));

for (const signal of ['SIGINT', 'SIGTERM']) {
  process.once(signal, async () => {
    server.close();
    await collector.close(); // removes ctstorm's metrics and detaches the probe
  });
}
