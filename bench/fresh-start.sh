#!/usr/bin/env bash
# Times the README's `npm start` on a fresh machine: a Debian 13 root from
# scripts/image.sh's cache (Debian's Node.js and apt, nothing else; npm's CLI is
# this machine's, as a fresh machine has npm with its Node.js), a clone of this
# checkout in it, then `npm start` until `ctstorm watch` says it is attached.
# Root; uses the network (Debian's archive, the npm registry). Prints the figures.
#
#   bash bench/fresh-start.sh
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/chroot.sh
# The chroot's mounts live in a private mount namespace: none propagates to the
# host's (an unmount of an --rbind there would take the host's /dev/pts with it
# where / is shared), and none outlives this script, however it ends.
if [[ -z ${CTSTORM_PRIVATE_MOUNTS:-} ]]; then
  CTSTORM_PRIVATE_MOUNTS=1 exec unshare --mount --propagation private bash "$0" "$@"
fi
base=$PWD/.cache/image/base-trixie
[[ -d $base ]] || { echo "fresh-start: no Debian root yet; run: npm run image" >&2; exit 1; }
root=$PWD/.cache/fresh-start
npm_dir=$(host_npm_dir)

trap 'unmount_root "$root"' EXIT
fresh_root "$base" "$root" "$npm_dir"
mkdir -p "$root/root"
mount --rbind /sys "$root/sys"
printf '#!/bin/sh\nexec /usr/bin/node /opt/npm/bin/npm-cli.js "$@"\n' >"$root/usr/local/bin/npm"
printf '#!/bin/sh\nexec /usr/bin/node /opt/npm/bin/npx-cli.js "$@"\n' >"$root/usr/local/bin/npx"
chmod +x "$root/usr/local/bin/npm" "$root/usr/local/bin/npx"
# This machine's network settings: its resolver and the certificates it trusts.
cp -L /etc/resolv.conf "$root/etc/resolv.conf"
cp -L /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/ca-certificates.crt"
git clone -q "$PWD" "$root/root/ctstorm"

log=$root/npm-start.log
start=$(date +%s.%N)
chroot "$root" /usr/bin/env -i PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin HOME=/root TERM=dumb \
  NODE_EXTRA_CA_CERTS=/etc/ssl/certs/ca-certificates.crt npm_config_cafile=/etc/ssl/certs/ca-certificates.crt \
  bash -c 'cd /root/ctstorm && exec npm start' >"$log" 2>&1 &
pid=$!
attached=
for ((i = 0; i < 3600; i++)); do
  if grep -q 'ctstorm: attached in' "$log"; then attached=$(date +%s.%N); break; fi
  kill -0 "$pid" 2>/dev/null || break
  sleep 0.5
done
pkill -INT -f 'node dist/cli.js watch' || true
wait "$pid" || true
if [[ -z $attached ]]; then
  echo "fresh-start: npm start did not attach; its log ends:" >&2
  tail -20 "$log" >&2
  exit 1
fi
awk -v a="$attached" -v s="$start" 'BEGIN { printf "npm start on a fresh Debian 13 root: %.0f s until watch attached\n", a - s }'
echo "log: $log"
