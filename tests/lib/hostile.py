#!/usr/bin/env python3
"""hostile.py: fault injection and crash runs for tests/hostile-*.bats.

Every session here talks to mailslot over a real socket: a socketpair whose
one end is mailslot's fd 0 and fd 1 (so mailslot is in crlf mode and uses
its socket transport), started as MAILSLOT_WRAPPER + MAILSLOT + options.

  hostile.py faults --maildir DIR --syscall S --errors E1,E2 [--size N] -- CMD...
      A dry run under strace records every call of S.  Those that happen
      after the greeting and touch the Maildir are then made to fail, one
      run each (strace --inject=S:error=E:when=N), for every error E.  In
      every run the first transaction must either be refused with 451/452
      (EIO -> 451; ENOSPC, EDQUOT -> 452 where the call can really fail so)
      and leave nothing in new/, or get
      250 with the message in new/ byte for byte (only where the failing
      call cannot lose data); no tmp file may be left; and the second
      transaction on the same connection must be delivered.  One line per
      run; "FAIL" marks a broken rule.  Exit 1 when any run failed.

  hostile.py smuggle --port P --maildir DIR [--how wait,block,split]
                     [--expect deliver|refuse] [--eight] FAKE...
      For each lookalike FAKE (escapes as in Python: \r \n \x00): one
      connection per way of sending (after the 354; the whole session in
      one write; cut inside the lookalike) with a transaction whose data
      holds FAKE and a smuggled MAIL/RCPT/DATA, then a clean transaction,
      then QUIT.  deliver: two 354s, two 250s, new/ holds exactly the two
      messages, the first with every octet sent.  refuse: one 554 after the
      real end, new/ holds exactly the second message.

  hostile.py crash --maildir DIR --sessions N --seed S -- CMD...
      N sessions, each killed with SIGKILL at a random point (a random
      delay, inside the data, right after the final dot, right after the
      250, inside a second transaction).  Then every message that got its
      250 must be in new/ byte for byte, every file in new/ must be a
      whole message that was sent, and none may be there twice.

Every loop is bounded, and the only processes signalled are the ones this
script started.
"""
import argparse
import os
import random
import re
import select
import shutil
import signal
import socket
import subprocess
import sys
import time

REPLY_TIMEOUT = 10.0


class Closed(Exception):
    pass


