#!/usr/bin/env bats
# Recipients, part 2: the alias file (expansion, nesting, loops, its
# syntax and its errors), forwards through forward_command (251, 551, the
# argv and the stdin it gets, its failures), VRFY and EXPN, several
# recipients in one transaction (one copy per mailbox, all or nothing).

load 'lib/common'
load 'lib/recipients'

setup() {
	rc_setup
	rc_mailbox bob carol dave eve
	RC_ALIASES=$MS_DIR/aliases
}

teardown() {
	rc_teardown
}

# The alias file from the arguments, one line each; it is then in MS_OPTS.
aliases() {
	printf '%s\n' "$@" >"$RC_ALIASES"
	MS_OPTS+=(-o "aliases=$RC_ALIASES")
}

# The stored message of mailbox $1, trace normalised, against printf %b of $2.
assert_stored_in() {
	local f
	f=$(rc_new_file "$1")
	rc_normalize_trace <"$f" >"$MS_DIR/stored"
	printf '%b' "$2" >"$MS_DIR/expected"
	ms_assert_same "$MS_DIR/expected" "$MS_DIR/stored" "stored in $1"
}

# The session ends at once with 421 4.3.5; the log says why, at FILE:LINE.
assert_refused_config() {
	assert_output --regexp '^421 4\.3\.5 mx\.test '
	assert_equal "$(printf '%s\n' "$output" | grep -c '')" 1
	# Log values are escaped: a '"' in the reason is written \".
	run grep -F -- "${1//\"/\\\"}" "$MS_DIR/log"
	assert_success
	assert_equal "$(rc_all_new | wc -l)" 0
}

RCVD='Received: from c.example (unknown)\n\tby mx.test (mailslot) with ESMTP id ID'

@test "an alias expands to several mailboxes: one file linked into each, naming the one recipient" {
	rc_skip_peer_bug_asan
	aliases 'team: bob, carol, dave'
	run rc_send 'team@example.org'
	assert_success
	assert_line --regexp '^250 2\.0\.0 queued as '
	for who in bob carol dave; do
		assert_stored_in "$who" "Return-Path: <a@b.example>\nDelivered-To: team@example.org\n$RCVD\n\tfor <team@example.org>; DATE\nSubject: test\n\nhello\n"
	done
	# One envelope recipient: the one file names it, in all three Maildirs.
	assert_equal "$(stat -c '%i %h' "$(rc_new_file bob)")" "$(stat -c '%i %h' "$(rc_new_file dave)")"
	assert_equal "$(stat -c %h "$(rc_new_file carol)")" 3
	assert_equal "$(rc_new_count eve)" 0
	assert_equal "$(rc_all_tmp | wc -l)" 0
}

@test "three recipients in three Maildirs: one file, hard-linked into each new/, naming none of them" {
	rc_skip_peer_bug_asan
	run rc_send 'bob@example.org carol@example.net dave@example.org'
	assert_line --regexp '^250 2\.0\.0 queued as '
	for who in bob carol dave; do
		assert_stored_in "$who" "Return-Path: <a@b.example>\n$RCVD; DATE\nSubject: test\n\nhello\n"
	done
	# One inode, three links; each name a unique one, the sizes the same.
	run stat -c '%i %h' "$(rc_new_file bob)" "$(rc_new_file carol)" "$(rc_new_file dave)"
	assert_equal "$(printf '%s\n' "$output" | sort -u | wc -l)" 1
	assert_line --index 0 --regexp '^[0-9]+ 3$'
	assert_equal "$(rc_all_new | sed 's/.*,S=/S=/' | sort -u | wc -l)" 1
	assert_equal "$(rc_all_new | xargs -n1 basename | sed 's/,S=.*//' | sort -u | wc -l)" 3
	run grep -c -e '^Delivered-To: ' -e $'^\tfor <' $(rc_all_new)
	refute_output --regexp ':[1-9]'
	# One recipient: named, in Delivered-To and in the "for" clause.
	run rc_send 'eve@example.org'
	assert_line --regexp '^250 2\.0\.0 queued as '
	assert_stored_in eve "Return-Path: <a@b.example>\nDelivered-To: eve@example.org\n$RCVD\n\tfor <eve@example.org>; DATE\nSubject: test\n\nhello\n"
	assert_equal "$(stat -c %h "$(rc_new_file eve)")" 1
}

