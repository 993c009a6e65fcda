#!/usr/bin/env bats
# Recipients, part 3: Maildir++ quota.  The maildirsize mailslot creates
# and appends to is compared byte for byte with what Dovecot's own
# delivery agent (dovecot-lda, run standalone as nobody, no service) writes
# for the same tree; then 552 5.2.2 at RCPT and at the end of data, the
# mailbox's own maildirsize winning over `quota`, and broken files.

load 'lib/common'
load 'lib/recipients'

DOVECOT_LDA=/usr/lib/dovecot/dovecot-lda

setup() {
	rc_setup
}

teardown() {
	rc_teardown
}

# A Maildir with mail in INBOX (new/ and cur/, with and without S=, one
# S= larger than the file as a compressed message has), in a folder, in
# Trash, and a half-written file in tmp/ that counts for nothing.
quota_tree() {
	local d=$1
	mkdir -p "$d"/{cur,new,tmp} "$d"/.work/{cur,new,tmp} "$d"/.Trash/{cur,new,tmp}
	printf 'Subject: a\n\nhello\n' >"$d/new/1700000000.M1P1Q1.h,S=20,W=22"
	printf 'Subject: c\n\nhello again\n' >"$d/new/1700000000.M1P1Q4.h,S=26,W=29"
	printf 'x\n' >"$d/cur/1700000001.M1P1Q2.h:2,S"
	printf 'Subject: z\n\nzipped\n' >"$d/cur/1700000001.M1P1Q5.h,S=999,W=1003:2,S"
	printf 'Subject: b\n\n0123456789\n' >"$d/.work/new/1700000002.M1P1Q3.h,S=25,W=28"
	printf 'Subject: t\n\ntrash\n' >"$d/.Trash/cur/1700000003.M1P1Q6.h,S=20,W=23:2,ST"
	printf 'partial' >"$d/tmp/1700000004.M1P1Q7.h"
}

# Deliver one message into Maildir $1 with dovecot-lda, quota rule $2
# (Dovecot's syntax); Dovecot writes $1/maildirsize.
dovecot_deliver() {
	[ -x "$DOVECOT_LDA" ] || skip "no $DOVECOT_LDA (Debian package dovecot-core)"
	command -v setpriv >/dev/null || skip "no setpriv"
	cat >"$MS_DIR/dovecot.conf" <<-EOF
	mail_location = maildir:$1
	mail_plugins = quota
	log_path = /dev/stderr
	protocols =
	ssl = no
	plugin {
	  quota = maildir:User quota
	  quota_rule = *:$2
	}
	EOF
	chmod 644 "$MS_DIR/dovecot.conf"
	rc_chown_nobody "$1"
	printf 'Subject: by dovecot\n\nbody\n' |
	    setpriv --reuid=nobody --regid="$RC_NOBODY_GROUP" --clear-groups \
	    env -i HOME="$MS_DIR" USER=bob PATH=/usr/bin:/bin \
	    "$DOVECOT_LDA" -c "$MS_DIR/dovecot.conf" -f a@b.example 2>"$MS_DIR/dovecot.log" ||
	    fail "dovecot-lda failed: $(cat "$MS_DIR/dovecot.log")"
	[ -f "$1/maildirsize" ] || fail "dovecot-lda wrote no maildirsize: $(cat "$MS_DIR/dovecot.log")"
}

# S= of the newest file in new/ of Maildir $1.
new_size() {
	local f
	f=$(find "$1/new" -type f -printf '%T@ %f\n' | sort -n | tail -n 1 | cut -d' ' -f2)
	[[ $f =~ ,S=([0-9]+) ]] || fail "no S= in $f"
	echo "${BASH_REMATCH[1]}"
}

