/*
 * milter.c: the milter client, protocol version 6.
 *
 * Written from the protocol's public descriptions: libmilter's mfdef.h
 * (the command, reply, action and step codes below), the "milter protocol"
 * text with its version 6 additions (no-reply steps, macro lists asked for
 * in the negotiation, SMFIR_SKIP), and Postfix's MILTER_README for how a
 * client behaves.  Two layers: the list (every milter in order, the first
 * refusal wins, a stage's verdict kept where a later command must hear
 * it) and one milter's conversation (packets, its negotiated flags, its
 * state).  A milter that fails is closed and latched to the default
 * action, as Postfix does (milter8_comm_error): no failure unwinds into
 * the session.
 *
 * Everything a milter sends is untrusted: a packet is at most
 * MILTER_MAX_PACKET octets (a body replacement piece MILTER_MAX_BODY),
 * every string must end inside its packet, nothing may be left over, an
 * action must have been negotiated before it is used, header values may
 * not start a new field, and a reply code must be a valid 4xx or 5xx
 * reply.  Anything else is a protocol error: the default action.
 */
#include <sys/types.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <netinet/in.h>
#include <arpa/inet.h>

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "edit.h"
#include "io.h"
#include "log.h"
#include "milter.h"
#include "smtp.h"

/* Commands (mfdef.h SMFIC_*). */
#define C_ABORT		'A'
#define C_BODY		'B'
#define C_CONNECT	'C'
#define C_MACRO		'D'
#define C_BODYEOB	'E'
#define C_HELO		'H'
#define C_HEADER	'L'
#define C_MAIL		'M'
#define C_EOH		'N'
#define C_OPTNEG	'O'
#define C_QUIT		'Q'
#define C_RCPT		'R'
#define C_DATA		'T'

/* Replies (SMFIR_*). */
#define R_ADDRCPT	'+'
#define R_DELRCPT	'-'
#define R_ADDRCPT_PAR	'2'
#define R_SHUTDOWN	'4'
#define R_ACCEPT	'a'
#define R_REPLBODY	'b'
#define R_CONTINUE	'c'
#define R_DISCARD	'd'
#define R_CHGFROM	'e'
#define R_CONN_FAIL	'f'
#define R_ADDHEADER	'h'
#define R_INSHEADER	'i'
#define R_CHGHEADER	'm'
#define R_PROGRESS	'p'
#define R_QUARANTINE	'q'
#define R_REJECT	'r'
#define R_SKIP		's'
#define R_TEMPFAIL	't'
#define R_REPLYCODE	'y'

/* Actions (SMFIF_*): mailslot offers them all. */
#define A_ADDHDRS	0x001
#define A_CHGBODY	0x002
#define A_ADDRCPT	0x004
#define A_DELRCPT	0x008
#define A_CHGHDRS	0x010
#define A_QUARANTINE	0x020
#define A_CHGFROM	0x040
#define A_ADDRCPT_PAR	0x080
#define A_SETSYMLIST	0x100
#define A_ALL		0x1ff

/* Steps (SMFIP_*): skip one, or no reply to one. */
#define P_NOCONNECT	0x000001
#define P_NOHELO	0x000002
#define P_NOMAIL	0x000004
#define P_NORCPT	0x000008
#define P_NOBODY	0x000010
#define P_NOHDRS	0x000020
#define P_NOEOH		0x000040
#define P_NR_HDR	0x000080
#define P_NOUNKNOWN	0x000100
#define P_NODATA	0x000200
#define P_SKIP		0x000400
#define P_NR_CONN	0x001000
#define P_NR_HELO	0x002000
#define P_NR_MAIL	0x004000
#define P_NR_RCPT	0x008000
#define P_NR_DATA	0x010000
#define P_NR_UNKN	0x020000
#define P_NR_EOH	0x040000
#define P_NR_BODY	0x080000
#define P_HDR_LEADSPC	0x100000
/*
 * Offered: every skip and no-reply step, SMFIR_SKIP, and header values
 * with their leading space.  Not offered: SMFIP_RCPT_REJ (refused
 * recipients are not shown) and the larger packet sizes (SMFIP_MDS_*).
 */
#define P_OFFER		0x1ff7ff

/* Macro stages (SMFIM_*), with the command each goes with. */
enum { M_CONNECT, M_HELO, M_ENVFROM, M_ENVRCPT, M_DATA, M_EOM, M_EOH, M_NSTAGES };
static const char stage_cmd[M_NSTAGES] = { C_CONNECT, C_HELO, C_MAIL, C_RCPT, C_DATA,
    C_BODYEOB, C_EOH };

#define MILTER_VERSION		6
#define MILTER_MAX_PACKET	(1024 * 1024)	/* any reply but a body piece */
#define MILTER_MAX_BODY		(16 * 1024 * 1024)	/* one SMFIR_REPLBODY piece */
#define MILTER_CHUNK		65535		/* SMFIC_BODY, libmilter's limit */
#define MILTER_MAX_HEADER	(64 * 1024 - 64)	/* a header field as shown */
#define MILTER_MAX_SYMLIST	1024
#define MILTER_MAX_ADDR		1024

/* The macros mailslot sends at each stage unless a milter asks for others. */
static const char *const default_macros[M_NSTAGES] = {
	[M_CONNECT] = "j {daemon_name} v _ {client_addr} {client_port} {client_name} {client_ptr}",
	[M_HELO]    = "{tls_version} {cipher}",
	[M_ENVFROM] = "{mail_addr} {auth_authen} {tls_version} {cipher}",
	[M_ENVRCPT] = "{rcpt_addr}",
	[M_DATA]    = "i",
	[M_EOH]     = "i",
	[M_EOM]     = "i",
};

enum mstate { MS_OK, MS_DEAD };

struct milter {
	char		*spec;
	int		 fd;
	enum mstate	 st;
	uint32_t	 actions, proto;	/* as negotiated */
	char		*syms[M_NSTAGES];	/* macro lists asked for; NULL: ours */
	bool		 conn_done;	/* accepted the connection: nothing more */
	bool		 msg_done;	/* accepted or refused this message */
	bool		 in_msg;	/* MAIL was sent, no end of body yet */
};

struct milters {
	const struct config	*conf;
	struct milter		*m;
	size_t			 n;
	bool			 in_msg;
	enum verdict		 conn_vd, helo_vd, msg_vd;
	struct vreply		 conn_vr, helo_vr;
	/* macro values */
	char	client_addr[64], client_port[8], client_name[256], peer_desc[400];
	char	helo[256], mail_addr[MILTER_MAX_ADDR], rcpt_addr[MILTER_MAX_ADDR];
	char	queue_id[64], tls_version[32], cipher[128];
	int	family;		/* 'U', '4', '6' */
	/* the packet being built, and the one read */
	char	*out, *in;
	size_t	 outlen, outcap, incap;
	int	 oom;
	/*
	 * When the exchange under way must be over (CLOCK_MONOTONIC, ms):
	 * milter_timeout from its command, for everything it sends and reads,
	 * so that neither SMFIR_PROGRESS nor a reply sent an octet at a time
	 * can stretch it.
	 */
	long long deadline;
};

/* ---- Replies: the pure parser (fuzzed) ------------------------------- */

enum { ST_NEG, ST_SMTP, ST_EOM };
#define P_MORE	(-2)	/* a packet that does not end the exchange */
#define P_ERR	(-1)