@test "without /proc (the file named in tmp/): one file linked into each new/, the tmp/ name gone" {
	rc_skip_under_wrapper
	ms_noproc_wrapper
	run rc_send 'bob@example.org carol@example.net dave@example.org'
	assert_line --regexp '^250 2\.0\.0 queued as '
	assert_equal "$(stat -c '%i %h' "$(rc_new_file bob)")" "$(stat -c '%i %h' "$(rc_new_file dave)")"
	assert_equal "$(stat -c %h "$(rc_new_file carol)")" 3
	assert_equal "$(rc_all_tmp | wc -l)" 0
}

@test "several recipients: the reply names the first copy, every copy has its Received id" {
	rc_skip_peer_bug_asan
	run rc_send 'bob@example.org carol@example.net'
	assert_line --regexp '^250 2\.0\.0 queued as '
	# The reply names the first copy; every copy has the same Received id.
	name=$(printf '%s\n' "$output" | sed -n 's/^250 2\.0\.0 queued as \([^:]*\):.*/\1/p')
	[ -f "$RC_MB/bob/new/$name" ] || fail "queued as $name, not in bob/new"
	id=${name%%.mx.test*}
	grep -qF "with ESMTP id $id" "$(rc_new_file carol)"
}

@test "every copy and the forwarded one carry the same Received line, over TCP too" {
	rc_skip_peer_bug_asan
	rc_fwd_script
	aliases 'all: bob, carol, dave, someone@remote.example'
	MS_OPTS+=(-o "forward_command=$MS_DIR/fwd")
	ms_listen
	run smtp_sock --send "EHLO c.example\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<all@example.org>\r\nDATA\r\n" \
	    --wait '354 ' --send "${RC_BODY}.\r\nQUIT\r\n" --wait '221 '
	assert_line --regexp '^250 2\.0\.0 queued as '
	for f in $(rc_all_new) "$MS_DIR/fwd.stdin"; do
		sed -n '/^Received: /p' "$f"
	done | sort | uniq -c >"$MS_DIR/received"
	run cat "$MS_DIR/received"
	assert_output --regexp '^ +4 Received: from c\.example \(unknown \[127\.0\.0\.1\]\)$'
}

@test "duplicates (by case, by domain, by alias, repeated) get one copy per mailbox" {
	aliases 'team: bob, carol' 'robert: bob'
	run rc_send 'bob@example.org BOB@example.org robert@example.org team@example.org bob@example.org carol@example.org'
	assert_success
	assert_line --regexp '^250 2\.0\.0 queued as '
	# One file for both, naming none of the recipients it is for.
	assert_equal "$(stat -c %i "$(rc_new_file bob)")" "$(stat -c %i "$(rc_new_file carol)")"
	run grep -c '^Delivered-To: ' "$(rc_new_file bob)"
	assert_output 0
	# A line each for the distinct recipients.
	for a in bob@example.org BOB@example.org robert@example.org team@example.org carol@example.org; do
		grep -F 'event=deliver ' "$MS_DIR/log" | grep -qF "to=\"<$a>\"" ||
			fail "no log line for $a"
	done
	assert_equal "$(rc_all_new | wc -l)" 2
}

@test "nested aliases flatten; a mailbox reached twice gets one copy" {
	aliases 'all: team, eve, bob' 'team: bob, carol' 'ops: all, dave'
	run rc_send 'ops@example.org'
	assert_line --regexp '^250 2\.0\.0 queued as '
	for who in bob carol dave eve; do
		rc_new_file "$who" >/dev/null
	done
	run grep -c '^Delivered-To: ops@example.org$' "$(rc_new_file bob)"
	assert_output 1
}

@test "an alias with its own name as a target means the mailbox of that name" {
	aliases 'bob: bob, carol'
	run rc_send 'bob@example.org'
	assert_line --regexp '^250 2\.0\.0 queued as '
	rc_new_file bob >/dev/null
	rc_new_file carol >/dev/null
}

@test "an alias loop is refused at load time: 421 4.3.5, file:line in the log" {
	aliases 'bob: carol' '# a comment' 'a: b' 'b: c' 'c: a'
	run smtp_pipe 'EHLO c.example\r\nQUIT\r\n'
	assert_failure
	assert_refused_config "$RC_ALIASES:3: alias loop"
	run grep -cF 'event=config' "$MS_DIR/log"
	refute_output 0
	# And mailslot -t says the same on stderr.
	run "$MAILSLOT" "${MS_OPTS[@]}" -t
	assert_failure
	assert_output --partial "$RC_ALIASES:3: alias loop"
}

