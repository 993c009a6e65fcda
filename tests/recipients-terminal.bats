#!/usr/bin/env bats
# Recipients, part 4: terminal delivery (RFC 821 SEND, SOML, SAML) through
# a pseudo-terminal the test opens (tests/lib/recipients-pty.py) and
# registers in utmp as a USER_PROCESS of the login "bob".  utmp is backed
# up first and put back in teardown; utmp is one file for the whole host,
# so a lock keeps two runs of the suite (make check, check-asan) apart.

load 'lib/common'
load 'lib/recipients'

UTMP=/var/run/utmp
UTMP_LOCK=/tmp/mailslot-tests-utmp.lock

setup() {
	rc_setup
	rc_mailbox bob carol
	PTY_PIDS=()
	UTMP_SAVED=
	UTMP_LOCK_FD=
	MS_OPTS+=(-o terminal_delivery=yes)
	[ "$(id -u)" = 0 ] || skip "needs root to write $UTMP"
	command -v utmpdump >/dev/null || skip "no utmpdump"
	command -v flock >/dev/null || skip "no flock"
	exec {UTMP_LOCK_FD}>>"$UTMP_LOCK"
	flock -w 120 "$UTMP_LOCK_FD" || skip "$UTMP_LOCK held by another run for 120 s"
	if [ -e "$UTMP" ]; then
		cp -p "$UTMP" "$MS_DIR/utmp.saved" || skip "cannot back up $UTMP"
		UTMP_SAVED=yes
	fi
	: >>"$UTMP" 2>/dev/null || skip "cannot write $UTMP"
	[ -n "$UTMP_SAVED" ] || UTMP_SAVED=none
	: >"$UTMP"
}

teardown() {
	local p
	for p in "${PTY_PIDS[@]}"; do
		kill "$p" 2>/dev/null || true
		wait "$p" 2>/dev/null || true
	done
	case $UTMP_SAVED in
	yes) cp -p "$MS_DIR/utmp.saved" "$UTMP" ;;
	none) rm -f "$UTMP" ;;
	esac
	if [ -n "${UTMP_LOCK_FD-}" ]; then
		exec {UTMP_LOCK_FD}>&-
	fi
	rc_teardown
}

