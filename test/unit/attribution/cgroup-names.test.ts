// Cgroup paths exactly as kubelet (both drivers), the runtimes and systemd make them.
import { describe, expect, it } from 'vitest';
import { cgroupPathOf, identityOf } from '../../../src/attribution/cgroup-names.js';

const ID = 'f1c2d3e4a5b6978812345678901234567890abcdefabcdefabcdefabcdef0123';
const UID = '7f9d2c4a-1b2c-4d5e-8f90-a1b2c3d4e5f6';
const UID_ = UID.replaceAll('-', '_');

describe('identityOf', () => {
  it('kubelet, systemd driver, containerd / CRI-O', () => {
    expect(identityOf(`/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod${UID_}.slice/cri-containerd-${ID}.scope`)).toEqual({
      podUid: UID, qos: 'burstable', containerId: ID, runtime: 'containerd',
    });
    expect(identityOf(`/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod${UID_}.slice/crio-${ID}.scope`)).toEqual({
      podUid: UID, qos: 'besteffort', containerId: ID, runtime: 'cri-o',
    });
    // Guaranteed pods sit right under kubepods.slice.
    expect(identityOf(`/kubepods.slice/kubepods-pod${UID_}.slice/cri-containerd-${ID}.scope`)).toEqual({
      podUid: UID, qos: 'guaranteed', containerId: ID, runtime: 'containerd',
    });
  });

  it('kubelet, cgroupfs driver', () => {
    expect(identityOf(`/kubepods/burstable/pod${UID}/${ID}`)).toEqual({ podUid: UID, qos: 'burstable', containerId: ID });
    expect(identityOf(`/kubepods/pod${UID}/${ID}`)).toEqual({ podUid: UID, qos: 'guaranteed', containerId: ID });
    // The pod's own cgroup (the sandbox's parent): a pod, no container.
    expect(identityOf(`/kubepods/besteffort/pod${UID}`)).toEqual({ podUid: UID, qos: 'besteffort' });
  });

  it('a static pod: kubelet\'s 32-hex UID', () => {
    const hash = '0f1e2d3c4b5a69788796a5b4c3d2e1f0';
    expect(identityOf(`/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod${hash}.slice/cri-containerd-${ID}.scope`)).toMatchObject({ podUid: hash, containerId: ID });
    expect(identityOf(`/kubepods/burstable/pod${hash}/${ID}`)).toMatchObject({ podUid: hash, containerId: ID });
  });

  it('read from inside a pod\'s cgroup namespace: paths climb out with ".."', () => {
    // ctstorm in /kubepods.slice/kubepods-besteffort.slice/<its pod>/<its container>, reading another pod's process.
    expect(identityOf(`/../../../kubepods-burstable.slice/kubepods-burstable-pod${UID_}.slice/cri-containerd-${ID}.scope`)).toEqual({
      podUid: UID, qos: 'burstable', containerId: ID, runtime: 'containerd',
    });
    expect(identityOf(`/../../../burstable/pod${UID}/${ID}`)).toEqual({ podUid: UID, qos: 'burstable', containerId: ID });
    // A host service seen from inside: still a unit.
    expect(identityOf('/../../../system.slice/kubelet.service')).toEqual({ unit: 'kubelet.service' });
  });

  it('Docker, Podman and systemd outside Kubernetes', () => {
    expect(identityOf(`/system.slice/docker-${ID}.scope`)).toEqual({ containerId: ID, runtime: 'docker' });
    expect(identityOf(`/docker/${ID}`)).toEqual({ containerId: ID, runtime: 'docker' });
    expect(identityOf(`/machine.slice/libpod-${ID}.scope`)).toEqual({ containerId: ID, runtime: 'podman' });
    expect(identityOf('/system.slice/nginx.service')).toEqual({ unit: 'nginx.service' });
    expect(identityOf('/user.slice/user-1000.slice/session-3.scope')).toEqual({ unit: 'session-3.scope' });
  });

  it('names nothing it cannot read', () => {
    expect(identityOf('/')).toEqual({});
    expect(identityOf('/kubepods.slice/kubepods-podnot-a-uid.slice')).toEqual({});
    expect(identityOf(`/some/${ID}`)).toEqual({});
    expect(identityOf('/kubepods/burstable/podshort/abc')).toEqual({});
  });
});

describe('cgroupPathOf', () => {
  it('the v2 line, else (a hybrid host whose v2 root says nothing) the first named v1 hierarchy', () => {
    expect(cgroupPathOf(`0::/kubepods.slice/x.scope\n`)).toBe('/kubepods.slice/x.scope');
    expect(cgroupPathOf(`12:memory:/docker/${ID}\n11:cpu:/docker/${ID}\n0::/\n`)).toBe(`/docker/${ID}`);
    expect(cgroupPathOf('0::/\n')).toBe('/');
    expect(cgroupPathOf(`12:memory:/docker/${ID}\n11:cpu:/docker/${ID}\n`)).toBe(`/docker/${ID}`);
    expect(cgroupPathOf('garbage')).toBeUndefined();
  });
});
