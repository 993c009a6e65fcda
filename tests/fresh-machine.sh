#!/usr/bin/env bash
# tests/fresh-machine.sh: the README's promise, on a fresh minimal Debian 12.
#
# As root, with debootstrap and Debian's package repositories:
#   1. a minbase Debian 12 (plus git, make, ca-certificates) in a temporary
#      directory: debootstrap once, then from the tarball kept in
#      $FRESH_CACHE (default /var/cache/mailslot-fresh), which holds that
#      base and nothing that `make deps` installs;
#   2. the committed tree (HEAD of the repository this script lives in)
#      cloned into it as /srv/mailslot;
#   3. `make run` in a chroot there, in the background, before anything else
#      has installed a package; a message sent with Python's smtplib from
#      outside the chroot (the network is the host's: 127.0.0.1:2525) must
#      land in demo/Maildir/new/; the demo is then stopped by its PID;
#   4. `make check` in the same tree.
# /proc, /sys, /dev and a fresh /run are mounted for the chroot and
# unmounted on every way out.  The chroot's output is printed with "fresh| "
# before each line; the result is two TAP lines (1..2), the exit status 0
# only when both are ok.
#
# Environment: FRESH_MIRROR (default: the host apt's Debian 12 mirror),
# FRESH_CACHE, FRESH_PORT (2525), FRESH_KEEP=1 (leave the tree behind),
# FRESH_RUN_TIMEOUT (seconds for `make run` to listen, 1200),
# FRESH_CHECK_TIMEOUT (seconds for `make check`, 5400).
set -euo pipefail

suite=bookworm
include=git,make,ca-certificates
port=${FRESH_PORT:-2525}
cache=${FRESH_CACHE:-/var/cache/mailslot-fresh}
run_timeout=${FRESH_RUN_TIMEOUT:-1200}
check_timeout=${FRESH_CHECK_TIMEOUT:-5400}
repo=$(git -C "$(dirname "$0")" rev-parse --show-toplevel)
PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin

say() { printf 'fresh-machine: %s\n' "$*" >&2; }

# The TAP lines, printed however the script ends.
res_run="not ok 1 fresh machine: make run delivers into demo/Maildir # not reached"
res_check="not ok 2 fresh machine: make check passes # not reached"
echo 1..2

work='' root='' demo_pid=''
mounted=()

# Every process whose root is the chroot was started by this script.
stop_chroot_procs() {
	local p pids alive sig
	for sig in TERM KILL; do
		pids=
		for p in /proc/[0-9]*; do
			[ "$(readlink "$p/root" 2>/dev/null)" = "$root" ] && pids="$pids ${p#/proc/}"
		done
		[ -n "$pids" ] || return 0
		[ $sig = TERM ] && say "stopping what still runs in the chroot:$pids"
		# shellcheck disable=SC2086 # a list of PIDs
		kill -s $sig $pids 2>/dev/null || true
		for _ in $(seq 50); do
			alive=
			for p in $pids; do
				! kill -0 "$p" 2>/dev/null || alive=1
			done
			[ -n "$alive" ] || return 0
			sleep 0.1
		done
	done
}

