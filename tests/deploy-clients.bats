#!/usr/bin/env bats
# Real clients deliver through socket activation (mailslot as the unit runs
# it, as the mailslot account), and Dovecot serves the Maildir back over
# IMAP byte for byte.  See lib/deploy.bash for the namespaces.

load 'lib/common'
load 'lib/deploy'

setup_file() { dp_setup_file; }
setup() { ms_setup; dp_setup; }

# The stored message: the three trace headers mailslot prepends, then the
# message as the client's file has it (LF line endings, dots as written),
# its last line ended.
assert_stored() {
	local c=$1 f
	f=$(dp_assert_delivered "$c")
	sed -n '1p' "$f" | grep -qx 'Return-Path: <alice@client.test>'
	sed -n '2p' "$f" | grep -qx 'Delivered-To: bob@mx.test'
	sed -n '3p' "$f" | grep -q '^Received: from client.test (unknown \[127\.0\.0\.1\])$'
	sed -n '4p' "$f" | grep -q $'^\tby mx.test (mailslot) with ESMTP id '
	sed -n '5p' "$f" | grep -q $'^\tfor <bob@mx.test>; '
	tail -n +6 "$f" >"$DP_T/body"
	{ cat "$DP_T/msg-$c"; echo; } >"$DP_T/want"
	ms_assert_same "$DP_T/want" "$DP_T/body" "$c: stored bytes"
}

@test "swaks delivers through socket activation" {
	dp_ns ns_clients swaks
	assert_stored swaks
}

@test "swaks --pipeline delivers through socket activation" {
	dp_ns ns_clients swaks-pipeline
	# MAIL, RCPT and DATA went out as one group, before any reply to them.
	run grep -A2 -- '^ -> MAIL FROM:' "$DP_T/client-swaks-pipeline.log"
	assert_output $' -> MAIL FROM:<alice@client.test>\n -> RCPT TO:<bob@mx.test>\n -> DATA'
	assert_stored swaks-pipeline
}

@test "msmtp delivers through socket activation" {
	dp_ns ns_clients msmtp
	assert_stored msmtp
}

@test "curl smtp:// --crlf delivers through socket activation" {
	dp_ns ns_clients curl-crlf
	assert_stored curl-crlf
}

@test "curl smtp:// without --crlf (bare LFs) delivers, lines as sent" {
	dp_ns ns_clients curl-lf
	assert_stored curl-lf
}

@test "python smtplib delivers through socket activation" {
	dp_ns ns_clients smtplib
	assert_stored smtplib
}

@test "Dovecot serves every message back over IMAP byte for byte" {
	dp_ns ns_dovecot
	local n i f found
	n=$(find "$DP_MAILDIR/new" "$DP_MAILDIR/cur" -type f | wc -l)
	[ "$n" -eq "${#DP_CLIENTS[@]}" ] || fail "$n messages stored"
	[ "$(find "$DP_T/imap" -type f ! -name '*.size' | wc -l)" -eq "$n" ] ||
		fail "IMAP gave $(find "$DP_T/imap" -type f ! -name '*.size' | wc -l) of $n: $(cat "$DP_T/dovecot.log")"
	# Stored with LF, served with CRLF: each stored file, LF -> CRLF, is one
	# fetched message exactly, and RFC822.SIZE (from ,W= in the name) is its
	# length.
	for f in $(find "$DP_MAILDIR/new" "$DP_MAILDIR/cur" -type f); do
		sed 's/$/\r/' "$f" >"$DP_T/want"
		found=
		for i in $(seq 1 "$n"); do
			if cmp -s "$DP_T/want" "$DP_T/imap/$i"; then
				found=$i
				break
			fi
		done
		[ -n "$found" ] || fail "no IMAP message is $f (CRLF): $(cat -v "$DP_T/want")"
		[ "$(cat "$DP_T/imap/$found.size")" -eq "$(stat -c %s "$DP_T/imap/$found")" ]
		[[ $f == *",W=$(stat -c %s "$DP_T/imap/$found")"* ]] || fail "W= of $f"
	done
	! grep -qi 'error\|corrupt' "$DP_T/dovecot.log"
}
