#!/usr/bin/env bats
# units/: systemd-analyze verify and security on the installed units, and
# every directive of mailslot@.service shown to leave a working session:
# the namespace, mount and privilege settings applied for real by
# tests/lib/sandbox around a session, the kernel-interface ones checked on
# that session's strace by tests/lib/syscheck.py.  No systemd runs as PID 1
# here (nor on CI), so no unit is started by systemd itself.

load 'lib/common'
load 'lib/deploy'

setup_file() { dp_setup_file; }
setup() { ms_setup; dp_setup; }

UNITDIR=usr/lib/systemd/system

@test "systemd-analyze verify: the installed units print nothing" {
	dp_ns ns_verify
	run cat "$DP_T/verify.out"
	assert_output "rc=0"
}

@test "systemd-analyze verify: a unit with a missing binary does print (the check works)" {
	mkdir -p "$DP_T/bad"
	sed 's|^ExecStart=.*|ExecStart=/usr/sbin/mailslot-missing|' \
	    "$DP_ROOT/$UNITDIR/mailslot@.service" >"$DP_T/bad/mailslot@.service"
	cp "$DP_ROOT/$UNITDIR/mailslot.socket" "$DP_T/bad/"
	run env MANPATH="$DP_ROOT/usr/share/man:" systemd-analyze verify \
	    "$DP_T/bad/mailslot.socket" "$DP_T/bad/mailslot@.service"
	assert_failure
	assert_output --partial "mailslot-missing"
}

@test "systemd-analyze security --offline=true: mailslot@.service exposure at most 1.0" {
	cd "$DP_ROOT/$UNITDIR"
	run systemd-analyze security --offline=true mailslot@.service
	assert_success
	level=$(printf '%s\n' "$output" |
	    sed -n 's/^→ Overall exposure level for mailslot@.*\.service: \([0-9.]*\) .*/\1/p')
	[ -n "$level" ] || fail "no overall exposure level in: $output"
	awk -v l="$level" 'BEGIN { exit !(l <= 1.0) }' ||
		fail "exposure $level is over 1.0: $output"
	# --threshold counts tenths: 10 is 1.0.
	run systemd-analyze security --offline=true --threshold=10 mailslot@.service
	assert_success
}

@test "systemd-analyze security --offline=true: mailslot-lmtp@.service exposure at most 1.0, as mailslot@.service" {
	cd "$DP_ROOT/$UNITDIR"
	run systemd-analyze security --offline=true mailslot-lmtp@.service
	assert_success
	level=$(printf '%s\n' "$output" |
	    sed -n 's/^→ Overall exposure level for mailslot-lmtp@.*\.service: \([0-9.]*\) .*/\1/p')
	[ -n "$level" ] || fail "no overall exposure level in: $output"
	awk -v l="$level" 'BEGIN { exit !(l <= 1.0) }' ||
		fail "exposure $level is over 1.0: $output"
	run systemd-analyze security --offline=true --threshold=10 mailslot-lmtp@.service
	assert_success
	# The same sandbox: the two units differ in their comments, Description= and ExecStart= only.
	run diff <(grep -v -e '^#' -e '^Description=' -e '^ExecStart=' "$MS_REPO/units/mailslot@.service") \
	    <(grep -v -e '^#' -e '^Description=' -e '^ExecStart=' "$MS_REPO/units/mailslot-lmtp@.service")
	assert_success
	grep -qx 'ExecStart=/usr/sbin/mailslot -o protocol=lmtp' "$DP_ROOT/$UNITDIR/mailslot-lmtp@.service"
}

@test "mailslot-lmtp.socket: /run/mailslot/lmtp, Accept=yes, 0660 for group mail" {
	f=$DP_ROOT/$UNITDIR/mailslot-lmtp.socket
	grep -qx 'ListenStream=/run/mailslot/lmtp' "$f"
	grep -qx 'Accept=yes' "$f"
	grep -qx 'SocketMode=0660' "$f"
	grep -qx 'SocketGroup=mail' "$f"
	grep -qx 'MaxConnections=[0-9]*' "$f"
	grep -qx 'WantedBy=sockets.target' "$f"
}

@test "mailslot.socket: port 25, Accept=yes, connection and trigger limits" {
	f=$DP_ROOT/$UNITDIR/mailslot.socket
	grep -qx 'ListenStream=25' "$f"
	grep -qx 'Accept=yes' "$f"
	grep -qx 'MaxConnections=[0-9]*' "$f"
	grep -qx 'MaxConnectionsPerSource=[0-9]*' "$f"
	grep -qx 'TriggerLimitBurst=[0-9]*' "$f"
	grep -qx 'WantedBy=sockets.target' "$f"
}

# Each directive of mailslot@.service and where it is shown to work.
#   sandbox  applied for real by tests/lib/sandbox around the session
#   trace    checked by tests/lib/syscheck.py on the session's system calls
#   launcher the --inetd launch (fd 0/1) and the journal test in
#            deploy-launchers.bats
#   verify   systemd-analyze verify (above)
directive_check() {
	case $1 in
	Description | Documentation | CollectMode | ExecStart) echo verify ;;
	StandardInput | StandardOutput | StandardError) echo launcher ;;
	User | Group | UMask | NoNewPrivileges | CapabilityBoundingSet | \
	AmbientCapabilities | ProtectSystem | ReadWritePaths | ProtectHome | \
	PrivateTmp | PrivateDevices | PrivateNetwork | PrivateIPC | PrivateMounts | \
	ProtectHostname) echo sandbox ;;
	PrivateUsers | DevicePolicy | ProtectProc | ProcSubset | \
	ProtectKernelTunables | ProtectKernelModules | ProtectKernelLogs | \
	ProtectControlGroups | ProtectClock | RestrictSUIDSGID | RemoveIPC | \
	KeyringMode | RestrictAddressFamilies | IPAddressDeny | \
	RestrictNamespaces | RestrictRealtime | LockPersonality | \
	MemoryDenyWriteExecute | SystemCallArchitectures | SystemCallFilter | \
	SystemCallErrorNumber | TasksMax) echo trace ;;
	*) return 1 ;;
	esac
}

