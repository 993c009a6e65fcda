/*
 * route.h: a recipient becomes targets: Maildirs (the catch-all, or a
 * mailbox under `mailboxes`, or one of its Maildir++ folders), remote
 * addresses (forwards through forward_command), and terminals (SEND,
 * SOML, SAML).  RCPT, VRFY and EXPN all answer from here.
 */
#ifndef MAILSLOT_ROUTE_H
#define MAILSLOT_ROUTE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "addr.h"
#include "conf.h"

enum tkind { TK_MAILDIR, TK_FORWARD, TK_TERMINAL };

struct target {
	enum tkind	 kind;
	char		*path;	/* TK_MAILDIR: the Maildir written (a mailbox or its .folder) */
	char		*root;	/* TK_MAILDIR: the mailbox whose maildirsize counts it */
	char		*addr;	/* TK_FORWARD: the remote address; TK_TERMINAL: the login */
	bool		 fallback; /* SOML: only when no terminal took the whole message */
};

enum route_status {
	RT_LOCAL,		/* 250 */
	RT_FORWARD,		/* 251: every target is remote, and forward_command is set */
	RT_NOT_LOCAL,		/* 551 5.1.6: remote, and nothing to forward with */
	RT_NO_MAILBOX,		/* 550 5.1.1 */
	RT_FOREIGN,		/* 550 5.7.1: not a domain of ours; mailslot never relays */
	RT_UNUSABLE,		/* 450 4.2.1: the mailbox exists but cannot take mail now */
	RT_NOT_LOGGED_IN,	/* 450 4.2.1: SEND to someone with no terminal */
	RT_OVER_QUOTA,		/* 552 5.2.2 */
	RT_NO_SPACE,		/* 452 4.3.1: its file system is short of min_free_space */
	RT_LOCAL_ERROR,		/* 451 4.3.0 */
};

/* How SEND, SOML, SAML and MAIL ask for delivery (RFC 821 4.1.1). */
enum rmode { RM_MAILBOX, RM_TERMINAL, RM_EITHER, RM_BOTH };

struct route {
	enum route_status	 st;
	enum rmode		 mode;		/* as asked: what a terminal's failure means */
	struct target		*t;
	size_t			 n;
	char			 remote[ADDR_MAX_PATH + 1];	/* the first remote target */
};

struct router;

/* Built once per process; problems are printed to `err` and counted. */
struct router *router_new(const struct config *, FILE *err, int *problems);

/*
 * The connection's own address, which address literals must name: from
 * the socket `fd`, else TCPLOCALIP; without either, no literal is local.
 */
void route_local_address(struct router *, int fd);

/*
 * The address the client reached, as a PROXY header gave it (family
 * AF_INET or AF_INET6, 4 or 16 octets); family 0: none is known.
 */
void route_local_set(struct router *, int family, const unsigned char *addr);

/* Resolve one recipient; `size` is MAIL's SIZE= (0 unknown). */
void route_rcpt(const struct router *, const struct mailbox *, enum rmode,
    uint64_t size, struct route *);
void route_free(struct route *);

/*
 * Call fn with the path of every terminal (/dev/...) that utmp lists for
 * `login`, until fn returns non-zero; that value, or 0.
 */
int login_ttys(const char *login, int (*fn)(const char *tty, void *), void *arg);

/* EXPN: an alias's members as written, or NULL when `name` is not a list. */
const char *const *route_list(const struct router *, const char *name, size_t *n);

/* The domain a bare local name belongs to: the first of `domains`, or hostname. */
const char *route_home_domain(const struct router *);

/* Load an alias file alone (for -t and the fuzzer); problems to `err`. */
int alias_check(const char *path, const char *const *local_domains, FILE *err);

#endif
