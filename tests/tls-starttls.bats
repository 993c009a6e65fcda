#!/usr/bin/env bats
# STARTTLS (RFC 3207): deliveries through swaks, openssl s_client and
# python's smtplib; protocol versions; the CVE-2011-0411 injection; state
# reset; tls_required; the trace; bad pairs, credentials, -t; handshakes
# that stall or get garbage.  A throw-away CA and server certificate are
# made once for the file.  Built with `make TLS=no`, every test but the
# last skips, and the last checks that such a build says so.

load 'lib/common'

setup_file() {
	local pki=$BATS_FILE_TMPDIR/pki
	mkdir -p "$pki/creds"
	cd "$pki" || return 1
	make_key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null; }
	make_key ca.key
	openssl req -x509 -new -key ca.key -out ca.crt -days 30 \
		-subj '/CN=mailslot test CA' 2>/dev/null
	printf '%s\n' 'subjectAltName = DNS:mx.test, DNS:localhost, IP:127.0.0.1' \
		'basicConstraints = CA:FALSE' 'extendedKeyUsage = serverAuth' >ext
	# server.crt: 30 days; soon.crt: 3 days, for the -t warning.
	make_key server.key
	openssl req -new -key server.key -subj '/CN=mx.test' -out server.csr 2>/dev/null
	openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial \
		-days 30 -extfile ext -out server.crt 2>/dev/null
	openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial \
		-days 3 -extfile ext -out soon.crt 2>/dev/null
	make_key other.key
	cp server.crt creds/tls.crt
	cp server.key creds/tls.key
	[ -s server.crt ] && [ -s soon.crt ] && [ -s other.key ] || return 1

	# Built with TLS?  -t says so of a configured certificate.  (Not a
	# session: started as root, mailslot would want a user first.)
	"$MAILSLOT" -t -o "tls_certificate=$pki/server.crt" -o "tls_key=$pki/server.key" \
		2>&1 | grep -q 'built without TLS' && echo no >"$pki/built" || echo yes >"$pki/built"

	# A scripted client that can switch to TLS half-way.  Steps:
	#   C:LINE   send LINE and CRLF        W:BYTES send the bytes in one write
	#   R        read one complete reply   T       the TLS handshake (CA-verified)
	#   Q:SECS   nothing may arrive for SECS seconds
	#   E        the server closes: with close_notify, inside TLS
	#   X:CMD    run a shell command
	# Replies are printed as they came, one line each; exit 2 when the
	# handshake fails, 3 on a timeout or a close, 4 on anything else unexpected.
	cat >"$pki/tlsclient.py" <<'EOF'
import codecs, socket, ssl, subprocess, sys
port, cafile, steps = int(sys.argv[1]), sys.argv[2], sys.argv[3:]
sock = socket.create_connection(('127.0.0.1', port), timeout=10)
buf = b''
def unescape(s):
    return codecs.escape_decode(s.encode())[0]
def reply():
    global buf
    lines = []
    while True:
        while b'\n' not in buf:
            b = sock.recv(65536)
            if not b:
                print('<closed>'); sys.exit(3)
            buf += b
        line, buf = buf.split(b'\n', 1)
        line = line.rstrip(b'\r').decode('utf-8', 'replace')
        lines.append(line)
        print(line)
        if len(line) < 4 or line[3] != '-':
            return lines
