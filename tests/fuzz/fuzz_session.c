/*
 * fuzz_session: the whole session (smtp_run) over an in-memory transport,
 * delivering into a scratch Maildir: pipelined commands, DATA bodies, BDAT
 * lines of every shape with their chunks, NULs, over-long lines, random
 * splits.  The parser targets cannot reach dispatch(), where the framing
 * of a refused BDAT line is decided; this one does.
 *
 * Input: one octet of options, four of a seed for the read splits, then
 * segments, each starting with "@@" and a letter (what comes before the
 * first "@@" is a C segment):
 *
 *   @@C<bytes>   sent as they are
 *   @@D<body>    "DATA\r\n" alone; then, if the server's new output ends
 *                in a 354 line (the body is data now), the body with every
 *                "." after a LF (or at its start) doubled, a marker line
 *                after it, and "\r\n.\r\n"; else the body alone
 *   @@B<f><p><t><trailer><chunk>
 *                a sync line first ("VRFY <XSYNC-k@sync.example>": when its
 *                echo comes back the server has just read a command line
 *                whole, so the next line is read as a command), then
 *                "BDAT <n>", " LAST" if f&1, p*8 spaces, the t octets of
 *                trailer (LFs dropped), "\r\n" (f&2: "\n"), and the chunk
 *                of exactly n octets, with a marker line at each end when
 *                the sync was seen.  f&4 "bdat", f&8 no sync and no
 *                markers, f&16 a leading "0" on the size.
 *
 * Options: bits 0-1 line_endings (crlf, strict, lf, crlf); 4 a
 * max_message_size of 200; 8 max_errors 1000 (else 10); 16 max_recipients
 * 2; 32 accept_mail=no; bits 6-7 the splits (random, one octet, whole
 * pieces, random).
 *
 * The oracles: no crash, leak or hang (libFuzzer, ASan, UBSan); every
 * output line is a reply line ("ddd" then " " or "-", CRLF, at most 512
 * octets); every "250 2.0.0 queued as NAME" names a file in new/, and
 * new/ holds nothing else; tmp/ and cur/ are empty; no descriptor is left
 * open from one run to the next; and no marker ever runs.  A marker is
 * "HELP XMARK-k", whose 504 would echo "XMARK-k", placed only where the
 * bytes must be data.  Inputs that contain "XMARK" or "XSYNC" themselves
 * are skipped, and where the bytes sent spell either anywhere but in a
 * marker or sync line (segments joined, LFs dropped from a BDAT line) the
 * marker oracle is not applied: a marker's echo can only come from a
 * marker.
 *
 * The log goes nowhere (log_msg is wrapped at link time, the line still
 * formatted; FUZZ_SESSION_LOG=1 prints it, and the replies), and the
 * process title is left alone (setproctitle is wrapped too).  The Maildir,
 * fuzz_session.<pid> under $TMPDIR (else /dev/shm, else /tmp), is made
 * once, emptied after every input, and removed by the next run once this
 * process is gone.
 */
#include <sys/stat.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "conf.h"
#include "io.h"
#include "route.h"
#include "smtp.h"

#define MAX_SESSION_INPUT	(256 * 1024)
#define MAX_SEGMENTS	512
#define MAX_OUTPUT	(64 * 1024 * 1024)

static void
fail(const char *what, const char *out, size_t outlen)
{
	fprintf(stderr, "fuzz_session: %s\n", what);
	if (out != NULL) {
		size_t from = outlen > 4096 ? outlen - 4096 : 0;

		fprintf(stderr, "--- the last replies:\n%.*s--- end\n",
		    (int)(outlen - from), out + from);
	}
	abort();
}

/* ---- What the session writes, and where ------------------------------- */

