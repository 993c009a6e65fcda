/*
 * smtp.c: the session.
 *
 * Three tables carry the protocol, so that a reviewer can hold them against
 * RFC 5321 and the seed table without reading code: the reply catalogue
 * (every code, enhanced code and text mailslot can send), the command
 * table (verb, handler, the states that allow it, its argument rule, its
 * HELP line), and the EHLO keywords.  The state is not stored: it is
 * derived from the session (greeted or not) and the transaction object
 * (absent, without recipients, with recipients), so it cannot disagree
 * with them.  A transaction exists only between MAIL and the end of data;
 * RSET, HELO and EHLO free it.
 */
#include <sys/types.h>

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>
#include <vis.h>

#include "addr.h"
#include "data.h"
#include "deliver.h"
#include "filter.h"
#include "log.h"
#include "milter.h"
#include "route.h"
#include "smtp.h"
#include "tls.h"
#include "verdict.h"

#define LINE_MAX_CMD	512	/* RFC 5321 4.5.3.1.4, CRLF included */
#define LINE_MAX_PATH	1024	/* MAIL and RCPT with ESMTP parameters (RFC 1870) */
#define REPLY_MAX	512	/* 4.5.3.1.5 */

/* ---- The reply catalogue ------------------------------------------------ */

enum reply {
	RP_NONE,	/* no reply: "nothing wrong" where a refusal is kept */
	RP_GREETING, RP_GREETING_LMTP, RP_GREETING_NO_MAIL, RP_HELLO,
	RP_OK, RP_SENDER_OK, RP_RCPT_OK, RP_VRFY_OK, RP_QUEUED, RP_HELP, RP_CLOSING,
	RP_DATA,
	RP_SHUTDOWN, RP_TIMEOUT, RP_TOO_MANY_ERRORS, RP_CONFIG, RP_UNAVAILABLE,
	RP_LOCAL_ERROR, RP_NO_STORAGE, RP_MAILBOX_FULL, RP_TOO_MANY_RCPTS,
	RP_UNRECOGNIZED, RP_LINE_TOO_LONG, RP_NUL, RP_SYNTAX, RP_BAD_SENDER,
	RP_BAD_RCPT, RP_BAD_DOMAIN, RP_NOT_IMPLEMENTED, RP_BAD_SEQUENCE,
	RP_BAD_TOPIC, RP_NO_MAIL, RP_NO_MAILBOX, RP_TOO_BIG, RP_NOT_ALLOWED,
	RP_NON_ASCII, RP_NO_VALID_RCPTS, RP_LOOP, RP_BARE_EOL, RP_BAD_PARAM,
	RP_LOST_SYNC, RP_TLS_READY, RP_TLS_UNAVAILABLE, RP_TLS_REQUIRED,
	RP_WILL_FORWARD, RP_NOT_LOCAL, RP_FOREIGN, RP_UNUSABLE, RP_OVER_QUOTA,
	RP_LIST,
	RP_VD_REJECT, RP_VD_TEMPFAIL, RP_FILTER_REJECT,
};

#define F_HOST	0x1	/* the host name comes first (RFC 5321 4.2, RFC 1846) */
#define F_TAIL	0x2	/* the detail ends the line: "please try <forward-path>" */

static const struct {
	int		 code;
	const char	*enh;		/* RFC 3463; NULL for 354, the greeting, HELO/EHLO */
	int		 flags;
	const char	*text;		/* the seed's wording */
} catalogue[] = {
	[RP_HELP]             = { 214, "2.0.0", 0, "Help message" },
	/* RFC 2034 3: no enhanced code on the greeting and the HELO/EHLO replies. */
	[RP_GREETING]         = { 220, NULL,    F_HOST, "ESMTP mailslot ready" },
	[RP_GREETING_LMTP]    = { 220, NULL,    F_HOST, "LMTP mailslot ready" },
	[RP_GREETING_NO_MAIL] = { 521, NULL,    F_HOST, "does not accept mail" },
	[RP_HELLO]            = { 250, NULL,    F_HOST, "Requested mail action okay, completed" },
	[RP_TLS_READY]        = { 220, "2.0.0", 0, "Ready to start TLS" },
	[RP_CLOSING]          = { 221, "2.0.0", F_HOST, "Service closing transmission channel" },
	[RP_OK]               = { 250, "2.0.0", 0, "Requested mail action okay, completed" },
	[RP_QUEUED]           = { 250, "2.0.0", 0, "Requested mail action okay, completed" },
	[RP_SENDER_OK]        = { 250, "2.1.0", 0, "Requested mail action okay, completed" },
	[RP_RCPT_OK]          = { 250, "2.1.5", 0, "Requested mail action okay, completed" },
	[RP_VRFY_OK]          = { 250, "2.1.5", 0, "Requested mail action okay, completed" },
	[RP_LIST]             = { 250, "2.1.5", 0, "Requested mail action okay, completed" },
	[RP_WILL_FORWARD]     = { 251, "2.1.5", F_TAIL, "User not local; will forward to" },
	[RP_DATA]             = { 354, NULL,   0, "Start mail input; end with <CRLF>.<CRLF>" },
	[RP_SHUTDOWN]         = { 421, "4.3.2", F_HOST, "Service not available, closing transmission channel" },
	[RP_UNAVAILABLE]      = { 421, "4.3.0", F_HOST, "Service not available, closing transmission channel" },
	[RP_CONFIG]           = { 421, "4.3.5", F_HOST, "Service not available, closing transmission channel" },
	[RP_TIMEOUT]          = { 421, "4.4.2", F_HOST, "Service not available, closing transmission channel" },
	[RP_LOST_SYNC]        = { 421, "4.5.0", F_HOST, "Service not available, closing transmission channel" },
	[RP_TOO_MANY_ERRORS]  = { 421, "4.7.0", F_HOST, "Service not available, closing transmission channel" },
	[RP_UNUSABLE]         = { 450, "4.2.1", 0, "Requested mail action not taken: mailbox unavailable" },
	[RP_LOCAL_ERROR]      = { 451, "4.3.0", 0, "Requested action aborted: local error in processing" },
	/* A filter's verdict (verdict.h), when the filter gave no reply of its own. */
	[RP_VD_TEMPFAIL]      = { 451, "4.7.1", 0, "Requested action aborted: deferred by a content filter, try again later" },
	[RP_MAILBOX_FULL]     = { 452, "4.2.2", 0, "Requested action not taken: mailbox full" },
	[RP_NO_STORAGE]       = { 452, "4.3.1", 0, "Requested action not taken: insufficient system storage" },
	[RP_TOO_MANY_RCPTS]   = { 452, "4.5.3", 0, "Requested action not taken: too many recipients" },
	[RP_TLS_UNAVAILABLE]  = { 454, "4.7.0", 0, "TLS not available due to temporary reason" },
	[RP_UNRECOGNIZED]     = { 500, "5.5.1", 0, "Syntax error, command unrecognized" },
	[RP_LINE_TOO_LONG]    = { 500, "5.5.2", 0, "Syntax error, line too long" },
	[RP_NUL]              = { 500, "5.5.2", 0, "Syntax error, NUL octet in command line" },
	[RP_BAD_RCPT]         = { 501, "5.1.3", 0, "Syntax error in parameters or arguments" },
	[RP_BAD_SENDER]       = { 501, "5.1.7", 0, "Syntax error in parameters or arguments" },
	[RP_SYNTAX]           = { 501, "5.5.4", 0, "Syntax error in parameters or arguments" },
	[RP_BAD_DOMAIN]       = { 501, "5.5.4", 0, "Syntax error in parameters or arguments" },
	[RP_NOT_IMPLEMENTED]  = { 502, "5.5.1", 0, "Command not implemented" },
	[RP_BAD_SEQUENCE]     = { 503, "5.5.1", 0, "Bad sequence of commands" },
	[RP_BAD_TOPIC]        = { 504, "5.5.4", 0, "Command parameter not implemented" },
	[RP_NO_MAIL]          = { 521, "5.3.2", F_HOST, "does not accept mail" },
	[RP_TLS_REQUIRED]     = { 530, "5.7.0", 0, "Must issue a STARTTLS command first" },
	[RP_NO_MAILBOX]       = { 550, "5.1.1", 0, "Requested action not taken: mailbox unavailable" },
	[RP_FOREIGN]          = { 550, "5.7.1", 0, "Requested action not taken: mailbox unavailable" },
	[RP_VD_REJECT]        = { 550, "5.7.1", 0, "Requested action not taken: refused by a content filter" },
	[RP_NOT_LOCAL]        = { 551, "5.1.6", F_TAIL, "User not local; please try" },
	[RP_OVER_QUOTA]       = { 552, "5.2.2", 0, "Requested mail action aborted: exceeded storage allocation" },
	[RP_TOO_BIG]          = { 552, "5.3.4", 0, "Requested mail action aborted: exceeded storage allocation" },
	[RP_NOT_ALLOWED]      = { 553, "5.1.3", 0, "Requested action not taken: mailbox name not allowed" },
	[RP_NON_ASCII]        = { 553, "5.6.7", 0, "Requested action not taken: mailbox name not allowed" },
	[RP_LOOP]             = { 554, "5.4.6", 0, "Transaction failed" },
	[RP_NO_VALID_RCPTS]   = { 554, "5.5.1", 0, "Transaction failed" },
	[RP_BARE_EOL]         = { 554, "5.6.0", 0, "Transaction failed" },
	/* filter_command's exit 100, as qmail answers its queue's permanent refusal. */
	[RP_FILTER_REJECT]    = { 554, "5.7.1", 0, "Transaction failed: refused by a content filter" },
	[RP_BAD_PARAM]        = { 555, "5.5.4", 0, "MAIL FROM/RCPT TO parameters not recognized or not implemented" },
};

