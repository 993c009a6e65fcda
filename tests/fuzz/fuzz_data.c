/*
 * fuzz_data: the DATA and BDAT decoder (src/data.c).
 *
 * Input: one octet for the mode (DATA with crlf or lf line endings, a BDAT
 * chunk, a BINARYMIME chunk), four for a seed, then the stream.  The stream
 * is decoded three times: whole, with a large output buffer; and twice in
 * chunks of random sizes with random output capacities (at least 2, as
 * data.h allows).  Every buffer is allocated at its exact size, so the
 * sanitizer sees any overrun.  All three runs must agree octet for octet
 * and flag for flag (any split gives the same output), and must agree with
 * ref_decode() below, a line-by-line reading of the rules in the comment at
 * the top of src/data.c, written without the state machine.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "data.h"

struct result {
	char		*out;
	size_t		 len;
	size_t		 used;		/* input octets consumed */
	int		 end;		/* the terminating line was read */
	int		 bare_cr, bare_lf;
	uint64_t	 octets, lines;
	unsigned	 received;
};

static uint32_t
rnd(uint32_t *s)
{
	/* xorshift32: the splits are a function of the input alone */
	*s ^= *s << 13;
	*s ^= *s >> 17;
	*s ^= *s << 5;
	return *s;
}

static void
fail(const char *what)
{
	fprintf(stderr, "fuzz_data: %s\n", what);
	abort();
}

static void
put(struct result *r, const char *p, size_t n)
{
	memcpy(r->out + r->len, p, n);
	r->len += n;
}

/* Received: header lines before the first empty stored line (LF, or CR LF). */
static unsigned
ref_received(const char *s, size_t n)
{
	unsigned count = 0;
	size_t i = 0;

	while (i < n) {
		const char *lf = memchr(s + i, '\n', n - i);
		size_t len = lf ? (size_t)(lf - (s + i)) : n - i;

		if (lf != NULL && (len == 0 || (len == 1 && s[i] == '\r')))
			break;			/* the empty line ends the header */
		if (len >= 9 && strncasecmp(s + i, "received:", 9) == 0)
			count++;
		if (lf == NULL)
			break;
		i += len + 1;
	}
	return count;
}

/*
 * The rules for DATA, a line at a time.  A line ends at CRLF; in lf mode
 * at a bare LF too.  The line "." ends the data.  A line that starts with
 * "." loses it, unless the next octet is CR or LF: then it is stored as
 * sent.  Every line end is stored as LF; a CR inside a line (a bare CR)
 * and, in crlf mode, an LF inside a line (a bare LF) are stored as they
 * are.  An unfinished last line gives what can already be known: nothing
 * for "." or ".\r", and everything but a trailing CR otherwise.
 */
static void
ref_dot(const char *in, size_t n, int lf_mode, struct result *r)
{
	size_t pos = 0;

	while (pos < n) {
		size_t end, next = 0, i;
		int complete = 0;
		const char *l = in + pos;
		size_t len, skip = 0;

		/* Find the terminator. */
		for (end = pos; end < n; end++) {
			if (in[end] == '\r' && end + 1 < n && in[end + 1] == '\n') {
				next = end + 2;
				complete = 1;
				break;
			}
			if (lf_mode && in[end] == '\n') {
				next = end + 1;
				complete = 1;
				r->bare_lf = 1;
				break;
			}
		}
		len = end - pos;
		if (!complete) {
			/* Unfinished: "." and ".\r" are held whole, a final CR too. */
			if ((len == 1 && l[0] == '.') || (len == 2 && l[0] == '.' && l[1] == '\r'))
				break;
			if (len > 0 && l[len - 1] == '\r')
				len--;
		} else if (len == 1 && l[0] == '.') {
			r->end = 1;
			r->used = next;
			return;
		}
		if (len >= 2 && l[0] == '.' && l[1] != '\r' && l[1] != '\n')
			skip = 1;		/* dot-unstuffing */
		for (i = skip; i < len; i++) {
			if (l[i] == '\r')
				r->bare_cr = 1;
			if (l[i] == '\n')
				r->bare_lf = 1;
		}
		put(r, l + skip, len - skip);
		if (!complete)
			break;
		put(r, "\n", 1);
		pos = next;
	}
	r->used = n;	/* all consumed or held; the decoder consumed it too */
}

/* A BDAT stream, after BDAT LAST: CRLF becomes LF, nothing else changes. */
static void
ref_chunk(const char *in, size_t n, struct result *r)
{
	for (size_t i = 0; i < n; i++) {
		if (in[i] == '\r' && i + 1 < n && in[i + 1] == '\n') {
			put(r, "\n", 1);
			i++;
			continue;
		}
		if (in[i] == '\r')
			r->bare_cr = 1;
		if (in[i] == '\n')
			r->bare_lf = 1;
		put(r, in + i, 1);
	}
	r->used = n;
}

