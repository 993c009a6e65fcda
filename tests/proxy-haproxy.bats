#!/usr/bin/env bats
# Two mailslot "hosts" behind a real HAProxy (Debian's haproxy), the
# multi-host layout of mailslot(8) MULTIPLE HOSTS on one machine:
#
#   clients (from 127.0.0.9) -> HAProxy 127.0.0.1:FRONT, round-robin
#        -> h2.test: systemd-socket-activate on 127.0.0.2, send-proxy (v1)
#        -> h3.test: systemd-socket-activate on 127.0.0.3, send-proxy-v2
#   both delivering into one Maildir, proxy_from = 127.0.0.1.
#
# Everything is started once for the file (setup_file) and stopped by PID
# (teardown_file).  Each test empties the shared new/ first.

load 'lib/common'

free_port() {
	python3 -c 'import socket, sys
s = socket.socket()
s.bind((sys.argv[1], 0))
print(s.getsockname()[1])' "$1"
}

# start_host NAME ADDR: a listener on ADDR:port running mailslot as NAME.
start_host() {
	local name=$1 addr=$2 port i tries
	for tries in 1 2 3 4 5; do
		port=$(free_port "$addr")
		: >"$HX/$name.log"
		systemd-socket-activate --inetd -a -l "$addr:$port" "$MAILSLOT" \
			-o "maildir=$HX/Maildir" -o "hostname=$name" -o proxy_from=127.0.0.1 \
			${HX_USER:+-o "user=$HX_USER"} 2>>"$HX/$name.log" </dev/null 3>&- &
		echo $! >"$HX/$name.pid"
		for i in $(seq 1 100); do
			if grep -q '^Listening on' "$HX/$name.log"; then
				echo "$port" >"$HX/$name.port"
				return 0
			fi
			kill -0 "$(cat "$HX/$name.pid")" 2>/dev/null || break
			sleep 0.05
		done
		kill "$(cat "$HX/$name.pid")" 2>/dev/null || true
	done
	echo "cannot start $name: $(cat "$HX/$name.log")" >&2
	return 1
}

setup_file() {
	local i d
	export HX=$BATS_FILE_TMPDIR/hx
	mkdir -p "$HX"
	command -v haproxy >/dev/null || return 0	# each test skips
	make -s -C "$MS_REPO" bench/smtpload >/dev/null
	HX_USER=
	if [ "$(id -u)" = 0 ]; then
		HX_USER=mailslot-test
		id "$HX_USER" >/dev/null 2>&1 ||
			useradd --system --no-create-home --shell /usr/sbin/nologin "$HX_USER"
		chown "$HX_USER": "$HX"
		d=$BATS_FILE_TMPDIR
		while [ "$d" != / ] && [ "$d" != /tmp ]; do
			chmod o+x "$d"
			d=$(dirname "$d")
		done
	fi
	start_host h2.test 127.0.0.2
	start_host h3.test 127.0.0.3
	echo "$(free_port 127.0.0.1)" >"$HX/front.port"
	cat >"$HX/haproxy.cfg" <<-EOF
	global
	    maxconn 512
	defaults
	    mode tcp
	    timeout connect 5s
	    timeout client 60s
	    timeout server 60s
	frontend smtp
	    bind 127.0.0.1:$(cat "$HX/front.port")
	    default_backend hosts
	backend hosts
	    balance roundrobin
	    server h2 127.0.0.2:$(cat "$HX/h2.test.port") send-proxy
	    server h3 127.0.0.3:$(cat "$HX/h3.test.port") send-proxy-v2
	EOF
	haproxy -c -q -f "$HX/haproxy.cfg"
	haproxy -db -f "$HX/haproxy.cfg" >"$HX/haproxy.log" 2>&1 </dev/null 3>&- &
	echo $! >"$HX/haproxy.pid"
	for i in $(seq 1 100); do
		python3 -c 'import socket, sys
socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=1).close()' \
			"$(cat "$HX/front.port")" 2>/dev/null && return 0
		sleep 0.05
	done
	echo "haproxy did not start: $(cat "$HX/haproxy.log")" >&2
	return 1
}

teardown_file() {
	local f pid
	for f in haproxy h2.test h3.test; do
		[ -f "$HX/$f.pid" ] || continue
		pid=$(cat "$HX/$f.pid")
		kill "$pid" 2>/dev/null || true
		wait "$pid" 2>/dev/null || true
	done
}

setup() {
	command -v haproxy >/dev/null || skip "haproxy is not installed"
	[ -f "$HX/haproxy.pid" ] || fail "setup_file did not start haproxy"
	FRONT=$(cat "$HX/front.port")
	MD=$HX/Maildir
	[ -d "$MD/new" ] && find "$MD/new" -type f -delete
	true
}

