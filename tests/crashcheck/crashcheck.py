#!/usr/bin/env python3
"""crashcheck: does every 250 survive a crash of the machine?

Runs mailslot sessions under strace, rebuilds from the trace what mailslot
asked of the file system, and for every crash point (each boundary between
two traced file system calls) builds the disk states that the persistence
model in README allows, materialises each in a scratch directory and checks
it: every message acknowledged before the crash point is whole in new/ or
cur/ of each of its Maildirs, no file there is partial or there twice, and
maildirsize and Maildir++ folders are sound.

    crashcheck.py [--states N] [--seed S] [--scenario NAME]... [--keep]
                  [--mailslot PATH] [--preload LIB] [--list]

Exit 0 when no state loses anything, 1 when one does (the first few
failures are printed with the seed, scenario, crash point and the subset,
so that `--seed S --scenario NAME` replays them), 2 on a usage or set-up
error.
"""

import argparse
import os
import pwd
import random
import re
import shutil
import stat
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
TOP = os.path.dirname(os.path.dirname(HERE))

# Raw open(2) flags (strace -X raw prints numbers).
O_ACCMODE, O_CREAT, O_EXCL, O_TRUNC, O_APPEND = 0o3, 0o100, 0o200, 0o1000, 0o2000
O_DSYNC, O_DIRECTORY, O_CLOEXEC = 0o10000, 0o200000, 0o2000000
O_TMPFILE = 0o20000000 | O_DIRECTORY
AT_FDCWD = -100
AT_SYMLINK_FOLLOW = 0x400
IOCB_CMD_FSYNC, IOCB_CMD_FDSYNC = 2, 3
F_DUPFD, F_DUPFD_CLOEXEC = 0, 1030

TRACED = ("open,openat,creat,mkdir,mkdirat,link,linkat,unlink,unlinkat,"
          "rename,renameat,renameat2,write,pwrite64,writev,pwritev,pwritev2,"
          "ftruncate,truncate,fallocate,fsync,fdatasync,sync,syncfs,"
          "sync_file_range,close,close_range,dup,dup2,dup3,fcntl,"
          "copy_file_range,sendfile,splice,lseek,io_submit,io_getevents,"
          "io_pgetevents,clone,clone3,fork,vfork,execve,sendmsg,sendto")


# ---- The trace ------------------------------------------------------------

LINE = re.compile(r'^(\d+) +(.*)$')
CALL = re.compile(r'^([a-z_0-9]+)\((.*)\) += (-?\w+)(?: (\w+) \(.*\))?(?: <.*>)?$')


def unhex(s):
    """A -xx string body ("\\x41\\x42") to bytes."""
    return bytes.fromhex(s.replace('\\x', ''))


def split_args(s):
    """Top-level comma-separated arguments; strings, [], {} kept whole."""
    out, depth, cur, i = [], 0, [], 0
    while i < len(s):
        c = s[i]
        if c == '"':
            j = s.index('"', i + 1)
            cur.append(s[i:j + 1])
            i = j + 1
            if s.startswith('...', i):
                cur.append('...')
                i += 3
            continue
        if c == '<':	# an fd's path annotation (-y): skip it whole
            j = s.index('>', i)
            while s[i + 1:j].count('"') % 2:
                j = s.index('>', j + 1)
            i = j + 1
            if s.startswith('(deleted)', i):
                i += len('(deleted)')
            continue
        if c in '[{':
            depth += 1
        elif c in ']}':
            depth -= 1
        if c == ',' and depth == 0:
            out.append(''.join(cur).strip())
            cur = []
        else:
            cur.append(c)
        i += 1
    if cur or out:
        out.append(''.join(cur).strip())
    return out


def num(a):
    a = a.strip()
    if a.startswith('[') and a.endswith(']'):
        a = a[1:-1]
    return int(a, 0)


def string(a):
    a = a.strip()
    if a.startswith('"'):
        body = a[1:a.index('"', 1)]
        return unhex(body)
    return None


def iovec_data(a):
    return b''.join(unhex(m) for m in re.findall(r'iov_base="((?:\\x[0-9a-f]{2})*)"', a))


def read_trace(path):
    """(pid, name, args, result, errno) for each finished call, in completion order."""
    pending = {}
    with open(path, encoding='ascii', errors='replace') as f:
        for raw in f:
            m = LINE.match(raw.rstrip('\n'))
            if not m:
                continue
            pid, rest = int(m.group(1)), m.group(2)
            if rest.startswith('+++') or rest.startswith('---'):
                continue
            if rest.endswith('<unfinished ...>'):
                pending[pid] = rest[:-len('<unfinished ...>')].rstrip()
                continue
            r = re.match(r'^<\.\.\. [a-z_0-9]+ resumed>(.*)$', rest)
            if r:
                rest = pending.pop(pid, '') + r.group(1)
            c = CALL.match(rest)
            if not c:
                continue
            res = c.group(3)
            try:
                resv = int(res, 0)
            except ValueError:
                continue
            yield pid, c.group(1), split_args(c.group(2)), resv, c.group(4)