@test "mailslot@.service: every directive has a check that covers it" {
	local d missing=
	for d in $(sed -n 's/^\([A-Za-z]*\)=.*/\1/p' "$MS_REPO/units/mailslot@.service"); do
		directive_check "$d" >/dev/null || missing="$missing $d"
	done
	[ -z "$missing" ] || fail "directives no test covers:$missing"
}

@test "mailslot@.service settings around a real session: delivered, journal fields, no violation" {
	local tls=0
	# A STARTTLS session too, when mailslot was built with TLS.
	if command -v openssl >/dev/null &&
	    openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=mx.test \
	    -keyout "$DP_ROOT/etc/mailslot/tls.key" -out "$DP_ROOT/etc/mailslot/tls.crt" \
	    >/dev/null 2>&1; then
		chown mailslot: "$DP_ROOT/etc/mailslot/tls.key" 2>/dev/null ||
			chown "$DP_UID:$DP_GID" "$DP_ROOT/etc/mailslot/tls.key"
		dp_config "tls_certificate = /etc/mailslot/tls.crt" \
		    "tls_key = /etc/mailslot/tls.key"
		if "$MAILSLOT" -t -o "tls_certificate=$DP_ROOT/etc/mailslot/tls.crt" \
		    -o "tls_key=$DP_ROOT/etc/mailslot/tls.key" >/dev/null 2>&1; then
			tls=1
		else
			dp_config
		fi
	fi
	DP_TLS=$tls dp_ns ns_sandbox
	echo "STARTTLS session: $tls"
	dp_assert_smtp_only
	if [ "$tls" = 1 ]; then
		grep -q '^tls ok TLSv1\.[23]$' "$DP_T/tls.out" || fail "STARTTLS: $(cat "$DP_T/tls.out")"
		[ "$(find "$DP_MAILDIR/new" -type f | wc -l)" -eq 2 ]
		grep -l '^Subject: via STARTTLS$' "$DP_MAILDIR"/new/* | xargs grep -q 'with ESMTPS'
		rm "$(grep -l '^Subject: via STARTTLS$' "$DP_MAILDIR"/new/*)"
	fi
	dp_assert_delivered sandbox
	run awk -v RS= '/\nMESSAGE=event=deliver / && /\nMAILSLOT_SESSION=/ { n++ }
	    END { print n + 0 }' "$DP_T/journal.export"
	assert_output "$((tls + 1))"
	dp_syscall_group @system-service | sort -u >"$DP_T/allowed"
	{ dp_syscall_group @privileged; dp_syscall_group @resources; } | sort -u >"$DP_T/denied"
	[ "$(grep -c . "$DP_T/allowed")" -gt 100 ] || fail "no @system-service list"
	run python3 "$MS_LIB/syscheck.py" "$DP_T/trace" "$DP_T/allowed" "$DP_T/denied" "$DP_UID"
	assert_success
	assert_output --regexp '^syscheck: [0-9]+ processes, [0-9]+ system calls of [0-9]+ kinds, 0 problems$'
}

@test "syscheck.py: what each setting forbids is caught (the check works)" {
	cat >"$DP_T/trace" <<-'TRACE'
	7 socket(AF_INET, SOCK_STREAM, IPPROTO_TCP) = 3<TCP:[1]>
	7 mmap(NULL, 4096, PROT_READ|PROT_WRITE|PROT_EXEC, MAP_PRIVATE|MAP_ANONYMOUS, -1, 0) = 0x7f0000000000
	7 openat(AT_FDCWD</>, "/etc/passwd-new", O_WRONLY|O_CREAT, 0600) = -1 EROFS (Read-only file system)
	7 openat(AT_FDCWD</>, "/home/alice/.forward", O_RDONLY) = -1 ENOENT (No such file or directory)
	7 unshare(CLONE_NEWNS) = 0
	7 personality(PER_LINUX32) = 0
	7 mkdirat(3</var/lib/mailslot/Maildir>, "new", 02775) = 0
	7 ptrace(PTRACE_TRACEME) = 0
	7 setuid(0) = 0
	TRACE
	printf '%s\n' socket mmap openat unshare personality mkdirat setuid >"$DP_T/allowed"
	printf '%s\n' setuid >"$DP_T/denied"
	run python3 "$MS_LIB/syscheck.py" "$DP_T/trace" "$DP_T/allowed" "$DP_T/denied" 0
	assert_failure
	for s in RestrictAddressFamilies MemoryDenyWriteExecute ProtectSystem ProtectHome \
	    RestrictNamespaces LockPersonality RestrictSUIDSGID UMask \
	    'SystemCallFilter=@system-service: not in the set: ptrace' \
	    'SystemCallFilter=~@privileged @resources: denied: setuid'; do
		assert_output --partial "$s"
	done
}
