#!/usr/bin/env bash
# make bench: ftpalg's speed and footprint as ratios against baselines
# measured in the same run, in the end-to-end namespace lab. Writes
# target/bench/, docs/performance.md and docs/performance-throughput.svg.
# Bounded: every transfer has a time limit; the whole run takes minutes.
# Exits non-zero if any transfer failed (the report still shows it).
#
#   RUNS=1 SIZE_MB=8 ONLY=throughput bash bench/run.sh
#     a quick check: the throughput rows only, no report, docs untouched
#   ROWS="a f g" RUNS=6 ONLY=throughput bash bench/run.sh
#     some rows only (a is the direct route the ratios are taken against)
#   ONLY=sessions bash bench/run.sh
#     the session rates and NOOP latency only, no report
#   RUNS=1 SIZE_MB=8 SESSION_SECONDS=3 IDLE_MAX=200 DOCS=/tmp/x bash bench/run.sh
#     every part, shortened, its report written to /tmp/x (which needs
#     a copy of docs/performance-notes.md to include the notes)
set -u
source "$(dirname "$0")/../tests/e2e/lib.sh"
LAB=${LAB:-fab}
OUT=$REPO/target/bench
STATE=$OUT/lab
RUNS=${RUNS:-5}
SIZE_MB=${SIZE_MB:-1024}
LOAD=$REPO/target/release/examples/ftpload
SESSION_SECONDS=${SESSION_SECONDS:-20}
IDLE_MAX=${IDLE_MAX:-10000}
DOCS=${DOCS:-$REPO/docs}
[ "$(id -u)" -eq 0 ] || { echo "bench: needs root" >&2; exit 1; }
[ -x "$FTPALG" ] && [ -x "$LOAD" ] || { echo "bench: build first (cargo build --release --examples)" >&2; exit 1; }
mkdir -p "$OUT"
ulimit -n "$(ulimit -Hn)"
started=$(date +%s)

cleanup() { umount "$FTPROOT/$LAB" 2>/dev/null; lab_down; }
trap cleanup EXIT
trap 'exit 130' INT TERM
lab_up || exit 1
# The load generator and its server open thousands of connections a second
# between the same two addresses: their TIME_WAIT sockets (60 s) held the
# server's passive ports and the gateway's conntrack entries for them (120
# s) filled its table, so each session run was slowed by the one before it
# (the first, direct, run went 1,000/s; the same run with these settings
# 5,500/s). The harness's hosts keep no TIME_WAIT, and the gateway forgets
# a closed connection after 2 s; every route and path pays alike.
for n in cli srv; do inns $n sysctl -qw net.ipv4.tcp_max_tw_buckets=0; done
inns gw sysctl -qw net.netfilter.nf_conntrack_tcp_timeout_time_wait=2
# The files live in RAM so the disk is not what is measured.
mount -t tmpfs -o size=$((SIZE_MB * 3))m tmpfs "$FTPROOT/$LAB"
mkdir -p "$FTPROOT/$LAB/up"; chmod 755 "$FTPROOT/$LAB"; chmod 777 "$FTPROOT/$LAB/up"
head -c "${SIZE_MB}M" /dev/zero >"$FTPROOT/$LAB/big"
chmod 644 "$FTPROOT/$LAB/big"

start_server vsftpd srv >/dev/null
spawn srv "$OUT/ftpload-serve.log" "$LOAD" serve --listen 198.51.100.10:2121 --size 1024 >/dev/null
wait_port srv 198.51.100.10 21 && wait_port srv 198.51.100.10 2121 || exit 1
GW=$(spawn gw "$OUT/ftpalg.log" env FTPALG_LOG=warn "$FTPALG" run --rules "$REPO/bench/rules.yaml")
# The kernel data path (rows f and g, its session rate): a second ftpalg
# whose transfers the kernel forwards through its nftables pinholes.
# Conntrack accounting (its byte counts) is on for every row alike.
inns gw sysctl -qw net.netfilter.nf_conntrack_acct=1
GWK=$(spawn gw "$OUT/ftpalg-kernel.log" env FTPALG_LOG=warn "$FTPALG" run --rules "$REPO/bench/rules-kernel.yaml")
for p in 2121 2123 2124 2125 2126; do wait_port gw 100.64.0.1 $p || exit 1; done