@test "aliases nested too deep are refused at load time; a short chain is fine" {
	local lines=() i
	for i in $(seq 0 39); do
		lines+=("a$i: a$((i + 1))")
	done
	lines+=('a40: bob')
	aliases "${lines[@]}"
	run smtp_pipe 'EHLO c.example\r\nQUIT\r\n'
	assert_failure
	assert_refused_config "$RC_ALIASES:1: aliases nested deeper than"

	lines=()
	for i in $(seq 0 7); do
		lines+=("a$i: a$((i + 1))")
	done
	lines+=('a8: bob')
	aliases "${lines[@]}"
	run rc_send 'a0@example.org'
	assert_line --regexp '^250 2\.0\.0 queued as '
	rc_new_file bob >/dev/null
}

@test "continuation lines, comments and blank lines in the alias file" {
	printf '%s\n' '# the team' '' 'team: bob,' '  carol' '	dave' '   # not a target' \
	    '' 'pair: eve' '  bob' 'Upper : Carol' >"$RC_ALIASES"
	MS_OPTS+=(-o "aliases=$RC_ALIASES")
	run rc_send 'team@example.org'
	assert_line --regexp '^250 2\.0\.0 queued as '
	for who in bob carol dave; do
		rc_new_file "$who" >/dev/null
	done
	assert_equal "$(rc_new_count eve)" 0
	run reply_to 'EHLO c.example\r\n' 'EXPN pair'
	assert_equal "$(printf '%s\n' "$output" | grep -c '')" 2
	assert_line --index 0 --regexp '^250-2\.1\.5 <eve@'
	assert_line --index 1 --regexp '^250 2\.1\.5 <bob@'
	# Alias names are matched without regard to case.
	run rc_rcpt upper@example.org
	assert_reply 250 2.1.5 'Requested mail action okay, completed'
}

@test "a duplicate alias name is refused with both lines named" {
	aliases 'team: bob' 'other: carol' 'Team: dave'
	run smtp_pipe 'EHLO c.example\r\nQUIT\r\n'
	assert_failure
	assert_refused_config "$RC_ALIASES:3: alias \"team\" defined again (first at line 1)"
}

@test "malformed alias files: 421 4.3.5 with file:line, never a crash" {
	local -a bad=(
		'no colon here|:1: expected'
		'team bob: carol|:1: "team bob" is not a name an alias can have'
		'a/b: bob|:1: "a/b" is not a name'
		'../x: bob|:1: "../x" is not a name'
		'x@y: bob|:1: "x@y" is not a name'
		'team:|:1: alias "team" has no targets'
		'team: ,,,|:1: alias "team" has no targets'
		'team: <<bob>>|:1: "<<bob>>" is not an address'
		'team: bob@|:1: "bob@" is not an address'
		'team: a/b|:1: "a/b" is not an address'
		'  bob|:1: continuation line with nothing to continue'
	)
	local b
	for b in "${bad[@]}"; do
		printf '%s\n' "${b%%|*}" >"$RC_ALIASES"
		run smtp_pipe 'EHLO c.example\r\nQUIT\r\n' -o "aliases=$RC_ALIASES"
		[ "$status" -lt 128 ] || fail "crashed on \"${b%%|*}\" (status $status)"
		assert_refused_config "$RC_ALIASES${b#*|}"
	done
	# A NUL byte, a missing file, binary noise.
	printf 'team: bob\0carol\n' >"$RC_ALIASES"
	run smtp_pipe 'QUIT\r\n' -o "aliases=$RC_ALIASES"
	assert_refused_config "$RC_ALIASES:1: NUL byte"
	run smtp_pipe 'QUIT\r\n' -o "aliases=$MS_DIR/no-such-file"
	assert_refused_config "$MS_DIR/no-such-file: No such file or directory"
	head -c 4096 /dev/urandom >"$RC_ALIASES"
	run smtp_pipe 'QUIT\r\n' -o "aliases=$RC_ALIASES"
	[ "$status" -lt 128 ] || fail "crashed on noise (status $status)"
	assert_output --regexp '^421 4\.3\.5 '
	assert_equal "$(rc_all_new | wc -l)" 0
}

@test "an alias file that cannot be read (a directory) is refused, not taken as empty" {
	run smtp_pipe 'QUIT\r\n' -o "aliases=$MS_DIR"
	assert_output --regexp '^421 4\.3\.5 '
	run grep -F "event=config problem=\"mailslot: $MS_DIR:" "$MS_DIR/log"
	assert_success
}

