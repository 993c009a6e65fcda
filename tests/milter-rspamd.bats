#!/usr/bin/env bats
# mailslot + rspamd (Debian's), its proxy worker in milter mode scanning
# itself (self_scan, no normal worker, no Redis): the GTUBE string is
# refused at the final dot with rspamd's 5xx and nothing is stored; a
# plain message is stored with the fields rspamd's milter_headers module
# adds (X-Spamd-Result, Authentication-Results).  rspamd is strict about
# the negotiation (12 octets, version 6) and asks for no reply to every
# step but the end of body: this is the milter client against it.
#
# rspamd runs once for the file, in the foreground, from the stock
# /etc/rspamd/rspamd.conf with LOCAL_CONFDIR, DBDIR and RUNDIR in a
# temporary directory: its override.d and local.d put every worker on a
# unix socket there (nothing listens on TCP), turn the normal worker off,
# and send its DNS to a closed loopback port with a short timeout (no
# lookups leave the machine, none hangs the test).  Stopped by PID.

load 'lib/common'

GTUBE='XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X'

setup_file() {
	command -v rspamd >/dev/null || skip "no rspamd"
	local d=$BATS_FILE_TMPDIR
	export RS=$d/rspamd
	mkdir -p "$RS/override.d" "$RS/local.d" "$RS/db" "$RS/run"
	while [ "$d" != / ] && [ "$d" != /tmp ]; do
		chmod o+x "$d"
		d=$(dirname "$d")
	done
	cat >"$RS/override.d/worker-normal.inc" <<-EOC
	enabled = false;
	bind_socket = "$RS/normal.sock mode=0600";
	EOC
	cat >"$RS/override.d/worker-controller.inc" <<-EOC
	bind_socket = "$RS/controller.sock mode=0600";
	count = 1;
	EOC
	# The mailslot(8) example, on a unix socket mailslot's account can reach.
	cat >"$RS/override.d/worker-proxy.inc" <<-EOC
	bind_socket = "$RS/milter.sock mode=0666";
	milter = yes;
	timeout = 120s;
	upstream "local" {
	  default = yes;
	  self_scan = yes;
	}
	count = 1;
	EOC
	cat >"$RS/override.d/logging.inc" <<-EOC
	type = "file";
	filename = "$RS/rspamd.log";
	level = "info";
	EOC
	# No fuzzy_check (it resolves rspamd.com), no hyperscan cache to build,
	# DNS to a port where nothing listens.
	cat >"$RS/local.d/options.inc" <<-EOC
	filters = "chartable,dkim,regexp";
	disable_hyperscan = true;
	control_socket = "$RS/rspamd.sock mode=0600";
	dns {
	  nameserver = ["127.0.0.1:1"];
	  timeout = 0.2s;
	  retransmits = 1;
	}
	EOC
	echo 'enabled = false;' >"$RS/local.d/rbl.conf"
	cat >"$RS/local.d/milter_headers.conf" <<-EOC
	use = ["x-spamd-result", "authentication-results"];
	EOC
	local user=()
	if [ "$(id -u)" = 0 ]; then
		chown -R _rspamd "$RS"
		user=(-u _rspamd -g _rspamd)
	fi
	rspamd -f "${user[@]}" -c /etc/rspamd/rspamd.conf --var="LOCAL_CONFDIR=$RS" \
		--var="DBDIR=$RS/db" --var="RUNDIR=$RS/run" >"$RS/out" 2>&1 &
	echo $! >"$RS/pid"
	# Bounded wait: loading the configuration takes some seconds.
	local i
	for i in $(seq 1 600); do
		[ -S "$RS/milter.sock" ] && break
		kill -0 "$(cat "$RS/pid")" 2>/dev/null || break
		sleep 0.1
	done
	[ -S "$RS/milter.sock" ] || { cat "$RS/out" "$RS/rspamd.log" >&2; false; }
}

teardown_file() {
	local pid i
	[ -f "$RS/pid" ] || return 0
	pid=$(cat "$RS/pid")
	kill "$pid" 2>/dev/null
	for i in $(seq 1 100); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	return 0
}

setup() {
	ms_setup
	MS_OPTS+=(-o "milters=unix:$RS/milter.sock")
}
teardown() { ms_teardown; }

# msg SUBJECT BODY: a message with the fields rspamd wants to see, its
# line ends written \r\n for smtp_pipe's printf %b.
msg() {
	printf '%s' "From: Alice <alice@example.org>\r\nTo: bob@example.org\r\nSubject: $1\r\nDate: Mon, 07 Dec 2026 10:00:00 +0000\r\nMessage-ID: <$BATS_TEST_NUMBER.$1@example.org>\r\n\r\n$2\r\n"
}

# The nth complete reply of $output.
nth() { printf '%s\n' "$output" | ms_nth_reply "$1"; }

@test "the GTUBE string: rspamd's 5xx at the final dot, nothing stored; the next message is" {
	TCPREMOTEIP=192.0.2.9 run smtp_pipe "EHLO c.example\r\nMAIL FROM:<alice@example.org>\r\nRCPT TO:<bob@example.org>\r\nDATA\r\n$(msg spam "$GTUBE").\r\nMAIL FROM:<alice@example.org>\r\nRCPT TO:<bob@example.org>\r\nDATA\r\n$(msg ham 'Hello Bob, see you tomorrow.').\r\nQUIT\r\n"
	assert_equal "$(nth 6)" "554 5.7.1 Gtube pattern"
	assert_line --regexp '^250 2\.0\.0 queued as '
	grep -q 'event=milter stage=eom milter=unix:.*/milter.sock id=.* verdict=reject' "$MS_DIR/log"
	run grep -c '^Subject: ham' "$(ms_new_file)"
	assert_output 1
	refute grep -q GTUBE "$(ms_new_file)"
	assert_equal "$(ms_tmp_count)" 0
}

@test "a plain message: stored with the fields rspamd adds, not taken for a login" {
	TCPREMOTEIP=192.0.2.9 run smtp_pipe "EHLO c.example\r\nMAIL FROM:<alice@example.org>\r\nRCPT TO:<bob@example.org>\r\nDATA\r\n$(msg plain 'Hello Bob, see you tomorrow.').\r\nQUIT\r\n"
	assert_line --regexp '^250 2\.0\.0 queued as '
	f=$(ms_new_file)
	run grep -A3 '^X-Spamd-Result: default: False \[' "$f"
	assert_success
	run grep -A3 '^Authentication-Results: ' "$f"
	assert_output --partial 'smtp.mailfrom=alice@example.org'
	# no AUTH in mailslot: rspamd must not see an authenticated user
	refute_output --partial 'auth=pass'
	# the message as sent is all there, below mailslot's Received
	run grep -n -m1 -e '^Received:' -e '^Subject:' "$f"
	assert_output --regexp '^[0-9]+:Received: '
	grep -q '^Hello Bob, see you tomorrow\.$' "$f"
}

@test "BDAT LAST is answered by rspamd too" {
	local m n
	m=$(msg spam "$GTUBE")
	n=$(printf '%b' "$m" | wc -c)
	TCPREMOTEIP=192.0.2.9 run smtp_pipe "EHLO c.example\r\nMAIL FROM:<alice@example.org>\r\nRCPT TO:<bob@example.org>\r\nBDAT $n LAST\r\n${m}QUIT\r\n"
	assert_equal "$(nth 5)" "554 5.7.1 Gtube pattern"
	assert_equal "$(ms_new_count)" 0
}
