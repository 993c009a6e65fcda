/*
 * maildir.c: unique names, the tmp/ write, fsync, link into new/.
 *
 * Unique names are the ones Courier and Dovecot write,
 * <sec>.M<usec>P<pid>Q<n>.<host>,S=<octets>,W=<octets with CRLF>, with '/'
 * and ':' in the host written as \057 and \072.  The file in tmp/ is
 * unnamed (O_TMPFILE) where the file system can, else created with O_EXCL,
 * and new/ gets it through link(), which refuses an existing name: two
 * deliveries can never share a file.  Unlike qmail, Postfix,
 * OpenSMTPD and Exim, mailslot also fsyncs new/ after the link, since until
 * then a crash can lose a message that was already acknowledged.
 */
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/time.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"
#include "maildir.h"

/* Open a Maildir's subdirectory, creating it only when it is missing. */
static int
subdir(int root, const char *name)
{
	int fd;

	fd = openat(root, name, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
	if (fd == -1 && errno == ENOENT) {
		if (mkdirat(root, name, 0700) == -1 && errno != EEXIST)
			return -1;
		fd = openat(root, name, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
	}
	if (fd != -1 && faccessat(root, name, W_OK | X_OK, AT_EACCESS) == -1) {
		int e = errno;
		close(fd);
		errno = e;
		return -1;
	}
	return fd;
}

/*
 * One Maildir opened ahead (the catch-all, checked at the greeting): the
 * next maildir_open() of the same path takes over its descriptors instead
 * of opening it all again.
 */
static struct {
	bool		valid;
	struct maildir	md;
	char		path[PATH_MAX];
} ahead;

static bool
linked(int fd)
{
	struct stat st;

	return fstat(fd, &st) == 0 && st.st_nlink > 0;
}

void
maildir_keep(const struct maildir *md, const char *path)
{
	if (ahead.valid || strlcpy(ahead.path, path, sizeof(ahead.path)) >= sizeof(ahead.path)) {
		close(md->root);
		close(md->tmp);
		close(md->new);
		return;
	}
	ahead.md = *md;
	ahead.valid = true;
}

static int
open_dirs(struct maildir *md, const char *path)
{
	int cur;

	if (ahead.valid && strcmp(path, ahead.path) == 0) {
		ahead.valid = false;
		/* A directory removed since is made again, as it would be now. */
		if (linked(ahead.md.root) && linked(ahead.md.tmp) && linked(ahead.md.new)) {
			*md = ahead.md;
			return 0;
		}
		close(ahead.md.root);
		close(ahead.md.tmp);
		close(ahead.md.new);
	}
	md->root = md->tmp = md->new = -1;
	md->root = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (md->root == -1 && errno == ENOENT) {
		if (mkdir(path, 0700) == -1 && errno != EEXIST)
			return -1;
		md->root = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	}
	if (md->root == -1)
		return -1;
	if ((md->tmp = subdir(md->root, "tmp")) == -1 ||
	    (md->new = subdir(md->root, "new")) == -1 ||
	    (cur = subdir(md->root, "cur")) == -1) {
		int e = errno;
		if (md->tmp != -1)
			close(md->tmp);
		if (md->new != -1)
			close(md->new);
		close(md->root);
		md->root = md->tmp = md->new = -1;
		errno = e;
		return -1;
	}
	close(cur);
	return 0;
}

int
maildir_open(struct maildir *md, const char *path, const char *hostname)
{
	size_t o = 0;

	if (open_dirs(md, path) == -1)
		return -1;
	for (const char *h = hostname; *h != '\0' && o + 5 < sizeof(md->host); h++) {
		if (*h == '/' || *h == ':') {
			memcpy(md->host + o, *h == '/' ? "\\057" : "\\072", 4);
			o += 4;
		} else
			md->host[o++] = *h;
	}
	md->host[o] = '\0';
	return 0;
}

/* mkdirat() that is durable: the new entry fsynced into `dir`. */
static int
mkdir_durable(int dir, const char *name)
{
	if (mkdirat(dir, name, 0700) == -1)
		return errno == EEXIST ? 0 : -1;
	return fsync(dir);
}

int
maildir_make_folder(const char *path)
{
	char parent[PATH_MAX], *slash;
	const char *base;
	int pfd = -1, fd = -1, f, rc = -1;
	static const char *const subs[] = { "tmp", "new", "cur" };

	if (strlcpy(parent, path, sizeof(parent)) >= sizeof(parent) ||
	    (slash = strrchr(parent, '/')) == NULL || slash[1] == '\0') {
		errno = EINVAL;
		return -1;
	}
	*slash = '\0';
	base = slash + 1;
	if ((pfd = open(parent[0] ? parent : "/", O_RDONLY | O_DIRECTORY | O_CLOEXEC)) == -1 ||
	    mkdir_durable(pfd, base) == -1 ||
	    (fd = openat(pfd, base, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)) == -1)
		goto out;
	/* Maildir++: the file that says "a folder, not a mailbox" (Courier, Dovecot). */
	f = openat(fd, "maildirfolder", O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (f != -1) {
		int e = fsync(f) == -1 ? errno : 0;

		close(f);
		if (e != 0 || fsync(fd) == -1) {
			errno = e ? e : errno;
			goto out;
		}
	} else if (errno != EEXIST)
		goto out;
	for (int i = 0; i < 3; i++)
		if (mkdir_durable(fd, subs[i]) == -1)
			goto out;
	rc = 0;
out:
	if (fd != -1) {
		int e = errno;
		close(fd);
		errno = e;
	}
	if (pfd != -1) {
		int e = errno;
		close(pfd);
		errno = e;
	}
	return rc;
}

int
maildir_free(const struct maildir *md, uint64_t *avail)
{
	struct statvfs sv;

	if (fstatvfs(md->root, &sv) == -1)
		return -1;
	*avail = (uint64_t)sv.f_bavail * sv.f_frsize;
	return 0;
}

/*
 * A message with no Maildir to go to (only forwards and terminals): an
 * unnamed file in $TMPDIR, gone when closed.
 */
int
msg_open_spool(struct msg *m, char *buf, size_t cap)
{
	const char *dir = getenv("TMPDIR");

	memset(m, 0, sizeof(*m));
	m->buf = buf;
	m->cap = cap;
	if (dir == NULL || *dir != '/')
		dir = "/tmp";
	m->fd = open(dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
	if (m->fd == -1) {
		char path[PATH_MAX];

		snprintf(path, sizeof(path), "%s/mailslot.XXXXXX", dir);
		if ((m->fd = mkostemp(path, O_CLOEXEC)) == -1)
			return -1;
		unlink(path);
	}
	snprintf(m->base, sizeof(m->base), "spool");
	return 0;
}

/*
 * The message file is made unnamed in tmp/ (O_TMPFILE) where the file
 * system can: there is no tmp/ name to create and unlink, and a crash
 * leaves nothing behind.  It gets its one name when linked into new/,
 * through /proc/self/fd (linkat() with AT_EMPTY_PATH needs a
 * capability).  -2: not here, make a named one instead.
 */
static int
open_unnamed(int tmp)
{
	static int proc_fd;	/* 0 untried, 1 /proc/self/fd is there, -1 not */
	int fd;

	if (proc_fd == 0)
		proc_fd = access("/proc/self/fd", X_OK) == 0 ? 1 : -1;
	if (proc_fd == -1)
		return -2;
	if ((fd = openat(tmp, ".", O_RDWR | O_TMPFILE | O_CLOEXEC, 0600)) != -1)
		return fd;
	/* Not supported by the kernel (EISDIR) or the file system. */
	return errno == EOPNOTSUPP || errno == EISDIR || errno == EINVAL ? -2 : -1;
}

int
msg_open(struct msg *m, struct maildir *md, char *buf, size_t cap)
{
	static unsigned long counter;
	struct timeval tv;

	m->md = md;
	m->err = 0;
	m->discard = false;
	m->octets = m->lines = m->mark = m->mark_lines = 0;
	m->flushed = m->started = 0;
	m->buf = buf;
	m->cap = cap;
	m->len = 0;
	m->tmpname[0] = '\0';
	for (int tries = 0; tries < 10; tries++) {
		gettimeofday(&tv, NULL);
		snprintf(m->base, sizeof(m->base), "%lld.M%06ldP%ldQ%lu",
		    (long long)tv.tv_sec, (long)tv.tv_usec, (long)getpid(), ++counter);
		if (tries == 0 && (m->fd = open_unnamed(md->tmp)) != -2)
			return m->fd == -1 ? -1 : 0;
		snprintf(m->tmpname, sizeof(m->tmpname), "%s.%s", m->base, md->host);
		m->fd = openat(md->tmp, m->tmpname,
		    O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
		if (m->fd != -1)
			return 0;
		m->tmpname[0] = '\0';
		if (errno != EEXIST)
			return -1;
	}
	return -1;
}

static void
flush(struct msg *m)
{
	size_t off = 0;

	if (m->err != 0 || m->discard) {
		m->len = 0;
		return;
	}
	while (off < m->len) {
		ssize_t n = write(m->fd, m->buf + off, m->len - off);

		if (n > 0)
			off += (size_t)n;
		else if (n == -1 && errno == EINTR)
			continue;
		else {
			m->err = n == 0 ? EIO : errno;
			break;
		}
	}
	m->flushed += off;
	m->len = 0;
	/*
	 * Write-behind, as PostgreSQL does it: start the writeback of what a
	 * large message has written so far, without waiting for it, so that
	 * the disk works while the rest arrives and the fsync at the end
	 * waits only for the tail.  Only a hint: an error shows at the fsync.
	 */
	if (m->err == 0 && m->flushed - m->started >= MSG_WRITEBEHIND) {
		(void)sync_file_range(m->fd, (off64_t)m->started,
		    (off64_t)(m->flushed - m->started), SYNC_FILE_RANGE_WRITE);
		m->started = m->flushed;
	}
}

void
msg_wrote(struct msg *m, size_t n, uint64_t lines)
{
	m->len += n;
	m->octets += n;
	m->lines += lines;
	if (m->cap - m->len < 512)
		flush(m);
}

void
msg_put(struct msg *m, const char *p, size_t n)
{
	while (n > 0) {
		size_t cap, k;
		char *room = msg_room(m, &cap);
		uint64_t lf = 0;

		k = n < cap ? n : cap;
		memcpy(room, p, k);
		for (size_t i = 0; i < k; i++)
			lf += p[i] == '\n';
		m->len += k;
		m->octets += k;
		m->lines += lf;
		if (m->len == m->cap)
			flush(m);
		p += k;
		n -= k;
	}
	if (m->cap - m->len < 512)
		flush(m);	/* msg_room always leaves the decoder room */
}

void
msg_discard(struct msg *m)
{
	m->discard = true;
	m->len = 0;
}

void
msg_done(struct msg *m)
{
	if (m->tmpname[0] != '\0')
		unlinkat(m->md->tmp, m->tmpname, 0);
	m->tmpname[0] = '\0';
}

void
msg_abort(struct msg *m)
{
	if (m->fd != -1) {
		close(m->fd);
		m->fd = -1;
	}
	msg_done(m);
}

int
msg_flush(struct msg *m)
{
	flush(m);
	return m->err;
}

int
msg_link(struct msg *m, char *name, size_t namesize)
{
	char self[32];
	int fd = m->fd;

	if (m->err == 0 && (size_t)snprintf(name, namesize, "%s.%s,S=%" PRIu64 ",W=%" PRIu64,
	    m->base, m->md->host, m->octets, m->octets + m->lines) >= namesize)
		m->err = ENAMETOOLONG;
	if (m->tmpname[0] != '\0') {
		/* Named in tmp/: closed first, since NFS and quotas report there. */
		m->fd = -1;
		if (close(fd) == -1 && m->err == 0)
			m->err = errno;
		if (m->err == 0 && linkat(m->md->tmp, m->tmpname, m->md->new, name, 0) == -1)
			m->err = errno;
	} else if (m->err == 0) {
		/* Unnamed: linked while open (link() never replaces a name), then closed. */
		snprintf(self, sizeof(self), "/proc/self/fd/%d", fd);
		if (linkat(AT_FDCWD, self, m->md->new, name, AT_SYMLINK_FOLLOW) == -1)
			m->err = errno;
		m->fd = -1;
		if (close(fd) == -1 && m->err == 0) {
			m->err = errno;
			unlinkat(m->md->new, name, 0);
		}
	}
	if (m->err != 0) {
		msg_abort(m);
		return m->err;
	}
	return 0;
}


void
msg_unpublish(struct msg *m, const char *name)
{
	unlinkat(m->md->new, name, 0);
	fsync(m->md->new);
}

int
msg_copy_from(struct msg *dst, struct msg *src, uint64_t off, uint64_t len,
    uint64_t lines)
{
	loff_t in = (loff_t)off;
	uint64_t left = len;
	bool fallback = false;

	flush(dst);
	while (dst->err == 0 && left > 0) {
		ssize_t n;

		if (!fallback) {
			/* In the kernel, and a reflink where the file system can. */
			n = copy_file_range(src->fd, &in, dst->fd, NULL,
			    left > (1 << 30) ? (1 << 30) : (size_t)left, 0);
			if (n == -1 && (errno == EXDEV || errno == ENOSYS ||
			    errno == EINVAL || errno == EOPNOTSUPP)) {
				fallback = true;
				continue;
			}
		} else {
			n = pread(src->fd, dst->buf, left < dst->cap ? (size_t)left : dst->cap, in);
			if (n > 0) {
				dst->len = (size_t)n;
				flush(dst);
				in += n;
			}
		}
		if (n == -1 && errno == EINTR)
			continue;
		if (n <= 0) {
			dst->err = n == 0 ? EIO : errno;
			break;
		}
		left -= (uint64_t)n;
	}
	dst->octets += len;
	dst->lines += lines;
	return dst->err;
}

bool
maildir_room(const char *path, uint64_t min_free, uint64_t size)
{
	struct statvfs sv;
	uint64_t avail;

	if (statvfs(path, &sv) == -1)
		return true;	/* the write itself will tell */
	avail = (uint64_t)sv.f_bavail * sv.f_frsize;
	return avail >= min_free && avail - min_free >= size;
}

/* ---- Maildir++ quota ------------------------------------------------------ */

struct quota {
	uint64_t	max_bytes, max_count;	/* 0: no limit */
	int64_t		bytes, count;
};

/* "NS,MC" (either part alone), or a plain size with k/M/G: N octets. */
static bool
quota_def(const char *def, struct quota *q)
{
	const char *p = def;

	q->max_bytes = q->max_count = 0;
	if (*p == '\0')
		return false;
	/* A number without S or C is a size only when it stands alone. */
	if (strchr(def, ',') != NULL && strpbrk(def, "kKmMgG") == NULL) {
		for (const char *part = def; part != NULL; part = strchr(part, ',')) {
			const char *e;

			part += *part == ',';
			e = part + strspn(part, "0123456789");
			if (*e != 'S' && *e != 'C')
				return false;
		}
	}
	while (*p != '\0') {
		char *end;
		unsigned long long n;

		if (*p < '0' || *p > '9')
			return false;
		errno = 0;
		n = strtoull(p, &end, 10);
		if (errno != 0)
			return false;
		switch (*end) {
		case 'S':		q->max_bytes = n; end++; break;
		case 'C':		q->max_count = n; end++; break;
		case 'k': case 'K':	q->max_bytes = n << 10; end++; break;
		case 'm': case 'M':	q->max_bytes = n << 20; end++; break;
		case 'g': case 'G':	q->max_bytes = n << 30; end++; break;
		case '\0': case ',':	q->max_bytes = n; break;
		default:		return false;
		}
		if (*end == ',')
			end++;
		else if (*end != '\0')
			return false;
		p = end;
	}
	return true;
}

bool
quota_valid(const char *def)
{
	struct quota q;

	return *def == '\0' || quota_def(def, &q);
}

/* Octets and files under one Maildir's new/ and cur/. */
static void
usage_of(const char *dir, struct quota *q)
{
	static const char *const subs[] = { "new", "cur" };

	for (int i = 0; i < 2; i++) {
		char path[PATH_MAX];
		DIR *d;
		struct dirent *e;

		snprintf(path, sizeof(path), "%s/%s", dir, subs[i]);
		if ((d = opendir(path)) == NULL)
			continue;
		while ((e = readdir(d)) != NULL) {
			const char *sz;
			struct stat st;

			if (e->d_name[0] == '.')
				continue;
			if ((sz = strstr(e->d_name, ",S=")) != NULL)
				q->bytes += strtoll(sz + 3, NULL, 10);
			else if (fstatat(dirfd(d), e->d_name, &st, 0) == 0)
				q->bytes += st.st_size;
			q->count++;
		}
		closedir(d);
	}
}

/* Write a new maildirsize from a scan of the mailbox and its folders. */
static int
quota_create(const char *root, const char *def)
{
	char tmp[PATH_MAX], path[PATH_MAX], line[128];
	struct quota q = { 0 }, lim;
	DIR *d;
	struct dirent *e;
	int fd, n;

	usage_of(root, &q);
	if ((d = opendir(root)) != NULL) {
		while ((e = readdir(d)) != NULL)
			if (e->d_name[0] == '.' && strcmp(e->d_name, ".") != 0 &&
			    strcmp(e->d_name, "..") != 0) {
				snprintf(path, sizeof(path), "%s/%s", root, e->d_name);
				usage_of(path, &q);
			}
		closedir(d);
	}
	snprintf(tmp, sizeof(tmp), "%s/tmp/maildirsize.%ld", root, (long)getpid());
	snprintf(path, sizeof(path), "%s/maildirsize", root);
	/* The header in the form Dovecot writes: "<octets>S,<count>C", either alone. */
	if (!quota_def(def, &lim))
		return -1;
	n = 0;
	if (lim.max_bytes != 0)
		n += snprintf(line + n, sizeof(line) - (size_t)n, "%" PRIu64 "S", lim.max_bytes);
	if (lim.max_count != 0)
		n += snprintf(line + n, sizeof(line) - (size_t)n, "%s%" PRIu64 "C",
		    n > 0 ? "," : "", lim.max_count);
	n += snprintf(line + n, sizeof(line) - (size_t)n, "\n%" PRId64 " %" PRId64 "\n",
	    q.bytes, q.count);
	if ((fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0600)) == -1)
		return -1;
	if (write(fd, line, (size_t)n) != n || fsync(fd) == -1) {
		close(fd);
		unlink(tmp);
		return -1;
	}
	close(fd);
	/* Someone else's, written meanwhile, is as good as this one. */
	if (link(tmp, path) == -1 && errno != EEXIST) {
		unlink(tmp);
		return -1;
	}
	unlink(tmp);
	return 0;
}

/* "<octets> <count>", each possibly negative, nothing else; no overflow. */
static bool
usage_line(const char *line, int64_t *b, int64_t *c)
{
	char *end;

	errno = 0;
	*b = strtoll(line, &end, 10);
	if (errno != 0 || end == line || *end != ' ')
		return false;
	line = end + 1;
	*c = strtoll(line, &end, 10);
	return errno == 0 && end != line && *end == '\0';
}

static int
quota_read(const char *root, const char *deflt, struct quota *q, bool *in_force)
{
	char path[PATH_MAX], *line = NULL;
	size_t cap = 0;
	FILE *f;
	bool first = true, ok = true;

	*in_force = false;
	memset(q, 0, sizeof(*q));
	snprintf(path, sizeof(path), "%s/maildirsize", root);
	if ((f = fopen(path, "re")) == NULL) {
		if (errno != ENOENT)
			return -1;
		if (*deflt == '\0')
			return 0;		/* no quota at all */
		if (quota_create(root, deflt) == -1 || (f = fopen(path, "re")) == NULL)
			return -1;
	}
	while (ok && getline(&line, &cap, f) != -1) {
		int64_t b, c;

		line[strcspn(line, "\n")] = '\0';
		if (first) {
			first = false;
			ok = quota_def(line, q);
		} else if (line[0] == '\0')
			continue;
		else if (!usage_line(line, &b, &c) || __builtin_add_overflow(q->bytes, b, &q->bytes) ||
		    __builtin_add_overflow(q->count, c, &q->count))
			ok = false;
	}
	free(line);
	fclose(f);
	if (!ok || first) {
		log_msg(LOG_ERR, "event=error op=quota path=%s error=\"malformed maildirsize\"",
		    path);
		errno = EINVAL;
		return -1;
	}
	*in_force = true;
	return 0;
}

enum quota_status
quota_check(const char *root, const char *deflt, uint64_t size)
{
	struct quota q;
	bool in_force;

	if (quota_read(root, deflt, &q, &in_force) == -1)
		return QUOTA_BROKEN;
	if (!in_force)
		return QUOTA_OK;
	if (size == 0)
		size = 1;	/* any message at all */
	if (q.max_bytes != 0 && (q.bytes < 0 ? 0 : (uint64_t)q.bytes) + size > q.max_bytes)
		return QUOTA_OVER;
	if (q.max_count != 0 && (q.count < 0 ? 0 : (uint64_t)q.count) + 1 > q.max_count)
		return QUOTA_OVER;
	return QUOTA_OK;
}

void
quota_charge(const char *root, uint64_t size)
{
	char path[PATH_MAX], line[64];
	int fd, n;

	snprintf(path, sizeof(path), "%s/maildirsize", root);
	/* Only where a quota is kept; one write() with O_APPEND is atomic. */
	if ((fd = open(path, O_WRONLY | O_APPEND | O_NOFOLLOW | O_CLOEXEC)) == -1)
		return;
	n = snprintf(line, sizeof(line), "%" PRIu64 " 1\n", size);
	if (write(fd, line, (size_t)n) != n)
		log_msg(LOG_ERR, "event=error op=quota path=%s error=\"%s\"", path,
		    strerror(errno));
	close(fd);
}
