#!/bin/sh
# Runs inside the kernel lab (bench/sandbox.sh boots it): a denial answered by the LSM program, by
# the daemon, and by a native permission check, timed; results into the shared /tmp/results.
export HOME=/tmp DOTNET_CLI_HOME=/tmp DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1
repo=$(cd "$(dirname "$0")/.." && pwd)
mkdir -p /tmp/bench
dotnet "$repo/artifacts/bench/ExtFuse.Bench.dll" sandbox-lab --cli "$repo/artifacts/cli/extfuse.dll" \
  --loops "$repo/artifacts/bench/loops" --work /tmp/bench --out /tmp/results
