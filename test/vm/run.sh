#!/usr/bin/env bash
# Run a command as root inside a QEMU guest booted on a real Debian kernel.
#
#   bash test/vm/run.sh [--kernel 5.10|6.1|6.12 | --root DIR [--systemd]] [--timeout SECONDS] [--env NAME[=VALUE]]... [--] <command...>
#
# The guest sees the host root read-only and the checkout read-write at the same path,
# runs the command there and exits with its exit code (125 when the guest itself failed).
# With --root, the guest's root is DIR instead, a Debian root of x86_64 or arm64 (arm64
# runs in qemu-system-aarch64) that holds its own kernel in /boot and its modules; with
# --systemd, the root's systemd boots as PID 1 and runs the command as a unit.
set -euo pipefail

readonly SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
readonly CACHE=${CTSTORM_VM_CACHE:-/var/cache/ctstorm-vm}
readonly EXIT_VM_FAILED=125
readonly TAIL_LINES=60

# Modules loaded at boot, in this order (with their dependencies). Missing ones are skipped.
readonly PRELOAD_MODULES=(
  crc32c_generic virtio_pci 9pnet_virtio 9p virtio_rng veth
  nf_conntrack nf_conntrack_netlink nf_tables nft_ct nf_defrag_ipv4 nf_defrag_ipv6
  xt_conntrack iptable_filter ip_tables x_tables
)
# Also shipped in the initramfs (not loaded) so the kernel can autoload them on demand:
# nft expressions, iptables matches, NAT, bridge netfilter, tc/BPF classifiers.
readonly EXTRA_MODULE_DIRS=(
  kernel/net/netfilter kernel/net/ipv4/netfilter kernel/net/ipv6/netfilter
  kernel/net/bridge kernel/net/sched
)
readonly EXTRA_MODULES=(dummy macvlan)
# Environment passed into the guest besides CTSTORM_* and --env / $CTSTORM_VM_ENV names.
readonly DEFAULT_ENV=(CI NO_COLOR FORCE_COLOR TZ)

log() { echo "ctstorm-vm: $*" >&2; }
die() { log "error: $*"; exit "$EXIT_VM_FAILED"; }

usage() {
  sed -n '4p' "${BASH_SOURCE[0]}" | sed 's/^#  *//' >&2
  exit 2
}

# ---------------------------------------------------------------------------------------
# Kernel package: resolve, download, extract (cached per package version)
# ---------------------------------------------------------------------------------------

# Kernel series that are not in this machine's own Debian release, and the release
# that has them. apt reaches them through a sources list of the harness's own (under
# $CACHE), made from the mirror this machine already uses: the machine's apt
# configuration is never changed.
declare -A OTHER_RELEASE=([5.10]=bullseye)
APT=()   # extra apt options for the series being resolved

