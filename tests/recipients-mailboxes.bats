#!/usr/bin/env bats
# Recipients, part 1: the mailbox map (`mailboxes`), accepted domains and
# address literals, <postmaster>, names that are not allowed (and that no
# recipient string reaches outside the mailbox tree), subaddresses, the
# free-space check per recipient, and `user`.

load 'lib/common'
load 'lib/recipients'

setup() {
	rc_setup
}

teardown() {
	rc_teardown
}

@test "250: an existing mailbox, its name compared without regard to case" {
	rc_mailbox bob
	run rc_rcpt Bob@Example.ORG
	assert_success
	assert_reply 250 2.1.5 'Requested mail action okay, completed'
	assert_output --partial '<Bob@Example.ORG>'

	run rc_send 'BOB@example.org'
	assert_success
	assert_line --regexp '^250 2\.0\.0 queued as '
	f=$(rc_new_file bob)
	run grep -c '^Delivered-To: BOB@example.org$' "$f"
	assert_output 1
	assert_equal "$(rc_tmp_count bob)" 0
	# Nothing went to the catch-all: with `mailboxes`, it is not used.
	[ ! -e "$MS_MAILDIR" ] || assert_equal "$(ms_new_count)" 0
}

@test "550 5.1.1: no Maildir for the name; the refusal is logged" {
	rc_mailbox bob
	run rc_rcpt nosuch@example.org
	assert_success
	assert_reply 550 5.1.1 'Requested action not taken: mailbox unavailable'
	assert_output --partial '<nosuch@example.org>'
	run grep -F 'code=550 enh=5.1.1' "$MS_DIR/log"
	assert_success
	# A mailbox of another name's prefix or suffix is not a match.
	run rc_rcpt bo@example.org
	assert_reply 550 5.1.1 'Requested action not taken: mailbox unavailable'
	run rc_rcpt bobby@example.org
	assert_reply 550 5.1.1 'Requested action not taken: mailbox unavailable'
}

@test "450 4.2.1: a mailbox without tmp/, without new/, or a plain file; logged, nothing lost" {
	rc_mailbox bob notmp nonew
	rmdir "$RC_MB/notmp/tmp" "$RC_MB/nonew/new"
	echo 'not a Maildir' >"$RC_MB/plainfile"
	for who in notmp nonew plainfile; do
		run rc_rcpt "$who@example.org"
		assert_success
		assert_reply 450 4.2.1 'Requested mail action not taken: mailbox unavailable'
		run grep -F "event=mailbox-unusable path=\"$RC_MB/$who\"" "$MS_DIR/log"
		assert_success
	done
	# In one transaction with a good recipient: only that one gets the message,
	# and the broken mailboxes are not repaired behind the admin's back.
	run rc_send 'notmp@example.org bob@example.org nonew@example.org'
	rc_assert_nth 4 '^450 4\.2\.1 '
	rc_assert_nth 5 '^250 2\.1\.5 '
	rc_assert_nth 6 '^450 4\.2\.1 '
	assert_line --regexp '^250 2\.0\.0 queued as '
	rc_new_file bob >/dev/null
	[ ! -e "$RC_MB/notmp/tmp" ] || fail "notmp/tmp was created"
	[ ! -e "$RC_MB/nonew/new" ] || fail "nonew/new was created"
	assert_equal "$(cat "$RC_MB/plainfile")" 'not a Maildir'
	assert_equal "$(rc_all_new | wc -l)" 1
}

@test "a mailboxes directory that is missing: 421 4.3.5, and the log says so" {
	run smtp_pipe 'EHLO c.example\r\nQUIT\r\n' -o "mailboxes=$MS_DIR/no-such-dir"
	assert_failure
	assert_output --regexp '^421 4\.3\.5 mx\.test '
	grep -qF "mailboxes: $MS_DIR/no-such-dir: No such file or directory" "$MS_DIR/log"
}

