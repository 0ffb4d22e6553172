#!/usr/bin/env bash
# One-time machine set-up for ctstorm: the Debian packages it builds and runs with,
# and with "test" those its tests need. Idempotent and quiet when everything is
# already there; run as root (npm start and npm test call it).
set -euo pipefail

# Building it from a checkout (a packed ctstorm needs none of this: scripts/install.sh),
# listed once in scripts/build-packages for every script and message that names
# them; dpkg-dev unpacks Debian's libbpf source for the static libbpf (scripts/libbpf.sh).
read -ra packages < "$(dirname "$0")/build-packages"
# `bash scripts/setup.sh test` (npm test) adds what only the tests need: the QEMU
# kernel matrix, traffic tools, the kernel's netfilter selftests, and promtool
# (from Debian's prometheus package) to check what /metrics serves.
if [[ ${1:-} == bench || ${1:-} == test ]]; then
  # `npm run bench` (and its exactness check in npm test): traffic, a C compiler
  # for the storm generator, and the tools ctstorm is measured against
  # (node_exporter from Debian's package).
  packages+=(hping3 gcc libc6-dev curl time procps prometheus-node-exporter iproute2 nftables conntrack)
fi
# `npm run image` (and its test): a Debian root without a registry, and podman with
# runc (crun refuses hosts with hybrid cgroups).
# Packing builds the prebuilds for x64 and arm64: the other one with Debian's cross
# toolchain (its libelf and zlib come as a sysroot: scripts/sysroot.sh).
if [[ ${1:-} == image || ${1:-} == test ]]; then
  packages+=(mmdebstrap podman runc)
  case $(uname -m) in
    x86_64) packages+=(g++-aarch64-linux-gnu binutils-aarch64-linux-gnu) ;;
    aarch64) packages+=(g++-x86-64-linux-gnu binutils-x86-64-linux-gnu) ;;
  esac
fi
if [[ ${1:-} == test ]]; then
  packages+=(
    iproute2 nftables conntrack
    iptables qemu-system-x86 qemu-system-arm busybox-static kmod cpio xz-utils hping3
    linux-source-6.12 socat iputils-ping libcap2-bin prometheus
  )
fi

# node-gyp builds against Node's own headers: Debian's nodejs keeps them in
# libnode-dev (NodeSource's package ships them itself).
[[ -f /usr/include/node/node_api.h ]] || packages+=(libnode-dev)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q '^install ok installed' || missing+=("$p")
done

if ((${#missing[@]})); then
  if [[ $(id -u) -ne 0 ]]; then
    echo "ctstorm setup: missing packages (${missing[*]}); run as root or: sudo apt-get install ${missing[*]}" >&2
    exit 1
  fi
  echo "ctstorm setup: installing ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# bpffs and tracefs are not mounted on every machine; BPF itself does not need them,
# but bpftool and debugging do.
if [[ $(id -u) -eq 0 ]]; then
  mountpoint -q /sys/fs/bpf || mount -t bpf bpf /sys/fs/bpf 2>/dev/null || true
  mountpoint -q /sys/kernel/tracing || mount -t tracefs tracefs /sys/kernel/tracing 2>/dev/null || true
fi