reply()                                   # the greeting
for step in steps:
    kind, _, val = step.partition(':')
    try:
        if kind == 'C':
            sock.sendall(unescape(val) + b'\r\n')
        elif kind == 'W':
            sock.sendall(unescape(val))
        elif kind == 'R':
            reply()
        elif kind == 'T':
            if buf:
                print('<plain text left over before TLS>'); sys.exit(4)
            ctx = ssl.create_default_context(cafile=cafile)
            try:
                sock = ctx.wrap_socket(sock, server_hostname='mx.test')
            except (ssl.SSLError, OSError) as e:
                print('<handshake failed: %s>' % e); sys.exit(2)
            print('<tls %s %s>' % (sock.version(), sock.cipher()[0]))
        elif kind == 'Q':
            sock.settimeout(float(val))
            try:
                b = sock.recv(65536)
            except (socket.timeout, ssl.SSLError):
                b = None
            sock.settimeout(10)
            if b:
                print('<unexpected: %r>' % b); sys.exit(4)
            if b == b'':
                print('<closed>'); sys.exit(3)
        elif kind == 'E':
            try:
                b = sock.recv(65536)
            except ssl.SSLEOFError:
                print('<closed without close_notify>'); sys.exit(4)
            if b:
                print('<unexpected: %r>' % b); sys.exit(4)
            print('<close_notify>' if isinstance(sock, ssl.SSLSocket) else '<closed>')
        elif kind == 'X':
            subprocess.run(val, shell=True, check=False)
    except socket.timeout:
        print('<timeout>'); sys.exit(3)
EOF
}

setup() {
	ms_setup
	PKI=$BATS_FILE_TMPDIR/pki
	if [[ $BATS_TEST_DESCRIPTION == "TLS=no build:"* ]]; then
		[ "$(cat "$PKI/built")" = no ] || skip "mailslot was built with TLS"
	else
		[ "$(cat "$PKI/built")" = yes ] || skip "mailslot was built without TLS (make TLS=no)"
	fi
	TLS_OPTS=(-o "tls_certificate=$PKI/server.crt" -o "tls_key=$PKI/server.key")
}

teardown() {
	ms_teardown
}

# The scripted client above against ms_listen's port.
tlsclient() {
	python3 "$PKI/tlsclient.py" "$MS_PORT" "$PKI/ca.crt" "$@"
}

# Wait (bounded) until the connection's mailslot has gone; fail if it stays.
assert_conn_gone() {
	local pid i
	pid=$(ms_conn_pid)
	[ -n "$pid" ] || fail "no connection was spawned"
	for i in $(seq 1 50); do
		kill -0 "$pid" 2>/dev/null || return 0
		sleep 0.1
	done
	fail "mailslot (PID $pid) is still running"
}

# ---- Deliveries through three clients -------------------------------------

@test "swaks --tls delivers, and the certificate verifies against the CA" {
	ms_listen "${TLS_OPTS[@]}"
	run swaks --server 127.0.0.1 --port "$MS_PORT" --tls --tls-verify \
		--tls-ca-path "$PKI/ca.crt" --helo c.example \
		--from a@c.example --to bob@mx.test --header 'Subject: swaks' \
		--body 'through swaks'
	assert_success
	assert_output --partial '<-  220 2.0.0 Ready to start TLS'
	assert_output --partial '=== TLS peer DN="/CN=mx.test"'
	assert_output --regexp '<~  250 2\.0\.0 queued as '
	f=$(ms_new_file)
	run grep -c 'through swaks' "$f"
	assert_output 1
}

@test "openssl s_client -starttls smtp delivers" {
	ms_listen "${TLS_OPTS[@]}"
	run bash -c 'printf "EHLO c.example\nMAIL FROM:<a@c.example>\nRCPT TO:<bob@mx.test>\nDATA\nSubject: s_client\n\nthrough s_client\n.\nQUIT\n" |
		timeout 20 openssl s_client -starttls smtp -connect "127.0.0.1:$1" \
		-CAfile "$2" -verify_return_error -servername mx.test -crlf -ign_eof 2>&1' \
		_ "$MS_PORT" "$PKI/ca.crt"
	assert_success
	assert_output --partial 'Verify return code: 0 (ok)'
	assert_output --regexp '250 2\.0\.0 queued as '
	assert_output --partial '221 2.0.0 mx.test Service closing transmission channel'
	f=$(ms_new_file)
	run grep -c 'through s_client' "$f"
	assert_output 1
}

