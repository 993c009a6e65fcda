#!/usr/bin/env bats
# protocol=lmtp (RFC 2033): the greeting, LHLO instead of HELO/EHLO, and one
# reply per accepted recipient after the data, in RCPT order, each for what
# happened to that recipient's copy: delivered (250), over quota (552), its
# mailbox unusable at the commit (451), its forward failed (451), while the
# others are delivered.  A refusal of the whole message is given once per
# recipient.  Raw clients over a pipe, BDAT, pipelining, swaks --protocol
# LMTP; Postfix as the LMTP client is in lmtp-postfix.bats.

load 'lib/common'
load 'lib/recipients'

setup() {
	rc_setup
	MS_OPTS+=(-o protocol=lmtp)
}
teardown() { rc_teardown; }

# rc_send (lib/recipients) opens with LHLO here: LHLO, MAIL, a RCPT for
# each address, DATA with $RC_BODY, QUIT.
RC_EHLO_MAIL='LHLO c.example\r\nMAIL FROM:<a@b.example>\r\n'

# The replies between the 354 and the 221, one a line.
after_data() {
	printf '%s\n' "$output" | sed -n '/^354 /,/^221 /p' | sed '1d;$d'
}

@test "the greeting says LMTP; LHLO gets the EHLO keywords; HELO and EHLO are 500" {
	run smtp_pipe 'LHLO c.example\r\nHELO c.example\r\nEHLO c.example\r\nQUIT\r\n'
	assert_success
	assert_line --index 0 '220 mx.test LMTP mailslot ready'
	assert_line '250-PIPELINING'
	assert_line '250-CHUNKING'
	assert_line '250-ENHANCEDSTATUSCODES'
	assert_line '250-SIZE 33554432'
	refute_line --partial 'SOML'
	refute_line --partial 'SAML'
	run ms_replies <<<"$output"
	assert_line --index 2 '500 5.5.1 Syntax error, command unrecognized'
	assert_line --index 3 '500 5.5.1 Syntax error, command unrecognized'
	# protocol=smtp (the default) does not know LHLO.
	MS_OPTS+=(-o protocol=smtp)
	run reply_to '' 'LHLO c.example'
	assert_output '500 5.5.1 Syntax error, command unrecognized'
}

@test "LMTP: MAIL before LHLO is 503; HELP lists LHLO, not HELO or EHLO; SEND SOML SAML are 502" {
	run reply_to '' 'MAIL FROM:<a@b.example>'
	assert_output '503 5.5.1 send LHLO first: Bad sequence of commands'
	run reply_to '' 'HELP'
	assert_output --partial ' LHLO '
	refute_output --partial 'HELO '
	refute_output --partial 'EHLO '
	run reply_to '' 'HELP EHLO'
	assert_output --partial '504 5.5.4 '
	run reply_to '' 'LHLO c.example' -o terminal_delivery=yes
	refute_output --partial 'SEND'
	for v in SEND SOML SAML; do
		run reply_to 'LHLO c.example\r\n' "$v FROM:<a@b.example>" -o terminal_delivery=yes
		assert_output '502 5.5.1 Command not implemented'
	done
}