@test "a mailboxes path that is a plain file: 421 4.3.5, the log says it is not a directory" {
	: >"$MS_DIR/plain"
	run smtp_pipe 'EHLO c.example\r\nQUIT\r\n' -o "mailboxes=$MS_DIR/plain"
	assert_output --regexp '^421 4\.3\.5 mx\.test '
	run grep -F "mailboxes: $MS_DIR/plain: " "$MS_DIR/log"
	assert_success
	assert_output --partial 'not a directory'
	refute_output --partial 'No such file'
}

@test "450 4.2.1: a mailbox the account cannot write (user=nobody)" {
	rc_for_nobody
	rc_mailbox bob rotmp ronew
	rc_chown_nobody "$RC_MB"
	# Mode 0555: nobody can enter them, not create in them.  By mode, not
	# ownership: the harness hands the whole tree to the account first.
	chmod 555 "$RC_MB/rotmp/tmp" "$RC_MB/ronew/new"
	MS_OPTS+=(-o user=nobody)
	for who in rotmp ronew; do
		run rc_rcpt "$who@example.org"
		assert_success
		assert_reply 450 4.2.1 'Requested mail action not taken: mailbox unavailable'
		run grep -F "event=mailbox-unusable path=\"$RC_MB/$who\"" "$MS_DIR/log"
		assert_success
	done
	run rc_rcpt bob@example.org
	assert_reply 250 2.1.5 'Requested mail action okay, completed'
}

@test "550 5.7.1: a domain that is not in domains, a subdomain, an unknown host name" {
	rc_mailbox bob
	for a in bob@foreign.example bob@sub.example.org bob@example.org.evil.example bob@mx.test; do
		run rc_rcpt "$a"
		assert_success
		assert_reply 550 5.7.1 'Requested action not taken: mailbox unavailable'
	done
	run rc_rcpt bob@EXAMPLE.NET
	assert_reply 250 2.1.5 'Requested mail action okay, completed'
	run rc_send 'bob@foreign.example'
	assert_line --regexp '^554 5\.5\.1 '
	assert_equal "$(rc_all_new | wc -l)" 0
}

@test "550 5.7.1: a foreign domain after an accepted recipient with the same local part" {
	rc_mailbox bob
	run smtp_pipe "${RC_EHLO_MAIL}RCPT TO:<bob@example.org>\r\nRCPT TO:<bob@foreign.example>\r\nRCPT TO:<bob@sub.example.net>\r\nQUIT\r\n"
	assert_success
	rc_assert_nth 4 '^250 2\.1\.5 <bob@example\.org>'
	rc_assert_nth 5 '^550 5\.7\.1 <bob@foreign\.example>'
	rc_assert_nth 6 '^550 5\.7\.1 <bob@sub\.example\.net>'
	# And the same local part at another accepted domain is a recipient of
	# its own: the one copy is for both, so it names neither.
	run rc_send 'bob@example.org bob@example.net'
	assert_line --regexp '^250 2\.0\.0 queued as '
	run grep -c '^Delivered-To: ' "$(rc_new_file bob)"
	assert_output 0
	assert_equal "$(grep -c 'event=deliver .*via=mailbox' "$MS_DIR/log")" 2
}

