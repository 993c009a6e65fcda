/*
 * tls.h: STARTTLS (RFC 3207) through libtls.  The session sees three calls;
 * the bytes then flow through io's transport, so nothing else changes.
 * Built without TLS (make TLS=no), the calls below say "not available".
 */
#ifndef MAILSLOT_TLS_H
#define MAILSLOT_TLS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include "conf.h"
#include "io.h"

struct tls_server;

#ifdef MAILSLOT_TLS

/* Whether STARTTLS is offered: a certificate and key are configured. */
bool tls_offered(const struct config *);

/*
 * Load the certificate, key, protocols and ciphers.  Done when the client
 * asks, not at start-up, so a plain session pays nothing for it.  NULL and
 * a reason in `why` when TLS cannot start: the client then gets 454.
 */
struct tls_server *tls_prepare(const struct config *, char *why, size_t);

/*
 * The handshake, after "220 2.0.0" was flushed and buffered input thrown
 * away; within `timeout` seconds.  On success io's transport is TLS.  -1
 * and a reason when it fails: the session cannot go on.
 */
int tls_start(struct tls_server *, struct io *, int timeout, char *why, size_t);

/* "TLSv1.3 with cipher TLS_AES_256_GCM_SHA384 (256/256 bits)", for Received and the log. */
const char *tls_describe(const struct io *);

/* For -t: the pair loads; warns when the certificate expires within 14 days. */
int tls_check(const struct config *, FILE *out);

/* End TLS on the connection (close_notify), if it was started; also at exit. */
void tls_finish(void);

#else

static inline bool tls_offered(const struct config *c) { (void)c; return false; }
static inline struct tls_server *
tls_prepare(const struct config *c, char *why, size_t n)
{
	(void)c;
	snprintf(why, n, "built without TLS");
	return NULL;
}
static inline int
tls_start(struct tls_server *t, struct io *io, int timeout, char *why, size_t n)
{
	(void)t, (void)io, (void)timeout;
	snprintf(why, n, "built without TLS");
	return -1;
}
static inline const char *tls_describe(const struct io *io) { (void)io; return NULL; }
static inline void tls_finish(void) { }
static inline int
tls_check(const struct config *c, FILE *out)
{
	if (c->tls_certificate[0] == '\0')
		return 0;
	fprintf(out, "mailslot: tls_certificate: this mailslot was built without TLS\n");
	return 1;
}

#endif
#endif
