/*
 * smtpload.c: the benchmark's SMTP load generator (BENCHMARKS.md).
 *
 * N sessions, C at a time (one thread each), against 127.0.0.1:PORT (-a
 * another address, -b from a given local address):
 * connect, EHLO, MAIL, RCPT x k, DATA with a message of S octets, QUIT,
 * every reply code checked, each reply awaited before the next command
 * (-P pipelines MAIL, RCPT and DATA as RFC 2920 allows).  It prints
 * messages per second, p50 and p99 session latency, failures, and the
 * DATA phase (from the 354 to the 250) in MB/s (10^6 octets).
 *
 * Every message carries "X-Bench-Id: <run>.<n>".  With -M (a Maildir,
 * repeatable) or -B (a directory of Maildirs user0 .. user<k-1>), the
 * files in new/ are read after the run: each accepted message must be in
 * every target exactly once.  A lost or duplicated message, or a stray
 * file, makes the run INVALID, and the exit status 2.
 *
 * Bounded: -t seconds per reply (a slow server is a failure, never a
 * hang), -T seconds for the whole run (sessions not started by then are
 * counted as failures).  --script writes one pipelined session (what a
 * pipe-fed instruction count needs) to stdout and exits.
 */
#include <sys/socket.h>
#include <sys/time.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define MAX_THREADS	256
#define MAX_RCPTS	1000
#define LINE_LEN	80		/* body lines, CRLF included */
#define CHUNK		(64 * 1024)

static const char usage[] =
    "usage: smtpload -p port [-a addr] [-b from] [-n sessions] [-c concurrency] [-r rcpts]\n"
    "                [-s size] [-P] [-t reply-timeout] [-T run-limit] [-l label]\n"
    "                [-M maildir]... [-B dir]\n"
    "       smtpload --script [-s size] [-r rcpts]\n";

static struct {
	struct sockaddr_in sa;
	struct sockaddr_in from;	/* -b: the address to connect from */
	long		 sessions, conc, rcpts, size;
	bool		 pipelining;
	int		 timeout, limit;
	const char	*label;
	const char	*maildirs[MAX_RCPTS];
	int		 nmaildirs;
	const char	*base;
} opt = { .sessions = 1, .conc = 1, .rcpts = 1, .size = 4096, .timeout = 60,
	  .limit = 3600, .label = "run" };

static char		 run_id[32];
static atomic_long	 next_session;
static atomic_long	 failures_logged;
static double		 t_start, t_limit;
static double		*latency;	/* per session, seconds; < 0: failed */
static double		*data_secs;	/* DATA phase of each session */
static unsigned char	*accepted;	/* the 250 after the data came */
static char		 body_chunk[CHUNK];	/* whole body lines, LINE_LEN each */
static size_t		 body_chunk_len;

static double
now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void
fail(long n, const char *fmt, ...)
{
	va_list ap;

	if (atomic_fetch_add(&failures_logged, 1) >= 10)
		return;
	va_start(ap, fmt);
	fprintf(stderr, "smtpload: session %ld: ", n);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
}

/* ---- The message ---------------------------------------------------------- */

/* The header block of message `n`; the body fills the rest of opt.size. */
static size_t
header(char *h, size_t cap, long n)
{
	int len = snprintf(h, cap,
	    "From: <sender@bench.example>\r\n"
	    "To: <user0@bench.example>\r\n"
	    "Subject: benchmark message %ld\r\n"
	    "Message-ID: <%s.%ld@bench.example>\r\n"
	    "X-Bench-Id: %s.%ld\r\n"
	    "\r\n", n, run_id, n, run_id, n);

	return len > 0 && (size_t)len < cap ? (size_t)len : 0;
}

static void
make_body_chunk(void)
{
	static const char alnum[] =
	    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

	for (size_t i = 0; i + LINE_LEN <= sizeof(body_chunk); i += LINE_LEN) {
		for (size_t j = 0; j < LINE_LEN - 2; j++)
			body_chunk[i + j] = alnum[(i / LINE_LEN + j) % (sizeof(alnum) - 1)];
		memcpy(body_chunk + i + LINE_LEN - 2, "\r\n", 2);
		body_chunk_len = i + LINE_LEN;
	}
}

