/*
 * route.c: recipient -> targets (see route.h).
 *
 * Every name that becomes part of a path was judged by addr_parse with
 * ADDR_MAILBOX first: no '/', no leading dot, no "..", at most 64 octets.
 * So "mailboxes/<name>" and its ".<tag>" folder always name an entry of
 * the mailbox directory itself: no recipient can reach a file outside it.
 */
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>

#include <arpa/inet.h>
#include <netinet/in.h>

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>
#include <utmpx.h>

#include "log.h"
#include "maildir.h"
#include "route.h"

#define ALIAS_MAX_DEPTH	16

struct alias {
	char		 *name;
	unsigned	  line;
	char		**members;	/* as written, for EXPN */
	size_t		  nmembers;
	char		**local;	/* after expansion: mailbox names */
	size_t		  nlocal;
	char		**remote;	/* after expansion: remote addresses */
	size_t		  nremote;
	int		  mark;		/* expansion: 0 new, 1 on the path, 2 done */
	int		  height;	/* the longest chain of aliases below it */
};

struct router {
	const struct config	 *conf;
	char			**domains;	/* lower-case; NULL: any */
	size_t			  ndomains;
	const char		**local_domains; /* for alias targets: domains, or hostname */
	struct alias		 *aliases;	/* sorted by name */
	size_t			  naliases;
	int			  local_family;	/* of local_addr: AF_INET, AF_INET6, 0 none */
	unsigned char		  local_addr[sizeof(struct in6_addr)];
};

/* ---- small helpers ------------------------------------------------------ */

static void
lower(char *s)
{
	for (; *s != '\0'; s++)
		*s = (char)tolower((unsigned char)*s);
}

static int
push(char ***v, size_t *n, const char *s)
{
	char **nv = reallocarray(*v, *n + 1, sizeof(**v));

	if (nv == NULL)
		return -1;
	*v = nv;
	if ((nv[*n] = strdup(s)) == NULL)
		return -1;
	(*n)++;
	return 0;
}

static bool
has(char *const *v, size_t n, const char *s)
{
	for (size_t i = 0; i < n; i++)
		if (strcasecmp(v[i], s) == 0)
			return true;
	return false;
}

static bool
local_domain(const char *const *doms, const char *d)
{
	for (; *doms != NULL; doms++)
		if (strcasecmp(*doms, d) == 0)
			return true;
	return false;
}

/* ---- aliases ------------------------------------------------------------ */

struct aliases {
	struct alias	*v;
	size_t		 n;
};

static int
alias_cmp(const void *a, const void *b)
{
	return strcmp(((const struct alias *)a)->name, ((const struct alias *)b)->name);
}

static struct alias *
alias_find(const struct aliases *al, const char *name)
{
	struct alias key = { .name = (char *)name };

	if (al->n == 0)
		return NULL;
	return bsearch(&key, al->v, al->n, sizeof(*al->v), alias_cmp);
}

/*
 * A target as written: "name" or "name@local.domain" is a local mailbox
 * (or another alias); anything else with an '@' is a remote address.
 * Returns 0 (local: *local set), 1 (remote), -1 (not an address).
 */
static int
target_kind(const char *t, const char *const *doms, char *local, size_t size)
{
	struct mailbox mb;
	const char *rest;
	char buf[ADDR_MAX_PATH + 3];

	if (strlen(t) > ADDR_MAX_PATH - 2)
		return -1;
	snprintf(buf, sizeof(buf), "<%s>", t);
	if (addr_parse(buf, ADDR_UTF8, &mb, &rest) != ADDR_OK || *rest != '\0' || mb.null)
		return -1;
	if (!mb.bare && !local_domain(doms, addr_domain(&mb)))
		return 1;
	if (addr_parse(buf, ADDR_UTF8 | ADDR_MAILBOX, &mb, &rest) != ADDR_OK)
		return -1;
	strlcpy(local, mb.local, size);
	lower(local);
	return 0;
}

