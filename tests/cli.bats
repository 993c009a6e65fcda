#!/usr/bin/env bats
# The command line: --help, -V, -t, -f and -o, and their exit codes
# (0 good, 100 permanent, 111 temporary).

load 'lib/common'

setup() { ms_setup; }

# mailslot (under $MAILSLOT_WRAPPER) with the suite's -o options and "$@"
ms() {
	ms_cmd "$@"
	"${MS_CMD[@]}"
}
teardown() { ms_teardown; }

@test "--help: usage on stdout, exit 0" {
	run ms --help
	assert_success
	assert_line --index 0 --regexp '^usage: mailslot '
}

@test "--help and mailslot.conf(5) name every key -t prints" {
	local keys key help missing=
	run ms -t
	assert_success
	keys=$(sed -n 's/^\([a-z_]*\) = .*/\1/p' <<<"$output")
	[ "$(wc -l <<<"$keys")" -ge 25 ] || fail "too few keys from -t: $keys"
	help=$(ms --help)
	for key in $keys; do
		grep -qE "(^| )$key[,.]" <<<"$help" || missing+=" --help:$key"
		grep -qE "^\.It Cm ([a-z_]+ , )*$key( |$)" "$MS_REPO/man/mailslot.conf.5" ||
		    missing+=" mailslot.conf.5:$key"
	done
	[ -z "$missing" ] || fail "not documented:$missing"
}

@test "-V: the version, exit 0" {
	run ms -V
	assert_success
	assert_output --regexp '^mailslot [0-9]+\.[0-9]+'
}

@test "-t: a good configuration exits 0 and prints it" {
	run ms -t -o max_recipients=7
	assert_success
	assert_line 'max_recipients = 7'
	assert_line 'hostname = mx.test'
	assert_line "maildir = $MS_MAILDIR"
}

@test "-t: a bad value exits 100 naming the key" {
	run ms -t -o max_recipients=lots
	assert_equal "$status" 100
	assert_output --partial 'max_recipients'
	run ms -t -o line_endings=sometimes
	assert_equal "$status" 100
	assert_output --partial 'line_endings'
	run ms -t -o 'hostname=bad host'
	assert_equal "$status" 100
	assert_output --partial 'hostname'
}

@test "-t: a bad line in -f FILE exits 100 naming file:line and key" {
	printf 'max_errors = 5\n\n# a comment\nmax_errors = many\n' >"$MS_DIR/conf"
	run ms -t -f "$MS_DIR/conf"
	assert_equal "$status" 100
	assert_output --partial "$MS_DIR/conf:4"
	assert_output --partial 'max_errors'
}

@test "-f: a missing file is a 421 4.3.5 for the client, exit 100" {
	run smtp_pipe 'QUIT\r\n' -f "$MS_DIR/no-such-file"
	assert_equal "$status" 100
	assert_output --regexp '^421 4\.3\.5 '
	grep -qF "$MS_DIR/no-such-file" "$MS_DIR/log"
}

@test "-f: keys from the file apply; -o overrides the file" {
	printf 'max_recipients = 1\nvrfy = no\n# comment\n  expn=no  \n' >"$MS_DIR/conf"
	run reply_to 'EHLO c.example\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<one@example.org>\r\n' \
	    'RCPT TO:<two@example.org>' -f "$MS_DIR/conf"
	assert_success
	assert_output --regexp '^452 4\.5\.3 '
	run reply_to '' 'EXPN staff' -f "$MS_DIR/conf"
	assert_output --regexp '^502 5\.5\.1 '
	run reply_to '' 'VRFY bob@example.org' -f "$MS_DIR/conf" -o vrfy=yes
	assert_output --regexp '^250 2\.1\.5 '
}

@test "sizes take k, M and G suffixes" {
	run reply_to '' 'EHLO c.example' -o max_message_size=2k
	assert_line --regexp '^250[- ]SIZE 2048$'
	run reply_to '' 'EHLO c.example' -o max_message_size=3M
	assert_line --regexp '^250[- ]SIZE 3145728$'
}

@test "-t: tls_required=yes without a certificate exits 100; a client gets 421 4.3.5" {
	run ms -t -o tls_required=yes
	assert_equal "$status" 100
	assert_output --partial 'tls_required'
	refute_line --partial 'tls_required = yes'
	run smtp_pipe 'EHLO c.example\r\nQUIT\r\n' -o tls_required=yes
	assert_equal "$status" 100
	assert_output --regexp '^421 4\.3\.5 mx\.test '
	grep -qF 'tls_required' "$MS_DIR/log"
}

