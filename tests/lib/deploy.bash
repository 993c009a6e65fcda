# tests/lib/deploy.bash: launchers, units and installed files, for
# tests/deploy-*.bats.  Loaded after lib/common (MAILSLOT, MS_REPO, MS_LIB,
# MS_CLIENT, bats-assert).
#
# Every scenario runs as the installed system would, but inside namespaces
# the test makes itself, so nothing on the machine changes and no port on
# it is taken:
#
#   dp_setup_file    (setup_file) `make install DESTDIR=$DP_ROOT PREFIX=/usr`,
#                    then the installed sysusers.d and tmpfiles.d files applied
#                    to that tree by systemd-sysusers/systemd-tmpfiles --root,
#                    on copies of the machine's passwd/group files: the
#                    account "mailslot" and /var/lib/mailslot exist there.
#                    Without root or namespaces, or with MAILSLOT_WRAPPER set
#                    (dp_why_not), every test is skipped, saying why.
#   dp_setup         (setup) a fresh Maildir and the example configuration
#                    (with hostname = mx.test) in that tree; DP_T is the
#                    test's directory.
#   dp_ns FN ARGS    runs the scenario function FN (defined below, ns_*) in
#                    new mount, network and PID namespaces: only a loopback
#                    interface, so the launchers can listen on port 25;
#                    /usr/sbin, /etc and /var/lib overlaid with the installed
#                    tree; a private /run and a private /dev (null, zero, full,
#                    random, urandom, tty), where /dev/log may be a socket of
#                    the test's own.  When the scenario ends, every process in
#                    it ends (unshare --kill-child, a bound of DP_NS_TIMEOUT
#                    seconds).
#
# The scenarios talk to the server with dp_send (one transaction), or with
# the function named in DP_CLIENT, given the port and the launcher's name.
# They write into $DP_T: client.out (the bytes the client got),
# launcher.log (the launcher's stdout and stderr), syslog (datagrams that
# reached /dev/log), journal.export (journalctl -o export).  After dp_ns,
# the Maildir is $DP_MAILDIR (the overlay's upper layer).

DP_NS_TIMEOUT=${DP_NS_TIMEOUT:-60}
DP_PORT=25

# Why the scenarios cannot run here, or nothing.  (bats 1.8 cannot skip
# from setup_file, so dp_setup skips each test.)
dp_why_not() {
	if [ -n "${MAILSLOT_WRAPPER:-}" ]; then
		# The launchers start the installed binary themselves and pass it
		# no environment; the sanitizer and valgrind runs are the other
		# suites' business.
		echo "runs mailslot as installed, without MAILSLOT_WRAPPER"
	elif [ "$(id -u)" != 0 ]; then
		echo "needs root (mount and network namespaces)"
	elif ! unshare --mount --net true 2>/dev/null; then
		echo "needs unshare --mount --net (namespaces are not available here)"
	fi
}

dp_setup_file() {
	DP_ROOT=$BATS_FILE_TMPDIR/root
	# What the scenarios need inside the namespaces (they run outside bats).
	export DP_ROOT MS_REPO MS_LIB MS_CLIENT MAILSLOT
	DP_SKIP=$(dp_why_not)
	export DP_SKIP
	[ -z "$DP_SKIP" ] || return 0
	mkdir -p "$DP_ROOT/etc" "$DP_ROOT/usr/sbin" "$DP_ROOT/var/lib"
	# -o all: install what was built (MAILSLOT), never rebuild it here.
	make -s -C "$MS_REPO" -o all install DESTDIR="$DP_ROOT" PREFIX=/usr \
	    PROG="$MAILSLOT" >"$BATS_FILE_TMPDIR/install.log" 2>&1 ||
		{ cat "$BATS_FILE_TMPDIR/install.log"; return 1; }
	for f in passwd group shadow gshadow; do
		[ -e "/etc/$f" ] && cp -p "/etc/$f" "$DP_ROOT/etc/$f"
	done
	systemd-sysusers --root="$DP_ROOT" >/dev/null
	systemd-tmpfiles --root="$DP_ROOT" --create >/dev/null
	DP_UID=$(awk -F: '$1 == "mailslot" { print $3 }' "$DP_ROOT/etc/passwd")
	DP_GID=$(awk -F: '$1 == "mailslot" { print $4 }' "$DP_ROOT/etc/passwd")
	export DP_UID DP_GID
}

