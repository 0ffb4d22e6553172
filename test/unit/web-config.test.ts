// TLS and basic auth for serve, from node_exporter's web config format, with a
// real TLS client: certificates made by openssl for the test, bcrypt hashes.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { request } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import bcrypt from 'bcryptjs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Collector } from '../../src/exporter/collector.js';
import { serve, type RunningServer } from '../../src/exporter/server.js';
import { loadWebConfig } from '../../src/exporter/web-config.js';
import { openSource } from '../../src/source.js';
import { fakeNative } from './fake-native.js';

const dir = mkdtempSync(join(tmpdir(), 'ctstorm-webcfg-'));
const file = (name: string): string => join(dir, name);
const openssl = (...args: string[]): void => void execFileSync('openssl', args, { stdio: 'ignore' });

beforeAll(() => {
  // A CA, a server certificate for 127.0.0.1 and a client certificate, both signed by it.
  openssl('req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', file('ca.key'), '-out', file('ca.crt'), '-subj', '/CN=ctstorm test CA', '-days', '2');
  writeFileSync(file('san.ext'), 'subjectAltName=IP:127.0.0.1\n');
  for (const who of ['server', 'client']) {
    openssl('req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', file(`${who}.key`), '-out', file(`${who}.csr`), '-subj', `/CN=${who}`);
    openssl('x509', '-req', '-in', file(`${who}.csr`), '-CA', file('ca.crt'), '-CAkey', file('ca.key'), '-CAcreateserial', '-out', file(`${who}.crt`), '-days', '2', '-extfile', file('san.ext'));
  }
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const config = (name: string, text: string): string => {
  writeFileSync(file(name), text);
  return file(name);
};

describe('web config file', () => {
  it('refuses what node_exporter refuses, in one line naming the file and the key', () => {
    expect(() => loadWebConfig(config('a.yml', 'tls_server_confg: {}\n'))).toThrow(/web config .*a\.yml: unknown key "tls_server_confg"/);
    expect(() => loadWebConfig(config('b.yml', 'basic_auth_users:\n  alice: secret\n'))).toThrow(/basic_auth_users\.alice is not a bcrypt hash/);
    expect(() => loadWebConfig(config('c.yml', 'tls_server_config:\n  cert_file: nope.crt\n  key_file: server.key\n'))).toThrow(/cannot read cert_file .*nope\.crt \(ENOENT\)/);
    expect(() => loadWebConfig(config('d.yml', 'tls_server_config:\n  cert_file: server.crt\n  key_file: client.key\n'))).toThrow(/the TLS files do not load/);
    expect(() => loadWebConfig(config('e.yml', 'tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n  client_auth_type: Maybe\n'))).toThrow(/unknown client_auth_type "Maybe"/);
    expect(() => loadWebConfig(file('missing.yml'))).toThrow(/cannot read it \(ENOENT\)/);
  });
});

describe('serve with TLS and basic auth', () => {
  let running: RunningServer;
  let collector: Collector;
  const hash = bcrypt.hashSync('s3cret', 4);

  beforeAll(async () => {
    const native = fakeNative({ counters: [{ protocols: [], netns: [], health: [], missedRuns: 0, missesVisible: true }] });
    collector = new Collector({
      source: openSource({ native, mode: 'fentry', liveNetns: () => new Set() }),
      readTable: () => ({ entries: 1, max: 100, buckets: 64 }),
      readKernelStats: () => ({}),
    });
    const webConfig = loadWebConfig(
      config('web.yml', `tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n  client_ca_file: ca.crt\n  client_auth_type: VerifyClientCertIfGiven\nbasic_auth_users:\n  alice: ${hash}\n`),
    );
    running = await serve(collector, { host: '127.0.0.1', port: 0, webConfig });
  });
  afterAll(async () => {
    await running?.close();
    await collector?.close();
  });

  function get(path: string, opts: { user?: string; password?: string; cert?: boolean } = {}): Promise<{ status: number; headers: Record<string, unknown> }> {
    return new Promise((resolve, reject) => {
      const req = request(
        {
          host: '127.0.0.1',
          port: running.address.port,
          path,
          ca: execFileSync('cat', [file('ca.crt')]),
          ...(opts.user ? { auth: `${opts.user}:${opts.password}` } : {}),
          ...(opts.cert ? { cert: execFileSync('cat', [file('client.crt')]), key: execFileSync('cat', [file('client.key')]) } : {}),
        },
        (res) => {
          res.resume();
          res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers }));
        },
      );
      req.on('error', reject);
      req.end();
    });
  }

  it('serves the right credentials over TLS, verified against the CA', async () => {
    expect((await get('/metrics', { user: 'alice', password: 's3cret' })).status).toBe(200);
    expect((await get('/healthz', { user: 'alice', password: 's3cret', cert: true })).status).toBe(200);
  });

  it('refuses wrong or missing credentials with 401 and a Basic challenge', async () => {
    expect((await get('/metrics', { user: 'alice', password: 'wrong' })).status).toBe(401);
    expect((await get('/metrics', { user: 'mallory', password: 's3cret' })).status).toBe(401);
    const none = await get('/metrics');
    expect(none.status).toBe(401);
    expect(none.headers['www-authenticate']).toBe('Basic realm="ctstorm", charset="UTF-8"');
  });

  it('with RequireAndVerifyClientCert, only a client with a certificate from the CA gets in', async () => {
    const strict = await serve(collector, {
      host: '127.0.0.1',
      port: 0,
      webConfig: loadWebConfig(config('strict.yml', 'tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n  client_ca_file: ca.crt\n  client_auth_type: RequireAndVerifyClientCert\n')),
    });
    const at = running;
    try {
      running = strict;
      expect((await get('/healthz', { cert: true })).status).toBe(200);
      await expect(get('/healthz')).rejects.toThrow();
    } finally {
      running = at;
      await strict.close();
    }
  });

  it('speaks no plain HTTP on the TLS port', async () => {
    await expect(fetch(`http://127.0.0.1:${running.address.port}/metrics`)).rejects.toThrow();
  });
});
