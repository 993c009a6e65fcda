/*
 * deliver.c: copies, forwards, terminals; see deliver.h for the order.
 */
#include <sys/sendfile.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <vis.h>

#include "deliver.h"
#include "edit.h"
#include "fsync.h"
#include "header.h"
#include "log.h"

#define TERMINAL_MAX	(64 * 1024)	/* a terminal is not a mailbox */
#define TERMINAL_WAIT_MS 5000		/* nor worth holding the client for */

/*
 * One envelope recipient: where its message went, for its log line, and
 * its terminal.  SOML's mailbox targets are fallbacks: used only when no
 * terminal of the recipient took the whole message.
 */
struct who {
	const char	*rcpt;
	const char	*login;		/* its terminal's login, or NULL */
	enum rmode	 mode;
	bool		 mailbox, forward;	/* targets used in any case */
	bool		 fb_mailbox, fb_forward; /* SOML's, used when it fell back */
	bool		 whole;		/* a terminal of it took the whole message */
	bool		 fell_back;	/* SOML, and none did */
	bool		 failed;	/* delivery_commit_each: not delivered */
};

struct copy {
	const char	 *path, *root;	/* point into the recipients' routes */
	const char	**rcpts;	/* the recipients this copy is for */
	size_t		  nrcpts;
	bool		  definite;	/* a recipient needs it whatever the terminals do */
	size_t		 *fb;		/* else: the SOML recipients (who[]) it is a fallback for */
	size_t		  nfb;
	struct maildir	  md;		/* opened (root != -1) once needed */
	uint64_t	  mnt_tmp, mnt_new; /* the mounts of its tmp/ and new/ */
	struct copy	 *file;		/* the copy whose file it is linked to: itself, or
					   another on the same mount; NULL: not given one */
	struct msg	  m;		/* the file, when it is its own */
	bool		  open, published;
	char		  name[MSG_NAMESIZE];
};

/* One forward_command run: one envelope recipient, its remote addresses. */
struct fwd {
	size_t		  who;		/* the recipient, in who[] */
	bool		  fallback;
	const char	**to;
	size_t		  nto;
};

struct delivery {
	const struct config	 *conf;
	struct trace		  tr;
	struct copy		 *copies;
	size_t			  ncopies;
	struct who		 *who;
	size_t			  nwho;
	struct fwd		 *fwds;
	size_t			  nfwds;
	dev_t			  ttys[16];	/* terminals written, at most so many */
	bool			  tty_whole[16];
	size_t			  nttys;
	struct msg		  spool;
	bool			  spooled;
	struct msg		 *primary;
	struct copy		 *first;	/* the copy that is the primary, or NULL */
	char			  id[64];
	char			  date[64];	/* RFC 5322, the same in every copy */
	char			  msgid[256];	/* the message's Message-ID, raw */
	/*
	 * With filters (conf_filtered): the spool holds the message as
	 * received, without trace, and every copy is made from *primary at
	 * the commit; the plan is remade from `rs` when a filter changes it.
	 */
	bool			  filtered, quarantine, has_edited;
	struct maildir		  spool_md;	/* where the spool is; root -1: $TMPDIR */
	struct msg		  edited;	/* the message after the edits: primary */
	struct rcvd_at		  at;		/* where each copy's Received goes */
	struct rcpt		 *rs;		/* the recipients now (shallow copies) */
	size_t			  nrs;
	struct route		 *own_rt;	/* the routes of recipients filters added */
	size_t			  nown_rt;
	char			**owned;	/* strings the plan points into */
	size_t			  nowned;
	char			 *fc;		/* the first copy's trace (delivery_first_copy) */
};

static int plan(struct delivery *, const struct rcpt *, size_t);
static int filter_begin(struct delivery *, const struct rcpt *, size_t);
static void filter_free(struct delivery *);
static const char *junk_path(struct delivery *, const char *root);
static int filtered_copy(struct delivery *, struct copy *, const char *const *, size_t);
static bool needed(const struct delivery *, const struct copy *);

/* The data streams through this; copies and spools share the small one. */
static char bigbuf[MSG_BUFSIZE];
static char smallbuf[4096];

static int
add_unique(const char ***v, size_t *n, const char *s)
{
	const char **nv;

	for (size_t i = 0; i < *n; i++)
		if (strcmp((*v)[i], s) == 0)
			return 0;
	if ((nv = reallocarray(*v, *n + 1, sizeof(*nv))) == NULL)
		return -1;
	nv[(*n)++] = s;
	*v = nv;
	return 0;
}

static struct copy *
copy_for(struct delivery *d, const char *path, const char *root)
{
	struct copy *nc;

	for (size_t i = 0; i < d->ncopies; i++)
		if (strcmp(d->copies[i].path, path) == 0)
			return &d->copies[i];
	if ((nc = reallocarray(d->copies, d->ncopies + 1, sizeof(*nc))) == NULL)
		return NULL;
	d->copies = nc;
	nc = &d->copies[d->ncopies++];
	memset(nc, 0, sizeof(*nc));
	nc->path = path;
	nc->root = root;
	nc->md.root = -1;
	nc->m.fd = -1;
	return nc;
}

/*
 * "Tue, 01 Dec 2026 08:00:00 +0000": RFC 5322 3.3, in UTC.  By hand, from
 * the days since the epoch (the civil calendar from days, as Howard
 * Hinnant gives it): gmtime_r() and strftime() would first read
 * /etc/localtime (tzset), for a time zone that is not used.
 */
static void
rfc5322_date(char *buf, size_t size, time_t t)
{
	static const char wday[7][4] = { "Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed" };
	static const char mon[12][4] = { "Jan", "Feb", "Mar", "Apr", "May", "Jun",
	    "Jul", "Aug", "Sep", "Oct", "Nov", "Dec" };
	long long days = t / 86400, secs = t % 86400, era, z, doe, yoe, doy, mp, y;
	unsigned day, month;

	if (secs < 0) {
		secs += 86400;
		days--;
	}
	z = days + 719468;			/* days since 0000-03-01 */
	era = (z >= 0 ? z : z - 146096) / 146097;
	doe = z - era * 146097;			/* [0, 146096] */
	yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
	doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
	mp = (5 * doy + 2) / 153;		/* March is 0 */
	day = (unsigned)(doy - (153 * mp + 2) / 5 + 1);
	month = (unsigned)(mp < 10 ? mp + 2 : mp - 10);	/* January is 0 */
	y = yoe + era * 400 + (month < 2);
	snprintf(buf, size, "%s, %02u %s %04lld %02lld:%02lld:%02lld +0000",
	    wday[((days % 7) + 7) % 7], day, mon[month], y, secs / 3600,
	    secs / 60 % 60, secs % 60);
}

/* Append s at *at in buf, or only count it when buf is NULL. */
static void
cat(char *buf, size_t *at, const char *s)
{
	size_t n = strlen(s);

	if (buf != NULL)
		memcpy(buf + *at, s, n);
	*at += n;
}

/*
 * Return-Path, Delivered-To, Received: in that order (RFC 5321 4.4, as
 * qmail and Postfix write them).  Delivered-To and Received's "for"
 * clause only when the file is for exactly one envelope recipient, as
 * Dovecot writes them (lmtp_hdr_delivery_address): a file that several
 * Maildirs share through hard links, or a catch-all's copy for several
 * recipients, names none of them, so no Bcc recipient is shown to another.
 * Loops are caught by counting Received fields (data.c), not by
 * Delivered-To.  Every piece was checked on its way in, so none can hold
 * a line break.  A forwarded copy gets no Return-Path: its final delivery
 * writes that.
 */
