#!/usr/bin/env bash
# Tests scripts/apt-backports.sh on sample apt source trees (one-line and
# deb822 formats) in a temporary directory. No root, no network.
# Prints one line per case and exits non-zero if any case failed.
set -u
here=$(cd "$(dirname "$0")" && pwd)
derive="$here/../../scripts/apt-backports.sh"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
failed=0 n=0

# check NAME WANT_STATUS WANT_STDOUT [WANT_STDERR_SUBSTRING]: runs the
# derivation on $tmp/NAME for bookworm.
check() {
  local name=$1 want_rc=$2 want=$3 want_err=${4:-} got rc err
  n=$((n + 1))
  got=$(bash "$derive" "$tmp/$name" bookworm 2>"$tmp/$name.err")
  rc=$?
  err=$(cat "$tmp/$name.err")
  if [ "$rc" = "$want_rc" ] && [ "$got" = "$want" ] && [[ $err == *"$want_err"* ]]; then
    echo "ok   $name"
  else
    failed=$((failed + 1))
    printf 'FAIL %s\n  want: status %s, %q, stderr containing %q\n  got:  status %s, %q, stderr %q\n' \
      "$name" "$want_rc" "$want" "$want_err" "$rc" "$got" "$err"
  fi
}

tree() { mkdir -p "$tmp/$1/sources.list.d"; }

# A stock Debian 12 tree: deb822, two suites in one paragraph, a security
# paragraph, comments.
tree deb822
cat >"$tmp/deb822/sources.list.d/debian.sources" <<'EOF'
Types: deb
# a comment inside the paragraph
URIs: file:///srv/mirror/debian
Suites: bookworm bookworm-updates
Components: main contrib non-free-firmware
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: file:///srv/mirror/debian-security
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
check deb822 0 "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] file:///srv/mirror/debian bookworm-backports main contrib non-free-firmware"

# The classic one-line sources.list: options in brackets (spaces inside),
# deb-src, a trailing comment, a commented-out line.
tree oneline
cat >"$tmp/oneline/sources.list" <<'EOF'
# deb file:///srv/old/debian bookworm main
deb-src file:///srv/src/debian bookworm main
deb [ arch=amd64 signed-by=/etc/apt/keyrings/archive.gpg ] file:///srv/archive/debian/ bookworm main non-free # mirror
deb file:///srv/archive/debian-security bookworm-security main
EOF
check oneline 0 "deb [signed-by=/etc/apt/keyrings/archive.gpg] file:///srv/archive/debian/ bookworm-backports main non-free"

# No options at all: no signed-by in the result.
tree plain
echo "deb file:///srv/plain/debian bookworm main" >"$tmp/plain/sources.list"
check plain 0 "deb file:///srv/plain/debian bookworm-backports main"

# A vendor's repository that also calls its suite bookworm comes first;
# the Debian archive (keyring, /debian path) is chosen. Files with other
# suffixes are not sources; a disabled paragraph is skipped; an inline key
# cannot be carried into a one-line entry.
tree mixed
echo "deb file:///srv/vendor/apt bookworm main" >"$tmp/mixed/sources.list.d/a-vendor.list"
echo "deb file:///srv/disabled/debian bookworm main" >"$tmp/mixed/sources.list.d/b.list.disabled"
cat >"$tmp/mixed/sources.list.d/debian.sources" <<'EOF'
Enabled: no
Types: deb
URIs: file:///srv/off/debian
Suites: bookworm
Components: main

types: deb deb-src
uris: file:///srv/inline/debian
suites: bookworm
components: main
signed-by:
 -----BEGIN PGP PUBLIC KEY BLOCK-----
 .
 mDMEZ0000000000000000000000000000000000000000000000000000
 -----END PGP PUBLIC KEY BLOCK-----
EOF
check mixed 0 "deb file:///srv/inline/debian bookworm-backports main"

# Backports already configured (here in deb822): nothing to add.
tree present
cp "$tmp/deb822/sources.list.d/debian.sources" "$tmp/present/sources.list.d/"
printf 'Types: deb\nURIs: file:///srv/mirror/debian\nSuites: bookworm-backports\nComponents: main\n' \
  >"$tmp/present/sources.list.d/backports.sources"
check present 0 "" "already configured"

# Only other suites and vendors: no main archive entry, a clear failure.
tree none
echo "deb file:///srv/vendor/apt stable main" >"$tmp/none/sources.list"
echo "deb file:///srv/mirror/debian bookworm contrib" >"$tmp/none/sources.list.d/contrib.list"
check none 1 "" "no enabled 'deb' entry for suite bookworm"

# An empty tree.
tree empty
check empty 1 "" "no source files"

echo "apt-backports: $((n - failed)) passed, $failed failed"
[ "$failed" -eq 0 ]
