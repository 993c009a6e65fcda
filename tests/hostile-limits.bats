#!/usr/bin/env bats
# Limits at their boundaries, for the ones the core suite (limits.bats,
# session.bats, delivery.bats) does not already walk: exactly at the
# limit passes, one over fails.  And replies stay within RFC 5321's 512
# octets and printable ASCII, whatever the client sent.

load 'lib/common'
load 'lib/hostile'

setup() { ms_setup; }
teardown() { ms_teardown; }

rep() { head -c "$2" /dev/zero | tr '\0' "$1"; }

@test "max_recipients=3: the third passes, the fourth gets 452 4.5.3, a repeat costs nothing" {
	run smtp_pipe 'EHLO c.example\r\nMAIL FROM:<a@x.example>\r\nRCPT TO:<r1@y.example>\r\nRCPT TO:<r2@y.example>\r\nRCPT TO:<R1@Y.EXAMPLE>\r\nRCPT TO:<r1@Y.example>\r\nRCPT TO:<r3@y.example>\r\nRCPT TO:<r4@y.example>\r\nDATA\r\nhi\r\n.\r\nQUIT\r\n' \
	    -o max_recipients=3
	assert_success
	# r1, r2, R1 (another local part), the same r1 again (domain case), r3, r4
	run ms_nth_reply 7 <<<"$output"
	assert_output --regexp '^250 2\.1\.5 <r1@Y\.example>'
	rm -rf "$MS_MAILDIR"
	run smtp_pipe 'EHLO c.example\r\nMAIL FROM:<a@x.example>\r\nRCPT TO:<r1@y.example>\r\nRCPT TO:<r2@y.example>\r\nRCPT TO:<r1@Y.example>\r\nRCPT TO:<r3@y.example>\r\nRCPT TO:<r4@y.example>\r\nDATA\r\nhi\r\n.\r\nQUIT\r\n' \
	    -o max_recipients=3
	assert_success
	assert_equal "$(printf '%s\n' "$output" | grep -c '^250 2\.1\.5 ')" 4
	assert_equal "$(printf '%s\n' "$output" | grep -c '^452 4\.5\.3 ')" 1
	run ms_nth_reply 8 <<<"$output"
	assert_output --regexp '^452 4\.5\.3 '
	ms_new_file >/dev/null
	assert_equal "$(grep -c 'event=deliver ' "$MS_DIR/log")" 3
}

@test "max_recipients default: 100 pass, the 101st gets 452 4.5.3" {
	local i in='EHLO c.example\r\nMAIL FROM:<a@x.example>\r\n'
	for i in $(seq 1 101); do in="${in}RCPT TO:<r$i@y.example>\r\n"; done
	run smtp_pipe "${in}DATA\r\nhi\r\n.\r\nQUIT\r\n"
	assert_success
	assert_equal "$(printf '%s\n' "$output" | grep -c '^250 2\.1\.5 ')" 100
	run ms_nth_reply 104 <<<"$output"
	assert_output --regexp '^452 4\.5\.3 '
	ms_new_file >/dev/null
	assert_equal "$(grep -c 'event=deliver ' "$MS_DIR/log")" 100
}

@test "115 pipelined RCPTs: 100 x 250, 15 x 452 4.5.3 not counted as errors; the rest goes in the next transaction" {
	local i in='EHLO c.example\r\nMAIL FROM:<a@x.example>\r\n' mb=$MS_DIR/mb
	for i in $(seq 1 115); do
		mkdir -p "$mb/r$i/tmp" "$mb/r$i/new" "$mb/r$i/cur"
		in+="RCPT TO:<r$i@y.example>\r\n"
	done
	in+='DATA\r\nSubject: first\r\n\r\nfirst\r\n.\r\nMAIL FROM:<a@x.example>\r\n'
	for i in $(seq 101 115); do in+="RCPT TO:<r$i@y.example>\r\n"; done
	in+='DATA\r\nSubject: second\r\n\r\nsecond\r\n.\r\nNOOP\r\nQUIT\r\n'
	run smtp_pipe "$in" -o "mailboxes=$mb"
	assert_success
	refute_output --partial '421 '
	assert_equal "$(grep -c '^250 2\.1\.5 ' <<<"$output")" 115
	assert_equal "$(grep -c '^452 4\.5\.3 ' <<<"$output")" 15
	assert_equal "$(grep -c '^452 4\.5\.3 <r1[01][0-9]@y\.example>: Requested action not taken: too many recipients$' <<<"$output")" 15
	refute_output --partial 'insufficient system storage'
	assert_equal "$(grep -c '^250 2\.0\.0 queued as ' <<<"$output")" 2
	assert_line '221 2.0.0 mx.test Service closing transmission channel'
	# the first message for the first 100, the second for the other 15
	for i in $(seq 1 115); do
		f=$(find "$mb/r$i/new" -type f)
		[ "$(printf '%s\n' "$f" | grep -c .)" = 1 ] || fail "r$i: not exactly one message"
		if [ "$i" -le 100 ]; then grep -q '^first$' "$f"; else grep -q '^second$' "$f"; fi ||
			fail "r$i got the wrong message"
	done
}

