#!/usr/bin/env bash
# Prints the kernel facts ctstorm's probe depends on: tracepoint prototypes, conntrack
# functions in BTF and kallsyms, struct kmem_cache fields, conntrack table sizes.
# Run it inside a guest:  bash test/vm/run.sh --kernel 6.12 -- bash test/vm/kernel-facts.sh
set -euo pipefail

readonly FUNCS=(
  __nf_conntrack_hash_insert __nf_conntrack_confirm nf_conntrack_hash_check_insert
  nf_conntrack_free nf_ct_destroy nf_ct_delete __nf_ct_delete_from_lists
  nf_conntrack_alloc __nf_conntrack_alloc destroy_conntrack early_drop nf_ct_kill_acct
)

modprobe nf_conntrack 2>/dev/null || true
echo "kernel: $(uname -r)"

echo "== tp_btf prototypes (vmlinux BTF)"
vmlinux_c=$(bpftool btf dump file /sys/kernel/btf/vmlinux format c)
grep -E 'typedef .*\(\*btf_trace_kmem_cache_(alloc|free)\)' <<<"$vmlinux_c"

echo "== tracepoint formats"
for ev in kmem_cache_alloc kmem_cache_free; do
  echo "$ev: $(grep -o 'field:[^;]*' /sys/kernel/tracing/events/kmem/$ev/format |
    sed 's/^field://' | grep -v common_ | paste -sd ',' -)"
done

echo "== struct kmem_cache (object_size, size, name)"
awk '/^struct kmem_cache \{/,/^\};/' <<<"$vmlinux_c" | grep -E '\b(object_size|size|name);'

echo "== functions: module BTF prototype | kallsyms | ftrace-able"
# Resolve BTF FUNC -> FUNC_PROTO -> C types (module BTF is split on top of vmlinux).
python3 - "${FUNCS[@]}" <<'PY'
import json, subprocess, sys

def dump(path):
    return json.loads(subprocess.check_output(["bpftool", "-j", "btf", "dump", "file", path]))["types"]

types = {t["id"]: t for t in dump("/sys/kernel/btf/vmlinux") + dump("/sys/kernel/btf/nf_conntrack")}

def c(tid):
    if tid == 0:
        return "void"
    t = types[tid]
    k = t["kind"]
    if k == "PTR":
        return c(t["type_id"]) + " *"
    if k in ("CONST", "VOLATILE"):
        return k.lower() + " " + c(t["type_id"])
    if k in ("STRUCT", "UNION", "ENUM"):
        return k.lower() + " " + t["name"]
    return t["name"]

def symbols():
    syms = {}
    with open("/proc/kallsyms") as f:
        for line in f:
            parts = line.split()
            syms.setdefault(parts[2], parts[1])
    return syms

ftraceable = set()
with open("/sys/kernel/tracing/available_filter_functions") as f:
    ftraceable = {line.split()[0] for line in f}

syms = symbols()
funcs = {t["name"]: t for t in types.values() if t["kind"] == "FUNC" and t["id"] > 0}
for name in sys.argv[1:]:
    fn = funcs.get(name)
    if fn:
        proto = types[fn["type_id"]]
        args = ", ".join(f'{c(p["type_id"])} {p["name"]}'.replace("* ", "*") for p in proto["params"])
        btf = f'{c(proto["ret_type_id"])} {name}({args})'
    else:
        btf = "not in BTF"
    clones = sorted(s for s in syms if s.startswith(name + "."))
    print(f"{name}: {btf} | kallsyms: {syms.get(name, 'absent')}"
          f"{' clones: ' + ','.join(clones) if clones else ''}"
          f" | ftrace: {'yes' if name in ftraceable else 'no'}")
PY

echo "== kprobe hits: 50 UDP flows a->b, 1 conntrack -I, conntrack -F (all in netns b)"
probe_hits() {
  local t=/sys/kernel/tracing f
  for f in "${FUNCS[@]}"; do
    grep -qE " $f(\s|$)" /proc/kallsyms || continue
    echo "p:ctfacts/$f $f" >>$t/kprobe_events 2>/dev/null || echo "$f: kprobe registration failed"
  done
  echo 1 >$t/events/ctfacts/enable
  ip netns add a && ip netns add b
  ip link add va netns a type veth peer name vb netns b
  ip -n a addr add 10.99.0.1/24 dev va && ip -n a link set va up && ip -n a link set lo up
  ip -n b addr add 10.99.0.2/24 dev vb && ip -n b link set vb up && ip -n b link set lo up
  ip netns exec b nft -f - <<'NFT'
table inet t {
  chain c {
    type filter hook input priority 0
    ct state new accept
  }
}
NFT
  ip netns exec a python3 -c '
import socket
for p in range(50):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("10.99.0.1", 20000 + p))
    s.sendto(b"x", ("10.99.0.2", 9)); s.close()'
  sleep 1
  echo "entries in b: $(ip netns exec b conntrack -C)"
  ip netns exec b conntrack -I -s 10.99.1.1 -d 10.99.1.2 -p udp --sport 1 --dport 2 -t 30 2>&1 | tail -1
  ip netns exec b conntrack -F 2>&1
  sleep 1
  echo 0 >$t/events/ctfacts/enable
  awk '{print $1 ": " $2 " hits"}' $t/kprobe_profile
}
probe_hits

echo "== conntrack table"
echo "nf_conntrack_buckets=$(cat /proc/sys/net/netfilter/nf_conntrack_buckets)"
echo "nf_conntrack_max=$(cat /proc/sys/net/netfilter/nf_conntrack_max)"
echo "memory: $(awk '/MemTotal/ {print $2, $3}' /proc/meminfo)"
