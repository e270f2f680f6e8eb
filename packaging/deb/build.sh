#!/usr/bin/env bash
# Builds target/deb/ftpalg_VERSION_ARCH.deb with dpkg-deb from what
# `make install PREFIX=/usr` installs: the binary, the systemd unit, the man
# pages, bash/zsh/fish completions, /etc/ftpalg/rules.yaml (a conffile: an
# upgrade never overwrites the operator's edits) and the nftables snippets.
# Expects `make build man` done (the Makefile's deb target does it).
set -euo pipefail
cd "$(dirname "$0")/../.."
version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
arch=$(dpkg --print-architecture)
root=target/deb/root
rm -rf "$root"
mkdir -p "$root/DEBIAN"
make --no-print-directory -s install PREFIX=/usr UNITDIR=/usr/lib/systemd/system DESTDIR="$PWD/$root" CARGO=true >/dev/null
gzip -9n "$root"/usr/share/man/man*/*
# The release profile keeps line tables for profiling; the package does not.
if command -v strip >/dev/null; then strip --strip-debug "$root/usr/bin/ftpalg"; fi
install -Dm644 LICENSE* -t "$root/usr/share/doc/ftpalg/" 2>/dev/null || true
cat >"$root/usr/share/doc/ftpalg/copyright" <<TXT
ftpalg is licensed under the MIT licence or the Apache License 2.0, at
your option.
TXT
echo /etc/ftpalg/rules.yaml >"$root/DEBIAN/conffiles"
size=$(du -sk --exclude=DEBIAN "$root" | cut -f1)
cat >"$root/DEBIAN/control" <<TXT
Package: ftpalg
Version: $version
Architecture: $arch
Maintainer: ftpalg maintainers <ftpalg@localhost>
Installed-Size: $size
Depends: libc6
Recommends: nftables
Section: net
Priority: optional
Description: FTP application-layer gateway for NAT
 Rewrites the addresses in PORT/EPRT/227/229, converts between active and
 passive mode, and opens exactly the data pinholes each FTP session needs,
 under rules written in YAML. Runs under systemd as an unprivileged user.
TXT
# The unit is not enabled or started by the package: the shipped rules are
# a template to edit first. After an upgrade a running gateway is restarted.
cat >"$root/DEBIAN/postinst" <<'SH'
#!/bin/sh
set -e
if [ -d /run/systemd/system ]; then
  systemctl daemon-reload >/dev/null || true
  if [ "$1" = configure ] && [ -n "$2" ]; then
    systemctl try-restart ftpalg.service >/dev/null || true
  fi
fi
SH
cat >"$root/DEBIAN/postrm" <<'SH'
#!/bin/sh
set -e
if [ -d /run/systemd/system ]; then
  systemctl daemon-reload >/dev/null || true
fi
if [ "$1" = purge ]; then
  rmdir /etc/ftpalg 2>/dev/null || true
fi
SH
cat >"$root/DEBIAN/prerm" <<'SH'
#!/bin/sh
set -e
if [ -d /run/systemd/system ] && [ "$1" = remove ]; then
  systemctl stop ftpalg.service >/dev/null || true
fi
SH
chmod 755 "$root/DEBIAN/postinst" "$root/DEBIAN/postrm" "$root/DEBIAN/prerm"
out=target/deb/ftpalg_${version}_${arch}.deb
dpkg-deb --root-owner-group -Zxz --build "$root" "$out" >/dev/null
echo "$out"
