// The Prometheus rules in deploy/: valid, and each alert fires on the series made
// for it (promtool's own rule tests). promtool comes with Debian's prometheus
// package, which `bash scripts/setup.sh test` installs. The Kubernetes manifests
// against the schema, and the dashboard against the metrics ctstorm serves.
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Namespace, ResourceQuota, ServiceAccount } from 'kubernetes-models/v1';
import { ClusterRole, ClusterRoleBinding } from 'kubernetes-models/rbac.authorization.k8s.io/v1';
import { DaemonSet } from 'kubernetes-models/apps/v1';
import { describe, expect, it } from 'vitest';
import { parseAllDocuments } from 'yaml';
import { dashboard } from '../../deploy/grafana/dashboard.js';
import { metricNames } from '../../src/exporter/metrics.js';

const dir = fileURLToPath(new URL('../../deploy/prometheus/', import.meta.url));
const manifest = fileURLToPath(new URL('../../deploy/kubernetes/ctstorm.yaml', import.meta.url));
const podMonitor = fileURLToPath(new URL('../../deploy/kubernetes/podmonitor.yaml', import.meta.url));
const alertFiles = ['ctstorm-alerts.yml', 'ctstorm-kube-state-metrics.yml'];
const promtool = (...args: string[]) => spawnSync('promtool', args, { cwd: dir, encoding: 'utf8' });

describe('deploy/prometheus', () => {
  it('promtool finds the alert and recording rules valid', () => {
    const r = promtool('check', 'rules', ...alertFiles, 'ctstorm-recording.yml');
    expect([r.error?.message, r.status], `${r.stdout}${r.stderr}`).toEqual([undefined, 0]);
    // 9 alerts and ctstorm:up; the optional kube-state-metrics alert; 5 fleet rules.
    expect(r.stdout.match(/SUCCESS: \d+ rules found/g)).toEqual(['SUCCESS: 11 rules found', 'SUCCESS: 1 rules found', 'SUCCESS: 5 rules found']);
  });

  it('every alert fires on its test series and stays quiet on healthy ones (promtool test rules)', () => {
    const r = promtool('test', 'rules', 'ctstorm-alerts.test.yml');
    expect([r.error?.message, r.status], `${r.stdout}${r.stderr}`).toEqual([undefined, 0]);
    // Each alert of the rules files has a test, and each recording rule.
    const test = readFileSync(`${dir}ctstorm-alerts.test.yml`, 'utf8');
    const alerts = alertFiles.flatMap((f) => [...readFileSync(`${dir}${f}`, 'utf8').matchAll(/- alert: (\w+)/g)].map((m) => m[1])).sort();
    const tested = [...new Set([...test.matchAll(/alertname: (\w+)/g)].map((m) => m[1]))].sort();
    expect(alerts).toHaveLength(11);
    expect(tested).toEqual(alerts);
    const records = [...readFileSync(`${dir}ctstorm-recording.yml`, 'utf8').matchAll(/- record: ([\w:]+)/g)].map((m) => m[1]).sort();
    const recordsTested = [...new Set([...test.matchAll(/- expr: ([\w:]+)\n/g)].map((m) => m[1]))].sort();
    expect(records).toHaveLength(5);
    expect(recordsTested).toEqual(['ctstorm:up', ...records].sort());
  });
});