# ticks [PID]: CPU time (user + system) of an ftpalg, in clock ticks
ticks() { awk '{print $14 + $15}' "/proc/${1:-$GW}/stat"; }
# metrics PORT FILE: one ftpalg's Prometheus text, from inside the gateway
metrics() { inns gw "${CURL[@]}" -s --max-time 10 "http://127.0.0.1:$1/metrics" >"$2"; }
rss_kib() { awk '/VmRSS/ {print $2}' "/proc/$GW/status"; }
HZ=$(getconf CLK_TCK)

# transfer ROW DIR HOST PORT MODE -> MiB/s on stdout (empty on failure:
# curl failed, or an upload did not arrive whole)
transfer() {
  local row=$1 dir=$2 host=$3 port=$4 mode=$5 flags=(-s --max-time 180) speed rc
  local up="$FTPROOT/$LAB/up/big-$row"
  case "$mode" in
    pasv) flags+=(--disable-epsv) ;;
    port) flags+=(--ftp-port - --disable-eprt) ;;
  esac
  if [ "$dir" = down ]; then
    speed=$(inns cli "${CURL[@]}" "${flags[@]}" --user anonymous:b -o /dev/null -w '%{speed_download}' "ftp://$host:$port/$LAB/big")
    rc=$?
  else
    rm -f "$up"
    speed=$(inns cli "${CURL[@]}" "${flags[@]}" --user anonymous:b -T "$FTPROOT/$LAB/big" -w '%{speed_upload}' "ftp://$host:$port/$LAB/up/big-$row")
    rc=$?
    [ $rc -eq 0 ] && [ "$(stat -c %s "$up" 2>/dev/null)" != "$((SIZE_MB * 1048576))" ] && rc=1
    rm -f "$up"
  fi
  [ $rc -eq 0 ] || return 0
  awk -v s="$speed" 'BEGIN { printf "%.1f", s / 1048576 }'
}

THR=$OUT/throughput.tsv
: >"$THR"
failed=0
echo "bench: throughput, $RUNS interleaved runs of ${SIZE_MB} MiB each way"
[ "${ONLY:-}" = sessions ] && RUNS=0
for run in $(seq 1 "$RUNS"); do
  for row in ${ROWS:-a b c d e f g}; do
    pid=$GW
    case $row in f | g) pid=$GWK ;; esac
    for dir in down up; do
      t0=$(ticks "$pid")
      case $row in
        a) v=$(transfer a $dir 198.51.100.10 21 pasv) ;;
        b) kernel_helper_on; v=$(transfer b $dir 198.51.100.10 21 port); kernel_helper_off ;;
        c) v=$(transfer c $dir 100.64.0.1 2121 pasv) ;;
        d) v=$(transfer d $dir 100.64.0.1 2121 port) ;;
        e) v=$(transfer e $dir 100.64.0.1 2123 pasv) ;;
        # Behind a forward chain that drops all but port 21 and the flows
        # ftpalg's pinholes marked: what passes went through a pinhole.
        f) forward_drop_on; v=$(transfer f $dir 100.64.0.1 2125 pasv); forward_drop_off ;;
        g) forward_drop_on; v=$(transfer g $dir 100.64.0.1 2125 port); forward_drop_off ;;
      esac
      t1=$(ticks "$pid")
      printf '%s\t%s\t%s\t%s\t%s\n' "$row" "$dir" "$run" "${v:-0}" "$(awk -v d=$((t1 - t0)) -v hz="$HZ" 'BEGIN { printf "%.3f", d / hz }')" >>"$THR"
      printf '  run %s %s %-4s %8s MiB/s\n' "$run" "$row" "$dir" "${v:-FAILED}"
      [ -n "$v" ] || failed=$((failed + 1))
    done
  done
