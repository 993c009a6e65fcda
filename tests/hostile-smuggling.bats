#!/usr/bin/env bats
# SMTP smuggling (CVE-2023-51764, -51765, -51766): a client hides a second
# transaction inside the data behind a lookalike of the end of data, hoping
# that this server ends the message there and runs the rest as commands.
# Over a real socket (systemd-socket-activate), in crlf mode every
# lookalike must stay inside the one message, stored byte for byte (CRLF
# as LF), and the session must stay in step: the next real transaction is
# delivered on its own.  In strict mode the message is refused with 554
# after the real CRLF "." CRLF, and the session again stays in step.

load 'lib/common'
load 'lib/hostile'

setup() { ms_setup; }
teardown() { ms_teardown; }

SMUGGLED='MAIL FROM:<evil@x.example>\r\nRCPT TO:<victim@y.example>\r\nDATA\r\nSubject: smuggled\r\n\r\nsmuggled body\r\n'
SECOND='MAIL FROM:<a@x.example>\r\nRCPT TO:<b@y.example>\r\nDATA\r\nSubject: second\r\n\r\nsecond body\r\n.\r\n'

# smuggle HOW FAKE [MAIL parameters] [8-bit body octets]
#   HOW: wait (the data after the 354), block (the whole session in one
#   write), split (the data in three writes, cut inside the lookalike).
#   Sends the first transaction with FAKE and the smuggled commands in its
#   data, then a clean second transaction, then QUIT.  Leaves the replies
#   in $output and the expected stored bodies in $MS_DIR/expect1, expect2.
smuggle() {
	local how=$1 fake=$2 params=${3-} eight=${4-}
	local head="EHLO c.example\r\nMAIL FROM:<a@x.example>${params}\r\nRCPT TO:<b@y.example>\r\nDATA\r\n"
	local data="Subject: first\r\n\r\nbody one${eight}${fake}${SMUGGLED}"
	local half=${fake:0:2}

	hs_escape_file "$MS_DIR/data1" "$data"
	hs_crlf_to_lf "$MS_DIR/data1" "$MS_DIR/expect1"
	hs_escape_file "$MS_DIR/data2" 'Subject: second\r\n\r\nsecond body\r\n'
	hs_crlf_to_lf "$MS_DIR/data2" "$MS_DIR/expect2"
	rm -rf "$MS_MAILDIR"
	case $how in
	wait)
		run smtp_sock --timeout 5 --send "$head" --wait '354 ' \
		    --send "$data" --send '.\r\n' --wait '250 2.0.0' \
		    --send "$SECOND" --wait '250 2.0.0' --send 'QUIT\r\n' ;;
	block)
		run smtp_sock --timeout 5 --send "${head}${data}.\r\n${SECOND}QUIT\r\n" ;;
	split)
		# the lookalike cut after its first escape, in its own segment
		run smtp_sock --timeout 5 --send "$head" --wait '354 ' \
		    --send "Subject: first\r\n\r\nbody one${eight}${half}" --pause 0.05 \
		    --send "${fake:2}" --pause 0.05 \
		    --send "${SMUGGLED}.\r\n" --wait '250 2.0.0' \
		    --send "$SECOND" --send 'QUIT\r\n' ;;
	esac
}

