#!/usr/bin/env bash
# The kernel lab: Debian's stock kernel, booted under qemu with BPF LSM in its LSM list, running the
# test assembly's KernelLab tests (the sandbox's enforcement suite, the LSM programs' verification)
# against this machine's build, whose kernel refuses BPF LSM programs. The guest runs the host's
# root read-only over virtio-9p; results come back as artifacts/test-results/kernel-lab/kernel-lab.trx.
# Installs what it needs (qemu-system-x86, busybox-static, cpio) and fetches the kernel package once.
# Needs root and a built tests/ExtFuse.Tests (scripts/test.sh builds it first).
# Usage: scripts/kernel-lab.sh [--run SCRIPT --results DIR]   (another command in the guest, such as
# bench/lab-sandbox.sh, with DIR shared as its /tmp/results)
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
lab=$repo/artifacts/kernel-lab
guest=$repo/scripts/kernel-lab/guest.sh
results=$repo/artifacts/test-results/kernel-lab
while [ $# -gt 0 ]; do
  case "$1" in
    --run) guest=$(realpath "$2"); shift 2 ;;
    --results) results=$(realpath -m "$2"); shift 2 ;;
    *) echo "kernel-lab: unknown option $1" >&2; exit 2 ;;
  esac
done
mkdir -p "$lab" "$results"
rm -f "$results"/*.trx

missing=()
command -v qemu-system-x86_64 >/dev/null 2>&1 || missing+=(qemu-system-x86)
dpkg -s busybox-static >/dev/null 2>&1 || missing+=(busybox-static)
command -v cpio >/dev/null 2>&1 || missing+=(cpio)
if [ ${#missing[@]} -gt 0 ]; then
  echo "kernel-lab: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# The kernel: what Debian's linux-image-amd64 points at now (6.1 on Debian 12).
image=$(apt-cache depends linux-image-amd64 2>/dev/null | awk '/Depends: linux-image-[0-9]/ { print $2; exit }')
if [ -z "$image" ]; then apt-get update -qq; image=$(apt-cache depends linux-image-amd64 | awk '/Depends: linux-image-[0-9]/ { print $2; exit }'); fi
kernel=$lab/$image
if [ ! -d "$kernel/boot" ]; then
  echo "kernel-lab: fetching $image"
  rm -rf "$kernel" "$lab"/*.deb
  (cd "$lab" && apt-get download "$image" 2>/dev/null)
  dpkg -x "$lab"/"$image"_*.deb "$kernel"
  rm -f "$lab"/*.deb
fi
vmlinuz=$(ls "$kernel"/boot/vmlinuz-* | head -n 1)

# The initramfs: a static busybox, the init script and the modules Debian builds 9p and FUSE as.
initrd=$lab/initrd
rm -rf "$initrd"
mkdir -p "$initrd"/{bin,dev,proc,sys,host,modules}
cp /bin/busybox "$initrd/bin/"
cp scripts/kernel-lab/init "$initrd/init"
for m in virtio_ring virtio virtio_pci_legacy_dev virtio_pci_modern_dev virtio_pci netfs fscache 9pnet 9pnet_virtio 9p fuse; do
  ko=$(find "$kernel/lib/modules" -name "$m.ko*" | head -n 1)
  [ -n "$ko" ] || continue   # built in, or not needed by this kernel
  case "$ko" in
    *.xz) xz -dc "$ko" > "$initrd/modules/$m.ko" ;;
    *.zst) zstd -qdc "$ko" > "$initrd/modules/$m.ko" ;;
    *) cp "$ko" "$initrd/modules/$m.ko" ;;
  esac
done
(cd "$initrd" && find . | cpio -o -H newc 2>/dev/null | gzip -1) > "$lab/init.gz"

echo "kernel-lab: booting $(basename "$vmlinuz") with lsm=...,bpf under qemu (software emulation)"
# /dev/kvm exists on these machines but guests hang at boot under it: software emulation, two vCPUs.
set +e
timeout 1800 qemu-system-x86_64 -accel tcg,thread=multi -cpu max -m 3072 -smp 2 \
  -kernel "$vmlinuz" -initrd "$lab/init.gz" \
  -append "console=ttyS0 quiet lsm=lockdown,capability,landlock,bpf panic=-1 lab.cmd=$guest lab.repo=$repo" \
  -virtfs local,path=/,mount_tag=host,security_model=none,readonly=on,multidevs=remap \
  -virtfs local,path="$results",mount_tag=results,security_model=none \
  -nographic -no-reboot < /dev/null 2>&1 | tr -d '\r' | tee "$lab/console.log" | grep -E "^lab:|Passed |Failed |Skipped |Total tests|error"
status=${PIPESTATUS[0]}
set -e
if [ "$guest" != "$repo/scripts/kernel-lab/guest.sh" ]; then
  grep -q "^lab: exit 0" "$lab/console.log" || { echo "kernel-lab: $guest failed in the guest (see $lab/console.log)" >&2; exit 1; }
  exit 0
fi
if [ ! -f "$results/kernel-lab.trx" ]; then
  echo "kernel-lab: the guest wrote no test results (qemu exit $status); its console is in $lab/console.log" >&2
  exit 1
fi
echo "kernel-lab: results in $results/kernel-lab.trx"
