#!/usr/bin/env bash
# Records every lab case afresh (tests/captures/record.sh into a scratch
# directory) and checks that ftpalg diagnose finds the same finding kinds
# (in each capture a session was seen in) and verdicts as in the committed
# captures' golden JSON. Root; LAB=dg1
# unless set. Prints "captures: N passed, N failed".
set -u
REPO=$(cd "$(dirname "$0")/../.." && pwd)
FTPALG=${FTPALG:-$REPO/target/release/ftpalg}
[ -x "$FTPALG" ] || { echo "build first: $FTPALG missing" >&2; exit 1; }
SCRATCH=$REPO/target/captures/check
rm -rf "$SCRATCH"; mkdir -p "$SCRATCH"
OUTDIR=$SCRATCH LAB=${LAB:-dg1} bash "$REPO/tests/captures/record.sh" >"$SCRATCH/record.log" 2>&1 || {
  echo "record.sh failed; see $SCRATCH/record.log" >&2; exit 1; }
summary() { python3 -c 'import json, sys
r = json.load(open(sys.argv[1]))
legs = lambda s: [s] + ([s["nat"]["leg"]] if s.get("nat") else [])
print([[[f["kind"] for f in l["findings"]] for l in legs(s)] for s in r["sessions"]], [s["verdict"] for s in r["sessions"]])' "$1"; }
pass=0 fail=0
for golden in "$REPO"/tests/captures/*.json; do
  c=$(basename "$golden" .json)
  if [ -f "$SCRATCH/$c.gateway.pcap" ]; then legs=("$SCRATCH/$c.gateway.pcap")
  else legs=("$SCRATCH/$c.inside.pcap" "$SCRATCH/$c.outside.pcap"); fi
  "$FTPALG" diagnose --format json "${legs[@]}" >"$SCRATCH/$c.json"
  want=$(summary "$golden"); got=$(summary "$SCRATCH/$c.json")
  if [ "$want" = "$got" ]; then pass=$((pass + 1)); echo "ok   $c"; else fail=$((fail + 1)); echo "FAIL $c: want $want, got $got"; fi
done
echo "captures: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
