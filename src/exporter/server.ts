// `ctstorm serve`: the exporter and the churn API over HTTP. Read-only: no
// request changes settings or traffic; a scrape reads the probe's maps (and, as
// every counter read does, deletes the rows of netns that are gone, kept in
// memory instead). Every answer is rendered from the collector's one view.
//   GET /metrics          Prometheus text format
//   GET /api/v1/churn     the snapshot JSON of the live view
//   GET /api/v1/storms    current and past storms
//   GET /api/v1/stream    Server-Sent Events: the churn JSON once a second
//   GET /healthz          200 while the probe drains, 503 once it failed (no
//                         basic auth, so a probe needs no password; TLS as configured)
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createTlsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { collectDefaultMetrics, Registry } from 'prom-client';
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
  /** Where a server error is told, one line each (default: stderr). */
  log?: (line: string) => void;
}

const ROUTES = new Set(['/metrics', '/api/v1/churn', '/api/v1/storms', '/api/v1/stream', '/healthz']);
const DEFAULT_MAX_STREAM_CLIENTS = 32;
/** Connections at once at most: scrapes, API calls and SSE clients fit many times over. */
const MAX_CONNECTIONS = 256;
/** Seconds a client is asked to wait when every bcrypt check is taken. */
const AUTH_RETRY_SECONDS = 1;

export interface RunningServer {
  server: Server;
  /** Where it listens (the port the kernel chose when 0 was asked). */
  address: AddressInfo;
  close(): Promise<void>;
}

const LINT_FAILING_DEFAULTS = ['nodejs_active_handles_total', 'nodejs_active_requests_total', 'nodejs_active_resources_total'];

export async function serve(collector: Collector, options: ServeOptions): Promise<RunningServer> {
  // serve's own registry: the process metrics belong here (createCollector leaves
  // an application's registry to the application).
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  // prom-client names three gauges `_total`, which `promtool check metrics` refuses
  // (a counter suffix on a gauge): /metrics stays lint-clean without them.
  for (const name of LINT_FAILING_DEFAULTS) registry.removeSingleMetric(name);
  const log = options.log ?? ((line: string) => void process.stderr.write(`${line}\n`));
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

  // No users: no auth, as in node_exporter.
  const users = options.webConfig?.users;
  const auth = users && users.size > 0 ? new BasicAuth(users) : undefined;
  const tls = options.webConfig?.tls;
  const headers = Object.entries(options.webConfig?.headers ?? {});

  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    for (const [name, value] of headers) res.setHeader(name, value);
    if (tls && !clientCertAllowed(req.socket, tls.clientAuth)) return json(res, 403, { error: 'client certificate required or not trusted' });
    const path = (req.url ?? '/').split('?')[0]!;
    // A liveness probe carries no password; /healthz tells nothing but up or down.
    const outcome = auth && path !== '/healthz' ? await auth.check(req.headers.authorization) : 'allowed';
    if (outcome === 'busy') {
      res.setHeader('retry-after', String(AUTH_RETRY_SECONDS));
      return json(res, 429, { error: 'too many password checks at once: retry' });
    }
    if (outcome === 'denied') {
      res.setHeader('www-authenticate', 'Basic realm="ctstorm", charset="UTF-8"');
      return json(res, 401, { error: 'unauthorized' });
    }
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
        // The first frame before anything is held: if it throws, the client gets
        // a 500 and no slot stays taken.
        const first = head ? '' : `event: churn\ndata: ${JSON.stringify(churn())}\n\n`;
        res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-store', connection: 'keep-alive' });
        if (head) return void res.end();
        res.on('close', () => streams.delete(res));
        streams.add(res);
        res.write(first);
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
  server.maxConnections = MAX_CONNECTIONS;

  // Listen first: nothing is held (registry, subscription, timer) when it fails.
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port, options.host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  // After listen, an error is the server's (EMFILE on accept, ...), not one
  // request's: told in one line, and the server keeps serving.
  server.on('error', (err) => log(`ctstorm serve: ${err.message}`));
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
