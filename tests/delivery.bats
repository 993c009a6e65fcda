#!/usr/bin/env bats
# What ends up in the Maildir: the exact bytes, the trace headers, the
# file names, and the end-of-data codes 250, 552 and 554.

load 'lib/common'

setup() {
	ms_setup
	MS_MOUNTED=
}

teardown() {
	if [ -n "$MS_MOUNTED" ]; then
		umount "$MS_MOUNTED" || umount -l "$MS_MOUNTED"
	fi
	ms_teardown
}

EMR='EHLO c.example\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<bob@example.org>\r\n'

# The stored file, normalised, against printf %b of $1.
assert_stored() {
	local f
	f=$(ms_new_file)
	ms_normalize_msg <"$f" >"$MS_DIR/stored"
	printf '%b' "$1" >"$MS_DIR/expected"
	ms_assert_same "$MS_DIR/expected" "$MS_DIR/stored" 'stored message'
}

TRACE_PIPE='Return-Path: <a@b.example>\nDelivered-To: bob@example.org\nReceived: from c.example (unknown)\n\tby mx.test (mailslot) with ESMTP id ID\n\tfor <bob@example.org>; DATE\n'

@test "250: the stored bytes: trace headers, LF endings, dot-unstuffed" {
	run smtp_pipe "${EMR}DATA\r\nSubject: x\r\nFrom: a@b.example\r\n\r\nhi\r\n..leading dot\r\n...\r\n.\r\nQUIT\r\n"
	assert_success
	assert_line --regexp '^250 2\.0\.0 queued as '
	assert_stored "${TRACE_PIPE}Subject: x\nFrom: a@b.example\n\nhi\n.leading dot\n..\n"
	assert_equal "$(ms_tmp_count)" 0
}

