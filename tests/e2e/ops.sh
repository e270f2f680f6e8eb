#!/usr/bin/env bash
# Operations tests in the namespace lab (root):
#
#   privilege  started as root with --user nobody on port 21, the gateway runs
#              as uid 65534 with only CAP_NET_BIND_SERVICE (effective,
#              permitted, bounding), nothing ambient or inheritable, and
#              no_new_privs; started as nobody with the capability ambient
#              (what systemd's AmbientCapabilities does) it runs as it is.
#              A transfer goes through each.
#   keepalive  the client's NAT forgets the control flow after 4 s idle and
#              answers a late packet with a reset; a 12 s download through
#              ftpalg completes with control_keepalive: 2s and fails with
#              control_keepalive: off.
#   selftest   `ftpalg selftest` on the gateway of the shipped transparent
#              setup (docs/nftables-transparent.nft, rules/cgnat-gateway.yaml):
#              passes, a transfer through each family's listener included;
#              fails with a rules file whose IPv6 redirect has no listener,
#              with the kernel rules once the accept line is taken out of
#              the default-drop forward chain, and once the gateway is gone.
#   restart    a 12 s download through the transparent gateway when the
#              gateway is stopped after 3 s (SIGTERM, what a restart or an
#              upgrade sends): it completes whole. With the fail-open
#              drop-in's commands (packaging/systemd/fail-open.conf) run
#              where systemd runs them, new sessions during the drain and
#              while it is down go straight to the server (kernel helper,
#              docs/nftables-fail-open.nft), passive and active, and
#              through the gateway again once it is back; without them,
#              they are refused until it is back.
#
#   E2E_LABS=xy bash tests/e2e/ops.sh [privilege] [keepalive] [selftest] [restart]
# uses the lab "xyx". Prints one PASS/FAIL line per check; exits 1 if any
# failed.
set -u
source "$(dirname "$0")/lib.sh"
LAB=${E2E_LABS:-fa}x
STATE=$REPO/target/e2e/$LAB
[ "$(id -u)" -eq 0 ] || { echo "ops: needs root" >&2; exit 1; }
[ -x "$FTPALG" ] || { echo "ops: build first: $FTPALG missing" >&2; exit 1; }
TESTS=${*:-privilege keepalive selftest restart}
failed=0
ok() { echo "PASS $*"; }
bad() { echo "FAIL $*"; failed=1; }

trap 'lab_down' EXIT
lab_up || { echo "FAIL lab did not come up"; exit 1; }
# vsftpd sends at 100 kB/s, so that a download keeps the control
# connection idle for its whole length (a client-side rate limit would not:
# the server's 226 would come as soon as the socket buffers took the file).
start_server vsftpd srv >/dev/null
wait_port srv 198.51.100.10 21 || { echo "FAIL vsftpd did not start"; exit 1; }
stop_all
echo "anon_max_rate=100000" >>"$STATE/vsftpd-srv/vsftpd.conf"
spawn srv "$STATE/vsftpd-srv/log" vsftpd "$STATE/vsftpd-srv/vsftpd.conf" >/dev/null
sleep 0.3
wait_port srv 198.51.100.10 21 || { echo "FAIL vsftpd did not start"; exit 1; }
# 1.2 MB at 100 kB/s: a download takes about 12 s.
head -c 1200000 /dev/urandom >"$FTPROOT/$LAB/big.bin"
chmod 644 "$FTPROOT/$LAB/big.bin"
want=$(sha256sum <"$FTPROOT/$LAB/big.bin")

# rules PORT KEEPALIVE: an explicit proxy in "ext" (198.51.100.20), on the
# far side of the client's NAT from the client, in front of vsftpd.
rules() {
  cat <<YAML
listeners:
  - name: proxy
    listen: 198.51.100.20:$1
    kind: explicit
    upstream: 198.51.100.10:21
data:
  client_ports: 40000-40099
  server_ports: 41000-41099
limits:
  control_keepalive: $2
YAML
}

# gateway NAME PORT KEEPALIVE: starts ftpalg in ext, prints its PID; the
# command starting it is ${PREFIX[@]}, its extra arguments ${EXTRA[@]}.
PREFIX=()
EXTRA=()
gateway() {
  local name=$1 port=$2 ka=$3
  rules "$port" "$ka" >"$STATE/$name.yaml"
  chmod 644 "$STATE/$name.yaml"
  spawn ext "$STATE/$name.log" "${PREFIX[@]}" "$FTPALG" run --rules "$STATE/$name.yaml" "${EXTRA[@]}"
}

# fetch PORT [CURL FLAGS...]: downloads big.bin from the client through the
# gateway, passive; succeeds if the file arrived whole and curl saw 226.
fetch() {
  local port=$1
  shift
  rm -f "$STATE/got.bin"
  inns cli "${CURL[@]}" -s -S --max-time 40 "$@" --user anonymous:ftpalg@ \
    -o "$STATE/got.bin" "ftp://198.51.100.20:$port/$LAB/big.bin" || return 1
  [ "$(sha256sum <"$STATE/got.bin")" = "$want" ]
}

# status_field PID FIELD: the value of FIELD in /proc/PID/status.
status_field() { awk -v f="$2:" '$1 == f { $1 = ""; sub(/^ /, ""); print }' "/proc/$1/status"; }

