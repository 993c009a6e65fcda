#!/usr/bin/env python3
"""smtpclient.py: a scripted SMTP client for the mailslot tests.

It talks to mailslot either over TCP (--port, loopback only; --bind ADDR
connects from that 127.x address) or by starting
the command after "--" itself with a pipe on stdin and stdout (--exec).
The steps run in the order given on the command line:

  --send STR        send STR; escapes \\r \\n \\t \\\\ \\0 \\xHH are decoded
  --send-file PATH  send the file's bytes, streamed
  --repeat STR N    send STR (escapes decoded) N times, streamed in chunks
  --pause SECS      sleep
  --wait STR        wait until STR appears in the replies after the point
                    where the previous --wait matched (bounded by --timeout)
  --run CMD         run a shell command (e.g. to send a signal)
  --signal NAME     (--exec) send signal NAME (TERM, HUP...) to the child
  --shut            half-close: shutdown(SHUT_WR), or close the child's stdin
  --hwm             (--exec) note the child's VmHWM from /proc/PID/status
                    now, as vmhwm_kb in the report: read while mailslot
                    still waits for the next command, it is the peak RSS
                    of everything so far (ru_maxrss is no use: Linux
                    carries the forked Python's RSS over the exec)

Then it reads until the server closes or --timeout seconds pass, and writes
every byte it got to --out (default stdout).  --report FILE gets key=value
lines: closed (yes/no), senderror, waitfail, and with --exec the child's
exit status (exit, signal) and peak RSS (maxrss_kb, from wait4).
--stderr FILE takes the child's stderr (--exec only).
--noread: never read (a client that stops reading; TCP only); sends give up
after --timeout seconds, and the client closes without waiting.
"""
import argparse
import codecs
import os
import signal
import socket
import subprocess
import sys
import threading
import time


def unescape(s):
    return codecs.escape_decode(s.encode('utf-8', 'surrogateescape'))[0]


