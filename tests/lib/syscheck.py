#!/usr/bin/env python3
"""syscheck.py TRACE ALLOWED DENIED UID: check a session's strace against the
kernel-interface settings of mailslot@.service.

TRACE is `strace -f -qq -y` output of mailslot sessions (tests/lib/sandbox);
ALLOWED and DENIED are files of system call names, one a line: the expanded
@system-service set and the expanded "~@privileged @resources" set
(systemd-analyze syscall-filter).  UID is the mailslot account's.  Prints
one line per violation, naming the setting it breaks, and exits 1 if there
is any; prints a summary either way.
"""
import os
import re
import stat
import sys

trace_path, allowed_path, denied_path, uid = sys.argv[1:5]
uid = int(uid)
allowed = set(open(allowed_path).read().split())
denied = set(open(denied_path).read().split())

CALL = re.compile(r'^(\d+)\s+(?:<\.\.\. (\w+) resumed>|(\w+)\()(.*)$')
ERR = re.compile(r'= -1 (E[A-Z]+)')
problems = []
calls = {}
pids = set()
paths_read = set()


def bad(setting, what):
    problems.append('%s: %s' % (setting, what))


def fdpath(tok):
    """'3</var/lib/x>' -> '/var/lib/x'; 'AT_FDCWD' -> None."""
    m = re.match(r'-?\d+<(.*)>$', tok.strip())
    return m.group(1) if m else None


def strings(args):
    return re.findall(r'"((?:[^"\\]|\\.)*)"', args)


WRITABLE = ('/var/lib/mailslot/', '/tmp/', '/var/tmp/')
DEVICES = {'/dev/null', '/dev/zero', '/dev/full', '/dev/random', '/dev/urandom'}


def check_path(call, path, writing, line):
    if path is None:
        return
    if writing and not path.startswith(WRITABLE) and path not in DEVICES:
        bad('ProtectSystem=strict/ReadWritePaths=', '%s writes %s' % (call, path))
    if path.startswith(('/home/', '/root/', '/run/user/')) or path in ('/home', '/root'):
        bad('ProtectHome=yes', '%s %s' % (call, path))
    if path.startswith('/dev/') and path not in DEVICES and not path.startswith('/dev/fd/'):
        bad('PrivateDevices=yes/DevicePolicy=closed', '%s %s' % (call, path))
    if path == '/dev/kmsg':
        bad('ProtectKernelLogs=yes', '%s %s' % (call, path))
    if path.startswith('/sys/fs/cgroup'):
        bad('ProtectControlGroups=yes', '%s %s' % (call, path))
    if path.startswith('/sys/'):
        bad('ProtectKernelTunables=yes', '%s %s' % (call, path))
    if path.startswith('/proc/sys/') and writing:
        bad('ProtectKernelTunables=yes', '%s %s' % (call, path))
    if path.startswith('/lib/modules') or path.startswith('/usr/lib/modules'):
        bad('ProtectKernelModules=yes', '%s %s' % (call, path))
    m = re.match(r'/proc/(\d+)(/|$)', path)
    if m and int(m.group(1)) not in pids:
        bad('ProtectProc=invisible/ProcSubset=pid', '%s %s' % (call, path))
    if re.match(r'/proc/(?!self/|thread-self/|\d+/)', path + '/'):
        bad('ProcSubset=pid', '%s %s' % (call, path))
    if not writing and ' = -1 ' not in line:
        paths_read.add(path)