@test "LMTP: a reply per accepted recipient, in RCPT order; the one over quota has nothing" {
	rc_mailbox alice bob carol
	rc_maildirsize bob 1000S '0 0'
	cp "$RC_MB/bob/maildirsize" "$MS_DIR/bob.before"
	RC_BODY=$(rc_body_of 1500)
	# No SIZE=: RCPT cannot know, the commit finds bob over his quota.
	run rc_send 'alice@example.org nobody@example.org bob@example.org carol@example.org'
	assert_success
	run ms_replies <<<"$output"
	assert_line --index 3 --regexp '^250 2\.1\.5 <alice@example\.org>'
	assert_line --index 4 --regexp '^550 5\.1\.1 <nobody@example\.org>'
	assert_line --index 5 --regexp '^250 2\.1\.5 <bob@example\.org>'
	assert_line --index 6 --regexp '^250 2\.1\.5 <carol@example\.org>'
	assert_line --index 7 --regexp '^354 '
	# Three recipients accepted, three replies: none for the refused one.
	assert_line --index 8 --regexp '^250 2\.0\.0 <alice@example\.org>: queued as [^ ]+: Requested mail action okay, completed$'
	assert_line --index 9 '552 5.2.2 <bob@example.org>: mailbox is full: Requested mail action aborted: exceeded storage allocation'
	assert_line --index 10 --regexp '^250 2\.0\.0 <carol@example\.org>: queued as '
	assert_line --index 11 --regexp '^221 '
	# alice and carol have the message, bob has nothing anywhere.
	assert_equal "$(rc_new_count alice)" 1
	assert_equal "$(rc_new_count carol)" 1
	assert_equal "$(rc_new_count bob)" 0
	assert_equal "$(rc_all_tmp | wc -l)" 0
	ms_assert_same "$MS_DIR/bob.before" "$RC_MB/bob/maildirsize" "bob's maildirsize"
	# One file for the three, linked for the two delivered only; it names
	# none of them; Received says LMTP (RFC 3848).
	assert_equal "$(stat -c '%i %h' "$(rc_new_file alice)")" "$(stat -c '%i %h' "$(rc_new_file carol)")"
	assert_equal "$(stat -c %h "$(rc_new_file alice)")" 2
	assert_equal "$(grep -c '^Delivered-To: ' "$(rc_new_file alice)")" 0
	grep -q $'^\tby mx.test (mailslot) with LMTP id ' "$(rc_new_file alice)"
	# The reply names the file that holds the copy.
	f=$(basename "$(rc_new_file carol)")
	assert_line --index 10 "250 2.0.0 <carol@example.org>: queued as $f: Requested mail action okay, completed"
	# The refusal is logged with the recipient.
	grep -q 'event=refuse code=552 enh=5.2.2 .*to="<bob@example.org>"' "$MS_DIR/log"
}

@test "LMTP: the same transaction under SMTP is refused whole (unchanged)" {
	rc_mailbox alice bob
	rc_maildirsize bob 1000S '0 0'
	RC_BODY=$(rc_body_of 1500)
	MS_OPTS+=(-o protocol=smtp)
	RC_EHLO_MAIL=${RC_EHLO_MAIL/LHLO/EHLO}
	run rc_send 'alice@example.org bob@example.org'
	assert_line --regexp '^552 5\.2\.2 '
	assert_equal "$(rc_all_new | wc -l)" 0
}

@test "LMTP: a mailbox that became unusable before the commit: 451 for it, the others delivered" {
	[ "$(id -u)" = 0 ] || skip "needs root: mailslot runs as another account"
	rc_mailbox alice bob
	run smtp_exec --send "${RC_EHLO_MAIL}RCPT TO:<alice@example.org>\r\nRCPT TO:<bob@example.org>\r\n" \
	    --wait '<bob@example.org>' --run "chmod 0500 '$RC_MB/bob/new'" \
	    --send "DATA\r\n${RC_BODY}.\r\nQUIT\r\n" --wait '221 '
	chmod 0700 "$RC_MB/bob/new"
	run after_data
	assert_line --index 0 --regexp '^250 2\.0\.0 <alice@example\.org>: queued as '
	assert_line --index 1 '451 4.3.0 <bob@example.org>: message not stored: Requested action aborted: local error in processing'
	assert_equal "${#lines[@]}" 2
	assert_equal "$(rc_new_count alice)" 1
	assert_equal "$(rc_new_count bob)" 0
	assert_equal "$(rc_all_tmp | wc -l)" 0
}

@test "LMTP: a forward that fails is 451 for its recipient only" {
	rc_mailbox bob
	rc_fwd_script
	echo 1 >"$MS_DIR/fwd.exit"
	printf 'al: al@remote.example\n' >"$MS_DIR/aliases"
	run rc_send 'al@example.org bob@example.org' -o "aliases=$MS_DIR/aliases" \
	    -o "forward_command=$MS_DIR/fwd"
	run after_data
	assert_line --index 0 '451 4.3.0 <al@example.org>: forwarding failed: Requested action aborted: local error in processing'
	assert_line --index 1 --regexp '^250 2\.0\.0 <bob@example\.org>: queued as '
	assert_equal "$(rc_new_count bob)" 1
	# The forward works: 250 for both.
	echo 0 >"$MS_DIR/fwd.exit"
	run rc_send 'al@example.org bob@example.org' -o "aliases=$MS_DIR/aliases" \
	    -o "forward_command=$MS_DIR/fwd"
	run after_data
	assert_line --index 0 --regexp '^250 2\.0\.0 <al@example\.org>: queued as '
	assert_line --index 1 --regexp '^250 2\.0\.0 <bob@example\.org>: queued as '
	assert_equal "$(rc_new_count bob)" 2
}

