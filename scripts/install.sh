#!/usr/bin/env bash
# npm's install step: nothing to do when a prebuild fits this machine (node-gyp-build
# finds prebuilds/linux-<arch>/), else build the probe and the addon from source.
# A clone has no prebuilds, so it always builds.
set -euo pipefail
cd "$(dirname "$0")/.."

if [[ -d prebuilds && -z ${CTSTORM_BUILD_FROM_SOURCE:-} ]] &&
  node -e "require('node-gyp-build').path(process.argv[1])" "$PWD" 2>/dev/null; then
  exit 0
fi

missing=()
for tool in clang bpftool make g++ python3; do
  command -v "$tool" >/dev/null || missing+=("$tool")
done
for header in /usr/include/bpf/libbpf.h /usr/include/libelf.h /usr/include/zlib.h; do
  [[ -f $header ]] || missing+=("$header")
done
if ((${#missing[@]})); then
  [[ -d prebuilds ]] && why="no prebuild fits $(uname -m)" || why="a checkout has no prebuilds"
  echo "ctstorm: $why and building from source needs ${missing[*]}; install: apt-get install clang llvm bpftool libbpf-dev libelf-dev zlib1g-dev make g++ python3" >&2
  exit 1
fi
exec bash scripts/build.sh native
