// serve over plain HTTP with a fake addon: process metrics in serve's own
// registry only, an SSE slot freed when the first frame fails, and a server
// error told in one line without stopping the server.
import { spawnSync } from 'node:child_process';
import { get, type IncomingMessage } from 'node:http';
import { Registry } from 'prom-client';
import { afterEach, describe, expect, it } from 'vitest';
import { Collector } from '../../src/exporter/collector.js';
import { serve, type RunningServer } from '../../src/exporter/server.js';
import { openSource } from '../../src/source.js';
import { fakeNative } from './fake-native.js';

const cleanup: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const c of cleanup.splice(0).reverse()) await c();
});

async function start(options: { maxStreamClients?: number; log?: (line: string) => void } = {}): Promise<{ collector: Collector; running: RunningServer }> {
  const native = fakeNative({ counters: [{ protocols: [], netns: [], health: [], missedRuns: 0, missesVisible: true }] });
  const collector = new Collector({
    source: openSource({ native, mode: 'fentry', liveNetns: () => new Set() }),
    readTable: () => ({ entries: 1, max: 100, buckets: 64 }),
    readKernelStats: () => ({}),
    tickMs: 3_600_000,
  });
  cleanup.push(() => collector.close());
  const running = await serve(collector, { host: '127.0.0.1', port: 0, ...options });
  cleanup.push(() => running.close());
  return { collector, running };
}

/** GET, resolved at the response's head; the body is read unless `keep` (a stream). */
function request(running: RunningServer, path: string): Promise<{ status: number; body: Promise<string>; res: IncomingMessage }> {
  return new Promise((resolve, reject) => {
    get({ host: '127.0.0.1', port: running.address.port, path }, (res) => {
      const body = new Promise<string>((done) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (chunk: string) => (text += chunk));
        res.on('end', () => done(text));
        res.on('close', () => done(text));
      });
      resolve({ status: res.statusCode!, body, res });
    }).on('error', reject);
  });
}

describe('serve', () => {
  it('serves the process metrics in its own registry; a collector registered in an application\'s adds none', async () => {
    const { collector, running } = await start();
    const metrics = await request(running, '/metrics');
    expect(metrics.status).toBe(200);
    const body = await metrics.body;
    expect(body).toContain('\nprocess_cpu_user_seconds_total ');
    // Lint-clean with the process metrics too (prom-client names three gauges _total).
    const check = spawnSync('promtool', ['check', 'metrics'], { input: body, encoding: 'utf8' });
    expect([check.error?.message, check.status, check.stdout + check.stderr]).toEqual([undefined, 0, '']);
    const app = new Registry();
    collector.register(app);
    const text = await app.metrics();
    expect(text).toContain('ctstorm_up 1');
    expect(text).not.toMatch(/^(# (HELP|TYPE) )?process_/m); // prom-client's default process metrics
    expect(text).not.toContain('nodejs_');
  });

  it('frees the SSE slot when the first frame cannot be made, and when a client leaves', async () => {
    const { collector, running } = await start({ maxStreamClients: 1 });
    const view = collector.view.bind(collector);
    collector.view = () => {
      collector.view = view; // fails once
      throw new Error('no view');
    };
    const failed = await request(running, '/api/v1/stream');
    expect(failed.status).toBe(500);
    expect(JSON.parse(await failed.body)).toEqual({ error: 'no view' });

    const first = await request(running, '/api/v1/stream');
    expect(first.status).toBe(200);
    expect((await request(running, '/api/v1/stream')).status).toBe(503); // the one slot is taken
    first.res.destroy();
    await first.body;
    let again = await request(running, '/api/v1/stream');
    for (let i = 0; i < 50 && again.status === 503; i++) {
      await new Promise((r) => setTimeout(r, 10)); // the server sees the close a moment later
      again = await request(running, '/api/v1/stream');
    }
    expect(again.status).toBe(200);
    again.res.destroy();
  });

  it('tells a server error (EMFILE on accept) in one line and keeps serving, with connections bounded', async () => {
    const lines: string[] = [];
    const { running } = await start({ log: (line) => lines.push(line) });
    running.server.emit('error', Object.assign(new Error('accept EMFILE'), { code: 'EMFILE' }));
    expect(lines).toEqual(['ctstorm serve: accept EMFILE']);
    expect((await request(running, '/healthz')).status).toBe(200);
    expect(running.server.maxConnections).toBe(256);
  });
});