@test "address literals: local when they name the address the client reached (getsockname), others 550 5.7.1" {
	rc_mailbox bob
	# Over TCP to 127.0.0.1: that address only; 127.0.0.2 is on lo too, but
	# the client did not reach it.
	ms_listen
	run smtp_sock --send "${RC_EHLO_MAIL}RCPT TO:<bob@[127.0.0.1]>\r\nRCPT TO:<bob@[127.0.0.2]>\r\nRCPT TO:<bob@[192.0.2.1]>\r\nRCPT TO:<bob@[IPv6:::1]>\r\nRCPT TO:<bob@[IPv6:::ffff:127.0.0.1]>\r\nDATA\r\n${RC_BODY}.\r\nQUIT\r\n" --wait '221 '
	ms_stop
	rc_assert_nth 4 '^250 2\.1\.5 <bob@\[127\.0\.0\.1\]>: Requested mail action okay, completed$'
	rc_assert_nth 5 '^550 5\.7\.1 <bob@\[127\.0\.0\.2\]>: '
	rc_assert_nth 6 '^550 5\.7\.1 <bob@\[192\.0\.2\.1\]>: .*Requested action not taken: mailbox unavailable$'
	rc_assert_nth 7 '^550 5\.7\.1 <bob@\[IPv6:::1\]>: '
	rc_assert_nth 8 '^550 5\.7\.1 <bob@\[IPv6:::ffff:127\.0\.0\.1\]>: '
	assert_line --regexp '^250 2\.0\.0 queued as '
	grep -qxF 'Delivered-To: bob@[127.0.0.1]' "$(rc_new_file bob)"
	# Over TCP to ::1: the IPv6 literal of it, in either spelling, and not 127.0.0.1.
	if grep -q '^0\{31\}1 ' /proc/net/if_inet6 2>/dev/null; then
		MS_LISTEN_HOST=::1
		ms_listen
		run smtp_sock --send "${RC_EHLO_MAIL}RCPT TO:<bob@[IPv6:::1]>\r\nRCPT TO:<bob@[IPv6:0:0:0:0:0:0:0:1]>\r\nRCPT TO:<bob@[127.0.0.1]>\r\nQUIT\r\n" --wait '221 '
		ms_stop
		MS_LISTEN_HOST=
		rc_assert_nth 4 '^250 2\.1\.5 <bob@\[IPv6:::1\]>: '
		rc_assert_nth 5 '^250 2\.1\.5 <bob@\[IPv6:0:0:0:0:0:0:0:1\]>: '
		rc_assert_nth 6 '^550 5\.7\.1 <bob@\[127\.0\.0\.1\]>: '
	fi
	# Over a pipe there is no address the client reached: no literal is local.
	for a in 'bob@[127.0.0.1]' 'bob@[IPv6:::1]' 'bob@[203.0.113.77]'; do
		run rc_rcpt "$a"
		assert_reply 550 5.7.1 'Requested action not taken: mailbox unavailable'
	done
	# Unless a UCSPI launcher (tcpserver, s6-tlsserver) says it in TCPLOCALIP;
	# no interface here need have it (a NAT, systemd's PrivateNetwork=).
	export TCPLOCALIP=192.0.2.25
	run rc_rcpt 'bob@[192.0.2.25]'
	assert_reply 250 2.1.5 'Requested mail action okay, completed'
	run rc_rcpt 'bob@[127.0.0.1]'
	assert_reply 550 5.7.1 'Requested action not taken: mailbox unavailable'
	TCPLOCALIP=2001:db8::25
	run rc_rcpt 'bob@[IPv6:2001:db8::25]'
	assert_reply 250 2.1.5 'Requested mail action okay, completed'
	unset TCPLOCALIP
	# Not literals at all: 501.
	for a in 'bob@[300.1.1.1]' 'bob@[1.2.3]' 'bob@[IPv6:zz::1]' 'bob@[::1]' 'bob@[127.0.0.1'; do
		run rc_rcpt "$a"
		assert_reply 501 5.1.3 'Syntax error in parameters or arguments'
	done
}

@test "<postmaster>: bare and @ every accepted domain, in any case; to its mailbox" {
	rc_mailbox postmaster
	for a in postmaster POSTMASTER PostMaster@example.org postmaster@EXAMPLE.NET; do
		run rc_rcpt "$a"
		assert_reply 250 2.1.5 'Requested mail action okay, completed'
	done
	run rc_rcpt postmaster@foreign.example
	assert_reply 550 5.7.1 'Requested action not taken: mailbox unavailable'
	# Only postmaster may come without a domain (RFC 5321 4.5.1).
	run rc_rcpt bob
	assert_reply 501 5.1.3 'Syntax error in parameters or arguments'

	run rc_send 'Postmaster'
	assert_line --regexp '^250 2\.0\.0 queued as '
	rc_new_file postmaster >/dev/null
}

