/* log.h: one line per event, to the journal, syslog or stderr. */
#ifndef MAILSLOT_LOG_H
#define MAILSLOT_LOG_H

#include <stdbool.h>
#include <stddef.h>
#include <syslog.h>

enum log_target { LOG_TO_STDERR, LOG_TO_SYSLOG, LOG_TO_JOURNAL };

/* Pick the target for this process (see log.c), open it, and draw the
 * session id that every line then carries as "session=ID". */
enum log_target log_open(void);

/*
 * A line of key=value fields.  A value that mailslot did not make itself
 * goes in only as log_quote() renders it: "key=%s" with log_quote(...),
 * never "key=\"%s\"" around raw text.
 */
void log_msg(int prio, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/*
 * `len` untrusted octets (NUL bytes allowed) as one quoted, escaped value
 * in `dst`: '"' strnvis(VIS_CSTYLE | VIS_OCTAL | VIS_DQ ...) '"', so no
 * quote, backslash, control character or 8-bit octet reaches a log line
 * as itself.  A source too long for `dstsize` is cut; the quotes always
 * close.  LOG_QUOTED(n) is the room that n octets can need.  Returns dst.
 */
char *log_quote(char *dst, size_t dstsize, const char *src, size_t len);
#define LOG_QUOTED(n)	(4 * (n) + 3)

/* An address as a path, "<addr>", through log_quote: from="<a@b.example>". */
char *log_quote_path(char *dst, size_t dstsize, const char *addr);

/*
 * Would strnvis() with VIS_CSTYLE | VIS_OCTAL | VIS_NL | VIS_TAB (and
 * VIS_DQ when `dq`) change any of these octets?  Most text needs no
 * escape, and for it the copy is all there is to do: strnvisx() goes
 * through the C library's wide-character functions for every octet.
 */
static inline bool
vis_needed(const char *s, size_t n, bool dq)
{
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];

		if (c < 0x20 || c > 0x7e || c == '\\' || (dq && c == '"'))
			return true;
	}
	return false;
}

#endif
