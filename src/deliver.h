/*
 * deliver.h: one accepted message to all its targets, all or nothing.
 *
 * The message streams into one file (the first Maildir's copy, or an
 * unnamed spool file when no Maildir is a target).  At the end every other
 * copy gets its own trace headers and the body copied in the kernel; all
 * are fsynced in tmp/, forwards must succeed, and only then are the copies
 * linked into their new/ directories.  A failure before that leaves no
 * copy in any new/.
 */
#ifndef MAILSLOT_DELIVER_H
#define MAILSLOT_DELIVER_H

#include <stddef.h>
#include <stdint.h>

#include "addr.h"
#include "conf.h"
#include "maildir.h"
#include "route.h"

struct rcpt {
	struct mailbox	mb;
	struct route	rt;
};

/* What the Received header says, besides the recipients. */
struct trace {
	const char	*helo;
	const char	*peer;		/* "host [ip]" or "unknown" */
	const char	*protocol;	/* RFC 3848 */
	const char	*tls;		/* NULL, or how TLS was used */
	const char	*sender;	/* "" for <> */
};

struct delivery;

/*
 * Plan the copies for `n` accepted recipients and open the first file
 * with its trace written; *primary is where the data goes.  NULL and
 * errno when the file cannot be created.
 */
struct delivery *delivery_begin(const struct config *, const struct trace *,
    const struct rcpt *, size_t n, struct msg **primary);

/* The outcome of delivery_commit. */
enum dresult { DR_OK, DR_LOCAL_ERROR, DR_NO_SPACE, DR_QUOTA, DR_OVER_QUOTA, DR_FORWARD,
	DR_TERMINAL,		/* SEND: a terminal did not take the whole message */
	DR_TERMINAL_TOO_BIG,	/* SEND: more than a terminal is given */
};

/*
 * Make every copy durable and visible; `name` gets the first copy's file
 * name (the queue id for the reply).  The delivery is freed either way.
 */
enum dresult delivery_commit(struct delivery *, char *name, size_t size,
    int *err);

/* Give up: remove every tmp file.  The delivery is freed. */
void delivery_abort(struct delivery *);

/* The queue id of the delivery (the first file's unique base). */
const char *delivery_id(const struct delivery *);

#endif
