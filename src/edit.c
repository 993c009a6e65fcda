/*
 * edit.c: header and body edits applied to a message file (edit.h).
 *
 * The header section is read whole (it is bounded), cut into fields, and
 * held as a list in which mailslot's own Received field is one more item,
 * with no text: the filters' indexes count it, and the copies write it
 * there.  The edits run on that list in the order the filters asked;
 * then the new file is the list, the separating empty line, and the body,
 * copied in the kernel from the old file or from the filter's new body.
 */
#include <sys/stat.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "edit.h"

struct item {
	const char	*p;		/* the field, line breaks included */
	size_t		 n;
	char		*own;		/* p, when it is a filter's new field */
	bool		 rcvd;		/* mailslot's Received field: no text here */
};

/* LFs as Maildir's W= counts them: under BINARYMIME those without CR before. */
static uint64_t
count_lf(const char *p, size_t n, bool binary, bool *prev_cr)
{
	uint64_t lf = 0;

	for (size_t i = 0; i < n; i++) {
		if (p[i] == '\n' && !(binary && *prev_cr))
			lf++;
		*prev_cr = p[i] == '\r';
	}
	return lf;
}

static size_t
name_len(const char *p, size_t n)
{
	size_t i = 0;

	while (i < n && p[i] > ' ' && p[i] < 127 && p[i] != ':')
		i++;
	return i;
}

/* "Name:" (or the obsolete "Name :") at the start of a line. */
static bool
is_field(const char *p, size_t n)
{
	size_t i = name_len(p, n);

	if (i == 0)
		return false;
	while (i < n && (p[i] == ' ' || p[i] == '\t'))
		i++;
	return i < n && p[i] == ':';
}

bool
edit_name_ok(const char *s)
{
	size_t n = strlen(s);

	return n > 0 && n < 998 && name_len(s, n) == n;
}

bool
edit_value_ok(const char *s)
{
	bool blank = false;	/* the line so far is empty or white */

	if (strlen(s) > EDIT_MAX_HEADER)
		return false;
	for (const char *p = s; *p != '\0'; p++) {
		unsigned char c = (unsigned char)*p;

		if (c == '\r' && p[1] == '\n')
			continue;
		if (c == '\n') {
			if (blank && p != s)
				return false;	/* an empty line would end the header */
			blank = true;
			continue;
		}
		if ((c < ' ' && c != '\t') || c == 127)
			return false;
		if (c != ' ' && c != '\t')
			blank = false;
	}
	return true;
}

/*
 * "Name: value\n": a space after the colon unless the value starts with
 * one (as Postfix writes a milter's field), CRLF as LF, and every
 * continuation line starting with white space.
 */
static char *
field_text(const char *name, const char *value, size_t *len)
{
	size_t vn = strlen(value), nn = strlen(name);
	char *t = malloc(nn + 2 * vn + 4), *o;

	if (t == NULL)
		return NULL;
	memcpy(t, name, nn);
	o = t + nn;
	*o++ = ':';
	if (*value != ' ' && *value != '\t')
		*o++ = ' ';
	/* Line breaks at the end, and last lines of white space alone: no white line. */
	for (;;) {
		size_t w = vn;

		while (w > 0 && (value[w - 1] == ' ' || value[w - 1] == '\t'))
			w--;
		if (w == 0 || (value[w - 1] != '\n' && value[w - 1] != '\r'))
			break;
		vn = w;
		while (vn > 0 && (value[vn - 1] == '\n' || value[vn - 1] == '\r'))
			vn--;
	}
	for (size_t i = 0; i < vn; i++) {
		if (value[i] == '\r' && value[i + 1] == '\n')
			continue;
		*o++ = value[i];
		if (value[i] == '\n' && value[i + 1] != ' ' && value[i + 1] != '\t')
			*o++ = '\t';
	}
	*o++ = '\n';
	*len = (size_t)(o - t);
	return t;
}

/* The field's name is `name` (case-insensitive). */
static bool
named(const struct item *it, const char *name)
{
	size_t n = strlen(name);

	return !it->rcvd && name_len(it->p, it->n) == n && strncasecmp(it->p, name, n) == 0;
}

static void
put(struct msg *out, const char *p, size_t n, uint64_t *lines, bool binary, bool *prev_cr)
{
	msg_put(out, p, n);
	*lines += count_lf(p, n, binary, prev_cr);
}

static int
fail(char *why, size_t size, const char *s)
{
	snprintf(why, size, "%s", s);
	return -1;
}

