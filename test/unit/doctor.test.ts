import { describe, expect, it } from 'vitest';
import { renderDoctor, type DoctorReport } from '../../src/doctor.js';

const checks: DoctorReport['checks'] = [
  { name: 'node', ok: true, detail: 'Node.js 20.19.2' },
  { name: 'btf', ok: false, detail: 'the kernel has no BTF', fix: 'use a kernel built with CONFIG_DEBUG_INFO_BTF=y' },
  { name: 'names', ok: false, optional: true, detail: 'no netns link readable', fix: 'run with hostPID' },
];

describe('renderDoctor', () => {
  it('marks each check, gives the fix of what is wrong, and fails when the modes could not be tried', () => {
    const { lines, code } = renderDoctor({ checks, modes: { skipped: 'not tried: fix btf first' } });
    expect(lines).toEqual([
      'ok    node            Node.js 20.19.2',
      'FAIL  btf             the kernel has no BTF; fix: use a kernel built with CONFIG_DEBUG_INFO_BTF=y',
      'warn  names           no netns link readable; fix: run with hostPID',
      'FAIL  modes           not tried: fix btf first',
    ]);
    expect(code).toBe(1);
  });

  it('lists every mode with its hooks or its refusal, and succeeds when one loads', () => {
    const modes = [
      { mode: 'fentry' as const, hooks: 'fentry hooks', available: false, tried: true, reason: 'EPERM: no' },
      { mode: 'tracepoint' as const, hooks: 'raw_tp hooks', available: true, tried: true },
    ];
    const { lines, code } = renderDoctor({ checks: checks.slice(0, 1), modes });
    expect(lines.slice(1)).toEqual(['no    mode fentry     EPERM: no', 'ok    mode tracepoint raw_tp hooks']);
    expect(code).toBe(0);
  });

  it('fails when no mode loads', () => {
    const modes = [{ mode: 'kprobe' as const, hooks: '', available: false, tried: true, reason: 'ENOENT' }];
    expect(renderDoctor({ checks: checks.slice(0, 1), modes }).code).toBe(1);
  });
});
