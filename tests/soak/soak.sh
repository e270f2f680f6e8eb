#!/usr/bin/env bash
# Soak test: thousands of transfers at hundreds of concurrent sessions
# through ftpalg in the namespace lab, with faults injected on a schedule;
# every file checked by SHA-256, the gateway's fds/pipes/RSS compared with
# a baseline, then slow transfers across a gateway shutdown. Needs root.
# See docs/soak.md.
#
#   tests/soak/soak.sh full     10,000 transfers at 200 sessions (make soak)
#   tests/soak/soak.sh short    600 transfers at 100 sessions (make test)
#
#   SOAK_FAULTS=none,sdie,...   inject only these faults (the others run clean)
#   SOAK_GWSTOP=0               skip the shutdown phase
#   SOAK_SEED=N                 another schedule (default 1)
#
# Lab name: $LAB, else ${E2E_LABS}3 (so it never meets the e2e labs).
set -u
VARIANT=${1:-full}
export LAB=${LAB:-${E2E_LABS:-fa}3}
SOAK_REPO=$(cd "$(dirname "$0")/../.." && pwd)
export STATE=$SOAK_REPO/target/soak/$LAB
source "$SOAK_REPO/tests/e2e/lib.sh"
SOAK=${SOAK:-$REPO/target/release/examples/soak}
OUT=$STATE

case "$VARIANT" in
  full) COUNT=10000 CONC=200 WARM=400 MAXS=360 GWSTOP=20 CKILLS=12 ;;
  short) COUNT=600 CONC=100 WARM=100 MAXS=90 GWSTOP=8 CKILLS=3 ;;
  *) echo "usage: $0 full|short" >&2; exit 2 ;;
esac
GWSTOP=${SOAK_GWSTOP:-$GWSTOP}
IDLE=3     # transfer_idle_timeout in tests/soak/rules.yaml
MARGIN=5   # a broken transfer must end within IDLE + MARGIN
RULES=tests/soak/rules.yaml

[ "$(id -u)" -eq 0 ] || { echo "soak: needs root (network namespaces, nftables)" >&2; exit 1; }
[ -x "$FTPALG" ] || { echo "soak: build first: $FTPALG missing" >&2; exit 1; }
[ -x "$SOAK" ] || { echo "soak: build first: cargo build --release --example soak" >&2; exit 1; }

