/*
 * floor.c: the physical floor for the benchmark (BENCHMARKS.md).
 *
 * The least a program can do and still take one SMTP transaction off a
 * connection (fd 0 in, fd 1 out, as inetd hands it over) and make it
 * durable the way mailslot does: create a file in tmp/ (O_EXCL), write,
 * fsync, close, link() into new/ of every target Maildir, fsync each new/,
 * unlink the tmp name, and only then say 250.  What it does not do is the
 * point: no configuration, no address or parameter checks, no trace
 * headers, no logging, no dot-unstuffing and no CRLF to LF conversion (the
 * octets between the 354 and the final "." line are stored as sent), no
 * deadlines.  Every command but DATA, RCPT (with -b) and QUIT gets "250".
 *
 *	floor MAILDIR		every message goes to MAILDIR
 *	floor -b DIR		RCPT TO:<local@...> goes to DIR/local/
 *
 * The Maildirs must exist.  The input buffer is also the write buffer:
 * message data is read straight into it and written from it, one write()
 * per buffer's worth.
 */
#include <sys/stat.h>
#include <sys/time.h>

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define BUFSIZE		(128 * 1024)
#define LOWWATER	(16 * 1024)	/* write out when less room is left */
#define MAX_TARGETS	128

static char	buf[BUFSIZE];
static size_t	bpos, bend;		/* unread input is buf[bpos..bend) */
static char	out[4096];
static size_t	olen;

static int	tmpdir = -1;			/* tmp/ of the first target */
static int	newdirs[MAX_TARGETS];
static int	ntargets;
static const char *base;		/* -b DIR, or NULL */

static void
die(const char *what)
{
	fprintf(stderr, "floor: %s: %s\n", what, strerror(errno));
	exit(111);
}

static void
flush_out(void)
{
	size_t off = 0;

	while (off < olen) {
		ssize_t n = write(1, out + off, olen - off);

		if (n <= 0) {
			if (n == -1 && errno == EINTR)
				continue;
			exit(111);
		}
		off += (size_t)n;
	}
	olen = 0;
}

static void
say(const char *s)
{
	size_t n = strlen(s);

	if (sizeof(out) - olen < n)
		flush_out();
	memcpy(out + olen, s, n);
	olen += n;
}

/* Read more into buf[bend..]; replies go out first (RFC 2920).  0 at EOF. */
static size_t
fill(void)
{
	ssize_t n;

	flush_out();
	do
		n = read(0, buf + bend, sizeof(buf) - bend);
	while (n == -1 && errno == EINTR);
	if (n < 0)
		die("read");
	bend += (size_t)n;
	return (size_t)n;
}

/* The next command line, NUL-terminated without its line end; NULL at EOF. */
static char *
getline_cmd(void)
{
	for (;;) {
		char *lf = memchr(buf + bpos, '\n', bend - bpos), *line;

		if (lf != NULL) {
			line = buf + bpos;
			bpos = (size_t)(lf - buf) + 1;
			if (lf > line && lf[-1] == '\r')
				lf--;
			*lf = '\0';
			return line;
		}
		if (bpos > 0) {
			memmove(buf, buf + bpos, bend - bpos);
			bend -= bpos;
			bpos = 0;
		}
		if (bend == sizeof(buf))
			bend = 0;	/* a command line this long is garbage */
		if (fill() == 0)
			return NULL;
	}
}

static int
opendir_at(const char *dir, const char *sub)
{
	char path[4096];
	int fd;

	snprintf(path, sizeof(path), "%s/%s", dir, sub);
	if ((fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) == -1)
		die(path);
	return fd;
}

static void
add_target(const char *dir)
{
	if (ntargets == MAX_TARGETS)
		return;
	if (tmpdir == -1)
		tmpdir = opendir_at(dir, "tmp");
	newdirs[ntargets++] = opendir_at(dir, "new");
}

/* -b: the local part of RCPT TO:<local@domain> names the Maildir. */
static void
rcpt(const char *line)
{
	char dir[4096];
	const char *lt = strchr(line, '<'), *at;

	if (lt == NULL || (at = strchr(lt, '@')) == NULL)
		return;
	snprintf(dir, sizeof(dir), "%s/%.*s", base, (int)(at - lt - 1), lt + 1);
	add_target(dir);
}

