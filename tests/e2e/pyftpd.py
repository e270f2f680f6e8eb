#!/usr/bin/env python3
"""The lab's pyftpdlib: `python3 -m pyftpdlib ARGS` with one known bug fixed.

pyftpdlib 1.5.7 (Debian 12) keeps an active-mode connector's file
descriptor number after the data connection it made has been handed on;
when the session ends, it unregisters that number from its I/O loop. If a
new control connection was accepted meanwhile and was given the number
(the data socket had been closed), that connection is dropped from the
loop: its USER is acknowledged by TCP and never answered. It needs no
gateway, only two clients in parallel, as the lab's rows run
(tests/scripts/pyftpd-fd-reuse.py shows it). Upstream pull request 657 of
pyftpdlib makes the connector forget the number once connected; this does
the same.
"""
import runpy

from pyftpdlib.handlers import ActiveDTP

_handle_connect = ActiveDTP.handle_connect


def handle_connect(self):
    try:
        return _handle_connect(self)
    finally:
        # The socket now belongs to the data channel: this object must not
        # unregister its number again when the session closes it.
        self._fileno = None


ActiveDTP.handle_connect = handle_connect
runpy.run_module("pyftpdlib", run_name="__main__", alter_sys=True)