static void
ref_decode(const char *in, size_t n, enum dmode mode, struct result *r)
{
	memset(r, 0, sizeof(*r));
	r->out = malloc(n + 1);
	switch (mode) {
	case DM_DOT_CRLF:
	case DM_DOT_LF:
		ref_dot(in, n, mode == DM_DOT_LF, r);
		for (size_t k = 0; k < r->len; k++)
			r->lines += r->out[k] == '\n';
		break;
	case DM_CHUNK:
		ref_chunk(in, n, r);
		for (size_t k = 0; k < r->len; k++)
			r->lines += r->out[k] == '\n';
		break;
	case DM_BINARY:
		put(r, in, n);
		r->used = n;
		/* W= counts an LF without a CR before it as two octets. */
		for (size_t k = 0; k < n; k++)
			r->lines += in[k] == '\n' && (k == 0 || in[k - 1] != '\r');
		break;
	}
	r->octets = r->len;
	r->received = ref_received(r->out, r->len);
}

/* The decoder proper, over chunks of the input and output. */
static void
run(const char *in, size_t n, enum dmode mode, uint32_t seed,
    int whole, struct result *r)
{
	struct decoder d;
	size_t pos = 0, steps = 0;

	memset(r, 0, sizeof(*r));
	r->out = malloc(n + 2);
	decoder_init(&d, mode);
	while (pos < n && d.st != D_END) {
		size_t chunk = whole ? n - pos : 1 + rnd(&seed) % (n - pos);
		char *buf = malloc(chunk);
		size_t off = 0;

		memcpy(buf, in + pos, chunk);
		while (off < chunk && d.st != D_END) {
			size_t cap = whole ? chunk + 2 : 2 + rnd(&seed) % 16;
			size_t used, made;
			enum dstate before = d.st;
			char *out;

			if (!whole && rnd(&seed) % 8 == 0)
				cap = 2 + rnd(&seed) % (chunk + 2);
			out = malloc(cap);
			decoder_run(&d, buf + off, chunk - off, &used, out, cap, &made);
			if (used > chunk - off || made > cap)
				fail("decoder_run reports more than it was given");
			if (r->len + made > n + 2)
				fail("more output than input");
			memcpy(r->out + r->len, out, made);
			r->len += made;
			off += used;
			free(out);
			if (used == 0 && made == 0 && d.st == before)
				fail("no progress");
			if (++steps > 8 * n + 64)
				fail("too many steps");
		}
		free(buf);
		pos += off;
	}
	if (mode == DM_CHUNK || mode == DM_BINARY) {
		/* BDAT LAST: a CR still held back is written now. */
		char *out = malloc(1);
		size_t made = decoder_finish(&d, out);

		if (made > 1)
			fail("decoder_finish wrote more than 1 octet");
		memcpy(r->out + r->len, out, made);
		r->len += made;
		free(out);
	}
	r->used = pos;
	r->end = d.st == D_END;
	r->bare_cr = d.bare_cr;
	r->bare_lf = d.bare_lf;
	r->octets = d.octets;
	r->lines = d.lines;
	r->received = d.received;
	if (d.octets != r->len)
		fail("octets is not the stored length");
}

static void
same(const struct result *a, const struct result *b, const char *what)
{
	if (a->len != b->len || memcmp(a->out, b->out, a->len) != 0) {
		fprintf(stderr, "%s: output differs (%zu vs %zu octets)\n", what, a->len, b->len);
		fail(what);
	}
	if (a->used != b->used || a->end != b->end)
		fail(what);
	if (a->bare_cr != b->bare_cr || a->bare_lf != b->bare_lf)
		fail(what);
	if (a->octets != b->octets || a->lines != b->lines || a->received != b->received)
		fail(what);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const enum dmode modes[] = { DM_DOT_CRLF, DM_DOT_LF, DM_CHUNK, DM_BINARY };
	struct result whole, split1, split2, ref;
	enum dmode mode;
	uint32_t seed;

	if (size < 5)
		return 0;
	mode = modes[data[0] % 4];
	memcpy(&seed, data + 1, 4);
	seed |= 1;		/* xorshift never leaves 0 */
	data += 5, size -= 5;

	run((const char *)data, size, mode, seed, 1, &whole);
	run((const char *)data, size, mode, seed, 0, &split1);
	run((const char *)data, size, mode, seed * 2654435761u | 1, 0, &split2);
	ref_decode((const char *)data, size, mode, &ref);
	same(&whole, &split1, "split 1 differs from whole");
	same(&whole, &split2, "split 2 differs from whole");
	same(&whole, &ref, "decoder differs from the reference");
	free(whole.out);
	free(split1.out);
	free(split2.out);
	free(ref.out);
	return 0;
}
