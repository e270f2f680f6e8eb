#!/usr/bin/env bash
# Builds the Debian package (packaging/deb/build.sh) and checks it:
# - its dependencies come from dpkg-shlibdeps, with versions (libc6 >=);
# - lintian reports no error and no warning (tags are overridden only in
#   packaging/deb/debian/lintian-overrides, each with the reason), and a
#   package with a known error (no copyright file) does fail lintian, so a
#   broken lintian run cannot pass unnoticed;
# - the licence files and the machine-readable copyright file are there.
# Then, as root, installs it on this machine, checks what it installed
# (binary, unit, man pages, completions, the conffile, nftables snippets),
# runs `ftpalg check` on the installed rules and `systemd-analyze verify`
# on the installed unit, purges it and checks nothing is left.
# Skips (exit 0, says so) without dpkg; fails without dpkg-dev or lintian
# (scripts/install-test-deps.sh installs them). The install part needs
# root. Several checkouts on one machine take turns (a lock), and a package
# installed by someone else is left alone (the test refuses to run).
set -euo pipefail
cd "$(dirname "$0")/../.."
if ! command -v dpkg >/dev/null; then
  echo "deb: SKIP (needs dpkg)"
  exit 0
fi
for tool in dpkg-shlibdeps dpkg-gencontrol lintian; do
  command -v "$tool" >/dev/null || { echo "deb: FAIL $tool missing (run scripts/install-test-deps.sh)"; exit 1; }
done
failed=0
check() { if "$@" >/dev/null 2>&1; then echo "deb: PASS $*"; else echo "deb: FAIL $*"; failed=1; fi; }

deb=$(bash packaging/deb/build.sh)
depends=$(dpkg-deb -f "$deb" Depends)
if [[ "$depends" =~ libc6\ \(\>=\ [0-9] ]]; then
  echo "deb: PASS Depends: $depends"
else
  echo "deb: FAIL Depends has no versioned libc6: $depends"
  failed=1
fi
# Lintian's own remark on being run as root is not about the package.
lint() { lintian "$@" 2>&1 | grep -v '^running with root privileges'; return "${PIPESTATUS[0]}"; }
if out=$(lint --fail-on error,warning --display-info "$deb"); then
  echo "deb: PASS lintian${out:+ (notes below)}"
else
  echo "deb: FAIL lintian"
  failed=1
fi
[ -z "$out" ] || printf '%s\n' "$out" | sed 's/^/  lintian: /'
# The harness itself: a package without its copyright file is an error.
broken=target/deb/broken
rm -rf "$broken"
cp -a target/deb/work/debian/ftpalg "$broken"
rm "$broken/usr/share/doc/ftpalg/copyright"
sed -i '/usr\/share\/doc\/ftpalg\/copyright$/d' "$broken/DEBIAN/md5sums"
dpkg-deb --root-owner-group -Zxz --build "$broken" "$broken.deb" >/dev/null
if broken_out=$(lint --fail-on error "$broken.deb"); then
  echo "deb: FAIL lintian passed a package without a copyright file: $broken_out"
  failed=1
elif grep -q 'E: ftpalg: no-copyright-file' <<<"$broken_out"; then
  echo "deb: PASS lintian fails a package with an error (no-copyright-file)"
else
  echo "deb: FAIL lintian failed the broken package, but not for its copyright file: $broken_out"
  failed=1
fi
rm -rf "$broken" "$broken.deb"
contents=$(dpkg-deb -c "$deb")
for f in ./usr/share/doc/ftpalg/LICENSE-MIT ./usr/share/doc/ftpalg/LICENSE-APACHE ./usr/share/doc/ftpalg/copyright; do
  check grep -q " $f\$" <<<"$contents"
done
copyright=$(dpkg-deb --fsys-tarfile "$deb" | tar -xOf - ./usr/share/doc/ftpalg/copyright)
check grep -q '^Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/$' <<<"$copyright"
check grep -q '^License: MIT or Apache-2.0$' <<<"$copyright"
check grep -q '^License: MIT$' <<<"$copyright"
check grep -q '^License: Apache-2.0$' <<<"$copyright"

if [ "$(id -u)" -ne 0 ]; then
  echo "deb: SKIP installing it (needs root)"
  exit $failed
fi
exec 9>/run/lock/ftpalg-deb-test.lock
flock -w 300 9 || { echo "deb: FAIL another run holds the lock"; exit 1; }
if dpkg-query -W -f='${Status}' ftpalg 2>/dev/null | grep -q installed; then
  echo "deb: FAIL ftpalg is already installed on this machine; not touching it"
  exit 1
fi
[ ! -e /usr/bin/ftpalg ] || { echo "deb: FAIL /usr/bin/ftpalg exists outside a package"; exit 1; }
cleanup() { dpkg --purge ftpalg >/dev/null 2>&1 || true; }
trap cleanup EXIT
dpkg -i "$deb" >/dev/null
for f in /usr/bin/ftpalg /usr/lib/systemd/system/ftpalg.service /etc/ftpalg/rules.yaml \
  /usr/share/man/man8/ftpalg.8.gz /usr/share/man/man8/ftpalg-run.8.gz /usr/share/man/man8/ftpalg-check.8.gz \
  /usr/share/man/man5/ftpalg-rules.5.gz /usr/share/bash-completion/completions/ftpalg \
  /usr/share/zsh/vendor-completions/_ftpalg /usr/share/fish/vendor_completions.d/ftpalg.fish \
  /usr/share/doc/ftpalg/nftables/nftables-transparent.nft /usr/share/doc/ftpalg/nftables/nftables-tproxy.nft \
  /usr/share/doc/ftpalg/nftables/nftables-fail-open.nft /usr/share/doc/ftpalg/systemd/fail-open.conf \
  /usr/share/doc/ftpalg/copyright /usr/share/doc/ftpalg/LICENSE-MIT /usr/share/doc/ftpalg/LICENSE-APACHE; do
  check test -s "$f"
done
check grep -qx /etc/ftpalg/rules.yaml /var/lib/dpkg/info/ftpalg.conffiles
check dpkg --verify ftpalg
out=$(/usr/bin/ftpalg check --rules /etc/ftpalg/rules.yaml 2>&1) && echo "deb: PASS installed rules: $out" || { echo "deb: FAIL ftpalg check on the installed rules: $out"; failed=1; }
check man -w ftpalg
check man -w 5 ftpalg-rules
if command -v systemd-analyze >/dev/null; then
  out=$(systemd-analyze verify /usr/lib/systemd/system/ftpalg.service 2>&1) && [ -z "$out" ] \
    && echo "deb: PASS systemd-analyze verify on the installed unit" \
    || { echo "deb: FAIL systemd-analyze verify: $out"; failed=1; }
fi
dpkg --purge ftpalg >/dev/null
for f in /usr/bin/ftpalg /usr/lib/systemd/system/ftpalg.service /etc/ftpalg /usr/share/doc/ftpalg; do
  check test ! -e "$f"
done
exit $failed
