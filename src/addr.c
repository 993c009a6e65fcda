/*
 * addr.c: reverse- and forward-paths (RFC 5321 4.1.2), address literals
 * (4.1.3), and the ESMTP parameters of MAIL and RCPT.
 *
 * The grammar is followed for the structure (brackets, '@', the domain);
 * a recipient's local part is then judged as mailslot will use it: as a
 * mailbox name that may become a directory name.  One with '/', a leading
 * or trailing dot, "..", or over 64 octets is "not allowed" (553 5.1.3)
 * even where the grammar (or its quoted form) would permit it.  Control
 * octets are refused in every path: they would reach headers and logs.
 */
#include <arpa/inet.h>
#include <netinet/in.h>

#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "addr.h"

static bool
is_atext(unsigned char c)
{
	return isalnum(c) || (c != '\0' && strchr("!#$%&'*+-/=?^_`{|}~", c) != NULL);
}

bool
addr_utf8_ok(const char *s, size_t n)
{
	const unsigned char *p = (const unsigned char *)s, *e = p + n;

	while (p < e) {
		unsigned c = *p++, need, min, cp;

		if (c < 0x80)
			continue;
		if (c >= 0xc2 && c <= 0xdf)
			need = 1, min = 0x80, cp = c & 0x1f;
		else if (c >= 0xe0 && c <= 0xef)
			need = 2, min = 0x800, cp = c & 0x0f;
		else if (c >= 0xf0 && c <= 0xf4)
			need = 3, min = 0x10000, cp = c & 0x07;
		else
			return false;
		if ((size_t)(e - p) < need)
			return false;
		while (need-- > 0) {
			if ((*p & 0xc0) != 0x80)
				return false;
			cp = cp << 6 | (*p++ & 0x3f);
		}
		if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
			return false;
	}
	return true;
}

/* Labels of letters, digits, '-' and '_' (and UTF-8 when `utf8`). */
static bool
domain_ok(const char *s, size_t n, bool utf8)
{
	size_t label = 0;
	bool high = false;

	if (n == 0 || n > ADDR_MAX_DOMAIN)
		return false;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];

		if (c == '.') {
			if (label == 0 || s[i - 1] == '-')
				return false;
			label = 0;
			continue;
		}
		if (c >= 0x80 && utf8)
			high = true;
		else if (!isalnum(c) && c != '-' && c != '_')
			return false;
		if (label == 0 && c == '-')
			return false;
		if (++label > 63)
			return false;
	}
	if (label == 0 || s[n - 1] == '-')
		return false;
	return !high || addr_utf8_ok(s, n);
}

bool
addr_domain_ok(const char *s, size_t n)
{
	return domain_ok(s, n, false);
}

/* "[192.0.2.1]" or "[IPv6:2001:db8::1]" (the general form is not taken). */
static bool
literal_ok(const char *s, size_t n)
{
	char buf[INET6_ADDRSTRLEN + 8];
	unsigned char bin[sizeof(struct in6_addr)];

	if (n < 3 || s[0] != '[' || s[n - 1] != ']' || n - 2 >= sizeof(buf) ||
	    memchr(s, '\0', n) != NULL)
		return false;
	memcpy(buf, s + 1, n - 2);
	buf[n - 2] = '\0';
	if (strncasecmp(buf, "IPv6:", 5) == 0)
		return inet_pton(AF_INET6, buf + 5, bin) == 1;
	return inet_pton(AF_INET, buf, bin) == 1;
}

bool
addr_helo_ok(const char *s, size_t n)
{
	return addr_domain_ok(s, n) || literal_ok(s, n);
}