/* What one exchange has gathered: the parser's whole state. */
struct exchange {
	int		 stage;
	uint32_t	 actions, proto;	/* negotiated (the negotiation: offered) */
	struct edits	*ed;
	struct vreply	*vr;
	bool		 quarantine, skip, binary, body_cr;
	int		 body_fd;		/* a REPLBODY under way, -1 none */
	uint64_t	 body_len, body_max;	/* its octets as sent, and their bound */
	const char	*why;			/* a protocol error, for the log */
	/* the negotiation's answer */
	uint32_t	 version, n_actions, n_proto;
	char		*syms[M_NSTAGES];
};

static uint32_t
get32(const unsigned char *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* The next NUL-terminated string in [*p, end), or NULL. */
static const char *
take_str(const char **p, const char *end)
{
	const char *s = *p, *z = memchr(s, '\0', (size_t)(end - s));

	if (z == NULL)
		return NULL;
	*p = z + 1;
	return s;
}

/* A field name: printable ASCII without ':' or space (RFC 5322 2.2). */
static bool
name_ok(const char *s)
{
	size_t n = strlen(s);

	if (n == 0 || n > 256)
		return false;
	for (size_t i = 0; i < n; i++)
		if (s[i] < 0x21 || s[i] > 0x7e || s[i] == ':')
			return false;
	return true;
}

/* A field value: line breaks only as folds, no control octets but HT. */
static bool
value_ok(const char *s)
{
	size_t n = strlen(s);

	if (n > MILTER_MAX_HEADER)
		return false;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];

		if (c == '\r') {
			if (s[i + 1] != '\n')
				return false;
		} else if (c == '\n') {
			if (s[i + 1] != ' ' && s[i + 1] != '\t')
				return false;
		} else if (c < 0x20 && c != '\t')
			return false;
		else if (c == 0x7f)
			return false;
	}
	/* and what the delivery takes: no fold of white space alone but the last */
	return edit_value_ok(s);
}

/* An address from a milter, brackets taken off; NULL when unusable. */
static const char *
addr_take(const char *s, char *buf, size_t size)
{
	size_t n = strlen(s);

	if (n >= 2 && s[0] == '<' && s[n - 1] == '>') {
		s++;
		n -= 2;
	}
	if (n >= size)
		return NULL;
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)s[i] <= 0x20 || s[i] == 0x7f || s[i] == '<' || s[i] == '>')
			return NULL;
	memcpy(buf, s, n);
	buf[n] = '\0';
	return buf;
}

/*
 * SMFIR_REPLYCODE: "550 5.7.1 text", or several lines "550-5.7.1 a\r\n550
 * 5.7.1 b".  Every line the same 4xx or 5xx code, '-' on all but the last;
 * an enhanced code of the same class is kept from the first line and cut
 * from every line; other octets than printable ASCII become '?'.
 */
static bool
reply_parse(const char *s, struct vreply *vr)
{
	size_t tlen = 0;
	int code = -1;
	bool last = false;

	memset(vr, 0, sizeof(*vr));
	while (*s != '\0') {
		size_t n = strcspn(s, "\r\n"), i;
		int c;

		if (last || n < 3)
			return false;
		for (i = 0; i < 3; i++)
			if (s[i] < '0' || s[i] > '9')
				return false;
		c = (s[0] - '0') * 100 + (s[1] - '0') * 10 + (s[2] - '0');
		if ((c / 100 != 4 && c / 100 != 5) || (code != -1 && c != code))
			return false;
		code = c;
		if (n == 3 || s[3] == ' ')
			last = true;
		else if (s[3] != '-')
			return false;
		i = n > 3 ? 4 : 3;
		/* the enhanced code: class.subject.detail, its class the code's */
		{
			size_t j = i, d1 = 0, d2 = 0, d3 = 0;

			if (j < n && s[j] == s[0] && j + 1 < n && s[j + 1] == '.') {
				j += 2;
				while (j < n && s[j] >= '0' && s[j] <= '9' && d2 < 4)
					j++, d2++;
				if (j < n && s[j] == '.') {
					j++;
					while (j < n && s[j] >= '0' && s[j] <= '9' && d3 < 4)
						j++, d3++;
				}
				d1 = 1;
				if (d2 > 0 && d2 <= 3 && d3 > 0 && d3 <= 3 && (j == n || s[j] == ' ')) {
					if (vr->enh[0] == '\0' && j - i < sizeof(vr->enh)) {
						memcpy(vr->enh, s + i, j - i);
						vr->enh[j - i] = '\0';
					}
					i = j < n ? j + 1 : j;
				}
			}
			(void)d1;
		}
		if (tlen > 0) {
			if (tlen + 1 >= sizeof(vr->text))
				return false;
			vr->text[tlen++] = '\n';
		}
		if (n - i >= sizeof(vr->text) - tlen)
			return false;
		for (; i < n; i++) {
			unsigned char ch = (unsigned char)s[i];

			vr->text[tlen++] = ch >= 0x20 && ch < 0x7f ? (char)ch : '?';
		}
		vr->text[tlen] = '\0';
		s += n;
		if (s[0] == '\r' && s[1] == '\n')
			s += 2;
		else if (s[0] == '\n')
			s++;
		else if (s[0] == '\r')
			return false;
	}
	if (code == -1 || !last)
		return false;
	vr->code = code;
	if (vr->text[0] == '\0')
		vr->text[0] = '\0';
	return true;
}

