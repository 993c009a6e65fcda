#!/usr/bin/env bats
# Every command of the seed table, with every reply code that a catch-all
# Maildir set-up can give, one test each.  Replies are checked for the
# code, the enhanced status code and the catalogue's text (the detail
# before the text is free); stored bytes are checked in delivery.bats.

load 'lib/common'

setup() { ms_setup; }
teardown() { ms_teardown; }

OK='Requested mail action okay, completed'
SYNTAX='Syntax error in parameters or arguments'
SEQ='Bad sequence of commands'
UNREC='Syntax error, command unrecognized'
NOTIMPL='Command not implemented'
NOTALLOWED='Requested action not taken: mailbox name not allowed'
STORAGE='Requested action not taken: insufficient system storage'
TOOBIG='Requested mail action aborted: exceeded storage allocation'
PARAM='MAIL FROM/RCPT TO parameters not recognized or not implemented'
CLOSING='Service not available, closing transmission channel'

E='EHLO c.example\r\n'
EM='EHLO c.example\r\nMAIL FROM:<a@b.example>\r\n'
EMR='EHLO c.example\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<bob@example.org>\r\n'

# ---- connection -----------------------------------------------------------

@test "greeting: 220 <hostname> ESMTP, no enhanced code" {
	run smtp_pipe 'QUIT\r\n'
	assert_success
	assert_line --index 0 '220 mx.test ESMTP mailslot ready'
}

@test "greeting: 421 4.3.5 on a bad value (-o max_errors=abc), reason in the log only" {
	run smtp_pipe 'EHLO c.example\r\nQUIT\r\n' -o max_errors=abc
	assert_equal "$status" 100
	assert_output '421 4.3.5 mx.test Service not available, closing transmission channel'
	run grep -c 'max_errors' "$MS_DIR/log"
	assert_success
	run grep -F 'abc' "$MS_DIR/log"
	assert_success
}

@test "greeting: 421 4.3.5 on an unknown key" {
	run smtp_pipe 'QUIT\r\n' -o no_such_key=1
	assert_equal "$status" 100
	assert_output --regexp '^421 4\.3\.5 [^ ]+ Service not available, closing transmission channel$'
	run grep -F 'no_such_key' "$MS_DIR/log"
	assert_success
}

@test "greeting: a bad line in -f FILE names the file:line in the log" {
	printf '# comment\nmax_recipients = 10\nvrfy = perhaps\n' >"$MS_DIR/conf"
	run smtp_pipe 'QUIT\r\n' -f "$MS_DIR/conf"
	assert_equal "$status" 100
	assert_output --regexp '^421 4\.3\.5 '
	run grep -F "$MS_DIR/conf:3" "$MS_DIR/log"
	assert_success
	assert_output --partial 'vrfy'
}

@test "greeting: 421 when the Maildir cannot be opened" {
	: >"$MS_DIR/plainfile"
	MS_OPTS+=(-o "maildir=$MS_DIR/plainfile/Maildir")
	run smtp_pipe 'EHLO c.example\r\nQUIT\r\n'
	assert_equal "$status" 111
	assert_output --regexp '^421 4\.[0-9]+\.[0-9]+ mx\.test Service not available, closing transmission channel$'
}

@test "greeting: the Maildir is created 0700 when missing" {
	run smtp_pipe 'QUIT\r\n'
	assert_success
	run stat -c %a "$MS_MAILDIR" "$MS_MAILDIR/tmp" "$MS_MAILDIR/new" "$MS_MAILDIR/cur"
	assert_output "$(printf '700\n700\n700\n700')"
}

