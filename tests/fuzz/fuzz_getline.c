/*
 * fuzz_getline: bounded line input (src/io.c) over a real pipe.
 *
 * Input: two octets for the line limit (1..1100, as smtp.c uses 512 and
 * 1024), four for a seed, then the bytes the client sends.  They go into a
 * packet-mode pipe (O_DIRECT) in chunks of random sizes, so every read()
 * that io.c makes ends where a chunk ends, and the write end is closed.
 * The reader then takes lines with io_getline, and now and then raw spans
 * with io_fill/io_peek/io_consume, as the DATA phase does.  Every answer is
 * checked against the bytes as a reference splitter reads them: a line is
 * whatever ends in LF; one that is longer than the limit (LF included) is
 * IO_LONG and skipped whole; CRLF and LF both end a line, the terminator is
 * stripped; an unfinished last line is IO_EOF.  The lines are then echoed
 * back through io_write/io_flush into a second pipe and must arrive intact.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "io.h"

#define MAX_INPUT	(128 * 1024)
#define MAX_CHUNKS	200

static void
fail(const char *what)
{
	fprintf(stderr, "fuzz_getline: %s\n", what);
	abort();
}

static uint32_t
rnd(uint32_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 17;
	*s ^= *s << 5;
	return *s;
}

static int
cmp_size(const void *a, const void *b)
{
	size_t x = *(const size_t *)a, y = *(const size_t *)b;

	return x < y ? -1 : x > y;
}

static struct io io;

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	int in[2], out[2];
	size_t max, cuts[MAX_CHUNKS + 1], ncuts, pos, echoed = 0;
	uint32_t seed;
	char *line, *expect;

	if (size < 6 || size - 6 > MAX_INPUT)
		return 0;
	max = 1 + ((size_t)data[0] << 8 | data[1]) % 1100;
	memcpy(&seed, data + 2, 4);
	seed |= 1;
	data += 6, size -= 6;

	if (pipe2(in, O_DIRECT | O_CLOEXEC) == -1 || pipe2(out, O_CLOEXEC) == -1)
		fail("pipe2");
	if (fcntl(in[1], F_SETPIPE_SZ, 1 << 20) == -1 ||
	    fcntl(out[1], F_SETPIPE_SZ, 1 << 20) == -1)
		fail("F_SETPIPE_SZ");
	fcntl(in[1], F_SETFL, O_NONBLOCK);
	fcntl(out[0], F_SETFL, O_NONBLOCK);

	/* The chunks: random cut points, each write one packet (or a few). */
	ncuts = size > 0 ? rnd(&seed) % (size < MAX_CHUNKS ? size : MAX_CHUNKS) : 0;
	for (size_t i = 0; i < ncuts; i++)
		cuts[i] = 1 + rnd(&seed) % size;
	cuts[ncuts++] = size;
	qsort(cuts, ncuts, sizeof(cuts[0]), cmp_size);
	pos = 0;
	for (size_t i = 0; i < ncuts; i++) {
		size_t n = cuts[i] - pos;

		if (n == 0)
			continue;
		if (write(in[1], data + pos, n) != (ssize_t)n)
			fail("the pipe would not take the input");
		pos += n;
	}
	close(in[1]);

	io_init(&io, in[0], out[1], 1);
	line = malloc(max + 1);
	expect = malloc(size + 1);
	pos = 0;
	for (unsigned steps = 0;; steps++) {
		size_t len = 0, raw = 0, avail;
		const uint8_t *lf;
		enum io_status st;

		if (steps > 64 * size + 1000)
			fail("too many steps");
		if (rnd(&seed) % 4 == 0) {
			/* A raw span, as DATA reads. */
			st = io_fill(&io, 1);
			if (pos == size) {
				if (st != IO_EOF)
					fail("io_fill at the end is not IO_EOF");
				break;
			}
			if (st != IO_OK)
				fail("io_fill failed with input left");
			avail = io_avail(&io);
			if (avail == 0 || avail > size - pos)
				fail("io_avail");
			if (memcmp(io_peek(&io), data + pos, avail) != 0)
				fail("io_peek shows other bytes");
			avail = rnd(&seed) % (avail + 1);
			io_consume(&io, avail);
			pos += avail;
			continue;
		}
		st = io_getline(&io, line, max, &len, &raw, 1);
		lf = pos < size ? memchr(data + pos, '\n', size - pos) : NULL;
		if (lf == NULL) {
			if (st != IO_EOF)
				fail("an unfinished line is not IO_EOF");
			break;
		}
		raw = (size_t)(lf - (data + pos)) + 1;
		if (raw > max) {
			if (st != IO_LONG)
				fail("a long line is not IO_LONG");
			if (len != max || memcmp(line, data + pos, max) != 0 ||
			    line[max] != '\0')
				fail("a long line's first octets are not kept");
		} else {
			size_t want = raw - 1;

			if (want > 0 && data[pos + want - 1] == '\r')
				want--;
			if (st != IO_OK)
				fail("a line that fits is not IO_OK");
			if (len != want || memcmp(line, data + pos, want) != 0 ||
			    line[len] != '\0')
				fail("the line differs");
			memcpy(expect + echoed, line, len);
			echoed += len;
			expect[echoed++] = '\n';
			if (io_write(&io, line, len) != IO_OK || io_write(&io, "\n", 1) != IO_OK)
				fail("io_write");
		}
		pos += raw;
	}
	if (io_flush(&io) != IO_OK)
		fail("io_flush");
	close(out[1]);
	/* Read the echo back. */
	{
		char *got = malloc(echoed + 1);
		size_t have = 0;
		ssize_t r;

		while ((r = read(out[0], got + have, echoed + 1 - have)) > 0)
			have += (size_t)r;
		if (have != echoed || memcmp(got, expect, echoed) != 0)
			fail("the echo differs");
		free(got);
	}
	close(in[0]);
	close(out[0]);
	free(line);
	free(expect);
	return 0;
}
