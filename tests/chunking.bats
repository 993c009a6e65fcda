#!/usr/bin/env bats
# CHUNKING (BDAT, RFC 3030) and BINARYMIME: the framing of chunks, what is
# stored, the replies (one per chunk, in order, pipelined or not), the
# refusals (501, 503, 552, 421) and the drained chunks that keep the stream
# in step, and a client that announces far more than it sends.

load 'lib/common'

setup() { ms_setup; }
teardown() { ms_teardown; }

EMR='EHLO c.example\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<bob@example.org>\r\n'
TRACE_PIPE='Return-Path: <a@b.example>\nDelivered-To: bob@example.org\nReceived: from c.example (unknown)\n\tby mx.test (mailslot) with ESMTP id ID\n\tfor <bob@example.org>; DATE\n'
OK='Requested mail action okay, completed'
SYNTAX='501 5.5.4 Syntax: BDAT <size> [LAST]: Syntax error in parameters or arguments'
TOOBIG='552 5.3.4 message size exceeds fixed maximum message size: Requested mail action aborted: exceeded storage allocation'

# The stored file, normalised, against printf %b of $1.
assert_stored() {
	local f
	f=$(ms_new_file)
	ms_normalize_msg <"$f" >"$MS_DIR/stored"
	printf '%b' "$1" >"$MS_DIR/expected"
	ms_assert_same "$MS_DIR/expected" "$MS_DIR/stored" 'stored message'
}

