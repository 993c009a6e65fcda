#!/usr/bin/env bats
# One SMTP transaction through each launcher mailslot ships for, on
# loopback, with the installed tree (make install) and the shipped contrib
# files themselves; where the log goes under each (see lib/deploy.bash).

load 'lib/common'
load 'lib/deploy'

setup_file() { dp_setup_file; }
setup() { ms_setup; dp_setup; }

@test "systemd-socket-activate --inetd -a: delivered, peer in Received, log on stderr" {
	dp_ns ns_sa_inetd
	dp_assert_smtp_only
	dp_assert_delivered systemd-socket-activate
	grep -q 'mailslot\[[0-9]*\]: session=[0-9a-f]* event=deliver ' "$DP_T/launcher.log"
}

@test "systemd-socket-activate, plain Accept=yes (fd 3): delivered, nothing on fd 1" {
	dp_ns ns_sa_fd3
	dp_assert_smtp_only
	dp_assert_delivered fd3
	grep -q '^Listening on 127.0.0.1:2525 as 3\.$' "$DP_T/launcher.log"
	grep -q 'mailslot\[[0-9]*\]: session=[0-9a-f]* event=deliver ' "$DP_T/launcher.log"
	[ ! -s "$DP_T/launcher.out" ]
}

@test "tcpserver: contrib/tcpserver/run as shipped, log lines on the log pipe" {
	dp_ns ns_tcpserver
	dp_assert_smtp_only
	dp_assert_delivered tcpserver
	grep -q '^tcpserver: ok [0-9]* ' "$DP_T/launcher.log"
	grep -q '^mailslot\[[0-9]*\]: session=[0-9a-f]* event=deliver ' "$DP_T/launcher.log"
}

@test "s6: contrib/s6/run (execline) as shipped, log lines on the log pipe" {
	dp_ns ns_s6
	dp_assert_smtp_only
	dp_assert_delivered s6
	grep -q '^mailslot\[[0-9]*\]: session=[0-9a-f]* event=deliver ' "$DP_T/launcher.log"
}

@test "openbsd-inetd -d on contrib/inetd.conf: delivered, log to syslog, nothing on fd 2" {
	dp_ns ns_inetd
	dp_assert_smtp_only
	dp_assert_delivered inetd
	# LOG_MAIL|LOG_INFO = <22>
	grep -q '^<22>.*mailslot\[[0-9]*\]: session=[0-9a-f]* event=deliver ' "$DP_T/syslog"
	! grep -q 'mailslot\[' "$DP_T/launcher.log"
}

@test "xinetd -dontfork on contrib/xinetd.mailslot: delivered, log to syslog, nothing on fd 2" {
	local xinetd
	xinetd=$(dp_xinetd)
	[ -n "$xinetd" ] || skip "xinetd: neither installed nor downloadable (apt-get download xinetd)"
	dp_ns ns_xinetd "$xinetd"
	dp_assert_smtp_only
	dp_assert_delivered xinetd
	grep -q '^<22>.*mailslot\[[0-9]*\]: session=[0-9a-f]* event=deliver ' "$DP_T/syslog"
	! grep -q 'mailslot\[' "$DP_T/launcher.log"
}

@test "journal: under a unit's environment, systemd-journald gets the structured fields" {
	dp_ns ns_journal
	dp_assert_smtp_only
	dp_assert_delivered systemd-socket-activate
	# journalctl -o export: one FIELD=value a line, entries apart by a blank line.
	run awk -v RS= '/\nMESSAGE=event=deliver / && /\nPRIORITY=6\n/ &&
	    /\nSYSLOG_FACILITY=2\n/ && /\nSYSLOG_IDENTIFIER=mailslot\n/ &&
	    /\nMAILSLOT_SESSION=[0-9a-f]+\n/ { n++ } END { print n + 0 }' \
	    "$DP_T/journal.export"
	assert_output 1
	# ... and nothing went to stderr.
	! grep -q 'mailslot\[' "$DP_T/launcher.log"
}

# A broken configuration: the client gets one 421 4.3.5 line and the close;
# the reason (file:line and key) goes to the log, never to the client.
dp_assert_refused() {
	run cat "$DP_T/client.out"
	assert_output --regexp $'^421 4\\.3\\.5 [^ ]+ Service not available, closing transmission channel\r$'
	grep -q '^closed=yes$' "$DP_T/client.report"
	[ -z "$(find "$DP_MAILDIR/new" -type f)" ]
}

@test "broken configuration under inetd: 421 4.3.5 to the client, the reason to syslog" {
	dp_config "bogus_key = 1"
	DP_CLIENT=dp_listen_only dp_ns ns_inetd
	dp_assert_refused
	# LOG_MAIL|LOG_ERR = <19>
	grep -q '^<19>.*mailslot\[[0-9]*\]: .*event=config problem=.*/etc/mailslot/mailslot.conf:[0-9]*: unknown key .*bogus_key' "$DP_T/syslog"
}

