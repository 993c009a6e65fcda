/*
 * edit.h: a filter's header and body edits (verdict.h) applied to a
 * message file, giving a new one.  The header section is parsed from the
 * file, bounded (EDIT_MAX_HEADER); mailslot's own Received field is not
 * in the file, only its place: `nabove` fields of the file come before
 * it.  Header indexes count it, as Postfix counts its own (an insert at
 * 0 goes above it, at 1 just below it).
 */
#ifndef MAILSLOT_EDIT_H
#define MAILSLOT_EDIT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "maildir.h"
#include "verdict.h"

#define EDIT_MAX_HEADER		(1024 * 1024)	/* the header section parsed */
#define EDIT_MAX_FIELDS		20000		/* its fields, and after edits */

/* Where mailslot's Received field goes in a (new) message file. */
struct rcvd_at {
	unsigned	nabove;		/* header fields above it */
	uint64_t	octets, lines;	/* the octets and LFs above it */
};

/*
 * Write `in` with the header edits and the new body of `e` into `out`
 * (opened, empty).  `binary`: BODY=BINARYMIME, where lines are counted
 * as Maildir's W= counts them.  0, or -1 with the reason in `why` (a
 * header section over the bound, an invalid field from a filter, a
 * write error: errno).
 */
int edit_message(struct msg *out, struct msg *in, const struct rcvd_at *in_at,
    const struct edits *e, bool binary, struct rcvd_at *out_at, char *why,
    size_t whysize);

/* A header field name a filter may give: printable ASCII but ':', 1-997 octets. */
bool edit_name_ok(const char *);

/* A value: no control octets but tab and line breaks, none empty-lined. */
bool edit_value_ok(const char *);

#endif
