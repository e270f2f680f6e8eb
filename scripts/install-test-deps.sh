#!/usr/bin/env bash
# Installs the system packages the end-to-end tests, the demo and the
# benchmarks need: real FTP servers and clients, nftables, tcpdump; and
# what the packaging tests need: systemd-analyze, groff, man, dpkg-dev
# (dpkg-shlibdeps, dpkg-gencontrol) and lintian.
#
# Debian's FTP servers conflict with each other (each provides
# "ftp-server"), so vsftpd is installed as a package and pure-ftpd and
# proftpd are unpacked from their Debian packages into $PEERS, with their
# libraries installed normally. Idempotent; never leaves an FTP daemon
# running as a system service: the tests start their own.
set -euo pipefail

PEERS=${FTPALG_PEERS:-/opt/ftpalg-peers}
pkgs=(iproute2 nftables tcpdump curl lftp wget inetutils-ftp vsftpd python3 python3-pyftpdlib procps psmisc
      libcap2 libcrypt1 libpam0g libsodium23 libssl3 libacl1 libhiredis0.14 libidn2-0
      libmemcached11 libmemcachedutil2 libncursesw6 libpcre2-8-0 libpcre2-posix3 zlib1g libtinfo6
      systemd groff-base man-db dpkg-dev lintian)
unpacked=(pure-ftpd proftpd-core)
# Debian 12's curl 7.88.1 cannot do active FTP at all (curl issue 10622):
# a curl 8 from bookworm-backports is unpacked beside it for the tests. The
# backports source is derived from the machine's own apt sources
# (scripts/apt-backports.sh): the same mirror, components and key.
CURL_BPO=8.14.1-2+deb13u2~bpo13+1
BPO_LIST=/etc/apt/sources.list.d/ftpalg-backports.list

missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
need_unpack=()
for p in "${unpacked[@]}"; do
  [ -d "$PEERS/$p/usr/sbin" ] || need_unpack+=("$p")
done
need_curl=0
[ -x "$PEERS/curl/usr/bin/curl" ] || need_curl=1
[ ${#missing[@]} -eq 0 ] && [ ${#need_unpack[@]} -eq 0 ] && [ $need_curl -eq 0 ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
  echo "install-test-deps: need root to install: ${missing[*]} ${need_unpack[*]}" >&2
  exit 1
fi

export DEBIAN_FRONTEND=noninteractive
if [ $need_curl -eq 1 ] && [ ! -e "$BPO_LIST" ] && grep -qs bookworm /etc/os-release; then
  # Backports have priority 100: nothing is upgraded from them unless asked.
  # Prints nothing when the machine already has them.
  line=$(bash "$(dirname "$0")/apt-backports.sh") || {
    echo "install-test-deps: cannot derive a bookworm-backports source from /etc/apt; add one and run again" >&2
    exit 1
  }
  [ -z "$line" ] || echo "$line" >"$BPO_LIST"
fi
apt-get update -qq
if [ ${#missing[@]} -gt 0 ]; then
  echo "install-test-deps: installing ${missing[*]}"
  # Keep package scripts from starting the daemons they install (vsftpd
  # among them): the tests start their own. Removed however apt-get ends.
  guard=/usr/sbin/policy-rc.d
  if [ ! -e "$guard" ]; then
    printf '#!/bin/sh\nexit 101\n' > "$guard"
    chmod +x "$guard"
    trap 'rm -f "$guard"' EXIT
  fi
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if [ ${#need_unpack[@]} -gt 0 ]; then
  echo "install-test-deps: unpacking ${need_unpack[*]} into $PEERS"
  tmp=$(mktemp -d)
  chmod 755 "$tmp"
  (cd "$tmp" && apt-get download "${need_unpack[@]}" >/dev/null)
  for p in "${need_unpack[@]}"; do
    rm -rf "${PEERS:?}/$p"
    mkdir -p "$PEERS/$p"
    dpkg-deb -x "$tmp"/"${p}"_*.deb "$PEERS/$p"
  done
  rm -rf "$tmp"
fi

if [ $need_curl -eq 1 ]; then
  echo "install-test-deps: unpacking curl $CURL_BPO into $PEERS/curl"
  tmp=$(mktemp -d)
  chmod 755 "$tmp"
  (cd "$tmp" && apt-get download "curl=$CURL_BPO" "libcurl4=$CURL_BPO" >/dev/null)
  rm -rf "${PEERS:?}/curl"
  mkdir -p "$PEERS/curl"
  for d in "$tmp"/*.deb; do dpkg-deb -x "$d" "$PEERS/curl"; done
  rm -rf "$tmp"
fi
