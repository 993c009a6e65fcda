#!/usr/bin/env bats
# line_endings: crlf (auto on a socket or a pipe), lf (auto on a terminal),
# strict; each checked on the stored bytes.  In crlf and strict mode only
# CRLF "." CRLF ends the data, so no lookalike can smuggle a second message.

load 'lib/common'

setup() { ms_setup; }
teardown() { ms_teardown; }

EMR='EHLO c.example\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<bob@example.org>\r\n'
TRACE_PIPE='Return-Path: <a@b.example>\nDelivered-To: bob@example.org\nReceived: from c.example (unknown)\n\tby mx.test (mailslot) with ESMTP id ID\n\tfor <bob@example.org>; DATE\n'
TRACE_SOCK='Return-Path: <a@b.example>\nDelivered-To: bob@example.org\nReceived: from c.example (unknown [127.0.0.1])\n\tby mx.test (mailslot) with ESMTP id ID\n\tfor <bob@example.org>; DATE\n'

# bare-LF lines, a LF "." LF, then the real end
MIXED='Subject: x\r\n\r\nline1\nline2\n.\nstill data\r\n..dot\r\n.\r\nQUIT\r\n'

assert_stored() {
	ms_normalize_msg <"$(ms_new_file)" >"$MS_DIR/stored"
	printf '%b' "$1" >"$MS_DIR/expected"
	ms_assert_same "$MS_DIR/expected" "$MS_DIR/stored" 'stored message'
}

@test "auto on a socket is crlf: bare-LF lines are stored, LF.LF does not end the data" {
	ms_listen
	run smtp_sock --send "${EMR}DATA\r\n${MIXED}"
	assert_success
	assert_equal "$(grep -c '^250 2\.0\.0 queued as ' <<<"$output")" 1
	refute_line --regexp '^5'
	assert_line --index -1 '221 2.0.0 mx.test Service closing transmission channel'
	assert_stored "${TRACE_SOCK}Subject: x\n\nline1\nline2\n.\nstill data\n.dot\n"
	grep -q 'line_endings=crlf' "$MS_DIR/sa.log"
}

@test "auto on a pipe is crlf (a TLS wrapper's pipe is the network): LF.LF does not end the data" {
	run smtp_pipe "${EMR}DATA\r\n${MIXED}"
	assert_success
	assert_equal "$(grep -c '^250 2\.0\.0 queued as ' <<<"$output")" 1
	refute_line --regexp '^5'
	assert_line --index -1 '221 2.0.0 mx.test Service closing transmission channel'
	assert_stored "${TRACE_PIPE}Subject: x\n\nline1\nline2\n.\nstill data\n.dot\n"
	grep -q 'line_endings=crlf' "$MS_DIR/log"
}

@test "auto on a terminal is lf: LF.LF ends the data" {
	printf '%b' "${EMR}DATA\r\n${MIXED}" >"$MS_DIR/input"
	ms_cmd
	# fd 0 a pty in raw mode (no echo, no CR translation), the replies to a file
	run python3 - "$MS_DIR/input" "$MS_DIR/replies" "$MS_DIR/log" "${MS_CMD[@]}" <<'PY'
import os, subprocess, sys, tty
inp, out, log, cmd = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]
master, slave = os.openpty()
tty.setraw(slave)
with open(out, "wb") as o, open(log, "wb") as e:
    p = subprocess.Popen(cmd, stdin=slave, stdout=o, stderr=e)
    os.close(slave)
    os.write(master, open(inp, "rb").read())
    sys.exit(p.wait(timeout=60))	# QUIT ends it; the bound only keeps a bug from hanging the suite
PY
	assert_success
	local replies
	replies=$(ms_show_replies "$MS_DIR/replies")
	run ms_nth_reply 6 <<<"$replies"
	assert_output --regexp '^250 2\.0\.0 queued as '
	# what followed LF.LF is read as commands
	run ms_nth_reply 7 <<<"$replies"
	assert_output '500 5.5.1 Syntax error, command unrecognized'
	assert_stored "${TRACE_PIPE}Subject: x\n\nline1\nline2\n"
	grep -q 'line_endings=lf' "$MS_DIR/log"
}

@test "lf: a dot after a bare LF is unstuffed; LF.CRLF ends the data" {
	run smtp_pipe "${EMR}DATA\r\nSubject: x\n\n..one\ntwo\n.\r\nQUIT\r\n" -o line_endings=lf
	assert_success
	assert_line --regexp '^250 2\.0\.0 queued as '
	assert_line --index -1 '221 2.0.0 mx.test Service closing transmission channel'
	assert_stored "${TRACE_PIPE}Subject: x\n\n.one\ntwo\n"
}

