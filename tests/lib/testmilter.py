#!/usr/bin/python3
# tests/lib/testmilter.py: test milters for tests/milter.bats.
#
#   testmilter.py scripted NAME SOCKET OUTDIR   pymilter, decides by what it is sent
#   testmilter.py noreply NAME SOCKET OUTDIR    pymilter, no reply to any step but
#                                           end of body, asks for a macro list
#   testmilter.py raw SOCKETDIR                 plain sockets (no libmilter):
#                                           SOCKETDIR/silent never answers,
#                                           SOCKETDIR/close closes at DATA,
#                                           SOCKETDIR/garbage answers MAIL with
#                                           a packet no milter may send,
#                                           SOCKETDIR/partial sends two changes
#                                           at the end of body, then closes,
#                                           SOCKETDIR/progress answers the end
#                                           of body with SMFIR_PROGRESS every
#                                           0.25 s for 10 s, then CONTINUE,
#                                           SOCKETDIR/trickle sends its CONTINUE
#                                           to the end of body one octet every
#                                           0.4 s,
#                                           SOCKETDIR/stall never answers the
#                                           end of body (but reads on),
#                                           SOCKETDIR/above inserts X-A fields at
#                                           index 0 (above Received) until the
#                                           message has 19999, at most 1000 a
#                                           message; once there, replaces the body,
#                                           SOCKETDIR/r421 answers MAIL with its own
#                                           421 reply,
#                                           SOCKETDIR/bigbody replaces the body with
#                                           3 pieces of 64 KiB,
#                                           SOCKETDIR/bighdrs adds 40 fields of
#                                           60000 octets each,
#                                           SOCKETDIR/wsval adds a field whose value
#                                           ends in a fold of white space alone,
#                                           SOCKETDIR/wsmid one with such a fold
#                                           inside it
#
# The scripted milter's decisions:
#   connect: client address 192.0.2.1 reject, .2 tempfail, .3 accept
#   HELO: reject.example, tempfail.example, custom.example (a 2-line 554)
#   MAIL from reject-mail@, tempfail-mail@, custom-mail@, discard-mail@,
#        accept-mail@
#   RCPT to reject-rcpt@, tempfail-rcpt@
#   end of body, by the header "X-Mode: WORD [WORD...]": reject tempfail
#        custom discard quarantine accept add ins0 ins1 chg del body
#        bodycr addrcpt delrcpt chgfrom order
# At the end of body it writes OUTDIR/<X-Test-Id>.json: the macros, the
# headers and the body (latin-1) as it saw them.
import json
import os
import socket
import struct
import sys
import threading
import time

MACROS = ['j', '{daemon_name}', 'v', '_', '{client_addr}', '{client_port}',
          '{client_name}', '{client_ptr}', 'i', '{mail_addr}', '{rcpt_addr}',
          '{auth_authen}', '{tls_version}', '{cipher}']


