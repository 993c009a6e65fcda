#!/usr/bin/env bats
# The PROXY protocol (src/proxy.c), without a balancer: swaks and the
# scripted client (tests/lib/smtpclient.py) play one.  mailslot listens on
# 127.0.0.1 (ms_listen), and proxy_from names 127.0.0.1 (or not).  A
# header split over several reads, at each length limit and one past it,
# truncated, late, missing, followed by pipelined commands; v2 LOCAL,
# UNSPEC, TLVs; an IPv6 source on an IPv4 connection; STARTTLS after the
# header; both launchers (fd 0/1 and fd 3); the peer in Received, the log,
# forward_command's environment and the address-literal check.
# tests/proxy-haproxy.bats does the same through a real HAProxy.

load 'lib/common'

setup_file() {
	local pki=$BATS_FILE_TMPDIR/pki
	mkdir -p "$pki"
	openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
		-keyout "$pki/key.pem" -out "$pki/cert.pem" -days 30 \
		-subj '/CN=mx.test' 2>/dev/null
	chmod 644 "$pki/key.pem"
	chmod o+x "$BATS_FILE_TMPDIR" "$pki"
}

setup() {
	ms_setup
	MS_OPTS+=(-o proxy_from=127.0.0.1)
}

teardown() {
	ms_teardown
}

# The v2 signature, as smtpclient.py --send decodes it.
V2SIG='\r\n\r\n\x00\r\nQUIT\n'
# v2 PROXY TCP4 192.0.2.7:5555 -> 198.51.100.1:25 (12 octets of addresses).
V2_TCP4="${V2SIG}"'\x21\x11\x00\x0c\xc0\x00\x02\x07\xc6\x33\x64\x01\x15\xb3\x00\x19'

# One message through smtp_sock after the header steps given; QUIT ends it.
send_after() {
	smtp_sock "$@" --send 'EHLO c.example\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<u@example.org>\r\nDATA\r\n' \
		--wait '354 ' --send 'Subject: p\r\n\r\nhi\r\n.\r\nQUIT\r\n' --wait '221 '
}

received() {
	sed -n '/^Received: /{N;p;}' "$(ms_new_file)"
}

# The connection closed with not one octet said, and the log says why.
assert_closed_silently() {
	[ "$(ms_report closed)" = yes ] || fail "mailslot did not close the connection"
	[ ! -s "$MS_DIR/replies" ] || fail "mailslot said: $(cat -A "$MS_DIR/replies")"
	wait_log "event=proxy error=\"$1\" proxy=127.0.0.1"
}

# header_refused SEND REASON: a client that sends SEND and waits for the
# greeting is closed with nothing said, REASON logged.
header_refused() {
	run smtp_sock --send "$1" --wait '220 '
	assert_closed_silently "$2"
}

# The child writes its log after the client saw the close: wait for it (bounded).
wait_log() {
	local i
	for i in $(seq 1 100); do
		grep -qF -- "$1" "$MS_DIR/sa.log" && return 0
		sleep 0.05
	done
	fail "not in the log: $1 (log: $(grep mailslot "$MS_DIR/sa.log"))"
}

@test "v1 from a trusted balancer: the header's source is the peer in Received and the log" {
	ms_listen
	run send_after --send 'PROXY TCP4 192.0.2.7 198.51.100.1 5555 25\r\n'
	assert_success
	assert_line --regexp '^250 2\.0\.0 queued as '
	run received
	assert_output --regexp '^Received: from c\.example \(unknown \[192\.0\.2\.7\]\)'
	wait_log 'event=connect peer=192.0.2.7 port=5555 host=unknown line_endings=crlf proxy=127.0.0.1'
	# The balancer's address appears only as proxy=.
	run grep -c 'session=.*127\.0\.0\.1' "$MS_DIR/sa.log"
	assert_output 1
}

@test "swaks --proxy-version 1 and 2: the client's address in Received, an IPv6 source on an IPv4 connection" {
	ms_listen
	run swaks --server 127.0.0.1:"$MS_PORT" --to u@example.org --from a@b.example \
		--proxy-version 1 --proxy-family TCP4 --proxy-source 192.0.2.11 --proxy-source-port 4011 \
		--proxy-dest 127.0.0.1 --proxy-dest-port 25
	assert_success
	assert_line --regexp '^<-  250 2\.0\.0 queued as '
	run received
	assert_output --regexp '\(unknown \[192\.0\.2\.11\]\)'
	rm "$(ms_new_file)"
	run swaks --server 127.0.0.1:"$MS_PORT" --to u@example.org --from a@b.example \
		--proxy-version 2 --proxy-family AF_INET6 --proxy-source 2001:db8::12 --proxy-source-port 4012 \
		--proxy-dest 2001:db8::1 --proxy-dest-port 25
	assert_success
	assert_line --regexp '^<-  250 2\.0\.0 queued as '
	run received
	assert_output --regexp '\(unknown \[IPv6:2001:db8::12\]\)'
	wait_log 'event=connect peer=IPv6:2001:db8::12 port=4012 host=unknown line_endings=crlf proxy=127.0.0.1'
}

