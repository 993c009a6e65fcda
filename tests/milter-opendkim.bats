#!/usr/bin/env bats
# mailslot + OpenDKIM (a milter): a message from an internal client is
# stored with the DKIM-Signature OpenDKIM inserted; that stored message,
# sent again from an outside client, verifies (dkim=pass), and with one
# body octet changed it fails.  This proves that the headers and the body
# reach the milter exactly as sent.  OpenDKIM runs once for the file, in
# signing and verifying mode, on a unix socket in a temporary directory,
# with its public key from TestPublicKeys (no DNS).

load 'lib/common'

setup_file() {
	command -v opendkim >/dev/null && command -v opendkim-genkey >/dev/null ||
		skip "no opendkim, opendkim-tools"
	local d=$BATS_FILE_TMPDIR
	export DK=$d/dkim
	mkdir -p "$DK"
	chmod 1777 "$DK"
	while [ "$d" != / ] && [ "$d" != /tmp ]; do
		chmod o+x "$d"
		d=$(dirname "$d")
	done
	opendkim-genkey -D "$DK" -d example.org -s sel -b 1024
	printf 'sel._domainkey.example.org v=DKIM1; k=rsa; p=%s\n' \
		"$(openssl rsa -in "$DK/sel.private" -pubout -outform DER 2>/dev/null | base64 -w0)" \
		>"$DK/keys"
	cat >"$DK/opendkim.conf" <<-EOC
	Mode			sv
	Socket			local:$DK/dkim.sock
	Domain			example.org
	Selector		sel
	KeyFile			$DK/sel.private
	Canonicalization	simple/simple
	InternalHosts		127.0.0.1
	AuthservID		mx.test
	TestPublicKeys		$DK/keys
	Background		no
	PidFile			$DK/opendkim.pid
	UMask			000
	Syslog			no
	RequireSafeKeys		no
	EOC
	# OpenDKIM refuses a configuration file under a world-writable /tmp:
	# it reads it from a pipe instead.
	opendkim -x /dev/stdin -f <"$DK/opendkim.conf" >"$DK/log" 2>&1 &
	echo $! >"$DK/pid"
	local i
	for i in $(seq 1 100); do
		[ -S "$DK/dkim.sock" ] && break
		sleep 0.1
	done
	[ -S "$DK/dkim.sock" ] || { cat "$DK/log" >&2; false; }
}

teardown_file() {
	[ -f "$DK/pid" ] && kill "$(cat "$DK/pid")" 2>/dev/null
	return 0
}

setup() {
	ms_setup
	MS_OPTS+=(-o "milters=unix:$DK/dkim.sock")
}
teardown() { ms_teardown; }

MSG='From: Alice <alice@example.org>\r\nTo: bob@example.org\r\nSubject: signed\r\nDate: Mon, 07 Dec 2026 10:00:00 +0000\r\nMessage-ID: <1@example.org>\r\n\r\nHello,\r\n..a dotted line\r\n  trailing space and tab \t\r\n\r\nbye\r\n'

# bdat FILE: send FILE's octets (LF made CRLF) in one BDAT LAST.
bdat() {
	sed 's/$/\r/' "$1" >"$MS_DIR/again"
	local n
	n=$(stat -c %s "$MS_DIR/again")
	{
		printf 'EHLO c.example\r\nMAIL FROM:<alice@example.org>\r\nRCPT TO:<bob@example.org>\r\nBDAT %s LAST\r\n' "$n"
		cat "$MS_DIR/again"
		printf 'QUIT\r\n'
	} >"$MS_DIR/in"
	run smtp_pipe_file "$MS_DIR/in"
}

@test "signed by OpenDKIM, then verified: dkim=pass; one body octet changed: dkim=fail" {
	TCPREMOTEIP=127.0.0.1 run smtp_pipe "EHLO c.example\r\nMAIL FROM:<alice@example.org>\r\nRCPT TO:<bob@example.org>\r\nDATA\r\n$MSG.\r\nQUIT\r\n"
	assert_line --partial '250 2.0.0 queued as'
	f=$(ms_new_file)
	# inserted where OpenDKIM asked: at index 0, above mailslot's Received
	run grep -n -m1 -e '^DKIM-Signature:' -e '^Received:' "$f"
	assert_output --regexp '^[0-9]+:DKIM-Signature: v=1;'
	grep -q 'd=example.org' "$f"
	grep -q 's=sel' "$f"
	# the stored message, from an outside client, through OpenDKIM again
	cp "$f" "$BATS_TEST_TMPDIR/signed"
	rm -f "$MS_MAILDIR"/new/*
	TCPREMOTEIP=192.0.2.9 bdat "$BATS_TEST_TMPDIR/signed"
	assert_line --partial '250 2.0.0 queued as'
	run grep -A2 '^Authentication-Results:' "$(ms_new_file)"
	assert_output --partial 'dkim=pass'
	# one octet of the body changed
	rm -f "$MS_MAILDIR"/new/*
	sed 's/^bye$/bye!/' "$BATS_TEST_TMPDIR/signed" >"$BATS_TEST_TMPDIR/changed"
	TCPREMOTEIP=192.0.2.9 bdat "$BATS_TEST_TMPDIR/changed"
	assert_line --partial '250 2.0.0 queued as'
	run grep -A2 '^Authentication-Results:' "$(ms_new_file)"
	assert_output --partial 'dkim=fail'
}
