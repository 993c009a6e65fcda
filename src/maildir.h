/*
 * maildir.h: writing one message into a Maildir, durably.
 *
 * The commit order is the whole point: exclusive create in tmp/, write,
 * fsync, close (checked), link() into new/ (never rename over a name),
 * fsync new/, unlink the tmp name.  Only when msg_commit returns 0 may the
 * client hear 250; every failure leaves nothing in new/.
 */
#ifndef MAILSLOT_MAILDIR_H
#define MAILSLOT_MAILDIR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define MSG_BUFSIZE	(128 * 1024)
#define MSG_NAMESIZE	256

struct maildir {
	int	root, tmp, new;		/* directory fds */
	char	host[128];		/* the host part of unique names, escaped */
};

struct msg {
	struct maildir	*md;
	int		 fd;
	int		 err;		/* first errno; later writes are dropped */
	bool		 discard;	/* keep nothing (the message is refused) */
	uint64_t	 octets, lines;	/* as stored: S= is octets, W= is both */
	size_t		 len;
	char		 base[64];	/* "<sec>.M<usec>P<pid>Q<n>": the queue id */
	char		 tmpname[MSG_NAMESIZE];
	char		 buf[MSG_BUFSIZE];
};

/* Open (creating, 0700, when missing) the Maildir at `path`; -1 and errno. */
int maildir_open(struct maildir *, const char *path, const char *hostname);

/* Octets free for unprivileged users on the Maildir's file system, or -1. */
int maildir_free(const struct maildir *, uint64_t *);

/* Start a message: a new file in tmp/.  -1 and errno. */
int msg_open(struct msg *, struct maildir *);

/* Append octets that the caller already has (headers). */
void msg_put(struct msg *, const char *, size_t);

/* Room to decode into directly, and how much of it was then used. */
static inline char *msg_room(struct msg *m, size_t *cap)
{
	*cap = sizeof(m->buf) - m->len;
	return m->buf + m->len;
}
void msg_wrote(struct msg *, size_t n, uint64_t lines);

/* Drop what is buffered and everything after: the message will be refused. */
void msg_discard(struct msg *);

/* Make it durable and visible in new/; `name` gets its file name.  0 or an errno. */
int msg_commit(struct msg *, char *name, size_t namesize);

/* Give up: close and unlink the tmp file. */
void msg_abort(struct msg *);

#endif
