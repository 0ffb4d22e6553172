// `ctstorm serve`: the exporter and the churn API over HTTP. Read-only: no
// request reaches the kernel or changes anything; every answer is rendered from
// the collector's one view.
//   GET /metrics          Prometheus text format
//   GET /api/v1/churn     the snapshot JSON of the live view
//   GET /api/v1/storms    current and past storms
//   GET /api/v1/stream    Server-Sent Events: the churn JSON once a second
//   GET /healthz          200 while the probe drains, 503 once it failed
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createTlsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { Registry } from 'prom-client';
import { renderSnapshot } from '../snapshot.js';
import type { Collector } from './collector.js';
import { BasicAuth, clientCertAllowed, type WebConfig } from './web-config.js';

export interface ServeOptions {
  host: string;
  port: number;
  /** SSE clients at once at most; more get 503. Default 32. */
  maxStreamClients?: number;
  /** Seconds between SSE heartbeat comments. Default 15. */
  heartbeatSeconds?: number;
  /** TLS and basic auth (node_exporter's web config). */
  webConfig?: WebConfig;
}

const ROUTES = new Set(['/metrics', '/api/v1/churn', '/api/v1/storms', '/api/v1/stream', '/healthz']);
const DEFAULT_MAX_STREAM_CLIENTS = 32;

export interface RunningServer {
  server: Server;
  /** Where it listens (the port the kernel chose when 0 was asked). */
  address: AddressInfo;
  close(): Promise<void>;
}

export async function serve(collector: Collector, options: ServeOptions): Promise<RunningServer> {
  const registry = new Registry();
  const streams = new Set<ServerResponse>();
  const maxStreams = options.maxStreamClients ?? DEFAULT_MAX_STREAM_CLIENTS;

  // One request a connection: a scraper opens one per scrape anyway, and a kept-alive
  // socket the server times out while the client reuses it fails that request.
  const send = (res: ServerResponse, status: number, type: string, body: string, head = false): void => {
    res.writeHead(status, { 'content-type': type, 'content-length': Buffer.byteLength(body), 'cache-control': 'no-store', connection: 'close' });
    res.end(head ? undefined : body);
  };
  const json = (res: ServerResponse, status: number, value: unknown, head = false): void =>
    send(res, status, 'application/json; charset=utf-8', `${JSON.stringify(value)}\n`, head);
  const churn = (): ReturnType<typeof renderSnapshot> => {
    const view = collector.view();
    return renderSnapshot(view, view.uptimeSeconds);
  };

  const auth = options.webConfig?.users ? new BasicAuth(options.webConfig.users) : undefined;
  const tls = options.webConfig?.tls;

  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    if (tls && !clientCertAllowed(req.socket, tls.clientAuth)) return json(res, 403, { error: 'client certificate required or not trusted' });
    if (auth && !(await auth.allows(req.headers.authorization))) {
      res.setHeader('www-authenticate', 'Basic realm="ctstorm", charset="UTF-8"');
      return json(res, 401, { error: 'unauthorized' });
    }
    const path = (req.url ?? '/').split('?')[0]!;
    if (!ROUTES.has(path)) return json(res, 404, { error: `no such path: ${path}`, paths: [...ROUTES] });
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.setHeader('allow', 'GET, HEAD');
      return json(res, 405, { error: `method ${req.method} not allowed: this server is read-only` });
    }
    const head = req.method === 'HEAD';
    switch (path) {
      case '/metrics':
        return send(res, 200, registry.contentType, await registry.metrics(), head);
      case '/api/v1/churn':
        return json(res, 200, churn(), head);
      case '/api/v1/storms':
        return json(res, 200, collector.view().engine.storms, head);
      case '/healthz': {
        try {
          collector.view();
          return send(res, 200, 'text/plain; charset=utf-8', 'ok\n', head);
        } catch (err) {
          return send(res, 503, 'text/plain; charset=utf-8', `failing: ${err instanceof Error ? err.message : String(err)}\n`, head);
        }
      }
      case '/api/v1/stream': {
        if (streams.size >= maxStreams) return json(res, 503, { error: `too many stream clients (${maxStreams})` });
        res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-store', connection: 'keep-alive' });
        if (head) return void res.end();
        streams.add(res);
        res.write(`event: churn\ndata: ${JSON.stringify(churn())}\n\n`);
        req.on('close', () => streams.delete(res));
        return;
      }
    }
  };

  const onRequest = (req: IncomingMessage, res: ServerResponse): void => {
    handle(req, res).catch((err: unknown) => {
      if (!res.headersSent) json(res, 500, { error: err instanceof Error ? err.message : String(err) });
      else res.destroy();
    });
  };
  const server: Server = tls ? createTlsServer(tls, onRequest) : createServer(onRequest);
  // Slow or idle clients cannot hold the server: bounded header and request time.
  server.headersTimeout = 10_000;
  server.requestTimeout = 30_000;
  server.maxHeadersCount = 100;

  // Listen first: nothing is held (registry, subscription, timer) when it fails.
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port, options.host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  collector.register(registry);
  const unsubscribe = collector.monitor.subscribe(() => {
    if (streams.size === 0) return;
    const frame = `event: churn\ndata: ${JSON.stringify(churn())}\n\n`;
    for (const res of streams) {
      // A client that does not read: dropped rather than buffered without end.
      if (res.writableLength > 1 << 20) res.destroy();
      else res.write(frame);
    }
  });
  const heartbeat = setInterval(() => {
    for (const res of streams) res.write(': heartbeat\n\n');
  }, (options.heartbeatSeconds ?? 15) * 1000);
  heartbeat.unref();

  return {
    server,
    address: server.address() as AddressInfo,
    close: async () => {
      unsubscribe();
      clearInterval(heartbeat);
      collector.unregister(registry);
      for (const res of streams) res.end();
      streams.clear();
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      // At once: a client that never finishes its request must not hold the
      // shutdown (server.close() also stops Node's request timeouts).
      server.closeAllConnections();
      await closed;
    },
  };
}