@test "swaks with a malformed header: closed, nothing said, logged" {
	ms_listen
	run swaks --server 127.0.0.1:"$MS_PORT" --to u@example.org --from a@b.example \
		--proxy 'TCP4 192.0.2.11 127.0.0.1 4011'
	assert_failure
	refute_line --regexp '^<-'
	assert_output --partial 'Remote host closed connection'
	wait_log 'event=proxy error="v1 line has not six fields" proxy=127.0.0.1'
	[ "$(ms_new_count)" = 0 ]
}

@test "swaks from an untrusted peer: PROXY is an unknown command, the socket's address stays" {
	MS_OPTS+=(-o proxy_from='192.0.2.1 10.0.0.0/8 2001:db8::/32')
	ms_listen
	run swaks --server 127.0.0.1:"$MS_PORT" --to u@example.org --from a@b.example \
		--proxy-version 1 --proxy-family TCP4 --proxy-source 192.0.2.11 --proxy-source-port 4011 \
		--proxy-dest 127.0.0.1 --proxy-dest-port 25
	assert_line '<-  220 mx.test ESMTP mailslot ready'
	# The 500 is PROXY's; swaks takes it for EHLO's, and from there on
	# it and mailslot are a reply apart.
	assert_line '<** 500 5.5.1 Syntax error, command unrecognized'
	wait_log 'event=connect peer=127.0.0.1 port='
	run grep 'session=' "$MS_DIR/sa.log"
	assert_line --partial 'event=refuse code=500 enh=5.5.1 command="PROXY TCP4 192.0.2.11 127.0.0.1 4011 25"'
	refute_line --partial 'peer=192.0.2.11'
	refute_output --partial proxy=
	refute_output --partial event=proxy
}

@test "a header split over several reads, v1 and v2, the rest pipelined in the header's last read" {
	ms_listen
	run send_after --send 'PR' --pause 0.2 --send 'OXY TCP4 192.0.2.7 198.51' --pause 0.2 \
		--send '.100.1 5555 25\r' --pause 0.2 --send '\n'
	assert_line --regexp '^250 2\.0\.0 queued as '
	run received
	assert_output --regexp '\[192\.0\.2\.7\]'
	rm "$(ms_new_file)"
	# v2 in three pieces: inside the signature, inside the addresses;
	# EHLO .. DATA in the same read as the header's last octets.
	run smtp_sock --send '\r\n\r\n\x00' --pause 0.2 --send '\r\nQUIT\n\x21\x11\x00\x0c\xc0\x00' --pause 0.2 \
		--send '\x02\x07\xc6\x33\x64\x01\x15\xb3\x00\x19EHLO c.example\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<u@example.org>\r\nDATA\r\n' \
		--wait '354 ' --send 'Subject: p\r\n\r\nhi\r\n.\r\nQUIT\r\n' --wait '221 '
	assert_success
	run ms_replies <<<"$output"
	assert_line --index 0 '220 mx.test ESMTP mailslot ready'
	assert_line --index 1 --regexp '^250-mx\.test.* \| 250-PIPELINING \| '
	assert_line --index 2 '250 2.1.0 <a@b.example>: Requested mail action okay, completed'
	assert_line --index 3 '250 2.1.5 <u@example.org>: Requested mail action okay, completed'
	run received
	assert_output --regexp '\[192\.0\.2\.7\]'
}

@test "v1 at 107 octets is taken; 108 without its CRLF is refused" {
	local a=ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff
	ms_listen
	# The worst case of the spec: UNKNOWN with both IPv6 addresses, 107 octets.
	[ "$(printf 'PROXY UNKNOWN %s %s 65535 65535\r\n' $a $a | wc -c)" = 107 ]
	run send_after --send "PROXY UNKNOWN $a $a 65535 65535\\r\\n"
	assert_line --regexp '^250 2\.0\.0 queued as '
	run received
	assert_output --regexp '^Received: from c\.example \(unknown\)'
	run smtp_sock --send "PROXY UNKNOWN $a $a 65535 655351\\r\\n" --wait '220 '
	assert_closed_silently 'v1 line longer than 107 octets'
}

