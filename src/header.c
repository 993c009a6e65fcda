/*
 * header.c: find a field in a stored message's header section.  A small
 * state machine over the octets as they are read, so that a field split
 * across two reads, a folded field and CRLF or LF lines need nothing more;
 * it stops at the empty line that ends the header section, at the first
 * field of that name, or after HEADER_SCAN_MAX octets.
 */
#include <ctype.h>
#include <string.h>
#include <unistd.h>

#include "header.h"

enum hstate {
	H_START,	/* at the start of a line */
	H_NAME,		/* in a field name that may still be `name` */
	H_SKIP,		/* in a line that is of no interest */
	H_VALUE,	/* in the value sought */
	H_VALUE_NL,	/* after its line: a space or tab folds, else it is over */
	H_DONE,
};

struct hscan {
	const char	*name;
	size_t		 nlen, i;
	enum hstate	 st;
	char		*out;
	size_t		 size, len;
	bool		 found;
};

static void
step(struct hscan *h, unsigned char c)
{
	switch (h->st) {
	case H_START:
		if (c == '\n')
			h->st = H_DONE;		/* the end of the header section */
		else if (c == '\r')
			;			/* its CR, or a stray one */
		else if (c == ' ' || c == '\t')
			h->st = H_SKIP;		/* another field's folded line */
		else {
			h->i = 0;
			h->st = H_NAME;
			step(h, c);
		}
		break;
	case H_NAME:
		if (h->i == h->nlen && c == ':') {
			h->found = true;
			h->st = H_VALUE;
		} else if (h->i < h->nlen && tolower(c) == (unsigned char)h->name[h->i])
			h->i++;
		else
			h->st = c == '\n' ? H_START : H_SKIP;
		break;
	case H_SKIP:
		if (c == '\n')
			h->st = H_START;
		break;
	case H_VALUE_NL:
		if (c != ' ' && c != '\t') {
			h->st = H_DONE;
			break;
		}
		h->st = H_VALUE;
		/* FALLTHROUGH */
	case H_VALUE:
		if (c == '\n')
			h->st = H_VALUE_NL;
		else if (c == '\r' || ((c == ' ' || c == '\t') && h->len == 0))
			;
		else if (h->len + 1 < h->size)
			h->out[h->len++] = (char)c;
		break;
	case H_DONE:
		break;
	}
}

bool
header_find(int fd, off_t off, uint64_t len, const char *name, char *out,
    size_t size)
{
	struct hscan h = { .name = name, .nlen = strlen(name), .st = H_START,
	    .out = out, .size = size };
	char buf[4096];

	if (size == 0)
		return false;
	if (len > HEADER_SCAN_MAX)
		len = HEADER_SCAN_MAX;
	while (len > 0 && h.st != H_DONE) {
		ssize_t got = pread(fd, buf, len < sizeof(buf) ? (size_t)len : sizeof(buf), off);

		if (got <= 0)
			break;
		for (ssize_t i = 0; i < got && h.st != H_DONE; i++)
			step(&h, (unsigned char)buf[i]);
		off += got;
		len -= (uint64_t)got;
	}
	while (h.len > 0 && (out[h.len - 1] == ' ' || out[h.len - 1] == '\t'))
		h.len--;
	out[h.len] = '\0';
	return h.found;
}
