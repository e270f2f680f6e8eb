"""A raw FTP control connection for the lab's security checks, where a
real client would refuse to send what the test needs to send."""

import socket


class Ctl:
    def __init__(self, host, port, timeout=10):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.file = self.sock.makefile("rb")

    def reply(self):
        """The last line of the next reply (multi-line replies skipped)."""
        line = self.file.readline()
        while line[3:4] == b"-":
            line = self.file.readline()
        return line.decode().strip()

    def line(self):
        """One raw line, whatever it is."""
        return self.file.readline().decode().strip()

    def send(self, command):
        self.sock.sendall(command.encode() + b"\r\n")

    def cmd(self, command):
        self.send(command)
        return self.reply()
