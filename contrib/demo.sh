#!/bin/sh
# The demo behind `make run`: mailslot on 127.0.0.1 under
# systemd-socket-activate, one process per connection, as mailslot.socket
# would start it, delivering into a Maildir inside the checkout.
#   demo.sh BINARY CONFIG PORT DIR [USER]
# Started as root, mailslot refuses to deliver as root: then it runs as USER
# (default mailslot; a system account is made when there is none), DIR is
# handed to that account and the directories above DIR are made traversable.
set -eu
bin=$1 conf=$2 port=$3 dir=$4 user=${5:-mailslot}
mkdir -p "$dir"
dir=$(cd "$dir" && pwd)
maildir=$dir/Maildir
set -- -o "maildir=$maildir" -o hostname=localhost
if [ "$(id -u)" = 0 ]; then
	if ! id "$user" >/dev/null 2>&1; then
		echo "demo: making the system account $user"
		useradd --system --home-dir /var/lib/mailslot --no-create-home \
		    --shell /usr/sbin/nologin "$user"
	fi
	[ "$(id -u "$user")" != 0 ] || { echo "demo: $user is root" >&2; exit 1; }
	chown -R "$user": "$dir"
	d=$dir
	while [ "$d" != / ]; do
		d=$(dirname "$d")
		if [ -z "$(find "$d" -maxdepth 0 -perm -o=x)" ]; then
			echo "demo: chmod o+x $d, for $user to reach $dir"
			chmod o+x "$d"
		fi
	done
	set -- "$@" -o "user=$user"
fi

cat <<MSG
mailslot is listening on 127.0.0.1:$port; messages land in $maildir/new/
(configuration: $conf, with maildir and hostname set on the command line).

Send a message with any of these, from another terminal:

  swaks --server 127.0.0.1:$port --from me@example.org --to you@example.org

  printf 'From: me@example.org\nTo: you@example.org\nSubject: hello\n\nHello.\n' |
    curl --crlf smtp://127.0.0.1:$port --mail-from me@example.org \\
      --mail-rcpt you@example.org -T -

  python3 -c 'import smtplib; s = smtplib.SMTP("127.0.0.1", $port)
s.sendmail("me@example.org", ["you@example.org"], "Subject: hello\r\n\r\nHello.\r\n")
s.quit()'

Then look:  ls $maildir/new/  and  cat $maildir/new/*
Log lines follow here.  Stop with Ctrl-C.

MSG
exec systemd-socket-activate --inetd -a -l "127.0.0.1:$port" "$bin" -f "$conf" "$@"