@test "broken configuration under systemd-socket-activate: 421 4.3.5, the reason on stderr" {
	dp_config "max_errors = many"
	DP_CLIENT=dp_listen_only dp_ns ns_sa_inetd
	dp_assert_refused
	grep -q 'mailslot\[[0-9]*\]: .*event=config problem=.*mailslot.conf:[0-9]*: max_errors: bad value' "$DP_T/launcher.log"
}

@test "broken configuration under the journal: 421 4.3.5, the reason in the journal" {
	dp_config "line_endings = sometimes"
	DP_CLIENT=dp_listen_only dp_ns ns_journal
	dp_assert_refused
	run awk -v RS= '/\nMESSAGE=event=config problem=[^\n]*line_endings: bad value/ &&
	    /\nPRIORITY=3\n/ { n++ } END { print n + 0 }' "$DP_T/journal.export"
	assert_output 1
}

@test "broken configuration under tcpserver: 421 4.3.5, the reason on the log pipe" {
	rm "$DP_ROOT/etc/mailslot/mailslot.conf"	# run passes -f: it must exist
	DP_CLIENT=dp_listen_only dp_ns ns_tcpserver
	dp_assert_refused
	grep -q '^mailslot\[[0-9]*\]: .*event=config problem=.*/etc/mailslot/mailslot.conf: No such file' "$DP_T/launcher.log"
}

@test "make run: the demo listens on 127.0.0.1:2525 and the commands it prints deliver" {
	dp_ns ns_demo
	grep -q "mailslot is listening on 127.0.0.1:2525; messages land in $DP_T/demo/Maildir/new/" "$DP_T/run.out"
	grep -q '^  swaks --server 127.0.0.1:2525 ' "$DP_T/printed.sh"
	grep -q 'curl --crlf smtp://127.0.0.1:2525 ' "$DP_T/printed.sh"
	grep -q 'import smtplib' "$DP_T/printed.sh"
	run find "$DP_T/demo/Maildir/new" -type f
	[ "${#lines[@]}" -eq 3 ] || fail "$(cat "$DP_T/printed.out" "$DP_T/run.out")"
	for f in "${lines[@]}"; do
		grep -q '^Received: from .* (unknown \[127\.0\.0\.1\])$' "$f"
	done
}

@test "contrib shell scripts parse (log-run needs daemontools' multilog, not run here)" {
	for f in contrib/tcpserver/run contrib/tcpserver/log-run contrib/demo.sh; do
		sh -n "$MS_REPO/$f" || fail "$f"
		[ -x "$MS_REPO/$f" ] || fail "$f is not executable"
	done
	[ -x "$MS_REPO/contrib/s6/run" ]
	head -n 1 "$MS_REPO/contrib/s6/run" | grep -qx '#!/usr/bin/execlineb -P'
}

# LMTP: LHLO answered, then a reply for each of the two recipients after the
# data, in RCPT order, and nothing but replies; one copy in the catch-all.
dp_assert_lmtp() {
	local bad
	bad=$(grep -a -n -v -E $'^[0-9]{3}[ -][^\r]*\r$' "$DP_T/client.out" || true)
	[ -z "$bad" ] || fail "the client got more than LMTP replies: $bad"
	grep -a -q '^220 mx.test LMTP mailslot ready' "$DP_T/client.out" || fail "no LMTP greeting"
	run grep -a -A2 '^354 ' "$DP_T/client.out"
	assert_line --index 1 --regexp '^250 2\.0\.0 <bob@mx\.test>: queued as '
	assert_line --index 2 --regexp '^250 2\.0\.0 <carol@mx\.test>: queued as '
	grep -a -q '^221 ' "$DP_T/client.out" || fail "no 221"
	f=$(dp_assert_delivered "$1")
	grep -q $'^\tby mx.test (mailslot) with LMTP id ' "$f"
}

@test "LMTP: contrib/tcpserver-lmtp/run on 127.0.0.1:24, a reply per recipient" {
	command -v tcpserver >/dev/null || skip "no tcpserver (ucspi-tcp)"
	dp_ns ns_tcpserver_lmtp
	dp_assert_lmtp tcpserver-lmtp
}

@test "LMTP: openbsd-inetd on contrib/inetd.conf's 127.0.0.1:24 line, a reply per recipient" {
	command -v inetd >/dev/null || skip "no inetd (openbsd-inetd)"
	dp_ns ns_inetd_lmtp
	dp_assert_lmtp inetd-lmtp
	grep -q '^<22>.*mailslot\[[0-9]*\]: session=[0-9a-f]* event=deliver ' "$DP_T/syslog"
}
