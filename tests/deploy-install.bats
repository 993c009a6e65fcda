#!/usr/bin/env bats
# make install / uninstall into a staging tree (no root needed), and the
# man pages kept in step with the code.

load 'lib/common'

setup() {
	ms_setup
	# Outside the (root-only) bats directories, so that nobody can write it.
	STAGE_TOP=$(mktemp -d /tmp/mailslot-stage.XXXXXX)
	STAGE=$STAGE_TOP/stage
}

teardown() {
	rm -rf "$STAGE_TOP"
}

# make, as an unprivileged account when the tests run as root: DESTDIR
# alone must be enough (when that account can read the checkout at all; a
# checkout under a private directory is installed from as root).  -o all:
# install what was built, never rebuild.
stage_make() {
	local as=() nobody=(setpriv --reuid=nobody --regid=nogroup --clear-groups --)
	if [ "$(id -u)" = 0 ] &&
	    "${nobody[@]}" test -r "$MS_REPO/Makefile" -a -r "$MAILSLOT" 2>/dev/null; then
		mkdir -p "$STAGE"
		chown nobody: "$STAGE_TOP" "$STAGE"
		as=("${nobody[@]}")
	fi
	"${as[@]}" make -s --no-print-directory -C "$MS_REPO" -o all PROG="$MAILSLOT" "$@"
}

@test "make install DESTDIR=... PREFIX=/usr: the tree, file by file, with modes" {
	run stage_make install DESTDIR="$STAGE" PREFIX=/usr
	assert_success
	run bash -c "cd '$STAGE' && find . -type f -printf '%m %p\n' | sort -k2"
	assert_output - <<-'TREE'
	644 ./etc/mailslot/mailslot.conf
	644 ./usr/lib/systemd/system/mailslot-lmtp.socket
	644 ./usr/lib/systemd/system/mailslot-lmtp@.service
	644 ./usr/lib/systemd/system/mailslot.socket
	644 ./usr/lib/systemd/system/mailslot@.service
	644 ./usr/lib/sysusers.d/mailslot.conf
	644 ./usr/lib/tmpfiles.d/mailslot.conf
	755 ./usr/sbin/mailslot
	644 ./usr/share/doc/mailslot/README
	644 ./usr/share/doc/mailslot/contrib/README
	644 ./usr/share/doc/mailslot/contrib/haproxy.cfg
	644 ./usr/share/doc/mailslot/contrib/inetd.conf
	755 ./usr/share/doc/mailslot/contrib/mailslot-spamc
	755 ./usr/share/doc/mailslot/contrib/s6/run
	755 ./usr/share/doc/mailslot/contrib/tcpserver-lmtp/run
	755 ./usr/share/doc/mailslot/contrib/tcpserver/log-run
	755 ./usr/share/doc/mailslot/contrib/tcpserver/run
	644 ./usr/share/doc/mailslot/contrib/xinetd.mailslot
	644 ./usr/share/man/man5/mailslot.conf.5
	644 ./usr/share/man/man8/mailslot.8
	TREE
	# The installed pieces are the shipped ones.
	cmp "$MAILSLOT" "$STAGE/usr/sbin/mailslot"
	cmp "$MS_REPO/etc/mailslot.conf" "$STAGE/etc/mailslot/mailslot.conf"
	cmp "$MS_REPO/units/mailslot.socket" "$STAGE/usr/lib/systemd/system/mailslot.socket"
	cmp "$MS_REPO/units/mailslot@.service" "$STAGE/usr/lib/systemd/system/mailslot@.service"
	cmp "$MS_REPO/units/mailslot-lmtp.socket" "$STAGE/usr/lib/systemd/system/mailslot-lmtp.socket"
	cmp "$MS_REPO/units/mailslot-lmtp@.service" "$STAGE/usr/lib/systemd/system/mailslot-lmtp@.service"
	cmp "$MS_REPO/units/mailslot.sysusers" "$STAGE/usr/lib/sysusers.d/mailslot.conf"
	cmp "$MS_REPO/units/mailslot.tmpfiles" "$STAGE/usr/lib/tmpfiles.d/mailslot.conf"
	# The installed binary runs and accepts the installed configuration.
	# shellcheck disable=SC2086 # the wrapper is a command prefix
	# (-t checks that the Maildir can be created: the installed one's
	# parent is made by tmpfiles.d, which has not run on this host.)
	run $MAILSLOT_WRAPPER "$STAGE/usr/sbin/mailslot" -t -f "$STAGE/etc/mailslot/mailslot.conf" \
	    -o "maildir=$BATS_TEST_TMPDIR/Maildir"
	assert_success
	assert_line "domains = example.org"
	assert_line "expn = no"
	grep -qx "maildir = /var/lib/mailslot/Maildir" "$STAGE/etc/mailslot/mailslot.conf"
	# The sysusers.d and tmpfiles.d files, applied to the tree (as root,
	# as a package's installation would).
	if [ "$(id -u)" = 0 ]; then
		chown -R root: "$STAGE"
		touch "$STAGE/etc/passwd" "$STAGE/etc/group"
		systemd-sysusers --root="$STAGE" >/dev/null 2>&1
		run grep '^mailslot:' "$STAGE/etc/passwd"
		assert_output --regexp '^mailslot:x:[0-9]+:[0-9]+:mailslot SMTP server:/var/lib/mailslot:/usr/sbin/nologin$'
		uid=$(cut -d: -f3 <<<"$output")
		systemd-tmpfiles --root="$STAGE" --create >/dev/null
		run stat -c '%a %u' "$STAGE/var/lib/mailslot" "$STAGE/var/lib/mailslot/Maildir"
		assert_output "700 $uid"$'\n'"700 $uid"
	fi
}

