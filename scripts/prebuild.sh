#!/usr/bin/env bash
# What `npm pack` ships: the TypeScript (dist/) and the addon, with its BPF object
# inside and libbpf linked in, as a prebuild for this machine's architecture
# (prebuilds/linux-<arch>/ctstorm.glibc.node, by prebuildify as node-gyp-build reads
# it). N-API: one prebuild serves every Node.js from 20 on.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/build.sh all
# Against the headers Node ships on this machine: no download.
nodedir=${npm_config_nodedir:-}
[[ -z $nodedir && -f /usr/include/node/node_api.h ]] && nodedir=/usr
rm -rf prebuilds
npm_config_nodedir=$nodedir node_modules/.bin/prebuildify --napi --strip --tag-libc >/dev/null 2>&1 ||
  { echo "ctstorm prebuild: prebuildify failed; run it by hand to see why: node_modules/.bin/prebuildify --napi --strip --tag-libc" >&2; exit 1; }
# libbpf is linked into the addon: its licence goes with the prebuilds.
for f in gen/libbpf/LICENSE*; do [[ -f $f ]] && cp "$f" "prebuilds/libbpf-$(basename "$f")"; done
# prebuildify moved the addon out of build/Release: build it there again (a relink),
# for the checkout's own tests and tools, which load the local build first.
bash scripts/build.sh native >/dev/null 2>&1 || { echo "ctstorm prebuild: the rebuild into build/Release failed; run: npm run build" >&2; exit 1; }
echo "ctstorm prebuild: $(ls prebuilds/*/*.node)" >&2
