#!/usr/bin/env bash
# Builds the Debian package, installs it on this machine, checks what it
# installed (binary, unit, man pages, completions, the conffile, nftables
# snippets), runs `ftpalg check` on the installed rules and `systemd-analyze
# verify` on the installed unit, then purges it and checks nothing is left.
# Needs root and dpkg; skips (exit 0, says so) without them. Several
# checkouts on one machine take turns (a lock), and a package installed by
# someone else is left alone (the test refuses to run).
set -euo pipefail
cd "$(dirname "$0")/../.."
if [ "$(id -u)" -ne 0 ] || ! command -v dpkg >/dev/null; then
  echo "deb: SKIP (needs root and dpkg)"
  exit 0
fi
exec 9>/run/lock/ftpalg-deb-test.lock
flock -w 300 9 || { echo "deb: FAIL another run holds the lock"; exit 1; }
if dpkg-query -W -f='${Status}' ftpalg 2>/dev/null | grep -q installed; then
  echo "deb: FAIL ftpalg is already installed on this machine; not touching it"
  exit 1
fi
[ ! -e /usr/bin/ftpalg ] || { echo "deb: FAIL /usr/bin/ftpalg exists outside a package"; exit 1; }
deb=$(bash packaging/deb/build.sh)
failed=0
check() { if "$@" >/dev/null 2>&1; then echo "deb: PASS $*"; else echo "deb: FAIL $*"; failed=1; fi; }
cleanup() { dpkg --purge ftpalg >/dev/null 2>&1 || true; }
trap cleanup EXIT
dpkg -i "$deb" >/dev/null
for f in /usr/bin/ftpalg /usr/lib/systemd/system/ftpalg.service /etc/ftpalg/rules.yaml \
  /usr/share/man/man8/ftpalg.8.gz /usr/share/man/man8/ftpalg-run.8.gz /usr/share/man/man8/ftpalg-check.8.gz \
  /usr/share/man/man5/ftpalg-rules.5.gz /usr/share/bash-completion/completions/ftpalg \
  /usr/share/zsh/vendor-completions/_ftpalg /usr/share/fish/vendor_completions.d/ftpalg.fish \
  /usr/share/doc/ftpalg/nftables/nftables-transparent.nft /usr/share/doc/ftpalg/nftables/nftables-tproxy.nft \
  /usr/share/doc/ftpalg/nftables/nftables-fail-open.nft /usr/share/doc/ftpalg/systemd/fail-open.conf; do
  check test -s "$f"
done
check grep -qx /etc/ftpalg/rules.yaml /var/lib/dpkg/info/ftpalg.conffiles
out=$(/usr/bin/ftpalg check --rules /etc/ftpalg/rules.yaml 2>&1) && echo "deb: PASS installed rules: $out" || { echo "deb: FAIL ftpalg check on the installed rules: $out"; failed=1; }
check man -w ftpalg
check man -w 5 ftpalg-rules
if command -v systemd-analyze >/dev/null; then
  out=$(systemd-analyze verify /usr/lib/systemd/system/ftpalg.service 2>&1) && [ -z "$out" ] \
    && echo "deb: PASS systemd-analyze verify on the installed unit" \
    || { echo "deb: FAIL systemd-analyze verify: $out"; failed=1; }
fi
dpkg --purge ftpalg >/dev/null
for f in /usr/bin/ftpalg /usr/lib/systemd/system/ftpalg.service /etc/ftpalg; do
  check test ! -e "$f"
done
exit $failed
