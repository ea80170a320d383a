#!/usr/bin/env bash
# Installs the Debian packages that tests, benchmarks and the demo use.
# As root it installs what is missing; otherwise it names what to install.
set -euo pipefail
pkgs=(dbus gdisk vboot-utils cgpt swtpm swtpm-tools tpm2-tools etcd-server etcd-client
      xz-utils zstd bzip2 bsdiff e2fsprogs util-linux fdisk protobuf-compiler systemd time fio
      dosfstools fusefat xdelta3 chromium openssl prometheus lintian man-db)
# command each package provides, to detect it cheaply
cmds=(dbus-daemon sgdisk futility cgpt swtpm swtpm_setup tpm2_nvread etcd etcdctl
      xz zstd bzip2 bsdiff mkfs.ext4 losetup sfdisk protoc busctl /usr/bin/time fio
      mkfs.vfat fusefat xdelta3 chromium openssl promtool lintian man)
missing=()
for i in "${!pkgs[@]}"; do
  command -v "${cmds[$i]}" >/dev/null 2>&1 || missing+=("${pkgs[$i]}")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" != 0 ]; then
  echo "deps: missing ${missing[*]}; run as root or: sudo apt-get install -y ${missing[*]}" >&2
  exit 0   # tests that need them skip and say so
fi
echo "deps: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq "${missing[@]}" >/dev/null