@test "<postmaster> with neither mailbox nor alias goes to the catch-all maildir" {
	rc_mailbox bob
	run rc_rcpt postmaster
	assert_reply 250 2.1.5 'Requested mail action okay, completed'
	run rc_send 'postmaster postmaster@example.net'
	assert_line --regexp '^250 2\.0\.0 queued as '
	# One file in the catch-all for the two: it names neither.
	f=$(ms_new_file)
	run grep -c -e '^Delivered-To: ' -e $'^\tfor <' "$f"
	assert_output 0
	assert_equal "$(stat -c %h "$f")" 1
	assert_equal "$(grep -c 'event=deliver .*via=mailbox' "$MS_DIR/log")" 2
	assert_equal "$(rc_new_count bob)" 0
	# An alias for postmaster takes it instead.
	printf 'postmaster: bob\n' >"$MS_DIR/aliases"
	run rc_send 'POSTMASTER@example.org' -o "aliases=$MS_DIR/aliases"
	assert_line --regexp '^250 2\.0\.0 queued as '
	rc_new_file bob >/dev/null
	assert_equal "$(ms_new_count)" 1
}

@test "553 5.1.3: '/', a leading dot, '..', 65 octets, and the same after unquoting" {
	rc_mailbox bob
	l64=$(printf 'a%.0s' $(seq 64))
	rc_mailbox "$l64"
	for a in 'a/b' '/bob' 'bob/' '.bob' '..' '.' 'bob.' 'a..b' "${l64}a" \
	    '"a/b"' '"a\/b"' '".bob"' '"\.bob"' '".."' '"."' '"bob."' "\"${l64}a\"" \
	    '"\/etc\/passwd"'; do
		run rc_rcpt "$a@example.org"
		assert_success
		assert_reply 553 5.1.3 'Requested action not taken: mailbox name not allowed'
	done
	# 64 octets is allowed, and quoting that leaves a good name is fine.
	run rc_rcpt "$l64@example.org"
	assert_reply 250 2.1.5 'Requested mail action okay, completed'
	for a in '"bob"' '"\\b\\o\\b"' '"BOB"'; do
		run rc_rcpt "$a@example.org"
		assert_reply 250 2.1.5 'Requested mail action okay, completed'
	done
}

@test "553 5.1.3: control characters, quoted or not; NUL ends the line as 500 5.5.2" {
	rc_mailbox bob
	for a in '"a\tb"' '"a\x01b"' 'a\x01b' '"a\x1bb"' '"a\\\x7fb"'; do
		run rc_rcpt "$a@example.org"
		assert_success
		assert_reply 553 5.1.3 'Requested action not taken: mailbox name not allowed'
	done
	run rc_rcpt 'a\0b@example.org'
	assert_reply 500 5.5.2 'Syntax error, NUL octet in command line'
}

@test "553 5.1.3: a C1 control character (U+0080-U+009F) in a UTF-8 local part" {
	rc_mailbox bob
	for a in 'b\xc2\x9bob' 'bob+\xc2\x9b' '"b\xc2\x85ob"'; do
		run reply_to 'EHLO c.example\r\nMAIL FROM:<a@b.example> SMTPUTF8\r\n' "RCPT TO:<$a@example.org>"
		assert_reply 553 5.1.3 'Requested action not taken: mailbox name not allowed'
	done
	# Other non-ASCII is a name like any other.
	rc_mailbox "$(printf '\xc3\xa9ve')"
	run reply_to 'EHLO c.example\r\nMAIL FROM:<a@b.example> SMTPUTF8\r\n' 'RCPT TO:<\xc3\xa9ve@example.org>'
	assert_reply 250 2.1.5 'Requested mail action okay, completed'
}