dp_setup() {
	[ -z "$DP_SKIP" ] || skip "$DP_SKIP"
	DP_T=$BATS_TEST_TMPDIR
	DP_MAILDIR=$DP_ROOT/var/lib/mailslot/Maildir
	export DP_T DP_MAILDIR
	rm -rf "$DP_MAILDIR" "$DP_ROOT/.ovl"
	systemd-tmpfiles --root="$DP_ROOT" --create >/dev/null
	dp_config
}

# The example configuration, installed, with a fixed host name and extra
# "key = value" lines from the arguments.
dp_config() {
	{
		cat "$MS_REPO/etc/mailslot.conf"
		echo "hostname = mx.test"
		echo "domains = mx.test"
		printf '%s\n' "$@"
	} >"$DP_ROOT/etc/mailslot/mailslot.conf"
}

dp_ns() {
	local rc=0
	timeout -k 5 "$DP_NS_TIMEOUT" unshare --mount --net --pid --fork \
	    --kill-child --mount-proc --propagation private -- \
	    bash -c 'source "$MS_LIB/deploy.bash" && dp_ns_enter "$@"' _ "$@" ||
		rc=$?
	return "$rc"
}

# ---- inside the namespaces ----------------------------------------------

DP_PIDS=()

dp_ns_enter() {
	set -euo pipefail
	trap dp_ns_stop EXIT
	ip link set lo up
	mount -t tmpfs -o mode=755 tmpfs /run
	local d w
	for d in usr/sbin etc var/lib; do
		w=$DP_ROOT/.ovl/${d//\//-}
		mkdir -p "$w"
		mount -t overlay overlay \
		    -o "lowerdir=/$d,upperdir=$DP_ROOT/$d,workdir=$w" "/$d"
	done
	# A journal directory of the machine's, if any, is none of ours.
	if [ -d /var/log/journal ]; then
		mount -t tmpfs tmpfs /var/log/journal
	fi
	mount -t tmpfs -o mode=755 tmpfs /dev
	mknod -m 666 /dev/null c 1 3
	mknod -m 666 /dev/zero c 1 5
	mknod -m 666 /dev/full c 1 7
	mknod -m 666 /dev/random c 1 8
	mknod -m 666 /dev/urandom c 1 9
	mknod -m 666 /dev/tty c 5 0
	ln -s /proc/self/fd /dev/fd
	ln -s /proc/self/fd/0 /dev/stdin
	ln -s /proc/self/fd/1 /dev/stdout
	ln -s /proc/self/fd/2 /dev/stderr
	mkdir /dev/shm /dev/pts
	"$@"
}

# Start a command in the background, to be stopped (by PID) at the end.
dp_bg() {
	"$@" &
	DP_PIDS+=("$!")
}

dp_ns_stop() {
	local pid i
	for pid in "${DP_PIDS[@]}"; do
		kill "$pid" 2>/dev/null || true
	done
	for pid in "${DP_PIDS[@]}"; do
		for i in $(seq 1 50); do
			kill -0 "$pid" 2>/dev/null || break
			sleep 0.02
		done
		kill -9 "$pid" 2>/dev/null || true
	done
}

# Wait (at most 5 s) until something listens on TCP port $1.
dp_wait_listen() {
	local i
	for i in $(seq 1 100); do
		if [ -n "$(ss -Hltn "sport = :$1")" ]; then
			return 0
		fi
		sleep 0.05
	done
	echo "nothing listens on port $1; launcher log:" >&2
	cat "$DP_T/launcher.log" >&2 || true
	return 1
}

# Wait (at most 5 s) for a socket file.
dp_wait_socket() {
	local i
	for i in $(seq 1 100); do
		[ -S "$1" ] && return 0
		sleep 0.05
	done
	echo "no socket at $1" >&2
	return 1
}

# A syslog daemon of the test's own on /dev/log: datagrams to $DP_T/syslog.
dp_syslog() {
	: >"$DP_T/syslog"
	dp_bg python3 "$MS_LIB/syslog-catcher.py" /dev/log "$DP_T/syslog"
	dp_wait_socket /dev/log
}

# systemd-journald itself, on the private /run (volatile storage).
dp_journald() {
	mkdir -p /run/systemd/journal /run/log/journal
	SYSTEMD_LOG_TARGET=console dp_bg /lib/systemd/systemd-journald \
	    >"$DP_T/journald.log" 2>&1
	dp_wait_socket /run/systemd/journal/socket
}

# The session's last line (event=close, or event=config for a broken
# configuration) in log FILE, waited for at most 5 s: log lines travel
# apart from the replies.
DP_LAST_LINE='event=(close|config) '

dp_wait_log() {
	local i
	for i in $(seq 1 100); do
		grep -a -q -E "$DP_LAST_LINE" "$1" 2>/dev/null && return 0
		sleep 0.05
	done
	return 0	# the test's own checks say what is missing
}

# The journal's mailslot entries, once $1 (default 1) sessions have ended.
dp_journal_export() {
	local i
	for i in $(seq 1 100); do
		journalctl -D /run/log/journal -o export --no-pager \
		    SYSLOG_IDENTIFIER=mailslot >"$DP_T/journal.export"
		[ "$(grep -a -c -E "^MESSAGE=$DP_LAST_LINE" "$DP_T/journal.export")" \
		    -ge "${1:-1}" ] && return 0
		sleep 0.05
	done
}

# One mail transaction on 127.0.0.1:$1; every byte the client got goes to
# $DP_T/client.out.  $2 names the launcher in the Subject.
dp_send() {
	python3 "$MS_CLIENT" --port "$1" --timeout 10 --out "$DP_T/client.out" \
	    --wait '220 ' --send 'EHLO client.test\r\n' --wait '250 ' \
	    --send 'MAIL FROM:<alice@client.test>\r\n' --wait '250 ' \
	    --send 'RCPT TO:<bob@mx.test>\r\n' --wait '250 ' \
	    --send 'DATA\r\n' --wait '354 ' \
	    --send "Subject: via $2\\r\\n\\r\\nHello from $2.\\r\\n.\\r\\n" \
	    --wait '250 ' --send 'QUIT\r\n'
}

# One LMTP transaction (RFC 2033) on 127.0.0.1:$1 for two recipients, each
# answered after the data; $2 names the launcher in the Subject.
dp_send_lmtp() {
	python3 "$MS_CLIENT" --port "$1" --timeout 10 --out "$DP_T/client.out" \
	    --wait '220 ' --send 'LHLO client.test\r\n' --wait '250 ' \
	    --send 'MAIL FROM:<alice@client.test>\r\n' --wait '250 ' \
	    --send 'RCPT TO:<bob@mx.test>\r\n' --wait '250 ' \
	    --send 'RCPT TO:<carol@mx.test>\r\n' --wait '250 ' \
	    --send 'DATA\r\n' --wait '354 ' \
	    --send "Subject: via $2\\r\\n\\r\\nHello from $2.\\r\\n.\\r\\n" \
	    --wait '<carol@mx.test>: queued as ' --send 'QUIT\r\n'
}

# A client that only listens: what the server says on connecting, until it
# closes (for a broken configuration: 421, then nothing).
dp_listen_only() {
	python3 "$MS_CLIENT" --port "$1" --timeout 10 --out "$DP_T/client.out" \
	    --report "$DP_T/client.report"
}

# The command that runs the rest as the mailslot account.
DP_AS_MAILSLOT=(setpriv --reuid=mailslot --regid=mailslot --init-groups --)

# ---- scenarios (dp_ns ns_...) --------------------------------------------

# systemd-socket-activate --inetd -a: the connection on fd 0/1, as
# mailslot@.service gets it (StandardInput=socket).  Extra arguments go to
# systemd-socket-activate (e.g. -E VAR=value).
ns_sa_inetd() {
	"${DP_AS_MAILSLOT[@]}" systemd-socket-activate --inetd -a \
	    -l "127.0.0.1:2525" "$@" /usr/sbin/mailslot \
	    >"$DP_T/launcher.log" 2>&1 </dev/null &
	DP_PIDS+=("$!")
	dp_wait_listen 2525
	"${DP_CLIENT:-dp_send}" 2525 systemd-socket-activate
}

# The plain Accept=yes form: the connection is fd 3 (LISTEN_FDS=1); stdout
# and stderr are files of their own.
ns_sa_fd3() {
	"${DP_AS_MAILSLOT[@]}" systemd-socket-activate -a -l "127.0.0.1:2525" \
	    /usr/sbin/mailslot >"$DP_T/launcher.out" 2>"$DP_T/launcher.log" \
	    </dev/null &
	DP_PIDS+=("$!")
	dp_wait_listen 2525
	"${DP_CLIENT:-dp_send}" 2525 fd3
}

# The shipped tcpserver run script, on 127.0.0.1:25, its output the log.
ns_tcpserver() {
	IP=127.0.0.1 dp_bg "$MS_REPO/contrib/tcpserver/run" \
	    >"$DP_T/launcher.log" 2>&1 </dev/null
	dp_wait_listen "$DP_PORT"
	"${DP_CLIENT:-dp_send}" "$DP_PORT" tcpserver
}

# The shipped s6 run script (execline), on 127.0.0.1:25.
ns_s6() {
	IP=127.0.0.1 dp_bg "$MS_REPO/contrib/s6/run" \
	    >"$DP_T/launcher.log" 2>&1 </dev/null
	dp_wait_listen "$DP_PORT"
	"${DP_CLIENT:-dp_send}" "$DP_PORT" s6
}

# The shipped LMTP run script for tcpserver, on 127.0.0.1:24.
ns_tcpserver_lmtp() {
	dp_bg "$MS_REPO/contrib/tcpserver-lmtp/run" >"$DP_T/launcher.log" 2>&1 </dev/null
	dp_wait_listen 24
	dp_send_lmtp 24 tcpserver-lmtp
}

# The shipped inetd.conf's LMTP line: 127.0.0.1:24.
ns_inetd_lmtp() {
	dp_syslog
	dp_bg inetd -d "$MS_REPO/contrib/inetd.conf" \
	    >"$DP_T/launcher.log" 2>&1 </dev/null
	dp_wait_listen 24
	dp_send_lmtp 24 inetd-lmtp
	dp_wait_log "$DP_T/syslog"
}

# openbsd-inetd in the foreground (-d) on the shipped inetd.conf itself:
# port 25, user mailslot, /usr/sbin/mailslot; syslog to the test's /dev/log.
ns_inetd() {
	dp_syslog
	dp_bg inetd -d "$MS_REPO/contrib/inetd.conf" \
	    >"$DP_T/launcher.log" 2>&1 </dev/null
	dp_wait_listen "$DP_PORT"
	"${DP_CLIENT:-dp_send}" "$DP_PORT" inetd
	dp_wait_log "$DP_T/syslog"
}

# xinetd on the shipped service file itself.
ns_xinetd() {
	dp_syslog
	# In the foreground (-dontfork) with its own messages in a file: -d
	# would insist on writing them to /dev/tty, and there is none here.
	dp_bg "$1" -dontfork -filelog "$DP_T/launcher.log" \
	    -f "$MS_REPO/contrib/xinetd.mailslot" >>"$DP_T/launcher.log" 2>&1 </dev/null
	dp_wait_listen "$DP_PORT"
	"${DP_CLIENT:-dp_send}" "$DP_PORT" xinetd
	dp_wait_log "$DP_T/syslog"
}

# Under the journal: systemd-journald runs, and mailslot is started as a
# unit would start it (INVOCATION_ID set).
ns_journal() {
	dp_journald
	ns_sa_inetd -E INVOCATION_ID=0123456789abcdef0123456789abcdef
	dp_journal_export
}

# ---- checks, outside ----------------------------------------------------

# The client got SMTP replies and nothing else: every line "NNN[ -]...\r".
dp_assert_smtp_only() {
	local bad
	[ -s "$DP_T/client.out" ] || fail "the client got nothing"
	bad=$(grep -a -n -v -E $'^[0-9]{3}[ -][^\r]*\r$' "$DP_T/client.out" || true)
	[ -z "$bad" ] || fail "the client got more than SMTP replies: $bad"
	# The whole transaction went through, and QUIT was answered.
	grep -a -q '^250 2.0.0 queued as ' "$DP_T/client.out" ||
		fail "no 250 after the data: $(cat -v "$DP_T/client.out")"
	grep -a -q '^221 ' "$DP_T/client.out" || fail "no 221"
}

# Exactly one message in new/, from the test's client on 127.0.0.1, with
# the Subject of launcher $1; prints its path.
dp_assert_delivered() {
	local n f
	n=$(find "$DP_MAILDIR/new" -type f | wc -l)
	[ "$n" -eq 1 ] || fail "expected one message in new/, found $n"
	f=$(find "$DP_MAILDIR/new" -type f)
	grep -q '^Received: from client.test (unknown \[127\.0\.0\.1\])$' "$f" ||
		fail "no Received line with [127.0.0.1]: $(cat "$f")"
	grep -q "^Subject: via $1\$" "$f" || fail "not the message sent: $(cat "$f")"
	[ "$(stat -c %u "$f")" = "$DP_UID" ] || fail "$f is not owned by mailslot"
	echo "$f"
}

# xinetd: the installed one, else the Debian package unpacked into the
# file's directory (it conflicts with openbsd-inetd, so it is not installed
# alongside).  Prints the binary's path, or nothing.
dp_xinetd() {
	local d=$BATS_FILE_TMPDIR/xinetd
	if [ -x /usr/sbin/xinetd ]; then
		echo /usr/sbin/xinetd
		return 0
	fi
	if [ ! -x "$d/usr/sbin/xinetd" ]; then
		mkdir -p "$d"
		(cd "$d" && { apt-get download -q xinetd >/dev/null 2>&1 ||
		    { apt-get update -qq >/dev/null 2>&1 &&
		      apt-get download -q xinetd >/dev/null 2>&1; }; } &&
		    dpkg-deb -x xinetd_*.deb .) || return 0
	fi
	[ -x "$d/usr/sbin/xinetd" ] && echo "$d/usr/sbin/xinetd"
	return 0
}

# systemd-analyze verify on the installed units, where /usr/sbin/mailslot
# exists (the overlay) and man finds the installed pages (Documentation=).
ns_verify() {
	local u=$DP_ROOT/usr/lib/systemd/system rc=0
	MANPATH=$DP_ROOT/usr/share/man: systemd-analyze verify \
	    "$u/mailslot.socket" "$u/mailslot@.service" \
	    "$u/mailslot-lmtp.socket" "$u/mailslot-lmtp@.service" >"$DP_T/verify.out" 2>&1 ||
		rc=$?
	echo "rc=$rc" >>"$DP_T/verify.out"
}

# A session under tests/lib/sandbox: mailslot@.service's settings applied
# by hand, the session traced into $DP_T/trace.
# Logging goes to a journald, as under the unit; a second session uses
# STARTTLS when a certificate is configured (DP_TLS=1).
ns_sandbox() {
	dp_journald
	systemd-socket-activate --inetd -a -l 127.0.0.1:2525 \
	    -E INVOCATION_ID=0123456789abcdef0123456789abcdef \
	    "$MS_LIB/sandbox" "$DP_T/trace" -- /usr/sbin/mailslot \
	    >"$DP_T/launcher.log" 2>&1 </dev/null &
	DP_PIDS+=("$!")
	dp_wait_listen 2525
	dp_send 2525 sandbox
	if [ "${DP_TLS:-0}" = 1 ]; then
		python3 - >"$DP_T/tls.out" 2>&1 <<-'PY'
		import smtplib, ssl
		ctx = ssl.create_default_context()
		ctx.check_hostname = False
		ctx.verify_mode = ssl.CERT_NONE
		s = smtplib.SMTP('127.0.0.1', 2525, local_hostname='client.test')
		s.starttls(context=ctx)
		s.sendmail('alice@client.test', ['bob@mx.test'],
		           'Subject: via STARTTLS\r\n\r\nHello.\r\n')
		print('tls ok', s.sock.version())
		s.quit()
		PY
	fi
	dp_journal_export $((1 + ${DP_TLS:-0}))
}

# Every system call of a systemd-analyze syscall-filter group, nested
# groups expanded.
dp_syscall_group() {
	local n
	systemd-analyze syscall-filter "$1" | sed -n '2,$p' |
	    sed -e 's/^[[:space:]]*//' -e 's/[[:space:]]*$//' -e '/^#/d' -e '/^$/d' |
	    while read -r n; do
		case $n in
		@*) dp_syscall_group "$n" ;;
		*) echo "$n" ;;
		esac
	    done
}