static void
alias_free_one(struct alias *a)
{
	for (size_t i = 0; i < a->nmembers; i++)
		free(a->members[i]);
	for (size_t i = 0; i < a->nlocal; i++)
		free(a->local[i]);
	for (size_t i = 0; i < a->nremote; i++)
		free(a->remote[i]);
	free(a->members);
	free(a->local);
	free(a->remote);
	free(a->name);
}

static void
aliases_free(struct aliases *al)
{
	for (size_t i = 0; i < al->n; i++)
		alias_free_one(&al->v[i]);
	free(al->v);
	al->v = NULL;
	al->n = 0;
}

/* One "name: target, target..." entry (continuations already joined). */
static int
alias_entry(struct aliases *al, char *text, unsigned line, const char *path, FILE *err)
{
	char *colon = strchr(text, ':'), *name = text, *t, *save = NULL;
	struct alias a = { .line = line };
	struct mailbox mb;
	const char *rest;
	char buf[ADDR_MAX_PATH + 3];
	struct alias *nv;

	if (colon == NULL) {
		fprintf(err, "mailslot: %s:%u: expected \"name: target, ...\"\n", path, line);
		return 1;
	}
	*colon = '\0';
	while (*name == ' ' || *name == '\t')
		name++;
	for (char *e = colon; e > name && (e[-1] == ' ' || e[-1] == '\t'); )
		*--e = '\0';
	snprintf(buf, sizeof(buf), "<%.*s@x>", (int)(ADDR_MAX_PATH - 4), name);
	if (*name == '\0' || strpbrk(name, " \t@") != NULL ||
	    addr_parse(buf, ADDR_UTF8 | ADDR_MAILBOX, &mb, &rest) != ADDR_OK) {
		fprintf(err, "mailslot: %s:%u: \"%s\" is not a name an alias can have\n",
		    path, line, name);
		return 1;
	}
	lower(name);
	if ((a.name = strdup(name)) == NULL)
		return 1;
	for (t = strtok_r(colon + 1, ",", &save); t != NULL; t = strtok_r(NULL, ",", &save)) {
		char *e;

		while (*t == ' ' || *t == '\t')
			t++;
		e = t + strlen(t);
		while (e > t && (e[-1] == ' ' || e[-1] == '\t'))
			*--e = '\0';
		if (*t == '\0')
			continue;
		if (push(&a.members, &a.nmembers, t) == -1) {
			alias_free_one(&a);
			return 1;
		}
	}
	if (a.nmembers == 0) {
		fprintf(err, "mailslot: %s:%u: alias \"%s\" has no targets\n", path, line, name);
		alias_free_one(&a);
		return 1;
	}
	if ((nv = reallocarray(al->v, al->n + 1, sizeof(*nv))) == NULL) {
		alias_free_one(&a);
		return 1;
	}
	al->v = nv;
	al->v[al->n++] = a;
	return 0;
}

/* Append what `from` expands to onto `to`, without repeats. */
static int
merge(char ***v, size_t *n, char *const *from, size_t nfrom)
{
	for (size_t i = 0; i < nfrom; i++)
		if (!has(*v, *n, from[i]) && push(v, n, from[i]) == -1)
			return -1;
	return 0;
}

/*
 * Flatten one alias into mailboxes and remote addresses, finding loops.
 * Each alias is expanded once and its result reused wherever it is a
 * member again, so shared members cost no more than unshared ones; its
 * height (the deepest chain below it) bounds the nesting.
 */
