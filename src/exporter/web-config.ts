// TLS and basic auth for `ctstorm serve`, from a web config file in
// node_exporter's format (exporter-toolkit), so an operator reuses the file they
// have:
//   tls_server_config: { cert_file, key_file, client_ca_file, client_auth_type, min_version }
//   basic_auth_users: { <user>: <bcrypt hash> }
// File paths are relative to the config file. Unknown keys are errors, as in
// node_exporter (a misspelt key must not silently turn TLS or auth off).
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
}

const TLS_KEYS = new Set(['cert_file', 'key_file', 'client_ca_file', 'client_auth_type', 'min_version', 'max_version', 'cipher_suites', 'curve_preferences', 'prefer_server_cipher_suites', 'client_allowed_sans']);
const TOP_KEYS = new Set(['tls_server_config', 'basic_auth_users', 'http_server_config']);
/** client_auth_type values of exporter-toolkit, and what they ask of the client. */
const CLIENT_AUTH: Record<string, { requestCert: boolean; rejectUnauthorized: boolean }> = {
  NoClientCert: { requestCert: false, rejectUnauthorized: false },
  RequestClientCert: { requestCert: true, rejectUnauthorized: false },
  RequireAnyClientCert: { requestCert: true, rejectUnauthorized: false },
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
    const auth = CLIENT_AUTH[authType];
    if (!auth) throw bad(path, `unknown client_auth_type "${authType}"`, `use one of ${Object.keys(CLIENT_AUTH).join(', ')}`);
    const min = tls.min_version as string | undefined;
    if (min !== undefined && min !== 'TLS12' && min !== 'TLS13') throw bad(path, `min_version "${min}" is not TLS12 or TLS13`);
    out.tls = {
      cert: readAt(base, path, tls.cert_file, 'cert_file'),
      key: readAt(base, path, tls.key_file, 'key_file'),
      ...(tls.client_ca_file ? { ca: readAt(base, path, tls.client_ca_file, 'client_ca_file') } : {}),
      ...auth,
      clientAuth: authType,
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
  return out;
}

/** Checks a request's basic auth against the users. Successful checks are kept
 * (bcrypt costs ~50 ms a check), at most CACHE entries. */
export class BasicAuth {
  private readonly ok = new Set<string>();
  private static readonly CACHE = 256;

  constructor(private readonly users: ReadonlyMap<string, string>) {}

  async allows(header: string | undefined): Promise<boolean> {
    const m = /^Basic ([A-Za-z0-9+/=]+)$/.exec(header ?? '');
    if (!m) return false;
    const decoded = Buffer.from(m[1]!, 'base64').toString('utf8');
    const colon = decoded.indexOf(':');
    if (colon < 0) return false;
    const user = decoded.slice(0, colon);
    const hash = this.users.get(user);
    if (!hash) return false;
    // Kept by digest, not in the clear.
    const key = createHash('sha256').update(decoded).digest('base64');
    if (this.ok.has(key)) return true;
    if (!(await bcrypt.compare(decoded.slice(colon + 1), hash))) return false;
    if (this.ok.size >= BasicAuth.CACHE) this.ok.clear();
    this.ok.add(key);
    return true;
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