@test "no recipient string creates or writes a file outside the mailbox tree" {
	rc_mailbox bob postmaster
	rc_folder bob msesc
	mkdir -p "$MS_DIR/outside"
	printf 'team: bob\n' >"$MS_DIR/aliases"
	# Single quotes on purpose: these are bytes for the client to send.
	# shellcheck disable=SC2016
	local -a nasty=(
		'"../msesc1"' '"../../msesc2"' '"..\/..\/msesc3"' '"/tmp/msesc4"' '"\/msesc5"'
		'"bob/../../msesc6"' '"bob\/..\/..\/outside\/msesc7"' 'bob+../msesc8'
		'bob+/msesc9' '"bob+/../../msesc10"' 'bob+..' 'bob+.' 'bob+.msesc'
		'"bob+..\/..\/outside"' 'bob+msesc/../..' '"~root"' '"~/msesc11"'
		'"$(touch msesc12)"' '"`touch msesc13`"' '"|touch msesc14"'
		'bob+%2e%2e%2fmsesc15' '"\\..\\..\\msesc16"' 'bob+' '+msesc'
		'"bob\x0amsesc17"' '"bob\x0d\x0amsesc18"' 'team+../msesc19'
		'"bob+\\..\\msesc20"' "$(printf 'x%.0s' $(seq 200))"
		'"../outside/new/msesc21"' 'postmaster+../../msesc22'
	)
	find / -maxdepth 1 -name 'msesc*' >"$MS_DIR/before-root"
	touch "$MS_DIR/marker"
	sleep 0.01
	local in=$RC_EHLO_MAIL a
	for a in "${nasty[@]}"; do
		in+="RCPT TO:<$a@example.org>\r\nVRFY <$a@example.org>\r\nEXPN $a\r\n"
	done
	in+='RCPT TO:<bob@example.org>\r\nDATA\r\nSubject: x\r\n\r\nhi\r\n.\r\nQUIT\r\n'
	(cd "$MS_DIR/outside" && smtp_pipe "$in" -o "aliases=$MS_DIR/aliases" \
	    -o max_errors=1000000 >"$MS_DIR/out")
	grep -q '^250 2\.0\.0 queued as ' "$MS_DIR/out" || fail "$(cat "$MS_DIR/out")"
	# Every file written since the marker: the test's own three, and the
	# messages in new/ of the mailboxes that exist.
	stray=$(find "$BATS_RUN_TMPDIR" -newer "$MS_DIR/marker" \( -type f -o -type l \) |
	    grep -vxF -e "$MS_DIR/input" -e "$MS_DIR/replies" -e "$MS_DIR/log" -e "$MS_DIR/out" |
	    grep -vE "^$RC_MB/(bob|bob/\.msesc|postmaster)/new/[^/]+\$" || true)
	[ -z "$stray" ] || fail "files outside the mailboxes: $stray"
	# No new directory anywhere (a folder is never created for a tag).
	run find "$BATS_RUN_TMPDIR" -newer "$MS_DIR/marker" -type d -name '*msesc*'
	assert_output ''
	find / -maxdepth 1 -name 'msesc*' >"$MS_DIR/after-root"
	ms_assert_same "$MS_DIR/before-root" "$MS_DIR/after-root" 'entries in /'
	run find /tmp -maxdepth 1 -name 'msesc*' -newer "$MS_DIR/marker"
	assert_output ''
	assert_equal "$(ls -A "$MS_DIR/outside")" ''
	assert_equal "$(rc_new_count bob)" 1
}