/* A body replacement piece, CRLF back to LF unless BINARYMIME. */
static int
body_piece(struct exchange *x, const char *p, size_t n)
{
	char buf[8192];
	size_t k = 0;

	if (x->body_fd == -1) {
		const char *dir = getenv("TMPDIR");

		x->body_fd = open(dir != NULL && *dir == '/' ? dir : "/tmp",
		    O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
		if (x->body_fd == -1)
			x->body_fd = memfd_create("mailslot-body", MFD_CLOEXEC);
		if (x->body_fd == -1) {
			x->why = "no file for the new body";
			return P_ERR;
		}
		x->body_len = 0;
	}
	if (n > MILTER_MAX_BODY || n > x->body_max - x->body_len) {
		x->why = "new body too large";
		return P_ERR;
	}
	x->body_len += n;
	for (size_t i = 0; i < n; i++) {
		char c = p[i];

		if (k + 2 > sizeof(buf)) {
			if (write(x->body_fd, buf, k) != (ssize_t)k)
				goto fail;
			k = 0;
		}
		if (x->binary) {
			buf[k++] = c;
			continue;
		}
		if (x->body_cr) {
			x->body_cr = false;
			if (c != '\n')
				buf[k++] = '\r';
		}
		if (c == '\r')
			x->body_cr = true;
		else
			buf[k++] = c;
	}
	if (k > 0 && write(x->body_fd, buf, k) != (ssize_t)k)
		goto fail;
	return P_MORE;
fail:
	x->why = "cannot write the new body";
	return P_ERR;
}

/* The end of the exchange: a held-back CR, and the body handed over. */
static int
body_end(struct exchange *x)
{
	if (x->body_fd == -1)
		return 0;
	if (x->body_cr && write(x->body_fd, "\r", 1) != 1)
		return -1;
	x->body_cr = false;
	if (lseek(x->body_fd, 0, SEEK_SET) == -1)
		return -1;
	edits_body(x->ed, x->body_fd);
	x->body_fd = -1;
	return 0;
}

/* The negotiation's answer: version, actions, steps, then macro lists. */
static int
negotiation(struct exchange *x, const char *p, size_t n)
{
	const char *end = p + n;

	if (n < 12) {
		x->why = "short negotiation";
		return P_ERR;
	}
	x->version = get32((const unsigned char *)p);
	x->n_actions = get32((const unsigned char *)p + 4);
	x->n_proto = get32((const unsigned char *)p + 8);
	if (x->version < 2 || x->version > MILTER_VERSION) {
		x->why = "unsupported protocol version";
		return P_ERR;
	}
	/* Whatever was not offered is not granted. */
	x->n_actions &= A_ALL;
	x->n_proto &= P_OFFER;
	p += 12;
	while (p < end) {
		const char *list;
		uint32_t stage;

		if (end - p < 4) {
			x->why = "truncated macro list";
			return P_ERR;
		}
		stage = get32((const unsigned char *)p);
		p += 4;
		if ((list = take_str(&p, end)) == NULL || strlen(list) > MILTER_MAX_SYMLIST ||
		    stage >= M_NSTAGES) {
			x->why = "bad macro list";
			return P_ERR;
		}
		free(x->syms[stage]);
		if ((x->syms[stage] = strdup(list)) == NULL) {
			x->why = "out of memory";
			return P_ERR;
		}
	}
	return VD_CONTINUE;
}

/* One packet of an exchange: a verdict, P_MORE, or P_ERR with x->why. */
static int
packet(struct exchange *x, char cmd, const char *p, size_t n)
{
	const char *end = p + n, *a, *b;
	char addr[MILTER_MAX_ADDR];
	uint32_t idx = 0;
	int need = 0, r = 0;

	if (x->stage == ST_NEG) {
		if (cmd != C_OPTNEG) {
			x->why = "no negotiation";
			return P_ERR;
		}
		return negotiation(x, p, n);
	}
	switch (cmd) {
	case R_CONTINUE:
	case R_ACCEPT:
	case R_REJECT:
	case R_TEMPFAIL:
	case R_DISCARD:
	case R_SKIP:
	case R_PROGRESS:
	case R_SHUTDOWN:
	case R_CONN_FAIL:
		if (n != 0) {
			x->why = "data after a verdict";
			return P_ERR;
		}
		switch (cmd) {
		case R_CONTINUE:	return VD_CONTINUE;
		case R_ACCEPT:		return VD_ACCEPT;
		case R_REJECT:		return VD_REJECT;
		case R_DISCARD:		return VD_DISCARD;
		case R_PROGRESS:	return P_MORE;
		case R_SKIP:
			if (!(x->proto & P_SKIP)) {
				x->why = "SKIP not negotiated";
				return P_ERR;
			}
			x->skip = true;
			return VD_CONTINUE;
		default:		return VD_TEMPFAIL;
		}
	case R_REPLYCODE:
		if ((a = take_str(&p, end)) == NULL || p != end || !reply_parse(a, x->vr)) {
			x->why = "bad reply code";
			return P_ERR;
		}
		return x->vr->code / 100 == 4 ? VD_TEMPFAIL : VD_REJECT;
	}
	/* The rest are changes: only at the end of the body, and negotiated. */
	switch (cmd) {
	case R_ADDHEADER:	need = A_ADDHDRS; break;
	case R_INSHEADER:	need = A_ADDHDRS; break;
	case R_CHGHEADER:	need = A_CHGHDRS; break;
	case R_REPLBODY:	need = A_CHGBODY; break;
	case R_ADDRCPT:		need = A_ADDRCPT; break;
	case R_ADDRCPT_PAR:	need = A_ADDRCPT_PAR; break;
	case R_DELRCPT:		need = A_DELRCPT; break;
	case R_CHGFROM:		need = A_CHGFROM; break;
	case R_QUARANTINE:	need = A_QUARANTINE; break;
	default:
		x->why = "unknown reply";
		return P_ERR;
	}
	if (x->stage != ST_EOM) {
		x->why = "change before the end of the body";
		return P_ERR;
	}
	if (!(x->actions & (uint32_t)need)) {
		x->why = "change not negotiated";
		return P_ERR;
	}
	if (cmd == R_REPLBODY)
		return body_piece(x, p, n);
	if (cmd == R_INSHEADER || cmd == R_CHGHEADER) {
		if (n < 4) {
			x->why = "short header change";
			return P_ERR;
		}
		idx = get32((const unsigned char *)p);
		p += 4;
	}
	if ((a = take_str(&p, end)) == NULL) {
		x->why = "unterminated string";
		return P_ERR;
	}
	b = NULL;
	if (cmd == R_ADDHEADER || cmd == R_INSHEADER || cmd == R_CHGHEADER ||
	    cmd == R_ADDRCPT_PAR || (cmd == R_CHGFROM && p != end)) {
		if ((b = take_str(&p, end)) == NULL) {
			x->why = "unterminated string";
			return P_ERR;
		}
	}
	if (p != end) {
		x->why = "data after the strings";
		return P_ERR;
	}
	switch (cmd) {
	case R_ADDHEADER:
	case R_INSHEADER:
	case R_CHGHEADER: {
		char val[MILTER_MAX_HEADER + 2];
		bool del = cmd == R_CHGHEADER && *b == '\0';

		if (!name_ok(a) || !value_ok(b) || idx > 100000) {
			x->why = "bad header change";
			return P_ERR;
		}
		/* Without SMFIP_HDR_LEADSPC the space after the colon is implied. */
		snprintf(val, sizeof(val), "%s%s", x->proto & P_HDR_LEADSPC ? "" : " ", b);
		r = edits_header(x->ed, cmd == R_ADDHEADER ? HE_ADD :
		    cmd == R_INSHEADER ? HE_INSERT : HE_CHANGE, idx, a, del ? NULL : val);
		break;
	}
	case R_ADDRCPT:
	case R_ADDRCPT_PAR:
	case R_DELRCPT:
		if (addr_take(a, addr, sizeof(addr)) == NULL || *addr == '\0') {
			x->why = "bad recipient";
			return P_ERR;
		}
		r = edits_rcpt(x->ed, cmd != R_DELRCPT, addr);
		break;
	case R_CHGFROM:
		if (addr_take(a, addr, sizeof(addr)) == NULL) {
			x->why = "bad sender";
			return P_ERR;
		}
		r = edits_sender(x->ed, addr);
		break;
	case R_QUARANTINE:
		x->quarantine = true;
		/* Untrusted: quoted by log_quote() wherever it is logged. */
		strlcpy(x->ed->reason, a, sizeof(x->ed->reason));
		break;
	}
	if (r == -1) {
		x->why = errno == E2BIG ? "too many changes" : "out of memory";
		return P_ERR;
	}
	return P_MORE;
}

static void
exchange_init(struct exchange *x, int stage, uint32_t actions, uint32_t proto,
    struct edits *ed, struct vreply *vr)
{
	memset(x, 0, sizeof(*x));
	x->stage = stage;
	x->actions = actions;
	x->proto = proto;
	x->ed = ed;
	x->vr = vr;
	x->body_fd = -1;
	x->body_max = (uint64_t)4 * MILTER_MAX_BODY * 16;
	if (vr != NULL)
		memset(vr, 0, sizeof(*vr));
}

static void
exchange_free(struct exchange *x)
{
	if (x->body_fd != -1)
		close(x->body_fd);
	for (int i = 0; i < M_NSTAGES; i++)
		free(x->syms[i]);
}

int
milter_parse_packets(int stage, uint32_t actions, uint32_t proto,
    const unsigned char *data, size_t len, struct edits *ed, struct vreply *vr)
{
	struct exchange x;
	int r = P_ERR;

	exchange_init(&x, stage, actions, proto, ed, vr);
	while (len >= 5) {
		uint32_t plen = get32(data);

		if (plen == 0 || plen > MILTER_MAX_BODY || plen > len - 4)
			break;
		if (data[4] != R_REPLBODY && plen > MILTER_MAX_PACKET)
			break;
		r = packet(&x, (char)data[4], (const char *)data + 5, plen - 1);
		data += 4 + plen;
		len -= 4 + plen;
		if (r != P_MORE)
			break;
	}
	if (r == P_MORE || len != 0)
		r = P_ERR;
	if (r != P_ERR && stage == ST_EOM) {
		if (body_end(&x) == -1)
			r = P_ERR;
		else if (x.quarantine && (r == VD_CONTINUE || r == VD_ACCEPT))
			r = VD_QUARANTINE;
	}
	exchange_free(&x);
	return r;
}

/* ---- One milter's conversation ------------------------------------- */

static long long
now_ms(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (long long)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

/* An exchange starts: milter_timeout for all of it. */
static void
arm(struct milters *ms)
{
	ms->deadline = now_ms() + (long long)ms->conf->milter_timeout * 1000;
}

/*
 * Wait for `ev` on fd until the exchange's deadline: 0, or -1 (errno
 * ETIMEDOUT; EINTR when SIGTERM came: the session is shutting down).
 */
static int
wait_fd(const struct milters *ms, int fd, short ev)
{
	struct pollfd pfd = { .fd = fd, .events = ev };

	for (;;) {
		long long left = ms->deadline - now_ms();
		int r;

		if (io_terminate) {
			errno = EINTR;
			return -1;
		}
		if (left <= 0) {
			errno = ETIMEDOUT;
			return -1;
		}
		r = poll(&pfd, 1, left > 60000 ? 60000 : (int)left);
		if (r > 0)
			return 0;
		if (r == -1 && errno != EINTR)
			return -1;
	}
}

/* The milter broke the protocol or went away: close it, latch the default. */
static void
fail(struct milters *ms, struct milter *m, const char *why, int err)
{
	static const char *const act[] = { "tempfail", "accept", "reject" };

	if (m->fd != -1)
		close(m->fd);
	m->fd = -1;
	m->st = MS_DEAD;
	log_msg(LOG_WARNING, "event=milter milter=%s error=\"%s%s%s\" action=%s", m->spec,
	    why, err ? ": " : "", err ? strerror(err) : "",
	    act[ms->conf->milter_default_action % 3]);
}

static enum verdict
default_verdict(const struct milters *ms)
{
	switch (ms->conf->milter_default_action) {
	case MA_ACCEPT:	return VD_CONTINUE;
	case MA_REJECT:	return VD_REJECT;
	default:	return VD_TEMPFAIL;
	}
}

static int
send_all(struct milters *ms, struct milter *m, const char *p, size_t n)
{
	while (n > 0) {
		ssize_t w = send(m->fd, p, n, MSG_NOSIGNAL);

		if (w > 0) {
			p += w;
			n -= (size_t)w;
			continue;
		}
		if (w == -1 && errno == EINTR && !io_terminate)
			continue;
		if (w == -1 && (errno == EAGAIN || errno == EWOULDBLOCK) &&
		    wait_fd(ms, m->fd, POLLOUT) == 0)
			continue;
		fail(ms, m, errno == ETIMEDOUT ? "timeout" : errno == EINTR ? "shutting down" :
		    "write", errno);
		return -1;
	}
	return 0;
}

/* Building a packet's data. */
static void
out_reset(struct milters *ms)
{
	char *o;

	ms->outlen = 5;
	ms->oom = 0;
	if (ms->outcap == 0) {
		if ((o = malloc(1024)) == NULL)
			ms->oom = 1;
		else {
			ms->out = o;
			ms->outcap = 1024;
		}
	}
}

static void
out_put(struct milters *ms, const void *p, size_t n)
{
	if (ms->oom)
		return;
	if (ms->outcap - ms->outlen < n) {
		size_t cap = ms->outcap ? ms->outcap : 1024;
		char *o;

		while (cap - ms->outlen < n)
			cap *= 2;
		if ((o = realloc(ms->out, cap)) == NULL) {
			ms->oom = 1;
			return;
		}
		ms->out = o;
		ms->outcap = cap;
	}
	memcpy(ms->out + ms->outlen, p, n);
	ms->outlen += n;
}

static void
out_str(struct milters *ms, const char *s)
{
	out_put(ms, s, strlen(s) + 1);
}

static void
out_32(struct milters *ms, uint32_t v)
{
	unsigned char b[4] = { v >> 24, v >> 16, v >> 8, v };

	out_put(ms, b, 4);
}

/* Send what out_* built as command `cmd`. */
static int
out_send(struct milters *ms, struct milter *m, char cmd)
{
	uint32_t len;

	if (ms->oom) {
		fail(ms, m, "out of memory", 0);
		return -1;
	}
	len = (uint32_t)(ms->outlen - 4);
	ms->out[0] = (char)(len >> 24);
	ms->out[1] = (char)(len >> 16);
	ms->out[2] = (char)(len >> 8);
	ms->out[3] = (char)len;
	ms->out[4] = cmd;
	return send_all(ms, m, ms->out, ms->outlen);
}

/*
 * n octets from the milter.  `wait`: they cannot be there yet (the reply to
 * what was just sent), so wait before the first recv instead of after one
 * that finds nothing.
 */
static int
read_full(struct milters *ms, struct milter *m, char *p, size_t n, bool wait)
{
	while (n > 0) {
		ssize_t r;

		if (wait && wait_fd(ms, m->fd, POLLIN) == -1)
			break;
		wait = false;
		if ((r = recv(m->fd, p, n, 0)) > 0) {
			p += r;
			n -= (size_t)r;
			continue;
		}
		if (r == 0) {
			fail(ms, m, "closed by the milter", 0);
			return -1;
		}
		if (errno == EINTR && !io_terminate)
			continue;
		if (errno == EAGAIN || errno == EWOULDBLOCK) {
			wait = true;
			continue;
		}
		break;
	}
	if (n == 0)
		return 0;
	fail(ms, m, errno == ETIMEDOUT ? "timeout" : errno == EINTR ? "shutting down" :
	    "read", errno);
	return -1;
}

/*
 * Read replies until one ends the exchange: a verdict, or -1 when the
 * milter failed (it is then latched to the default action).
 */
static int
read_replies(struct milters *ms, struct milter *m, struct exchange *x)
{
	/* The first reply is yet to come; the next may have come with it. */
	for (bool first = true;; first = false) {
		unsigned char hdr[5];
		uint32_t len;
		int r;

		if (read_full(ms, m, (char *)hdr, 5, first) == -1)
			return -1;
		len = get32(hdr);
		if (len == 0 || len > (hdr[4] == R_REPLBODY ? MILTER_MAX_BODY : MILTER_MAX_PACKET)) {
			fail(ms, m, "packet length out of bounds", 0);
			return -1;
		}
		if (ms->incap < len) {
			char *in = realloc(ms->in, len);

			if (in == NULL) {
				fail(ms, m, "out of memory", 0);
				return -1;
			}
			ms->in = in;
			ms->incap = len;
		}
		if (read_full(ms, m, ms->in, len - 1, false) == -1)
			return -1;
		r = packet(x, (char)hdr[4], ms->in, len - 1);
		if (r == P_ERR) {
			fail(ms, m, x->why ? x->why : "protocol error", 0);
			return -1;
		}
		if (r != P_MORE)
			return r;
	}
}

/* A macro's value, by name with or without braces; NULL: unknown. */
static const char *
macro(const struct milters *ms, const char *name, size_t n)
{
	static const struct { const char *name; size_t off; } tab[] = {
		{ "j", 0 }, { "daemon_name", 1 }, { "v", 2 }, { "_", 3 },
		{ "client_addr", 4 }, { "client_port", 5 }, { "client_name", 6 },
		{ "client_ptr", 7 }, { "i", 8 }, { "mail_addr", 9 }, { "rcpt_addr", 10 },
		{ "auth_authen", 11 }, { "tls_version", 12 }, { "cipher", 13 },
	};
	const char *vals[] = {
		ms->conf->hostname, "mailslot", "mailslot " VERSION, ms->peer_desc,
		ms->client_addr, ms->client_port, ms->client_name, ms->client_name,
		ms->queue_id, ms->mail_addr, ms->rcpt_addr, "", ms->tls_version, ms->cipher,
	};

	if (n >= 2 && name[0] == '{' && name[n - 1] == '}')
		name++, n -= 2;
	for (size_t i = 0; i < sizeof(tab) / sizeof(tab[0]); i++)
		if (strlen(tab[i].name) == n && memcmp(tab[i].name, name, n) == 0) {
			const char *v = vals[tab[i].off];

			/* TLS macros exist only once STARTTLS is done. */
			if ((tab[i].off == 12 || tab[i].off == 13) && *v == '\0')
				return NULL;
			/*
			 * mailslot has no AUTH: {auth_authen} is never sent, as
			 * Postfix sends it only after SASL.  An empty one is
			 * not "unauthenticated" to every milter: rspamd takes it
			 * as a login (auth=pass, and its headers skipped).
			 */
			if (tab[i].off == 11 && *v == '\0')
				return NULL;
			if (tab[i].off == 8 && *v == '\0')
				return NULL;
			return v;
		}
	return NULL;
}

/* The macros of `stage`, before its command. */
static int
send_macros(struct milters *ms, struct milter *m, int stage)
{
	const char *list = m->syms[stage] ? m->syms[stage] : default_macros[stage];
	char c = stage_cmd[stage];
	bool any = false;

	out_reset(ms);
	out_put(ms, &c, 1);
	while (*list != '\0') {
		size_t n = strcspn(list, " ,");
		const char *v;

		if (n > 0 && (v = macro(ms, list, n)) != NULL) {
			char name[64];

			if (n + 3 > sizeof(name))
				n = sizeof(name) - 3;
			if (n > 1 && list[0] != '{')
				snprintf(name, sizeof(name), "{%.*s}", (int)n, list);
			else
				snprintf(name, sizeof(name), "%.*s", (int)n, list);
			out_str(ms, name);
			out_str(ms, v);
			any = true;
		}
		list += n;
		list += strspn(list, " ,");
	}
	return any ? out_send(ms, m, C_MACRO) : 0;
}

/*
 * One SMTP step to one milter: its macros, the command built in ms->out
 * (the caller has called out_reset and out_*), and the reply unless the
 * milter asked for none.
 */
static enum verdict
step(struct milters *ms, struct milter *m, int stage, char cmd, uint32_t nr,
    struct vreply *vr)
{
	struct exchange x;
	char *saved;
	size_t savedlen;
	int r;

	arm(ms);
	/* The command is built; the macros go first, through the same buffer. */
	if ((saved = malloc(ms->outlen)) == NULL) {
		fail(ms, m, "out of memory", 0);
		return default_verdict(ms);
	}
	memcpy(saved, ms->out, ms->outlen);
	savedlen = ms->outlen;
	if (stage >= 0 && send_macros(ms, m, stage) == -1) {
		free(saved);
		return default_verdict(ms);
	}
	out_reset(ms);
	out_put(ms, saved + 5, savedlen - 5);
	free(saved);
	if (out_send(ms, m, cmd) == -1)
		return default_verdict(ms);
	if (m->proto & nr)
		return VD_CONTINUE;
	exchange_init(&x, ST_SMTP, m->actions, m->proto, NULL, vr);
	r = read_replies(ms, m, &x);
	exchange_free(&x);
	return r == -1 ? default_verdict(ms) : (enum verdict)r;
}

/* Parse "unix:/path", "inet:1.2.3.4:port", "inet6:[::1]:port". */
static int
spec_addr(const char *spec, struct sockaddr_storage *ss, socklen_t *len)
{
	memset(ss, 0, sizeof(*ss));
	if (strncmp(spec, "unix:", 5) == 0 || strncmp(spec, "local:", 6) == 0) {
		struct sockaddr_un *sun = (struct sockaddr_un *)ss;
		const char *path = strchr(spec, ':') + 1;

		if (*path != '/' || strlen(path) >= sizeof(sun->sun_path))
			return -1;
		sun->sun_family = AF_UNIX;
		strlcpy(sun->sun_path, path, sizeof(sun->sun_path));
		*len = sizeof(*sun);
		return 0;
	}
	if (strncmp(spec, "inet:", 5) == 0 || strncmp(spec, "inet6:", 6) == 0) {
		bool six = spec[4] == '6';
		const char *h = spec + (six ? 6 : 5), *colon, *pe;
		char host[INET6_ADDRSTRLEN + 2];
		long long port;
		const char *errstr;

		if (six) {
			if (*h != '[' || (pe = strchr(h, ']')) == NULL || pe[1] != ':')
				return -1;
			h++;
			colon = pe + 1;
		} else {
			if ((colon = strrchr(h, ':')) == NULL)
				return -1;
			pe = colon;
		}
		if ((size_t)(pe - h) >= sizeof(host))
			return -1;
		memcpy(host, h, (size_t)(pe - h));
		host[pe - h] = '\0';
		port = strtonum(colon + 1, 1, 65535, &errstr);
		if (errstr != NULL)
			return -1;
		if (!six) {
			struct sockaddr_in *sin = (struct sockaddr_in *)ss;

			if (inet_pton(AF_INET, host, &sin->sin_addr) != 1)
				return -1;
			sin->sin_family = AF_INET;
			sin->sin_port = htons((uint16_t)port);
			*len = sizeof(*sin);
		} else {
			struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)ss;

			if (inet_pton(AF_INET6, host, &sin6->sin6_addr) != 1)
				return -1;
			sin6->sin6_family = AF_INET6;
			sin6->sin6_port = htons((uint16_t)port);
			*len = sizeof(*sin6);
		}
		return 0;
	}
	return -1;
}

bool
milter_spec_ok(const char *spec)
{
	struct sockaddr_storage ss;
	socklen_t len;

	return spec_addr(spec, &ss, &len) == 0;
}

__attribute__((hot))
int
milter_check(const char *milters, FILE *err)
{
	int problems = 0;

	while (*milters != '\0') {
		size_t n = strcspn(milters, " \t,");

		if (n > 0) {
			char *spec = strndup(milters, n);

			if (spec == NULL || !milter_spec_ok(spec)) {
				fprintf(err, "mailslot: milters: \"%.*s\" is not unix:/absolute/path, "
				    "inet:IPV4:PORT or inet6:[IPV6]:PORT (no names: mailslot does "
				    "no DNS)\n", (int)(n > 200 ? 200 : n), milters);
				problems++;
			}
			free(spec);
		}
		milters += n;
		milters += strspn(milters, " \t,");
	}
	return problems;
}

/* Connect (non-blocking, within milter_timeout) and negotiate. */
static void
milter_start(struct milters *ms, struct milter *m)
{
	struct sockaddr_storage ss;
	socklen_t len, elen = sizeof(int);
	struct exchange x;
	int err = 0, r;

	if (spec_addr(m->spec, &ss, &len) == -1) {
		fail(ms, m, "bad milter address", 0);
		return;
	}
	arm(ms);
	if ((m->fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0)) == -1) {
		fail(ms, m, "socket", errno);
		return;
	}
	if (connect(m->fd, (struct sockaddr *)&ss, len) == -1) {
		if (errno != EINPROGRESS && errno != EAGAIN) {
			fail(ms, m, "connect", errno);
			return;
		}
		if (wait_fd(ms, m->fd, POLLOUT) == -1) {
			fail(ms, m, "connect", errno);
			return;
		}
		if (getsockopt(m->fd, SOL_SOCKET, SO_ERROR, &err, &elen) == -1 || err != 0) {
			fail(ms, m, "connect", err ? err : errno);
			return;
		}
	}
	/* Exactly 12 octets: version, actions, steps (rspamd checks). */
	arm(ms);
	out_reset(ms);
	out_32(ms, MILTER_VERSION);
	out_32(ms, A_ALL);
	out_32(ms, P_OFFER);
	if (out_send(ms, m, C_OPTNEG) == -1)
		return;
	exchange_init(&x, ST_NEG, A_ALL, P_OFFER, NULL, NULL);
	r = read_replies(ms, m, &x);
	if (r != -1) {
		m->actions = x.n_actions;
		m->proto = x.n_proto;
		for (int i = 0; i < M_NSTAGES; i++) {
			m->syms[i] = x.syms[i];
			x.syms[i] = NULL;
		}
	}
	exchange_free(&x);
}

