// Builds and runs bench/stormgen.c, a conntrack storm at a chosen rate (see the
// top of that file). Root, for the raw socket and `ip netns exec`.
//   import { runStormgen } from './stormgen.mjs';
//   const r = await runStormgen({ netns: 'c', dst: '198.19.9.2', rate: 50000, seconds: 3 });
//   // r: { sent, failed, seconds, ratePerSecond, proto, target }
import { execFileSync, spawn } from 'node:child_process';
import { mkdirSync, renameSync, rmSync, statSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const source = fileURLToPath(new URL('./stormgen.c', import.meta.url));
const binary = fileURLToPath(new URL('../build/stormgen', import.meta.url));

const mtime = (path) => {
  try {
    return statSync(path).mtimeMs;
  } catch {
    return -1;
  }
};

/** Compiles bench/stormgen.c to build/stormgen unless that is newer; returns its path. */
export function buildStormgen() {
  if (mtime(binary) >= mtime(source)) return binary;
  mkdirSync(fileURLToPath(new URL('../build/', import.meta.url)), { recursive: true });
  // Compile beside it and rename: a concurrent run never sees half a binary.
  const partial = `${binary}.${process.pid}.tmp`;
  try {
    execFileSync('cc', ['-O2', '-Wall', '-Wextra', '-o', partial, source], { stdio: ['ignore', 'ignore', 'pipe'] });
    renameSync(partial, binary);
  } catch (err) {
    rmSync(partial, { force: true });
    if (err.code === 'ENOENT') throw new Error('stormgen: cc not found; install a C compiler (apt-get install gcc)');
    const firstLine = String(err.stderr ?? err.message).trim().split('\n')[0];
    throw new Error(`stormgen: cc failed on bench/stormgen.c: ${firstLine}`);
  }
  return binary;
}

/**
 * Runs stormgen (inside `netns` when given) and resolves to its JSON result.
 * rate: packets per second or 'max' (default); give count and/or seconds.
 * @param {{ netns?: string, dst: string, proto?: 'udp'|'syn', rate?: number|'max',
 *   count?: number, seconds?: number, srcNet?: string, portBase?: number }} options
 * @returns {Promise<{ sent: number, failed: number, seconds: number, ratePerSecond: number,
 *   proto: 'udp'|'syn', target: number|null }>}
 */
export function runStormgen({ netns, dst, proto, rate, count, seconds, srcNet, portBase }) {
  const args = ['--dst', String(dst)];
  const optional = { '--proto': proto, '--rate': rate, '--count': count, '--seconds': seconds, '--src-net': srcNet, '--port-base': portBase };
  for (const [flag, value] of Object.entries(optional)) if (value !== undefined) args.push(flag, String(value));
  const path = buildStormgen();
  const [command, argv] = netns === undefined ? [path, args] : ['ip', ['netns', 'exec', netns, path, ...args]];
  return new Promise((resolve, reject) => {
    const child = spawn(command, argv, { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    child.once('error', reject);
    child.once('close', (code, signal) => {
      const problem = stderr.trim().split('\n')[0];
      if (code !== 0) {
        reject(new Error(problem || `stormgen: exited with ${signal ?? `code ${code}`}`));
        return;
      }
      try {
        resolve(JSON.parse(stdout.trim().split('\n').pop()));
      } catch {
        reject(new Error(`stormgen: no JSON result on stdout: ${stdout.trim().slice(0, 200)}`));
      }
    });
  });
}