static int
expand(struct aliases *al, struct alias *a, const struct alias *top,
    const char *const *doms, const char *path, FILE *err)
{
	if (a->mark == 2)
		return 0;
	if (a->mark == 1) {
		fprintf(err, "mailslot: %s:%u: alias loop through \"%s\"\n",
		    path, top->line, a->name);
		return 1;
	}
	a->mark = 1;
	for (size_t i = 0; i < a->nmembers; i++) {
		char local[ADDR_MAX_LOCAL + 1];
		struct alias *b;
		int k = target_kind(a->members[i], doms, local, sizeof(local));

		if (k == -1) {
			fprintf(err, "mailslot: %s:%u: \"%s\" is not an address\n",
			    path, a->line, a->members[i]);
			return 1;
		}
		if (k == 1) {
			if (merge(&a->remote, &a->nremote, &a->members[i], 1) == -1)
				return 1;
			continue;
		}
		/* A name that is its own alias's target is the mailbox (as sendmail has it). */
		if ((b = alias_find(al, local)) != NULL && b != a) {
			if (expand(al, b, top, doms, path, err) != 0)
				return 1;
			if (b->height + 1 > a->height)
				a->height = b->height + 1;
			if (a->height > ALIAS_MAX_DEPTH) {
				fprintf(err, "mailslot: %s:%u: aliases nested deeper than %d\n",
				    path, top->line, ALIAS_MAX_DEPTH);
				return 1;
			}
			if (merge(&a->local, &a->nlocal, b->local, b->nlocal) == -1 ||
			    merge(&a->remote, &a->nremote, b->remote, b->nremote) == -1)
				return 1;
		} else {
			char *l = local;

			if (merge(&a->local, &a->nlocal, &l, 1) == -1)
				return 1;
		}
	}
	a->mark = 2;
	return 0;
}

static int
aliases_load(struct aliases *al, const char *path, const char *const *doms, FILE *err)
{
	FILE *f;
	char *line = NULL, *entry = NULL;
	size_t cap = 0, elen = 0;
	ssize_t len;
	unsigned lineno = 0, eline = 0;
	int problems = 0;

	if ((f = fopen(path, "r")) == NULL) {
		fprintf(err, "mailslot: %s: %s\n", path, strerror(errno));
		return 1;
	}
	for (;;) {
		char *s;
		bool cont;

		len = getline(&line, &cap, f);
		if (len != -1) {
			lineno++;
			if (memchr(line, '\0', (size_t)len) != NULL) {
				fprintf(err, "mailslot: %s:%u: NUL byte in line\n", path, lineno);
				problems++;
				continue;
			}
			line[strcspn(line, "\r\n")] = '\0';
			s = line + strspn(line, " \t");
			if (*s == '#' || *s == '\0')
				continue;
			cont = s != line;
		} else
			cont = false;
		if (cont && entry != NULL) {		/* a continuation line */
			char *ne = realloc(entry, elen + strlen(s) + 2);

			if (ne == NULL) {
				problems++;
				break;
			}
			entry = ne;
			entry[elen++] = ',';
			strcpy(entry + elen, s);
			elen += strlen(s);
			continue;
		}
		if (entry != NULL) {
			problems += alias_entry(al, entry, eline, path, err);
			free(entry);
			entry = NULL;
		}
		if (len == -1)
			break;
		if (cont) {
			fprintf(err, "mailslot: %s:%u: continuation line with nothing to continue\n",
			    path, lineno);
			problems++;
			continue;
		}
		if ((entry = strdup(line)) == NULL) {
			problems++;
			break;
		}
		elen = strlen(entry);
		eline = lineno;
	}
	if (ferror(f)) {
		fprintf(err, "mailslot: %s: %s\n", path, strerror(errno));
		problems++;
	}
	free(entry);
	free(line);
	fclose(f);

	if (al->n > 0)
		qsort(al->v, al->n, sizeof(*al->v), alias_cmp);
	for (size_t i = 0; i + 1 < al->n; i++)
		if (strcmp(al->v[i].name, al->v[i + 1].name) == 0) {
			fprintf(err, "mailslot: %s:%u: alias \"%s\" defined again (first at line %u)\n",
			    path, al->v[i + 1].line > al->v[i].line ? al->v[i + 1].line : al->v[i].line,
			    al->v[i].name, al->v[i + 1].line > al->v[i].line ? al->v[i].line : al->v[i + 1].line);
			problems++;
		}
	for (size_t i = 0; i < al->n && problems == 0; i++)
		problems += expand(al, &al->v[i], &al->v[i], doms, path, err);
	return problems;
}

