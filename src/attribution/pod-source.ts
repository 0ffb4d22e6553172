// Which pod directory the command line asks for: the Kubernetes API (a
// kubeconfig, or the pod's own service account) or the kubelet's read-only
// /pods. At most one; none is fine (pods are then named by their UID). The
// probe never waits for it: an API server that is slow or down during an
// incident must not keep ctstorm from counting. The directory is handed out
// empty and filled in the background; failures are reported and retried.
import { accessSync, constants } from 'node:fs';
import { hostname } from 'node:os';
import { CtstormError } from '../errors.js';
import { PodDirectory } from './pod-directory.js';
import { pollKubeletPods, watchApiPods } from './pods.js';

export interface PodSourceFlags {
  kubeconfig?: string;
  inCluster?: boolean;
  kubelet?: string;
  /** This node's name, for the API's fieldSelector (default $NODE_NAME, then the hostname). */
  node?: string;
}

/** Between two attempts at a first list that failed. */
const RETRY_MS = 30_000;

/** Checks the flags now (one-line errors), then returns a directory that its
 * source fills in the background, or null when no source was asked for. */
export function startPodDirectory(flags: PodSourceFlags, onError: (message: string) => void): PodDirectory | null {
  const asked = [flags.kubeconfig !== undefined && '--kubeconfig', flags.inCluster && '--in-cluster', flags.kubelet !== undefined && '--kubelet'].filter(Boolean);
  if (asked.length > 1) throw new CtstormError(`${asked.join(' and ')} both name pods`, 'give one of them', 'EUSAGE');
  if (asked.length === 0) {
    if (flags.node !== undefined) throw new CtstormError('--node names this node for the Kubernetes API', 'add --kubeconfig <file> or --in-cluster', 'EUSAGE');
    return null;
  }
  if (flags.kubelet !== undefined && !/^https?:\/\//.test(flags.kubelet)) {
    throw new CtstormError(`--kubelet "${flags.kubelet}" is not a URL`, "give the kubelet's read-only /pods, e.g. http://127.0.0.1:10255/pods", 'EUSAGE');
  }
  if (flags.kubeconfig !== undefined) {
    try {
      accessSync(flags.kubeconfig, constants.R_OK);
    } catch (err) {
      throw new CtstormError(`cannot name pods: cannot read kubeconfig ${flags.kubeconfig} (${(err as NodeJS.ErrnoException).code})`, 'pass a readable kubeconfig file', 'EPODS');
    }
  }
  if (flags.inCluster && !process.env.KUBERNETES_SERVICE_HOST) {
    throw new CtstormError('cannot name pods: not running in a Kubernetes pod (KUBERNETES_SERVICE_HOST is unset)', 'pass a kubeconfig path, or drop --in-cluster', 'EPODS');
  }
  const directory = new PodDirectory();
  const nodeName = flags.node ?? process.env.NODE_NAME ?? hostname();
  const open = (): Promise<PodDirectory> =>
    flags.kubelet !== undefined
      ? pollKubeletPods({ url: flags.kubelet, onError, directory })
      : watchApiPods({ nodeName, kubeconfig: flags.kubeconfig, onError, directory });
  let closed = false;
  let timer: NodeJS.Timeout | undefined;
  const attempt = async (): Promise<void> => {
    try {
      await open(); // from here on the source retries by itself, and close() stops it
      if (closed) await directory.close();
    } catch (err) {
      if (closed) return;
      const message = err instanceof Error ? err.message : String(err);
      directory.setLastError(message);
      onError(`${message} (pods are named by UID until it works; trying again in ${RETRY_MS / 1000} s)`);
      timer = setTimeout(() => void attempt(), RETRY_MS);
    }
  };
  directory.stopSourceOnClose(() => {
    closed = true;
    clearTimeout(timer);
  });
  void attempt();
  return directory;
}
