#!/usr/bin/env bats
# PIPELINING (RFC 2920) over TCP: whole groups in one write get every
# reply, in order; input buffered after a data terminator is kept; and
# the decoder keeps its place when the data arrives in pieces.

load 'lib/common'

setup() {
	ms_setup
	ms_listen
}
teardown() { ms_teardown; }

TX='MAIL FROM:<a@b.example>\r\nRCPT TO:<bob@example.org>\r\nRCPT TO:<eve@example.org>\r\nDATA\r\nSubject: one\r\n\r\nhello\r\n.\r\n'

# The codes (and enhanced codes) of the complete replies on stdin.
codes() {
	ms_replies | sed -E 's/^([0-9]{3})[ -](([245]\.[0-9]+\.[0-9]+) )?.*/\1 \3/; s/ $//'
}

@test "a whole transaction in one write: every reply, in order" {
	run smtp_sock --send "EHLO c.example\r\n${TX}QUIT\r\n"
	assert_success
	run codes <<<"$output"
	assert_output "$(printf '%s\n' 220 250 '250 2.1.0' '250 2.1.5' '250 2.1.5' 354 '250 2.0.0' '221 2.0.0')"
	assert_equal "$(ms_new_count)" 1
}

@test "two transactions in one write: both delivered, replies in order" {
	run smtp_sock --send "EHLO c.example\r\n${TX}${TX/one/two}QUIT\r\n"
	assert_success
	run codes <<<"$output"
	assert_output "$(printf '%s\n' 220 250 '250 2.1.0' '250 2.1.5' '250 2.1.5' 354 '250 2.0.0' \
	    '250 2.1.0' '250 2.1.5' '250 2.1.5' 354 '250 2.0.0' '221 2.0.0')"
	assert_equal "$(ms_new_count)" 2
	run grep -l '^Subject: two$' "$MS_MAILDIR"/new/*
	assert_success
}

@test "input after the data terminator in the same packet is not lost" {
	run smtp_sock --send "EHLO c.example\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<bob@example.org>\r\nDATA\r\n" \
	    --wait '354 ' --send 'Subject: x\r\n\r\nbody\r\n.\r\nNOOP\r\nVRFY bob@example.org\r\nQUIT\r\n'
	assert_success
	run codes <<<"$output"
	assert_output "$(printf '%s\n' 220 250 '250 2.1.0' '250 2.1.5' 354 '250 2.0.0' '250 2.0.0' '250 2.1.5' '221 2.0.0')"
}

@test "refused commands inside a group do not disturb the rest" {
	run smtp_sock --send 'EHLO c.example\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<x/y@example.org>\r\nRCPT TO:<bob@example.org> FOO=1\r\nRCPT TO:<bob@example.org>\r\nDATA\r\nhi\r\n.\r\nQUIT\r\n'
	assert_success
	run codes <<<"$output"
	assert_output "$(printf '%s\n' 220 250 '250 2.1.0' '553 5.1.3' '555 5.5.4' '250 2.1.5' 354 '250 2.0.0' '221 2.0.0')"
}

@test "the data in pieces: split inside CRLF.CRLF, inside a dot-stuffed line, inside a CRLF" {
	run smtp_sock --send "EHLO c.example\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<bob@example.org>\r\nDATA\r\n" \
	    --wait '354 ' \
	    --send 'Subject: x\r' --pause 0.1 --send '\n\r\nline\r\n.' --pause 0.1 \
	    --send '.stuffed\r\n' --pause 0.1 --send 'last\r\n' --pause 0.1 --send '.' --pause 0.1 \
	    --send '\r' --pause 0.1 --send '\nQUIT\r\n'
	assert_success
	run codes <<<"$output"
	assert_output "$(printf '%s\n' 220 250 '250 2.1.0' '250 2.1.5' 354 '250 2.0.0' '221 2.0.0')"
	ms_normalize_msg <"$(ms_new_file)" >"$MS_DIR/got"
	printf '%b' 'Return-Path: <a@b.example>\nDelivered-To: bob@example.org\nReceived: from c.example (unknown [127.0.0.1])\n\tby mx.test (mailslot) with ESMTP id ID\n\tfor <bob@example.org>; DATE\nSubject: x\n\nline\n.stuffed\nlast\n' >"$MS_DIR/want"
	ms_assert_same "$MS_DIR/want" "$MS_DIR/got" 'stored message'
}

@test "a command split over several writes is one command" {
	run smtp_sock --send 'NO' --pause 0.1 --send 'OP\r' --pause 0.1 --send '\nQU' --pause 0.1 --send 'IT\r\n'
	assert_success
	run codes <<<"$output"
	assert_output "$(printf '%s\n' 220 '250 2.0.0' '221 2.0.0')"
}

@test "a group larger than the input buffer: every reply" {
	run smtp_sock --repeat 'NOOP\r\n' 20000 --send 'QUIT\r\n' --timeout 20
	assert_success
	assert_equal "$(grep -c '^250 2\.0\.0 Requested mail action okay, completed$' <<<"$output")" 20000
	assert_line --index -1 '221 2.0.0 mx.test Service closing transmission channel'
}

@test "the client half-closes after its group: every reply still comes" {
	run smtp_sock --send "EHLO c.example\r\n${TX}QUIT\r\n" --shut
	assert_success
	assert_line --index -1 '221 2.0.0 mx.test Service closing transmission channel'
	assert_equal "$(ms_new_count)" 1
}
