#!/usr/bin/env bash
# npm's install step: nothing to do when a prebuild fits this machine (node-gyp-build
# finds prebuilds/linux-<arch>/), else build the probe and the addon from source.
# A clone has no prebuilds, so it always builds.
set -euo pipefail
cd "$(dirname "$0")/.."

# A prebuild counts only if it loads here: an older C library or a missing
# libelf.so.1 make it fail, and then this machine builds its own.
why=
if [[ -n ${CTSTORM_BUILD_FROM_SOURCE:-} ]]; then
  why="CTSTORM_BUILD_FROM_SOURCE is set"
elif [[ ! -d prebuilds ]]; then
  why="a checkout has no prebuilds"
elif ! why=$(node -e "try { require(require('node-gyp-build').path(process.argv[1])) } catch (e) { console.log(e.message.split('\n')[0]); process.exit(1) }" "$PWD"); then
  why="the prebuild does not load here ($why)"
else
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
  echo "ctstorm: $why, and building from source needs ${missing[*]}; install them (Debian, Ubuntu: apt-get install $(<scripts/build-packages), and libnode-dev with Debian's nodejs), then run the npm install again (a failed install leaves nothing to rebuild)" >&2
  exit 1
fi
echo "ctstorm: $why: building the probe and the addon from source" >&2
exec bash scripts/build.sh native