static void
write_all(int fd, const char *p, size_t n)
{
	while (n > 0) {
		ssize_t k = write(fd, p, n);

		if (k <= 0) {
			if (k == -1 && errno == EINTR)
				continue;
			die("write");
		}
		p += k;
		n -= (size_t)k;
	}
}

/*
 * The data, to the line "." CRLF.  `st` is how much of a possible final
 * line has been seen at the scan point: 0 at a line start, 1 ".", 2 ".\r",
 * 3 inside some other line.  Those 1 or 2 octets are kept back when the
 * buffer is written out, since they may be the end.
 */
static void
data(void)
{
	static unsigned long counter;
	struct timeval tv;
	char name[128];
	size_t scan = bpos;
	int fd, st = 0;

	gettimeofday(&tv, NULL);
	snprintf(name, sizeof(name), "%lld.M%06ldP%ldQ%lu.floor",
	    (long long)tv.tv_sec, (long)tv.tv_usec, (long)getpid(), ++counter);
	if ((fd = openat(tmpdir, name, O_WRONLY | O_CREAT | O_EXCL |
	    O_NOFOLLOW | O_CLOEXEC, 0600)) == -1)
		die("create");
	say("354 go ahead\r\n");
	for (;;) {
		while (scan < bend && st != 4) {
			char c = buf[scan];
			char *lf;

			switch (st) {
			case 0:
				if (c == '.' || c == '\n')
					scan++;
				st = c == '.' ? 1 : c == '\n' ? 0 : 3;
				break;
			case 1:
				if (c == '\r')
					scan++;
				st = c == '\r' ? 2 : 3;
				break;
			case 2:
				if (c == '\n')
					scan++;
				st = c == '\n' ? 4 : 3;
				break;
			default:
				lf = memchr(buf + scan, '\n', bend - scan);
				scan = lf != NULL ? (size_t)(lf - buf) + 1 : bend;
				st = lf != NULL ? 0 : 3;
				break;
			}
		}
		if (st == 4)
			break;
		if (sizeof(buf) - bend < LOWWATER) {
			size_t keep = st == 1 || st == 2 ? (size_t)st : 0;

			write_all(fd, buf + bpos, scan - keep - bpos);
			memmove(buf, buf + scan - keep, keep);
			bpos = 0;
			scan = bend = keep;
		}
		if (fill() == 0)
			exit(0);	/* the client left: the tmp file stays, as after a crash */
	}
	write_all(fd, buf + bpos, scan - 3 - bpos);
	bpos = scan;
	if (fsync(fd) == -1 || close(fd) == -1)
		die("fsync");
	for (int i = 0; i < ntargets; i++) {
		if (linkat(tmpdir, name, newdirs[i], name, 0) == -1)
			die("link");
		if (fsync(newdirs[i]) == -1)
			die("fsync new/");
	}
	unlinkat(tmpdir, name, 0);
	say("250 ok\r\n");
}

int
main(int argc, char *argv[])
{
	char *line;

	if (argc == 3 && strcmp(argv[1], "-b") == 0)
		base = argv[2];
	else if (argc == 2)
		add_target(argv[1]);
	else {
		fputs("usage: floor MAILDIR | floor -b DIR\n", stderr);
		return 100;
	}
	say("220 floor ESMTP\r\n");
	while ((line = getline_cmd()) != NULL) {
		if (strncasecmp(line, "DATA", 4) == 0 && tmpdir != -1)
			data();
		else if (strncasecmp(line, "QUIT", 4) == 0) {
			say("221 bye\r\n");
			break;
		} else {
			if (base != NULL && strncasecmp(line, "RCPT", 4) == 0)
				rcpt(line);
			else if (base != NULL && strncasecmp(line, "MAIL", 4) == 0)
				ntargets = 0;	/* a new transaction */
			say("250 ok\r\n");
		}
	}
	flush_out();
	return 0;
}
