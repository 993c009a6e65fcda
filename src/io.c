/*
 * io.c: bounded input with deadlines; output flushed only before waiting.
 *
 * The one rule that makes pipelining right (RFC 2920 3.2, and qmail's
 * saferead()): pending replies are written before every blocking read, and
 * never while more input is already buffered.  A client that sends a whole
 * transaction in one write gets every reply, in order, in one write back.
 */
#include <sys/socket.h>
#include <sys/stat.h>

#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "io.h"

volatile sig_atomic_t io_terminate;

static ssize_t
plain_read(void *ctx, int fd, void *buf, size_t n)
{
	(void)ctx;
	return read(fd, buf, n);
}

/*
 * A pipe or terminal cannot be told not to block, so wait until it takes
 * octets, and then give it no more than PIPE_BUF: a write of that much
 * into a pipe with room does not block.
 */
static ssize_t
plain_write(void *ctx, int fd, const void *buf, size_t n)
{
	struct pollfd pfd = { .fd = fd, .events = POLLOUT };

	(void)ctx;
	if (poll(&pfd, 1, 0) == 0)
		return IO_WANT_WRITE;
	return write(fd, buf, n < PIPE_BUF ? n : PIPE_BUF);
}

/*
 * On a socket every call is non-blocking by itself (MSG_DONTWAIT), so a
 * client that stops reading cannot hold mailslot past a deadline, and the
 * fd's own flags, shared with the launcher, are left alone.
 */
static ssize_t
sock_read(void *ctx, int fd, void *buf, size_t n)
{
	ssize_t r = recv(fd, buf, n, MSG_DONTWAIT);

	(void)ctx;
	return r == -1 && (errno == EAGAIN || errno == EWOULDBLOCK) ? IO_WANT_READ : r;
}

static ssize_t
sock_write(void *ctx, int fd, const void *buf, size_t n)
{
	ssize_t r = send(fd, buf, n, MSG_DONTWAIT | MSG_NOSIGNAL);

	(void)ctx;
	return r == -1 && (errno == EAGAIN || errno == EWOULDBLOCK) ? IO_WANT_WRITE : r;
}

/* Pipes and terminals (by hand): plain calls, with a poll() before each read. */
const struct transport io_plain = { "plain", plain_read, plain_write };
const struct transport io_socket = { "socket", sock_read, sock_write };

void
io_init(struct io *io, int rfd, int wfd, int write_timeout)
{
	struct stat st;

	io->rfd = rfd;
	io->wfd = wfd;
	if (fstat(rfd, &st) == -1)
		st.st_mode = 0;
	io->t = S_ISSOCK(st.st_mode) ? &io_socket : &io_plain;
	io->chardev = S_ISCHR(st.st_mode);
	io->tctx = NULL;
	io->write_timeout = write_timeout;
	io->ipos = io->iend = io->olen = 0;
	io->failed = IO_OK;
}

static long long
now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Wait until `fd` is ready for `events` or the deadline (ms, monotonic) passes. */
static enum io_status
wait_fd(int fd, short events, long long deadline)
{
	struct pollfd pfd = { .fd = fd, .events = events };

	for (;;) {
		long long left = deadline - now_ms();
		int r;

		if (io_terminate)
			return IO_SIGNAL;
		if (left <= 0)
			return IO_TIMEOUT;
		r = poll(&pfd, 1, left > 60000 ? 60000 : (int)left);
		if (r > 0)
			return IO_OK;	/* POLLHUP/POLLERR: the read or write says which */
		if (r == -1 && errno != EINTR)
			return IO_ERROR;
	}
}

/*
 * A client that does not take its replies within the deadline is gone as
 * far as mailslot is concerned: the failure sticks, and every later wait
 * returns it at once instead of waiting out the deadline again.
 */
static enum io_status
flush_until(struct io *io, long long deadline)
{
	size_t off = 0;

	if (io->failed != IO_OK)
		return io->failed;
	while (off < io->olen) {
		ssize_t n = io->t->write(io->tctx, io->wfd, io->out + off, io->olen - off);
		enum io_status st;

		if (n > 0) {
			off += (size_t)n;
			continue;
		}
		if (io_terminate)
			return IO_SIGNAL;
		if (n == -1 && errno == EINTR)
			continue;
		if (n == IO_WANT_READ)
			st = wait_fd(io->rfd, POLLIN, deadline);
		else if (n == IO_WANT_WRITE || (n == -1 && errno == EAGAIN))
			st = wait_fd(io->wfd, POLLOUT, deadline);
		else
			st = IO_ERROR;
		if (st != IO_OK) {
			io->olen = 0;
			return io->failed = st;
		}
	}
	io->olen = 0;
	return IO_OK;
}

