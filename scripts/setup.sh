#!/usr/bin/env bash
# Installs what a fresh Debian 12 machine lacks for building, mounting and testing, then
# restores NuGet packages. Safe to run again: it only installs what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

need_root() {
  if [ "$(id -u)" -ne 0 ]; then
    echo "setup: $1 needs root; run this script with sudo" >&2
    exit 1
  fi
}

missing=()
command -v fusermount3 >/dev/null 2>&1 || missing+=(fuse3)
command -v setpriv >/dev/null 2>&1 || missing+=(util-linux)
command -v stress-ng >/dev/null 2>&1 || missing+=(stress-ng)
command -v bpftool >/dev/null 2>&1 || [ -x /usr/sbin/bpftool ] || missing+=(bpftool)
[ -f /usr/include/bpf/bpf_helpers.h ] || missing+=(libbpf-dev)
has_clang=no
for c in clang clang-19 clang-18 clang-17 clang-16 clang-15 clang-14; do command -v "$c" >/dev/null 2>&1 && has_clang=yes && break; done
[ "$has_clang" = yes ] || missing+=(clang)
if [ ${#missing[@]} -gt 0 ]; then
  need_root "installing ${missing[*]}"
  echo "setup: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if [ ! -e /dev/fuse ]; then
  need_root "loading the fuse module"
  modprobe fuse || { echo "setup: /dev/fuse is missing and 'modprobe fuse' failed: this kernel has no FUSE" >&2; exit 1; }
fi

# Debian's udev rules make /dev/fuse 0666 so users can mount through fusermount3 (which opens
# it with the user's rights); machines without udev leave it 0600.
if [ "$(stat -c %a /dev/fuse)" != "666" ] && [ "$(id -u)" -eq 0 ]; then
  echo "setup: /dev/fuse is mode $(stat -c %a /dev/fuse); making it 0666 as udev does, so normal users can mount"
  chmod 0666 /dev/fuse
fi

# FUSE over io_uring (kernel 6.14+) is built in but off by default; the io_uring transport and
# its tests need it on. It only changes which transports new mounts may choose.
uring=/sys/module/fuse/parameters/enable_uring
if [ -w "$uring" ] && [ "$(cat "$uring")" = N ]; then
  echo "setup: enabling FUSE over io_uring (echo Y > $uring)"
  echo Y > "$uring"
fi

# Pinned BPF maps (the daemon's statistics, `extfuse stats` from another process) live on bpffs,
# which a fresh boot may not have mounted. The daemon mounts it too when it runs as root.
if [ "$(id -u)" -eq 0 ] && ! mountpoint -q /sys/fs/bpf; then
  echo "setup: mounting bpffs at /sys/fs/bpf"
  mount -t bpf bpf /sys/fs/bpf
fi

if ! command -v dotnet >/dev/null 2>&1; then
  echo "setup: the .NET SDK 10 is not on PATH; install it (https://learn.microsoft.com/dotnet/core/install/linux-debian) and run again" >&2
  exit 1
fi

export DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1 DOTNET_SKIP_FIRST_TIME_EXPERIENCE=1
dotnet restore Framework.sln --verbosity quiet
