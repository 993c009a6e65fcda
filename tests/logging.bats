#!/usr/bin/env bats
# The log: a session id on every line, escaped untrusted text, never the
# body, and never a byte on fd 2 when fd 2 is the client's connection.

load 'lib/common'

setup() { ms_setup; }
teardown() { ms_teardown; }

SESSION='EHLO c.example\r\nFOO\x1b[31m\x01\xff\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<x/y\x7f@example.org>\r\nRCPT TO:<bob@example.org>\r\nDATA\r\nSubject: x\r\n\r\nSECRET-BODY-TEXT\r\n.\r\nQUIT\r\n'

@test "log: every line carries the same session id" {
	run smtp_pipe "$SESSION"
	assert_success
	local n ids
	n=$(grep -c '' "$MS_DIR/log")
	[ "$n" -ge 3 ] || fail "only $n log lines: $(cat "$MS_DIR/log")"
	run grep -vcE '^mailslot\[[0-9]+\]: session=[0-9a-f]{12} ' "$MS_DIR/log"
	assert_output 0
	ids=$(sed -E 's/^[^ ]+ session=([0-9a-f]+) .*/\1/' "$MS_DIR/log" | sort -u | wc -l)
	assert_equal "$ids" 1
}

@test "log: two sessions have different ids" {
	run smtp_pipe 'QUIT\r\n'
	local a b
	a=$(sed -nE '1s/^[^ ]+ session=([0-9a-f]+) .*/\1/p' "$MS_DIR/log")
	run smtp_pipe 'QUIT\r\n'
	b=$(sed -nE '1s/^[^ ]+ session=([0-9a-f]+) .*/\1/p' "$MS_DIR/log")
	[ -n "$a" ] && [ "$a" != "$b" ] || fail "session ids: '$a' and '$b'"
}

@test "log: refusals are logged with the command escaped; deliveries with the file" {
	run smtp_pipe "$SESSION"
	assert_success
	run grep -F 'command="FOO\033[31m\001\377"' "$MS_DIR/log"
	assert_success
	run grep -F 'x/y\177@example.org' "$MS_DIR/log"
	assert_success
	run grep -F "file=$(basename "$(ms_new_file)")" "$MS_DIR/log"
	assert_success
	# no raw control octet or 8-bit octet anywhere in the log
	run bash -c "LC_ALL=C grep -c \$'[\\x01-\\x08\\x0b-\\x1f\\x7f-\\xff]' '$MS_DIR/log'"
	assert_output 0
}

@test "log: a refused command is logged without the trailing blanks mailslot trimmed" {
	# The 36 octets after the BDAT line are its chunk, read and dropped.
	run smtp_pipe 'EHLO c.example\r\nRCPT TO:<x@example.org> \t \r\nbdat 36 LAST                \r\n012345678901234567890123456789012345QUIT\r\n'
	assert_success
	run grep -c 'event=refuse code=503 .* command="bdat 36 LAST" reason="need MAIL first"$' "$MS_DIR/log"
	assert_output 1
	run grep -c 'event=refuse code=503 .* command="RCPT TO:<x@example.org>" reason="need MAIL first"$' "$MS_DIR/log"
	assert_output 1
}

@test "log: hostile values in every client field stay inside their own field" {
	# HELO/EHLO names, MAIL and RCPT addresses (refused and delivered), the
	# VRFY, EXPN and HELP arguments, unknown verbs, and the replies that
	# quote them: quotes, backslashes, spaces, '=', CR, NUL, ESC, TAB,
	# UTF-8, invalid 8-bit.  tests/lib/logfields.py reads the log as
	# key=value fields and finds exactly the ones mailslot wrote.
	python3 "$MS_LIB/logfields.py" session "$MS_DIR/hostile"
	run smtp_pipe_file "$MS_DIR/hostile" -o domains=example.org -o max_errors=1000
	assert_success
	assert_line --partial ' queued as '
	run python3 "$MS_LIB/logfields.py" check "$MS_DIR/log"
	[ "$status" -eq 0 ] || fail "$output"
}

@test "log: the message body is never logged" {
	run smtp_pipe "$SESSION"
	assert_success
	run grep -c 'SECRET-BODY-TEXT' "$MS_DIR/log"
	assert_output 0
	grep -q '^SECRET-BODY-TEXT$' "$(ms_new_file)"
}

@test "log: with fd 2 the same pipe as fd 1, the client gets replies only" {
	printf '%b' "$SESSION" >"$MS_DIR/in"
	ms_cmd
	"$MS_LIB/stderr-to-stdout" "${MS_CMD[@]}" <"$MS_DIR/in" >"$MS_DIR/replies"
	run ms_show_replies "$MS_DIR/replies"
	assert_line --index 0 '220 mx.test ESMTP mailslot ready'
	assert_line --index -1 '221 2.0.0 mx.test Service closing transmission channel'
	refute_line --regexp '^([^0-9]|[0-9]{3}[^ -])'
	refute_output --partial 'session='
}

@test "log: a bad configuration with fd 2 the same as fd 1: only the 421 reaches the client" {
	ms_cmd -o max_errors=abc
	run "$MS_LIB/stderr-to-stdout" "${MS_CMD[@]}" </dev/null
	assert_equal "$status" 100
	assert_output $'421 4.3.5 mx.test Service not available, closing transmission channel\r'
}