# ---- The model ------------------------------------------------------------

class Ofd:
    """An open file description: what fds share."""
    def __init__(self, ino, append=False, sync=False, path=None):
        self.ino, self.pos, self.append, self.sync, self.path = ino, 0, append, sync, path


class Model:
    """The volatile file system as the process sees it, and the ops on it."""

    def __init__(self, root):
        self.root = root
        self.files = {}		# ino -> bytearray (volatile content)
        self.dirs = {}		# ino -> {name: ino}
        self.nextino = 1
        self.ops = []		# (kind, ...) in order
        self.fds = {}		# pid -> {fd: [ofd, cloexec]}
        self.aio = {}		# (pid, ctx, data) -> ino waiting for its fsync
        self.main = None
        self.acks = []		# (op index, reply line)
        self.snap = None
        self.names = {}		# ino -> a path below the root, for messages
        self.rootino = self._scan(root)
        self.names[self.rootino] = '.'
        self.initial_files = {i: bytes(c) for i, c in self.files.items()}
        self.initial_dirs = {i: dict(d) for i, d in self.dirs.items()}

    def _new(self, isdir):
        ino = self.nextino
        self.nextino += 1
        if isdir:
            self.dirs[ino] = {}
        else:
            self.files[ino] = bytearray()
        return ino

    def _scan(self, path):
        st = os.lstat(path)
        if stat.S_ISDIR(st.st_mode):
            ino = self._new(True)
            for name in sorted(os.listdir(path)):
                sub = self._scan(os.path.join(path, name))
                self.dirs[ino][name] = sub
                self.names[sub] = os.path.relpath(os.path.join(path, name), self.root)
            return ino
        ino = self._new(False)
        if stat.S_ISREG(st.st_mode):
            with open(path, 'rb') as f:
                self.files[ino][:] = f.read()
        return ino

    def initial_dirs_lookup(self, rel):
        """The ino of a file that existed before the run at rel, or None."""
        dino = self.rootino
        parts = rel.split('/')
        for p in parts[:-1]:
            dino = self.initial_dirs.get(dino, {}).get(p)
            if dino is None:
                return None
        ino = self.initial_dirs.get(dino, {}).get(parts[-1])
        return ino if ino in self.initial_files else None

    # Paths: everything under the root is modelled, the rest is not.
    def lookup(self, dino, rel):
        """(parent dir ino, last name) for rel from dino, or None outside."""
        parts = [p for p in rel.split('/') if p not in ('', '.')]
        if not parts:
            return None
        for p in parts[:-1]:
            if dino not in self.dirs or p == '..':
                return None
            dino = self.dirs[dino].get(p)
            if dino is None:
                return None
        return (dino, parts[-1]) if dino in self.dirs else None

    def at(self, pid, dirfd, path):
        """Resolve (dirfd, path) to (dir ino, name), or None (not modelled)."""
        path = path.decode('utf-8', 'surrogateescape')
        if path.startswith('/'):
            root = self.root.rstrip('/') + '/'
            if path.rstrip('/') == self.root.rstrip('/'):
                return None
            if not path.startswith(root):
                return None
            return self.lookup(self.rootino, path[len(root):])
        if dirfd == AT_FDCWD:
            cwd = self.cwd
            return self.at(pid, None, (cwd.rstrip('/') + '/' + path).encode())
        ofd = self.ofd(pid, dirfd)
        if ofd is None or ofd.ino is None:
            return None
        return self.lookup(ofd.ino, path)

    def table(self, pid):
        if pid not in self.fds:
            # A process first seen: a child whose clone we have not seen
            # end yet; it starts with its parent's (the main one's) table.
            src = self.fds.get(self.main, {})
            self.fds[pid] = {fd: list(e) for fd, e in src.items()}
        return self.fds[pid]

    def ofd(self, pid, fd):
        e = self.table(pid).get(fd)
        return e[0] if e else None

    # Operations.
    def op(self, *o):
        self.ops.append(o)
        return len(self.ops) - 1

    def data(self, ino, off, b):
        if not b:
            return
        c = self.files[ino]
        if len(c) < off:
            c.extend(b'\0' * (off - len(c)))
        c[off:off + len(b)] = b
        self.op('data', ino, off, bytes(b))

    def trunc(self, ino, size):
        c = self.files[ino]
        if len(c) > size:
            del c[size:]
        else:
            c.extend(b'\0' * (size - len(c)))
        self.op('trunc', ino, size)

    def link(self, dino, name, ino):
        self.dirs[dino][name] = ino
        self.names.setdefault(ino, os.path.normpath(os.path.join(self.names.get(dino, '?'), name)))
        self.op('link', dino, name, ino)

    def unlink(self, dino, name):
        self.dirs[dino].pop(name, None)
        self.op('unlink', dino, name)

    def write_fd(self, pid, fd, b, off=None):
        o = self.ofd(pid, fd)
        if o is None:
            return
        if o.ino is None:
            if pid == self.main and fd == 1:
                self.reply(b)
            return
        if off is None:
            if o.append:
                o.pos = len(self.files[o.ino])
            self.data(o.ino, o.pos, b)
            o.pos += len(b)
        else:
            self.data(o.ino, off, b)
        if o.sync:
            self.op('fsync', o.ino)

    def reply(self, b):
        """The client hears a reply: what it acknowledges, from here on."""
        self.partial = getattr(self, 'partial', b'') + b
        *lines, self.partial = self.partial.split(b'\r\n')
        for line in lines:
            if re.match(rb'^250[ -]', line) and b'queued as' in line:
                self.acks.append((len(self.ops), line.decode('ascii', 'replace'),
                                  self.in_new()))

    def in_new(self):
        """Every (path, ino) in a new/ or cur/ directory under the root now."""
        found = {}

        def walk(dino, path):
            for name, ino in self.dirs[dino].items():
                if ino in self.dirs:
                    walk(ino, path + (name,))
                elif path and path[-1] in ('new', 'cur'):
                    found['/'.join(path + (name,))] = ino
        walk(self.rootino, ())
        return found

    # One traced call.
    def call(self, pid, name, a, res, err):
        if self.main is None:
            self.main = pid
            self.fds[pid] = {0: [Ofd(None), False], 1: [Ofd(None), False],
                             2: [Ofd(None), False]}
        t = self.table(pid)
        fail = res < 0
        if name in ('clone', 'clone3', 'fork', 'vfork'):
            if not fail and res > 0 and res not in self.fds:
                self.fds[res] = {fd: list(e) for fd, e in t.items()}
            return
        if name == 'execve':
            if not fail:
                for fd in [fd for fd, e in t.items() if e[1]]:
                    del t[fd]
            return
        if fail:
            return
        if name in ('open', 'openat', 'creat'):
            if name == 'openat':
                dirfd, path, flags = num(a[0]), string(a[1]), num(a[2])
            elif name == 'open':
                dirfd, path, flags = AT_FDCWD, string(a[0]), num(a[1])
            else:
                dirfd, path, flags = AT_FDCWD, string(a[0]), O_CREAT | O_TRUNC | 1
            ino = None
            r = self.at(pid, dirfd, path)
            if (flags & O_TMPFILE) == O_TMPFILE:
                ino = self._new(False) if r or self.lookup_dir(pid, dirfd, path) else None
            elif r is not None:
                dino, nm = r
                ino = self.dirs[dino].get(nm)
                if ino is None and flags & O_CREAT:
                    ino = self._new(False)
                    self.link(dino, nm, ino)
                elif ino is not None and flags & O_TRUNC and ino in self.files:
                    self.trunc(ino, 0)
            elif path.rstrip(b'/') == self.root.rstrip('/').encode():
                ino = self.rootino
            t[res] = [Ofd(ino, bool(flags & O_APPEND), bool(flags & O_DSYNC)),
                      bool(flags & O_CLOEXEC)]
            return
        if name in ('mkdir', 'mkdirat'):
            dirfd, path = (AT_FDCWD, string(a[0])) if name == 'mkdir' else (num(a[0]), string(a[1]))
            r = self.at(pid, dirfd, path)
            if r:
                self.link(r[0], r[1], self._new(True))
            return
        if name in ('link', 'linkat'):
            if name == 'link':
                od, op_, nd, np_, fl = AT_FDCWD, string(a[0]), AT_FDCWD, string(a[1]), 0
            else:
                od, op_, nd, np_, fl = num(a[0]), string(a[1]), num(a[2]), string(a[3]), num(a[4])
            m = re.match(rb'^/proc/self/fd/(\d+)$', op_)
            if m and fl & AT_SYMLINK_FOLLOW:
                o = self.ofd(pid, int(m.group(1)))
                src = o.ino if o else None
            else:
                r = self.at(pid, od, op_)
                src = self.dirs[r[0]].get(r[1]) if r else None
            r = self.at(pid, nd, np_)
            if r and src is not None:
                self.link(r[0], r[1], src)
            return
        if name in ('unlink', 'unlinkat'):
            dirfd, path = (AT_FDCWD, string(a[0])) if name == 'unlink' else (num(a[0]), string(a[1]))
            r = self.at(pid, dirfd, path)
            if r:
                self.unlink(*r)
            return
        if name in ('rename', 'renameat', 'renameat2'):
            if name == 'rename':
                s = self.at(pid, AT_FDCWD, string(a[0]))
                d = self.at(pid, AT_FDCWD, string(a[1]))
            else:
                s = self.at(pid, num(a[0]), string(a[1]))
                d = self.at(pid, num(a[2]), string(a[3]))
            if s and d:
                ino = self.dirs[s[0]].pop(s[1], None)
                if ino is not None:
                    self.dirs[d[0]][d[1]] = ino
                    self.op('rename', s[0], s[1], d[0], d[1], ino)
            return
        if name == 'write':
            self.write_fd(pid, num(a[0]), string(a[1]) or b'')
            return
        if name in ('sendto', 'sendmsg'):
            b = string(a[1]) if name == 'sendto' else iovec_data(a[1])
            self.write_fd(pid, num(a[0]), b or b'')
            return
        if name == 'pwrite64':
            self.write_fd(pid, num(a[0]), string(a[1]) or b'', num(a[3]))
            return
        if name in ('writev', 'pwritev', 'pwritev2'):
            off = num(a[3]) if name != 'writev' else None
            self.write_fd(pid, num(a[0]), iovec_data(a[1])[:res], off)
            return
        if name in ('copy_file_range', 'sendfile', 'splice'):
            if name == 'sendfile':
                ofd_out, ofd_in, offin, offout = num(a[0]), num(a[1]), a[2], 'NULL'
            else:
                ofd_in, offin, ofd_out, offout = num(a[0]), a[1], num(a[2]), a[3]
            i, o = self.ofd(pid, ofd_in), self.ofd(pid, ofd_out)
            if o is None or o.ino is None:
                return
            src = bytes(self.files.get(i.ino, b'')) if i and i.ino in self.files else None
            if offin.strip() == 'NULL':
                start = i.pos if i else 0
                if i:
                    i.pos += res
            else:
                # strace shows the offset after the call when the call moved it.
                start = num(offin) - res
            b = src[start:start + res] if src is not None else b'\0' * res
            self.write_fd(pid, ofd_out, b, None if offout.strip() == 'NULL' else num(offout) - res)
            return
        if name == 'lseek':
            o = self.ofd(pid, num(a[0]))
            if o:
                o.pos = res
            return
        if name in ('ftruncate', 'fallocate'):
            o = self.ofd(pid, num(a[0]))
            if o and o.ino in self.files:
                if name == 'ftruncate':
                    self.trunc(o.ino, num(a[1]))
                else:
                    mode, off, ln = num(a[1]), num(a[2]), num(a[3])
                    if mode == 0 and len(self.files[o.ino]) < off + ln:
                        self.trunc(o.ino, off + ln)
            return
        if name in ('fsync', 'fdatasync'):
            o = self.ofd(pid, num(a[0]))
            if o and o.ino is not None:
                self.op('fsync', o.ino)
            return
        if name in ('sync', 'syncfs'):
            self.op('sync')
            return
        if name == 'io_submit':
            ctx = a[0]
            for cb in re.findall(r'\{([^{}]*)\}', a[2])[:res]:
                f = dict(kv.split('=', 1) for kv in split_args(cb) if '=' in kv)
                if int(f.get('aio_lio_opcode', '-1'), 0) in (IOCB_CMD_FSYNC, IOCB_CMD_FDSYNC):
                    o = self.ofd(pid, num(f['aio_fildes']))
                    self.aio[(pid, ctx, int(f.get('aio_data', '0'), 0))] = o.ino if o else None
            return
        if name in ('io_getevents', 'io_pgetevents'):
            ctx = a[0]
            for ev in re.findall(r'\{([^{}]*)\}', a[3])[:res]:
                f = dict(kv.split('=', 1) for kv in split_args(ev) if '=' in kv)
                ino = self.aio.pop((pid, ctx, int(f.get('data', '0'), 0)), None)
                if ino is not None and int(f.get('res', '0'), 0) >= 0:
                    self.op('fsync', ino)
            return
        if name in ('dup', 'dup2', 'dup3'):
            e = t.get(num(a[0]))
            if e:
                t[res] = [e[0], name == 'dup3' and bool(num(a[2]) & O_CLOEXEC)]
            return
        if name == 'fcntl':
            cmd = a[1].strip()
            if cmd in ('F_DUPFD', 'F_DUPFD_CLOEXEC') or cmd in (str(F_DUPFD), str(F_DUPFD_CLOEXEC)):
                e = t.get(num(a[0]))
                if e:
                    t[res] = [e[0], 'CLOEXEC' in cmd or cmd == str(F_DUPFD_CLOEXEC)]
            return
        if name == 'close':
            t.pop(num(a[0]), None)
            return
        if name == 'close_range':
            lo, hi = num(a[0]), num(a[1])
            for fd in [fd for fd in t if lo <= fd <= hi]:
                del t[fd]
            return

    def lookup_dir(self, pid, dirfd, path):
        """True when (dirfd, path) names a modelled directory (O_TMPFILE)."""
        if path in (b'.', b''):
            o = self.ofd(pid, dirfd)
            return o is not None and o.ino in self.dirs
        r = self.at(pid, dirfd, path)
        return r is not None and self.dirs[r[0]].get(r[1]) in self.dirs


