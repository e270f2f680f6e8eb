#!/usr/bin/env python3
"""Why the lab starts pyftpdlib through tests/e2e/pyftpd.py, and that it
helps: session A downloads in active mode (its data socket is closed),
client B connects (and may be given that socket's descriptor number), A
quits. Stock pyftpdlib 1.5.7 then never answers B's USER; the lab's
launcher must. Loopback only; ends every server it starts."""
import ftplib
import os
import socket
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
LAUNCHER = os.path.join(HERE, "..", "e2e", "pyftpd.py")
PY = "/usr/bin/python3"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def b_answered(cmd, root):
    """Runs the sequence against a server started by CMD; True if B logs in."""
    port = free_port()
    log = open(os.path.join(root, "server.log"), "a")
    srv = subprocess.Popen(cmd + ["-i", "127.0.0.1", "-p", str(port), "-d", root],
                           stdout=log, stderr=log)
    try:
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port), 0.2).close()
                break
            except OSError:
                time.sleep(0.05)
        a = ftplib.FTP(timeout=5)
        a.connect("127.0.0.1", port)
        a.login()
        a.set_pasv(False)
        got = []
        a.retrbinary("RETR f", got.append)
        assert sum(map(len, got)) == 65536, "A's download is short"
        b = ftplib.FTP(timeout=2)
        b.connect("127.0.0.1", port)
        a.quit()
        try:
            b.login()
            b.quit()
            return True
        except (socket.timeout, TimeoutError):
            return False
    finally:
        srv.terminate()
        srv.wait(5)


def main():
    with tempfile.TemporaryDirectory() as root:
        with open(os.path.join(root, "f"), "wb") as f:
            f.write(os.urandom(65536))
        stock = b_answered([PY, "-m", "pyftpdlib"], root)
        fixed = b_answered([PY, LAUNCHER], root)
    print("pyftpd-fd-reuse: stock pyftpdlib answers B: %s; lab launcher answers B: %s" % (stock, fixed))
    if not fixed:
        print("FAIL: the lab's pyftpdlib left a new session unanswered", file=sys.stderr)
        return 1
    if stock:
        print("FAIL: stock pyftpdlib answers now: tests/e2e/pyftpd.py may be retired", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