/*
 * Call `put` on the octets of message `n` (opt.size of them, CRLF line
 * ends, no line starting with a dot), then on the final ".\r\n".  The body
 * is whole lines, the last one shortened to fit.
 */
static bool
message(long n, bool (*put)(void *, const char *, size_t), void *ctx)
{
	char h[512], last[2 * LINE_LEN + 8];
	size_t hl = header(h, sizeof(h), n), body, rest;

	if (hl == 0 || (size_t)opt.size < hl + 2)
		return false;
	if (!put(ctx, h, hl))
		return false;
	body = (size_t)opt.size - hl;
	/* All but the last one or two lines come from the chunk. */
	rest = body % LINE_LEN + (body >= LINE_LEN ? LINE_LEN : 0);
	for (size_t whole = body - rest; whole > 0; ) {
		size_t k = whole < body_chunk_len ? whole : body_chunk_len;

		if (!put(ctx, body_chunk, k))
			return false;
		whole -= k;
	}
	if (rest > 0) {
		/* One line of rest - 2 octets and CRLF; rest >= 2 unless body < 2. */
		memset(last, 'z', rest);
		memcpy(last + rest - 2, "\r\n", 2);
		if (!put(ctx, last, rest))
			return false;
	}
	return put(ctx, ".\r\n", 3);
}

/* ---- One connection --------------------------------------------------------- */

struct conn {
	int	 fd;
	long	 n;
	char	 in[4096];
	size_t	 ipos, iend;
	char	 out[CHUNK];
	size_t	 olen;
	char	 last[128];	/* the last reply line, for messages */
};

static bool
send_all(struct conn *c, const char *p, size_t n)
{
	while (n > 0) {
		ssize_t k = write(c->fd, p, n);

		if (k > 0) {
			p += k;
			n -= (size_t)k;
		} else if (k == -1 && errno == EINTR)
			continue;
		else {
			fail(c->n, "write: %s", k == 0 ? "short" : strerror(errno));
			return false;
		}
	}
	return true;
}

static bool
flush(struct conn *c)
{
	bool ok = send_all(c, c->out, c->olen);

	c->olen = 0;
	return ok;
}

static bool
put(void *ctx, const char *p, size_t n)
{
	struct conn *c = ctx;

	if (sizeof(c->out) - c->olen < n && !flush(c))
		return false;
	if (n >= sizeof(c->out))
		return send_all(c, p, n);
	memcpy(c->out + c->olen, p, n);
	c->olen += n;
	return true;
}

static bool
cmd(struct conn *c, const char *fmt, ...)
{
	char line[1100];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	return n > 0 && (size_t)n < sizeof(line) && put(c, line, (size_t)n);
}

/* One reply line; false at EOF, error or timeout. */
static bool
reply_line(struct conn *c, char *line, size_t cap)
{
	size_t len = 0;

	for (;;) {
		while (c->ipos < c->iend) {
			char ch = c->in[c->ipos++];

			if (ch == '\n') {
				if (len > 0 && line[len - 1] == '\r')
					len--;
				line[len] = '\0';
				return true;
			}
			if (len + 1 < cap)
				line[len++] = ch;
		}
		ssize_t k = read(c->fd, c->in, sizeof(c->in));

		if (k > 0) {
			c->ipos = 0;
			c->iend = (size_t)k;
		} else if (k == -1 && errno == EINTR)
			continue;
		else {
			line[len] = '\0';
			return false;
		}
	}
}

/* Read one reply (every line of a multi-line one) and check its code. */
static bool
expect(struct conn *c, int code, const char *after)
{
	char line[1024];

	if (c->olen > 0 && !flush(c))
		return false;
	for (;;) {
		if (!reply_line(c, line, sizeof(line))) {
			fail(c->n, "after %s: %s", after,
			    errno == EAGAIN ? "reply timeout" : "connection closed");
			return false;
		}
		snprintf(c->last, sizeof(c->last), "%.120s", line);
		if (strlen(line) < 3 || atoi(line) != code ||
		    (line[3] != '\0' && line[3] != ' ' && line[3] != '-')) {
			fail(c->n, "after %s: expected %d, got \"%s\"", after, code, c->last);
			return false;
		}
		if (line[3] != '-')
			return true;
	}
}

