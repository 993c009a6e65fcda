# tests/lib/common.bash: what every mailslot test file loads.
#
#   load 'lib/common'
#   setup()    { ms_setup; }
#   teardown() { ms_teardown; }
#
# The binary is ${MAILSLOT:-<repo>/src/mailslot}; MAILSLOT_WRAPPER is a
# command prefix put before it (e.g. "valgrind --error-exitcode=99 -q"),
# empty by default, so a sanitizer build or valgrind runs the same suite.
#
# Per test: $MS_DIR (a fresh directory), $MS_MAILDIR (the catch-all Maildir,
# created by mailslot itself), $MS_HOST (the hostname given to mailslot),
# MS_OPTS (an array of -o options every run gets; add to it before a run).
#
# Over a pipe:
#   smtp_pipe 'EHLO c.example\r\nQUIT\r\n' [mailslot args...]
#     The first argument is decoded as printf %b does (\r, \n, \0, \xHH...;
#     '%' is not special).  Prints the replies with each CRLF turned into a
#     plain newline (a line that did not end in CRLF gets " <no CRLF>"
#     appended, so no assertion can pass on it by accident); the raw bytes
#     are in $MS_DIR/replies, the log (stderr) in $MS_DIR/log, and the
#     return status is mailslot's exit status.  Use it under `run`.
#   smtp_pipe_file FILE [mailslot args...]: the same, input from a file,
#     still through a pipe.
#
# Over TCP (systemd-socket-activate --inetd on 127.0.0.1, a free port):
#   ms_listen [mailslot args...]   start; sets MS_PORT and MS_SA_PID
#                                  (MS_LISTEN_HOST=::1: on IPv6 loopback)
#                                  (MS_LISTEN_INETD= empty: no --inetd, the
#                                  connection on fd 3 as a plain Accept=yes
#                                  unit passes it)
#   smtp_sock [client steps...]    run tests/lib/smtpclient.py against it;
#     prints the replies like smtp_pipe; returns the client's status
#     (0: the server closed the connection, 3: it did not, in --timeout)
#   ms_conn_pid                    the PID of the newest mailslot child
#   ms_kill_conn SIG               a command for a client --run step that
#                                  sends SIG to that child when it runs
#   ms_stop                        stop the listener (teardown does it too)
#
# With a scripted client over a pipe (pauses, waits, signals, peak RSS):
#   smtp_exec [client steps...] -- [mailslot args...]
#     smtpclient.py --exec starts mailslot itself; $MS_DIR/report has
#     exit=, signal=, closed=, senderror=, waitfail=, and vmhwm_kb= when
#     a --hwm step ran (the peak RSS so far; see smtpclient.py).
#     --signal TERM sends a signal to that mailslot process only.
#   ms_report KEY   one value from that report
#
# Normalising (for golden transcripts and log checks):
#   ms_normalize       stdin->stdout: "queued as <name>" -> "queued as NAME",
#                      session=<id> -> session=ID, mailslot[pid] -> mailslot[PID]
#                      (tests/lib/normalize.sed, which tests/lib/transcript
#                      uses too)
#   ms_normalize_msg   stdin->stdout for a stored message: the Received id
#                      and date -> "id ID" and "; DATE"
#
# One command's reply:
#   reply_to 'PREFIX' 'COMMAND' [mailslot args...]
#     runs PREFIX (zero or more CRLF-ended command lines, %b-decoded), then
#     COMMAND, then QUIT, over a pipe; prints the complete reply (all its
#     lines) to COMMAND, and fails unless the session went on to 221.
#   ms_replies: the replies on stdin (as smtp_pipe prints them), one
#     complete reply per line, continuation lines joined with " | ".
#   ms_nth_reply N: the Nth complete reply (1 = greeting) of the replies
#     on stdin, its lines one a line.
#   assert_reply CODE ENH TEXT: $output is exactly one line
#     "CODE ENH [detail: ]TEXT" (ENH "-" for none).
#
# Comparing bytes:
#   ms_assert_same EXPECTED GOT [TITLE]: the two files are byte for byte
#     the same, else fail showing both (CR as \r, other controls as ^X)
#     and a diff.
#
# Maildir helpers: ms_new_count, ms_tmp_count, ms_new_file (the only file in
# new/, fails unless there is exactly one).

