# Sourced by scripts/image.sh and test/package/guest-root.sh: the packed ctstorm, and
# a Debian root made by mmdebstrap from Debian's own archive (no registry pull).

# pack_into DIR: ctstorm as npm publishes it (prepack builds dist/ and the prebuilds),
# in DIR; prints the tarball's path.
pack_into() {
  local out=$1 version tarball
  version=$(node -p "require('./package.json').version")
  rm -f "$out"/ctstorm-*.tgz
  npm pack --silent --pack-destination "$out" >/dev/null
  tarball=$out/ctstorm-$version.tgz
  [[ -f $tarball ]] || { echo "$(basename "$0"): npm pack made no $tarball" >&2; return 1; }
  echo "$tarball"
}

# debian_base BASE SUITE PACKAGES [MMDEBSTRAP_OPTION...]: a Debian SUITE root with
# PACKAGES (comma-separated) at BASE, from main, updates and security, without docs,
# man pages or locales. Kept between runs; made again when its inputs change and each
# ISO week, so it takes Debian's security updates.
debian_base() {
  local base=$1 suite=$2 packages=$3 stamp
  shift 3
  stamp="$suite $packages $* $(date +%G-%V)"
  [[ -d $base && $(cat "$base.stamp" 2>/dev/null) == "$stamp" ]] && return 0
  rm -rf --one-file-system "$base.new"
  echo "$(basename "$0"): making a Debian $suite root with $packages" >&2
  # The caller's options after the exclusions: a dpkg path-include must follow them.
  mmdebstrap --quiet --include="$packages" --mode=root \
    --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-exclude=/usr/share/man/*' \
    --dpkgopt='path-exclude=/usr/share/locale/*' "$@" \
    "$suite" "$base.new" "deb http://deb.debian.org/debian $suite main" \
    "deb http://deb.debian.org/debian $suite-updates main" \
    "deb http://deb.debian.org/debian-security $suite-security main" >&2 || return 1
  rm -rf --one-file-system "$base"
  mv "$base.new" "$base"
  echo "$stamp" >"$base.stamp"
}
