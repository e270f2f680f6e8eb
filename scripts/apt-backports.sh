#!/usr/bin/env bash
# Prints the apt source line for <codename>-backports, derived from the
# machine's own main Debian archive entry: the same URI, components and
# signing key, so that the project names no mirror of its own.
#
#   scripts/apt-backports.sh [APT_DIR [CODENAME]]
#
# APT_DIR (default /etc/apt) is read as apt reads it: sources.list, then
# sources.list.d/*.list (one-line format) and sources.list.d/*.sources
# (deb822), in name order. CODENAME defaults to VERSION_CODENAME in
# /etc/os-release. The main archive entry is an enabled "deb" entry for
# suite CODENAME with component "main"; among several, one signed by the
# Debian archive keyring or with a URI ending in /debian is preferred.
#
# Prints the line on stdout and exits 0; prints nothing (and says so on
# stderr) and exits 0 when CODENAME-backports is already configured;
# exits 1 when no main archive entry is found.
set -euo pipefail

dir=${1:-/etc/apt}
codename=${2:-}
if [ -z "$codename" ] && [ -r /etc/os-release ]; then
  codename=$(. /etc/os-release && echo "${VERSION_CODENAME:-}")
fi
if [ -z "$codename" ]; then
  echo "apt-backports: no release codename (give one, or VERSION_CODENAME in /etc/os-release)" >&2
  exit 1
fi

files=()
[ -f "$dir/sources.list" ] && files+=("$dir/sources.list")
for f in "$dir"/sources.list.d/*; do
  case "$f" in *.list | *.sources) [ -f "$f" ] && files+=("$f") ;; esac
done

# One record per source: type, URI, suite, components, signed-by (a key
# file path; empty when absent or given inline), file. Fields are
# separated by "|", which none of them contains in practice.
records() {
  local f
  for f in "${files[@]}"; do
    case "$f" in
      *.sources) awk -v file="$f" -f - "$f" <<'AWK'
function flush(   nt, nu, ns, ti, ui, si, T, U, S, key) {
  if (!n) return
  if (tolower(v["enabled"]) != "no") {
    key = v["signed-by"]
    # An inline key spans several lines: it cannot be named in a one-line entry.
    if (key ~ /\n/) key = ""
    nt = split(v["types"], T, /[ \t]+/)
    nu = split(v["uris"], U, /[ \t]+/)
    ns = split(v["suites"], S, /[ \t]+/)
    for (ti = 1; ti <= nt; ti++) for (ui = 1; ui <= nu; ui++) for (si = 1; si <= ns; si++)
      if (T[ti] != "" && U[ui] != "" && S[si] != "")
        print T[ti] "|" U[ui] "|" S[si] "|" v["components"] "|" key "|" file
  }
  n = 0
  split("", v)
}
/^#/ { next }
/^[ \t]*$/ { flush(); next }
/^[ \t]/ { if (last != "") { sub(/^[ \t]+/, ""); v[last] = v[last] "\n" $0 }; next }
{
  i = index($0, ":")
  if (!i) next
  last = tolower(substr($0, 1, i - 1))
  val = substr($0, i + 1)
  gsub(/^[ \t]+|[ \t]+$/, "", val)
  v[last] = val
  n++
}
END { flush() }
AWK
        ;;
      *) awk -v file="$f" -f - "$f" <<'AWK'
{
  sub(/#.*/, "")
  if (NF < 3) next
  type = $1; i = 2; key = ""
  if ($2 ~ /^\[/) {
    # Options: [a=b c=d], spaces allowed inside the brackets.
    opts = ""
    for (; i <= NF; i++) { opts = opts " " $i; if ($i ~ /\]$/) { i++; break } }
    gsub(/[\[\]]/, " ", opts)
    no = split(opts, O, /[ \t]+/)
    for (j = 1; j <= no; j++) if (tolower(O[j]) ~ /^signed-by=/) key = substr(O[j], 11)
  }
  if (i + 1 > NF) next
  uri = $i; suite = $(i + 1); comps = ""
  for (j = i + 2; j <= NF; j++) comps = comps (comps == "" ? "" : " ") $j
  print type "|" uri "|" suite "|" comps "|" key "|" file
}
AWK
        ;;
    esac
  done
}

all=$(records)
if have=$(printf '%s\n' "$all" | awk -F'|' -v s="$codename-backports" '$1 == "deb" && $3 == s { print $6; exit }') && [ -n "$have" ]; then
  echo "apt-backports: $codename-backports is already configured in $have" >&2
  exit 0
fi
main=$(printf '%s\n' "$all" | awk -F'|' -v s="$codename" '
  $1 == "deb" && $3 == s && (" " $4 " ") ~ / main / && $2 !~ /^cdrom:/ {
    score = ($5 ~ /debian-archive-keyring/) * 2 + ($2 ~ /\/debian\/?$/)
    if (!found || score > best) { best = score; line = $0; found = 1 }
  }
  END { if (found) print line }')
if [ -z "$main" ]; then
  echo "apt-backports: no enabled 'deb' entry for suite $codename with component main in ${files[*]:-$dir (no source files)}" >&2
  exit 1
fi
IFS='|' read -r _ uri _ comps key _ <<<"$main"
opt=""
[ -n "$key" ] && opt="[signed-by=$key] "
echo "deb $opt$uri $codename-backports $comps"