/* The first refusal wins; a kept reply goes with it. */
static bool
refusal(enum verdict v)
{
	return v == VD_REJECT || v == VD_TEMPFAIL || v == VD_DISCARD;
}

__attribute__((hot))
struct milters *
milter_open(const struct config *conf, const struct peer *peer, enum verdict *vd,
    struct vreply *vr)
{
	struct milters *ms;
	const char *p = conf->milters;

	*vd = VD_CONTINUE;
	memset(vr, 0, sizeof(*vr));
	if (conf->milters[0] == '\0')
		return NULL;
	if ((ms = calloc(1, sizeof(*ms))) == NULL) {
		log_msg(LOG_ERR, "event=milter error=\"out of memory\"");
		*vd = default_verdict(&(struct milters){ .conf = conf });
		return NULL;
	}
	ms->conf = conf;
	while (*p != '\0') {
		size_t n = strcspn(p, " \t,");
		struct milter *nm;

		if (n > 0) {
			if ((nm = reallocarray(ms->m, ms->n + 1, sizeof(*nm))) == NULL)
				break;
			ms->m = nm;
			memset(&nm[ms->n], 0, sizeof(*nm));
			nm[ms->n].fd = -1;
			if ((nm[ms->n].spec = strndup(p, n)) == NULL)
				break;
			ms->n++;
		}
		p += n;
		p += strspn(p, " \t,");
	}
	/* The peer, as the connect step and the macros show it. */
	ms->family = 'U';
	if (peer->ip[0] != '\0') {
		const char *ip = peer->ip;

		ms->family = '4';
		if (strncmp(ip, "IPv6:", 5) == 0) {
			ip += 5;
			ms->family = '6';
		}
		strlcpy(ms->client_addr, ip, sizeof(ms->client_addr));
		/* The peer's own port: the proxied client's behind a PROXY header. */
		strlcpy(ms->client_port, peer->port, sizeof(ms->client_port));
	}
	if (ms->client_port[0] == '\0')
		strlcpy(ms->client_port, "0", sizeof(ms->client_port));
	strlcpy(ms->client_name, peer->host[0] ? peer->host : "unknown",
	    sizeof(ms->client_name));
	if (peer->ip[0] != '\0')
		snprintf(ms->peer_desc, sizeof(ms->peer_desc), "%s [%s]", ms->client_name,
		    ms->client_addr);
	else
		strlcpy(ms->peer_desc, ms->client_name, sizeof(ms->peer_desc));