# ---- real clients and a real reader --------------------------------------

# The message each client sends: LF line endings, a line that starts with
# a dot, and one that is only dots; $1 is the client's name.  Its last line
# has no line end: the clients differ in what they add after a final LF
# (swaks and curl without --crlf an empty line), never before the CRLF
# they end the data with.  Date and Message-ID are there, so that no client
# adds its own.
dp_message() {
	printf 'Date: Tue, 01 Dec 2026 12:00:00 +0000\n'
	printf 'From: Alice <alice@client.test>\nTo: Bob <bob@mx.test>\n'
	printf 'Subject: via %s\nMessage-ID: <%s@client.test>\n\n' "$1" "$1"
	printf 'Hello from %s.\n.a line that starts with a dot\n..\n' "$1"
	printf 'and the end.'
}

# Send with client $1 to 127.0.0.1:2525; its output to $DP_T/client-$1.log.
dp_client() {
	local c=$1 m=$DP_T/msg-$1
	dp_message "$c" >"$m"
	case $c in
	swaks)
		swaks --server 127.0.0.1:2525 --helo client.test \
		    --from alice@client.test --to bob@mx.test --data "$m" ;;
	swaks-pipeline)
		swaks --server 127.0.0.1:2525 --helo client.test --pipeline \
		    --from alice@client.test --to bob@mx.test --data "$m" ;;
	msmtp)
		# --host: no configuration file is read.
		msmtp --host=127.0.0.1 --port=2525 --domain=client.test \
		    --auth=off --tls=off --from=alice@client.test bob@mx.test <"$m" ;;
	curl-crlf)
		curl -sS --crlf "smtp://127.0.0.1:2525/client.test" \
		    --mail-from alice@client.test --mail-rcpt bob@mx.test -T "$m" ;;
	curl-lf)
		# Without --crlf curl sends the bare LFs as they are.
		curl -sS "smtp://127.0.0.1:2525/client.test" \
		    --mail-from alice@client.test --mail-rcpt bob@mx.test -T "$m" ;;
	smtplib)
		# A str message: smtplib turns its LFs into CRLF and stuffs dots.
		python3 - "$m" <<-'PY'
		import smtplib, sys
		msg = open(sys.argv[1]).read()
		with smtplib.SMTP('127.0.0.1', 2525, local_hostname='client.test') as s:
		    s.sendmail('alice@client.test', ['bob@mx.test'], msg)
		PY
		;;
	*) echo "no client $c" >&2; return 2 ;;
	esac >"$DP_T/client-$c.log" 2>&1
}

