# The gateway's lifecycle in the namespace lab, sourced by ops.sh (which
# describes the tests, builds the lab and starts vsftpd at 100 kB/s on
# srv with big.bin, a 12 s download): `selftest` and `restart`.
# shellcheck shell=bash

CGNAT=$(lab_rules rules/cgnat-gateway.yaml)
CGNAT_KERNEL=$(lab_rules rules/cgnat-gateway-kernel.yaml)
DROPIN=$REPO/packaging/systemd/fail-open.conf
head -c 20000 /dev/urandom >"$FTPROOT/$LAB/small.bin"
chmod 644 "$FTPROOT/$LAB/small.bin"

# transparent_gateway NAME RULES: ftpalg on gw with RULES; prints its PID
# once both listeners are bound.
transparent_gateway() {
  local pid
  : >"$STATE/$1.log"
  pid=$(spawn gw "$STATE/$1.log" "$FTPALG" run --rules "$2")
  wait_port gw 100.64.0.1 2100 >/dev/null 2>&1 && sleep 0.2
  echo "$pid"
}

# sessions NAME: sessions the gateway of NAME has started so far.
sessions() { grep -c 'session start' "$STATE/$1.log"; }

# get_small [CURL FLAGS...]: downloads small.bin from the client, straight
# to the server's address as a client behind the gateway does; succeeds
# if it arrived whole.
get_small() {
  rm -f "$STATE/small.out"
  inns cli "${CURL[@]}" -s -S --connect-timeout 5 --max-time 20 "$@" --user anonymous:ftpalg@ \
    -o "$STATE/small.out" "ftp://198.51.100.10/$LAB/small.bin" 2>>"$STATE/curl.err" \
    && cmp -s "$STATE/small.out" "$FTPROOT/$LAB/small.bin"
}

# dropin KEY: runs the fail-open drop-in's KEY= commands on gw, as systemd
# would (its prefixes - and + only say how systemd runs them).
dropin() {
  local cmd
  while IFS= read -r cmd; do
    inns gw sh -c "$cmd" || return 1
  done < <(sed -n "s/^$1=[-+@!:]*//p" "$DROPIN")
}

# selftest_run NAME ARGS...: `ftpalg selftest` on gw; its output goes to
# $STATE/NAME.selftest, its exit status is returned.
selftest_run() {
  local name=$1
  shift
  inns gw "$FTPALG" selftest --timeout 5 "$@" >"$STATE/$name.selftest" 2>&1
}

selftest() {
  local pid out v4only
  transparent_on || { bad "selftest: cannot load docs/nftables-transparent.nft"; return; }
  pid=$(transparent_gateway st "$CGNAT")
  if selftest_run ok --rules "$CGNAT" --server 198.51.100.10 --server 2001:db8:2::10 \
     && grep -q '^PASS transfer via cgnat:' "$STATE/ok.selftest" \
     && grep -q '^PASS transfer via cgnat6:' "$STATE/ok.selftest" \
     && grep -q '^PASS nftables: IPv6 tcp/21:' "$STATE/ok.selftest"; then
    ok "selftest: the shipped transparent setup passes, a transfer through each family included"
  else
    bad "selftest: the shipped transparent setup: $(tr '\n' ' ' <"$STATE/ok.selftest")"
  fi
  stop_pid "$pid"

  # The rules as they were before IPv6 got its listener: the inet file
  # still redirects IPv6 FTP, to a port where nothing takes it.
  v4only=$STATE/cgnat-v4-only.yaml
  sed '/^  - name: cgnat6$/,/^$/{/^$/!d}' "$CGNAT" >"$v4only"
  chmod 644 "$v4only"
  pid=$(transparent_gateway v4only "$v4only")
  if selftest_run v4only --rules "$v4only" --server 198.51.100.10; then
    bad "selftest: passed with an IPv6 redirect and no IPv6 listener: $(tr '\n' ' ' <"$STATE/v4only.selftest")"
  elif grep -q '^FAIL nftables: IPv6 tcp/21: .*no transparent listener takes IPv6' "$STATE/v4only.selftest"; then
    ok "selftest: fails on an IPv6 redirect without an IPv6 listener"
  else
    bad "selftest: an IPv6 redirect without an IPv6 listener: $(tr '\n' ' ' <"$STATE/v4only.selftest")"
  fi
  stop_pid "$pid"

  # The kernel data path behind a default-drop forward chain: with the
  # accept line, then without it.
  forward_drop_on || { bad "selftest: cannot load the forward chain"; return; }
  pid=$(transparent_gateway stk "$CGNAT_KERNEL")
  if selftest_run kernel --rules "$CGNAT_KERNEL" --server 198.51.100.10 \
     && grep -q '^PASS accept line (forward):' "$STATE/kernel.selftest"; then
    ok "selftest: the kernel rules pass with the accept line in the forward chain"
  else
    bad "selftest: the kernel rules with the accept line: $(tr '\n' ' ' <"$STATE/kernel.selftest")"
  fi
  forward_drop_off
  inns gw nft -f - <<'NFT'
table inet lab_forward {
  chain forward {
    type filter hook forward priority filter; policy drop;
    tcp dport 21 accept
    tcp sport 21 accept
  }
}
NFT
  if selftest_run noaccept --rules "$CGNAT_KERNEL" --server 198.51.100.10; then
    bad "selftest: passed without the accept line: $(tr '\n' ' ' <"$STATE/noaccept.selftest")"
  elif out=$(grep '^FAIL accept line (forward): inet lab_forward forward ' "$STATE/noaccept.selftest"); then
    ok "selftest: fails without the accept line: ${out:0:160}"
  else
    bad "selftest: without the accept line: $(tr '\n' ' ' <"$STATE/noaccept.selftest")"
  fi
  forward_drop_off
  stop_pid "$pid"

  if selftest_run gone --rules "$CGNAT" --server 198.51.100.10; then
    bad "selftest: passed with no gateway running"
  elif grep -q '^FAIL listener cgnat: nothing listens' "$STATE/gone.selftest"; then
    ok "selftest: fails when the gateway is not running"
  else
    bad "selftest: no gateway: $(tr '\n' ' ' <"$STATE/gone.selftest")"
  fi
  transparent_off
}