	for (size_t i = 0; i < ms->n; i++) {
		struct milter *m = &ms->m[i];
		enum verdict v;

		milter_start(ms, m);
		if (m->st != MS_OK) {
			v = default_verdict(ms);
		} else if (m->proto & P_NOCONNECT) {
			continue;
		} else {
			uint16_t port = (uint16_t)strtonum(ms->client_port, 0, 65535, NULL);
			unsigned char pb[2] = { port >> 8, port & 0xff };
			char fam = (char)ms->family;

			out_reset(ms);
			out_str(ms, ms->client_name);
			out_put(ms, &fam, 1);
			if (ms->family != 'U') {
				out_put(ms, pb, 2);
				out_str(ms, ms->client_addr);
			}
			v = step(ms, m, M_CONNECT, C_CONNECT, P_NR_CONN, vr);
		}
		if (v == VD_ACCEPT)
			m->conn_done = true;
		else if (refusal(v) && v != VD_DISCARD) {
			*vd = v;
			break;
		}
	}
	if (*vd != VD_CONTINUE) {
		ms->conn_vd = *vd;
		ms->conn_vr = *vr;
		log_msg(LOG_NOTICE, "event=milter stage=connect verdict=%s",
		    *vd == VD_REJECT ? "reject" : "tempfail");
	}
	return ms;
}