class Conn:
    """One mailslot process on a socketpair."""

    def __init__(self, argv, stderr=subprocess.DEVNULL, port=None):
        self.buf = b''
        self.proc = None
        if port is not None:
            # loopback only: a listener (systemd-socket-activate) started it
            self.sock = socket.create_connection(('127.0.0.1', port), timeout=5)
            self.sock.settimeout(None)
            return
        self.sock, child = socket.socketpair()
        self.proc = subprocess.Popen(argv, stdin=child, stdout=child,
                                     stderr=stderr, close_fds=True)
        child.close()

    def send(self, b):
        self.sock.sendall(b)

    def reply(self, timeout=REPLY_TIMEOUT):
        """One complete reply: (code, [lines])."""
        lines = []
        deadline = time.monotonic() + timeout
        while True:
            while b'\r\n' not in self.buf:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise Closed('timeout')
                r, _, _ = select.select([self.sock], [], [], left)
                if not r:
                    continue
                try:
                    b = self.sock.recv(65536)
                except OSError:
                    b = b''
                if not b:
                    raise Closed('eof')
                self.buf += b
            line, self.buf = self.buf.split(b'\r\n', 1)
            lines.append(line.decode('latin-1'))
            if len(line) < 4 or line[3:4] != b'-':
                return int(line[:3]), lines

    def close(self, wait=REPLY_TIMEOUT):
        self.sock.close()
        if self.proc is None:
            return
        try:
            self.proc.wait(timeout=wait)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def kill(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()
        self.sock.close()


# Every octet value mapped onto letters, digits, space, '.' and '-'.
ALPHABET = bytes(b'abcdefghijklmnopqrstuvwxyz0123456789 .-'[i % 39] for i in range(256))


def body_bytes(tag, size, rnd):
    """A message of about `size` octets, CRLF lines, with a unique tag."""
    out = [b'Subject: ' + tag + b'\r\n', b'X-Tag: ' + tag + b'\r\n', b'\r\n']
    n = sum(len(x) for x in out)
    while n < size:
        k = rnd.randint(0, 200)
        line = rnd.randbytes(k).translate(ALPHABET)
        if line.startswith(b'.'):
            line = b'.' + line          # dot-stuffed on the wire
        out.append(line + b'\r\n')
        n += len(line) + 2
    return b''.join(out)


def stored_form(wire):
    """What mailslot stores for `wire` (CRLF lines, dot-stuffed)."""
    out = []
    for line in wire.split(b'\r\n')[:-1]:
        if line.startswith(b'.'):
            line = line[1:]
        out.append(line + b'\n')
    return b''.join(out)


TRACE = re.compile(rb'\A(?:(?:Return-Path|Delivered-To|Received): [^\n]*\n(?:\t[^\n]*\n)*)*')


def body_of_file(path):
    with open(path, 'rb') as f:
        data = f.read()
    return data[TRACE.match(data).end():]


def listdir(d):
    try:
        return sorted(os.listdir(d))
    except FileNotFoundError:
        return []


def transaction(c, tag, wire, rset=False):
    """MAIL, RCPT, DATA, the data; returns the list of reply codes."""
    codes = []
    if rset:
        c.send(b'RSET\r\n')
        codes.append(c.reply()[0])
    c.send(b'MAIL FROM:<a@x.example>\r\n')
    codes.append(c.reply()[0])
    if codes[-1] != 250:
        return codes
    c.send(b'RCPT TO:<b@y.example>\r\n')
    codes.append(c.reply()[0])
    if codes[-1] != 250:
        return codes
    c.send(b'DATA\r\n')
    codes.append(c.reply()[0])
    if codes[-1] != 354:
        return codes
    c.send(wire + b'.\r\n')
    codes.append(c.reply()[0])
    return codes


# ---- faults -----------------------------------------------------------------

WANT = {'EIO': (451,), 'ENOSPC': (452,), 'EDQUOT': (452,)}


def no_lsan(cmd):
    """LeakSanitizer cannot run under ptrace: turn it off for a command run
    under strace, also where an `env` wrapper sets LSAN_OPTIONS itself."""
    os.environ['LSAN_OPTIONS'] = 'detect_leaks=0'
    out = [x + ':detect_leaks=0' if x.startswith('LSAN_OPTIONS=') else x for x in cmd]
    return out


def strace_argv(args, trace, extra):
    return ['strace', '-f', '-qq', '-y', '-o', trace] + extra + no_lsan(args.cmd)


def one_session(argv, wire1, wire2, stderr_path):
    """EHLO, two transactions, QUIT.  Returns (codes1, codes2, final, ok)."""
    with open(stderr_path, 'ab') as err:
        c = Conn(argv, stderr=err)
    codes1, codes2, final = [], [], None
    try:
        greet = c.reply()[0]
        if greet != 220:
            return [greet], [], None
        c.send(b'EHLO c.example\r\n')
        c.reply()
        codes1 = transaction(c, b'first', wire1)
        codes2 = transaction(c, b'second', wire2, rset=True)
        c.send(b'QUIT\r\n')
        final = c.reply()[0]
    except (Closed, OSError) as e:
        final = 'closed:%s' % e
    finally:
        c.close()
    return codes1, codes2, final


def cmd_faults(args):
    rnd = random.Random(5)
    wire1 = body_bytes(b'first', args.size, rnd)
    wire2 = body_bytes(b'second', 2000, rnd)
    want1, want2 = stored_form(wire1), stored_form(wire2)
    md = os.path.abspath(args.maildir)
    work = os.path.dirname(md)
    trace = os.path.join(work, 'trace')
    S = args.syscall

    # The dry run: which calls of S are there, and which of them touch the
    # Maildir between the greeting and the 250 of the first transaction
    # (the sendto calls that carry them)?
    shutil.rmtree(md, ignore_errors=True)
    argv = strace_argv(args, trace, ['-s', '24', '-e', 'trace=%s,sendto' % S])
    c1, c2, fin = one_session(argv, wire1, wire2, os.path.join(work, 'stderr'))
    if c1[-1:] != [250] or c2[-1:] != [250] or fin != 221:
        print('FAIL dry run: %s %s %s' % (c1, c2, fin))
        return 1
    idx, first, phase = 0, [], 0
    call = re.compile(r'^\d+ +(\w+)\(')
    with open(trace, encoding='latin-1') as f:
        for line in f:
            m = call.match(line)
            if not m:
                continue
            if m.group(1) == 'sendto' and S != 'sendto':
                if phase == 0:
                    phase = 1           # the greeting
                elif '"250 2.0.0 queued' in line:
                    phase = 2
                continue
            if m.group(1) != S:
                continue
            idx += 1
            if phase == 1 and md in line:
                first.append((idx, line.strip()))
    if not first:
        print('FAIL no call of %s touches the Maildir' % S)
        return 1
    failed = 0
    for e in args.errors.split(','):
        for n, what in first:
            shutil.rmtree(md, ignore_errors=True)
            argv = strace_argv(args, trace + '.inj',
                               ['-e', 'trace=%s' % S,
                                '-e', 'inject=%s:error=%s:when=%d' % (S, e, n)])
            c1, c2, fin = one_session(argv, wire1, wire2,
                                      os.path.join(work, 'stderr'))
            new = listdir(os.path.join(md, 'new'))
            tmp = listdir(os.path.join(md, 'tmp'))
            bodies = [body_of_file(os.path.join(md, 'new', x)) for x in new]
            problems = []
            refused = [x for x in c1 if 400 <= x < 600 and x != 354]
            if refused:
                if refused[0] not in (WANT[e] if exact_code(S, what, md) else (451, 452)):
                    problems.append('first refusal %d, want %s' % (refused[0], WANT[e]))
                if want1 in bodies:
                    problems.append('refused message is in new/')
            elif c1[-1:] == [250]:
                if bodies.count(want1) != 1:
                    problems.append('250 but the message is not in new/ once')
                if must_refuse(S, what, md):
                    problems.append('this failure cannot be ignored, yet 250')
            else:
                problems.append('first transaction: %s' % c1)
            if c2[-1:] != [250] or bodies.count(want2) != 1:
                problems.append('second transaction: %s' % c2)
            if fin != 221:
                problems.append('QUIT: %s' % fin)
            if len(bodies) != (1 if refused else 2):
                problems.append('%d files in new/' % len(bodies))
            if tmp and not (S == 'unlinkat' and c1[-1:] == [250]):
                problems.append('left in tmp/: %s' % tmp)
            status = 'FAIL ' + '; '.join(problems) if problems else 'ok'
            if problems:
                failed += 1
            print('%s#%d %s: first=%s second=%s quit=%s new=%d tmp=%d %s :: %s' % (
                S, n, e, c1, c2, fin, len(new), len(tmp), status,
                shorten(what, md)))
    return 1 if failed else 0


def exact_code(S, what, md):
    """Calls that really can fail with ENOSPC or EDQUOT must say 452 then;
    for the others (a read-only open, say) 451 or 452 will do."""
    if S in ('write', 'fsync', 'linkat', 'mkdirat'):
        return True
    if S == 'openat':
        return 'O_CREAT' in what
    if S == 'close':
        return md + '/tmp/' in what
    return False


def must_refuse(S, what, md):
    """A failing call that loses data unless it is reported."""
    if S in ('write', 'fsync', 'fdatasync', 'linkat', 'link', 'rename', 'renameat'):
        return md + '/tmp/' in what or md + '/new>' in what or S != 'write'
    if S == 'openat':
        return 'O_CREAT' in what
    if S == 'close':
        return md + '/tmp/' in what
    return False


def shorten(line, md):
    return line.replace(md, 'MD')[:160]


# ---- crash ------------------------------------------------------------------

POINTS = ('delay', 'in-data', 'after-dot', 'after-250', 'second-txn')


def cmd_crash(args):
    rnd = random.Random(args.seed)
    md = os.path.abspath(args.maildir)
    acked, sent = {}, {}
    counts = {p: 0 for p in POINTS}
    for i in range(args.sessions):
        point = rnd.choice(POINTS)
        counts[point] += 1
        c = Conn(args.cmd)
        tags = []
        try:
            if point == 'delay':
                deadline = time.monotonic() + rnd.uniform(0, 0.02)
            else:
                deadline = None
            c.reply()
            c.send(b'EHLO c.example\r\n')
            c.reply()
            for t in range(2 if point == 'second-txn' else 1):
                tag = b'%d-%d' % (i, t)
                wire = body_bytes(tag, rnd.choice((300, 5000, 200000, 400000)), rnd)
                sent[tag] = stored_form(wire)
                tags.append(tag)
                for cmd in (b'MAIL FROM:<a@x.example>\r\n', b'RCPT TO:<b@y.example>\r\n',
                            b'DATA\r\n'):
                    c.send(cmd)
                    c.reply()
                if deadline is not None:
                    # send in pieces until the moment comes
                    pos = 0
                    while pos < len(wire) and time.monotonic() < deadline:
                        c.send(wire[pos:pos + 4096])
                        pos += 4096
                    if time.monotonic() >= deadline:
                        raise Closed('kill')
                    c.send(b'.\r\n')
                    code = c.reply()[0]
                    if code == 250:
                        acked[tag] = True
                    raise Closed('kill')
                if point == 'in-data' or (point == 'second-txn' and t == 1):
                    cut = rnd.randint(0, len(wire))
                    c.send(wire[:cut])
                    time.sleep(rnd.uniform(0, 0.005))
                    raise Closed('kill')
                c.send(wire + b'.\r\n')
                if point == 'after-dot':
                    time.sleep(rnd.uniform(0, 0.005))
                    raise Closed('kill')
                code = c.reply()[0]
                if code == 250:
                    acked[tag] = True
                if point == 'after-250':
                    raise Closed('kill')
        except (Closed, OSError):
            pass
        c.kill()

    new = listdir(os.path.join(md, 'new'))
    seen, problems = {}, []
    for name in new:
        body = body_of_file(os.path.join(md, 'new', name))
        m = re.search(rb'^X-Tag: (\S+)\n', body, re.M)
        if not m or m.group(1) not in sent:
            problems.append('%s: not a message that was sent' % name)
            continue
        tag = m.group(1)
        if body != sent[tag]:
            problems.append('%s: partial or altered (%d of %d octets)' % (
                name, len(body), len(sent[tag])))
        seen[tag] = seen.get(tag, 0) + 1
    for tag, n in seen.items():
        if n > 1:
            problems.append('%s is in new/ %d times' % (tag.decode(), n))
    for tag in acked:
        if tag not in seen:
            problems.append('%s got 250 but is not in new/' % tag.decode())
    print('sessions=%d acked=%d in_new=%d tmp_left=%d seed=%d points=%s' % (
        args.sessions, len(acked), len(new),
        len(listdir(os.path.join(md, 'tmp'))), args.seed,
        ','.join('%s:%d' % kv for kv in counts.items())))
    for p in problems:
        print('FAIL ' + p)
    return 1 if problems else 0


# ---- smuggling --------------------------------------------------------------

SMUGGLED = (b'MAIL FROM:<evil@x.example>\r\nRCPT TO:<victim@y.example>\r\nDATA\r\n'
            b'Subject: smuggled\r\n\r\nsmuggled body\r\n')
SECOND = b'Subject: second\r\n\r\nsecond body\r\n'
TXN = b'MAIL FROM:<a@x.example>%s\r\nRCPT TO:<b@y.example>\r\nDATA\r\n'


def unescape(s):
    import codecs
    return codecs.escape_decode(s.encode('utf-8', 'surrogateescape'))[0]


def smuggle_once(port, how, fake, params, eight):
    """One connection: a transaction whose data holds FAKE and a smuggled
    transaction, then a clean one, then QUIT.  Returns the reply codes in
    order (or an error string at the end)."""
    head = b'EHLO c.example\r\n' + TXN % params
    data1 = b'Subject: first\r\n\r\nbody one' + eight + fake + SMUGGLED
    second = b'RSET\r\n' + TXN % b'' + SECOND + b'.\r\n'
    c = Conn(None, port=port)
    codes = []

    def upto(code):
        while True:
            r = c.reply()[0]
            codes.append(r)
            if r == code or r >= 400:
                return r

    try:
        codes.append(c.reply()[0])
        if how == 'block':
            c.send(head + data1 + b'.\r\n' + second + b'QUIT\r\n')
        else:
            c.send(head)
            if upto(354) != 354:
                raise Closed('no 354')
            if how == 'wait':
                c.send(data1)
                c.send(b'.\r\n')
            else:
                # cut inside the lookalike: after its first octet, and again
                c.send(b'Subject: first\r\n\r\nbody one' + eight + fake[:1])
                time.sleep(0.02)
                c.send(fake[1:2])
                time.sleep(0.02)
                c.send(fake[2:] + SMUGGLED + b'.\r\n')
            codes.append(c.reply()[0])
            c.send(second + b'QUIT\r\n')
        while True:
            codes.append(c.reply()[0])
    except Closed as e:
        if str(e) != 'eof':
            codes.append('error:%s' % e)
    except OSError as e:
        codes.append('error:%s' % e)
    finally:
        c.close()
    return codes, stored_crlf(data1), stored_crlf(SECOND)


def stored_crlf(wire):
    return wire.replace(b'\r\n', b'\n')


def cmd_smuggle(args):
    md = os.path.abspath(args.maildir)
    params = b' BODY=8BITMIME' if args.eight else b''
    eight = b'\xc3\xa9\xff\x80' if args.eight else b''
    failed = 0
    for f in args.fake:
        fake = unescape(f)
        for how in args.how.split(','):
            for d in ('new', 'tmp'):
                for x in listdir(os.path.join(md, d)):
                    os.unlink(os.path.join(md, d, x))
            codes, want1, want2 = smuggle_once(args.port, how, fake, params, eight)
            new = listdir(os.path.join(md, 'new'))
            tmp = listdir(os.path.join(md, 'tmp'))
            bodies = [body_of_file(os.path.join(md, 'new', x)) for x in new]
            problems = []
            ints = [x for x in codes if isinstance(x, int)]
            if len(ints) != len(codes):
                problems.append('the session broke off')
            if ints.count(354) != 2:
                problems.append('%d replies 354, want 2' % ints.count(354))
            if not ints or ints[-1] != 221:
                problems.append('no 221 at the end')
            if args.expect == 'deliver':
                if [x for x in ints if x >= 400]:
                    problems.append('a refusal')
                if len(bodies) != 2 or bodies.count(want1) != 1 or bodies.count(want2) != 1:
                    problems.append('new/ does not hold exactly the two messages, whole')
            else:
                if ints.count(554) != 1 or [x for x in ints if x >= 400 and x != 554]:
                    problems.append('want exactly one refusal, 554')
                if bodies != [want2]:
                    problems.append('new/ does not hold exactly the second message')
            if tmp:
                problems.append('left in tmp/: %s' % tmp)
            if problems:
                failed += 1
            print('%s %s %r: replies %s' % (
                'FAIL ' + '; '.join(problems) if problems else 'ok', how, fake,
                ' '.join(str(x) for x in codes)))
    return 1 if failed else 0


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest='what', required=True)
    f = sub.add_parser('faults')
    f.add_argument('--maildir', required=True)
    f.add_argument('--syscall', required=True)
    f.add_argument('--errors', default='EIO,ENOSPC,EDQUOT')
    f.add_argument('--size', type=int, default=2000)
    f.add_argument('cmd', nargs='+')
    c = sub.add_parser('crash')
    c.add_argument('--maildir', required=True)
    c.add_argument('--sessions', type=int, default=200)
    c.add_argument('--seed', type=int, default=1)
    c.add_argument('cmd', nargs='+')
    m = sub.add_parser('smuggle')
    m.add_argument('--port', type=int, required=True)
    m.add_argument('--maildir', required=True)
    m.add_argument('--how', default='wait,block,split')
    m.add_argument('--expect', choices=('deliver', 'refuse'), default='deliver')
    m.add_argument('--eight', action='store_true')
    m.add_argument('fake', nargs='+')
    args = ap.parse_args()
    if getattr(args, 'cmd', None) and args.cmd[0] == '--':
        args.cmd = args.cmd[1:]
    sys.exit({'faults': cmd_faults, 'crash': cmd_crash,
              'smuggle': cmd_smuggle}[args.what](args))


if __name__ == '__main__':
    main()
