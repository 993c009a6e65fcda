#!/usr/bin/env bats
# The milter client (src/milter.c) against test milters (tests/lib/testmilter.py,
# pymilter and plain sockets), started once for the file on unix sockets in
# a temporary directory: each verdict at each stage, what the milter is
# shown (headers and body as received, CRLF, no dot-stuffing, no Received of
# mailslot's own; the macros), the no-reply steps and a macro list asked
# for, a milter that never answers, one that closes mid-message, one that
# sends garbage, and two milters in order.

load 'lib/common'

PY=/usr/bin/python3	# pymilter is a Debian package: the system's python

setup_file() {
	local d=$BATS_FILE_TMPDIR
	export MT_DIR=$d/milters MT_OUT=$d/milters/out
	mkdir -p "$MT_OUT"
	chmod 1777 "$MT_DIR" "$MT_OUT"
	while [ "$d" != / ] && [ "$d" != /tmp ]; do
		chmod o+x "$d"
		d=$(dirname "$d")
	done
	"$PY" -c 'import Milter' 2>/dev/null || skip "no pymilter (python3-milter)"
	local k
	for k in "scripted one" "scripted two" "noreply nr"; do
		set -- $k
		"$PY" "$MS_LIB/testmilter.py" "$1" "$2" "$MT_DIR/$2.sock" "$MT_OUT" \
			>"$MT_DIR/$2.log" 2>&1 &
		echo $! >"$MT_DIR/$2.pid"
	done
	"$PY" "$MS_LIB/testmilter.py" raw "$MT_DIR" >"$MT_DIR/raw.log" 2>&1 &
	echo $! >"$MT_DIR/raw.pid"
	# Bounded wait for every socket.
	local i s
	for s in one two nr silent close garbage partial progress trickle stall above r421 bigbody bighdrs wsval wsmid; do
		for i in $(seq 1 100); do
			[ -S "$MT_DIR/$s.sock" ] || [ -S "$MT_DIR/$s" ] && break
			sleep 0.1
		done
		[ -S "$MT_DIR/$s.sock" ] || [ -S "$MT_DIR/$s" ] || {
			cat "$MT_DIR"/*.log >&2
			false
		}
	done
	chmod 666 "$MT_DIR"/*.sock
}

teardown_file() {
	local p
	for p in one two nr raw; do
		[ -f "$MT_DIR/$p.pid" ] && kill "$(cat "$MT_DIR/$p.pid")" 2>/dev/null
	done
	return 0
}

setup() {
	ms_setup
	ONE=unix:$MT_DIR/one.sock
	TWO=unix:$MT_DIR/two.sock
	MS_OPTS+=(-o "milters=$ONE" -o milter_timeout=5)
}
teardown() { ms_teardown; }

ID=0
# send_msg FROM RCPTS HEADERS BODY: one message over a pipe; the replies in $output.
# A header X-Test-Id: <test number> names what the milter records.
send_msg() {
	local from=$1 rcpts=$2 hdrs=$3 body=$4 r in
	in="EHLO c.example\r\nMAIL FROM:<$from>\r\n"
	for r in $rcpts; do in+="RCPT TO:<$r>\r\n"; done
	TID=t$BATS_TEST_NUMBER
	in+="DATA\r\nX-Test-Id: $TID\r\n$hdrs\r\n$body.\r\nQUIT\r\n"
	run smtp_pipe "$in"
}

# seen NAME EXPR: a python expression over r, the record milter NAME wrote.
seen() {
	"$PY" - "$MT_OUT/$TID.$1.json" "$2" <<-'EOF'
	import json, sys
	r = json.load(open(sys.argv[1]))
	v = eval(sys.argv[2])
	print(v if isinstance(v, str) else json.dumps(v))
	EOF
}

# The nth complete reply of $output.
nth() { printf '%s\n' "$output" | ms_nth_reply "$1"; }

# The replies a content filter's refusal and deferral get.
REFUSED="550 5.7.1 Requested action not taken: refused by a content filter"
DEFERRED="451 4.7.1 Requested action aborted: deferred by a content filter, try again later"

# send_plain: send_msg with the sender, recipient and message most tests use.
send_plain() { send_msg a@b.example bob@example.org 'Subject: x\r\n' 'b\r\n'; }

# deferred_at_dot [LOG]: a plain message is deferred at the final dot and
# nothing is stored; LOG, a grep pattern, is in the log.
deferred_at_dot() {
	send_plain
	assert_equal "$(nth 6)" "$DEFERRED"
	[ -z "${1-}" ] || grep -q "$1" "$MS_DIR/log"
	assert_equal "$(ms_new_count)" 0
}

@test "connect: reject, tempfail and accept answer the MAIL commands" {
	TCPREMOTEIP=192.0.2.1 send_plain
	assert_equal "$(nth 3)" "$REFUSED"
	assert_equal "$(ms_new_count)" 0
	TCPREMOTEIP=192.0.2.2 send_plain
	assert_equal "$(nth 3)" "$DEFERRED"
	assert_equal "$(ms_new_count)" 0
	# accept: no more steps for this connection, the message is stored
	TCPREMOTEIP=192.0.2.3 send_plain
	assert_line --partial "250 2.0.0 queued as"
	assert_equal "$(ms_new_count)" 1
	[ ! -e "$MT_OUT/$TID.one.json" ]
}

@test "connect: a pipe has no peer address: family unknown, not 127.0.0.1" {
	send_plain
	assert_line --partial "250 2.0.0 queued as"
	run seen one 'r["connect"]'
	assert_output '["unknown", 0, "None"]'
	TCPREMOTEIP=198.51.100.7 send_plain
	run seen one 'r["connect"][2] + " " + r["macros"]["{client_addr}"]'
	assert_output "('198.51.100.7', 0) 198.51.100.7"
	# the port the launcher (or a PROXY header) gave for the peer
	TCPREMOTEIP=198.51.100.7 TCPREMOTEPORT=40123 send_plain
	run seen one 'r["connect"][2] + " " + r["macros"]["{client_port}"]'
	assert_output "('198.51.100.7', 40123) 40123"
}

@test "helo: reject, tempfail and a custom two-line reply answer MAIL" {
	run smtp_pipe 'HELO reject.example\r\nMAIL FROM:<a@b.example>\r\nQUIT\r\n'
	assert_equal "$(nth 2)" "250 $MS_HOST Requested mail action okay, completed"
	assert_equal "$(nth 3)" "$REFUSED"
	run smtp_pipe 'HELO tempfail.example\r\nMAIL FROM:<a@b.example>\r\nQUIT\r\n'
	assert_equal "$(nth 3)" "$DEFERRED"
	run smtp_pipe 'EHLO custom.example\r\nMAIL FROM:<a@b.example>\r\nQUIT\r\n'
	assert_equal "$(nth 3)" "$(printf '554-5.7.0 first line\n554 5.7.0 go away')"
	# a new HELO that the milter takes lifts the refusal
	run smtp_pipe 'HELO reject.example\r\nHELO good.example\r\nMAIL FROM:<a@b.example>\r\nQUIT\r\n'
	assert_equal "$(nth 4)" "250 2.1.0 <a@b.example>: Requested mail action okay, completed"
}

@test "mail: reject, tempfail, custom, discard, accept" {
	send_msg reject-mail@b.example bob@example.org 'Subject: x\r\n' 'b\r\n'
	assert_equal "$(nth 3)" "$REFUSED"
	send_msg tempfail-mail@b.example bob@example.org 'Subject: x\r\n' 'b\r\n'
	assert_equal "$(nth 3)" "$DEFERRED"
	send_msg custom-mail@b.example bob@example.org 'Subject: x\r\n' 'b\r\n'
	assert_equal "$(nth 3)" "$(printf '451-4.7.2 come back\n451 4.7.2 much later')"
	assert_equal "$(ms_new_count)" 0
	# discard: 250 at the dot, nothing stored, logged
	send_msg discard-mail@b.example bob@example.org 'Subject: x\r\n' 'b\r\n'
	[[ "$(nth 6)" =~ ^250\ 2\.0\.0\ queued\ as\ .*:\ Requested\ mail\ action\ okay,\ completed$ ]]
	assert_equal "$(ms_new_count)" 0
	grep -q 'event=milter stage=eom .*verdict=discard' "$MS_DIR/log"
	grep -q 'event=discard id=' "$MS_DIR/log"
	# accept: stored, and the milter sees no more of the message
	send_msg accept-mail@b.example bob@example.org 'Subject: x\r\n' 'b\r\n'
	assert_line --partial "250 2.0.0 queued as"
	assert_equal "$(ms_new_count)" 1
	[ ! -e "$MT_OUT/$TID.one.json" ]
}

@test "rcpt: one of two refused, the other keeps the message" {
	send_msg a@b.example "reject-rcpt@example.org bob@example.org" 'Subject: x\r\n' 'b\r\n'
	assert_equal "$(nth 4)" "$REFUSED"
	assert_equal "$(nth 5)" "250 2.1.5 <bob@example.org>: Requested mail action okay, completed"
	assert_line --partial "250 2.0.0 queued as"
	assert_equal "$(ms_new_count)" 1
	grep -q '^Delivered-To: bob@example.org$' "$(ms_new_file)"
	send_msg a@b.example "tempfail-rcpt@example.org" 'Subject: x\r\n' 'b\r\n'
	assert_equal "$(nth 4)" "$DEFERRED"
	assert_equal "$(nth 5)" "554 5.5.1 no valid recipients: Transaction failed"
}

@test "end of body: reject, tempfail, custom, discard, accept at the final dot" {
	send_msg a@b.example bob@example.org 'X-Mode: reject\r\n' 'b\r\n'
	assert_equal "$(nth 6)" "$REFUSED"
	send_msg a@b.example bob@example.org 'X-Mode: tempfail\r\n' 'b\r\n'
	assert_equal "$(nth 6)" "$DEFERRED"
	send_msg a@b.example bob@example.org 'X-Mode: custom\r\n' 'b\r\n'
	assert_equal "$(nth 6)" "$(printf '550-5.7.9 not this one\n550 5.7.9 nor any other')"
	send_msg a@b.example bob@example.org 'X-Mode: discard\r\n' 'b\r\n'
	[[ "$(nth 6)" =~ ^250\ 2\.0\.0\ queued\ as\ .*:\ Requested\ mail\ action\ okay,\ completed$ ]]
	assert_equal "$(ms_new_count)" 0
	send_msg a@b.example bob@example.org 'X-Mode: accept\r\n' 'b\r\n'
	assert_line --partial "250 2.0.0 queued as"
	assert_equal "$(ms_new_count)" 1
}

@test "end of body: BDAT LAST is answered by the milter too" {
	run smtp_pipe 'EHLO c.example\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<bob@example.org>\r\nBDAT 18\r\nX-Mode: reject\r\n\r\nBDAT 3 LAST\r\nb\r\nQUIT\r\n'
	assert_equal "$(nth 6)" "$REFUSED"
	assert_equal "$(ms_new_count)" 0
}

@test "the milter sees the message as received: CRLF, no dot-stuffing, no Received of ours" {
	send_msg a@b.example bob@example.org 'Subject: hello\r\nX-Fold: one\r\n\ttwo\r\nX-Tight:x\r\n' 'line 1\r\n..dot\r\n\r\nlast\r\n'
	assert_line --partial "250 2.0.0 queued as"
	run seen one 'r["headers"]'
	assert_output '[["X-Test-Id", "t'"$BATS_TEST_NUMBER"'"], ["Subject", "hello"], ["X-Fold", "one\n\ttwo"], ["X-Tight", "x"]]'
	run seen one 'repr(r["body"])'
	assert_output "'line 1\\r\\n.dot\\r\\n\\r\\nlast\\r\\n'"
	# BDAT, 8BITMIME: the same; BINARYMIME: byte for byte
	run smtp_pipe 'EHLO c.example\r\nMAIL FROM:<a@b.example> BODY=BINARYMIME\r\nRCPT TO:<bob@example.org>\r\nBDAT 28 LAST\r\nX-Test-Id: bin\r\n\r\nx\ry\nz\r\n\x00\r\nQUIT\r\n'
	assert_line --partial "250 2.0.0 queued as"
	TID=bin
	run seen one 'repr(r["body"])'
	assert_output "'x\\ry\\nz\\r\\n\\x00\\r\\n'"
}

@test "macros: every one mailslot promises, at its stage" {
	TCPREMOTEIP=198.51.100.7 send_plain
	assert_line --partial "250 2.0.0 queued as"
	id=$(printf '%s\n' "$output" | sed -n 's/.*queued as \([^.]*\.[^.]*\)\..*/\1/p')
	run seen one 'r["macros"]'
	for m in '"j": "mx.test"' '"{daemon_name}": "mailslot"' '"v": "mailslot ' \
	    '"_": "unknown [198.51.100.7]"' '"{client_addr}": "198.51.100.7"' \
	    '"{client_port}": "0"' '"{client_name}": "unknown"' '"{client_ptr}": "unknown"' \
	    "\"i\": \"$id\"" '"{mail_addr}": "a@b.example"' '"{rcpt_addr}": "bob@example.org"'; do
		assert_output --partial "$m"
	done
	# no AUTH, no {auth_authen}: an empty one reads as a login to rspamd
	refute_output --partial '{auth_authen}'
	run seen one '" ".join(r["seen"]["mail"])'
	assert_output --partial '{mail_addr}'
	refute_output --partial '{auth_authen}'
	run seen one '" ".join(r["seen"]["connect"])'
	assert_output --partial '{client_addr}'
}

@test "no-reply steps and a macro list the milter asked for" {
	MS_OPTS+=(-o "milters=unix:$MT_DIR/nr.sock")
	send_msg a@b.example "bob@example.org alice@example.org" 'Subject: x\r\n' 'b\r\n'
	assert_line --partial "250 2.0.0 queued as"
	run seen nr 'r["rcpts"]'
	assert_output '["<bob@example.org>", "<alice@example.org>"]'
	run seen nr 'repr(r["body"])'
	assert_output "'b\\r\\n'"
	# its list for MAIL: {mail_addr} i {client_addr}, so no {auth_authen}
	run seen nr '" ".join(r["seen"]["mail"])'
	assert_output --partial '{mail_addr}'
	refute_output --partial '{auth_authen}'
}

@test "a milter that never answers: milter_timeout, then the default action" {
	MS_OPTS+=(-o "milters=unix:$MT_DIR/silent" -o milter_timeout=1)
	send_plain
	assert_equal "$(nth 3)" "$DEFERRED"
	grep -q 'event=milter milter=unix:.*/silent error="timeout.*action=tempfail' "$MS_DIR/log"
	MS_OPTS+=(-o milter_default_action=reject)
	send_plain
	assert_equal "$(nth 3)" "$REFUSED"
	MS_OPTS+=(-o milter_default_action=accept)
	send_plain
	assert_line --partial "250 2.0.0 queued as"
	assert_equal "$(ms_new_count)" 1
}

@test "SMFIR_PROGRESS does not extend milter_timeout: the whole reply is bounded" {
	# The milter says "in progress" every 0.25 s for 10 s, then continue:
	# within milter_timeout=1 it never gave its verdict.
	MS_OPTS+=(-o "milters=unix:$MT_DIR/progress" -o milter_timeout=1)
	deferred_at_dot 'event=milter milter=unix:.*/progress error="timeout.*action=tempfail'
}

@test "a reply sent one octet at a time does not extend milter_timeout" {
	MS_OPTS+=(-o "milters=unix:$MT_DIR/trickle" -o milter_timeout=1)
	deferred_at_dot 'event=milter milter=unix:.*/trickle error="timeout.*action=tempfail'
}

@test "SIGTERM while a milter judges the message: 421 at once, nothing stored" {
	# milter_timeout is longer than the client waits: only the signal can end it.
	MS_OPTS+=(-o "milters=unix:$MT_DIR/stall" -o milter_timeout=60 -o milter_default_action=accept)
	run smtp_exec --send "EHLO c.example\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<bob@example.org>\r\nDATA\r\n" \
		--wait '354 ' --send 'Subject: x\r\n\r\nb\r\n.\r\n' --pause 0.5 --signal TERM
	assert_success
	assert_line --partial '421 4.3.2'
	refute_line --partial '250 2.0.0 queued'
	assert_equal "$(ms_report closed)" yes
	assert_equal "$(ms_report exit)" 0
	assert_equal "$(ms_new_count)" 0
}

@test "changes: fields inserted above Received up to the field bound: refused, not overrun" {
	# 21 milters (one, 21 times): the first 20 put 19999 fields above
	# mailslot's Received; the message then has 20001 fields, past
	# EDIT_MAX_FIELDS, when the last one's change is applied.
	local i all=
	for i in $(seq 21); do all+="unix:$MT_DIR/above "; done
	MS_OPTS+=(-o "milters=$all" -o milter_timeout=30)
	deferred_at_dot 'event=error op=filter-edit id=.* error="too many header fields"'
}

@test "a milter's own 421 reply closes the session, as 421 says" {
	MS_OPTS+=(-o "milters=unix:$MT_DIR/r421")
	send_plain
	assert_equal "$(nth 3)" "421 4.7.0 closing this one"
	assert_equal "$(nth 4)" ""
	refute_line --partial '221 '
	assert_equal "$(ms_new_count)" 0
}

@test "changes: a new body larger than max_message_size is refused, not stored" {
	MS_OPTS+=(-o "milters=unix:$MT_DIR/bigbody" -o max_message_size=100000)
	deferred_at_dot 'event=milter milter=unix:.*/bigbody error="new body too large" action=tempfail'
}

@test "changes: header fields adding up to more than 1 MiB are refused, not stored" {
	MS_OPTS+=(-o "milters=unix:$MT_DIR/bighdrs")
	deferred_at_dot 'event=milter milter=unix:.*/bighdrs error="too many changes" action=tempfail'
}

@test "changes: a value ending in a fold of white space alone leaves no white line in the header" {
	MS_OPTS+=(-o "milters=unix:$MT_DIR/wsval")
	send_plain
	assert_line --partial "250 2.0.0 queued as"
	run stored
	assert_output --partial "$(printf 'Subject: x\nX-White: a\n\nb')"
}

@test "changes: a value with a fold of white space alone inside is the milter's protocol error" {
	MS_OPTS+=(-o "milters=unix:$MT_DIR/wsmid" -o milter_default_action=accept)
	send_plain
	assert_line --partial "250 2.0.0 queued as"
	grep -q 'event=milter milter=unix:.*/wsmid error="bad header change" action=accept' "$MS_DIR/log"
	run stored
	refute_output --partial 'X-Mid'
}

@test "a milter that is not there: the default action, logged" {
	MS_OPTS+=(-o "milters=unix:$MT_DIR/nothing-here")
	send_plain
	assert_equal "$(nth 3)" "$DEFERRED"
	grep -q 'error="connect: No such file or directory" action=tempfail' "$MS_DIR/log"
}

@test "a milter that closes mid-message: the default action at the dot" {
	MS_OPTS+=(-o "milters=unix:$MT_DIR/close")
	send_plain
	assert_equal "$(nth 3)" "250 2.1.0 <a@b.example>: Requested mail action okay, completed"
	assert_equal "$(nth 6)" "$DEFERRED"
	assert_equal "$(ms_new_count)" 0
	grep -q 'error="closed by the milter"' "$MS_DIR/log"
}

@test "a milter that sends garbage: the default action, no crash" {
	MS_OPTS+=(-o "milters=unix:$MT_DIR/garbage")
	send_plain
	assert_equal "$(nth 3)" "$DEFERRED"
	assert_line "221 2.0.0 $MS_HOST Service closing transmission channel"
	grep -q 'error="bad reply code"' "$MS_DIR/log"
}

@test "a milter that fails after some changes: none of them is applied" {
	MS_OPTS+=(-o "milters=unix:$MT_DIR/partial" -o milter_default_action=accept)
	send_plain
	assert_line --partial "250 2.0.0 queued as"
	grep -q 'milter=unix:.*/partial error="closed by the milter" action=accept' "$MS_DIR/log"
	run stored
	assert_output --partial 'Return-Path: <a@b.example>'
	assert_output --partial 'Subject: x'
	refute_output --partial 'X-Partial'
	refute_output --partial 'partial@example.net'
	# tempfail (the default): refused, nothing stored
	rm -f "$MS_MAILDIR"/new/*
	MS_OPTS+=(-o milter_default_action=tempfail)
	deferred_at_dot
}

@test "two milters, in order: the first refusal wins, the second is not asked" {
	MS_OPTS+=(-o "milters=$ONE $TWO")
	send_plain
	assert_line --partial "250 2.0.0 queued as"
	[ -e "$MT_OUT/$TID.one.json" ] && [ -e "$MT_OUT/$TID.two.json" ]
	rm -f "$MT_OUT/$TID".*
	send_msg a@b.example bob@example.org 'X-Mode: reject\r\n' 'b\r\n'
	assert_equal "$(nth 6)" "$REFUSED"
	[ -e "$MT_OUT/$TID.one.json" ] && [ ! -e "$MT_OUT/$TID.two.json" ]
}

@test "RSET and a new transaction abort the milter's message" {
	run smtp_pipe 'EHLO c.example\r\nMAIL FROM:<a@b.example>\r\nRSET\r\nMAIL FROM:<reject-mail@b.example>\r\nMAIL FROM:<c@b.example>\r\nRCPT TO:<bob@example.org>\r\nDATA\r\nX-Test-Id: rset\r\n\r\nb\r\n.\r\nQUIT\r\n'
	assert_equal "$(nth 5)" "$REFUSED"
	assert_line --partial "250 2.0.0 queued as"
	TID=rset
	run seen one 'r["sender"]'
	assert_output '<c@b.example>'
}

# The stored message without its trace fields' variable parts.
stored() { ms_normalize_msg <"$(ms_new_file)"; }

@test "changes: add, insert at 0 and 1, change and delete header fields" {
	# mailslot's Received counts as index 0, as Postfix counts its own
	send_msg a@b.example bob@example.org 'X-Mode: add ins1 chg del\r\nSubject: old\r\nX-Remove: gone\r\n\tfolded\r\n' 'b\r\n'
	assert_line --partial "250 2.0.0 queued as"
	run stored
	assert_output "Return-Path: <a@b.example>
Delivered-To: bob@example.org
Received: from c.example (unknown)
	by mx.test (mailslot) with ESMTP id ID
	for <bob@example.org>; DATE
X-Ins1: at index 1
X-Test-Id: t$BATS_TEST_NUMBER
X-Mode: add ins1 chg del
Subject: changed subject
X-Added: added by one

b"
	rm -f "$MS_MAILDIR"/new/*
	send_msg a@b.example bob@example.org 'X-Mode: ins0\r\n' 'b\r\n'
	run stored
	assert_output "Return-Path: <a@b.example>
Delivered-To: bob@example.org
X-Ins0: at index 0
Received: from c.example (unknown)
	by mx.test (mailslot) with ESMTP id ID
	for <bob@example.org>; DATE
X-Test-Id: t$BATS_TEST_NUMBER
X-Mode: ins0

b"
}

@test "changes: an insert at index 0 goes above Received in a forwarded copy too" {
	printf '#!/bin/sh\ncat >"%s"\n' "$MS_DIR/fwd.stdin" >"$MS_DIR/fwd"
	chmod 755 "$MS_DIR/fwd"
	printf 'fw: bob, someone@remote.example\n' >"$MS_DIR/aliases"
	MS_OPTS+=(-o "aliases=$MS_DIR/aliases" -o "forward_command=$MS_DIR/fwd")
	send_msg a@b.example fw@example.org 'X-Mode: ins0\r\n' 'b\r\n'
	assert_line --partial "250 2.0.0 queued as"
	run sed -E 's/ id [0-9]+\.[0-9A-Z.]+$/ id ID/' "$MS_DIR/fwd.stdin"
	run ms_normalize_msg <<<"$output"
	assert_output "Delivered-To: fw@example.org
X-Ins0: at index 0
Received: from c.example (unknown)
	by mx.test (mailslot) with ESMTP id ID
	for <fw@example.org>; DATE
X-Test-Id: t$BATS_TEST_NUMBER
X-Mode: ins0

b"
	run stored
	assert_output --partial "$(printf 'Delivered-To: fw@example.org\nX-Ins0: at index 0\nReceived: ')"
}

# assert_binary_sizes FILE: S= the file's size, W= that plus one for every
# LF without a CR before it (stored as sent under BINARYMIME).
assert_binary_sizes() {
	local name=${1##*/} want
	[[ $name =~ ,S=([0-9]+),W=([0-9]+)$ ]] || fail "no S= and W= in $name"
	want=$("$PY" - "$1" <<-'EOF'
	import sys
	d = open(sys.argv[1], "rb").read()
	print(len(d), len(d) + sum(1 for i, b in enumerate(d) if b == 10 and (i == 0 or d[i - 1] != 13)))
	EOF
	)
	assert_equal "${BASH_REMATCH[1]} ${BASH_REMATCH[2]}" "$want"
}

