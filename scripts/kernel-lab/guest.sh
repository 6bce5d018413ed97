#!/bin/sh
# Runs inside the kernel lab (a chroot of the host's root on a stock Debian kernel with BPF LSM):
# the test assembly's KernelLab tests, results as TRX into the shared results directory.
export HOME=/tmp DOTNET_CLI_HOME=/tmp DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1 DOTNET_SKIP_FIRST_TIME_EXPERIENCE=1
export VSTEST_CONNECTION_TIMEOUT=600
repo=$(cd "$(dirname "$0")/../.." && pwd)
cd /tmp
dotnet vstest "$repo/tests/ExtFuse.Tests/bin/Release/net10.0/ExtFuse.Tests.dll" \
  --TestCaseFilter:"Category=KernelLab" --logger:"trx;LogFileName=kernel-lab.trx" --logger:"console;verbosity=normal" \
  --ResultsDirectory:/tmp/results
