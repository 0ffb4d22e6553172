// Which of ctstorm's BPF programs the kernel holds: a test's proof that nothing
// was left attached.
import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const probeObject = fileURLToPath(new URL(`../../gen/${process.arch}/ctstorm.bpf.o`, import.meta.url));
/** The probe's BPF programs: the global functions in the compiled object's BTF, so a
 * new program is watched here without being listed. */
const ourPrograms = execFileSync('bpftool', ['btf', 'dump', 'file', probeObject], { encoding: 'utf8' })
  .split('\n')
  .flatMap((line) => /^\[\d+\] FUNC '(\w+)' .*linkage=global/.exec(line)?.[1] ?? []);

/** Our programs loaded in the kernel. The kernel keeps 15 characters of a name;
 * bpftool prints either those or, when BTF has it, the whole name. */
export function loadedPrograms(): string[] {
  return ourProgramsIn(JSON.parse(execFileSync('bpftool', ['prog', 'show', '--json'], { encoding: 'utf8' })));
}

/** Our programs in a `bpftool prog show --json` listing (this kernel's or a guest's). */
export function ourProgramsIn(list: Array<{ name?: string }>): string[] {
  const ours = new Set(ourPrograms.map((n) => n.slice(0, 15)));
  return list.map((p) => p.name ?? '').filter((n) => ours.has(n.slice(0, 15)));
}

