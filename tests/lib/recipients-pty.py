#!/usr/bin/env python3
"""recipients-pty.py: hold a pseudo-terminal for the terminal-delivery tests.

    recipients-pty.py NAMEFILE OUTFILE STOPFILE MODE [TIMEOUT [PAUSE]]

Opens a pty, puts its slave side in raw mode (so the bytes mailslot writes
arrive unchanged: no CR added before LF), sets the slave's mode to MODE
(octal: 620 is "mesg y", 600 "mesg n") and, as root, its group to tty,
writes the slave's name ("/dev/pts/N") to NAMEFILE, then copies
everything that arrives on the master side to OUTFILE until STOPFILE
exists and nothing more arrives, or TIMEOUT seconds (default 20) pass.
The slave stays open the whole time, so a write to it never sees a
hung-up terminal.  With PAUSE, it stops reading for PAUSE seconds after
the first bytes arrive, as a terminal on a slow link (or one held with
^S) does: the pty's buffer fills up.
"""
import grp
import os
import select
import sys
import time
import tty


def main():
    namefile, outfile, stopfile, mode = sys.argv[1:5]
    timeout = float(sys.argv[5]) if len(sys.argv) > 5 else 20.0
    pause = float(sys.argv[6]) if len(sys.argv) > 6 else 0.0
    master, slave = os.openpty()
    tty.setraw(slave)
    name = os.ttyname(slave)
    # As a login's terminal is: group tty, so that an account in that group
    # (as write(1) is) can write to it when the mode says "mesg y".  devpts
    # mounted without gid= gives the pty the creator's group instead.
    if os.geteuid() == 0:
        try:
            os.chown(name, -1, grp.getgrnam('tty').gr_gid)
        except KeyError:
            pass
    os.chmod(name, int(mode, 8))
    with open(namefile + '.tmp', 'w') as f:
        f.write(name + '\n')
    os.rename(namefile + '.tmp', namefile)
    deadline = time.time() + timeout
    with open(outfile, 'wb') as out:
        while time.time() < deadline:
            ready, _, _ = select.select([master], [], [], 0.05)
            if ready:
                try:
                    data = os.read(master, 65536)
                except OSError:
                    break
                if not data:
                    break
                out.write(data)
                out.flush()
                if pause > 0:
                    time.sleep(pause)
                    pause = 0.0
            elif os.path.exists(stopfile):
                break
    os.close(slave)
    os.close(master)


if __name__ == '__main__':
    main()