@test "greeting: started as root without user, 421 4.3.5 and nothing stored; with user, new/ is the account's" {
	[ "$(id -u)" = 0 ] || skip "needs root"
	# MS_OPTS without the user= that ms_setup adds as root.
	MS_OPTS=(-o "maildir=$MS_MAILDIR" -o "hostname=$MS_HOST")
	local msg="${EMR}DATA\r\nSubject: x\r\n\r\nhi\r\n.\r\nQUIT\r\n"
	run smtp_pipe "$msg"
	assert_equal "$status" 100
	# One reply, before any input is read: nothing after the greeting.
	assert_output '421 4.3.5 mx.test Service not available, closing transmission channel'
	run grep -cF 'event=config problem="started as root without user: refusing to deliver as root"' \
	    "$MS_DIR/log"
	assert_output 1
	[ ! -e "$MS_MAILDIR" ] || fail "the Maildir was made: $(find "$MS_MAILDIR")"
	# -t is not a delivery: it still checks the configuration as root.
	run "$MAILSLOT" -t "${MS_OPTS[@]}"
	assert_success
	MS_OPTS+=(-o user=mailslot-test)
	run smtp_pipe "$msg"
	assert_success
	assert_line --regexp '^250 2\.0\.0 queued as '
	run stat -c '%U %a' "$(ms_new_file)"
	assert_output 'mailslot-test 600'
}

# ---- HELO / EHLO ------------------------------------------------------------

@test "HELO: 250 <hostname>, no enhanced code" {
	run reply_to '' 'HELO c.example'
	assert_success
	assert_output '250 mx.test Requested mail action okay, completed'
}

@test "HELO: an address literal is a valid argument" {
	run reply_to '' 'HELO [192.0.2.1]'
	assert_success
	assert_output '250 mx.test Requested mail action okay, completed'
}

@test "HELO: 501 without a domain" {
	run reply_to '' 'HELO'
	assert_success
	assert_reply 501 5.5.4 "$SYNTAX"
}

@test "HELO: 501 for invalid domains" {
	local d
	for d in 'bad..example' '-bad.example' 'bad-.example' 'exa mple.example' \
	    'a@b.example' '[300.1.1.1]' 'bad.example.'; do
		run reply_to '' "HELO $d"
		assert_success
		assert_reply 501 5.5.4 "$SYNTAX"
	done
}

@test "EHLO: 250 multi-line with the keywords, no enhanced codes" {
	run reply_to '' 'EHLO c.example'
	assert_success
	assert_line --index 0 '250-mx.test Requested mail action okay, completed'
	local kw
	for kw in PIPELINING 'SIZE 33554432' 8BITMIME ENHANCEDSTATUSCODES SMTPUTF8 \
	    HELP SOML SAML VRFY EXPN; do
		assert_line --regexp "^250[- ]$kw\$"
	done
	refute_line --regexp '^250[- ]SEND$'
	refute_line --regexp '^250[- ]TURN$'
	refute_line --regexp '^250[- ][245]\.'
	# continuation lines, then exactly one last line
	run bash -c "printf '%s\n' \"\$1\" | grep -vc '^250-'" _ "$output"
	assert_output 1
}

@test "EHLO: SIZE shows max_message_size" {
	run reply_to '' 'EHLO c.example' -o max_message_size=1000
	assert_success
	assert_line --regexp '^250[- ]SIZE 1000$'
}

@test "EHLO: VRFY and EXPN disappear with vrfy=no and expn=no" {
	run reply_to '' 'EHLO c.example' -o vrfy=no
	assert_success
	refute_line --regexp '^250[- ]VRFY$'
	assert_line --regexp '^250[- ]EXPN$'
	run reply_to '' 'EHLO c.example' -o expn=no
	assert_success
	assert_line --regexp '^250[- ]VRFY$'
	refute_line --regexp '^250[- ]EXPN$'
}

@test "EHLO: 501 without a domain, 501 for an invalid one" {
	run reply_to '' 'EHLO'
	assert_success
	assert_reply 501 5.5.4 "$SYNTAX"
	run reply_to '' 'EHLO bad..example'
	assert_success
	assert_reply 501 5.5.4 "$SYNTAX"
}

@test "EHLO again resets the transaction, like RSET" {
	run reply_to "${EM}EHLO c.example\r\n" 'RCPT TO:<bob@example.org>'
	assert_success
	assert_reply 503 5.5.1 "$SEQ"
	run reply_to "${EM}HELO c.example\r\n" 'MAIL FROM:<a@b.example>'
	assert_success
	assert_reply 250 2.1.0 "$OK"
}

@test "a refused EHLO leaves the session as it was" {
	run reply_to "${EM}EHLO\r\n" 'RCPT TO:<bob@example.org>'
	assert_success
	assert_reply 250 2.1.5 "$OK"
}