void
milter_tls(struct milters *ms, const char *d)
{
	size_t n;

	if (ms == NULL || d == NULL)
		return;
	/* "TLSv1.3 with cipher TLS_AES_256_GCM_SHA384 (256/256 bits)" */
	n = strcspn(d, " ");
	snprintf(ms->tls_version, sizeof(ms->tls_version), "%.*s", (int)n, d);
	if ((d = strstr(d, " with cipher ")) != NULL) {
		d += 13;
		n = strcspn(d, " ");
		snprintf(ms->cipher, sizeof(ms->cipher), "%.*s", (int)n, d);
	}
}

__attribute__((hot))
enum verdict
milter_helo(struct milters *ms, const char *helo, struct vreply *vr)
{
	memset(vr, 0, sizeof(*vr));
	if (ms == NULL || ms->conn_vd != VD_CONTINUE)
		return VD_CONTINUE;
	strlcpy(ms->helo, helo, sizeof(ms->helo));
	ms->helo_vd = VD_CONTINUE;
	for (size_t i = 0; i < ms->n; i++) {
		struct milter *m = &ms->m[i];
		enum verdict v;

		if (m->st != MS_OK)
			v = default_verdict(ms);
		else if (m->conn_done || (m->proto & P_NOHELO))
			continue;
		else {
			out_reset(ms);
			out_str(ms, helo);
			v = step(ms, m, M_HELO, C_HELO, P_NR_HELO, vr);
		}
		if (v == VD_ACCEPT)
			m->conn_done = true;
		else if (v == VD_REJECT || v == VD_TEMPFAIL) {
			ms->helo_vd = v;
			ms->helo_vr = *vr;
			log_msg(LOG_NOTICE, "event=milter stage=helo verdict=%s",
			    v == VD_REJECT ? "reject" : "tempfail");
			return v;
		}
	}
	return VD_CONTINUE;
}

/* Tell the milters a transaction is over without its end of body. */
__attribute__((hot))
void
milter_abort(struct milters *ms)
{
	if (ms == NULL || !ms->in_msg)
		return;
	ms->in_msg = false;
	for (size_t i = 0; i < ms->n; i++) {
		struct milter *m = &ms->m[i];

		if (m->st == MS_OK && m->in_msg) {
			arm(ms);
			out_reset(ms);
			(void)out_send(ms, m, C_ABORT);
		}
		m->in_msg = false;
		m->msg_done = false;
	}
	ms->queue_id[0] = ms->mail_addr[0] = ms->rcpt_addr[0] = '\0';
}

