/*
 * data.h: the DATA decoder, a byte-level state machine and the only place
 * that knows where a message ends.  It turns the SMTP data stream into the
 * stored form (LF line endings, dot-unstuffed), counts sizes and Received
 * headers, and notes bare CR and bare LF.  It never allocates and never
 * looks back: any split of the input gives the same output.
 */
#ifndef MAILSLOT_DATA_H
#define MAILSLOT_DATA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "conf.h"

#define DATA_MAX_HOPS	50	/* more Received headers than this: a loop */

enum dstate {
	D_BOL,		/* at the start of a line that followed CRLF: "." is special */
	D_DOT,		/* "." at D_BOL */
	D_DOTCR,	/* "." CR at D_BOL */
	D_TEXT,		/* inside a line */
	D_CR,		/* a CR seen and held back: CRLF or bare CR decides */
	D_END,		/* the terminating line was read */
};

struct decoder {
	enum dstate	st;
	bool		lf_ends;	/* line_endings=lf: bare LF ends lines */
	bool		bare_cr, bare_lf;
	uint64_t	octets;		/* stored octets (LF line endings) */
	uint64_t	lines;		/* stored LFs: octets + lines is the CRLF size */
	/* header scanning, over the stored form */
	bool		in_header;	/* still inside the header section */
	bool		at_line;	/* at the start of a stored line */
	uint8_t		match;		/* octets of "received:" matched so far */
	unsigned	received;	/* Received: headers seen */
};

void decoder_init(struct decoder *, enum line_endings);

/*
 * Decode from `in` (n octets) into `out` (cap octets, at least 2).  Stops
 * when the input is used up, the output is full, or the end of the data was
 * read (st == D_END); *used and *made say how much of each.  The octets
 * after the terminating line are left for the next command.
 */
void decoder_run(struct decoder *, const char *in, size_t n, size_t *used,
    char *out, size_t cap, size_t *made);

#endif
