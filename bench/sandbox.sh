#!/usr/bin/env bash
# The sandbox's benchmarks, against the targets of its issue: a 200-rule policy against none on an
# open/fstat/read workload, `extfuse sandbox` start to the command running, and, in the kernel lab
# (the only kernel here with BPF LSM), a denial answered in the kernel against a native failed open.
# Writes bench/results/sandbox.json and sandbox.md. Usage: sudo bash bench/sandbox.sh [--quick]
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1
dotnet build runtime/ExtFuse.Cli -c Release --verbosity quiet -o artifacts/cli >/dev/null
dotnet build bench/ExtFuse.Bench -c Release --verbosity quiet -o artifacts/bench >/dev/null
# The launcher as a native executable (Native AOT): what a deployment would run.
dotnet publish runtime/ExtFuse.Cli -c Release -r linux-x64 -p:ExtFuseNative=true --verbosity quiet -o artifacts/native >/dev/null
cc -O2 -o artifacts/bench/loops bench/loops.c
mkdir -p bench/results
rm -f bench/results/sandbox-lab.json
bash scripts/kernel-lab.sh --run bench/lab-sandbox.sh --results bench/results
work=/var/tmp/extfuse-sandbox-bench
rm -rf "$work"; mkdir -p "$work"
trap 'for m in "$work"/plain "$work"/ruled; do umount -l "$m" 2>/dev/null || true; done; rm -rf "$work"' EXIT
dotnet artifacts/bench/ExtFuse.Bench.dll sandbox --cli artifacts/cli/extfuse.dll --native artifacts/native/extfuse --loops artifacts/bench/loops --work "$work" --out bench/results "$@"
