/*
 * conf.c: every configuration key lives in one table: its name, its type,
 * its default, its bounds.  The file reader and -o share one setter, so a
 * value means the same wherever it comes from, and every problem names the
 * key and where it was written (file:line, or "-o").
 */
#include <sys/stat.h>
#include <sys/types.h>

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <pwd.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "addr.h"
#include "conf.h"

enum type { T_STRING, T_HOST, T_BYTES, T_INT, T_BOOL, T_ENUM };

struct key {
	const char	*name;
	enum type	 type;
	size_t		 off;		/* offset in struct config */
	const char	*def;		/* default, as it would be written */
	long long	 min, max;	/* T_INT, T_BYTES */
	const char	*const *choices; /* T_ENUM, index = value */
};

static const char *const line_ending_names[] = { "auto", "crlf", "strict", "lf", NULL };
static const char *const milter_action_names[] = { "tempfail", "accept", "reject", NULL };
static const char *const protocol_names[] = { "smtp", "lmtp", NULL };

#define K(n, t) #n, t, offsetof(struct config, n)
static const struct key keys[] = {
	{ K(hostname, T_HOST),		"",	0, 0, NULL },	/* gethostname() */
	{ K(maildir, T_STRING),		"~/Maildir", 0, 0, NULL },
	{ K(max_message_size, T_BYTES),	"33554432", 1, LLONG_MAX, NULL },
	{ K(min_free_space, T_BYTES),	"16777216", 0, LLONG_MAX, NULL },
	{ K(max_recipients, T_INT),	"100",	1, 100000, NULL },
	{ K(command_timeout, T_INT),	"300",	1, 86400, NULL },
	{ K(data_timeout, T_INT),	"600",	1, 86400, NULL },
	{ K(max_errors, T_INT),		"10",	1, 1000000, NULL },
	{ K(vrfy, T_BOOL),		"yes",	0, 0, NULL },
	{ K(expn, T_BOOL),		"yes",	0, 0, NULL },
	{ K(terminal_delivery, T_BOOL),	"no",	0, 0, NULL },
	{ K(accept_mail, T_BOOL),	"yes",	0, 0, NULL },
	{ K(line_endings, T_ENUM),	"auto",	0, 0, line_ending_names },
	{ K(mailboxes, T_STRING),	"",	0, 0, NULL },
	{ K(domains, T_STRING),		"",	0, 0, NULL },
	{ K(aliases, T_STRING),		"",	0, 0, NULL },
	{ K(forward_command, T_STRING),	"",	0, 0, NULL },
	{ K(quota, T_STRING),		"",	0, 0, NULL },
	{ K(recipient_delimiter, T_STRING), "+", 0, 0, NULL },
	{ K(user, T_STRING),		"",	0, 0, NULL },
	{ K(tls_certificate, T_STRING),	"",	0, 0, NULL },
	{ K(tls_key, T_STRING),		"",	0, 0, NULL },
	{ K(tls_protocols, T_STRING),	"tlsv1.2,tlsv1.3", 0, 0, NULL },
	{ K(tls_ciphers, T_STRING),	"secure", 0, 0, NULL },
	{ K(tls_required, T_BOOL),	"no",	0, 0, NULL },
	{ K(milters, T_STRING),		"",	0, 0, NULL },
	{ K(milter_timeout, T_INT),	"30",	1, 3600, NULL },
	{ K(milter_default_action, T_ENUM), "tempfail", 0, 0, milter_action_names },
	{ K(filter_command, T_STRING),	"",	0, 0, NULL },
	{ K(filter_timeout, T_INT),	"60",	1, 3600, NULL },
	{ K(proxy_from, T_STRING),	"",	0, 0, NULL },
	{ K(proxy_timeout, T_INT),	"5",	1, 3600, NULL },
	{ K(protocol, T_ENUM),		"smtp",	0, 0, protocol_names },
};
#undef K

#define NKEYS (sizeof(keys) / sizeof(keys[0]))

static const struct key *
key_find(const char *name, size_t len)
{
	for (size_t i = 0; i < NKEYS; i++)
		if (strlen(keys[i].name) == len &&
		    strncmp(keys[i].name, name, len) == 0)
			return &keys[i];
	return NULL;
}

/* "32M", "16k", "1G" or plain octets; 1k = 1024. */
static int
parse_bytes(const char *v, long long min, long long max, long long *out)
{
	char *end;
	unsigned long long n, mul = 1;

	if (!isdigit((unsigned char)*v))
		return -1;
	errno = 0;
	n = strtoull(v, &end, 10);
	if (errno != 0)
		return -1;
	switch (*end) {
	case '\0':			break;
	case 'k': case 'K':		mul = 1ULL << 10; end++; break;
	case 'm': case 'M':		mul = 1ULL << 20; end++; break;
	case 'g': case 'G':		mul = 1ULL << 30; end++; break;
	default:			return -1;
	}
	if (*end != '\0' || n > (unsigned long long)max / mul)
		return -1;
	n *= mul;
	if (n < (unsigned long long)min)
		return -1;
	*out = (long long)n;
	return 0;
}