static int
dial(long n)
{
	struct timeval tv = { .tv_sec = opt.timeout };
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), one = 1;

	if (fd == -1) {
		fail(n, "socket: %s", strerror(errno));
		return -1;
	}
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (opt.from.sin_family == AF_INET &&
	    bind(fd, (struct sockaddr *)&opt.from, sizeof(opt.from)) == -1) {
		fail(n, "bind: %s", strerror(errno));
		close(fd);
		return -1;
	}
	if (connect(fd, (struct sockaddr *)&opt.sa, sizeof(opt.sa)) == -1) {
		fail(n, "connect: %s", strerror(errno));
		close(fd);
		return -1;
	}
	return fd;
}

static bool
session(struct conn *c)
{
	double t0;
	char what[32];

	if (!expect(c, 220, "connect"))
		return false;
	if (!cmd(c, "EHLO load.bench.example\r\n") || !expect(c, 250, "EHLO"))
		return false;
	if (!cmd(c, "MAIL FROM:<sender@bench.example> SIZE=%ld\r\n", opt.size))
		return false;
	if (!opt.pipelining && !expect(c, 250, "MAIL"))
		return false;
	for (long i = 0; i < opt.rcpts; i++) {
		if (!cmd(c, "RCPT TO:<user%ld@bench.example>\r\n", i))
			return false;
		snprintf(what, sizeof(what), "RCPT %ld", i);
		if (!opt.pipelining && !expect(c, 250, what))
			return false;
	}
	if (!cmd(c, "DATA\r\n"))
		return false;
	if (opt.pipelining) {
		if (!expect(c, 250, "MAIL"))
			return false;
		for (long i = 0; i < opt.rcpts; i++) {
			snprintf(what, sizeof(what), "RCPT %ld", i);
			if (!expect(c, 250, what))
				return false;
		}
	}
	if (!expect(c, 354, "DATA"))
		return false;
	t0 = now();
	if (!message(c->n, put, c) || !expect(c, 250, "end of data"))
		return false;
	data_secs[c->n] = now() - t0;
	accepted[c->n] = 1;
	if (!cmd(c, "QUIT\r\n") || !expect(c, 221, "QUIT"))
		return false;
	return true;
}

static void *
worker(void *arg)
{
	struct conn *c = malloc(sizeof(*c));

	(void)arg;
	if (c == NULL)
		return NULL;
	for (;;) {
		long n = atomic_fetch_add(&next_session, 1);
		double t0;
		bool ok;

		if (n >= opt.sessions)
			break;
		latency[n] = -1;
		if (now() > t_limit) {
			fail(n, "not started: run limit of %d s reached", opt.limit);
			continue;
		}
		t0 = now();
		if ((c->fd = dial(n)) == -1)
			continue;
		c->n = n;
		c->ipos = c->iend = c->olen = 0;
		ok = session(c);
		if (ok) {
			/* The server closes first; its EOF ends the session. */
			char b[64];

			while (read(c->fd, b, sizeof(b)) > 0)
				;
			latency[n] = now() - t0;
		}
		close(c->fd);
	}
	free(c);
	return NULL;
}

/* ---- Counting what arrived ---------------------------------------------- */

struct tally {
	long	lost, dup, stray, files;
};

/* The n of "X-Bench-Id: <run_id>.<n>" in the first 8 KiB of a file, or -1. */
static long
bench_id(int dirfd, const char *name, bool *foreign)
{
	char b[8192 + 1], key[64], *p;
	int fd = openat(dirfd, name, O_RDONLY | O_CLOEXEC);
	ssize_t k;

	*foreign = false;
	if (fd == -1)
		return -1;
	k = read(fd, b, sizeof(b) - 1);
	close(fd);
	if (k <= 0)
		return -1;
	b[k] = '\0';
	if ((p = strstr(b, "X-Bench-Id: ")) == NULL)
		return -1;
	snprintf(key, sizeof(key), "X-Bench-Id: %s.", run_id);
	if (strncmp(p, key, strlen(key)) != 0) {
		*foreign = true;
		return -1;
	}
	return strtol(p + strlen(key), NULL, 10);
}