int
alias_check(const char *path, const char *const *doms, FILE *err)
{
	struct aliases al = { 0 };
	int problems = aliases_load(&al, path, doms, err);

	aliases_free(&al);
	return problems;
}

/* ---- the router ---------------------------------------------------------- */

struct router *
router_new(const struct config *c, FILE *err, int *problems)
{
	struct router *r = calloc(1, sizeof(*r));
	char *list, *d, *save = NULL;
	size_t n = 0;

	if (r == NULL) {
		(*problems)++;
		return NULL;
	}
	r->conf = c;
	if ((list = strdup(c->domains)) == NULL) {
		(*problems)++;
		return r;
	}
	for (d = strtok_r(list, ", \t", &save); d != NULL; d = strtok_r(NULL, ", \t", &save)) {
		if (!addr_domain_ok(d, strlen(d))) {
			fprintf(err, "mailslot: domains: \"%s\" is not a domain\n", d);
			(*problems)++;
			continue;
		}
		lower(d);
		if (push(&r->domains, &r->ndomains, d) == -1)
			(*problems)++;
	}
	free(list);

	/* Alias targets are local when their domain is ours: `domains`, or the host name. */
	n = r->ndomains > 0 ? r->ndomains : 1;
	if ((r->local_domains = calloc(n + 1, sizeof(char *))) == NULL) {
		(*problems)++;
		return r;
	}
	for (size_t i = 0; i < r->ndomains; i++)
		r->local_domains[i] = r->domains[i];
	if (r->ndomains == 0)
		r->local_domains[0] = c->hostname;

	if (c->aliases[0] != '\0') {
		struct aliases al = { 0 };

		*problems += aliases_load(&al, c->aliases, r->local_domains, err);
		r->aliases = al.v;
		r->naliases = al.n;
	}
	if (c->mailboxes[0] != '\0') {
		struct stat st;

		if (stat(c->mailboxes, &st) == -1) {
			fprintf(err, "mailslot: mailboxes: %s: %s\n", c->mailboxes, strerror(errno));
			(*problems)++;
		} else if (!S_ISDIR(st.st_mode)) {
			fprintf(err, "mailslot: mailboxes: %s: not a directory\n", c->mailboxes);
			(*problems)++;
		}
	}
	return r;
}

const char *
route_home_domain(const struct router *r)
{
	return r->local_domains != NULL ? r->local_domains[0] : r->conf->hostname;
}

static const struct alias *
lookup(const struct router *r, const char *name)
{
	struct aliases al = { r->aliases, r->naliases };

	return alias_find(&al, name);
}

const char *const *
route_list(const struct router *r, const char *name, size_t *n)
{
	char lname[ADDR_MAX_LOCAL + 1];
	const struct alias *a;

	strlcpy(lname, name, sizeof(lname));
	lower(lname);
	if ((a = lookup(r, lname)) == NULL)
		return NULL;
	*n = a->nmembers;
	return (const char *const *)a->members;
}

/*
 * The address the client reached, which an address literal must name:
 * getsockname() on the connection, which is right wherever the process
 * runs (a network namespace, systemd's PrivateNetwork=, a NAT), unlike
 * the interface list, which shows the namespace's and not the address
 * the client used.  Over a pipe, what a UCSPI launcher (tcpserver,
 * s6-tcpserver, s6-tlsserver) says in TCPLOCALIP; else none, and no
 * literal is local.
 */
