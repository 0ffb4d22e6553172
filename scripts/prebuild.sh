#!/usr/bin/env bash
# What `npm pack` ships: the TypeScript (dist/) and the addon, with its BPF object
# inside and libbpf linked in, as prebuilds for linux-x64 and linux-arm64
# (prebuilds/linux-<arch>/ctstorm.glibc.node, by prebuildify as node-gyp-build reads
# it). The other architecture is cross-compiled: Debian's cross toolchain, and its
# libelf and zlib unpacked into a sysroot (scripts/sysroot.sh). N-API: one prebuild
# serves every Node.js from 20 on.
set -euo pipefail
cd "$(dirname "$0")/.."
host=$(uname -m | sed 's/x86_64/x64/;s/aarch64/arm64/')
triplet() { [[ $1 == x64 ]] && echo x86_64-linux-gnu || echo aarch64-linux-gnu; }

for arch in x64 arm64; do
  [[ $arch == "$host" ]] && continue
  t=$(triplet "$arch")
  for tool in "$t-gcc" "$t-g++" "$t-strip"; do
    command -v "$tool" >/dev/null ||
      { echo "ctstorm prebuild: $tool is missing for the $arch prebuild; install: apt-get install g++-$t binutils-$t" >&2; exit 1; }
  done
done

bash scripts/build.sh all
# Against the headers Node ships on this machine: no download.
nodedir=${npm_config_nodedir:-}
[[ -z $nodedir && -f /usr/include/node/node_api.h ]] && nodedir=/usr
rm -rf prebuilds
for arch in "$host" $([[ $host == x64 ]] && echo arm64 || echo x64); do
  cross=()
  if [[ $arch != "$host" ]]; then
    t=$(triplet "$arch")
    make -s -C bpf ARCH="$arch"
    bash scripts/libbpf.sh "$arch"
    cross=(CC="$t-gcc" CXX="$t-g++" PREBUILD_STRIP_BIN="$t-strip")
  fi
  env "${cross[@]}" npm_config_nodedir="$nodedir" node_modules/.bin/prebuildify --napi --strip --tag-libc --arch "$arch" >/dev/null 2>&1 ||
    { echo "ctstorm prebuild: prebuildify failed for $arch; run it by hand to see why: ${cross[*]} node_modules/.bin/prebuildify --napi --strip --tag-libc --arch $arch" >&2; exit 1; }
done
# libbpf is linked in: its licence goes with the prebuilds (the same source for both).
for f in gen/"$host"/libbpf/LICENSE*; do [[ -f $f ]] && cp "$f" "prebuilds/libbpf-$(basename "$f")"; done
# prebuildify moved the addon out of build/Release: build it there again for this
# machine, for the checkout's own tests and tools, which load the local build first.
bash scripts/build.sh native >/dev/null 2>&1 || { echo "ctstorm prebuild: the rebuild into build/Release failed; run: npm run build" >&2; exit 1; }
echo "ctstorm prebuild: $(ls prebuilds/*/*.node | paste -sd ' ')" >&2