def pymilter(kind, name, sock, outdir):
    import Milter

    class Scripted(Milter.Base):
        def __init__(self):
            self.macros = {}
            self.seen = {}
            self.headers = []
            self.bodydata = b''
            self.mode = []
            self.testid = 'none'
            self.rcpts = []

        def keep(self, stage):
            for m in MACROS:
                v = self.getsymval(m)
                if v is not None:
                    self.macros[m] = v
                    self.seen.setdefault(stage, []).append(m)

        def connect(self, host, family, addr):
            self.keep('connect')
            self.connect_info = [host, family if isinstance(family, int) else str(family),
                                 str(addr)]
            ip = addr[0] if isinstance(addr, tuple) else ''
            if kind == 'scripted':
                if ip == '192.0.2.1':
                    return Milter.REJECT
                if ip == '192.0.2.2':
                    return Milter.TEMPFAIL
                if ip == '192.0.2.3':
                    return Milter.ACCEPT
            return Milter.CONTINUE

        def verdict(self, word, custom=None):
            # reject, tempfail, discard and accept as they say; custom: the
            # reply CUSTOM (code first), refused or deferred as its code
            # says; None: CONTINUE.
            if word == 'custom':
                self.setreply(*custom)
                return Milter.REJECT if custom[0].startswith('5') else Milter.TEMPFAIL
            return {None: Milter.CONTINUE, 'reject': Milter.REJECT,
                    'tempfail': Milter.TEMPFAIL, 'discard': Milter.DISCARD,
                    'accept': Milter.ACCEPT}[word]

        def decide(self, value, suffix, words, custom=None):
            # The scripted milter's verdict when VALUE is WORD + SUFFIX, WORD
            # one of WORDS; otherwise, and for the other kinds, CONTINUE.
            word = value[:-len(suffix)] if value.endswith(suffix) else None
            if kind != 'scripted' or word not in words:
                word = None
            return self.verdict(word, custom)

        def hello(self, helo):
            self.keep('helo')
            return self.decide(helo, '.example', ('reject', 'tempfail', 'custom'),
                               ('554', '5.7.0', 'first line', 'go away'))

        def envfrom(self, f, *args):
            self.keep('mail')
            self.sender = f
            self.rcpts = []
            return self.decide(f.strip('<>').split('@')[0], '-mail',
                               ('reject', 'tempfail', 'custom', 'discard', 'accept'),
                               ('451', '4.7.2', 'come back', 'much later'))

        def envrcpt(self, to, *args):
            self.keep('rcpt')
            self.rcpts.append(to)
            return self.decide(to.strip('<>').split('@')[0], '-rcpt',
                               ('reject', 'tempfail'))

        def data(self):
            self.keep('data')
            return Milter.CONTINUE

        @Milter.decode('bytes')
        def header(self, field, value):
            if isinstance(value, bytes):
                value = value.decode('latin-1')
            self.headers.append([field, value])
            if field.lower() == 'x-mode':
                self.mode = value.split()
            if field.lower() == 'x-test-id':
                self.testid = value.strip()
            return Milter.CONTINUE

        def eoh(self):
            self.keep('eoh')
            return Milter.CONTINUE

        def body(self, chunk):
            self.bodydata += chunk
            return Milter.CONTINUE

        def eom(self):
            self.keep('eom')
            rec = {'name': name, 'macros': self.macros, 'seen': self.seen,
                   'connect': self.connect_info, 'headers': self.headers,
                   'body': self.bodydata.decode('latin-1'), 'sender': self.sender,
                   'rcpts': self.rcpts}
            if all(c.isalnum() or c in '-_' for c in self.testid):
                with open(os.path.join(outdir, '%s.%s.json' % (self.testid, name)), 'w') as f:
                    json.dump(rec, f)
            m = self.mode
            if kind == 'noreply':
                self.addheader('X-Noreply', name)
                return Milter.CONTINUE
            if 'order' in m:
                self.addheader('X-Order', name)
            if 'add' in m:
                self.addheader('X-Added', 'added by ' + name)
            if 'ins0' in m:
                self.addheader('X-Ins0', 'at index 0', 0)
            if 'ins1' in m:
                self.addheader('X-Ins1', 'at index 1', 1)
            if 'chg' in m:
                self.chgheader('Subject', 1, 'changed subject')
            if 'del' in m:
                self.chgheader('X-Remove', 1, '')
            if 'body' in m:
                self.replacebody(b'new body line 1\r\n')
                self.replacebody(b'new body line 2\r\n')
            if 'bodycr' in m:
                self.replacebody(b'ends in a lone CR\r')
            if 'addrcpt' in m:
                self.addrcpt('<carol@example.org>')
            if 'delrcpt' in m:
                self.delrcpt('<bob@example.org>')
            if 'chgfrom' in m:
                self.chgfrom('<new-sender@example.net>')
            if 'quarantine' in m:
                self.quarantine('looks like spam')
            return self.verdict(next((w for w in ('reject', 'tempfail', 'custom', 'discard', 'accept')
                                      if w in m), None),
                                ('550', '5.7.9', 'not this one', 'nor any other'))

    class Noreply(Scripted):
        # Milter.Base.negotiate with pymilter 1.0.5 hands setsymlist bytes,
        # which its C module refuses: the macro list is asked for here.
        def negotiate(self, opts):
            self._actions = opts[0]
            self._ctx.setsymlist(Milter.M_ENVFROM, '{mail_addr} i {client_addr}')
            opts[1] = self._protocol = opts[1] & ~self.protocol_mask()
            opts[2] = opts[3] = 0
            return Milter.CONTINUE

        @Milter.noreply
        def connect(self, host, family, addr):
            return Scripted.connect(self, host, family, addr)

        @Milter.noreply
        def hello(self, helo):
            return Scripted.hello(self, helo)

        @Milter.noreply
        def envfrom(self, f, *args):
            return Scripted.envfrom(self, f, *args)

        @Milter.noreply
        def envrcpt(self, to, *args):
            return Scripted.envrcpt(self, to, *args)

        @Milter.noreply
        def data(self):
            return Scripted.data(self)

        @Milter.noreply
        @Milter.decode('bytes')
        def header(self, field, value):
            return Scripted.header(self, field, value)

        @Milter.noreply
        def eoh(self):
            return Scripted.eoh(self)

        @Milter.noreply
        def body(self, chunk):
            return Scripted.body(self, chunk)

    Milter.factory = Noreply if kind == 'noreply' else Scripted
    Milter.set_flags(Milter.ADDHDRS | Milter.CHGHDRS | Milter.CHGBODY | Milter.ADDRCPT |
                     Milter.DELRCPT | Milter.CHGFROM | Milter.QUARANTINE |
                     Milter.SETSYMLIST)
    Milter.runmilter(name, 'unix:' + sock, timeout=60)