void
route_local_address(struct router *r, int fd)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);
	const char *env;

	r->local_family = 0;
	if (getsockname(fd, (struct sockaddr *)&ss, &len) == 0) {
		if (ss.ss_family == AF_INET) {
			memcpy(r->local_addr, &((struct sockaddr_in *)&ss)->sin_addr, 4);
			r->local_family = AF_INET;
		} else if (ss.ss_family == AF_INET6) {
			const struct in6_addr *a = &((struct sockaddr_in6 *)&ss)->sin6_addr;

			/* An IPv4 client of a dual-stack socket reached an IPv4 address. */
			if (IN6_IS_ADDR_V4MAPPED(a)) {
				memcpy(r->local_addr, &a->s6_addr[12], 4);
				r->local_family = AF_INET;
			} else {
				memcpy(r->local_addr, a, 16);
				r->local_family = AF_INET6;
			}
		}
		return;		/* a socket of another kind (AF_UNIX): none */
	}
	if ((env = getenv("TCPLOCALIP")) == NULL)
		return;
	if (inet_pton(AF_INET, env, r->local_addr) == 1)
		r->local_family = AF_INET;
	else if (inet_pton(AF_INET6, env, r->local_addr) == 1)
		r->local_family = AF_INET6;
}

void
route_local_set(struct router *r, int family, const unsigned char *addr)
{
	static const unsigned char mapped[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };

	r->local_family = 0;
	if (family == AF_INET6 && memcmp(addr, mapped, 12) == 0) {
		memcpy(r->local_addr, addr + 12, 4);
		r->local_family = AF_INET;
	} else if (family == AF_INET || family == AF_INET6) {
		memcpy(r->local_addr, addr, family == AF_INET ? 4 : 16);
		r->local_family = family;
	}
}

/* "[a.b.c.d]" or "[IPv6:...]" (addr_parse checked it): the connection's own address? */
static bool
own_literal(const struct router *r, const char *lit)
{
	char buf[INET6_ADDRSTRLEN + 8];
	unsigned char want[sizeof(struct in6_addr)];
	bool v6;
	size_t n = strlen(lit);

	if (r->local_family == 0 || n < 3 || n - 2 >= sizeof(buf))
		return false;
	memcpy(buf, lit + 1, n - 2);
	buf[n - 2] = '\0';
	v6 = strncasecmp(buf, "IPv6:", 5) == 0;
	if (inet_pton(v6 ? AF_INET6 : AF_INET, v6 ? buf + 5 : buf, want) != 1)
		return false;
	if (v6)
		return r->local_family == AF_INET6 && memcmp(r->local_addr, want, 16) == 0;
	return r->local_family == AF_INET && memcmp(r->local_addr, want, 4) == 0;
}

static bool
accepted_domain(const struct router *r, const char *domain)
{
	if (r->ndomains == 0)
		return true;			/* `domains` unset: any */
	if (domain[0] == '[')
		return own_literal(r, domain);
	return has(r->domains, r->ndomains, domain);
}

int
login_ttys(const char *login, int (*fn)(const char *tty, void *), void *arg)
{
	struct utmpx *u;
	int r = 0;

	setutxent();
	while (r == 0 && (u = getutxent()) != NULL) {
		char line[sizeof(u->ut_line) + 6];

		if (u->ut_type != USER_PROCESS ||
		    strncmp(u->ut_user, login, sizeof(u->ut_user)) != 0)
			continue;
		snprintf(line, sizeof(line), "/dev/%.*s", (int)sizeof(u->ut_line), u->ut_line);
		if (strstr(line, "..") == NULL)
			r = fn(line, arg);
	}
	endutxent();
	return r;
}

static int
takes_messages(const char *tty, void *arg)
{
	struct stat st;

	(void)arg;
	return stat(tty, &st) == 0 && S_ISCHR(st.st_mode) && (st.st_mode & S_IWGRP);
}

/* A login with a terminal that takes messages (mesg y). */
static bool
logged_in(const char *login)
{
	return login_ttys(login, takes_messages, NULL) != 0;
}