# ---- Crash states ---------------------------------------------------------

def durable_flags(ops, k):
    """For ops[:k]: which are durable (an fsync of what they change came after)."""
    last_sync = {}		# ino -> index of the latest fsync before k
    last_all = -1
    for j in range(k):
        o = ops[j]
        if o[0] == 'fsync':
            last_sync[o[1]] = j
        elif o[0] == 'sync':
            last_all = j
    out = []
    for i in range(k):
        o = ops[i]
        if o[0] in ('fsync', 'sync'):
            out.append(True)
            continue
        if o[0] in ('data', 'trunc', 'link', 'unlink'):
            inos = [o[1]]
        elif o[0] == 'rename':
            inos = [o[1], o[3]]
        else:
            inos = []
        out.append(all(last_sync.get(x, -1) > i or last_all > i for x in inos))
    return out


def build_state(model, k, chosen):
    """Apply to the initial disk the ops in ops[:k] for which chosen[i]."""
    files = {i: bytearray(c) for i, c in model.initial_files.items()}
    dirs = {i: dict(d) for i, d in model.initial_dirs.items()}
    for i in range(k):
        if not chosen[i]:
            continue
        o = model.ops[i]
        kind = o[0]
        if kind == 'data':
            c = files.setdefault(o[1], bytearray())
            if len(c) < o[2]:
                c.extend(b'\0' * (o[2] - len(c)))
            c[o[2]:o[2] + len(o[3])] = o[3]
        elif kind == 'trunc':
            c = files.setdefault(o[1], bytearray())
            if len(c) > o[2]:
                del c[o[2]:]
            else:
                c.extend(b'\0' * (o[2] - len(c)))
        elif kind == 'link':
            dirs.setdefault(o[1], {})[o[2]] = o[3]
            if o[3] in model.dirs:
                dirs.setdefault(o[3], {})
            else:
                files.setdefault(o[3], bytearray())
        elif kind == 'unlink':
            dirs.setdefault(o[1], {}).pop(o[2], None)
        elif kind == 'rename':
            d = dirs.setdefault(o[1], {})
            if d.get(o[2]) == o[5]:
                del d[o[2]]
            dirs.setdefault(o[3], {})[o[4]] = o[5]
    return files, dirs


