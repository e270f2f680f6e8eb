#!/usr/bin/env bash
# Builds target/deb/ftpalg_VERSION_ARCH.deb with dpkg-dev's tools, as a
# Debian package is built: what `make install PREFIX=/usr` installs (the
# binary, the systemd unit, the man pages, bash/zsh/fish completions,
# /etc/ftpalg/rules.yaml, a conffile, the nftables snippets and the licence
# files), with /usr/share/doc/ftpalg/copyright in Debian's machine-readable
# format and the lintian overrides, each with its reason, staged in
# a debian/ layout (packaging/deb/debian/ holds the control file, the
# copyright file and the maintainer scripts); dpkg-shlibdeps finds the
# shared libraries the binary needs, with the versions its symbols need
# (libc6 >= 2.34 and the like), and dpkg-gencontrol writes the control
# file from debian/control, a changelog made from Cargo.toml's version, and
# those dependencies. Expects `make build man` done (the Makefile's deb
# target does it). DEB_MAINTAINER sets the Maintainer field.
set -euo pipefail
cd "$(dirname "$0")/../.."
src=packaging/deb/debian
version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
arch=$(dpkg --print-architecture)
maintainer=${DEB_MAINTAINER:-ftpalg developers <ftpalg@example.org>}
# The date of the sources, so that two builds of one commit are the same.
if [ -z "${SOURCE_DATE_EPOCH:-}" ]; then
  SOURCE_DATE_EPOCH=$(git log -1 --format=%ct 2>/dev/null || date +%s)
fi
export SOURCE_DATE_EPOCH

work=target/deb/work
root=$work/debian/ftpalg
doc=$root/usr/share/doc/ftpalg
rm -rf "$work"
mkdir -p "$root/DEBIAN"
sed "s|@MAINTAINER@|$maintainer|" "$src/control" >"$work/debian/control"
# A native package: its version is the sources' own.
cat >"$work/debian/changelog" <<TXT
ftpalg ($version) unstable; urgency=medium

  * Built from the ftpalg sources, version $version.

 -- $maintainer  $(date -R -u -d "@$SOURCE_DATE_EPOCH")
TXT

make --no-print-directory -s install PREFIX=/usr UNITDIR=/usr/lib/systemd/system DESTDIR="$PWD/$root" CARGO=true >/dev/null
gzip -9n "$root"/usr/share/man/man*/*
# As dh_strip does: no symbols, no debug sections (the release profile
# keeps line tables for profiling; the package does not).
strip --remove-section=.comment --remove-section=.note "$root/usr/bin/ftpalg"

# The crates built into the binary, with their licences, from Cargo.lock.
crates=$(cargo tree --locked --offline -e normal --prefix none --format '{p}: {l}' \
  | sed 's/ (\*)$//; s/ (proc-macro)//; s/ (\/[^)]*)//' | grep -v '^ftpalg ' | sort -u | sed 's/^/ /')
# The years of the sources' history: the first commit's to the last's.
first=$(git log --reverse --format=%ad --date=format:%Y 2>/dev/null | sed -n 1p)
last=$(date -u -d "@$SOURCE_DATE_EPOCH" +%Y)
years=${first:-$last}
[ "$years" = "$last" ] || years="$years-$last"
awk -v crates="$crates" -v years="$years" \
  '$0 == "@CRATES@" { print crates; next } { sub(/@YEARS@/, years); print }' \
  "$src/copyright" >"$doc/copyright"
gzip -9n -c "$work/debian/changelog" >"$doc/changelog.gz"
chmod 644 "$doc/copyright" "$doc/changelog.gz"

install -Dm644 "$src/lintian-overrides" "$root/usr/share/lintian/overrides/ftpalg"
install -m644 "$src/conffiles" "$root/DEBIAN/conffiles"
install -m755 "$src/postinst" "$src/prerm" "$src/postrm" "$root/DEBIAN/"
# md5sums of every file but the conffiles, as dh_md5sums writes them.
(cd "$root" && find . -type f ! -path './DEBIAN/*' ! -path './etc/*' -printf '%P\0' \
  | LC_ALL=C sort -z | xargs -0 md5sum) >"$root/DEBIAN/md5sums"
chmod 644 "$root/DEBIAN/md5sums"

(cd "$work" && dpkg-shlibdeps -Tdebian/ftpalg.substvars debian/ftpalg/usr/bin/ftpalg)
(cd "$work" && dpkg-gencontrol -pftpalg -Pdebian/ftpalg -Tdebian/ftpalg.substvars -fdebian/files)

out=target/deb/ftpalg_${version}_${arch}.deb
dpkg-deb --root-owner-group -Zxz --build "$root" "$out" >/dev/null
echo "$out"
