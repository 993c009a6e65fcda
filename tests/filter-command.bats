#!/usr/bin/env bats
# filter_command: qmail's exit codes as replies, the header fields it adds,
# its environment, its timeout (the whole process group killed), a filter
# that does not read its input, BDAT LAST, and SpamAssassin's spamc
# against a spamd this file starts once (contrib/mailslot-spamc).

load 'lib/common'

setup_file() {
	SPAMD_PID=
	if command -v spamd >/dev/null && command -v spamc >/dev/null; then
		local dir=$BATS_FILE_TMPDIR/spamd port i
		mkdir -p "$dir"
		# spamd reads its configuration as nobody.
		local d=$dir
		while [ "$d" != / ] && [ "$d" != /tmp ]; do
			chmod o+rx "$d"
			d=$(dirname "$d")
		done
		cp /etc/spamassassin/*.pre "$dir"/ 2>/dev/null
		# No network tests, no Bayes, no learning: only the rules on disk.
		printf 'skip_rbl_checks 1\nuse_bayes 0\nbayes_auto_learn 0\n' >"$dir/local.cf"
		port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
		spamd --listen "127.0.0.1:$port" --local --nouser-config --siteconfigpath="$dir" \
			--max-children=1 -s stderr -u nobody >"$dir/log" 2>&1 &
		SPAMD_PID=$!
		for i in $(seq 120); do
			spamc -d 127.0.0.1 -p "$port" -K >/dev/null 2>&1 && break
			kill -0 "$SPAMD_PID" 2>/dev/null || break
			sleep 0.5
		done
		if ! spamc -d 127.0.0.1 -p "$port" -K >/dev/null 2>&1; then
			kill "$SPAMD_PID" 2>/dev/null || true
			SPAMD_PID=
		fi
		export SPAMD_PORT=$port
	fi
	export SPAMD_PID
}

teardown_file() {
	if [ -n "$SPAMD_PID" ]; then
		kill "$SPAMD_PID" 2>/dev/null
		wait "$SPAMD_PID" 2>/dev/null || true
	fi
}

setup() { ms_setup; }
teardown() { ms_teardown; }

EMR='EHLO c.example\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<bob@example.org>\r\n'
MSG='Subject: x\r\nFrom: a@b.example\r\n\r\nhi\r\n'
TRACE='Return-Path: <a@b.example>\nDelivered-To: bob@example.org\nReceived: from c.example (unknown)\n\tby mx.test (mailslot) with ESMTP id ID\n\tfor <bob@example.org>; DATE\n'

# A filter script in $MS_DIR: its body after "#!/bin/sh".
filter() {
	printf '#!/bin/sh\n%s\n' "$1" >"$MS_DIR/filter"
	chmod 755 "$MS_DIR/filter"
	MS_OPTS+=(-o "filter_command=$MS_DIR/filter")
}

# The reply to the end of the data: DATA with the message (and the final
# dot) from printf %b of $1, or with $2 the BDAT commands $1 then $2.
data_reply() {
	local all
	all=$(smtp_pipe "${EMR}${1}${2-}QUIT\r\n" | ms_replies) || true
	printf '%s\n' "$all" | tail -n 1 | grep -q '^221 ' || { printf '%s\n' "$all"; return 1; }
	printf '%s\n' "$all" | tail -n 2 | head -n 1 | sed 's/ | /\n/g'
}

assert_stored() {
	local f
	f=$(ms_new_file)
	ms_normalize_msg <"$f" >"$MS_DIR/stored"
	printf '%b' "$1" >"$MS_DIR/expected"
	ms_assert_same "$MS_DIR/expected" "$MS_DIR/stored" 'stored message'
}

@test "exit 0: stored, with the fields it printed just below Received" {
	filter 'cat >/dev/null
printf "X-Checked: yes\nX-Score: 1.5\n\tfolded\n"'
	run smtp_pipe "${EMR}DATA\r\n${MSG}.\r\nQUIT\r\n"
	assert_success
	assert_line --regexp '^250 2\.0\.0 queued as '
	assert_stored "${TRACE}X-Checked: yes\nX-Score: 1.5\n\tfolded\nSubject: x\nFrom: a@b.example\n\nhi\n"
	assert_equal "$(ms_tmp_count)" 0
	grep -q 'event=filter id=.* result=accept exit=0 fields=2' "$MS_DIR/log"
}

@test "exit 0: the message on its stdin is the first copy as stored, trace included" {
	filter "cat >'$MS_DIR/seen'"
	run smtp_pipe "${EMR}DATA\r\n${MSG}..dot\r\n.\r\nQUIT\r\n"
	assert_success
	ms_normalize_msg <"$MS_DIR/seen" >"$MS_DIR/seen.n"
	printf '%b' "${TRACE}Subject: x\nFrom: a@b.example\n\nhi\n.dot\n" >"$MS_DIR/expected"
	ms_assert_same "$MS_DIR/expected" "$MS_DIR/seen.n" 'filter input'
	cmp "$MS_DIR/seen" "$(ms_new_file)"
}

@test "exit 0: lines that are not header fields are dropped and logged; an empty line ends them" {
	filter 'cat >/dev/null
printf "not a field\n\tits continuation\nX-Good: 1\nBad Name: x\nX-Ctl: a\001b\nX-Also: 2\n\nX-After: no\n"'
	run smtp_pipe "${EMR}DATA\r\n${MSG}.\r\nQUIT\r\n"
	assert_success
	assert_stored "${TRACE}X-Good: 1\nX-Also: 2\nSubject: x\nFrom: a@b.example\n\nhi\n"
	grep -q 'event=filter id=.* dropped=3' "$MS_DIR/log"
}

@test "exit 0: at most 100 fields are added, the rest logged and dropped" {
	filter 'cat >/dev/null
i=0; while [ $i -lt 105 ]; do echo "X-N: $i"; i=$((i+1)); done'
	run smtp_pipe "${EMR}DATA\r\n${MSG}.\r\nQUIT\r\n"
	assert_success
	assert_equal "$(grep -c '^X-N: ' "$(ms_new_file)")" 100
	grep -q '^X-N: 99$' "$(ms_new_file)"
	run grep -c '^X-N: 100$' "$(ms_new_file)"
	assert_output 0
	grep -q 'dropped=5' "$MS_DIR/log"
}

@test "exit 100: 554 5.7.1 with the first line it printed; nothing stored" {
	filter 'cat >/dev/null; echo "Go away, spammer"; echo "second line"; exit 100'
	run data_reply "DATA\r\n${MSG}.\r\n"
	assert_reply 554 5.7.1 'Go away, spammer'
	assert_equal "$(ms_new_count)" 0
	assert_equal "$(ms_tmp_count)" 0
}

@test "exit 100 without a text: the catalogue's 554 5.7.1" {
	filter 'exit 100'
	run data_reply "DATA\r\n${MSG}.\r\n"
	assert_reply 554 5.7.1 'Transaction failed: refused by a content filter'
	assert_equal "$(ms_new_count)" 0
}

@test "exit 100: the text is made printable ASCII and cut at 200 octets" {
	filter 'printf "bad\033[31m\tstuff \303\251"; head -c 300 /dev/zero | tr "\0" x; echo; exit 100'
	run data_reply "DATA\r\n${MSG}.\r\n"
	assert_success
	[[ $output =~ ^554\ 5\.7\.1\ bad\?\[31m\?stuff\ \?\?(x+)$ ]] || fail "got: $output"
	assert_equal "$(( ${#BASH_REMATCH[1]} + 17 ))" 200
}

@test "exit 111 and exit 75: 451 4.7.1 with its text" {
	local code
	for code in 111 75; do
		filter "echo 'try later ($code)'; exit $code"
		run data_reply "DATA\r\n${MSG}.\r\n"
		assert_reply 451 4.7.1 "try later ($code)"
		assert_equal "$(ms_new_count)" 0
	done
}

@test "any other exit, or a signal: 451 4.7.1 from the catalogue" {
	filter 'echo "this text is not used"; exit 3'
	run data_reply "DATA\r\n${MSG}.\r\n"
	assert_reply 451 4.7.1 'Requested action aborted: deferred by a content filter, try again later'
	filter 'kill -SEGV $$'
	run data_reply "DATA\r\n${MSG}.\r\n"
	assert_reply 451 4.7.1 'Requested action aborted: deferred by a content filter, try again later'
	grep -q 'event=filter id=.* result=failed signal=11' "$MS_DIR/log"
	assert_equal "$(ms_new_count)" 0
	assert_equal "$(ms_tmp_count)" 0
}

@test "a filter_command that cannot be run: 451 4.7.1" {
	MS_OPTS+=(-o "filter_command=$MS_DIR/missing --flag")
	run data_reply "DATA\r\n${MSG}.\r\n"
	assert_reply 451 4.7.1 'Requested action aborted: deferred by a content filter, try again later'
	grep -q 'event=filter id=.* result=failed exit=127' "$MS_DIR/log"
}

@test "timeout: 451 4.7.1, and the filter's whole process group is killed" {
	filter "echo \$\$ >'$MS_DIR/pid'
sleep 300 &
echo \$! >'$MS_DIR/child'
wait"
	MS_OPTS+=(-o filter_timeout=1)
	run data_reply "DATA\r\n${MSG}.\r\n"
	assert_reply 451 4.7.1 'Requested action aborted: deferred by a content filter, try again later'
	grep -q 'event=filter id=.* result=timeout pid=[0-9]* killed=group' "$MS_DIR/log"
	local pid child state
	pid=$(cat "$MS_DIR/pid")
	child=$(cat "$MS_DIR/child")
	# mailslot reaped its child; the group's other member is dead (at most
	# a zombie until whoever inherited it reaps it).
	run kill -0 "$pid"
	assert_failure
	state=$(awk '{ print $3 }' "/proc/$child/stat" 2>/dev/null || true)
	[ -z "$state" ] || [ "$state" = Z ] || fail "pid $child still running (state $state)"
	assert_equal "$(ms_new_count)" 0
}

@test "exit 0 with a process left in its group: that process is killed, the message stored" {
	filter "cat >/dev/null
sleep 300 &
echo \$! >'$MS_DIR/child'
echo 'X-Filtered: yes'
exit 0"
	run data_reply "DATA\r\n${MSG}.\r\n"
	assert_output --partial '250 2.0.0 queued as'
	local child state
	child=$(cat "$MS_DIR/child")
	state=$(awk '{ print $3 }' "/proc/$child/stat" 2>/dev/null || true)
	[ -z "$state" ] || [ "$state" = Z ] || {
		kill "$child"
		fail "pid $child still running (state $state)"
	}
	grep -q '^X-Filtered: yes$' "$(ms_new_file)"
}

@test "SIGTERM while the filter runs: 421 at once, the filter killed, nothing stored" {
	# filter_timeout is longer than the client waits: only the signal can end it.
	filter "echo \$\$ >'$MS_DIR/pid'
exec sleep 300"
	MS_OPTS+=(-o filter_timeout=60)
	run smtp_exec --send "${EMR}DATA\r\n" --wait '354 ' --send "${MSG}.\r\n" --pause 0.5 \
		--signal TERM
	assert_success
	assert_line --index -1 --regexp '^421 4\.3\.2 mx\.test '
	assert_equal "$(ms_report closed)" yes
	assert_equal "$(ms_report exit)" 0
	assert_equal "$(ms_new_count)" 0
	[ -f "$MS_DIR/pid" ] || fail "the filter did not start"
	run kill -0 "$(cat "$MS_DIR/pid")"
	assert_failure
}

# send_big: a message of 10486 lines of 98 octets (about 1 MB) over a pipe;
# it is stored, every line of it.
send_big() {
	python3 -c '
import sys
sys.stdout.write("EHLO c.example\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<bob@example.org>\r\nDATA\r\nSubject: big\r\n\r\n")
sys.stdout.write(("x" * 98 + "\r\n") * 10486)
sys.stdout.write(".\r\nQUIT\r\n")' >"$MS_DIR/big"
	run smtp_pipe_file "$MS_DIR/big"
	assert_success
	assert_line --regexp '^250 2\.0\.0 queued as '
	assert_equal "$(grep -c '^x\{98\}$' "$(ms_new_file)")" 10486
}

@test "a filter that exits 0 without reading a 1 MB message: stored" {
	filter 'exit 0'
	send_big
}

@test "a filter that prints a lot before reading: no deadlock, stored" {
	filter 'head -c 300000 /dev/zero | tr "\0" "y"; echo; cat >/dev/null'
	send_big
	run grep -c '^yyy' "$(ms_new_file)"
	assert_output 0
}

@test "the environment: the envelope in MAILSLOT_*, PATH, nothing else" {
	filter "cat >/dev/null; env | sort >'$MS_DIR/env'"
	TCPREMOTEIP=192.0.2.7 TCPREMOTEHOST=client.example SECRET=leak run smtp_pipe \
		"EHLO helo.example\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<bob@example.org>\r\nRCPT TO:<carol@example.org>\r\nDATA\r\n${MSG}.\r\nQUIT\r\n"
	assert_success
	local id
	id=$(sed -n 's/.*event=deliver id=\([^ ]*\).*/\1/p' "$MS_DIR/log" | head -n 1)
	[ -n "$id" ] || fail "no delivery logged"
	grep -v '^PWD=' "$MS_DIR/env" >"$MS_DIR/env.got"
	cat >"$MS_DIR/env.want" <<-EOF
	MAILSLOT_CLIENT_ADDR=192.0.2.7
	MAILSLOT_CLIENT_NAME=client.example
	MAILSLOT_HELO=helo.example
	MAILSLOT_QUEUE_ID=$id
	MAILSLOT_RECIPIENTS=bob@example.org carol@example.org
	MAILSLOT_SENDER=a@b.example
	MAILSLOT_TLS=no
	PATH=/usr/local/bin:/usr/bin:/bin
	EOF
	ms_assert_same "$MS_DIR/env.want" "$MS_DIR/env.got" environment
	grep -q "with ESMTP id $id" "$(ms_new_file)"
}

