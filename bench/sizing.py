#!/usr/bin/env python3
"""What one session, one prepared data channel and one running transfer
cost the gateway, measured on loopback (docs/deploy/lifecycle.md, "Size").

    cargo build --release --bin ftpalg --example ftpload
    python3 bench/sizing.py [N]            (N sessions, default 500)

Starts `ftpload serve` (a server that sends 1 GiB for any RETR) and
`ftpalg run` in front of it (an explicit listener, the relay), then, with
N clients, takes the gateway's open descriptors (by kind, from
/proc/PID/fd) and its RSS (VmRSS) at four points: after a warm-up of 20
complete transfers; with N logged-in idle sessions; with each of them
holding a prepared passive data channel (EPSV answered, no connection
yet: a pinhole); and with each running a download that its client does
not read, so that every relay is alive and stalled. The kernel memory
held in the gateway's socket queues is read with `ss -tme` (the receive
and send queues of the sockets /proc/PID/fd lists); a stalled relay's
pipe holds up to 64 KiB more, not counted. Prints the totals and the cost
of one more of each, as the difference divided by N. Loopback only; no
root needed.
"""

import os
import re
import resource
import socket
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FTPALG = os.environ.get("FTPALG", os.path.join(REPO, "target/release/ftpalg"))
FTPLOAD = os.environ.get("FTPLOAD", os.path.join(REPO, "target/release/examples/ftpload"))
SERVER = ("127.0.0.1", 2190)
GATEWAY = ("127.0.0.1", 2191)
RULES = f"""listeners:
  - name: sizing
    listen: {GATEWAY[0]}:{GATEWAY[1]}
    kind: explicit
    upstream: {SERVER[0]}:{SERVER[1]}
    server_mode: passive
data:
  client_ports: 42000-44999
  server_ports: 45000-47999
  pinhole_timeout: 120s
limits:
  sessions: 5000
  sessions_per_client: 5000
"""


def wait_port(addr, limit=5.0):
    end = time.time() + limit
    while time.time() < end:
        try:
            socket.create_connection(addr, timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    sys.exit(f"nothing listens on {addr}")


def socket_kib(inodes):
    """Kernel memory of the gateway's TCP sockets: what `ss -tme` says
    each holds in its receive queue (r) and send queue (w)."""
    out = subprocess.run(["ss", "-tanmeH"], capture_output=True, text=True).stdout
    total = 0
    # ss prints a socket's line, then its skmem on the same or next line.
    for chunk in out.replace("\n\t", " ").splitlines():
        ino = re.search(r"ino:(\d+)", chunk)
        mem = re.search(r"skmem:\(r(\d+),rb\d+,t\d+,tb\d+,f\d+,w(\d+)", chunk)
        if ino and mem and ino.group(1) in inodes:
            total += int(mem.group(1)) + int(mem.group(2))
    return total // 1024


def snapshot(pid):
    kinds = {"socket": 0, "pipe": 0, "other": 0}
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        kind = target.split(":", 1)[0]
        kinds[kind if kind in kinds else "other"] += 1
        if kind == "socket":
            inodes.add(target.split("[")[1].rstrip("]"))
    with open(f"/proc/{pid}/status") as f:
        rss = next(int(l.split()[1]) for l in f if l.startswith("VmRSS:"))
    return {"fds": sum(kinds.values()), **kinds, "rss_kib": rss, "sock_kib": socket_kib(inodes)}


class Ctrl:
    """One control connection through the gateway."""

    def __init__(self):
        self.s = socket.create_connection(GATEWAY, timeout=10)
        self.f = self.s.makefile("rb")
        self.reply()
        self.cmd("USER u")
        assert self.cmd("PASS p").startswith("230")

    def reply(self):
        line = self.f.readline().decode()
        while len(line) > 3 and line[3] == "-":
            line = self.f.readline().decode()
        return line

    def cmd(self, line):
        self.s.sendall(line.encode() + b"\r\n")
        return self.reply()

    def epsv(self):
        r = self.cmd("EPSV")
        assert r.startswith("229"), r
        return int(r.split("|||")[1].split("|")[0])


def data_connect(port):
    d = socket.socket()
    d.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    d.connect((GATEWAY[0], port))
    return d


def main():
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 500
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if hard < 4 * n + 100:
        sys.exit(f"the open-file limit ({hard}) is too low for {n} sessions here")
    tmp = tempfile.mkdtemp()
    rules = os.path.join(tmp, "rules.yaml")
    with open(rules, "w") as f:
        f.write(RULES)
    log = open(os.path.join(tmp, "ftpalg.log"), "w")
    server = subprocess.Popen([FTPLOAD, "serve", "--listen", "%s:%d" % SERVER, "--size", str(1 << 30)],
                              stdout=subprocess.DEVNULL)
    gw = subprocess.Popen([FTPALG, "run", "--rules", rules], stderr=log)
    try:
        wait_port(SERVER)
        wait_port(GATEWAY)
        # Warm-up: complete transfers of 1 MiB, so the allocator and the
        # runtime have grown to their working size.
        for _ in range(20):
            c = Ctrl()
            d = data_connect(c.epsv())
            c.cmd("RETR f")
            got = 0
            while got < 1 << 20:
                got += len(d.recv(65536))
            d.close()
            c.s.close()
        time.sleep(1)
        points = [("baseline (after warm-up)", snapshot(gw.pid))]
        sessions = [Ctrl() for _ in range(n)]
        time.sleep(1)
        points.append((f"{n} idle logged-in sessions", snapshot(gw.pid)))
        ports = [c.epsv() for c in sessions]
        time.sleep(1)
        points.append((f"{n} prepared passive channels", snapshot(gw.pid)))
        datas = []
        for c, p in zip(sessions, ports):
            datas.append(data_connect(p))
            c.s.sendall(b"RETR f\r\n")
        for c in sessions:
            assert c.reply().startswith("150")
        time.sleep(2)
        points.append((f"{n} running transfers, stalled", snapshot(gw.pid)))
        print(f"{'point':36} {'fds':>6} {'sockets':>8} {'pipes':>6} {'RSS KiB':>9} {'socket queues KiB':>18}")
        for name, s in points:
            print(f"{name:36} {s['fds']:>6} {s['socket']:>8} {s['pipe']:>6} {s['rss_kib']:>9} {s['sock_kib']:>18}")
        print(f"\none more of each, over {n}:")
        for (_, a), (name, b) in zip(points, points[1:]):
            print(f"  {name.split(' ', 1)[1]:34} {(b['fds'] - a['fds']) / n:5.2f} fds "
                  f"({(b['socket'] - a['socket']) / n:.2f} sockets, {(b['pipe'] - a['pipe']) / n:.2f} pipes), "
                  f"{(b['rss_kib'] - a['rss_kib']) / n:6.2f} KiB RSS, "
                  f"{(b['sock_kib'] - a['sock_kib']) / n:7.2f} KiB in socket queues")
        for d in datas:
            d.close()
        for c in sessions:
            c.s.close()
    finally:
        gw.terminate()
        server.terminate()
        gw.wait(timeout=60)
        server.wait(timeout=10)


if __name__ == "__main__":
    main()
