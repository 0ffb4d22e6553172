// TLS and basic auth for `ctstorm serve`, from a web config file in
// node_exporter's format (exporter-toolkit), so an operator reuses the file they
// have:
//   tls_server_config: { cert_file, key_file, client_ca_file, client_auth_type, min_version }
//   basic_auth_users: { <user>: <bcrypt hash> }
//   http_server_config: { headers, http2: false }
// File paths are relative to the config file. Unknown keys are errors, as in
// node_exporter (a misspelt key must not silently turn TLS or auth off), and so
// are keys ctstorm cannot honour.
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { createSecureContext, type SecureContextOptions, type TLSSocket } from 'node:tls';
import bcrypt from 'bcryptjs';
import { parse } from 'yaml';
import { CtstormError } from '../errors.js';

export interface WebConfig {
  tls?: SecureContextOptions & {
    requestCert: boolean;
    rejectUnauthorized: boolean;
    minVersion?: 'TLSv1.2' | 'TLSv1.3';
    /** exporter-toolkit's client_auth_type. */
    clientAuth: string;
  };
  /** user -> bcrypt hash */
  users?: Map<string, string>;
  /** Response headers added to every answer (http_server_config.headers). */
  headers?: Record<string, string>;
}

const TLS_KEYS = new Set(['cert_file', 'key_file', 'client_ca_file', 'client_auth_type', 'min_version', 'max_version', 'cipher_suites', 'curve_preferences', 'prefer_server_cipher_suites', 'client_allowed_sans']);
const TOP_KEYS = new Set(['tls_server_config', 'basic_auth_users', 'http_server_config']);
const HTTP_KEYS = new Set(['headers', 'http2']);
/** The headers exporter-toolkit lets a config set, with their allowed values (null: any). */
const HEADERS = new Map<string, readonly string[] | null>([
  ['Strict-Transport-Security', null],
  ['X-Content-Type-Options', ['nosniff']],
  ['X-Frame-Options', ['deny', 'sameorigin']],
  ['X-XSS-Protection', null],
  ['Content-Security-Policy', null],
]);
/** client_auth_type values of exporter-toolkit, and what they ask of the client. */
const CLIENT_AUTH: Record<string, { requestCert: boolean; rejectUnauthorized: boolean }> = {
  NoClientCert: { requestCert: false, rejectUnauthorized: false },
  RequestClientCert: { requestCert: true, rejectUnauthorized: false },
  RequireAnyClientCert: { requestCert: true, rejectUnauthorized: false },
  RequireClientCert: { requestCert: true, rejectUnauthorized: false }, // exporter-toolkit's old name for RequireAnyClientCert
  VerifyClientCertIfGiven: { requestCert: true, rejectUnauthorized: false },
  RequireAndVerifyClientCert: { requestCert: true, rejectUnauthorized: true },
};

function bad(path: string, problem: string, fix = 'see node_exporter\'s web configuration format'): CtstormError {
  return new CtstormError(`web config ${path}: ${problem}`, fix, 'EWEBCONFIG');
}

function readAt(base: string, path: string, file: unknown, what: string): Buffer {
  if (typeof file !== 'string' || file === '') throw bad(path, `${what} must be a file path`);
  const full = resolve(base, file);
  try {
    return readFileSync(full);
  } catch (err) {
    throw bad(path, `cannot read ${what} ${full} (${(err as NodeJS.ErrnoException).code ?? String(err)})`, 'check the path and its permissions');
  }
}

