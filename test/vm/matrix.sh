#!/usr/bin/env bash
# The real-kernel matrix (npm run test:vm): boots each Debian kernel once in QEMU and
# runs the live suite plus the VM-only tests inside it, once per attach mode, in one
# vitest process per boot. Prints per kernel and mode what passed, fails on any failure,
# on a guest that did not boot, and on a mode that ran no tests.
#
#   bash test/vm/matrix.sh [--kernels "5.10 6.1 6.12"] [--modes fentry,kprobe,tracepoint]
set -euo pipefail

readonly ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
kernels=${CTSTORM_VM_KERNELS:-"5.10 6.1 6.12"}
modes=${CTSTORM_VM_MODES:-fentry,kprobe,tracepoint}

# What each kernel must refuse, and words its reason must contain (mode=words|...):
# Debian 11's 5.10 has no BTF for modules (5.11+), so fentry cannot attach to
# nf_conntrack's functions, and its slab tracepoints pass no cache (6.0+).
refused_on() {
  case $1 in
    5.10) echo 'fentry=no BTF for the nf_conntrack module|tracepoint=does not pass the slab cache' ;;
    *) echo '' ;;
  esac
}

# Run in the guest after the suite: the kernel must have logged no warning while
# the probe was loaded and run (e.g. 5.7-6.0 WARN when a tracing program uses a
# map that allocates at run time). Exit code: the suite's, else 3.
readonly KERNEL_LOG_CHECK='if dmesg | grep -qE "WARNING:|BUG:|run-time allocation|Call Trace"; then
  dmesg | grep -E -B2 -A40 "WARNING:|BUG:|run-time allocation"
  echo "ctstorm-vm: the guest kernel logged the warnings above"; exit 3; fi; exit $rc'

# The requested modes this kernel is expected to run.
modes_on() {
  local kernel=$1 m out=() refused
  refused=$(refused_on "$kernel")
  for m in ${modes//,/ }; do
    [[ "|$refused" == *"|$m="* ]] || out+=("$m")
  done
  local IFS=,
  echo "${out[*]}"
}

while (($#)); do
  case $1 in
    --kernels) kernels=${2:?--kernels needs a value}; shift 2 ;;
    --modes) modes=${2:?--modes needs a value}; shift 2 ;;
    *) echo "usage: bash test/vm/matrix.sh [--kernels \"6.1 6.12\"] [--modes fentry,kprobe,tracepoint]" >&2; exit 2 ;;
  esac
done

cd "$ROOT"
[[ -f build/Release/ctstorm.node && -f dist/cli.js ]] ||
  { echo "ctstorm-vm: no build here; run npm run build first" >&2; exit 1; }

results=build/vm-results
rm -rf "$results"
mkdir -p "$results"
started=$SECONDS
failed=()

for kernel in $kernels; do
  kmodes=$(modes_on "$kernel")
  echo "ctstorm-vm: kernel $kernel, modes $kmodes (refused: $(refused_on "$kernel"))" >&2
  t0=$SECONDS
  # The reporter's JSON lands in the checkout, which the guest shares read-write.
  # --no-isolate: one worker for all files; each isolated file costs a Node.js start
  # and its imports in the TCG guest (6.1: 232 s instead of 244-271 s).
  # QEMU 7.2's multi-threaded TCG now and then ran a stale int3 after the guest
  # kernel patched its own text; run.sh now uses single-threaded TCG, where that
  # cannot happen. Should a guest still die with "Oops: int3" before reporting, it
  # is booted once more, visibly. Any other failure counts as it is.
  for attempt in 1 2; do
    set +e
    # A kernel's suite takes 560-600 s in single-threaded TCG on this 2-core
    # machine (boot included): the guest's own bound is well above that.
    bash test/vm/run.sh --kernel "$kernel" --timeout "${CTSTORM_VM_TIMEOUT:-1800}" --env CTSTORM_TEST_MODES="$kmodes" \
      --env CTSTORM_EXPECT_REFUSED="$(refused_on "$kernel")" -- \
      "node_modules/.bin/vitest run --project live --project vm --no-isolate --reporter=verbose \
         --reporter=json --outputFile.json=$results/$kernel.json; rc=\$?; $KERNEL_LOG_CHECK" 2>&1 |
      tee "$results/$kernel.log"
    rc=${PIPESTATUS[0]}
    set -e
    ((rc == 125 && attempt == 1)) && grep -q 'Oops: int3' "$results/$kernel.log" || break
    echo "ctstorm-vm: $kernel guest died of a stale int3 (QEMU TCG), booting it again" >&2
  done
  echo "$kernel $rc $((SECONDS - t0)) $kmodes" >>"$results/runs"
  ((rc == 0)) || failed+=("$kernel (exit $rc)")
done

node test/vm/summary.mjs "$results" || failed+=("summary")
echo "ctstorm-vm: matrix took $((SECONDS - started))s" >&2
if ((${#failed[@]})); then
  echo "ctstorm-vm: FAILED: ${failed[*]}" >&2
  exit 1
fi
