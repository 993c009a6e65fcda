/*
 * proxy.c: the PROXY protocol header, versions 1 and 2 (HAProxy's
 * proxy-protocol.txt), and the list of balancers trusted to send it.
 *
 * The parser is pure, as Postfix's haproxy_srvr_parse_sa() is: it answers
 * "this many octets", "more, please" or "no", and touches nothing else.
 * proxy_read() feeds it from the connection's input buffer, reading as
 * often as the header needs within one deadline (a balancer may send it in
 * pieces; Postfix reads once and fails there), and consumes exactly the
 * header: what the client sent after it stays buffered for the session.
 * The caller sets the peer only after a complete, valid header (as Dovecot
 * does), and otherwise closes without a word: before the header nothing
 * says who is listening, and a 421 would tell a stranger that a balancer's
 * port takes SMTP.
 */
#include <sys/socket.h>

#include <arpa/inet.h>
#include <netinet/in.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "proxy.h"

static const unsigned char v2sig[12] = {
	0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a
};
static const char v1sig[] = "PROXY ";

/* A v1 port: decimal, 0..65535, no leading zero (the spec forbids them). */
static int
v1_port(const char *s, uint16_t *port)
{
	size_t n = strlen(s);
	unsigned long v = 0;

	if (n == 0 || n > 5 || strspn(s, "0123456789") != n || (n > 1 && s[0] == '0'))
		return -1;
	for (size_t i = 0; i < n; i++)
		v = v * 10 + (unsigned long)(s[i] - '0');
	if (v > 65535)
		return -1;
	*port = (uint16_t)v;
	return 0;
}

/*
 * "PROXY TCP4 src dst sport dport\r\n", fields apart by exactly one space,
 * at most 107 octets with its CRLF; "PROXY UNKNOWN" and anything up to the
 * CRLF when the balancer could not name the client.
 */
static ssize_t
parse_v1(const unsigned char *buf, size_t len, struct proxy_hdr *h, const char **why)
{
	size_t lim = len < PROXY_V1_MAX ? len : PROXY_V1_MAX, n;
	const unsigned char *lf = memchr(buf, '\n', lim);
	char line[PROXY_V1_MAX + 1], *p, *f[7];
	int nf = 0;

	if (lf == NULL) {
		if (len >= PROXY_V1_MAX) {
			*why = "v1 line longer than 107 octets";
			return -1;
		}
		return 0;
	}
	n = (size_t)(lf - buf) + 1;
	if (n < 2 || buf[n - 2] != '\r') {
		*why = "v1 line not ended by CRLF";
		return -1;
	}
	memcpy(line, buf, n - 2);
	line[n - 2] = '\0';
	if (strlen(line) != n - 2 || strchr(line, '\r') != NULL) {
		*why = "v1 line holds a NUL or a CR";
		return -1;
	}
	h->version = 1;
	p = line;
	while (p != NULL && nf < 7)
		f[nf++] = strsep(&p, " ");
	if (nf >= 2 && strcmp(f[1], "UNKNOWN") == 0) {
		h->kind = PROXY_UNKNOWN;	/* the rest of the line is ignored (2.1) */
		return (ssize_t)n;
	}
	if (nf != 6 || p != NULL) {
		*why = "v1 line has not six fields";
		return -1;
	}
	if (strcmp(f[1], "TCP4") == 0)
		h->family = AF_INET;
	else if (strcmp(f[1], "TCP6") == 0)
		h->family = AF_INET6;
	else {
		*why = "v1 protocol is not TCP4, TCP6 or UNKNOWN";
		return -1;
	}
	if (inet_pton(h->family, f[2], h->src) != 1 ||
	    inet_pton(h->family, f[3], h->dst) != 1) {
		*why = "v1 address is not of its family";
		return -1;
	}
	if (v1_port(f[4], &h->sport) == -1 || v1_port(f[5], &h->dport) == -1) {
		*why = "v1 port is not 0..65535";
		return -1;
	}
	h->kind = PROXY_PEER;
	return (ssize_t)n;
}

