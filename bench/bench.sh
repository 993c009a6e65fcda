#!/bin/sh
# bench/bench.sh: `make bench` (see BENCHMARKS.md).
#
# mailslot (A) and the floor (B, bench/floor.c) each run once per
# connection under systemd-socket-activate --inetd on 127.0.0.1, fsync as in
# production, interleaved A B A B ... for BENCH_ROUNDS rounds (3 at least)
# per workload; the table shows medians and mailslot/floor ratios.  Then one
# pass per workload through bench/rsswrap for peak RSS, and callgrind
# instruction counts for one session fed over a pipe.  Progress goes to
# stderr, the table to stdout.
#
# Environment: BENCH_QUICK=1 (small N), BENCH_ROUNDS, BENCH_PORT (first
# port tried), BENCH_TMP (where the Maildirs go; the file system under
# test), BENCH_KEEP=1 (keep the work directory), MAILSLOT (the binary),
# BENCH_ONLY=vi (that row alone: the no-op milter against none),
# BENCH_DELETE=N (make and delete N files on the same file system just
# before each measured run, for mailslot and the floor alike: a mail host
# whose users expunge mail).
set -eu

here=$(cd "$(dirname "$0")" && pwd)
. "$here/common.sh"

case ${BENCH_QUICK:-0} in
0|no|"")	QUICK= ;;
*)	QUICK=1 ;;
esac
if [ -n "$QUICK" ]; then
	N1=200 N2=200 BIG=20000000 N4=50 NRSS=50 ROUNDS=${BENCH_ROUNDS:-3}
else
	N1=2000 N2=2000 BIG=100000000 N4=500 NRSS=200 ROUNDS=${BENCH_ROUNDS:-5}
fi
if [ "$ROUNDS" -lt 3 ]; then
	echo "bench: BENCH_ROUNDS=$ROUNDS: at least 3 rounds are needed for a median" >&2
	exit 64
fi
RCPTS4=10
DELETE=${BENCH_DELETE:-0}
case $DELETE in
''|*[!0-9]*)	echo "bench: BENCH_DELETE=$DELETE: a number of files" >&2; exit 64 ;;
esac
LIMIT=${BENCH_LIMIT:-900}	# seconds, for any one load run

for tool in "$LAUNCH" valgrind; do
	if ! command -v "$tool" >/dev/null 2>&1; then
		echo "bench: $tool is needed (apt-get install systemd valgrind)" >&2
		exit 69
	fi
done

work=$(mktemp -d "${BENCH_TMP:-${TMPDIR:-/tmp}}/mailslot-bench.XXXXXX")
# A copy: a rebuild of src/mailslot during the run must not change what runs.
cp "$MAILSLOT" "$work/mailslot.bin"
MAILSLOT=$work/mailslot.bin
lpid= hpid= mpid=
# Stop a process this script started in the background ($1: its PID, or
# nothing when there is none).
bgstop() {
	[ -z "${1:-}" ] || { kill "$1" 2>/dev/null || true; wait "$1" 2>/dev/null || true; }
}
cleanup() {
	bgstop "$hpid"	# HAProxy, (v)
	bgstop "$mpid"	# the no-op milter, (vi)
	bgstop "$lpid"
	[ "${BENCH_KEEP:-0}" = 1 ] || rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

port=${BENCH_PORT:-$((20000 + $$ % 20000))}
say() { echo "bench: $*" >&2; }

cat >"$work/mailslot.conf" <<EOF
# The benchmark's configuration: production defaults but for these.
hostname = bench.example
max_message_size = 200000000
EOF

maildir() {
	mkdir -p "$1/tmp" "$1/new" "$1/cur"
}

# Per-recipient Maildirs (the mailboxes key) once this mailslot has them:
# the key is accepted by -t and a probe message sent to user0 lands in
# mailboxes/user0/new/.  Until then workload (iv) sends its 10 recipients
# to the catch-all Maildir, one copy per message.
maildir "$work/probe/boxes/user0"
"$LOAD" --script -s 4096 -r 1 >"$work/probe/session"
BOXES=
if "$MAILSLOT" -t -f "$work/mailslot.conf" -o "mailboxes=$work/probe/boxes" \
    -o "maildir=$work/probe/md" >/dev/null 2>&1; then
	"$MAILSLOT" -f "$work/mailslot.conf" -o "mailboxes=$work/probe/boxes" \
	    -o "maildir=$work/probe/md" <"$work/probe/session" >/dev/null 2>&1 || true
	[ -z "$(ls "$work/probe/boxes/user0/new")" ] || BOXES=yes
fi

# launch CMD...: a launcher on 127.0.0.1:$port running CMD per connection.
launch() {
	tries=0
	while :; do
		port=$((port + 1))
		[ "$port" -lt 65000 ] || port=20001
		: >"$work/launch.log"
		"$LAUNCH" --inetd -a -l "127.0.0.1:$port" "$@" 2>>"$work/launch.log" &
		lpid=$!
		_i=0
		while [ $_i -lt 100 ]; do
			grep -q '^Listening on' "$work/launch.log" && return 0
			kill -0 "$lpid" 2>/dev/null || break
			sleep 0.05
			_i=$((_i + 1))
		done
		stop
		tries=$((tries + 1))
		if [ $tries -ge 10 ]; then
			say "cannot start $LAUNCH:"
			cat "$work/launch.log" >&2
			exit 1
		fi
	done
}

stop() { bgstop "$lpid"; lpid=; }

# The load of workload $1: smtpload arguments.
load_args() {
	case $1 in
	i)	echo "-n $N1 -c 1 -r 1 -s 4096" ;;
	ii)	echo "-n $N2 -c 8 -r 1 -s 4096" ;;
	iii)	echo "-n 1 -c 1 -r 1 -s $BIG -t 600" ;;
	iv)	echo "-n $N4 -c 1 -r $RCPTS4 -s 4096" ;;
	esac
}

