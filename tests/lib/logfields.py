#!/usr/bin/env python3
"""Hostile values in every field a client supplies, and a reader of the log.

  logfields.py session FILE   write a session whose every line carries a
                              hostile value (quotes, backslashes, spaces, '=',
                              CR, NUL, ESC, TAB, UTF-8, invalid 8-bit)
  logfields.py check LOG
                              read LOG as a reader would: each line is
                              "mailslot[PID]: " and then key=value fields, a
                              value bare (no space, no quote) or between double
                              quotes with C-style backslash escapes.  Fails
                              unless every line splits that way, no key comes
                              twice, each event has exactly the keys mailslot
                              writes for it, every hostile command line is
                              found, whole and unescaped, as a refusal's
                              command= (a refused RCPT adds to=), and the
                              delivery's from= is the sender.

The hostile lines stay under 64 octets: log lines keep that much of a command.
"""
import re
import sys

PAYLOADS = [
    b'"q" event=deliver file=FORGED',
    b'back\\slash\\" x=1',
    b'cr\rx=1 y="2"',
    b'nul\0x=1',
    b'esc\x1b[31m x=1',
    b'tab\tx=1',
    b'utf8 \xc3\xa9\xe2\x82\xac x=1',
    b'bad8 \xff\xfe\x80 x=1',
]

# The sender of the one message: a quoted local part with a quote, a
# backslash, spaces, '=' and UTF-8 in it, valid under SMTPUTF8.
SENDER = b'"\\"q\\" event=deliver file=FORGED \\\\ x=1 \xc3\xa9"@b.example'

# Every key each event carries, exactly.
KEYS = {
    'connect': {'session', 'event', 'peer', 'host', 'line_endings'},
    'refuse': {'session', 'event', 'code', 'enh', 'command', 'reason'},
    'deliver': {'session', 'event', 'id', 'from', 'to', 'via', 'msgid', 'size',
                'file'},
    'disconnect': {'session', 'event', 'state', 'reason'},
    'close': {'session', 'event', 'transactions', 'errors'},
}

HOSTILE = [b'HELO %s', b'EHLO %s', b'MAIL FROM:<%s>', b'VRFY %s', b'EXPN %s',
           b'HELP %s', b'%s']
IN_TX = [b'RCPT TO:<"%s"@evil.example>', b'RCPT TO:<%s@example.org>']


def session():
    """(all lines sent, the hostile ones that must each get a refusal)"""
    lines, hostile = [b'EHLO c.example'], []
    for p in PAYLOADS:
        for t in HOSTILE:
            hostile.append(t % p)
    lines += hostile
    lines += [b'EHLO c.example', b'MAIL FROM:<' + SENDER + b'> SMTPUTF8']
    for p in PAYLOADS:
        for t in IN_TX:
            lines.append(t % p)
            hostile.append(t % p)
    lines += [b'RCPT TO:<bob@example.org>', b'DATA', b'Subject: x', b'',
              b'body', b'.', b'QUIT']
    for h in hostile:
        assert len(h) < 64, h
    return lines, hostile


FIELD = re.compile(rb'([a-z_]+)=("(?:[^"\\]|\\.)*"|[^" ]*)(?: |$)')
ESC = {b'n': 10, b'r': 13, b't': 9, b'a': 7, b'b': 8, b'f': 12, b'v': 11,
       b's': 32, b'E': 27, b'"': 34, b'\\': 92}


def unescape(v):
    out, i = bytearray(), 0
    while i < len(v):
        c = v[i:i + 1]
        if c != b'\\':
            out += c
            i += 1
        elif re.match(rb'[0-7]{3}', v[i + 1:i + 4]):
            out.append(int(v[i + 1:i + 4], 8))
            i += 4
        elif v[i + 1:i + 2] == b'0':
            out.append(0)
            i += 2
        elif v[i + 1:i + 2] in ESC:
            out.append(ESC[v[i + 1:i + 2]])
            i += 2
        else:
            raise ValueError('unknown escape in %r' % v)
    return bytes(out)


def parse(line):
    m = re.match(rb'mailslot\[[0-9]+\]: ', line)
    if not m:
        raise ValueError('no "mailslot[PID]: " prefix')
    if re.search(rb'[^\x20-\x7e]', line):
        raise ValueError('an octet that is not printable ASCII')
    fields, pos = {}, m.end()
    while pos < len(line):
        f = FIELD.match(line, pos)
        if not f:
            raise ValueError('not key=value at offset %d' % pos)
        key, val = f.group(1).decode(), f.group(2)
        if key in fields:
            raise ValueError('key %s twice' % key)
        if val.startswith(b'"'):
            val = unescape(val[1:-1])
        fields[key] = val
        pos = f.end()
    return fields


def check(log_file):
    lines, hostile = session()
    bad = []
    found = set()
    sender = None
    with open(log_file, 'rb') as f:
        log = f.read().split(b'\n')
    if log and log[-1] == b'':
        log.pop()
    for n, line in enumerate(log, 1):
        try:
            fields = parse(line)
        except ValueError as e:
            bad.append('line %d: %s: %r' % (n, e, line))
            continue
        event = fields.get('event', b'').decode()
        if event not in KEYS:
            bad.append('line %d: unexpected event %r' % (n, event))
        elif set(fields) != KEYS[event] and not (
                # a RCPT that reached its handler adds the address
                set(fields) == KEYS[event] | {'to'} and
                fields['command'].startswith(b'RCPT ')):
            bad.append('line %d: keys %s, expected %s' % (
                n, sorted(fields), sorted(KEYS[event])))
        if event == 'refuse':
            found.add(fields.get('command'))
        if event == 'deliver':
            sender = fields.get('from')
    for h in hostile:
        if h not in found:
            bad.append('no refusal with command=%r' % h)
    if sender != b'<' + SENDER + b'>':
        bad.append('deliver from=%r, expected %r' % (sender, b'<' + SENDER + b'>'))
    for b in bad:
        print(b)
    return 1 if bad else 0


if __name__ == '__main__':
    if sys.argv[1:2] == ['session']:
        with open(sys.argv[2], 'wb') as f:
            f.write(b''.join(l + b'\r\n' for l in session()[0]))
        sys.exit(0)
    if sys.argv[1:2] == ['check']:
        sys.exit(check(sys.argv[2]))
    sys.exit(__doc__)
