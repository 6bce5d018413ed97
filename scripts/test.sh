#!/usr/bin/env bash
# Builds everything and runs the whole test suite (real FUSE mounts: run as root).
# Ends with the line "N passed, N failed[, N skipped]".
set -uo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh || exit 1
export DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1
if [ "$(id -u)" -ne 0 ]; then
  echo "test: the suite mounts file systems with mount(2) and tests unprivileged mounts as another user: run it as root" >&2
  exit 1
fi

dotnet build Framework.sln -c Release --no-restore --verbosity quiet -nologo || { echo "0 passed, 1 failed"; exit 1; }

results=artifacts/test-results
rm -rf "$results"
dotnet test tests/ExtFuse.Tests -c Release --no-build --nologo \
  --logger "trx;LogFileName=results.trx" --logger "console;verbosity=normal" \
  --results-directory "$results" --blame-hang-timeout 5m -- RunConfiguration.TestSessionTimeout=1500000
status=$?

# Whatever happened, leave no test mount behind. A test host killed while one of its threads
# waited on its own mount leaves a live connection: abort it, then detach the mount.
awk '$5 ~ "^/tmp/extfuse-test-" { print $3, $5 }' /proc/self/mountinfo | while read -r dev mnt; do
  echo 1 > "/sys/fs/fuse/connections/${dev#*:}/abort" 2>/dev/null
  umount -l "$mnt" 2>/dev/null
done

# The kernel lab: Debian's stock kernel with BPF LSM under qemu runs the KernelLab tests (the sandbox's
# enforcement suite with the rules in LSM programs, which this machine's kernel refuses). Its results
# count with the others. EXTFUSE_KERNEL_LAB=0 leaves it out (a quicker local run), and says so.
lab_status=0
if [ "${EXTFUSE_KERNEL_LAB:-1}" = 0 ]; then
  echo "test: the kernel lab was left out (EXTFUSE_KERNEL_LAB=0): BPF LSM enforcement is not tested in this run"
else
  bash scripts/kernel-lab.sh
  lab_status=$?
fi

trxs=$(find "$results" -name '*.trx')
if [ -z "$trxs" ]; then
  echo "test: no test results were written (dotnet test exit $status)" >&2
  echo "0 passed, 1 failed"
  exit 1
fi
sum() { for t in $trxs; do grep -o '<Counters [^>]*>' "$t" | grep -o " $1=\"[0-9]*\"" | grep -o '[0-9]*'; done | awk '{ s += $1 } END { print s + 0 }'; }
passed=$(sum passed); failed=$(sum failed); total=$(sum total); executed=$(sum executed)
skipped=$(( total - executed ))
if [ "$status" -ne 0 ] && [ "$failed" -eq 0 ]; then failed=1; fi
if [ "$lab_status" -ne 0 ] && [ -z "$(find "$results" -name 'kernel-lab.trx')" ]; then
  echo "test: the kernel lab did not run to the end (see artifacts/kernel-lab/console.log)" >&2
  failed=$(( failed + 1 ))
fi
for t in $trxs; do
  grep -o '<UnitTestResult [^>]*outcome="Failed"' "$t" | grep -o 'testName="[^"]*"' | sed "s/^testName=/failed ($(basename "$t" .trx)): /"
done
echo "${passed} passed, ${failed} failed, ${skipped} skipped"
[ "$failed" -eq 0 ]