# ---- MAIL -----------------------------------------------------------------

@test "MAIL: 250 2.1.0" {
	run reply_to "$E" 'MAIL FROM:<a@b.example>'
	assert_success
	assert_reply 250 2.1.0 "$OK"
}

@test "MAIL: 250 for the null reverse-path and for lower-case keywords" {
	run reply_to "$E" 'MAIL FROM:<>'
	assert_success
	assert_reply 250 2.1.0 "$OK"
	run reply_to "$E" 'mail from:<a@b.example> size=10 body=8bitmime'
	assert_success
	assert_reply 250 2.1.0 "$OK"
}

@test "MAIL: 501 for a bad path or keyword" {
	local a
	for a in 'FROM:a@b.example' 'FROM:<a@b.example' 'TO:<a@b.example>' 'FROM:<a@>' \
	    'FROM:<a@b..example>' 'FROM:<bob>' 'FROM:<a@b.example>x'; do
		run reply_to "$E" "MAIL $a"
		assert_success
		assert_output --regexp "^501 5\.[0-9]+\.[0-9]+ ([^ ].*: )?$SYNTAX\$"
	done
	run reply_to "$E" 'MAIL'
	assert_success
	assert_reply 501 5.5.4 "$SYNTAX"
}

@test "MAIL: 501 for a malformed SIZE or BODY value" {
	local p
	for p in 'SIZE=' 'SIZE=12x' 'BODY=9BIT' 'SIZE=1 SIZE=2'; do
		run reply_to "$E" "MAIL FROM:<a@b.example> $p"
		assert_success
		assert_reply 501 5.5.4 "$SYNTAX"
	done
}

@test "MAIL: 503 before HELO/EHLO" {
	run reply_to '' 'MAIL FROM:<a@b.example>'
	assert_success
	assert_reply 503 5.5.1 "$SEQ"
}

@test "MAIL: 503 inside an open transaction (nested MAIL)" {
	run reply_to "$EM" 'MAIL FROM:<c@d.example>'
	assert_success
	assert_reply 503 5.5.1 "$SEQ"
	run reply_to "$EMR" 'MAIL FROM:<c@d.example>'
	assert_success
	assert_reply 503 5.5.1 "$SEQ"
}

@test "MAIL: 552 when SIZE= is over max_message_size; exactly the limit passes" {
	run reply_to "$E" 'MAIL FROM:<a@b.example> SIZE=1001' -o max_message_size=1000
	assert_success
	assert_reply 552 5.3.4 "$TOOBIG"
	run reply_to "$E" 'MAIL FROM:<a@b.example> SIZE=1000' -o max_message_size=1000
	assert_success
	assert_reply 250 2.1.0 "$OK"
	run reply_to "$E" 'MAIL FROM:<a@b.example> SIZE=99999999999999999999999999'
	assert_success
	assert_reply 552 5.3.4 "$TOOBIG"
}

@test "MAIL: 555 for an unknown parameter" {
	run reply_to "$E" 'MAIL FROM:<a@b.example> FOO=bar'
	assert_success
	assert_reply 555 5.5.4 "$PARAM"
	run reply_to "$E" 'MAIL FROM:<a@b.example> SIZE=10 XYZZY'
	assert_success
	assert_reply 555 5.5.4 "$PARAM"
}

@test "MAIL: 553 5.6.7 for an 8-bit address without SMTPUTF8; 250 with it" {
	run reply_to "$E" 'MAIL FROM:<j\xc3\xb6rg@b.example>'
	assert_success
	assert_reply 553 5.6.7 "$NOTALLOWED"
	run reply_to "$E" 'MAIL FROM:<a@b\xc3\xa9.example>'
	assert_success
	assert_reply 553 5.6.7 "$NOTALLOWED"
	run reply_to "$E" 'MAIL FROM:<j\xc3\xb6rg@b.example> SMTPUTF8'
	assert_success
	assert_reply 250 2.1.0 "$OK"
}

@test "MAIL: invalid UTF-8 is refused even with SMTPUTF8" {
	run reply_to "$E" 'MAIL FROM:<j\xc3rg@b.example> SMTPUTF8'
	assert_success
	assert_output --regexp '^5[0-9][0-9] 5\.'
}

