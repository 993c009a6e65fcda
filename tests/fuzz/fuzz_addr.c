/*
 * fuzz_addr: paths and ESMTP parameters (src/addr.c), as MAIL, RCPT and
 * VRFY hand them over.
 *
 * Input: one octet of addr_parse flags, then the text up to the first NUL
 * (a command line never holds one: dispatch() refuses it).  What the parse
 * accepts must be what mailslot may store and show: no control octet, no
 * 8-bit octet without ADDR_UTF8 and only valid UTF-8 with it, no '/' or
 * ".." in a mailbox name, lengths within RFC 5321 4.5.3.1.  The parameters
 * that follow are parsed as MAIL and RCPT would.  addr_utf8_ok is checked
 * against a second decoder written here, on the raw octets (NULs included).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "addr.h"

static void
fail(const char *what)
{
	fprintf(stderr, "fuzz_addr: %s\n", what);
	abort();
}

/* UTF-8 as RFC 3629 section 4 writes it, byte ranges per lead octet. */
static int
ref_utf8(const unsigned char *s, size_t n)
{
	size_t i = 0;

	while (i < n) {
		unsigned char c = s[i];
		unsigned char lo = 0x80, hi = 0xbf;
		size_t k;

		if (c <= 0x7f) {
			i++;
			continue;
		}
		if (c >= 0xc2 && c <= 0xdf)
			k = 1;
		else if (c == 0xe0)
			k = 2, lo = 0xa0;
		else if (c == 0xed)
			k = 2, hi = 0x9f;
		else if (c >= 0xe1 && c <= 0xef)
			k = 2;
		else if (c == 0xf0)
			k = 3, lo = 0x90;
		else if (c == 0xf4)
			k = 3, hi = 0x8f;
		else if (c >= 0xf1 && c <= 0xf3)
			k = 3;
		else
			return 0;
		if (n - i - 1 < k)
			return 0;
		if (s[i + 1] < lo || s[i + 1] > hi)
			return 0;
		for (size_t j = 2; j <= k; j++)
			if (s[i + j] < 0x80 || s[i + j] > 0xbf)
				return 0;
		i += k + 1;
	}
	return 1;
}

static void
check_mailbox(const char *s, size_t n, int flags, const struct mailbox *mb,
    const char *rest)
{
	size_t tl, ll;

	if (rest < s || rest > s + n)
		fail("rest outside the input");
	if (memchr(mb->text, '\0', sizeof(mb->text)) == NULL)
		fail("text not terminated");
	if (memchr(mb->local, '\0', sizeof(mb->local)) == NULL)
		fail("local not terminated");
	tl = strlen(mb->text);
	ll = strlen(mb->local);
	if (mb->null) {
		if (tl != 0)
			fail("null path with text");
		return;
	}
	if (tl == 0 || tl > ADDR_MAX_PATH - 2)
		fail("text length");
	if (ll > ADDR_MAX_LOCAL || mb->local_len > ADDR_MAX_LOCAL)
		fail("local part too long");
	if (mb->domain_at > tl || (mb->bare ? mb->domain_at != tl :
	    mb->domain_at == 0 || mb->text[mb->domain_at - 1] != '@'))
		fail("domain not after the '@' in text");
	if (strlen(addr_domain(mb)) > ADDR_MAX_DOMAIN)
		fail("domain too long");
	for (size_t i = 0; i < tl; i++) {
		unsigned char c = (unsigned char)mb->text[i];

		if (c < 0x20 || c == 0x7f)
			fail("control octet accepted");
		if (c >= 0x80 && !(flags & ADDR_UTF8))
			fail("8-bit octet accepted without ADDR_UTF8");
		if ((c == '\r' || c == '\n'))
			fail("line break accepted");
	}
	for (size_t i = 0; i < ll; i++) {
		unsigned char c = (unsigned char)mb->local[i];

		if (c < 0x20 || c == 0x7f)
			fail("control octet in local part");
	}
	if (!ref_utf8((const unsigned char *)mb->text, tl))
		fail("invalid UTF-8 accepted");
	if (flags & ADDR_MAILBOX) {
		if (ll == 0)
			fail("empty mailbox name");
		if (strchr(mb->local, '/') != NULL)
			fail("'/' in a mailbox name");
		if (strstr(mb->local, "..") != NULL || mb->local[0] == '.' ||
		    mb->local[ll - 1] == '.')
			fail("dots in a mailbox name");
	}
	if (!mb->bare && !addr_same(mb, mb))
		fail("addr_same is not reflexive");
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct mailbox mb;
	struct mail_params mp;
	const char *rest = NULL;
	enum addr_status st;
	char *s;
	size_t n;
	int flags;

	if (size < 1)
		return 0;
	flags = data[0] & (ADDR_UTF8 | ADDR_BARE | ADDR_MAILBOX);
	data++, size--;

	/* The raw octets, NULs and all. */
	if (addr_utf8_ok((const char *)data, size) != ref_utf8(data, size))
		fail("addr_utf8_ok disagrees with RFC 3629");

	/* A command line: what comes before a NUL, in a buffer of exactly that size. */
	n = strnlen((const char *)data, size);
	s = malloc(n + 1);
	memcpy(s, data, n);
	s[n] = '\0';

	if (addr_domain_ok(s, n) && (s[0] == '.' || s[0] == '-'))
		fail("domain starting with a dot or a hyphen");
	if (addr_helo_ok(s, n)) {
		for (size_t i = 0; i < n; i++)
			if ((unsigned char)s[i] < 0x21 || (unsigned char)s[i] >= 0x7f)
				fail("HELO argument with a space, control or 8-bit octet");
	}

	st = addr_parse(s, flags, &mb, &rest);
	if (st == ADDR_OK) {
		enum addr_status pst;

		check_mailbox(s, n, flags, &mb, rest);
		pst = addr_mail_params(rest, &mp);
		if (pst == ADDR_OK) {
			if (mp.has_body && mp.body != BODY_7BIT && mp.body != BODY_8BITMIME &&
			    mp.body != BODY_BINARYMIME)
				fail("body type");
			if (mp.has_size && strcasestr(rest, "SIZE=") == NULL)
				fail("size without SIZE=");
		} else if (pst != ADDR_PARAM_UNKNOWN && pst != ADDR_PARAM_SYNTAX)
			fail("addr_mail_params status");
		pst = addr_rcpt_params(rest);
		if (pst == ADDR_OK && rest[strspn(rest, " ")] != '\0')
			fail("a RCPT parameter was accepted");
	} else if (st != ADDR_SYNTAX && st != ADDR_NONASCII && st != ADDR_NOT_ALLOWED)
		fail("addr_parse status");

	/* The whole text as MAIL parameters too. */
	(void)addr_mail_params(s, &mp);
	(void)addr_rcpt_params(s);
	free(s);
	return 0;
}