DP_CLIENTS=(swaks swaks-pipeline msmtp curl-crlf curl-lf smtplib)

# mailslot as the unit runs it (the mailslot account, fd 0/1), and the
# clients named in the arguments one after another.
ns_clients() {
	"${DP_AS_MAILSLOT[@]}" systemd-socket-activate --inetd -a \
	    -l 127.0.0.1:2525 /usr/sbin/mailslot \
	    >"$DP_T/launcher.log" 2>&1 </dev/null &
	DP_PIDS+=("$!")
	dp_wait_listen 2525
	local c
	for c in "$@"; do
		dp_client "$c" || { echo "$c failed:"; cat "$DP_T/client-$c.log"; return 1; }
	done
	sleep 0.2
}

# Dovecot on 127.0.0.1:1143 (its own configuration, in the foreground)
# serving the Maildir as the mailslot account, and imaplib fetching every
# message into $DP_T/imap/N (with RFC822.SIZE in $DP_T/imap/N.size).
ns_dovecot() {
	local conf=$DP_T/dovecot.conf
	ns_clients "${DP_CLIENTS[@]}"
	mkdir -p /run/dovecot-test "$DP_T/imap"
	cat >"$conf" <<-EOC
	protocols = imap
	listen = 127.0.0.1
	base_dir = /run/dovecot-test
	state_dir = /run/dovecot-test/state
	log_path = $DP_T/dovecot.log
	ssl = no
	disable_plaintext_auth = no
	auth_mechanisms = plain
	default_login_user = dovenull
	default_internal_user = dovecot
	first_valid_uid = $DP_UID
	last_valid_uid = $DP_UID
	mail_location = maildir:/var/lib/mailslot/Maildir:INDEX=MEMORY
	passdb {
	  driver = static
	  args = password=secret
	}
	userdb {
	  driver = static
	  args = uid=$DP_UID gid=$DP_GID home=/var/lib/mailslot
	}
	service imap-login {
	  inet_listener imap {
	    address = 127.0.0.1
	    port = 1143
	  }
	  inet_listener imaps {
	    port = 0
	  }
	}
	EOC
	dp_bg dovecot -F -c "$conf" >"$DP_T/dovecot.out" 2>&1 </dev/null
	dp_wait_listen 1143 || { cat "$DP_T/dovecot.out" "$DP_T/dovecot.log" >&2; return 1; }
	python3 - "$DP_T/imap" <<-'PY'
	import imaplib, sys
	out = sys.argv[1]
	m = imaplib.IMAP4('127.0.0.1', 1143)
	m.login('mailslot', 'secret')
	m.select('INBOX', readonly=True)
	typ, data = m.search(None, 'ALL')
	for num in data[0].split():
	    typ, d = m.fetch(num, '(RFC822.SIZE BODY.PEEK[])')
	    meta, body = d[0]
	    size = meta.split(b'RFC822.SIZE ')[1].split()[0]
	    open('%s/%s' % (out, num.decode()), 'wb').write(body)
	    open('%s/%s.size' % (out, num.decode()), 'w').write(size.decode().strip(')'))
	m.logout()
	PY
}

# `make run`, the demo, on its own port 2525 (in this network namespace),
# its output in $DP_T/run.out; then the commands it prints, as printed.
ns_demo() {
	dp_bg make -s -C "$MS_REPO" run RUN_DIR="$DP_T/demo" \
	    >"$DP_T/run.out" 2>&1 </dev/null
	dp_wait_listen 2525 || { cat "$DP_T/run.out" >&2; return 1; }
	sed -n '/from another terminal:$/,/^Then look:/p' "$DP_T/run.out" |
	    sed '1d;$d' >"$DP_T/printed.sh"
	sh -e "$DP_T/printed.sh" >"$DP_T/printed.out" 2>&1
	sleep 0.2
}
