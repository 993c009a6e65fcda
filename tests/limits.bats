#!/usr/bin/env bats
# Line limits, max_errors, timeouts and SIGTERM.  Nothing here measures
# time: a timeout test waits (bounded) for the 421 and then for the close.

load 'lib/common'

setup() { ms_setup; }
teardown() { ms_teardown; }

EMR='EHLO c.example\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<bob@example.org>\r\n'

# N octets of "x"
pad() {
	head -c "$1" /dev/zero | tr '\0' x
}

# ---- line lengths -------------------------------------------------------------

@test "a command line of 512 octets (CRLF included) passes, 513 gets 500 5.5.2" {
	# "NOOP " + pad + CRLF
	run reply_to '' "NOOP $(pad 505)"
	assert_success
	assert_reply 250 2.0.0 'Requested mail action okay, completed'
	run reply_to '' "NOOP $(pad 506)"
	assert_success
	assert_reply 500 5.5.2 'Syntax error, line too long'
}

@test "an over-long HELO, EHLO, VRFY, HELP: 500 5.5.2 at 513 octets" {
	local c
	for c in "HELO $(pad 506)" "EHLO $(pad 506)" "VRFY $(pad 506)" "HELP $(pad 506)"; do
		run reply_to '' "$c"
		assert_success
		assert_reply 500 5.5.2 'Syntax error, line too long'
	done
}

@test "an over-long line with an unknown verb: 500 5.5.2 at 513 octets, as at 2000" {
	run reply_to '' "$(pad 2000)"
	assert_success
	assert_reply 500 5.5.2 'Syntax error, line too long'
	run reply_to '' "$(pad 511)"
	assert_success
	assert_reply 500 5.5.2 'Syntax error, line too long'
}

@test "a MAIL line of 1024 octets passes, 1025 gets 500 5.5.2" {
	# "MAIL FROM:<a@b.example> SIZE=" is 29 octets, CRLF 2
	local zeros
	zeros=$(head -c $((1024 - 31 - 1)) /dev/zero | tr '\0' 0)
	run reply_to 'EHLO c.example\r\n' "MAIL FROM:<a@b.example> SIZE=${zeros}1"
	assert_success
	assert_reply 250 2.1.0 'Requested mail action okay, completed'
	run reply_to 'EHLO c.example\r\n' "MAIL FROM:<a@b.example> SIZE=0${zeros}1"
	assert_success
	assert_reply 500 5.5.2 'Syntax error, line too long'
}

@test "a RCPT line of 1024 octets passes, 1025 gets 500 5.5.2" {
	# "RCPT TO:<bob@example.org>" is 25 octets; trailing blanks pad it
	local blanks
	blanks=$(head -c $((1024 - 25 - 2)) /dev/zero | tr '\0' ' ')
	run reply_to 'EHLO c.example\r\nMAIL FROM:<a@b.example>\r\n' "RCPT TO:<bob@example.org>$blanks"
	assert_success
	assert_reply 250 2.1.5 'Requested mail action okay, completed'
	run reply_to 'EHLO c.example\r\nMAIL FROM:<a@b.example>\r\n' "RCPT TO:<bob@example.org> $blanks"
	assert_success
	assert_reply 500 5.5.2 'Syntax error, line too long'
}

@test "a 1 MB command line: one 500 5.5.2, its rest is not taken as commands" {
	# The long line holds what would be commands if it were split.
	{
		printf 'NOOP '
		for i in $(seq 1 2000); do printf 'QUIT\r HELP %0500d' 0; done
		printf '\r\nNOOP\r\nQUIT\r\n'
	} >"$MS_DIR/in"
	run smtp_pipe_file "$MS_DIR/in"
	assert_success
	assert_output "$(printf '%s\n' '220 mx.test ESMTP mailslot ready' \
	    '500 5.5.2 Syntax error, line too long' \
	    '250 2.0.0 Requested mail action okay, completed' \
	    '221 2.0.0 mx.test Service closing transmission channel')"
}

# ---- max_errors -------------------------------------------------------------