@test "250: the Received id is the queue id in the file name; S= and W= are right" {
	run smtp_pipe "${EMR}DATA\r\nSubject: x\r\n\r\nline one\r\nline two\r\n.\r\nQUIT\r\n"
	assert_success
	local f name id size lfs
	f=$(ms_new_file)
	name=${f##*/}
	assert_line "250 2.0.0 queued as $name: Requested mail action okay, completed"
	[[ $name =~ ^([0-9]+\.M[0-9]{6}P[0-9]+Q[0-9]+)\.mx\.test,S=([0-9]+),W=([0-9]+)$ ]] ||
		fail "not a Courier/Dovecot name: $name"
	id=${BASH_REMATCH[1]}
	grep -qF "with ESMTP id $id" "$f" || fail "Received does not carry id $id"
	size=$(stat -c %s "$f")
	lfs=$(tr -cd '\n' <"$f" | wc -c)
	assert_equal "${BASH_REMATCH[2]}" "$size"
	assert_equal "${BASH_REMATCH[3]}" "$((size + lfs))"
	run stat -c %a "$f"
	assert_output 600
}

@test "250: Received ends with the date and time of delivery in UTC (RFC 5322)" {
	local before after stamp
	before=$(date -u +%s)
	run smtp_pipe "${EMR}DATA\r\n\r\nhi\r\n.\r\nQUIT\r\n"
	after=$(date -u +%s)
	assert_success
	stamp=$(sed -n 's/^\tfor <bob@example.org>; //p' "$(ms_new_file)")
	[[ $stamp =~ ^(Mon|Tue|Wed|Thu|Fri|Sat|Sun),\ [0-3][0-9]\ [A-Z][a-z]{2}\ [0-9]{4}\ [0-2][0-9]:[0-5][0-9]:[0-5][0-9]\ \+0000$ ]] ||
		fail "not an RFC 5322 date in UTC: '$stamp'"
	# The weekday too: date(1) reads the same stamp back to the same text.
	assert_equal "$(date -u -d "$stamp" '+%a, %d %b %Y %H:%M:%S +0000')" "$stamp"
	t=$(date -u -d "$stamp" +%s)
	[ "$t" -ge "$before" ] && [ "$t" -le "$after" ] || fail "$stamp is not between $before and $after"
}

@test "250: the catch-all opened at the greeting serves the first delivery; removed since, it is made again" {
	command -v strace >/dev/null || skip "no strace"
	[ -z "$MAILSLOT_WRAPPER" ] || skip "strace around MAILSLOT_WRAPPER"
	MAILSLOT_WRAPPER="strace -f -qq -o $MS_DIR/st -e trace=openat,open"
	run smtp_pipe "${EMR}DATA\r\n\r\none\r\n.\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<bob@example.org>\r\nDATA\r\n\r\ntwo\r\n.\r\nQUIT\r\n"
	MAILSLOT_WRAPPER=
	assert_success
	assert_equal "$(grep -c '^250 2\.0\.0 queued as ' <<<"$output")" 2
	assert_equal "$(ms_new_count)" 2
	# Once at the greeting (kept for the first message), once for the second.
	assert_equal "$(grep -c "open[a-z]*(AT_FDCWD, \"$MS_MAILDIR\", .*) = [0-9]" "$MS_DIR/st")" 2

	# Removed between the greeting and DATA: made again, and the message is in it.
	ms_listen
	run smtp_sock --send "${EMR}" --wait '250 2.1.5' --run "rm -rf '$MS_MAILDIR'" \
	    --send 'DATA\r\n' --wait '354 ' --send '\r\nthree\r\n.\r\nQUIT\r\n' --wait '221 '
	assert_success
	assert_line --regexp '^250 2\.0\.0 queued as '
	assert_equal "$(ms_new_count)" 1
	grep -qx three "$(ms_new_file)"
}

# The number of the first line of $MS_DIR/st after line $2 (default 0)
# that matches the extended REGEX $1; 0: none.
st_line() {
	RE=$1 FROM=${2:-0} awk '
	    NR > ENVIRON["FROM"] + 0 && $0 ~ ENVIRON["RE"] { print NR; found = 1; exit }
	    END { if (!found) print 0 }' "$MS_DIR/st"
}

# $1 as an extended regular expression that matches only itself.
re_quote() {
	printf '%s' "$1" | sed 's/[][\.*^$(){}+?|]/\\&/g'
}

@test "250: a Maildir mailslot makes, and its tmp/ new/ cur/, are synced into their parents first" {
	command -v strace >/dev/null || skip "no strace"
	[ -z "$MAILSLOT_WRAPPER" ] || skip "strace around MAILSLOT_WRAPPER"
	rm -rf "$MS_MAILDIR"
	MAILSLOT_WRAPPER="strace -f -qq -y -s 4096 -o $MS_DIR/st -e trace=mkdir,mkdirat,fsync,write"
	run smtp_pipe "${EMR}DATA\r\n\r\none\r\n.\r\nQUIT\r\n"
	MAILSLOT_WRAPPER=
	assert_success
	assert_line --regexp '^250 2\.0\.0 queued as '
	local md parent mk sp sub sm reply
	md=$(re_quote "$MS_MAILDIR")
	parent=$(re_quote "$(dirname "$MS_MAILDIR")")
	mk=$(st_line "mkdir\\(\"$md\", 0700\\) = 0")
	reply=$(st_line 'write\([0-9]+<[^>]*>, "([^"]*\\n)?250 2\.0\.0 queued as ')
	[ "$mk" -gt 0 ] || fail "no mkdir of the Maildir: $(cat "$MS_DIR/st")"
	[ "$reply" -gt 0 ] || fail "no 250 written: $(cat "$MS_DIR/st")"
	sp=$(st_line "fsync\\([0-9]+<$parent>\\) = 0" "$mk")
	[ "$sp" -gt 0 ] && [ "$sp" -lt "$reply" ] ||
		fail "the parent is not synced between the mkdir ($mk) and the 250 ($reply): $sp"
	for sub in tmp new cur; do
		mk=$(st_line "mkdirat\\([0-9]+<$md>, \"$sub\", 0700\\) = 0")
		[ "$mk" -gt 0 ] || fail "no mkdirat of $sub"
		sm=$(st_line "fsync\\([0-9]+<$md>\\) = 0" "$mk")
		[ "$sm" -gt 0 ] && [ "$sm" -lt "$reply" ] ||
			fail "the Maildir is not synced between the mkdirat of $sub ($mk) and the 250 ($reply): $sm"
	done
	# A Maildir that is there already is not synced for nothing.
	MAILSLOT_WRAPPER="strace -f -qq -y -s 4096 -o $MS_DIR/st -e trace=mkdir,mkdirat,fsync,write"
	run smtp_pipe "${EMR}DATA\r\n\r\ntwo\r\n.\r\nQUIT\r\n"
	MAILSLOT_WRAPPER=
	assert_line --regexp '^250 2\.0\.0 queued as '
	assert_equal "$(st_line "fsync\\([0-9]+<($md|$parent)>\\)")" 0
}

@test "250: the file is in new/ when the 250 arrives" {
	run smtp_exec --send "${EMR}DATA\r\n\r\nhi\r\n.\r\n" --wait '250 2.0.0 queued as ' \
	    --run "ls '$MS_MAILDIR/new' >'$MS_DIR/seen'" --send 'QUIT\r\n'
	assert_success
	local name
	name=$(sed -n 's/^250 2\.0\.0 queued as \([^ :]*\): .*/\1/p' <<<"$output")
	assert_equal "$(cat "$MS_DIR/seen")" "$name"
}

@test "DATA: the message file has no name in tmp/ (O_TMPFILE) until it is linked into new/" {
	run smtp_exec --send "${EMR}DATA\r\n" --wait '354 ' --send 'Subject: x\r\n\r\npart\r\n' \
	    --pause 0.2 --run "ls -A '$MS_MAILDIR/tmp' >'$MS_DIR/tmp.list'" \
	    --send '.\r\n' --wait '250 2.0.0 queued as ' --send 'QUIT\r\n'
	assert_success
	[ ! -s "$MS_DIR/tmp.list" ] || fail "named in tmp/ during DATA: $(cat "$MS_DIR/tmp.list")"
	assert_equal "$(ms_new_count)" 1
	assert_equal "$(ms_tmp_count)" 0
}

@test "DATA: a file system without O_TMPFILE (EOPNOTSUPP): the file is named in tmp/, the message the same" {
	command -v strace >/dev/null || skip "no strace"
	[ -z "$MAILSLOT_WRAPPER" ] || skip "strace around MAILSLOT_WRAPPER"
	local input="${EMR}DATA\r\n\r\nhi\r\n.\r\nQUIT\r\n" k
	# Which openat is the O_TMPFILE one: then make exactly that one fail.
	# (The Maildir exists first, so that both runs make the same calls.)
	mkdir -p "$MS_MAILDIR/tmp" "$MS_MAILDIR/new" "$MS_MAILDIR/cur"
	MAILSLOT_WRAPPER="strace -qq -o $MS_DIR/st -e trace=openat"
	run smtp_pipe "$input"
	k=$(grep -E '^openat\(' "$MS_DIR/st" | grep -n 'O_TMPFILE' | cut -d: -f1)
	[ -n "$k" ] || skip "no O_TMPFILE here"
	rm -f "$MS_MAILDIR"/new/*
	MAILSLOT_WRAPPER="strace -qq -o $MS_DIR/st -e trace=openat,linkat,unlinkat -e inject=openat:error=EOPNOTSUPP:when=$k"
	run smtp_pipe "$input"
	MAILSLOT_WRAPPER=
	assert_success
	assert_line --regexp '^250 2\.0\.0 queued as '
	grep -q 'O_TMPFILE.*EOPNOTSUPP' "$MS_DIR/st" || fail "the O_TMPFILE openat was not the one refused"
	grep -qE '^linkat\([0-9]+, "[^/"]+", ' "$MS_DIR/st" || fail "not linked from a tmp/ name"
	grep -qE '^unlinkat\(' "$MS_DIR/st" || fail "the tmp/ name was not removed"
	assert_equal "$(ms_new_count)" 1
	assert_equal "$(ms_tmp_count)" 0
	grep -qx hi "$(ms_new_file)"
}

@test "DATA: a large message starts its writeback as it goes (every 8 MiB), and is stored whole" {
	command -v strace >/dev/null || skip "no strace"
	[ -z "$MAILSLOT_WRAPPER" ] || skip "strace around MAILSLOT_WRAPPER"
	{
		printf 'EHLO c.example\nMAIL FROM:<a@b.example>\nRCPT TO:<bob@example.org>\nDATA\n\n'
		yes 'a line of text, sixty-four octets long with its line feed at end' | head -n 300000
		printf '.\nQUIT\n'
	} >"$MS_DIR/big.in"
	MAILSLOT_WRAPPER="strace -qq -o $MS_DIR/st -e trace=sync_file_range,fsync"
	run smtp_pipe_file "$MS_DIR/big.in" -o max_message_size=100000000 -o line_endings=lf
	MAILSLOT_WRAPPER=
	assert_success
	assert_line --regexp '^250 2\.0\.0 queued as '
	# 19.2 MB of body: two writebacks started (at 8 and 16 MiB), then the fsync.
	assert_equal "$(grep -c '^sync_file_range(' "$MS_DIR/st")" 2
	assert_equal "$(grep -c 'a line of text, sixty-four' "$(ms_new_file)")" 300000
}

@test "DATA: without /proc/self/fd the file is named in tmp/ and linked from there, as before" {
	local w0=$MAILSLOT_WRAPPER
	ms_noproc_wrapper
	run smtp_exec --send "${EMR}DATA\r\n" --wait '354 ' --send 'Subject: x\r\n\r\npart\r\n' \
	    --pause 0.2 --run "ls -A '$MS_MAILDIR/tmp' >'$MS_DIR/tmp.list'" \
	    --send '.\r\n' --wait '250 2.0.0 queued as ' --send 'QUIT\r\n'
	MAILSLOT_WRAPPER=$w0
	assert_success
	assert_equal "$(wc -l <"$MS_DIR/tmp.list")" 1
	assert_equal "$(ms_new_count)" 1
	assert_equal "$(ms_tmp_count)" 0
	grep -qx part "$(ms_new_file)"
}

@test "250: several recipients in the catch-all: one copy that names none of them (no Delivered-To, no 'for')" {
	run smtp_pipe 'EHLO c.example\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<one@example.org>\r\nRCPT TO:<x/y@example.org>\r\nRCPT TO:<two@example.net>\r\nRCPT TO:<one@example.org>\r\nRCPT TO:<postmaster>\r\nDATA\r\n\r\nbody\r\n.\r\nQUIT\r\n'
	assert_success
	assert_stored 'Return-Path: <a@b.example>\nReceived: from c.example (unknown)\n\tby mx.test (mailslot) with ESMTP id ID; DATE\n\nbody\n'
	# Each recipient has its line in the log, all naming the one file.
	assert_equal "$(grep -c 'event=deliver .* via=mailbox ' "$MS_DIR/log")" 3
	assert_equal "$(grep 'event=deliver ' "$MS_DIR/log" | sed 's/.* file=//' | sort -u | wc -l)" 1
	# Two recipients: still none named; one (twice over): named.
	run smtp_pipe 'EHLO c.example\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<one@example.org>\r\nRCPT TO:<two@example.org>\r\nDATA\r\n\r\nbody\r\n.\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<one@example.org>\r\nRCPT TO:<one@example.org>\r\nDATA\r\n\r\nbody\r\n.\r\nQUIT\r\n'
	assert_success
	assert_equal "$(ms_new_count)" 3
	assert_equal "$(cat "$MS_MAILDIR"/new/* | grep -c '^Delivered-To: ')" 1
	assert_equal "$(cat "$MS_MAILDIR"/new/* | grep -c '^Delivered-To: one@example.org$')" 1
	assert_equal "$(cat "$MS_MAILDIR"/new/* | grep -c $'^\tfor <one@example.org>; ')" 1
}

@test "250: the null sender gives Return-Path: <>" {
	run smtp_pipe 'EHLO c.example\r\nMAIL FROM:<>\r\nRCPT TO:<bob@example.org>\r\nDATA\r\nSubject: bounce\r\n\r\n.\r\nQUIT\r\n'
	assert_success
	assert_stored 'Return-Path: <>\nDelivered-To: bob@example.org\nReceived: from c.example (unknown)\n\tby mx.test (mailslot) with ESMTP id ID\n\tfor <bob@example.org>; DATE\nSubject: bounce\n\n'
}

@test "250: Received says SMTP after HELO, UTF8SMTP with SMTPUTF8" {
	run smtp_pipe 'HELO c.example\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<bob@example.org>\r\nDATA\r\n\r\n.\r\nQUIT\r\n'
	assert_success
	run grep -c '^	by mx.test (mailslot) with SMTP id ' "$(ms_new_file)"
	assert_output 1
	rm -f "$MS_MAILDIR"/new/*
	run smtp_pipe 'EHLO c.example\r\nMAIL FROM:<j\xc3\xb6rg@b.example> SMTPUTF8\r\nRCPT TO:<b\xc3\xb8b@example.org>\r\nDATA\r\n\r\n.\r\nQUIT\r\n'
	assert_success
	assert_stored 'Return-Path: <j\xc3\xb6rg@b.example>\nDelivered-To: b\xc3\xb8b@example.org\nReceived: from c.example (unknown)\n\tby mx.test (mailslot) with UTF8SMTP id ID\n\tfor <b\xc3\xb8b@example.org>; DATE\n\n'
}

@test "250: every octet value but CR and LF is stored as sent" {
	python3 -c '
import sys
body = bytes(b for b in range(256) if b not in (10, 13))
open(sys.argv[1], "wb").write(b"EHLO c.example\r\nMAIL FROM:<a@b.example> BODY=8BITMIME\r\n"
    b"RCPT TO:<bob@example.org>\r\nDATA\r\n\r\n" + body + b"\r\n" + body + b"\r\n.\r\nQUIT\r\n")
open(sys.argv[2], "wb").write(b"\n" + body + b"\n" + body + b"\n")
' "$MS_DIR/in" "$MS_DIR/body"
	run smtp_pipe_file "$MS_DIR/in"
	assert_success
	assert_line --regexp '^250 2\.0\.0 queued as '
	# the body is what follows the trace headers' last line
	python3 -c '
import sys
data = open(sys.argv[1], "rb").read()
i = data.index(b"; ", data.index(b"\n\tfor <bob@example.org>"))
sys.stdout.buffer.write(data[data.index(b"\n", i) + 1:])
' "$(ms_new_file)" >"$MS_DIR/got"
	ms_assert_same "$MS_DIR/body" "$MS_DIR/got" 'stored body'
}

@test "250: two transactions in a session give two files" {
	run smtp_pipe "${EMR}DATA\r\n\r\none\r\n.\r\nMAIL FROM:<c@d.example>\r\nRCPT TO:<eve@example.org>\r\nDATA\r\n\r\ntwo\r\n.\r\nQUIT\r\n"
	assert_success
	assert_equal "$(grep -c '^250 2\.0\.0 queued as ' <<<"$output")" 2
	assert_equal "$(ms_new_count)" 2
	run grep -l '^two$' "$MS_MAILDIR"/new/*
	assert_success
	run grep -c '^Delivered-To: eve@example.org$' "$output"
	assert_output 1
	run grep -c '^Return-Path: <c@d.example>$' "$(grep -l '^two$' "$MS_MAILDIR"/new/*)"
	assert_output 1
}

@test "250: the peer address from the socket is in Received" {
	ms_listen
	run smtp_sock --send "${EMR}DATA\r\n\r\nhi\r\n.\r\nQUIT\r\n"
	assert_success
	assert_line --regexp '^250 2\.0\.0 queued as '
	run grep -c '^Received: from c.example (unknown \[127\.0\.0\.1\])$' "$(ms_new_file)"
	assert_output 1
}

@test "250: TCPREMOTEIP and TCPREMOTEHOST from the launcher are in Received" {
	TCPREMOTEIP=192.0.2.7 TCPREMOTEHOST=client.example run smtp_pipe "${EMR}DATA\r\n\r\nhi\r\n.\r\nQUIT\r\n"
	assert_success
	run grep -c '^Received: from c.example (client.example \[192\.0\.2\.7\])$' "$(ms_new_file)"
	assert_output 1
}

@test "250: REMOTE_ADDR, and an IPv6 TCPREMOTEIP as an IPv6: literal" {
	REMOTE_ADDR=198.51.100.9 run smtp_pipe "${EMR}DATA\r\n\r\nhi\r\n.\r\nQUIT\r\n"
	assert_success
	run grep -c '^Received: from c.example (unknown \[198\.51\.100\.9\])$' "$(ms_new_file)"
	assert_output 1
	rm -f "$MS_MAILDIR"/new/*
	TCPREMOTEIP=2001:db8::7 run smtp_pipe "${EMR}DATA\r\n\r\nhi\r\n.\r\nQUIT\r\n"
	assert_success
	run grep -c '^Received: from c.example (unknown \[IPv6:2001:db8::7\])$' "$(ms_new_file)"
	assert_output 1
}

@test "250: systemd Accept=yes without StandardInput=socket: the connection is fd 3" {
	MS_LISTEN_INETD=
	ms_listen
	run smtp_sock --send "${EMR}DATA\r\n\r\nhi\r\n.\r\nQUIT\r\n"
	assert_success
	assert_line --regexp '^250 2\.0\.0 queued as '
	assert_line --index -1 '221 2.0.0 mx.test Service closing transmission channel'
	run grep -c '^Received: from c.example (unknown \[127\.0\.0\.1\])$' "$(ms_new_file)"
	assert_output 1
}

@test "ps shows the peer and the state (setproctitle)" {
	ms_listen
	run smtp_sock --send 'EHLO c.example\r\nMAIL FROM:<a@b.example>\r\n' --wait '250 2.1.0' \
	    --run "tr '\\0' ' ' </proc/\$(sed -n 's/^Spawned .* as PID \([0-9]*\)\.\$/\1/p' '$MS_DIR/sa.log' | tail -n 1)/cmdline >'$MS_DIR/title'" \
	    --send 'QUIT\r\n'
	assert_success
	run cat "$MS_DIR/title"
	assert_output --partial '127.0.0.1'
	assert_output --partial 'mail'
}

@test "250: a launcher's bad TCPREMOTEHOST / TCPREMOTEIP cannot add a header line" {
	TCPREMOTEIP=$'192.0.2.7\nX-Injected: ip' TCPREMOTEHOST=$'evil.example\nX-Injected: host' \
	    run smtp_pipe "${EMR}DATA\r\n\r\nhi\r\n.\r\nQUIT\r\n"
	assert_success
	local f
	f=$(ms_new_file)
	run grep -c 'X-Injected' "$f"
	assert_output 0
	run grep -c '^Received: from c.example (unknown)$' "$f"
	assert_output 1
}

# ---- 552: max_message_size ----------------------------------------------------

# A body of exactly $1 octets counted with CRLF: lines of 98 "x" + CRLF,
# then one shorter line.
body_of() {
	local n=$1 full=$(($1 / 100)) rest=$(($1 % 100)) i
	for ((i = 0; i < full; i++)); do
		printf '%098d\r\n' 0
	done
	if [ "$rest" -ge 2 ]; then
		printf '%0*d\r\n' $((rest - 2)) 0
	elif [ "$rest" = 1 ]; then
		fail "body_of: cannot make a remainder of 1"
	fi
}

@test "552: exactly max_message_size passes, one octet over fails (CRLF counted)" {
	# 1000 octets with CRLF, 990 as stored with LF
	{ printf '%b' "${EMR}DATA\r\n"; body_of 1000; printf '.\r\nQUIT\r\n'; } >"$MS_DIR/in"
	run smtp_pipe_file "$MS_DIR/in" -o max_message_size=1000
	assert_success
	assert_line --regexp '^250 2\.0\.0 queued as '
	assert_equal "$(ms_new_count)" 1
	run smtp_pipe_file "$MS_DIR/in" -o max_message_size=999
	assert_success
	assert_line --index -2 --regexp '^552 5\.3\.4 ([^ ].*: )?Requested mail action aborted: exceeded storage allocation$'
	assert_equal "$(ms_new_count)" 1
	assert_equal "$(ms_tmp_count)" 0
}

@test "552: a doubled leading dot is not counted (RFC 1870)" {
	# "..\r\n" is stored as ".\n": 3 octets with CRLF
	run smtp_pipe "${EMR}DATA\r\n..\r\n.\r\nQUIT\r\n" -o max_message_size=3
	assert_success
	assert_line --regexp '^250 2\.0\.0 queued as '
}

@test "552: far over the limit; the session goes on and the next message passes" {
	{
		printf '%b' "${EMR}DATA\r\n"
		body_of 100000
		printf '.\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<bob@example.org>\r\nDATA\r\nsmall\r\n.\r\nQUIT\r\n'
	} >"$MS_DIR/in"
	run smtp_pipe_file "$MS_DIR/in" -o max_message_size=1000
	assert_success
	local replies=$output
	run ms_nth_reply 6 <<<"$replies"
	assert_output --regexp '^552 5\.3\.4 '
	run ms_nth_reply 10 <<<"$replies"
	assert_output --regexp '^250 2\.0\.0 queued as '
	assert_equal "$(ms_new_count)" 1
	grep -q '^small$' "$(ms_new_file)"
	assert_equal "$(ms_tmp_count)" 0
}

# ---- 554: mail loop and strict line endings -------------------------------------

received_lines() {
	local i
	for ((i = 1; i <= $1; i++)); do
		printf 'Received: from h%d.example by h%d.example; Tue, 1 Dec 2026 08:00:00 +0000\r\n' "$i" "$((i + 1))"
	done
}

@test "554 5.4.6: 51 Received headers are a loop; 50 pass" {
	{ printf '%b' "${EMR}DATA\r\n"; received_lines 50; printf 'Subject: x\r\n\r\nhi\r\n.\r\nQUIT\r\n'; } >"$MS_DIR/in"
	run smtp_pipe_file "$MS_DIR/in"
	assert_success
	assert_line --regexp '^250 2\.0\.0 queued as '
	{ printf '%b' "${EMR}DATA\r\n"; received_lines 51; printf 'Subject: x\r\n\r\nhi\r\n.\r\nQUIT\r\n'; } >"$MS_DIR/in"
	run smtp_pipe_file "$MS_DIR/in"
	assert_success
	assert_line --index -2 --regexp '^554 5\.4\.6 ([^ ].*: )?Transaction failed$'
	assert_equal "$(ms_new_count)" 1
	assert_equal "$(ms_tmp_count)" 0
}

@test "554 5.4.6: the header name is matched in any case; folded lines count once" {
	{
		printf '%b' "${EMR}DATA\r\n"
		received_lines 49
		printf 'RECEIVED: from x\r\n\tby y; Tue, 1 Dec 2026 08:00:00 +0000\r\n'
		printf 'received: from z\r\n\r\nhi\r\n.\r\nQUIT\r\n'
	} >"$MS_DIR/in"
	run smtp_pipe_file "$MS_DIR/in"
	assert_success
	assert_line --index -2 --regexp '^554 5\.4\.6 '
	{
		printf '%b' "${EMR}DATA\r\n"
		received_lines 49
		printf 'Received: from x\r\n\tReceived: folded\r\n Received: folded\r\n\r\nhi\r\n.\r\nQUIT\r\n'
	} >"$MS_DIR/in"
	run smtp_pipe_file "$MS_DIR/in"
	assert_success
	assert_line --regexp '^250 2\.0\.0 queued as '
}

@test "554 5.4.6: Received lines in the body do not count" {
	{ printf '%b' "${EMR}DATA\r\nSubject: x\r\n\r\n"; received_lines 60; printf '.\r\nQUIT\r\n'; } >"$MS_DIR/in"
	run smtp_pipe_file "$MS_DIR/in"
	assert_success
	assert_line --regexp '^250 2\.0\.0 queued as '
}

@test "554 in line_endings=strict: bare LF, after the real CRLF.CRLF" {
	run smtp_pipe "${EMR}DATA\r\nSubject: x\r\n\r\nbare\nLF\r\n.\nstill data\r\n.\r\nNOOP\r\nQUIT\r\n" -o line_endings=strict
	assert_success
	local replies=$output
	run ms_nth_reply 6 <<<"$replies"
	assert_output --regexp '^554 5\.[0-9]+\.[0-9]+ ([^ ].*: )?Transaction failed$'
	run ms_nth_reply 7 <<<"$replies"
	assert_output '250 2.0.0 Requested mail action okay, completed'
	assert_equal "$(ms_new_count)" 0
	assert_equal "$(ms_tmp_count)" 0
}

@test "554 in line_endings=strict: bare CR" {
	run smtp_pipe "${EMR}DATA\r\nSubject: x\r\n\r\nbare\rCR\r\n.\r\nNOOP\r\nQUIT\r\n" -o line_endings=strict
	assert_success
	local replies=$output
	run ms_nth_reply 6 <<<"$replies"
	assert_output --regexp '^554 5\.[0-9]+\.[0-9]+ ([^ ].*: )?Transaction failed$'
	run ms_nth_reply 7 <<<"$replies"
	assert_output '250 2.0.0 Requested mail action okay, completed'
	assert_equal "$(ms_new_count)" 0
}

@test "line_endings=strict: a clean message is delivered" {
	run smtp_pipe "${EMR}DATA\r\nSubject: x\r\n\r\nclean\r\n.\r\nQUIT\r\n" -o line_endings=strict
	assert_success
	assert_stored "${TRACE_PIPE}Subject: x\n\nclean\n"
}

# ---- 452: the disk fills up during DATA -----------------------------------------

@test "452 4.3.1 when the disk fills during DATA; nothing in new/ or tmp/" {
	[ "$(id -u)" = 0 ] || skip "needs root to mount a small tmpfs"
	mkdir -p "$MS_DIR/small"
	mount -t tmpfs -o size=256k tmpfs "$MS_DIR/small" 2>/dev/null ||
		skip "cannot mount a tmpfs here"
	MS_MOUNTED=$MS_DIR/small
	MS_MAILDIR=$MS_DIR/small/Maildir
	MS_OPTS+=(-o "maildir=$MS_MAILDIR" -o min_free_space=0)
	{ printf '%b' "${EMR}DATA\r\n"; body_of 1000000; printf '.\r\nNOOP\r\nQUIT\r\n'; } >"$MS_DIR/in"
	run smtp_pipe_file "$MS_DIR/in"
	assert_success
	local replies=$output
	run ms_nth_reply 6 <<<"$replies"
	assert_output --regexp '^452 4\.3\.1 ([^ ].*: )?Requested action not taken: insufficient system storage$'
	run ms_nth_reply 7 <<<"$replies"
	assert_output '250 2.0.0 Requested mail action okay, completed'
	assert_equal "$(ms_new_count)" 0
	assert_equal "$(ms_tmp_count)" 0
}
