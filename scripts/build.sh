#!/usr/bin/env bash
# Builds ctstorm: "native" = the BPF probe and its skeleton (gen/) plus the N-API
# addon (build/Release/ctstorm.node); "all" = that plus the TypeScript (dist/).
# Incremental: make and node-gyp rebuild only what changed.
set -euo pipefail
cd "$(dirname "$0")/.."
what=${1:-all}
arch=$(uname -m | sed 's/x86_64/x64/;s/aarch64/arm64/')

for tool in clang bpftool make g++; do
  command -v "$tool" >/dev/null || { echo "ctstorm build: $tool is missing; install: apt-get install $(<scripts/build-packages) (a checkout: bash scripts/setup.sh)" >&2; exit 1; }
done

make -s -C bpf
bash scripts/libbpf.sh
# node-gyp: the checkout's (a devDependency), else the one npm runs lifecycle
# scripts with (an installed package has no devDependencies), else a download.
if [[ -x node_modules/.bin/node-gyp ]]; then gyp=node_modules/.bin/node-gyp
elif [[ -n ${npm_config_node_gyp:-} && -f $npm_config_node_gyp ]]; then gyp="node $npm_config_node_gyp"
elif command -v node-gyp >/dev/null; then gyp=node-gyp
else gyp="npx --yes node-gyp@12"
fi
# Build against the headers Node ships on this machine: no download.
nodedir=${npm_config_nodedir:-}
[[ -z $nodedir && -f /usr/include/node/node_api.h ]] && nodedir=/usr
# Configure again when the static libbpf appeared since (binding.gyp asks for it
# then), or when build/ was last configured for another architecture (prebuild.sh).
if [[ ! -f build/Makefile || (-f gen/$arch/libbpf/VERSION && gen/$arch/libbpf/VERSION -nt build/Makefile) ]] ||
  ! grep -q "\"target_arch\": \"$arch\"" build/config.gypi 2>/dev/null; then
  $gyp configure --silent ${nodedir:+--nodedir="$nodedir"}
fi
$gyp build --silent

if [[ $what == all ]]; then
  node_modules/.bin/tsc -p tsconfig.json
fi