static int
parse_bool(const char *v, bool *out)
{
	static const char *const yes[] = { "yes", "true", "on", "1", NULL };
	static const char *const no[] = { "no", "false", "off", "0", NULL };

	for (int i = 0; yes[i] != NULL; i++)
		if (strcasecmp(v, yes[i]) == 0)
			return *out = true, 0;
	for (int i = 0; no[i] != NULL; i++)
		if (strcasecmp(v, no[i]) == 0)
			return *out = false, 0;
	return -1;
}

/* Set one key; on a bad value, say why in `why` and return -1. */
static int
key_set(struct config *c, const struct key *k, const char *v, const char **why)
{
	void *p = (char *)c + k->off;
	long long n;
	const char *errstr;

	switch (k->type) {
	case T_HOST:
		if (*v != '\0' && !addr_domain_ok(v, strlen(v))) {
			*why = "not a valid domain name";
			return -1;
		}
		/* FALLTHROUGH */
	case T_STRING: {
		char *s = strdup(v);
		if (s == NULL) {
			*why = strerror(errno);
			return -1;
		}
		free(*(char **)p);
		*(char **)p = s;
		return 0;
	}
	case T_BYTES:
		if (parse_bytes(v, k->min, k->max, &n) == -1) {
			*why = "not a size in octets (a number, optionally with k, M or G)";
			return -1;
		}
		*(uint64_t *)p = (uint64_t)n;
		return 0;
	case T_INT:
		n = strtonum(v, k->min, k->max, &errstr);
		if (errstr != NULL) {
			*why = errstr;
			return -1;
		}
		*(long long *)p = n;
		return 0;
	case T_BOOL:
		if (parse_bool(v, (bool *)p) == -1) {
			*why = "expected yes or no";
			return -1;
		}
		return 0;
	case T_ENUM:
		for (int i = 0; k->choices[i] != NULL; i++)
			if (strcmp(v, k->choices[i]) == 0) {
				*(int *)p = i;
				return 0;
			}
		*why = "not one of the allowed values";
		return -1;
	}
	*why = "internal error";
	return -1;
}

void
conf_defaults(struct config *c)
{
	const char *why;

	memset(c, 0, sizeof(*c));
	for (size_t i = 0; i < NKEYS; i++)
		if (key_set(c, &keys[i], keys[i].def, &why) == -1)
			abort();	/* a default that fails its own check */
}

static char *
trim(char *s)
{
	char *e;

	while (*s == ' ' || *s == '\t')
		s++;
	e = s + strlen(s);
	while (e > s && isspace((unsigned char)e[-1]))
		*--e = '\0';
	return s;
}

/* One "key = value" (or "key=value"); `where` names it in messages. */
static int
assign(struct config *c, char *line, const char *where, FILE *err)
{
	char *eq = strchr(line, '=');
	char *name, *value;
	const struct key *k;
	const char *why;

	if (eq == NULL) {
		fprintf(err, "mailslot: %s: expected \"key = value\"\n", where);
		return 1;
	}
	*eq = '\0';
	name = trim(line);
	value = trim(eq + 1);
	if ((k = key_find(name, strlen(name))) == NULL) {
		fprintf(err, "mailslot: %s: unknown key \"%s\"\n", where, name);
		return 1;
	}
	if (key_set(c, k, value, &why) == -1) {
		fprintf(err, "mailslot: %s: %s: bad value \"%s\": %s\n",
		    where, k->name, value, why);
		return 1;
	}
	return 0;
}

int
conf_load_file(struct config *c, const char *path, bool must_exist, FILE *err)
{
	FILE *f;
	char *line = NULL, where[PATH_MAX + 32];
	size_t cap = 0;
	ssize_t len;
	int problems = 0;
	unsigned lineno = 0;

	if ((f = fopen(path, "r")) == NULL) {
		if (errno == ENOENT && !must_exist)
			return 0;
		fprintf(err, "mailslot: %s: %s\n", path, strerror(errno));
		return 1;
	}
	while ((len = getline(&line, &cap, f)) != -1) {
		char *s;

		lineno++;
		snprintf(where, sizeof(where), "%s:%u", path, lineno);
		if (memchr(line, '\0', (size_t)len) != NULL) {
			fprintf(err, "mailslot: %s: NUL byte in line\n", where);
			problems++;
			continue;
		}
		s = trim(line);
		if (*s == '\0' || *s == '#')
			continue;
		problems += assign(c, s, where, err);
	}
	if (ferror(f)) {
		fprintf(err, "mailslot: %s: %s\n", path, strerror(errno));
		problems++;
	}
	free(line);
	fclose(f);
	return problems;
}