for line in open(trace_path, errors='replace'):
    if 'runs in 32 bit mode' in line or 'runs in x32 mode' in line:
        bad('SystemCallArchitectures=native', line.strip())
        continue
    m = CALL.match(line)
    if not m:
        continue
    pid = int(m.group(1))
    pids.add(pid)
    if m.group(2):		# "<... read resumed>": counted when it started
        continue
    name, args = m.group(3), m.group(4)
    calls[name] = calls.get(name, 0) + 1
    e = ERR.search(line)
    # libsystemd asks for SO_SNDBUFFORCE (CAP_NET_ADMIN) and falls back to
    # SO_SNDBUF: that refusal is expected under CapabilityBoundingSet=.
    expected = name == 'setsockopt' and re.search(r'SO_(SND|RCV)BUFFORCE', args)
    if e and e.group(1) in ('EROFS', 'EPERM', 'EACCES') and not expected:
        bad('sandbox', 'refused: ' + line.strip())

    s = strings(args)
    first = args.split(',')[0] if args else ''
    if name in ('openat', 'open', 'openat2', 'creat'):
        flags = args
        writing = bool(re.search(r'O_WRONLY|O_RDWR|O_CREAT|O_TRUNC|O_TMPFILE', flags)) or name == 'creat'
        if s:
            p = s[0]
            if not p.startswith('/') and name != 'open':
                base = fdpath(first)
                p = (base + '/' + p) if base else None
                if p is None:
                    bad('paths', 'relative to the cwd: ' + line.strip())
            check_path(name, p, writing, line)
        mm = re.search(r', (0[0-7]+)\)', args)
        if mm and int(mm.group(1), 8) & 0o6000:
            bad('RestrictSUIDSGID=yes', line.strip())
        if mm and int(mm.group(1), 8) & 0o077:
            bad('UMask=0077', 'creates group/other-accessible: ' + line.strip())
    elif name in ('mkdir', 'mkdirat', 'unlink', 'unlinkat', 'rmdir', 'linkat',
                  'link', 'rename', 'renameat', 'renameat2', 'symlink', 'symlinkat',
                  'fchmodat', 'chmod', 'fchownat', 'chown', 'truncate', 'mknod', 'mknodat'):
        if name.endswith('at'):
            # dirfd, "name" pairs: each fd<path> followed by a string
            for base, rel in re.findall(r'(-?\d+<[^>]*>|AT_FDCWD), "((?:[^"\\]|\\.)*)"', args):
                p = rel if rel.startswith('/') else ((fdpath(base) or '?') + '/' + rel)
                check_path(name, p, True, line)
        else:
            for p in s:
                check_path(name, p, True, line)
        mm = re.search(r', (0[0-7]+)', args)
        if name in ('mkdir', 'mkdirat', 'fchmodat', 'chmod') and mm:
            mode = int(mm.group(1), 8)
            if mode & 0o6000:
                bad('RestrictSUIDSGID=yes', line.strip())
            if name.startswith('mkdir') and mode & 0o077:
                bad('UMask=0077', 'creates group/other-accessible: ' + line.strip())
    elif name in ('fchmod',):
        mm = re.search(r', (0[0-7]+)\)', args)
        if mm and int(mm.group(1), 8) & 0o6000:
            bad('RestrictSUIDSGID=yes', line.strip())

    if name in ('mmap', 'mprotect', 'pkey_mprotect', 'mremap'):
        if 'PROT_EXEC' in args and 'PROT_WRITE' in args:
            bad('MemoryDenyWriteExecute=yes', line.strip())
        if name in ('mprotect', 'pkey_mprotect') and 'PROT_EXEC' in args:
            bad('MemoryDenyWriteExecute=yes', 'makes memory executable: ' + line.strip())
        if name == 'mmap' and 'PROT_EXEC' in args and 'MAP_ANONYMOUS' in args:
            bad('MemoryDenyWriteExecute=yes', line.strip())
    if name == 'socket':
        fam = first.strip()
        if fam != 'AF_UNIX':
            bad('RestrictAddressFamilies=AF_UNIX/IPAddressDeny=any/PrivateNetwork=yes',
                line.strip())
    if name in ('connect', 'sendto', 'sendmsg') and ('sin_port' in args or 'sin6_port' in args):
        bad('IPAddressDeny=any/PrivateNetwork=yes', line.strip())
    if name == 'personality':
        bad('LockPersonality=yes', line.strip())
    if name in ('unshare', 'setns') or (name in ('clone', 'clone3') and 'CLONE_NEW' in args):
        bad('RestrictNamespaces=yes', line.strip())
    if name in ('sched_setscheduler', 'sched_setattr') and re.search(r'SCHED_(FIFO|RR|DEADLINE)', args):
        bad('RestrictRealtime=yes', line.strip())
    if name in ('clock_settime', 'settimeofday', 'adjtimex', 'clock_adjtime'):
        bad('ProtectClock=yes', line.strip())
    if name in ('sethostname', 'setdomainname'):
        bad('ProtectHostname=yes', line.strip())
    if name in ('init_module', 'finit_module', 'delete_module'):
        bad('ProtectKernelModules=yes', line.strip())
    if name == 'syslog':
        bad('ProtectKernelLogs=yes', line.strip())
    if name in ('add_key', 'request_key', 'keyctl'):
        bad('KeyringMode=private', line.strip())
    if name in ('shmget', 'semget', 'msgget', 'mq_open'):
        bad('PrivateIPC=yes/RemoveIPC=yes', line.strip())
    if name in ('setuid', 'setgid', 'setresuid', 'setresgid', 'setgroups', 'capset'):
        bad('User=/NoNewPrivileges=yes/CapabilityBoundingSet=', line.strip())

for name in sorted(calls):
    if name not in allowed:
        bad('SystemCallFilter=@system-service', 'not in the set: ' + name)
    if name in denied:
        bad('SystemCallFilter=~@privileged @resources', 'denied: ' + name)

if len(pids) > 4:
    bad('TasksMax=4', '%d processes' % len(pids))

# PrivateUsers=yes maps only root and mailslot: every file read must be
# theirs, or readable by anyone.
for p in sorted(paths_read):
    try:
        st = os.stat(p)
    except OSError:
        continue
    if st.st_uid not in (0, uid) and not st.st_mode & stat.S_IROTH:
        bad('PrivateUsers=yes', '%s is owned by uid %d' % (p, st.st_uid))

for p in problems:
    print(p)
print('syscheck: %d processes, %d system calls of %d kinds, %d problems'
      % (len(pids), sum(calls.values()), len(calls), len(problems)))
sys.exit(1 if problems else 0)