class Step(argparse.Action):
    def __call__(self, parser, ns, values, option_string=None):
        steps = getattr(ns, 'steps', None) or []
        steps.append((self.dest, values))
        ns.steps = steps


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--port', type=int)
    ap.add_argument('--host', default='127.0.0.1')
    ap.add_argument('--bind', help='local address to connect from (127.x)')
    ap.add_argument('--exec', action='store_true', dest='exec_')
    ap.add_argument('--timeout', type=float, default=10.0)
    ap.add_argument('--out')
    ap.add_argument('--report')
    ap.add_argument('--stderr')
    ap.add_argument('--noread', action='store_true')
    for name, nargs in (('send', None), ('send_file', None), ('repeat', 2),
                        ('pause', None), ('wait', None), ('run', None),
                        ('shut', 0), ('hwm', 0), ('signal', None)):
        ap.add_argument('--' + name.replace('_', '-'), dest=name,
                        nargs=nargs, action=Step)
    ap.add_argument('cmd', nargs='*')
    args = ap.parse_args()
    steps = getattr(args, 'steps', None) or []
    if not (args.host in ('::1', 'localhost') or args.host.startswith('127.')):
        sys.exit('smtpclient: loopback only')
    if args.bind is not None and not args.bind.startswith('127.'):
        sys.exit('smtpclient: --bind: loopback only')

    child = None
    if args.exec_:
        if not args.cmd:
            sys.exit('smtpclient: --exec needs a command after --')
        errf = open(args.stderr, 'wb') if args.stderr else None
        child = subprocess.Popen(args.cmd, stdin=subprocess.PIPE,
                                 stdout=subprocess.PIPE, stderr=errf,
                                 bufsize=0)
        if errf:
            errf.close()
        wfile, rfd = child.stdin, child.stdout.fileno()

        def send(b):
            wfile.write(b)

        def shut():
            wfile.close()
    else:
        sock = socket.create_connection(
            (args.host, args.port), timeout=5,
            source_address=(args.bind, 0) if args.bind else None)
        sock.settimeout(args.timeout if args.noread else None)
        rfd = sock.fileno()

        def send(b):
            sock.sendall(b)

        def shut():
            sock.shutdown(socket.SHUT_WR)

    got = bytearray()
    cond = threading.Condition()
    state = {'closed': False}

    def reader():
        while True:
            try:
                b = os.read(rfd, 65536)
            except OSError:
                b = b''
            with cond:
                if not b:
                    state['closed'] = True
                    cond.notify_all()
                    return
                got.extend(b)
                cond.notify_all()

    t = threading.Thread(target=reader, daemon=True)
    if not args.noread:
        t.start()

    report = {'senderror': 'no', 'waitfail': 'no'}
    cursor = 0
    sending = True
    for kind, val in steps:
        if kind in ('send', 'send_file', 'repeat', 'shut') and not sending:
            continue
        try:
            if kind == 'send':
                send(unescape(val))
            elif kind == 'send_file':
                with open(val, 'rb') as f:
                    while True:
                        b = f.read(65536)
                        if not b:
                            break
                        send(b)
            elif kind == 'repeat':
                unit, n = unescape(val[0]), int(val[1])
                per = max(1, 65536 // max(1, len(unit)))
                chunk = unit * per
                while n >= per:
                    send(chunk)
                    n -= per
                if n:
                    send(unit * n)
            elif kind == 'shut':
                shut()
        except (BrokenPipeError, ConnectionResetError, OSError, socket.timeout) as e:
            report['senderror'] = type(e).__name__
            sending = False
            continue
        if kind == 'pause':
            time.sleep(float(val))
        elif kind == 'wait':
            want = unescape(val)
            deadline = time.monotonic() + args.timeout
            with cond:
                while True:
                    i = bytes(got).find(want, cursor)
                    if i >= 0:
                        cursor = i + len(want)
                        break
                    left = deadline - time.monotonic()
                    if state['closed'] or left <= 0:
                        report['waitfail'] = val
                        break
                    cond.wait(min(left, 0.5))
        elif kind == 'hwm':
            kb = ''
            if child is not None:
                try:
                    with open('/proc/%d/status' % child.pid) as f:
                        for line in f:
                            if line.startswith('VmHWM:'):
                                kb = line.split()[1]
                except OSError:
                    pass
            report['vmhwm_kb'] = kb
        elif kind == 'signal':
            if child is not None:
                os.kill(child.pid, getattr(signal, 'SIG' + val.upper()))
        elif kind == 'run':
            subprocess.run(val, shell=True, check=False)

    deadline = time.monotonic() + (0 if args.noread else args.timeout)
    with cond:
        while not state['closed']:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            cond.wait(min(left, 0.5))
        report['closed'] = 'yes' if state['closed'] else 'no'
        data = bytes(got)

    rc = 0 if report['closed'] == 'yes' else 3
    if child is not None:
        try:
            child.stdin.close()
        except OSError:
            pass
        pid, status, ru = None, None, None
        deadline = time.monotonic() + args.timeout
        while True:
            pid, status, ru = os.wait4(child.pid, os.WNOHANG)
            if pid != 0 or time.monotonic() > deadline:
                break
            time.sleep(0.02)
        if pid == 0:
            os.kill(child.pid, signal.SIGKILL)
            pid, status, ru = os.wait4(child.pid, 0)
            report['killed'] = 'yes'
            rc = 3
        child.returncode = 0  # reaped here; keep Popen from waiting again
        if os.WIFEXITED(status):
            report['exit'] = str(os.WEXITSTATUS(status))
        else:
            report['signal'] = str(os.WTERMSIG(status))
        report['maxrss_kb'] = str(ru.ru_maxrss)
    else:
        sock.close()

    if args.out:
        with open(args.out, 'wb') as f:
            f.write(data)
    else:
        sys.stdout.buffer.write(data)
        sys.stdout.flush()
    if args.report:
        with open(args.report, 'w') as f:
            for k, v in report.items():
                f.write('%s=%s\n' % (k, v))
    sys.exit(rc)


if __name__ == '__main__':
    main()