# BENCH_DELETE: $DELETE files made, synced and deleted in the work
# directory's file system (ext4 then searches past their inodes on every
# create for a while: recently_deleted() in ialloc.c).
churn() {
	[ "$DELETE" -gt 0 ] || return 0
	mkdir -p "$work/churn"
	(cd "$work/churn" && seq -f 'f%.0f' 1 "$DELETE" | xargs touch)
	sync
	rm -rf "$work/churn"
}

# run WORKLOAD PROG TAG [SESSIONS] [WRAPFILE]: one load run into fresh
# Maildirs; appends "workload prog tag key=value..." to $work/results.
# Each run has its own directory, kept to the end: deleting thousands of
# files just before a run would make ext4 search past the recently deleted
# inodes at every create (recently_deleted() in ialloc.c), a cost of the
# benchmark and not of either program.  The 100 MB files go at once.
run() {
	_w=$1 _prog=$2 _tag=$3 _n=${4:-} _wrap=${5:-}
	dir=$work/runs/$_w.$_prog.$_tag
	mkdir -p "$dir"
	maildir "$dir/md"
	if [ "$_w" = iv ] && [ -n "$BOXES" ]; then
		_r=0
		while [ $_r -lt $RCPTS4 ]; do
			maildir "$dir/boxes/user$_r"
			_r=$((_r + 1))
		done
		count="-B $dir/boxes"
		# maildir= too: a message that missed its mailbox shows as lost
		ms_target="-o mailboxes=$dir/boxes -o maildir=$dir/md"
		fl_target="-b $dir/boxes"
	else
		count="-M $dir/md"
		ms_target="-o maildir=$dir/md"
		fl_target="$dir/md"
	fi
	if [ "$_prog" = mailslot ]; then
		cmd="$MAILSLOT -f $work/mailslot.conf $ms_target"
	else
		cmd="$FLOOR $fl_target"
	fi
	[ -z "$_wrap" ] || cmd="$WRAP $_wrap $cmd"
	args=$(load_args "$_w")
	[ -z "$_n" ] || args="$args -n $_n"
	case $_tag in
	round*)	churn ;;
	esac
	sync
	# shellcheck disable=SC2086
	launch $cmd
	# shellcheck disable=SC2086
	if ! "$LOAD" -p "$port" $args $count -T "$LIMIT" -l "$_w/$_prog/$_tag" \
	    >"$work/load.out" 2>"$work/load.err"; then
		cat "$work/load.err" >&2
	fi
	if [ -n "$_wrap" ]; then
		# Each session's line comes just after its process ends: wait for
		# them before the launcher goes.
		_i=0
		while [ "$(wc -l <"$_wrap")" -lt "${_n:-1}" ] && [ $_i -lt 100 ]; do
			sleep 0.05
			_i=$((_i + 1))
		done
	fi
	stop
	[ "$_w" != iii ] || rm -rf "$dir"
	grep -v '^RESULT' "$work/load.out" >&2 || true
	res=$(grep '^RESULT' "$work/load.out" || echo "RESULT valid=no failed=all")
	echo "$_w $_prog $_tag ${res#RESULT }" >>"$work/results"
	if grep -q 'died with code [1-9]\|killed\|dumped' "$work/launch.log"; then
		say "$_w/$_prog/$_tag: a session process did not exit 0:"
		grep 'died with code [1-9]\|killed\|dumped' "$work/launch.log" | head -3 >&2
		echo "$_w $_prog $_tag badexit=yes" >>"$work/results"
	fi
}

