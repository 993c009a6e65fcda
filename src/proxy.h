/*
 * proxy.h: the PROXY protocol header (HAProxy's proxy-protocol.txt,
 * versions 1 and 2) that a trusted load balancer sends before the client's
 * first byte, and the list of balancers that are trusted to send it.
 */
#ifndef MAILSLOT_PROXY_H
#define MAILSLOT_PROXY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>

#include "io.h"

#define PROXY_V1_MAX	107	/* the longest v1 line, CRLF included */
#define PROXY_V2_FIXED	16	/* signature, version and command, family, length */
#define PROXY_V2_MAX	1024	/* address and TLV octets a v2 header may declare */

enum proxy_kind {
	PROXY_PEER,	/* the header names the client: src, dst, ports */
	PROXY_LOCAL,	/* v2 LOCAL (a health check): the balancer is the peer */
	PROXY_UNKNOWN,	/* v1 UNKNOWN, v2 UNSPEC, UNIX or DGRAM: no peer can be named */
};

struct proxy_hdr {
	int		 version;	/* 1 or 2 */
	enum proxy_kind	 kind;
	int		 family;	/* PROXY_PEER: AF_INET or AF_INET6 */
	unsigned char	 src[16], dst[16];	/* 4 octets for AF_INET */
	uint16_t	 sport, dport;
};

/*
 * Parse a header at the start of buf[0..len).  Returns the octets it
 * takes (> 0) with *h filled; 0 when these octets are a valid beginning
 * and more are needed; -1 when they cannot be a valid header, with *why
 * saying why (a constant string).  Pure: no I/O, no state.
 */
ssize_t proxy_parse(const unsigned char *buf, size_t len, struct proxy_hdr *h,
    const char **why);

/*
 * Read a header from the connection, within `timeout` seconds for the
 * whole of it, however many reads it takes.  Only its octets are
 * consumed: what follows stays in the input buffer for the session.
 * Returns 0, or -1 with *why (a constant string) set.
 */
int proxy_read(struct io *, int timeout, struct proxy_hdr *h, const char **why);

/* The trusted balancers: addresses and CIDR prefixes, IPv4 and IPv6. */
struct proxy_net {
	int		family;		/* AF_INET or AF_INET6 */
	unsigned	bits;
	unsigned char	addr[16];
};

struct proxy_trust {
	size_t			 n;
	struct proxy_net	*nets;
};

/*
 * Compile `list` (words separated by blanks or commas: "192.0.2.1",
 * "10.0.0.0/8", "2001:db8::/32", "::1") into *t.  Each bad word is
 * printed to `err`, naming the key; returns the number of problems.
 */
int proxy_trust_parse(const char *list, struct proxy_trust *t, FILE *err);

/*
 * Is the address `addr` (4 or 16 octets for `family`) in the list?  An
 * IPv4-mapped IPv6 address is judged as the IPv4 address it carries.
 */
bool proxy_trusted(const struct proxy_trust *t, int family, const unsigned char *addr);

#endif
