#!/usr/bin/env bash
# A Debian machine for the package tests, with no compiler: a Debian 13 root with its
# own kernel, Node.js and the tools the tests drive (iproute2, nftables, conntrack,
# bpftool), and the packed ctstorm installed in it as npm installs it globally.
# test/vm/run.sh --root boots it in QEMU.
#
#   bash test/package/guest-root.sh arm64     an arm64 root (test/package/arm64.test.ts)
#   bash test/package/guest-root.sh systemd   an x86_64 root that boots systemd, with
#                                             ctstorm.service enabled as its comment
#                                             says (test/package/systemd.test.ts)
# Prints the root's path (.cache/guest-<kind>/rootfs).
#
# npm runs on this machine with --ignore-scripts: unpacking a package is the same on
# every architecture. The install script (scripts/install.sh, what npm would run there)
# then runs on the target: in the arm64 guest (arm64-guest.sh), or in a chroot here.
set -euo pipefail
cd "$(dirname "$0")/../.."
. scripts/debian-root.sh
kind=${1:?usage: bash test/package/guest-root.sh arm64|systemd}
suite=trixie
tools=nodejs,libelf1t64,zlib1g,bash,coreutils,grep,iproute2,nftables,conntrack,bpftool,kmod,procps
case $kind in
  arm64)
    # extract: packages unpacked, no maintainer script run, so no arm64 binary runs on
    # this machine (no qemu-user, no binfmt). busybox-static: the guest's initramfs.
    arch=arm64 variant=extract packages=linux-image-arm64,busybox-static,$tools ;;
  systemd)
    arch=amd64 variant=minbase packages=linux-image-amd64,busybox-static,systemd,$tools ;;
  *) echo "guest root: no kind $kind (arm64, systemd)" >&2; exit 2 ;;
esac
out=$PWD/.cache/guest-$kind
mkdir -p "$out"

# 1. The package, as npm publishes it.
tarball=$(pack_into "$out")

# 2. The root (its kernel and Node.js move with Debian's updates).
base=$out/base-$suite
debian_base "$base" "$suite" "$packages" --variant="$variant" --architectures="$arch"

# 3. npm install -g of the tarball into a fresh copy of the root.
root=$out/rootfs
rm -rf --one-file-system "$root"
cp -a "$base" "$root"
npm install --global --prefix "$root/usr" --cache "$out/npm-cache" --omit=dev --ignore-scripts \
  --no-audit --no-fund --no-update-notifier --loglevel=error "$tarball" >&2
pkg=/usr/lib/node_modules/ctstorm
[[ -e $root$pkg/prebuilds/linux-${arch/amd64/x64}/ctstorm.glibc.node ]] ||
  { echo "guest root: the installed package has no linux-${arch/amd64/x64} prebuild" >&2; exit 1; }

if [[ $kind == systemd ]]; then
  # npm's install step, on its own machine: it must take the prebuild.
  chroot "$root" /usr/bin/env -i PATH=/usr/bin:/bin /usr/bin/bash -c "cd $pkg && bash scripts/install.sh" >&2 ||
    { echo "guest root: npm's install step failed in the root" >&2; exit 1; }
  # As the unit's own comment tells users: copy it, enable it.
  cp "$root$pkg/deploy/ctstorm.service" "$root/etc/systemd/system/ctstorm.service"
  mkdir -p "$root/etc/systemd/system/multi-user.target.wants"
  ln -sfn ../ctstorm.service "$root/etc/systemd/system/multi-user.target.wants/ctstorm.service"
fi
echo "$root"