@test "user+tag goes to the folder .tag when it exists, else to INBOX; aliases too" {
	rc_mailbox bob carol
	rc_folder bob lists
	rc_folder bob broken
	rmdir "$RC_MB/bob/.broken/tmp"
	printf 'team: bob, carol\n' >"$MS_DIR/aliases"
	MS_OPTS+=(-o "aliases=$MS_DIR/aliases")
	run rc_send 'bob+lists@example.org'
	assert_line --regexp '^250 2\.0\.0 queued as '
	f=$(rc_new_file bob .lists)
	grep -qxF 'Delivered-To: bob+lists@example.org' "$f"
	assert_equal "$(rc_new_count bob)" 0

	run rc_send 'bob+nosuch@example.org'
	assert_line --regexp '^250 2\.0\.0 queued as '
	rc_new_file bob >/dev/null
	[ ! -e "$RC_MB/bob/.nosuch" ] || fail "a folder was created for a tag"

	# A folder that is not a usable Maildir: INBOX, never a half folder.
	run rc_send 'bob+broken@example.org'
	assert_line --regexp '^250 2\.0\.0 queued as '
	assert_equal "$(rc_new_count bob)" 2
	assert_equal "$(rc_new_count bob .broken)" 0

	run rc_send 'team+x@example.org'
	assert_line --regexp '^250 2\.0\.0 queued as '
	assert_equal "$(rc_new_count bob)" 3
	rc_new_file carol >/dev/null

	# The base name must exist: no tag makes an unknown name deliverable.
	run rc_rcpt 'nosuch+lists@example.org'
	assert_reply 550 5.1.1 'Requested action not taken: mailbox unavailable'
}

@test "recipient_delimiter: '-' instead of '+', and empty for none" {
	rc_mailbox bob
	rc_folder bob lists
	run rc_send 'bob-lists@example.org' -o recipient_delimiter=-
	assert_line --regexp '^250 2\.0\.0 queued as '
	rc_new_file bob .lists >/dev/null
	run rc_rcpt 'bob+lists@example.org' -o recipient_delimiter=-
	assert_reply 550 5.1.1 'Requested action not taken: mailbox unavailable'
	run rc_rcpt 'bob+lists@example.org' -o recipient_delimiter=
	assert_reply 550 5.1.1 'Requested action not taken: mailbox unavailable'
}

@test "recipient_delimiter: a mailbox whose name holds the delimiter is found whole" {
	rc_mailbox bob bob-smith
	rc_folder bob smith
	run rc_send 'bob-smith@example.org' -o recipient_delimiter=-
	assert_line --regexp '^250 2\.0\.0 queued as '
	rc_new_file bob-smith >/dev/null
	assert_equal "$(rc_new_count bob)" 0
	assert_equal "$(rc_new_count bob .smith)" 0
	# Without it, the name is user-tag again.
	rm -r "$RC_MB/bob-smith"
	run rc_send 'bob-smith@example.org' -o recipient_delimiter=-
	assert_line --regexp '^250 2\.0\.0 queued as '
	rc_new_file bob .smith >/dev/null
}

@test "452 4.3.1: a recipient on a file system with less than min_free_space" {
	rc_mailbox bob
	rc_mount "$RC_MB/small" 1m
	rc_mailbox small
	run rc_rcpt small@example.org -o min_free_space=4M
	assert_success
	assert_reply 452 4.3.1 'Requested action not taken: insufficient system storage'
	run rc_send 'small@example.org bob@example.org' -o min_free_space=4M
	rc_assert_nth 4 '^452 4\.3\.1 '
	rc_assert_nth 5 '^250 2\.1\.5 '
	assert_line --regexp '^250 2\.0\.0 queued as '
	rc_new_file bob >/dev/null
	assert_equal "$(rc_new_count small)" 0
	# Through an alias too: the whole recipient waits.
	printf 'team: bob, small\n' >"$MS_DIR/aliases"
	run rc_rcpt team@example.org -o min_free_space=4M -o "aliases=$MS_DIR/aliases"
	assert_reply 452 4.3.1 'Requested action not taken: insufficient system storage'
	# Below the limit, the same mailbox takes mail.
	run rc_rcpt small@example.org -o min_free_space=64k
	assert_reply 250 2.1.5 'Requested mail action okay, completed'
}