/* ---- Session and transaction ------------------------------------------- */

enum state { S_INIT = 1, S_READY = 2, S_MAIL = 4, S_RCPT = 8 };
#define S_ANY (S_INIT | S_READY | S_MAIL | S_RCPT)

struct txn {
	const char		*verb;		/* MAIL, SEND, SOML or SAML */
	enum rmode		 mode;
	struct mailbox		 from;
	struct mail_params	 params;
	size_t			 nrcpt, refused, cap;
	struct rcpt		*rcpt;
	/* The message, from DATA or the first BDAT on. */
	struct delivery		*dv;		/* NULL: nothing is being written */
	struct msg		*m;		/* where the data goes */
	bool			 chunked;	/* BDAT used: DATA is out of sequence */
	uint64_t		 chunked_octets;
	enum reply		 refusal;	/* RP_NONE, or why it will be refused */
	struct decoder		 dec;
};

struct session {
	const struct config	*conf;
	struct io		*io;
	const struct router	*router;
	const struct peer	*peer;
	enum line_endings	 le;
	bool			 greeted, esmtp, done;
	bool			 tls;		/* STARTTLS completed */
	bool			 lmtp;		/* protocol=lmtp: LHLO, a reply per recipient */
	/*
	 * LMTP (RFC 2033 4.2): at the end of the data every accepted
	 * recipient gets a reply.  A refusal of the whole message (too big, a
	 * loop, bare line ends, a filter's verdict) is the same for each:
	 * while `each` is set, respond() and reply_own() give it that many
	 * times.  0: once.
	 */
	size_t			 each;
	char			 peer_desc[400]; /* "host [ip]" for Received */
	char			 helo[ADDR_MAX_DOMAIN + 1];
	long long		 errors;
	unsigned		 ntx;
	struct txn		*tx;
	struct milters		*milt;		/* NULL: no milters */
	const char		*cmd;		/* the line being answered, for the log */
	size_t			 cmdlen;
	const char		*rcpt;		/* RCPT's address while it is judged, ditto */
};

static enum state
state_of(const struct session *s)
{
	if (s->tx != NULL)
		return s->tx->nrcpt > 0 ? S_RCPT : S_MAIL;
	return s->greeted ? S_READY : S_INIT;
}

static const char *
state_name(enum state st)
{
	switch (st) {
	case S_INIT:	return "connected";
	case S_READY:	return "ready";
	case S_MAIL:	return "mail";
	case S_RCPT:	return "rcpt";
	}
	return "?";
}

static void
txn_free(struct session *s)
{
	milter_abort(s->milt);
	if (s->tx != NULL) {
		if (s->tx->dv != NULL)
			delivery_abort(s->tx->dv);
		for (size_t i = 0; i < s->tx->nrcpt; i++)
			route_free(&s->tx->rcpt[i].rt);
		free(s->tx->rcpt);
		free(s->tx);
		s->tx = NULL;
	}
}

/* ---- Replies: every line the client gets goes through here -------------- */

static void
put_line(struct session *s, const char *line, size_t n)
{
	/* A write failure shows again at the next flush, where it ends the session. */
	(void)io_write(s->io, line, n);
}

/*
 * A reply line under construction, at most REPLY_MAX octets with its CRLF:
 * what does not fit is cut.  Built with memcpy: snprintf() was a third of
 * the instructions of a whole session.
 */
struct rline {
	char buf[REPLY_MAX];
	size_t len;
};

static void
rl_add(struct rline *l, const char *p, size_t n)
{
	size_t room = sizeof(l->buf) - 2 - l->len;

	if (n > room)
		n = room;
	memcpy(l->buf + l->len, p, n);
	l->len += n;
}

static void
rl_str(struct rline *l, const char *p)
{
	rl_add(l, p, strlen(p));
}

/* "CODE-" or "CODE ", then "ENH " when there is one. */
static void
rl_begin(struct rline *l, int code, bool more, const char *enh)
{
	l->buf[0] = (char)('0' + code / 100 % 10);
	l->buf[1] = (char)('0' + code / 10 % 10);
	l->buf[2] = (char)('0' + code % 10);
	l->buf[3] = more ? '-' : ' ';
	l->len = 4;
	if (enh != NULL) {
		rl_str(l, enh);
		rl_add(l, " ", 1);
	}
}

static void
rl_send(struct session *s, struct rline *l)
{
	memcpy(l->buf + l->len, "\r\n", 2);
	put_line(s, l->buf, l->len + 2);
}

/* One reply line: "CODE[-| ]ENH [host ][detail: ]text", to `io`. */
static void
render(struct io *io, const char *host, enum reply r, bool more, const char *detail)
{
	const char *text = catalogue[r].text;
	struct rline l;
	size_t fixed, dn;

	rl_begin(&l, catalogue[r].code, more, catalogue[r].enh);
	if (catalogue[r].flags & F_HOST) {
		rl_str(&l, host);
		rl_add(&l, " ", 1);
	}
	if (detail == NULL)
		detail = "";
	/* A long detail is cut, not the text after it: ": " and CRLF count. */
	fixed = l.len + strlen(text) + 2 + 2;
	dn = strlen(detail);
	if (dn > REPLY_MAX - fixed)
		dn = REPLY_MAX > fixed ? REPLY_MAX - fixed : 0;
	if (catalogue[r].flags & F_TAIL) {
		rl_str(&l, text);
		rl_add(&l, " ", 1);
		rl_add(&l, detail, dn);
	} else if (dn > 0) {
		rl_add(&l, detail, dn);
		rl_add(&l, ": ", 2);
		rl_str(&l, text);
	} else
		rl_str(&l, text);
	memcpy(l.buf + l.len, "\r\n", 2);
	/* A write failure shows again at the next flush, where it ends the session. */
	(void)io_write(io, l.buf, l.len + 2);
}

static void
reply_line(struct session *s, enum reply r, bool more, const char *detail)
{
	render(s->io, s->conf->hostname, r, more, detail);
}

/*
 * A reply from the catalogue.  4xx and 5xx replies (but 421, which closes
 * anyway) are logged with the command that earned them and, when `count`,
 * count against max_errors; reaching it adds the 421 and ends the session.
 */
static void
respond(struct session *s, enum reply r, bool count, const char *detail)
{
	int code = catalogue[r].code;

	for (size_t i = 0; i < (s->each > 0 ? s->each : 1); i++)
		reply_line(s, r, false, detail);
	if (code < 400)
		return;
	{
		char cmd[LOG_QUOTED(64)], why[LOG_QUOTED(REPLY_MAX / 4)];
		char to[LOG_QUOTED(ADDR_MAX_PATH + 2)] = "";

		/* A refused recipient is found by its address, whole (the command is cut). */
		if (s->rcpt != NULL)
			log_quote_path(to, sizeof(to), s->rcpt);
		log_msg(code >= 500 ? LOG_NOTICE : LOG_WARNING,
		    "event=refuse code=%d enh=%s command=%s reason=%s%s%s",
		    code, catalogue[r].enh,
		    log_quote(cmd, sizeof(cmd), s->cmd, s->cmd ? s->cmdlen : 0),
		    log_quote(why, sizeof(why), detail, detail ? strlen(detail) : 0),
		    s->rcpt != NULL ? " to=" : "", to);
	}
	if (count && code != 421 && ++s->errors >= s->conf->max_errors && !s->done) {
		reply_line(s, RP_TOO_MANY_ERRORS, false, "too many errors");
		log_msg(LOG_NOTICE, "event=close reason=too-many-errors errors=%lld",
		    s->errors);
		s->done = true;
	}
}