static int
add_target(struct route *rt, enum tkind kind, const char *path, const char *root,
    const char *addr)
{
	struct target *nt = reallocarray(rt->t, rt->n + 1, sizeof(*nt));

	if (nt == NULL)
		return -1;
	rt->t = nt;
	nt = &rt->t[rt->n];
	memset(nt, 0, sizeof(*nt));
	nt->kind = kind;
	if ((path && (nt->path = strdup(path)) == NULL) ||
	    (root && (nt->root = strdup(root)) == NULL) ||
	    (addr && (nt->addr = strdup(addr)) == NULL)) {
		free(nt->path);
		free(nt->root);
		return -1;
	}
	rt->n++;
	return 0;
}

/* Is `dir` a Maildir mailslot can write into now? */
static bool
usable(const char *dir)
{
	char sub[PATH_MAX];

	for (int i = 0; i < 2; i++) {
		/* The trailing slash makes anything but a directory ENOTDIR. */
		if ((size_t)snprintf(sub, sizeof(sub), "%s/%s/", dir,
		    i == 0 ? "tmp" : "new") >= sizeof(sub) ||
		    access(sub, W_OK | X_OK) == -1)
			return false;
	}
	return true;
}

static bool
mailbox_exists(const struct router *r, const char *name)
{
	char dir[PATH_MAX];
	struct stat st;

	if (r->conf->mailboxes[0] == '\0')
		return false;
	return (size_t)snprintf(dir, sizeof(dir), "%s/%s", r->conf->mailboxes, name) <
	    sizeof(dir) && stat(dir, &st) == 0;
}

/* A mailbox name (checked, lower-case) and an optional folder tag. */
static enum route_status
mailbox_target(const struct router *r, const char *name, const char *tag,
    struct route *rt)
{
	const struct config *c = r->conf;
	char dir[PATH_MAX], folder[PATH_MAX];
	struct stat st;

	if (c->mailboxes[0] == '\0')
		return add_target(rt, TK_MAILDIR, c->maildir, c->maildir, NULL) == -1 ?
		    RT_LOCAL_ERROR : RT_LOCAL;
	if ((size_t)snprintf(dir, sizeof(dir), "%s/%s", c->mailboxes, name) >= sizeof(dir))
		return RT_LOCAL_ERROR;
	if (stat(dir, &st) == -1) {
		if (errno != ENOENT && errno != ENOTDIR) {
			char q[LOG_QUOTED(256)];

			log_msg(LOG_ERR, "event=error op=stat path=%s error=\"%s\"",
			    log_quote(q, sizeof(q), dir, strlen(dir)), strerror(errno));
			return RT_UNUSABLE;
		}
		/* <postmaster> is always accepted (RFC 5321 4.5.1): the catch-all takes it. */
		if (strcmp(name, "postmaster") == 0)
			return add_target(rt, TK_MAILDIR, c->maildir, c->maildir, NULL) == -1 ?
			    RT_LOCAL_ERROR : RT_LOCAL;
		return RT_NO_MAILBOX;
	}
	if (!S_ISDIR(st.st_mode) || !usable(dir)) {
		char q[LOG_QUOTED(256)];

		log_msg(LOG_WARNING, "event=mailbox-unusable path=%s",
		    log_quote(q, sizeof(q), dir, strlen(dir)));
		return RT_UNUSABLE;
	}
	/* user+tag: the Maildir++ folder ".tag", when it is there already. */
	if (tag != NULL && *tag != '\0' && *tag != '.' &&
	    (size_t)snprintf(folder, sizeof(folder), "%s/.%s", dir, tag) < sizeof(folder) &&
	    stat(folder, &st) == 0 && S_ISDIR(st.st_mode) && usable(folder))
		return add_target(rt, TK_MAILDIR, folder, dir, NULL) == -1 ?
		    RT_LOCAL_ERROR : RT_LOCAL;
	return add_target(rt, TK_MAILDIR, dir, dir, NULL) == -1 ? RT_LOCAL_ERROR : RT_LOCAL;
}

