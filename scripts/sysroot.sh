#!/usr/bin/env bash
# The libraries the addon links against (libelf, zlib), for another architecture:
# Debian's own packages of this machine's release, unpacked into gen/<arch>/sysroot
# for the cross build of the prebuilds (scripts/prebuild.sh). A private apt state:
# the machine's sources, lists and dpkg architectures stay as they were.
#
#   bash scripts/sysroot.sh arm64    build it if missing; prints its path
set -euo pipefail
cd "$(dirname "$0")/.."
arch=${1:?usage: bash scripts/sysroot.sh arm64}
case $arch in
  arm64) debarch=arm64 ;;
  x64) debarch=amd64 ;;
  *) echo "ctstorm sysroot: no $arch; ctstorm builds for x64 and arm64" >&2; exit 1 ;;
esac
# libelf1 became libelf1t64 in Debian 13 (the 64-bit time_t transition).
libelf=libelf1
dpkg-query -W libelf1t64 >/dev/null 2>&1 && libelf=libelf1t64
packages=($libelf libelf-dev zlib1g zlib1g-dev)
out=$PWD/gen/$arch/sysroot
# The same versions as this machine's, so both prebuilds link the same libraries.
versions=()
for p in "${packages[@]}"; do
  v=$(dpkg-query -W -f='${Version}' "$p:$(dpkg --print-architecture)" 2>/dev/null || true)
  versions+=("$p${v:+=$v}")
done
[[ -f $out/VERSIONS && $(<"$out/VERSIONS") == "${versions[*]}" ]] && { echo "$out"; exit 0; }

. /etc/os-release
[[ ${ID:-} == debian && -n ${VERSION_CODENAME:-} ]] ||
  { echo "ctstorm sysroot: not Debian here: cannot fetch Debian's $debarch libraries for the $arch prebuild" >&2; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/debs"
. scripts/private-apt.sh
private_apt "$work" deb "$VERSION_CODENAME" 2 30 "$debarch"
apt-get "${apt_opts[@]}" update -qq >/dev/null 2>&1 ||
  { echo "ctstorm sysroot: cannot reach Debian's archive (deb.debian.org) for the $debarch libraries" >&2; exit 1; }
wanted=()
for pv in "${versions[@]}"; do
  # This machine's version if the archive still has it, else the archive's.
  if [[ $pv == *=* ]] && apt-cache "${apt_opts[@]}" show "$pv" >/dev/null 2>&1; then wanted+=("$pv"); else wanted+=("${pv%%=*}"); fi
done
(cd "$work/debs" && apt-get "${apt_opts[@]}" download -qq "${wanted[@]}" >/dev/null 2>&1) ||
  { echo "ctstorm sysroot: apt-get download ${wanted[*]} ($debarch) failed" >&2; exit 1; }
echo "  SYSROOT $arch: ${wanted[*]}" >&2
rm -rf "$out"
mkdir -p "$out"
for deb in "$work"/debs/*.deb; do dpkg-deb -x "$deb" "$out"; done
# Absolute links (libz.so -> /lib/...) would reach this machine's own libraries.
find "$out" -type l -lname '/*' | while read -r link; do ln -sfn "$out$(readlink "$link")" "$link"; done
echo "${versions[*]}" >"$out/VERSIONS"
echo "$out"