@test "log: inetd-style, fd 2 the client's socket: the client gets replies only" {
	MAILSLOT_WRAPPER="$MS_LIB/stderr-to-stdout $MAILSLOT_WRAPPER"
	ms_listen
	run smtp_sock --send "$SESSION"
	assert_success
	assert_line --index 0 '220 mx.test ESMTP mailslot ready'
	assert_line --index -1 '221 2.0.0 mx.test Service closing transmission channel'
	refute_line --regexp '^([^0-9]|[0-9]{3}[^ -])'
	refute_output --partial 'session='
	assert_equal "$(ms_new_count)" 1
}

# One transaction, two accepted recipients and two refused ones (one with
# an address longer than the command field keeps), with a Message-ID.
WHO_MB="$(printf 'x%.0s' $(seq 40))"
WHO="EHLO c.example\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<bob@example.org>\r\nRCPT TO:<no-such-$WHO_MB@elsewhere.example>\r\nRCPT TO:<x/y@example.org>\r\nRCPT TO:<carol@example.net>\r\nDATA\r\n"

@test "log: one deliver line per envelope recipient, with the id and the Message-ID; refused recipients by address" {
	run smtp_pipe "${WHO}Subject: x\r\nMessage-ID:\r\n <m1.2@c.example>\r\n\r\nbody\r\n.\r\nQUIT\r\n" \
	    -o domains=example.org,example.net
	assert_line --regexp '^250 2\.0\.0 queued as '
	f=$(basename "$(ms_new_file)")
	id=${f%%.mx.test*}
	for a in bob@example.org carol@example.net; do
		run grep -c "event=deliver id=$id from=\"<a@b.example>\" to=\"<$a>\" via=mailbox msgid=\"<m1.2@c.example>\" size=[0-9]* file=$f\$" "$MS_DIR/log"
		assert_output 1
	done
	run grep -c 'event=deliver ' "$MS_DIR/log"
	assert_output 2
	# Refused: each found by its whole address, on its refusal line.
	run grep -c "event=refuse code=550 .* to=\"<no-such-$WHO_MB@elsewhere.example>\"\$" "$MS_DIR/log"
	assert_output 1
	run grep -c 'event=refuse code=553 .* to="<x/y@example.org>"$' "$MS_DIR/log"
	assert_output 1
}

@test "log: a failed commit is logged once per recipient, by address (strace --inject)" {
	[ -z "$MAILSLOT_WRAPPER" ] || skip "strace around MAILSLOT_WRAPPER ($MAILSLOT_WRAPPER) does not work"
	command -v strace >/dev/null || skip "no strace"
	strace -qq -o /dev/null -e inject=fsync:error=EIO:when=1 true 2>/dev/null ||
		skip "this strace cannot inject faults"
	run smtp_pipe 'QUIT\r\n'	# the catch-all made, with its fsyncs
	assert_success
	# Without AIO (refused, as seccomp may), the file's fsync fails.
	MAILSLOT_WRAPPER="strace -f -qq -o /dev/null -e trace=fsync,io_setup -e inject=io_setup:error=ENOSYS -e inject=fsync:error=EIO:when=1"
	run smtp_pipe 'EHLO c.example\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<bob@example.org>\r\nRCPT TO:<"c d"@example.net>\r\nDATA\r\nSubject: x\r\n\r\nbody\r\n.\r\nQUIT\r\n' \
	    -o domains=example.org,example.net
	assert_line --regexp '^451 4\.3\.0 message not stored: '
	for a in 'bob@example.org' '\\"c d\\"@example.net'; do
		run grep -c "event=error op=commit id=[^ ]* to=\"<$a>\" error=\"Input/output error\"\$" "$MS_DIR/log"
		assert_output 1
	done
	run grep -c 'event=error op=commit ' "$MS_DIR/log"
	assert_output 2
}

@test "log: the Message-ID is escaped and bounded; none is msgid=\"\"" {
	long=$(printf 'L%.0s' $(seq 2000))
	MS_OPTS+=(-o domains=example.org,example.net)
	run smtp_pipe "${WHO}Message-ID: <a\"b\x01\xff $long@c.example>\r\n\r\nbody\r\n.\r\nQUIT\r\n"
	assert_line --regexp '^250 2\.0\.0 queued as '
	line=$(grep -m1 'event=deliver ' "$MS_DIR/log")
	[[ $line == *'msgid="<a\"b\001\377 LLL'* ]] || fail "msgid not escaped: $line"
	# At most 255 octets of it, escaped: the line stays short.
	[ "${#line}" -lt 700 ] || fail "a ${#line}-octet log line"
	run bash -c "LC_ALL=C grep -c \$'[\\x01-\\x08\\x0b-\\x1f\\x7f-\\xff]' '$MS_DIR/log'"
	assert_output 0
	# A Message-ID in the body is not the message's.
	run smtp_pipe "${WHO}Subject: x\r\n\r\nMessage-ID: <body@c.example>\r\n.\r\nQUIT\r\n"
	assert_line --regexp '^250 2\.0\.0 queued as '
	run grep -c 'event=deliver .* msgid="" ' "$MS_DIR/log"
	assert_output 2
}