static void
reply(struct session *s, enum reply r, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void
reply(struct session *s, enum reply r, const char *fmt, ...)
{
	char detail[REPLY_MAX] = "";

	if (fmt != NULL) {
		va_list ap;

		va_start(ap, fmt);
		vsnprintf(detail, sizeof(detail), fmt, ap);
		va_end(ap);
	}
	respond(s, r, true, detail);
}

/*
 * A filter's own reply (verdict.h; checked when it was kept, made safe
 * again here): its lines through the catalogue's line writer, each
 * "CODE-ENH text" but the last "CODE ENH text".  Logged as respond()
 * logs, not counted against max_errors: the client did nothing wrong.
 */
static void
reply_own(struct session *s, const struct vreply *vr, const char *deflt_enh)
{
	const char *enh = vr->enh[0] != '\0' ? vr->enh : deflt_enh, *p = vr->text;
	char e[LOG_QUOTED(64)], why[LOG_QUOTED(REPLY_MAX / 4)];
	struct rline l;

	for (size_t k = 0; k < (s->each > 0 ? s->each : 1); k++, p = vr->text)
		for (;;) {
			size_t n = strcspn(p, "\n");
			bool more = p[n] == '\n' && p[n + 1] != '\0';

			rl_begin(&l, vr->code, more, enh);
			for (size_t i = 0; i < n; i++) {
				char c = p[i] >= ' ' && p[i] < 127 ? p[i] : '?';

				rl_add(&l, &c, 1);
			}
			rl_send(s, &l);
			if (!more)
				break;
			p += n + 1;
		}
	log_msg(vr->code >= 500 ? LOG_NOTICE : LOG_WARNING,
	    "event=refuse code=%d enh=%s command=%s reason=filter text=%s", vr->code, enh,
	    log_quote(e, sizeof(e), s->cmd, s->cmd ? s->cmdlen : 0),
	    log_quote(why, sizeof(why), vr->text, strcspn(vr->text, "\n")));
}

/*
 * The reply for a filter's refusal at any step: its own reply when it
 * gave a valid one, else the catalogue's.  True when a reply was sent
 * (VD_REJECT, VD_TEMPFAIL); the other verdicts leave the reply to the
 * step.  The filter command's refusal is 554, a milter's 550 (Postfix's).
 */
static bool
reply_verdict(struct session *s, enum verdict v, const struct vreply *vr)
{
	int want = v == VD_REJECT ? 5 : 4;

	if (v != VD_REJECT && v != VD_TEMPFAIL)
		return false;
	if (vr != NULL && vr->code / 100 == want && vr->text[0] != '\0') {
		reply_own(s, vr, want == 5 ? "5.7.1" : "4.7.1");
		/* 421 closes the channel (RFC 5321 3.8): the session ends, as Postfix ends it. */
		if (vr->code == 421)
			s->done = true;
		return true;
	}
	if (v == VD_TEMPFAIL)
		respond(s, RP_VD_TEMPFAIL, false, NULL);
	else
		respond(s, vr != NULL && vr->code == 554 ? RP_FILTER_REJECT : RP_VD_REJECT,
		    false, NULL);
	return true;
}

/* A free-form multi-line reply (EHLO, HELP): `lines` NULL-terminated. */
static void
reply_lines(struct session *s, enum reply r, const char *const *lines)
{
	struct rline l;

	reply_line(s, r, lines[0] != NULL, NULL);
	for (int i = 0; lines[i] != NULL; i++) {
		rl_begin(&l, catalogue[r].code, lines[i + 1] != NULL, catalogue[r].enh);
		rl_str(&l, lines[i]);
		rl_send(s, &l);
	}
}

/* A safe rendering of an untrusted string for a reply: printable ASCII only. */
static const char *
esc(char *buf, size_t size, const char *s)
{
	size_t n = strlen(s);

	if (n > (size - 1) / 4)
		n = (size - 1) / 4;	/* an octet becomes at most four */
	if (!vis_needed(s, n, false)) {
		memcpy(buf, s, n);
		buf[n] = '\0';
	} else if (strnvisx(buf, size, s, n, VIS_CSTYLE | VIS_OCTAL | VIS_NL | VIS_TAB) == -1)
		buf[0] = '\0';
	return buf;
}

/* ---- Commands ---------------------------------------------------------- */

struct command;
typedef void handler(struct session *, const struct command *, char *arg);

#define A_NONE		0x1	/* an argument is a 501 */
#define A_NEEDED	0x2	/* no argument is a 501 */
#define A_LONG		0x4	/* the line may be 1024 octets, not 512 */

struct command {
	const char	*verb;
	handler		*fn;
	int		 states;	/* where it is allowed; elsewhere 503 */
	int		 args;
	bool		(*enabled)(const struct config *);	/* NULL: always; else 502 */
	const char	*help;
	/* Called after any refusal by dispatch: BDAT still has its chunk to read. */
	void		(*refused)(struct session *, char *arg);
};

static void bdat_refused(struct session *, char *);
static handler cmd_helo, cmd_ehlo, cmd_mail, cmd_rcpt, cmd_data, cmd_bdat, cmd_rset,
    cmd_starttls,
    cmd_vrfy, cmd_expn, cmd_help, cmd_noop, cmd_quit, cmd_turn;

static bool vrfy_on(const struct config *c) { return c->vrfy; }
static bool expn_on(const struct config *c) { return c->expn; }
/* LMTP has no terminals: SEND, SOML and SAML are SMTP's (502 under LMTP). */
static bool send_on(const struct config *c)
{ return c->terminal_delivery && c->protocol == PROTO_SMTP; }
static bool smtp_on(const struct config *c) { return c->protocol == PROTO_SMTP; }
static bool tls_on(const struct config *c) { return tls_offered(c); }
/* RFC 2821 removed TURN: it hands the connection to a peer nobody checked. */
static bool never(const struct config *c) { (void)c; return false; }

static const struct command commands[] = {
	{ "HELO", cmd_helo, S_ANY,	A_NEEDED, NULL,	"HELO <domain>", NULL },
	{ "EHLO", cmd_ehlo, S_ANY,	A_NEEDED, NULL,	"EHLO <domain>", NULL },
	{ "LHLO", cmd_ehlo, S_ANY,	A_NEEDED, NULL,	"LHLO <domain>", NULL },
	{ "MAIL", cmd_mail, S_READY,	A_NEEDED | A_LONG, NULL,
	    "MAIL FROM:<reverse-path> [SIZE=<n>] [BODY=7BIT|8BITMIME|BINARYMIME] [SMTPUTF8]", NULL },
	{ "SEND", cmd_mail, S_READY,	A_NEEDED | A_LONG, send_on,
	    "SEND FROM:<reverse-path> [parameters] (to terminals)", NULL },
	{ "SOML", cmd_mail, S_READY,	A_NEEDED | A_LONG, smtp_on,
	    "SOML FROM:<reverse-path> [parameters] (terminal or mailbox)", NULL },
	{ "SAML", cmd_mail, S_READY,	A_NEEDED | A_LONG, smtp_on,
	    "SAML FROM:<reverse-path> [parameters] (terminal and mailbox)", NULL },
	{ "RCPT", cmd_rcpt, S_MAIL | S_RCPT, A_NEEDED | A_LONG, NULL, "RCPT TO:<forward-path>", NULL },
	{ "DATA", cmd_data, S_MAIL | S_RCPT, A_NONE, NULL, "DATA", NULL },
	{ "BDAT", cmd_bdat, S_RCPT,	A_NEEDED, NULL,	"BDAT <size> [LAST]", bdat_refused },
	{ "RSET", cmd_rset, S_ANY,	A_NONE,	NULL,	"RSET", NULL },
	{ "VRFY", cmd_vrfy, S_ANY,	A_NEEDED, vrfy_on, "VRFY <address>", NULL },
	{ "EXPN", cmd_expn, S_ANY,	A_NEEDED, expn_on, "EXPN <list>", NULL },
	{ "HELP", cmd_help, S_ANY,	0,	NULL,	"HELP [<command>]", NULL },
	{ "NOOP", cmd_noop, S_ANY,	0,	NULL,	"NOOP [<string>]", NULL },
	{ "QUIT", cmd_quit, S_ANY,	A_NONE,	NULL,	"QUIT", NULL },
	{ "TURN", cmd_turn, S_ANY,	A_NONE,	never,	"TURN (not implemented)", NULL },
	{ "STARTTLS", cmd_starttls, S_INIT | S_READY, A_NONE, tls_on, "STARTTLS", NULL },
};

#define NCOMMANDS (sizeof(commands) / sizeof(commands[0]))

static const struct command *
command_find(const char *verb, size_t len)
{
	for (size_t i = 0; i < NCOMMANDS; i++)
		if (strlen(commands[i].verb) == len &&
		    strncasecmp(commands[i].verb, verb, len) == 0)
			return &commands[i];
	return NULL;
}

/*
 * RFC 2033 4.1: LMTP greets with LHLO, and HELO and EHLO are not LMTP
 * commands; SMTP has no LHLO.  The other protocol's greeting is unknown
 * here: 500 5.5.1, not listed by HELP.
 */
static bool
spoken(const struct session *s, const struct command *c)
{
	if (c->fn != cmd_helo && c->fn != cmd_ehlo)
		return true;
	return (strcmp(c->verb, "LHLO") == 0) == s->lmtp;
}

static void
bad_sequence(struct session *s, const struct command *c)
{
	enum state st = state_of(s);
	const char *why;

	if (st == S_INIT)
		why = s->lmtp ? "send LHLO first" : "send HELO or EHLO first";
	else if (c->states == S_READY)
		why = "a mail transaction is already open";
	else if (st == S_MAIL)
		why = "need RCPT first";
	else
		why = "need MAIL first";
	reply(s, RP_BAD_SEQUENCE, "%s", why);
}

/* HELO and EHLO: a checked domain, and a reset like RSET (RFC 5321 4.1.4). */
static bool
greet(struct session *s, char *arg, bool esmtp)
{
	if (!addr_helo_ok(arg, strlen(arg))) {
		char e[128];

		reply(s, RP_BAD_DOMAIN, "%s: invalid domain", esc(e, sizeof(e), arg));
		return false;
	}
	txn_free(s);
	strlcpy(s->helo, arg, sizeof(s->helo));
	s->greeted = true;
	s->esmtp = esmtp;
	/* A refusal here answers the MAIL commands that follow. */
	(void)milter_helo(s->milt, arg, &(struct vreply){ 0 });
	return true;
}

static void
cmd_helo(struct session *s, const struct command *c, char *arg)
{
	(void)c;
	if (greet(s, arg, false))
		reply_line(s, RP_HELLO, false, NULL);
}

static void
cmd_ehlo(struct session *s, const struct command *c, char *arg)
{
	const struct config *cf = s->conf;
	const char *lines[20];
	char size[40];
	int n = 0;

	(void)c;
	if (!greet(s, arg, true))
		return;
	snprintf(size, sizeof(size), "SIZE %" PRIu64, cf->max_message_size);
	lines[n++] = "PIPELINING";
	lines[n++] = size;
	lines[n++] = "8BITMIME";
	lines[n++] = "ENHANCEDSTATUSCODES";
	lines[n++] = "SMTPUTF8";
	lines[n++] = "CHUNKING";
	lines[n++] = "BINARYMIME";
	if (cf->vrfy)
		lines[n++] = "VRFY";
	if (cf->expn)
		lines[n++] = "EXPN";
	/* RFC 5321 F.6: a server that implements SEND, SOML or SAML lists them. */
	if (send_on(cf))
		lines[n++] = "SEND";
	if (!s->lmtp) {
		lines[n++] = "SOML";
		lines[n++] = "SAML";
	}
	if (tls_offered(cf) && !s->tls)
		lines[n++] = "STARTTLS";
	lines[n++] = "HELP";
	lines[n] = NULL;
	reply_lines(s, RP_HELLO, lines);
}

/* The "FROM:" or "TO:" that starts a MAIL or RCPT argument. */
static char *
after_keyword(char *arg, const char *kw)
{
	size_t n = strlen(kw);

	return strncasecmp(arg, kw, n) == 0 ? arg + n : NULL;
}

static bool
disk_has_room(struct session *s, uint64_t size)
{
	const struct config *c = s->conf;

	/* Each recipient's own file system is judged again at RCPT. */
	return maildir_room(c->mailboxes[0] ? c->mailboxes : c->maildir,
	    c->min_free_space, size);
}

static void
cmd_mail(struct session *s, const struct command *c, char *arg)
{
	struct mailbox from;
	struct mail_params mp = { 0 };
	const char *rest, *path = after_keyword(arg, "FROM:");
	enum addr_status st;
	bool malformed;

	if (s->conf->tls_required && !s->tls) {
		reply(s, RP_TLS_REQUIRED, NULL);
		return;
	}
	if (path == NULL) {
		reply(s, RP_SYNTAX, "Syntax: %s FROM:<address>", c->verb);
		return;
	}
	/* Parameters come after the path, so read it once permissively first. */
	st = addr_parse(path, ADDR_UTF8, &from, &rest);
	malformed = st == ADDR_NONASCII;	/* not UTF-8 even where UTF-8 is allowed */
	if (st == ADDR_OK && *rest != '\0' && *rest != ' ')
		st = ADDR_SYNTAX;
	if (st == ADDR_SYNTAX) {
		reply(s, RP_BAD_SENDER, "bad sender address syntax");
		return;
	}
	if (st == ADDR_OK) {
		st = addr_mail_params(rest, &mp);
		if (st == ADDR_PARAM_UNKNOWN) {
			reply(s, RP_BAD_PARAM, "unknown parameter");
			return;
		}
		if (st == ADDR_PARAM_SYNTAX) {
			reply(s, RP_SYNTAX, "bad parameter");
			return;
		}
		if (!mp.smtputf8)
			st = addr_parse(path, 0, &from, &rest);
	}
	if (st == ADDR_NONASCII) {
		reply(s, RP_NON_ASCII, "%s", malformed || mp.smtputf8 ?
		    "malformed UTF-8 in address" : "non-ASCII address without SMTPUTF8");
		return;
	}
	if (st != ADDR_OK || (from.bare && !from.null)) {
		reply(s, RP_BAD_SENDER, "sender address not allowed");
		return;
	}
	if (mp.has_size && mp.size > s->conf->max_message_size) {
		reply(s, RP_TOO_BIG, "message size exceeds fixed maximum message size");
		return;
	}
	if (!disk_has_room(s, mp.has_size ? mp.size : 0)) {
		reply(s, RP_NO_STORAGE, "not enough free space for the message");
		return;
	}
	if ((s->tx = calloc(1, sizeof(*s->tx))) == NULL) {
		reply(s, RP_LOCAL_ERROR, "out of memory");
		return;
	}
	s->tx->verb = c->verb;
	/* RFC 821 4.1.1: SEND to terminals, SOML either, SAML both; MAIL to mailboxes. */
	s->tx->mode = strcmp(c->verb, "SEND") == 0 ? RM_TERMINAL :
	    strcmp(c->verb, "SOML") == 0 ? RM_EITHER :
	    strcmp(c->verb, "SAML") == 0 ? RM_BOTH : RM_MAILBOX;
	s->tx->from = from;
	s->tx->params = mp;
	{
		struct vreply vr;
		enum verdict vd = milter_mail(s->milt, from.null ? "" : from.text, &vr);

		if (reply_verdict(s, vd, &vr)) {
			txn_free(s);
			return;
		}
	}
	reply(s, RP_SENDER_OK, "<%s>", from.text);
}

/*
 * The reply for a resolved recipient, for RCPT and for VRFY (`vrfy`: the
 * question is whether the mailbox exists, not whether it takes mail now).
 * True when the recipient is accepted.
 */
static bool
route_reply(struct session *s, const struct mailbox *mb, const struct route *rt,
    bool vrfy)
{
	const char *a = mb->text;
	char q[ADDR_MAX_PATH + 3];

	snprintf(q, sizeof(q), "<%s>", rt->remote);
	switch (rt->st) {
	case RT_LOCAL:
		break;
	case RT_UNUSABLE:
	case RT_OVER_QUOTA:
	case RT_NO_SPACE:
		if (vrfy)
			break;
		if (rt->st == RT_UNUSABLE)
			reply(s, RP_UNUSABLE, "<%s>", a);
		else if (rt->st == RT_OVER_QUOTA)
			reply(s, RP_OVER_QUOTA, "<%s>: mailbox is full", a);
		else
			reply(s, RP_NO_STORAGE, "<%s>: not enough free space", a);
		return false;
	case RT_FORWARD:
		reply(s, RP_WILL_FORWARD, "%s", q);
		return true;
	case RT_NOT_LOCAL:
		reply(s, RP_NOT_LOCAL, "%s", q);
		return false;
	case RT_NO_MAILBOX:
		reply(s, RP_NO_MAILBOX, "<%s>", a);
		return false;
	case RT_FOREIGN:
		reply(s, RP_FOREIGN, "<%s>: relay access denied", a);
		return false;
	case RT_NOT_LOGGED_IN:
		if (vrfy)
			reply(s, RP_NO_MAILBOX, "<%s>", a);
		else
			reply(s, RP_UNUSABLE, "<%s>: not logged in", a);
		return false;
	case RT_LOCAL_ERROR:
		if (vrfy)
			reply(s, RP_NO_MAILBOX, "<%s>: local error", a);
		else
			reply(s, RP_LOCAL_ERROR, "<%s>", a);
		return false;
	}
	if (vrfy && mb->bare)
		reply(s, RP_VRFY_OK, "<%s@%s>", a, route_home_domain(s->router));
	else
		reply(s, vrfy ? RP_VRFY_OK : RP_RCPT_OK, "<%s>", a);
	return true;
}

static void
rcpt_judge(struct session *s, char *arg)
{
	struct txn *tx = s->tx;
	struct mailbox to;
	struct rcpt *rc;
	const char *rest, *path = after_keyword(arg, "TO:");
	enum addr_status st;
	char e[ADDR_MAX_PATH * 4 + 1], raw[ADDR_MAX_PATH + 1];
	int flags = ADDR_MAILBOX | (tx->params.smtputf8 ? ADDR_UTF8 : 0);

	if (path == NULL) {
		tx->refused++;
		reply(s, RP_SYNTAX, "Syntax: RCPT TO:<address>");
		return;
	}
	/* For the log until it parses: what is between the brackets, bounded. */
	strlcpy(raw, path + strspn(path, " <"), sizeof(raw));
	raw[strcspn(raw, ">")] = '\0';
	s->rcpt = raw;
	st = addr_parse(path, flags, &to, &rest);
	if (st == ADDR_OK)
		s->rcpt = to.text;
	if (st == ADDR_OK && *rest != '\0' && *rest != ' ')
		st = ADDR_SYNTAX;
	if (st == ADDR_OK)
		st = addr_rcpt_params(rest);
	if (st == ADDR_OK && to.null)
		st = ADDR_SYNTAX;
	/* Only <postmaster> may come without a domain (RFC 5321 4.5.1). */
	if (st == ADDR_OK && to.bare && strcasecmp(to.local, "postmaster") != 0)
		st = ADDR_SYNTAX;
	if (st != ADDR_OK)
		tx->refused++;
	switch (st) {
	case ADDR_OK:
		break;
	case ADDR_SYNTAX:
		reply(s, RP_BAD_RCPT, "%s: bad recipient address syntax", esc(e, sizeof(e), path));
		return;
	case ADDR_NONASCII:
		reply(s, RP_NON_ASCII, "%s: %s", esc(e, sizeof(e), path), tx->params.smtputf8 ?
		    "malformed UTF-8 in address" : "non-ASCII address without SMTPUTF8");
		return;
	case ADDR_NOT_ALLOWED:
		reply(s, RP_NOT_ALLOWED, "%s", esc(e, sizeof(e), path));
		return;
	case ADDR_PARAM_UNKNOWN:
		reply(s, RP_BAD_PARAM, "unknown parameter");
		return;
	case ADDR_PARAM_SYNTAX:
		reply(s, RP_SYNTAX, "bad parameter");
		return;
	}
	for (size_t i = 0; i < tx->nrcpt; i++)
		if (addr_same(&tx->rcpt[i].mb, &to)) {
			reply(s, RP_RCPT_OK, "<%s>", to.text);	/* one copy is enough */
			return;
		}
	if (tx->nrcpt >= (size_t)s->conf->max_recipients) {
		char d[ADDR_MAX_PATH + 3];

		/*
		 * RFC 5321 4.5.3.1.10: the client sends the rest in another
		 * transaction; this is no client error, and not counted.
		 */
		snprintf(d, sizeof(d), "<%s>", to.text);
		respond(s, RP_TOO_MANY_RCPTS, false, d);
		return;
	}
	if (tx->nrcpt == tx->cap) {
		size_t cap = tx->cap ? tx->cap * 2 : 4;
		struct rcpt *r = reallocarray(tx->rcpt, cap, sizeof(*r));

		if (r == NULL) {
			reply(s, RP_LOCAL_ERROR, "out of memory");
			return;
		}
		tx->rcpt = r;
		tx->cap = cap;
	}
	rc = &tx->rcpt[tx->nrcpt];
	rc->mb = to;
	route_rcpt(s->router, &rc->mb, tx->mode, tx->params.has_size ? tx->params.size : 0,
	    &rc->rt);
	if (rc->rt.st == RT_LOCAL || rc->rt.st == RT_FORWARD) {
		struct vreply vr;
		enum verdict vd = milter_rcpt(s->milt, to.text, &vr);

		if (reply_verdict(s, vd, &vr)) {
			tx->refused++;
			route_free(&rc->rt);
			return;
		}
	}
	if (!route_reply(s, &rc->mb, &rc->rt, false)) {
		tx->refused++;
		route_free(&rc->rt);
		return;
	}
	tx->nrcpt++;
}

static void
cmd_rcpt(struct session *s, const struct command *c, char *arg)
{
	(void)c;
	rcpt_judge(s, arg);
	s->rcpt = NULL;
}

/* RFC 3848 "with" names (and RFC 6531's UTF8 ones). */
static const char *
protocol(const struct session *s)
{
	if (s->lmtp && s->tx->params.smtputf8)
		return s->tls ? "UTF8LMTPS" : "UTF8LMTP";
	if (s->lmtp)
		return s->tls ? "LMTPS" : "LMTP";
	if (!s->esmtp)
		return s->tls ? "SMTPS" : "SMTP";
	if (s->tx->params.smtputf8)
		return s->tls ? "UTF8SMTPS" : "UTF8SMTP";
	return s->tls ? "ESMTPS" : "ESMTP";
}

/* The reply for a delivery that failed with `err`. */
static enum reply
failure_reply(int err)
{
	switch (err) {
	case ENOSPC:	return RP_NO_STORAGE;
	case EDQUOT:	return RP_MAILBOX_FULL;
	default:	return RP_LOCAL_ERROR;
	}
}

/* The detail that goes with a refused message. */
static const char *
refusal_text(enum reply r)
{
	switch (r) {
	case RP_TOO_BIG:	return "message size exceeds fixed maximum message size";
	case RP_SYNTAX:		return "Syntax: BDAT <size> [LAST]";
	case RP_BARE_EOL:	return "bare CR or LF in message (line_endings=strict)";
	case RP_LOOP:		return "mail loop: too many Received headers";
	default:		return "message not stored";
	}
}

/* Plan the delivery, open its first file with the trace, ready the decoder. */
static bool
begin_message(struct session *s, enum dmode mode)
{
	struct txn *tx = s->tx;
	struct trace tr = {
		.helo = s->helo, .peer = s->peer_desc, .protocol = protocol(s),
		.tls = s->tls ? tls_describe(s->io) : NULL,
		.sender = tx->from.null ? "" : tx->from.text,
		.binary = tx->params.body == BODY_BINARYMIME,
	};

	if ((tx->dv = delivery_begin(s->conf, &tr, tx->rcpt, tx->nrcpt, &tx->m)) == NULL) {
		int e = errno;

		log_msg(LOG_ERR, "event=error op=create error=\"%s\"", strerror(e));
		tx->refusal = failure_reply(e);
		return false;
	}
	decoder_init(&tx->dec, mode);
	return true;
}

/*
 * Read message octets: to the end of the data (remaining == NULL), or one
 * chunk's worth.  When the message is not being written (refused, or too
 * big) the octets are still read, and dropped, so the stream stays in
 * step.  False when the session is over (the client left, a timeout,
 * SIGTERM); what there was to say has been said.
 */
static bool
receive(struct session *s, uint64_t *remaining)
{
	struct txn *tx = s->tx;
	struct decoder *d = &tx->dec;
	uint64_t limit = s->conf->max_message_size;

	while (remaining != NULL ? *remaining > 0 : d->st != D_END) {
		enum io_status st = io_fill(s->io, (int)s->conf->data_timeout);
		size_t n, used, made, cap;
		uint64_t lines = d->lines;
		char *room;

		switch (st) {
		case IO_OK:
			break;
		case IO_TIMEOUT:
			reply(s, RP_TIMEOUT, "timeout exceeded in %s", remaining ? "BDAT" : "DATA");
			return false;
		case IO_SIGNAL:
			reply(s, RP_SHUTDOWN, "shutting down");
			return false;
		default:
			log_msg(LOG_NOTICE, "event=disconnect state=data reason=%s",
			    st == IO_EOF ? "eof" : strerror(errno));
			return false;
		}
		n = io_avail(s->io);
		if (remaining != NULL && n > *remaining)
			n = (size_t)*remaining;
		if (tx->dv == NULL) {
			used = n;
		} else {
			room = msg_room(tx->m, &cap);
			decoder_run(d, io_peek(s->io), n, &used, room, cap, &made);
			/* DATA's size as the client counts it: with CRLF (RFC 1870). */
			if (remaining == NULL && tx->refusal == RP_NONE &&
			    (d->octets > limit || d->lines > limit - d->octets)) {
				tx->refusal = RP_TOO_BIG;
				msg_discard(tx->m);
			}
			msg_wrote(tx->m, made, d->lines - lines);
		}
		io_consume(s->io, used);
		if (remaining != NULL)
			*remaining -= used;
	}
	return true;
}

/* Apply one filter's edits; false (logged) when they cannot be: 451. */
static bool
apply_edits(struct session *s, struct edits *ed)
{
	char why[256];

	if (!edits_any(ed) || delivery_edit(s->tx->dv, s->router, s->tx->mode, ed, why,
	    sizeof(why)) == 0)
		return true;
	log_msg(LOG_ERR, "event=error op=filter-edit id=%s error=\"%s\"",
	    delivery_id(s->tx->dv), why);
	return false;
}

/*
 * The filters' verdict on the complete message (verdict.h), before the
 * reply: the milters' end-of-body step, then filter_command.  Each
 * filter's edits are applied before the next filter runs.  True when the
 * message goes on to be stored; else the reply was sent and the
 * transaction is over.
 */
__attribute__((cold))
static bool
filter_message(struct session *s)
{
	struct txn *tx = s->tx;
	struct delivery *dv = tx->dv;
	struct vreply vr = { 0 };
	struct edits ed;
	enum verdict v = VD_CONTINUE;
	char id[64], e[512], reason[sizeof(ed.reason)] = "";

	strlcpy(id, delivery_id(dv), sizeof(id));
	edits_init(&ed);
	/*
	 * The milters' end-of-body step: each milter in turn sees the message
	 * as the earlier ones left it, its edits applied before the next one,
	 * until one refuses or discards; a quarantine goes on to the others.
	 */
	for (size_t i = 0; i < milter_count(s->milt); i++) {
		enum verdict mv;
		bool lf;
		uint64_t len;
		off_t off;
		int fd;

		if (delivery_message(dv, &fd, &off, &len, &lf) != 0)
			mv = VD_TEMPFAIL;
		else
			mv = milter_message(s->milt, i, fd, (uint64_t)off, (uint64_t)off + len,
			    !lf, id, &ed, &vr);
		if (ed.reason[0] != '\0')
			strlcpy(reason, ed.reason, sizeof(reason));
		if ((mv == VD_CONTINUE || mv == VD_ACCEPT || mv == VD_QUARANTINE) &&
		    !apply_edits(s, &ed))
			mv = VD_TEMPFAIL;
		edits_free(&ed);
		if (mv == VD_QUARANTINE)
			v = VD_QUARANTINE;
		else if (mv == VD_REJECT || mv == VD_TEMPFAIL || mv == VD_DISCARD) {
			v = mv;
			break;
		}
	}
	milter_message_end(s->milt);
	if (v != VD_REJECT && v != VD_TEMPFAIL && v != VD_DISCARD &&
	    s->conf->filter_command[0] != '\0') {
		struct filter_env fe = {
			.client_addr = strncmp(s->peer->ip, "IPv6:", 5) == 0 ?
			    s->peer->ip + 5 : s->peer->ip,
			.client_name = s->peer->host, .helo = s->helo, .tls = s->tls,
		};
		enum verdict fv;

		fv = filter_run(s->conf, dv, &fe, &vr, &ed);
		if (fv == VD_ACCEPT && !apply_edits(s, &ed))
			fv = VD_TEMPFAIL;
		if (fv == VD_REJECT || fv == VD_TEMPFAIL)
			v = fv;
		edits_free(&ed);
	}
	/*
	 * SIGTERM while a filter judged: the filter was given up (a milter
	 * closed, the command's group killed); the client hears 421, not
	 * what the filter's absence made of it, and nothing is stored.
	 */
	if (io_terminate) {
		reply(s, RP_SHUTDOWN, "shutting down");
		s->done = true;
		txn_free(s);
		return false;
	}
	if (reply_verdict(s, v, &vr)) {
		txn_free(s);
		return false;
	}
	log_quote(e, sizeof(e), reason, strlen(reason));
	if (v == VD_DISCARD) {
		log_msg(LOG_NOTICE, "event=discard id=%s reason=%s", id, e);
		reply(s, RP_QUEUED, "queued as %s", id);
		txn_free(s);
		return false;
	}
	if (v == VD_QUARANTINE) {
		if (delivery_quarantine(dv) == -1) {
			int err = errno;

			log_msg(LOG_ERR, "event=error op=quarantine id=%s error=\"%s\"", id,
			    strerror(err));
			reply(s, failure_reply(err), "message not stored");
			txn_free(s);
			return false;
		}
		log_msg(LOG_NOTICE, "event=quarantine id=%s folder=.Junk reason=%s", id, e);
	}
	edits_free(&ed);
	if (delivery_targets(dv) == 0) {
		/* The filters took every recipient away: nothing to store, nothing wrong. */
		log_msg(LOG_NOTICE, "event=discard id=%s reason=\"no recipient left\"", id);
		reply(s, RP_QUEUED, "queued as %s", id);
		txn_free(s);
		return false;
	}
	return true;
}

/*
 * A commit that failed: one line per recipient, `to` (LMTP) or every one
 * of the transaction, as event=deliver names them (src/deliver.c), so that
 * a grep for an address finds the failure too.
 */
static void
log_failed(const struct session *s, const char *id, const char *to, int err)
{
	char q[LOG_QUOTED(ADDR_MAX_PATH + 2)];
	size_t n = to != NULL ? 1 : s->tx->nrcpt;

	for (size_t i = 0; i < n; i++)
		log_msg(LOG_ERR, "event=error op=commit id=%s to=%s error=\"%s\"", id,
		    log_quote_path(q, sizeof(q), to != NULL ? to : s->tx->rcpt[i].mb.text),
		    err ? strerror(err) : "delivery failed");
}

/* The reply for a commit's outcome; `to`: the recipient it is for (LMTP). */
static void
commit_reply(struct session *s, enum dresult dr, int err, const char *name,
    const char *id, const char *to, bool count)
{
	char who[ADDR_MAX_PATH + 8] = "", detail[REPLY_MAX];
	enum reply r;
	const char *what;

	if (to != NULL)
		snprintf(who, sizeof(who), "<%s>: ", to);
	switch (dr) {
	case DR_OK:	/* delivery_commit logged each recipient's line */
		snprintf(detail, sizeof(detail), "%squeued as %s", who, name);
		respond(s, RP_QUEUED, count, detail);
		return;
	case DR_TERMINAL_TOO_BIG:
		r = RP_TOO_BIG, what = "message too big for a terminal";
		break;
	case DR_TERMINAL:
		r = RP_LOCAL_ERROR, what = "the terminal did not take the whole message";
		break;
	case DR_OVER_QUOTA:
		r = RP_OVER_QUOTA, what = "mailbox is full";
		break;
	case DR_FORWARD:
		r = RP_LOCAL_ERROR, what = "forwarding failed";
		break;
	default:
		log_failed(s, id, to, err);
		r = failure_reply(err), what = "message not stored";
		break;
	}
	snprintf(detail, sizeof(detail), "%s%s", who, what);
	respond(s, r, count, detail);
}

/*
 * LMTP (RFC 2033 4.2): each recipient committed on its own, and answered
 * on its own, in RCPT order.  A delivery failure is not the client's: it
 * counts against max_errors once per message, as under SMTP, and never
 * cuts the replies short.
 */
static void
commit_each(struct session *s, struct delivery *dv, const char *id)
{
	struct txn *tx = s->tx;
	struct doutcome *out = reallocarray(NULL, tx->nrcpt, sizeof(*out));
	bool counted = false;

	if (out == NULL) {
		delivery_abort(dv);
		reply(s, RP_LOCAL_ERROR, "out of memory");	/* `each` is still set */
		return;
	}
	delivery_commit_each(dv, tx->rcpt, tx->nrcpt, out);
	s->each = 0;
	for (size_t i = 0; i < tx->nrcpt; i++) {
		s->rcpt = tx->rcpt[i].mb.text;
		commit_reply(s, out[i].r, out[i].err, out[i].name, id, s->rcpt,
		    out[i].r != DR_OK && !counted);
		counted |= out[i].r != DR_OK;
	}
	s->rcpt = NULL;
	free(out);
}

/* The end of the data, by DATA or BDAT LAST: judge, commit, reply. */
static void
finish_message(struct session *s)
{
	struct txn *tx = s->tx;
	struct decoder *d = &tx->dec;
	char name[MSG_NAMESIZE], id[64];
	enum reply r = tx->refusal;
	struct delivery *dv = tx->dv;
	enum dresult dr;
	int err;

	s->ntx++;
	if (r == RP_NONE && s->le == LE_STRICT && (d->bare_cr || d->bare_lf))
		r = RP_BARE_EOL;
	if (r == RP_NONE && d->received > DATA_MAX_HOPS)
		r = RP_LOOP;
	if (r != RP_NONE) {
		reply(s, r, "%s", refusal_text(r));
		txn_free(s);
		return;
	}
	if (delivery_filtered(dv) && !filter_message(s))
		return;
	tx->dv = NULL;		/* delivery_commit frees it, whatever happens */
	strlcpy(id, delivery_id(dv), sizeof(id));
	if (s->lmtp)
		commit_each(s, dv, id);
	else {
		dr = delivery_commit(dv, name, sizeof(name), &err);
		commit_reply(s, dr, err, name, id, NULL, true);
	}
	txn_free(s);
}

/* Under LMTP every reply from here on is given once per recipient (`each`). */
static void
end_message(struct session *s)
{
	if (s->lmtp)
		s->each = s->tx->nrcpt;
	finish_message(s);
	s->each = 0;
}

static void
cmd_data(struct session *s, const struct command *c, char *arg)
{
	struct txn *tx = s->tx;

	(void)c, (void)arg;
	if (tx->nrcpt == 0) {
		/* RFC 2033 4.2: under LMTP, DATA without an accepted RCPT is 503. */
		if (tx->refused > 0 && !s->lmtp)
			reply(s, RP_NO_VALID_RCPTS, "no valid recipients");
		else
			reply(s, RP_BAD_SEQUENCE, "need RCPT first");
		return;
	}
	/* RFC 3030 3: BINARYMIME needs BDAT, and one transaction uses one of them. */
	if (tx->chunked || tx->params.body == BODY_BINARYMIME) {
		reply(s, RP_BAD_SEQUENCE, tx->chunked ? "DATA after BDAT" :
		    "BODY=BINARYMIME needs BDAT");
		return;
	}
	if (!begin_message(s, s->le == LE_LF ? DM_DOT_LF : DM_DOT_CRLF)) {
		reply(s, tx->refusal, "cannot create the message file");
		tx->refusal = RP_NONE;
		return;
	}
	reply_line(s, RP_DATA, false, NULL);
	if (!receive(s, NULL)) {
		s->done = true;
		return;
	}
	end_message(s);
}

/*
 * One framing rule for BDAT (RFC 3030): a line that begins as BDAT has a
 * chunk after it, whatever is wrong with the line, and the chunk's octets
 * are never taken as commands.  A refused BDAT line is followed by reading
 * and dropping exactly its chunk when the size could be read from the whole
 * line (bdat_refused), else by 421 4.5.0 and the end of the session, since
 * nothing tells where the chunk ends (lost_sync).
 */
static bool
bdat_line(const char *line, size_t len)
{
	return len >= 4 && strncasecmp(line, "BDAT", 4) == 0 &&
	    (len == 4 || !isalnum((unsigned char)line[4]));
}

static void
lost_sync(struct session *s)
{
	if (s->done)
		return;		/* closing already (max_errors): nothing more is read */
	reply(s, RP_LOST_SYNC, "cannot find the end of the chunk");
	s->done = true;
}

/* BDAT refused before its handler ran (sequence, no-mail mode, length): drain it. */
static void
bdat_refused(struct session *s, char *arg)
{
	uint64_t size;
	bool last, ok;

	if (!addr_bdat(arg, &size, &last, &ok)) {
		lost_sync(s);
		return;
	}
	if (s->tx == NULL) {
		struct txn drain = { 0 };	/* receive() needs somewhere to count */

		s->tx = &drain;
		if (!receive(s, &size))
			s->done = true;
		s->tx = NULL;
	} else if (!receive(s, &size))
		s->done = true;
}

static void
cmd_bdat(struct session *s, const struct command *c, char *arg)
{
	struct txn *tx = s->tx;
	uint64_t size, max = s->conf->max_message_size;
	bool last, ok, again;

	(void)c;
	if (!addr_bdat(arg, &size, &last, &ok)) {
		reply(s, RP_SYNTAX, "BDAT size is not a 64-bit number");
		lost_sync(s);
		return;
	}
	again = tx->refusal != RP_NONE;		/* an earlier chunk was refused */
	if (!again) {
		if (!ok)
			tx->refusal = RP_SYNTAX;
		else if (size > max - tx->chunked_octets)
			tx->refusal = RP_TOO_BIG;
		else if (!tx->chunked)
			(void)begin_message(s, tx->params.body == BODY_BINARYMIME ?
			    DM_BINARY : DM_CHUNK);	/* on failure, refusal says why */
	}
	tx->chunked = true;
	if (tx->refusal != RP_NONE && tx->dv != NULL) {
		delivery_abort(tx->dv);
		tx->dv = NULL;
	}
	if (!receive(s, &(uint64_t){ size })) {
		s->done = true;
		return;
	}
	tx->chunked_octets += size > max ? max : size;	/* only compared with max */
	if (tx->refusal != RP_NONE) {
		/* RFC 3030 4.2: every later chunk gets the same refusal, counted once. */
		if (last && s->lmtp)
			s->each = tx->nrcpt;	/* RFC 2033 4.2: once per recipient */
		respond(s, tx->refusal, !again, refusal_text(tx->refusal));
		s->each = 0;
		if (last)
			txn_free(s);
		return;
	}
	if (!last) {
		reply(s, RP_OK, "%" PRIu64 " octets received", size);
		return;
	}
	msg_wrote(tx->m, decoder_finish(&tx->dec, msg_room(tx->m, &(size_t){ 0 })), 0);
	end_message(s);
}

static void
cmd_rset(struct session *s, const struct command *c, char *arg)
{
	(void)c, (void)arg;
	txn_free(s);
	reply(s, RP_OK, NULL);
}

/* VRFY under a catch-all: every well-formed address is deliverable. */
static void
cmd_vrfy(struct session *s, const struct command *c, char *arg)
{
	struct mailbox mb;
	struct route rt;
	const char *rest;

	(void)c;
	switch (addr_parse(arg, ADDR_BARE | ADDR_MAILBOX, &mb, &rest)) {
	case ADDR_OK:
		if (*rest == '\0' && !mb.null)
			break;
		/* FALLTHROUGH */
	case ADDR_SYNTAX:
	default:
		reply(s, RP_BAD_RCPT, "bad address syntax");
		return;
	case ADDR_NONASCII:
		reply(s, RP_NON_ASCII, "non-ASCII address");
		return;
	case ADDR_NOT_ALLOWED:
		reply(s, RP_NOT_ALLOWED, "mailbox name not allowed");
		return;
	}
	route_rcpt(s->router, &mb, RM_MAILBOX, 0, &rt);
	(void)route_reply(s, &mb, &rt, true);
	route_free(&rt);
}

/* EXPN: an alias's members, one per line; anything else is not a list. */
static void
cmd_expn(struct session *s, const struct command *c, char *arg)
{
	const char *const *members = NULL;
	struct mailbox mb;
	const char *rest;
	char e[256];
	size_t n = 0;

	(void)c;
	if (addr_parse(arg, ADDR_BARE | ADDR_MAILBOX, &mb, &rest) == ADDR_OK &&
	    *rest == '\0' && !mb.null)
		members = route_list(s->router, mb.local, &n);
	if (members == NULL) {
		reply(s, RP_NO_MAILBOX, "%s: not a mailing list", esc(e, sizeof(e), arg));
		return;
	}
	for (size_t i = 0; i < n; i++) {
		char m[ADDR_MAX_PATH + 64];

		if (strchr(members[i], '@') != NULL)
			snprintf(m, sizeof(m), "<%s>", members[i]);
		else
			snprintf(m, sizeof(m), "<%s@%s>", members[i],
			    route_home_domain(s->router));
		reply_line(s, RP_LIST, i + 1 < n, m);
	}
}

static void
cmd_help(struct session *s, const struct command *c, char *arg)
{
	const struct command *topic;

	(void)c;
	if (*arg == '\0') {
		char verbs[256] = "Commands:";
		const char *lines[] = { verbs,
		    "HELP <command> tells more; mail to postmaster reaches a person", NULL };

		for (size_t i = 0; i < NCOMMANDS; i++)
			if (spoken(s, &commands[i]) &&
			    (commands[i].enabled == NULL || commands[i].enabled(s->conf))) {
				strlcat(verbs, " ", sizeof(verbs));
				strlcat(verbs, commands[i].verb, sizeof(verbs));
			}
		reply_lines(s, RP_HELP, lines);
		return;
	}
	if ((topic = command_find(arg, strlen(arg))) == NULL || !spoken(s, topic)) {
		char e[64];

		reply(s, RP_BAD_TOPIC, "%s: no help on that topic", esc(e, sizeof(e), arg));
		return;
	}
	/* A command switched off here is not offered by its syntax either. */
	if (topic->enabled != NULL && !topic->enabled(s->conf)) {
		reply(s, RP_BAD_TOPIC, "%s is not enabled here", topic->verb);
		return;
	}
	reply_lines(s, RP_HELP, (const char *const[]){ topic->help, NULL });
}

static void
cmd_noop(struct session *s, const struct command *c, char *arg)
{
	(void)c, (void)arg;
	reply(s, RP_OK, NULL);
}

static void
cmd_quit(struct session *s, const struct command *c, char *arg)
{
	(void)c, (void)arg;
	reply(s, RP_CLOSING, NULL);
	s->done = true;
}

/*
 * RFC 3207.  Whatever the client sent after the STARTTLS line arrived in
 * plain text and is thrown away, never run inside TLS (CVE-2011-0411); and
 * after the handshake the session starts over: HELO/EHLO again (4.2).
 */
static void
cmd_starttls(struct session *s, const struct command *c, char *arg)
{
	struct tls_server *ts;
	char why[256];

	(void)c, (void)arg;
	if (s->tls) {
		reply(s, RP_BAD_SEQUENCE, "TLS already active");
		return;
	}
	if ((ts = tls_prepare(s->conf, why, sizeof(why))) == NULL) {
		log_msg(LOG_ERR, "event=tls error=\"%s\"", why);
		reply(s, RP_TLS_UNAVAILABLE, NULL);
		return;
	}
	reply(s, RP_TLS_READY, NULL);
	if (io_flush(s->io) != IO_OK) {
		s->done = true;
		return;
	}
	io_discard_input(s->io);
	if (tls_start(ts, s->io, (int)s->conf->command_timeout, why, sizeof(why)) == -1) {
		log_msg(LOG_NOTICE, "event=tls result=failed error=\"%s\"", why);
		s->done = true;
		return;
	}
	txn_free(s);
	s->greeted = s->esmtp = false;
	s->helo[0] = '\0';
	s->tls = true;
	milter_tls(s->milt, tls_describe(s->io));
	log_msg(LOG_INFO, "event=tls result=ok using=\"%s\"", tls_describe(s->io));
}

static void
cmd_turn(struct session *s, const struct command *c, char *arg)
{
	(void)s, (void)c, (void)arg;	/* never enabled: dispatch answers 502 */
}

/* ---- The loop ---------------------------------------------------------- */

/*
 * Check, then act (as OpenSMTPD does): the verb, the line length, the
 * no-mail mode, whether the command is enabled, the state, the argument
 * rule; only a command that passes them all reaches its handler.
 */
static void
dispatch(struct session *s, char *line, size_t len, size_t raw)
{
	const struct command *c;
	char *arg, *end;
	size_t vlen;

	s->cmd = line;
	s->cmdlen = len;
	if (memchr(line, '\0', len) != NULL) {
		reply(s, RP_NUL, NULL);
		if (bdat_line(line, len))
			lost_sync(s);	/* where the line was cut is anyone's guess */
		return;
	}
	vlen = strcspn(line, " ");
	if ((c = command_find(line, vlen)) == NULL || !spoken(s, c)) {
		if (raw > LINE_MAX_CMD)
			reply(s, RP_LINE_TOO_LONG, NULL);
		else
			reply(s, RP_UNRECOGNIZED, NULL);
		if (bdat_line(line, len))
			lost_sync(s);	/* "BDAT<TAB>21": a chunk may follow */
		return;
	}
	arg = line + vlen;
	while (*arg == ' ')
		arg++;
	end = arg + strlen(arg);
	while (end > arg && (end[-1] == ' ' || end[-1] == '\t'))
		*--end = '\0';
	s->cmdlen = (size_t)(end - line);	/* the log shows the trimmed line */

	if (raw > LINE_MAX_CMD && !(c->args & A_LONG))
		reply(s, RP_LINE_TOO_LONG, NULL);
	/* RFC 1846: in no-mail mode every command but QUIT is answered 521. */
	else if (!s->conf->accept_mail && c->fn != cmd_quit)
		reply(s, RP_NO_MAIL, NULL);
	else if (c->enabled != NULL && !c->enabled(s->conf))
		reply(s, RP_NOT_IMPLEMENTED, NULL);
	else if (!(c->states & state_of(s)))
		bad_sequence(s, c);
	else if ((c->args & A_NONE) && *arg != '\0')
		reply(s, RP_SYNTAX, "%s takes no argument", c->verb);
	else if ((c->args & A_NEEDED) && *arg == '\0')
		reply(s, RP_SYNTAX, "%s needs an argument", c->verb);
	else {
		c->fn(s, c, arg);
		return;
	}
	if (c->refused != NULL && !s->done)
		c->refused(s, arg);
}

/* The catalogue's 421 with the enhanced code `enh` (4.3.0 when there is none). */
void
smtp_refuse(struct io *io, const char *hostname, const char *enh)
{
	enum reply r = RP_UNAVAILABLE;

	for (size_t i = 0; i < sizeof(catalogue) / sizeof(catalogue[0]); i++)
		if (catalogue[i].code == 421 && strcmp(catalogue[i].enh, enh) == 0)
			r = (enum reply)i;
	render(io, hostname, r, false, NULL);
	io_flush(io);
}

int
smtp_run(const struct config *conf, const struct router *router, struct io *io,
    const struct peer *peer, enum line_endings le)
{
	struct session s = { .conf = conf, .io = io, .router = router, .peer = peer,
	    .le = le, .lmtp = conf->protocol == PROTO_LMTP };
	char line[LINE_MAX_PATH + 1];
	enum state shown = 0;

	if (peer->ip[0] != '\0')
		snprintf(s.peer_desc, sizeof(s.peer_desc), "%s [%s]",
		    peer->host[0] ? peer->host : "unknown", peer->ip);
	else
		snprintf(s.peer_desc, sizeof(s.peer_desc), "%s",
		    peer->host[0] ? peer->host : "unknown");
	log_msg(LOG_INFO, "event=connect peer=%s%s%s host=%s line_endings=%s%s%s",
	    peer->ip[0] ? peer->ip : "unknown", peer->port[0] ? " port=" : "", peer->port,
	    peer->host[0] ? peer->host : "unknown",
	    le == LE_LF ? "lf" : le == LE_STRICT ? "strict" : "crlf",
	    peer->proxy[0] ? " proxy=" : "", peer->proxy);

	reply_line(&s, !conf->accept_mail ? RP_GREETING_NO_MAIL :
	    s.lmtp ? RP_GREETING_LMTP : RP_GREETING, false, NULL);
	/* A connect refusal answers every MAIL (milter.c keeps it). */
	if (conf->accept_mail)
		s.milt = milter_open(conf, peer, &(enum verdict){ 0 },
		    &(struct vreply){ 0 });

	while (!s.done) {
		size_t len = 0, raw = 0;
		enum io_status st;

		if (state_of(&s) != shown) {
			shown = state_of(&s);
			setproctitle("%s %s", peer->ip[0] ? peer->ip : "-", state_name(shown));
		}
		st = io_getline(io, line, LINE_MAX_PATH, &len, &raw,
		    (int)conf->command_timeout);
		s.cmd = NULL;
		switch (st) {
		case IO_OK:
			dispatch(&s, line, len, raw);
			break;
		case IO_LONG:
			s.cmd = line;
			s.cmdlen = len;
			reply(&s, RP_LINE_TOO_LONG, NULL);
			/* Only the line's start was kept: a BDAT size in it cannot be trusted. */
			if (bdat_line(line, len))
				lost_sync(&s);
			break;
		case IO_TIMEOUT:
			reply(&s, RP_TIMEOUT, "timeout exceeded");
			s.done = true;
			break;
		case IO_SIGNAL:
			reply(&s, RP_SHUTDOWN, "shutting down");
			s.done = true;
			break;
		case IO_EOF:
		case IO_ERROR:
			log_msg(LOG_INFO, "event=disconnect state=%s reason=%s",
			    state_name(state_of(&s)), st == IO_EOF ? "eof" : strerror(errno));
			s.done = true;
			break;
		}
	}
	io_flush(io);
	log_msg(LOG_INFO, "event=close transactions=%u errors=%lld", s.ntx, s.errors);
	txn_free(&s);
	milter_close(s.milt);
	return 0;
}
