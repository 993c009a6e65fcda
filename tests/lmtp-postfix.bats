#!/usr/bin/env bats
# Postfix as the LMTP client (issue 15): a private Postfix instance (its own
# config_directory, queue_directory and log in a temporary directory, smtpd
# on 127.0.0.1 only, no delivery anywhere but mailslot) relays one message
# for three recipients of mailslot's domain to `virtual_transport =
# lmtp:unix:PATH`, where systemd-socket-activate runs mailslot with
# -o protocol=lmtp for each connection.  One recipient is over quota:
# Postfix sends SIZE=, so mailslot refuses that one at RCPT; through a
# transport that drops SIZE (lmtp_discard_lhlo_keywords) the refusal comes
# after the data, for that recipient only.  Both Postfix and the listener
# are started once for the file and stopped by PID.

load 'lib/common'

setup_file() {
	PF_SKIP=
	export PF_SKIP
	if [ "$(id -u)" != 0 ]; then
		PF_SKIP="needs root (Postfix runs as root, then as postfix)"
		return 0
	fi
	if ! command -v postfix >/dev/null; then
		PF_SKIP="no postfix"
		return 0
	fi
	local d=$BATS_FILE_TMPDIR/pf i
	export PF=$d PF_PORT
	mkdir -p "$d/etc" "$d/queue" "$d/data" "$d/mb"
	for u in alice bob carol; do mkdir -p "$d/mb/$u"/{tmp,new,cur}; done
	local p=$d
	while [ "$p" != / ] && [ "$p" != /tmp ]; do
		chmod o+x "$p"
		p=$(dirname "$p")
	done
	id mailslot-test >/dev/null 2>&1 ||
		useradd --system --no-create-home --shell /usr/sbin/nologin mailslot-test
	chown -R mailslot-test: "$d/mb"
	chown postfix: "$d/data"
	PF_PORT=$(ms_free_port)

	# mailslot on a unix socket, one process per connection (Accept=yes).
	systemd-socket-activate --inetd -a -l "$d/lmtp.sock" \
	    $MAILSLOT_WRAPPER "$MAILSLOT" -o protocol=lmtp -o hostname=mx.test \
	    -o "mailboxes=$d/mb" -o domains=mx.test,nosize.test -o user=mailslot-test \
	    -o maildir=/nonexistent \
	    2>>"$d/sa.log" </dev/null 3>&- &
	echo $! >"$d/sa.pid"
	for i in $(seq 1 100); do
		[ -S "$d/lmtp.sock" ] && break
		sleep 0.05
	done
	[ -S "$d/lmtp.sock" ] || { cat "$d/sa.log" >&2; return 1; }
	chmod 666 "$d/lmtp.sock"

	cat >"$d/etc/main.cf" <<-EOF
	compatibility_level = 3.6
	queue_directory = $d/queue
	data_directory = $d/data
	maillog_file_prefixes = $d
	maillog_file = $d/maillog
	myhostname = relay.test
	mydomain = relay.test
	mydestination =
	inet_interfaces = 127.0.0.1
	inet_protocols = ipv4
	mynetworks = 127.0.0.0/8
	smtpd_relay_restrictions = permit_mynetworks, reject
	alias_maps =
	alias_database =
	biff = no
	smtputf8_enable = no
	virtual_mailbox_domains = mx.test, nosize.test
	virtual_transport = lmtp:unix:$d/lmtp.sock
	transport_maps = texthash:$d/etc/transport
	# Nothing leaves this instance: bounces to the client's domain fail here.
	default_transport = error:no delivery outside the test
	relay_transport = error:no delivery outside the test
	notify_classes =
	EOF
	printf 'nosize.test lmtpnosize:unix:%s\n' "$d/lmtp.sock" >"$d/etc/transport"
	cat >"$d/etc/master.cf" <<-EOF
	127.0.0.1:$PF_PORT inet n - n - - smtpd
	cleanup   unix n - n - 0 cleanup
	qmgr      unix n - n 300 1 qmgr
	rewrite   unix - - n - - trivial-rewrite
	bounce    unix - - n - 0 bounce
	defer     unix - - n - 0 bounce
	trace     unix - - n - 0 bounce
	verify    unix - - n - 1 verify
	flush     unix n - n 1000? 0 flush
	proxymap  unix - - n - - proxymap
	showq     unix n - n - - showq
	error     unix - - n - - error
	retry     unix - - n - - error
	discard   unix - - n - - discard
	smtp      unix - - n - - smtp
	lmtp      unix - - n - - lmtp
	lmtpnosize unix - - n - - lmtp -o lmtp_discard_lhlo_keywords=size
	anvil     unix - - n - 1 anvil
	scache    unix - - n - 1 scache
	postlog   unix-dgram n - n - 1 postlogd
	EOF
	postfix -c "$d/etc" start >"$d/start.log" 2>&1 || {
		cat "$d/start.log" >&2
		return 1
	}
	for i in $(seq 1 100); do
		[ -s "$d/queue/pid/master.pid" ] && python3 -c "
import socket; socket.create_connection(('127.0.0.1', $PF_PORT), 1).close()" 2>/dev/null && break
		sleep 0.1
	done
}

