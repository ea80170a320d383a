#!/usr/bin/env bash
# Builds update-engine_<version>_<arch>.deb with Debian's dpkg-deb from a
# `make install DESTDIR=… PREFIX=/usr` tree (GOARCH=<arch> cross-builds),
# plus what a Debian package carries beside it: the maintainer scripts,
# conffiles (everything under /etc), md5sums, the copyright file,
# changelog.Debian.gz and the lintian overrides (dist/debian/).
#
#   scripts/mkdeb.sh ARCH [OUTDIR]     (VERSION from the environment, else git describe)
#   DEB_COMPRESS=gzip …                the data's compression (default xz; the
#                                      tests take gzip: xz -6 of 60 MB takes minutes on a loaded host)
#
# The binaries are built without cgo (CGO_ENABLED=0: no library, no libc
# dependency, the same for every arch), position-independent and stripped
# (-s -w), as lintian's hardening and stripping checks want.
set -euo pipefail
cd "$(dirname "$0")/.."
arch=${1:?usage: mkdeb.sh ARCH [OUTDIR]}
out=${2:-bin/deb}
version=${VERSION:-$(git describe --tags --dirty 2>/dev/null || echo devel)}
# Debian version: "v1.2.0-5-gabc" -> "1.2.0+5.gabc-1"; "devel" -> "0~devel-1".
# The "-1" revision: a package of an upstream version (changelog.Debian.gz).
debver=${version#v}
case $debver in [0-9]*) ;; *) debver="0~$debver" ;; esac
debver=$(printf '%s' "$debver" | sed 's/-/+/; s/-/./g')-1
maint=${DEB_MAINTAINER:-update_engine developers <update-engine@users.noreply.github.com>}

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
root=$work/root
CGO_ENABLED=0 GOARCH=$arch make --no-print-directory install DESTDIR="$root" PREFIX=/usr BIN="$work/bin" \
  VERSION="$version" GOBUILDFLAGS="-buildmode=pie" EXTRA_LDFLAGS="-s -w" >&2

doc=$root/usr/share/doc/update-engine
install -d -m 0755 "$doc" "$root/usr/share/lintian/overrides" "$root/DEBIAN"
install -m 0644 dist/debian/copyright "$doc/copyright"
install -m 0644 dist/debian/lintian-overrides "$root/usr/share/lintian/overrides/update-engine"
# The changelog's date is the commit's, so the package is reproducible.
date=$(git log -1 --format=%cD 2>/dev/null || date -R)
{
  printf 'update-engine (%s) unstable; urgency=medium\n\n' "$debver"
  printf '  * Built from update_engine %s (git describe).\n\n' "$version"
  printf ' -- %s  %s\n' "$maint" "$date"
} | gzip -9n > "$doc/changelog.Debian.gz"
chmod 0644 "$doc/changelog.Debian.gz"

for s in postinst prerm postrm; do install -m 0755 "dist/debian/$s" "$root/DEBIAN/$s"; done
(cd "$root" && find etc -type f 2>/dev/null | sed 's#^#/#' | sort) > "$root/DEBIAN/conffiles"
[ -s "$root/DEBIAN/conffiles" ] || rm "$root/DEBIAN/conffiles"
(cd "$root" && find . -path ./DEBIAN -prune -o -type f -printf '%P\0' | sort -z | xargs -0 md5sum) > "$root/DEBIAN/md5sums"
chmod 0644 "$root/DEBIAN/md5sums"
size=$(du -sk --exclude=DEBIAN "$root" | cut -f1)
sed -e "s/@VERSION@/$debver/" -e "s/@ARCH@/$arch/" -e "s/@SIZE@/$size/" -e "s|@MAINTAINER@|$maint|" \
  dist/debian/control > "$root/DEBIAN/control"

mkdir -p "$out"
deb="$out/update-engine_${debver}_${arch}.deb"
SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || date +%s)} \
  dpkg-deb --root-owner-group -Z"${DEB_COMPRESS:-xz}" --build "$root" "$deb" >&2
echo "$deb"
