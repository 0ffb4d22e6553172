#!/usr/bin/env bash
# Runs inside the arm64 guest (test/package/arm64.test.ts): ctstorm as npm installed
# it there, its install step, then a snapshot in each attach mode over real flows
# between two network namespaces. Writes what it saw into RESULTS; the test on the
# host holds it to the expected counts.
#
#   bash test/package/arm64-guest.sh RESULTS
set -uo pipefail
results=${1:?usage: arm64-guest.sh RESULTS}
pkg=/usr/lib/node_modules/ctstorm
mkdir -p "$results"
uname -m >"$results/machine"

# npm's install step on this machine: it must take the prebuild (nothing to compile with).
(cd "$pkg" && bash scripts/install.sh) >"$results/install.out" 2>&1
echo $? >"$results/install.rc"
node -p "require('$pkg/node_modules/node-gyp-build').path('$pkg')" >"$results/addon" 2>&1
ctstorm modes --json >"$results/modes.json" 2>"$results/modes.err"

# Two namespaces, conntrack in the server's only; the live suite's traffic script
# makes the flows.
. "$(dirname "$0")/guest-pair.sh"
pair_up a64 64 "$results" || exit 1

table_empty() {
  ip netns exec $s conntrack -F 2>/dev/null
  for _ in $(seq 100); do [[ $(ip netns exec $s conntrack -C) == 0 ]] && return 0; sleep 0.1; done
  return 1
}

for mode in fentry kprobe tracepoint; do
  table_empty || { echo "the server's table did not empty" >"$results/$mode.err"; continue; }
  ctstorm snapshot --mode $mode --duration 600 --json >"$results/$mode.json" 2>"$results/$mode.err" &
  snap=$!
  for _ in $(seq 1200); do
    has "$results/$mode.err" "attached in $mode mode, counting" && break
    kill -0 $snap 2>/dev/null || break
    sleep 0.1
  done
  # 500 one-way UDP flows, then 5 TCP connections and 5 UDP flows, all answered.
  printf '%s\n' '{"op":"oneway","port":7300,"n":500}' '{"op":"flows","tcpPort":7100,"udpPort":7200,"tcp":5,"udp":5}' |
    ip netns exec $c node "$traffic" client $saddr >"$results/$mode.traffic" 2>&1
  table_empty
  kill -INT $snap 2>/dev/null
  # Bounded: a snapshot that does not end on SIGINT is a failure of its own.
  for _ in $(seq 300); do kill -0 $snap 2>/dev/null || break; sleep 0.1; done
  if kill -0 $snap 2>/dev/null; then
    kill -KILL $snap
    echo "still running 30 s after SIGINT" >>"$results/$mode.err"
  fi
  wait $snap
  echo $? >"$results/$mode.rc"
  bpftool prog show --json >"$results/$mode.progs.json" 2>&1
done

pair_down
exit 0