# For each "QUOTA|DOVECOT RULE" argument: the same tree as a mailbox and as
# Dovecot's Maildir; Dovecot delivers one message, mailslot one; mailslot's
# maildirsize must be Dovecot's but for the last line, which is "<S> 1"
# for each of them.
compare_with_dovecot() {
	local c q rule
	for c in "$@"; do
		q=${c%%|*} rule=${c#*|}
		rm -rf "$RC_MB/bob" "$MS_DIR/dv"
		quota_tree "$RC_MB/bob"
		quota_tree "$MS_DIR/dv"
		dovecot_deliver "$MS_DIR/dv" "$rule"
		assert_equal "$(tail -n 1 "$MS_DIR/dv/maildirsize")" "$(new_size "$MS_DIR/dv") 1"

		run rc_send 'bob@example.org' -o "quota=$q"
		assert_line --regexp '^250 2\.0\.0 queued as '
		{ head -n -1 "$MS_DIR/dv/maildirsize"; echo "$(new_size "$RC_MB/bob") 1"; } \
		    >"$MS_DIR/want"
		ms_assert_same "$MS_DIR/want" "$RC_MB/bob/maildirsize" "maildirsize for quota=$q"
	done
}

@test "maildirsize from a scan, then '<S> 1', as Dovecot writes it: quota in NS,MC form" {
	rc_for_nobody
	compare_with_dovecot '1000000S,50C|storage=1000000B:messages=50' '50C|messages=50' \
	    '1000000S|storage=1000000B'
}

@test "maildirsize as Dovecot writes it: a quota given as a size (10M, 10485760) or C before S" {
	rc_for_nobody
	compare_with_dovecot '10M|storage=10M' '10485760|storage=10485760B' \
	    '50C,1000000S|storage=1000000B:messages=50'
}

@test "Dovecot keeps mailslot's maildirsize and appends to it" {
	rc_for_nobody
	quota_tree "$RC_MB/bob"
	run rc_send 'bob@example.org' -o 'quota=1000000S,50C'
	assert_line --regexp '^250 2\.0\.0 queued as '
	cp "$RC_MB/bob/maildirsize" "$MS_DIR/ours"
	dovecot_deliver "$RC_MB/bob" 'storage=1000000B:messages=50'
	{ cat "$MS_DIR/ours"; echo "$(new_size "$RC_MB/bob") 1"; } >"$MS_DIR/want"
	ms_assert_same "$MS_DIR/want" "$RC_MB/bob/maildirsize" 'maildirsize after Dovecot'
}

@test "each delivery appends '<S> 1'; a folder's mail counts for its mailbox" {
	rc_mailbox bob
	rc_folder bob work
	run rc_send 'bob@example.org' -o quota=1M
	assert_line --regexp '^250 2\.0\.0 queued as '
	s1=$(new_size "$RC_MB/bob")
	run rc_send 'bob+work@example.org' -o quota=1M
	assert_line --regexp '^250 2\.0\.0 queued as '
	s2=$(new_size "$RC_MB/bob/.work")
	[ ! -e "$RC_MB/bob/.work/maildirsize" ] || fail "a folder got its own maildirsize"
	assert_equal "$(tail -n 2 "$RC_MB/bob/maildirsize")" "$s1 1"$'\n'"$s2 1"
	# Without `quota` and without a maildirsize there is no quota: none is made.
	rc_mailbox carol
	run rc_send 'carol@example.org'
	assert_line --regexp '^250 2\.0\.0 queued as '
	[ ! -e "$RC_MB/carol/maildirsize" ] || fail "maildirsize made without a quota"
}

@test "one file linked into three Maildirs: each maildirsize gets '<S> 1'; one over quota refuses it before any link" {
	rc_mailbox bob carol dave
	run rc_send 'bob@example.org carol@example.org dave@example.org' -o quota=1M
	assert_line --regexp '^250 2\.0\.0 queued as '
	assert_equal "$(stat -c %h "$(rc_new_file bob)")" 3
	s=$(new_size "$RC_MB/bob")
	for who in bob carol dave; do
		assert_equal "$(new_size "$RC_MB/$who")" "$s"
		assert_equal "$(tail -n 1 "$RC_MB/$who/maildirsize")" "$s 1"
	done
	# carol near full: the whole message is refused, no Maildir gets it,
	# no maildirsize is charged.
	printf '1000000S\n%s 1\n' "$((1000000 - s + 1))" >"$RC_MB/carol/maildirsize"
	for who in bob carol dave; do cp "$RC_MB/$who/maildirsize" "$MS_DIR/before.$who"; done
	run rc_send 'bob@example.org carol@example.org dave@example.org' -o quota=1M
	assert_line --regexp '^552 5\.2\.2 '
	refute_line --regexp '^250 2\.0\.0 '
	assert_equal "$(rc_all_new | wc -l)" 3
	assert_equal "$(rc_all_tmp | wc -l)" 0
	for who in bob carol dave; do
		ms_assert_same "$MS_DIR/before.$who" "$RC_MB/$who/maildirsize" "maildirsize of $who"
	done
}

@test "552 5.2.2 at RCPT when the mailbox is already full, by octets or by count" {
	rc_mailbox bob carol
	rc_maildirsize bob 1000S '1000 3'
	run rc_rcpt bob@example.org
	assert_reply 552 5.2.2 'Requested mail action aborted: exceeded storage allocation'
	rc_maildirsize bob 1000S '999 3'
	run rc_rcpt bob@example.org
	assert_reply 250 2.1.5 'Requested mail action okay, completed'
	# Deletions are negative lines.  Over quota with more than one count
	# line, the mailbox is counted again: its 1000 octets keep it full.
	rc_maildirsize bob 1000S '800 3' '400 1' '-200 -1'
	printf 'x\n' >"$RC_MB/bob/new/1700000000.M1P1Q1.h,S=1000,W=1010"
	run rc_rcpt bob@example.org
	assert_reply 552 5.2.2 'Requested mail action aborted: exceeded storage allocation'
	assert_equal "$(cat "$RC_MB/bob/maildirsize")" $'1000S\n1000 1'
	rm "$RC_MB/bob/new/1700000000.M1P1Q1.h,S=1000,W=1010"
	rc_maildirsize bob 1000S '800 3' '400 1' '-201 -1'
	run rc_rcpt bob@example.org
	assert_reply 250 2.1.5 'Requested mail action okay, completed'
	rc_maildirsize bob 0S,5C '100 5'
	run rc_rcpt bob@example.org
	assert_reply 552 5.2.2 'Requested mail action aborted: exceeded storage allocation'
	rc_maildirsize bob 5C '100000 4'
	run rc_rcpt bob@example.org
	assert_reply 250 2.1.5 'Requested mail action okay, completed'
	# SIZE= tells at RCPT what the message will need.
	rc_maildirsize bob 1000S '600 3'
	run reply_to 'EHLO c.example\r\nMAIL FROM:<a@b.example> SIZE=500\r\n' 'RCPT TO:<bob@example.org>'
	assert_reply 552 5.2.2 'Requested mail action aborted: exceeded storage allocation'
	run reply_to 'EHLO c.example\r\nMAIL FROM:<a@b.example> SIZE=300\r\n' 'RCPT TO:<bob@example.org>'
	assert_reply 250 2.1.5 'Requested mail action okay, completed'
	# A full mailbox does not stop the others.
	rc_maildirsize bob 1000S '1000 3'
	run rc_send 'bob@example.org carol@example.org'
	rc_assert_nth 4 '^552 5\.2\.2 '
	rc_assert_nth 5 '^250 2\.1\.5 '
	assert_line --regexp '^250 2\.0\.0 queued as '
	assert_equal "$(rc_new_count bob)" 0
	rc_new_file carol >/dev/null
}

@test "552 5.2.2 at the end of data when the message would go over: refused whole" {
	rc_mailbox bob carol
	rc_maildirsize bob 2000S '900 3'
	cp "$RC_MB/bob/maildirsize" "$MS_DIR/before"
	RC_BODY=$(rc_body_of 1500)
	run rc_send 'bob@example.org carol@example.org' -o quota=10M
	assert_success
	rc_assert_nth 4 '^250 2\.1\.5 '
	rc_assert_nth 5 '^250 2\.1\.5 '
	assert_line --regexp '^552 5\.2\.2 '
	refute_line --regexp '^250 2\.0\.0 '
	assert_equal "$(rc_all_new | wc -l)" 0
	assert_equal "$(rc_all_tmp | wc -l)" 0
	ms_assert_same "$MS_DIR/before" "$RC_MB/bob/maildirsize" 'maildirsize after a refusal'
	# A message that fits goes in.
	RC_BODY='Subject: small\r\n\r\nhi\r\n'
	run rc_send 'bob@example.org carol@example.org' -o quota=10M
	assert_line --regexp '^250 2\.0\.0 queued as '
	assert_equal "$(rc_all_new | wc -l)" 2
}

@test "the mailbox's own maildirsize wins over quota, both ways" {
	rc_mailbox bob carol
	# Its own is smaller than `quota`: its own refuses.
	rc_maildirsize bob 1000S '0 0'
	RC_BODY=$(rc_body_of 1500)
	run rc_send 'bob@example.org' -o quota=10M
	assert_line --regexp '^552 5\.2\.2 '
	assert_equal "$(rc_new_count bob)" 0
	# Its own is larger than `quota`: its own lets the message in.
	rc_maildirsize carol 10485760S '0 0'
	run rc_send 'carol@example.org' -o quota=100
	assert_line --regexp '^250 2\.0\.0 queued as '
	rc_new_file carol >/dev/null
	assert_equal "$(head -n 1 "$RC_MB/carol/maildirsize")" 10485760S
	# And a mailbox without one takes `quota`.
	rc_mailbox dave
	run rc_send 'dave@example.org' -o quota=100
	assert_line --regexp '^552 5\.2\.2 '
	assert_equal "$(rc_new_count dave)" 0
}

@test "a malformed maildirsize: 451 at RCPT with a log line; the others still get theirs" {
	rc_mailbox bob carol
	local -a bad=('' 'garbage\n' '1000S\nabc def\n' '1000X\n0 0\n' '1000S\n1 2 3\n'
	    'S\n0 0\n' '-5S\n0 0\n' '1000S\n10\n' '1000S\r\n10 1\r\n' '\x00\x01\x02\n')
	local b
	for b in "${bad[@]}"; do
		printf '%b' "$b" >"$RC_MB/bob/maildirsize"
		run rc_send 'bob@example.org carol@example.org' -o quota=1M
		[ "$status" -lt 128 ] || fail "crashed on \"$b\" (status $status)"
		echo "maildirsize: $b"
		rc_assert_nth 4 '^451 4\.3\.0 '
		rc_assert_nth 5 '^250 2\.1\.5 '
		assert_line --regexp '^250 2\.0\.0 queued as '
		run grep -F "event=error op=quota path=$RC_MB/bob/maildirsize error=\"malformed maildirsize\"" "$MS_DIR/log"
		assert_success
	done
	assert_equal "$(rc_new_count bob)" 0
	assert_equal "$(rc_new_count carol)" "${#bad[@]}"
	[ ! -e "$MS_MAILDIR" ] || assert_equal "$(ms_new_count)" 0
	# A directory where the file should be.
	rm -f "$RC_MB/bob/maildirsize"
	mkdir "$RC_MB/bob/maildirsize"
	run rc_rcpt bob@example.org -o quota=1M
	assert_reply 451 4.3.0 'Requested action aborted: local error in processing'
}

@test "a maildirsize with a number beyond 64 bits is malformed: 451, not 552" {
	rc_mailbox bob
	rc_maildirsize bob 1000S '99999999999999999999999 1'
	run rc_rcpt bob@example.org
	assert_reply 451 4.3.0 'Requested action aborted: local error in processing'
	rc_maildirsize bob 99999999999999999999999S '0 0'
	run rc_rcpt bob@example.org
	assert_reply 451 4.3.0 'Requested action aborted: local error in processing'
	# Lines that add up past 2^63 are no better.
	printf '1000S\n9223372036854775807 1\n9223372036854775807 1\n-9223372036854775807 -1\n-9223372036854775807 -1\n' \
	    >"$RC_MB/bob/maildirsize"
	run rc_rcpt bob@example.org
	refute_output --regexp '^552 '
}

@test "a maildirsize that breaks between RCPT and the end of data: 451, nothing stored" {
	rc_mailbox bob carol
	rc_maildirsize bob 1000000S '0 0'
	run smtp_exec --send "${RC_EHLO_MAIL}RCPT TO:<bob@example.org>\r\nRCPT TO:<carol@example.org>\r\n" \
	    --wait '<carol@example.org>' --run "printf 'broken\n' >'$RC_MB/bob/maildirsize'" \
	    --send "DATA\r\n${RC_BODY}.\r\nQUIT\r\n" --wait '221 '
	rc_assert_nth 6 '^354 '
	rc_assert_nth 7 '^451 4\.3\.0 '
	assert_equal "$(rc_all_new | wc -l)" 0
	assert_equal "$(rc_all_tmp | wc -l)" 0
}

@test "a quota that is not Maildir++ is refused: 421 4.3.5, and -t says why" {
	rc_mailbox bob
	for q in 10X S ,5C 5C5S -1 '10 M'; do
		run smtp_pipe 'QUIT\r\n' -o "quota=$q"
		assert_output --regexp '^421 4\.3\.5 '
		run grep -F "quota: \\\"$q\\\" is not a Maildir++ quota" "$MS_DIR/log"
		assert_success
	done
	run "$MAILSLOT" "${MS_OPTS[@]}" -o quota=10X -t
	assert_failure
	assert_output --partial 'quota: "10X" is not a Maildir++ quota'
}

# A maildirsize of exactly $2 octets in mailbox $1: header $3, then count
# lines "0 0", the last padded with blanks (as Courier pads its lines) to
# make up the size.  Every count is 0.
sized_maildirsize() {
	local f=$RC_MB/$1/maildirsize n=$2 h=$3 left k
	left=$((n - ${#h} - 1))
	k=$(( (left - 14) / 4 ))
	{
		printf '%s\n' "$h"
		for ((i = 0; i < k; i++)); do printf '0 0\n'; done
		printf "%$((left - 4 * k - 1))s\n" '0 0'
	} >"$f"
	assert_equal "$(stat -c %s "$f")" "$n"
}

@test "quota=3000S: emptied by a plain rm, the mailbox takes mail again (recalculated, as Maildir++ says)" {
	rc_mailbox bob
	RC_BODY=$(rc_body_of 1100)
	run rc_send 'bob@example.org' -o quota=3000S
	assert_line --regexp '^250 2\.0\.0 queued as '
	s=$(new_size "$RC_MB/bob")
	# Two fit, a third does not.
	[ "$s" -gt 1000 ] && [ "$s" -le 1500 ] || fail "a message of $s octets"
	run rc_send 'bob@example.org' -o quota=3000S
	assert_line --regexp '^250 2\.0\.0 queued as '
	run rc_send 'bob@example.org' -o quota=3000S
	assert_line --regexp '^552 5\.2\.2 '
	refute_line --regexp '^250 2\.0\.0 '
	# Three count lines and over quota: counted again, still full.  (The
	# two differ by an octet when the pids in their Received ids do.)
	t=0
	for f in "$RC_MB/bob"/new/*; do
		[[ $f =~ ,S=([0-9]+) ]] || fail "no S= in $f"
		t=$((t + BASH_REMATCH[1]))
	done
	[ "$t" -gt 2000 ] && [ "$t" -le 3000 ] || fail "two messages of $t octets"
	assert_equal "$(cat "$RC_MB/bob/maildirsize")" "3000S"$'\n'"$t 2"
	# The user deletes everything without telling maildirsize.
	rm "$RC_MB/bob"/new/*
	# One count line, written just now: trusted (the rules give it 15 minutes).
	run rc_send 'bob@example.org' -o quota=3000S
	assert_line --regexp '^552 5\.2\.2 '
	# Once it is 15 minutes old, a message that would go over has it counted again.
	touch -d '16 minutes ago' "$RC_MB/bob/maildirsize"
	run rc_send 'bob@example.org' -o quota=3000S
	assert_line --regexp '^250 2\.0\.0 queued as '
	assert_equal "$(cat "$RC_MB/bob/maildirsize")" "3000S"$'\n'"0 0"$'\n'"$(new_size "$RC_MB/bob") 1"
	assert_equal "$(rc_new_count bob)" 1
}

@test "recalculated when over quota with more than one count line: the scan's numbers decide" {
	quota_tree "$RC_MB/bob"		# 1092 octets in 6 messages, Trash and a folder included
	# One count line, fresh, over: trusted, untouched.
	rc_maildirsize bob 2000S '2000 7'
	cp "$RC_MB/bob/maildirsize" "$MS_DIR/before"
	run rc_rcpt bob@example.org
	assert_reply 552 5.2.2 'Requested mail action aborted: exceeded storage allocation'
	ms_assert_same "$MS_DIR/before" "$RC_MB/bob/maildirsize" 'one count line, fresh'
	# The same numbers on two lines: counted again, and the count lets it in.
	rc_maildirsize bob 2000S '1000 3' '1000 4'
	run rc_rcpt bob@example.org
	assert_reply 250 2.1.5 'Requested mail action okay, completed'
	printf '2000S\n1092 6\n' >"$MS_DIR/want"
	ms_assert_same "$MS_DIR/want" "$RC_MB/bob/maildirsize" 'after two count lines'
	# Two lines under quota: nothing to recalculate, nothing written.
	rc_maildirsize bob 2000S '10 1' '10 1'
	cp "$RC_MB/bob/maildirsize" "$MS_DIR/before"
	run rc_rcpt bob@example.org
	assert_reply 250 2.1.5 'Requested mail action okay, completed'
	ms_assert_same "$MS_DIR/before" "$RC_MB/bob/maildirsize" 'two lines, under quota'
	# Counts that add up below zero are wrong whatever the quota: counted again.
	rc_maildirsize bob 2000S '-5 -1'
	run rc_rcpt bob@example.org
	assert_reply 250 2.1.5 'Requested mail action okay, completed'
	ms_assert_same "$MS_DIR/want" "$RC_MB/bob/maildirsize" 'after negative counts'
	# Over by the file, and still over by the count: 1092 + SIZE=1000 > 2000.
	rc_maildirsize bob 2000S '500 1' '600 1'
	run reply_to 'EHLO c.example\r\nMAIL FROM:<a@b.example> SIZE=1000\r\n' 'RCPT TO:<bob@example.org>'
	assert_reply 552 5.2.2 'Requested mail action aborted: exceeded storage allocation'
	ms_assert_same "$MS_DIR/want" "$RC_MB/bob/maildirsize" 'over after the count'
	assert_equal "$(rc_tmp_count bob)" 1	# quota_tree's partial file, nothing of ours
}

@test "recalculated when over quota and maildirsize is 15 minutes old: 14 minutes is not" {
	rc_mailbox bob
	printf 'x\n' >"$RC_MB/bob/cur/1700000000.M1P1Q1.h:2,S"	# no S=: its size from stat
	rc_maildirsize bob 1000S '1000 5'
	cp "$RC_MB/bob/maildirsize" "$MS_DIR/before"
	touch -d '14 minutes ago' "$RC_MB/bob/maildirsize"
	run rc_rcpt bob@example.org
	assert_reply 552 5.2.2 'Requested mail action aborted: exceeded storage allocation'
	ms_assert_same "$MS_DIR/before" "$RC_MB/bob/maildirsize" '14 minutes old'
	touch -d '16 minutes ago' "$RC_MB/bob/maildirsize"
	run rc_rcpt bob@example.org
	assert_reply 250 2.1.5 'Requested mail action okay, completed'
	printf '1000S\n2 1\n' >"$MS_DIR/want"
	ms_assert_same "$MS_DIR/want" "$RC_MB/bob/maildirsize" '16 minutes old'
	# Old but under quota: the file is trusted, and left alone.
	touch -d '2 hours ago' "$RC_MB/bob/maildirsize"
	run rc_rcpt bob@example.org
	assert_reply 250 2.1.5 'Requested mail action okay, completed'
	ms_assert_same "$MS_DIR/want" "$RC_MB/bob/maildirsize" 'old, under quota'
}

@test "recalculated when maildirsize is 5120 octets or more, whatever it says: 5119 is read" {
	quota_tree "$RC_MB/bob"		# 1092 octets
	# 5119 octets of zero counts (Courier's padded lines included): read, 250.
	sized_maildirsize bob 5119 1000S
	cp "$RC_MB/bob/maildirsize" "$MS_DIR/before"
	run rc_rcpt bob@example.org
	assert_reply 250 2.1.5 'Requested mail action okay, completed'
	ms_assert_same "$MS_DIR/before" "$RC_MB/bob/maildirsize" '5119 octets'
	# 5120: counted again, and the count decides: 1092 > 1000.
	sized_maildirsize bob 5120 1000S
	run rc_rcpt bob@example.org
	assert_reply 552 5.2.2 'Requested mail action aborted: exceeded storage allocation'
	printf '1000S\n1092 6\n' >"$MS_DIR/want"
	ms_assert_same "$MS_DIR/want" "$RC_MB/bob/maildirsize" '5120 octets'
	# Far longer, with its tail cut mid-line: only the header is read.
	sized_maildirsize bob 9000 3000S
	printf '12 ' >>"$RC_MB/bob/maildirsize"
	run rc_rcpt bob@example.org
	assert_reply 250 2.1.5 'Requested mail action okay, completed'
	printf '3000S\n1092 6\n' >"$MS_DIR/want"
	ms_assert_same "$MS_DIR/want" "$RC_MB/bob/maildirsize" '9003 octets'
	assert_equal "$(rc_tmp_count bob)" 1	# quota_tree's partial file, nothing of ours
}

# The number of the first line of $MS_DIR/st after line $2 (default 0)
# that matches the extended REGEX $1; 0: none.
st_line() {
	RE=$1 FROM=${2:-0} awk '
	    NR > ENVIRON["FROM"] + 0 && $0 ~ ENVIRON["RE"] { print NR; found = 1; exit }
	    END { if (!found) print 0 }' "$MS_DIR/st"
}

@test "maildirsize is written whole: tmp/, fsync, link or rename, fsync of the mailbox, then the reply" {
	command -v strace >/dev/null || skip "no strace"
	rc_skip_under_wrapper
	rc_mailbox bob
	local mb f w l s
	mb=$(printf '%s' "$RC_MB/bob" | sed 's/[][\.*^$(){}+?|]/\\&/g')
	# Made: linked where there was none.  Recalculated: renamed over the old one.
	for how in link rename; do
		[ "$how" = rename ] && printf '1000S\n600 1\n600 1\n' >"$RC_MB/bob/maildirsize"
		MAILSLOT_WRAPPER="strace -f -qq -y -s 4096 -o $MS_DIR/st -e trace=openat,fsync,linkat,renameat,renameat2,rename,write"
		run rc_rcpt bob@example.org -o quota=1000S
		MAILSLOT_WRAPPER=
		assert_reply 250 2.1.5 'Requested mail action okay, completed'
		assert_equal "$(cat "$RC_MB/bob/maildirsize")" $'1000S\n0 0'
		f=$(st_line "openat\\([0-9]+<$mb>, \"(tmp/[^\"]*maildirsize)\", O_WRONLY\\|O_CREAT\\|O_EXCL")
		[ "$f" -gt 0 ] || fail "$how: no file made in tmp/: $(cat "$MS_DIR/st")"
		s=$(st_line "fsync\\([0-9]+<$mb/tmp/[^>]*maildirsize>\\) = 0" "$f")
		if [ "$how" = link ]; then
			l=$(st_line "linkat\\([0-9]+<$mb>, \"tmp/[^\"]*\", [0-9]+<$mb>, \"maildirsize\", 0\\) = 0" "$s")
		else
			l=$(st_line "rename(at2?)?\\([0-9]+<$mb>, \"tmp/[^\"]*\", [0-9]+<$mb>, \"maildirsize\"(, 0)?\\) = 0" "$s")
		fi
		w=$(st_line 'write\([0-9]+<[^>]*>, "([^"]*\\n)?250 2\.1\.5 ')
		[ "$s" -gt 0 ] && [ "$l" -gt "$s" ] || fail "$how: not synced ($s) before the $how ($l)"
		d=$(st_line "fsync\\([0-9]+<$mb>\\) = 0" "$l")
		[ "$d" -gt 0 ] && [ "$d" -lt "$w" ] ||
			fail "$how: the mailbox is not synced after the $how ($l) and before the reply ($w): $d"
		assert_equal "$(rc_tmp_count bob)" 0
	done
}
