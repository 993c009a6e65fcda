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

#define DATA_MAX_HOPS	50	/* more Received headers than this: a loop */

/* What the stream is. */
enum dmode {
	DM_DOT_CRLF,	/* DATA: ends at CRLF "." CRLF only (line_endings crlf, strict) */
	DM_DOT_LF,	/* DATA: a bare LF ends lines too, LF "." LF the data (lf) */
	DM_CHUNK,	/* BDAT 7BIT/8BITMIME: CRLF becomes LF, nothing else changes */
	DM_BINARY,	/* BDAT BINARYMIME: stored octet for octet */
};

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
	enum dmode	mode;
	bool		bare_cr, bare_lf;
	bool		prev_cr;	/* DM_BINARY: the last octet was a CR */
	uint64_t	octets;		/* stored octets */
	/*
	 * Octets that the CRLF form adds, so that octets + lines is the size
	 * with CRLF line endings, Maildir's W=: the stored LFs, or in
	 * DM_BINARY the LFs without a CR before them.
	 */
	uint64_t	lines;
	/* header scanning, over the stored form */
	bool		in_header;	/* still inside the header section */
	bool		at_line;	/* at the start of a stored line */
	bool		line_cr;	/* ... and a CR is all it has so far */
	uint8_t		match;		/* octets of "received:" matched so far */
	unsigned	received;	/* Received: headers seen */
};

void decoder_init(struct decoder *, enum dmode);

/*
 * Decode from `in` (n octets) into `out` (cap octets, at least 2).  Stops
 * when the input is used up, the output is full, or the end of the data was
 * read (st == D_END); *used and *made say how much of each.  The octets
 * after the terminating line are left for the next command.
 */
void decoder_run(struct decoder *, const char *in, size_t n, size_t *used,
    char *out, size_t cap, size_t *made);

/*
 * The chunked modes have no terminating line: at BDAT LAST, write out a CR
 * still held back (`out` has room for 1).  Returns the octets written.
 */
size_t decoder_finish(struct decoder *, char *out);

#endif
