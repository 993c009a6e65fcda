/*
 * fuzz_proxy: the PROXY header parser (src/proxy.c), as proxy_read()
 * feeds it: the whole input at once, then every prefix of it in turn
 * (a balancer's header split over reads).  What must hold: a verdict on
 * a prefix never contradicts the whole (a prefix called invalid stays
 * invalid; a prefix taken is taken with the same length), the length
 * taken is within the input and the limits (107 octets for v1, 16 + 1,024
 * for v2), an error always says why, and a peer has a family.
 */
#include <sys/socket.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proxy.h"

static void
fail(const char *what)
{
	fprintf(stderr, "fuzz_proxy: %s\n", what);
	abort();
}

static void
check(ssize_t r, size_t len, const struct proxy_hdr *h, const char *why)
{
	if (r < 0 && why == NULL)
		fail("an error without a reason");
	if (r >= 0 && why != NULL)
		fail("a reason without an error");
	if (r > 0 && (size_t)r > len)
		fail("took more than the input");
	if (r > 0 && h->version == 1 && r > PROXY_V1_MAX)
		fail("a v1 line over 107 octets");
	if (r > 0 && h->version == 2 && r > PROXY_V2_FIXED + PROXY_V2_MAX)
		fail("a v2 header over its limit");
	if (r > 0 && h->version != 1 && h->version != 2)
		fail("no version");
	if (r > 0 && h->kind == PROXY_PEER && h->family != AF_INET && h->family != AF_INET6)
		fail("a peer without a family");
}

int
LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
	struct proxy_hdr whole, part;
	const char *why;
	ssize_t r = proxy_parse(data, size, &whole, &why), rp;
	unsigned char *copy;

	check(r, size, &whole, why);
	if (size > 2048)
		return 0;
	/* An exact copy: out-of-bounds reads past `n` show under ASan. */
	for (size_t n = 0; n <= size; n++) {
		if ((copy = malloc(n ? n : 1)) == NULL)
			return 0;
		memcpy(copy, data, n);
		rp = proxy_parse(copy, n, &part, &why);
		free(copy);
		check(rp, n, &part, why);
		if (rp == 0)
			continue;
		if (rp < 0 && r >= 0)
			fail("a prefix refused, the whole taken or awaited");
		if (rp > 0 && (r != rp || memcmp(&part, &whole, sizeof(part)) != 0))
			fail("a prefix taken differently from the whole");
		break;
	}
	return 0;
}
