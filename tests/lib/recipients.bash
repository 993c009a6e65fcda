# tests/lib/recipients.bash: a mailbox tree for tests/recipients-*.bats, on
# top of lib/common (load both: `load 'lib/common'`, then `load 'lib/recipients'`).
#
#   rc_setup                 ms_setup, then $RC_MB (the `mailboxes` directory,
#                            empty) and MS_OPTS with mailboxes=$RC_MB and
#                            domains=example.org,example.net
#   rc_teardown              umount what rc_mount mounted, then ms_teardown
#   rc_mailbox NAME...       a Maildir (tmp, new, cur) under $RC_MB
#   rc_folder NAME TAG       the Maildir++ folder NAME/.TAG
#   rc_new_count NAME [DIR]  files in $RC_MB/NAME/new (DIR: NAME/DIR/new)
#   rc_tmp_count NAME        files in $RC_MB/NAME/tmp
#   rc_new_file NAME [DIR]   the only file in that new/ (fails otherwise)
#   rc_all_new               every file in every new/ under $MS_DIR, sorted
#   rc_all_tmp               every file in every tmp/ under $MS_DIR, sorted
#   rc_rcpt ADDR [args]      the complete reply to RCPT TO:<ADDR> after
#                            EHLO and MAIL (reply_to)
#   rc_send 'RCPT...' [args] one transaction over a pipe: $RC_EHLO_MAIL (EHLO,
#                            MAIL FROM <a@b.example>; a test file may set
#                            its own), the RCPT TO lines for each address in
#                            the first argument (blank-separated), DATA with
#                            $RC_BODY (CRLF lines), QUIT
#   rc_body_of N             a message of about N octets (72-octet lines), its
#                            CRLF written as printf %b escapes (for RC_BODY)
#   rc_maildirsize NAME LINE...  $RC_MB/NAME/maildirsize holds these lines
#   rc_for_nobody            let the account `nobody` reach $MS_DIR (the bats
#                            run directory is 0700); skips without it
#   rc_chown_nobody PATH...  chown -R nobody:<its group>
#   rc_mount DIR SIZE        a tmpfs at DIR; skips when none can be mounted
#   rc_fwd_script            $MS_DIR/fwd, a forward_command that records its
#                            argv (NUL-terminated words) in $MS_DIR/fwd.argv
#                            and its stdin in $MS_DIR/fwd.stdin, and exits
#                            with the number in $MS_DIR/fwd.exit (default 0);
#                            run N (1, 2...) also leaves fwd.argv.N and
#                            fwd.stdin.N, and $MS_DIR/fwd.runs is the count
#   rc_argv_file OUT WORD... the bytes fwd.argv must hold for that argv
#   rc_assert_nth N REGEX    the Nth complete reply in $output (1 = the
#                            greeting, continuation lines joined with " | ")
#                            matches the extended REGEX
#   rc_skip_under_wrapper    skip a test that puts strace around mailslot when
#                            MAILSLOT_WRAPPER is set (LeakSanitizer refuses to
#                            run under ptrace, valgrind is no better)
#   rc_skip_peer_bug_asan    skip, under the ASan build only, a test that
#                            reads the Received line of a second copy or a
#                            forwarded one (known bug, see the function)
#   rc_normalize_trace       stdin->stdout: "id <queue id>" -> "id ID" (the
#                            ids of forward-only spools too), the date -> DATE

RC_EHLO_MAIL='EHLO c.example\r\nMAIL FROM:<a@b.example>\r\n'
RC_BODY='Subject: test\r\n\r\nhello\r\n'

rc_setup() {
	ms_setup
	RC_MB=$MS_DIR/mb
	RC_MOUNTS=()
	mkdir -p "$RC_MB"
	MS_OPTS+=(-o "mailboxes=$RC_MB" -o "domains=example.org,example.net")
}

rc_teardown() {
	local m
	for m in "${RC_MOUNTS[@]}"; do
		umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true
	done
	ms_teardown
}

rc_mailbox() {
	local n
	for n in "$@"; do
		mkdir -p "$RC_MB/$n/tmp" "$RC_MB/$n/new" "$RC_MB/$n/cur"
	done
}

rc_folder() {
	mkdir -p "$RC_MB/$1/.$2/tmp" "$RC_MB/$1/.$2/new" "$RC_MB/$1/.$2/cur"
}

rc_new_count() {
	find "$RC_MB/$1${2:+/$2}/new" -type f 2>/dev/null | wc -l
}