@test "python smtplib starttls() delivers a 4 MB message whole" {
	ms_listen "${TLS_OPTS[@]}"
	run python3 - "$MS_PORT" "$PKI/ca.crt" <<'EOF'
import smtplib, ssl, sys
ctx = ssl.create_default_context(cafile=sys.argv[2])
body = b''.join(b'line %06d %s\r\n' % (i, b'x' * 60) for i in range(60000))
with smtplib.SMTP('127.0.0.1', int(sys.argv[1]), local_hostname='c.example', timeout=20) as s:
    s.starttls(context=ctx)
    print(s.sock.version())
    s.sendmail('a@c.example', ['bob@mx.test'], b'Subject: smtplib\r\n\r\n' + body)
EOF
	assert_success
	assert_output --regexp '^TLSv1\.[23]$'
	f=$(ms_new_file)
	run grep -c '^line [0-9]\{6\} x\{60\}$' "$f"
	assert_output 60000
	run tail -n 1 "$f"
	assert_output "line 059999 $(printf 'x%.0s' $(seq 60))"
}

@test "STARTTLS over a pipe (started by hand): a 2 MB message through TLS, exit 0" {
	ms_cmd "${TLS_OPTS[@]}"
	run python3 - "$PKI/ca.crt" "$MS_DIR/log" "${MS_CMD[@]}" <<'EOF'
import os, ssl, subprocess, sys
ca, log, cmd = sys.argv[1], sys.argv[2], sys.argv[3:]
p = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                     stderr=open(log, 'wb'), bufsize=0)

def more():
    b = os.read(p.stdout.fileno(), 65536)
    if not b:
        sys.exit('mailslot closed its output')
    return b

def replies(recv):
    """One complete reply at a time (its last line)."""
    buf = b''
    while True:
        while b'\n' not in buf:
            buf += recv()
        line, buf = buf.split(b'\n', 1)
        if line[3:4] != b'-':
            yield line.rstrip(b'\r').decode()

plain = replies(more)
next(plain)
p.stdin.write(b'EHLO c.example\r\n'); next(plain)
p.stdin.write(b'STARTTLS\r\n'); print(next(plain))

inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
tls = ssl.create_default_context(cafile=ca).wrap_bio(inc, out, server_hostname='mx.test')
def push():
    p.stdin.write(out.read())
while True:
    try:
        tls.do_handshake()
        break
    except ssl.SSLWantReadError:
        push()
        inc.write(more())
push()
print('tls', tls.version())

def send(b):
    tls.write(b)
    push()
def recv():
    while True:
        try:
            return tls.read(65536)
        except ssl.SSLWantReadError:
            inc.write(more())
crypt = replies(recv)
send(b'EHLO c.example\r\n'); next(crypt)
send(b'MAIL FROM:<a@c.example>\r\nRCPT TO:<bob@mx.test>\r\nDATA\r\n')
next(crypt); next(crypt); print(next(crypt))
body = b''.join(b'line %06d %s\r\n' % (i, b'y' * 60) for i in range(30000))
for i in range(0, len(body), 16000):
    send(body[i:i + 16000])
send(b'.\r\n'); print(next(crypt))
send(b'QUIT\r\n'); print(next(crypt))
p.stdin.close()
print('exit', p.wait())
EOF
	assert_success
	assert_output --regexp $'^220 2\\.0\\.0 Ready to start TLS\ntls TLSv1\\.[23]\n354 [^\n]*\n250 2\\.0\\.0 queued as [^\n]*\n221 [^\n]*\nexit 0$'
	f=$(ms_new_file)
	run grep -c '^line [0-9]\{6\} y\{60\}$' "$f"
	assert_output 30000
}

# ---- Protocol versions ------------------------------------------------------