def materialise(model, files, dirs, where):
    """Write the state's tree below where; returns {path: ino} of every file."""
    shutil.rmtree(where, ignore_errors=True)
    os.mkdir(where)
    inos = {}

    def walk(dino, path, depth):
        if depth > 64:
            return
        for name, ino in dirs.get(dino, {}).items():
            p = os.path.join(path, name)
            rel = os.path.relpath(p, where)
            if ino in dirs:
                os.mkdir(p)
                walk(ino, p, depth + 1)
            else:
                with open(p, 'wb') as f:
                    f.write(files.get(ino, b''))
                inos[rel] = ino
    walk(model.rootino, where, 0)
    return inos


def check_state(model, k, where, inos, final_content):
    """The problems this materialised state has, as strings."""
    bad = []
    # Every acknowledged message is there, whole.
    for idx, line, new in model.acks:
        if idx > k:
            continue
        for rel, ino in new.items():
            p = os.path.join(where, rel)
            alt = os.path.join(os.path.dirname(os.path.dirname(p)),
                               'cur' if rel.split('/')[-2] == 'new' else 'new',
                               os.path.basename(p))
            got = None
            for q in (p, alt):
                if os.path.isfile(q):
                    with open(q, 'rb') as f:
                        got = f.read()
                    break
            if got is None:
                bad.append('lost: %s (acknowledged by "%s")' % (rel, line))
            elif got != final_content[ino]:
                bad.append('partial: %s (%d of %d octets, acknowledged)' %
                           (rel, len(got), len(final_content[ino])))
    # Nothing partial or twice in any new/ or cur/.
    seen = {}
    for rel, ino in sorted(inos.items()):
        parts = rel.split('/')
        if len(parts) < 2 or parts[-2] not in ('new', 'cur'):
            continue
        with open(os.path.join(where, rel), 'rb') as f:
            got = f.read()
        want = final_content.get(ino)
        if want is not None and got != want and ino not in model.initial_files:
            bad.append('partial: %s (%d of %d octets)' % (rel, len(got), len(want)))
        box = '/'.join(parts[:-2])
        if (box, ino) in seen and ino not in model.initial_files:
            bad.append('twice: %s and %s' % (seen[(box, ino)], rel))
        seen[(box, ino)] = rel
    # maildirsize is whole lines of numbers; folders are Maildir++ folders.
    for rel in inos:
        parts = rel.split('/')
        if parts[-1] == 'maildirsize':
            # Appends are not synced: a lost one leaves the count low, or a
            # hole of NULs that makes the line unreadable, and Maildir++
            # readers recalculate.  The quota definition must survive.
            with open(os.path.join(where, rel), 'rb') as f:
                first = f.read().split(b'\n', 1)[0]
            ino = model.initial_dirs_lookup(rel)
            if ino is not None and first != model.initial_files[ino].split(b'\n', 1)[0]:
                bad.append('maildirsize: quota line changed in %s: %r' % (rel, first))
        if len(parts) >= 3 and parts[-2] in ('new', 'cur') and parts[-3].startswith('.'):
            folder = os.path.join(where, *parts[:-2])
            if not os.path.isfile(os.path.join(folder, 'maildirfolder')):
                bad.append('folder without maildirfolder: %s' % '/'.join(parts[:-2]))
            for d in ('tmp', 'new', 'cur'):
                if not os.path.isdir(os.path.join(folder, d)):
                    bad.append('folder without %s/: %s' % (d, '/'.join(parts[:-2])))
    return sorted(set(bad))


