/* log.h: one line per event, to the journal, syslog or stderr. */
#ifndef MAILSLOT_LOG_H
#define MAILSLOT_LOG_H

#include <stddef.h>
#include <syslog.h>

enum log_target { LOG_TO_STDERR, LOG_TO_SYSLOG, LOG_TO_JOURNAL };

/* Pick the target for this process (see log.c), open it, and draw the
 * session id that every line then carries as "session=ID". */
enum log_target log_open(void);

/* A line of key=value fields; callers escape untrusted values with log_esc. */
void log_msg(int prio, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/*
 * Escape `len` untrusted octets into `dst` (strnvis, C style): no control
 * character, no 8-bit byte and no space-free trickery reaches a log line.
 * Output longer than `dstsize` is cut.  Returns dst.
 */
char *log_esc(char *dst, size_t dstsize, const char *src, size_t len);

#endif
