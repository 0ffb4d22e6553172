// The Prometheus rules in deploy/: valid, and each alert fires on the series made
// for it (promtool's own rule tests). promtool comes with Debian's prometheus
// package, which `bash scripts/setup.sh test` installs.
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const dir = fileURLToPath(new URL('../../deploy/prometheus/', import.meta.url));
const promtool = (...args: string[]) => spawnSync('promtool', args, { cwd: dir, encoding: 'utf8' });

describe('deploy/prometheus', () => {
  it('promtool finds the alert and recording rules valid', () => {
    const r = promtool('check', 'rules', 'ctstorm-alerts.yml', 'ctstorm-recording.yml');
    expect([r.error?.message, r.status], `${r.stdout}${r.stderr}`).toEqual([undefined, 0]);
    expect(r.stdout).toContain('SUCCESS: 7 rules found');
    expect(r.stdout).toContain('SUCCESS: 5 rules found');
  });

  it('every alert fires on its test series and stays quiet on healthy ones (promtool test rules)', () => {
    const r = promtool('test', 'rules', 'ctstorm-alerts.test.yml');
    expect([r.error?.message, r.status], `${r.stdout}${r.stderr}`).toEqual([undefined, 0]);
    // Each alert of the rules file has a test.
    const alerts = [...readFileSync(`${dir}ctstorm-alerts.yml`, 'utf8').matchAll(/- alert: (\w+)/g)].map((m) => m[1]).sort();
    const tested = [...new Set([...readFileSync(`${dir}ctstorm-alerts.test.yml`, 'utf8').matchAll(/alertname: (\w+)/g)].map((m) => m[1]))].sort();
    expect(alerts).toHaveLength(7);
    expect(tested).toEqual(alerts);
  });
});