teardown_file() {
	local d=${PF:-} pid i
	[ -n "$d" ] || return 0
	if [ -s "$d/queue/pid/master.pid" ]; then
		pid=$(tr -d ' ' <"$d/queue/pid/master.pid")
		kill "$pid" 2>/dev/null
		for i in $(seq 1 100); do
			kill -0 "$pid" 2>/dev/null || break
			sleep 0.1
		done
	fi
	if [ -s "$d/sa.pid" ]; then
		kill "$(cat "$d/sa.pid")" 2>/dev/null
	fi
	return 0
}

setup() {
	[ -z "$PF_SKIP" ] || skip "$PF_SKIP"
	ms_setup
	local u
	for u in alice bob carol; do
		find "$PF/mb/$u" -type f -delete
	done
	# carol's mailbox takes 1000 octets; the message is larger.
	printf '1000S\n0 0\n' >"$PF/mb/carol/maildirsize"
	chown mailslot-test: "$PF/mb/carol/maildirsize"
}

# Submit one message for alice, bob and carol @$1 to Postfix's smtpd.
pf_submit() {
	python3 - "$PF_PORT" "$1" "$2" <<-'PY'
	import smtplib, sys
	port, dom, tag = int(sys.argv[1]), sys.argv[2], sys.argv[3]
	body = "Subject: %s\r\nMessage-ID: <%s@client.test>\r\n\r\n" % (tag, tag)
	body += ("x" * 70 + "\r\n") * 25
	with smtplib.SMTP("127.0.0.1", port, local_hostname="client.test") as s:
	    s.sendmail("a@client.test", ["alice@" + dom, "bob@" + dom, "carol@" + dom], body)
	PY
}

# Wait (bounded) until Postfix's log has N status= lines for the message $1.
pf_wait() {
	local tag=$1 n=$2 i qid
	for i in $(seq 1 150); do
		qid=$(sed -n "s/.* \([0-9A-F]\{6,\}\): message-id=<$tag@client.test>.*/\1/p" "$PF/maillog" | head -n 1)
		if [ -n "$qid" ] && [ "$(grep -c " $qid: to=<.*status=" "$PF/maillog")" -ge "$n" ]; then
			grep " $qid: to=<" "$PF/maillog"
			return 0
		fi
		sleep 0.2
	done
	echo "no $n status= lines for $tag:" >&2
	cat "$PF/maillog" >&2
	return 1
}

@test "Postfix lmtp:unix: two delivered, the one over quota refused at RCPT (SIZE=)" {
	pf_submit mx.test size1
	run pf_wait size1 3
	assert_success
	assert_equal "$(grep -c 'status=sent' <<<"$output")" 2
	assert_line --regexp 'to=<alice@mx\.test>.*relay=.*lmtp\.sock.*status=sent \(250 2\.0\.0 <alice@mx\.test>: queued as '
	assert_line --regexp 'to=<bob@mx\.test>.*status=sent \(250 2\.0\.0 <bob@mx\.test>: queued as '
	assert_line --regexp 'to=<carol@mx\.test>.*status=bounced .*552 5\.2\.2 <carol@mx\.test>: mailbox is full'
	assert_equal "$(find "$PF/mb/alice/new" -type f | wc -l)" 1
	assert_equal "$(find "$PF/mb/bob/new" -type f | wc -l)" 1
	assert_equal "$(find "$PF/mb/carol/new" "$PF/mb/carol/tmp" -type f | wc -l)" 0
	f=$(find "$PF/mb/alice/new" -type f)
	grep -qx 'Subject: size1' "$f"
	# One file for alice and bob: it names neither.
	assert_equal "$(stat -c %i "$f")" "$(stat -c %i "$(find "$PF/mb/bob/new" -type f)")"
	assert_equal "$(grep -c '^Delivered-To: ' "$f")" 0
	grep -q $'^\tby mx.test (mailslot) with LMTP id ' "$f"
}

@test "Postfix lmtp:unix without SIZE: carol refused after the data, alone" {
	pf_submit nosize.test nosize1
	run pf_wait nosize1 3
	assert_success
	assert_equal "$(grep -c 'status=sent' <<<"$output")" 2
	assert_line --regexp 'to=<alice@nosize\.test>.*status=sent \(250 2\.0\.0 <alice@nosize\.test>: queued as '
	assert_line --regexp 'to=<bob@nosize\.test>.*status=sent \(250 2\.0\.0 <bob@nosize\.test>: queued as '
	# After the data: Postfix says so in its bounce reason.
	assert_line --regexp 'to=<carol@nosize\.test>.*status=bounced .*552 5\.2\.2 <carol@nosize\.test>: mailbox is full.*in reply to end of DATA command'
	assert_equal "$(find "$PF/mb/alice/new" -type f | wc -l)" 1
	assert_equal "$(find "$PF/mb/bob/new" -type f | wc -l)" 1
	assert_equal "$(find "$PF/mb/carol/new" "$PF/mb/carol/tmp" -type f | wc -l)" 0
	cmp <(tail -n +6 "$(find "$PF/mb/alice/new" -type f)") <(tail -n +6 "$(find "$PF/mb/bob/new" -type f)")
}