@test "TLS 1.1 and below are refused; 1.2 and 1.3 are accepted" {
	ms_listen "${TLS_OPTS[@]}"
	# The client lowers its own security level, so only the server can say no.
	run timeout 20 openssl s_client -starttls smtp -connect "127.0.0.1:$MS_PORT" \
		-tls1_1 -cipher 'DEFAULT@SECLEVEL=0' </dev/null
	assert_failure
	assert_output --partial 'alert protocol version'
	run timeout 20 openssl s_client -starttls smtp -connect "127.0.0.1:$MS_PORT" \
		-tls1 -cipher 'DEFAULT@SECLEVEL=0' </dev/null
	assert_failure
	run timeout 20 openssl s_client -starttls smtp -connect "127.0.0.1:$MS_PORT" \
		-tls1_2 -CAfile "$PKI/ca.crt" </dev/null
	assert_success
	assert_output --regexp 'New, TLSv1\.2, Cipher is ECDHE-'
	run timeout 20 openssl s_client -starttls smtp -connect "127.0.0.1:$MS_PORT" \
		-tls1_3 -CAfile "$PKI/ca.crt" </dev/null
	assert_success
	assert_output --partial 'New, TLSv1.3, Cipher is TLS_'
	run grep -c 'event=tls result=failed error="handshake failed: unsupported protocol"' "$MS_DIR/sa.log"
	assert_output 2
}

@test "tls_protocols is applied: tlsv1.2 alone refuses TLS 1.3" {
	ms_listen "${TLS_OPTS[@]}" -o tls_protocols=tlsv1.2
	run timeout 20 openssl s_client -starttls smtp -connect "127.0.0.1:$MS_PORT" \
		-tls1_3 </dev/null
	assert_failure
	run timeout 20 openssl s_client -starttls smtp -connect "127.0.0.1:$MS_PORT" \
		-CAfile "$PKI/ca.crt" </dev/null
	assert_success
	assert_output --partial 'New, TLSv1.2, Cipher is'
}

# ---- The session around the handshake ---------------------------------------

@test "CVE-2011-0411: a command pipelined after STARTTLS is thrown away, not run inside TLS" {
	ms_listen "${TLS_OPTS[@]}"
	run tlsclient C:'EHLO c.example' R W:'STARTTLS\r\nRSET\r\n' R T Q:1 C:'EHLO c.example' R C:QUIT R
	assert_success
	# After the handshake the first reply is EHLO's, and nothing came before it.
	assert_output --regexp $'220 2\\.0\\.0 Ready to start TLS\n<tls TLSv1\\.[23] [^>]*>\n250-mx\\.test [^\n]*\n'
	refute_output --partial '250 2.0.0 Ok'
}

@test "after the handshake: no STARTTLS in EHLO, state forgotten (MAIL before EHLO is 503)" {
	ms_listen "${TLS_OPTS[@]}"
	run tlsclient C:'EHLO c.example' R C:STARTTLS R T C:'MAIL FROM:<a@c.example>' R C:'EHLO c.example' R C:'MAIL FROM:<a@c.example>' R C:QUIT R
	assert_success
	# The plain-text EHLO listed STARTTLS; the one inside TLS does not.
	assert_output --partial '250-STARTTLS'
	run bash -c 'sed -n "/^<tls/,\$p" <<<"$1"' _ "$output"
	refute_output --partial 'STARTTLS'
	assert_output --regexp $'<tls [^\n]*\n503 5\\.5\\.1 [^\n]*\n250-mx\\.test [^\n]*\n'
	assert_output --regexp $'\n250 2\\.1\\.0 <a@c\\.example>[^\n]*\n221 '
}

@test "STARTTLS inside TLS is 503" {
	ms_listen "${TLS_OPTS[@]}"
	run tlsclient C:'EHLO c.example' R C:STARTTLS R T C:'EHLO c.example' R C:STARTTLS R C:QUIT R
	assert_success
	assert_output --regexp $'\n503 5\\.5\\.1 [^\n]*TLS already active[^\n]*\n221 '
}