@test "LMTP: DATA without an accepted RCPT is 503 (RFC 2033 4.2), not 554" {
	run smtp_pipe "${RC_EHLO_MAIL}RCPT TO:<nobody@example.org>\r\nDATA\r\nQUIT\r\n"
	run ms_replies <<<"$output"
	assert_line --index 3 --regexp '^550 5\.1\.1 '
	assert_line --index 4 '503 5.5.1 need RCPT first: Bad sequence of commands'
}

@test "LMTP: refusals of the whole message are given once per recipient" {
	rc_mailbox alice bob
	# Too big.
	RC_BODY=$(rc_body_of 3000)
	run rc_send 'alice@example.org bob@example.org' -o max_message_size=2000
	run after_data
	assert_output "$(printf '%s\n' \
	    '552 5.3.4 message size exceeds fixed maximum message size: Requested mail action aborted: exceeded storage allocation' \
	    '552 5.3.4 message size exceeds fixed maximum message size: Requested mail action aborted: exceeded storage allocation')"
	# A loop.
	RC_BODY=$(for i in $(seq 101); do printf 'Received: from x by y; Tue, 01 Dec 2026 12:00:00 +0000\\r\\n'; done; printf '\\r\\nb\\r\\n')
	run rc_send 'alice@example.org bob@example.org'
	run after_data
	assert_output "$(printf '%s\n' \
	    '554 5.4.6 mail loop: too many Received headers: Transaction failed' \
	    '554 5.4.6 mail loop: too many Received headers: Transaction failed')"
	# A bare LF under line_endings=strict.
	RC_BODY='Subject: x\r\n\r\nbare\nLF\r\n'
	run rc_send 'alice@example.org bob@example.org' -o line_endings=strict
	run after_data
	assert_output "$(printf '%s\n' \
	    '554 5.6.0 bare CR or LF in message (line_endings=strict): Transaction failed' \
	    '554 5.6.0 bare CR or LF in message (line_endings=strict): Transaction failed')"
	assert_equal "$(rc_all_new | wc -l)" 0
	assert_equal "$(rc_all_tmp | wc -l)" 0
}

@test "LMTP: a filter_command's reject at the end of data, once per recipient" {
	rc_mailbox alice bob carol
	printf '#!/bin/sh\ncat >/dev/null\necho "no thanks"\nexit 100\n' >"$MS_DIR/filter"
	chmod 755 "$MS_DIR/filter"
	run rc_send 'alice@example.org bob@example.org carol@example.org' \
	    -o "filter_command=$MS_DIR/filter"
	run after_data
	assert_equal "${#lines[@]}" 3
	for i in 0 1 2; do
		assert_line --index "$i" '554 5.7.1 no thanks'
	done
	assert_equal "$(rc_all_new | wc -l)" 0
	# A filter that accepts: every recipient delivered, each told so.
	printf '#!/bin/sh\ncat >/dev/null\nexit 0\n' >"$MS_DIR/filter"
	run rc_send 'alice@example.org bob@example.org carol@example.org' \
	    -o "filter_command=$MS_DIR/filter"
	run after_data
	assert_line --index 0 --regexp '^250 2\.0\.0 <alice@example\.org>: queued as '
	assert_line --index 1 --regexp '^250 2\.0\.0 <bob@example\.org>: queued as '
	assert_line --index 2 --regexp '^250 2\.0\.0 <carol@example\.org>: queued as '
	assert_equal "$(rc_all_new | wc -l)" 3
	# With a filter, the after-data quota path is per recipient as well.
	rc_maildirsize bob 1000S '0 0'
	RC_BODY=$(rc_body_of 1500)
	run rc_send 'alice@example.org bob@example.org carol@example.org' \
	    -o "filter_command=$MS_DIR/filter"
	run after_data
	assert_line --index 0 --regexp '^250 2\.0\.0 <alice@example\.org>: queued as '
	assert_line --index 1 --regexp '^552 5\.2\.2 <bob@example\.org>: mailbox is full'
	assert_line --index 2 --regexp '^250 2\.0\.0 <carol@example\.org>: queued as '
	assert_equal "$(rc_new_count bob)" 1
	assert_equal "$(rc_all_new | wc -l)" 5
}