done
# What the kernel path's ftpalg did with rows f and g: every transfer
# should be path="kernel"; one relayed instead is a fallback.
metrics 9126 "$OUT/metrics-kernel-0.txt"
grep '^ftpalg_transfers_total' "$OUT/metrics-kernel-0.txt" | sed 's/^/  kernel ftpalg: /'
if [ "${ONLY:-}" = throughput ]; then
  echo "bench: throughput only: $failed of $((RUNS * 14)) transfers failed"
  [ "$failed" -eq 0 ]
  exit
fi

echo "bench: session rate and NOOP latency"
SESS=$OUT/sessions.json
# The kernel path's setup histogram was read after the throughput rows;
# read again after the session runs, the report takes the difference.
{
  echo "{\"direct\": $(inns cli "$LOAD" sessions --target 198.51.100.10:2121 --concurrency 32 --seconds "$SESSION_SECONDS"),"
  echo " \"ftpalg\": $(inns cli "$LOAD" sessions --target 100.64.0.1:2124 --concurrency 32 --seconds "$SESSION_SECONDS"),"
  forward_drop_on
  echo " \"kernel\": $(inns cli "$LOAD" sessions --target 100.64.0.1:2126 --concurrency 32 --seconds "$SESSION_SECONDS"),"
  forward_drop_off
  echo " \"noop_direct\": $(inns cli "$LOAD" noop --target 198.51.100.10:2121 --count 5000),"
  echo " \"noop_ftpalg\": $(inns cli "$LOAD" noop --target 100.64.0.1:2124 --count 5000)}"
} >"$SESS"
cat "$SESS"
metrics 9126 "$OUT/metrics-kernel-1.txt"
[ "${ONLY:-}" = sessions ] && exit 0

# Each session holds two descriptors in ftpalg; where the hard limit on
# open files is lower than 10,000 sessions need, hold as many as it allows.
IDLE_N=$(( ($(ulimit -Hn) - 200) / 2 ))
[ "$IDLE_N" -gt "$IDLE_MAX" ] && IDLE_N=$IDLE_MAX
echo "bench: $IDLE_N idle sessions"
IDLE=$OUT/idle.out
rss0=$(rss_kib)
inns cli "$LOAD" idle --target 100.64.0.1:2124 --count "$IDLE_N" --hold 15 >"$IDLE" 2>&1 &
idle_pid=$!
for _ in $(seq 1 600); do grep -q READY "$IDLE" && break; sleep 0.2; done
sleep 2
rss1=$(rss_kib)
wait $idle_pid
cat "$IDLE"
printf 'rss_before_kib %s\nrss_after_kib %s\n' "$rss0" "$rss1" >"$OUT/rss.txt"

# Pinhole setup alone (one nf_tables transaction each), 2,000 adds with 200
# pinholes live, in the test's own namespace; then the kernel thread's adds,
# cuts and turns with 50,000 connections live through the lab (the ignored
# test, run here only). The report judges both.
echo "bench: pinhole setup latency, and the kernel thread at 50,000 live"
(cd "$REPO" && cargo test --quiet --release --test kernel_latency -- --include-ignored --test-threads 1 --nocapture 2>&1) | tee "$OUT/pinhole-latency.txt" | grep -E "pinhole|kernel-scale"

python3 "$REPO/bench/report.py" "$OUT" "$rss0" "$rss1" "$(nproc)" "$(uname -r)" "$SIZE_MB" "$DOCS" "$(( $(date +%s) - started ))" "$(ulimit -Hn)"
if [ "$failed" -gt 0 ]; then
  echo "bench: $failed of $((RUNS * 14)) transfers failed" >&2
  exit 1
fi