# The machine's own mirrors as sources lines for $release (a global of use_release_of).
own_mirrors() {
  local own=$1 uri suffix
  apt-cache policy | awk -v own="$own" '$3 ~ "^" own "(-[a-z]+)?/main$" && $4 == "amd64" { print $2, $3 }' |
    sort -u | while read -r uri suffix; do
      suffix=${suffix%/main}
      echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $uri $release${suffix#"$own"} main"
    done
}

# Sets APT to a private apt configuration for the release that has this series.
use_release_of() {
  local series=$1 dir own
  release=${OTHER_RELEASE[$1]:-}
  APT=()
  [[ -n $release ]] || return 0
  dir="$CACHE/apt-$release"
  own=$(. /etc/os-release && echo "${VERSION_CODENAME:-}")
  [[ -n $own ]] || die "cannot tell this machine's Debian release (/etc/os-release)"
  mkdir -p "$dir/lists/partial" "$dir/archives/partial"
  APT=(-o "Dir::Etc::sourcelist=$dir/sources.list" -o Dir::Etc::sourceparts=-
       -o "Dir::State::Lists=$dir/lists" -o "Dir::Cache=$dir" -o Dir::Cache::pkgcache=
       -o Dir::Cache::srcpkgcache=)
  [[ -s $dir/sources.list ]] && return 0
  # Every mirror this machine takes its own release's main from: the same URIs,
  # the other release's suites (e.g. bookworm-security -> bullseye-security).
  own_mirrors "$own" >"$dir/sources.list.tmp"
  if [[ ! -s $dir/sources.list.tmp ]]; then
    local saved=("${APT[@]}")
    APT=()
    apt_update # the machine's lists may never have been fetched
    APT=("${saved[@]}")
    own_mirrors "$own" >"$dir/sources.list.tmp"
  fi
  [[ -s $dir/sources.list.tmp ]] || die "no Debian mirror for $own in apt-cache policy (run apt-get update)"
  mv "$dir/sources.list.tmp" "$dir/sources.list"
  log "kernel $series comes from Debian $release: $(paste -sd ';' "$dir/sources.list")"
  flock "$CACHE/apt-update.lock" apt-get "${APT[@]}" update -qq >&2 || die "apt-get update for $release failed"
}

# Newest generic amd64 image of a series: linux-image-6.1.0-<abi>-amd64 or
# linux-image-6.12.<n>+deb12-amd64 (not -cloud, -rt, -dbg, -unsigned).
find_kernel_package() {
  local series=${1//./\\.}
  apt-cache "${APT[@]}" search --names-only "^linux-image-${series}(\.0-[0-9]+|\.[0-9]+\+deb[0-9]+)-amd64\$" \
    | awk '{print $1}' | sort -V | tail -n 1
}

package_version() {
  apt-cache "${APT[@]}" show --no-all-versions "$1" 2>/dev/null | sed -n 's/^Version: //p' | head -n 1
}

# Serialise apt-get update between concurrent runs (apt's own lock would make one fail).
apt_update() {
  log "refreshing apt package lists"
  mkdir -p "$CACHE"
  flock "$CACHE/apt-update.lock" apt-get "${APT[@]}" update -qq >&2 || log "warning: apt-get update failed"
}

# Sets PKG and PKG_VERSION; refreshes the apt lists only if nothing is found.
resolve_kernel() {
  local series=$1
  mkdir -p "$CACHE"
  use_release_of "$series"
  PKG=$(find_kernel_package "$series")
  if [[ -z $PKG ]]; then
    apt_update
    PKG=$(find_kernel_package "$series")
  fi
  [[ -n $PKG ]] || die "no linux-image package found for kernel series $series"
  PKG_VERSION=$(package_version "$PKG")
}

# Downloads and unpacks the package into $dir/root, runs depmod. Caller holds the lock.
extract_kernel() {
  local pkg=$1 ver=$2 dir=$3 tmp deb kver
  tmp=$(mktemp -d "$CACHE/.download.XXXXXX")
  log "downloading $pkg $ver"
  if ! (cd "$tmp" && apt-get "${APT[@]}" download -qq -o APT::Sandbox::User=root "$pkg=$ver" >&2); then
    # The lists may name a version the mirror already replaced: refresh once and retry.
    apt_update
    (cd "$tmp" && apt-get "${APT[@]}" download -qq -o APT::Sandbox::User=root "$pkg=$ver" >&2) ||
      { rm -rf "$tmp"; die "apt-get download $pkg=$ver failed"; }
  fi
  deb=$(echo "$tmp"/*.deb)
  dpkg-deb -x "$deb" "$tmp/root"
  rm -f "$deb"
  kver=$(ls "$tmp/root/lib/modules")
  [[ -f $tmp/root/boot/vmlinuz-$kver ]] || { rm -rf "$tmp"; die "no vmlinuz-$kver in $pkg"; }
  depmod -b "$tmp/root" "$kver"
  echo "$kver" >"$tmp/kver"
  rm -rf "$dir"
  mv "$tmp" "$dir"
}

# ---------------------------------------------------------------------------------------
# initramfs: busybox + modules + init (cached per kernel and per content of its inputs)
# ---------------------------------------------------------------------------------------

# The tracepoints ctstorm's raw_tp programs hook, kept at two probes in the guest
# (see the init below): their text is then never patched by an attach.
TRACEPOINTS_HELD="kmem/kmem_cache_alloc kmem/kmem_cache_free irq/softirq_entry irq/softirq_exit"

# PID 1 of the guest. Per-run input comes from the read-only 9p share "ctrun":
# checkout (path), nonce (marker suffix), cmd.sh (the command, run by host bash).
init_script() {
  printf '#!/bin/busybox sh\nTRACEPOINTS_HELD="%s"\n' "$TRACEPOINTS_HELD"
  cat <<'INIT'
/bin/busybox --install -s
export PATH=/sbin:/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
exec </dev/console >/dev/console 2>&1

fail() {
  echo "ctstorm-vm init: $*"
  poweroff -f
}

kver=$(uname -r)
while read -r ko; do
  insmod "/lib/modules/$kver/$ko" || echo "ctstorm-vm init: insmod $ko failed"
done </etc/ctstorm-vm/modules

r=/newroot
p9='trans=virtio,version=9p2000.L,msize=262144'
mkdir -p $r /ctrun
mount -t 9p -o "$p9,ro" ctrun /ctrun || fail "cannot mount the run share"
read -r checkout </ctrun/checkout
read -r nonce </ctrun/nonce
# Host files do not change under a test: let the guest cache them (much faster node start).
mount -t 9p -o "$p9,ro,cache=loose" hostroot $r || fail "cannot mount the host root"

mount -t proc proc $r/proc
mount -t sysfs sysfs $r/sys
mount -t devtmpfs devtmpfs $r/dev
mkdir -p $r/dev/pts $r/dev/shm
mount -t devpts devpts $r/dev/pts
mount -t tmpfs -o mode=1777 tmpfs $r/dev/shm
mount -t tmpfs -o mode=1777 tmpfs $r/tmp
mount -t tmpfs -o mode=755 tmpfs $r/run
[ -L $r/var/run ] || mount -t tmpfs -o mode=755 tmpfs $r/var/run
mount -t tmpfs -o mode=1777 tmpfs $r/var/tmp
mkdir -p $r/run/lock
mount -t bpf bpf $r/sys/fs/bpf || echo "ctstorm-vm init: no bpffs"
mount -t tracefs tracefs $r/sys/kernel/tracing || echo "ctstorm-vm init: no tracefs"
# QEMU 7.2 TCG (MTTCG) now and then runs a stale int3 on one vCPU after another
# vCPU patched kernel text with text_poke_bp (6.12 Oops at kmem_cache_alloc_noprof
# and in handle_softirqs on the softirq_entry call, right after a raw_tp attach; 6.1
# soft lockups in idle). A tracepoint's text changes when its probe count goes 0->1
# (static key) and 1->2 or 2->1 (its static call switches between the one probe and
# the iterator); from 2 up only a pointer changes. So the tracepoints ctstorm hooks
# hold two probes here for the whole run: the trace event, enabled in the top
# instance and in a second instance (each instance registers its own probe), with
# tracing off in both (and record-cmd off: it hooks every context switch). Raw_tp
# attaches and detaches then patch no text. The kernel command line enables the
# events in the top instance during boot, before the second CPU starts, so only the
# second instance's 1->2 patches while both run, once per boot. fentry and kprobe
# mode still patch their hooked functions' entries (through ftrace), far colder
# sites; matrix.sh boots a guest again if one dies of an int3 nonetheless.
t=$r/sys/kernel/tracing
if [ -w $t/tracing_on ]; then
  if mkdir -p $t/instances/ctstorm-vm; then
    for inst in $t $t/instances/ctstorm-vm; do
      echo 0 >$inst/tracing_on
      [ -e $inst/options/record-cmd ] && echo 0 >$inst/options/record-cmd # top instance only
      for e in $TRACEPOINTS_HELD; do
        echo 1 >$inst/events/$e/enable
        [ "$(cat $inst/events/$e/enable)" = 1 ] || echo "ctstorm-vm init: $e is not enabled in $inst: attaching ctstorm will patch its text"
      done
    done
  else
    echo "ctstorm-vm init: no trace instances: attaching ctstorm will patch tracepoint text"
  fi
fi
mount -t debugfs debugfs $r/sys/kernel/debug 2>/dev/null || echo "ctstorm-vm init: no debugfs"
mount -t cgroup2 cgroup2 $r/sys/fs/cgroup 2>/dev/null || true

# The checkout may live under /tmp, now hidden by the tmpfs: then create the mount point.
[ -d "$r$checkout" ] || mkdir -p "$r$checkout"
# cache=mmap: coherent with the host (others edit the checkout) yet mmap-able.
mount -t 9p -o "$p9,cache=mmap" checkout "$r$checkout" || fail "cannot mount $checkout"

# The host root has no modules for this kernel: expose ours to modprobe (MODPROBE_OPTIONS).
mkdir -p $r/run/ctstorm-vm/modroot/lib/modules
mount --bind /lib/modules $r/run/ctstorm-vm/modroot/lib/modules
cp /ctrun/cmd.sh $r/run/ctstorm-vm/cmd.sh
hostname ctstorm-vm
ip link set lo up

# --systemd: the root's systemd becomes PID 1 and runs the command as a unit once the
# system is up, then powers off (the root has its own modules: no modroot).
if [ -f /ctrun/systemd ]; then
  u=$r/run/systemd/system
  mkdir -p $u/multi-user.target.wants
  # Written through an unquoted heredoc: \$\$ lands as $$, a literal $ to systemd,
  # which expands $NAME in ExecStart itself.
  cat >$u/ctstorm-vm.service <<UNIT
[Unit]
Description=ctstorm-vm command
After=multi-user.target
[Service]
Type=oneshot
StandardOutput=tty
StandardError=tty
TTYPath=/dev/console
ExecStart=/bin/bash -c '/bin/bash --noprofile --norc /run/ctstorm-vm/cmd.sh </dev/null; rc=\$\$?; echo 1 >/proc/sys/kernel/printk; sync; echo "CTSTORM_VM_EXIT=\$\$rc run=$nonce"; systemctl poweroff --force --force'
UNIT
  ln -s ../ctstorm-vm.service $u/multi-user.target.wants/ctstorm-vm.service
  umount /ctrun
  exec switch_root $r /lib/systemd/systemd --show-status=no
fi

# chroot runs in a child, so PID 1 (and the kernel's modprobe helper, which shares its
# root) stays in the initramfs where the modules are.
chroot $r /usr/bin/env -i /bin/bash --noprofile --norc /run/ctstorm-vm/cmd.sh </dev/null
rc=$?
echo 1 >/proc/sys/kernel/printk   # no kernel messages inside the marker line
sync
echo "CTSTORM_VM_EXIT=$rc run=$nonce"
poweroff -f
INIT
}

# Prints the modules to insmod at boot (paths relative to /lib/modules/<kver>, deps first).
preload_order() {
  local kroot=$1 kver=$2 m line
  local -A seen=()
  for m in "${PRELOAD_MODULES[@]}"; do
    if ! line=$(modprobe -d "$kroot" -S "$kver" --show-depends "$m" 2>/dev/null); then
      log "module $m: not in $kver, skipped"
      continue
    fi
    while read -r kind path _; do
      if [[ $kind == builtin ]]; then
        log "module $m: built into $kver"
      elif [[ $kind == insmod && -z ${seen[$path]:-} ]]; then
        seen[$path]=1
        path=${path#"$kroot/lib/modules/$kver/"}
        echo "${path%.xz}"
      fi
    done <<<"$line"
  done
}

# Prints every module file (relative path, without .xz) the initramfs needs, with deps.
initramfs_module_files() {
  local kroot=$1 kver=$2 mdir="$1/lib/modules/$2" dir m
  {
    preload_order "$kroot" "$kver" 2>/dev/null
    for dir in "${EXTRA_MODULE_DIRS[@]}"; do
      [[ -d $mdir/$dir ]] && (cd "$mdir" && find "$dir" -name '*.ko*')
    done
    for m in "${EXTRA_MODULES[@]}"; do
      modprobe -d "$kroot" -S "$kver" --show-depends "$m" 2>/dev/null |
        awk '$1 == "insmod" {print $2}' | sed "s|^$mdir/||"
    done
  } | sed 's/\.xz$//' |
    # modules.dep gives each module's full (transitive) dependency list.
    awk 'NR == FNR { want[$0] = 1; next }
         { sub(/:$/, "", $1); for (i = 1; i <= NF; i++) sub(/\.xz$/, "", $i) }
         $1 in want { for (i = 1; i <= NF; i++) print $i }' - "$mdir/modules.dep" |
    sort -u
}

# Builds the initramfs (gzip'd newc cpio) into $out, with the guest's static $BUSYBOX.
build_initramfs() {
  local kroot=$1 kver=$2 out=$3 tmp mdir f
  tmp=$(mktemp -d "$CACHE/.initramfs.XXXXXX")
  mdir="$tmp/root/lib/modules/$kver"
  mkdir -p "$tmp/root"/{bin,sbin,usr/bin,usr/sbin,dev,proc,sys,etc/ctstorm-vm,newroot} "$mdir"
  cp "$BUSYBOX" "$tmp/root/bin/busybox"
  init_script >"$tmp/root/init"
  chmod 755 "$tmp/root/init"

  # Busybox insmod cannot read compressed modules: store them decompressed.
  initramfs_module_files "$kroot" "$kver" | while read -r f; do
    mkdir -p "$mdir/$(dirname "$f")"
    if [[ -f $kroot/lib/modules/$kver/$f.xz ]]; then
      xz -dc "$kroot/lib/modules/$kver/$f.xz" >"$mdir/$f"
    else
      cp "$kroot/lib/modules/$kver/$f" "$mdir/$f"
    fi
  done
  cp "$kroot/lib/modules/$kver"/modules.{builtin,builtin.modinfo,order} "$mdir/"
  depmod -b "$tmp/root" "$kver"   # for the kernel's on-demand modprobe in the guest
  preload_order "$kroot" "$kver" >"$tmp/root/etc/ctstorm-vm/modules"

  (cd "$tmp/root" && find . | cpio -o -H newc --quiet | gzip -1) >"$tmp/initrd.gz"
  mv "$tmp/initrd.gz" "$out"
  rm -rf "$tmp"
}

# Everything the initramfs is made of, so a change to any of it makes a new one.
initramfs_key() {
  {
    init_script
    declare -p PRELOAD_MODULES EXTRA_MODULE_DIRS EXTRA_MODULES
    declare -f preload_order initramfs_module_files build_initramfs
    sha256sum "$BUSYBOX"
  } | sha256sum | cut -c1-16
}

# Makes sure kernel and initramfs are cached; sets KERNEL, INITRD and KVER.
prepare_kernel() {
  local series=$1 dir lock
  BUSYBOX=/bin/busybox GUEST_ARCH=x86_64
  [[ -z $GUEST_ROOT ]] || { prepare_root_kernel; return; }
  resolve_kernel "$series"
  dir="$CACHE/${PKG}_${PKG_VERSION}"
  mkdir -p "$CACHE"
  # One preparer per package at a time; the others wait, then find it ready.
  exec {lock}>"$dir.lock"
  flock "$lock"
  [[ -f $dir/kver ]] || extract_kernel "$PKG" "$PKG_VERSION" "$dir"
  KVER=$(<"$dir/kver")
  KERNEL="$dir/root/boot/vmlinuz-$KVER"
  INITRD="$dir/initrd-$(initramfs_key).gz"
  if [[ ! -f $INITRD ]]; then
    log "building initramfs for $KVER"
    [[ -x /bin/busybox ]] && ! ldd /bin/busybox >/dev/null 2>&1 ||
      die "/bin/busybox must be the static build (apt-get install busybox-static)"
    build_initramfs "$dir/root" "$KVER" "$INITRD"
  fi
  exec {lock}>&-
}

# The kernel, modules and busybox of a --root: the root's own, one kernel in /boot.
prepare_root_kernel() {
  local kvers lock
  kvers=("$GUEST_ROOT"/lib/modules/*)
  ((${#kvers[@]} == 1)) && [[ -d ${kvers[0]} ]] || die "$GUEST_ROOT must hold exactly one kernel in lib/modules"
  KVER=$(basename "${kvers[0]}")
  KERNEL="$GUEST_ROOT/boot/vmlinuz-$KVER"
  [[ -f $KERNEL ]] || die "no $KERNEL"
  case $(readelf -h "$GUEST_ROOT/usr/bin/bash" 2>/dev/null | awk '/Machine:/ {print $2}') in
    AArch64) GUEST_ARCH=aarch64 ;;
    Advanced) GUEST_ARCH=x86_64 ;;   # "Advanced Micro Devices X86-64"
    *) die "$GUEST_ROOT/usr/bin/bash is neither x86_64 nor aarch64" ;;
  esac
  BUSYBOX=$GUEST_ROOT/usr/bin/busybox
  [[ -x $BUSYBOX ]] && ! readelf -lW "$BUSYBOX" | grep -q 'program interpreter' ||
    die "$BUSYBOX must be the static build (Debian package busybox-static)"
  mkdir -p "$CACHE"
  exec {lock}>"$CACHE/root-initramfs.lock"
  flock "$lock"
  [[ -f $GUEST_ROOT/lib/modules/$KVER/modules.dep ]] || depmod -b "$GUEST_ROOT" "$KVER"
  # A rebuilt root may keep its kernel's version string: key on the kernel's bytes too,
  # so its modules never meet another build's kernel.
  INITRD="$CACHE/initrd-$KVER-$( { initramfs_key; sha256sum <"$KERNEL"; } | sha256sum | cut -c1-16).gz"
  if [[ ! -f $INITRD ]]; then
    log "building initramfs for $KVER ($GUEST_ARCH)"
    build_initramfs "$GUEST_ROOT" "$KVER" "$INITRD"
  fi
  exec {lock}>&-
}

# ---------------------------------------------------------------------------------------
# The guest run
# ---------------------------------------------------------------------------------------

# Writes the script the guest's bash runs: environment, cd to the checkout, the command.
write_guest_command() {
  local file=$1 checkout=$2 kver=$3; shift 3
  local name script
  if [[ -n $SYSTEMD ]]; then
    : >"$(dirname "$file")/systemd"  # the guest's init boots systemd (see init_script)
  fi
  if (($# == 1)); then
    script=$1                       # one argument: a shell command line
  else
    script=$(printf '%q ' "$@")     # several: run exactly these words
  fi
  {
    echo 'export HOME=/tmp/home USER=root LOGNAME=root SHELL=/bin/bash TERM=dumb LANG=C.UTF-8'
    echo 'export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'
    for name in "${PASS_ENV[@]}"; do
      [[ -n ${!name+set} ]] && printf 'export %s=%q\n' "$name" "${!name}"
    done
    printf 'export CTSTORM_VM=1 CTSTORM_VM_KERNEL=%q\n' "$kver"
    # A --root has its own modules; the host root has none for this kernel.
    [[ -n $GUEST_ROOT ]] || echo "export MODPROBE_OPTIONS='-d /run/ctstorm-vm/modroot'"
    echo 'mkdir -p "$HOME"'
    printf 'cd %q || exit %d\n' "$checkout" "$EXIT_VM_FAILED"
    # Through a pipe, not the console: tools see no terminal, so no progress redraws.
    echo 'set -o pipefail'
    printf 'bash -c %q 2>&1 | cat\n' "$script"
  } >"$file"
}

# Names of the variables passed to the guest.
collect_env_names() {
  local name
  PASS_ENV=("${DEFAULT_ENV[@]}" ${CTSTORM_VM_ENV:-} "${EXTRA_ENV[@]}")
  PASS_ENV+=($(compgen -e | grep '^CTSTORM_' || true))
  for name in "${PASS_ENV[@]}"; do
    [[ $name =~ ^[A-Za-z_][A-Za-z0-9_]*$ ]] || die "bad environment variable name: $name"
  done
}

# Single-threaded TCG: both vCPUs run in one host thread, in turn. Multi-threaded
# TCG (QEMU 7.2) now and then lets one vCPU run stale code after the other patched
# kernel text (text_poke_bp): "Oops: int3", or both vCPUs locked up, at boot and at
# every attach, in a few percent of guest runs. In turn, no vCPU runs while another
# patches. It costs speed (one host core a guest), not correctness.
accel() {
  echo "${CTSTORM_VM_ACCEL:-tcg,thread=single}"
}

start_qemu() {
  local kernel=$1 initrd=$2 checkout=$3 rundir=$4 machine
  local events="trace_event=$(echo $TRACEPOINTS_HELD | tr ' /' ',:')"
  if [[ $GUEST_ARCH == aarch64 ]]; then
    # The virt board boots the kernel directly. Cortex-A72: no pointer authentication,
    # which TCG emulates slowly (-cpu max).
    machine=(qemu-system-aarch64 -M virt -cpu cortex-a72 -append "console=ttyAMA0 quiet panic=-1 $events")
  else
    machine=(qemu-system-x86_64 -cpu max -bios qboot.rom -append "console=ttyS0 quiet panic=-1 $events")
  fi
  # exec: $! is qemu itself, so the traps can kill it.
  exec 3< <(exec "${machine[@]}" \
    -accel "$(accel)" -m 2048 -smp 2 -nographic -no-reboot -nic none \
    -kernel "$kernel" -initrd "$initrd" -device virtio-rng-pci \
    -virtfs "local,path=${GUEST_ROOT:-/},mount_tag=hostroot,security_model=none,readonly=on,multidevs=remap" \
    -virtfs "local,path=$checkout,mount_tag=checkout,security_model=none,multidevs=remap" \
    -virtfs "local,path=$rundir,mount_tag=ctrun,security_model=none,readonly=on" \
    </dev/null 2>&1)
  QEMU_PID=$!
}

stop_qemu() {
  if [[ -n ${QEMU_PID:-} ]] && kill -0 "$QEMU_PID" 2>/dev/null; then
    kill "$QEMU_PID" 2>/dev/null || true
    wait "$QEMU_PID" 2>/dev/null || true
  fi
}

# Terminal control sequences (firmware screen clears, colours) make logs unreadable.
strip_escapes() {
  sed 's/\x1b\[[0-9;?]*[A-Za-z]//g; s/\x1b[()][A-Za-z0-9]//g; s/\x1b[A-Za-z=>]//g' <<<"$1"
}

# Streams the console to stdout until qemu exits or the deadline passes. Keeps the
# last lines in TAIL (TAIL_COUNT lines seen) and sets GUEST_RC from the marker line.
follow_console() {
  local nonce=$1 timeout=$2 line left rc after_marker=
  local deadline=$((SECONDS + timeout)) marker="CTSTORM_VM_EXIT=([0-9]+) run=$nonce\$"
  TAIL=() TAIL_COUNT=0
  while :; do
    left=$((deadline - SECONDS))
    ((left > 0)) || { log "timeout after ${timeout}s"; return 1; }
    line= rc=0
    IFS= read -r -t "$left" line <&3 || rc=$?
    if ((rc > 128)); then                 # read timed out: the loop reports it
      [[ -z $line ]] || TAIL[TAIL_COUNT++ % TAIL_LINES]=$line
      continue
    fi
    ((rc == 0)) || [[ -n $line ]] || return 0   # end of output: qemu exited
    line=${line//$'\r'/}
    [[ $line != *$'\e'* ]] || line=$(strip_escapes "$line")
    TAIL[TAIL_COUNT++ % TAIL_LINES]=$line
    [[ -z $after_marker ]] || continue    # only the guest's power-off messages now
    if [[ $line =~ $marker ]]; then
      GUEST_RC=${BASH_REMATCH[1]}
      line=${line%CTSTORM_VM_EXIT=*}
      [[ -z $line ]] || printf '%s\n' "$line"
      # The guest only syncs and powers off now: do not wait long for that.
      after_marker=1 deadline=$((SECONDS + 30)) timeout=30
      continue
    fi
    printf '%s\n' "$line"
  done
}

print_tail() {
  local i start=$((TAIL_COUNT > TAIL_LINES ? TAIL_COUNT - TAIL_LINES : 0))
  if ((TAIL_COUNT == 0)); then
    log "the guest did not report an exit code and printed nothing (kernel: $KERNEL)"
    return
  fi
  log "the guest did not report an exit code; last console lines:"
  for ((i = start; i < TAIL_COUNT; i++)); do
    printf 'ctstorm-vm console| %s\n' "${TAIL[i % TAIL_LINES]}" >&2
  done
}

cleanup() {
  stop_qemu
  [[ -z ${RUNDIR:-} ]] || rm -rf "$RUNDIR"
}

main() {
  local series=${CTSTORM_VM_KERNEL:-6.1} timeout=${CTSTORM_VM_TIMEOUT:-900}
  EXTRA_ENV=() GUEST_ROOT= SYSTEMD= kernel_given=
  while (($#)); do
    case $1 in
      --kernel) series=${2:?--kernel needs a value} kernel_given=1; shift 2 ;;
      --timeout) timeout=${2:?--timeout needs a value}; shift 2 ;;
      --root) GUEST_ROOT=$(cd "${2:?--root needs a directory}" && pwd) || die "no directory $2"; shift 2 ;;
      --systemd) SYSTEMD=1; shift ;;
      --env)
        [[ $2 == *=* ]] && export "${2?}"
        EXTRA_ENV+=("${2%%=*}"); shift 2 ;;
      --) shift; break ;;
      -h|--help) usage ;;
      -*) log "unknown option $1"; usage ;;
      *) break ;;                       # the command starts here

    esac
  done
  (($#)) || usage
  [[ $series =~ ^[0-9]+\.[0-9]+$ ]] || die "bad --kernel $series (expected e.g. 6.1 or 6.12)"
  [[ $timeout =~ ^[0-9]+$ ]] || die "bad --timeout $timeout"
  [[ -z $SYSTEMD || -n $GUEST_ROOT ]] || die "--systemd boots a --root's systemd: give --root"
  [[ -z $kernel_given || -z $GUEST_ROOT ]] || die "--root boots the root's own kernel: drop --kernel"

  local checkout nonce started=$SECONDS
  checkout=$(git -C "$SCRIPT_DIR" rev-parse --show-toplevel 2>/dev/null) ||
    checkout=$(cd "$SCRIPT_DIR/../.." && pwd)
  collect_env_names
  prepare_kernel "$series"
  # The guest mounts the checkout at the same path in its root, which it sees read-only.
  [[ -z $GUEST_ROOT ]] || mkdir -p "$GUEST_ROOT$checkout"

  trap cleanup EXIT
  trap 'log "interrupted"; exit 130' INT
  trap 'log "terminated"; exit 143' TERM
  RUNDIR=$(mktemp -d "${TMPDIR:-/tmp}/ctstorm-vm.XXXXXX")
  nonce=$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')
  echo "$checkout" >"$RUNDIR/checkout"
  echo "$nonce" >"$RUNDIR/nonce"
  write_guest_command "$RUNDIR/cmd.sh" "$checkout" "$KVER" "$@"

  log "booting $KVER ($(accel)), timeout ${timeout}s"
  GUEST_RC=
  start_qemu "$KERNEL" "$INITRD" "$checkout" "$RUNDIR"
  follow_console "$nonce" "$timeout" || true
  stop_qemu
  if [[ -z $GUEST_RC ]]; then
    print_tail
    exit "$EXIT_VM_FAILED"
  fi
  log "exit code $GUEST_RC after $((SECONDS - started))s"
  exit "$GUEST_RC"
}

main "$@"
