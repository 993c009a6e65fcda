/*
 * log.c: where the log goes.  Under systemd (INVOCATION_ID or JOURNAL_STREAM
 * in the environment) lines go to the journal with structured fields; by
 * hand, to stderr; everywhere else to syslog(LOG_MAIL).  inetd and xinetd
 * hand the client's socket over as fd 2 too, so stderr is used only when it
 * is open and is not the same file as fd 0 or fd 1: a log line must never
 * reach the client.
 */
#include <sys/stat.h>

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <vis.h>

#include "log.h"
#include "sd.h"

/*
 * Room for a line: enough for its longest, the delivery line with three
 * quoted values (sender, recipient, Message-ID) that may all be escaped.
 */
#define LOG_LINE_MAX	4096

static enum log_target target = LOG_TO_STDERR;
static char session[32] = "-";

static bool
same_file(int a, int b)
{
	struct stat sa, sb;

	if (fstat(a, &sa) == -1 || fstat(b, &sb) == -1)
		return false;
	return sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
}

enum log_target
log_open(void)
{
	if (getenv("INVOCATION_ID") != NULL || getenv("JOURNAL_STREAM") != NULL)
		target = LOG_TO_JOURNAL;
	else if (fcntl(2, F_GETFD) != -1 && !same_file(2, 0) && !same_file(2, 1))
		target = LOG_TO_STDERR;
	else
		target = LOG_TO_SYSLOG;
	if (target == LOG_TO_SYSLOG) {
		int null;

		openlog("mailslot", LOG_PID, LOG_MAIL);
		/*
		 * fd 2 is the client (inetd, xinetd) or closed: put /dev/null
		 * there, so that nothing a library prints (an abort message, a
		 * sanitizer report) can reach the connection.
		 */
		if ((null = open("/dev/null", O_WRONLY | O_CLOEXEC)) != -1) {
			if (null != 2) {
				dup2(null, 2);
				close(null);
			}
		}
	}
	/* A session id: 48 random bits, enough to tell a day's sessions apart. */
	{
		static const char hex[] = "0123456789abcdef";
		unsigned char r[6];

		arc4random_buf(r, sizeof(r));
		for (size_t i = 0; i < sizeof(r); i++) {
			session[2 * i] = hex[r[i] >> 4];
			session[2 * i + 1] = hex[r[i] & 0xf];
		}
		session[2 * sizeof(r)] = '\0';
	}
	return target;
}

void
log_msg(int prio, const char *fmt, ...)
{
	char buf[64 + LOG_LINE_MAX], *line = buf;
	int saved = errno, pre = 0;
	va_list ap;

	/* For stderr the prefix goes first, so that one write() takes the line. */
	if (target == LOG_TO_STDERR) {
		pre = snprintf(buf, 64, "mailslot[%ld]: session=%s ", (long)getpid(),
		    session);
		if (pre < 0 || pre >= 64)
			pre = 0;
		line = buf + pre;
	}
	va_start(ap, fmt);
	vsnprintf(line, LOG_LINE_MAX, fmt, ap);
	va_end(ap);

	switch (target) {
	case LOG_TO_JOURNAL:
		if (sd_journal_line(prio, session, line))
			break;
		target = LOG_TO_SYSLOG;
		openlog("mailslot", LOG_PID, LOG_MAIL);
		/* FALLTHROUGH */
	case LOG_TO_SYSLOG:
		syslog(prio, "session=%s %s", session, line);
		break;
	case LOG_TO_STDERR: {
		size_t n = (size_t)pre + strlen(line);

		buf[n++] = '\n';	/* where the NUL was: the line fits */
		(void)!write(2, buf, n);
		break;
	}
	}
	errno = saved;
}

/*
 * The one door through which a value mailslot did not make itself (a
 * command line, an address, a HELO name, a reply that quotes them, a path
 * with a local part in it) reaches a log line, whatever the target: stderr,
 * syslog and the journal's MESSAGE= all get the line made here.  Between
 * double quotes, strnvis C style: `"` and `\` as \" and \\, \n \r \t
 * and the other controls, DEL and every 8-bit octet (UTF-8 too) as \ooo.
 * So a value is one token however hostile, and a reader can split a line
 * into key=value fields without being fooled.  The source may hold NUL
 * bytes (it is counted); a source that would not fit is cut, never the
 * closing quote.
 */
char *
log_quote(char *dst, size_t dstsize, const char *src, size_t len)
{
	const int flags = VIS_CSTYLE | VIS_OCTAL | VIS_NL | VIS_TAB | VIS_DQ |
	    VIS_NOLOCALE;
	size_t room;

	if (dstsize < 3) {
		if (dstsize > 0)
			dst[0] = '\0';
		return dst;
	}
	if (src == NULL)
		src = "", len = 0;
	room = dstsize - 3;		/* two quotes and the NUL */
	dst[0] = '"';
	if (!vis_needed(src, len < room ? len : room, true)) {
		if (len > room)
			len = room;
		memcpy(dst + 1, src, len);
	} else {
		/* An octet becomes at most four ("\ooo"): a quarter always fits. */
		if (len > room / 4)
			len = room / 4;
		if (strnvisx(dst + 1, dstsize - 2, src, len, flags) == -1)
			dst[1] = '\0';
		len = strlen(dst + 1);
	}
	dst[1 + len] = '"';
	dst[2 + len] = '\0';
	return dst;
}

char *
log_quote_path(char *dst, size_t dstsize, const char *addr)
{
	char path[1024];

	snprintf(path, sizeof(path), "<%s>", addr != NULL ? addr : "");
	return log_quote(dst, dstsize, path, strlen(path));
}
