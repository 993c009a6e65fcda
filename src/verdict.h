/*
 * verdict.h: what the filters (milters, the filter command) decided about
 * a transaction or one of its steps, and what they asked to change in the
 * message before it is stored.  Both filter kinds fill these; the session
 * (smtp.c) turns a verdict into a reply from the catalogue, and the
 * delivery applies the edits before anything is synced.
 */
#ifndef MAILSLOT_VERDICT_H
#define MAILSLOT_VERDICT_H

#include <stdbool.h>
#include <stddef.h>

enum verdict {
	VD_CONTINUE,	/* no objection: go on with the next step or filter */
	VD_ACCEPT,	/* accept, and skip the remaining steps for this message */
	VD_REJECT,	/* 550 5.7.1, or the filter's own 5xx reply */
	VD_TEMPFAIL,	/* 451 4.7.1, or the filter's own 4xx reply */
	VD_DISCARD,	/* 250 to the client, nothing stored, logged */
	VD_QUARANTINE,	/* stored in each target's .Junk folder, logged */
};

#define VREPLY_MAX	1024	/* a filter's own reply, all its lines */

/*
 * A filter's own reply, checked before it is kept: every line a 4xx or
 * 5xx code matching the verdict, printable ASCII, at most VREPLY_MAX
 * octets in all.  Lines are separated by '\n' and carry no code: the
 * session writes "code-enh text" itself.  text[0] == '\0': none.
 */
struct vreply {
	int	code;			/* 4xx or 5xx; 0 when none */
	char	enh[16];		/* "5.7.1"; "" when the filter gave none */
	char	text[VREPLY_MAX];
};

/* One change to the header section, in the order the filters asked. */
enum hedit_op {
	HE_ADD,		/* append at the end of the header section */
	HE_INSERT,	/* insert at index idx (0: above everything) */
	HE_CHANGE,	/* the idx-th (1-based) field called name; value NULL deletes */
};

struct hedit {
	enum hedit_op	 op;
	unsigned	 idx;
	char		*name;
	char		*value;		/* as sent, without the name and colon */
};

/*
 * Everything the filters asked to change for one message.  Header
 * indexes count mailslot's own Received field, as Postfix does (an insert
 * at 0 goes above it, at 1 just below it); the filters never see it.
 */
struct edits {
	struct hedit	*h;
	size_t		 nh, caph;
	size_t		 hoctets;	/* the names and values in h */
	int		 body_fd;	/* -1: body unchanged; else a file with the new body */
	char		**add_rcpt;	/* addresses, routed like RCPT */
	size_t		 nadd;
	char		**del_rcpt;
	size_t		 ndel;
	char		*sender;	/* NULL: unchanged */
	char		 reason[256];	/* why discarded or quarantined, for the log */
};

void edits_init(struct edits *);
void edits_free(struct edits *);	/* and ready for use again */

#define EDITS_MAX_HEADERS	1000	/* header edits for one message */
#define EDITS_MAX_OCTETS	(1024 * 1024)	/* their names and values together */
#define EDITS_MAX_RCPTS		1000	/* recipients added, or deleted */

/*
 * Recording edits (verdict.c); each string is copied.  0, or -1 and errno
 * (E2BIG past the bounds above).  A header value may hold line breaks
 * ("\n" or "\r\n") for folded lines.  The new body given to edits_body is
 * a file read from offset 0 to its end, in the stored form: LF line ends
 * (as received under BINARYMIME); the edits own the fd from then on.
 * An address is "local@domain", without angle brackets ("" for <>).
 */
int edits_header(struct edits *, enum hedit_op, unsigned idx, const char *name,
    const char *value);
int edits_rcpt(struct edits *, bool add, const char *addr);
int edits_sender(struct edits *, const char *addr);
void edits_body(struct edits *, int fd);
bool edits_any(const struct edits *);

#endif
