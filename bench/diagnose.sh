#!/usr/bin/env bash
# `ftpalg diagnose` speed and footprint: builds a large capture (one bulk
# transfer of SIZE_MB MiB, full frames, plus SESSIONS small sessions copied
# from the lab captures in tests/captures), diagnoses it on one core, and
# reports MB/s and peak memory; then the same sessions with a bulk transfer
# a quarter the size, to show peak memory does not grow with the bytes (it
# grows only with the sessions reported, at most 10000). Needs no root.
#
#   bench/diagnose.sh                    1024 MiB + 5000 sessions
#   SIZE_MB=256 SESSIONS=2000 bench/diagnose.sh
set -u
REPO=$(cd "$(dirname "$0")/.." && pwd)
FTPALG=${FTPALG:-$REPO/target/release/ftpalg}
OUT=$REPO/target/bench/diagnose
SIZE_MB=${SIZE_MB:-1024}
SESSIONS=${SESSIONS:-5000}
MIN_MBPS=${MIN_MBPS:-300}
[ -x "$FTPALG" ] || { echo "bench: build first: $FTPALG missing" >&2; exit 1; }
mkdir -p "$OUT"

make_capture() { # make_capture FILE SIZE_MB SESSIONS
  python3 - "$1" "$2" "$3" "$REPO/tests/captures" <<'PY'
import struct, sys, glob
out, size_mb, sessions, capdir = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]

def csum(b):
    s = sum(struct.unpack("!%dH" % (len(b) // 2), b))
    s = (s >> 16) + (s & 0xffff)
    return (~(s + (s >> 16))) & 0xffff

def frame(src, dst, sport, dport, seq, ack, flags, payload):
    tcp = struct.pack("!HHIIBBHHH", sport, dport, seq & 0xffffffff, ack & 0xffffffff, 5 << 4, flags, 64240, 0, 0)
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp) + len(payload), 0, 0x4000, 64, 6, 0, bytes(src), bytes(dst))
    ip = ip[:10] + struct.pack("!H", csum(ip)) + ip[12:]
    return b"\x02\0\0\0\0\x02\x02\0\0\0\0\x01\x08\x00" + ip + tcp + payload

f = open(out, "wb", buffering=1 << 20)
f.write(struct.pack("<IHHiIII", 0xa1b2c3d4, 2, 4, 0, 0, 262144, 1))
t = [0.0]
def put(data):
    t[0] += 0.00001
    sec = int(t[0]); usec = int((t[0] - sec) * 1e6)
    f.write(struct.pack("<IIII", 1700000000 + sec, usec, len(data), len(data)))
    f.write(data)

cli, srv = [100, 64, 0, 2], [198, 51, 100, 10]
ctl = [b"220 FTP ready\r\n", b"USER anonymous\r\n", b"230 ok\r\n", b"EPSV\r\n", b"229 Entering Extended Passive Mode (|||30000|)\r\n", b"RETR big\r\n", b"150 here it comes\r\n"]
cs, ss = 1000, 5000
put(frame(cli, srv, 40000, 21, cs - 1, 0, 0x02, b""))
put(frame(srv, cli, 21, 40000, ss - 1, cs, 0x12, b""))
for i, line in enumerate(ctl):
    if i % 2 == 0 and i != 1 and not line.startswith(b"USER") and not line.startswith(b"EPSV") and not line.startswith(b"RETR"):
        put(frame(srv, cli, 21, 40000, ss, cs, 0x18, line)); ss += len(line)
    else:
        put(frame(cli, srv, 40000, 21, cs, ss, 0x18, line)); cs += len(line)
# The bulk transfer: full 1448-byte segments, an ACK every other one.
put(frame(cli, srv, 40001, 30000, 99, 0, 0x02, b""))
put(frame(srv, cli, 30000, 40001, 199, 100, 0x12, b""))
payload = bytes(range(256)) * 6
payload = payload[:1448]
seq = 200
n = size_mb * 1024 * 1024 // 1448
for i in range(n):
    put(frame(srv, cli, 30000, 40001, seq, 100, 0x10, payload))
    seq += 1448
    if i % 2:
        put(frame(cli, srv, 40001, 30000, 100, seq, 0x10, b""))
put(frame(srv, cli, 30000, 40001, seq, 100, 0x11, b""))
put(frame(srv, cli, 21, 40000, ss, cs, 0x18, b"226 done\r\n"))
# Many small sessions: the lab's captures, replayed with other client ports.
def frames(path):
    d = open(path, "rb").read()
    at, res = 24, []
    while at + 16 <= len(d):
        _, _, incl, orig = struct.unpack("<IIII", d[at:at + 16])
        res.append(d[at + 16:at + 16 + incl]); at += 16 + incl
    return res
pool = [frames(p) for p in sorted(glob.glob(capdir + "/*.inside.pcap"))]
for k in range(sessions):
    fr = pool[k % len(pool)]
    shift = k // len(pool) + 1
    for data in fr:
        data = bytearray(data)
        # Move the client's ports (control and data) so sessions differ.
        for at in (34, 36):
            p = struct.unpack("!H", data[at:at + 2])[0]
            if p >= 32768:
                data[at:at + 2] = struct.pack("!H", 32768 + (p - 32768 + shift * 97) % 32767)
        put(bytes(data))
f.close()
PY
}

peak() { # peak FILE -> "seconds max_rss_kib"
  local log="$OUT/time.log"
  /usr/bin/time -f "%e %M" -o "$log" taskset -c 0 "$FTPALG" diagnose --format json "$1" >"$OUT/report.json" 2>"$OUT/stderr.log"
  cat "$log" | tail -1
}

big=$OUT/large.pcap
small=$OUT/quarter.pcap
echo "building $SIZE_MB MiB + $SESSIONS sessions ..."
make_capture "$big" "$SIZE_MB" "$SESSIONS"
make_capture "$small" "$((SIZE_MB / 4))" "$SESSIONS"
bytes=$(stat -c %s "$big"); qbytes=$(stat -c %s "$small")
cat "$big" >/dev/null; cat "$small" >/dev/null   # warm the page cache
read -r secs rss < <(peak "$big")
sessions=$(python3 -c 'import json,sys; print(len(json.load(open(sys.argv[1]))["sessions"]))' "$OUT/report.json")
read -r qsecs qrss < <(peak "$small")
mbps=$(python3 -c "print(round($bytes / 1e6 / max($secs, 0.01)))")
echo "diagnose: $((bytes / 1048576)) MiB capture, $sessions sessions, ${secs}s on one core: ${mbps} MB/s, peak RSS $((rss / 1024)) MiB"
echo "diagnose: $((qbytes / 1048576)) MiB capture: ${qsecs}s, peak RSS $((qrss / 1024)) MiB"
ok=1
[ "$mbps" -ge "$MIN_MBPS" ] || { echo "diagnose: below $MIN_MBPS MB/s" >&2; ok=0; }
rm -f "$big" "$small"
[ $ok = 1 ]