# assert_sizes FILE lf|binary: the ,S= and ,W= in FILE's name.  S= is the
# file's size; W= its size with CRLF line endings: every LF counts one more
# octet (lf: the message was stored with LF endings), or every LF without
# a CR before it (binary: stored as sent, CRLF already two octets).
assert_sizes() {
	local f=$1 name=${1##*/} want
	[[ $name =~ ,S=([0-9]+),W=([0-9]+)$ ]] || fail "no S= and W= in $name"
	want=$(python3 - "$f" "$2" <<'EOF'
import sys
d = open(sys.argv[1], "rb").read()
if sys.argv[2] == "lf":
    extra = d.count(b"\n")
else:
    extra = sum(1 for i, b in enumerate(d) if b == 10 and (i == 0 or d[i - 1] != 13))
print(len(d), len(d) + extra)
EOF
)
	assert_equal "${BASH_REMATCH[1]} ${BASH_REMATCH[2]}" "$want"
}

# Nothing delivered, nothing left behind.
assert_clean() {
	assert_equal "$(ms_new_count)" 0
	assert_equal "$(ms_tmp_count)" 0
}

# The complete replies, one a line, after the greeting and the EHLO reply.
replies_after_ehlo() {
	printf '%s\n' "$output" | ms_replies | tail -n +3
}

@test "chunking: EHLO lists CHUNKING and BINARYMIME" {
	run smtp_pipe 'EHLO c.example\r\nQUIT\r\n'
	assert_success
	assert_line '250-CHUNKING'
	assert_line '250-BINARYMIME'
}

@test "chunking: BDAT 0 LAST alone is an empty message: the trace headers only" {
	run smtp_pipe "${EMR}BDAT 0 LAST\r\nQUIT\r\n"
	assert_success
	assert_line --regexp '^250 2\.0\.0 queued as '
	assert_stored "$TRACE_PIPE"
	assert_sizes "$(ms_new_file)" lf
	assert_equal "$(ms_tmp_count)" 0
}

@test "chunking: 7BIT by BDAT: stored with LF endings, the trace headers, S= and W=" {
	run smtp_pipe "${EMR}BDAT 33\r\nSubject: x\r\nFrom: a@b.example\r\n\r\nBDAT 15 LAST\r\n.hi\r\n..\r\n.\r\nbyeQUIT\r\n"
	assert_success
	local f name
	f=$(ms_new_file)
	name=${f##*/}
	assert_equal "$(replies_after_ehlo)" "250 2.1.0 <a@b.example>: $OK
250 2.1.5 <bob@example.org>: $OK
250 2.0.0 33 octets received: $OK
250 2.0.0 queued as $name: $OK
221 2.0.0 mx.test Service closing transmission channel"
	# never dot-unstuffed, and a lone "." line ends nothing
	assert_stored "${TRACE_PIPE}Subject: x\nFrom: a@b.example\n\n.hi\n..\n.\nbye"
	assert_sizes "$f" lf
	grep -qF "with ESMTP id ${name%%.mx.test,*}" "$f" || fail "Received does not carry the id of $name"
}

@test "chunking: 8BITMIME by BDAT: 8-bit octets kept, CRLF stored as LF" {
	run smtp_pipe 'EHLO c.example\r\nMAIL FROM:<a@b.example> BODY=8BITMIME\r\nRCPT TO:<bob@example.org>\r\nBDAT 18 LAST\r\n\r\nS\xc3\xb8ren \xff\x80\r\nend\r\nQUIT\r\n'
	assert_success
	assert_line --regexp '^250 2\.0\.0 queued as '
	assert_stored "${TRACE_PIPE}\nS\xc3\xb8ren \xff\x80\nend\n"
	assert_sizes "$(ms_new_file)" lf
}

@test "chunking: a CRLF split across chunks (CR ends one, LF starts the next) is stored as LF" {
	# "a\r" | "\nb\r\n" | "c\r" | "\r\nd" LAST: sent as a\r\nb\r\nc\r\r\nd
	run smtp_pipe "${EMR}BDAT 2\r\na\rBDAT 4\r\n\nb\r\nBDAT 2\r\nc\rBDAT 3 LAST\r\n\r\ndQUIT\r\n"
	assert_success
	assert_equal "$(grep -c ' octets received: ' <<<"$output")" 3
	assert_line --regexp '^250 2\.0\.0 queued as '
	# only CRLF becomes LF: the first of two CRs is a lone CR and stays
	assert_stored "${TRACE_PIPE}a\nb\nc\r\nd"
	# W= is the size as sent with CRLF: every stored LF stood for CRLF
	assert_sizes "$(ms_new_file)" lf
}

@test "chunking: a lone CR at the very end of the message is kept" {
	run smtp_pipe "${EMR}BDAT 3\r\nx\r\rBDAT 0 LAST\r\nQUIT\r\n"
	assert_success
	assert_line --regexp '^250 2\.0\.0 queued as '
	assert_stored "${TRACE_PIPE}x\r\r"
	rm -f "$MS_MAILDIR"/new/*
	run smtp_pipe "${EMR}BDAT 2 LAST\r\ny\rQUIT\r\n"
	assert_success
	assert_stored "${TRACE_PIPE}y\r"
}

@test "chunking: BINARYMIME: NUL, lone CR, lone LF and CRLF stored byte for byte, W= right" {
	# the chunks split a CRLF and end on a lone CR
	run smtp_pipe 'EHLO c.example\r\nMAIL FROM:<a@b.example> BODY=BINARYMIME\r\nRCPT TO:<bob@example.org>\r\nBDAT 17\r\nSubject: b\r\n\r\n\x00a\rBDAT 9\r\nb\nc\r\n\r\x00\r\rBDAT 3 LAST\r\n\n\r\x00QUIT\r\n'
	assert_success
	assert_line --regexp '^250 2\.0\.0 queued as '
	assert_stored "${TRACE_PIPE}Subject: b\r\n\r\n\0a\rb\nc\r\n\r\0\r\r\n\r\0"
	assert_sizes "$(ms_new_file)" binary
}

@test "chunking: a 20 MB message in chunks of random sizes arrives byte for byte over TCP" {
	# seeded: the same chunks every run; a third of the cuts fall just
	# after a CR, so many CRLFs are split; some chunks are a few octets
	python3 - "$MS_DIR/in" "$MS_DIR/want" "$MS_DIR/nchunks" <<'EOF'
import random, sys
rnd = random.Random(3030)
alphabet = bytes(range(0x20, 0x100)) + b"\t"
lines, size = [], 0
while size < 20 * 1000 * 1000:
    n = rnd.randrange(0, 300)
    line = bytes(rnd.choice(alphabet) for _ in range(min(n, 8))) * (n // 8 + 1)
    line = line[:n] + b"\r\n"
    lines.append(line)
    size += len(line)
msg = b"Subject: big\r\n\r\n" + b"".join(lines)
with open(sys.argv[1], "wb") as f:
    f.write(b"EHLO c.example\r\nMAIL FROM:<a@b.example> BODY=8BITMIME\r\n"
            b"RCPT TO:<bob@example.org>\r\n")
    pos, chunks = 0, 0
    while pos < len(msg):
        r = rnd.random()
        n = rnd.randrange(1, 9) if r < 0.3 else rnd.randrange(1, 1 << 20)
        end = min(len(msg), pos + n)
        if rnd.random() < 1 / 3:
            cr = msg.find(b"\r", end)
            if cr >= 0:
                end = cr + 1
        last = end == len(msg)
        f.write(b"BDAT %d%s\r\n" % (end - pos, b" LAST" if last else b""))
        f.write(msg[pos:end])
        pos, chunks = end, chunks + 1
    f.write(b"QUIT\r\n")
open(sys.argv[2], "wb").write(msg.replace(b"\r\n", b"\n"))
open(sys.argv[3], "w").write("%d\n" % chunks)
EOF
	ms_listen
	run smtp_sock --send-file "$MS_DIR/in" --timeout 40
	assert_success
	assert_equal "$(grep -c '^250 2\.0\.0 [0-9]* octets received: ' <<<"$output")" "$(($(cat "$MS_DIR/nchunks") - 1))"
	assert_line --regexp '^250 2\.0\.0 queued as '
	assert_equal "$(tail -n 1 <<<"$output")" '221 2.0.0 mx.test Service closing transmission channel'
	local f
	f=$(ms_new_file)
	tail -n +6 "$f" >"$MS_DIR/got"
	cmp "$MS_DIR/want" "$MS_DIR/got" || fail "the stored body differs from what was sent"
	assert_sizes "$f" lf
	assert_equal "$(ms_tmp_count)" 0
}

@test "chunking: a 2 MB BINARYMIME message of random octets in random chunks arrives unchanged" {
	python3 - "$MS_DIR/in" "$MS_DIR/want" <<'EOF'
import random, sys
rnd = random.Random(1830)
msg = bytes(rnd.getrandbits(8) for _ in range(2 * 1000 * 1000))
with open(sys.argv[1], "wb") as f:
    f.write(b"EHLO c.example\r\nMAIL FROM:<a@b.example> BODY=BINARYMIME\r\n"
            b"RCPT TO:<bob@example.org>\r\n")
    pos = 0
    while pos < len(msg):
        end = min(len(msg), pos + rnd.randrange(1, 200000))
        f.write(b"BDAT %d%s\r\n" % (end - pos, b" LAST" if end == len(msg) else b""))
        f.write(msg[pos:end])
        pos = end
    f.write(b"QUIT\r\n")
open(sys.argv[2], "wb").write(msg)
EOF
	ms_listen
	run smtp_sock --send-file "$MS_DIR/in" --timeout 20
	assert_success
	assert_line --regexp '^250 2\.0\.0 queued as '
	local f
	f=$(ms_new_file)
	tail -n +6 "$f" >"$MS_DIR/got"
	cmp "$MS_DIR/want" "$MS_DIR/got" || fail "the stored body differs from what was sent"
	assert_sizes "$f" binary
}

@test "chunking: pipelined: BDAT, octets, BDAT, octets... in one write: replies in order" {
	ms_listen
	run smtp_sock --send "${EMR}BDAT 3\r\nabcBDAT 4\r\nd\r\neBDAT 1 LAST\r\nfMAIL FROM:<c@d.example>\r\nRCPT TO:<eve@example.org>\r\nBDAT 5\r\nRSET\nBDAT 0 LAST\r\nNOOP\r\nQUIT\r\n"
	assert_success
	assert_equal "$(ms_new_count)" 2
	# the two names in the order the replies gave them
	local q1 q2
	q1=$(sed -n 's/^250 2\.0\.0 queued as \([^:]*\):.*/\1/p' <<<"$output" | sed -n 1p)
	q2=$(sed -n 's/^250 2\.0\.0 queued as \([^:]*\):.*/\1/p' <<<"$output" | sed -n 2p)
	assert_equal "$(replies_after_ehlo)" "250 2.1.0 <a@b.example>: $OK
250 2.1.5 <bob@example.org>: $OK
250 2.0.0 3 octets received: $OK
250 2.0.0 4 octets received: $OK
250 2.0.0 queued as $q1: $OK
250 2.1.0 <c@d.example>: $OK
250 2.1.5 <eve@example.org>: $OK
250 2.0.0 5 octets received: $OK
250 2.0.0 queued as $q2: $OK
250 2.0.0 $OK
221 2.0.0 mx.test Service closing transmission channel"
	run tail -n 1 "$MS_MAILDIR/new/$q1"
	assert_output 'ef'
	# "RSET\n" inside a chunk is message data, not a command
	run grep -c '^RSET$' "$MS_MAILDIR/new/$q2"
	assert_output 1
}

@test "chunking: 501 for a word other than LAST: chunk drained, later chunks refused the same" {
	run smtp_pipe "${EMR}BDAT 6 NOTLAST\r\nNOOP\r\nBDAT 4\r\nQUITBDAT 3 LAST\r\nxyzMAIL FROM:<c@d.example>\r\nQUIT\r\n"
	assert_success
	assert_equal "$(replies_after_ehlo)" "250 2.1.0 <a@b.example>: $OK
250 2.1.5 <bob@example.org>: $OK
$SYNTAX
$SYNTAX
$SYNTAX
250 2.1.0 <c@d.example>: $OK
221 2.0.0 mx.test Service closing transmission channel"
	assert_clean
}

@test "chunking: 501 for a size glued to LAST (BDAT 1LAST): RFC 3030 wants SP before LAST" {
	run smtp_pipe "${EMR}BDAT 1LAST\r\nxNOOP\r\nQUIT\r\n"
	assert_line --index 16 --regexp '^501 5\.5\.4 '
	assert_equal "$(ms_new_count)" 0
	assert_equal "$(ms_tmp_count)" 0
}

@test "chunking: 501 then 421 and close for no size, a sign, or a size of 2^64" {
	local arg
	for arg in '' ' ' '+5' '-1' 'x' '18446744073709551616' '99999999999999999999999' '18446744073709551616 LAST'; do
		run smtp_pipe "${EMR}BDAT ${arg}\r\nNOOP\r\nQUIT\r\n"
		# the 501 text depends on whether dispatch or BDAT saw it first
		replies_after_ehlo | tail -n 3 | cut -c1-9 >"$MS_DIR/codes"
		assert_equal "$(cat "$MS_DIR/codes")" "250 2.1.5
501 5.5.4
421 4.5.0"
		refute_output --partial '221 '
		assert_clean
	done
	# the largest 64-bit size is a size: too big, and drained until the end
	run smtp_pipe "${EMR}BDAT 18446744073709551615\r\nNOOP\r\nQUIT\r\n"
	refute_output --partial '421 4.5.0'
	refute_output --partial '221 '
	assert_clean
}

@test "chunking: BDAT before MAIL: 503, and its octets (commands to the eye) are never run" {
	local chunk='MAIL FROM:<evil@x.example>\r\nRCPT TO:<bob@example.org>\r\nBDAT 4 LAST\r\nevilQUIT\r\n'
	local n
	n=$(printf '%b' "$chunk" | wc -c)
	run smtp_pipe "EHLO c.example\r\nBDAT $n\r\n${chunk}NOOP\r\nQUIT\r\n"
	assert_success
	assert_equal "$(replies_after_ehlo)" "503 5.5.1 need MAIL first: Bad sequence of commands
250 2.0.0 $OK
221 2.0.0 mx.test Service closing transmission channel"
	assert_clean
	# before EHLO too, and BDAT LAST
	run smtp_pipe "BDAT $n LAST\r\n${chunk}NOOP\r\nQUIT\r\n"
	assert_success
	assert_equal "$(printf '%s\n' "$output" | ms_replies | tail -n +2 | cut -c1-9)" "503 5.5.1
250 2.0.0
221 2.0.0"
	assert_clean
}

# A BDAT line refused before its size is known to be good: the chunk after
# it (RSET, VRFY injected: commands to the eye) is drained, or the session
# ends with 421 4.5.0; it never runs.  $1: the BDAT line (%b-decoded), $2:
# the reply codes expected after the EHLO reply; then mailslot's arguments.
refused_bdat() {
	run smtp_pipe "${EMR}$1\r\nRSET\r\nVRFY injected\r\nNOOP\r\nQUIT\r\n" "${@:3}"
	refute_output --partial 'injected'
	assert_equal "$(replies_after_ehlo | cut -c1-9)" "$2"
}

@test "chunking: a BDAT line refused for its form never lets its chunk run as commands" {
	local sp line lost='250 2.1.0
250 2.1.5
500 5.5.2
421 4.5.0'
	sp=$(printf '%1100s' '')
	# over the 1024 octets kept of a line, or with a NUL: the size cannot be trusted
	for line in "BDAT 21 LAST$sp" "bdat 21 last$sp" "BDAT$sp 21 LAST" "BDAT 21 LAST\\0" \
	    "BDAT 21\\0 LAST" "BDAT\\0 21 LAST"; do
		refused_bdat "$line" "$lost"
		refute_output --partial '221 '
		assert_clean
	done
	# not a verb mailslot knows, but a chunk may follow it
	refused_bdat 'BDAT\t21 LAST' "${lost/500 5.5.2/500 5.5.1}"
	refute_output --partial '221 '
	assert_clean
	# 600 octets: over 512, but the whole line is read: its chunk is drained
	sp=$(printf '%588s' '')
	refused_bdat "BDAT 21 LAST$sp" '250 2.1.0
250 2.1.5
500 5.5.2
250 2.0.0
221 2.0.0'
	assert_clean
}

@test "chunking: a BDAT line refused by mode or sequence drains its chunk" {
	refused_bdat 'BDAT 21 LAST' '521 5.3.2
521 5.3.2
521 5.3.2
521 5.3.2
221 2.0.0' -o accept_mail=no
	run smtp_pipe "EHLO c.example\r\nBDAT 21 LAST\r\nRSET\r\nVRFY injected\r\nNOOP\r\nQUIT\r\n"
	refute_output --partial 'injected'
	assert_equal "$(replies_after_ehlo | cut -c1-9)" "503 5.5.1
250 2.0.0
221 2.0.0"
}

@test "chunking: BDAT without an accepted RCPT: 503, chunk drained, MAIL still open" {
	run smtp_pipe "EHLO c.example\r\nMAIL FROM:<a@b.example>\r\nBDAT 10 LAST\r\nQUIT\r\nQUITRCPT TO:<bob@example.org>\r\nBDAT 2 LAST\r\nokQUIT\r\n"
	assert_success
	assert_equal "$(replies_after_ehlo | cut -c1-9)" "250 2.1.0
503 5.5.1
250 2.1.5
250 2.0.0
221 2.0.0"
	assert_line --regexp '^503 5\.5\.1 need RCPT first: '
	assert_stored "${TRACE_PIPE}ok"
}

@test "chunking: exactly max_message_size passes, one octet over gets 552 5.3.4, in step" {
	run smtp_pipe "${EMR}BDAT 4\r\nab\r\nBDAT 6 LAST\r\ncdefghQUIT\r\n" -o max_message_size=10
	assert_success
	assert_line --regexp '^250 2\.0\.0 queued as '
	assert_stored "${TRACE_PIPE}ab\ncdefgh"
	rm -f "$MS_MAILDIR"/new/*
	run smtp_pipe "${EMR}BDAT 4\r\nab\r\nBDAT 7\r\ncdefghiBDAT 2 LAST\r\njkMAIL FROM:<c@d.example>\r\nQUIT\r\n" -o max_message_size=10
	assert_success
	assert_equal "$(replies_after_ehlo)" "250 2.1.0 <a@b.example>: $OK
250 2.1.5 <bob@example.org>: $OK
250 2.0.0 4 octets received: $OK
$TOOBIG
$TOOBIG
250 2.1.0 <c@d.example>: $OK
221 2.0.0 mx.test Service closing transmission channel"
	assert_clean
	# one chunk over the limit on its own, and LAST
	run smtp_pipe "${EMR}BDAT 11 LAST\r\nabcdefghijkMAIL FROM:<c@d.example>\r\nQUIT\r\n" -o max_message_size=10
	assert_success
	assert_line --index 16 "$TOOBIG"
	assert_line --index 17 "250 2.1.0 <c@d.example>: $OK"
	assert_clean
}

@test "chunking: the chunks after a refusal count once against max_errors" {
	local more='BDAT 1\r\nxBDAT 1\r\nxBDAT 1\r\nxBDAT 1\r\nx'
	run smtp_pipe "${EMR}BDAT 1 FOO\r\nx${more}BDAT 1 LAST\r\nxNOOP\r\nQUIT\r\n" -o max_errors=2
	assert_success
	assert_equal "$(grep -c '^501 5\.5\.4 ' <<<"$output")" 6
	refute_output --partial '421 '
	assert_line '250 2.0.0 Requested mail action okay, completed'
	assert_clean
	run smtp_pipe "${EMR}BDAT 11\r\nabcdefghijk${more}BDAT 1 LAST\r\nxNOOP\r\nQUIT\r\n" -o max_errors=2 -o max_message_size=10
	assert_success
	assert_equal "$(grep -c '^552 5\.3\.4 ' <<<"$output")" 6
	refute_output --partial '421 '
	assert_clean
	# each transaction's refusal is one error: the third gives 421
	run smtp_pipe "${EMR}BDAT 1 FOO\r\nxBDAT 0 LAST\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<bob@example.org>\r\nBDAT 1 FOO\r\nxBDAT 0 LAST\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<bob@example.org>\r\nBDAT 1 FOO\r\nxNOOP\r\n" -o max_errors=2
	assert_line --regexp '^421 4\.7\.0 .*too many errors'
	assert_clean
}

@test "chunking: DATA after BDAT in one transaction: 503 5.5.1; RSET leaves nothing" {
	run smtp_pipe "${EMR}BDAT 3\r\nabcDATA\r\nNOOP\r\nRSET\r\nQUIT\r\n"
	assert_success
	assert_equal "$(replies_after_ehlo | cut -c1-9)" "250 2.1.0
250 2.1.5
250 2.0.0
503 5.5.1
250 2.0.0
250 2.0.0
221 2.0.0"
	refute_output --partial '354'
	assert_clean
}

@test "chunking: DATA after MAIL BODY=BINARYMIME: 503 5.5.1; BDAT still delivers" {
	run smtp_pipe 'EHLO c.example\r\nMAIL FROM:<a@b.example> BODY=BINARYMIME\r\nRCPT TO:<bob@example.org>\r\nDATA\r\nBDAT 3 LAST\r\na\r\nQUIT\r\n'
	assert_success
	refute_output --partial '354'
	assert_equal "$(replies_after_ehlo | cut -c1-9)" "250 2.1.0
250 2.1.5
503 5.5.1
250 2.0.0
221 2.0.0"
	assert_stored "${TRACE_PIPE}a\r\n"
}

@test "chunking: RSET in the middle of a chunked transaction discards it" {
	run smtp_pipe "${EMR}BDAT 6\r\nfirst\nRSET\r\nBDAT 5 LAST\r\nstaleMAIL FROM:<a@b.example>\r\nRCPT TO:<bob@example.org>\r\nBDAT 6 LAST\r\nsecondQUIT\r\n"
	assert_success
	assert_equal "$(replies_after_ehlo | cut -c1-9)" "250 2.1.0
250 2.1.5
250 2.0.0
250 2.0.0
503 5.5.1
250 2.1.0
250 2.1.5
250 2.0.0
221 2.0.0"
	assert_stored "${TRACE_PIPE}second"
	assert_equal "$(ms_tmp_count)" 0
}

@test "chunking: the client leaves in the middle of a chunk: nothing in new/ or tmp/" {
	run smtp_pipe "${EMR}BDAT 3\r\nabcBDAT 100 LAST\r\nonly a part"
	assert_clean
	run smtp_pipe "${EMR}BDAT 3\r\nabc"
	assert_clean
}

@test "chunking: line_endings=strict: 554 for a bare LF or CR by BDAT, not for BINARYMIME" {
	run smtp_pipe "${EMR}BDAT 5 LAST\r\na\nb\rcQUIT\r\n" -o line_endings=strict
	assert_success
	assert_line --regexp '^554 5\.6\.0 bare CR or LF in message'
	assert_clean
	run smtp_pipe 'EHLO c.example\r\nMAIL FROM:<a@b.example> BODY=BINARYMIME\r\nRCPT TO:<bob@example.org>\r\nBDAT 5 LAST\r\na\nb\rcQUIT\r\n' -o line_endings=strict
	assert_success
	assert_line --regexp '^250 2\.0\.0 queued as '
	assert_stored "${TRACE_PIPE}a\nb\rc"
	assert_sizes "$(ms_new_file)" binary
}

@test "chunking: a mail loop by BDAT (Received headers split across chunks): 554 5.4.6" {
	python3 - "$MS_DIR/in" <<'PY'
import sys
m = b"".join(b"Received: from hop%d\r\n" % i for i in range(60)) + b"\r\nbody\r\n"
h = len(m) // 2 + 3
with open(sys.argv[1], "wb") as f:
    f.write(b"EHLO c.example\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<bob@example.org>\r\n")
    f.write(b"BDAT %d\r\n" % h + m[:h] + b"BDAT %d LAST\r\n" % (len(m) - h) + m[h:])
    f.write(b"QUIT\r\n")
PY
	run smtp_pipe_file "$MS_DIR/in"
	assert_success
	assert_line --regexp '^554 5\.4\.6 mail loop: too many Received headers'
	assert_clean
}

# $1: BODY= value or ''; $2: the line end (%b) of the message; the message:
# a Subject, the empty line, then 51 body lines "Received: from xN".
hops_in_body() {
	python3 - "$MS_DIR/in" "$1" "$2" <<'PY'
import sys
body, eol = sys.argv[2], sys.argv[3].encode().decode("unicode_escape").encode()
m = b"Subject: hops" + eol + eol + b"".join(b"Received: from x%d" % i + eol for i in range(51))
with open(sys.argv[1], "wb") as f:
    f.write(b"EHLO c.example\r\nMAIL FROM:<a@b.example>%s\r\n" % ((b" BODY=" + body.encode()) if body else b""))
    f.write(b"RCPT TO:<bob@example.org>\r\nBDAT %d LAST\r\n" % len(m) + m + b"QUIT\r\n")
PY
	run smtp_pipe_file "$MS_DIR/in"
}

@test "chunking: Received lines after the empty line are body, not hops, whatever the line ends" {
	local body eol
	for body in '' 8BITMIME BINARYMIME; do
		for eol in '\r\n' '\n'; do
			hops_in_body "$body" "$eol"
			assert_success
			assert_line --regexp '^250 2\.0\.0 queued as '
			rm -f "$MS_MAILDIR"/new/*
		done
	done
	# the same lines above the empty line are a loop, in binary mode too
	python3 - "$MS_DIR/in" <<'PY'
import sys
m = b"".join(b"Received: from x%d\r\n" % i for i in range(51)) + b"\r\nbody\r\n"
with open(sys.argv[1], "wb") as f:
    f.write(b"EHLO c.example\r\nMAIL FROM:<a@b.example> BODY=BINARYMIME\r\nRCPT TO:<bob@example.org>\r\n")
    f.write(b"BDAT %d LAST\r\n" % len(m) + m + b"QUIT\r\n")
PY
	run smtp_pipe_file "$MS_DIR/in"
	assert_success
	assert_line --regexp '^554 5\.4\.6 mail loop: too many Received headers'
	assert_clean
}

# announce 10 GB, send 10 octets, stall: 421 4.4.2 at data_timeout, and
# VmHWM (read during the stall) stays small.  MAX: max_message_size.
stall() {
	smtp_exec --send "${EMR}BDAT 10737418240 LAST\r\n0123456789" --pause 0.2 --hwm \
	    --wait '421 4.4.2' --timeout 10 -- -o data_timeout=1 -o "max_message_size=$1"
}

@test "chunking: 10 GB announced, 10 octets sent, a stall: 421 4.4.2, small memory, no file" {
	[ -z "$MAILSLOT_WRAPPER" ] || skip "peak RSS means nothing under $MAILSLOT_WRAPPER"
	local max hwm
	# refused as too big and drained; then accepted and being written
	for max in 33554432 16G; do
		run stall "$max"
		assert_success
		assert_equal "$(ms_report closed)" yes
		assert_equal "$(ms_report waitfail)" no
		assert_equal "$(tail -n 1 <<<"$output")" '421 4.4.2 mx.test timeout exceeded in BDAT: Service not available, closing transmission channel'
		refute_output --partial '552 '
		hwm=$(ms_report vmhwm_kb)
		[ -n "$hwm" ] || fail "no VmHWM read"
		[ "$hwm" -lt 8192 ] || fail "peak RSS ${hwm} KiB (max_message_size=$max)"
		assert_clean
	done
}