int
conf_override(struct config *c, const char *kv, FILE *err)
{
	char *copy = strdup(kv);
	int problems;

	if (copy == NULL) {
		fprintf(err, "mailslot: %s\n", strerror(errno));
		return 1;
	}
	problems = assign(c, copy, "-o", err);
	free(copy);
	return problems;
}

/*
 * systemd's LoadCredential= puts the pair in $CREDENTIALS_DIRECTORY, so the
 * key need never be readable by the mailslot account: when tls.crt and
 * tls.key are there and no pair is configured, they are used.
 */
static int
tls_paths(struct config *c, FILE *err)
{
	const char *dir = getenv("CREDENTIALS_DIRECTORY");

	if (c->tls_certificate[0] == '\0' && c->tls_key[0] == '\0' && dir != NULL) {
		char *crt, *key;

		if (asprintf(&crt, "%s/tls.crt", dir) == -1)
			return 1;
		if (asprintf(&key, "%s/tls.key", dir) == -1) {
			free(crt);
			return 1;
		}
		if (access(crt, R_OK) == 0 && access(key, R_OK) == 0) {
			free(c->tls_certificate);
			free(c->tls_key);
			c->tls_certificate = crt;
			c->tls_key = key;
		} else {
			free(crt);
			free(key);
		}
	}
	if ((c->tls_certificate[0] == '\0') != (c->tls_key[0] == '\0')) {
		fprintf(err, "mailslot: tls_certificate and tls_key go together\n");
		return 1;
	}
	return 0;
}

/*
 * A program mailslot runs (forward_command) is exec'ed without a shell and
 * without a PATH search: its first word must name an executable file.
 */
int
conf_program_ok(const char *key, const char *cmd, FILE *err)
{
	char prog[PATH_MAX];
	size_t n;
	struct stat st;

	cmd += strspn(cmd, " \t");
	if ((n = strcspn(cmd, " \t")) == 0)
		return 0;		/* unset */
	if (n >= sizeof(prog)) {
		fprintf(err, "mailslot: %s: the program's path is too long\n", key);
		return 1;
	}
	memcpy(prog, cmd, n);
	prog[n] = '\0';
	if (prog[0] != '/') {
		fprintf(err, "mailslot: %s: \"%s\" is not an absolute path "
		    "(it runs without a shell or a PATH search)\n", key, prog);
		return 1;
	}
	if (stat(prog, &st) == -1) {
		fprintf(err, "mailslot: %s: %s: %s\n", key, prog, strerror(errno));
		return 1;
	}
	if (!S_ISREG(st.st_mode) || access(prog, X_OK) == -1) {
		fprintf(err, "mailslot: %s: %s: not an executable file\n", key, prog);
		return 1;
	}
	return 0;
}

/*
 * For -t: the catch-all Maildir is created when missing, at the first
 * connection, so what -t can say is whether that will work: the Maildir,
 * or where it would be created, must be a directory this process can
 * write (main runs this as `user` when started as root).  Not used with
 * `mailboxes`, whose directory conf_finish's caller checks.
 */
int
conf_check_maildir(const struct config *c, FILE *err)
{
	static const char *const sub[] = { "tmp", "new", "cur" };
	char path[PATH_MAX], *slash;
	const char *why = NULL;
	struct stat st;

	if (c->mailboxes[0] != '\0')
		return 0;
	if (stat(c->maildir, &st) == 0) {
		if (!S_ISDIR(st.st_mode)) {
			fprintf(err, "mailslot: maildir: %s: not a directory\n", c->maildir);
			return 1;
		}
		/* Each of tmp, new and cur writable, or creatable. */
		for (size_t i = 0; i < sizeof(sub) / sizeof(sub[0]); i++) {
			snprintf(path, sizeof(path), "%s/%s", c->maildir, sub[i]);
			if (stat(path, &st) == -1)
				strlcpy(path, c->maildir, sizeof(path));
			if (access(path, W_OK | X_OK) == -1) {
				fprintf(err, "mailslot: maildir: %s: %s\n", path, strerror(errno));
				return 1;
			}
		}
		return 0;
	}
	if (errno != ENOENT) {
		fprintf(err, "mailslot: maildir: %s: %s\n", c->maildir, strerror(errno));
		return 1;
	}
	/* Missing: created in its parent, which must be there and writable. */
	strlcpy(path, c->maildir, sizeof(path));
	while ((slash = strrchr(path, '/')) != NULL && slash[1] == '\0' && slash > path)
		*slash = '\0';		/* "dir/" is "dir" */
	if ((slash = strrchr(path, '/')) == NULL)
		strlcpy(path, ".", sizeof(path));
	else if (slash == path)
		path[1] = '\0';	/* "/Maildir" lives in "/" */
	else
		*slash = '\0';
	if (stat(path, &st) == -1)
		why = strerror(errno);
	else if (!S_ISDIR(st.st_mode))
		why = "not a directory";
	else if (access(path, W_OK | X_OK) == -1)
		why = strerror(errno);
	if (why != NULL) {
		fprintf(err, "mailslot: maildir: %s is missing and cannot be created "
		    "in %s: %s\n", c->maildir, path, why);
		return 1;
	}
	return 0;
}