# In crlf mode: two 354s, two deliveries, the first holding every byte.
assert_one_message_per_transaction() {
	assert_success
	assert_equal "$(printf '%s\n' "$output" | grep -c '^354 ')" 2
	assert_equal "$(printf '%s\n' "$output" | grep -c '^250 2\.0\.0 queued as ')" 2
	refute_line --regexp '^(4|5)[0-9][0-9] '
	assert_line --index -1 --regexp '^221 '
	assert_equal "$(ms_new_count)" 2
	assert_equal "$(ms_tmp_count)" 0
	local f n1=0 n2=0
	for f in "$MS_MAILDIR"/new/*; do
		hs_stored_body "$f" >"$MS_DIR/body"
		if cmp -s "$MS_DIR/body" "$MS_DIR/expect1"; then
			n1=$((n1 + 1))
		elif cmp -s "$MS_DIR/body" "$MS_DIR/expect2"; then
			n2=$((n2 + 1))
		else
			echo "a stored message is neither transaction:" >&2
			od -c "$MS_DIR/body" | head -n 30 >&2
			echo "expected first:" >&2
			od -c "$MS_DIR/expect1" | head -n 30 >&2
			return 1
		fi
	done
	assert_equal "$n1 $n2" "1 1"
}

crlf_all_ways() {
	ms_listen -o line_endings=crlf
	local how
	for how in wait block split; do
		smuggle "$how" "$1"
		assert_one_message_per_transaction
	done
}

eightbit() {
	ms_listen -o line_endings=crlf
	local how
	smuggle block "$1" ' BODY=8BITMIME' '\xc3\xa9\xff\x80'
	assert_one_message_per_transaction
}

# strict: the first transaction is refused after the real end, the second
# is delivered, and nothing else is stored.
strict() {
	ms_listen -o line_endings=strict
	local how
	for how in block split; do
		smuggle "$how" "$1"
		assert_success
		assert_equal "$(printf '%s\n' "$output" | grep -c '^354 ')" 2
		assert_line --regexp '^554 5\.6\.0 .*bare (CR|LF)'
		assert_equal "$(printf '%s\n' "$output" | grep -c '^250 2\.0\.0 queued as ')" 1
		assert_line --index -1 --regexp '^221 '
		hs_assert_one_message "$MS_DIR/expect2"
	done
}

# ---- crlf ------------------------------------------------------------------

@test 'crlf: \n.\n stays inside the message' { crlf_all_ways '\n.\n'; }
@test 'crlf: \n.\r\n stays inside the message' { crlf_all_ways '\n.\r\n'; }
@test 'crlf: \r\n.\n stays inside the message' { crlf_all_ways '\r\n.\n'; }
@test 'crlf: \r.\r\n stays inside the message' { crlf_all_ways '\r.\r\n'; }
@test 'crlf: \r\n.\r stays inside the message' { crlf_all_ways '\r\n.\r'; }
@test 'crlf: \r.\r stays inside the message' { crlf_all_ways '\r.\r'; }
@test 'crlf: \r\r\n.\r\r\n stays inside the message' { crlf_all_ways '\r\r\n.\r\r\n'; }
@test 'crlf: \r\n\0.\r\n stays inside the message' { crlf_all_ways '\r\n\x00.\r\n'; }

@test 'crlf: every lookalike at once, inside one pipelined block' {
	ms_listen -o line_endings=crlf
	smuggle block '\n.\n\n.\r\n\r\n.\n\r.\r\n\r\n.\r\r.\r\r\r\n.\r\r\n\r\n\x00.\r\n'
	assert_one_message_per_transaction
}

@test 'crlf: a dot-stuffed line in a pipelined block is unstuffed, not an end' {
	ms_listen -o line_endings=crlf
	hs_escape_file "$MS_DIR/expect" 'one\n.\n.MAIL FROM:<evil@x.example>\n'
	run smtp_sock --timeout 5 --send "EHLO c.example\r\nMAIL FROM:<a@x.example>\r\nRCPT TO:<b@y.example>\r\nDATA\r\none\r\n..\r\n..MAIL FROM:<evil@x.example>\r\n.\r\nQUIT\r\n"
	assert_success
	assert_equal "$(printf '%s\n' "$output" | grep -c '^250 2\.0\.0 queued as ')" 1
	assert_line --index -1 --regexp '^221 '
	hs_assert_one_message "$MS_DIR/expect"
}

# ---- the same after BODY=8BITMIME -------------------------------------------

@test '8BITMIME: \n.\n stays inside the message' { eightbit '\n.\n'; }
@test '8BITMIME: \n.\r\n stays inside the message' { eightbit '\n.\r\n'; }
@test '8BITMIME: \r\n.\n stays inside the message' { eightbit '\r\n.\n'; }
@test '8BITMIME: \r.\r\n stays inside the message' { eightbit '\r.\r\n'; }
@test '8BITMIME: \r\n.\r stays inside the message' { eightbit '\r\n.\r'; }
@test '8BITMIME: \r.\r stays inside the message' { eightbit '\r.\r'; }
@test '8BITMIME: \r\r\n.\r\r\n stays inside the message' { eightbit '\r\r\n.\r\r\n'; }
@test '8BITMIME: \r\n\0.\r\n stays inside the message' { eightbit '\r\n\x00.\r\n'; }

# ---- strict ------------------------------------------------------------------

@test 'strict: \n.\n gets 554 after the real end' { strict '\n.\n'; }
@test 'strict: \n.\r\n gets 554 after the real end' { strict '\n.\r\n'; }
@test 'strict: \r\n.\n gets 554 after the real end' { strict '\r\n.\n'; }
@test 'strict: \r.\r\n gets 554 after the real end' { strict '\r.\r\n'; }
@test 'strict: \r\n.\r gets 554 after the real end' { strict '\r\n.\r'; }
@test 'strict: \r.\r gets 554 after the real end' { strict '\r.\r'; }
@test 'strict: \r\r\n.\r\r\n gets 554 after the real end' { strict '\r\r\n.\r\r\n'; }

# "\r\n" NUL "." "\r\n" has no bare CR or LF: a NUL is not a line ending, so
# strict has nothing to refuse, and the rule of crlf holds (one message, all
# of it).
@test 'strict: \r\n\0.\r\n stays inside the message' {
	ms_listen -o line_endings=strict
	local how
	for how in block split; do
		smuggle "$how" '\r\n\x00.\r\n'
		assert_one_message_per_transaction
	done
}

@test 'strict: every lookalike at once, inside one pipelined block, 554' {
	ms_listen -o line_endings=strict
	smuggle block '\n.\n\n.\r\n\r\n.\n\r.\r\n\r\n.\r\r.\r\r\r\n.\r\r\n\r\n\x00.\r\n' ' BODY=8BITMIME' '\xc3\xa9'
	assert_success
	assert_line --regexp '^554 5\.6\.0 '
	assert_equal "$(printf '%s\n' "$output" | grep -c '^250 2\.0\.0 queued as ')" 1
	hs_assert_one_message "$MS_DIR/expect2"
}
