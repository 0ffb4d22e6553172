// The Prometheus rules in deploy/: valid, and each alert fires on the series made
// for it (promtool's own rule tests). promtool comes with Debian's prometheus
// package, which `bash scripts/setup.sh test` installs.
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Namespace, Service } from 'kubernetes-models/v1';
import { DaemonSet } from 'kubernetes-models/apps/v1';
import { describe, expect, it } from 'vitest';
import { parseAllDocuments } from 'yaml';
import { dashboard } from '../../deploy/grafana/dashboard.js';
import { metricNames } from '../../src/exporter/metrics.js';

const dir = fileURLToPath(new URL('../../deploy/prometheus/', import.meta.url));
const manifest = fileURLToPath(new URL('../../deploy/kubernetes/ctstorm.yaml', import.meta.url));
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

describe('deploy/kubernetes', () => {
  const docs = parseAllDocuments(readFileSync(manifest, 'utf8')).map((d) => d.toJS() as { kind: string });
  const byKind = (kind: string): Record<string, unknown> => docs.find((d) => d.kind === kind) as Record<string, unknown>;

  it('is a Namespace, a DaemonSet and a Service, each valid against the Kubernetes schema', () => {
    expect(docs.map((d) => d.kind)).toEqual(['Namespace', 'DaemonSet', 'Service']);
    expect(() => new Namespace(byKind('Namespace') as never).validate()).not.toThrow();
    expect(() => new DaemonSet(byKind('DaemonSet') as never).validate()).not.toThrow();
    expect(() => new Service(byKind('Service') as never).validate()).not.toThrow();
  });

  it('asks for what the probe needs and no more: BPF and PERFMON, not privileged, no hostPID, BTF read-only', () => {
    const ds = new DaemonSet(byKind('DaemonSet') as never);
    const pod = ds.spec!.template.spec!;
    const c = pod.containers[0]!;
    expect(c.securityContext?.capabilities).toEqual({ drop: ['ALL'], add: ['BPF', 'PERFMON'] });
    expect([c.securityContext?.privileged, c.securityContext?.allowPrivilegeEscalation, c.securityContext?.readOnlyRootFilesystem]).toEqual([false, false, true]);
    expect(pod.hostPID).toBeUndefined();
    expect(c.volumeMounts).toEqual([{ name: 'btf', mountPath: '/sys/kernel/btf', readOnly: true }]);
    expect(c.args).toEqual(['serve', '--listen', '$(NODE_IP):9477']);
    expect(ds.spec!.template.metadata!.annotations).toMatchObject({ 'prometheus.io/scrape': 'true', 'prometheus.io/port': '9477' });
  });
});

describe('deploy/grafana', () => {
  it('ctstorm.json is what dashboard.ts (typed against @grafana/schema) builds: run npm run dashboard after a change', () => {
    const json = JSON.parse(readFileSync(fileURLToPath(new URL('../../deploy/grafana/ctstorm.json', import.meta.url)), 'utf8'));
    expect(json).toEqual(JSON.parse(JSON.stringify(dashboard)));
  });

  it('every panel and the storm annotation query only metrics ctstorm serves', () => {
    const served = new Set(metricNames().flatMap((n) => [n, `${n}_bucket`, `${n}_sum`, `${n}_count`]));
    const exprs = [
      ...(dashboard.panels ?? []).flatMap((p) => ('targets' in p ? ((p.targets ?? []) as Array<{ expr: string }>) : []).map((t) => t.expr)),
      ...(dashboard.annotations?.list ?? []).map((a) => (a.target as unknown as { expr: string }).expr),
    ];
    expect(exprs.length).toBeGreaterThanOrEqual(15);
    for (const expr of exprs) {
      const names = expr.match(/ctstorm_\w+/g) ?? [];
      expect(names.length, expr).toBeGreaterThan(0);
      for (const name of names) expect([expr, served.has(name)]).toEqual([expr, true]);
    }
  });
});