enum io_status
io_flush(struct io *io)
{
	if (io->olen == 0)
		return IO_OK;
	return flush_until(io, now_ms() + io->write_timeout * 1000LL);
}

enum io_status
io_write(struct io *io, const char *p, size_t n)
{
	while (n > 0) {
		size_t room = sizeof(io->out) - io->olen, k = n < room ? n : room;
		enum io_status st;

		memcpy(io->out + io->olen, p, k);
		io->olen += k;
		p += k;
		n -= k;
		if (n > 0 && (st = io_flush(io)) != IO_OK)
			return st;
	}
	return IO_OK;
}

/*
 * Read more input, waiting until `deadline`; called only when no input is
 * left, so this is the one place that blocks on the client and the one
 * place that flushes replies before it does.  The plain transport waits for
 * readability before each read: inetd hands the socket over blocking, and a
 * bare read() could outlast the deadline.
 */
static enum io_status
fill(struct io *io, long long deadline)
{
	enum io_status st;
	bool ready = io->t != &io_plain;

	if ((st = flush_until(io, now_ms() + io->write_timeout * 1000LL)) != IO_OK)
		return st;
	/* What is still unread (io_more() only) moves to the front. */
	if (io->ipos > 0) {
		memmove(io->in, io->in + io->ipos, io->iend - io->ipos);
		io->iend -= io->ipos;
		io->ipos = 0;
	}
	if (io->iend == sizeof(io->in))
		return IO_LONG;
	for (;;) {
		ssize_t n;

		if (!ready && (st = wait_fd(io->rfd, POLLIN, deadline)) != IO_OK)
			return st;
		n = io->t->read(io->tctx, io->rfd, io->in + io->iend, sizeof(io->in) - io->iend);
		if (n > 0) {
			io->iend += (size_t)n;
			return IO_OK;
		}
		if (n == 0)
			return IO_EOF;
		ready = false;
		if (n == -1 && (errno == EINTR || errno == EAGAIN))
			continue;
		if (n == IO_WANT_READ)
			continue;
		if (n != IO_WANT_WRITE)
			return IO_ERROR;
		if ((st = wait_fd(io->wfd, POLLOUT, deadline)) != IO_OK)
			return st;
		ready = true;
	}
}

enum io_status
io_fill(struct io *io, int timeout)
{
	if (io_avail(io) > 0)
		return IO_OK;
	return fill(io, now_ms() + timeout * 1000LL);
}

enum io_status
io_more(struct io *io, int timeout_ms)
{
	return fill(io, now_ms() + timeout_ms);
}

enum io_status
io_getline(struct io *io, char *line, size_t max, size_t *len, size_t *raw,
    int timeout)
{
	long long deadline = now_ms() + timeout * 1000LL;
	size_t got = 0;
	bool toolong = false;

	for (;;) {
		size_t avail = io_avail(io), take;
		const char *p = io_peek(io), *lf;
		enum io_status st;

		if (avail == 0) {
			if ((st = fill(io, deadline)) != IO_OK)
				return st;
			continue;
		}
		lf = memchr(p, '\n', avail);
		take = lf != NULL ? (size_t)(lf - p) + 1 : avail;
		if (!toolong) {
			/* What fits is kept, so that the caller can see how the line began. */
			size_t keep = take > max - got ? max - got : take;

			memcpy(line + got, p, keep);
			got += keep;
			if (keep < take)
				toolong = true;	/* from here on, only look for the LF */
		}
		io_consume(io, take);
		if (lf == NULL)
			continue;
		if (toolong) {
			line[got] = '\0';
			*len = *raw = got;
			return IO_LONG;
		}
		*raw = got;
		got--;				/* the LF */
		if (got > 0 && line[got - 1] == '\r')
			got--;
		line[got] = '\0';
		*len = got;
		return IO_OK;
	}
}

void
io_discard_input(struct io *io)
{
	io->ipos = io->iend = 0;
}