free_bytes() {
	df --output=avail -B1 "$MS_DIR" | tail -n 1 | tr -d ' '
}

@test "MAIL: 452 when min_free_space is more than the disk has free" {
	local avail
	avail=$(free_bytes)
	run reply_to "$E" 'MAIL FROM:<a@b.example>' -o "min_free_space=$((avail + (1 << 40)))"
	assert_success
	assert_reply 452 4.3.1 "$STORAGE"
}

@test "MAIL: 452 when min_free_space plus SIZE= is more than the disk has free" {
	local avail
	avail=$(free_bytes)
	[ "$avail" -gt $((4 << 30)) ] || skip "needs 4 GiB free on $MS_DIR"
	local min=$((avail - (1 << 30)))
	run reply_to "$E" 'MAIL FROM:<a@b.example>' -o "min_free_space=$min"
	assert_success
	assert_reply 250 2.1.0 "$OK"
	run reply_to "$E" "MAIL FROM:<a@b.example> SIZE=$((2 << 30))" \
	    -o "min_free_space=$min" -o max_message_size=4G
	assert_success
	assert_reply 452 4.3.1 "$STORAGE"
}

# ---- SOML / SAML / SEND -----------------------------------------------------

@test "SOML and SAML: 250, 503 before HELO, 503 nested, 555, 552, like MAIL" {
	local v
	for v in SOML SAML; do
		run reply_to "$E" "$v FROM:<a@b.example>"
		assert_success
		assert_reply 250 2.1.0 "$OK"
		run reply_to '' "$v FROM:<a@b.example>"
		assert_success
		assert_reply 503 5.5.1 "$SEQ"
		run reply_to "$EM" "$v FROM:<a@b.example>"
		assert_success
		assert_reply 503 5.5.1 "$SEQ"
		run reply_to "$E" "$v FROM:<a@b.example> FOO=1"
		assert_success
		assert_reply 555 5.5.4 "$PARAM"
		run reply_to "$E" "$v FROM:<a@b.example> SIZE=11" -o max_message_size=10
		assert_success
		assert_reply 552 5.3.4 "$TOOBIG"
		run reply_to "$E" "$v FROM:a@b.example"
		assert_success
		assert_output --regexp '^501 5\.'
	done
}

@test "SOML and SAML: the transaction delivers into the Maildir" {
	local v
	for v in SOML SAML; do
		run smtp_pipe "EHLO c.example\r\n$v FROM:<a@b.example>\r\nRCPT TO:<bob@example.org>\r\nDATA\r\n\r\nhi\r\n.\r\nQUIT\r\n"
		assert_success
		assert_line --regexp '^250 2\.0\.0 queued as '
	done
	assert_equal "$(ms_new_count)" 2
}

@test "SEND: 502 while terminal_delivery=no (the default); not in EHLO or HELP" {
	run reply_to "$E" 'SEND FROM:<a@b.example>'
	assert_success
	assert_reply 502 5.5.1 "$NOTIMPL"
	run reply_to '' 'SEND FROM:<a@b.example>'
	assert_success
	assert_reply 502 5.5.1 "$NOTIMPL"
	run reply_to '' 'HELP'
	assert_success
	refute_output --partial 'SEND'
	run reply_to '' 'HELP SEND'
	assert_success
	assert_reply 504 5.5.4 'SEND is not enabled here: Command parameter not implemented'
	# Switched on, HELP lists it and gives its syntax.
	MS_OPTS+=(-o terminal_delivery=yes)
	run reply_to '' 'HELP SEND'
	assert_success
	assert_line --index 1 --regexp '^214 2\.0\.0 SEND FROM:<reverse-path>'
}

# ---- RCPT -----------------------------------------------------------------

@test "RCPT: 250 2.1.5" {
	run reply_to "$EM" 'RCPT TO:<bob@example.org>'
	assert_success
	assert_reply 250 2.1.5 "$OK"
	run reply_to "$EM" 'rcpt to:<Bob.Smith+tag@Example.ORG>'
	assert_success
	assert_reply 250 2.1.5 "$OK"
}

