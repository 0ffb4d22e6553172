#!/usr/bin/env bash
# An arm64 Debian machine for the package test (test/package/arm64.test.ts), with no
# compiler: a Debian 13 arm64 root with its own kernel, Node.js and the tools the test
# drives (iproute2, nftables, conntrack, bpftool), and the packed ctstorm installed in
# it as npm installs it globally. npm runs on this machine (x86_64) with
# --ignore-scripts: unpacking a package is the same on every architecture, and the
# guest then runs the install script itself (scripts/install.sh, what npm would run
# there), which must take the arm64 prebuild. test/vm/run.sh --root boots it.
#
#   bash test/package/arm64-root.sh    prints the root's path (.cache/arm64/rootfs)
set -euo pipefail
cd "$(dirname "$0")/../.."
out=$PWD/.cache/arm64
suite=trixie
# busybox-static: the guest's initramfs (test/vm/run.sh); linux-image-arm64: its kernel.
packages=linux-image-arm64,busybox-static,nodejs,libelf1t64,zlib1g,bash,coreutils,iproute2,nftables,conntrack,bpftool,kmod,procps
mkdir -p "$out"
version=$(node -p "require('./package.json').version")

# 1. The package, as npm publishes it (prepack builds dist/ and both prebuilds).
rm -f "$out"/ctstorm-*.tgz
npm pack --silent --pack-destination "$out" >/dev/null
tarball=$out/ctstorm-$version.tgz
[[ -f $tarball ]] || { echo "arm64 root: npm pack made no $tarball" >&2; exit 1; }

# 2. The root, kept between runs and made again each ISO week (its kernel and
# Node.js move with Debian). "extract": packages unpacked, no maintainer script run,
# so no arm64 binary runs on this machine (no qemu-user, no binfmt).
base=$out/base-$suite
stamp="$suite $packages $(date +%G-%V)"
if [[ ! -d $base || $(cat "$base.stamp" 2>/dev/null) != "$stamp" ]]; then
  rm -rf "$base.new"
  echo "arm64 root: making a Debian $suite arm64 root with $packages" >&2
  mmdebstrap --quiet --variant=extract --architectures=arm64 --include="$packages" --mode=root \
    --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-exclude=/usr/share/man/*' \
    --dpkgopt='path-exclude=/usr/share/locale/*' \
    "$suite" "$base.new" "deb http://deb.debian.org/debian $suite main" \
    "deb http://deb.debian.org/debian $suite-updates main" \
    "deb http://deb.debian.org/debian-security $suite-security main" >&2
  rm -rf "$base"
  mv "$base.new" "$base"
  echo "$stamp" >"$base.stamp"
fi

# 3. npm install -g of the tarball into a fresh copy of the root.
root=$out/rootfs
rm -rf --one-file-system "$root"
cp -a "$base" "$root"
npm install --global --prefix "$root/usr" --cache "$out/npm-cache" --omit=dev --ignore-scripts \
  --no-audit --no-fund --no-update-notifier --loglevel=error "$tarball" >&2
[[ -e $root/usr/lib/node_modules/ctstorm/prebuilds/linux-arm64/ctstorm.glibc.node ]] ||
  { echo "arm64 root: the installed package has no linux-arm64 prebuild" >&2; exit 1; }
echo "$root"
