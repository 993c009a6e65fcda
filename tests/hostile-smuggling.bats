#!/usr/bin/env bats
# SMTP smuggling (CVE-2023-51764, -51765, -51766): a client hides a second
# transaction inside the data behind a lookalike of the end of data, hoping
# that this server ends the message there and runs the rest as commands.
#
# Over a real socket (systemd-socket-activate --inetd on 127.0.0.1), each
# lookalike below is sent three ways (after the 354; the whole session in
# one pipelined write; the data cut inside the lookalike), followed by a
# smuggled MAIL/RCPT/DATA, the real CRLF "." CRLF, a clean second
# transaction and QUIT (tests/lib/hostile.py smuggle does the talking and
# prints one line per connection).  In crlf mode the lookalike and the
# smuggled commands stay inside the first message, stored byte for byte
# (CRLF as LF), and the second transaction is delivered on its own: new/
# holds exactly those two.  In strict mode the first message gets 554 after
# the real end and only the second is stored.

load 'lib/common'
load 'lib/hostile'

setup() { ms_setup; }
teardown() { ms_teardown; }

LOOKALIKES=('\n.\n' '\n.\r\n' '\r\n.\n' '\r.\r\n' '\r\n.\r' '\r.\r' '\r\r\n.\r\r\n')
NUL_DOT='\r\n\x00.\r\n'
ALL_AT_ONCE='\n.\n\n.\r\n\r\n.\n\r.\r\n\r\n.\r\r.\r\r\r\n.\r\r\n\r\n\x00.\r\n'

smuggle() {
	run python3 "$MS_LIB/hostile.py" smuggle --port "$MS_PORT" --maildir "$MS_MAILDIR" "$@"
	assert_success
	refute_output --partial FAIL
	assert_output --regexp "(^|$'\n')ok "
}

@test "crlf: every lookalike stays inside its message, sent three ways" {
	ms_listen -o line_endings=crlf
	smuggle "${LOOKALIKES[@]}" "$NUL_DOT"
}

@test "crlf: every lookalike at once, in one pipelined write" {
	ms_listen -o line_endings=crlf
	smuggle --how block "$ALL_AT_ONCE"
}

@test "crlf after BODY=8BITMIME, 8-bit data: every lookalike stays inside its message" {
	ms_listen -o line_endings=crlf
	smuggle --eight "${LOOKALIKES[@]}" "$NUL_DOT"
}

@test "strict: every lookalike with a bare CR or LF gets 554 after the real end" {
	ms_listen -o line_endings=strict
	smuggle --expect refuse "${LOOKALIKES[@]}" "$ALL_AT_ONCE"
}

@test "strict after BODY=8BITMIME: 554 after the real end" {
	ms_listen -o line_endings=strict
	smuggle --expect refuse --eight --how block,split "${LOOKALIKES[@]}"
}

# CRLF NUL "." CRLF has no bare CR or LF (a NUL ends no line), so strict has
# nothing to refuse: the rule of crlf holds, one message with all of it.
@test "strict: CRLF NUL . CRLF stays inside its message" {
	ms_listen -o line_endings=strict
	smuggle "$NUL_DOT"
}

@test "crlf: a dot-stuffed line in a pipelined block is unstuffed, not an end" {
	ms_listen -o line_endings=crlf
	hs_escape_file "$MS_DIR/expect" 'one\n.\n.MAIL FROM:<evil@x.example>\n'
	run smtp_sock --timeout 5 --send "EHLO c.example\r\nMAIL FROM:<a@x.example>\r\nRCPT TO:<b@y.example>\r\nDATA\r\none\r\n..\r\n..MAIL FROM:<evil@x.example>\r\n.\r\nQUIT\r\n"
	assert_success
	assert_equal "$(printf '%s\n' "$output" | grep -c '^250 2\.0\.0 queued as ')" 1
	assert_line --index -1 --regexp '^221 '
	hs_assert_one_message "$MS_DIR/expect"
}

@test "lf mode (terminals) is not for the network: there LF . LF does end the data" {
	# The reason line_endings=auto is crlf but on a terminal: the same bytes
	# in lf mode end the first message at the lookalike.
	ms_listen -o line_endings=lf
	run python3 "$MS_LIB/hostile.py" smuggle --port "$MS_PORT" --maildir "$MS_MAILDIR" \
	    --how block '\n.\n'
	assert_failure
	assert_output --partial FAIL
}