void __wrap_log_msg(int prio, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

void
__wrap_log_msg(int prio, const char *fmt, ...)
{
	static int show = -1;
	char line[2048];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	if (show == -1)
		show = getenv("FUZZ_SESSION_LOG") != NULL;
	if (show)
		fprintf(stderr, "log %d: %s\n", prio, line);
}

void __wrap_setproctitle(const char *fmt, ...);

void
__wrap_setproctitle(const char *fmt, ...)
{
	(void)fmt;
}

static uint32_t
rnd(uint32_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 17;
	*s ^= *s << 5;
	return *s;
}

/* ---- The client: segments become pieces, pieces go out in splits ----- */

struct segment {
	char		 type;
	const uint8_t	*p;
	size_t		 n;
};

struct client {
	struct segment	 seg[MAX_SEGMENTS];
	size_t		 nseg, cur;
	int		 step;		/* within the current segment */
	size_t		 mark;		/* output length when the last probe went out */
	unsigned	 k;		/* numbers the syncs and markers */
	char		*piece;		/* what is being sent now */
	size_t		 plen, ppos;
	char		*plain;		/* every piece so far, but the markers and syncs */
	size_t		 nplain;
	bool		 at_bol;	/* the last octet sent was a LF */
	int		 splits;
	uint32_t	 seed;
	unsigned	 eof_reads;
	char		*out;		/* everything the server wrote */
	size_t		 olen, ocap;
};

static void
piece_reset(struct client *c)
{
	free(c->piece);
	c->piece = NULL;
	c->plen = c->ppos = 0;
}

static void
append(char **buf, size_t *len, const void *p, size_t n)
{
	char *nb;

	if (n == 0)
		return;
	if ((nb = realloc(*buf, *len + n)) == NULL)
		fail("out of memory", NULL, 0);
	memcpy(nb + *len, p, n);
	*buf = nb;
	*len += n;
}

static void
piece_add(struct client *c, const void *p, size_t n)
{
	append(&c->piece, &c->plen, p, n);
	append(&c->plain, &c->nplain, p, n);
}

static void
piece_str(struct client *c, const char *s)
{
	piece_add(c, s, strlen(s));
}

/* A marker or a sync: sent, but not part of what the input itself says. */
static void
piece_probe(struct client *c, const char *s)
{
	append(&c->piece, &c->plen, s, strlen(s));
}

/* The last line of the output since `from`, or NULL. */
static const char *
last_line(const struct client *c, size_t from, size_t *n)
{
	size_t end = c->olen, start;

	if (end <= from || c->out[end - 1] != '\n')
		return NULL;
	start = end - 1;
	while (start > from && c->out[start - 1] != '\n')
		start--;
	*n = end - start;
	return c->out + start;
}

static bool
output_has(const struct client *c, size_t from, const char *s)
{
	size_t n = strlen(s);

	return c->olen >= from && memmem(c->out + from, c->olen - from, s, n) != NULL;
}

static void
add_marker(struct client *c)
{
	char m[64];

	snprintf(m, sizeof(m), "HELP XMARK-%u\r\n", c->k);
	piece_probe(c, m);
}

/* A DATA body that cannot end early: every "." that starts a line doubled. */
static void
add_stuffed(struct client *c, const uint8_t *p, size_t n)
{
	bool bol = true;

	for (size_t i = 0; i < n; i++) {
		if (bol && p[i] == '.')
			piece_add(c, ".", 1);
		piece_add(c, p + i, 1);
		bol = p[i] == '\n';
	}
}

static void
add_bdat(struct client *c, const struct segment *sg, bool markers)
{
	uint8_t f = sg->n > 0 ? sg->p[0] : 0, pad = sg->n > 1 ? sg->p[1] : 0;
	size_t t = sg->n > 2 ? sg->p[2] : 0, off = 3, size;
	char head[64], m[64];

	if (off > sg->n)
		off = sg->n;
	if (t > sg->n - off)
		t = sg->n - off;
	size = sg->n - off - t;
	if (markers) {
		snprintf(m, sizeof(m), "HELP XMARK-%u\r\n", c->k);
		size += 2 * strlen(m) + 2;
	}
	snprintf(head, sizeof(head), "%s %s%zu%s", f & 4 ? "bdat" : "BDAT",
	    f & 16 ? "0" : "", size, f & 1 ? " LAST" : "");
	piece_str(c, head);
	for (int i = 0; i < pad; i++)
		piece_add(c, "        ", 8);
	for (size_t i = 0; i < t; i++)
		if (sg->p[off + i] != '\n')
			piece_add(c, sg->p + off + i, 1);
	piece_str(c, f & 2 ? "\n" : "\r\n");
	if (markers)
		piece_probe(c, m);
	piece_add(c, sg->p + off + t, sg->n - off - t);
	if (markers) {
		piece_str(c, "\r\n");
		piece_probe(c, m);
	}
}

/* Make the next piece, looking at what the server has answered so far. */
static bool
next_piece(struct client *c)
{
	piece_reset(c);
	while (c->plen == 0) {
		const struct segment *sg;
		char sync[64];
		size_t n;
		const char *l;

		if (c->cur >= c->nseg)
			return false;
		sg = &c->seg[c->cur];
		switch (sg->type) {
		case 'D':
			if (c->step == 0) {
				piece_str(c, "DATA\r\n");
				c->mark = c->olen;
				c->step = 1;
				break;
			}
			l = last_line(c, c->mark, &n);
			if (l != NULL && n >= 4 && memcmp(l, "354 ", 4) == 0) {
				c->k++;
				add_stuffed(c, sg->p, sg->n);
				piece_str(c, "\r\n");
				add_marker(c);
				piece_str(c, "\r\n.\r\n");
			} else
				piece_add(c, sg->p, sg->n);
			c->cur++, c->step = 0;
			break;
		case 'B':
			if (c->step == 0 && !(sg->n > 0 && sg->p[0] & 8)) {
				c->k++;
				if (!c->at_bol)
					piece_str(c, "\r\n");
				snprintf(sync, sizeof(sync), "VRFY <XSYNC-%u@sync.example>\r\n",
				    c->k);
				piece_probe(c, sync);
				c->mark = c->olen;
				c->step = 1;
				break;
			}
			if (c->step == 1) {
				snprintf(sync, sizeof(sync), "XSYNC-%u@", c->k);
				add_bdat(c, sg, output_has(c, c->mark, sync));
			} else
				add_bdat(c, sg, false);
			c->cur++, c->step = 0;
			break;
		default:
			piece_add(c, sg->p, sg->n);
			c->cur++, c->step = 0;
			break;
		}
	}
	return true;
}

static ssize_t
mem_read(void *ctx, int fd, void *buf, size_t n)
{
	struct client *c = ctx;
	size_t k;

	(void)fd;
	if (c->ppos == c->plen && !next_piece(c)) {
		if (++c->eof_reads > 1000)
			fail("the session goes on reading after the end of input",
			    c->out, c->olen);
		return 0;
	}
	k = c->plen - c->ppos;
	switch (c->splits) {
	case 1:
		k = 1;
		break;
	case 2:
		break;
	default:
		if (rnd(&c->seed) % 4 != 0)
			k = 1 + rnd(&c->seed) % k;
		break;
	}
	if (k > n)
		k = n;
	memcpy(buf, c->piece + c->ppos, k);
	c->ppos += k;
	c->at_bol = ((char *)buf)[k - 1] == '\n';
	return (ssize_t)k;
}

static ssize_t
mem_write(void *ctx, int fd, const void *buf, size_t n)
{
	struct client *c = ctx;

	(void)fd;
	if (c->olen + n > c->ocap) {
		size_t cap = c->ocap ? c->ocap : 4096;
		char *p;

		while (cap < c->olen + n)
			cap *= 2;
		if (cap > MAX_OUTPUT)
			fail("the replies grow without bound", c->out, c->olen);
		if ((p = realloc(c->out, cap)) == NULL)
			fail("out of memory", NULL, 0);
		c->out = p;
		c->ocap = cap;
	}
	memcpy(c->out + c->olen, buf, n);
	c->olen += n;
	return (ssize_t)n;
}

static const struct transport mem_transport = { "memory", mem_read, mem_write };

/* ---- The Maildir -------------------------------------------------------- */

static char maildir[256];

static void
remove_dir(const char *dir)
{
	static const char *const sub[] = { "new", "cur", "tmp" };
	char path[300];

	for (size_t i = 0; i < 3; i++) {
		DIR *d;
		struct dirent *e;

		snprintf(path, sizeof(path), "%s/%s", dir, sub[i]);
		if ((d = opendir(path)) != NULL) {
			while ((e = readdir(d)) != NULL)
				if (e->d_name[0] != '.')
					unlinkat(dirfd(d), e->d_name, 0);
			closedir(d);
		}
		rmdir(path);
	}
	rmdir(dir);
}

static void
remove_maildir(void)
{
	remove_dir(maildir);
}

/*
 * libFuzzer ends without running atexit() handlers when it stops or finds
 * something, so the Maildirs of processes that are gone are removed here.
 */
static void
remove_stale(const char *base)
{
	DIR *d = opendir(base);
	struct dirent *e;
	char path[300];

	if (d == NULL)
		return;
	while ((e = readdir(d)) != NULL) {
		const char *pid = e->d_name + strlen("fuzz_session.");
		char *end;
		long n;

		if (strncmp(e->d_name, "fuzz_session.", strlen("fuzz_session.")) != 0)
			continue;
		n = strtol(pid, &end, 10);
		/* Only where no such process is left: another fuzzer's stays. */
		if (*end != '\0' || n <= 0 || kill((pid_t)n, 0) == 0 || errno != ESRCH)
			continue;
		snprintf(path, sizeof(path), "%s/%s", base, e->d_name);
		remove_dir(path);
	}
	closedir(d);
}

static void
setup(struct config *conf, struct router **router)
{
	const char *base = getenv("TMPDIR");
	char kv[300];
	int problems = 0;

	if (base == NULL || access(base, W_OK) != 0)
		base = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
	remove_stale(base);
	snprintf(maildir, sizeof(maildir), "%s/fuzz_session.%ld", base, (long)getpid());
	if (mkdir(maildir, 0700) == -1)
		fail("mkdir", NULL, 0);
	atexit(remove_maildir);
	conf_defaults(conf);
	snprintf(kv, sizeof(kv), "maildir=%s", maildir);
	problems += conf_override(conf, kv, stderr);
	problems += conf_override(conf, "hostname=mx.fuzz.example", stderr);
	problems += conf_override(conf, "min_free_space=0", stderr);
	problems += conf_finish(conf, stderr);
	*router = router_new(conf, stderr, &problems);
	if (problems > 0 || *router == NULL)
		fail("the configuration", NULL, 0);
}

/* Check the Maildir against the replies, then empty it. */
static void
check_maildir(const struct client *c)
{
	static const char *const sub[] = { "new", "cur", "tmp" };
	static const char q[] = "250 2.0.0 queued as ";
	size_t found = 0;

	/* Every queued name is in new/, once. */
	for (size_t at = 0; at < c->olen;) {
		const char *nl = memchr(c->out + at, '\n', c->olen - at);
		size_t n = (size_t)(nl - (c->out + at)) + 1;

		if (n > sizeof(q) - 1 && memcmp(c->out + at, q, sizeof(q) - 1) == 0) {
			const char *name = c->out + at + sizeof(q) - 1;
			const char *end = memmem(name, n - (sizeof(q) - 1), ": ", 2);
			char path[600];
			struct stat st;

			if (end == NULL || (size_t)(end - name) > 255)
				fail("a queued reply without a name", c->out, c->olen);
			snprintf(path, sizeof(path), "%s/new/%.*s", maildir,
			    (int)(end - name), name);
			if (lstat(path, &st) == -1 || !S_ISREG(st.st_mode))
				fail("a queued message is not in new/", c->out, c->olen);
			/* Seen once: move it aside so a second reply for it fails. */
			if (unlink(path) == -1)
				fail("unlink", NULL, 0);
		}
		at += n;
	}
	for (size_t i = 0; i < 3; i++) {
		char path[300];
		DIR *d;
		struct dirent *e;

		snprintf(path, sizeof(path), "%s/%s", maildir, sub[i]);
		if ((d = opendir(path)) == NULL)
			continue;	/* not made yet: no delivery was tried */
		while ((e = readdir(d)) != NULL) {
			if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
				continue;
			found++;
			fprintf(stderr, "fuzz_session: left in %s/: %s\n", sub[i], e->d_name);
			unlinkat(dirfd(d), e->d_name, 0);
		}
		closedir(d);
	}
	if (found > 0)
		fail("the Maildir holds files that no 250 named", c->out, c->olen);
}

/* Every line a reply line: "ddd" then " " or "-", CRLF-ended, at most 512. */
static void
check_replies(const struct client *c)
{
	for (size_t at = 0; at < c->olen;) {
		const char *p = c->out + at;
		const char *nl = memchr(p, '\n', c->olen - at);
		size_t n;

		if (nl == NULL)
			fail("the output ends inside a line", c->out, c->olen);
		n = (size_t)(nl - p) + 1;
		if (n < 6 || n > 512 || p[n - 2] != '\r' || memchr(p, '\r', n - 2) != NULL ||
		    p[0] < '2' || p[0] > '5' || p[1] < '0' || p[1] > '9' ||
		    p[2] < '0' || p[2] > '9' || (p[3] != ' ' && p[3] != '-'))
			fail("a malformed reply line", c->out, c->olen);
		for (size_t i = 0; i < n - 2; i++)
			if ((unsigned char)p[i] < 0x20 || (unsigned char)p[i] > 0x7e)
				fail("a control or 8-bit octet in a reply", c->out, c->olen);
		at += n;
	}
}

/* Open descriptors: a session that leaks one leaks it every run, and runs are many. */
static size_t
open_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	size_t n = 0;

	if (d == NULL)
		return 0;
	while (readdir(d) != NULL)
		n++;
	closedir(d);
	return n;
}