/*
 * 12 octets of signature, version 2 and a command, family and protocol,
 * the length of what follows (at most PROXY_V2_MAX here), addresses, TLVs.
 * TLVs are skipped: nothing in them is believed.
 */
static ssize_t
parse_v2(const unsigned char *buf, size_t len, struct proxy_hdr *h, const char **why)
{
	unsigned ver = buf[12] >> 4, cmd = buf[12] & 0x0f;
	unsigned fam = buf[13] >> 4, proto = buf[13] & 0x0f;
	size_t alen = (size_t)buf[14] << 8 | buf[15];
	static const size_t need[] = { 0, 12, 36, 216 };	/* by family */

	h->version = 2;
	if (ver != 2) {
		*why = "v2 version is not 2";
		return -1;
	}
	if (cmd > 1) {
		*why = "v2 command is neither LOCAL nor PROXY";
		return -1;
	}
	if (fam > 3 || proto > 2) {
		*why = "v2 family or protocol unknown";
		return -1;
	}
	if (alen > PROXY_V2_MAX) {
		*why = "v2 header declares more than 1024 octets";
		return -1;
	}
	if (len - PROXY_V2_FIXED < alen)
		return 0;
	if (cmd == 0) {
		h->kind = PROXY_LOCAL;	/* the family and addresses are ignored (2.2) */
		return (ssize_t)(PROXY_V2_FIXED + alen);
	}
	if (alen < need[fam]) {
		*why = "v2 address block too short for its family";
		return -1;
	}
	if ((fam == 1 || fam == 2) && proto == 1) {
		const unsigned char *a = buf + PROXY_V2_FIXED;
		size_t sz = fam == 1 ? 4 : 16;

		h->family = fam == 1 ? AF_INET : AF_INET6;
		memcpy(h->src, a, sz);
		memcpy(h->dst, a + sz, sz);
		h->sport = (uint16_t)(a[2 * sz] << 8 | a[2 * sz + 1]);
		h->dport = (uint16_t)(a[2 * sz + 2] << 8 | a[2 * sz + 3]);
		h->kind = PROXY_PEER;
	} else
		h->kind = PROXY_UNKNOWN;	/* UNSPEC, UNIX, or datagrams */
	return (ssize_t)(PROXY_V2_FIXED + alen);
}

ssize_t
proxy_parse(const unsigned char *buf, size_t len, struct proxy_hdr *h, const char **why)
{
	size_t n;

	memset(h, 0, sizeof(*h));
	*why = NULL;
	if (len == 0)
		return 0;
	/* The two signatures differ in their first octet. */
	if (buf[0] == v2sig[0]) {
		n = len < sizeof(v2sig) ? len : sizeof(v2sig);
		if (memcmp(buf, v2sig, n) != 0) {
			*why = "no PROXY header";
			return -1;
		}
		return len < PROXY_V2_FIXED ? 0 : parse_v2(buf, len, h, why);
	}
	n = len < sizeof(v1sig) - 1 ? len : sizeof(v1sig) - 1;
	if (memcmp(buf, v1sig, n) != 0) {
		*why = "no PROXY header";
		return -1;
	}
	return len < sizeof(v1sig) - 1 ? 0 : parse_v1(buf, len, h, why);
}