static void
count_maildir(const char *dir, struct tally *t)
{
	char path[4096];
	unsigned char *seen = calloc((size_t)opt.sessions, 1);
	DIR *d;
	struct dirent *de;

	snprintf(path, sizeof(path), "%s/new", dir);
	if (seen == NULL || (d = opendir(path)) == NULL) {
		fprintf(stderr, "smtpload: %s: %s\n", path, strerror(errno));
		t->lost += opt.sessions;
		free(seen);
		return;
	}
	while ((de = readdir(d)) != NULL) {
		bool foreign;
		long n;

		if (de->d_name[0] == '.')
			continue;
		t->files++;
		n = bench_id(dirfd(d), de->d_name, &foreign);
		if (n < 0 || n >= opt.sessions || !accepted[n]) {
			/* Not a message this run had acknowledged. */
			t->stray++;
			if (t->stray <= 3)
				fprintf(stderr, "smtpload: %s/%s: not an accepted message of this run\n",
				    path, de->d_name);
			continue;
		}
		if (seen[n]++ > 0)
			t->dup++;
	}
	closedir(d);
	for (long n = 0; n < opt.sessions; n++)
		if (accepted[n] && seen[n] == 0)
			t->lost++;
	free(seen);
}

/* ---- Main ---------------------------------------------------------------- */

static int
cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

static double
percentile(double *v, long n, double p)
{
	long i;

	if (n == 0)
		return 0;
	i = (long)(p * (double)(n - 1) + 0.5);
	return v[i];
}

static bool
put_stdout(void *ctx, const char *p, size_t n)
{
	(void)ctx;
	return fwrite(p, 1, n, stdout) == n;
}

static long
number(const char *s, long min, long max)
{
	char *end;
	long v;

	errno = 0;
	v = strtol(s, &end, 10);
	if (errno != 0 || *end != '\0' || v < min || v > max) {
		fprintf(stderr, "smtpload: %s: not a number in [%ld, %ld]\n", s, min, max);
		exit(64);
	}
	return v;
}