/* Mailboxes of a name: its alias's, or its own. */
static enum route_status
mailboxes_of(const struct router *r, const char *lname, const char *base,
    const char *tag, struct route *rt)
{
	const struct alias *a = lookup(r, lname);

	if (a == NULL && base != lname)
		a = lookup(r, base);
	if (a == NULL)
		return mailbox_target(r, base, tag, rt);
	for (size_t i = 0; i < a->nremote; i++) {
		if (rt->remote[0] == '\0')
			strlcpy(rt->remote, a->remote[i], sizeof(rt->remote));
		if (add_target(rt, TK_FORWARD, NULL, NULL, a->remote[i]) == -1)
			return RT_LOCAL_ERROR;
	}
	for (size_t i = 0; i < a->nlocal; i++) {
		enum route_status st = mailbox_target(r, a->local[i], NULL, rt);

		if (st != RT_LOCAL)
			return st;
	}
	return RT_LOCAL;
}

void
route_rcpt(const struct router *r, const struct mailbox *mb, enum rmode mode,
    uint64_t size, struct route *rt)
{
	const struct config *c = r->conf;
	char lname[ADDR_MAX_LOCAL + 1], base[ADDR_MAX_LOCAL + 1];
	const char *tag = NULL, *delim = c->recipient_delimiter;
	enum route_status st = RT_LOCAL;
	bool forwards = false, locals = false;
	size_t first_fallback = SIZE_MAX;

	memset(rt, 0, sizeof(*rt));
	if (!mb->bare && !accepted_domain(r, addr_domain(mb))) {
		rt->st = RT_FOREIGN;
		return;
	}
	strlcpy(lname, mb->local, sizeof(lname));
	lower(lname);
	strlcpy(base, lname, sizeof(base));
	/* user+tag, unless "user+tag" is itself an alias or a mailbox. */
	if (delim[0] != '\0') {
		char *p = strstr(base, delim);

		if (p != NULL && p != base && lookup(r, lname) == NULL &&
		    !mailbox_exists(r, lname)) {
			*p = '\0';
			tag = lname + (p - base) + strlen(delim);
		}
	}

	rt->mode = mode;
	if (mode != RM_MAILBOX && c->terminal_delivery && logged_in(base)) {
		if (add_target(rt, TK_TERMINAL, NULL, NULL, base) == -1)
			st = RT_LOCAL_ERROR;
		/*
		 * SOML (RFC 821 4.1.1): the terminal, or the mailbox when the
		 * terminal does not take the whole message.  Which one is known
		 * only after the data, so the mailbox is judged now, as for MAIL.
		 */
		if (mode == RM_EITHER)
			first_fallback = rt->n;
	} else if (mode == RM_TERMINAL) {
		rt->st = RT_NOT_LOGGED_IN;
		return;
	}
	if (st == RT_LOCAL && mode != RM_TERMINAL)
		st = mailboxes_of(r, lname, tag != NULL ? base : lname, tag, rt);
	for (size_t i = first_fallback; i < rt->n; i++)
		rt->t[i].fallback = true;

	for (size_t i = 0; i < rt->n && st == RT_LOCAL; i++) {
		struct target *t = &rt->t[i];

		if (t->kind == TK_FORWARD) {
			forwards = true;
			continue;
		}
		locals = true;
		if (t->kind != TK_MAILDIR)
			continue;
		switch (quota_check(t->root, c->quota, size)) {
		case QUOTA_OK:
			break;
		case QUOTA_OVER:
			st = RT_OVER_QUOTA;
			continue;
		case QUOTA_BROKEN:
			st = RT_LOCAL_ERROR;
			continue;
		}
		if (!maildir_room(t->path, c->min_free_space, size))
			st = RT_NO_SPACE;
	}
	if (st == RT_LOCAL && forwards)
		st = c->forward_command[0] == '\0' ? RT_NOT_LOCAL :
		    locals ? RT_LOCAL : RT_FORWARD;
	rt->st = st;
}

void
route_free(struct route *rt)
{
	for (size_t i = 0; i < rt->n; i++) {
		free(rt->t[i].path);
		free(rt->t[i].root);
		free(rt->t[i].addr);
	}
	free(rt->t);
	rt->t = NULL;
	rt->n = 0;
}
