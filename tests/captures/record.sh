#!/usr/bin/env bash
# Records the small captures that `ftpalg diagnose` is tested on, in the
# namespace lab of tests/e2e/lib.sh (root; LAB=dg1 unless set). Each case
# starts from a fresh lab, runs one client against one server, and writes
# the inside leg (the client's eth0) and the outside leg (the server's
# eth0) to tests/captures/NAME.inside.pcap and NAME.outside.pcap. The
# golden outputs are then made with tests/captures/golden.sh.
#
#   tests/captures/record.sh                 every case
#   CASES="passive-21-only" tests/captures/record.sh
#
# Captures stay small: a snap length of 400 bytes and 16 KiB files. Only
# the lab's documentation addresses appear in them.
set -u
# The lab name is set before lib.sh, whose default belongs to others.
LAB=${LAB:-dg1}
source "$(dirname "$0")/../e2e/lib.sh"
STATE=$REPO/target/captures/$LAB
OUTDIR=${OUTDIR:-$REPO/tests/captures}
SNAP=400
[ "$(id -u)" -eq 0 ] || { echo "record.sh needs root (network namespaces)" >&2; exit 1; }
trap 'lab_down' EXIT
trap 'exit 130' INT TERM

ALL_CASES="active-no-helper passive-21-only helper-active-ok helper-no-related ftpalg-ok pasv-private auth-tls epsv-refused bounce idle-timeout ipv6-21-only ftpalg-gateway"
CASES=${CASES:-$ALL_CASES}

CAPS=()
capture() { # capture NS IFACE FILE
  local pid
  pid=$(spawn "$1" "$STATE/tcpdump.log" tcpdump -i "$2" -n -U --immediate-mode -s "$SNAP" -w "$3" tcp)
  CAPS+=("$pid")
}
captures_on() { # captures_on NAME: both legs
  CAPS=()
  capture cli eth0 "$OUTDIR/$1.inside.pcap"
  capture srv eth0 "$OUTDIR/$1.outside.pcap"
  sleep 1
}
captures_off() {
  sleep 1
  local p
  for p in "${CAPS[@]}"; do stop_pid "$p"; done
  CAPS=()
}

# vsftpd with extra configuration lines (the lab's base configuration).
vsftpd_with() { # vsftpd_with EXTRA_LINES
  local conf="$STATE/vsftpd"
  mkdir -p "$conf" /var/run/vsftpd/empty
  cat >"$conf/vsftpd.conf" <<CONF
listen=YES
listen_ipv6=NO
listen_address=198.51.100.10
background=NO
anonymous_enable=YES
local_enable=NO
write_enable=YES
anon_upload_enable=YES
no_anon_password=YES
anon_root=$FTPROOT
pasv_enable=YES
pasv_min_port=30000
pasv_max_port=30099
connect_from_port_20=YES
seccomp_sandbox=NO
secure_chroot_dir=/var/run/vsftpd/empty
xferlog_enable=NO
$1
CONF
  spawn srv "$conf/log" vsftpd "$conf/vsftpd.conf" >/dev/null
  wait_port srv 198.51.100.10 21
}

# A carrier that forwards nothing new from outside to inside, as a real
# CGNAT does (the lab's bare gateway would route it).
carrier_filter() {
  inns gw nft -f - <<'NFT'
table inet dg_carrier {
  chain forward {
    type filter hook forward priority filter; policy accept;
    iifname "wan" oifname "lan" ct state new drop
  }
}
NFT
}

# A gateway whose forward policy drops all but established traffic: the
# kernel helper's expectations (ct state related) are not accepted.
no_related_filter() {
  inns gw nft -f - <<'NFT'
table inet dg_carrier {
  chain forward {
    type filter hook forward priority filter; policy drop;
    ct state established accept
    iifname "lan" ct state new accept
  }
}
NFT
}

curl_get() { # curl_get FILE [CURL FLAGS...]
  local f=$1; shift
  inns cli "${CURL[@]}" -s -S --connect-timeout 4 --max-time 20 --user anonymous:diagnose@ "$@" \
    -o "$STATE/out" "ftp://198.51.100.10/$LAB/$f" >>"$STATE/client.log" 2>&1 || true
}

one() {
  local name=$1
  echo "== $name"
  lab_up
  mkdir -p "$STATE"
  : >"$STATE/client.log"
  head -c 16384 /dev/urandom >"$FTPROOT/$LAB/f16k"
  head -c 262144 /dev/urandom >"$FTPROOT/$LAB/f256k"
  chmod 644 "$FTPROOT/$LAB"/f*
  case "$name" in
    active-no-helper)
      # The carrier does not translate EPRT/PORT: vsftpd refuses both.
      carrier_filter
      vsftpd_with ""
      captures_on "$name"
      curl_get f16k --ftp-port - ;;
    passive-21-only)
      # The seed: the server's firewall opens only 21; EPSV then PASV.
      vsftpd_with ""
      srv_firewall_on
      captures_on "$name"
      curl_get f16k
      curl_get f16k --disable-epsv ;;
    helper-active-ok)
      # The kernel helper translates PORT; the transfer works.
      vsftpd_with ""
      kernel_helper_on
      captures_on "$name"
      curl_get f16k --ftp-port - --disable-eprt ;;
    helper-no-related)
      # The helper translates PORT but the gateway's forward chain drops
      # the server's connection back (no "ct state related accept").
      vsftpd_with ""
      kernel_helper_on
      no_related_filter
      captures_on "$name"
      curl_get f16k --ftp-port - --disable-eprt ;;
    ftpalg-ok)
      # ftpalg on the gateway against the seed's 21-only server.
      [ -x "$FTPALG" ] || { echo "build first: $FTPALG missing" >&2; exit 1; }
      vsftpd_with ""
      srv_firewall_on
      transparent_on
      spawn gw "$STATE/ftpalg.log" "$FTPALG" run --rules "$(lab_rules rules/cgnat-gateway.yaml)" >/dev/null
      wait_port gw 100.64.0.1 2100
      captures_on "$name"
      curl_get f16k ;;
    pasv-private)
      # The server advertises an address other than its own; curl
      # ignores it (its default) and the transfer works.
      vsftpd_with "pasv_address=100.64.0.99"
      captures_on "$name"
      curl_get f16k --disable-epsv ;;
    auth-tls)
      openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=198.51.100.10" \
        -keyout "$STATE/key.pem" -out "$STATE/cert.pem" >/dev/null 2>&1
      vsftpd_with "ssl_enable=YES
