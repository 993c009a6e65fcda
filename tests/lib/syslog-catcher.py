#!/usr/bin/env python3
"""syslog-catcher.py SOCKET OUT: a syslog daemon for the deploy tests.

Binds the AF_UNIX datagram socket SOCKET (what syslog(3) writes to, /dev/log)
and appends every datagram to OUT, one line each, as received ("<PRI>..."),
until SIGTERM.  It runs inside a test's own mount namespace, where /dev is
a private tmpfs, so the machine's /dev/log is never touched.
"""
import os
import signal
import socket
import sys

path, out = sys.argv[1], sys.argv[2]
signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
if os.path.exists(path):
    os.unlink(path)
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(path)
os.chmod(path, 0o666)
with open(out, 'ab', buffering=0) as f:
    while True:
        data = s.recv(65536)
        f.write(data.rstrip(b'\0\n') + b'\n')