def attribute_acks(model):
    """Each ack's own files: those in new/ or cur/ at it and not at the one before.

    Replies to pipelined transactions leave in one write: the first of them
    then takes all the files, which are checked from that point on.
    """
    prev, out = {}, []
    for idx, line, now in model.acks:
        out.append((idx, line, {r: i for r, i in now.items() if r not in prev}))
        prev = now
    model.acks = out


# ---- Sessions ---------------------------------------------------------------

def crlf(*lines):
    return ''.join(l + '\r\n' for l in lines).encode()


BODY = 'Subject: crash test\r\n\r\n' + '\r\n'.join('line %03d of the body' % i for i in range(40))


def txn(rcpts, body=BODY, sender='alice@client.example'):
    return (['MAIL FROM:<%s>' % sender] + ['RCPT TO:<%s>' % r for r in rcpts] +
            ['DATA'] + body.split('\r\n') + ['.'])


def bdat_session():
    chunks = [b'Subject: chunks\r\n\r\n', b'first chunk\r\n' * 30, b'last chunk\r\n']
    out = crlf('EHLO client.example', 'MAIL FROM:<alice@client.example>', 'RCPT TO:<bob@example.org>')
    for i, c in enumerate(chunks):
        last = ' LAST' if i == len(chunks) - 1 else ''
        out += ('BDAT %d%s\r\n' % (len(c), last)).encode() + c
    return out + crlf('QUIT')