# The stored message whose X-Test header is $1.
msg_with() {
	grep -l -r -- "^X-Test: $1\$" "$MD/new"
}

@test "round-robin through HAProxy: v1 to h2, v2 to h3, both record the client 127.0.0.9 in Received and the log" {
	local id f
	for id in one two; do
		run swaks --server 127.0.0.1:"$FRONT" --local-interface 127.0.0.9 \
			--to u@example.org --from a@b.example --helo c.example \
			--add-header "X-Test: $id"
		assert_success
		assert_line --regexp '^<-  250 2\.0\.0 queued as '
	done
	run sh -c "sed -n '/^Received: /{N;p;}' $(msg_with one) $(msg_with two)"
	assert_output --regexp 'from c\.example \(unknown \[127\.0\.0\.9\]\)'$'\n''.*by h2\.test \(mailslot\)'
	assert_output --regexp 'from c\.example \(unknown \[127\.0\.0\.9\]\)'$'\n''.*by h3\.test \(mailslot\)'
	refute_output --partial 127.0.0.1
	# Each host's log names the client, and the balancer only as proxy=.
	for f in h2.test h3.test; do
		grep -q 'session=.* event=connect peer=127\.0\.0\.9 port=[0-9]* host=unknown line_endings=crlf proxy=127\.0\.0\.1$' "$HX/$f.log" ||
			fail "$f: no connect line for 127.0.0.9: $(grep session= "$HX/$f.log")"
	done
}

@test "PIPELINING through HAProxy: a whole transaction in one write, every reply in order" {
	local i
	for i in 1 2; do
		python3 "$MS_CLIENT" --host 127.0.0.1 --port "$FRONT" --bind 127.0.0.9 \
			--out "$BATS_TEST_TMPDIR/replies.$i" \
			--wait '220 ' --send "EHLO c.example\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<u@example.org>\r\nDATA\r\nX-Test: pipe$i\r\n\r\nhi\r\n.\r\nQUIT\r\n" \
			--wait '221 '
		run ms_replies < <(ms_show_replies "$BATS_TEST_TMPDIR/replies.$i")
		assert_line --index 2 '250 2.1.0 <a@b.example>: Requested mail action okay, completed'
		assert_line --index 4 '354 Start mail input; end with <CRLF>.<CRLF>'
		assert_line --index 5 --regexp '^250 2\.0\.0 queued as '
		assert_line --index 6 --regexp '^221 2\.0\.0 h[23]\.test '
		grep -q '^Received: from c\.example (unknown \[127\.0\.0\.9\])' "$(msg_with "pipe$i")"
	done
}

@test "scale-out: 2,000 sessions at concurrency 8 through HAProxy into one Maildir: each message once, no tmp/ left, both hosts took a share" {
	local h2 h3
	[ -z "$(ls "$MD/new")" ]
	run "$MS_REPO/bench/smtpload" -p "$FRONT" -b 127.0.0.9 -n 2000 -c 8 -r 1 -s 4096 \
		-t 30 -T 300 -M "$MD" -l scale-out
	assert_success
	# smtpload read new/ after the run: every accepted message exactly
	# once, none lost, none twice, nothing else there.
	assert_line --regexp '^RESULT .* ok=2000 failed=0 accepted=2000 .* files=2000 lost=0 dup=0 stray=0 valid=yes$'
	[ "$(find "$MD/new" -type f | wc -l)" = 2000 ]
	[ -z "$(ls -A "$MD/tmp")" ] || fail "left in tmp/: $(ls -A "$MD/tmp" | head)"
	# Unique names carry the host: both took a share (round-robin: half each).
	h2=$(find "$MD/new" -type f -name '*.h2.test,*' | wc -l)
	h3=$(find "$MD/new" -type f -name '*.h3.test,*' | wc -l)
	[ $((h2 + h3)) = 2000 ] || fail "h2=$h2 h3=$h3: names without either host"
	[ "$h2" -ge 900 ] && [ "$h3" -ge 900 ] || fail "an unfair share: h2=$h2 h3=$h3"
	# No name twice, whatever the host.
	[ "$(find "$MD/new" -type f -printf '%f\n' | sed 's/,.*//' | sort | uniq -d | wc -l)" = 0 ]
	grep -L '^Received: from .* (unknown \[127\.0\.0\.9\])' "$MD"/new/* >"$BATS_TEST_TMPDIR/other"
	[ ! -s "$BATS_TEST_TMPDIR/other" ] || fail "not from 127.0.0.9: $(head -3 "$BATS_TEST_TMPDIR/other")"
}