def raw(sockdir):
    def packet(conn):
        hdr = b''
        while len(hdr) < 4:
            d = conn.recv(4 - len(hdr))
            if not d:
                return None, None
            hdr += d
        n = struct.unpack('>I', hdr)[0]
        data = b''
        while len(data) < n:
            d = conn.recv(n - len(data))
            if not d:
                return None, None
            data += d
        return data[:1], data[1:]

    def send(conn, cmd, data=b''):
        conn.sendall(struct.pack('>I', len(data) + 1) + cmd + data)

    def serve(mode, conn):
        above = 0
        with conn:
            while True:
                cmd, data = packet(conn)
                if cmd is None:
                    return
                if mode == 'silent' or cmd in (b'D', b'A'):
                    continue
                if mode == 'above' and cmd == b'L':
                    above += data.split(b'\x00')[0] == b'X-A'
                    continue	# SMFIP_NR_HDR
                if cmd == b'O':
                    send(conn, b'O', struct.pack('>III', 6,
                                                 0x1ff if mode in ('partial', 'above', 'bigbody', 'bighdrs',
                                                                 'wsval', 'wsmid') else 0,
                                                 0x80 if mode == 'above' else 0))
                elif mode == 'above' and cmd == b'E':
                    n = min(1000, 19999 - above)
                    for _ in range(n):
                        send(conn, b'i', struct.pack('>I', 0) + b'X-A\x00x\x00')
                    if n == 0:
                        send(conn, b'b', b'new body\r\n')
                    send(conn, b'c')
                    above = 0
                elif cmd == b'Q':
                    return
                elif mode == 'close' and cmd == b'T':
                    return
                elif mode == 'bigbody' and cmd == b'E':
                    for _ in range(3):
                        send(conn, b'b', (b'x' * 1022 + b'\r\n') * 64)
                    send(conn, b'c')
                elif mode == 'bighdrs' and cmd == b'E':
                    for i in range(40):
                        send(conn, b'h', b'X-Big%d\x00' % i + b'v' * 60000 + b'\x00')
                    send(conn, b'c')
                elif mode == 'wsval' and cmd == b'E':
                    send(conn, b'h', b'X-White\x00a\r\n \t\x00')
                    send(conn, b'c')
                elif mode == 'wsmid' and cmd == b'E':
                    send(conn, b'h', b'X-Mid\x00a\r\n \r\n\tb\x00')
                    send(conn, b'c')
                elif mode == 'r421' and cmd == b'M':
                    send(conn, b'y', b'421 4.7.0 closing this one\x00')
                elif mode == 'garbage' and cmd == b'M':
                    send(conn, b'y', b'hello\x00')	# not a reply code
                elif mode == 'progress' and cmd == b'E':
                    for _ in range(40):
                        send(conn, b'p')
                        time.sleep(0.25)
                    send(conn, b'c')
                elif mode == 'trickle' and cmd == b'E':
                    for b in struct.pack('>I', 1) + b'c':
                        conn.sendall(bytes([b]))
                        time.sleep(0.4)
                elif mode == 'stall' and cmd == b'E':
                    continue
                elif mode == 'partial' and cmd == b'E':
                    send(conn, b'h', b'X-Partial\x00half done\x00')
                    send(conn, b'e', b'<partial@example.net>\x00')
                    return	# closed before its verdict
                else:
                    send(conn, b'c')

    def serve_quietly(mode, conn):
        try:
            serve(mode, conn)
        except OSError:
            pass	# mailslot gave up on it: what this mode is for

    def listen(mode):
        path = os.path.join(sockdir, mode)
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.bind(path)
        os.chmod(path, 0o666)
        s.listen(16)
        while True:
            conn, _ = s.accept()
            threading.Thread(target=serve_quietly, args=(mode, conn), daemon=True).start()

    for mode in ('silent', 'close', 'garbage', 'partial', 'progress', 'trickle', 'stall',
                 'above', 'r421', 'bigbody', 'bighdrs', 'wsval', 'wsmid'):
        threading.Thread(target=listen, args=(mode,), daemon=True).start()
    threading.Event().wait()


if __name__ == '__main__':
    os.umask(0)
    if sys.argv[1] == 'raw':
        raw(sys.argv[2])
    else:
        pymilter(sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4])