@test "v2: 1,024 octets of addresses and TLVs are taken (skipped), 1,025 are refused" {
	local tlv
	ms_listen
	# 12 octets of addresses, then 1,012 of TLVs (type 0xE0, 1,009 octets of value).
	tlv=$(printf '\\xe0\\x03\\xf1%.0s' 1)$(printf 'x%.0s' $(seq 1 1009))
	run send_after --send "${V2SIG}"'\x21\x11\x04\x00\xc0\x00\x02\x07\xc6\x33\x64\x01\x15\xb3\x00\x19'"$tlv"
	assert_line --regexp '^250 2\.0\.0 queued as '
	run received
	assert_output --regexp '\[192\.0\.2\.7\]'
	header_refused "${V2SIG}"'\x21\x11\x04\x01\xc0\x00\x02\x07\xc6\x33\x64\x01\x15\xb3\x00\x19'"${tlv}x" 'v2 header declares more than 1024 octets'
}

@test "truncated, late, missing and malformed headers: closed with nothing said, each logged" {
	MS_OPTS+=(-o proxy_timeout=1)
	ms_listen
	run smtp_sock --send 'PROXY TCP4 192.0.2.7 198.51.100.1 55' --shut
	assert_closed_silently 'closed within the header (truncated)'
	run smtp_sock --send "${V2SIG}"'\x21\x11\x00\x0c\xc0' --shut
	assert_closed_silently 'closed within the header (truncated)'
	# Nothing within proxy_timeout (1 s); the client would wait 10 s.
	run smtp_sock --wait '220 '
	assert_closed_silently 'no header within proxy_timeout'
	header_refused 'PROXY TCP4 192.0.2.7' 'header incomplete at proxy_timeout'
	# A client that speaks first, as to any SMTP server.
	header_refused 'EHLO c.example\r\n' 'no PROXY header'
	header_refused 'PROXY TCP4 192.0.2.7 198.51.100.1 5555 25\n' 'v1 line not ended by CRLF'
	header_refused 'PROXY TCP4 192.0.2.07 198.51.100.1 5555 25\r\n' 'v1 address is not of its family'
	header_refused 'PROXY TCP4 2001:db8::1 198.51.100.1 5555 25\r\n' 'v1 address is not of its family'
	header_refused 'PROXY TCP4 192.0.2.7 198.51.100.1 05555 25\r\n' 'v1 port is not 0..65535'
	header_refused 'PROXY TCP4 192.0.2.7 198.51.100.1 65536 25\r\n' 'v1 port is not 0..65535'
	header_refused 'PROXY UDP4 192.0.2.7 198.51.100.1 5555 25\r\n' 'v1 protocol is not TCP4, TCP6 or UNKNOWN'
	header_refused "${V2SIG}"'\x31\x11\x00\x0c\xc0\x00\x02\x07\xc6\x33\x64\x01\x15\xb3\x00\x19' 'v2 version is not 2'
	header_refused "${V2SIG}"'\x22\x11\x00\x0c\xc0\x00\x02\x07\xc6\x33\x64\x01\x15\xb3\x00\x19' 'v2 command is neither LOCAL nor PROXY'
	header_refused "${V2SIG}"'\x21\x41\x00\x0c\xc0\x00\x02\x07\xc6\x33\x64\x01\x15\xb3\x00\x19' 'v2 family or protocol unknown'
	header_refused "${V2SIG}"'\x21\x21\x00\x0c\xc0\x00\x02\x07\xc6\x33\x64\x01\x15\xb3\x00\x19' 'v2 address block too short for its family'
	[ "$(ms_new_count)" = 0 ]
}

@test "v2 LOCAL keeps the balancer as the peer; UNSPEC and UNIX leave it unknown" {
	ms_listen
	run send_after --send "${V2SIG}"'\x20\x00\x00\x00'
	assert_line --regexp '^250 2\.0\.0 queued as '
	run received
	assert_output --regexp '\(unknown \[127\.0\.0\.1\]\)'
	rm "$(ms_new_file)"
	run send_after --send "${V2SIG}"'\x21\x00\x00\x04abcd'
	assert_line --regexp '^250 2\.0\.0 queued as '
	run received
	assert_output --regexp '^Received: from c\.example \(unknown\)'
	rm "$(ms_new_file)"
	run send_after --send "${V2SIG}"'\x21\x31\x00\xd8'"$(printf '\\x00%.0s' $(seq 1 216))"
	assert_line --regexp '^250 2\.0\.0 queued as '
	run received
	assert_output --regexp '^Received: from c\.example \(unknown\)'
	wait_log 'event=connect peer=unknown host=unknown line_endings=crlf proxy=127.0.0.1'
}

