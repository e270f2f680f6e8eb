#!/usr/bin/env bash
# make demo: the seed's case, live. A client behind carrier-grade NAT
# (100.64.0.2) downloads from an FTP server whose firewall opens only port
# 21. Without ftpalg every mode fails; with ftpalg on the gateway every
# mode works. Builds the lab in network namespaces and removes it after.
set -u
source "$(dirname "$0")/lib.sh"
LAB=${LAB:-fademo}
STATE=$REPO/target/demo
[ "$(id -u)" -eq 0 ] || { echo "make demo needs root (network namespaces)" >&2; exit 1; }
[ -x "$FTPALG" ] || { echo "build first: $FTPALG missing" >&2; exit 1; }

trap 'lab_down' EXIT
trap 'exit 130' INT TERM
say() { printf '\n\033[1m%s\033[0m\n' "$*"; }
try() { # try LABEL CLIENT MODE
  rm -f "$STATE/out"
  local t0=$SECONDS
  if run_client "$2" "$3" get 198.51.100.10 "$LAB/report.pdf" "$STATE/out" >"$STATE/err" 2>&1 && cmp -s "$STATE/out" "$FTPROOT/$LAB/report.pdf"; then
    printf '  %-34s ok    (%ss)\n' "$1" $((SECONDS - t0))
  else
    printf '  %-34s FAIL  (%ss) %s\n' "$1" $((SECONDS - t0)) "$(tr '\n' ' ' <"$STATE/err" | cut -c1-70)"
  fi
}

say "Building the lab: cli 100.64.0.2 --(CGNAT gateway 100.64.0.1 / 198.51.100.1)-- srv 198.51.100.10"
lab_up || exit 1
head -c 1048576 /dev/urandom >"$FTPROOT/$LAB/report.pdf"
chmod 644 "$FTPROOT/$LAB/report.pdf"
start_server vsftpd srv >/dev/null
wait_port srv 198.51.100.10 21
srv_firewall_on
echo "  vsftpd on srv; srv's firewall accepts only tcp 21 and established traffic (the seed's server)"

say "1. Plain NAT, no helper (what the carrier gives you)"
try "passive (curl, EPSV)" curl epsv
try "active (curl, PORT)" curl port

say "2. The kernel's FTP helper on the gateway (nf_conntrack_ftp + nf_nat_ftp)"
kernel_helper_on
try "passive (curl, EPSV)" curl epsv
try "active (curl, PORT)" curl port
kernel_helper_off

say "3. ftpalg on the gateway (rules/cgnat-gateway.yaml with the lab's servers, docs/nftables-transparent.nft)"
transparent_on
spawn gw "$STATE/ftpalg.log" "$FTPALG" run --rules "$(lab_rules rules/cgnat-gateway.yaml)" >/dev/null
wait_port gw 100.64.0.1 2100
try "passive (curl, EPSV)" curl epsv
try "passive (curl, PASV)" curl pasv
try "active (curl, PORT)" curl port
try "passive (lftp)" lftp passive
try "active (Python ftplib)" ftplib active
try "passive (wget)" wget passive

say "What happened"
cat <<'TXT'
  1. Passive: the server's data port is closed by its firewall, so the
     client's connection to it times out. Active: the client's PORT names
     100.64.0.2, a private address the server neither accepts nor reaches.
  2. The kernel helper rewrites PORT and opens the way back, so active
     works; passive still needs the server's closed high ports.
  3. ftpalg speaks passive to the client and, seeing the server's passive
     port dead, active (PORT) to the server, relaying the data itself.
     Every client in its default mode succeeds.
TXT
echo
grep -E "switching|active mode towards|transfer" "$STATE/ftpalg.log" | head -3 | sed 's/^/  log: /'