export function loadWebConfig(path: string): WebConfig {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw bad(path, `cannot read it (${(err as NodeJS.ErrnoException).code ?? String(err)})`, 'give the path of a readable file to --web-config');
  }
  let doc: unknown;
  try {
    doc = parse(text) ?? {};
  } catch (err) {
    throw bad(path, `not YAML (${(err as Error).message.split('\n')[0]})`);
  }
  if (typeof doc !== 'object' || doc === null || Array.isArray(doc)) throw bad(path, 'must be a YAML mapping');
  const top = doc as Record<string, unknown>;
  for (const key of Object.keys(top)) if (!TOP_KEYS.has(key)) throw bad(path, `unknown key "${key}"`);
  const base = dirname(resolve(path));
  const out: WebConfig = {};

  const tls = top.tls_server_config as Record<string, unknown> | undefined;
  if (tls !== undefined && tls !== null) {
    for (const key of Object.keys(tls)) if (!TLS_KEYS.has(key)) throw bad(path, `unknown key "tls_server_config.${key}"`);
    for (const key of ['max_version', 'cipher_suites', 'curve_preferences', 'prefer_server_cipher_suites', 'client_allowed_sans']) {
      if (key in tls) throw bad(path, `tls_server_config.${key} is not supported by ctstorm`, 'remove it (Node.js picks TLS 1.2/1.3 ciphers itself)');
    }
    const authType = (tls.client_auth_type as string | undefined) ?? (tls.client_ca_file ? 'RequireAndVerifyClientCert' : 'NoClientCert');
    const auth = Object.hasOwn(CLIENT_AUTH, authType) ? CLIENT_AUTH[authType] : undefined;
    if (!auth) throw bad(path, `unknown client_auth_type "${authType}"`, `use one of ${Object.keys(CLIENT_AUTH).join(', ')}`);
    const min = tls.min_version as string | undefined;
    if (min !== undefined && min !== 'TLS12' && min !== 'TLS13') throw bad(path, `min_version "${min}" is not TLS12 or TLS13`);
    out.tls = {
      cert: readAt(base, path, tls.cert_file, 'cert_file'),
      key: readAt(base, path, tls.key_file, 'key_file'),
      ...(tls.client_ca_file ? { ca: readAt(base, path, tls.client_ca_file, 'client_ca_file') } : {}),
      ...auth,
      clientAuth: authType === 'RequireClientCert' ? 'RequireAnyClientCert' : authType,
      minVersion: min === 'TLS13' ? 'TLSv1.3' : 'TLSv1.2',
    };
    if (auth.rejectUnauthorized && !tls.client_ca_file) throw bad(path, `client_auth_type ${authType} needs client_ca_file`);
    try {
      createSecureContext(out.tls); // a key that is not the certificate's, a file that is not PEM
    } catch (err) {
      throw bad(path, `the TLS files do not load (${(err as Error).message})`, 'check that key_file is the key of cert_file, both PEM');
    }
  }

  const users = top.basic_auth_users as Record<string, unknown> | undefined;
  if (users !== undefined && users !== null) {
    if (typeof users !== 'object' || Array.isArray(users)) throw bad(path, 'basic_auth_users must map user names to bcrypt hashes');
    out.users = new Map();
    for (const [user, hash] of Object.entries(users)) {
      if (typeof hash !== 'string' || !/^\$2[aby]\$\d\d\$[./A-Za-z0-9]{53}$/.test(hash)) {
        throw bad(path, `basic_auth_users.${user} is not a bcrypt hash`, 'make one with: htpasswd -nBC 10 "" | tr -d \':\\n\'');
      }
      out.users.set(user, hash);
    }
  }
  const http = top.http_server_config as Record<string, unknown> | undefined;
  if (http !== undefined && http !== null) out.headers = httpServerConfig(path, http);
  return out;
}

/** http_server_config: the headers (as exporter-toolkit checks them); http2 only
 * when false (Node's HTTPS server here speaks HTTP/1.1). */
function httpServerConfig(path: string, http: Record<string, unknown>): Record<string, string> {
  if (typeof http !== 'object' || Array.isArray(http)) throw bad(path, 'http_server_config must be a mapping');
  for (const key of Object.keys(http)) if (!HTTP_KEYS.has(key)) throw bad(path, `unknown key "http_server_config.${key}"`);
  if ('http2' in http && http.http2 !== false) throw bad(path, 'http_server_config.http2 is not supported by ctstorm (it serves HTTP/1.1)', 'remove it or set it to false');
  const headers = (http.headers ?? {}) as Record<string, unknown>;
  if (typeof headers !== 'object' || Array.isArray(headers)) throw bad(path, 'http_server_config.headers must map header names to values');
  const out: Record<string, string> = {};
  for (const [name, value] of Object.entries(headers)) {
    const allowed = HEADERS.get(name);
    if (allowed === undefined) throw bad(path, `http_server_config.headers: header "${name}" cannot be configured`, `use one of ${[...HEADERS.keys()].join(', ')}`);
    if (typeof value !== 'string' || /[\r\n]/.test(value)) throw bad(path, `http_server_config.headers.${name} must be a one-line string`);
    if (allowed && !allowed.includes(value)) throw bad(path, `http_server_config.headers.${name} is "${value}"`, `use one of ${allowed.join(', ')}`);
    out[name] = value;
  }
  return out;
}