@test "251: a remote alias with forward_command; the program gets argv and stdin as decided" {
	rc_skip_peer_bug_asan
	rc_fwd_script
	aliases 'ext: someone@remote.example'
	MS_OPTS+=(-o "forward_command=$MS_DIR/fwd -i -oi")
	run rc_rcpt ext@example.org
	assert_reply 251 2.1.5 'User not local; will forward to <someone@remote.example>'
	run smtp_pipe "${RC_EHLO_MAIL}RCPT TO:<ext@example.org>\r\nDATA\r\nSubject: fwd\r\n\r\nline 1\r\n..dot\r\n.\r\nQUIT\r\n"
	assert_success
	assert_line --regexp '^250 2\.0\.0 queued as '
	rc_argv_file "$MS_DIR/argv.want" "$MS_DIR/fwd" -i -oi -f a@b.example -- someone@remote.example
	ms_assert_same "$MS_DIR/argv.want" "$MS_DIR/fwd.argv" 'forward_command argv'
	rc_normalize_trace <"$MS_DIR/fwd.stdin" >"$MS_DIR/stdin.got"
	printf '%b' "Delivered-To: ext@example.org\n$RCVD\n\tfor <ext@example.org>; DATE\nSubject: fwd\n\nline 1\n.dot\n" >"$MS_DIR/stdin.want"
	ms_assert_same "$MS_DIR/stdin.want" "$MS_DIR/stdin.got" 'forward_command stdin'
	assert_equal "$(rc_all_new | wc -l)" 0
	assert_equal "$(rc_all_tmp | wc -l)" 0
}

@test "forward_command gets the environment mailslot was started with, intact after the process title is set" {
	# The process title is written over the original environment strings:
	# the environment must have moved out of the way first.
	cat >"$MS_DIR/fwd" <<-'EOF'
	#!/bin/sh
	cat >/dev/null
	printenv MS_ENV_MARK >"$(dirname "$0")/fwd.env"
	EOF
	chmod 755 "$MS_DIR/fwd"
	aliases 'ext: someone@remote.example'
	MS_OPTS+=(-o "forward_command=$MS_DIR/fwd")
	mark="mark-$(printf '%0200d' 7)-end"
	MS_ENV_MARK=$mark run smtp_pipe "${RC_EHLO_MAIL}RCPT TO:<ext@example.org>\r\nDATA\r\n\r\nhi\r\n.\r\nQUIT\r\n"
	assert_success
	assert_line --regexp '^250 2\.0\.0 queued as '
	run cat "$MS_DIR/fwd.env"
	assert_output "$mark"
}

@test "forwards: 400 KB through forward_command byte for byte; its stdout and stderr go nowhere" {
	rc_skip_peer_bug_asan
	rc_fwd_script
	# The program talks on both: none of it may reach the client (or the log).
	sed -i '2i echo "250 2.0.0 from the program"; echo "551 from the program" >&2' "$MS_DIR/fwd"
	aliases 'ext: someone@remote.example'
	MS_OPTS+=(-o "forward_command=$MS_DIR/fwd")
	seq 1 60000 >"$MS_DIR/lines"
	{
		printf 'EHLO c.example\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<ext@example.org>\r\nDATA\r\n'
		sed 's/$/\r/' "$MS_DIR/lines"
		printf '.\r\nQUIT\r\n'
	} >"$MS_DIR/big.in"
	run smtp_pipe_file "$MS_DIR/big.in"
	assert_success
	assert_line --regexp '^250 2\.0\.0 queued as '
	refute_output --partial 'from the program'
	run grep -c 'from the program' "$MS_DIR/log"
	assert_output 0
	rc_normalize_trace <"$MS_DIR/fwd.stdin" >"$MS_DIR/stdin.got"
	{
		printf '%b' "Delivered-To: ext@example.org\n$RCVD\n\tfor <ext@example.org>; DATE\n"
		cat "$MS_DIR/lines"
	} >"$MS_DIR/stdin.want"
	cmp -s "$MS_DIR/stdin.want" "$MS_DIR/stdin.got" ||
		fail "forward_command got $(stat -c %s "$MS_DIR/stdin.got") octets, not $(stat -c %s "$MS_DIR/stdin.want"): $(cmp "$MS_DIR/stdin.want" "$MS_DIR/stdin.got" 2>&1)"
}

@test "forwards: a program that exits 0 without reading the message gets 451, not 250" {
	aliases 'ext: someone@remote.example' 'mixed: bob, someone@remote.example'
	MS_OPTS+=(-o forward_command=/bin/true)
	RC_BODY=$(printf '%s\\r\\n' $(seq 1 60000) | tr -d '\n')
	run rc_send 'mixed@example.org'
	assert_line --regexp '^451 4\.3\.0 '
	refute_line --regexp '^250 2\.0\.0 '
	assert_equal "$(rc_all_new | wc -l)" 0
}

