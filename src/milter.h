/*
 * milter.h: the milter client, protocol version 6 (Sendmail's libmilter
 * protocol, as Postfix speaks it too).  The session calls one function per
 * SMTP stage; each asks every configured milter in order and returns the
 * first verdict that is not VD_CONTINUE (the first refusal wins), with the
 * filter's own reply in struct vreply when it gave one.  A milter that
 * cannot be reached, is too slow (milter_timeout per reply) or breaks the
 * protocol is logged and given up for the connection; from then on it
 * answers milter_default_action at every stage.  With no `milters`
 * configured milter_open returns NULL and every other call is a no-op.
 */
#ifndef MAILSLOT_MILTER_H
#define MAILSLOT_MILTER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "conf.h"
#include "verdict.h"

struct milters;
struct peer;

/*
 * Connect to every milter, negotiate, and send the connection (family
 * `U`nknown when the peer address is unknown, a pipe; {client_addr} and
 * {client_port} from `peer`, the proxied client behind a PROXY header).
 * NULL when no milter is configured; else *vd and *vr say what the
 * connection stage decided.
 */
struct milters *milter_open(const struct config *, const struct peer *,
    enum verdict *vd, struct vreply *vr);

/* STARTTLS is done: {tls_version} and {cipher} from tls_describe(). */
void milter_tls(struct milters *, const char *described);

enum verdict milter_helo(struct milters *, const char *helo, struct vreply *);

/* MAIL: the sender without brackets ("" for <>); starts a message. */
enum verdict milter_mail(struct milters *, const char *sender, struct vreply *);

/* One accepted RCPT; a refusal refuses that recipient alone. */
enum verdict milter_rcpt(struct milters *, const char *rcpt, struct vreply *);

/* How many milters there are (0 for NULL). */
size_t milter_count(const struct milters *);

/*
 * The end of the data for milter `i`: DATA, every header, end of headers,
 * the body in chunks and end of body.  The message is read from `fd`,
 * octets [off, end) (the stored form, without mailslot's own trace
 * fields): LF line ends become CRLF again unless `binary` (stored octet
 * for octet).  `id` is the queue id (the `i` macro).  The changes the
 * milter asks for are added to `ed` (a header value as it goes after the
 * colon, folded with LF; a new body in ed->body_fd in the stored form).
 * Call it for i = 0... in order, applying each milter's edits before the
 * next, then milter_message_end.
 */
enum verdict milter_message(struct milters *, size_t i, int fd, uint64_t off,
    uint64_t end, bool binary, const char *id, struct edits *ed, struct vreply *);

/* The message is over (stored or refused): the next MAIL starts afresh. */
void milter_message_end(struct milters *);

/* RSET, a new HELO, a refused or finished transaction: SMFIC_ABORT if one is open. */
void milter_abort(struct milters *);

/* The end of the connection: SMFIC_QUIT, close, free. */
void milter_close(struct milters *);

/* Is `spec` a milter address mailslot can use? */
bool milter_spec_ok(const char *spec);

/*
 * Every entry of the `milters` key checked (a configuration error, for -t
 * and the 421 4.3.5 at connect): the number of bad ones, each named on err.
 */
int milter_check(const char *milters, FILE *err);

/*
 * For tests/fuzz/fuzz_milter.c: parse `len` octets as the packets a milter
 * sends at stage `stage` (0 the negotiation, 1 an SMTP step, 2 end of
 * body) under the negotiated `actions` and `proto` flags; returns the
 * verdict, or -1 for a protocol error.
 */
int milter_parse_packets(int stage, uint32_t actions, uint32_t proto,
    const unsigned char *data, size_t len, struct edits *, struct vreply *);

#endif
