#!/usr/bin/env bash
# Builds the CLI and the BPF objects, asks the kernel what it can do and verifies the objects,
# mounts the declarative sample (GuardedFs: MemoryFs plus [Check] rules compiled to C# and BPF),
# uses it like any directory while the kernel counts its requests, shows a rule refusing a
# change, and unmounts. Run as root (or as a user, through fusermount3; the BPF parts need root).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1
trap 'echo "demo: failed at line $LINENO (exit $?): see the output above" >&2' ERR
echo "demo: building the CLI, the samples and their BPF objects into artifacts/cli"
# Warnings and errors are shown (with their file and line); the rest of MSBuild's chatter is not.
dotnet build runtime/ExtFuse.Cli -c Release --no-restore -nologo -clp:NoSummary -v quiet -o artifacts/cli

set -x
dotnet artifacts/cli/extfuse.dll caps
dotnet artifacts/cli/extfuse.dll verify artifacts/cli
set +x

mnt=$(mktemp -d /tmp/extfuse-demo.XXXXXX)
log=$(mktemp /tmp/extfuse-demo-log.XXXXXX)
stats=$(mktemp /tmp/extfuse-demo-stats.XXXXXX)
dotnet artifacts/cli/extfuse.dll mount guarded "$mnt" -o allow_other >"$log" 2>&1 &
daemon=$!
cleanup() {
  kill -TERM "$daemon" 2>/dev/null || true
  wait "$daemon" 2>/dev/null || true
  mountpoint -q "$mnt" && umount -l "$mnt" 2>/dev/null || true
  rmdir "$mnt" 2>/dev/null || true
  rm -f "$log" "$stats"
}
trap cleanup EXIT

for _ in $(seq 300); do grep -q "mounted at" "$log" && break; kill -0 "$daemon" 2>/dev/null || break; sleep 0.1; done
cat "$log"
if ! grep -q "mounted at" "$log"; then echo "demo: the daemon did not mount (its log is above)" >&2; exit 1; fi
# Count the requests of the workload below in the kernel (tp_btf programs), for 3 seconds.
dotnet artifacts/cli/extfuse.dll stats "$mnt" --seconds 3 >"$stats" 2>&1 &
statspid=$!
sleep 1
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
# The mode bits let anyone create here; the [Check] rule still refuses uid 65534.
chmod 1777 "$mnt"
setpriv --reuid=65534 --regid=65534 --clear-groups touch "$mnt/from-nobody" || echo "refused, as the rule says"
set +x
wait "$statspid" || true
cat "$stats"
kill -TERM "$daemon"
wait "$daemon"
cat "$log" | tail -1
if grep -q " $mnt " /proc/mounts; then echo "demo: still mounted!" >&2; exit 1; fi
echo "demo: unmounted cleanly"

# The sandbox: a command over a policed view of a directory, as nobody, in its own mount
# namespace; the policy's rules run in the daemon here (and in BPF LSM programs where the kernel
# has BPF LSM); every denial is audited; nothing stays mounted afterwards.
src=$(mktemp -d /tmp/extfuse-demo-src.XXXXXX)
trap 'cleanup; rm -rf "$src" "$src.policy.json" "$src.audit.jsonl"' EXIT
mkdir -p "$src/secrets" "$src/public"
echo "hello from the view" > "$src/public/readme"
echo "s3cret" > "$src/secrets/key"
chmod -R a+rwX "$src"
cat > "$src.policy.json" <<'JSON'
{ "rules": [
    { "name": "secrets", "effect": "deny", "ops": ["read", "write"], "path": "secrets/**", "uid": 65534 },
    { "name": "public kept", "effect": "deny", "ops": ["unlink"], "path": "public/**" },
    { "effect": "hide", "path": "**/.git" }
] }
JSON
set -x
dotnet artifacts/cli/extfuse.dll policy check "$src.policy.json"
dotnet artifacts/cli/extfuse.dll sandbox --policy "$src.policy.json" --source "$src" --audit "$src.audit.jsonl" -- \
  sh -c "id; cat $src/public/readme; cat $src/secrets/key; mv $src/secrets/key $src/public/key; rm $src/public/readme; ls $src; exit 0"
cat "$src.audit.jsonl"
set +x
if grep -q " $src " /proc/mounts; then echo "demo: the sandbox left its view mounted!" >&2; exit 1; fi
echo "demo: the sandbox ended and left nothing mounted"