@test "an address literal is local when it names the header's destination, not the socket's" {
	MS_OPTS+=(-o domains=example.org)
	ms_listen
	run smtp_sock --send "${V2_TCP4}" --send 'EHLO c.example\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<u@[198.51.100.1]>\r\nRCPT TO:<u@[127.0.0.1]>\r\nQUIT\r\n' --wait '221 '
	assert_line '250 2.1.5 <u@[198.51.100.1]>: Requested mail action okay, completed'
	assert_line --regexp '^550 5\.7\.1 <u@\[127\.0\.0\.1\]>'
}

@test "forward_command gets TCPREMOTEIP, TCPREMOTEPORT, TCPLOCALIP, TCPLOCALPORT of the proxied connection" {
	printf '%s\n' '#!/bin/sh' 'env | grep "^TCP" | sort >"$(dirname "$0")/fwd.env"' 'cat >/dev/null' >"$MS_DIR/fwd"
	chmod 755 "$MS_DIR/fwd"
	printf 'ext: someone@remote.example\n' >"$MS_DIR/aliases"
	MS_OPTS+=(-o "aliases=$MS_DIR/aliases" -o "forward_command=$MS_DIR/fwd")
	ms_listen
	run smtp_sock --send 'PROXY TCP6 2001:db8::7 2001:db8::1 5555 2525\r\n' \
		--send 'EHLO c.example\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<ext@example.org>\r\nDATA\r\n' \
		--wait '354 ' --send 'Subject: p\r\n\r\nhi\r\n.\r\nQUIT\r\n' --wait '221 '
	assert_line --regexp '^250 2\.0\.0 queued as '
	run cat "$MS_DIR/fwd.env"
	assert_output "$(printf '%s\n' TCPLOCALIP=2001:db8::1 TCPLOCALPORT=2525 TCPREMOTEIP=2001:db8::7 TCPREMOTEPORT=5555)"
}

@test "STARTTLS after the header: the header is plaintext, Received says ESMTPS and the proxied peer" {
	MS_OPTS+=(-o "tls_certificate=$BATS_FILE_TMPDIR/pki/cert.pem" -o "tls_key=$BATS_FILE_TMPDIR/pki/key.pem")
	"$MAILSLOT" -t "${MS_OPTS[@]}" 2>&1 | grep -q 'built without TLS' && skip "built without TLS"
	ms_listen
	run swaks --server 127.0.0.1:"$MS_PORT" --to u@example.org --from a@b.example --tls \
		--proxy-version 2 --proxy-family AF_INET --proxy-source 192.0.2.13 --proxy-source-port 4013 \
		--proxy-dest 127.0.0.1 --proxy-dest-port 25
	assert_success
	assert_line --regexp '^<~  250 2\.0\.0 queued as '
	run received
	assert_output --regexp '\(unknown \[192\.0\.2\.13\]\)'
	assert_output --partial 'with ESMTPS'
}

@test "the fd 3 launcher (a plain Accept=yes unit) reads the header too" {
	MS_LISTEN_INETD=
	ms_listen
	run send_after --send 'PROXY TCP4 192.0.2.7 198.51.100.1 5555 25\r\n'
	assert_line --regexp '^250 2\.0\.0 queued as '
	run received
	assert_output --regexp '\[192\.0\.2\.7\]'
	header_refused 'HELO x\r\n' 'no PROXY header'
}

@test "proxy_from: bad words are named by -t; IPv4 entries match IPv4-mapped peers; -t lists both keys" {
	ms_own_tree "${MS_OPTS[@]}"
	run "$MAILSLOT" -t "${MS_OPTS[@]}" -o 'proxy_from=10.0.0.0/33 nonsense ::1/129'
	assert_failure 100
	assert_line --partial '"10.0.0.0/33": the prefix length is not 0..32'
	assert_line --partial '"nonsense" is not an IPv4 or IPv6 address'
	assert_line --partial '"::1/129": the prefix length is not 0..128'
	run "$MAILSLOT" -t "${MS_OPTS[@]}" -o 'proxy_from=127.0.0.0/8, ::1' -o proxy_timeout=3
	assert_success
	assert_line 'proxy_from = 127.0.0.0/8, ::1'
	assert_line 'proxy_timeout = 3'
	run "$MAILSLOT" -t "${MS_OPTS[@]}" -o proxy_timeout=0
	assert_failure 100
	# 127.0.0.0/8 covers ::ffff:127.0.0.1 on an IPv6 socket as well.
	MS_OPTS+=(-o proxy_from=127.0.0.0/8)
	MS_LISTEN_HOST=::ffff:127.0.0.1 ms_listen
	run send_after --send 'PROXY TCP4 192.0.2.7 198.51.100.1 5555 25\r\n'
	assert_line --regexp '^250 2\.0\.0 queued as '
	run received
	assert_output --regexp '\[192\.0\.2\.7\]'
}