static char *
headers(const struct delivery *d, bool return_path, const char *const *rcpts,
    size_t n, size_t *len)
{
	char *h = NULL;

	/* Two passes: the first counts, the second copies into h. */
	for (int pass = 0; pass < 2; pass++) {
		size_t at = 0;

		if (return_path) {
			cat(h, &at, "Return-Path: <");
			cat(h, &at, d->tr.sender);
			cat(h, &at, ">\n");
		}
		if (n == 1) {
			cat(h, &at, "Delivered-To: ");
			cat(h, &at, rcpts[0]);
			cat(h, &at, "\n");
		}
		cat(h, &at, "Received: from ");
		cat(h, &at, d->tr.helo);
		cat(h, &at, " (");
		cat(h, &at, d->tr.peer);
		cat(h, &at, ")\n\tby ");
		cat(h, &at, d->conf->hostname);
		cat(h, &at, " (mailslot) with ");
		cat(h, &at, d->tr.protocol);
		cat(h, &at, " id ");
		cat(h, &at, d->id);
		if (d->tr.tls != NULL) {
			cat(h, &at, "\n\t(using ");
			cat(h, &at, d->tr.tls);
			cat(h, &at, ")");
		}
		if (n == 1) {
			cat(h, &at, "\n\tfor <");
			cat(h, &at, rcpts[0]);
			cat(h, &at, ">");
		}
		cat(h, &at, "; ");
		cat(h, &at, d->date);
		cat(h, &at, "\n");
		if (pass == 0 && (h = malloc(at + 1)) == NULL)
			return NULL;
		if (pass == 1) {
			h[at] = '\0';
			*len = at;
		}
	}
	return h;
}

static void
trace(const struct delivery *d, struct msg *m, const char *const *rcpts, size_t n)
{
	size_t len;
	char *h = headers(d, true, rcpts, n, &len);

	if (h == NULL) {
		m->err = ENOMEM;
		return;
	}
	msg_put(m, h, len);
	m->mark = m->octets;
	m->mark_lines = m->lines;
	free(h);
}

/* Forget the plan (the copies, forwards and recipients), not the message. */
static void
plan_free(struct delivery *d)
{
	for (size_t i = 0; i < d->ncopies; i++) {
		free(d->copies[i].rcpts);
		free(d->copies[i].fb);
		if (d->copies[i].md.root != -1) {
			close(d->copies[i].md.root);
			close(d->copies[i].md.tmp);
			close(d->copies[i].md.new);
		}
	}
	free(d->copies);
	for (size_t i = 0; i < d->nfwds; i++)
		free(d->fwds[i].to);
	free(d->fwds);
	free(d->who);
	d->copies = NULL;
	d->fwds = NULL;
	d->who = NULL;
	d->ncopies = d->nfwds = d->nwho = 0;
}

static void
delivery_free(struct delivery *d)
{
	plan_free(d);
	if (d->filtered)
		filter_free(d);
	free(d);
}

/* The copies, forwards and terminals for `n` recipients. */
static int
plan(struct delivery *d, const struct rcpt *r, size_t n)
{
	if (n > 0 && (d->who = calloc(n, sizeof(*d->who))) == NULL)
		return -1;
	d->nwho = n;
	for (size_t i = 0; i < n; i++) {
		struct who *w = &d->who[i];
		struct fwd *f = NULL;

		w->rcpt = r[i].mb.text;
		w->mode = r[i].rt.mode;
		for (size_t j = 0; j < r[i].rt.n; j++) {
			const struct target *t = &r[i].rt.t[j];
			const char *path = t->path;
			struct copy *cp;
			size_t *nfb;

			/* Quarantined: only the Maildirs, each in its mailbox's .Junk. */
			if (d->quarantine && t->kind != TK_MAILDIR)
				continue;
			switch (t->kind) {
			case TK_MAILDIR:
				if ((d->quarantine && (path = junk_path(d, t->root)) == NULL) ||
				    (cp = copy_for(d, path, t->root)) == NULL ||
				    add_unique(&cp->rcpts, &cp->nrcpts, r[i].mb.text) == -1)
					return -1;
				cp->md.root = -1;
				if (!t->fallback || d->quarantine) {
					cp->definite = true;
					w->mailbox = true;
					break;
				}
				w->fb_mailbox = true;
				if ((nfb = reallocarray(cp->fb, cp->nfb + 1, sizeof(*nfb))) == NULL)
					return -1;
				cp->fb = nfb;
				cp->fb[cp->nfb++] = i;
				break;
			case TK_FORWARD:
				/* One run, and one copy, per envelope recipient: no Bcc leaks. */
				if (f == NULL) {
					if ((f = reallocarray(d->fwds, d->nfwds + 1, sizeof(*f))) == NULL)
						return -1;
					d->fwds = f;
					f = &d->fwds[d->nfwds++];
					memset(f, 0, sizeof(*f));
					f->who = i;
					f->fallback = t->fallback;
				}
				if (add_unique(&f->to, &f->nto, t->addr) == -1)
					return -1;
				if (t->fallback)
					w->fb_forward = true;
				else
					w->forward = true;
				break;
			case TK_TERMINAL:
				w->login = t->addr;
				break;
			}
		}
	}
	return 0;
}

/* Open a copy's Maildir, once, and learn where its tmp/ and new/ are mounted. */
static int
copy_dir(struct delivery *d, struct copy *cp)
{
	if (cp->md.root != -1)
		return 0;
	if (maildir_open(&cp->md, cp->path, d->conf->hostname) == -1) {
		cp->md.root = -1;
		return -1;
	}
	cp->mnt_tmp = maildir_mount(cp->md.tmp);
	cp->mnt_new = maildir_mount(cp->md.new);
	return 0;
}

/*
 * One file for many Maildirs: `owner` (its Maildir open) gets a file, and
 * so does every other copy not yet given one (every one with `all`, else
 * only those needed) whose new/ is on the mount of the owner's tmp/, as a
 * hard link to it.  A copy elsewhere (link() would give EXDEV), or whose
 * Maildir does not open now, is left for a file of its own, where the
 * error shows.  *rcpts gets the recipients of them all, once each: the
 * file's trace names one only when there is one.  0, or -1 (ENOMEM).
 */
static int
share(struct delivery *d, struct copy *owner, bool all, const char ***rcpts, size_t *n)
{
	*rcpts = NULL;
	*n = 0;
	for (size_t i = 0; i < d->ncopies; i++) {
		struct copy *cp = &d->copies[i];

		if (cp->file != NULL || (cp != owner && !all && !needed(d, cp)))
			continue;
		if (cp != owner && (copy_dir(d, cp) == -1 || owner->mnt_tmp == 0 ||
		    cp->mnt_new != owner->mnt_tmp))
			continue;
		cp->file = owner;
		for (size_t j = 0; j < cp->nrcpts; j++)
			if (add_unique(rcpts, n, cp->rcpts[j]) == -1) {
				free(*rcpts);
				*rcpts = NULL;
				return -1;
			}
	}
	return 0;
}