cleanup() {
	local status=$? i left
	set +e
	if [ -n "$demo_pid" ]; then
		kill -TERM -- "-$demo_pid" 2>/dev/null
		wait "$demo_pid" 2>/dev/null
	fi
	if [ -n "$root" ]; then
		stop_chroot_procs
		for ((i = ${#mounted[@]} - 1; i >= 0; i--)); do
			umount -R "${mounted[i]}" 2>/dev/null || umount -Rl "${mounted[i]}" ||
				say "cannot unmount ${mounted[i]}"
		done
	fi
	if [ -n "$work" ]; then
		left=$(awk -v r="$root/" 'index($2 "/", r) == 1 { print $2 }' /proc/mounts)
		if [ -n "$left" ]; then
			say "still mounted, $work left alone: $left"
		elif [ "${FRESH_KEEP:-}" = 1 ]; then
			say "kept: $work"
		else
			rm -rf --one-file-system "$work"
		fi
	fi
	echo "$res_run"
	echo "$res_check"
	case $res_run$res_check in *"not ok"*) [ "$status" != 0 ] || status=1 ;; esac
	exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

[ "$(id -u)" = 0 ] || { say "needs root (debootstrap, chroot, mounts)"; exit 1; }
command -v debootstrap >/dev/null || { say "needs debootstrap"; exit 1; }

# The Debian 12 mirror the host's apt uses (deb822 .sources or sources.list).
host_mirror() {
	awk -v s="$suite" '
	function flush() {
		if (deb && has && uri != "") { print uri; found = 1; exit }
		deb = has = 0; uri = ""
	}
	FNR == 1 { flush() }
	/^[ \t]*$/ { flush(); next }
	/^Types:/ { deb = ($0 ~ /[ \t]deb([ \t]|$)/) }
	/^URIs:/ { uri = $2 }
	/^Suites:/ { for (i = 2; i <= NF; i++) if ($i == s) has = 1 }
	END { if (!found) flush() }
	' /etc/apt/sources.list.d/*.sources 2>/dev/null || true
	sed -n "s/^deb[ \t]\+\(\[[^]]*\][ \t]\+\)\?\([^ \t]\+\)[ \t]\+${suite}[ \t].*/\2/p" \
		/etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null || true
}
mirror=${FRESH_MIRROR:-$(host_mirror | head -n 1)}
[ -n "$mirror" ] || { say "no $suite mirror in the host's apt sources; set FRESH_MIRROR"; exit 1; }

if python3 -c 'import socket, sys; socket.create_connection(("127.0.0.1", int(sys.argv[1])), 2)' \
	"$port" 2>/dev/null; then
	say "127.0.0.1:$port is already taken here; stop that or set FRESH_PORT"
	exit 1
fi

work=$(mktemp -d -p "${TMPDIR:-/var/tmp}" mailslot-fresh.XXXXXX)
work=$(realpath "$work")
root=$work/root
mkdir -p "$cache"
base=$cache/$suite-$(dpkg --print-architecture)-minbase-${include//,/-}.tar.gz

# The base: debootstrap's tree as it is, before anything else touches it.
exec 9>"$cache/lock"
flock -w 1800 9 || { say "$cache/lock held for 30 minutes"; exit 1; }
if [ ! -s "$base" ]; then
	say "debootstrap $suite (minbase, $include) from $mirror"
	t0=$SECONDS
	debootstrap --variant=minbase --include="$include" "$suite" "$root" "$mirror" \
		>"$work/debootstrap.log" 2>&1 ||
		{ tail -n 30 "$work/debootstrap.log" >&2; say "debootstrap failed"; exit 1; }
	tar --numeric-owner -C "$root" -czf "$base.new" . && mv "$base.new" "$base"
	say "debootstrap: $((SECONDS - t0)) s; base kept in $base"
else
	say "base from $base"
	mkdir "$root"
	tar --numeric-owner -C "$root" -xpzf "$base"
fi
flock -u 9
exec 9>&-

# What any machine has that a bare tree does not: name resolution, and no
# services started by package scripts (they would run in the host's
# network namespace: a chroot's usual policy-rc.d).
cp -L /etc/resolv.conf "$root/etc/resolv.conf"
printf '#!/bin/sh\nexit 101\n' >"$root/usr/sbin/policy-rc.d"
chmod 755 "$root/usr/sbin/policy-rc.d"

# The root a mount point, as on any machine: unshare --mount changes its
# propagation, which a plain directory refuses (EINVAL).
mount --bind "$root" "$root"
mounted+=("$root")
mount -t proc proc "$root/proc"
mounted+=("$root/proc")
for fs in sys dev; do
	mount --rbind "/$fs" "$root/$fs"
	mounted+=("$root/$fs")
	mount --make-rslave "$root/$fs"
done
mount -t tmpfs -o mode=755,nosuid,nodev tmpfs "$root/run"
mounted+=("$root/run")
mkdir -m 1777 "$root/run/lock"

git -c safe.directory="$repo" -c advice.detachedHead=false clone -q --no-hardlinks "$repo" "$root/srv/mailslot"
say "cloned $(git -C "$root/srv/mailslot" log -1 --format='%h %s')"

inchroot() {
	chroot "$root" /usr/bin/env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
		HOME=/root TERM=dumb LANG=C.UTF-8 sh -c 'cd /srv/mailslot && exec "$@"' sh "$@"
}
prefix() { sed -u 's/^/fresh| /'; }

# make run, in a process group of its own (setsid): stopped by its PID.
t0=$SECONDS
setsid bash -c "$(declare -f inchroot); root='$root'; inchroot make run RUN_PORT=$port" \
	</dev/null > >(prefix) 2>&1 &
demo_pid=$!
up=
for _ in $(seq "$run_timeout"); do
	kill -0 "$demo_pid" 2>/dev/null || break
	if python3 -c 'import socket, sys; socket.create_connection(("127.0.0.1", int(sys.argv[1])), 2)' \
		"$port" 2>/dev/null; then
		up=1
		break
	fi
	sleep 1
done
if [ -z "$up" ]; then
	res_run="not ok 1 fresh machine: make run delivers into demo/Maildir # not listening on 127.0.0.1:$port"
else
	say "make run: listening after $((SECONDS - t0)) s"
	token=fresh-$$-$RANDOM$RANDOM
	maildir=$root/srv/mailslot/demo/Maildir
	if python3 - "$port" "$token" <<'PY'
import smtplib, sys
s = smtplib.SMTP("127.0.0.1", int(sys.argv[1]), timeout=60)
s.sendmail("me@example.org", ["you@example.org"],
           "From: me@example.org\r\nTo: you@example.org\r\nSubject: %s\r\n\r\nHello.\r\n" % sys.argv[2])
s.quit()
PY
	then
		if f=$(grep -l "^Subject: $token" "$maildir"/new/* 2>/dev/null); then
			say "delivered: ${f#"$root"}"
			res_run="ok 1 fresh machine: make run delivers into demo/Maildir"
		else
			ls -l "$maildir/new" >&2 || true
			res_run="not ok 1 fresh machine: make run delivers into demo/Maildir # no message with Subject: $token"
		fi
	else
		res_run="not ok 1 fresh machine: make run delivers into demo/Maildir # smtplib failed"
	fi
fi
if kill -0 "$demo_pid" 2>/dev/null; then
	kill -TERM -- "-$demo_pid"
fi
wait "$demo_pid" 2>/dev/null || true
demo_pid=
stop_chroot_procs

# make check, in the same tree; in the background, so that a signal
# reaches the traps at once.
t1=$SECONDS
{
	st=0
	timeout -k 60 "$check_timeout" bash -c "$(declare -f inchroot); root='$root'; inchroot make check" \
		</dev/null || st=$?
	echo "$st" >"$work/check.status"
} 2>&1 | prefix &
wait $!
st=$(cat "$work/check.status")
say "make check: exit $st after $((SECONDS - t1)) s; whole run $SECONDS s"
if [ "$st" = 0 ]; then
	res_check="ok 2 fresh machine: make check passes"
else
	res_check="not ok 2 fresh machine: make check passes # exit $st"
fi
