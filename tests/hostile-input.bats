#!/usr/bin/env bats
# Malformed and abusive input: every case gets its reply, or a clean close,
# within the configured timeouts (small here), and memory stays bounded.
# Memory is checked as growth of the peak RSS (VmHWM, read while mailslot
# waits for the next command) over a plain session's, so the same bound
# holds under a sanitizer or valgrind, whose base size is larger.

load 'lib/common'
load 'lib/hostile'

setup() { ms_setup; }
teardown() { ms_teardown; }

HEAD='EHLO c.example\r\nMAIL FROM:<a@x.example>\r\nRCPT TO:<b@y.example>\r\n'
RSS_GROWTH_KB=8192	# a 10 MB line cannot fit in this

# The peak RSS of a plain session, in kB, in $base_kb.
rss_baseline() {
	run smtp_exec --send 'EHLO c.example\r\n' --wait '250 ' --hwm --send 'QUIT\r\n' -- \
	    -o command_timeout=2
	assert_success
	base_kb=$(ms_report vmhwm_kb)
	[ -n "$base_kb" ] || fail "no VmHWM for the baseline"
}

assert_rss_bounded() {
	local kb
	kb=$(ms_report vmhwm_kb)
	[ -n "$kb" ] || fail "no VmHWM reported"
	if [ "$kb" -gt $((base_kb + RSS_GROWTH_KB)) ]; then
		fail "peak RSS ${kb} kB, more than ${base_kb} + ${RSS_GROWTH_KB} kB"
	fi
}

@test "NUL in a command line: 500 5.5.2, and the session goes on" {
	run smtp_pipe 'NOOP\0x\r\nEHLO c.exa\0mple\r\nMAIL FROM:<a\0@x.example>\r\nEHLO c.example\r\nQUIT\r\n'
	assert_success
	assert_equal "$(printf '%s\n' "$output" | grep -c '^500 5\.5\.2 ')" 3
	assert_line '250 HELP'
	assert_line --index -1 --regexp '^221 2\.0\.0 '
}

@test "8-bit address without SMTPUTF8: 553 5.6.7 for MAIL and RCPT" {
	run smtp_pipe 'EHLO c.example\r\nMAIL FROM:<j\xc3\xb6rg@x.example>\r\nMAIL FROM:<a@b\xc3\xbccher.example>\r\nMAIL FROM:<a@x.example>\r\nRCPT TO:<j\xc3\xb6rg@y.example>\r\nRCPT TO:<\xff@y.example>\r\nQUIT\r\n'
	assert_success
	assert_equal "$(printf '%s\n' "$output" | grep -c '^553 5\.6\.7 ')" 4
	assert_line --regexp '^250 2\.1\.0 <a@x\.example>'
	refute_line --regexp '^250 2\.1\.5 '
	assert_line --index -1 --regexp '^221 '
}

@test "invalid UTF-8 with SMTPUTF8: 553 5.6.7 for each kind" {
	# a lone lead octet, a lone continuation, an overlong '/', a surrogate,
	# above U+10FFFF, and a sequence cut short by the '@'
	local a
	for a in '\xc3' '\x80' '\xc0\xaf' '\xed\xa0\x80' '\xf4\x90\x80\x80' '\xe2\x82'; do
		run smtp_pipe "EHLO c.example\r\nMAIL FROM:<x${a}@x.example> SMTPUTF8\r\nMAIL FROM:<a@x.example> SMTPUTF8\r\nRCPT TO:<y${a}@y.example>\r\nQUIT\r\n"
		assert_success
		assert_equal "$(printf '%s\n' "$output" | grep -c '^553 5\.6\.7 ')" 2
		assert_line --regexp '^250 2\.1\.0 <a@x\.example>'
		assert_line --index -1 --regexp '^221 '
	done
	# valid UTF-8 with SMTPUTF8 passes
	run smtp_pipe 'EHLO c.example\r\nMAIL FROM:<j\xc3\xb6rg@b\xc3\xbccher.example> SMTPUTF8\r\nRCPT TO:<\xf0\x9f\x93\xae@y.example>\r\nQUIT\r\n'
	assert_success
	assert_line --regexp '^250 2\.1\.0 '
	assert_line --regexp '^250 2\.1\.5 '
}

@test "a lone CR does not end a command line" {
	# "NOOP\rQUIT" is one line: not NOOP, and certainly not QUIT
	run smtp_pipe 'NOOP\rQUIT\r\nNOOP\r\nEHLO c.example\rMAIL FROM:<a@x.example>\r\nQUIT\r\n'
	assert_success
	assert_line --index 1 --regexp '^500 5\.5\.1 '
	assert_line --index 2 --regexp '^250 2\.0\.0 '
	assert_line --index 3 --regexp '^501 '
	assert_line --index 4 --regexp '^221 '
	assert_equal "${#lines[@]}" 5
}

@test "a 10 MB command line without LF: 500 5.5.2, the session goes on, memory bounded" {
	rss_baseline
	run smtp_exec --repeat 'A' 10485760 --send '\r\nNOOP\r\n' --wait '250 2.0.0' --hwm \
	    --send 'QUIT\r\n' -- -o command_timeout=5
	assert_success
	assert_line --index 1 --regexp '^500 5\.5\.2 '
	assert_line --index 2 --regexp '^250 2\.0\.0 '
	assert_line --index 3 --regexp '^221 '
	assert_rss_bounded
}

