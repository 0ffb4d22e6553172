#!/usr/bin/env bash
# npm run image: the container image of ctstorm, from Debian's own packages and no
# registry pull. mmdebstrap makes a minimal Debian root (Node.js, libelf, nothing
# to compile with), the packed ctstorm is installed into it by npm, which takes the
# prebuild, and podman imports it as localhost/ctstorm:<version>.
#
# Leaves .cache/image/rootfs (the image's files; the package test runs in it too)
# and .cache/image/ctstorm-<version>.tgz (what npm pack made).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/chroot.sh
. scripts/debian-root.sh
# The chroot's mounts live in a private mount namespace: none propagates to the
# host's (an unmount of an --rbind there would take the host's /dev/pts with it
# where / is shared), and none outlives this script, however it ends.
if [[ -z ${CTSTORM_PRIVATE_MOUNTS:-} ]]; then
  CTSTORM_PRIVATE_MOUNTS=1 exec unshare --mount --propagation private bash "$0" "$@"
fi

for tool in mmdebstrap podman; do
  command -v "$tool" >/dev/null || { echo "ctstorm image: $tool is missing; run: bash scripts/setup.sh image (as root)" >&2; exit 1; }
done
[[ $(id -u) -eq 0 ]] || { echo "ctstorm image: mmdebstrap and the chroot install need root; run as root" >&2; exit 1; }

version=$(node -p "require('./package.json').version")
image=localhost/ctstorm:$version
# Not under build/: npm pack rebuilds the addon, and node-gyp rebuild empties build/.
out=$PWD/.cache/image
# Debian 13: Node.js 20 (ctstorm's minimum) is in the release itself.
suite=${CTSTORM_IMAGE_SUITE:-trixie}
packages=nodejs,libelf1t64,zlib1g,ca-certificates
mkdir -p "$out"

# 1. The package, as npm publishes it.
tarball=$(pack_into "$out")

# 2. The Debian root (the licences kept: the image is redistributed).
base=$out/base-$suite
debian_base "$base" "$suite" "$packages" --variant=minbase --dpkgopt='path-include=/usr/share/doc/*/copyright'

# 3. npm install of the tarball inside that root, as a user's machine without a
# compiler would run it (its install script takes the prebuild). npm itself is the
# host's, mounted read-only for the install only (the image keeps no npm), and it
# installs offline from a cache filled here first: the root gets no network
# settings or certificates of this machine's.
root=$out/rootfs
cache=$out/npm-cache
npm_dir=$(host_npm_dir)
rm -rf "$out/stage"
npm install --prefix "$out/stage" --cache "$cache" --omit=dev --no-save --no-audit --no-fund --ignore-scripts \
  --loglevel=error "$tarball" >/dev/null
rm -rf "$out/stage"
trap 'unmount_root "$root"' EXIT
fresh_root "$base" "$root" "$npm_dir"
mkdir -p "$root/opt/npm-cache" "$root/tmp/pack"
mount --bind "$cache" "$root/opt/npm-cache"
cp "$tarball" "$root/tmp/pack/"
chroot "$root" /usr/bin/env -i PATH=/usr/local/bin:/usr/bin:/bin HOME=/root \
  /usr/bin/node /opt/npm/bin/npm-cli.js install --global --offline --cache /opt/npm-cache --omit=dev \
  --no-audit --no-fund --no-update-notifier --loglevel=error "/tmp/pack/ctstorm-$version.tgz" >&2
unmount_root "$root" # before the root becomes the image
rm -rf "$root/opt/npm" "$root/opt/npm-cache" "$root/tmp/pack" "$root/root/.npm"
[[ -x $root/usr/bin/ctstorm ]] || { echo "ctstorm image: npm installed no ctstorm command" >&2; exit 1; }
# The image only runs ctstorm: type declarations, source maps and docs serve no one
# there (32 MB of them, mostly @kubernetes/client-node's).
find "$root/usr/lib/node_modules" -type f \( -name '*.d.ts' -o -name '*.map' -o -name '*.md' \) -delete

# 4. The image: ctstorm serve by default, as the DaemonSet runs it.
tar -C "$root" --numeric-owner -cf - . |
  podman import --quiet \
    --change 'ENTRYPOINT ["/usr/bin/ctstorm"]' \
    --change 'CMD ["serve", "--listen", "0.0.0.0:9477"]' \
    --change 'EXPOSE 9477/tcp' \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'LABEL org.opencontainers.image.title=ctstorm' \
    --change "LABEL org.opencontainers.image.version=$version" \
    - "$image" >/dev/null
size=$(podman image inspect --format '{{.Size}}' "$image")
echo "ctstorm image: $image, $((size / 1000000)) MB" >&2
