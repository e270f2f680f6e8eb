#!/usr/bin/env bash
# Runs the README's USER name@host:port example exactly as written: its
# pyftpdlib, curl and lftp lines, against `ftpalg run` on rules/default.yaml,
# in a network namespace of its own (only its loopback), so that nothing
# else on the machine is in the way. Needs root; LAB names the namespace
# (default "${E2E_LABS:-fa}r").
set -euo pipefail
# The distribution's python3 (with python3-pyftpdlib), curl and lftp, as a
# reader of the README would have them.
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
cd "$(dirname "$0")/.."
[ "$(id -u)" -eq 0 ] || { echo "readme: needs root"; exit 1; }
NS=${LAB:-${E2E_LABS:-fa}r}-readme
FTPALG=${FTPALG:-$PWD/target/release/ftpalg}
work=$(mktemp -d)
chmod 755 "$work"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  ip netns del "$NS" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
ip netns del "$NS" 2>/dev/null || true
ip netns add "$NS"
ip -n "$NS" link set lo up
# The lines of the README's example block.
block=$(awk '/^python3 -m pyftpdlib/ {on=1} on && /^```/ {exit} on' README.md)
server=$(printf '%s\n' "$block" | grep '^python3 ' | sed 's/ &$//')
curl_line=$(printf '%s\n' "$block" | grep '^curl ')
lftp_line=$(printf '%s\n' "$block" | grep '^lftp ')
[ -n "$server" ] && [ -n "$curl_line" ] && [ -n "$lftp_line" ] || { echo "readme: FAIL the example block was not found"; exit 1; }
echo "readme-listing-marker" >"$work/hello-from-the-readme.txt"
(cd "$work" && exec ip netns exec "$NS" bash -c "exec $server" >"$work/server.log" 2>&1) &
pids+=($!)
ip netns exec "$NS" "$FTPALG" run --rules rules/default.yaml >"$work/ftpalg.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 100); do
  ip netns exec "$NS" ss -Hltn | grep -q ':2121 ' && ip netns exec "$NS" ss -Hltn | grep -q ':2100 ' && break
  sleep 0.05
done
failed=0
for line in "$curl_line" "$lftp_line"; do
  out=$(cd "$work" && ip netns exec "$NS" timeout 20 bash -c "$line" </dev/null 2>&1) || true
  if printf '%s' "$out" | grep -q hello-from-the-readme.txt; then
    echo "readme: PASS $line"
  else
    echo "readme: FAIL $line: $out"
    tail -5 "$work/ftpalg.log"
    failed=1
  fi
done
exit $failed