MS_REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
MS_LIB=$MS_REPO/tests/lib
MAILSLOT=${MAILSLOT:-$MS_REPO/src/mailslot}
MAILSLOT_WRAPPER=${MAILSLOT_WRAPPER:-}
MS_CLIENT=$MS_LIB/smtpclient.py

load '/usr/lib/bats/bats-support/load'
load '/usr/lib/bats/bats-assert/load'

ms_setup() {
	MS_DIR=$BATS_TEST_TMPDIR/ms
	MS_MAILDIR=$MS_DIR/Maildir
	MS_HOST=mx.test
	mkdir -p "$MS_DIR"
	MS_OPTS=(-o "maildir=$MS_MAILDIR" -o "hostname=$MS_HOST")
	# Started as root, mailslot refuses to deliver without `user`: as root,
	# the suite runs it as MS_USER, which owns the test directory.
	MS_USER=
	if [ "$(id -u)" = 0 ]; then
		MS_USER=mailslot-test
		id "$MS_USER" >/dev/null 2>&1 ||
			useradd --system --no-create-home --shell /usr/sbin/nologin "$MS_USER" 2>/dev/null ||
			id "$MS_USER" >/dev/null 2>&1 || fail "cannot create the account $MS_USER"
		# In group tty, as write(1) is: terminal delivery writes to the
		# test's ptys (tests/lib/recipients-pty.py gives them group tty).
		if getent group tty >/dev/null && ! id -nG "$MS_USER" | grep -qw tty; then
			usermod -aG tty "$MS_USER"
		fi
		local d=$BATS_TEST_TMPDIR
		while [ "$d" != / ] && [ "$d" != /tmp ]; do
			chmod o+x "$d"
			d=$(dirname "$d")
		done
		MS_OPTS+=(-o "user=$MS_USER")
	fi
	MS_SA_PID=
	MS_PORT=
	MS_LISTEN_INETD=yes
	# Logs must go to stderr, whatever environment the suite runs in.
	unset INVOCATION_ID JOURNAL_STREAM LISTEN_FDS LISTEN_PID LISTEN_FDNAMES
	unset TCPREMOTEIP TCPREMOTEHOST REMOTE_ADDR
	[ -x "$MAILSLOT" ] || fail "no mailslot binary at $MAILSLOT (run make)"
}

ms_teardown() {
	ms_stop
}

# As root: put in front of MAILSLOT_WRAPPER a wrapper that runs mailslot
# with an empty /proc (a private mount namespace), so that it names its
# files in tmp/ instead of using O_TMPFILE.  Skips the test when that
# cannot be.  Not in $(...): skip must run in the test's own shell.
ms_noproc_wrapper() {
	[ "$(id -u)" = 0 ] || skip "needs root for a mount namespace"
	command -v unshare >/dev/null || skip "no unshare"
	cat >"$MS_DIR/noproc" <<-'EOF'
	#!/bin/sh
	exec unshare -m --propagation private sh -c 'mount -t tmpfs none /proc && exec "$@"' sh "$@"
	EOF
	chmod 755 "$MS_DIR/noproc"
	unshare -m --propagation private true 2>/dev/null || skip "no mount namespace here"
	MAILSLOT_WRAPPER="$MS_DIR/noproc${MAILSLOT_WRAPPER:+ $MAILSLOT_WRAPPER}"
}

# The command line that starts mailslot, in the array MS_CMD.
ms_cmd() {
	MS_CMD=()
	if [ -n "$MAILSLOT_WRAPPER" ]; then
		# Word splitting is wanted here: the wrapper is a command prefix.
		# shellcheck disable=SC2206
		MS_CMD=($MAILSLOT_WRAPPER)
	fi
	MS_CMD+=("$MAILSLOT" "${MS_OPTS[@]}" "$@")
	ms_own_tree "${MS_CMD[@]}"
}