@test "changes: header edits and a new body under BINARYMIME: stored as sent, W= right" {
	local hdr body mode n opts
	TID=t$BATS_TEST_NUMBER
	printf '#!/bin/sh\ncat >/dev/null\necho "X-Filtered: yes"\n' >"$MS_DIR/flt"
	chmod 755 "$MS_DIR/flt"
	local base=("${MS_OPTS[@]}")
	# one milter; then two and the filter command, each editing the last one's result
	for opts in "milters=$ONE" "milters=$ONE $TWO|filter_command=$MS_DIR/flt"; do
		MS_OPTS=("${base[@]}")
		IFS='|' read -ra kv <<<"$opts"
		for k in "${kv[@]}"; do MS_OPTS+=(-o "$k"); done
		for mode in 'add ins1 chg del' 'order body' 'del' 'bodycr' 'ins0 chg body'; do
			rm -f "$MS_MAILDIR"/new/*
			# CRLF and bare-LF lines in the header and the body, a bare CR
			# too; the empty line a bare LF (after a new body ending in a
			# lone CR)
			hdr="X-Test-Id: $TID\r\nX-Mode: $mode\r\nSubject: old\nX-Remove: gone\r\n\tfolded\n\n"
			body="a\nb\r\nc\rd\r\n\n"
			n=$(printf "$hdr$body" | wc -c)
			run smtp_pipe "EHLO c.example\r\nMAIL FROM:<a@b.example> BODY=BINARYMIME\r\nRCPT TO:<bob@example.org>\r\nBDAT $n LAST\r\n$hdr${body}QUIT\r\n"
			assert_line --partial "250 2.0.0 queued as"
			assert_binary_sizes "$(ms_new_file)"
		done
	done
	run grep -c '^X-Filtered: yes$' "$(ms_new_file)"
	assert_output 1
	run grep -c 'new body line' "$(ms_new_file)"
	assert_output 2
}

@test "changes: the body replaced, in two pieces, stored with LF" {
	send_msg a@b.example bob@example.org 'X-Mode: body\r\nSubject: s\r\n' 'old body\r\n'
	assert_line --partial "250 2.0.0 queued as"
	run stored
	assert_output --partial "$(printf 'Subject: s\n\nnew body line 1\nnew body line 2')"
	refute_output --partial 'old body'
	run grep -c $'\r' "$(ms_new_file)"
	assert_output 0
}

@test "changes: a recipient added, one deleted, the sender changed" {
	send_msg a@b.example bob@example.org 'X-Mode: addrcpt delrcpt chgfrom\r\n' 'b\r\n'
	assert_line --partial "250 2.0.0 queued as"
	run stored
	assert_output --partial 'Return-Path: <new-sender@example.net>'
	assert_output --partial 'Delivered-To: carol@example.org'
	refute_output --partial 'bob@example.org'
}

@test "quarantine: stored in .Junk with the reason logged" {
	send_msg a@b.example bob@example.org 'X-Mode: quarantine\r\n' 'b\r\n'
	assert_line --partial "250 2.0.0 queued as"
	assert_equal "$(ms_new_count)" 0
	assert_equal "$(find "$MS_MAILDIR/.Junk/new" -type f | wc -l)" 1
	grep -q 'reason="looks like spam"' "$MS_DIR/log"
}

@test "two milters: the second sees the first's changes; both change the message" {
	MS_OPTS+=(-o "milters=$ONE $TWO")
	send_msg a@b.example bob@example.org 'X-Mode: order\r\n' 'b\r\n'
	assert_line --partial "250 2.0.0 queued as"
	run stored
	assert_output --partial "$(printf 'X-Order: one\nX-Order: two\n')"
	run seen two 'r["headers"][-1]'
	assert_output '["X-Order", "one"]'
}

@test "no-reply milter: its end-of-body change is applied" {
	MS_OPTS+=(-o "milters=unix:$MT_DIR/nr.sock")
	send_plain
	run stored
	assert_output --partial 'X-Noreply: nr'
}

@test "LMTP: a milter's RCPT verdict stays that recipient's; its end-of-body refusal, once per recipient" {
	MS_OPTS+=(-o protocol=lmtp)
	TID=t$BATS_TEST_NUMBER
	run smtp_pipe "LHLO c.example\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<bob@example.org>\r\nRCPT TO:<reject-rcpt@example.org>\r\nRCPT TO:<carol@example.org>\r\nDATA\r\nX-Test-Id: $TID\r\nSubject: x\r\n\r\nb\r\n.\r\nQUIT\r\n"
	assert_equal "$(nth 5)" "$REFUSED"
	# Two recipients accepted: two replies after the data, none for the refused one.
	[[ "$(nth 8)" =~ ^250\ 2\.0\.0\ \<bob@example\.org\>:\ queued\ as\  ]]
	[[ "$(nth 9)" =~ ^250\ 2\.0\.0\ \<carol@example\.org\>:\ queued\ as\  ]]
	[[ "$(nth 10)" =~ ^221\  ]]
	assert_equal "$(ms_new_count)" 1
	# A custom two-line reject at the end of the body: the whole reply, once per recipient.
	TID=t${BATS_TEST_NUMBER}b
	run smtp_pipe "LHLO c.example\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<bob@example.org>\r\nRCPT TO:<carol@example.org>\r\nDATA\r\nX-Test-Id: $TID\r\nX-Mode: custom\r\n\r\nb\r\n.\r\nQUIT\r\n"
	assert_equal "$(nth 7)" "$(printf '550-5.7.9 not this one\n550 5.7.9 nor any other')"
	assert_equal "$(nth 8)" "$(printf '550-5.7.9 not this one\n550 5.7.9 nor any other')"
	[[ "$(nth 9)" =~ ^221\  ]]
	assert_equal "$(ms_new_count)" 1
}
