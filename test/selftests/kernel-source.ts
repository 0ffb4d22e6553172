// The kernel's own netfilter selftests, from Debian's linux-source package
// (scripts/setup.sh installs it): extracted once per tarball into a cache.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, renameSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';

const CACHE = process.env.CTSTORM_SELFTESTS_CACHE ?? '/var/cache/ctstorm-selftests';
const WANTED = ['tools/testing/selftests/net/netfilter/', 'tools/testing/selftests/net/lib.sh', 'tools/testing/selftests/kselftest/'];

/** Directory holding the netfilter selftests (with ../lib.sh beside it). */
export function netfilterSelftests(): string {
  const tarballs = readdirSync('/usr/src')
    .filter((f) => /^linux-source-[\d.]+\.tar\.xz$/.test(f))
    .sort((a, b) => a.localeCompare(b, 'en', { numeric: true }));
  const tarball = tarballs.at(-1);
  if (!tarball) throw new Error('no /usr/src/linux-source-*.tar.xz: run bash scripts/setup.sh (it installs linux-source-6.12)');
  const src = join('/usr/src', tarball);
  const top = tarball.replace(/\.tar\.xz$/, '');
  const { size, mtimeMs } = statSync(src);
  const dir = join(CACHE, `${top}-${size}-${Math.floor(mtimeMs)}`);
  const netfilter = join(dir, top, 'tools/testing/selftests/net/netfilter');
  if (existsSync(netfilter)) return netfilter;
  mkdirSync(CACHE, { recursive: true });
  const tmp = `${dir}.tmp-${process.pid}`;
  rmSync(tmp, { recursive: true, force: true });
  mkdirSync(tmp);
  execFileSync('tar', ['-xJf', src, '-C', tmp, '--wildcards', ...WANTED.map((w) => `${top}/${w}${w.endsWith('/') ? '*' : ''}`)]);
  rmSync(dir, { recursive: true, force: true });
  renameSync(tmp, dir);
  return netfilter;
}