# restart_case NAME FAILOPEN: the restart test, with the fail-open drop-in
# (FAILOPEN=yes) or without it.
restart_case() {
  local name=$1 failopen=$2 pid fetch_pid n t0 gone
  transparent_on && inns gw nft -f "$REPO/docs/nftables-fail-open.nft" \
    || { bad "restart ($name): cannot load the nftables files"; return; }
  pid=$(transparent_gateway "$name" "$CGNAT")
  [ "$failopen" = yes ] && { dropin ExecStartPost || bad "restart ($name): ExecStartPost failed"; }
  get_small && [ "$(sessions "$name")" -eq 1 ] \
    || bad "restart ($name): before the stop, a download through the gateway failed"

  # The 12 s download, through the gateway, then the stop 3 s into it.
  rm -f "$STATE/got.bin"
  inns cli "${CURL[@]}" -s -S --max-time 40 --user anonymous:ftpalg@ \
    -o "$STATE/got.bin" "ftp://198.51.100.10/$LAB/big.bin" 2>"$STATE/big.err" &
  fetch_pid=$!
  sleep 3
  [ "$failopen" = yes ] && dropin ExecStop
  t0=$(date +%s)
  kill -TERM "$pid"
  sleep 0.5
  n=$(sessions "$name")
  if [ "$failopen" = yes ]; then
    if get_small && get_small --ftp-port - && [ "$(sessions "$name")" -eq "$n" ]; then
      ok "restart ($name): during the drain, new sessions (passive, active) go straight to the server"
    else
      bad "restart ($name): during the drain, a new session failed or went to the draining gateway: $(tail -2 "$STATE/curl.err" | tr '\n' ' ')"
    fi
  elif get_small; then
    bad "restart ($name): during the drain, a new session passed without the fail-open drop-in: the test proves nothing"
  else
    ok "restart ($name): during the drain, new sessions are refused without the fail-open drop-in"
  fi
  if wait "$fetch_pid" && [ "$(sha256sum <"$STATE/got.bin")" = "$want" ]; then
    ok "restart ($name): the download running at the stop completed whole ($(($(date +%s) - t0)) s after SIGTERM)"
  else
    bad "restart ($name): the download running at the stop failed: $(tr '\n' ' ' <"$STATE/big.err")"
  fi
  gone=no
  for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || { gone=yes; break; }; sleep 0.1; done
  [ "$gone" = yes ] && ok "restart ($name): the gateway exited once its last transfer ended" \
    || bad "restart ($name): the gateway still runs 5 s after its last transfer"
  stop_pid "$pid"
  if [ "$failopen" = yes ]; then
    dropin ExecStopPost
    get_small && ok "restart ($name): while the gateway is down, sessions go straight to the server" \
      || bad "restart ($name): while the gateway is down, a download failed"
  fi

  # The new gateway, as ExecStart (and ExecStartPost) start it.
  pid=$(transparent_gateway "$name-new" "$CGNAT")
  [ "$failopen" = yes ] && dropin ExecStartPost
  if get_small && [ "$(sessions "$name-new")" -eq 1 ]; then
    ok "restart ($name): the new gateway takes new sessions"
  else
    bad "restart ($name): a download through the new gateway failed: $(tail -3 "$STATE/$name-new.log" | tr '\n' ' ')"
  fi
  stop_pid "$pid"
  transparent_off
}

restart() {
  restart_case fail-open yes
  restart_case fail-closed no
}