@test "forwards: a mixed alias delivers locally and forwards; null sender is -f <>" {
	rc_skip_peer_bug_asan
	rc_fwd_script
	aliases 'mixed: bob, someone@remote.example, other@far.example' 'ext: someone@remote.example'
	MS_OPTS+=(-o "forward_command=$MS_DIR/fwd")
	run rc_rcpt mixed@example.org
	assert_reply 250 2.1.5 'Requested mail action okay, completed'
	run smtp_pipe "EHLO c.example\r\nMAIL FROM:<>\r\nRCPT TO:<mixed@example.org>\r\nRCPT TO:<ext@example.org>\r\nDATA\r\n${RC_BODY}.\r\nQUIT\r\n"
	assert_line --regexp '^250 2\.0\.0 queued as '
	# One run per envelope recipient, in RCPT order; each remote address
	# of that recipient once, in the order first seen.
	assert_equal "$(cat "$MS_DIR/fwd.runs")" 2
	rc_argv_file "$MS_DIR/argv.want" "$MS_DIR/fwd" -f '<>' -- someone@remote.example other@far.example
	ms_assert_same "$MS_DIR/argv.want" "$MS_DIR/fwd.argv.1" 'forward_command argv, run 1'
	rc_argv_file "$MS_DIR/argv.want" "$MS_DIR/fwd" -f '<>' -- someone@remote.example
	ms_assert_same "$MS_DIR/argv.want" "$MS_DIR/fwd.argv.2" 'forward_command argv, run 2'
	rc_normalize_trace <"$MS_DIR/fwd.stdin.1" >"$MS_DIR/stdin.got"
	printf '%b' "Delivered-To: mixed@example.org\n$RCVD\n\tfor <mixed@example.org>; DATE\nSubject: test\n\nhello\n" >"$MS_DIR/stdin.want"
	ms_assert_same "$MS_DIR/stdin.want" "$MS_DIR/stdin.got" 'forward_command stdin, run 1'
	# The local copy has its Return-Path; the forwarded one has none.
	assert_stored_in bob "Return-Path: <>\nDelivered-To: mixed@example.org\n$RCVD\n\tfor <mixed@example.org>; DATE\nSubject: test\n\nhello\n"
}

@test "forwards: Bcc stays blind: one run, one copy, per envelope recipient" {
	rc_skip_peer_bug_asan
	rc_fwd_script
	aliases 'alice: alice@far.example' 'bob2: bob@away.example, bob@other.example'
	MS_OPTS+=(-o "forward_command=$MS_DIR/fwd")
	run rc_send 'alice@example.org bob2@example.org'
	assert_line --regexp '^250 2\.0\.0 queued as '
	assert_equal "$(cat "$MS_DIR/fwd.runs")" 2
	rc_argv_file "$MS_DIR/argv.want" "$MS_DIR/fwd" -f a@b.example -- alice@far.example
	ms_assert_same "$MS_DIR/argv.want" "$MS_DIR/fwd.argv.1" 'the run for alice'
	rc_argv_file "$MS_DIR/argv.want" "$MS_DIR/fwd" -f a@b.example -- bob@away.example bob@other.example
	ms_assert_same "$MS_DIR/argv.want" "$MS_DIR/fwd.argv.2" 'the run for bob2'
	for n in 1 2; do
		[ "$n" = 1 ] && who=alice || who=bob2
		rc_normalize_trace <"$MS_DIR/fwd.stdin.$n" >"$MS_DIR/stdin.got"
		printf '%b' "Delivered-To: $who@example.org\n$RCVD\n\tfor <$who@example.org>; DATE\nSubject: test\n\nhello\n" >"$MS_DIR/stdin.want"
		ms_assert_same "$MS_DIR/stdin.want" "$MS_DIR/stdin.got" "the copy for $who"
	done
	# Neither copy names the other recipient anywhere.
	run grep -c bob "$MS_DIR/fwd.stdin.1"
	assert_output 0
	run grep -c alice "$MS_DIR/fwd.stdin.2"
	assert_output 0
	# The log: one line per recipient, each forwarded.
	run grep -c 'event=deliver .* to="<alice@example.org>" via=forward ' "$MS_DIR/log"
	assert_output 1
	run grep -c 'event=deliver .* to="<bob2@example.org>" via=forward ' "$MS_DIR/log"
	assert_output 1
}