# Worst case, every wait at its bound: about 5 s of setup, the load run
# (MAXS + 80 s), the shutdown phase (3 + 50 + 60 s): under 10 minutes.
started=$(date +%s)
violations=()
trap 'lab_down' EXIT
trap 'lab_down; exit 130' INT TERM
# 200 sessions, each with up to three sockets, plus the hung clients kept.
ulimit -n "$(ulimit -Hn)"
lab_up
mkdir -p "$OUT"
rm -f "$OUT"/*.log "$OUT/kills"
: >"$OUT/run.log"

# Two more server addresses: .11 behind a firewall that opens only port 21
# (the seed case), .12 for the server that is killed on a schedule.
inns srv ip addr add 198.51.100.11/24 dev eth0
inns srv ip addr add 198.51.100.12/24 dev eth0
inns srv nft -f - <<'NFT'
table inet soak_fw {
  chain input {
    type filter hook input priority filter; policy accept;
    ip daddr 198.51.100.11 tcp dport != 21 ct state new drop
  }
}
NFT
# Thousands of short connections between the same few addresses: let
# connects reuse TIME_WAIT pairs.
for n in cli gw srv dmz; do inns "$n" sysctl -qw net.ipv4.tcp_tw_reuse=1; done
transparent_on

"$SOAK" gen --dir "$FTPROOT/$LAB" || exit 1
# The lab's vsftpd, restarted with two changes for this load: no limit of
# sessions per address (every session comes from the gateway's one
# address), and active-mode connections from any port rather than port 20
# (thousands of connections from port 20 to the gateway's few addresses
# collide with their own TIME_WAIT pairs within a second).
stop_pid "$(start_server vsftpd dmz)"
sed -i 's/^connect_from_port_20=YES/connect_from_port_20=NO/' "$STATE/vsftpd-dmz/vsftpd.conf"
printf 'max_per_ip=0\nmax_clients=0\n' >>"$STATE/vsftpd-dmz/vsftpd.conf"
spawn dmz "$STATE/vsftpd-dmz/log" vsftpd "$STATE/vsftpd-dmz/vsftpd.conf" >/dev/null
spawn srv "$OUT/server.log" "$SOAK" serve --listen 198.51.100.10:21 --listen 198.51.100.11:21 >/dev/null
VICTIM=$(spawn srv "$OUT/victim.log" "$SOAK" serve --listen 198.51.100.12:21)
GW=$(spawn gw "$OUT/ftpalg.log" "$FTPALG" run --rules "$REPO/$RULES")
for p in 2100 2121 2122 2123 2124 2125; do wait_port gw 100.64.0.1 "$p" || exit 1; done
wait_port srv 198.51.100.10 21 && wait_port srv 198.51.100.12 21 && wait_port dmz 203.0.113.10 21 || exit 1
if [[ $(readlink "/proc/$GW/exe") != *ftpalg* ]]; then
  echo "soak: PID $GW is not ftpalg" >&2; exit 1
fi

# The victim server is SIGKILLed every 3 s until the load is done, and
# restarted; bounded in count.
touch "$OUT/running"
(
  for _ in $(seq 1 200); do
    sleep 3
    [ -e "$OUT/running" ] || break
    grep -q "load phase done" "$OUT/run.log" && break
    kill -9 "$VICTIM" 2>/dev/null
    echo "$(date +%s.%N) killed $VICTIM" >>"$OUT/kills"
    sleep 0.2
    VICTIM=$(spawn srv "$OUT/victim.log" "$SOAK" serve --listen 198.51.100.12:21)
  done
) &
echo $! >>"$STATE/pids"
KILLER=$!

# Client processes SIGKILLed mid-transfer: from the baseline to the end of
# the load, every 3 s a second client process starts four slow transfers
# (two each way) and is killed 1.5 s later; the kernel closes its sockets.
(
  for _ in $(seq 1 600); do
    grep -q "gateway baseline" "$OUT/run.log" 2>/dev/null && break
    sleep 0.1
  done
  for i in $(seq 1 "$CKILLS"); do
    sleep 1.5
    grep -q "load phase done" "$OUT/run.log" 2>/dev/null && break
    pid=$(spawn cli "$OUT/sigkill.log" "$SOAK" gwstop --tag sigkill --seed $((5000 + 10 * i)) \
      --target same,fault,100.64.0.1:2121,1 --sessions 4 --size 8388608 --cap 30)
    sleep 1.5
    kill -9 "$pid" 2>/dev/null
    echo "$(date +%s.%N) SIGKILLed client $pid" >>"$OUT/kills"
  done
) &
echo $! >>"$STATE/pids"
CLIENT_KILLER=$!

echo "soak ($VARIANT): $COUNT transfers at $CONC sessions, lab $LAB, gateway PID $GW"
timeout $((MAXS + 80)) ip netns exec "$LAB-cli" "$SOAK" run \
  --target same,fault,100.64.0.1:2121,30 \
  --target to-active,fault,100.64.0.1:2122,12 \
  --target to-passive,fault,100.64.0.1:2123,12 \
  --target seed,fault,198.51.100.11:21,16 \
  --target victim,victim,100.64.0.1:2124,12 \
  --target real,real,100.64.0.1:2125,18 \
  --count "$COUNT" --concurrency "$CONC" --warmup "$WARM" --max-seconds "$MAXS" \
  --idle "$IDLE" --margin "$MARGIN" --seed "${SOAK_SEED:-1}" \
  ${SOAK_FAULTS:+--faults "$SOAK_FAULTS"} \
  --gw-pid "$GW" --drain-seconds $((IDLE * 3 + 11)) \
  --real-root "$FTPROOT/$LAB" --real-prefix "$LAB" --kills-file "$OUT/kills" \
  | tee "$OUT/run.log"
run_rc=${PIPESTATUS[0]}
rm -f "$OUT/running"
stop_pid "$KILLER"
stop_pid "$CLIENT_KILLER"
echo "killed: $(grep -c ' killed ' "$OUT/kills" 2>/dev/null) times the victim server, $(grep -c 'SIGKILLed client' "$OUT/kills" 2>/dev/null) client processes"
[ "$run_rc" -eq 0 ] || violations+=("the load run reported violations (exit $run_rc)")

# Shutdown under load: slow transfers through the gateway when it gets
# SIGTERM. It may let them finish or cut them, but a cut must be a reset:
# a clean close would make a truncated file look complete.
if [ "$GWSTOP" -gt 0 ]; then
  : >"$OUT/gwstop.log"
  spawn cli "$OUT/gwstop.log" "$SOAK" gwstop --target same,fault,100.64.0.1:2121,1 \
    --sessions "$GWSTOP" --idle "$IDLE" --margin "$MARGIN" --cap 90 >/dev/null
  for _ in $(seq 1 100); do grep -q "GWSTOP STARTED" "$OUT/gwstop.log" && break; sleep 0.1; done
  sleep 3
  term_at=$(date +%s)
  kill -TERM "$GW"
  for _ in $(seq 1 500); do kill -0 "$GW" 2>/dev/null || break; sleep 0.1; done
  if kill -0 "$GW" 2>/dev/null; then
    violations+=("the gateway did not exit within 50 s of SIGTERM")
  fi
  echo "gateway exited $(( $(date +%s) - term_at )) s after SIGTERM"
  for _ in $(seq 1 240); do grep -q "gwstop endings" "$OUT/gwstop.log" && break; sleep 0.25; done
  grep -E "VIOLATION|gwstop endings" "$OUT/gwstop.log"
  n=$(grep -c "^VIOLATION" "$OUT/gwstop.log")
  [ "$n" -eq 0 ] || violations+=("$n transfers cut by the gateway's shutdown ended wrongly (see above)")
  grep -q "gwstop endings" "$OUT/gwstop.log" || violations+=("the shutdown phase did not finish")
  t=$(grep -c -- "-gwstop-" <(grep "^TRUNCATED" "$OUT/server.log"))
  if [ "$t" -gt 0 ]; then
    grep "^TRUNCATED.*-gwstop-" "$OUT/server.log" | head -5 | sed 's/^/  server: /'
    violations+=("$t uploads cut by the gateway's shutdown reached the server as a clean end (FIN): the server took a truncated file as complete")
  fi
fi

# The server's view of uploads that ended cleanly but short (main run).
t=$(grep "^TRUNCATED" "$OUT/server.log" | grep -vc -- "-gwstop-")
[ "$t" -gt 0 ] && echo "server: $t uploads of the main run ended with a clean close before their size (see $OUT/server.log)"
if grep -q "panicked" "$OUT/ftpalg.log"; then
  violations+=("the gateway panicked: $(grep -m1 panicked "$OUT/ftpalg.log")")
fi
echo "gateway log: $(grep -c 'result="failed"\|result=failed' "$OUT/ftpalg.log") failed and $(grep -c 'result="ok"\|result=ok' "$OUT/ftpalg.log") ok transfers logged; $OUT/ftpalg.log"

took=$(( $(date +%s) - started ))
echo "soak ($VARIANT) took ${took}s"
[ "$took" -le 600 ] || violations+=("took ${took}s, over the 10 minute bound")
if [ ${#violations[@]} -gt 0 ]; then
  for v in "${violations[@]}"; do echo "soak FAIL: $v"; done
  exit 1
fi
echo "soak: passed"
