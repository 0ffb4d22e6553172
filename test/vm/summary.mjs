// Prints the VM matrix as a table (kernel x mode: passed, failed, skipped) from the
// vitest JSON reports matrix.sh collected, and fails when a kernel has no report or
// a mode ran no tests: a matrix cell that did not run is a failure, not a pass.
//   node test/vm/summary.mjs <results dir>     (runs: "kernel rc seconds modes,comma,separated" per line)
import { existsSync, readFileSync } from 'node:fs';

const [dir] = process.argv.slice(2);
const runs = readFileSync(`${dir}/runs`, 'utf8').trim().split('\n').map((l) => l.split(' '));

let ok = true;
const rows = [['kernel', 'mode', 'passed', 'failed', 'skipped', 'boot+run']];
for (const [kernel, rc, seconds, modeList] of runs) {
  const modes = (modeList ?? '').split(',').filter(Boolean);
  const file = `${dir}/${kernel}.json`;
  if (!existsSync(file)) {
    rows.push([kernel, '-', '-', '-', '-', `${seconds}s (exit ${rc}, no report)`]);
    ok = false;
    continue;
  }
  const report = JSON.parse(readFileSync(file, 'utf8'));
  const cells = new Map([...modes, 'any'].map((m) => [m, { passed: 0, failed: 0, skipped: 0 }]));
  for (const suite of report.testResults) {
    for (const t of suite.assertionResults) {
      // Per-mode tests sit in describe.each blocks titled "in <mode> mode"; the rest are mode-independent.
      const mode = t.ancestorTitles.map((a) => /^in (\w+) mode$/.exec(a)?.[1]).find((m) => m && cells.has(m)) ?? 'any';
      const cell = cells.get(mode);
      if (t.status === 'passed') cell.passed++;
      else if (t.status === 'failed') cell.failed++;
      else cell.skipped++;
    }
  }
  for (const [mode, c] of cells) {
    if (mode === 'any' && c.passed + c.failed + c.skipped === 0) continue;
    rows.push([kernel, mode, c.passed, c.failed, c.skipped, mode === modes[0] ? `${seconds}s` : '']);
    if (c.failed > 0 || c.skipped > 0 || c.passed === 0 || rc !== '0') ok = false;
  }
}
const widths = rows[0].map((_, i) => Math.max(...rows.map((r) => String(r[i]).length)));
for (const r of rows) console.log(r.map((v, i) => String(v).padEnd(widths[i])).join('  '));
process.exit(ok ? 0 : 1);
