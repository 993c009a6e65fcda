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
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "maildir.h"

/*
 * Open a Maildir's subdirectory, creating it only when it is missing
 * (*made is then set: the caller fsyncs `root`, where its name is).
 */
static int
subdir(int root, const char *name, bool *made)
{
	int fd;

	fd = openat(root, name, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
	if (fd == -1 && errno == ENOENT) {
		if (mkdirat(root, name, 0700) == -1 && errno != EEXIST)
			return -1;
		*made = true;
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
 * A directory just made is not durable until the one that holds its name
 * is synced: without it, a crash after the 250 can take the Maildir, and
 * the message in it, away.
 */
static int
sync_parent(const char *path)
{
	char parent[PATH_MAX];
	char *slash;
	int fd, r;

	if (strlcpy(parent, path, sizeof(parent)) >= sizeof(parent)) {
		errno = ENAMETOOLONG;
		return -1;
	}
	/* "a/b/" is "a/b": the parent is "a". */
	for (size_t n = strlen(parent); n > 1 && parent[n - 1] == '/'; n--)
		parent[n - 1] = '\0';
	if ((slash = strrchr(parent, '/')) == NULL)
		strlcpy(parent, ".", sizeof(parent));
	else
		slash[slash == parent] = '\0';	/* "/x": the parent is "/" */
	if ((fd = open(parent, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) == -1)
		return -1;
	r = fsync(fd);
	close(fd);
	return r;
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
	int cur = -1;
	bool made = false;

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
		if (sync_parent(path) == -1)
			return -1;
		md->root = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	}
	if (md->root == -1)
		return -1;
	if ((md->tmp = subdir(md->root, "tmp", &made)) == -1 ||
	    (md->new = subdir(md->root, "new", &made)) == -1 ||
	    (cur = subdir(md->root, "cur", &made)) == -1 ||
	    (made && fsync(md->root) == -1)) {
		int e = errno;
		if (cur != -1)
			close(cur);
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

/* "<sec>.M<usec>P<pid>Q<n>": a new unique base for a name. */
static void
unique_base(char *base, size_t size)
{
	static unsigned long counter;
	struct timeval tv;

	gettimeofday(&tv, NULL);
	snprintf(base, size, "%lld.M%06ldP%ldQ%lu", (long long)tv.tv_sec,
	    (long)tv.tv_usec, (long)getpid(), ++counter);
}

int
msg_open(struct msg *m, struct maildir *md, char *buf, size_t cap)
{

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
		unique_base(m->base, sizeof(m->base));
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

/*
 * One more name for the message's file, in another Maildir's new/ on the
 * same mount, while the file is still open: a unique name of that
 * Maildir's own, with the same S= and W= (one file, one size).  EEXIST
 * (a name taken meanwhile) draws a new name.
 */
int
msg_link_also(struct msg *m, struct maildir *to, char *name, size_t namesize)
{
	char self[32], base[64];

	if (m->err != 0)
		return m->err;
	snprintf(self, sizeof(self), "/proc/self/fd/%d", m->fd);
	for (int tries = 0; tries < 10; tries++) {
		int r;

		unique_base(base, sizeof(base));
		if ((size_t)snprintf(name, namesize, "%s.%s,S=%" PRIu64 ",W=%" PRIu64, base,
		    to->host, m->octets, m->octets + m->lines) >= namesize)
			return ENAMETOOLONG;
		if (m->tmpname[0] != '\0')
			r = linkat(m->md->tmp, m->tmpname, to->new, name, 0);
		else
			r = linkat(AT_FDCWD, self, to->new, name, AT_SYMLINK_FOLLOW);
		if (r == 0)
			return 0;
		if (errno != EEXIST)
			return errno;
	}
	return EEXIST;
}

uint64_t
maildir_mount(int dir)
{
	struct statx sx;
	struct stat st;

	if (statx(dir, "", AT_EMPTY_PATH, STATX_MNT_ID, &sx) == 0 &&
	    (sx.stx_mask & STATX_MNT_ID))
		return sx.stx_mnt_id;
	/* Before Linux 5.8: the device, which a bind mount shares (then EXDEV). */
	if (fstat(dir, &st) == 0)
		return (uint64_t)st.st_dev | (UINT64_C(1) << 63);
	return 0;
}

void
maildir_unpublish(struct maildir *md, const char *name)
{
	unlinkat(md->new, name, 0);
	fsync(md->new);
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

/*
 * The rules of Courier's README.maildirquota, which Dovecot, maildrop and
 * Exim follow: maildirsize is a header line (the quota) and count lines
 * "<octets> <messages>", one appended per delivery or removal.  It is
 * recalculated from a scan of the mailbox when it is missing, when it is
 * QUOTA_FILE_MAX octets or more, when its counts add up below zero, and
 * when a message would go over quota while it holds more than one count
 * line or was written QUOTA_STALE seconds ago or earlier: deletions by a
 * client that does not write maildirsize (a plain Maildir reader, rm) are
 * then seen, and a full mailbox that was emptied takes mail again.
 */
#define QUOTA_FILE_MAX	5120
#define QUOTA_STALE	(15 * 60)
#define QUOTA_TRIES	3	/* scans, when the mailbox changes during one */

struct scan {
	int64_t		bytes, count;
	struct timespec	newest;		/* the latest mtime of a new/ or cur/ */
};

static void
add_sat(int64_t *sum, int64_t n)
{
	if (__builtin_add_overflow(*sum, n, sum))
		*sum = INT64_MAX;
}

/* The size a Maildir++ writer put in the name (",S=<octets>"), or -1. */
static int64_t
name_size(const char *name)
{
	const char *sz = strstr(name, ",S=");
	char *end;
	unsigned long long n;

	if (sz == NULL || sz[3] < '0' || sz[3] > '9')
		return -1;
	errno = 0;
	n = strtoull(sz + 3, &end, 10);
	if (errno != 0 || n > INT64_MAX || (*end != '\0' && *end != ',' && *end != ':'))
		return -1;
	return (int64_t)n;
}

/*
 * new/ and cur/ of one Maildir (a directory fd): the newest of their
 * mtimes and, with `count`, their files and octets.  A file that goes
 * away meanwhile counts for nothing; a missing new/ or cur/ likewise.
 */
static int
scan_maildir(int dir, struct scan *s, bool count)
{
	static const char *const subs[] = { "new", "cur" };

	for (int i = 0; i < 2; i++) {
		struct stat st;
		DIR *d;
		struct dirent *e;
		int fd = openat(dir, subs[i], O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);

		if (fd == -1) {
			if (errno == ENOENT || errno == ENOTDIR || errno == ELOOP)
				continue;
			return -1;
		}
		if (fstat(fd, &st) == -1) {
			close(fd);
			return -1;
		}
		if (st.st_mtim.tv_sec > s->newest.tv_sec || (st.st_mtim.tv_sec ==
		    s->newest.tv_sec && st.st_mtim.tv_nsec > s->newest.tv_nsec))
			s->newest = st.st_mtim;
		if (!count) {
			close(fd);
			continue;
		}
		if ((d = fdopendir(fd)) == NULL) {
			close(fd);
			return -1;
		}
		while ((e = readdir(d)) != NULL) {
			int64_t n;

			if (e->d_name[0] == '.')
				continue;
			if ((n = name_size(e->d_name)) == -1) {
				if (fstatat(dirfd(d), e->d_name, &st, AT_SYMLINK_NOFOLLOW) == -1)
					continue;
				n = st.st_size;
			}
			add_sat(&s->bytes, n);
			add_sat(&s->count, 1);
		}
		closedir(d);
	}
	return 0;
}

/*
 * The mailbox and each of its Maildir++ folders (".name" directories;
 * symbolic links are not followed).  Trash counts, as Dovecot and Exim
 * count it by default (Courier leaves it out only when built so): a
 * maildirsize that both write must hold the same numbers.
 */
static int
scan_mailbox(int root, struct scan *s, bool count)
{
	DIR *d;
	struct dirent *e;
	int fd, r = 0;

	memset(s, 0, sizeof(*s));
	if (scan_maildir(root, s, count) == -1)
		return -1;
	if ((fd = openat(root, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC)) == -1)
		return -1;
	if ((d = fdopendir(fd)) == NULL) {
		close(fd);
		return -1;
	}
	while (r == 0 && (e = readdir(d)) != NULL) {
		int sub;

		if (e->d_name[0] != '.' || strcmp(e->d_name, ".") == 0 ||
		    strcmp(e->d_name, "..") == 0)
			continue;
		sub = openat(root, e->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		if (sub == -1)
			continue;	/* a file, a link, or gone */
		r = scan_maildir(sub, s, count);
		close(sub);
	}
	closedir(d);
	return r;
}

/*
 * Write maildirsize whole: "<header>\n<octets> <count>\n" into a file in
 * tmp/, fsync, then rename() it over the old one (`replace`), or link()
 * it where there is none (someone else's, made meanwhile, is as good);
 * then fsync the mailbox directory, so that the name is durable too.
 */
static int
quota_write(int root, const char *header, const struct scan *s, bool replace)
{
	static unsigned long counter;
	char tmp[128], text[256];
	struct timeval tv;
	int fd, n, e;

	n = snprintf(text, sizeof(text), "%s\n%" PRId64 " %" PRId64 "\n", header,
	    s->bytes, s->count);
	if (n < 0 || (size_t)n >= sizeof(text)) {
		errno = ENAMETOOLONG;
		return -1;
	}
	gettimeofday(&tv, NULL);
	snprintf(tmp, sizeof(tmp), "tmp/%lld.M%06ldP%ldQ%lu.maildirsize",
	    (long long)tv.tv_sec, (long)tv.tv_usec, (long)getpid(), ++counter);
	fd = openat(root, tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd == -1)
		return -1;
	if (write(fd, text, (size_t)n) != n) {
		e = errno == 0 ? EIO : errno;
		goto fail;
	}
	if (fsync(fd) == -1) {
		e = errno;
		goto fail;
	}
	if (close(fd) == -1) {
		fd = -1;
		e = errno;
		goto fail;
	}
	fd = -1;
	if (replace) {
		if (renameat(root, tmp, root, "maildirsize") == -1) {
			e = errno;
			goto fail;
		}
	} else {
		if (linkat(root, tmp, root, "maildirsize", 0) == -1 && errno != EEXIST) {
			e = errno;
			goto fail;
		}
		unlinkat(root, tmp, 0);
	}
	return fsync(root);
fail:
	if (fd != -1)
		close(fd);
	unlinkat(root, tmp, 0);
	errno = e;
	return -1;
}

/*
 * Count the mailbox and write a new maildirsize with `header`.  When a
 * new/ or cur/ changed during the count (a delivery, a client moving
 * mail), count again, QUOTA_TRIES times at most; then the last count
 * stands, and the next recalculation mends it.
 */
static int
quota_recalc(int root, const char *header, bool replace, struct quota *q)
{
	struct scan s, after;

	for (int tries = 0; tries < QUOTA_TRIES; tries++) {
		if (scan_mailbox(root, &s, true) == -1 ||
		    quota_write(root, header, &s, replace) == -1 ||
		    scan_mailbox(root, &after, false) == -1)
			return -1;
		replace = true;
		if (after.newest.tv_sec == s.newest.tv_sec &&
		    after.newest.tv_nsec == s.newest.tv_nsec)
			break;
	}
	q->bytes = s.bytes;
	q->count = s.count;
	return 0;
}

/*
 * "<octets> <count>", each possibly negative, separated by blanks, with
 * blanks around as Courier pads them (to 14 octets a line); nothing else,
 * and no overflow.
 */
static bool
usage_line(const char *line, int64_t *b, int64_t *c)
{
	char *end;

	line += strspn(line, " \t");
	if (*line != '-' && (*line < '0' || *line > '9'))
		return false;
	errno = 0;
	*b = strtoll(line, &end, 10);
	if (errno != 0 || end == line || (*end != ' ' && *end != '\t'))
		return false;
	line = end + strspn(end, " \t");
	if (*line != '-' && (*line < '0' || *line > '9'))
		return false;
	*c = strtoll(line, &end, 10);
	if (errno != 0 || end == line)
		return false;
	return end[strspn(end, " \t")] == '\0';
}

static bool
over(const struct quota *q, uint64_t size)
{
	uint64_t bytes = q->bytes < 0 ? 0 : (uint64_t)q->bytes;
	uint64_t count = q->count < 0 ? 0 : (uint64_t)q->count;

	if (q->max_bytes != 0 && (bytes > q->max_bytes || q->max_bytes - bytes < size))
		return true;
	return q->max_count != 0 && count >= q->max_count;
}

static enum quota_status
broken(const char *root, const char *what)
{
	log_msg(LOG_ERR, "event=error op=quota path=%s/maildirsize error=\"%s\"", root, what);
	return QUOTA_BROKEN;
}

/* Recalculate into the mailbox at `root` (opened only now: most checks need no scan). */
static enum quota_status
recalc_at(const char *root, const char *header, bool replace, struct quota *q, uint64_t size)
{
	int fd = open(root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	int r;

	if (fd == -1)
		return broken(root, strerror(errno));
	r = quota_recalc(fd, header, replace, q);
	close(fd);
	if (r == -1)
		return broken(root, strerror(errno));
	return over(q, size) ? QUOTA_OVER : QUOTA_OK;
}

enum quota_status
quota_check(const char *root, const char *deflt, uint64_t size)
{
	char path[PATH_MAX], buf[QUOTA_FILE_MAX + 1], header[QUOTA_FILE_MAX];
	struct quota q;
	struct stat st;
	size_t len = 0;
	int64_t lines = 0;
	bool recalc;
	char *p, *nl;
	int fd;

	if (size == 0)
		size = 1;	/* any message at all */
	if ((size_t)snprintf(path, sizeof(path), "%s/maildirsize", root) >= sizeof(path))
		return broken(root, strerror(ENAMETOOLONG));
	if ((fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC)) == -1) {
		int n = 0;

		if (errno != ENOENT)
			return broken(root, strerror(errno));
		if (*deflt == '\0')
			return QUOTA_OK;		/* no quota at all */
		if (!quota_def(deflt, &q))
			return broken(root, "bad quota");
		if (q.max_bytes == 0 && q.max_count == 0)
			return QUOTA_OK;		/* "0S": no limit, nothing to keep */
		/* The header in the form Dovecot writes: "<octets>S,<count>C", either alone. */
		if (q.max_bytes != 0)
			n += snprintf(header + n, sizeof(header) - (size_t)n, "%" PRIu64 "S",
			    q.max_bytes);
		if (q.max_count != 0)
			snprintf(header + n, sizeof(header) - (size_t)n, "%s%" PRIu64 "C",
			    n > 0 ? "," : "", q.max_count);
		return recalc_at(root, header, false, &q, size);
	}
	/* At most QUOTA_FILE_MAX octets are read: a longer file is recalculated. */
	while (len < QUOTA_FILE_MAX) {
		ssize_t n = read(fd, buf + len, QUOTA_FILE_MAX - len);

		if (n == -1 && errno == EINTR)
			continue;
		if (n == -1) {
			int e = errno;

			close(fd);
			return broken(root, strerror(e));
		}
		if (n == 0)
			break;
		len += (size_t)n;
	}
	if (fstat(fd, &st) == -1)
		st.st_mtime = 0;
	close(fd);
	buf[len] = '\0';
	recalc = len >= QUOTA_FILE_MAX;
	if (memchr(buf, '\0', len) != NULL || (nl = strchr(buf, '\n')) == NULL)
		return broken(root, "malformed maildirsize");
	*nl = '\0';
	strlcpy(header, buf, sizeof(header));
	if (!quota_def(header, &q))
		return broken(root, "malformed maildirsize");
	q.bytes = q.count = 0;
	/* Past QUOTA_FILE_MAX only the header counts: the rest is cut short. */
	for (p = nl + 1; !recalc && *p != '\0'; p = nl + 1) {
		int64_t b, c;

		if ((nl = strchr(p, '\n')) == NULL)
			return broken(root, "malformed maildirsize");
		*nl = '\0';
		if (*p == '\0')
			continue;
		if (!usage_line(p, &b, &c) || __builtin_add_overflow(q.bytes, b, &q.bytes) ||
		    __builtin_add_overflow(q.count, c, &q.count))
			return broken(root, "malformed maildirsize");
		lines++;
	}
	if (q.bytes < 0 || q.count < 0)
		recalc = true;		/* more taken out than was ever put in */
	if (!recalc && over(&q, size) &&
	    (lines > 1 || time(NULL) - st.st_mtime >= QUOTA_STALE))
		recalc = true;
	if (recalc)
		return recalc_at(root, header, true, &q, size);
	return over(&q, size) ? QUOTA_OVER : QUOTA_OK;
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