@test "QUIT inside TLS: 221, then close_notify before the connection closes" {
	ms_listen "${TLS_OPTS[@]}"
	run tlsclient C:'EHLO c.example' R C:STARTTLS R T C:QUIT R E
	assert_success
	assert_output --regexp $'\n221 2\.0\.0 [^\n]*\n<close_notify>$'
	assert_conn_gone
}

@test "SIGTERM inside TLS: 421 4.3.2 through TLS, and a clean exit" {
	ms_listen "${TLS_OPTS[@]}"
	run tlsclient C:'EHLO c.example' R C:STARTTLS R T C:'EHLO c.example' R \
		X:"$(ms_kill_conn TERM)" R E
	assert_success
	assert_output --regexp $'\n421 4\.3\.2 [^\n]*\n<close_notify>$'
	assert_conn_gone
	run grep -c 'Child [0-9]* died with code 0' "$MS_DIR/sa.log"
	assert_output 1
}

@test "STARTTLS with an argument is 501, and the session stays in plain text" {
	run reply_to 'EHLO c.example\r\n' 'STARTTLS now' "${TLS_OPTS[@]}"
	assert_success
	assert_output --regexp '^501 5\.5\.4 '
	run reply_to 'EHLO c.example\r\nSTARTTLS now\r\n' 'NOOP' "${TLS_OPTS[@]}"
	assert_success
	assert_output --regexp '^250 2\.0\.0 '
}

@test "tls_required=yes: MAIL before STARTTLS is 530 5.7.0; after it, MAIL is accepted" {
	run reply_to 'EHLO c.example\r\n' 'MAIL FROM:<a@c.example>' "${TLS_OPTS[@]}" -o tls_required=yes
	assert_success
	assert_reply 530 5.7.0 'Must issue a STARTTLS command first'
	ms_listen "${TLS_OPTS[@]}" -o tls_required=yes
	run tlsclient C:'EHLO c.example' R C:STARTTLS R T C:'EHLO c.example' R \
		C:'MAIL FROM:<a@c.example>' R C:QUIT R
	assert_success
	assert_output --regexp $'\n250 2\\.1\\.0 <a@c\\.example>'
}

@test "Received says with ESMTPS and names the protocol and cipher; so does the log" {
	ms_listen "${TLS_OPTS[@]}"
	run tlsclient C:'EHLO c.example' R C:STARTTLS R T C:'EHLO c.example' R \
		C:'MAIL FROM:<a@c.example>' R C:'RCPT TO:<bob@mx.test>' R C:DATA R \
		C:'Subject: trace' C: C:body C:. R C:QUIT R
	assert_success
	f=$(ms_new_file)
	run sed -n '/^Received:/,/^[^[:space:]R]/p' "$f"
	assert_output --regexp 'by mx\.test \(mailslot\) with ESMTPS id '
	assert_output --regexp $'\n\t\\(using TLSv1\\.[23] with cipher [A-Z0-9_-]+ \\([0-9]+/[0-9]+ bits\\)\\)\n'
	run grep 'event=tls result=ok' "$MS_DIR/sa.log"
	assert_output --regexp 'using="TLSv1\.[23] with cipher [A-Z0-9_-]+ \([0-9]+/[0-9]+ bits\)"'
}

@test "a client that closes without close_notify is an ordinary disconnect" {
	ms_listen "${TLS_OPTS[@]}"
	run python3 - "$MS_PORT" "$PKI/ca.crt" <<'EOF'
import socket, ssl, sys
s = socket.create_connection(('127.0.0.1', int(sys.argv[1])), timeout=10)
f = s.makefile('rb')
f.readline(); s.sendall(b'EHLO c.example\r\n')
while not f.readline().startswith(b'250 '): pass
s.sendall(b'STARTTLS\r\n'); f.readline()
t = ssl.create_default_context(cafile=sys.argv[2]).wrap_socket(s, server_hostname='mx.test')
t.sendall(b'NOOP\r\n'); print(t.recv(100).decode().strip())
s2 = socket.socket(fileno=t.detach()); s2.close()
EOF
	assert_success
	assert_output --regexp '^250 2\.0\.0 '
	assert_conn_gone
	run grep 'event=disconnect' "$MS_DIR/sa.log"
	assert_output --partial 'reason=eof'
	run grep -c 'Child [0-9]* died with code 0' "$MS_DIR/sa.log"
	assert_output 1
}