int
conf_finish(struct config *c, FILE *err)
{
	int problems = 0;

	if (c->hostname[0] == '\0') {
		char host[256];

		if (gethostname(host, sizeof(host)) == -1 ||
		    !addr_domain_ok(host, strnlen(host, sizeof(host)))) {
			fprintf(err, "mailslot: hostname: the system's host name "
			    "is not a valid domain; set hostname\n");
			problems++;
		} else {
			free(c->hostname);
			if ((c->hostname = strdup(host)) == NULL)
				problems++;
		}
	}
	if (strncmp(c->maildir, "~/", 2) == 0) {
		const char *home = getenv("HOME");
		struct passwd *pw;
		char *p;

		/* Started as root with a `user`, "~" is that user's home. */
		if (c->user[0] != '\0' && geteuid() == 0)
			home = (pw = getpwnam(c->user)) != NULL ? pw->pw_dir : NULL;
		else if (home == NULL || *home != '/')
			home = (pw = getpwuid(getuid())) != NULL ? pw->pw_dir : NULL;
		if (home == NULL) {
			fprintf(err, "mailslot: maildir: no home directory for ~\n");
			return problems + 1;
		}
		if (asprintf(&p, "%s/%s", home, c->maildir + 2) == -1)
			return problems + 1;
		free(c->maildir);
		c->maildir = p;
	}
	if (c->maildir[0] == '\0') {
		fprintf(err, "mailslot: maildir: empty path\n");
		problems++;
	}
	problems += tls_paths(c, err);
	/* Without a certificate STARTTLS is never offered, so no MAIL could succeed. */
#ifdef MAILSLOT_TLS
	if (c->tls_required && c->tls_certificate[0] == '\0') {
		fprintf(err, "mailslot: tls_required: yes, but no tls_certificate and tls_key: "
		    "STARTTLS would never be offered, and every MAIL would get 530\n");
		problems++;
	}
#else
	if (c->tls_required) {
		fprintf(err, "mailslot: tls_required: yes, but mailslot was built without TLS\n");
		problems++;
	}
#endif
	if (c->user[0] != '\0' && getpwnam(c->user) == NULL) {
		fprintf(err, "mailslot: user: no account \"%s\"\n", c->user);
		problems++;
	}
	return problems;
}

void
conf_list_keys(FILE *out)
{
	size_t col = 0;

	for (size_t i = 0; i < NKEYS; i++) {
		size_t n = strlen(keys[i].name) + 1;	/* and "," or "." */

		if (col == 0 || col + 1 + n > 76) {
			fputs(col == 0 ? "  " : "\n  ", out);
			col = 2;
		} else {
			fputc(' ', out);
			col++;
		}
		fprintf(out, "%s%c", keys[i].name, i + 1 < NKEYS ? ',' : '.');
		col += n;
	}
	fputc('\n', out);
}

void
conf_dump(const struct config *c, FILE *out)
{
	for (size_t i = 0; i < NKEYS; i++) {
		const struct key *k = &keys[i];
		const void *p = (const char *)c + k->off;

		fprintf(out, "%s = ", k->name);
		switch (k->type) {
		case T_STRING:
		case T_HOST:
			fprintf(out, "%s\n", *(char *const *)p);
			break;
		case T_BYTES:
			fprintf(out, "%llu\n", (unsigned long long)*(const uint64_t *)p);
			break;
		case T_INT:
			fprintf(out, "%lld\n", *(const long long *)p);
			break;
		case T_BOOL:
			fprintf(out, "%s\n", *(const bool *)p ? "yes" : "no");
			break;
		case T_ENUM:
			fprintf(out, "%s\n", k->choices[*(const int *)p]);
			break;
		}
	}
}