@test "make install: PREFIX=/usr/local by default, SBINDIR in ExecStart, -f for another SYSCONFDIR" {
	run stage_make install DESTDIR="$STAGE" SYSCONFDIR=/usr/local/etc
	assert_success
	[ -x "$STAGE/usr/local/sbin/mailslot" ]
	[ -f "$STAGE/usr/local/share/man/man8/mailslot.8" ]
	[ -f "$STAGE/usr/local/lib/systemd/system/mailslot.socket" ]
	[ -f "$STAGE/usr/local/etc/mailslot/mailslot.conf" ]
	run grep '^ExecStart=' "$STAGE/usr/local/lib/systemd/system/mailslot@.service"
	assert_output "ExecStart=/usr/local/sbin/mailslot -f /usr/local/etc/mailslot/mailslot.conf"
	run stage_make install DESTDIR="$STAGE" SBINDIR=/opt/ms/bin SYSTEMDUNITDIR=/etc/systemd/system
	assert_success
	run grep '^ExecStart=' "$STAGE/etc/systemd/system/mailslot@.service"
	assert_output "ExecStart=/opt/ms/bin/mailslot"
}

@test "make install keeps an existing configuration; make uninstall removes what it installed" {
	run stage_make install DESTDIR="$STAGE" PREFIX=/usr
	assert_success
	echo "hostname = mine.example" >>"$STAGE/etc/mailslot/mailslot.conf"
	run stage_make install DESTDIR="$STAGE" PREFIX=/usr
	assert_success
	grep -q '^hostname = mine.example$' "$STAGE/etc/mailslot/mailslot.conf"
	run stage_make uninstall DESTDIR="$STAGE" PREFIX=/usr
	assert_success
	# Only the administrator's changed configuration is left.
	run bash -c "cd '$STAGE' && find . -type f | sort"
	assert_output "./etc/mailslot/mailslot.conf"
	# An unchanged one goes too.
	run stage_make install DESTDIR="$STAGE" PREFIX=/usr
	cp "$MS_REPO/etc/mailslot.conf" "$STAGE/etc/mailslot/mailslot.conf"
	run stage_make uninstall DESTDIR="$STAGE" PREFIX=/usr
	assert_success
	run bash -c "cd '$STAGE' && find . -type f | sort"
	assert_output ""
}

@test "make lint-man: both pages are mandoc -Tlint clean" {
	run make -s --no-print-directory -C "$MS_REPO" lint-man
	assert_success
	assert_output ""
}

@test "mailslot.conf(5) describes every key mailslot -t prints" {
	local k missing=
	# shellcheck disable=SC2086 # the wrapper is a command prefix
	for k in $($MAILSLOT_WRAPPER "$MAILSLOT" -t -f /dev/null -o hostname=mx.test |
	    sed 's/ = .*//'); do
		grep -q "^\.It Cm $k\( \|$\)\|^\.It Cm [a-z_]* , $k " "$MS_REPO/man/mailslot.conf.5" ||
			missing="$missing $k"
	done
	[ -z "$missing" ] || fail "keys missing from mailslot.conf.5:$missing"
}

@test "mailslot(8) describes every option and every reply code of the catalogue" {
	local m=$MS_REPO/man/mailslot.8 o pair missing=
	for o in f o t V; do
		grep -q "^\.It Fl $o\( \|$\)" "$m" || missing="$missing -$o"
	done
	grep -q '^\.It Fl -help$' "$m" || missing="$missing --help"
	# "[RP_X] = { 250, "2.1.0", ..." -> "250 2.1.0"; 354 has no enhanced code.
	while read -r pair; do
		grep -q "^\.It $pair\$\|^\.No $pair\$\|^\.It $pair " "$m" ||
			missing="$missing '$pair'"
	done < <({
		sed -n 's/.*= *{ *\([0-9]\{3\}\), *"\([0-9.]*\)".*/\1 \2/p;
		    s/.*= *{ *\([0-9]\{3\}\), *NULL.*/\1/p' "$MS_REPO/src/smtp.c"
		# smtp_refuse(io, host, "4.3.5"): the 421s said before a session
		sed -n 's/.*smtp_refuse(.*"\(4\.[0-9]\.[0-9]\)");.*/421 \1/p' "$MS_REPO"/src/*.c
	    } | sort -u)
	# The EHLO keywords.
	for o in $(sed -n 's/.*lines\[n++\] = "\([A-Z0-9]*\)".*/\1/p' "$MS_REPO/src/smtp.c"); do
		grep -qw "$o" "$m" || missing="$missing $o"
	done
	[ -z "$missing" ] || fail "missing from mailslot.8:$missing"
}

@test "mailslot(8) STANDARDS names the deliberate deviations" {
	local text
	text=$(mandoc -Tascii "$MS_REPO/man/mailslot.8" | sed 's/.\x08//g' |
	    sed -n '/^STANDARDS/,/^[A-Z]/p' | tr -s ' \n' '  ')
	for s in "502 5.5.1" "not 252" "RFC 5321 7.3" "Postfix" "TURN is always 502" \
	    "Code 200" "bare LF" "line_endings" "SEND is 502 unless terminal_delivery"; do
		[[ $text == *"$s"* ]] || fail "STANDARDS does not say: $s"
	done
}