@test "forwards: the second recipient's run failing gives 451, no copy in any new/" {
	rc_fwd_script
	cat >"$MS_DIR/fwd2" <<-EOF
	#!/bin/sh
	"$MS_DIR/fwd" "\$@" || exit
	[ "\$(cat "$MS_DIR/fwd.runs")" = 2 ] && exit 1
	exit 0
	EOF
	chmod 755 "$MS_DIR/fwd2"
	aliases 'alice: bob, alice@far.example' 'carl: carl@away.example'
	MS_OPTS+=(-o "forward_command=$MS_DIR/fwd2")
	run rc_send 'alice@example.org carl@example.org'
	assert_line --regexp '^451 4\.3\.0 '
	refute_line --regexp '^250 2\.0\.0 '
	assert_equal "$(cat "$MS_DIR/fwd.runs")" 2
	assert_equal "$(rc_all_new | wc -l)" 0
	assert_equal "$(rc_all_tmp | wc -l)" 0
}

@test "forwards: a non-zero exit, a missing program or a hang give 451, no copy in any new/" {
	rc_fwd_script
	aliases 'mixed: bob, carol, someone@remote.example'
	MS_OPTS+=(-o "forward_command=$MS_DIR/fwd")
	echo 1 >"$MS_DIR/fwd.exit"
	run rc_send 'mixed@example.org dave@example.org'
	assert_success
	assert_line --regexp '^451 4\.3\.0 '
	refute_line --regexp '^250 2\.0\.0 '
	[ -s "$MS_DIR/fwd.stdin" ] || fail "forward_command did not run"
	grep -q 'event=error op=forward' "$MS_DIR/log"
	assert_equal "$(rc_all_new | wc -l)" 0
	assert_equal "$(rc_all_tmp | wc -l)" 0

	rm -f "$MS_DIR/fwd.exit"
	run rc_send 'mixed@example.org' -o "forward_command=$MS_DIR/no-such-program -i"
	assert_line --regexp '^451 4\.3\.0 '
	assert_equal "$(rc_all_new | wc -l)" 0

	echo 10 >"$MS_DIR/fwd.sleep"
	SECONDS=0
	run rc_send 'mixed@example.org' -o data_timeout=1
	assert_line --regexp '^451 4\.3\.0 '
	[ "$SECONDS" -lt 8 ] || fail "took $SECONDS s with data_timeout=1"
	assert_equal "$(rc_all_new | wc -l)" 0
	assert_equal "$(rc_all_tmp | wc -l)" 0
}

@test "551 5.1.6: a remote alias member without forward_command; the whole recipient is refused" {
	aliases 'ext: someone@remote.example' 'mixed: bob, other@far.example, someone@remote.example'
	run rc_rcpt ext@example.org
	assert_reply 551 5.1.6 'User not local; please try <someone@remote.example>'
	run rc_rcpt mixed@example.org
	assert_reply 551 5.1.6 'User not local; please try <other@far.example>'
	run rc_send 'mixed@example.org'
	assert_line --regexp '^554 5\.5\.1 '
	assert_equal "$(rc_all_new | wc -l)" 0
}

@test "VRFY: 250, 251, 551, 550, 553; and 502 with vrfy=no" {
	rc_fwd_script
	aliases 'ext: someone@remote.example' 'team: bob, carol'
	run reply_to '' 'VRFY <bob@example.org>'
	assert_reply 250 2.1.5 'Requested mail action okay, completed'
	assert_output --partial '<bob@example.org>'
	run reply_to '' 'VRFY Bob'
	assert_reply 250 2.1.5 'Requested mail action okay, completed'
	run reply_to '' 'VRFY team'
	assert_reply 250 2.1.5 'Requested mail action okay, completed'
	run reply_to '' 'VRFY ext' -o "forward_command=$MS_DIR/fwd"
	assert_reply 251 2.1.5 'User not local; will forward to <someone@remote.example>'
	run reply_to '' 'VRFY <ext@example.org>'
	assert_reply 551 5.1.6 'User not local; please try <someone@remote.example>'
	run reply_to '' 'VRFY nosuch'
	assert_reply 550 5.1.1 'Requested action not taken: mailbox unavailable'
	run reply_to '' 'VRFY <bob@foreign.example>'
	assert_reply 550 5.7.1 'Requested action not taken: mailbox unavailable'
	for a in 'a/b' '<"../x"@example.org>' '.bob' '<bob+../x@example.org>'; do
		run reply_to '' "VRFY $a"
		assert_reply 553 5.1.3 'Requested action not taken: mailbox name not allowed'
	done
	run reply_to '' 'VRFY bob' -o vrfy=no
	assert_reply 502 5.5.1 'Command not implemented'
	# VRFY asks whether the mailbox exists, not whether it takes mail now.
	rmdir "$RC_MB/eve/tmp"
	run reply_to '' 'VRFY eve'
	assert_reply 250 2.1.5 'Requested mail action okay, completed'
	assert_equal "$(rc_all_new | wc -l)" 0
}

