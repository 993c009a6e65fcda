# tests/lib/hostile.bash: functions for tests/hostile-*.bats, on top of
# lib/common (load both: `load 'lib/common'`, then `load 'lib/hostile'`).
#
#   hs_escape_file FILE STR    write STR, decoded as printf %b does, to FILE
#   hs_stored_body FILE        a stored message without mailslot's trace
#                              headers (Return-Path, Delivered-To, Received
#                              and its continuation lines), on stdout
#   hs_assert_one_message EXPECTED_FILE
#                              exactly one file in new/, none in tmp/, and its
#                              body is byte for byte EXPECTED_FILE
#   hs_assert_nothing_stored   new/ and tmp/ are empty (or absent)
#   hs_crlf_to_lf IN OUT       what a message looks like once stored: CRLF -> LF
#   hs_skip_unless_root_mount  skip (saying why) unless a tmpfs can be mounted
#   hs_vmhwm_kb PID            VmHWM of a live process, in kB

hs_escape_file() {
	printf '%b' "$2" >"$1"
}

hs_stored_body() {
	# Trace headers come first: Return-Path, Delivered-To, Received and the
	# TAB-led continuation lines of Received.
	perl -0777 -ne 's/\A(?:(?:Return-Path|Delivered-To|Received): [^\n]*\n(?:\t[^\n]*\n)*)*//; print' "$1"
}

hs_crlf_to_lf() {
	perl -0777 -pe 's/\r\n/\n/g' <"$1" >"$2"
}

hs_assert_one_message() {
	local expected=$1 f
	assert_equal "$(ms_tmp_count)" 0
	f=$(ms_new_file)
	hs_stored_body "$f" >"$MS_DIR/stored-body"
	if ! cmp -s "$MS_DIR/stored-body" "$expected"; then
		echo "stored body differs from what was sent:" >&2
		echo "--- expected" >&2
		od -c "$expected" | head -n 40 >&2
		echo "--- stored" >&2
		od -c "$MS_DIR/stored-body" | head -n 40 >&2
		return 1
	fi
}

hs_assert_nothing_stored() {
	assert_equal "$(ms_new_count)" 0
	assert_equal "$(ms_tmp_count)" 0
}

# A tmpfs of SIZE at DIR; skips with the reason when that cannot be done.
hs_skip_unless_root_mount() {
	[ "$(id -u)" = 0 ] || skip "needs root to mount a tmpfs (real ENOSPC)"
	mkdir -p "$MS_DIR/probe-mnt"
	if ! mount -t tmpfs -o size=64k tmpfs "$MS_DIR/probe-mnt" 2>"$MS_DIR/mount.err"; then
		skip "cannot mount a tmpfs here: $(cat "$MS_DIR/mount.err")"
	fi
	umount "$MS_DIR/probe-mnt"
}

hs_vmhwm_kb() {
	sed -n 's/^VmHWM:[[:space:]]*\([0-9]*\) kB$/\1/p' "/proc/$1/status"
}

# hs_noread_sock PORT SA_LOG LIMIT: connect, send HELP commands until the
# connection takes no more (mailslot has stopped reading because its
# replies have nowhere to go), never read a byte, and wait up to LIMIT
# seconds for the mailslot child (the newest PID in SA_LOG) to exit.
# Prints "sent=<octets> exited=yes|no".
hs_noread_sock() {
	python3 - "$@" <<'PY'
import os, re, socket, sys, time
port, salog, limit = int(sys.argv[1]), sys.argv[2], float(sys.argv[3])
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
s.connect(('127.0.0.1', port))
pid = None
for _ in range(200):
    m = re.findall(r'^Spawned .* as PID (\d+)\.$', open(salog).read(), re.M)
    if m:
        pid = int(m[-1])
        break
    time.sleep(0.02)
s.setblocking(False)
chunk = b'HELP\r\n' * 1000
sent, idle = 0, 0
# Bounded: at most 256 MB, and stop once 50 tries in a row found no room.
while sent < (256 << 20) and idle < 50:
    try:
        sent += s.send(chunk)
        idle = 0
    except BlockingIOError:
        idle += 1
        time.sleep(0.02)
    except OSError:
        break           # reset: mailslot closed with our input unread
deadline = time.monotonic() + limit
exited = 'no'
while pid is not None and time.monotonic() < deadline:
    try:
        st = open('/proc/%d/stat' % pid).read()
        if st.rsplit(')', 1)[1].split()[0] == 'Z':
            exited = 'yes'
            break
    except OSError:
        exited = 'yes'
        break
    time.sleep(0.05)
print('sent=%d exited=%s' % (sent, exited))
s.close()
PY
}

# hs_noread_pipe LIMIT CMD...: the same over pipes: mailslot is started
# with a pipe on stdin and stdout; commands are written until the pipe is
# full, stdout is never read, and mailslot gets LIMIT seconds to exit
# (then it is killed).  Prints "sent=<octets> exited=yes|no".
hs_noread_pipe() {
	python3 - "$@" <<'PY'
import fcntl, os, subprocess, sys, time
limit, cmd = float(sys.argv[1]), sys.argv[2:]
p = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                     stderr=subprocess.DEVNULL, bufsize=0)
fd = p.stdin.fileno()
fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) | os.O_NONBLOCK)
chunk = b'HELP\r\n' * 1000
sent, idle = 0, 0
while sent < (256 << 20) and idle < 50:
    try:
        sent += os.write(fd, chunk)
        idle = 0
    except BlockingIOError:
        idle += 1
        time.sleep(0.02)
    except BrokenPipeError:
        break
deadline = time.monotonic() + limit
exited = 'no'
while time.monotonic() < deadline:
    if p.poll() is not None:
        exited = 'yes'
        break
    time.sleep(0.05)
if exited == 'no':
    p.kill()
    p.wait()
print('sent=%d exited=%s' % (sent, exited))
PY
}