@test "line_endings=crlf on a pipe behaves as on a socket" {
	run smtp_pipe "${EMR}DATA\r\n${MIXED}" -o line_endings=crlf
	assert_success
	assert_equal "$(grep -c '^250 2\.0\.0 queued as ' <<<"$output")" 1
	refute_line --regexp '^5'
	assert_stored "${TRACE_PIPE}Subject: x\n\nline1\nline2\n.\nstill data\n.dot\n"
}

@test "line_endings=lf on a socket: LF.LF ends the data" {
	ms_listen -o line_endings=lf
	run smtp_sock --send "${EMR}DATA\r\n${MIXED}"
	assert_success
	assert_line --regexp '^250 2\.0\.0 queued as '
	assert_line '500 5.5.1 Syntax error, command unrecognized'
	assert_stored "${TRACE_SOCK}Subject: x\n\nline1\nline2\n"
}

@test "crlf: no lookalike ends the data (LF.LF, CRLF.LF, LF.CRLF, CR.CRLF, CRLF.CR)" {
	local seq
	for seq in '\n.\n' '\r\n.\n' '\n.\r\n' '\r.\r\n' '\r\n.\r' '\r\n.\rX\r\n'; do
		rm -rf "$MS_MAILDIR"
		run smtp_pipe "${EMR}DATA\r\nSubject: x\r\n\r\nbefore${seq}MAIL FROM:<evil@x.example>\r\nRCPT TO:<victim@example.org>\r\nDATA\r\nsmuggled\r\n.\r\nQUIT\r\n" \
		    -o line_endings=crlf
		assert_success
		assert_equal "$(grep -c '^250 2\.0\.0 queued as ' <<<"$output")" 1
		assert_equal "$(grep -c '^354 ' <<<"$output")" 1
		refute_line --regexp '^5'
		assert_line --index -1 '221 2.0.0 mx.test Service closing transmission channel'
		run grep -c '^Delivered-To: victim' "$(ms_new_file)"
		assert_output 0
		grep -q '^smuggled$' "$(ms_new_file)" || fail "$seq: the text after it is not in the message"
	done
}

@test "crlf: lookalikes are stored as sent, CR included" {
	run smtp_pipe "${EMR}DATA\r\nSubject: x\r\n\r\na\r\n.\nb\n.\r\nc\r.\r\nd\r\n.\rX\r\n.\r\n" -o line_endings=crlf
	assert_success
	assert_stored "${TRACE_PIPE}Subject: x\n\na\n.\nb\n.\nc\r.\nd\n.\rX\n"
}

@test "lf: CRLF.LF and LF.CRLF end the data too" {
	local seq
	for seq in '\r\n.\n' '\n.\r\n' '\n.\n'; do
		rm -rf "$MS_MAILDIR"
		run smtp_pipe "${EMR}DATA\r\nSubject: x\r\n\r\nbody${seq}QUIT\r\n" -o line_endings=lf
		assert_success
		assert_line --regexp '^250 2\.0\.0 queued as '
		assert_line --index -1 '221 2.0.0 mx.test Service closing transmission channel'
		assert_stored "${TRACE_PIPE}Subject: x\n\nbody\n"
	done
}

@test "strict: LF.LF does not end the data; 554 after the real CRLF.CRLF, nothing stored" {
	run smtp_pipe "${EMR}DATA\r\n${MIXED}" -o line_endings=strict
	assert_success
	local replies=$output
	run ms_nth_reply 6 <<<"$replies"
	assert_output --regexp '^554 5\.[0-9]+\.[0-9]+ '
	run ms_nth_reply 7 <<<"$replies"
	assert_output '221 2.0.0 mx.test Service closing transmission channel'
	assert_equal "$(ms_new_count)" 0
	assert_equal "$(ms_tmp_count)" 0
}

@test "strict over the socket: 554 for a bare LF" {
	ms_listen -o line_endings=strict
	run smtp_sock --send "${EMR}DATA\r\nSubject: x\r\n\r\nbare\nLF\r\n.\r\nQUIT\r\n"
	assert_success
	assert_line --index -2 --regexp '^554 5\.[0-9]+\.[0-9]+ '
	assert_equal "$(ms_new_count)" 0
}
