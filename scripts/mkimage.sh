#!/usr/bin/env bash
# mkimage.sh OUT.img SIZE_MB VERSION SRC_TREE [TREE_OUT]
# Builds a deterministic ext4 "OS image" of VERSION from SRC_TREE: the tree is
# copied, a release file names the version, and for every version after the
# first about 7% of the files change the way a package upgrade changes them
# (rewritten, grown, shrunk, removed, added). With TREE_OUT the resulting
# /usr tree is kept there, to be the SRC_TREE of the next version. No root
# needed (mkfs.ext4 -d).
set -euo pipefail
out=$1 size_mb=$2 version=$3 src=$4 keep=${5:-}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
tree=$work/root
mkdir -p "$tree/usr" "$tree/etc"
cp -a "$src/." "$tree/usr/"
printf 'NAME="Demo OS"\nID=demo\nVERSION=%s\nVERSION_ID=%s\n' "$version" "$version" >"$tree/usr/os-release"
# Deterministic mutations seeded by the version: every version differs from
# the previous one in about 7% of its files.
seed=$(printf '%s' "$version" | cksum | cut -d' ' -f1)
i=0
find "$tree/usr" -type f | LC_ALL=C sort | while read -r f; do
  i=$((i + 1))
  r=$(( (i * 2654435761 + seed) % 1000 ))
  if   [ $r -lt 25 ]; then head -c 4096 /dev/urandom >>"$f"                       # grown
  elif [ $r -lt 45 ]; then printf 'patched for %s\n' "$version" | dd of="$f" bs=1 seek=64 conv=notrunc status=none # small edit
  elif [ $r -lt 55 ]; then truncate -s $(( $(stat -c %s "$f") / 2 )) "$f"          # shrunk
  elif [ $r -lt 62 ]; then rm -f "$f"                                              # removed
  elif [ $r -lt 70 ]; then head -c 16384 /dev/urandom >"$f.new-$version"          # added
  fi
done
# The post-install step every image carries (Flatcar's /usr/postinst): the
# engine runs it from the new image, mounted read-only, before the flip.
printf '#!/bin/sh\n# postinst DEVICE\necho "postinst: Demo OS %s verified on $1" >&2\n' "$version" >"$tree/postinst"
chmod 755 "$tree/postinst"
find "$tree" -exec touch -h -d "2026-01-01 00:00:00 UTC" {} +
rm -f "$out"
if [ -n "$keep" ]; then rm -rf "$keep"; cp -a "$tree/usr" "$keep"; fi
E2FSPROGS_FAKE_TIME=1767225600 mkfs.ext4 -q -F -b 4096 -L USR -U 5e1f0a55-0000-4000-8000-000000000001 \
  -E hash_seed=5e1f0a55-0000-4000-8000-000000000002,lazy_itable_init=0,root_owner=0:0 \
  -d "$tree" "$out" "${size_mb}M"