static bool
has_token(const uint8_t *p, size_t n, const char *tok)
{
	size_t k = strlen(tok);

	for (size_t i = 0; i + k <= n; i++)
		if (strncasecmp((const char *)p + i, tok, k) == 0)
			return true;
	return false;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct config conf;
	static struct router *router;
	static struct client c;
	static struct io io;
	static const struct peer peer = { .ip = "192.0.2.1", .host = "" };
	static const enum line_endings les[] = { LE_CRLF, LE_STRICT, LE_LF, LE_CRLF };
	enum line_endings le;
	uint8_t opt;
	size_t at;

	if (size < 5 || size > MAX_SESSION_INPUT)
		return 0;
	if (has_token(data, size, "XMARK") || has_token(data, size, "XSYNC"))
		return 0;
	if (router == NULL)
		setup(&conf, &router);

	opt = data[0];
	le = les[opt & 3];
	conf.line_endings = (int)le;
	conf.max_message_size = opt & 4 ? 200 : 33554432;
	conf.max_errors = opt & 8 ? 1000 : 10;
	conf.max_recipients = opt & 16 ? 2 : 100;
	conf.accept_mail = !(opt & 32);

	memset(&c, 0, sizeof(c));
	c.splits = opt >> 6;
	memcpy(&c.seed, data + 1, 4);
	c.seed |= 1;
	c.at_bol = true;
	data += 5, size -= 5;

	/* The segments. */
	at = 0;
	if (size < 3 || memcmp(data, "@@", 2) != 0) {
		const uint8_t *e = memmem(data, size, "@@", 2);
		size_t n = e ? (size_t)(e - data) : size;

		c.seg[c.nseg++] = (struct segment){ 'C', data, n };
		at = n;
	}
	while (at + 3 <= size && c.nseg < MAX_SEGMENTS) {
		const uint8_t *p = data + at + 3;
		const uint8_t *e = memmem(p, size - at - 3, "@@", 2);
		size_t n = e ? (size_t)(e - p) : size - at - 3;

		c.seg[c.nseg++] = (struct segment){ (char)data[at + 2], p, n };
		at += 3 + n;
	}

	io_init(&io, -1, -1, 5);
	io.t = &mem_transport;
	io.tctx = &c;
	if (smtp_run(&conf, router, &io, &peer, le) != 0)
		fail("smtp_run did not return 0", c.out, c.olen);

	if (getenv("FUZZ_SESSION_LOG") != NULL)
		fprintf(stderr, "--- the replies:\n%.*s--- end\n", (int)c.olen, c.out);
	check_replies(&c);
	/*
	 * The input may still spell a token across the seams (segments
	 * joined, LFs dropped from a BDAT line): then an echo proves nothing.
	 */
	if (has_token((const uint8_t *)c.out, c.olen, "XMARK") &&
	    !has_token((const uint8_t *)c.plain, c.nplain, "XMARK") &&
	    !has_token((const uint8_t *)c.plain, c.nplain, "XSYNC"))
		fail("a marker placed in data ran as a command", c.out, c.olen);
	check_maildir(&c);
	if (open_fds() > 64)
		fail("descriptors are left open", NULL, 0);

	piece_reset(&c);
	free(c.plain);
	free(c.out);
	return 0;
}
