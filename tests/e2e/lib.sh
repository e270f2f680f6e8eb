# Namespace lab for ftpalg's end-to-end tests, demo and benchmarks.
#
#   cli  100.64.0.2/24  2001:db8:1::2/64   client behind carrier-grade NAT
#   gw   lan 100.64.0.1/24 2001:db8:1::1/64 | wan 198.51.100.1/24 2001:db8:2::1/64 | dmz 203.0.113.1/24
#   srv  198.51.100.10/24 2001:db8:2::10/64 an internet FTP server
#   ext  198.51.100.20/24                  an internet client (reverse scenario)
#   dmz  203.0.113.10/24                   an FTP server behind the gateway's NAT
#
# Namespaces are named "$LAB-cli" etc., so several labs (distinct $LAB) can
# run side by side. Only the addresses above are used. Everything a lab
# starts is recorded by PID and stopped by lab_down, which also removes a
# stale lab left by a killed run.

set -u
E2E_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$E2E_DIR/../.." && pwd)
LAB=${LAB:-fa1}
STATE=${STATE:-$REPO/target/e2e/$LAB}
PEERS=${FTPALG_PEERS:-/opt/ftpalg-peers}
FTPALG=${FTPALG:-$REPO/target/release/ftpalg}
PY=/usr/bin/python3
# curl 8 unpacked by scripts/install-test-deps.sh (Debian 12's cannot do active FTP).
CURL=(env LD_LIBRARY_PATH="$PEERS/curl/usr/lib/x86_64-linux-gnu" "$PEERS/curl/usr/bin/curl")
FTPROOT=/srv/ftp
NSES=(cli gw srv dmz ext)

inns() { local n=$1; shift; ip netns exec "$LAB-$n" "$@"; }

# Starts a command in a namespace in the background, recording its PID.
spawn() {
  local n=$1 log=$2; shift 2
  ip netns exec "$LAB-$n" "$@" >>"$log" 2>&1 &
  echo $! >>"$STATE/pids"
  echo $!
}