describe('deploy/kubernetes', () => {
  const docs = parseAllDocuments(readFileSync(manifest, 'utf8')).map((d) => d.toJS() as { kind: string });
  const byKind = (kind: string): Record<string, unknown> => docs.find((d) => d.kind === kind) as Record<string, unknown>;
  const ds = new DaemonSet(byKind('DaemonSet') as never);
  const pod = ds.spec!.template.spec!;
  const c = pod.containers[0]!;

  it('is a Namespace, a ResourceQuota, the pod reader\'s RBAC and a DaemonSet, each valid against the Kubernetes schema', () => {
    expect(docs.map((d) => d.kind)).toEqual(['Namespace', 'ResourceQuota', 'ServiceAccount', 'ClusterRole', 'ClusterRoleBinding', 'DaemonSet']);
    expect(() => new Namespace(byKind('Namespace') as never).validate()).not.toThrow();
    expect(() => new ResourceQuota(byKind('ResourceQuota') as never).validate()).not.toThrow();
    expect(() => new ServiceAccount(byKind('ServiceAccount') as never).validate()).not.toThrow();
    expect(() => new ClusterRole(byKind('ClusterRole') as never).validate()).not.toThrow();
    expect(() => new ClusterRoleBinding(byKind('ClusterRoleBinding') as never).validate()).not.toThrow();
    expect(() => ds.validate()).not.toThrow();
  });

  it('asks for what the probe and the names need and no more: BPF, PERFMON, SYS_PTRACE with hostPID, not privileged, BTF, /run/netns and cgroups read-only', () => {
    expect(c.securityContext?.capabilities).toEqual({ drop: ['ALL'], add: ['BPF', 'PERFMON', 'SYS_PTRACE'] });
    expect([c.securityContext?.privileged, c.securityContext?.allowPrivilegeEscalation, c.securityContext?.readOnlyRootFilesystem]).toEqual([false, false, true]);
    expect(c.securityContext?.seccompProfile).toEqual({ type: 'Unconfined' });
    expect(pod.hostPID).toBe(true);
    expect(c.volumeMounts).toEqual([
      { name: 'btf', mountPath: '/sys/kernel/btf', readOnly: true },
      { name: 'netns', mountPath: '/run/netns', readOnly: true, mountPropagation: 'HostToContainer' },
      { name: 'cgroup', mountPath: '/host/sys/fs/cgroup', readOnly: true },
    ]);
    expect(pod.volumes).toEqual([
      { name: 'btf', hostPath: { path: '/sys/kernel/btf', type: 'Directory' } },
      { name: 'netns', hostPath: { path: '/run/netns', type: 'DirectoryOrCreate' } },
      { name: 'cgroup', hostPath: { path: '/sys/fs/cgroup', type: 'Directory' } },
    ]);
    expect(c.args).toContain('--cgroupfs');
    expect(c.args![c.args!.indexOf('--cgroupfs') + 1]).toBe('/host/sys/fs/cgroup');
  });

  it('may read pods and nothing else, as its own service account, for its node', () => {
    const role = byKind('ClusterRole') as { rules: unknown[] };
    expect(role.rules).toEqual([{ apiGroups: [''], resources: ['pods'], verbs: ['list', 'watch'] }]);
    const binding = byKind('ClusterRoleBinding') as { roleRef: { name: string }; subjects: Array<{ kind: string; name: string; namespace: string }> };
    expect(binding.roleRef.name).toBe('ctstorm-pod-reader');
    expect(binding.subjects).toEqual([{ kind: 'ServiceAccount', name: pod.serviceAccountName, namespace: ds.metadata?.namespace }]);
    expect(c.args).toContain('--in-cluster');
    expect(c.env).toContainEqual({ name: 'NODE_NAME', valueFrom: { fieldRef: { fieldPath: 'spec.nodeName' } } });
  });

  it('listens on the node address in brackets (IPv4 and IPv6 nodes alike)', () => {
    expect(c.args!.slice(0, 3)).toEqual(['serve', '--listen', '[$(NODE_IP)]:9477']);
    expect(c.env).toContainEqual({ name: 'NODE_IP', valueFrom: { fieldRef: { fieldPath: 'status.hostIP' } } });
  });

  it('is scraped once per node: annotations on the pods, no Service carrying them too', () => {
    expect(ds.spec!.template.metadata!.annotations).toEqual({ 'prometheus.io/scrape': 'true', 'prometheus.io/port': '9477', 'prometheus.io/path': '/metrics' });
    expect(docs.filter((d) => d.kind === 'Service')).toEqual([]);
  });

  it('runs system-node-critical with the quota GKE asks for in its namespace', () => {
    expect(pod.priorityClassName).toBe('system-node-critical');
    const quota = new ResourceQuota(byKind('ResourceQuota') as never);
    expect(quota.metadata?.namespace).toBe(ds.metadata?.namespace);
    expect(quota.spec?.scopeSelector?.matchExpressions).toEqual([{ scopeName: 'PriorityClass', operator: 'In', values: ['system-node-critical'] }]);
  });

  it('podmonitor.yaml (prometheus-operator) selects the DaemonSet\'s pods on a port they have', () => {
    const pm = parseAllDocuments(readFileSync(podMonitor, 'utf8')).map((d) => d.toJS()) as Array<{
      apiVersion: string;
      kind: string;
      metadata: { name: string; namespace: string };
      spec: { selector: { matchLabels: Record<string, string> }; podMetricsEndpoints: Array<{ port: string; path: string }> };
    }>;
    expect(pm.map((d) => [d.apiVersion, d.kind])).toEqual([['monitoring.coreos.com/v1', 'PodMonitor']]);
    const m = pm[0]!;
    expect(m.metadata.namespace).toBe(ds.metadata?.namespace);
    expect(m.spec.selector.matchLabels).toEqual(ds.spec!.template.metadata!.labels);
    expect(m.spec.podMetricsEndpoints.map((e) => [e.port, e.path])).toEqual([['metrics', '/metrics']]);
    expect(c.ports?.map((p) => [p.name, p.containerPort])).toEqual([['metrics', 9477]]);
    // Its job, "<namespace>/<name>", is one the ctstorm:up rule matches (PromQL
    // regexes are anchored).
    const jobRegex = /up\{job=~"([^"]+)"\}/.exec(readFileSync(`${dir}ctstorm-alerts.yml`, 'utf8'))![1]!;
    expect(`${m.metadata.namespace}/${m.metadata.name}`).toMatch(new RegExp(`^(?:${jobRegex})$`));
  });
});

describe('deploy/grafana', () => {
  it('ctstorm.json is what dashboard.ts (typed against @grafana/schema) builds: run npm run dashboard after a change', () => {
    const json = JSON.parse(readFileSync(fileURLToPath(new URL('../../deploy/grafana/ctstorm.json', import.meta.url)), 'utf8'));
    expect(json).toEqual(JSON.parse(JSON.stringify(dashboard)));
  });

  it('every panel and the storm annotation query only metrics ctstorm serves (and Prometheus\'s up)', () => {
    const served = new Set(metricNames().flatMap((n) => [n, `${n}_bucket`, `${n}_sum`, `${n}_count`]));
    const exprs = [
      ...(dashboard.panels ?? []).flatMap((p) => ('targets' in p ? ((p.targets ?? []) as Array<{ expr: string }>) : []).map((t) => t.expr)),
      ...(dashboard.annotations?.list ?? []).map((a) => (a.target as unknown as { expr: string }).expr),
    ];
    expect(exprs.length).toBeGreaterThanOrEqual(15);
    for (const expr of exprs) {
      const names = expr.match(/ctstorm_\w+/g) ?? [];
      expect(names.length > 0 || /^min\(up\{/.test(expr), expr).toBe(true);
      for (const name of names) expect([expr, served.has(name)]).toEqual([expr, true]);
    }
  });
});
