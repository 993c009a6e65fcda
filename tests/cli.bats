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