def setup_mailboxes(root, names):
    mb = os.path.join(root, 'mailboxes')
    os.mkdir(mb)
    for n in names:
        for d in ('tmp', 'new', 'cur'):
            os.makedirs(os.path.join(mb, n, d))
    return mb


def sc_one(root):
    """One recipient, twice in a session; the catch-all made by mailslot."""
    return (['-o', 'maildir=' + os.path.join(root, 'Maildir')],
            crlf('EHLO client.example', *txn(['bob@example.org']),
                 *txn(['carol@example.org']), 'QUIT'), False)


def sc_ten(root):
    """Ten recipients in ten Maildirs: one file linked into each new/."""
    names = ['u%d' % i for i in range(10)]
    mb = setup_mailboxes(root, names)
    return (['-o', 'mailboxes=' + mb],
            crlf('EHLO client.example', *txn([n + '@example.org' for n in names]), 'QUIT'), False)


def sc_quota(root):
    """A Maildir++ quota: maildirsize is read and updated."""
    mb = setup_mailboxes(root, ['bob'])
    with open(os.path.join(mb, 'bob', 'maildirsize'), 'w') as f:
        f.write('10000000S,1000C\n0 0\n')
    return (['-o', 'mailboxes=' + mb],
            crlf('EHLO client.example', *txn(['bob@example.org']), *txn(['bob@example.org']), 'QUIT'),
            False)


def sc_bdat(root):
    """BDAT in three chunks."""
    return (['-o', 'maildir=' + os.path.join(root, 'Maildir')], bdat_session(), False)


def sc_forward(root):
    """An alias to a local mailbox and a remote address: a forward and a local copy."""
    mb = setup_mailboxes(root, ['bob'])
    aliases = os.path.join(root, 'aliases')
    out = tempfile.mkdtemp(prefix='crashcheck-fwd-')
    os.chmod(out, 0o1777)
    fwd = os.path.join(root, 'forward')
    with open(fwd, 'w') as f:
        f.write('#!/bin/sh\ncat >"%s/$$"\n' % out)
    os.chmod(fwd, 0o755)
    with open(aliases, 'w') as f:
        f.write('bob: bob, bob@far.example\n')
    return (['-o', 'mailboxes=' + mb, '-o', 'aliases=' + aliases, '-o', 'forward_command=' + fwd],
            crlf('EHLO client.example', *txn(['bob@example.org']), 'QUIT'), False)


def sc_named(root):
    """No /proc: the message file is named in tmp/, linked, then unlinked."""
    return (['-o', 'maildir=' + os.path.join(root, 'Maildir')],
            crlf('EHLO client.example', *txn(['bob@example.org']), 'QUIT'), True)