struct delivery *
delivery_begin(const struct config *c, const struct trace *tr,
    const struct rcpt *r, size_t n, struct msg **primary)
{
	struct delivery *d = calloc(1, sizeof(*d));
	struct copy *first;
	int e;

	if (d == NULL)
		return NULL;
	d->conf = c;
	d->tr = *tr;
	rfc5322_date(d->date, sizeof(d->date), time(NULL));
	d->spool_md.root = -1;
	if (conf_filtered(c) && filter_begin(d, r, n) == -1)
		goto fail;
	if (plan(d, r, n) == -1)
		goto fail;

	/* The data streams into a copy that is needed whatever happens, else a spool. */
	for (size_t i = 0; i < d->ncopies && d->first == NULL; i++)
		if (d->copies[i].definite)
			d->first = &d->copies[i];
	if (d->filtered && d->first != NULL) {
		/* The message as received, in that Maildir's tmp/, for the filters. */
		if (maildir_open(&d->spool_md, d->first->path, c->hostname) == -1 ||
		    msg_open(&d->spool, &d->spool_md, bigbuf, sizeof(bigbuf)) == -1)
			goto fail;
		d->first = NULL;	/* every copy is made at the commit */
		d->spooled = true;
		d->primary = &d->spool;
		strlcpy(d->id, d->spool.base, sizeof(d->id));
	} else if (d->first == NULL) {
		if (msg_open_spool(&d->spool, bigbuf, sizeof(bigbuf)) == -1)
			goto fail;
		d->spooled = true;
		d->primary = &d->spool;
		snprintf(d->id, sizeof(d->id), "%lld.P%ld", (long long)time(NULL), (long)getpid());
		if (!d->filtered)
			trace(d, d->primary, NULL, 0);	/* never seen: it only sets the mark */
	} else {
		const char **rcpts;
		size_t nrcpts;

		first = d->first;
		if (copy_dir(d, first) == -1 ||
		    msg_open(&first->m, &first->md, bigbuf, sizeof(bigbuf)) == -1)
			goto fail;
		first->open = true;
		d->primary = &first->m;
		strlcpy(d->id, first->m.base, sizeof(d->id));
		/*
		 * Its file is every copy's on its mount, SOML's fallbacks too
		 * (one that is not needed in the end is not linked): the
		 * trace is written now, before the data.
		 */
		if (share(d, first, true, &rcpts, &nrcpts) == -1)
			goto fail;
		trace(d, d->primary, rcpts, nrcpts);
		free(rcpts);
	}
	*primary = d->primary;
	return d;
fail:
	e = errno;
	delivery_abort(d);
	errno = e;
	return NULL;
}

const char *
delivery_id(const struct delivery *d)
{
	return d->id;
}

void
delivery_abort(struct delivery *d)
{
	for (size_t i = 0; i < d->ncopies; i++) {
		struct copy *cp = &d->copies[i];

		if (cp->published)
			maildir_unpublish(&cp->md, cp->name);
		if (cp->open || cp->published)
			msg_abort(&cp->m);	/* the tmp/ name, if still there */
	}
	if (d->spooled)
		msg_abort(&d->spool);
	if (d->has_edited)
		msg_abort(&d->edited);
	delivery_free(d);
}

/* ---- forwards ------------------------------------------------------------ */

static size_t received_at(const char *, size_t);

/* Write all of `buf`, then `len` octets of `fd` from `off`, into a non-blocking pipe. */
static int
feed(int out, const char *buf, size_t blen, int fd, off_t off, uint64_t len, int timeout)
{
	struct pollfd pfd = { .fd = out, .events = POLLOUT };

	while (blen > 0 || len > 0) {
		ssize_t n;

		if (poll(&pfd, 1, timeout * 1000) <= 0)
			return -1;
		if (blen > 0)
			n = write(out, buf, blen);
		else
			n = sendfile(out, fd, &off, len > (1 << 30) ? (1 << 30) : (size_t)len);
		if (n == -1 && (errno == EAGAIN || errno == EINTR))
			continue;
		if (n <= 0)
			return -1;
		if (blen > 0) {
			buf += n;
			blen -= (size_t)n;
		} else
			len -= (uint64_t)n;
	}
	return 0;
}

/*
 * forward_command, without a shell: its words, then "-f SENDER -- ADDR...",
 * the message on stdin.  It must exit 0 before the client hears 250.  One
 * run per envelope recipient, its copy naming that recipient only (a Bcc
 * stays blind): the addresses are that recipient's remote alias targets.
 */
static int
forward(struct delivery *d, const struct fwd *f)
{
	const struct config *c = d->conf;
	struct msg *p = d->primary;
	const char *rcpt = d->who[f->who].rcpt;
	char *words = strdup(c->forward_command), *save = NULL, **argv;
	char *head, e[LOG_QUOTED(ADDR_MAX_PATH + 2)];
	size_t argc = 0, max = f->nto + 8, hn, split;
	int fds[2], status = 0;
	bool fed;
	pid_t pid;
	struct timespec pause = { 0, 10 * 1000 * 1000 };
	long waited = 0;

	if (words == NULL || (argv = calloc(max + 64, sizeof(*argv))) == NULL) {
		free(words);
		return -1;
	}
	for (char *w = strtok_r(words, " \t", &save); w != NULL && argc < 64;
	    w = strtok_r(NULL, " \t", &save))
		argv[argc++] = w;
	argv[argc++] = "-f";
	argv[argc++] = (char *)(d->tr.sender[0] ? d->tr.sender : "<>");
	argv[argc++] = "--";
	for (size_t i = 0; i < f->nto; i++)
		argv[argc++] = (char *)f->to[i];
	argv[argc] = NULL;

	if (pipe2(fds, O_CLOEXEC) == -1) {
		free(argv);
		free(words);
		return -1;
	}
	if ((pid = fork()) == 0) {
		int null = open("/dev/null", O_RDWR);

		/* stdout and stderr may be the client's socket: never let it write there. */
		dup2(fds[0], 0);
		if (null != -1) {
			dup2(null, 1);
			dup2(null, 2);
		}
		execv(argv[0], argv);
		_exit(111);
	}
	close(fds[0]);
	free(argv);
	if (pid == -1) {
		close(fds[1]);
		free(words);
		return -1;
	}
	fcntl(fds[1], F_SETFL, O_NONBLOCK);
	head = headers(d, false, &rcpt, 1, &hn);
	/*
	 * A program that did not take the whole message did not take it.
	 * The fields a filter put above the Received field (d->at, zero
	 * without filters) go just above it here too, as in a stored copy.
	 */
	split = head != NULL ? received_at(head, hn) : 0;
	fed = head != NULL && feed(fds[1], head, split, p->fd, (off_t)p->mark,
	    d->at.octets, (int)c->data_timeout) == 0 &&
	    feed(fds[1], head + split, hn - split, p->fd, (off_t)(p->mark + d->at.octets),
	    p->octets - p->mark - d->at.octets, (int)c->data_timeout) == 0;
	if (!fed)
		log_msg(LOG_ERR, "event=error op=forward error=\"cannot feed forward_command\"");
	free(head);
	close(fds[1]);
	free(words);
	for (;;) {
		pid_t w = waitpid(pid, &status, WNOHANG);

		if (w == pid)
			break;
		if (w == -1 && errno != EINTR)
			return -1;
		if (waited++ > c->data_timeout * 100) {
			kill(pid, SIGKILL);
			waitpid(pid, &status, 0);
			log_msg(LOG_ERR, "event=error op=forward error=\"timeout\"");
			return -1;
		}
		nanosleep(&pause, NULL);
	}
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
		log_msg(LOG_ERR, "event=error op=forward status=%d", status);
		return -1;
	}
	if (!fed)
		return -1;
	log_msg(LOG_INFO, "event=forward id=%s rcpt=%s to=%zu", d->id,
	    log_quote_path(e, sizeof(e), rcpt), f->nto);
	return 0;
}

/* ---- terminals ----------------------------------------------------------- */

/*
 * Write to a terminal that may be slow: wait for it, a few seconds at the
 * most in all (a terminal is not worth holding the client for).
 */