@test "RCPT: <postmaster> without a domain is accepted, in any case" {
	local p
	for p in postmaster POSTMASTER PostMaster; do
		run reply_to "$EM" "RCPT TO:<$p>"
		assert_success
		assert_reply 250 2.1.5 "$OK"
	done
}

@test "RCPT: 501 for a bad path or keyword" {
	local a
	for a in 'TO:bob@example.org' 'TO:<bob@example.org' 'TO:<bob>' 'TO:<>' \
	    'FROM:<bob@example.org>' 'TO:<bob@>' 'TO:<bob@ex..ample>' 'TOO'; do
		run reply_to "$EM" "RCPT $a"
		assert_success
		assert_output --regexp "^501 5\.[0-9]+\.[0-9]+ ([^ ].*: )?$SYNTAX\$"
	done
	run reply_to "$EM" 'RCPT'
	assert_success
	assert_reply 501 5.5.4 "$SYNTAX"
}

@test "RCPT: 503 without MAIL" {
	run reply_to '' 'RCPT TO:<bob@example.org>'
	assert_success
	assert_reply 503 5.5.1 "$SEQ"
	run reply_to "$E" 'RCPT TO:<bob@example.org>'
	assert_success
	assert_reply 503 5.5.1 "$SEQ"
}

@test "RCPT: 553 5.1.3 for mailbox names that are not allowed" {
	local l65 a
	l65=$(printf 'a%.0s' $(seq 65))
	for a in 'x/y@example.org' '.bob@example.org' 'bob.@example.org' \
	    'a..b@example.org' "$l65@example.org" '"a/b"@example.org' '"a\x01b"@example.org'; do
		run reply_to "$EM" "RCPT TO:<$a>"
		assert_success
		assert_reply 553 5.1.3 "$NOTALLOWED"
	done
}

@test "RCPT: a 64-octet local part is allowed" {
	local l64
	l64=$(printf 'a%.0s' $(seq 64))
	run reply_to "$EM" "RCPT TO:<$l64@example.org>"
	assert_success
	assert_reply 250 2.1.5 "$OK"
}

@test "RCPT: 553 5.6.7 for an 8-bit address without SMTPUTF8; 250 with it" {
	run reply_to "$EM" 'RCPT TO:<j\xc3\xb6rg@example.org>'
	assert_success
	assert_reply 553 5.6.7 "$NOTALLOWED"
	run reply_to 'EHLO c.example\r\nMAIL FROM:<a@b.example> SMTPUTF8\r\n' 'RCPT TO:<j\xc3\xb6rg@example.org>'
	assert_success
	assert_reply 250 2.1.5 "$OK"
}

@test "RCPT: 555 for an unknown parameter" {
	run reply_to "$EM" 'RCPT TO:<bob@example.org> FOO=bar'
	assert_success
	assert_reply 555 5.5.4 "$PARAM"
}

@test "RCPT: 452 4.5.3 past max_recipients; exactly max passes" {
	local in='' i
	for i in 1 2 3; do
		in+="RCPT TO:<r$i@example.org>\r\n"
	done
	run reply_to "$EM$in" 'RCPT TO:<r4@example.org>' -o max_recipients=3
	assert_success
	assert_reply 452 4.5.3 'Requested action not taken: too many recipients'
	run reply_to "$EM${in%RCPT TO:<r3*}" 'RCPT TO:<r3@example.org>' -o max_recipients=3
	assert_success
	assert_reply 250 2.1.5 "$OK"
}

@test "RCPT: max_recipients defaults to 100; the message goes to the accepted ones" {
	local in='' i
	for i in $(seq 1 101); do
		in+="RCPT TO:<r$i@example.org>\r\n"
	done
	run smtp_pipe "$EM${in}DATA\r\n\r\nhi\r\n.\r\nQUIT\r\n"
	assert_success
	assert_line --regexp '^250 2\.0\.0 queued as '
	assert_equal "$(grep -c '^250 2\.1\.5 ' <<<"$output")" 100
	run ms_nth_reply 104 <<<"$output"
	assert_output --regexp '^452 4\.5\.3 '
	local f
	f=$(ms_new_file)
	assert_equal "$(grep -c 'event=deliver ' "$MS_DIR/log")" 100
	run grep -c 'event=deliver .*to="<r101@' "$MS_DIR/log"
	assert_output 0
}

