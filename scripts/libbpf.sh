#!/usr/bin/env bash
# libbpf for the addon, linked statically, so that the addon (and its prebuild) needs
# only libelf.so.1 and libz.so.1 at run time, whatever libbpf a machine has or lacks.
# Debian ships libbpf.a built without -fPIC, which cannot go into a shared object, so
# this builds one from Debian's source package of the very libbpf-dev installed here
# (same version, same headers), into gen/libbpf/ (node-gyp rebuild empties build/).
#
#   bash scripts/libbpf.sh           build it if missing (quiet)
#   bash scripts/libbpf.sh --link    the linker arguments node-gyp should use
#   bash scripts/libbpf.sh --include its include directory (none: the system's)
#
# Where it cannot be built (no apt source, not Debian), --link falls back to the
# system's shared libbpf, and says so once.
set -euo pipefail
cd "$(dirname "$0")/.."
out=$PWD/gen/libbpf

case ${1:-} in
--link)
  if [[ -f $out/lib/libbpf.a ]]; then
    echo "-Wl,--exclude-libs,ALL $out/lib/libbpf.a -lelf -lz"
  else
    echo "-lbpf -lelf -lz"
  fi
  exit 0
  ;;
--include)
  [[ -d $out/include ]] && echo "$out/include"
  exit 0
  ;;
esac

fallback() {
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


work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# A private apt state: the machine's own sources and lists stay as they were.
mkdir -p "$work/lists/partial" "$work/src"
{
  echo "deb-src http://deb.debian.org/debian $codename main"
  echo "deb-src http://deb.debian.org/debian $codename-updates main"
  echo "deb-src http://deb.debian.org/debian-security $codename-security main"
} >"$work/sources.list"
apt_opts=(-o "Dir::Etc::SourceList=$work/sources.list" -o Dir::Etc::SourceParts=/dev/null
  -o "Dir::State::Lists=$work/lists" -o Debug::NoLocking=1 -o APT::Sandbox::User=root
  -o Acquire::Retries=0 -o Acquire::http::Timeout=20)
apt-get "${apt_opts[@]}" update -qq >/dev/null 2>&1 || fallback "cannot reach Debian's source archive"
(cd "$work/src" && apt-get "${apt_opts[@]}" source -qq "libbpf=$version" >/dev/null 2>&1) ||
  fallback "cannot fetch Debian's libbpf $version source"
srcdir=$(find "$work/src" -maxdepth 1 -mindepth 1 -type d -name 'libbpf-*' | head -1)
[[ -n $srcdir ]] || fallback "Debian's libbpf source did not unpack"

echo "  LIBBPF  $version (static, PIC)" >&2
# libbpf's own Makefile builds the static objects with CFLAGS as given: add -fPIC.
make -s -C "$srcdir/src" BUILD_STATIC_ONLY=1 NO_PKG_CONFIG=1 OBJDIR="$work/obj" DESTDIR="$work/dest" \
  PREFIX= LIBDIR=/lib INCLUDEDIR=/include CFLAGS="-g -O2 -fPIC" install >/dev/null
rm -rf "$out"
mkdir -p "$out"
cp -r "$work/dest/lib" "$work/dest/include" "$out/"
# Linked into the addon, so its licence ships with it (prebuild.sh).
cp "$srcdir"/LICENSE* "$out/" 2>/dev/null || true
echo "$version" >"$out/VERSION"
