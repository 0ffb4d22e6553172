// One Debian root booted in QEMU for a package test: guest-root.sh makes the root
// (cached weekly), test/vm/run.sh boots it on its own kernel, and the guest's script,
// test/package/<kind>-guest.sh, writes what it saw into the checkout for the test
// to hold to exact values.
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

export type GuestKind = 'arm64' | 'systemd';

const root = fileURLToPath(new URL('../..', import.meta.url));
/** Each guest's own limit (run.sh --timeout); the tests' hooks wait longer. */
const GUEST_TIMEOUT_S = 900;
export const BOOT_HOOK_TIMEOUT_MS = 1_800_000;

function tail(text: string): string {
  return text.split('\n').slice(-25).join('\n');
}

export interface Guest {
  /** Makes the root if this week's is missing, boots it, and throws with the
   * guest's last output unless its script exited 0. */
  boot(): void;
  /** One result file's text, trimmed; `(no NAME)` when the guest did not write it. */
  read(name: string): string;
}

export function guest(kind: GuestKind): Guest {
  // Inside the checkout: the guest shares it read-write (its /tmp is its own).
  const results = join(root, `.cache/guest-${kind}/results`);
  return {
    boot() {
      const made = spawnSync('bash', [join(root, 'test/package/guest-root.sh'), kind], { cwd: root, encoding: 'utf8', maxBuffer: 64 << 20 });
      if (made.status !== 0) throw new Error(`test/package/guest-root.sh ${kind} failed (${made.status}):\n${tail(made.stderr)}`);
      rmSync(results, { recursive: true, force: true });
      const boot = ['--root', made.stdout.trim(), ...(kind === 'systemd' ? ['--systemd'] : []), '--timeout', `${GUEST_TIMEOUT_S}`];
      const run = spawnSync('bash', [join(root, 'test/vm/run.sh'), ...boot, '--', 'bash', `test/package/${kind}-guest.sh`, results], {
        cwd: root,
        encoding: 'utf8',
        maxBuffer: 64 << 20,
      });
      console.log(`${kind} guest: ${/exit code \d+ after \d+s/.exec(run.stderr)?.[0] ?? 'no exit code'}`);
      if (run.status !== 0) throw new Error(`the ${kind} guest failed (${run.status}):\n${tail(run.stdout)}\n${tail(run.stderr)}`);
    },
    read(name) {
      const file = join(results, name);
      return existsSync(file) ? readFileSync(file, 'utf8').trim() : `(no ${name})`;
    },
  };
}