@test "a local part of 64 octets passes, 65 gets 553 5.1.3 (RCPT) and 501 (MAIL)" {
	local l64 l65 q62 q63
	l64=$(rep a 64)
	l65=$(rep a 65)
	# RFC 5321 4.5.3.1.1 counts the local part as written: quotes included
	q62=$(rep q 62)
	q63=$(rep q 63)
	run smtp_pipe "EHLO c.example\r\nMAIL FROM:<$l65@x.example>\r\nMAIL FROM:<$l64@x.example>\r\nRCPT TO:<$l64@y.example>\r\nRCPT TO:<$l65@y.example>\r\nRCPT TO:<\"$q62\"@y.example>\r\nRCPT TO:<\"$q63\"@y.example>\r\nQUIT\r\n"
	assert_success
	run ms_replies <<<"$output"
	assert_line --index 2 --regexp '^501 5\.1\.7 '
	assert_line --index 3 --regexp '^250 2\.1\.0 '
	assert_line --index 4 --regexp '^250 2\.1\.5 '
	assert_line --index 5 --regexp '^553 5\.1\.3 '
	assert_line --index 6 --regexp '^250 2\.1\.5 '
	assert_line --index 7 --regexp '^553 5\.1\.3 '
}

@test "a domain label of 63 octets passes, 64 gets 501" {
	local d63 d64
	d63=$(rep d 63)
	d64=$(rep d 64)
	run smtp_pipe "EHLO $d64.example\r\nEHLO $d63.example\r\nMAIL FROM:<a@$d64.example>\r\nMAIL FROM:<a@$d63.example>\r\nRCPT TO:<b@$d64.example>\r\nRCPT TO:<b@$d63.example>\r\nQUIT\r\n"
	assert_success
	run ms_replies <<<"$output"
	assert_line --index 1 --regexp '^501 '
	assert_line --index 2 --regexp '^250-'
	assert_line --index 3 --regexp '^501 '
	assert_line --index 4 --regexp '^250 2\.1\.0 '
	assert_line --index 5 --regexp '^501 '
	assert_line --index 6 --regexp '^250 2\.1\.5 '
}

@test "a path of 254 octets (256 with its brackets) passes, 255 is refused" {
	local l d189 d190
	l=$(rep a 64)
	d189="$(rep d 63).$(rep d 63).$(rep d 61)"
	d190="$(rep d 63).$(rep d 63).$(rep d 62)"
	[ "${#d189}" = 189 ] && [ "$(printf '%s@%s' "$l" "$d189" | wc -c)" = 254 ]
	run smtp_pipe "EHLO c.example\r\nMAIL FROM:<$l@$d190>\r\nMAIL FROM:<$l@$d189>\r\nRCPT TO:<$l@$d190>\r\nRCPT TO:<$l@$d189>\r\nQUIT\r\n"
	assert_success
	run ms_replies <<<"$output"
	assert_line --index 2 --regexp '^501 '
	assert_line --index 3 --regexp '^250 2\.1\.0 '
	assert_line --index 4 --regexp '^553 5\.1\.3 '
	assert_line --index 5 --regexp '^250 2\.1\.5 '
}

@test "SIZE= at 2^64-1 and 2^64 (and far beyond) is 552, never a wrapped small number" {
	run smtp_pipe 'EHLO c.example\r\nMAIL FROM:<a@x.example> SIZE=18446744073709551615\r\nMAIL FROM:<a@x.example> SIZE=18446744073709551616\r\nMAIL FROM:<a@x.example> SIZE=36893488147419103232\r\nMAIL FROM:<a@x.example> SIZE=0\r\nQUIT\r\n'
	assert_success
	run ms_replies <<<"$output"
	assert_line --index 2 --regexp '^552 5\.3\.4 '
	assert_line --index 3 --regexp '^552 5\.3\.4 '
	assert_line --index 4 --regexp '^552 5\.3\.4 '
	assert_line --index 5 --regexp '^250 2\.1\.0 '
}

@test "max_errors=1: the first error gets its reply, then 421 4.7.0 and close" {
	run smtp_pipe 'NOOP\r\nBOGUS\r\nNOOP\r\nQUIT\r\n' -o max_errors=1
	assert_success
	assert_line --index 1 --regexp '^250 '
	assert_line --index 2 --regexp '^500 5\.5\.1 '
	assert_line --index 3 --regexp '^421 4\.7\.0 '
	assert_equal "${#lines[@]}" 4
}

@test "replies stay within 512 octets and printable ASCII, whatever was sent" {
	local junk long
	junk='\x01\x1b[2J\x7f\xff\xc3\xa9%s%n\\'
	long=$(rep x 1000)
	run smtp_pipe "EHLO $junk$long\r\nHELO $long\r\nEHLO c.example\r\nVRFY <$junk$long@x>\r\nEXPN $junk$long\r\nHELP $junk$long\r\nMAIL FROM:<$junk$long@x.example> SMTPUTF8\r\nMAIL FROM:<a@x.example>\r\nRCPT TO:<$junk$(rep y 900)@y.example>\r\nRCPT TO:<\"$junk\"@y.example>\r\nRCPT TO:<$(rep z 1000)>\r\n$junk\r\nQUIT\r\n" \
	    -o max_errors=100
	assert_success
	assert_line --index -1 --regexp '^221 '
	run python3 -c '
import sys
data = open(sys.argv[1], "rb").read()
bad = 0
for line in data.split(b"\r\n")[:-1]:
    if len(line) + 2 > 512 or any(c < 0x20 or c > 0x7e for c in line):
        print("bad reply line (%d octets): %r" % (len(line) + 2, line[:80]))
        bad += 1
sys.exit(1 if bad else 0)' "$MS_DIR/replies"
	assert_success
}

@test "aliases with shared members, nested 12 deep: expansion is not exponential (-t finishes)" {
	python3 -c '
import sys
n = 12
lines = ["a%d: %s" % (i, ", ".join(["a%d" % (i + 1)] * 8)) for i in range(n)]
lines.append("a%d: someone" % n)
open(sys.argv[1], "w").write("\n".join(lines) + "\n")' "$MS_DIR/aliases"
	ms_cmd -t -o "aliases=$MS_DIR/aliases" -o hostname=example.org
	run timeout 20 "${MS_CMD[@]}"
	assert_success
}
