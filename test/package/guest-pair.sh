# Sourced by the guest scripts (arm64-guest.sh, systemd-guest.sh): two network
# namespaces joined by a veth pair, conntrack active in the server's only (an
# nftables ct rule), and the live suite's traffic server in it, as test/live/netns.ts
# makes them. Waits use bash alone: the roots hold only the packages their tests name.
#
#   pair_up TAG OCTET RESULTS   sets c, s, caddr, saddr, traffic, server (its pid);
#                               writes the server netns's inode to RESULTS/netns

has() { [[ -f $1 && $(<"$1") == *"$2"* ]]; }

pair_up() {
  local tag=$1 octet=$2 results=$3 _
  c=$tag-c s=$tag-s caddr=198.18.$octet.1 saddr=198.18.$octet.2
  ip netns add "$c" && ip netns add "$s" || return 1
  ip link add "${tag}c" netns "$c" type veth peer name "${tag}s" netns "$s"
  ip -n "$c" addr add "$caddr/24" dev "${tag}c" && ip -n "$c" link set "${tag}c" up && ip -n "$c" link set lo up
  ip -n "$s" addr add "$saddr/24" dev "${tag}s" && ip -n "$s" link set "${tag}s" up && ip -n "$s" link set lo up
  ip netns exec "$s" nft 'add table ip ctstorm_test; add chain ip ctstorm_test input { type filter hook input priority 0; }; add rule ip ctstorm_test input ct state new accept' || return 1
  stat -L -c %i "/run/netns/$s" >"$results/netns"
  traffic=$(cd "$(dirname "${BASH_SOURCE[0]}")/../live" && pwd)/traffic.mjs
  ip netns exec "$s" node "$traffic" server "$saddr" 7100 7200 >"$results/server.out" 2>&1 &
  server=$!
  for _ in $(seq 300); do has "$results/server.out" ready && return 0; sleep 0.1; done
  return 1
}

pair_down() {
  kill "$server" 2>/dev/null
  ip netns del "$c"
  ip netns del "$s"
}