# ---- Certificates: bad pairs, credentials, -t -------------------------------

@test "a key that does not match the certificate: -t fails; STARTTLS is 454 and plain text goes on" {
	run "$MAILSLOT" -t "${MS_OPTS[@]}" -o "tls_certificate=$PKI/server.crt" -o "tls_key=$PKI/other.key"
	assert_failure 100
	assert_output --partial "tls_key $PKI/other.key"
	run smtp_pipe 'EHLO c.example\r\nSTARTTLS\r\nMAIL FROM:<a@c.example>\r\nQUIT\r\n' \
		-o "tls_certificate=$PKI/server.crt" -o "tls_key=$PKI/other.key"
	assert_success
	assert_line '250-STARTTLS'
	assert_line '454 4.7.0 TLS not available due to temporary reason'
	assert_line --regexp '^250 2\.1\.0 <a@c\.example>'
	assert_line --regexp '^221 '
	run grep 'event=tls error=' "$MS_DIR/log"
	assert_success
}

@test "-t: a good pair passes quietly; one expiring within 14 days is a warning, still 0" {
	ms_own_tree "${MS_OPTS[@]}"	# -t checks that the Maildir can be made
	run "$MAILSLOT" -t "${MS_OPTS[@]}" "${TLS_OPTS[@]}"
	assert_success
	refute_output --partial 'warning'
	run "$MAILSLOT" -t "${MS_OPTS[@]}" -o "tls_certificate=$PKI/soon.crt" -o "tls_key=$PKI/server.key"
	assert_success
	assert_output --regexp "warning: tls_certificate $PKI/soon\.crt expires in [23] days, on 20[0-9-]+ "
}

@test "-t: unknown protocols, unknown ciphers or a missing key file fail" {
	run "$MAILSLOT" -t "${MS_OPTS[@]}" "${TLS_OPTS[@]}" -o tls_protocols=tlsv9
	assert_failure 100
	assert_output --partial 'tls_protocols'
	run "$MAILSLOT" -t "${MS_OPTS[@]}" "${TLS_OPTS[@]}" -o tls_ciphers=no-such-cipher
	assert_failure 100
	assert_output --partial 'tls_ciphers'
	run "$MAILSLOT" -t "${MS_OPTS[@]}" -o "tls_certificate=$PKI/server.crt" -o "tls_key=$PKI/missing.key"
	assert_failure 100
	assert_output --partial 'missing.key'
	# Checked even with no certificate configured.
	run "$MAILSLOT" -t "${MS_OPTS[@]}" -o tls_protocols=tlsv9
	assert_failure 100
}

@test "\$CREDENTIALS_DIRECTORY/tls.crt and tls.key are used when no pair is configured" {
	ms_own_tree "${MS_OPTS[@]}"	# -t checks that the Maildir can be made
	CREDENTIALS_DIRECTORY=$PKI/creds run "$MAILSLOT" -t "${MS_OPTS[@]}"
	assert_success
	assert_output --partial "$PKI/creds/tls.crt"
	# systemd-socket-activate passes on no environment of its own accord.
	MAILSLOT_WRAPPER="env CREDENTIALS_DIRECTORY=$PKI/creds $MAILSLOT_WRAPPER"
	ms_listen
	run tlsclient C:'EHLO c.example' R C:STARTTLS R T C:'EHLO c.example' R C:QUIT R
	assert_success
	assert_output --partial '250-STARTTLS'
	assert_output --regexp '<tls TLSv1\.[23] '
}

# ---- Faults: stalls and garbage ------------------------------------------------

