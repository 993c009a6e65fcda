#!/bin/sh
# bench/profile.sh: `make bench-profile`, where a session's instructions,
# system calls and time go (see BENCHMARKS.md).  For mailslot and the floor:
#
#   1. callgrind, one 4 KiB session fed over a pipe: the total, the dynamic
#      loader's part, main()'s part, and the functions that cost most
#      (inclusive);
#   2. strace -c, one session over a socket under systemd-socket-activate:
#      the system calls of the session process, exec included;
#   3. perf record -e cpu-clock (when perf works here), 400 sessions at
#      concurrency 8: the symbols the session processes spend their time in;
#   4. what an exec of an empty program costs here (CPU time, bench/rsswrap).
#
# Environment: MAILSLOT (the binary), BENCH_TMP, BENCH_PORT, as bench.sh.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
. "$here/common.sh"
work=$(mktemp -d "${BENCH_TMP:-${TMPDIR:-/tmp}}/mailslot-profile.XXXXXX")
port=${BENCH_PORT:-$((20000 + $$ % 20000))}
lpid=
cleanup() {
	if [ -n "$lpid" ]; then
		kill "$lpid" 2>/dev/null || true
		wait "$lpid" 2>/dev/null || true
	fi
	rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

printf 'hostname = bench.example\nmax_message_size = 200000000\n' >"$work/mailslot.conf"
"$LOAD" --script -s 4096 -r 1 >"$work/session.txt"

maildir() {
	mkdir -p "$1/tmp" "$1/new" "$1/cur"
}

# cmd PROG DIR: the command line that serves one session into DIR/md.
cmd() {
	if [ "$1" = mailslot ]; then
		echo "$MAILSLOT -f $work/mailslot.conf -o maildir=$2/md"
	else
		echo "$FLOOR $2/md"
	fi
}

launch() {
	_i=0
	while [ $_i -lt 10 ]; do
		port=$((port + 1))
		: >"$work/launch.log"
		# shellcheck disable=SC2086
		"$LAUNCH" --inetd -a -l "127.0.0.1:$port" $1 2>>"$work/launch.log" &
		lpid=$!
		_j=0
		while [ $_j -lt 100 ]; do
			grep -q '^Listening on' "$work/launch.log" && return 0
			kill -0 "$lpid" 2>/dev/null || break
			sleep 0.05
			_j=$((_j + 1))
		done
		stop
		_i=$((_i + 1))
	done
	echo "profile: cannot start $LAUNCH" >&2
	exit 1
}

stop() {
	kill "$lpid" 2>/dev/null || true
	wait "$lpid" 2>/dev/null || true
	lpid=
}

echo "== 1. callgrind: one 4 KiB session over a pipe (instructions)"
for prog in mailslot floor; do
	d=$work/cg.$prog
	maildir "$d/md"
	# shellcheck disable=SC2002,SC2046
	cat "$work/session.txt" | valgrind --tool=callgrind \
	    --callgrind-out-file="$d/out" --log-file="$d/log" $(cmd $prog "$d") \
	    >/dev/null 2>&1 || true
	callgrind_annotate --inclusive=yes --auto=no "$d/out" 2>/dev/null >"$d/annotated" || true
	total=$(sed -n 's/.*Collected : *//p' "$d/log")
	ld=$(awk '/rtld.c:_dl_start /{ gsub(",", "", $1); print $1; exit }' "$d/annotated")
	mn=$(awk '/:main \[/{ gsub(",", "", $1); print $1; exit }' "$d/annotated")
	echo "$prog: $total instructions; dynamic loader (_dl_start) ${ld:-?}, main() ${mn:-?}"
	echo "  most expensive functions, inclusive (the loader's internals left out):"
	grep -v 'PROGRAM TOTALS\|/elf/\|ld-linux\|below main\|libc-start\|libc_start' "$d/annotated" |
	    awk '/^ *[0-9,]+ \(.* \[/ { print "    " $0 }' | head -25 | cut -c1-150
done

echo
echo "== 2. strace -c: the system calls of one session over a socket, exec included"
for prog in mailslot floor; do
	d=$work/st.$prog
	maildir "$d/md"
	launch "strace -c -o $d/strace $(cmd $prog "$d")"
	"$LOAD" -p "$port" -n 1 -M "$d/md" -l "$prog" >/dev/null 2>&1 || true
	sleep 0.3
	stop
	echo "$prog: $(awk '$NF == "total" { print $(NF-2) " calls, " $(NF-1) " errors" }' "$d/strace")"
	awk 'NR > 2 && $1 !~ /^-/ && $NF != "total" { n = NF; e = (n == 6) ? $5 : 0;
	    printf "    %-18s %5d%s\n", $NF, $4, e ? " (" e " errors)" : "" }' "$d/strace" |
	    sort -k2 -rn | head -40 | paste - - - | sed 's/\t/   /g'
done

echo
echo "== 3. perf: 400 sessions at concurrency 8, where the session processes spend CPU time"
if perf record -q -e cpu-clock -o "$work/perf.probe" -- true >/dev/null 2>&1; then
	for prog in mailslot floor; do
		d=$work/perf.$prog
		maildir "$d/md"
		launch "$(cmd $prog "$d")"
		perf record -q -a -g -e cpu-clock -o "$d/data" -- \
		    "$LOAD" -p "$port" -n 400 -c 8 -M "$d/md" -l "$prog" >"$d/load" 2>&1 || true
		stop
		comm=$(basename "$(cmd $prog "$d" | cut -d' ' -f1)")
		echo "$prog ($comm): $(sed -n 2p "$d/load")"
		perf report -i "$d/data" --stdio --comms "$comm" --sort sym --no-children \
		    -g none --percentage relative 2>/dev/null | grep '%' | head -25 | sed 's/^/    /'
	done
else
	echo "perf record -e cpu-clock does not work here: skipped"
fi

echo
echo "== 4. one exec of an empty program here (CPU time per process, median of 200)"
printf 'int main(void) { return 0; }\n' >"$work/empty.c"
${CC:-cc} -O2 -o "$work/empty" "$work/empty.c"
: >"$work/empty.rss"
i=0
while [ $i -lt 200 ]; do
	"$WRAP" "$work/empty.rss" "$work/empty"
	i=$((i + 1))
done
sed 's/.*cpu_us=\([0-9]*\).*/\1/' "$work/empty.rss" | sort -n |
    awk '{ c[NR] = $1 } END { print "empty dynamic C program: " c[int((NR + 1) / 2)] " us of CPU per exec" }'