# As root: hand the test directory to the account mailslot will run as
# (the last user= on its command line), so it can write what the test made.
ms_own_tree() {
	local u=$MS_USER a
	[ -n "$u" ] || return 0
	for a in "$@"; do
		case $a in user=*) u=${a#user=} ;; esac
	done
	chown -R "$u": "$MS_DIR" 2>/dev/null || true
}

# Raw replies in FILE -> CRLF turned into newlines, other line ends marked.
ms_show_replies() {
	sed -e 's/\r$//' -e t -e 's/$/ <no CRLF>/' "$1"
	if [ -s "$1" ] && [ -n "$(tail -c 1 "$1" | tr -d '\n')" ]; then
		echo ' <no CRLF>'
	fi
}

ms_run_stdin() {
	local rc=0
	ms_cmd "$@"
	"${MS_CMD[@]}" >"$MS_DIR/replies" 2>"$MS_DIR/log" || rc=$?
	ms_show_replies "$MS_DIR/replies"
	return "$rc"
}

smtp_pipe() {
	local input=$1
	shift
	printf '%b' "$input" >"$MS_DIR/input"
	cat "$MS_DIR/input" | ms_run_stdin "$@"
}

smtp_pipe_file() {
	local file=$1
	shift
	cat "$file" | ms_run_stdin "$@"
}

smtp_exec() {
	local steps=() rc=0
	while [ $# -gt 0 ] && [ "$1" != -- ]; do
		steps+=("$1")
		shift
	done
	[ "${1-}" = -- ] && shift
	ms_cmd "$@"
	python3 "$MS_CLIENT" --exec --out "$MS_DIR/replies" \
		--report "$MS_DIR/report" --stderr "$MS_DIR/log" \
		"${steps[@]}" -- "${MS_CMD[@]}" || rc=$?
	ms_show_replies "$MS_DIR/replies"
	return "$rc"
}

ms_report() {
	sed -n "s/^$1=//p" "$MS_DIR/report"
}

ms_free_port() {
	python3 -c 'import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])'
}

# Where ms_listen listens: MS_LISTEN_HOST (default 127.0.0.1; ::1 for IPv6)
# and MS_PORT, as systemd-socket-activate -l takes them.
ms_listen_at() {
	local h=${MS_LISTEN_HOST:-127.0.0.1}
	case $h in *:*) printf '[%s]:%s' "$h" "$MS_PORT" ;; *) printf '%s:%s' "$h" "$MS_PORT" ;; esac
}

ms_listen() {
	local tries i
	ms_cmd "$@"
	for tries in 1 2 3 4 5; do
		MS_PORT=$(ms_free_port)
		: >"$MS_DIR/sa.log"
		systemd-socket-activate ${MS_LISTEN_INETD:+--inetd} -a -l "$(ms_listen_at)" \
			"${MS_CMD[@]}" 2>>"$MS_DIR/sa.log" </dev/null 3>&- &
		MS_SA_PID=$!
		for i in $(seq 1 100); do
			grep -q '^Listening on' "$MS_DIR/sa.log" && return 0
			kill -0 "$MS_SA_PID" 2>/dev/null || break
			sleep 0.05
		done
		ms_stop
	done
	fail "could not start systemd-socket-activate: $(cat "$MS_DIR/sa.log")"
}

# The PIDs of the mailslot children the listener started, oldest first.
ms_conn_pids() {
	[ -f "$MS_DIR/sa.log" ] || return 0
	sed -n 's/^Spawned .* as PID \([0-9][0-9]*\)\.$/\1/p' "$MS_DIR/sa.log"
}

ms_conn_pid() {
	ms_conn_pids | tail -n 1
}

ms_kill_conn() {
	printf '%q %q %q' "$MS_LIB/conn-kill" "$1" "$MS_DIR/sa.log"
}