churned=
[ "$DELETE" -eq 0 ] || churned=", $DELETE files deleted before each measured run"
say "work directory $work, ${QUICK:+quick mode, }$ROUNDS rounds$churned"
say "workload (iv): ${BOXES:+$RCPTS4 Maildirs (mailboxes)}${BOXES:-$RCPTS4 recipients into the catch-all Maildir (no mailboxes key yet)}"
: >"$work/results"
only() { [ -z "${BENCH_ONLY:-}" ] || [ "$BENCH_ONLY" = "$1" ]; }
for w in i ii iii iv; do
	only "$w" || continue
	r=1
	while [ $r -le "$ROUNDS" ]; do
		run "$w" mailslot "round$r"
		run "$w" floor "round$r"
		r=$((r + 1))
	done
	# Peak RSS: one more pass of each, every session through rsswrap.
	n=
	[ "$w" = iii ] || n=$NRSS
	for prog in mailslot floor; do
		: >"$work/rss.$w.$prog"
		run "$w" "$prog" rss "$n" "$work/rss.$w.$prog"
	done
done

# (v) workload (ii) through HAProxy (send-proxy-v2, proxy_from) against the
# same mailslot reached directly, interleaved: the balancer's cost per
# message (tests/proxy-haproxy.bats runs the same layout for correctness).
hstop() { bgstop "$hpid"; hpid=; }
run_px() {
	_how=$1 _tag=$2
	dir=$work/runs/v.$_how.$_tag
	mkdir -p "$dir"
	maildir "$dir/md"
	sync
	launch "$MAILSLOT" -f "$work/mailslot.conf" -o "maildir=$dir/md" -o proxy_from=127.0.0.1
	lport=$port
	if [ "$_how" = haproxy ]; then
		port=$((port + 1))
		cat >"$work/haproxy.cfg" <<-EOF
		global
		    maxconn 512
		defaults
		    mode tcp
		    timeout connect 5s
		    timeout client 60s
		    timeout server 60s
		frontend smtp
		    bind 127.0.0.1:$port
		    default_backend mailslot
		backend mailslot
		    server m 127.0.0.1:$lport send-proxy-v2
		EOF
		haproxy -db -f "$work/haproxy.cfg" >"$work/haproxy.log" 2>&1 &
		hpid=$!
		_i=0
		until python3 -c 'import socket, sys
socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=1).close()' "$port" 2>/dev/null; do
			_i=$((_i + 1))
			if [ $_i -ge 100 ] || ! kill -0 "$hpid" 2>/dev/null; then
				say "haproxy did not start:"
				cat "$work/haproxy.log" >&2
				hstop
				stop
				return
			fi
			sleep 0.05
		done
	else
		# Direct: the same mailslot, which trusts no one at this address.
		stop
		launch "$MAILSLOT" -f "$work/mailslot.conf" -o "maildir=$dir/md"
	fi
	# shellcheck disable=SC2046
	if ! "$LOAD" -p "$port" $(load_args ii) -M "$dir/md" -T "$LIMIT" -l "v/$_how/$_tag" \
	    >"$work/load.out" 2>"$work/load.err"; then
		cat "$work/load.err" >&2
	fi
	hstop
	stop
	grep -v '^RESULT' "$work/load.out" >&2 || true
	res=$(grep '^RESULT' "$work/load.out" || echo "RESULT valid=no failed=all")
	echo "v $_how $_tag ${res#RESULT }" >>"$work/results"
}
if ! only v; then
	:
elif command -v haproxy >/dev/null 2>&1 && command -v python3 >/dev/null 2>&1; then
	r=1
	while [ $r -le "$ROUNDS" ]; do
		run_px haproxy "round$r"
		run_px direct "round$r"
		r=$((r + 1))
	done
else
	say "(v) skipped: haproxy or python3 is missing"
fi

