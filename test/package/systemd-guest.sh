#!/usr/bin/env bash
# Runs inside the systemd guest (test/package/systemd.test.ts), after boot: the
# ctstorm.service that npm's package ships, enabled as its comment says, is started by
# systemd with its sandbox. This checks it runs, generates flows between two network
# namespaces, scrapes its /metrics, stops it, and writes what it saw into RESULTS; the
# test on the host holds that to the expected values.
#
#   bash test/package/systemd-guest.sh RESULTS
set -uo pipefail
results=${1:?usage: systemd-guest.sh RESULTS}
mkdir -p "$results"
. "$(dirname "$0")/guest-pair.sh"
ps1() { systemctl show ctstorm -p "$1" --value; }

# systemd started it at boot: wait until it listens (bounded).
for _ in $(seq 600); do
  journalctl -u ctstorm -o cat --no-pager >"$results/journal.start" 2>&1
  has "$results/journal.start" 'serving http' && break
  [[ $(ps1 ActiveState) == failed ]] && break
  sleep 0.2
done
systemctl show ctstorm -p ActiveState -p SubState -p NRestarts >"$results/state.start"
pid=$(ps1 MainPID)
grep -E '^(CapInh|CapPrm|CapEff|CapBnd|CapAmb|NoNewPrivs|Seccomp):' "/proc/$pid/status" >"$results/status" 2>&1
# The sandbox as the process sees it, entered with root's full privileges so that only
# the mounts can refuse: the results directory (writable outside: it is the checkout's
# share) and the kernel's tunables are read-only in it (writing nf_conntrack_max's own
# value back changes nothing). The same two writes outside the sandbox are the
# control: they must succeed.
probe="touch $results/probe; f=/proc/sys/net/netfilter/nf_conntrack_max; cat \$f >\$f"
nsenter -t "$pid" -m sh -c "$probe" 2>&1 | sed "s#$results/##" >"$results/sandbox"
sh -c "$probe" >"$results/outside" 2>&1
echo $? >>"$results/outside"
rm -f "$results/probe"

# What the unit's capabilities allow of each mode (the unit runs in auto): root with
# the same bounding set, as exec gives a root process exactly that set (setpriv, from
# util-linux; systemd-run would need D-Bus, which this root has not).
setpriv --bounding-set -all,+bpf,+perfmon,+sys_ptrace --inh-caps -all --no-new-privs \
  /usr/bin/ctstorm modes --json >"$results/modes.json" 2>"$results/modes.err"
setpriv --bounding-set -all,+bpf,+perfmon,+sys_ptrace --inh-caps -all --no-new-privs \
  grep -E '^CapEff:' /proc/self/status >"$results/modes.caps"
cat /proc/sys/kernel/perf_event_paranoid >"$results/paranoid"

pair_up sd 65 "$results" || exit 1
echo '{"op":"flows","tcpPort":7100,"udpPort":7200,"tcp":3,"udp":2}' |
  ip netns exec $c node "$traffic" client $saddr >"$results/traffic" 2>&1

# Scrape until both counters show the flows (the exporter publishes once a second), bounded.
ino=$(<"$results/netns")
for _ in $(seq 100); do
  node -e 'fetch("http://127.0.0.1:9477/metrics").then(r => r.text()).then(t => process.stdout.write(t), e => { console.error(e.message); process.exit(1) })' >"$results/metrics" 2>&1
  has "$results/metrics" "ctstorm_conntrack_inserts_total{netns=\"$ino\",protocol=\"tcp\"} 3"$'\n' &&
    has "$results/metrics" "ctstorm_conntrack_inserts_total{netns=\"$ino\",protocol=\"udp\"} 2"$'\n' && break
  sleep 0.3
done

systemctl stop ctstorm
systemctl show ctstorm -p ActiveState -p Result -p ExecMainStatus -p NRestarts >"$results/state.stop"
journalctl -u ctstorm -o cat --no-pager >"$results/journal" 2>&1
bpftool prog show --json >"$results/progs.json" 2>&1
pair_down
exit 0