@test "VRFY and EXPN name addresses that RCPT then accepts" {
	aliases 'team: bob, carol@example.net'
	run reply_to '' 'VRFY bob'
	assert_success
	a=$(printf '%s\n' "$output" | grep -o '<[^>]*>' | head -n 1)
	run reply_to "$RC_EHLO_MAIL" "RCPT TO:$a"
	assert_reply 250 2.1.5 'Requested mail action okay, completed'
	run reply_to '' 'EXPN team'
	for a in $(printf '%s\n' "$output" | grep -o '<[^>]*>'); do
		run reply_to "$RC_EHLO_MAIL" "RCPT TO:$a"
		assert_reply 250 2.1.5 'Requested mail action okay, completed'
	done
}

@test "EXPN: one member per 250 line, as written; 550 for a non-list; 502 with expn=no" {
	aliases 'team: bob, Carol, someone@remote.example, dave@example.net' 'ops: team, eve'
	run reply_to '' 'EXPN team'
	assert_success
	assert_equal "$(printf '%s\n' "$output" | grep -c '')" 4
	assert_line --index 0 --regexp '^250-2\.1\.5 <bob@[^>]+>: Requested mail action okay, completed$'
	assert_line --index 1 --regexp '^250-2\.1\.5 <Carol@[^>]+>: '
	assert_line --index 2 '250-2.1.5 <someone@remote.example>: Requested mail action okay, completed'
	assert_line --index 3 '250 2.1.5 <dave@example.net>: Requested mail action okay, completed'
	# A nested list shows its members as written, not flattened.
	run reply_to '' 'EXPN <OPS@example.org>'
	assert_equal "$(printf '%s\n' "$output" | grep -c '')" 2
	assert_line --index 0 --regexp '^250-2\.1\.5 <team@'
	assert_line --index 1 --regexp '^250 2\.1\.5 <eve@'
	for a in bob nosuch '<bob@example.org>'; do
		run reply_to '' "EXPN $a"
		assert_reply 550 5.1.1 'Requested action not taken: mailbox unavailable'
	done
	run reply_to '' 'EXPN team' -o expn=no
	assert_reply 502 5.5.1 'Command not implemented'
}

@test "failed VRFY and EXPN count against max_errors" {
	aliases 'team: bob'
	run smtp_pipe 'VRFY nosuch\r\nVRFY bob\r\nEXPN bob\r\nVRFY a/b\r\nNOOP\r\n' -o max_errors=3
	assert_success
	assert_line --index 1 --regexp '^550 5\.1\.1 '
	assert_line --index 2 --regexp '^250 2\.1\.5 '
	assert_line --index 3 --regexp '^550 5\.1\.1 '
	assert_line --index 4 --regexp '^553 5\.1\.3 '
	assert_line --index 5 --regexp '^421 4\.7\.0 mx\.test '
	assert_equal "$(printf '%s\n' "$output" | grep -c '')" 6
	run smtp_pipe 'VRFY bob\r\nEXPN team\r\nNOOP\r\n' -o max_errors=2 -o vrfy=no -o expn=no
	assert_line --index 1 --regexp '^502 5\.5\.1 '
	assert_line --index 2 --regexp '^502 5\.5\.1 '
	assert_line --index 3 --regexp '^421 4\.7\.0 '
}

@test "all or nothing: a copy that cannot be made after RCPT leaves no copy in any new/" {
	rc_for_nobody
	rc_chown_nobody "$RC_MB"
	# The second mailbox's tmp/ turns unwritable between RCPT and the data.
	run smtp_exec --send "${RC_EHLO_MAIL}RCPT TO:<bob@example.org>\r\nRCPT TO:<carol@example.org>\r\nRCPT TO:<dave@example.org>\r\n" \
	    --wait '<dave@example.org>' --run "chown root:root '$RC_MB/carol/tmp' && chmod 755 '$RC_MB/carol/tmp'" \
	    --send "DATA\r\n${RC_BODY}.\r\nQUIT\r\n" --wait '221 ' -- -o user=nobody
	assert_success
	rc_assert_nth 7 '^354 '
	rc_assert_nth 8 '^451 4\.3\.0 '
	assert_equal "$(rc_all_new | wc -l)" 0
	assert_equal "$(rc_all_tmp | wc -l)" 0
}