# (vi) workload (i) through one milter that accepts everything (bench/noopmilter,
# every step a round trip) against the same mailslot without milters,
# interleaved: what the milter protocol costs per message.
mstop() { bgstop "$mpid"; mpid=; }
run_mt() {
	_how=$1 _tag=$2
	dir=$work/runs/vi.$_how.$_tag
	mkdir -p "$dir"
	maildir "$dir/md"
	sync
	if [ "$_how" = milter ]; then
		"$here/noopmilter" "$work/noop.sock" 2>"$work/noopmilter.log" &
		mpid=$!
		_i=0
		until [ -S "$work/noop.sock" ]; do
			_i=$((_i + 1))
			if [ $_i -ge 100 ] || ! kill -0 "$mpid" 2>/dev/null; then
				say "noopmilter did not start:"
				cat "$work/noopmilter.log" >&2
				mstop
				return
			fi
			sleep 0.05
		done
		launch "$MAILSLOT" -f "$work/mailslot.conf" -o "maildir=$dir/md" \
		    -o "milters=unix:$work/noop.sock"
	else
		launch "$MAILSLOT" -f "$work/mailslot.conf" -o "maildir=$dir/md"
	fi
	# shellcheck disable=SC2046
	if ! "$LOAD" -p "$port" $(load_args i) -M "$dir/md" -T "$LIMIT" -l "vi/$_how/$_tag" \
	    >"$work/load.out" 2>"$work/load.err"; then
		cat "$work/load.err" >&2
	fi
	stop
	mstop
	rm -f "$work/noop.sock"
	grep -v '^RESULT' "$work/load.out" >&2 || true
	res=$(grep '^RESULT' "$work/load.out" || echo "RESULT valid=no failed=all")
	echo "vi $_how $_tag ${res#RESULT }" >>"$work/results"
}
r=1
only vi || r=$((ROUNDS + 1))
while [ $r -le "$ROUNDS" ]; do
	run_mt milter "round$r"
	run_mt plain "round$r"
	r=$((r + 1))
done

# Instructions: one 4 KiB session (and one with 10 recipients) over a pipe.
"$LOAD" --script -s 4096 -r 1 >"$work/session1.txt"
"$LOAD" --script -s 4096 -r $RCPTS4 >"$work/session10.txt"
callgrind() {
	_prog=$1 _sess=$2
	d=$work/cg.$_prog.$_sess
	rm -rf "$d"
	maildir "$d/md"
	if [ "$_prog" = mailslot ]; then
		set -- "$MAILSLOT" -f "$work/mailslot.conf" -o "maildir=$d/md"
	else
		set -- "$FLOOR" "$d/md"
	fi
	# A pipe, not a file: the session arrives as one stream, as from a socket.
	# shellcheck disable=SC2002
	cat "$work/$_sess.txt" | valgrind --tool=callgrind \
	    --callgrind-out-file="$d/callgrind.out" --log-file="$d/valgrind.log" \
	    "$@" >"$d/stdout" 2>"$d/stderr" || true
	# shellcheck disable=SC2012
	if [ "$(ls "$d/md/new" | wc -l)" -ne 1 ]; then
		say "callgrind $_prog $_sess: the message was not delivered"
		echo "-"
		return
	fi
	sed -n 's/.*Collected : *\([0-9]*\).*/\1/p' "$d/valgrind.log"
}
IM1= IF1= IM10= IF10=
if [ -z "${BENCH_ONLY:-}" ]; then
	IM1=$(callgrind mailslot session1)
	IF1=$(callgrind floor session1)
	IM10=$(callgrind mailslot session10)
	IF10=$(callgrind floor session10)
fi
[ "${BENCH_KEEP:-0}" != 1 ] || say "callgrind profiles: $work/cg.*/callgrind.out"

# ---- The table ---------------------------------------------------------------

cpumodel=$(sed -n 's/^model name[^:]*: *//p' /proc/cpuinfo | head -1)
fs=$(df -PT "$work" | awk 'NR == 2 { print $2 " on " $1 }')
{
	echo "rounds=$ROUNDS quick=${QUICK:-0} boxes=${BOXES:-no}"
	echo "n1=$N1 n2=$N2 big=$BIG n4=$N4 nrss=$NRSS rcpts4=$RCPTS4"
	echo "im1=$IM1 if1=$IF1 im10=$IM10 if10=$IF10"
	for w in i ii iii iv; do
		for prog in mailslot floor; do
			# max and median RSS, median CPU, sessions, bad exits
			[ -f "$work/rss.$w.$prog" ] || continue
			rss=$(sed 's/[a-z_]*=//g' "$work/rss.$w.$prog" | sort -n | awk '
			    { r[NR] = $1; if ($3 != 0) bad++ }
			    END { if (NR) print r[NR], r[int((NR + 1) / 2)], NR, bad + 0 }')
			cpu=$(sed 's/[a-z_]*=//g' "$work/rss.$w.$prog" | awk '{ print $2 }' |
			    sort -n | awk '{ c[NR] = $1 } END { if (NR) print c[int((NR + 1) / 2)] }')
			echo "rss $w $prog ${rss:-- - 0 0} ${cpu:--}"
		done
	done
	cat "$work/results"
} >"$work/summary"

echo
echo "mailslot $(git -c safe.directory="$top" -C "$top" describe --always --dirty 2>/dev/null || echo '?') benchmark," \
    "$(date -u +%Y-%m-%d) on $(nproc) x $cpumodel, $fs"
awk -f "$here/table.awk" "$work/summary"