@test "max_errors: max_errors-1 errors keep the session" {
	run smtp_pipe 'FOO\r\nBAR\r\nNOOP\r\nQUIT\r\n' -o max_errors=3
	assert_success
	assert_line --index 1 '500 5.5.1 Syntax error, command unrecognized'
	assert_line --index 2 '500 5.5.1 Syntax error, command unrecognized'
	assert_line --index 3 '250 2.0.0 Requested mail action okay, completed'
	assert_line --index 4 '221 2.0.0 mx.test Service closing transmission channel'
}

@test "max_errors: the max-th error gets its reply, then 421 4.7.0 and close" {
	run smtp_pipe 'FOO\r\nNOOP\r\nRSET x\r\nMAIL FROM:<a@b.example>\r\nNOOP\r\nQUIT\r\n' -o max_errors=3
	assert_success
	assert_output "$(printf '%s\n' '220 mx.test ESMTP mailslot ready' \
	    '500 5.5.1 Syntax error, command unrecognized' \
	    '250 2.0.0 Requested mail action okay, completed' \
	    '501 5.5.4 RSET takes no argument: Syntax error in parameters or arguments' \
	    '503 5.5.1 send HELO or EHLO first: Bad sequence of commands' \
	    '421 4.7.0 mx.test too many errors: Service not available, closing transmission channel')"
}

@test "max_errors: every kind of 4xx/5xx counts (500, 501, 503, 504, 550, 553, 555)" {
	run smtp_pipe 'EHLO c.example\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<x/y@example.org>\r\nRCPT TO:<bob@example.org> X=1\r\nHELP bogus\r\nEXPN list\r\nRSET x\r\nDATA x\r\nFOO\r\nNOOP\r\n' -o max_errors=7
	assert_success
	assert_line --index -2 --regexp '^500 5\.5\.1 '
	assert_line --index -1 --regexp '^421 4\.7\.0 mx\.test '
}

@test "max_errors: the session closes over the socket too" {
	ms_listen -o max_errors=2
	run smtp_sock --send 'FOO\r\nBAR\r\n' --timeout 5
	assert_success
	assert_line --index -1 --regexp '^421 4\.7\.0 mx\.test '
	assert_equal "$(ms_report closed)" yes
}

# ---- timeouts ---------------------------------------------------------------

@test "command_timeout: 421 4.4.2 and exit" {
	run smtp_exec --send 'EHLO c.example\r\n' --wait '421 ' -- -o command_timeout=1
	assert_success
	assert_line --index -1 --regexp '^421 4\.4\.2 mx\.test .*Service not available, closing transmission channel$'
	assert_equal "$(ms_report closed)" yes
	assert_equal "$(ms_report exit)" 0
}

@test "command_timeout: a half-sent line counts as silence" {
	run smtp_exec --send 'NOO' --wait '421 ' -- -o command_timeout=1
	assert_success
	assert_line --index 1 --regexp '^421 4\.4\.2 mx\.test '
	assert_equal "$(ms_report exit)" 0
}

@test "command_timeout over the socket" {
	ms_listen -o command_timeout=1
	run smtp_sock --send 'EHLO c.example\r\n' --wait '421 ' --timeout 8
	assert_success
	assert_line --index -1 --regexp '^421 4\.4\.2 mx\.test '
}

@test "data_timeout in DATA: 421 4.4.2, and nothing in new/ or tmp/" {
	run smtp_exec --send "${EMR}DATA\r\nSubject: x\r\n\r\npartial line" --wait '421 ' \
	    -- -o data_timeout=1 -o command_timeout=60
	assert_success
	assert_line --index -2 '354 Start mail input; end with <CRLF>.<CRLF>'
	assert_line --index -1 --regexp '^421 4\.4\.2 mx\.test '
	assert_equal "$(ms_report exit)" 0
	assert_equal "$(ms_new_count)" 0
	assert_equal "$(ms_tmp_count)" 0
}

# ---- SIGTERM and dropped clients ----------------------------------------------

@test "SIGTERM over a pipe: 421 4.3.2 and a clean exit" {
	run smtp_exec --send 'EHLO c.example\r\n' --wait '250 ' --signal TERM
	assert_success
	assert_line --index -1 --regexp '^421 4\.3\.2 mx\.test .*Service not available, closing transmission channel$'
	assert_equal "$(ms_report exit)" 0
}