rc_tmp_count() {
	find "$RC_MB/$1/tmp" -type f 2>/dev/null | wc -l
}

rc_new_file() {
	local n
	n=$(rc_new_count "$1" "${2-}")
	[ "$n" -eq 1 ] || fail "expected exactly one file in $1${2:+/$2}/new, found $n"
	find "$RC_MB/$1${2:+/$2}/new" -type f
}

rc_all_new() {
	find "$MS_DIR" -type f | grep -E "^$MS_DIR/(.*/)?new/[^/]+\$" | sort
}

rc_all_tmp() {
	find "$MS_DIR" -type f | grep -E "^$MS_DIR/(.*/)?tmp/[^/]+\$" | sort
}

rc_rcpt() {
	local a=$1
	shift
	reply_to "$RC_EHLO_MAIL" "RCPT TO:<$a>" "$@"
}

rc_send() {
	local a in=$RC_EHLO_MAIL
	for a in $1; do
		in+="RCPT TO:<$a>\r\n"
	done
	shift
	smtp_pipe "${in}DATA\r\n${RC_BODY}.\r\nQUIT\r\n" "$@"
}

rc_body_of() {
	local n=$1 line
	line=$(printf 'x%.0s' $(seq 70))
	printf '%s' 'Subject: big\r\n\r\n'
	while [ "$n" -gt 0 ]; do
		printf '%s' "$line"'\r\n'
		n=$((n - 72))
	done
}

rc_maildirsize() {
	local n=$1
	shift
	printf '%s\n' "$@" >"$RC_MB/$n/maildirsize"
}

rc_for_nobody() {
	getent passwd nobody >/dev/null || skip "no account nobody"
	[ "$(id -u)" = 0 ] || skip "needs root to run mailslot with user=nobody"
	# Only the run directory is 0700; let nobody through it, not read it.
	chmod o+x "$BATS_RUN_TMPDIR"
	RC_NOBODY_GROUP=$(id -gn nobody)
}

rc_chown_nobody() {
	chown -R "nobody:$RC_NOBODY_GROUP" "$@"
}

rc_mount() {
	[ "$(id -u)" = 0 ] || skip "needs root to mount a tmpfs"
	mkdir -p "$1"
	mount -t tmpfs -o "size=$2" tmpfs "$1" 2>"$MS_DIR/mount.err" ||
		skip "cannot mount a tmpfs here: $(cat "$MS_DIR/mount.err")"
	RC_MOUNTS+=("$1")
}

rc_fwd_script() {
	cat >"$MS_DIR/fwd" <<-'EOF'
	#!/bin/sh
	d=$(dirname "$0")
	n=$(( $(cat "$d/fwd.runs" 2>/dev/null || echo 0) + 1 ))
	echo "$n" >"$d/fwd.runs"
	printf '%s\0' "$0" "$@" >"$d/fwd.argv"
	cat >"$d/fwd.stdin"
	cp "$d/fwd.argv" "$d/fwd.argv.$n"
	cp "$d/fwd.stdin" "$d/fwd.stdin.$n"
	[ -f "$d/fwd.sleep" ] && exec sleep "$(cat "$d/fwd.sleep")"
	exit "$(cat "$d/fwd.exit" 2>/dev/null || echo 0)"
	EOF
	chmod 755 "$MS_DIR/fwd"
}

rc_argv_file() {
	local out=$1
	shift
	printf '%s\0' "$@" >"$out"
}

rc_normalize_trace() {
	sed -E \
	    -e 's/ id [0-9]+\.(M[0-9]{6})?P[0-9]+(Q[0-9]+)?/ id ID/' \
	    -e 's/; [A-Z][a-z]{2}, [0-9]{2} [A-Z][a-z]{2} [0-9]{4} [0-9]{2}:[0-9]{2}:[0-9]{2} \+0000$/; DATE/'
}

rc_assert_nth() {
	local got
	got=$(printf '%s\n' "$output" | ms_replies | sed -n "${1}p")
	[[ $got =~ $2 ]] || fail "reply $1 is \"$got\", not /$2/; all replies:
$output"
}

rc_skip_under_wrapper() {
	[ -z "$MAILSLOT_WRAPPER" ] || skip "strace around MAILSLOT_WRAPPER ($MAILSLOT_WRAPPER) does not work"
}

rc_skip_peer_bug_asan() {
	:	# the Received peer outlives the session's frames now: nothing to skip
}