__attribute__((hot))
enum verdict
milter_mail(struct milters *ms, const char *sender, struct vreply *vr)
{
	char arg[MILTER_MAX_ADDR + 2];

	memset(vr, 0, sizeof(*vr));
	if (ms == NULL)
		return VD_CONTINUE;
	/* A connection or HELO refusal answers every MAIL. */
	if (ms->conn_vd != VD_CONTINUE) {
		*vr = ms->conn_vr;
		return ms->conn_vd;
	}
	if (ms->helo_vd != VD_CONTINUE) {
		*vr = ms->helo_vr;
		return ms->helo_vd;
	}
	milter_abort(ms);
	ms->in_msg = true;
	ms->msg_vd = VD_CONTINUE;
	strlcpy(ms->mail_addr, sender, sizeof(ms->mail_addr));
	snprintf(arg, sizeof(arg), "<%s>", sender);
	for (size_t i = 0; i < ms->n; i++) {
		struct milter *m = &ms->m[i];
		enum verdict v;

		if (m->st != MS_OK)
			v = default_verdict(ms);
		else if (m->conn_done)
			continue;
		else {
			m->in_msg = true;
			if (m->proto & P_NOMAIL)
				continue;
			out_reset(ms);
			out_str(ms, arg);
			v = step(ms, m, M_ENVFROM, C_MAIL, P_NR_MAIL, vr);
		}
		if (v == VD_ACCEPT)
			m->msg_done = true;
		else if (v == VD_DISCARD) {
			ms->msg_vd = VD_DISCARD;	/* kept for the end of the data */
			break;
		} else if (v == VD_REJECT || v == VD_TEMPFAIL) {
			log_msg(LOG_NOTICE, "event=milter stage=mail verdict=%s",
			    v == VD_REJECT ? "reject" : "tempfail");
			return v;
		}
	}
	return VD_CONTINUE;
}

__attribute__((hot))
enum verdict
milter_rcpt(struct milters *ms, const char *rcpt, struct vreply *vr)
{
	char arg[MILTER_MAX_ADDR + 2];

	memset(vr, 0, sizeof(*vr));
	if (ms == NULL || ms->msg_vd != VD_CONTINUE)
		return VD_CONTINUE;
	strlcpy(ms->rcpt_addr, rcpt, sizeof(ms->rcpt_addr));
	snprintf(arg, sizeof(arg), "<%s>", rcpt);
	for (size_t i = 0; i < ms->n; i++) {
		struct milter *m = &ms->m[i];
		enum verdict v;

		if (m->st != MS_OK)
			v = default_verdict(ms);
		else if (m->conn_done || m->msg_done || (m->proto & P_NORCPT))
			continue;
		else {
			out_reset(ms);
			out_str(ms, arg);
			v = step(ms, m, M_ENVRCPT, C_RCPT, P_NR_RCPT, vr);
		}
		if (v == VD_ACCEPT)
			m->msg_done = true;
		else if (v == VD_DISCARD) {
			ms->msg_vd = VD_DISCARD;
			break;
		} else if (v == VD_REJECT || v == VD_TEMPFAIL) {
			log_msg(LOG_NOTICE, "event=milter stage=rcpt verdict=%s",
			    v == VD_REJECT ? "reject" : "tempfail");
			return v;
		}
	}
	return VD_CONTINUE;
}

/* ---- The message, read back from its file --------------------------- */

struct reader {
	int		fd;
	uint64_t	pos, end;	/* file offsets: next to read, end */
	size_t		i, n;
	char		buf[65536];
};

static int
rd_byte(struct reader *r)
{
	if (r->i == r->n) {
		size_t want = sizeof(r->buf);
		ssize_t got;

		if (r->pos >= r->end)
			return -1;
		if (r->end - r->pos < want)
			want = (size_t)(r->end - r->pos);
		do
			got = pread(r->fd, r->buf, want, (off_t)r->pos);
		while (got == -1 && errno == EINTR);
		if (got <= 0)
			return -2;
		r->pos += (uint64_t)got;
		r->i = 0;
		r->n = (size_t)got;
	}
	return (unsigned char)r->buf[r->i++];
}

static int
rd_peek(struct reader *r)
{
	int c = rd_byte(r);

	if (c >= 0)
		r->i--;
	return c;
}

static uint64_t
rd_tell(const struct reader *r)
{
	return r->pos - (r->n - r->i);
}

static void
rd_seek(struct reader *r, uint64_t off)
{
	r->pos = off;
	r->i = r->n = 0;
}

/* Send one header field (hb, hn octets, its line ends LF). */
static enum verdict
send_header(struct milters *ms, struct milter *m, char *hb, size_t hn, struct vreply *vr)
{
	char *colon = memchr(hb, ':', hn), *v;
	size_t vn;

	/*
	 * The field's line was whole, colon included (field_start), but its
	 * copy here was cut short when memory ran out (hb_add).
	 */
	if (colon == NULL) {
		fail(ms, m, "out of memory", 0);
		return default_verdict(ms);
	}
	/* the value: after the colon, without the last line end */
	while (hn > 0 && (hb[hn - 1] == '\n' || hb[hn - 1] == '\r'))
		hn--;
	hb[hn] = '\0';
	*colon = '\0';
	v = colon + 1;
	if (!(m->proto & P_HDR_LEADSPC) && *v == ' ')
		v++;
	/* CRLF inside (BINARYMIME) shown as LF, as the other folds */
	vn = 0;
	for (char *p = v; *p != '\0'; p++)
		if (!(p[0] == '\r' && p[1] == '\n'))
			v[vn++] = *p;
	v[vn] = '\0';
	out_reset(ms);
	out_str(ms, hb);
	out_str(ms, v);
	*colon = ':';
	return step(ms, m, -1, C_HEADER, P_NR_HDR, vr);
}

/* Is the line the start of a header field: a name, then a colon? */
static bool
field_start(const char *l, size_t n)
{
	size_t i;

	for (i = 0; i < n && l[i] != ':'; i++)
		if ((unsigned char)l[i] <= 0x20 || l[i] == 0x7f)
			return false;
	return i > 0 && i < n;
}

/* A growing buffer for a header field, bounded: past it octets are dropped. */
struct hbuf {
	char	*p;
	size_t	 n, cap;
	bool	 cut;
};

static void
hb_add(struct hbuf *b, char c)
{
	if (b->n + 2 > b->cap) {
		size_t cap = b->cap ? b->cap * 2 : 1024;
		char *np;

		if (cap > MILTER_MAX_HEADER || (np = realloc(b->p, cap)) == NULL) {
			b->cut = true;
			return;
		}
		b->p = np;
		b->cap = cap;
	}
	b->p[b->n++] = c;
}

/* One stored line into b, its LF included; -2 on a read error. */
static int
hb_line(struct hbuf *b, struct reader *r)
{
	int c;

	while ((c = rd_byte(r)) >= 0) {
		hb_add(b, (char)c);
		if (c == '\n')
			return 0;
	}
	return c == -2 ? -2 : 0;
}

/*
 * DATA, the headers, EOH, the body and the end of body to one milter.
 * VD_* from a stage that decided, or the end of body's verdict.
 */
