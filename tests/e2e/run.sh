#!/usr/bin/env bash
# End-to-end tests: real FTP servers and clients through a real NAT, in
# network namespaces, with ftpalg on the gateway. Needs root. Prints a
# matrix and "e2e: N passed, N failed"; exits non-zero if any ftpalg row
# failed. The kernel-helper baseline rows are reported, not asserted.
#
#   tests/e2e/run.sh                  every scenario
#   SCENARIOS="seed-21-only" SERVERS="vsftpd" tests/e2e/run.sh
set -u
source "$(dirname "$0")/lib.sh"

if [ "$(id -u)" -ne 0 ]; then
  echo "e2e: needs root (network namespaces, nftables)" >&2
  exit 1
fi
[ -x "$FTPALG" ] || { echo "e2e: build first: $FTPALG missing" >&2; exit 1; }

ALL_SCENARIOS="cgnat-transparent seed-21-only seed-tproxy explicit reverse ipv6 security baseline-kernel"
SCENARIOS=${SCENARIOS:-$ALL_SCENARIOS}
SERVERS=${SERVERS:-vsftpd pure-ftpd proftpd pyftpdlib}
OUT=$REPO/target/e2e
mkdir -p "$OUT"
RESULTS=$OUT/results.tsv
[ -n "${E2E_WORKER:-}" ] || { rm -f "$OUT"/results*.tsv "$OUT"/*.pcap "$OUT"/*.log; : >"$RESULTS"; }
started=$(date +%s)


GW_PID=""
CAP_PID=""
start_ftpalg() { # start_ftpalg RULES TAG
  local log="$OUT/$2.ftpalg.log"
  : >"$log"
  GW_PID=$(spawn gw "$log" "$FTPALG" run --rules "$REPO/$1")
  CAP_PID=$(spawn gw "$OUT/$2.tcpdump.log" tcpdump -i any -n -s 256 -w "$OUT/$2.pcap" tcp)
  local p
  for p in $(awk '/listen:/ {print $2}' "$REPO/$1" | tr -d '"' | sed -E 's/.*:([0-9]+)$/\1/'); do
    wait_port gw x "$p" || return 1
  done
}
stop_ftpalg() {
  [ -n "$GW_PID" ] && stop_pid "$GW_PID"
  [ -n "$CAP_PID" ] && stop_pid "$CAP_PID"
  GW_PID="" CAP_PID=""
}

# record SCENARIO SERVER CASE RESULT DETAIL ASSERTED
record() { printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$@" >>"$RESULTS"; }

# one_case SCENARIO SERVER CLIENT MODE OP HOST PORT USER ASSERTED [FILE]
one_case() {
  local scen=$1 server=$2 client=$3 mode=$4 op=$5 host=$6 port=$7 user=$8 asserted=$9 file=${10:-f64k}
  local case="$client-$mode-$op" out="$STATE/out" err="$STATE/err" detail=""
  [ "$file" = f64k ] || case="$client-$mode-$file-$op"
  rm -f "$out"
  if [ "$op" = get ]; then
    if run_client "$client" "$mode" get "$host" "$LAB/$file" "$out" "$port" "$user" >"$err" 2>&1 && cmp -s "$out" "$DATA/$file"; then
      record "$scen" "$server" "$case" ok "" "$asserted"; return
    fi
  else
    local name="up/$scen-$server-$case"
    rm -f "$DATA/$name"
    if run_client "$client" "$mode" put "$host" "$LAB/$name" "$DATA/$file" "$port" "$user" >"$err" 2>&1 \
       && sleep 0.05 && cmp -s "$DATA/$name" "$DATA/$file"; then
      record "$scen" "$server" "$case" ok "" "$asserted"; return
    fi
  fi
  detail=$(tr '\n\t' '  ' <"$err" | cut -c1-160)
  [ -z "$detail" ] && detail="content differs or missing"
  record "$scen" "$server" "$case" FAIL "$detail" "$asserted"
}

matrix() { # matrix SCENARIO SERVER HOST PORT USER ASSERTED
  local c m o
  while read -r c m o; do one_case "$1" "$2" "$c" "$m" "$o" "$3" "$4" "$5" "$6"; done < <(client_matrix)
  # One larger transfer per server and scenario.
  one_case "$1" "$2" curl epsv get "$3" "$4" "$5" "$6" f4m
}

v6_matrix() { # v6_matrix SCENARIO SERVER HOST PORT USER
  local c m o
  for c in "curl epsv" "curl eprt" "lftp passive" "lftp active" "ftplib passive" "ftplib active"; do
    for o in get put; do one_case "$1" "$2" $c "$o" "$3" "$4" "$5" yes; done
  done
  one_case "$1" "$2" wget passive get "$3" "$4" "$5" yes
}

scenario() { # scenario NAME SERVER
  local scen=$1 server=$2 tag="$1-$2"
  case "$scen" in
    cgnat-transparent|seed-21-only)
      [ "$scen" = seed-21-only ] && srv_firewall_on
      transparent_on
      start_ftpalg rules/cgnat-gateway.yaml "$tag" && matrix "$scen" "$server" 198.51.100.10 21 anonymous yes
      stop_ftpalg; transparent_off; srv_firewall_off ;;
    seed-tproxy)
      srv_firewall_on
      tproxy_on
      start_ftpalg rules/cgnat-gateway-tproxy.yaml "$tag" && matrix "$scen" "$server" 198.51.100.10 21 anonymous yes
      stop_ftpalg; tproxy_off; srv_firewall_off ;;
    explicit)
      start_ftpalg rules/explicit-proxy.yaml "$tag" && {
        matrix "$scen" "$server" 100.64.0.1 2121 anonymous yes
        matrix "$scen-user@host" "$server" 100.64.0.1 2122 anonymous@198.51.100.10 yes
      }
      stop_ftpalg ;;
    reverse)
      start_ftpalg rules/server-behind-nat.yaml "$tag" && {
        CLIENT_NS=ext matrix "$scen" "$server" 198.51.100.1 21 anonymous yes
        # An inside client of the same public service is told the inside
        # address (advertise: per client network).
        matrix "$scen-inside" "$server" 198.51.100.1 21 anonymous yes
        local adv_in adv_out
        adv_in=$(inns cli "$PY" -c 'import ftplib; f = ftplib.FTP("198.51.100.1", timeout=5); f.login(); print(f.sendcmd("PASV"))' 2>&1)
        adv_out=$(inns ext "$PY" -c 'import ftplib; f = ftplib.FTP("198.51.100.1", timeout=5); f.login(); print(f.sendcmd("PASV"))' 2>&1)
        if [[ $adv_in == *"(100,64,0,1,"* && $adv_out == *"(198,51,100,1,"* ]]; then
          record "$scen" "$server" "advertise-per-client-network" ok "$adv_in / $adv_out" yes
        else
          record "$scen" "$server" "advertise-per-client-network" FAIL "inside: $adv_in; outside: $adv_out" yes
        fi
      }
      stop_ftpalg ;;
    ipv6)
      start_ftpalg rules/explicit-proxy.yaml "$tag" && {
        v6_matrix "ipv6:v6-to-v6" "$server" 2001:db8:1::1 2122 "anonymous@[2001:db8:2::10]"
        v6_matrix "ipv6:v6-to-v4" "$server" 2001:db8:1::1 2122 "anonymous@198.51.100.10"
        matrix "ipv6:v4-to-v6" "$server" 100.64.0.1 2122 "anonymous@[2001:db8:2::10]" yes
      }
      stop_ftpalg ;;
    baseline-kernel)
      kernel_helper_on
      matrix "baseline-kernel" "$server" 198.51.100.10 21 anonymous no
      srv_firewall_on
      matrix "baseline-kernel-21-only" "$server" 198.51.100.10 21 anonymous no
      srv_firewall_off; kernel_helper_off ;;
  esac
}

# ------------------------------------------------------------- security
security_tests() {
  local scen=security tag=security
  # A server that logs every command it receives (pyftpdlib debug log).
  stop_all
  local slog="$STATE/recording-server.log"
  : >"$slog"
  spawn srv "$slog" "$PY" -m pyftpdlib -D -i 198.51.100.10 -p 21 -d "$FTPROOT" -r 30000-30999 >/dev/null
  wait_port srv 198.51.100.10 21
  start_ftpalg rules/explicit-proxy.yaml "$tag" || return

  # 1. PORT naming another host: refused with a clear reply; never reaches srv.
  local r
  r=$(inns cli env PYTHONPATH="$E2E_DIR" "$PY" - <<'PY'
from ftpraw import Ctl
c = Ctl("100.64.0.1", 2121)
c.reply()
for command in ("USER anonymous", "PASS x", "PORT 198,51,100,20,4,1"):
    last = c.cmd(command)
print(last)
PY
)
  sleep 0.2
  if [[ $r == 500* ]] && [[ $r == *"not your address"* ]] && ! grep -q "PORT 198,51,100,20" "$slog"; then
    record "$scen" pyftpdlib "bounce-port-refused" ok "$r" yes
  else
    record "$scen" pyftpdlib "bounce-port-refused" FAIL "reply: $r; server saw: $(grep -c 'PORT' "$slog") PORT" yes
  fi

  # 2. ext races to a pinhole opened for cli: refused; cli still succeeds.
  local sync=$STATE/race
  rm -rf "$sync"; mkdir -p "$sync"
  inns cli env PYTHONPATH="$E2E_DIR" "$PY" - "$sync" "$LAB/f64k" >"$sync/cli.out" 2>&1 <<'PY' &
import socket, sys, os, time
from ftpraw import Ctl
sync, name = sys.argv[1], sys.argv[2]
c = Ctl("100.64.0.1", 2121, timeout=15)
c.reply()
for command in ("USER anonymous", "PASS x", "TYPE I"):
    c.cmd(command)
r = c.cmd("EPSV")
port = int(r.split("|||")[1].split("|")[0])
open(os.path.join(sync, "port"), "w").write(str(port))
for _ in range(100):
    if os.path.exists(os.path.join(sync, "raced")): break
    time.sleep(0.05)
c.send("RETR /" + name)
d = socket.create_connection(("100.64.0.1", port), timeout=10)
data = b""
while True:
    b = d.recv(65536)
    if not b: break
    data += b
print(c.reply(), c.reply(), len(data))
PY
  local cli_pid=$!
  for _ in $(seq 1 100); do [ -s "$sync/port" ] && break; sleep 0.05; done
  local port; port=$(cat "$sync/port" 2>/dev/null)
  local stranger
  stranger=$(inns ext "$PY" - "$port" <<'PY'
import socket, sys
try:
    d = socket.create_connection(("100.64.0.1", int(sys.argv[1])), timeout=5)
    d.settimeout(5)
    got = d.recv(10)
    print("stranger-got-data" if got else "stranger-closed")
except Exception as e:
    print("stranger-refused", type(e).__name__)
PY
)
  touch "$sync/raced"
  wait "$cli_pid"
  local cli_out; cli_out=$(cat "$sync/cli.out")
  if [[ $stranger == stranger-closed* || $stranger == stranger-refused* ]] && [[ $cli_out == 1[25]*226*65536 ]] \
     && grep -q "unexpected peer" "$OUT/$tag.ftpalg.log"; then
    record "$scen" pyftpdlib "pinhole-stranger-refused" ok "$stranger" yes
  else
    record "$scen" pyftpdlib "pinhole-stranger-refused" FAIL "stranger: $stranger; client: $cli_out" yes
  fi
  stop_ftpalg
  stop_all

  # 3. A 227 the client never asked for opens nothing.
  local flog="$STATE/fake.log"
  : >"$flog"
  spawn srv "$flog" "$PY" - <<'PY' >/dev/null
import socket, threading, time
bait = socket.socket(); bait.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
bait.bind(("198.51.100.10", 30500)); bait.listen(5)
def watch():
    while True:
        c, a = bait.accept()
        print("BAIT-CONNECTED", a, flush=True)
threading.Thread(target=watch, daemon=True).start()
l = socket.socket(); l.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
l.bind(("198.51.100.10", 21)); l.listen(5)
while True:
    c, _ = l.accept()
    f = c.makefile("rb")
    c.sendall(b"220 fake\r\n")
    while True:
        line = f.readline()
        if not line: break
        cmd = line.split()[0].upper() if line.split() else b""
        if cmd == b"USER": c.sendall(b"331 pw\r\n")
        elif cmd == b"PASS": c.sendall(b"230 ok\r\n227 Entering Passive Mode (198,51,100,10,119,116)\r\n")
        elif cmd == b"QUIT": c.sendall(b"221 bye\r\n"); break
        else: c.sendall(b"200 ok\r\n")
    c.close()
PY
  wait_port srv 198.51.100.10 21
  start_ftpalg rules/explicit-proxy.yaml security-unsolicited || return
  r=$(inns cli env PYTHONPATH="$E2E_DIR" "$PY" - <<'PY'
import time
from ftpraw import Ctl
c = Ctl("100.64.0.1", 2121)
c.line()
c.send("USER a"); c.line()
c.send("PASS b"); c.line()
extra = c.line()
c.send("NOOP"); noop = c.line()
time.sleep(0.5)
print(extra, "|", noop)
PY
)
  sleep 0.2
  if [[ $r == 227* ]] && ! grep -q BAIT-CONNECTED "$flog" && grep -q "unsolicited" "$OUT/security-unsolicited.ftpalg.log"; then
    record "$scen" fake "unsolicited-227-opens-nothing" ok "$r" yes
  else
    record "$scen" fake "unsolicited-227-opens-nothing" FAIL "client saw: $r; bait: $(grep -c BAIT "$flog")" yes
  fi
  stop_ftpalg
  stop_all
}

# ------------------------------------------------------------------ main
# Each worker owns one lab (its own namespaces, named by $LAB) and a share
# of the servers; two labs run side by side to fit the time budget.
worker() {
  RESULTS=$OUT/results-$LAB.tsv
  : >"$RESULTS"
  trap 'lab_down' EXIT
  lab_up
  DATA=$FTPROOT/$LAB
  head -c 65536 /dev/urandom >"$DATA/f64k"
  head -c 4194304 /dev/urandom >"$DATA/f4m"
  chmod 644 "$DATA"/f64k "$DATA"/f4m
  local server scen
  for server in $1; do
    stop_all
    start_server "$server" srv >/dev/null
    start_server "$server" dmz >/dev/null
    if ! { wait_port srv 198.51.100.10 21 && wait_port dmz 203.0.113.10 21; }; then
      record all "$server" start FAIL "server did not start: $(tail -c 200 "$STATE/$server-srv/log" | tr '\n' ' ')" yes
      continue
    fi
    for scen in $SCENARIOS; do
      [ "$scen" = security ] && continue
      scenario "$scen" "$server"
      # Keep captures only where something failed.
      grep -qP "^$scen[^\t]*\t$server\t.*\tFAIL\t" "$RESULTS" || rm -f "$OUT/$scen-$server.pcap"
    done
    stop_all
  done
  if [ -n "${2:-}" ]; then
    security_tests
    grep -qP "^security\t.*\tFAIL\t" "$RESULTS" || rm -f "$OUT"/security*.pcap
  fi
  lab_down
}

trap 'lab_down' EXIT
if [ -n "${E2E_WORKER:-}" ]; then
  worker "$SERVERS" "${E2E_SECURITY:-}"
  exit 0
fi
# Lab names: E2E_LABS=xy runs labs xy1 and xy2, so several checkouts can test at once.
P=${E2E_LABS:-fa}
read -r -a list <<<"$SERVERS"
half=$(( (${#list[@]} + 1) / 2 ))
group1="${list[*]:0:$half}"
group2="${list[*]:$half}"
sec=""
[[ " $SCENARIOS " == *" security "* ]] && sec=yes
E2E_WORKER=1 LAB=${P}1 STATE=$OUT/${P}1 SERVERS="$group1" E2E_SECURITY=$sec bash "$0" >"$OUT/worker-${P}1.log" 2>&1 &
w1=$!
w2=""
if [ -n "$group2" ]; then
  E2E_WORKER=1 LAB=${P}2 STATE=$OUT/${P}2 SERVERS="$group2" bash "$0" >"$OUT/worker-${P}2.log" 2>&1 &
  w2=$!
fi
trap 'kill $w1 $w2 2>/dev/null; wait; exit 130' INT TERM
wait $w1 $w2
cat "$OUT"/results-${P}*.tsv >"$RESULTS" 2>/dev/null

# ---------------------------------------------------------------- report
python3 - "$RESULTS" "$(( $(date +%s) - started ))" <<'PY'
import sys, collections
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1]) if l.strip()]
cases = []
for r in rows:
    if r[2] not in cases: cases.append(r[2])
table = collections.OrderedDict()
for scen, server, case, res, detail, asserted in rows:
    table.setdefault((scen, server), {})[case] = res
short = {c: c.replace("passive", "pas").replace("active", "act").replace("-get", "↓").replace("-put", "↑") for c in cases}
matrix_cases = [c for c in cases if c.endswith(("-get", "-put"))]
print()
print("%-26s %-10s %s" % ("scenario", "server", " ".join("%-4s" % (i + 1) for i in range(len(matrix_cases)))))
for (scen, server), res in table.items():
    if not any(c in res for c in matrix_cases): continue
    cells = []
    for c in matrix_cases:
        v = res.get(c)
        cells.append("%-4s" % ("-" if v is None else ("ok" if v == "ok" else "FAIL")))
    print("%-26s %-10s %s" % (scen, server, " ".join(cells)))
print("columns: " + ", ".join("%d=%s" % (i + 1, short[c]) for i, c in enumerate(matrix_cases)))
for scen, server, case, res, detail, asserted in rows:
    if not case.endswith(("-get", "-put")):
        print("%-26s %-10s %-32s %s %s" % (scen, server, case, res, detail[:100]))
fails = [r for r in rows if r[3] != "ok" and r[5] == "yes"]
base = [r for r in rows if r[5] == "no"]
if base:
    print("baseline (kernel helper, reported only): %d ok, %d failed" % (sum(r[3] == "ok" for r in base), sum(r[3] != "ok" for r in base)))
for scen, server, case, res, detail, asserted in fails:
    print("FAIL %s %s %s: %s" % (scen, server, case, detail))
asserted = [r for r in rows if r[5] == "yes"]
print("e2e took %ss" % sys.argv[2])
print("e2e: %d passed, %d failed" % (sum(r[3] == "ok" for r in asserted), len(fails)))
sys.exit(1 if fails or not asserted else 0)
PY