# ---- DATA -----------------------------------------------------------------

@test "DATA: 354 without an enhanced code" {
	run smtp_pipe "${EMR}DATA\r\n.\r\nQUIT\r\n"
	assert_success
	run ms_nth_reply 5 <<<"$output"
	assert_output '354 Start mail input; end with <CRLF>.<CRLF>'
}

@test "DATA: 503 without MAIL, and without any RCPT" {
	run reply_to '' 'DATA'
	assert_success
	assert_reply 503 5.5.1 "$SEQ"
	run reply_to "$E" 'DATA'
	assert_success
	assert_reply 503 5.5.1 "$SEQ"
	run reply_to "$EM" 'DATA'
	assert_success
	assert_reply 503 5.5.1 "$SEQ"
}

@test "DATA: 554 when every RCPT was refused" {
	run reply_to "${EM}RCPT TO:<x/y@example.org>\r\nRCPT TO:<bob>\r\n" 'DATA'
	assert_success
	assert_reply 554 5.5.1 'Transaction failed'
	assert_equal "$(ms_new_count)" 0
}

@test "DATA: 501 with an argument" {
	run reply_to "$EMR" 'DATA now'
	assert_success
	assert_reply 501 5.5.4 "$SYNTAX"
}

@test "end of data: 250 2.0.0 queued as <the file in new/>" {
	run smtp_pipe "${EMR}DATA\r\nSubject: x\r\n\r\nhi\r\n.\r\nQUIT\r\n"
	assert_success
	local replies=$output name
	run ms_nth_reply 5 <<<"$replies"
	assert_output '354 Start mail input; end with <CRLF>.<CRLF>'
	run ms_nth_reply 6 <<<"$replies"
	assert_output --regexp '^250 2\.0\.0 queued as [^ :]+: Requested mail action okay, completed$'
	name=$(sed -n 's/^250 2\.0\.0 queued as \([^ :]*\): .*/\1/p' <<<"$output")
	[ -f "$MS_MAILDIR/new/$name" ] || fail "no $name in new/: $(ls "$MS_MAILDIR/new")"
	assert_equal "$(ms_tmp_count)" 0
}

# ---- RSET, NOOP, HELP -------------------------------------------------------

@test "RSET: 250 2.0.0, in every state, and it ends the transaction" {
	run reply_to '' 'RSET'
	assert_success
	assert_reply 250 2.0.0 "$OK"
	run reply_to "$EMR" 'RSET'
	assert_success
	assert_reply 250 2.0.0 "$OK"
	run reply_to "${EMR}RSET\r\n" 'DATA'
	assert_success
	assert_reply 503 5.5.1 "$SEQ"
	run reply_to "${EMR}RSET\r\n" 'MAIL FROM:<a@b.example>'
	assert_success
	assert_reply 250 2.1.0 "$OK"
}

@test "RSET: 501 with an argument" {
	run reply_to "$EM" 'RSET now'
	assert_success
	assert_reply 501 5.5.4 "$SYNTAX"
	# ... and the transaction is still open
	run reply_to "${EM}RSET now\r\n" 'RCPT TO:<bob@example.org>'
	assert_success
	assert_reply 250 2.1.5 "$OK"
}

@test "NOOP: 250 2.0.0 with and without an argument, in every state" {
	local p
	for p in '' "$E" "$EM" "$EMR"; do
		run reply_to "$p" 'NOOP'
		assert_success
		assert_reply 250 2.0.0 "$OK"
		run reply_to "$p" 'NOOP some argument, ignored'
		assert_success
		assert_reply 250 2.0.0 "$OK"
	done
}

@test "HELP: 214 multi-line, enhanced code on every line" {
	run reply_to '' 'HELP'
	assert_success
	local n
	n=$(grep -c '' <<<"$output")
	[ "$n" -ge 2 ] || fail "HELP reply is not multi-line: $output"
	run bash -c "printf '%s\n' \"\$1\" | grep -vc '^214-2\.0\.0 '" _ "$output"
	assert_output 1
	run reply_to '' 'HELP'
	assert_line --index $((n - 1)) --regexp '^214 2\.0\.0 '
	local v
	for v in HELO EHLO MAIL RCPT DATA RSET VRFY EXPN HELP NOOP QUIT SOML SAML; do
		grep -qw -- "$v" <<<"$output" || fail "HELP does not list $v"
	done
}