@test "a Maildir on another file system (link() gives EXDEV) gets a file of its own: 250" {
	rc_mailbox bob carol
	rc_mount "$RC_MB/far" 1m
	rc_mailbox far
	MS_OPTS+=(-o min_free_space=0)
	run rc_send 'bob@example.org far@example.org carol@example.org'
	assert_line --regexp '^250 2\.0\.0 queued as '
	# bob and carol share one file, which names none of the three.
	assert_equal "$(stat -c '%i %h' "$(rc_new_file bob)")" "$(stat -c '%i %h' "$(rc_new_file carol)")"
	assert_equal "$(stat -c %h "$(rc_new_file bob)")" 2
	run grep -c '^Delivered-To: ' "$(rc_new_file bob)"
	assert_output 0
	# far's file is its own, for its one recipient: it names it.
	f=$(rc_new_file far)
	assert_equal "$(stat -c %h "$f")" 1
	grep -qxF 'Delivered-To: far@example.org' "$f"
	grep -qF $'\tfor <far@example.org>; ' "$f"
	# The same body after the trace.
	diff <(sed '1,/^$/d' "$f") <(sed '1,/^$/d' "$(rc_new_file bob)")
	assert_equal "$(rc_all_tmp | wc -l)" 0
	# An alias for the three: one envelope recipient, named in both files.
	printf 'team: far, bob, carol\n' >"$MS_DIR/aliases"
	rm "$RC_MB"/*/new/*
	run rc_send 'team@example.org' -o "aliases=$MS_DIR/aliases"
	assert_line --regexp '^250 2\.0\.0 queued as '
	for who in bob carol far; do
		grep -qxF 'Delivered-To: team@example.org' "$(rc_new_file $who)"
	done
	assert_equal "$(stat -c %h "$(rc_new_file far)")" 1
	assert_equal "$(stat -c %h "$(rc_new_file carol)")" 2
}

@test "user: as root with user=nobody, the stored files belong to nobody" {
	rc_for_nobody
	rc_mailbox bob
	rc_chown_nobody "$RC_MB"
	run rc_send 'bob@example.org' -o user=nobody
	assert_line --regexp '^250 2\.0\.0 queued as '
	f=$(rc_new_file bob)
	run stat -c '%U %a' "$f"
	assert_output 'nobody 600'
}

@test "user: the account is taken before the first byte of input is read" {
	rc_skip_under_wrapper
	command -v strace >/dev/null || skip "no strace"
	rc_for_nobody
	rc_mailbox bob
	rc_chown_nobody "$RC_MB"
	MAILSLOT_WRAPPER="strace -f -qq -o $MS_DIR/strace -e trace=setuid,setresuid,read $MAILSLOT_WRAPPER"
	run rc_rcpt bob@example.org -o user=nobody
	assert_reply 250 2.1.5 'Requested mail action okay, completed'
	first_setuid=$(grep -n -m1 -E 'set(res)?uid\(' "$MS_DIR/strace" | cut -d: -f1)
	first_read=$(grep -n -m1 -E 'read\(0,' "$MS_DIR/strace" | cut -d: -f1)
	[ -n "$first_setuid" ] && [ -n "$first_read" ] || fail "$(cat "$MS_DIR/strace")"
	[ "$first_setuid" -lt "$first_read" ] || fail "read fd 0 before setuid: $(cat "$MS_DIR/strace")"
}

@test "user: root or an unknown account is refused with 421 4.3.5 and a log line" {
	rc_mailbox bob
	[ "$(id -u)" = 0 ] || skip "needs root"
	run smtp_pipe 'QUIT\r\n' -o user=root
	assert_output --regexp '^421 4\.3\.5 '
	grep -q 'user: root is root' "$MS_DIR/log"
	run smtp_pipe 'QUIT\r\n' -o user=no-such-account-here
	assert_output --regexp '^421 4\.3\.5 '
	grep -q 'no account.*no-such-account-here' "$MS_DIR/log"
	assert_equal "$(rc_all_new | wc -l)" 0
}
