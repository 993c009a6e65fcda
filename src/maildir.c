/*
 * maildir.c: unique names, the tmp/ write, fsync, link into new/.
 *
 * Unique names are the ones Courier and Dovecot write,
 * <sec>.M<usec>P<pid>Q<n>.<host>,S=<octets>,W=<octets with CRLF>, with '/'
 * and ':' in the host written as \057 and \072.  The tmp/ file is created
 * with O_EXCL, and new/ gets it through link(), which refuses an existing
 * name: two deliveries can never share a file.  Unlike qmail, Postfix,
 * OpenSMTPD and Exim, mailslot also fsyncs new/ after the link, since until
 * then a crash can lose a message that was already acknowledged.
 */
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/time.h>

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "maildir.h"

static int
subdir(int root, const char *name)
{
	int fd;

	if (mkdirat(root, name, 0700) == -1 && errno != EEXIST)
		return -1;
	fd = openat(root, name, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
	if (fd != -1 && faccessat(root, name, W_OK | X_OK, AT_EACCESS) == -1) {
		int e = errno;
		close(fd);
		errno = e;
		return -1;
	}
	return fd;
}

int
maildir_open(struct maildir *md, const char *path, const char *hostname)
{
	int cur;
	size_t o = 0;

	md->root = md->tmp = md->new = -1;
	if (mkdir(path, 0700) == -1 && errno != EEXIST)
		return -1;
	if ((md->root = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) == -1)
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

int
maildir_free(const struct maildir *md, uint64_t *avail)
{
	struct statvfs sv;

	if (fstatvfs(md->root, &sv) == -1)
		return -1;
	*avail = (uint64_t)sv.f_bavail * sv.f_frsize;
	return 0;
}

int
msg_open(struct msg *m, struct maildir *md)
{
	static unsigned long counter;
	struct timeval tv;

	m->md = md;
	m->err = 0;
	m->discard = false;
	m->octets = m->lines = 0;
	m->len = 0;
	for (int tries = 0; tries < 10; tries++) {
		gettimeofday(&tv, NULL);
		snprintf(m->base, sizeof(m->base), "%lld.M%06ldP%ldQ%lu",
		    (long long)tv.tv_sec, (long)tv.tv_usec, (long)getpid(), ++counter);
		snprintf(m->tmpname, sizeof(m->tmpname), "%s.%s", m->base, md->host);
		m->fd = openat(md->tmp, m->tmpname,
		    O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
		if (m->fd != -1)
			return 0;
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
	m->len = 0;
}

void
msg_wrote(struct msg *m, size_t n, uint64_t lines)
{
	m->len += n;
	m->octets += n;
	m->lines += lines;
	if (sizeof(m->buf) - m->len < 512)
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
		msg_wrote(m, k, lf);
		if (k == cap)
			flush(m);
		p += k;
		n -= k;
	}
}

void
msg_discard(struct msg *m)
{
	m->discard = true;
	m->len = 0;
}

void
msg_abort(struct msg *m)
{
	if (m->fd != -1) {
		close(m->fd);
		m->fd = -1;
	}
	if (m->tmpname[0] != '\0')
		unlinkat(m->md->tmp, m->tmpname, 0);
	m->tmpname[0] = '\0';
}

int
msg_commit(struct msg *m, char *name, size_t namesize)
{
	int e, fd = m->fd;

	flush(m);
	m->fd = -1;
	if (m->err == 0 && fsync(fd) == -1)
		m->err = errno;
	if (close(fd) == -1 && m->err == 0)
		m->err = errno;
	if (m->err != 0)
		goto fail;
	if ((size_t)snprintf(name, namesize, "%s.%s,S=%" PRIu64 ",W=%" PRIu64,
	    m->base, m->md->host, m->octets, m->octets + m->lines) >= namesize) {
		m->err = ENAMETOOLONG;
		goto fail;
	}
	if (linkat(m->md->tmp, m->tmpname, m->md->new, name, 0) == -1) {
		m->err = errno;
		goto fail;
	}
	if (fsync(m->md->new) == -1) {
		/* Not durable, so not delivered: take it back before saying 451. */
		m->err = errno;
		unlinkat(m->md->new, name, 0);
		goto fail;
	}
	unlinkat(m->md->tmp, m->tmpname, 0);
	m->tmpname[0] = '\0';
	return 0;
fail:
	e = m->err;
	msg_abort(m);
	return e;
}