static long long
now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int
proxy_read(struct io *io, int timeout, struct proxy_hdr *h, const char **why)
{
	long long deadline = now_ms() + timeout * 1000LL;

	for (;;) {
		ssize_t r = proxy_parse((const unsigned char *)io_peek(io), io_avail(io), h, why);
		long long left;

		if (r > 0) {
			io_consume(io, (size_t)r);
			return 0;
		}
		if (r < 0)
			return -1;
		if ((left = deadline - now_ms()) <= 0) {
			*why = io_avail(io) > 0 ? "header incomplete at proxy_timeout" :
			    "no header within proxy_timeout";
			return -1;
		}
		switch (io_more(io, left > 3600000 ? 3600000 : (int)left)) {
		case IO_OK:
			break;
		case IO_TIMEOUT:
			*why = io_avail(io) > 0 ? "header incomplete at proxy_timeout" :
			    "no header within proxy_timeout";
			return -1;
		case IO_EOF:
			*why = io_avail(io) > 0 ? "closed within the header (truncated)" :
			    "closed before any header";
			return -1;
		case IO_SIGNAL:
			*why = "shutting down";
			return -1;
		default:
			*why = "read error";
			return -1;
		}
	}
}

/* An IPv4-mapped IPv6 address is the IPv4 address it carries. */
static void
unmap(int *family, unsigned char *addr, unsigned *bits)
{
	static const unsigned char mapped[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };

	if (*family == AF_INET6 && memcmp(addr, mapped, 12) == 0 &&
	    (bits == NULL || *bits >= 96)) {
		memmove(addr, addr + 12, 4);
		memset(addr + 4, 0, 12);
		*family = AF_INET;
		if (bits != NULL)
			*bits -= 96;
	}
}

__attribute__((hot))
int
proxy_trust_parse(const char *list, struct proxy_trust *t, FILE *err)
{
	char *copy = strdup(list), *save = NULL;
	int problems = 0;

	t->n = 0;
	t->nets = NULL;
	if (copy == NULL) {
		fprintf(err, "mailslot: proxy_from: %s\n", strerror(errno));
		return 1;
	}
	for (char *w = strtok_r(copy, " \t,", &save); w != NULL; w = strtok_r(NULL, " \t,", &save)) {
		struct proxy_net net = { 0 }, *grown;
		char *slash = strchr(w, '/');
		const char *errstr = NULL;
		unsigned max;

		if (slash != NULL)
			*slash = '\0';
		if (inet_pton(AF_INET, w, net.addr) == 1)
			net.family = AF_INET;
		else if (inet_pton(AF_INET6, w, net.addr) == 1)
			net.family = AF_INET6;
		else {
			fprintf(err, "mailslot: proxy_from: \"%s\" is not an IPv4 or IPv6 address\n", w);
			problems++;
			continue;
		}
		max = net.family == AF_INET ? 32 : 128;
		net.bits = slash == NULL ? max :
		    (unsigned)strtonum(slash + 1, 0, max, &errstr);
		if (errstr != NULL) {
			fprintf(err, "mailslot: proxy_from: \"%s/%s\": the prefix length is not 0..%u\n",
			    w, slash + 1, max);
			problems++;
			continue;
		}
		unmap(&net.family, net.addr, &net.bits);
		if ((grown = reallocarray(t->nets, t->n + 1, sizeof(*grown))) == NULL) {
			fprintf(err, "mailslot: proxy_from: %s\n", strerror(errno));
			problems++;
			break;
		}
		t->nets = grown;
		t->nets[t->n++] = net;
	}
	free(copy);
	return problems;
}

bool
proxy_trusted(const struct proxy_trust *t, int family, const unsigned char *addr)
{
	unsigned char a[16] = { 0 };

	if (family != AF_INET && family != AF_INET6)
		return false;
	memcpy(a, addr, family == AF_INET ? 4 : 16);
	unmap(&family, a, NULL);
	for (size_t i = 0; i < t->n; i++) {
		const struct proxy_net *net = &t->nets[i];
		unsigned whole = net->bits / 8, rest = net->bits % 8;

		if (net->family != family || memcmp(net->addr, a, whole) != 0)
			continue;
		if (rest == 0 ||
		    ((net->addr[whole] ^ a[whole]) & (unsigned char)(0xff << (8 - rest))) == 0)
			return true;
	}
	return false;
}