@test "HELP MAIL: 214 with the syntax of MAIL; any case" {
	run reply_to '' 'HELP MAIL'
	assert_success
	assert_line --index 0 '214-2.0.0 Help message'
	assert_line --index 1 --regexp '^214 2\.0\.0 MAIL FROM:<reverse-path>'
	run reply_to '' 'HELP rcpt'
	assert_success
	assert_line --index 1 --regexp '^214 2\.0\.0 RCPT TO:<forward-path>'
}

@test "HELP bogus: 504 5.5.4" {
	run reply_to '' 'HELP bogus'
	assert_success
	assert_reply 504 5.5.4 'Command parameter not implemented'
}

# ---- VRFY, EXPN, TURN -------------------------------------------------------

@test "VRFY: 250 2.1.5 for a well-formed address (catch-all), before HELO too" {
	local a
	for a in 'bob@example.org' '<bob@example.org>' 'bob'; do
		run reply_to '' "VRFY $a"
		assert_success
		assert_reply 250 2.1.5 "$OK"
	done
}

@test "VRFY: 501 without an argument or with a bad one" {
	run reply_to '' 'VRFY'
	assert_success
	assert_reply 501 5.5.4 "$SYNTAX"
	run reply_to '' 'VRFY <>'
	assert_success
	assert_output --regexp "^501 5\.[0-9]+\.[0-9]+ ([^ ].*: )?$SYNTAX\$"
}

@test "VRFY: 553 for a name RCPT would refuse" {
	run reply_to '' 'VRFY <x/y@example.org>'
	assert_success
	assert_reply 553 5.1.3 "$NOTALLOWED"
}

@test "VRFY: 502 with vrfy=no" {
	run reply_to '' 'VRFY bob@example.org' -o vrfy=no
	assert_success
	assert_reply 502 5.5.1 "$NOTIMPL"
}

@test "EXPN: 550 5.1.1 (a catch-all has no lists)" {
	run reply_to '' 'EXPN staff'
	assert_success
	assert_reply 550 5.1.1 'Requested action not taken: mailbox unavailable'
}

@test "EXPN: 502 with expn=no" {
	run reply_to '' 'EXPN staff' -o expn=no
	assert_success
	assert_reply 502 5.5.1 "$NOTIMPL"
}

@test "TURN: 502 5.5.1 in every state" {
	local p
	for p in '' "$E" "$EM"; do
		run reply_to "$p" 'TURN'
		assert_success
		assert_reply 502 5.5.1 "$NOTIMPL"
	done
}

# ---- QUIT, unknown, NUL -----------------------------------------------------

@test "QUIT: 221 2.0.0 <hostname>, then exit: later input is not read" {
	run smtp_pipe 'QUIT\r\nNOOP\r\nNOOP\r\n'
	assert_success
	assert_output "$(printf '220 mx.test ESMTP mailslot ready\n221 2.0.0 mx.test Service closing transmission channel')"
}

@test "QUIT: 501 with an argument, and the session goes on" {
	run reply_to '' 'QUIT now'
	assert_success
	assert_reply 501 5.5.4 "$SYNTAX"
}

@test "QUIT: inside a transaction, nothing is delivered" {
	run smtp_pipe "${EMR}QUIT\r\n"
	assert_success
	assert_line --index -1 '221 2.0.0 mx.test Service closing transmission channel'
	assert_equal "$(ms_new_count)" 0
}

@test "unknown command: 500 5.5.1, in every state" {
	local p c
	for p in '' "$E" "$EMR"; do
		for c in 'FOO' 'XYZZY bar' 'MAILFROM:<a@b.example>' 'STARTTLSX' ' NOOP'; do
			run reply_to "$p" "$c"
			assert_success
			assert_reply 500 5.5.1 "$UNREC"
		done
	done
}

