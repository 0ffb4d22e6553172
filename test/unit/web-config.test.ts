// TLS and basic auth for serve, from node_exporter's web config format, with a
// real TLS client: certificates made by openssl for the test, bcrypt hashes; and
// the bound on bcrypt checks, with a compare the test counts.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { request } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import bcrypt from 'bcryptjs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Collector } from '../../src/exporter/collector.js';
import { serve, type RunningServer } from '../../src/exporter/server.js';
import { BasicAuth, loadWebConfig } from '../../src/exporter/web-config.js';
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
    expect(() => loadWebConfig(config('f.yml', 'http_server_config:\n  header: {}\n'))).toThrow(/unknown key "http_server_config\.header"/);
    expect(() => loadWebConfig(config('g.yml', 'http_server_config:\n  headers:\n    Content-Type: foo\n'))).toThrow(/header "Content-Type" cannot be configured/);
    expect(() => loadWebConfig(config('h.yml', 'http_server_config:\n  headers:\n    X-Frame-Options: allow\n'))).toThrow(/X-Frame-Options is "allow"/);
    expect(() => loadWebConfig(config('i.yml', 'http_server_config:\n  http2: true\n'))).toThrow(/http_server_config\.http2 is not supported by ctstorm/);
  });

  it('takes the response headers node_exporter takes, http2: false, and the old name RequireClientCert', () => {
    const web = loadWebConfig(config('j.yml', 'http_server_config:\n  http2: false\n  headers:\n    X-Frame-Options: deny\n    Strict-Transport-Security: max-age=31536000\n'));
    expect(web.headers).toEqual({ 'X-Frame-Options': 'deny', 'Strict-Transport-Security': 'max-age=31536000' });
    const old = loadWebConfig(config('k.yml', 'tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n  client_auth_type: RequireClientCert\n'));
    expect(old.tls).toMatchObject({ clientAuth: 'RequireAnyClientCert', requestCert: true, rejectUnauthorized: false });
  });
});

describe('basic auth checks', () => {
  const basic = (user: string, password: string): string => `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`;
  /** A compare that answers when the test says, counting calls. */
  function heldCompare(): { compare: (password: string, hash: string) => Promise<boolean>; calls: Array<[string, string]>; release(): void } {
    const calls: Array<[string, string]> = [];
    const waiting: Array<() => void> = [];
    return {
      calls,
      compare: (password, hash) => {
        calls.push([password, hash]);
        return new Promise((resolve) => waiting.push(() => resolve(password === 'good' && hash === 'HASH-alice')));
      },
      release: () => {
        for (const w of waiting.splice(0)) w();
      },
    };
  }

  it('runs at most two bcrypt checks at once, answers the rest busy, and remembers failures for a minute', async () => {
    let now = 0;
    const held = heldCompare();
    const auth = new BasicAuth(new Map([['alice', 'HASH-alice']]), { compare: held.compare, now: () => now });
    const flood = Array.from({ length: 40 }, (_, i) => auth.check(basic('alice', `guess${i}`)));
    await new Promise((r) => setImmediate(r));
    expect(held.calls).toHaveLength(2);
    held.release();
    const outcomes = await Promise.all(flood);
    expect(outcomes.filter((o) => o === 'denied')).toHaveLength(2);
    expect(outcomes.filter((o) => o === 'busy')).toHaveLength(38);
    // A failure is answered from memory, without a check, until it expires.
    expect(await auth.check(basic('alice', 'guess0'))).toBe('denied');
    expect(held.calls).toHaveLength(2);
    now = 60_001;
    const again = auth.check(basic('alice', 'guess0'));
    held.release();
    expect(await again).toBe('denied');
    expect(held.calls).toHaveLength(3);
  });

  it('answers known good credentials while checks are held, checks an unknown user against a real hash, and reads the scheme in any case', async () => {
    const held = heldCompare();
    const auth = new BasicAuth(new Map([['alice', 'HASH-alice']]), { compare: held.compare });
    const good = auth.check(basic('alice', 'good'));
    held.release();
    expect(await good).toBe('allowed');
    const pending = [auth.check(basic('mallory', 'good')), auth.check(basic('alice', 'bad'))];
    // Both checks are taken, and the good credentials are remembered: answered at once.
    expect(await auth.check(basic('alice', 'good'))).toBe('allowed');
    expect(await auth.check(basic('alice', 'other'))).toBe('busy');
    held.release();
    expect(await Promise.all(pending)).toEqual(['denied', 'denied']);
    // The unknown user cost a check against alice's hash (the time tells no names) and still failed.
    expect(held.calls.map(([, hash]) => hash)).toEqual(['HASH-alice', 'HASH-alice', 'HASH-alice']);
    expect(held.calls).toHaveLength(3);
    expect(await auth.check(basic('alice', 'good').replace('Basic', 'bAsIc'))).toBe('allowed');
    expect(await auth.check('Bearer abc')).toBe('denied');
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
      config(
        'web.yml',
        `tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n  client_ca_file: ca.crt\n  client_auth_type: VerifyClientCertIfGiven\nbasic_auth_users:\n  alice: ${hash}\nhttp_server_config:\n  headers:\n    X-Frame-Options: deny\n`,
      ),
    );
    running = await serve(collector, { host: '127.0.0.1', port: 0, webConfig });
  });
  afterAll(async () => {
    await running?.close();
    await collector?.close();
  });

  function get(path: string, opts: { user?: string; password?: string; cert?: boolean; authorization?: string } = {}): Promise<{ status: number; headers: Record<string, unknown> }> {
    return new Promise((resolve, reject) => {
      const req = request(
        {
          host: '127.0.0.1',
          port: running.address.port,
          path,
          ca: execFileSync('cat', [file('ca.crt')]),
          ...(opts.user ? { auth: `${opts.user}:${opts.password}` } : {}),
          ...(opts.authorization ? { headers: { authorization: opts.authorization } } : {}),
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
    expect(none.headers['x-frame-options']).toBe('deny'); // on every answer, as node_exporter does
  });

  it('reads the Basic scheme in any case (RFC 7617)', async () => {
    const authorization = `basic ${Buffer.from('alice:s3cret').toString('base64')}`;
    expect((await get('/metrics', { authorization })).status).toBe(200);
  });

  it('answers /healthz without credentials (a liveness probe has none), over TLS still', async () => {
    const health = await get('/healthz');
    expect(health.status).toBe(200);
    expect(health.headers['x-frame-options']).toBe('deny');
    expect((await get('/api/v1/churn')).status).toBe(401);
  });

  it('a flood of wrong passwords gets 401 or 429, and remembered good credentials still get in', async () => {
    await get('/metrics', { user: 'alice', password: 's3cret' }); // remembered from here
    const flood = Array.from({ length: 40 }, (_, i) => get('/metrics', { user: 'alice', password: `guess${i}` }));
    const good = get('/healthz', { user: 'alice', password: 's3cret' }).then(() => get('/metrics', { user: 'alice', password: 's3cret' }));
    const answers = await Promise.all(flood);
    expect((await good).status).toBe(200);
    for (const a of answers) {
      expect([401, 429]).toContain(a.status);
      if (a.status === 429) expect(a.headers['retry-after']).toBe('1');
    }
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
