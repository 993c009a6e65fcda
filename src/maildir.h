/*
 * maildir.h: writing one message into a Maildir, durably.
 *
 * The commit order is the whole point: a file in tmp/ (unnamed, or created
 * exclusively), write, fsync, link() into new/ (never rename over a name),
 * close (checked), fsync new/, unlink the tmp name if there is one.  Only
 * when every step has returned 0 may the client hear 250; every failure
 * leaves nothing in new/.  deliver.c runs the steps for all the copies of
 * a message at once.
 */
#ifndef MAILSLOT_MAILDIR_H
#define MAILSLOT_MAILDIR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define MSG_BUFSIZE	(32 * 1024)
#define MSG_NAMESIZE	256
/* A large message's writeback starts every so many octets (maildir.c). */
#define MSG_WRITEBEHIND	(8 * 1024 * 1024)

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
	uint64_t	 mark, mark_lines; /* the octets and lines of the trace headers */
	char		*buf;		/* the write buffer, cap octets */
	size_t		 len, cap;
	uint64_t	 flushed, started; /* octets written; their writeback started */
	char		 base[64];	/* "<sec>.M<usec>P<pid>Q<n>": the queue id */
	char		 tmpname[MSG_NAMESIZE];
};

/* Open (creating, 0700, when missing) the Maildir at `path`; -1 and errno. */
int maildir_open(struct maildir *, const char *path, const char *hostname);

/*
 * Make the Maildir++ folder `path` (".Junk" under a mailbox) if it is
 * missing, durably: the directory, its maildirfolder file, tmp/ new/
 * cur/, each fsynced into its parent.  0, or -1 and errno.
 */
int maildir_make_folder(const char *path);

/* Keep an open Maildir for the next maildir_open() of `path` (it takes the fds). */
void maildir_keep(const struct maildir *, const char *path);

/* Octets free for unprivileged users on the Maildir's file system, or -1. */
int maildir_free(const struct maildir *, uint64_t *);

/* Start a message: a new file in tmp/, written through `buf`.  -1 and errno. */
int msg_open(struct msg *, struct maildir *, char *buf, size_t cap);

/* An unnamed message file that no Maildir will see (forwards, terminals). */
int msg_open_spool(struct msg *, char *buf, size_t cap);

/* Append octets that the caller already has (headers). */
void msg_put(struct msg *, const char *, size_t);

/* Room to decode into directly, and how much of it was then used. */
static inline char *msg_room(struct msg *m, size_t *cap)
{
	*cap = m->cap - m->len;
	return m->buf + m->len;
}
void msg_wrote(struct msg *, size_t n, uint64_t lines);

/* Drop what is buffered and everything after: the message will be refused. */
void msg_discard(struct msg *);

/*
 * The commit, in steps, so that several copies are all durable before any
 * is visible: msg_flush each, fsync_all (fsync.h) their files, msg_link
 * each into new/ (visible, not yet durable; on error the message is
 * aborted), fsync_all their new/ directories, then msg_done each (drops
 * the tmp/ name).  maildir_unpublish takes a linked copy back out of new/.
 * All but msg_done and maildir_unpublish return 0 or an errno.
 */
int msg_flush(struct msg *);
int msg_link(struct msg *, char *name, size_t namesize);
void msg_done(struct msg *);
void maildir_unpublish(struct maildir *, const char *name);

/*
 * Several Maildirs, one file: before msg_link (which closes the file),
 * msg_link_also gives it a name of its own in the new/ of each other
 * Maildir on the same mount (maildir_mount of that new/ equal to that of
 * the message's tmp/; across mounts link() gives EXDEV).  The name goes
 * in `name`; 0 or an errno.  maildir_mount is 0 when it cannot be told.
 */
int msg_link_also(struct msg *, struct maildir *to, char *name, size_t namesize);
uint64_t maildir_mount(int dir);

/* Append `len` octets of `src`'s file from `off` on (the body, for another copy). */
int msg_copy_from(struct msg *dst, struct msg *src, uint64_t off, uint64_t len,
    uint64_t lines);

/* Is there room for `size` octets on `path`'s file system beyond `min_free`? */
bool maildir_room(const char *path, uint64_t min_free, uint64_t size);

/*
 * Maildir++ quota (the maildirsize file, as Courier and Dovecot keep it):
 * the mailbox's own definition wins over `deflt` (a size, or "NS,MC").
 */
enum quota_status { QUOTA_OK, QUOTA_OVER, QUOTA_BROKEN };
enum quota_status quota_check(const char *root, const char *deflt, uint64_t size);
/* After a delivery of `size` octets: one line more in maildirsize. */
void quota_charge(const char *root, uint64_t size);
/* For -t: a quota definition mailslot understands. */
bool quota_valid(const char *def);

/* Give up: close and unlink the tmp file. */
void msg_abort(struct msg *);

#endif
