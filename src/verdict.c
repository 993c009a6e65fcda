/*
 * verdict.c: the edits a filter asks for, kept until the delivery applies
 * them (deliver.c, delivery_edit).  Every string is a copy: the filter's
 * buffers may go before the message is stored.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "verdict.h"

void
edits_init(struct edits *e)
{
	memset(e, 0, sizeof(*e));
	e->body_fd = -1;
}

static void
strv_free(char **v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(v[i]);
	free(v);
}

void
edits_free(struct edits *e)
{
	for (size_t i = 0; i < e->nh; i++) {
		free(e->h[i].name);
		free(e->h[i].value);
	}
	free(e->h);
	if (e->body_fd != -1)
		close(e->body_fd);
	strv_free(e->add_rcpt, e->nadd);
	strv_free(e->del_rcpt, e->ndel);
	free(e->sender);
	edits_init(e);
}

int
edits_header(struct edits *e, enum hedit_op op, unsigned idx, const char *name,
    const char *value)
{
	struct hedit *h;
	size_t n = strlen(name) + (value != NULL ? strlen(value) : 0);

	if (e->nh == EDITS_MAX_HEADERS || n > EDITS_MAX_OCTETS - e->hoctets) {
		errno = E2BIG;
		return -1;
	}
	if (e->nh == e->caph) {
		size_t cap = e->caph ? e->caph * 2 : 8;

		if ((h = reallocarray(e->h, cap, sizeof(*h))) == NULL)
			return -1;
		e->h = h;
		e->caph = cap;
	}
	h = &e->h[e->nh];
	h->op = op;
	h->idx = idx;
	h->value = NULL;
	if ((h->name = strdup(name)) == NULL ||
	    (value != NULL && (h->value = strdup(value)) == NULL)) {
		free(h->name);
		return -1;
	}
	e->nh++;
	e->hoctets += n;
	return 0;
}

static int
strv_add(char ***v, size_t *n, const char *s)
{
	char **nv, *c;

	if (*n == EDITS_MAX_RCPTS) {
		errno = E2BIG;
		return -1;
	}
	if ((c = strdup(s)) == NULL)
		return -1;
	if ((nv = reallocarray(*v, *n + 1, sizeof(*nv))) == NULL) {
		free(c);
		return -1;
	}
	nv[(*n)++] = c;
	*v = nv;
	return 0;
}

int
edits_rcpt(struct edits *e, bool add, const char *addr)
{
	return add ? strv_add(&e->add_rcpt, &e->nadd, addr) :
	    strv_add(&e->del_rcpt, &e->ndel, addr);
}

int
edits_sender(struct edits *e, const char *addr)
{
	char *c = strdup(addr);

	if (c == NULL)
		return -1;
	free(e->sender);
	e->sender = c;
	return 0;
}

void
edits_body(struct edits *e, int fd)
{
	if (e->body_fd != -1)
		close(e->body_fd);
	e->body_fd = fd;
}

bool
edits_any(const struct edits *e)
{
	return e->nh > 0 || e->body_fd != -1 || e->nadd > 0 || e->ndel > 0 ||
	    e->sender != NULL;
}