@test "several Maildirs: one file fsynced once, the new/ directories together, one by one when AIO fails" {
	rc_skip_under_wrapper
	command -v strace >/dev/null || skip "no strace"
	local rcpts='bob@example.org carol@example.org dave@example.org' w0=$MAILSLOT_WRAPPER
	# The one file, then the three new/ directories in one submission.
	MAILSLOT_WRAPPER="strace -f -qq -o $MS_DIR/st -e trace=fsync,io_submit $w0"
	run rc_send "$rcpts"
	assert_line --regexp '^250 2\.0\.0 queued as '
	assert_equal "$(grep -c '^[0-9]* *io_submit(.*) = 3$' "$MS_DIR/st")" 1
	assert_equal "$(grep -c 'io_submit(' "$MS_DIR/st")" 1
	assert_equal "$(grep -c '^[0-9]* *fsync(' "$MS_DIR/st")" 1
	for b in bob carol dave; do
		assert_equal "$(ls "$RC_MB/$b/new" | wc -l)" 1
	done
	# AIO refused or broken at each of its steps: the same copies, fsync by fsync.
	for fault in io_setup:error=EPERM io_submit:error=EAGAIN io_getevents:error=EINVAL; do
		MAILSLOT_WRAPPER="strace -f -qq -o $MS_DIR/st -e trace=fsync,${fault%%:*} -e inject=$fault $w0"
		run rc_send "$rcpts"
		assert_line --regexp '^250 2\.0\.0 queued as '
		[ "$(grep -c '^[0-9]* *fsync(' "$MS_DIR/st")" -eq 4 ] ||
			fail "$fault: $(grep -c 'fsync(' "$MS_DIR/st") fsyncs, not 4"
	done
	MAILSLOT_WRAPPER=$w0
	assert_equal "$(rc_all_new | wc -l)" 12
	assert_equal "$(rc_all_tmp | wc -l)" 0
}

@test "all or nothing: the fsync of the file, of a new/, or the second link fails (strace --inject)" {
	rc_skip_under_wrapper
	command -v strace >/dev/null || skip "no strace"
	strace -qq -o /dev/null -e inject=fsync:error=EIO:when=2 true 2>/dev/null ||
		skip "this strace cannot inject faults"
	local rcpts='bob@example.org carol@example.org dave@example.org'
	# strace goes first, around any wrapper the suite runs with.
	local w0=$MAILSLOT_WRAPPER
	# Without AIO (refused, as seccomp may), the file is synced, then each new/.
	MAILSLOT_WRAPPER="strace -f -qq -o /dev/null -e trace=fsync,io_setup -e inject=io_setup:error=ENOSYS -e inject=fsync:error=EIO:when=1 $w0"
	run rc_send "$rcpts"
	assert_line --regexp '^451 4\.3\.0 '
	refute_line --regexp '^250 2\.0\.0 '
	assert_equal "$(rc_all_new | wc -l)" 0
	assert_equal "$(rc_all_tmp | wc -l)" 0

	# The same for new/: the fsync of the second directory fails, after
	# all three links were made; they are taken back.
	MAILSLOT_WRAPPER="strace -f -qq -o $MS_DIR/st -e trace=fsync,io_setup,linkat -e inject=io_setup:error=ENOSYS -e inject=fsync:error=EIO:when=3 $w0"
	run rc_send "$rcpts"
	assert_line --regexp '^451 4\.3\.0 '
	assert_equal "$(grep -c 'linkat(.* = 0$' "$MS_DIR/st")" 3
	assert_equal "$(rc_all_new | wc -l)" 0
	assert_equal "$(rc_all_tmp | wc -l)" 0

	# The second link into new/ fails after the first one was made.
	MAILSLOT_WRAPPER="strace -f -qq -o /dev/null -e trace=linkat,link -e inject=linkat,link:error=EIO:when=2 $w0"
	run rc_send "$rcpts"
	assert_line --regexp '^451 4\.3\.0 '
	assert_equal "$(rc_all_new | wc -l)" 0
	assert_equal "$(rc_all_tmp | wc -l)" 0

	# A full disk when the file is synced: 452, and still nothing anywhere.
	MAILSLOT_WRAPPER="strace -f -qq -o /dev/null -e trace=fsync -e inject=fsync:error=ENOSPC:when=1 $w0"
	run rc_send "$rcpts"
	assert_line --regexp '^452 4\.3\.1 '
	assert_equal "$(rc_all_new | wc -l)" 0
	assert_equal "$(rc_all_tmp | wc -l)" 0

	MAILSLOT_WRAPPER=$w0
	run rc_send "$rcpts"
	assert_line --regexp '^250 2\.0\.0 queued as '
	assert_equal "$(rc_all_new | wc -l)" 3
}