@test "SIGTERM over the socket: 421 4.3.2 and close" {
	ms_listen
	run smtp_sock --send 'EHLO c.example\r\n' --wait '250 ' --run "$(ms_kill_conn TERM)" --timeout 5
	assert_success
	assert_line --index -1 --regexp '^421 4\.3\.2 mx\.test '
	assert_equal "$(ms_report closed)" yes
}

@test "SIGTERM in DATA: 421 4.3.2, and nothing in new/ or tmp/" {
	run smtp_exec --send "${EMR}DATA\r\nSubject: x\r\n\r\nhalf a mess" --wait '354 ' --signal TERM
	assert_success
	assert_line --index -1 --regexp '^421 4\.3\.2 mx\.test '
	assert_equal "$(ms_report exit)" 0
	assert_equal "$(ms_new_count)" 0
	assert_equal "$(ms_tmp_count)" 0
}

@test "a client that drops mid-DATA leaves nothing in new/ or tmp/" {
	run smtp_pipe "${EMR}DATA\r\nSubject: x\r\n\r\nno end\r\n"
	assert_line --index -1 '354 Start mail input; end with <CRLF>.<CRLF>'
	assert_equal "$(ms_new_count)" 0
	assert_equal "$(ms_tmp_count)" 0
	ms_listen
	run smtp_sock --send "${EMR}DATA\r\nSubject: x\r\n\r\nno end\r\n" --wait '354 ' --shut
	assert_success
	assert_line --index -1 '354 Start mail input; end with <CRLF>.<CRLF>'
	assert_equal "$(ms_new_count)" 0
	assert_equal "$(ms_tmp_count)" 0
}

@test "a client that closes without QUIT: exit 0, the log says so" {
	run smtp_pipe 'EHLO c.example\r\n'
	assert_success
	run grep -E 'event=disconnect' "$MS_DIR/log"
	assert_success
}

# ---- reply length ---------------------------------------------------------------

@test "a reply that echoes a long, escaped address stays within 512 octets, and the session goes on" {
	local n c a
	for n in 60 124 200 250; do
		for c in '\xff' '\x01' '"' 'a'; do
			a=$(for ((i = 0; i < n; i++)); do printf '%s' "$c"; done)
			for a in "<$a@example.org>" "<$a>" "<x@$a.example>" "$a"; do
				run smtp_pipe "EHLO c.example\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:$a\r\nQUIT\r\n"
				[ "$status" -eq 0 ] || fail "exit status $status after RCPT TO:$a ($output)"
				run ms_nth_reply 4 <<<"$output"
				assert_output --regexp '^[25][0-9][0-9] [25]\.[0-9]+\.[0-9]+ '
				[ "$(LC_ALL=C wc -L <<<"$output")" -le 510 ] ||
					fail "reply of $(LC_ALL=C wc -L <<<"$output") octets + CRLF to RCPT TO:$a"
				assert_equal "$(tail -n 1 "$MS_DIR/replies" | tr -d '\r')" \
				    '221 2.0.0 mx.test Service closing transmission channel'
			done
		done
	done
}

@test "a client that stops reading: mailslot gives up within command_timeout and exits" {
	ms_listen -o command_timeout=2
	run smtp_sock --noread --repeat 'NOOP\r\n' 400000 \
	    --run "$MS_LIB/conn-wait-exit '$MS_DIR/sa.log' 20 '$MS_DIR/waited'" --timeout 5
	assert_equal "$(cat "$MS_DIR/waited")" exited
}

@test "command_timeout bounds the whole line: a byte every 0.6 s does not keep a line open" {
	run smtp_exec --send 'N' --pause 0.6 --send 'O' --pause 0.6 --send 'O' --pause 0.6 \
	    --send 'P' --pause 0.6 --send ' ' --pause 0.6 --send 'x' --pause 0.6 --send '\r\n' \
	    --wait '421 ' -- -o command_timeout=2
	assert_success
	assert_line --index 1 --regexp '^421 4\.4\.2 mx\.test '
	refute_line --regexp '^250 '
}
