// The client half of traffic.mjs, kept running in the client namespace for a whole
// test file: one JSON command per line in, one JSON answer per line out.
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

export const trafficScript = fileURLToPath(new URL('./traffic.mjs', import.meta.url));
const ANSWER_TIMEOUT_MS = 60_000;

export class TrafficClient {
  private readonly proc: ChildProcessWithoutNullStreams;
  private readonly waiting: Array<{ resolve: (v: unknown) => void; reject: (e: Error) => void }> = [];
  private exited: string | undefined;

  constructor(netns: string, serverAddr: string) {
    this.proc = spawn('ip', ['netns', 'exec', netns, process.execPath, trafficScript, 'client', serverAddr]);
    this.proc.stderr.pipe(process.stderr);
    createInterface({ input: this.proc.stdout }).on('line', (line) => {
      const next = this.waiting.shift();
      if (!next) return;
      const answer = JSON.parse(line) as { error?: string };
      if (answer.error) next.reject(new Error(`traffic client: ${answer.error}`));
      else next.resolve(answer);
    });
    this.proc.on('exit', (code, signal) => {
      this.exited ??= `traffic client exited (${signal ?? code})`;
      for (const w of this.waiting.splice(0)) w.reject(new Error(this.exited));
    });
  }

  /** Answers arrive in command order, so a FIFO of waiters pairs them up. */
  ask(command: object): Promise<unknown> {
    if (this.exited) return Promise.reject(new Error(this.exited));
    return new Promise((resolve, reject) => {
      // A late answer would pair with the next command: a timeout ends the client.
      const timer = setTimeout(() => {
        this.exited = `traffic client: no answer in ${ANSWER_TIMEOUT_MS} ms`;
        this.close();
      }, ANSWER_TIMEOUT_MS);
      this.waiting.push({
        resolve: (v) => (clearTimeout(timer), resolve(v)),
        reject: (e) => (clearTimeout(timer), reject(e)),
      });
      this.proc.stdin.write(`${JSON.stringify(command)}\n`);
    });
  }

  close(): void {
    this.proc.kill('SIGKILL');
  }
}