allow_anon_ssl=YES
force_anon_logins_ssl=NO
force_anon_data_ssl=NO
require_ssl_reuse=NO
rsa_cert_file=$STATE/cert.pem
rsa_private_key_file=$STATE/key.pem"
      captures_on "$name"
      curl_get f16k --ssl-reqd -k ;;
    epsv-refused)
      # A server that does not know EPSV: curl falls back to PASV.
      inns srv "$PY" - "$FTPROOT" >"$STATE/pyftpd.log" 2>&1 <<'PY' &
import sys
from pyftpdlib.authorizers import DummyAuthorizer
from pyftpdlib.handlers import FTPHandler
from pyftpdlib.servers import FTPServer
class NoEpsv(FTPHandler):
    def ftp_EPSV(self, line):
        self.respond("500 Command EPSV not understood.")
a = DummyAuthorizer(); a.add_anonymous(sys.argv[1])
NoEpsv.authorizer = a
NoEpsv.passive_ports = range(30000, 30100)
s = FTPServer(("198.51.100.10", 21), NoEpsv)
s.serve_forever(timeout=0.2)
PY
      echo $! >>"$STATE/pids"
      wait_port srv 198.51.100.10 21
      captures_on "$name"
      curl_get f16k ;;
    bounce)
      # A PORT naming a third host (ext), passed on by a helper-less NAT.
      vsftpd_with ""
      captures_on "$name"
      inns cli env PYTHONPATH="$E2E_DIR" "$PY" - >>"$STATE/client.log" 2>&1 <<'PY' || true
from ftpraw import Ctl
c = Ctl("198.51.100.10", 21)
c.reply()
for command in ("USER anonymous", "PASS x", "PORT 198,51,100,20,78,32", "QUIT"):
    print(command, "->", c.cmd(command))
PY
      ;;
    ftpalg-gateway)
      # As ftpalg-ok, captured once on the gateway with "-i any" (Linux
      # cooked v2): both legs in one file, NAME.gateway.pcap.
      vsftpd_with ""
      srv_firewall_on
      transparent_on
      spawn gw "$STATE/ftpalg.log" "$FTPALG" run --rules "$(lab_rules rules/cgnat-gateway.yaml)" >/dev/null
      wait_port gw 100.64.0.1 2100
      CAPS=()
      capture gw any "$OUTDIR/$name.gateway.pcap"
      sleep 1
      curl_get f16k --disable-epsv ;;
    ipv6-21-only)
      # The seed's firewall over IPv6 (routed, no NAT): EPSV, then EPRT.
      start_server vsftpd srv >/dev/null
      wait_port srv 198.51.100.10 21
      srv_firewall_on
      captures_on "$name"
      inns cli "${CURL[@]}" -s -S --connect-timeout 3 --max-time 8 --user anonymous:diagnose@ \
        -o "$STATE/out" "ftp://[2001:db8:2::10]/$LAB/f16k" >>"$STATE/client.log" 2>&1 || true
      inns cli "${CURL[@]}" -s -S --connect-timeout 3 --max-time 8 --ftp-port - --user anonymous:diagnose@ \
        -o "$STATE/out" "ftp://[2001:db8:2::10]/$LAB/f16k" >>"$STATE/client.log" 2>&1 || true ;;
    idle-timeout)
      # The gateway forgets an idle control connection after 2 s (a NAT
      # idle timeout, made short); the transfer is slowed to outlast it.
      vsftpd_with ""
      inns gw nft -f - <<'NFT'
table inet dg_timeout {
  ct timeout ftpidle {
    protocol tcp; l3proto ip;
    policy = { established: 2 }
  }
  chain prerouting {
    type filter hook prerouting priority filter;
    tcp dport 21 ct timeout set "ftpidle"
  }
}
NFT
      carrier_filter
      captures_on "$name"
      inns cli "${CURL[@]}" -s -S --connect-timeout 4 --max-time 12 --limit-rate 48k \
        --user anonymous:diagnose@ -o "$STATE/out" "ftp://198.51.100.10/$LAB/f256k" >>"$STATE/client.log" 2>&1 || true ;;
  esac
  captures_off
  stop_all
  lab_down
  sed 's/^/   client: /' "$STATE/client.log"
}

mkdir -p "$STATE"
for c in $CASES; do one "$c"; done
ls -l "$OUTDIR"/*.pcap