int
edit_message(struct msg *out, struct msg *in, const struct rcvd_at *in_at,
    const struct edits *e, bool binary, struct rcvd_at *out_at, char *why,
    size_t whysize)
{
	size_t want = in->octets < EDIT_MAX_HEADER + 2 ? (size_t)in->octets : EDIT_MAX_HEADER + 2;
	size_t got = 0, pos = 0, hdr_end, sep = 0, nitems = 0, cap;
	char *buf = malloc(want + 1);
	struct item *items = NULL;
	uint64_t lines = 0, hdr_lines, body_off, body_len, body_lines;
	bool prev_cr = false, scan_cr = false, found_end = false;
	unsigned nfields = 0;
	struct msg body = { .fd = -1 };
	int rc = -1;

	if (buf == NULL)
		return fail(why, whysize, "out of memory");
	while (got < want) {
		ssize_t r = pread(in->fd, buf + got, want - got, (off_t)(in->mark + got));

		if (r <= 0) {
			fail(why, whysize, r == 0 ? "message file cut short" : strerror(errno));
			goto out;
		}
		got += (size_t)r;
	}
	cap = EDIT_MAX_FIELDS + 1 + e->nh;
	if ((items = calloc(cap, sizeof(*items))) == NULL) {
		fail(why, whysize, "out of memory");
		goto out;
	}
	/* The header section: fields and their continuation lines, to the empty line. */
	hdr_end = got;
	while (pos < got) {
		const char *line = buf + pos, *lf = memchr(line, '\n', got - pos);
		size_t ll = lf != NULL ? (size_t)(lf - line) + 1 : got - pos;

		if ((ll == 1 && line[0] == '\n') || (ll == 2 && line[0] == '\r' && line[1] == '\n')) {
			hdr_end = pos;
			sep = ll;
			found_end = true;
			break;
		}
		if ((line[0] == ' ' || line[0] == '\t') && nitems > 0) {
			items[nitems - 1].n += ll;
		} else if (is_field(line, ll)) {
			/* >=: the Received item may have been added with the field before. */
			if (nitems >= EDIT_MAX_FIELDS) {
				fail(why, whysize, "too many header fields");
				goto out;
			}
			if (nfields == in_at->nabove)
				items[nitems++].rcvd = true;
			items[nitems].p = line;
			items[nitems++].n = ll;
			nfields++;
		} else {
			/* A body without the empty line before it: kept as it came. */
			hdr_end = pos;
			found_end = true;
			break;
		}
		pos += ll;
	}
	if ((!found_end && got < in->octets) || hdr_end > EDIT_MAX_HEADER) {
		fail(why, whysize, "header section too long to edit");
		goto out;
	}
	if (nfields <= in_at->nabove)
		items[nitems++].rcvd = true;

	for (size_t k = 0; k < e->nh; k++) {
		const struct hedit *h = &e->h[k];
		struct item nw = { 0 };
		size_t at = nitems, seen = 0, want_idx = h->idx ? h->idx : 1;

		if (!edit_name_ok(h->name) || (h->value != NULL && !edit_value_ok(h->value))) {
			fail(why, whysize, "invalid header field from a filter");
			goto out;
		}
		if (h->op == HE_CHANGE) {
			for (at = 0; at < nitems; at++)
				if (named(&items[at], h->name) && ++seen == want_idx)
					break;
			if (at < nitems) {
				free(items[at].own);
				if (h->value == NULL || h->value[0] == '\0') {
					memmove(items + at, items + at + 1, (nitems - at - 1) * sizeof(*items));
					nitems--;
					continue;
				}
				if ((items[at].own = field_text(h->name, h->value, &items[at].n)) == NULL) {
					fail(why, whysize, "out of memory");
					goto out;
				}
				items[at].p = items[at].own;
				continue;
			}
			/* No such field: a change adds it, as Sendmail does; a delete does nothing. */
			if (h->value == NULL || h->value[0] == '\0')
				continue;
			at = nitems;
		} else if (h->op == HE_INSERT)
			at = h->idx < nitems ? h->idx : nitems;
		if (nitems == cap) {
			fail(why, whysize, "too many header fields");
			goto out;
		}
		if ((nw.own = field_text(h->name, h->value ? h->value : "", &nw.n)) == NULL) {
			fail(why, whysize, "out of memory");
			goto out;
		}
		nw.p = nw.own;
		memmove(items + at + 1, items + at, (nitems - at) * sizeof(*items));
		items[at] = nw;
		nitems++;
	}

	out_at->nabove = 0;
	for (size_t k = 0; k < nitems; k++) {
		if (items[k].rcvd) {
			out_at->octets = out->octets;
			out_at->lines = lines;
			continue;
		}
		put(out, items[k].p, items[k].n, &lines, binary, &prev_cr);
	}
	/* nabove: the fields written before the Received item. */
	for (size_t k = 0; k < nitems && !items[k].rcvd; k++)
		out_at->nabove++;

	/*
	 * prev_cr follows what is written to `out`; the counts of the old
	 * header section and of a new body scan with their own (scan_cr): a
	 * new body that ends in a lone CR must not hide the LF of the empty
	 * line written after the header (W= would be one short).
	 */
	hdr_lines = count_lf(buf, hdr_end + sep, binary, &scan_cr);
	if (e->body_fd != -1) {
		struct stat st;
		char chunk[16384];
		off_t o = 0;

		if (fstat(e->body_fd, &st) == -1) {
			fail(why, whysize, strerror(errno));
			goto out;
		}
		body.fd = e->body_fd;
		body_off = 0;
		body_len = (uint64_t)st.st_size;
		body_lines = 0;
		scan_cr = false;
		while ((uint64_t)o < body_len) {
			ssize_t r = pread(e->body_fd, chunk, sizeof(chunk), o);

			if (r <= 0) {
				fail(why, whysize, "cannot read the new body");
				goto out;
			}
			body_lines += count_lf(chunk, (size_t)r, binary, &scan_cr);
			o += r;
		}
		if (sep == 0 && body_len > 0)
			put(out, "\n", 1, &lines, binary, &prev_cr);
	} else {
		body.fd = in->fd;
		body_off = in->mark + hdr_end + sep;
		body_len = in->octets - (hdr_end + sep);
		body_lines = in->lines > hdr_lines ? in->lines - hdr_lines : 0;
	}
	if (sep > 0)
		put(out, buf + hdr_end, sep, &lines, binary, &prev_cr);
	out->lines = lines;	/* msg_put counted every LF */
	if (body_len > 0 && msg_copy_from(out, &body, body_off, body_len, body_lines) != 0) {
		fail(why, whysize, strerror(out->err));
		goto out;
	}
	if (msg_flush(out) != 0) {
		fail(why, whysize, strerror(out->err));
		goto out;
	}
	rc = 0;
out:
	if (items != NULL)
		for (size_t k = 0; k < nitems; k++)
			free(items[k].own);
	free(items);
	free(buf);
	return rc;
}
