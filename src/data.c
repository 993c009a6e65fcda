/*
 * data.c: the DATA decoder (see data.h).
 *
 * Line endings.  RFC 5321 2.3.8 and 4.1.1.4 end the data only at
 * CRLF "." CRLF, and the smuggling attacks of 2023 (CVE-2023-51764/5/6)
 * live in the gap between that rule and servers that also accept LF "." LF
 * or other lookalikes.  In crlf and strict mode nothing else ends the data:
 * a bare LF still ends a stored line (so `curl -T` without --crlf works),
 * but a "." after it is plain text.  In lf mode (pipes, terminals) a bare
 * LF is a line end like CRLF, and LF "." LF ends the data too.
 *
 * Dot-unstuffing (4.5.2) removes the "." that starts a line followed by
 * other text.  A "." followed by a bare CR or a bare LF is exactly the
 * lookalike of an end of data: it is stored as sent, so the message shows
 * what the client really wrote.
 *
 * BDAT chunks (RFC 3030) are counted, not terminated: there are no dots to
 * undo, and only CRLF becomes LF; BINARYMIME is stored as it came.
 */
#include <string.h>

#include "data.h"

static const char received[] = "received:";
#define RECEIVED_LEN (sizeof(received) - 1)

void
decoder_init(struct decoder *d, enum dmode mode)
{
	memset(d, 0, sizeof(*d));
	d->st = mode == DM_DOT_CRLF || mode == DM_DOT_LF ? D_BOL : D_TEXT;
	d->mode = mode;
	d->in_header = true;
	d->at_line = true;
}

/* Follow the stored octets through the header section. */
static void
scan_header(struct decoder *d, const char *p, size_t n)
{
	for (size_t i = 0; i < n && d->in_header; i++) {
		char c = p[i];

		if (d->at_line) {
			if (c == '\n') {
				d->in_header = false;	/* the empty line: LF, or CR LF */
				break;
			}
			/* Stored as sent (BINARYMIME), an empty line is CR LF. */
			if (c == '\r' && !d->line_cr) {
				d->line_cr = true;
				continue;
			}
			d->at_line = false;
			/* A line that starts with CR is no Received header. */
			d->match = d->line_cr ? RECEIVED_LEN + 1 : 0;
			d->line_cr = false;
		}
		if (c == '\n') {
			d->at_line = true;
		} else if (d->match < RECEIVED_LEN) {
			char lc = c >= 'A' && c <= 'Z' ? (char)(c + 32) : c;

			if (lc != received[d->match])
				d->match = RECEIVED_LEN + 1;	/* not this line */
			else if (++d->match == RECEIVED_LEN)
				d->received++;
		}
	}
}

static inline void
emit(struct decoder *d, char *out, size_t *o, const char *p, size_t n)
{
	memcpy(out + *o, p, n);
	*o += n;
	d->octets += n;
	if (d->in_header)
		scan_header(d, p, n);
}

static inline void
emit_lf(struct decoder *d, char *out, size_t *o)
{
	emit(d, out, o, "\n", 1);
	d->lines++;
}

void
decoder_run(struct decoder *d, const char *in, size_t n, size_t *used,
    char *out, size_t cap, size_t *made)
{
	size_t i = 0, o = 0;
	bool lf_ends = d->mode == DM_DOT_LF;

	if (d->mode == DM_BINARY) {
		size_t k = n < cap ? n : cap;

		for (size_t j = 0; j < k; j++) {
			if (in[j] == '\n' && !d->prev_cr)
				d->lines++;
			d->prev_cr = in[j] == '\r';
		}
		emit(d, out, &o, in, k);
		*used = *made = k;
		return;
	}

	/* Each step writes at most two octets; a step that writes none reprocesses. */
	while (i < n && d->st != D_END && cap - o >= 2) {
		char c = in[i];

		switch (d->st) {
		case D_BOL:
			if (c == '.') {
				d->st = D_DOT;
				i++;
			} else
				d->st = D_TEXT;
			break;
		case D_DOT:
			if (c == '\r') {
				d->st = D_DOTCR;
				i++;
			} else if (c == '\n') {
				i++;
				d->bare_lf = true;
				if (lf_ends) {
					d->st = D_END;
					break;
				}
				emit(d, out, &o, ".", 1);	/* stored as sent */
				emit_lf(d, out, &o);
				d->st = D_TEXT;
			} else
				d->st = D_TEXT;		/* unstuff: the dot is dropped */
			break;
		case D_DOTCR:
			if (c == '\n') {
				i++;
				d->st = D_END;
			} else {
				emit(d, out, &o, ".", 1);	/* "." bare CR: as sent */
				d->st = D_CR;
			}
			break;
		case D_CR:
			if (c == '\n') {
				i++;
				emit_lf(d, out, &o);
				d->st = d->mode == DM_CHUNK ? D_TEXT : D_BOL;
			} else {
				d->bare_cr = true;
				emit(d, out, &o, "\r", 1);
				d->st = D_TEXT;
			}
			break;
		case D_TEXT:
			if (c == '\r') {
				d->st = D_CR;
				i++;
			} else if (c == '\n') {
				i++;
				d->bare_lf = true;
				emit_lf(d, out, &o);
				d->st = lf_ends ? D_BOL : D_TEXT;
			} else {
				/* The common case: copy the run up to the next CR or LF. */
				size_t max = n - i < cap - o ? n - i : cap - o, k;
				const char *p = in + i, *lf, *cr;

				lf = memchr(p, '\n', max);
				k = lf != NULL ? (size_t)(lf - p) : max;
				cr = memchr(p, '\r', k);
				if (cr != NULL && cr + 1 == lf) {
					/* The most common case: a whole line and its CRLF. */
					emit(d, out, &o, p, k - 1);
					emit_lf(d, out, &o);
					i += k + 1;
					d->st = d->mode == DM_CHUNK ? D_TEXT : D_BOL;
					break;
				}
				if (cr != NULL)
					k = (size_t)(cr - p);
				emit(d, out, &o, p, k);
				i += k;
			}
			break;
		case D_END:
			break;
		}
	}
	*used = i;
	*made = o;
}

size_t
decoder_finish(struct decoder *d, char *out)
{
	size_t o = 0;

	if (d->st == D_CR) {
		d->bare_cr = true;
		emit(d, out, &o, "\r", 1);
		d->st = D_TEXT;
	}
	return o;
}