enum addr_status
addr_parse(const char *s, int flags, struct mailbox *mb, const char **rest)
{
	bool utf8 = flags & ADDR_UTF8, bracketless = flags & ADDR_BARE;
	bool mailbox = flags & ADDR_MAILBOX;
	const char *p = s, *start, *dom = NULL, *dend;
	bool bracket, ctl = false, slash = false, high = false;
	size_t ulen = 0;

	memset(mb, 0, sizeof(*mb));
	while (*p == ' ')		/* "FROM: <a@b>": common, and harmless */
		p++;
	bracket = *p == '<';
	if (bracket)
		p++;
	else if (!bracketless)
		return ADDR_SYNTAX;
	if (bracket && *p == '>') {
		mb->null = true;
		*rest = p + 1;
		return ADDR_OK;
	}
	if (*p == '@') {		/* a source route: obsolete, ignored (4.1.2) */
		p = strchr(p, ':');
		if (p == NULL)
			return ADDR_SYNTAX;
		p++;
	}

	start = p;
	if (*p == '"') {
		for (p++;; p++) {
			unsigned char c = (unsigned char)*p;

			if (c == '\0')
				return ADDR_SYNTAX;
			if (c == '"')
				break;
			if (c == '\\' && (c = (unsigned char)*++p) == '\0')
				return ADDR_SYNTAX;
			ctl |= c < 0x20 || c == 0x7f;
			slash |= c == '/';
			high |= c >= 0x80;
			if (ulen < ADDR_MAX_LOCAL)
				mb->local[ulen] = (char)c;
			ulen++;
		}
		p++;
	} else {
		for (; *p != '\0' && *p != '@' && *p != '>'; p++) {
			unsigned char c = (unsigned char)*p;

			if (!bracket && c == ' ')
				break;
			if (c >= 0x80)
				high = true;
			else if (c < 0x20 || c == 0x7f)
				ctl = true;
			else if (c == '/')
				slash = true;
			else if (!is_atext(c) && c != '.')
				return ADDR_SYNTAX;
			if (ulen < ADDR_MAX_LOCAL)
				mb->local[ulen] = (char)c;
			ulen++;
		}
		if (p == start)
			return ADDR_SYNTAX;
	}
	mb->local_len = (size_t)(p - start);

	dend = p;
	if (*p == '@') {
		dom = ++p;
		while (*p != '\0' && *p != '>' && (bracket || *p != ' '))
			p++;
		dend = p;
		if (dend - dom > 0 && dom[0] == '[') {
			if (!literal_ok(dom, (size_t)(dend - dom)))
				return ADDR_SYNTAX;
		} else if (!domain_ok(dom, (size_t)(dend - dom), true))
			return ADDR_SYNTAX;
	} else
		mb->bare = true;
	if (bracket) {
		if (*p != '>')
			return ADDR_SYNTAX;
		p++;
	}
	*rest = p;

	if (ctl || ulen > ADDR_MAX_LOCAL || mb->local_len > ADDR_MAX_LOCAL ||
	    (size_t)(dend - start) > ADDR_MAX_PATH - 2)
		return ADDR_NOT_ALLOWED;
	mb->local[ulen] = '\0';
	if (ulen == 0)
		return mailbox ? ADDR_NOT_ALLOWED : ADDR_SYNTAX;
	if (mailbox && (slash || mb->local[0] == '.' ||
	    mb->local[ulen - 1] == '.' || strstr(mb->local, "..") != NULL))
		return ADDR_NOT_ALLOWED;
	if (dom != NULL)
		for (const char *q = dom; q < dend; q++)
			high |= (unsigned char)*q >= 0x80;
	if (high && (!utf8 || !addr_utf8_ok(start, (size_t)(dend - start))))
		return ADDR_NONASCII;
	/* C1 controls (U+0080..U+009F: CSI among them) are control octets too. */
	for (const char *q = start; high && q + 1 < dend; q++)
		if ((unsigned char)q[0] == 0xc2 && (unsigned char)q[1] >= 0x80 &&
		    (unsigned char)q[1] <= 0x9f)
			return ADDR_NOT_ALLOWED;

	memcpy(mb->text, start, (size_t)(dend - start));
	mb->text[dend - start] = '\0';
	mb->domain_at = dom != NULL ? (size_t)(dom - start) : (size_t)(dend - start);
	return ADDR_OK;
}

