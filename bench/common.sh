# Sourced by bench.sh and profile.sh (with $here set): the programs they
# run.  Started as root, they start again as an unprivileged account:
# mailslot refuses to deliver as root without `user`; in production it
# runs as its own account (units/mailslot@.service: User=mailslot), and
# so it does here.  BENCH_USER names the account (default nobody).
if [ "$(id -u)" = 0 ]; then
	BENCH_USER=${BENCH_USER:-nobody}
	if ! setpriv --reuid="$BENCH_USER" --regid="$(id -g "$BENCH_USER")" \
	    --clear-groups -- test -x "$here/floor"; then
		echo "bench: $BENCH_USER cannot run $here/floor: put the tree where it can" >&2
		exit 77
	fi
	exec setpriv --reuid="$BENCH_USER" --regid="$(id -g "$BENCH_USER")" \
	    --clear-groups -- env HOME=/ sh "$0" "$@"
fi

top=$(dirname "$here")
MAILSLOT=${MAILSLOT:-$top/src/mailslot}
FLOOR=$here/floor
LOAD=$here/smtpload
WRAP=$here/rsswrap
LAUNCH=${LAUNCH:-systemd-socket-activate}