def sc_lmtp(root):
    """LMTP: one reply per recipient after the data; one of three over quota."""
    mb = setup_mailboxes(root, ['bob', 'carol', 'dave'])
    with open(os.path.join(mb, 'carol', 'maildirsize'), 'w') as f:
        f.write('100S\n0 0\n')
    t = txn(['bob@example.org', 'carol@example.org', 'dave@example.org'])
    return (['-o', 'mailboxes=' + mb, '-o', 'protocol=lmtp'],
            crlf('LHLO client.example', *t, *txn(['dave@example.org']), 'QUIT'), False)


CLEANUPS = []


def start_milter(root):
    """The test milter (tests/lib/testmilter.py) on a socket outside the root."""
    d = tempfile.mkdtemp(prefix='crashcheck-milter-')
    os.chmod(d, 0o755)
    sock = os.path.join(d, 'm.sock')
    log = open(os.path.join(d, 'log'), 'wb')
    p = subprocess.Popen(['/usr/bin/python3', os.path.join(TOP, 'tests/lib/testmilter.py'),
                          'scripted', 'crash', sock, d], stdout=log, stderr=log)

    def stop():
        p.kill()
        p.wait()
        log.close()
        shutil.rmtree(d, ignore_errors=True)
    CLEANUPS.append(stop)
    for _ in range(100):
        if os.path.exists(sock):
            os.chmod(sock, 0o777)
            return sock
        if p.poll() is not None:
            break
        subprocess.run(['sleep', '0.1'])
    raise SystemExit('crashcheck: the test milter did not start (python3-milter?)')


def sc_quarantine(root):
    """A milter's quarantine: the message goes to .Junk, made by mailslot."""
    mb = setup_mailboxes(root, ['bob', 'carol'])
    sock = start_milter(root)
    body = 'X-Mode: quarantine\r\nSubject: junk\r\n\r\nbuy now\r\n' + BODY.split('\r\n\r\n', 1)[1]
    return (['-o', 'mailboxes=' + mb, '-o', 'milters=unix:' + sock],
            crlf('EHLO client.example', *txn(['bob@example.org', 'carol@example.org'], body), 'QUIT'),
            False)


def sc_filtered(root):
    """A milter's header edits: every copy built from the spool at commit."""
    mb = setup_mailboxes(root, ['bob', 'carol'])
    sock = start_milter(root)
    body = 'X-Mode: add ins0 chg\r\nSubject: edited\r\n\r\n' + BODY.split('\r\n\r\n', 1)[1]
    return (['-o', 'mailboxes=' + mb, '-o', 'milters=unix:' + sock],
            crlf('EHLO client.example', *txn(['bob@example.org', 'carol@example.org'], body),
                 *txn(['bob@example.org']), 'QUIT'),
            False)


SCENARIOS = {'one': sc_one, 'ten': sc_ten, 'quota': sc_quota, 'bdat': sc_bdat,
             'forward': sc_forward, 'named': sc_named, 'quarantine': sc_quarantine,
             'filtered': sc_filtered, 'lmtp': sc_lmtp}


def run_session(args, name, work):
    root = os.path.join(work, 'root')
    os.mkdir(root)
    opts, stdin, noproc = SCENARIOS[name](root)
    user = None
    if os.geteuid() == 0:
        user = args.user
        pw = pwd.getpwnam(user)
        for dp, dn, fn in os.walk(root):
            for x in [dp] + [os.path.join(dp, f) for f in fn]:
                os.chown(x, pw.pw_uid, pw.pw_gid)
        os.chown(root, pw.pw_uid, pw.pw_gid)
        opts += ['-o', 'user=' + user]
    model = Model(root)
    model.cwd = root
    trace = os.path.join(work, 'trace')
    cmd = ['strace', '-f', '-qq', '-xx', '-X', 'raw', '-s', '4194304', '-o', trace,
           '-e', 'trace=' + TRACED]
    if args.preload:
        cmd += ['-E', 'LD_PRELOAD=' + args.preload]
    cmd += [args.mailslot, '-f', '/dev/null', '-o', 'hostname=crash.example',
            '-o', 'line_endings=crlf'] + opts
    if noproc:
        cmd = ['unshare', '-m', '--propagation', 'private', 'sh', '-c',
               'mount -t tmpfs none /proc && exec "$@"', 'sh'] + cmd
    # A sanitizer build: LeakSanitizer cannot work under ptrace.
    env = dict(os.environ)
    env['ASAN_OPTIONS'] = env.get('ASAN_OPTIONS', '') + ':detect_leaks=0'
    p = subprocess.run(cmd, input=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       cwd=root, timeout=120, env=env)
    replies = p.stdout.decode('ascii', 'replace') + p.stderr.decode('ascii', 'replace')
    for call in read_trace(trace):
        model.call(*call)
    attribute_acks(model)
    return model, replies