@test "a NUL in a command line: 500 5.5.2" {
	run reply_to '' 'NOOP a\0b'
	assert_success
	assert_reply 500 5.5.2 'Syntax error, NUL octet in command line'
	run reply_to "$E" 'MAIL FROM:<a\0@b.example>'
	assert_success
	assert_reply 500 5.5.2 'Syntax error, NUL octet in command line'
	run reply_to '' 'FOO\0'
	assert_success
	assert_reply 500 5.5.2 'Syntax error, NUL octet in command line'
}

@test "commands may end in a bare LF" {
	run smtp_pipe 'EHLO c.example\nNOOP\nQUIT\n'
	assert_success
	assert_line --index -2 '250 2.0.0 Requested mail action okay, completed'
	assert_line --index -1 '221 2.0.0 mx.test Service closing transmission channel'
}

# ---- accept_mail=no -----------------------------------------------------------

@test "accept_mail=no: greeting 521 <hostname>, every command 521 5.3.2, QUIT 221" {
	run smtp_pipe 'HELO c.example\r\nEHLO c.example\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<bob@example.org>\r\nDATA\r\nRSET\r\nNOOP\r\nHELP\r\nVRFY bob\r\nEXPN staff\r\nTURN\r\nFOO\r\nQUIT\r\n' \
	    -o accept_mail=no -o max_errors=100
	assert_success
	assert_line --index 0 '521 mx.test does not accept mail'
	local i
	for i in $(seq 1 11); do
		assert_line --index "$i" '521 5.3.2 mx.test does not accept mail'
	done
	assert_line --index -1 '221 2.0.0 mx.test Service closing transmission channel'
	assert_equal "$(grep -c '' <<<"$output")" 14
}

@test "accept_mail=no: command_timeout still closes an idle client" {
	run smtp_exec --wait '521 ' --pause 3 -- -o accept_mail=no -o command_timeout=1
	assert_success
	assert_line --index 0 '521 mx.test does not accept mail'
	assert_line --index 1 --regexp '^421 4\.4\.2 mx\.test '
	assert_equal "$(ms_report exit)" 0
}

# ---- enhanced status codes ----------------------------------------------------

@test "enhanced status codes on every 2xx/4xx/5xx line but greeting, HELO/EHLO; never on 354" {
	run smtp_pipe "$(cat <<'EOF'
NOOP\r
HELP\r
HELO c.example\r
EHLO c.example\r
VRFY bob\r
EXPN staff\r
TURN\r
FOO\r
RCPT TO:<bob@example.org>\r
MAIL FROM:<a@b.example> FOO=1\r
MAIL FROM:<a@b.example> SIZE=99999999999\r
MAIL FROM:<a@b.example>\r
RCPT TO:<x/y@example.org>\r
RCPT TO:<bob@example.org> FOO=1\r
RCPT TO:<bob@example.org>\r
DATA x\r
DATA\r
hi\r
.\r
RSET x\r
RSET\r
QUIT\r
EOF
)" -o max_errors=100
	assert_success
	local line n=0 ehlo=0
	while IFS= read -r line; do
		n=$((n + 1))
		if [ "$n" = 1 ]; then
			assert_equal "$line" '220 mx.test ESMTP mailslot ready'
			continue
		fi
		# the HELO reply, and the EHLO reply up to its last line
		case $ehlo:$line in
		0:'250 mx.test '*) continue ;;
		0:'250-mx.test '*) ehlo=1; continue ;;
		1:250-*) continue ;;
		1:250\ *) ehlo=0; continue ;;
		esac
		case $line in
		354\ *)
			[[ $line =~ ^354\ [0-9]\. ]] && fail "354 with an enhanced code: $line"
			continue ;;
		esac
		[[ $line =~ ^([245])[0-9][0-9][-\ ]([245])\.[0-9]{1,3}\.[0-9]{1,3}\  ]] ||
			fail "no enhanced status code: $line"
		[ "${BASH_REMATCH[1]}" = "${BASH_REMATCH[2]}" ] ||
			fail "enhanced code class differs from the reply code: $line"
	done <<<"$output"
	[ "$n" -ge 25 ] || fail "only $n reply lines"
}
