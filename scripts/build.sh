#!/usr/bin/env bash
# Builds ctstorm: "native" = the BPF probe and its skeleton (gen/) plus the N-API
# addon (build/Release/ctstorm.node); "all" = that plus the TypeScript (dist/).
# Incremental: make and node-gyp rebuild only what changed.
set -euo pipefail
cd "$(dirname "$0")/.."
what=${1:-all}

for tool in clang bpftool make g++; do
  command -v "$tool" >/dev/null || { echo "ctstorm build: $tool is missing; run: bash scripts/setup.sh (as root)" >&2; exit 1; }
done

make -s -C bpf
bash scripts/libbpf.sh
gyp=node_modules/.bin/node-gyp
[[ -x $gyp ]] || gyp="npx --yes node-gyp@12"
# Build against the headers Node ships on this machine: no download.
nodedir=${npm_config_nodedir:-}
[[ -z $nodedir && -f /usr/include/node/node_api.h ]] && nodedir=/usr
# Configure again when the static libbpf appeared since: binding.gyp asks for it then.
if [[ ! -f build/Makefile || (-f gen/libbpf/VERSION && gen/libbpf/VERSION -nt build/Makefile) ]]; then
  $gyp configure --silent ${nodedir:+--nodedir="$nodedir"}
fi
$gyp build --silent

if [[ $what == all ]]; then
  node_modules/.bin/tsc -p tsconfig.json
fi
