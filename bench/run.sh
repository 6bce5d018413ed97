#!/usr/bin/env bash
# Benchmarks StackFs (no offload, caching, caching + passthrough) against the native
# directory under it, in one run: fio sequential
# read/write (1 MiB), random read (4 KiB), fs_mark small-file create, a warm stat walk of
# 10,000 files and a readdir of a 10,000-entry directory. Writes bench/results/results.json
# results.md and ratios.png (each figure and its ratio to native, with the machine and kernel).
# Usage: sudo bash bench/run.sh [--quick]      (not part of the test suite)
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
missing=()
command -v fio >/dev/null 2>&1 || missing+=(fio)
command -v fs_mark >/dev/null 2>&1 || missing+=(fsmark)
command -v gnuplot >/dev/null 2>&1 || missing+=(gnuplot-nox)
if [ ${#missing[@]} -gt 0 ]; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
export DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1
dotnet build runtime/ExtFuse.Cli -c Release --verbosity quiet -o artifacts/cli >/dev/null
dotnet build bench/ExtFuse.Bench -c Release --verbosity quiet -o artifacts/bench >/dev/null
work=/var/tmp/extfuse-bench
rm -rf "$work"; mkdir -p "$work"
trap 'umount -l "$work/mnt" 2>/dev/null || true; rm -rf "$work"' EXIT
dotnet artifacts/bench/ExtFuse.Bench.dll --cli artifacts/cli/extfuse.dll --work "$work" --out bench/results "$@"