@test "a client that stalls after 220 is dropped within command_timeout, process gone" {
	ms_listen "${TLS_OPTS[@]}" -o command_timeout=2
	start=$(date +%s%N)
	run smtp_sock --timeout 10 --send 'EHLO c.example\r\n' --wait '250 ' \
		--send 'STARTTLS\r\n' --wait '220 2.0.0'
	elapsed=$(( ($(date +%s%N) - start) / 1000000 ))
	assert_success
	assert_equal "$(ms_report closed)" yes
	[ "$elapsed" -ge 1500 ] && [ "$elapsed" -lt 6000 ] || fail "closed after ${elapsed} ms"
	assert_conn_gone
	run grep 'event=tls result=failed' "$MS_DIR/sa.log"
	assert_output --partial 'error="handshake: timeout after 2 seconds"'
}

@test "a client that stalls half-way through its ClientHello is dropped within command_timeout" {
	ms_listen "${TLS_OPTS[@]}" -o command_timeout=2
	start=$(date +%s%N)
	# A record header that promises 512 octets, and 3 of them.
	run smtp_sock --timeout 10 --send 'EHLO c.example\r\n' --wait '250 ' \
		--send 'STARTTLS\r\n' --wait '220 2.0.0' --send '\x16\x03\x01\x02\x00\x01\x00\x01'
	elapsed=$(( ($(date +%s%N) - start) / 1000000 ))
	assert_success
	assert_equal "$(ms_report closed)" yes
	[ "$elapsed" -lt 6000 ] || fail "closed after ${elapsed} ms"
	assert_conn_gone
	run grep 'event=tls result=failed' "$MS_DIR/sa.log"
	assert_output --partial 'timeout after 2 seconds'
}

@test "garbage instead of a ClientHello: a log line and a clean exit" {
	ms_listen "${TLS_OPTS[@]}"
	run smtp_sock --timeout 10 --send 'EHLO c.example\r\n' --wait '250 ' \
		--send 'STARTTLS\r\n' --wait '220 2.0.0' --send 'GET / HTTP/1.0\r\n\r\n'
	assert_success
	assert_equal "$(ms_report closed)" yes
	assert_conn_gone
	run grep 'event=tls result=failed' "$MS_DIR/sa.log"
	assert_output --regexp 'error="handshake( failed)?: '
	run grep -c 'Child [0-9]* died with code 0' "$MS_DIR/sa.log"
	assert_output 1
	# Over a pipe as well, where the exit status can be seen.
	run smtp_exec --send 'EHLO c.example\r\n' --wait '250 ' --send 'STARTTLS\r\n' \
		--wait '220 2.0.0' --send '\x00\xff garbage\r\n' --timeout 10 -- "${TLS_OPTS[@]}"
	assert_success
	assert_equal "$(ms_report exit)" 0
	run grep 'event=tls result=failed' "$MS_DIR/log"
	assert_success
}

@test "a client that hangs up in the handshake: a log line and a clean exit" {
	run smtp_exec --send 'EHLO c.example\r\n' --wait '250 ' --send 'STARTTLS\r\n' \
		--wait '220 2.0.0' --send '\x16\x03\x01' --shut --timeout 10 -- "${TLS_OPTS[@]}"
	assert_success
	assert_equal "$(ms_report exit)" 0
	run grep 'event=tls result=failed' "$MS_DIR/log"
	assert_success
}

# ---- Built without TLS -----------------------------------------------------------

@test "TLS=no build: no STARTTLS in EHLO, STARTTLS is not known, -t refuses a certificate" {
	run smtp_pipe 'EHLO c.example\r\nSTARTTLS\r\nQUIT\r\n' "${TLS_OPTS[@]}"
	assert_success
	refute_output --partial 'STARTTLS'
	run "$MAILSLOT" -t "${MS_OPTS[@]}" "${TLS_OPTS[@]}"
	assert_failure
	assert_output --partial 'built without TLS'
}