int
main(int argc, char *argv[])
{
	pthread_t tid[MAX_THREADS];
	struct tally t = { 0 };
	bool script = false, valid;
	long ok = 0, nacc = 0, nlat = 0;
	double elapsed, dsum = 0, *lat;
	int ch;

	if (argc > 1 && strcmp(argv[1], "--script") == 0) {
		script = true;
		argv[1] = argv[0];
		argv++;
		argc--;
	}
	opt.sa.sin_family = AF_INET;
	opt.sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	while ((ch = getopt(argc, argv, "a:b:B:c:l:M:n:p:Pr:s:t:T:")) != -1) {
		switch (ch) {
		case 'b':
			if (inet_pton(AF_INET, optarg, &opt.from.sin_addr) != 1) {
				fprintf(stderr, "smtpload: %s: not an IPv4 address\n", optarg);
				return 64;
			}
			opt.from.sin_family = AF_INET;
			break;
		case 'a':
			if (inet_pton(AF_INET, optarg, &opt.sa.sin_addr) != 1) {
				fprintf(stderr, "smtpload: %s: not an IPv4 address\n", optarg);
				return 64;
			}
			break;
		case 'B':	opt.base = optarg; break;
		case 'c':	opt.conc = number(optarg, 1, MAX_THREADS); break;
		case 'l':	opt.label = optarg; break;
		case 'M':
			if (opt.nmaildirs < MAX_RCPTS)
				opt.maildirs[opt.nmaildirs++] = optarg;
			break;
		case 'n':	opt.sessions = number(optarg, 1, 10000000); break;
		case 'p':	opt.sa.sin_port = htons((uint16_t)number(optarg, 1, 65535)); break;
		case 'P':	opt.pipelining = true; break;
		case 'r':	opt.rcpts = number(optarg, 1, MAX_RCPTS); break;
		case 's':	opt.size = number(optarg, 512, 4L << 30); break;
		case 't':	opt.timeout = (int)number(optarg, 1, 86400); break;
		case 'T':	opt.limit = (int)number(optarg, 1, 86400); break;
		default:
			fputs(usage, stderr);
			return 64;
		}
	}
	if (optind != argc || (!script && opt.sa.sin_port == 0)) {
		fputs(usage, stderr);
		return 64;
	}
	make_body_chunk();
	snprintf(run_id, sizeof(run_id), "%lx%lx", (long)time(NULL), (long)getpid());
	if (script) {
		printf("EHLO load.bench.example\r\nMAIL FROM:<sender@bench.example> SIZE=%ld\r\n",
		    opt.size);
		for (long i = 0; i < opt.rcpts; i++)
			printf("RCPT TO:<user%ld@bench.example>\r\n", i);
		printf("DATA\r\n");
		message(0, put_stdout, NULL);
		printf("QUIT\r\n");
		return fflush(stdout) == 0 ? 0 : 1;
	}

	signal(SIGPIPE, SIG_IGN);
	latency = calloc((size_t)opt.sessions, sizeof(*latency));
	data_secs = calloc((size_t)opt.sessions, sizeof(*data_secs));
	accepted = calloc((size_t)opt.sessions, 1);
	lat = calloc((size_t)opt.sessions, sizeof(*lat));
	if (latency == NULL || data_secs == NULL || accepted == NULL || lat == NULL) {
		fputs("smtpload: out of memory\n", stderr);
		return 1;
	}
	if (opt.conc > opt.sessions)
		opt.conc = opt.sessions;
	t_start = now();
	t_limit = t_start + opt.limit;
	for (long i = 0; i < opt.conc; i++)
		if (pthread_create(&tid[i], NULL, worker, NULL) != 0) {
			fputs("smtpload: pthread_create failed\n", stderr);
			return 1;
		}
	for (long i = 0; i < opt.conc; i++)
		pthread_join(tid[i], NULL);
	elapsed = now() - t_start;

	for (long n = 0; n < opt.sessions; n++) {
		if (latency[n] >= 0) {
			ok++;
			lat[nlat++] = latency[n];
		}
		if (accepted[n]) {
			nacc++;
			dsum += data_secs[n];
		}
	}
	qsort(lat, (size_t)nlat, sizeof(*lat), cmp_double);

	for (int i = 0; i < opt.nmaildirs; i++)
		count_maildir(opt.maildirs[i], &t);
	if (opt.base != NULL)
		for (long i = 0; i < opt.rcpts; i++) {
			char dir[4096];

			snprintf(dir, sizeof(dir), "%s/user%ld", opt.base, i);
			count_maildir(dir, &t);
		}
	valid = t.lost == 0 && t.dup == 0 && t.stray == 0;

	printf("%s: %ld sessions (%ld ok, %ld failed) x %ld rcpt x %ld octets, "
	    "concurrency %ld, %.3f s\n", opt.label, opt.sessions, ok,
	    opt.sessions - ok, opt.rcpts, opt.size, opt.conc, elapsed);
	printf("%s: %.1f msgs/s, session p50 %.3f ms, p99 %.3f ms, DATA phase %.2f MB/s\n",
	    opt.label, nacc / elapsed, percentile(lat, nlat, 0.50) * 1e3,
	    percentile(lat, nlat, 0.99) * 1e3, dsum > 0 ? nacc * opt.size / dsum / 1e6 : 0.0);
	if (opt.nmaildirs > 0 || opt.base != NULL)
		printf("%s: new/ holds %ld files: %ld lost, %ld duplicated, %ld stray: %s\n",
		    opt.label, t.files, t.lost, t.dup, t.stray,
		    valid ? "valid" : "INVALID RUN");
	printf("RESULT label=%s sessions=%ld ok=%ld failed=%ld accepted=%ld rcpts=%ld "
	    "size=%ld conc=%ld secs=%.6f msgs_per_s=%.3f p50_ms=%.4f p99_ms=%.4f "
	    "data_mb_s=%.3f files=%ld lost=%ld dup=%ld stray=%ld valid=%s\n",
	    opt.label, opt.sessions, ok, opt.sessions - ok, nacc, opt.rcpts, opt.size,
	    opt.conc, elapsed, nacc / elapsed, percentile(lat, nlat, 0.50) * 1e3,
	    percentile(lat, nlat, 0.99) * 1e3,
	    dsum > 0 ? nacc * opt.size / dsum / 1e6 : 0.0,
	    t.files, t.lost, t.dup, t.stray, valid ? "yes" : "no");
	if (!valid)
		return 2;
	return ok == opt.sessions ? 0 : 1;
}