# Stop what ms_listen started: the listener, then any child of it still
# running (only when /proc still shows our binary under that PID).
ms_stop() {
	local pid i
	if [ -n "${MS_SA_PID-}" ]; then
		kill "$MS_SA_PID" 2>/dev/null || true
		for i in $(seq 1 100); do
			kill -0 "$MS_SA_PID" 2>/dev/null || break
			sleep 0.02
		done
		kill -9 "$MS_SA_PID" 2>/dev/null || true
		wait "$MS_SA_PID" 2>/dev/null || true
		MS_SA_PID=
		for pid in $(ms_conn_pids); do
			if tr '\0' ' ' 2>/dev/null <"/proc/$pid/cmdline" |
			    grep -qF -- "$MAILSLOT"; then
				kill -9 "$pid" 2>/dev/null || true
			fi
		done
	fi
}

smtp_sock() {
	local rc=0
	[ -n "$MS_PORT" ] || fail "smtp_sock: ms_listen first"
	python3 "$MS_CLIENT" --host "${MS_LISTEN_HOST:-127.0.0.1}" --port "$MS_PORT" --out "$MS_DIR/replies" \
		--report "$MS_DIR/report" "$@" || rc=$?
	ms_show_replies "$MS_DIR/replies"
	return "$rc"
}

ms_normalize() {
	sed -E -f "$MS_LIB/normalize.sed"
}

ms_normalize_msg() {
	sed -E \
	    -e 's/ id [0-9]+\.M[0-9]{6}P[0-9]+Q[0-9]+/ id ID/' \
	    -e 's/; [A-Z][a-z]{2}, [0-9]{2} [A-Z][a-z]{2} [0-9]{4} [0-9]{2}:[0-9]{2}:[0-9]{2} \+0000$/; DATE/'
}

ms_new_count() {
	find "$MS_MAILDIR/new" -type f 2>/dev/null | wc -l
}

ms_tmp_count() {
	find "$MS_MAILDIR/tmp" -type f 2>/dev/null | wc -l
}

ms_new_file() {
	local n
	n=$(ms_new_count)
	[ "$n" -eq 1 ] || fail "expected exactly one file in new/, found $n"
	find "$MS_MAILDIR/new" -type f
}

ms_replies() {
	awk '{ buf = buf (buf == "" ? "" : " | ") $0 }
	     /^[0-9][0-9][0-9]( |$)/ || !/^[0-9][0-9][0-9]-/ { print buf; buf = "" }
	     END { if (buf != "") print buf }'
}

ms_nth_reply() {
	ms_replies | sed -n "${1}p" | sed 's/ | /\n/g'
}

reply_to() {
	local prefix=$1 cmd=$2 n all
	shift 2
	all=$(smtp_pipe "${prefix}${cmd}\r\nQUIT\r\n" "$@" | ms_replies) || true
	# greeting + one reply per prefix line, then ours
	n=$(printf '%b' "$prefix" | grep -c '' || true)
	n=$((n + 2))
	printf '%s\n' "$all" | sed -n "${n}p" | sed 's/ | /\n/g'
	if ! printf '%s\n' "$all" | tail -n 1 | grep -q '^221 '; then
		echo "reply_to: the session did not end with 221; all replies:" >&2
		printf '%s\n' "$all" >&2
		return 1
	fi
}

assert_reply() {
	local code=$1 enh=$2 text=$3 re
	re=$(printf '%s' "$text" | sed 's/[][\.*^$()+?{}|/]/\\&/g')
	if [ "$enh" = - ]; then
		re="^$code ([^ ].*: )?$re\$"
	else
		re="^$code ${enh//./\\.} ([^ ].*: )?$re\$"
	fi
	assert_equal "$(printf '%s\n' "$output" | grep -c '')" 1
	assert_output --regexp "$re"
}

# FILE with CR shown as \r (and a $ at each line end), for failure output.
ms_visible() {
	sed -e 's/\r/\\r/g' -e 's/$/$/' "$1" | cat -v
}

ms_assert_same() {
	local want=$1 got=$2 title=${3:-bytes differ}
	if ! cmp -s "$want" "$got"; then
		{
			echo "-- $title --"
			echo "expected ($want):"
			ms_visible "$want"
			echo "got ($got):"
			ms_visible "$got"
			echo "diff:"
			diff -u <(ms_visible "$want") <(ms_visible "$got")
			echo "--"
		} | fail
	fi
}