privilege() {
  local pid uid caps
  EXTRA=(--user nobody)
  pid=$(gateway priv 21 60s)
  EXTRA=()
  # spawn runs "ip netns exec ... ftpalg"; the gateway is that process once
  # exec'd, so its PID is the one recorded.
  wait_port ext 198.51.100.20 21 || { bad "privilege: no listener on 21 as root --user nobody: $(tail -3 "$STATE/priv.log")"; return; }
  uid=$(status_field "$pid" Uid)
  [ "$uid" = "65534 65534 65534 65534" ] && ok "privilege: root --user nobody: uids $uid" || bad "privilege: root --user nobody: uids '$uid'"
  caps="$(status_field "$pid" CapEff) $(status_field "$pid" CapPrm) $(status_field "$pid" CapBnd) $(status_field "$pid" CapInh) $(status_field "$pid" CapAmb) $(status_field "$pid" NoNewPrivs)"
  [ "$caps" = "0000000000000400 0000000000000400 0000000000000400 0000000000000000 0000000000000000 1" ] \
    && ok "privilege: root --user nobody: eff/prm/bnd/inh/amb/nnp $caps" \
    || bad "privilege: root --user nobody: eff/prm/bnd/inh/amb/nnp $caps"
  local t tcaps=""
  for t in /proc/"$pid"/task/*; do tcaps+="$(awk '$1 == "CapEff:" {print $2}' "$t/status") "; done
  [ -z "$(echo "$tcaps" | tr ' ' '\n' | grep -v -e '^$' -e '^0000000000000400$')" ] \
    && ok "privilege: every thread: $tcaps" || bad "privilege: threads' CapEff: $tcaps"
  fetch 21 && ok "privilege: download through port 21 as nobody" || bad "privilege: download through port 21 as nobody"
  stop_pid "$pid"

  # As systemd starts it with User=nobody and AmbientCapabilities.
  PREFIX=(setpriv --reuid=nobody --regid=nogroup --clear-groups
    --inh-caps=-all,+net_bind_service --ambient-caps=-all,+net_bind_service)
  pid=$(gateway ambient 21 60s)
  PREFIX=()
  wait_port ext 198.51.100.20 21 || { bad "privilege: no listener on 21 as nobody with the ambient capability: $(tail -3 "$STATE/ambient.log")"; return; }
  uid=$(status_field "$pid" Uid)
  caps="$(status_field "$pid" CapEff) $(status_field "$pid" CapAmb)"
  [ "$uid" = "65534 65534 65534 65534" ] && [ "$caps" = "0000000000000400 0000000000000400" ] \
    && ok "privilege: nobody + ambient: uids $uid, eff/amb $caps" \
    || bad "privilege: nobody + ambient: uids '$uid', eff/amb $caps"
  grep -q 'runs as started' "$STATE/ambient.log" && ok "privilege: nobody + ambient: runs as started" || bad "privilege: nobody + ambient: log says $(grep privileges "$STATE/ambient.log")"
  fetch 21 && ok "privilege: download as nobody + ambient" || bad "privilege: download as nobody + ambient"
  stop_pid "$pid"
}

keepalive() {
  # The client's carrier NAT on gw: the control flow (to port 2121) is
  # forgotten after 4 s without a packet; a packet of a forgotten flow is
  # not taken up again (tcp_loose 0), and one arriving for the NAT address
  # reaches gw's own stack, which answers with a reset, as CGNATs do.
  inns gw sysctl -qw net.netfilter.nf_conntrack_tcp_loose=0
  inns gw nft -f - <<'NFT'
table ip lab_idle {
  ct timeout control_idle {
    protocol tcp;
    l3proto ip;
    policy = { established: 4 }
  }
  chain prerouting_timeout {
    type filter hook prerouting priority filter;
    ip saddr 100.64.0.0/24 tcp dport 2121 ct timeout set "control_idle"
  }
  chain forward_filter {
    type filter hook forward priority filter;
    ct state invalid drop
  }
}
NFT
  local pid t0 t1
  pid=$(gateway ka-on 2121 2s)
  wait_port ext 198.51.100.20 2121 || { bad "keepalive: gateway did not start: $(tail -3 "$STATE/ka-on.log")"; return; }
  t0=$(date +%s)
  if fetch 2121; then
    t1=$(date +%s)
    ok "keepalive: 2s: a $((t1 - t0)) s download behind a 4 s control idle timeout completes"
  else
    bad "keepalive: 2s: the download failed ($(($(date +%s) - t0)) s)"
  fi
  stop_pid "$pid"

  pid=$(gateway ka-off 2121 off)
  wait_port ext 198.51.100.20 2121 || { bad "keepalive: gateway did not start: $(tail -3 "$STATE/ka-off.log")"; return; }
  t0=$(date +%s)
  if fetch 2121; then
    bad "keepalive: off: the download completed, so the NAT did not forget the control flow and the test proves nothing"
  elif grep -q 'result="ok"' "$STATE/ka-off.log"; then
    # The data moved in full; only the control connection died.
    ok "keepalive: off: the file moved but the session failed after $(($(date +%s) - t0)) s (the NAT forgot the control flow)"
  else
    bad "keepalive: off: the download failed before its data moved, which is not what this test is about: $(tail -3 "$STATE/ka-off.log")"
  fi
  stop_pid "$pid"
  inns gw nft delete table ip lab_idle
}

# selftest and restart: the gateway's lifecycle.
source "$E2E_DIR/ops-lifecycle.sh"

for t in $TESTS; do
  case "$t" in
    privilege | keepalive | selftest | restart) "$t" ;;
    *) bad "unknown test $t" ;;
  esac
done
exit $failed