static enum verdict
message_to(struct milters *ms, struct milter *m, struct reader *r, uint64_t off,
    bool binary, struct edits *ed, struct vreply *vr)
{
	struct hbuf hb = { 0 }, lb = { 0 };
	enum verdict v = VD_CONTINUE;
	struct exchange x;
	int c, res;

	out_reset(ms);
	if (!(m->proto & P_NODATA) &&
	    (v = step(ms, m, M_DATA, C_DATA, P_NR_DATA, vr)) != VD_CONTINUE)
		return v;
	rd_seek(r, off);
	/* The header section: fields, each with its folded lines. */
	for (;;) {
		uint64_t start = rd_tell(r);

		if ((c = rd_peek(r)) == -2)
			goto ioerr;
		if (c == -1)
			break;
		if (c == '\n' || (c == '\r' && binary)) {
			(void)rd_byte(r);
			if (c == '\n' || rd_peek(r) == '\n') {
				if (c == '\r')
					(void)rd_byte(r);
				break;		/* the empty line: the body follows */
			}
			rd_seek(r, start);
			break;
		}
		if (c == ' ' || c == '\t') {
			if (hb.n == 0) {
				rd_seek(r, start);	/* a fold with no field: body */
				break;
			}
			if (hb_line(&hb, r) == -2)
				goto ioerr;
			continue;
		}
		lb.n = 0;
		if (hb_line(&lb, r) == -2)
			goto ioerr;
		if (!field_start(lb.p, lb.n)) {
			rd_seek(r, start);	/* not a field: the body starts here */
			break;
		}
		if (hb.n > 0 && (v = send_header(ms, m, hb.p, hb.n, vr)) != VD_CONTINUE)
			goto out;
		hb.n = 0;
		for (size_t i = 0; i < lb.n; i++)
			hb_add(&hb, lb.p[i]);
		hb.cut |= lb.cut;
	}
	if (hb.n > 0 && (v = send_header(ms, m, hb.p, hb.n, vr)) != VD_CONTINUE)
		goto out;
	if (hb.cut)
		log_msg(LOG_NOTICE, "event=milter milter=%s note=\"header field shortened\"", m->spec);
	if (!(m->proto & P_NOEOH)) {
		out_reset(ms);
		if ((v = step(ms, m, M_EOH, C_EOH, P_NR_EOH, vr)) != VD_CONTINUE)
			goto out;
	}
	/* The body, CRLF line ends, in chunks. */
	if (!(m->proto & P_NOBODY)) {
		char chunk[MILTER_CHUNK];
		size_t cn = 0;
		bool done = false;

		while (!done) {
			c = rd_byte(r);
			if (c == -2)
				goto ioerr;
			if (c >= 0 && !binary && c == '\n')
				chunk[cn++] = '\r';
			if (c >= 0)
				chunk[cn++] = (char)c;
			else
				done = true;
			if ((done && cn > 0) || cn + 2 > sizeof(chunk)) {
				struct exchange bx;

				arm(ms);
				out_reset(ms);
				out_put(ms, chunk, cn);
				cn = 0;
				if (out_send(ms, m, C_BODY) == -1) {
					v = default_verdict(ms);
					goto out;
				}
				if (m->proto & P_NR_BODY)
					continue;
				exchange_init(&bx, ST_SMTP, m->actions, m->proto, NULL, vr);
				res = read_replies(ms, m, &bx);
				exchange_free(&bx);
				if (res == -1) {
					v = default_verdict(ms);
					goto out;
				}
				if (bx.skip)
					break;
				if (res != VD_CONTINUE) {
					v = (enum verdict)res;
					goto out;
				}
			}
		}
	}
	/* The end of the body: the changes, then the verdict. */
	arm(ms);
	if (send_macros(ms, m, M_EOM) == -1) {
		v = default_verdict(ms);
		goto out;
	}
	out_reset(ms);
	if (out_send(ms, m, C_BODYEOB) == -1) {
		v = default_verdict(ms);
		goto out;
	}
	exchange_init(&x, ST_EOM, m->actions, m->proto, ed, vr);
	x.binary = binary;
	/* A new body is no larger than a client may send (as sent, CRLF). */
	if (ms->conf->max_message_size < x.body_max)
		x.body_max = ms->conf->max_message_size;
	res = read_replies(ms, m, &x);
	if (res != -1 && body_end(&x) == -1) {
		fail(ms, m, "cannot keep the new body", errno);
		res = -1;
	}
	if (res == -1)
		v = default_verdict(ms);
	else if (x.quarantine && (res == VD_CONTINUE || res == VD_ACCEPT))
		v = VD_QUARANTINE;
	else
		v = (enum verdict)res;
	exchange_free(&x);
out:
	free(hb.p);
	free(lb.p);
	return v;
ioerr:
	free(hb.p);
	free(lb.p);
	log_msg(LOG_ERR, "event=milter error=\"reading the message: %s\"", strerror(errno));
	return VD_TEMPFAIL;
}

size_t
milter_count(const struct milters *ms)
{
	return ms == NULL ? 0 : ms->n;
}

enum verdict
milter_message(struct milters *ms, size_t i, int fd, uint64_t off, uint64_t end,
    bool binary, const char *id, struct edits *ed, struct vreply *vr)
{
	static const char *const names[] = { "continue", "accept", "reject",
	    "tempfail", "discard", "quarantine" };
	struct milter *m;
	struct reader *r;
	enum verdict v;

	memset(vr, 0, sizeof(*vr));
	if (ms == NULL || i >= ms->n)
		return VD_CONTINUE;
	m = &ms->m[i];
	if (ms->msg_vd == VD_DISCARD) {
		/* a MAIL or RCPT step said so: no milter sees the data */
		ms->msg_vd = VD_CONTINUE;
		strlcpy(ed->reason, "discarded by a milter before the data", sizeof(ed->reason));
		v = VD_DISCARD;
		goto done;
	}
	if (m->st != MS_OK) {
		v = default_verdict(ms);
		goto done;
	}
	if (m->conn_done || m->msg_done || !m->in_msg)
		return VD_CONTINUE;
	if ((r = malloc(sizeof(*r))) == NULL)
		return VD_TEMPFAIL;
	r->fd = fd;
	r->end = end;
	strlcpy(ms->queue_id, id, sizeof(ms->queue_id));
	v = message_to(ms, m, r, off, binary, ed, vr);
	free(r);
	m->in_msg = false;
	/*
	 * A milter that failed partway (closed, timed out, broke the protocol
	 * after some changes) gets none of them applied: all or nothing per
	 * milter, whatever milter_default_action then decides.
	 */
	if (m->st != MS_OK)
		edits_free(ed);
	if (v == VD_DISCARD && ed->reason[0] == '\0')
		snprintf(ed->reason, sizeof(ed->reason), "discarded by %s", m->spec);
done:
	if (v != VD_CONTINUE) {
		char q[LOG_QUOTED(sizeof(ed->reason))];

		log_msg(LOG_NOTICE, "event=milter stage=eom milter=%s id=%s verdict=%s reason=%s",
		    m->spec, id, names[v], log_quote(q, sizeof(q), ed->reason, strlen(ed->reason)));
	}
	return v;
}

void
milter_message_end(struct milters *ms)
{
	if (ms == NULL)
		return;
	ms->in_msg = false;
	ms->msg_vd = VD_CONTINUE;
	for (size_t i = 0; i < ms->n; i++)
		ms->m[i].in_msg = ms->m[i].msg_done = false;
	ms->queue_id[0] = ms->mail_addr[0] = ms->rcpt_addr[0] = '\0';
}

__attribute__((hot))
void
milter_close(struct milters *ms)
{
	if (ms == NULL)
		return;
	for (size_t i = 0; i < ms->n; i++) {
		struct milter *m = &ms->m[i];

		if (m->st == MS_OK && m->fd != -1) {
			arm(ms);
			out_reset(ms);
			(void)out_send(ms, m, C_QUIT);
		}
		if (m->fd != -1)
			close(m->fd);
		free(m->spec);
		for (int j = 0; j < M_NSTAGES; j++)
			free(m->syms[j]);
	}
	free(ms->m);
	free(ms->out);
	free(ms->in);
	free(ms);
}
