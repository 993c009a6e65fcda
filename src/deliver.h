/*
 * deliver.h: one accepted message to all its targets, all or nothing.
 *
 * The message streams into one file (the first Maildir's, or an unnamed
 * spool file when no Maildir is a target), which every Maildir on the same
 * mount shares: it is hard-linked into each new/.  A Maildir on another
 * mount (link() gives EXDEV) gets a file of its own at the end, with its
 * trace and the body copied in the kernel.  A file names its recipient
 * (Delivered-To, "for") only when it is for exactly one.  All files are
 * fsynced, quotas checked, forwards must succeed, and only then are the
 * links made into the new/ directories.  A failure before that leaves
 * nothing in any new/; one after takes every link back.
 */
#ifndef MAILSLOT_DELIVER_H
#define MAILSLOT_DELIVER_H

#include <sys/types.h>

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "addr.h"
#include "conf.h"
#include "maildir.h"
#include "route.h"
#include "verdict.h"

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
	bool		 binary;	/* BODY=BINARYMIME: stored as received, CRLF kept */
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

/*
 * LMTP (RFC 2033 4.2): as delivery_commit, but each envelope recipient is
 * committed on its own, for a MAIL transaction (no terminals).  out[i]
 * is the outcome for r[i] (the recipients given to delivery_begin, in
 * their order): DR_OK when every copy of it is durable in new/ and its
 * forwards took the message; else nothing of it is left in any new/ (but
 * a Maildir it shares with a recipient that is delivered, which keeps its
 * one copy) and `err` is the errno, when there is one.  A recipient a
 * filter removed is DR_OK (as a discard); one a filter added is logged
 * only.  The delivery is freed.
 */
struct doutcome {
	enum dresult	r;
	int		err;
	char		name[MSG_NAMESIZE];	/* its copy's file name, or the queue id */
};
void delivery_commit_each(struct delivery *, const struct rcpt *r, size_t n,
    struct doutcome *out);

/* Give up: remove every tmp file.  The delivery is freed. */
void delivery_abort(struct delivery *);

/* The queue id of the delivery (the first file's unique base). */
const char *delivery_id(const struct delivery *);

/*
 * ---- Filters (verdict.h) ----
 * With a milter or a filter_command configured (conf_filtered), and only
 * then, delivery_begin streams the message into a spool file (unnamed,
 * in the first Maildir's tmp/; in $TMPDIR when no Maildir is a target),
 * as received and without trace, and delivery_commit makes every copy
 * from it: its own trace, the (edited) header section, the (new or
 * original) body, copied in the kernel.  Without filters none of this
 * runs and nothing changes.
 */
bool delivery_filtered(const struct delivery *);

/*
 * The message as the filters see it: `len` octets of `fd` from `off`, in
 * the stored form (dot-unstuffed; LF line ends, *lf_stored, but under
 * BODY=BINARYMIME, stored as received), without mailslot's own trace.
 * After an edit it is the edited message.  0, or the errno of a write
 * error of the spool (then the message cannot be stored: 451).
 */
int delivery_message(struct delivery *, int *fd, off_t *off, uint64_t *len,
    bool *lf_stored);

/*
 * Apply a filter's edits: the sender and the recipients to the plan (an
 * added recipient is routed like RCPT, with `mode`; one that does not
 * route is logged and dropped), then the header and body edits to the
 * message (edit.h).  Call it once per filter, in the filters' order, so
 * that each filter's header indexes count what the earlier ones did.
 * 0, or -1 with the reason in `why` (the message must then be refused
 * with 451: a header section too long to edit, an invalid field).
 */
int delivery_edit(struct delivery *, const struct router *, enum rmode,
    const struct edits *, char *why, size_t whysize);

/*
 * Quarantine: every copy goes to the Maildir++ folder .Junk of its
 * mailbox (made, durably, when missing) instead; forwards and terminals
 * are dropped.  0, or -1 and errno.
 */
int delivery_quarantine(struct delivery *);

/* The recipients now (after edits), i = 0...; NULL past the last. */
const char *delivery_rcpt(const struct delivery *, size_t i);
/* The sender now ("" for <>). */
const char *delivery_sender(const struct delivery *);
/* Copies, forwards and terminals left: 0 when the edits left no recipient. */
size_t delivery_targets(const struct delivery *);
/* How many header fields are above mailslot's Received field now. */
unsigned delivery_received_index(const struct delivery *);

/*
 * The first copy as it would be stored now (the forwarded form when no
 * Maildir is a target), in pieces to write in order: a buffer (fd -1),
 * or `flen` octets of `fd` from `off`.  The count, 0 on failure.  Valid
 * until the next call or the end of the delivery.
 */
struct dpiece {
	const char	*buf;
	size_t		 len;
	int		 fd;
	off_t		 off;
	uint64_t	 flen;
};
size_t delivery_first_copy(struct delivery *, struct dpiece p[4]);

#endif
