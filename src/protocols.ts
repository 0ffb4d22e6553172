// Names for the numbers the kernel uses: IP protocols and TCP conntrack states.

const l4Names: Record<number, string> = {
  1: 'icmp',
  6: 'tcp',
  17: 'udp',
  33: 'dccp',
  47: 'gre',
  58: 'icmpv6',
  132: 'sctp',
  136: 'udplite',
};

export function protoName(l4proto: number): string {
  return l4Names[l4proto] ?? `proto-${l4proto}`;
}

/** enum tcp_conntrack (include/uapi/linux/netfilter/nf_conntrack_tcp.h). */
const tcpStates = [
  'none',
  'syn_sent',
  'syn_recv',
  'established',
  'fin_wait',
  'close_wait',
  'last_ack',
  'time_wait',
  'close',
  'syn_sent2',
] as const;

export function tcpStateName(state: number): string {
  return tcpStates[state] ?? `state-${state}`;
}

export const AF_INET = 2;
export const AF_INET6 = 10;