# lab_rules FILE: prints the path of a copy of the shipped rules FILE for
# this lab. The shipped CGNAT examples let clients reach `routable`
# servers, and the lab's servers sit in documentation ranges, which
# `routable` leaves out: the copy adds them to `servers: [routable]`.
lab_rules() {
  local src=$1 out
  [[ $src == /* ]] || src=$REPO/$src
  out=$STATE/lab-$(basename "$src")
  grep -q 'servers: \[routable\]' "$src" || { echo "lab_rules: no servers: [routable] in $src" >&2; return 1; }
  mkdir -p "$STATE"
  sed 's#servers: \[routable\]#servers: [routable, 198.51.100.0/24, 203.0.113.0/24, 2001:db8:2::/64]#' "$src" >"$out"
  chmod 644 "$out"
  echo "$out"
}

stop_pid() {
  local pid=$1
  kill "$pid" 2>/dev/null || return 0
  for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.05; done
  kill -9 "$pid" 2>/dev/null || true
}

stop_all() {
  [ -f "$STATE/pids" ] || return 0
  while read -r pid; do stop_pid "$pid"; done <"$STATE/pids"
  : >"$STATE/pids"
}

lab_down() {
  stop_all
  # Anything still running inside the lab's namespaces is ours.
  for n in "${NSES[@]}"; do
    if ip netns list | grep -qw "$LAB-$n"; then
      for pid in $(ip netns pids "$LAB-$n" 2>/dev/null); do kill -9 "$pid" 2>/dev/null || true; done
      ip netns del "$LAB-$n" 2>/dev/null || true
    fi
  done
  rm -rf "${FTPROOT:?}/$LAB"
}

veth() { # veth NS_A IF_A NS_B IF_B
  local a="$LAB$RANDOM" b="$LAB$RANDOM"
  ip link add "$a" type veth peer name "$b"
  ip link set "$a" netns "$LAB-$1"
  ip link set "$b" netns "$LAB-$3"
  inns "$1" ip link set "$a" name "$2"
  inns "$3" ip link set "$b" name "$4"
  inns "$1" ip link set "$2" up
  inns "$3" ip link set "$4" up
}

# Builds the lab; returns non-zero, with the failing command on stderr, if
# any step fails. The steps run in a shell of their own with -e, because
# -e is ignored in a function called as a condition (lab_up || ...).
lab_up() {
  lab_down
  mkdir -p "$STATE"
  : >"$STATE/pids"
  LAB=$LAB STATE=$STATE bash -eE -c 'trap '\''echo "lab_up: failed: $BASH_COMMAND" >&2'\'' ERR; source "$1"; lab_build' lab_up "$E2E_DIR/lib.sh" && return 0
  echo "lab_up: building lab $LAB failed" >&2
  return 1
}

lab_build() {
  for n in "${NSES[@]}"; do
    ip netns add "$LAB-$n"
    inns "$n" ip link set lo up
    inns "$n" sysctl -qw net.ipv6.conf.all.accept_dad=0 net.ipv6.conf.default.accept_dad=0
  done
  veth cli eth0 gw lan
  inns gw ip link add wan type bridge
  inns gw ip link set wan up
  veth srv eth0 gw wsrv
  veth ext eth0 gw wext
  inns gw ip link set wsrv master wan
  inns gw ip link set wext master wan
  veth dmz eth0 gw dmz

  inns cli ip addr add 100.64.0.2/24 dev eth0
  inns cli ip -6 addr add 2001:db8:1::2/64 dev eth0 nodad
  inns cli ip route add default via 100.64.0.1
  inns cli ip -6 route add default via 2001:db8:1::1

  inns gw ip addr add 100.64.0.1/24 dev lan
  inns gw ip -6 addr add 2001:db8:1::1/64 dev lan nodad
  inns gw ip addr add 198.51.100.1/24 dev wan
  inns gw ip -6 addr add 2001:db8:2::1/64 dev wan nodad
  inns gw ip addr add 203.0.113.1/24 dev dmz
  inns gw sysctl -qw net.ipv4.ip_forward=1 net.ipv6.conf.all.forwarding=1

  inns srv ip addr add 198.51.100.10/24 dev eth0
  inns srv ip -6 addr add 2001:db8:2::10/64 dev eth0 nodad
  inns srv ip route add default via 198.51.100.1
  inns srv ip -6 route add default via 2001:db8:2::1

  inns ext ip addr add 198.51.100.20/24 dev eth0
  inns ext ip route add default via 198.51.100.1

  inns dmz ip addr add 203.0.113.10/24 dev eth0
  inns dmz ip route add default via 203.0.113.1

  # The carrier's NAT: clients leave as 198.51.100.1. No FTP helper.
  inns gw nft -f - <<'NFT'
table ip lab_nat {
  chain postrouting {
    type nat hook postrouting priority srcnat;
    ip saddr 100.64.0.0/24 oifname "wan" masquerade
  }
}
NFT
  mkdir -p "$FTPROOT/$LAB/up"
  chmod 755 "$FTPROOT/$LAB"
  chmod 777 "$FTPROOT/$LAB/up"
}

# The seed's server firewall: inbound only tcp 21 and established traffic.
srv_firewall_on() {
  local n=${1:-srv}
  inns "$n" nft -f - <<'NFT'
table inet lab_fw {
  chain input {
    type filter hook input priority filter; policy drop;
    iif "lo" accept
    ct state established,related accept
    tcp dport 21 accept
    meta l4proto { icmp, ipv6-icmp } accept
  }
}
NFT
}

srv_firewall_off() { inns "${1:-srv}" nft delete table inet lab_fw 2>/dev/null || true; }

# The kernel's own FTP ALG on the gateway (the baseline): conntrack helper
# on port 21, with NAT rewriting by nf_nat_ftp.
kernel_helper_on() {
  inns gw nft -f - <<'NFT'
table inet lab_helper {
  ct helper ftp-standard {
    type "ftp" protocol tcp;
  }
  chain prerouting {
    type filter hook prerouting priority filter;
    tcp dport 21 ct helper set "ftp-standard"
  }
}
NFT
}

kernel_helper_off() { inns gw nft delete table inet lab_helper 2>/dev/null || true; }

# nftables for a transparent ftpalg on the gateway: the snippet shipped in
# docs/, loaded as it is.
transparent_on() { inns gw nft -f "$REPO/docs/nftables-transparent.nft"; }

# TPROXY instead of redirect: the shipped snippet plus the policy routing
# it documents.
tproxy_on() {
  inns gw ip rule add fwmark 1 lookup 100 \
    && inns gw ip route add local 0.0.0.0/0 dev lo table 100 \
    && inns gw nft -f "$REPO/docs/nftables-tproxy.nft"
}

tproxy_off() {
  inns gw nft delete table inet ftpalg_tproxy 2>/dev/null || true
  inns gw ip rule del fwmark 1 lookup 100 2>/dev/null || true
  inns gw ip route del local 0.0.0.0/0 dev lo table 100 2>/dev/null || true
}

transparent_off() { inns gw nft delete table inet ftpalg 2>/dev/null || true; }

# A gateway that forwards nothing but FTP control connections and the flows
# ftpalg's kernel pinholes marked: the accept line of docs/nftables.md
# ("The kernel data path"). A transfer that passes here went through a
# pinhole. Byte counts need conntrack accounting.
forward_drop_on() {
  inns gw sysctl -qw net.netfilter.nf_conntrack_acct=1 \
    && inns gw nft -f - <<'NFT'
table inet lab_forward {
  chain forward {
    type filter hook forward priority filter; policy drop;
    tcp dport 21 accept
    tcp sport 21 accept
    ct mark and 0xffff0000 == 0x46540000 accept
  }
}
NFT
}

forward_drop_off() { inns gw nft delete table inet lab_forward 2>/dev/null || true; }

# The gateway's own input dropped as well, but for ftpalg's listener, the
# redirected client ports and the accept line: a server's connection to a
# relay pinhole (server_ports) gets in only through ftpalg's kernel filter.
input_drop_on() {
  inns gw nft -f - <<'NFT'
table inet lab_input {
  chain input {
    type filter hook input priority filter; policy drop;
    iif "lo" accept
    ct state established,related accept
    tcp dport { 2100, 40000-40999 } accept
    meta l4proto { icmp, ipv6-icmp } accept
    ct mark and 0xffff0000 == 0x46540000 accept
  }
}
NFT
}

input_drop_off() { inns gw nft delete table inet lab_input 2>/dev/null || true; }

wait_port() { # wait_port NS ADDR PORT
  local n=$1 addr=$2 port=$3
  for _ in $(seq 1 100); do
    if inns "$n" ss -Hltn 2>/dev/null | awk '{print $4}' | grep -Eq "(^|[^0-9])${port}$"; then
      return 0
    fi
    sleep 0.05
  done
  echo "nothing listening on $addr:$port in $LAB-$n" >&2
  return 1
}

# ------------------------------------------------------------------ servers

start_server() { # start_server NAME NS -> pid
  local name=$1 n=$2 conf="$STATE/$1-$2"
  mkdir -p "$conf"
  case "$name" in
    vsftpd)
      mkdir -p /var/run/vsftpd/empty
      cat >"$conf/vsftpd.conf" <<CONF
listen=NO
listen_ipv6=YES
background=NO
anonymous_enable=YES
local_enable=NO
write_enable=YES
anon_upload_enable=YES
anon_mkdir_write_enable=YES
anon_other_write_enable=YES
anon_umask=022
no_anon_password=YES
anon_root=$FTPROOT
pasv_enable=YES
pasv_min_port=30000
pasv_max_port=30999
connect_from_port_20=YES
seccomp_sandbox=NO
secure_chroot_dir=/var/run/vsftpd/empty
xferlog_enable=NO
CONF
      spawn "$n" "$conf/log" vsftpd "$conf/vsftpd.conf" ;;
    pure-ftpd)
      spawn "$n" "$conf/log" "$PEERS/pure-ftpd/usr/sbin/pure-ftpd" -S ,21 -e -M -H -p 30000:30999 -k 100 ;;
    proftpd)
      cat >"$conf/proftpd.conf" <<CONF
ServerName "lab"
ServerType standalone
DefaultServer on
Port 21
UseIPv6 on
DefaultAddress 0.0.0.0
User nobody
Group nogroup
ScoreboardFile $conf/scoreboard
PidFile $conf/pid
DelayTable none
WtmpLog off
UseReverseDNS off
PassivePorts 30000 30999
AllowOverwrite on
<Anonymous $FTPROOT>
  User ftp
  Group nogroup
  UserAlias anonymous ftp
  RequireValidShell off
  <Limit WRITE>
    AllowAll
  </Limit>
</Anonymous>
CONF
      spawn "$n" "$conf/log" "$PEERS/proftpd-core/usr/sbin/proftpd" -n -q -c "$conf/proftpd.conf" ;;
    pyftpdlib)
      spawn "$n" "$conf/log" "$PY" "$E2E_DIR/pyftpd.py" -i :: -p 21 -w -d "$FTPROOT" -r 30000-30999 ;;
  esac
}

# ------------------------------------------------------------------ clients
#
# run_client CLIENT MODE OP HOST FILE OUT [PORT] [USER]
#   CLIENT: curl lftp ftplib wget ftp; MODE: epsv pasv eprt port (curl),
#   passive active (others); OP: get put. Prints nothing; exit status says.

CLIENT_NS=${CLIENT_NS:-cli}

run_client() {
  local client=$1 mode=$2 op=$3 host=$4 file=$5 out=$6 port=${7:-21} user=${8:-anonymous}
  local url_host=$host
  [[ $host == *:* ]] && url_host="[$host]"
  case "$client" in
    curl)
      local flags=(-s -S --connect-timeout 5 --max-time 20)
      case "$mode" in
        epsv) ;;
        pasv) flags+=(--disable-epsv) ;;
        eprt) flags+=(--ftp-port -) ;;
        port) flags+=(--ftp-port - --disable-eprt) ;;
      esac
      local cred=""
      if [[ $user == *:* ]]; then
        # curl splits --user at the first colon, so a user naming an IPv6
        # server goes percent-encoded into the URL instead.
        cred="$("$PY" -c 'import sys, urllib.parse as u; print(u.quote(sys.argv[1], safe=""))' "$user"):ftpalg%40@"
      else
        flags+=(--user "$user:ftpalg@")
      fi
      local url="ftp://$cred$url_host:$port/$file"
      if [ "$op" = get ]; then
        inns "$CLIENT_NS" "${CURL[@]}" "${flags[@]}" -o "$out" "$url"
      else
        inns "$CLIENT_NS" "${CURL[@]}" "${flags[@]}" -T "$out" "$url"
      fi ;;
    lftp)
      local pm=on
      [ "$mode" = active ] && pm=off
      local cmd="set ftp:passive-mode $pm; set net:max-retries 1; set net:timeout 6; set net:reconnect-interval-base 1; set cmd:fail-exit yes; set xfer:clobber on;"
      if [ "$op" = get ]; then cmd+=" get /$file -o $out; bye"; else cmd+=" put $out -o /$file; bye"; fi
      inns "$CLIENT_NS" timeout 25 lftp -u "$user,ftpalg@" -p "$port" -e "$cmd" "$host" </dev/null ;;
    ftplib)
      inns "$CLIENT_NS" timeout 25 "$PY" - "$mode" "$op" "$host" "$port" "$file" "$out" "$user" <<'PY'
import ftplib, sys
mode, op, host, port, name, out, user = sys.argv[1:8]
f = ftplib.FTP(timeout=8)
f.connect(host, int(port))
f.login(user, "ftpalg@")
f.set_pasv(mode == "passive")
if op == "get":
    with open(out, "wb") as fh:
        f.retrbinary("RETR /" + name, fh.write)
else:
    with open(out, "rb") as fh:
        f.storbinary("STOR /" + name, fh)
f.quit()
PY
      ;;
    ftp)
      # The classic command-line client (inetutils), active by default like
      # Windows' ftp.exe. It exits 0 whatever happened: the caller compares
      # the files, and a transfer error it prints is made the status here.
      # It has no connect timeout of its own: 8 s in all, like the others'.
      # In passive mode it refuses a 227 naming another address than the
      # server's ("Passive mode address mismatch").
      local am=-A cmd
      [ "$mode" = passive ] && am=-p
      if [ "$op" = get ]; then cmd="get /$file $out"; else cmd="put $out /$file"; fi
      local said
      said=$(printf 'user %s ftpalg@\nbinary\n%s\nquit\n' "$user" "$cmd" \
        | inns "$CLIENT_NS" timeout 8 inetutils-ftp -n -v -e $am "$host" "$port" 2>&1)
      printf '%s\n' "$said"
      ! grep -Eq '^(425|426|451|550|553) ' <<<"$said" ;;
    wget)
      local flags=(-q -T 8 -t 1 -O "$out" --user="$user" --password="ftpalg@")
      [ "$mode" = active ] && flags+=(--no-passive-ftp)
      inns "$CLIENT_NS" wget "${flags[@]}" "ftp://$url_host:$port/$file" ;;
  esac
}

# The client x mode x operation matrix: "client mode op" lines.
client_matrix() {
  local c m
  for m in epsv pasv eprt port; do echo "curl $m get"; echo "curl $m put"; done
  for c in lftp ftplib ftp; do for m in passive active; do echo "$c $m get"; echo "$c $m put"; done; done
  for m in passive active; do echo "wget $m get"; done
}
