// Which pod directory the command line asks for: the Kubernetes API (a
// kubeconfig, or the pod's own service account) or the kubelet's read-only
// /pods. At most one; none is fine (pods are then named by their UID).
import { hostname } from 'node:os';
import { CtstormError } from '../errors.js';
import { pollKubeletPods, watchApiPods, type PodDirectory } from './pods.js';

export interface PodSourceFlags {
  kubeconfig?: string;
  inCluster?: boolean;
  kubelet?: string;
  /** This node's name, for the API's fieldSelector (default $NODE_NAME, then the hostname). */
  node?: string;
}

/** Opens the directory the flags ask for (resolves after its first list), or null. */
export async function openPodDirectory(flags: PodSourceFlags, onError?: (message: string) => void): Promise<PodDirectory | null> {
  const asked = [flags.kubeconfig !== undefined && '--kubeconfig', flags.inCluster && '--in-cluster', flags.kubelet !== undefined && '--kubelet'].filter(Boolean);
  if (asked.length > 1) throw new CtstormError(`${asked.join(' and ')} both name pods`, 'give one of them', 'EUSAGE');
  if (asked.length === 0) {
    if (flags.node !== undefined) throw new CtstormError('--node names this node for the Kubernetes API', 'add --kubeconfig <file> or --in-cluster', 'EUSAGE');
    return null;
  }
  try {
    if (flags.kubelet !== undefined) {
      if (!/^https?:\/\//.test(flags.kubelet)) throw new Error(`--kubelet "${flags.kubelet}" is not a URL; give the read-only /pods, e.g. http://127.0.0.1:10255/pods`);
      return await pollKubeletPods({ url: flags.kubelet, onError });
    }
    const nodeName = flags.node ?? process.env.NODE_NAME ?? hostname();
    return await watchApiPods({ nodeName, kubeconfig: flags.kubeconfig, onError });
  } catch (err) {
    const message = err instanceof Error ? err.message : String(err);
    const at = message.indexOf('; ');
    const [problem, fix] = at < 0 ? [message, 'run without it to name pods by their UID'] : [message.slice(0, at), message.slice(at + 2)];
    throw new CtstormError(`cannot name pods: ${problem}`, fix, 'EPODS');
  }
}