def subsets(ops, k, durable, rng, n):
    """The subsets of the non-durable ops in ops[:k] to try at crash point k.

    Every subset when there are at most n + 2 of them; else none lost, all
    lost and n random ones.
    """
    loose = [i for i in range(k) if not durable[i]]
    yield 'none lost', [True] * k
    if not loose:
        return
    yield 'all lost', list(durable)
    if len(loose) < 20 and 2 ** len(loose) <= n + 2:
        for bits in range(1, 2 ** len(loose) - 1):
            keep = set(i for j, i in enumerate(loose) if bits >> j & 1)
            yield 'subset %d' % bits, [durable[i] or i in keep for i in range(k)]
        return
    for j in range(n):
        keep = set(i for i in loose if rng.random() < 0.5)
        yield 'random %d' % j, [durable[i] or i in keep for i in range(k)]


def check(args, name, seed):
    work = tempfile.mkdtemp(prefix='crashcheck-')
    os.chmod(work, 0o755)	# mailslot runs as another account below it
    try:
        model, replies = run_session(args, name, work)
        if not model.acks:
            print('%s: no message was acknowledged; replies:\n%s' % (name, replies))
            return None
        final = {i: bytes(c) for i, c in model.files.items()}
        rng = random.Random('%s/%s' % (seed, name))
        scratch = os.path.join(args.scratch or work, 'state-%s' % name)
        points = len(model.ops) + 1
        states = lost = 0
        failures = []
        seen = set()
        for k in range(points):
            durable = durable_flags(model.ops, k)
            for label, chosen in subsets(model.ops, k, durable, rng, args.states):
                key = (sum(1 for idx, _, _ in model.acks if idx <= k),
                       tuple(i for i in range(k) if chosen[i] and model.ops[i][0] not in ('fsync', 'sync')))
                if key in seen:
                    continue
                seen.add(key)
                files, dirs = build_state(model, k, chosen)
                inos = materialise(model, files, dirs, scratch)
                bad = check_state(model, k, scratch, inos, final)
                states += 1
                if bad:
                    lost += 1
                    if len(failures) < args.show:
                        dropped = [i for i in range(k) if not chosen[i]]
                        failures.append((k, label, bad, [fmt_op(model, i) for i in dropped][:12]))
        acked = sum(len(n) for _, _, n in model.acks)
        print('%s: %d acknowledged (%d files), %d file system ops, %d crash points, '
              '%d states checked, %d with a loss' %
              (name, len(model.acks), acked, len(model.ops), points, states, lost))
        for k, label, bad, dropped in failures:
            print('  crash point %d (%s; seed %s):' % (k, label, seed))
            for b in bad[:6]:
                print('    ' + b)
            print('    not persisted: ' + '; '.join(dropped))
        return states, lost, points
    finally:
        while CLEANUPS:
            CLEANUPS.pop()()
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


def fmt_op(model, i):
    o = model.ops[i]
    name = lambda ino: model.names.get(ino, 'an unnamed file')
    if o[0] in ('link', 'unlink'):
        return '%s %s/%s' % (o[0], name(o[1]), o[2])
    if o[0] == 'rename':
        return 'rename %s/%s -> %s/%s' % (name(o[1]), o[2], name(o[3]), o[4])
    if o[0] == 'data':
        return 'write %d octets at %d to %s' % (len(o[3]), o[2], name(o[1]))
    if o[0] == 'trunc':
        return 'truncate %s to %d' % (name(o[1]), o[2])
    return o[0]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('--mailslot', default=os.environ.get('MAILSLOT', os.path.join(TOP, 'src/mailslot')))
    ap.add_argument('--states', type=int, default=20,
                    help='random subsets per crash point (besides all lost and none lost)')
    ap.add_argument('--seed', default=None)
    ap.add_argument('--scenario', action='append', choices=sorted(SCENARIOS))
    ap.add_argument('--preload', help='LD_PRELOAD for mailslot (a deliberately broken variant)')
    ap.add_argument('--user', default=os.environ.get('CRASHCHECK_USER', 'nobody'))
    ap.add_argument('--scratch', help='where states are materialised (default: a temporary directory)')
    ap.add_argument('--show', type=int, default=3, help='failures shown per scenario')
    ap.add_argument('--keep', action='store_true')
    ap.add_argument('--list', action='store_true')
    args = ap.parse_args()
    if args.list:
        for n in sorted(SCENARIOS):
            print('%-8s %s' % (n, SCENARIOS[n].__doc__.strip()))
        return 0
    seed = args.seed if args.seed is not None else str(random.SystemRandom().randrange(1 << 32))
    print('crashcheck: seed %s, %d random states per crash point' % (seed, args.states))
    total = lost = points = 0
    for name in args.scenario or sorted(SCENARIOS):
        r = check(args, name, seed)
        if r is None:
            return 2
        total, lost, points = total + r[0], lost + r[1], points + r[2]
    print('crashcheck: %d crash points, %d states checked, %d with a loss (seed %s)' %
          (points, total, lost, seed))
    return 1 if lost else 0


if __name__ == '__main__':
    sys.exit(main())
