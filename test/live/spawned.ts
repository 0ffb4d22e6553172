// A child process with its output captured, for tests that drive commands.
import { spawn, type ChildProcess } from 'node:child_process';

export interface Spawned {
  proc: ChildProcess;
  out: () => string;
  err: () => string;
  /** stdout then stderr, for a test that looks for a line on either. */
  output: () => string;
  exited: () => boolean;
  exit: Promise<number | null>;
}

export function spawnCaptured(cmd: string, args: string[]): Spawned {
  const proc = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  let exited = false;
  proc.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  proc.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  const exit = new Promise<number | null>((resolve) =>
    proc.on('exit', (code) => {
      exited = true;
      resolve(code);
    }),
  );
  return { proc, out: () => out, err: () => err, output: () => out + err, exited: () => exited, exit };
}
