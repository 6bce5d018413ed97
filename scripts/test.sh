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

trx=$(find "$results" -name '*.trx' | head -n 1)
if [ -z "$trx" ]; then
  echo "test: no test results were written (dotnet test exit $status)" >&2
  echo "0 passed, 1 failed"
  exit 1
fi
counters=$(grep -o '<Counters [^>]*>' "$trx")
get() { echo "$counters" | grep -o " $1=\"[0-9]*\"" | grep -o '[0-9]*'; }
passed=$(get passed); failed=$(get failed); total=$(get total); executed=$(get executed)
skipped=$(( total - executed ))
failed=$(( failed + 0 ))
if [ "$status" -ne 0 ] && [ "$failed" -eq 0 ]; then failed=1; fi
echo "${passed} passed, ${failed} failed, ${skipped} skipped"
[ "$failed" -eq 0 ]