@test "the environment: the null sender is empty" {
	filter "cat >/dev/null; printf '%s' \"\$MAILSLOT_SENDER\" >'$MS_DIR/sender'"
	run smtp_pipe "EHLO c.example\r\nMAIL FROM:<>\r\nRCPT TO:<bob@example.org>\r\nDATA\r\n${MSG}.\r\nQUIT\r\n"
	assert_success
	assert_line --regexp '^250 2\.0\.0 queued as '
	[ -f "$MS_DIR/sender" ] && [ ! -s "$MS_DIR/sender" ]
}

@test "BDAT LAST: the filter's verdict answers it, and its fields are stored" {
	filter 'cat >/dev/null; echo "X-Chunked: checked"'
	run smtp_pipe "${EMR}BDAT 4\r\nSubjBDAT 10 LAST\r\nect: x\r\n\r\nQUIT\r\n"
	assert_success
	assert_line --regexp '^250 2\.0\.0 queued as '
	grep -qx 'X-Chunked: checked' "$(ms_new_file)"
	filter 'cat >/dev/null; echo "chunked spam"; exit 100'
	run data_reply "BDAT 4\r\nSubj" "BDAT 10 LAST\r\nect: x\r\n\r\n"
	assert_reply 554 5.7.1 'chunked spam'
	assert_equal "$(ms_new_count)" 1
}