/* Split "KEY[=VALUE]" parameters; calls `fn` for each. */
static enum addr_status
params(const char *s, enum addr_status (*fn)(const char *, size_t,
    const char *, size_t, void *), void *arg)
{
	while (*s != '\0') {
		const char *k = s, *v = NULL;
		size_t kn, vn = 0;
		enum addr_status st;

		if (*s == ' ') {
			s++;
			continue;
		}
		if (!isalnum((unsigned char)*s))
			return ADDR_PARAM_SYNTAX;
		while (isalnum((unsigned char)*s) || *s == '-')
			s++;
		kn = (size_t)(s - k);
		if (*s == '=') {
			v = ++s;
			while (*s > ' ' && *s < 0x7f && *s != '=')
				s++;
			vn = (size_t)(s - v);
			if (vn == 0)
				return ADDR_PARAM_SYNTAX;
		}
		if (*s != ' ' && *s != '\0')
			return ADDR_PARAM_SYNTAX;
		if ((st = fn(k, kn, v, vn, arg)) != ADDR_OK)
			return st;
	}
	return ADDR_OK;
}

static bool
keyword(const char *k, size_t kn, const char *name)
{
	return strlen(name) == kn && strncasecmp(k, name, kn) == 0;
}

static enum addr_status
mail_param(const char *k, size_t kn, const char *v, size_t vn, void *arg)
{
	struct mail_params *mp = arg;

	if (keyword(k, kn, "SIZE")) {
		uint64_t n = 0;

		if (v == NULL || mp->has_size)
			return ADDR_PARAM_SYNTAX;
		for (size_t i = 0; i < vn; i++) {
			if (!isdigit((unsigned char)v[i]))
				return ADDR_PARAM_SYNTAX;
			/* A number too large for 64 bits is larger than any limit. */
			n = n > (UINT64_MAX - 9) / 10 ? UINT64_MAX : n * 10 + (uint64_t)(v[i] - '0');
		}
		mp->has_size = true;
		mp->size = n;
		return ADDR_OK;
	}
	if (keyword(k, kn, "BODY")) {
		if (v == NULL || mp->has_body)
			return ADDR_PARAM_SYNTAX;
		if (vn == 4 && strncasecmp(v, "7BIT", 4) == 0)
			mp->body = BODY_7BIT;
		else if (vn == 8 && strncasecmp(v, "8BITMIME", 8) == 0)
			mp->body = BODY_8BITMIME;
		else if (vn == 10 && strncasecmp(v, "BINARYMIME", 10) == 0)
			mp->body = BODY_BINARYMIME;
		else
			return ADDR_PARAM_SYNTAX;
		mp->has_body = true;
		return ADDR_OK;
	}
	if (keyword(k, kn, "SMTPUTF8")) {
		if (v != NULL || mp->smtputf8)
			return ADDR_PARAM_SYNTAX;
		mp->smtputf8 = true;
		return ADDR_OK;
	}
	return ADDR_PARAM_UNKNOWN;
}

enum addr_status
addr_mail_params(const char *s, struct mail_params *mp)
{
	memset(mp, 0, sizeof(*mp));
	return params(s, mail_param, mp);
}

static enum addr_status
rcpt_param(const char *k, size_t kn, const char *v, size_t vn, void *arg)
{
	(void)k, (void)kn, (void)v, (void)vn, (void)arg;
	return ADDR_PARAM_UNKNOWN;
}

enum addr_status
addr_rcpt_params(const char *s)
{
	return params(s, rcpt_param, NULL);
}

bool
addr_same(const struct mailbox *a, const struct mailbox *b)
{
	if (strcasecmp(addr_domain(a), addr_domain(b)) != 0)
		return false;
	/* <postmaster> is matched without regard to case (RFC 5321 4.5.1). */
	if (strcasecmp(a->local, "postmaster") == 0)
		return strcasecmp(b->local, "postmaster") == 0;
	return a->local_len == b->local_len &&
	    strncmp(a->text, b->text, a->local_len) == 0;
}

bool
addr_bdat(const char *arg, uint64_t *size, bool *last, bool *syntax_ok)
{
	uint64_t n = 0;
	const char *p = arg;

	if (*p < '0' || *p > '9')
		return false;
	for (; *p >= '0' && *p <= '9'; p++) {
		if (n > (UINT64_MAX - (uint64_t)(*p - '0')) / 10)
			return false;
		n = n * 10 + (uint64_t)(*p - '0');
	}
	*size = n;
	*last = false;
	*syntax_ok = *p == '\0';
	if (*p == ' ') {		/* bdat-cmd = "BDAT" SP chunk-size [ SP end-marker ] */
		while (*p == ' ')
			p++;
		*last = strcasecmp(p, "LAST") == 0;
		*syntax_ok = *last;
	}
	return true;
}
