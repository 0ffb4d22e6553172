#!/usr/bin/env bash
# libbpf for the addon, linked statically, so that the addon (and its prebuild) needs
# only libelf.so.1 and libz.so.1 at run time, whatever libbpf a machine has or lacks.
# Debian ships libbpf.a built without -fPIC, which cannot go into a shared object, so
# this builds one from Debian's source package of the very libbpf-dev installed here
# (same version, same headers), into gen/<arch>/libbpf/ (node-gyp rebuild empties
# build/). For another architecture (the arm64 prebuild) it cross-compiles the same
# source against Debian's libraries of that architecture (scripts/sysroot.sh).
#
#   bash scripts/libbpf.sh [ARCH]           build it if missing (quiet)
#   bash scripts/libbpf.sh --link [ARCH]    the linker arguments node-gyp should use
#   bash scripts/libbpf.sh --include [ARCH] its include directory (none: the system's)
#
# ARCH is Node.js's name (x64, arm64); this machine's by default. Where it cannot be
# built for this machine (no apt source, not Debian), --link falls back to the
# system's shared libbpf, and says so once; a cross build has no such fallback.
set -euo pipefail
cd "$(dirname "$0")/.."
host=$(uname -m | sed 's/x86_64/x64/;s/aarch64/arm64/')
what=build
[[ ${1:-} == --link || ${1:-} == --include ]] && { what=$1; shift; }
arch=${1:-$host}
case $arch in
  x64) triplet=x86_64-linux-gnu ;;
  arm64) triplet=aarch64-linux-gnu ;;
  *) echo "ctstorm build: no $arch; ctstorm builds for x64 and arm64" >&2; exit 1 ;;
esac
cross=; [[ $arch == "$host" ]] || cross=1
out=$PWD/gen/$arch/libbpf
sysroot=$PWD/gen/$arch/sysroot

case $what in
--link)
  if [[ -f $out/lib/libbpf.a ]]; then
    libs=$sysroot/usr/lib/$triplet
    echo "-Wl,--exclude-libs,ALL $out/lib/libbpf.a${cross:+ -L$libs -Wl,-rpath-link,$libs} -lelf -lz"
  else
    echo "-lbpf -lelf -lz"
  fi
  exit 0
  ;;
--include)
  [[ -d $out/include ]] && echo "$out/include"
  # A cross build finds libelf's and zlib's headers in the sysroot, not in /usr/include.
  [[ -n $cross ]] && echo "$sysroot/usr/include"
  exit 0
  ;;
esac

fallback() {
  [[ -n $cross ]] && { echo "ctstorm build: $1; the $arch build needs it" >&2; exit 1; }
  echo "ctstorm build: $1; linking the system's shared libbpf instead" >&2
  exit 0
}
version=$(dpkg-query -W -f='${source:Version}' libbpf-dev 2>/dev/null) || fallback "libbpf-dev is not a Debian package here"
# Built again when libbpf-dev changed: same version, same headers.
[[ -f $out/lib/libbpf.a && $(cat "$out/VERSION" 2>/dev/null) == "$version" ]] && exit 0
command -v dpkg-source >/dev/null || fallback "dpkg-source is missing (package dpkg-dev)"
. /etc/os-release
[[ ${ID:-} == debian && -n ${VERSION_CODENAME:-} ]] || fallback "not Debian: Debian's libbpf source does not apply"
codename=$VERSION_CODENAME
make_vars=()
cflags="-g -O2 -fPIC"
if [[ -n $cross ]]; then
  command -v "$triplet-gcc" >/dev/null || fallback "$triplet-gcc is missing (apt-get install g++-$triplet)"
  bash scripts/sysroot.sh "$arch" >/dev/null
  make_vars=(CC="$triplet-gcc" AR="$triplet-ar")
  cflags+=" -I$sysroot/usr/include"
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/src"
# No retries and a short timeout: this runs in a user's npm install, which should
# fall back to the shared libbpf quickly where the archive is out of reach.
. scripts/private-apt.sh
private_apt "$work" deb-src "$codename" 0 20
apt-get "${apt_opts[@]}" update -qq >/dev/null 2>&1 || fallback "cannot reach Debian's source archive"
(cd "$work/src" && apt-get "${apt_opts[@]}" source -qq "libbpf=$version" >/dev/null 2>&1) ||
  fallback "cannot fetch Debian's libbpf $version source"
srcdir=$(find "$work/src" -maxdepth 1 -mindepth 1 -type d -name 'libbpf-*' | head -1)
[[ -n $srcdir ]] || fallback "Debian's libbpf source did not unpack"

echo "  LIBBPF  $version (static, PIC, $arch)" >&2
# libbpf's own Makefile builds the static objects with CFLAGS as given: add -fPIC.
make -s -C "$srcdir/src" BUILD_STATIC_ONLY=1 NO_PKG_CONFIG=1 OBJDIR="$work/obj" DESTDIR="$work/dest" \
  PREFIX= LIBDIR=/lib INCLUDEDIR=/include CFLAGS="$cflags" "${make_vars[@]}" install >/dev/null
rm -rf "$out"
mkdir -p "$out"
cp -r "$work/dest/lib" "$work/dest/include" "$out/"
# Linked into the addon, so its licence ships with it (prebuild.sh).
cp "$srcdir"/LICENSE* "$out/" 2>/dev/null || true
echo "$version" >"$out/VERSION"