@test "several Maildirs: one file built from the spool, with the filter's fields, linked into each" {
	filter 'cat >/dev/null; echo "X-Checked: yes"'
	MS_OPTS+=(-o "mailboxes=$MS_DIR/boxes")
	mkdir -p "$MS_DIR"/boxes/{bob,carol}/{tmp,new,cur}
	run smtp_pipe "EHLO c.example\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<bob@mx.test>\r\nRCPT TO:<carol@mx.test>\r\nDATA\r\n${MSG}.\r\nQUIT\r\n"
	assert_success
	local b c
	b=$(find "$MS_DIR/boxes/bob/new" -type f)
	c=$(find "$MS_DIR/boxes/carol/new" -type f)
	[ -n "$b" ] && [ -n "$c" ] || fail "not stored in both: $output"
	# One file for the two recipients: it names neither.
	assert_equal "$(stat -c '%i %h' "$b")" "$(stat -c '%i %h' "$c")"
	assert_equal "$(stat -c %h "$b")" 2
	run grep -c -e '^Delivered-To: ' -e $'^\tfor <' "$b"
	assert_output 0
	grep -qx 'X-Checked: yes' "$b"
	grep -qx 'X-Checked: yes' "$c"
	[[ ${b##*/} =~ ,S=([0-9]+), ]] && assert_equal "${BASH_REMATCH[1]}" "$(stat -c %s "$b")"
	[[ ${c##*/} =~ ,S=([0-9]+), ]] && assert_equal "${BASH_REMATCH[1]}" "$(stat -c %s "$c")"
}

@test "-t prints the filter and milter keys with their defaults; bounds are checked" {
	run "$MAILSLOT" -t -o "maildir=$MS_MAILDIR" -o hostname=mx.test -o 'filter_command=/bin/true --x'
	assert_success
	assert_line 'filter_command = /bin/true --x'
	assert_line 'filter_timeout = 60'
	assert_line 'milters = '
	assert_line 'milter_timeout = 30'
	assert_line 'milter_default_action = tempfail'
	run "$MAILSLOT" -t -o "maildir=$MS_MAILDIR" -o hostname=mx.test -o filter_timeout=0
	assert_failure 100
	assert_output --partial 'filter_timeout'
	run "$MAILSLOT" -t -o "maildir=$MS_MAILDIR" -o hostname=mx.test -o milter_default_action=bounce
	assert_failure 100
	assert_output --partial 'milter_default_action'
}

@test "spamc: GTUBE is refused with 554 5.7.1 and nothing is stored" {
	[ -n "$SPAMD_PID" ] || skip "no spamd"
	MS_OPTS+=(-o "filter_command=$MS_REPO/contrib/mailslot-spamc -d 127.0.0.1 -p $SPAMD_PORT")
	run data_reply "DATA\r\nSubject: test\r\nFrom: a@b.example\r\n\r\nXJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X\r\n.\r\n"
	assert_reply 554 5.7.1 'Message looks like spam'
	assert_equal "$(ms_new_count)" 0
}

@test "spamc: ham is stored with the X-Spam-* fields spamd added, once each" {
	[ -n "$SPAMD_PID" ] || skip "no spamd"
	MS_OPTS+=(-o "filter_command=$MS_REPO/contrib/mailslot-spamc -d 127.0.0.1 -p $SPAMD_PORT")
	run smtp_pipe "${EMR}DATA\r\nSubject: lunch\r\nFrom: a@b.example\r\nTo: bob@example.org\r\nDate: Mon, 07 Dec 2026 10:00:00 +0000\r\nMessage-ID: <1@b.example>\r\n\r\nShall we meet at noon?\r\n.\r\nQUIT\r\n"
	assert_success
	assert_line --regexp '^250 2\.0\.0 queued as '
	local f
	f=$(ms_new_file)
	grep -q '^X-Spam-Status: No, ' "$f"
	grep -q '^X-Spam-Checker-Version: SpamAssassin' "$f"
	assert_equal "$(grep -c '^X-Spam-Status:' "$f")" 1
	assert_equal "$(grep -c '^Subject:' "$f")" 1
	assert_equal "$(grep -c '^Return-Path:' "$f")" 1
	head -1 "$f" | grep -q '^Return-Path: <a@b.example>$'
}

@test "spamc: spamd not reachable gives 451 4.7.1" {
	command -v spamc >/dev/null || skip "no spamc"
	MS_OPTS+=(-o "filter_command=$MS_REPO/contrib/mailslot-spamc -d 127.0.0.1 -p 9")
	run data_reply "DATA\r\n${MSG}.\r\n"
	assert_reply 451 4.7.1 'Spam check unavailable, try again later'
}
