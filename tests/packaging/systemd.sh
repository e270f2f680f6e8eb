#!/usr/bin/env bash
# The unit in packaging/systemd/ passes `systemd-analyze verify` and its
# `systemd-analyze security` exposure is at most 2.0. Skips (exit 0, says
# so) where systemd-analyze is not installed.
set -euo pipefail
cd "$(dirname "$0")/../.."
MAX_EXPOSURE=${MAX_EXPOSURE:-2.0}
if ! command -v systemd-analyze >/dev/null; then
  echo "systemd unit: SKIP (no systemd-analyze; scripts/install-test-deps.sh installs it)"
  exit 0
fi
[ -x target/release/ftpalg ] || { echo "systemd unit: build first" >&2; exit 1; }
[ -d target/docs/man8 ] || { echo "systemd unit: make man first" >&2; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# The unit names /usr/bin/ftpalg; verify checks that the programs exist and
# that the Documentation= man pages resolve, so both point at the build.
sed "s#/usr/bin/ftpalg#$PWD/target/release/ftpalg#g" packaging/systemd/ftpalg.service >"$tmp/ftpalg.service"
if ! out=$(MANPATH="$PWD/target/docs:" systemd-analyze verify "$tmp/ftpalg.service" 2>&1) || [ -n "$out" ]; then
  echo "systemd unit: FAIL verify:"
  echo "$out"
  exit 1
fi
echo "systemd unit: verify clean"
# With the fail-open drop-in (packaging/systemd/fail-open.conf) beside it.
mkdir -p "$tmp/ftpalg.service.d"
cp packaging/systemd/fail-open.conf "$tmp/ftpalg.service.d/"
if ! out=$(cd "$tmp" && MANPATH="$OLDPWD/target/docs:" systemd-analyze verify "$tmp/ftpalg.service" 2>&1) || [ -n "$out" ]; then
  echo "systemd unit: FAIL verify with the fail-open drop-in:"
  echo "$out"
  exit 1
fi
echo "systemd unit: verify clean with the fail-open drop-in"
sec=$(systemd-analyze security --no-pager --offline=true "$tmp/ftpalg.service" 2>&1) || true
level=$(printf '%s\n' "$sec" | sed -n 's/.*Overall exposure level for ftpalg.service: \([0-9.]*\).*/\1/p')
[ -n "$level" ] || { echo "systemd unit: FAIL no exposure level in:"; echo "$sec"; exit 1; }
if awk -v l="$level" -v m="$MAX_EXPOSURE" 'BEGIN { exit !(l <= m) }'; then
  echo "systemd unit: exposure $level (at most $MAX_EXPOSURE)"
else
  echo "systemd unit: FAIL exposure $level above $MAX_EXPOSURE:"
  printf '%s\n' "$sec" | grep '✗'
  exit 1
fi