@test "LMTP: BDAT LAST is answered per recipient; the chunks before it once" {
	rc_mailbox alice bob
	rc_maildirsize bob 1000S '0 0'
	big=$(printf 'x%.0s' $(seq 1200))
	run smtp_pipe "${RC_EHLO_MAIL}RCPT TO:<alice@example.org>\r\nRCPT TO:<bob@example.org>\r\nBDAT 17\r\nSubject: bdat\r\n\r\nBDAT 1202 LAST\r\n${big}\r\nQUIT\r\n"
	assert_success
	run ms_replies <<<"$output"
	assert_line --index 5 '250 2.0.0 17 octets received: Requested mail action okay, completed'
	assert_line --index 6 --regexp '^250 2\.0\.0 <alice@example\.org>: queued as '
	assert_line --index 7 --regexp '^552 5\.2\.2 <bob@example\.org>: mailbox is full'
	assert_line --index 8 --regexp '^221 '
	assert_equal "$(rc_new_count alice)" 1
	assert_equal "$(rc_new_count bob)" 0
	# A refused last chunk is refused once per recipient.
	run smtp_pipe "${RC_EHLO_MAIL}RCPT TO:<alice@example.org>\r\nRCPT TO:<bob@example.org>\r\nBDAT 1202 LAST\r\n${big}\r\nQUIT\r\n" -o max_message_size=1000
	run ms_replies <<<"$output"
	assert_line --index 5 --regexp '^552 5\.3\.4 '
	assert_line --index 6 --regexp '^552 5\.3\.4 '
	assert_line --index 7 --regexp '^221 '
}

@test "LMTP: pipelined, two transactions in one write, every reply in order" {
	rc_mailbox alice bob
	rc_maildirsize bob 1000S '0 0'
	big=$(rc_body_of 1500)
	run smtp_pipe "${RC_EHLO_MAIL}RCPT TO:<alice@example.org>\r\nRCPT TO:<bob@example.org>\r\nDATA\r\n${big}.\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<bob@example.org>\r\nRCPT TO:<alice@example.org>\r\nDATA\r\n${RC_BODY}.\r\nQUIT\r\n"
	run ms_replies <<<"$output"
	assert_line --index 6 --regexp '^250 2\.0\.0 <alice@example\.org>: queued as '
	assert_line --index 7 --regexp '^552 5\.2\.2 <bob@example\.org>'
	assert_line --index 8 --regexp '^250 2\.1\.0 '
	assert_line --index 11 --regexp '^354 '
	assert_line --index 12 --regexp '^250 2\.0\.0 <bob@example\.org>: queued as '
	assert_line --index 13 --regexp '^250 2\.0\.0 <alice@example\.org>: queued as '
	assert_line --index 14 --regexp '^221 '
	assert_equal "$(rc_new_count alice)" 2
	assert_equal "$(rc_new_count bob)" 1
}

@test "swaks --protocol LMTP: per-recipient replies, with and without --pipeline" {
	command -v swaks >/dev/null || skip "no swaks"
	rc_mailbox alice bob carol
	rc_maildirsize bob 1000S '0 0'
	rc_body_of 1500 | sed 's/\\r\\n/\n/g' >"$MS_DIR/msg"
	ms_cmd
	for p in "" --pipeline; do
		run swaks --pipe "${MS_CMD[*]}" --protocol LMTP --helo c.example $p \
		    --from a@b.example --to alice@example.org,bob@example.org,carol@example.org \
		    --data @"$MS_DIR/msg" --hide-informational
		assert_line --regexp '^ -> LHLO c\.example$'
		assert_line --regexp '^<-  250 2\.0\.0 <alice@example\.org>: queued as '
		assert_line --regexp '^<\*\* 552 5\.2\.2 <bob@example\.org>: mailbox is full'
		assert_line --regexp '^<-  250 2\.0\.0 <carol@example\.org>: queued as '
	done
	assert_equal "$(rc_new_count alice)" 2
	assert_equal "$(rc_new_count bob)" 0
	assert_equal "$(rc_new_count carol)" 2
}

@test "protocol: only smtp or lmtp" {
	run "$MAILSLOT" -o protocol=esmtp -t
	assert_failure
	assert_output --partial 'protocol'
	run "$MAILSLOT" -o protocol=lmtp -o "maildir=$MS_MAILDIR" -t
	assert_success
}
