# Sourced by scripts/image.sh and bench/fresh-start.sh: a Debian root copied fresh
# from a base, with this machine's npm (read-only), /proc and /dev mounted in it.
# Callers run in a private mount namespace, so nothing here reaches the host.

# This machine's npm: its own directory, the one holding bin/npm-cli.js.
host_npm_dir() {
  local dir
  dir=$(dirname "$(dirname "$(readlink -f "$(command -v npm)")")")
  [[ -f $dir/bin/npm-cli.js ]] || { echo "$(basename "$0"): cannot find npm's own directory (from $(command -v npm))" >&2; return 1; }
  echo "$dir"
}

# The mounts under a directory, deepest first (findmnt -R wants the directory
# itself to be a mount point; the root is not).
mounts_under() {
  findmnt -n -l -o TARGET | awk -v dir="$1/" 'index($0, dir) == 1' | sort -r
}

unmount_root() {
  local m
  mounts_under "$1" | while IFS= read -r m; do umount -l "$m"; done
  return 0
}

# fresh_root BASE ROOT NPM_DIR: ROOT becomes a copy of BASE with npm at /opt/npm.
fresh_root() {
  local base=$1 root=$2 npm_dir=$3
  if [[ -n $(mounts_under "$root") ]]; then
    echo "$(basename "$0"): something is still mounted under $root; unmount it first" >&2
    return 1
  fi
  rm -rf --one-file-system "$root"
  cp -a "$base" "$root"
  mkdir -p "$root/opt/npm"
  mount --bind -o ro "$npm_dir" "$root/opt/npm"
  mount -t proc proc "$root/proc"
  mount --rbind /dev "$root/dev"
}
