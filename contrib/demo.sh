#!/bin/sh
# The demo behind `make run`: mailslot on 127.0.0.1 under
# systemd-socket-activate, one process per connection, as mailslot.socket
# would start it, delivering into a Maildir inside the checkout.
#   demo.sh BINARY CONFIG PORT DIR
set -eu
bin=$1 conf=$2 port=$3 dir=$4
maildir=$dir/Maildir
mkdir -p "$dir"

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
exec systemd-socket-activate --inetd -a -l "127.0.0.1:$port" \
	"$bin" -f "$conf" -o "maildir=$maildir" -o hostname=localhost
