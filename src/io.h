/*
 * io.h: the connection.  Input is read into one fixed buffer and handed out
 * as bounded lines (commands) or raw spans (message data); replies are
 * buffered and written only when mailslot is about to wait for input, which
 * is exactly RFC 2920's rule for pipelining.  Every wait has a deadline.
 * The bytes travel through a transport, so TLS can be put underneath
 * without the session noticing.
 */
#ifndef MAILSLOT_IO_H
#define MAILSLOT_IO_H

#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#define IO_INSIZE	32768
#define IO_OUTSIZE	8192

/* What a transport's read or write may answer besides a count. */
#define IO_WANT_READ	(-2)
#define IO_WANT_WRITE	(-3)

struct transport {
	const char *name;
	/* >0 octets moved, 0 end of file (read), -1 error (errno), IO_WANT_*. */
	ssize_t (*read)(void *ctx, int fd, void *buf, size_t n);
	ssize_t (*write)(void *ctx, int fd, const void *buf, size_t n);
};

enum io_status {
	IO_OK,
	IO_LONG,	/* the line was longer than allowed: it was discarded */
	IO_EOF,		/* the client closed (mid-line counts as closed) */
	IO_TIMEOUT,
	IO_ERROR,	/* errno says why */
	IO_SIGNAL,	/* SIGTERM: the caller says 421 and leaves */
};

struct io {
	int			 rfd, wfd;
	const struct transport	*t;
	void			*tctx;
	bool			 chardev;	/* rfd is a character device: a terminal, maybe */
	int			 write_timeout;	/* seconds, for every flush */
	size_t			 ipos, iend;	/* unread input is in[ipos..iend) */
	size_t			 olen;
	enum io_status		 failed;	/* a flush that failed: it sticks */
	char			 in[IO_INSIZE];
	char			 out[IO_OUTSIZE];
};

/* Set by the SIGTERM handler; any wait then ends with IO_SIGNAL. */
extern volatile sig_atomic_t io_terminate;

extern const struct transport io_plain, io_socket;

void io_init(struct io *, int rfd, int wfd, int write_timeout);

/*
 * One line, terminator included, of at most `max` octets (CRLF or LF ends
 * it; the terminator is stripped and the length without it is in *len,
 * *raw the length with it).  `line` has room for max + 1.  The whole line
 * must arrive within `timeout` seconds.  A longer line is read to its end
 * and thrown away, a buffer's worth at a time, and IO_LONG returned; its
 * first `max` octets are then in `line` (NUL-terminated, *len and *raw
 * both `max`), so that the caller can tell what command it began.
 */
enum io_status io_getline(struct io *, char *line, size_t max, size_t *len,
    size_t *raw, int timeout);

/* Make input available (waiting at most `timeout` seconds if there is none). */
enum io_status io_fill(struct io *, int timeout);

/*
 * Read more input after what is buffered and unread (which is kept),
 * waiting at most `timeout_ms`; IO_LONG when the buffer is full.  For a
 * prefix read in pieces (src/proxy.c), before the session starts.
 */
enum io_status io_more(struct io *, int timeout_ms);

static inline size_t io_avail(const struct io *io) { return io->iend - io->ipos; }
static inline const char *io_peek(const struct io *io) { return io->in + io->ipos; }
static inline void io_consume(struct io *io, size_t n) { io->ipos += n; }

/* Queue reply octets; flushes first when the buffer would overflow. */
enum io_status io_write(struct io *, const char *, size_t);

/* Write everything queued, within write_timeout. */
enum io_status io_flush(struct io *);

/* Forget input that is buffered but not read (STARTTLS). */
void io_discard_input(struct io *);

#endif
