#!/usr/bin/env bash
# Builds the CLI, mounts the in-memory sample file system, uses it like any directory,
# and unmounts. Run as root (or as a user, through fusermount3).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1
dotnet build runtime/ExtFuse.Cli -c Release --no-restore --verbosity quiet -o artifacts/cli >/dev/null

mnt=$(mktemp -d /tmp/extfuse-demo.XXXXXX)
log=$(mktemp /tmp/extfuse-demo-log.XXXXXX)
dotnet artifacts/cli/extfuse.dll mount memory "$mnt" >"$log" 2>&1 &
daemon=$!
cleanup() {
  kill -TERM "$daemon" 2>/dev/null || true
  wait "$daemon" 2>/dev/null || true
  mountpoint -q "$mnt" && umount -l "$mnt" 2>/dev/null || true
  rmdir "$mnt" 2>/dev/null || true
}
trap cleanup EXIT

for _ in $(seq 100); do grep -q "mounted at" "$log" && break; sleep 0.1; done
cat "$log"
set -x
grep " $mnt " /proc/mounts
echo "hello from ExtFuse.NET" > "$mnt/hello.txt"
cat "$mnt/hello.txt"
mkdir -p "$mnt/docs/deep"
seq 1 100000 > "$mnt/docs/deep/numbers"
ln -s docs/deep/numbers "$mnt/numbers-link"
ln "$mnt/hello.txt" "$mnt/hello-hardlink"
mv "$mnt/hello-hardlink" "$mnt/docs/hello-again"
ls -lR "$mnt"
wc -l "$mnt/numbers-link"
stat -c '%n: %s bytes, %h links, mode %a' "$mnt/hello.txt"
df -h "$mnt"
set +x
kill -TERM "$daemon"
wait "$daemon"
cat "$log" | tail -1
if grep -q " $mnt " /proc/mounts; then echo "demo: still mounted!" >&2; exit 1; fi
echo "demo: unmounted cleanly"