# Open a pty named $1 (its captured output goes to $MS_DIR/$1.out) with
# mode $3 (620: mesg y) and log user $2 in on it; PTY_LINE is "pts/N".
# $4: seconds the reader stops after the first bytes (a slow terminal).
pty_login() {
	local tag=$1 user=$2 mode=${3:-620} pause=${4:-0} i
	python3 "$MS_LIB/recipients-pty.py" "$MS_DIR/$tag.name" "$MS_DIR/$tag.out" \
	    "$MS_DIR/$tag.stop" "$mode" 30 "$pause" &
	PTY_PIDS+=($!)
	for i in $(seq 1 100); do
		[ -s "$MS_DIR/$tag.name" ] && break
		sleep 0.05
	done
	[ -s "$MS_DIR/$tag.name" ] || fail "the pty did not open"
	PTY_LINE=$(cat "$MS_DIR/$tag.name")
	PTY_LINE=${PTY_LINE#/dev/}
	utmp_add "$user" "$PTY_LINE" "$!"
}

# Append a USER_PROCESS record for user $1 on line $2, pid $3.
utmp_add() {
	{
		utmpdump "$UTMP" 2>/dev/null
		printf '[7] [%05d] [%-4.4s] [%-8s] [%-12s] [%-20s] [%-15s] [%s]\n' "$3" \
		    "${2#pts/}" "$1" "$2" '' 0.0.0.0 '2025-01-01T00:00:00,000000+00:00'
	} >"$MS_DIR/utmp.txt"
	utmpdump -r <"$MS_DIR/utmp.txt" >"$UTMP" 2>/dev/null || fail "utmpdump -r failed"
	utmpdump "$UTMP" 2>/dev/null | grep -qF "[$1 " || fail "no $1 in $UTMP"
}

# Stop capturing pty $1: its bytes are then in $MS_DIR/$1.out.
pty_done() {
	local i
	touch "$MS_DIR/$1.stop"
	for i in $(seq 1 100); do
		[ -e "$MS_DIR/$1.out" ] && ! pgrep -f "$MS_DIR/$1.name" >/dev/null && break
		sleep 0.05
	done
}

# One transaction: VERB FROM, RCPT TO each address of $2, the body $RC_BODY.
term_send() {
	local verb=$1 a in='EHLO c.example\r\n'
	in+="$verb FROM:<a@b.example>\r\n"
	for a in $2; do
		in+="RCPT TO:<$a>\r\n"
	done
	shift 2
	smtp_pipe "${in}DATA\r\n${RC_BODY}.\r\nQUIT\r\n" "$@"
}

BANNER='\r\nMessage from <a@b.example> via mailslot:\r\n'

@test "SEND: the body reaches the terminal with every control octet escaped" {
	pty_login t1 bob
	RC_BODY='Subject: hi\r\n\r\nred \x1b[31mtext\x1b[0m \x1b]0;title\x07\r\nbell\x07 tab\t cr\rx del\x7f hi\x80\xff back\\slash\r\n'
	run term_send SEND 'BOB@example.org'
	assert_success
	rc_assert_nth 4 '^250 2\.1\.5 '
	assert_line --regexp '^250 2\.0\.0 queued as '
	pty_done t1
	printf '%b' "${BANNER}Subject: hi\r\n\r\nred \\\\033[31mtext\\\\033[0m \\\\033]0;title\\\\a\r\nbell\\\\a tab\\\\t cr\\\\rx del\\\\177 hi\\\\200\\\\377 back\\\\\\\\slash\r\n" \
	    >"$MS_DIR/want"
	ms_assert_same "$MS_DIR/want" "$MS_DIR/t1.out" 'bytes on the terminal'
	# No octet below 0x20 but CR and LF, none at 0x7f or above.
	run env LC_ALL=C grep -c $'[\x01-\x09\x0b\x0c\x0e-\x1f\x7f-\xff]' "$MS_DIR/t1.out"
	assert_output 0
	# SEND is for the terminal only: no mailbox copy, no trace on the terminal.
	assert_equal "$(rc_all_new | wc -l)" 0
	run grep -c 'Received:' "$MS_DIR/t1.out"
	assert_output 0
}

@test "SEND: the sender in the banner line is escaped as the body is; a C1 control in it is refused" {
	run reply_to 'EHLO c.example\r\n' 'SEND FROM:<a\xc2\x9b31mb@b.example> SMTPUTF8'
	assert_output --regexp '^501 5\.1\.7 '
	pty_login t1 bob
	RC_BODY='hi\r\n'
	run smtp_pipe "EHLO c.example\r\nSEND FROM:<b\xc3\xa9a@b.example> SMTPUTF8\r\nRCPT TO:<bob@example.org>\r\nDATA\r\n${RC_BODY}.\r\nQUIT\r\n"
	assert_line --regexp '^250 2\.0\.0 queued as '
	pty_done t1
	head -c 48 "$MS_DIR/t1.out" | grep -qF 'Message from <b\303\251a@b.example>' ||
		fail "no escaped banner: $(od -c "$MS_DIR/t1.out" | head -n 3)"
	run env LC_ALL=C grep -c $'[\x01-\x09\x0b\x0c\x0e-\x1f\x7f-\xff]' "$MS_DIR/t1.out"
	assert_output 0
}

@test "SEND: 450 4.2.1 to someone not logged in, on a mesg n terminal, or a stale line" {
	run reply_to 'EHLO c.example\r\nSEND FROM:<a@b.example>\r\n' 'RCPT TO:<carol@example.org>'
	assert_reply 450 4.2.1 'Requested mail action not taken: mailbox unavailable'
	assert_output --partial 'not logged in'
	pty_login t1 bob 600
	run reply_to 'EHLO c.example\r\nSEND FROM:<a@b.example>\r\n' 'RCPT TO:<bob@example.org>'
	assert_reply 450 4.2.1 'Requested mail action not taken: mailbox unavailable'
	# A record for a line that has no device.
	utmp_add carol pts/4095 "$$"
	run reply_to 'EHLO c.example\r\nSEND FROM:<a@b.example>\r\n' 'RCPT TO:<carol@example.org>'
	assert_reply 450 4.2.1 'Requested mail action not taken: mailbox unavailable'
	pty_done t1
	assert_equal "$(stat -c %s "$MS_DIR/t1.out")" 0
}

@test "SEND: every mesg y terminal of the login gets it" {
	pty_login t1 bob
	pty_login t2 bob
	pty_login t3 bob 600
	RC_BODY='hello\r\n'
	run term_send SEND 'bob@example.org'
	assert_line --regexp '^250 2\.0\.0 queued as '
	pty_done t1
	pty_done t2
	pty_done t3
	printf '%b' "${BANNER}hello\r\n" >"$MS_DIR/want"
	ms_assert_same "$MS_DIR/want" "$MS_DIR/t1.out" 'first terminal'
	ms_assert_same "$MS_DIR/want" "$MS_DIR/t2.out" 'second terminal'
	assert_equal "$(stat -c %s "$MS_DIR/t3.out")" 0
}

# $1 lines of 63 SOH octets: RC_BODY (printf %b escapes) and, in
# $MS_DIR/want, what the terminal must show for the first $2 of them.
soh_lines() {
	local line want i
	line=$(printf '\\x01%.0s' $(seq 63))
	want=$(printf '\\001%.0s' $(seq 63))
	RC_BODY=
	for i in $(seq 1 "$1"); do
		RC_BODY+="$line"'\r\n'
	done
	{
		printf '%b' "$BANNER"
		for i in $(seq 1 "$2"); do
			printf '%s\r\n' "$want"
		done
	} >"$MS_DIR/want"
}

@test "SEND: a 20 KiB message reaches a terminal that is slow for a moment whole" {
	pty_login t1 bob 620 0.5
	# 320 lines of 64 octets; escaped, 81 KiB: more than a pty holds.
	soh_lines 320 320
	run term_send SEND 'bob@example.org'
	assert_line --regexp '^250 2\.0\.0 queued as '
	pty_done t1
	cmp -s "$MS_DIR/want" "$MS_DIR/t1.out" ||
		fail "the terminal got $(stat -c %s "$MS_DIR/t1.out") of $(stat -c %s "$MS_DIR/want") octets"
}

@test "SAML: 64 KiB of the message reach the terminal, then a note that it was cut" {
	pty_login t1 bob 620 0.5
	# 1600 lines of 64 octets: the first 1024 are 64 KiB.
	soh_lines 1600 1024
	printf '\r\n[message cut]\r\n' >>"$MS_DIR/want"
	run term_send SAML 'bob@example.org'
	assert_line --regexp '^250 2\.0\.0 queued as '
	pty_done t1
	cmp -s "$MS_DIR/want" "$MS_DIR/t1.out" ||
		fail "the terminal got $(stat -c %s "$MS_DIR/t1.out") of $(stat -c %s "$MS_DIR/want") octets; its end: $(tail -c 40 "$MS_DIR/t1.out" | od -c | head -n 3)"
	# The mailbox has it whole.
	assert_equal "$(grep -c $'^\x01' "$(rc_new_file bob)")" 1600
}

@test "SEND: a message over the terminal's 64 KiB is 552, and nothing reaches the terminal" {
	pty_login t1 bob 620 0.5
	soh_lines 1600 0
	run term_send SEND 'bob@example.org'
	assert_line --regexp '^552 5\.3\.4 '
	refute_line --regexp '^250 2\.0\.0 '
	pty_done t1
	assert_equal "$(stat -c %s "$MS_DIR/t1.out")" 0
	assert_equal "$(rc_all_new | wc -l)" 0
}

@test "SOML: the terminal when logged in, else the mailbox" {
	pty_login t1 bob
	RC_BODY='hello\r\n'
	run term_send SOML 'bob@example.org'
	assert_success
	rc_assert_nth 4 '^250 2\.1\.5 '
	assert_line --regexp '^250 2\.0\.0 queued as '
	run term_send SOML 'carol@example.org'
	rc_assert_nth 4 '^250 2\.1\.5 '
	assert_line --regexp '^250 2\.0\.0 queued as '
	pty_done t1
	printf '%b' "${BANNER}hello\r\n" >"$MS_DIR/want"
	ms_assert_same "$MS_DIR/want" "$MS_DIR/t1.out" 'terminal'
	assert_equal "$(rc_new_count bob)" 0
	grep -q 'event=deliver .* to="<carol@example.org>" via=mailbox ' "$MS_DIR/log"
	rc_new_file carol >/dev/null
}

@test "SAML: the mailbox always, and the terminal too when logged in" {
	pty_login t1 bob
	RC_BODY='hello\r\n'
	run term_send SAML 'bob@example.org carol@example.org'
	assert_success
	rc_assert_nth 4 '^250 2\.1\.5 '
	rc_assert_nth 5 '^250 2\.1\.5 '
	assert_line --regexp '^250 2\.0\.0 queued as '
	pty_done t1
	head -c 44 "$MS_DIR/t1.out" | grep -q 'Message from <a@b.example> via mailslot:' ||
		fail "nothing on the terminal: $(od -c "$MS_DIR/t1.out" | head -n 3)"
	# One file for the two mailboxes, naming neither recipient.
	f=$(rc_new_file bob)
	assert_equal "$(stat -c %i "$f")" "$(stat -c %i "$(rc_new_file carol)")"
	run grep -c '^Delivered-To: ' "$f"
	assert_output 0
}

@test "SAML, and SOML with a mailbox recipient too: the terminal gets the body, not just the banner" {
	pty_login t1 bob
	RC_BODY='hello\r\n'
	printf '%b' "${BANNER}hello\r\n" >"$MS_DIR/want"
	run term_send SAML 'bob@example.org'
	assert_line --regexp '^250 2\.0\.0 queued as '
	pty_done t1
	ms_assert_same "$MS_DIR/want" "$MS_DIR/t1.out" 'terminal after SAML'
	pty_login t2 bob
	run term_send SOML 'bob@example.org carol@example.org'
	assert_line --regexp '^250 2\.0\.0 queued as '
	pty_done t2
	ms_assert_same "$MS_DIR/want" "$MS_DIR/t2.out" 'terminal after SOML'
	assert_equal "$(rc_new_count bob)" 1
	rc_new_file carol >/dev/null
}

@test "terminal_delivery=no: SEND is 502, SOML and SAML go to the mailbox only" {
	pty_login t1 bob
	MS_OPTS+=(-o terminal_delivery=no)
	run reply_to 'EHLO c.example\r\n' 'SEND FROM:<a@b.example>'
	assert_reply 502 5.5.1 'Command not implemented'
	run smtp_pipe 'EHLO c.example\r\nQUIT\r\n'
	refute_line --regexp '^250[- ]SEND$'
	RC_BODY='hello\r\n'
	run term_send SOML 'bob@example.org'
	assert_line --regexp '^250 2\.0\.0 queued as '
	run term_send SAML 'bob@example.org'
	assert_line --regexp '^250 2\.0\.0 queued as '
	pty_done t1
	assert_equal "$(stat -c %s "$MS_DIR/t1.out")" 0
	assert_equal "$(rc_new_count bob)" 2
}

@test "SOML: a message over the terminal's 64 KiB goes to the mailbox, whole" {
	pty_login t1 bob 620 0.5
	# 1600 lines of 64 octets: 100 KiB, more than a terminal is given.
	soh_lines 1600 0
	run term_send SOML 'bob@example.org'
	assert_line --regexp '^250 2\.0\.0 queued as '
	pty_done t1
	f=$(rc_new_file bob)
	assert_equal "$(grep -c $'^\x01' "$f")" 1600
	grep -qxF 'Delivered-To: bob@example.org' "$f"
}

@test "SOML: a terminal that does not read within its budget: the message goes to the mailbox" {
	# The reader stops for 8 s after the first bytes: the 5 s budget runs out.
	pty_login t1 bob 620 8
	soh_lines 320 0
	run term_send SOML 'bob@example.org carol@example.org'
	assert_line --regexp '^250 2\.0\.0 queued as '
	pty_done t1
	f=$(rc_new_file bob)
	assert_equal "$(grep -c $'^\x01' "$f")" 320
	# The other recipient, not logged in, has its copy too.
	rc_new_file carol >/dev/null
	grep -q 'event=terminal .* whole=no$' "$MS_DIR/log"
	grep -q 'event=deliver .* to="<bob@example.org>" via=mailbox ' "$MS_DIR/log"
}

@test "SAML: a terminal that takes only part of the message: the mailbox has it whole, 250" {
	pty_login t1 bob 620 8
	soh_lines 320 0
	run term_send SAML 'bob@example.org'
	assert_line --regexp '^250 2\.0\.0 queued as '
	pty_done t1
	f=$(rc_new_file bob)
	assert_equal "$(grep -c $'^\x01' "$f")" 320
}

@test "SEND: a terminal that does not read within its budget is not a 250" {
	pty_login t1 bob 620 8
	soh_lines 320 0
	run term_send SEND 'bob@example.org'
	assert_line --regexp '^451 4\.3\.0 '
	refute_line --regexp '^250 2\.0\.0 '
	pty_done t1
	assert_equal "$(rc_all_new | wc -l)" 0
}

@test "SOML: a logged-in recipient is judged as for MAIL: no mailbox is 550" {
	pty_login t1 dave
	run reply_to 'EHLO c.example\r\nSOML FROM:<a@b.example>\r\n' 'RCPT TO:<dave@example.org>'
	assert_reply 550 5.1.1 '<dave@example.org>: Requested action not taken: mailbox unavailable'
	pty_done t1
}