@test "-t: forward_command must name an executable file by its absolute path" {
	printf '#!/bin/sh\nexit 0\n' >"$MS_DIR/fwd"
	chmod 644 "$MS_DIR/fwd"
	run ms -t -o "forward_command=$MS_DIR/fwd -i"
	assert_equal "$status" 100
	assert_output --partial "forward_command: $MS_DIR/fwd: not an executable file"
	run ms -t -o "forward_command=$MS_DIR/no-such-program -i"
	assert_equal "$status" 100
	assert_output --partial "forward_command: $MS_DIR/no-such-program: No such file"
	run ms -t -o 'forward_command=sendmail -i'
	assert_equal "$status" 100
	assert_output --partial 'forward_command: "sendmail" is not an absolute path'
	run ms -t -o "forward_command=$MS_DIR"
	assert_equal "$status" 100
	chmod 755 "$MS_DIR/fwd"
	run ms -t -o "forward_command=  $MS_DIR/fwd -i"
	assert_success
	assert_line "forward_command = $MS_DIR/fwd -i"
}

@test "-t: a malformed milters entry exits 100 naming it; a client gets 421 4.3.5" {
	local bad
	for bad in 'inet:localhost:8891' 'unix:run/milter.sock' 'inet:127.0.0.1:0' \
	    'inet:127.0.0.1:65536' 'inet:127.0.0.1:x' 'inet6:::1:8891' 'tcp:127.0.0.1:8891'; do
		run ms -t -o "milters=unix:/run/ok.sock $bad"
		assert_equal "$status" 100
		assert_output --partial "milters: \"$bad\" is not"
		refute_output --partial 'unix:/run/ok.sock" is not'
	done
	run smtp_pipe 'EHLO c.example\r\nQUIT\r\n' -o 'milters=inet:localhost:8891'
	assert_equal "$status" 100
	assert_output --regexp '^421 4\.3\.5 mx\.test '
	grep -qF 'inet:localhost:8891' "$MS_DIR/log"
	# well-formed entries are accepted by -t whether or not a milter listens there
	run ms -t -o 'milters=unix:/run/none.sock, inet:127.0.0.1:8891 inet6:[::1]:11332'
	assert_success
	assert_line 'milters = unix:/run/none.sock, inet:127.0.0.1:8891 inet6:[::1]:11332'
}

@test "-t: filter_command must name an executable file by its absolute path" {
	printf '#!/bin/sh\nexit 0\n' >"$MS_DIR/flt"
	chmod 644 "$MS_DIR/flt"
	run ms -t -o "filter_command=$MS_DIR/flt --x"
	assert_equal "$status" 100
	assert_output --partial "filter_command: $MS_DIR/flt: not an executable file"
	run ms -t -o 'filter_command=spamc -E'
	assert_equal "$status" 100
	assert_output --partial 'filter_command: "spamc" is not an absolute path'
	run ms -t -o "filter_command=$MS_DIR/no-such-filter"
	assert_equal "$status" 100
	assert_output --partial "filter_command: $MS_DIR/no-such-filter: No such file"
	chmod 755 "$MS_DIR/flt"
	run ms -t -o "filter_command=$MS_DIR/flt --x"
	assert_success
	assert_line "filter_command = $MS_DIR/flt --x"
}

@test "-t: a catch-all maildir that cannot be created or written exits 100; -t creates nothing" {
	run ms -t
	assert_success
	[ ! -e "$MS_MAILDIR" ] || fail "-t created $MS_MAILDIR"
	run ms -t -o "maildir=$MS_DIR/no-such-dir/Maildir"
	assert_equal "$status" 100
	assert_output --partial "maildir: $MS_DIR/no-such-dir/Maildir is missing and cannot be created in $MS_DIR/no-such-dir"
	: >"$MS_DIR/plain"
	run ms -t -o "maildir=$MS_DIR/plain"
	assert_equal "$status" 100
	assert_output --partial 'not a directory'
	run ms -t -o "maildir=$MS_DIR/plain/Maildir"
	assert_equal "$status" 100
	# a parent the delivering account cannot write (as root: the account in `user`)
	mkdir "$MS_DIR/ro"
	chmod 555 "$MS_DIR/ro"
	run ms -t -o "maildir=$MS_DIR/ro/Maildir"
	assert_equal "$status" 100
	assert_output --partial 'Permission denied'
	# an existing Maildir whose new/ the account cannot write
	mkdir -p "$MS_DIR/md/tmp" "$MS_DIR/md/new" "$MS_DIR/md/cur"
	[ -z "$MS_USER" ] || chown -R "$MS_USER" "$MS_DIR/md"
	run ms -t -o "maildir=$MS_DIR/md"
	assert_success
	chmod 555 "$MS_DIR/md/new"
	run ms -t -o "maildir=$MS_DIR/md"
	assert_equal "$status" 100
	assert_output --partial "maildir: $MS_DIR/md/new: Permission denied"
	# with mailboxes the catch-all is not checked, but mailboxes must exist
	mkdir "$MS_DIR/boxes"
	run ms -t -o "mailboxes=$MS_DIR/boxes" -o "maildir=$MS_DIR/no-such-dir/Maildir"
	assert_success
	run ms -t -o "mailboxes=$MS_DIR/no-such-boxes"
	assert_equal "$status" 100
	assert_output --partial "mailboxes: $MS_DIR/no-such-boxes: No such file"
}
