/* addr.h: RFC 5321 paths (4.1.2) and ESMTP parameters. */
#ifndef MAILSLOT_ADDR_H
#define MAILSLOT_ADDR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define ADDR_MAX_LOCAL	64	/* RFC 5321 4.5.3.1.1 */
#define ADDR_MAX_DOMAIN	255	/* 4.5.3.1.2 */
#define ADDR_MAX_PATH	256	/* 4.5.3.1.3, the angle brackets included */

enum addr_status {
	ADDR_OK,
	ADDR_SYNTAX,		/* 501: not a path at all */
	ADDR_NONASCII,		/* 553 5.6.7: 8-bit without SMTPUTF8, or bad UTF-8 */
	ADDR_NOT_ALLOWED,	/* 553 5.1.3: a local part mailslot will not store */
	ADDR_PARAM_UNKNOWN,	/* 555 5.5.4 */
	ADDR_PARAM_SYNTAX,	/* 501 5.5.4 */
};

struct mailbox {
	bool	null;			/* the null reverse-path <> */
	bool	bare;			/* no domain: only <postmaster> may be */
	size_t	local_len;		/* octets of the local part as written */
	/* As written, without brackets or source route: "local@domain". */
	char	text[ADDR_MAX_PATH + 1];
	/* The local part with quoting undone. */
	char	local[ADDR_MAX_LOCAL + 1];
	size_t	domain_at;		/* where the domain starts in text; at its end when bare */
};

/* The domain of a mailbox ("" when bare).  An offset, not a pointer, so
 * a struct mailbox can be copied and moved like any value. */
static inline const char *
addr_domain(const struct mailbox *mb)
{
	return mb->text + mb->domain_at;
}

enum body_type { BODY_7BIT, BODY_8BITMIME, BODY_BINARYMIME };

struct mail_params {
	bool		has_size;
	uint64_t	size;
	bool		has_body;
	enum body_type	body;
	bool		smtputf8;
};

/* A domain name (letters, digits, '-', '_' in labels), as in HELO and hostname. */
bool addr_domain_ok(const char *, size_t);

/* A HELO/EHLO argument: a domain or an address literal. */
bool addr_helo_ok(const char *, size_t);

/* Valid UTF-8 (no overlongs, no surrogates). */
bool addr_utf8_ok(const char *, size_t);

/* How addr_parse judges what it reads. */
#define ADDR_UTF8	0x1	/* non-ASCII allowed (SMTPUTF8) */
#define ADDR_BARE	0x2	/* also "local@domain" or "local" without <> (VRFY) */
#define ADDR_MAILBOX	0x4	/* a local mailbox name: '/', dots, length judged */

/*
 * Parse "<path>" at the start of `s`; `*rest` is left at what follows the
 * closing bracket (its parameters).  Control octets are never allowed.
 */
enum addr_status addr_parse(const char *s, int flags, struct mailbox *,
    const char **rest);

/* MAIL parameters: SIZE=, BODY=7BIT|8BITMIME|BINARYMIME, SMTPUTF8. */
enum addr_status addr_mail_params(const char *, struct mail_params *);

/* RCPT parameters: mailslot knows none, so any is unknown (555). */
enum addr_status addr_rcpt_params(const char *);

/*
 * "BDAT <size> [LAST]" (RFC 3030 2).  The size is read before anything
 * else: whatever the answer, exactly that many octets follow and must be
 * read.  False when the size is not a 64-bit number, which leaves no way to
 * find the next command; *syntax_ok false for anything else that is wrong
 * (the chunk can still be drained).
 */
bool addr_bdat(const char *arg, uint64_t *size, bool *last, bool *syntax_ok);

/* Case-blind on the domain, exact on the local part (RFC 5321 2.4). */
bool addr_same(const struct mailbox *, const struct mailbox *);

#endif