static bool
tty_write(int tty, const char *p, size_t n, long long *budget_ms)
{
	struct pollfd pfd = { .fd = tty, .events = POLLOUT };

	while (n > 0) {
		struct timespec t0, t1;
		ssize_t w;
		int r;

		clock_gettime(CLOCK_MONOTONIC, &t0);
		r = poll(&pfd, 1, *budget_ms > 0 ? (int)*budget_ms : 0);
		clock_gettime(CLOCK_MONOTONIC, &t1);
		*budget_ms -= (t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000;
		if (r <= 0)
			return false;
		w = write(tty, p, n);
		if (w == -1 && (errno == EAGAIN || errno == EINTR))
			continue;
		if (w <= 0)
			return false;
		p += w;
		n -= (size_t)w;
	}
	return true;
}

/*
 * Control octets and escape sequences never reach the terminal raw.  True
 * when the terminal took the whole message: the banner and every octet of
 * the body (never so when the body is over TERMINAL_MAX and was cut).
 */
static bool
to_terminal(int tty, const struct delivery *d, int fd)
{
	const struct msg *p = d->primary;
	char in[1024], out[4 * sizeof(in) + 64], from[4 * ADDR_MAX_PATH + 1];
	off_t off = (off_t)p->mark;
	uint64_t left = p->octets - p->mark;
	long long budget = TERMINAL_WAIT_MS;
	int n;

	strnvis(from, d->tr.sender, sizeof(from), VIS_CSTYLE | VIS_OCTAL | VIS_TAB);
	n = snprintf(out, sizeof(out), "\r\nMessage from <%s> via mailslot:\r\n", from);
	if (n < 0 || (size_t)n >= sizeof(out) || !tty_write(tty, out, (size_t)n, &budget))
		return false;
	if (left > TERMINAL_MAX)
		left = TERMINAL_MAX;
	while (left > 0) {
		ssize_t got = pread(fd, in, left < sizeof(in) ? (size_t)left : sizeof(in), off);
		size_t o = 0;

		if (got <= 0)
			return false;
		for (ssize_t i = 0; i < got; i++) {
			if (in[i] == '\n') {
				memcpy(out + o, "\r\n", 2);
				o += 2;
			} else
				o += (size_t)(vis(out + o, (unsigned char)in[i],
				    VIS_CSTYLE | VIS_OCTAL | VIS_TAB, 0) - (out + o));
		}
		if (!tty_write(tty, out, o, &budget))
			return false;
		off += got;
		left -= (uint64_t)got;
	}
	if (p->octets - p->mark > TERMINAL_MAX) {
		(void)tty_write(tty, "\r\n[message cut]\r\n", 17, &budget);
		return false;
	}
	return true;
}

struct tty_job {
	struct delivery		*d;
	const char		*login;
	int			 fd;		/* the message */
	bool			 whole;		/* a terminal of the login took it whole */
};

static int
to_tty(const char *line, void *arg)
{
	struct tty_job *j = arg;
	struct delivery *d = j->d;
	struct stat st;
	size_t k;
	int tty;
	bool whole;

	if ((tty = open(line, O_WRONLY | O_NOCTTY | O_NONBLOCK | O_CLOEXEC)) == -1)
		return 0;
	if (fstat(tty, &st) != 0 || !S_ISCHR(st.st_mode) || !(st.st_mode & S_IWGRP)) {
		close(tty);
		return 0;
	}
	/* A tty listed twice in utmp (or for two recipients) gets one copy. */
	for (k = 0; k < d->nttys && d->ttys[k] != st.st_rdev; k++)
		;
	if (k < d->nttys) {
		j->whole |= d->tty_whole[k];
		close(tty);
		return 0;
	}
	if (k == sizeof(d->ttys) / sizeof(d->ttys[0])) {
		close(tty);
		return 0;	/* enough terminals for one message */
	}
	whole = to_terminal(tty, d, j->fd);
	d->ttys[d->nttys] = st.st_rdev;
	d->tty_whole[d->nttys++] = whole;
	j->whole |= whole;
	char q[LOG_QUOTED(64)];

	log_msg(LOG_INFO, "event=terminal id=%s user=%s tty=%s whole=%s", d->id,
	    log_quote(q, sizeof(q), j->login, strlen(j->login)), line, whole ? "yes" : "no");
	close(tty);
	return 0;
}

/*
 * Write the message to the terminals of the recipients asked for with SEND
 * and SOML (before anything is stored: they decide what is), or with SAML
 * (`late`: after, as the mailbox has it already).  A SOML recipient none of
 * whose terminals took the whole message falls back to its mailbox; a SEND
 * recipient's failure makes the whole delivery fail.
 */
static bool
terminals(struct delivery *d, int fd, bool late)
{
	const struct msg *p = d->primary;
	bool too_big = p->octets - p->mark > TERMINAL_MAX;

	for (size_t i = 0; i < d->nwho; i++) {
		struct who *w = &d->who[i];
		struct tty_job j = { .d = d, .login = w->login, .fd = fd };

		if (w->login == NULL || (w->mode == RM_BOTH) != late)
			continue;
		/* SOML: a message that a terminal cannot take whole goes to the mailbox. */
		if (!(too_big && w->mode == RM_EITHER))
			login_ttys(w->login, to_tty, &j);
		w->whole = j.whole;
		if (w->whole)
			continue;
		if (w->mode == RM_TERMINAL)
			return false;
		if (w->mode == RM_EITHER)
			w->fell_back = true;
	}
	return true;
}

/* ---- commit --------------------------------------------------------------- */

static enum dresult
errno_result(int e)
{
	return e == ENOSPC ? DR_NO_SPACE : e == EDQUOT ? DR_QUOTA : DR_LOCAL_ERROR;
}

/* Is this copy written: a recipient needs it whatever, or one fell back to it? */
static bool
needed(const struct delivery *d, const struct copy *cp)
{
	if (cp->definite)
		return true;
	for (size_t i = 0; i < cp->nfb; i++)
		if (d->who[cp->fb[i]].fell_back)
			return true;
	return false;
}

/*
 * fsync every open copy's file (or the spool's, when there is none), or
 * with `dirs` every published copy's new/, all at once.  0 or the first
 * errno.
 */
static int
sync_copies(struct delivery *d, bool dirs)
{
	size_t n = 0;
	int *fds, *errs, first = 0;

	if ((fds = reallocarray(NULL, d->ncopies + 1, 2 * sizeof(int))) == NULL)
		return ENOMEM;
	errs = fds + d->ncopies + 1;
	for (size_t i = 0; i < d->ncopies; i++) {
		struct copy *cp = &d->copies[i];

		if (!(dirs ? cp->published : cp->open))
			continue;
		if (!dirs && (first = msg_flush(&cp->m)) != 0)
			goto out;
		fds[n++] = dirs ? cp->md.new : cp->m.fd;
	}
	if (n == 0 && !dirs) {
		if ((first = msg_flush(d->primary)) != 0)
			goto out;
		fds[n++] = d->primary->fd;
	}
	fsync_all(fds, errs, n);
	for (size_t i = 0; i < n && first == 0; i++)
		first = errs[i];
out:
	free(fds);
	return first;
}

/*
 * One line per envelope recipient, sharing the queue id (as Postfix logs),
 * so that a grep for an address finds where its message went: `via` says
 * mailbox, forward, terminal (a comma between two); msgid is the message's
 * own Message-ID, escaped.
 */
static void
log_delivered(const struct delivery *d, const char *name)
{
	const struct msg *p = d->primary;
	char from[LOG_QUOTED(ADDR_MAX_PATH + 2)], to[LOG_QUOTED(ADDR_MAX_PATH + 2)];
	char msgid[LOG_QUOTED(sizeof(d->msgid))];

	log_quote_path(from, sizeof(from), d->tr.sender);
	log_quote(msgid, sizeof(msgid), d->msgid, strlen(d->msgid));
	for (size_t i = 0; i < d->nwho; i++) {
		const struct who *w = &d->who[i];
		bool mbox = w->mailbox || (w->fell_back && w->fb_mailbox);
		bool fwd = w->forward || (w->fell_back && w->fb_forward);
		char via[32] = "";

		if (w->failed)
			continue;

		if (mbox)
			strlcat(via, "mailbox", sizeof(via));
		if (fwd)
			strlcat(via, via[0] ? ",forward" : "forward", sizeof(via));
		if (w->whole)
			strlcat(via, via[0] ? ",terminal" : "terminal", sizeof(via));
		log_msg(LOG_INFO, "event=deliver id=%s from=%s to=%s via=%s "
		    "msgid=%s size=%" PRIu64 " file=%s", d->id, from,
		    log_quote_path(to, sizeof(to), w->rcpt),
		    via[0] ? via : "none", msgid, p->octets, name);
	}
}

enum dresult
delivery_commit(struct delivery *d, char *name, size_t size, int *err)
{
	const struct config *c = d->conf;
	struct msg *p = d->primary;
	uint64_t body = p->octets - p->mark, body_lines = p->lines - p->mark_lines;
	enum dresult r = DR_OK;
	int body_fd = -1;
	bool late_ttys = false, named = false;

	*err = 0;
	/* The further copies take the body from the first one's file. */
	if ((*err = msg_flush(p)) != 0) {
		r = errno_result(*err);
		goto fail;
	}
	/* For the log; the header section is bounded, the message may not be. */
	header_find(p->fd, (off_t)p->mark, body, "message-id", d->msgid, sizeof(d->msgid));
	/*
	 * SEND and SOML: the terminals first, since they decide what is
	 * stored (RFC 821 4.1.1).  SEND of a message a terminal cannot take
	 * whole is refused before any terminal sees it; a SEND recipient
	 * whose terminal did not take it all fails the delivery (nothing was
	 * stored: SEND stores nothing).
	 */
	for (size_t i = 0; i < d->nwho; i++) {
		if (d->who[i].login == NULL)
			continue;
		if (d->who[i].mode == RM_TERMINAL && body > TERMINAL_MAX) {
			r = DR_TERMINAL_TOO_BIG;
			goto fail;
		}
		late_ttys |= d->who[i].mode == RM_BOTH;
	}
	if (!terminals(d, p->fd, false)) {
		r = DR_TERMINAL;
		goto fail;
	}
	/* A SOML fallback that is not needed after all is not linked to the first file. */
	for (size_t i = 0; i < d->ncopies; i++)
		if (d->copies[i].file != NULL && d->copies[i].file != &d->copies[i] &&
		    !needed(d, &d->copies[i]))
			d->copies[i].file = NULL;
	/*
	 * A file for each mount the copies are on (one, most often), with
	 * its own trace and the body copied in the kernel; every copy on
	 * that mount gets it through a hard link.
	 */
	for (size_t i = 0; i < d->ncopies; i++) {
		struct copy *cp = &d->copies[i];
		const char **rcpts;
		size_t nrcpts;

		if (cp->file != NULL || !needed(d, cp))
			continue;
		if (copy_dir(d, cp) == -1 ||
		    msg_open(&cp->m, &cp->md, smallbuf, sizeof(smallbuf)) == -1) {
			*err = errno;
			r = errno_result(*err);
			goto fail;
		}
		cp->open = true;
		if (share(d, cp, false, &rcpts, &nrcpts) == -1) {
			*err = ENOMEM;
			r = DR_LOCAL_ERROR;
			goto fail;
		}
		if (d->filtered) {
			if (!named)	/* the first file is named as the Received field says */
				strlcpy(cp->m.base, d->id, sizeof(cp->m.base));
			named = true;
			*err = filtered_copy(d, cp, rcpts, nrcpts);
		} else {
			trace(d, &cp->m, rcpts, nrcpts);
			*err = msg_copy_from(&cp->m, p, p->mark, body, body_lines);
		}
		free(rcpts);
		if (*err != 0) {
			r = errno_result(*err);
			goto fail;
		}
	}
	/* Every copy is written before any is fsynced, and they sync together. */
	if ((*err = sync_copies(d, false)) != 0) {
		r = errno_result(*err);
		goto fail;
	}
	/*
	 * A message that would take a mailbox over its quota is refused
	 * whole, before any link: each Maildir a file is linked into counts
	 * it whole (Maildir++ counts a file in every Maildir it is in).
	 */
	for (size_t i = 0; i < d->ncopies; i++) {
		struct copy *cp = &d->copies[i];
		enum quota_status q;

		if (cp->file == NULL)
			continue;
		q = quota_check(cp->root, c->quota, cp->file->m.octets);
		if (q != QUOTA_OK) {
			r = q == QUOTA_OVER ? DR_OVER_QUOTA : DR_LOCAL_ERROR;
			goto fail;
		}
	}
	for (size_t i = 0; i < d->nfwds; i++) {
		const struct fwd *f = &d->fwds[i];

		if (f->fallback && !d->who[f->who].fell_back)
			continue;
		if (forward(d, f) == -1) {
			r = DR_FORWARD;
			goto fail;
		}
	}
	/* Publishing closes the copies; SAML's terminals still read the body. */
	if (late_ttys && (body_fd = dup(p->fd)) == -1) {
		*err = errno;
		r = DR_LOCAL_ERROR;
		goto fail;
	}
	/*
	 * Every file is durable: the links.  The extra names first, while the
	 * files are open (msg_link closes them); a failure part way takes
	 * back every name made (delivery_abort).
	 */
	for (size_t i = 0; i < d->ncopies && *err == 0; i++) {
		struct copy *cp = &d->copies[i];

		if (cp->file == NULL || cp->file == cp)
			continue;
		if ((*err = msg_link_also(&cp->file->m, &cp->md, cp->name, sizeof(cp->name))) == 0)
			cp->published = true;
	}
	for (size_t i = 0; i < d->ncopies && *err == 0; i++) {
		struct copy *cp = &d->copies[i];

		if (!cp->open)
			continue;
		cp->open = false;
		if ((*err = msg_link(&cp->m, cp->name, sizeof(cp->name))) != 0)
			break;
		cp->published = true;
	}
	/* Not durable until new/ is: on failure every link is taken back. */
	if (*err == 0)
		*err = sync_copies(d, true);
	if (*err != 0) {
		r = errno_result(*err);
		if (body_fd != -1)
			close(body_fd);
		goto fail;
	}
	strlcpy(name, d->id, size);
	for (size_t i = d->ncopies; i-- > 0; ) {
		struct copy *cp = &d->copies[i];

		if (!cp->published)
			continue;
		if (cp->file == cp)
			msg_done(&cp->m);
		quota_charge(cp->root, cp->file->m.octets);
		strlcpy(name, cp->name, size);	/* the first copy's name */
	}
	if (d->first != NULL)
		strlcpy(name, d->first->name, size);
	if (body_fd != -1) {
		(void)terminals(d, body_fd, true);
		close(body_fd);
	}
	log_delivered(d, name);
	if (d->spooled)
		msg_abort(&d->spool);
	if (d->has_edited)
		msg_abort(&d->edited);
	delivery_free(d);
	return DR_OK;
fail:
	delivery_abort(d);
	return r;
}

/* ---- one commit per recipient (LMTP) ---------------------------------------- */

/* Does copy `cp` hold recipient `w`'s message? */
static bool
copy_has(const struct copy *cp, const struct who *w)
{
	for (size_t j = 0; j < cp->nrcpts; j++)
		if (strcmp(cp->rcpts[j], w->rcpt) == 0)
			return true;
	return false;
}

/* Copy `i` failed with `r`: so did every recipient it is for. */
static void
copy_failed(struct delivery *d, enum dresult *wres, int *werr, size_t i,
    enum dresult r, int e)
{
	struct copy *cp = &d->copies[i];

	for (size_t k = 0; k < d->nwho; k++)
		if (!d->who[k].failed && copy_has(cp, &d->who[k])) {
			d->who[k].failed = true;
			wres[k] = r;
			werr[k] = e;
		}
}

/* The file of copy `i` failed: so did every copy linked to it, and their recipients. */
static void
file_failed(struct delivery *d, enum dresult *wres, int *werr, bool *on, size_t i,
    enum dresult r, int e)
{
	for (size_t k = 0; k < d->ncopies; k++)
		if (d->copies[k].file == &d->copies[i]) {
			copy_failed(d, wres, werr, k, r, e);
			on[k] = false;
		}
}

/* Is a copy still wanted: written, and for at least one recipient not failed? */
static bool
copy_wanted(const struct delivery *d, const struct copy *cp)
{
	for (size_t k = 0; k < d->nwho; k++)
		if (!d->who[k].failed && copy_has(cp, &d->who[k]))
			return true;
	return false;
}

/*
 * fsync the files (or, with `dirs`, the new/ directories) of the copies
 * marked in `on`, all at once; each file whose sync fails fails every
 * copy linked to it, each new/ its copy's recipients.  False when nothing
 * could be tried (no memory).
 */
static bool
sync_each(struct delivery *d, bool *on, bool dirs, enum dresult *wres, int *werr)
{
	size_t n = 0, *at;
	int *fds, *errs;

	if ((fds = reallocarray(NULL, d->ncopies + 1, 2 * sizeof(int))) == NULL)
		return false;
	if ((at = reallocarray(NULL, d->ncopies + 1, sizeof(*at))) == NULL) {
		free(fds);
		return false;
	}
	errs = fds + d->ncopies + 1;
	for (size_t i = 0; i < d->ncopies; i++) {
		struct copy *cp = &d->copies[i];
		int e;

		if (!on[i] || (!dirs && !cp->open))
			continue;
		if (!dirs && (e = msg_flush(&cp->m)) != 0) {
			file_failed(d, wres, werr, on, i, errno_result(e), e);
			continue;
		}
		at[n] = i;
		fds[n++] = dirs ? cp->md.new : cp->m.fd;
	}
	fsync_all(fds, errs, n);
	for (size_t j = 0; j < n; j++)
		if (errs[j] != 0 && dirs)
			copy_failed(d, wres, werr, at[j], errno_result(errs[j]), errs[j]);
		else if (errs[j] != 0)
			file_failed(d, wres, werr, on, at[j], errno_result(errs[j]), errs[j]);
	free(at);
	free(fds);
	return true;
}

void
delivery_commit_each(struct delivery *d, const struct rcpt *r, size_t n,
    struct doutcome *out)
{
	const struct config *c = d->conf;
	struct msg *p = d->primary;
	uint64_t body = p->octets - p->mark, body_lines = p->lines - p->mark_lines;
	enum dresult *wres = NULL;
	int *werr = NULL, e;
	bool *on = NULL, named = false;
	const char *name = d->id;

	for (size_t i = 0; i < n; i++) {
		out[i].r = DR_OK;
		out[i].err = 0;
		strlcpy(out[i].name, d->id, sizeof(out[i].name));
	}
	if ((e = msg_flush(p)) != 0)
		goto all_fail;
	e = ENOMEM;
	if ((wres = calloc(d->nwho + 1, sizeof(*wres))) == NULL ||
	    (werr = calloc(d->nwho + 1, sizeof(*werr))) == NULL ||
	    (on = calloc(d->ncopies + 1, sizeof(*on))) == NULL)
		goto all_fail;
	header_find(p->fd, (off_t)p->mark, body, "message-id", d->msgid, sizeof(d->msgid));
	/* LMTP has no SEND, SOML or SAML: there are no terminals to write. */

	/*
	 * The first file's copies, then a file for each further mount, linked
	 * into every copy on it (as delivery_commit); a file that cannot be
	 * made fails the recipients of its copies only.
	 */
	for (size_t i = 0; i < d->ncopies; i++)
		on[i] = d->copies[i].file != NULL;
	for (size_t i = 0; i < d->ncopies; i++) {
		struct copy *cp = &d->copies[i];
		const char **rcpts = NULL;
		size_t nrcpts = 0;

		if (cp->file != NULL || !needed(d, cp))
			continue;
		if (copy_dir(d, cp) == -1 ||
		    msg_open(&cp->m, &cp->md, smallbuf, sizeof(smallbuf)) == -1) {
			e = errno;
			copy_failed(d, wres, werr, i, errno_result(e), e);
			continue;
		}
		cp->open = true;
		if (share(d, cp, false, &rcpts, &nrcpts) == -1)
			e = ENOMEM;
		else if (d->filtered) {
			if (!named)	/* the first file is named as the Received field says */
				strlcpy(cp->m.base, d->id, sizeof(cp->m.base));
			named = true;
			e = filtered_copy(d, cp, rcpts, nrcpts);
		} else {
			trace(d, &cp->m, rcpts, nrcpts);
			e = msg_copy_from(&cp->m, p, p->mark, body, body_lines);
		}
		free(rcpts);
		for (size_t k = 0; k < d->ncopies; k++)
			on[k] = on[k] || d->copies[k].file == cp;
		if (e != 0)
			file_failed(d, wres, werr, on, i, errno_result(e), e);
	}
	/* Written before any is fsynced, and they sync together. */
	if (!sync_each(d, on, false, wres, werr)) {
		e = ENOMEM;
		goto all_fail;
	}
	for (size_t i = 0; i < d->ncopies; i++) {
		struct copy *cp = &d->copies[i];
		enum quota_status q;

		if (!on[i])
			continue;
		q = quota_check(cp->root, c->quota, cp->file->m.octets);
		if (q != QUOTA_OK)
			copy_failed(d, wres, werr, i,
			    q == QUOTA_OVER ? DR_OVER_QUOTA : DR_LOCAL_ERROR, 0);
	}
	/* Forwards only for the recipients whose copies are all durable. */
	for (size_t i = 0; i < d->nfwds; i++) {
		const struct fwd *f = &d->fwds[i];

		if (d->who[f->who].failed || (f->fallback && !d->who[f->who].fell_back))
			continue;
		if (forward(d, f) == -1) {
			d->who[f->who].failed = true;
			wres[f->who] = DR_FORWARD;
		}
	}
	/*
	 * Publish the copies of the recipients still standing.  A copy shared
	 * with a recipient that failed stays when another still needs it.
	 * The links first, while the files are open; a file none of whose
	 * own recipients stands is closed (its links stay).
	 */
	for (size_t i = 0; i < d->ncopies; i++) {
		struct copy *cp = &d->copies[i];

		on[i] = on[i] && cp->file->open && copy_wanted(d, cp);
		if (!on[i] || cp->file == cp)
			continue;
		if ((e = msg_link_also(&cp->file->m, &cp->md, cp->name, sizeof(cp->name))) != 0) {
			copy_failed(d, wres, werr, i, errno_result(e), e);
			on[i] = false;
			continue;
		}
		cp->published = true;
	}
	for (size_t i = 0; i < d->ncopies; i++) {
		struct copy *cp = &d->copies[i];

		if (cp->open && !on[i]) {
			cp->open = false;
			msg_abort(&cp->m);
		}
		if (!on[i] || cp->file != cp)
			continue;
		cp->open = false;
		if ((e = msg_link(&cp->m, cp->name, sizeof(cp->name))) != 0) {
			copy_failed(d, wres, werr, i, errno_result(e), e);
			on[i] = false;
			continue;
		}
		cp->published = true;
	}
	/* Not durable until new/ is: a copy whose new/ fails is taken back. */
	if (!sync_each(d, on, true, wres, werr)) {
		for (size_t k = 0; k < d->nwho; k++)
			if (!d->who[k].failed) {
				d->who[k].failed = true;
				wres[k] = DR_LOCAL_ERROR;
				werr[k] = ENOMEM;
			}
	}
	/* What is left published is for a recipient that is delivered, whole. */
	for (size_t i = 0; i < d->ncopies; i++) {
		struct copy *cp = &d->copies[i];

		on[i] = cp->published && copy_wanted(d, cp);
		if (!on[i])
			continue;
		if (cp->file == cp)
			msg_done(&cp->m);
		quota_charge(cp->root, cp->file->m.octets);
		cp->published = false;	/* kept: delivery_abort leaves it */
		if (name == d->id || cp == d->first)
			name = cp->name;	/* the first copy's name, as delivery_commit */
	}
	log_delivered(d, name);
	for (size_t k = 0; k < d->nwho; k++) {
		const struct who *w = &d->who[k];
		const char *wname = NULL;

		for (size_t i = 0; i < d->ncopies && wname == NULL; i++)
			if (on[i] && copy_has(&d->copies[i], w))
				wname = d->copies[i].name;
		for (size_t i = 0; i < n; i++) {
			if (strcmp(r[i].mb.text, w->rcpt) != 0)
				continue;
			out[i].r = w->failed ? wres[k] : DR_OK;
			out[i].err = w->failed ? werr[k] : 0;
			if (!w->failed && wname != NULL)
				strlcpy(out[i].name, wname, sizeof(out[i].name));
		}
	}
	free(wres);
	free(werr);
	free(on);
	delivery_abort(d);	/* the failed copies, the spool; the delivered stay */
	return;
all_fail:
	for (size_t i = 0; i < n; i++) {
		out[i].r = errno_result(e);
		out[i].err = e;
	}
	free(wres);
	free(werr);
	free(on);
	delivery_abort(d);
}

/* ---- filters (verdict.h) ---------------------------------------------------- */

__attribute__((cold))
static int
filter_begin(struct delivery *d, const struct rcpt *r, size_t n)
{
	d->filtered = true;
	if (n > 0 && (d->rs = reallocarray(NULL, n, sizeof(*r))) == NULL)
		return -1;
	if (n > 0)
		memcpy(d->rs, r, n * sizeof(*r));
	d->nrs = n;
	return 0;
}

__attribute__((cold))
static void
filter_free(struct delivery *d)
{
	if (d->spool_md.root != -1) {
		close(d->spool_md.root);
		close(d->spool_md.tmp);
		close(d->spool_md.new);
	}
	for (size_t i = 0; i < d->nown_rt; i++)
		route_free(&d->own_rt[i]);
	free(d->own_rt);
	free(d->rs);
	for (size_t i = 0; i < d->nowned; i++)
		free(d->owned[i]);
	free(d->owned);
	free(d->fc);
}

/* Keep `s` (malloc'ed) until the delivery goes; NULL when it cannot. */
__attribute__((cold))
static char *
own(struct delivery *d, char *s)
{
	char **v;

	if (s == NULL || (v = reallocarray(d->owned, d->nowned + 1, sizeof(*v))) == NULL) {
		free(s);
		return NULL;
	}
	v[d->nowned++] = s;
	d->owned = v;
	return s;
}

__attribute__((cold))
static const char *
junk_path(struct delivery *d, const char *root)
{
	char *p;

	if (asprintf(&p, "%s/.Junk", root) == -1)
		return NULL;
	return own(d, p);
}

/* Where the Received field starts in a trace from headers(). */
static size_t
received_at(const char *h, size_t len)
{
	for (size_t at = 0; at < len; ) {
		const char *lf = memchr(h + at, '\n', len - at);

		if (strncmp(h + at, "Received:", 9) == 0)
			return at;
		if (lf == NULL)
			break;
		at = (size_t)(lf - h) + 1;
	}
	return len;
}

/*
 * A file made from the (edited) message for `rcpts`: its trace, with
 * Received where the filters put it.
 */
__attribute__((cold))
static int
filtered_copy(struct delivery *d, struct copy *cp, const char *const *rcpts, size_t nrcpts)
{
	struct msg *p = d->primary;
	uint64_t octets = p->octets - p->mark, lines = p->lines - p->mark_lines;
	size_t len, split;
	char *h = headers(d, true, rcpts, nrcpts, &len);

	if (h == NULL)
		return ENOMEM;
	split = received_at(h, len);
	msg_put(&cp->m, h, split);
	if (d->at.octets > 0)
		(void)msg_copy_from(&cp->m, p, p->mark, d->at.octets, d->at.lines);
	msg_put(&cp->m, h + split, len - split);
	cp->m.mark = cp->m.octets;
	cp->m.mark_lines = cp->m.lines;
	free(h);
	if (cp->m.err == 0 && octets > d->at.octets)
		(void)msg_copy_from(&cp->m, p, p->mark + d->at.octets, octets - d->at.octets,
		    lines - d->at.lines);
	return cp->m.err;
}

bool
delivery_filtered(const struct delivery *d)
{
	return d->filtered;
}

__attribute__((cold))
int
delivery_message(struct delivery *d, int *fd, off_t *off, uint64_t *len, bool *lf_stored)
{
	struct msg *p = d->primary;
	int e;

	if ((e = msg_flush(p)) != 0)
		return e;
	*fd = p->fd;
	*off = (off_t)p->mark;
	*len = p->octets - p->mark;
	*lf_stored = !d->tr.binary;
	return 0;
}

__attribute__((cold))
const char *
delivery_rcpt(const struct delivery *d, size_t i)
{
	return i < d->nrs ? d->rs[i].mb.text : NULL;
}

__attribute__((cold))
const char *
delivery_sender(const struct delivery *d)
{
	return d->tr.sender;
}

__attribute__((cold))
unsigned
delivery_received_index(const struct delivery *d)
{
	return d->at.nabove;
}

__attribute__((cold))
size_t
delivery_targets(const struct delivery *d)
{
	size_t n = d->ncopies + d->nfwds;

	for (size_t i = 0; i < d->nwho; i++)
		n += d->who[i].login != NULL;
	return n;
}

/* "<a@b>" or "a@b" from a filter, parsed as RCPT parses it. */
__attribute__((cold))
static bool
filter_addr(const char *a, struct mailbox *mb)
{
	char buf[ADDR_MAX_PATH + 3];
	const char *rest;
	size_t n = strlen(a);

	if (n >= 2 && a[0] == '<' && a[n - 1] == '>') {
		a++;
		n -= 2;
	}
	if (n > ADDR_MAX_PATH)
		return false;
	snprintf(buf, sizeof(buf), "<%.*s>", (int)n, a);
	return addr_parse(buf, ADDR_UTF8, mb, &rest) == ADDR_OK && *rest == '\0';
}

__attribute__((cold))
static int
edit_fail(char *why, size_t size, const char *s)
{
	snprintf(why, size, "%s", s);
	return -1;
}

__attribute__((cold))
int
delivery_edit(struct delivery *d, const struct router *router, enum rmode mode,
    const struct edits *e, char *why, size_t whysize)
{
	const struct config *c = d->conf;
	bool replan = false;
	char esc[LOG_QUOTED(ADDR_MAX_PATH + 2)];

	if (!d->filtered)
		return edit_fail(why, whysize, "no filters configured");
	if (e->sender != NULL) {
		struct mailbox mb;

		if (e->sender[0] != '\0' && !filter_addr(e->sender, &mb))
			return edit_fail(why, whysize, "invalid sender from a filter");
		if (own(d, strdup(e->sender[0] ? mb.text : "")) == NULL)
			return edit_fail(why, whysize, "out of memory");
		d->tr.sender = d->owned[d->nowned - 1];
		log_quote_path(esc, sizeof(esc), d->tr.sender);
		log_msg(LOG_INFO, "event=filter-edit id=%s sender=%s", d->id, esc);
		replan = true;
	}
	for (size_t i = 0; i < e->ndel; i++) {
		struct mailbox mb;
		bool found = false;

		if (filter_addr(e->del_rcpt[i], &mb))
			for (size_t j = 0; j < d->nrs; j++)
				if (addr_same(&d->rs[j].mb, &mb)) {
					memmove(d->rs + j, d->rs + j + 1, (d->nrs - j - 1) * sizeof(*d->rs));
					d->nrs--;
					found = replan = true;
					break;
				}
		log_quote_path(esc, sizeof(esc), e->del_rcpt[i]);
		log_msg(LOG_INFO, "event=filter-edit id=%s delrcpt=%s result=%s", d->id, esc,
		    found ? "deleted" : "not-a-recipient");
	}
	for (size_t i = 0; i < e->nadd; i++) {
		struct rcpt nr = { 0 };
		const char *result = "added";
		bool dup = false;

		log_quote_path(esc, sizeof(esc), e->add_rcpt[i]);
		if (!filter_addr(e->add_rcpt[i], &nr.mb) || nr.mb.null) {
			log_msg(LOG_NOTICE, "event=filter-edit id=%s addrcpt=%s result=dropped "
			    "reason=syntax", d->id, esc);
			continue;
		}
		log_quote_path(esc, sizeof(esc), nr.mb.text);
		for (size_t j = 0; j < d->nrs && !dup; j++)
			dup = addr_same(&d->rs[j].mb, &nr.mb);
		if (dup) {
			log_msg(LOG_INFO, "event=filter-edit id=%s addrcpt=%s result=already",
			    d->id, esc);
			continue;
		}
		if (d->nrs >= (size_t)c->max_recipients) {
			log_msg(LOG_NOTICE, "event=filter-edit id=%s addrcpt=%s result=dropped "
			    "reason=too-many-recipients", d->id, esc);
			continue;
		}
		route_rcpt(router, &nr.mb, mode, 0, &nr.rt);
		if (nr.rt.st == RT_LOCAL || nr.rt.st == RT_FORWARD) {
			struct route *ort = reallocarray(d->own_rt, d->nown_rt + 1, sizeof(*ort));
			struct rcpt *nrs = ort == NULL ? NULL :
			    reallocarray(d->rs, d->nrs + 1, sizeof(*nrs));

			if (ort != NULL)
				d->own_rt = ort;
			if (nrs == NULL) {
				route_free(&nr.rt);
				return edit_fail(why, whysize, "out of memory");
			}
			d->own_rt[d->nown_rt++] = nr.rt;
			d->rs = nrs;
			d->rs[d->nrs++] = nr;
			replan = true;
		} else {
			result = "dropped";
			route_free(&nr.rt);
		}
		log_msg(result[0] == 'a' ? LOG_INFO : LOG_NOTICE,
		    "event=filter-edit id=%s addrcpt=%s result=%s status=%d", d->id, esc,
		    result, (int)nr.rt.st);
	}
	if (replan) {
		plan_free(d);
		if (plan(d, d->rs, d->nrs) == -1)
			return edit_fail(why, whysize, "out of memory");
	}
	if (e->nh > 0 || e->body_fd != -1) {
		struct msg nm;
		struct rcvd_at at;
		int err;

		if ((err = msg_flush(d->primary)) != 0)
			return edit_fail(why, whysize, strerror(err));
		/* The buffer is free: the spool is complete and flushed. */
		if ((d->spool_md.root != -1 ? msg_open(&nm, &d->spool_md, bigbuf, sizeof(bigbuf)) :
		    msg_open_spool(&nm, bigbuf, sizeof(bigbuf))) == -1)
			return edit_fail(why, whysize, strerror(errno));
		if (edit_message(&nm, d->primary, &d->at, e, d->tr.binary, &at, why, whysize) == -1) {
			msg_abort(&nm);
			return -1;
		}
		if (d->has_edited)
			msg_abort(&d->edited);
		d->edited = nm;
		d->has_edited = true;
		d->primary = &d->edited;
		d->at = at;
		log_msg(LOG_INFO, "event=filter-edit id=%s headers=%zu body=%s", d->id, e->nh,
		    e->body_fd != -1 ? "replaced" : "kept");
	}
	return 0;
}

__attribute__((cold))
int
delivery_quarantine(struct delivery *d)
{
	if (!d->filtered) {
		errno = EINVAL;
		return -1;
	}
	d->quarantine = true;
	plan_free(d);
	if (plan(d, d->rs, d->nrs) == -1)
		return -1;
	for (size_t i = 0; i < d->ncopies; i++)
		if (maildir_make_folder(d->copies[i].path) == -1)
			return -1;
	return 0;
}

__attribute__((cold))
size_t
delivery_first_copy(struct delivery *d, struct dpiece p[4])
{
	struct msg *m = d->primary;
	uint64_t octets = m->octets - m->mark;
	size_t len, split, n = 0, nr = 0;
	bool rp = d->ncopies > 0;
	const char **r = NULL;

	/*
	 * The first file is linked into every Maildir on its mount: it is
	 * taken to be all of them (so it is, unless some are elsewhere).
	 */
	for (size_t i = 0; i < d->ncopies; i++)
		for (size_t j = 0; j < d->copies[i].nrcpts; j++)
			if (add_unique(&r, &nr, d->copies[i].rcpts[j]) == -1) {
				free(r);
				return 0;
			}
	free(d->fc);
	d->fc = rp ? headers(d, true, r, nr, &len) :
	    headers(d, false, d->nwho > 0 ? &d->who[0].rcpt : NULL, d->nwho > 0, &len);
	free(r);
	if (d->fc == NULL || msg_flush(m) != 0)
		return 0;
	split = received_at(d->fc, len);
	p[n++] = (struct dpiece){ .buf = d->fc, .len = split, .fd = -1 };
	if (d->at.octets > 0)
		p[n++] = (struct dpiece){ .fd = m->fd, .off = (off_t)m->mark, .flen = d->at.octets };
	p[n++] = (struct dpiece){ .buf = d->fc + split, .len = len - split, .fd = -1 };
	if (octets > d->at.octets)
		p[n++] = (struct dpiece){ .fd = m->fd, .off = (off_t)(m->mark + d->at.octets),
		    .flen = octets - d->at.octets };
	return n;
}
