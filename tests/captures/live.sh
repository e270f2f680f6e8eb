#!/usr/bin/env bash
# `ftpalg diagnose --live` on the lab gateway's outside port (root):
# the seed's case (vsftpd behind a 21-only firewall, curl in EPSV mode
# through the CGNAT) must be diagnosed as passive-data-blocked, and the
# capture must stop at its deadline. Prints "live: N passed, N failed".
set -u
# The lab name is set before lib.sh, whose default belongs to others.
LAB=${LAB:-dg2}
source "$(dirname "$0")/../e2e/lib.sh"
STATE=$REPO/target/captures/$LAB
[ "$(id -u)" -eq 0 ] || { echo "live.sh needs root (network namespaces)" >&2; exit 1; }
[ -x "$FTPALG" ] || { echo "build first: $FTPALG missing" >&2; exit 1; }
trap 'lab_down' EXIT
trap 'exit 130' INT TERM

pass=0 fail=0
check() { # check NAME CONDITION...
  local name=$1; shift
  if "$@"; then pass=$((pass + 1)); echo "ok   $name"; else fail=$((fail + 1)); echo "FAIL $name"; fi
}

lab_up
mkdir -p "$STATE"
head -c 16384 /dev/urandom >"$FTPROOT/$LAB/f16k"; chmod 644 "$FTPROOT/$LAB/f16k"
start_server vsftpd srv >/dev/null
wait_port srv 198.51.100.10 21
srv_firewall_on

# wsrv, the bridge port towards the server, not the bridge "wan": where
# br_netfilter is loaded, frames reach the bridge device already
# de-NATed, so one connection would look like two.
t0=$(date +%s.%N)
ip netns exec "$LAB-gw" "$FTPALG" diagnose --format json --live wsrv --seconds 8 >"$STATE/live.json" 2>"$STATE/live.err" &
DIAG=$!
echo "$DIAG" >>"$STATE/pids"
sleep 1
inns cli "${CURL[@]}" -s --connect-timeout 3 --max-time 6 --user anonymous:x@ -o /dev/null "ftp://198.51.100.10/$LAB/f16k" || true
wait "$DIAG"; rc=$?
t1=$(date +%s.%N)

check "exit status 3 (a problem found)" test "$rc" -eq 3
check "stops at its deadline" python3 -c "import sys; sys.exit(0 if float('$t1') - float('$t0') < 12 else 1)"
check "passive-data-blocked diagnosed on the gateway" python3 - "$STATE/live.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
kinds = [f["kind"] for s in r["sessions"] for f in s["findings"]]
s = r["sessions"][0]
ok = "passive-data-blocked" in kinds and s["client"].startswith("198.51.100.1:") and s["server"] == "198.51.100.10:21"
print(kinds, s["client"], s["server"])
sys.exit(0 if ok else 1)
PY
missing() { "$FTPALG" diagnose --live no-such-if0 --seconds 1 2>&1 | grep -q "no interface named no-such-if0"; }
check "a missing interface is a clear error" missing
echo "live: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