export type AuthOutcome = 'allowed' | 'denied' | 'busy';

export interface BasicAuthOptions {
  /** The bcrypt check (tests count or slow it). */
  compare?: (password: string, hash: string) => Promise<boolean>;
  /** bcrypt checks at once at most; a request needing one more is 'busy'. Default 2. */
  maxChecks?: number;
  /** How long a failed user:password is answered 'denied' without a check. Default 60 s. */
  failureMs?: number;
  now?: () => number;
}

/** Checks a request's basic auth against the users. bcrypt costs ~50 ms of the
 * one JS thread a check, so a flood of guesses must not starve scrapes and
 * /healthz: at most maxChecks run at once (more are 'busy': the server answers
 * 429), successes are kept (at most OK_CACHE) and failures for failureMs (at most
 * FAILED_CACHE), both by digest, not in the clear. */
export class BasicAuth {
  private static readonly OK_CACHE = 256;
  private static readonly FAILED_CACHE = 1024;
  private readonly ok = new Set<string>();
  /** digest -> when it may be checked again; oldest first (one TTL for all). */
  private readonly failed = new Map<string, number>();
  private checks = 0;
  private readonly compare: (password: string, hash: string) => Promise<boolean>;
  private readonly maxChecks: number;
  private readonly failureMs: number;
  private readonly now: () => number;
  /** Checked for an unknown user, so the answer takes as long as for a known
   * one (the time does not tell which names exist). */
  private readonly decoyHash: string | undefined;

  constructor(
    private readonly users: ReadonlyMap<string, string>,
    options: BasicAuthOptions = {},
  ) {
    this.compare = options.compare ?? ((password, hash) => bcrypt.compare(password, hash));
    this.maxChecks = options.maxChecks ?? 2;
    this.failureMs = options.failureMs ?? 60_000;
    this.now = options.now ?? Date.now;
    this.decoyHash = users.values().next().value;
  }

  async check(header: string | undefined): Promise<AuthOutcome> {
    // The scheme is case-insensitive (RFC 7617 via RFC 7235).
    const m = /^basic +([A-Za-z0-9+/]+=*) *$/i.exec(header ?? '');
    if (!m) return 'denied';
    const decoded = Buffer.from(m[1]!, 'base64').toString('utf8');
    const colon = decoded.indexOf(':');
    if (colon < 0) return 'denied';
    const hash = this.users.get(decoded.slice(0, colon));
    const key = createHash('sha256').update(decoded).digest('base64');
    if (this.ok.has(key)) return 'allowed';
    if (this.recentlyFailed(key)) return 'denied';
    const against = hash ?? this.decoyHash;
    if (against === undefined) return 'denied';
    if (this.checks >= this.maxChecks) return 'busy';
    this.checks++;
    let good: boolean;
    try {
      good = (await this.compare(decoded.slice(colon + 1), against)) && hash !== undefined;
    } finally {
      this.checks--;
    }
    if (good) {
      if (this.ok.size >= BasicAuth.OK_CACHE) this.ok.clear();
      this.ok.add(key);
    } else {
      this.failed.delete(key);
      this.failed.set(key, this.now() + this.failureMs);
      if (this.failed.size > BasicAuth.FAILED_CACHE) this.failed.delete(this.failed.keys().next().value!);
    }
    return good ? 'allowed' : 'denied';
  }

  private recentlyFailed(key: string): boolean {
    const now = this.now();
    for (const [k, until] of this.failed) {
      if (until > now) break;
      this.failed.delete(k); // expired (oldest first)
    }
    return this.failed.has(key);
  }
}

/** Whether a TLS client's certificate satisfies client_auth_type (Node verifies a
 * presented certificate against client_ca_file; rejectUnauthorized covers the
 * strictest type at the handshake). */
export function clientCertAllowed(socket: unknown, clientAuth: string): boolean {
  const tls = socket as Partial<TLSSocket>;
  const presented = Object.keys(tls.getPeerCertificate?.() ?? {}).length > 0;
  switch (clientAuth) {
    case 'RequireAnyClientCert':
      return presented;
    case 'VerifyClientCertIfGiven':
      return !presented || tls.authorized === true;
    case 'RequireAndVerifyClientCert':
      return presented && tls.authorized === true;
    default:
      return true;
  }
}