@test "a 10 MB command line that never ends: 421 at command_timeout, memory bounded" {
	rss_baseline
	run smtp_exec --repeat 'MAIL FROM:<' 1000000 --pause 0.2 --hwm -- -o command_timeout=3
	assert_success
	assert_equal "$(ms_report closed)" yes
	assert_line --index 1 --regexp '^421 4\.4\.2 '
	assert_rss_bounded
}

@test "a 10 MB line inside DATA: stored whole, memory bounded" {
	rss_baseline
	python3 -c 'import sys; sys.stdout.buffer.write(b"Subject: long\r\n\r\n" + b"x" * 10485760 + b"\r\n.\r\n")' >"$MS_DIR/data"
	printf 'Subject: long\n\n' >"$MS_DIR/expect"
	head -c 10485760 /dev/zero | tr '\0' x >>"$MS_DIR/expect"
	printf '\n' >>"$MS_DIR/expect"
	run smtp_exec --send "${HEAD}DATA\r\n" --wait '354 ' --send-file "$MS_DIR/data" \
	    --wait '250 2.0.0' --hwm --send 'QUIT\r\n' -- -o command_timeout=5 -o data_timeout=5
	assert_success
	assert_line --regexp '^250 2\.0\.0 queued as '
	assert_rss_bounded
	hs_assert_one_message "$MS_DIR/expect"
}

@test "5000 pipelined commands in one write: 5000 replies, in order" {
	ms_listen -o command_timeout=5
	run smtp_sock --timeout 20 --send 'EHLO c.example\r\n' --repeat 'NOOP\r\nRSET\r\n' 2500 --send 'QUIT\r\n'
	assert_success
	assert_equal "$(printf '%s\n' "$output" | grep -c '^250 2\.0\.0 Requested')" 5000
	assert_line --index -1 --regexp '^221 '
	refute_line --regexp '^[45][0-9][0-9] '
}

@test "5000 pipelined transactions' worth of commands: every reply, one message each" {
	ms_listen -o command_timeout=5
	run smtp_sock --timeout 30 --send 'EHLO c.example\r\n' \
	    --repeat 'MAIL FROM:<a@x.example>\r\nRCPT TO:<b@y.example>\r\nRSET\r\n' 1500 \
	    --repeat 'MAIL FROM:<a@x.example>\r\nRCPT TO:<b@y.example>\r\nDATA\r\nhi\r\n.\r\n' 20 \
	    --send 'QUIT\r\n'
	assert_success
	assert_equal "$(printf '%s\n' "$output" | grep -c '^250 2\.1\.5 ')" 1520
	assert_equal "$(printf '%s\n' "$output" | grep -c '^250 2\.0\.0 queued as ')" 20
	assert_line --index -1 --regexp '^221 '
	assert_equal "$(ms_new_count)" 20
}

@test "thousands of bad commands in one write: 421 4.7.0 after max_errors, then close" {
	ms_listen -o command_timeout=5 -o max_errors=10
	run smtp_sock --timeout 10 --repeat 'BOGUS\r\n' 5000
	assert_success
	assert_equal "$(printf '%s\n' "$output" | grep -c '^500 5\.5\.1 ')" 10
	assert_line --index -1 --regexp '^421 4\.7\.0 '
	assert_equal "${#lines[@]}" 12
}

@test "commands before the greeting: the greeting first, then every reply in order" {
	ms_listen -o command_timeout=5
	run smtp_sock --timeout 5 --send 'EHLO c.example\r\nNOOP\r\nQUIT\r\n'
	assert_success
	assert_line --index 0 '220 mx.test ESMTP mailslot ready'
	assert_line --index 1 '250-mx.test Requested mail action okay, completed'
	assert_line --index -2 --regexp '^250 2\.0\.0 '
	assert_line --index -1 --regexp '^221 '
}

@test "a client that half-closes: its commands are answered, then a clean close" {
	ms_listen -o command_timeout=5
	run smtp_sock --timeout 5 --send 'EHLO c.example\r\nMAIL FROM:<a@x.example>\r\n' --shut
	assert_success
	assert_equal "$(ms_report closed)" yes
	assert_line --index -1 --regexp '^250 2\.1\.0 '
	# half-closed inside DATA: nothing is delivered, nothing is left in tmp/
	run smtp_sock --timeout 5 --send "${HEAD}DATA\r\n" --wait '354 ' \
	    --send 'Subject: cut\r\n\r\nhalf a message\r\n' --shut
	assert_success
	assert_equal "$(ms_report closed)" yes
	assert_line --index -1 --regexp '^354 '
	hs_assert_nothing_stored
}

@test "a client that goes silent in DATA: 421 4.4.2 after data_timeout, nothing stored" {
	ms_listen -o command_timeout=5 -o data_timeout=1
	run smtp_sock --timeout 10 --send "${HEAD}DATA\r\n" --wait '354 ' --send 'Subject: x\r\n\r\npart'
	assert_success
	assert_equal "$(ms_report closed)" yes
	assert_line --index -1 --regexp '^421 4\.4\.2 '
	hs_assert_nothing_stored
}

@test "a client that never reads, over a socket: mailslot exits within command_timeout" {
	ms_listen -o command_timeout=1
	run hs_noread_sock "$MS_PORT" "$MS_DIR/sa.log" 20
	assert_success
	assert_output --regexp 'exited=yes$'
}

@test "a client that never reads, over a pipe: mailslot exits within command_timeout" {
	ms_cmd -o command_timeout=1
	run hs_noread_pipe 20 "${MS_CMD[@]}"
	assert_success
	assert_output --regexp 'exited=yes$'
}
