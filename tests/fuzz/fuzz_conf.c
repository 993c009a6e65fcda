/*
 * fuzz_conf: the configuration reader (src/conf.c).
 *
 * Input: one octet that says how the rest is used: as a configuration file
 * (through a memfd, read by conf_load_file under its /proc/self/fd name),
 * or as -o overrides, one per line.  Whatever was accepted must lie within
 * the bounds of the key table, and conf_dump's output must read back
 * without a problem and give the same dump again.
 */
#include <sys/mman.h>

#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "addr.h"
#include "conf.h"

static void
fail(const char *what)
{
	fprintf(stderr, "fuzz_conf: %s\n", what);
	abort();
}

static FILE *devnull;

/*
 * struct config has no destructor (its strings live as long as the
 * process), and its string keys grow with the table: leaks are not looked
 * for here.  Use after free and double free, the risks of key_set's
 * replace-a-string path, still are.  conf_free() frees the string keys
 * known when this was written, so that memory stays bounded over a long
 * run; a key added since leaks a few octets per input, no more.
 */
const char *__asan_default_options(void);
const char *
__asan_default_options(void)
{
	return "detect_leaks=0";
}

static void
conf_free(struct config *c)
{
	char **s[] = { &c->hostname, &c->maildir, &c->mailboxes, &c->domains,
	    &c->aliases, &c->forward_command, &c->quota, &c->recipient_delimiter,
	    &c->user, &c->tls_certificate, &c->tls_key, &c->tls_protocols,
	    &c->tls_ciphers };

	for (size_t i = 0; i < sizeof(s) / sizeof(s[0]); i++) {
		free(*s[i]);
		*s[i] = NULL;
	}
}

/* Load `n` octets as a file; returns the problem count. */
static int
load(struct config *c, const void *p, size_t n, FILE *err)
{
	char path[64];
	int fd = memfd_create("fuzz_conf", MFD_CLOEXEC), problems;

	if (fd == -1)
		fail("memfd_create");
	if (n > 0 && write(fd, p, n) != (ssize_t)n)
		fail("write");
	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	problems = conf_load_file(c, path, true, err);
	close(fd);
	return problems;
}

static char *
dump(const struct config *c, size_t *n)
{
	char *text = NULL;
	FILE *f = open_memstream(&text, n);

	if (f == NULL)
		fail("open_memstream");
	conf_dump(c, f);
	fclose(f);
	return text;
}

static void
check_bounds(const struct config *c)
{
	if (c->hostname == NULL || c->maildir == NULL)
		fail("a string key is NULL");
	if (c->hostname[0] != '\0' && !addr_domain_ok(c->hostname, strlen(c->hostname)))
		fail("hostname is not a domain");
	if (c->max_message_size < 1 || c->max_message_size > LLONG_MAX)
		fail("max_message_size out of bounds");
	if (c->min_free_space > LLONG_MAX)
		fail("min_free_space out of bounds");
	if (c->max_recipients < 1 || c->max_recipients > 100000)
		fail("max_recipients out of bounds");
	if (c->command_timeout < 1 || c->command_timeout > 86400 ||
	    c->data_timeout < 1 || c->data_timeout > 86400)
		fail("a timeout out of bounds");
	if (c->max_errors < 1 || c->max_errors > 1000000)
		fail("max_errors out of bounds");
	if (c->line_endings < LE_AUTO || c->line_endings > LE_LF)
		fail("line_endings out of bounds");
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct config c, again;
	char *d1, *d2;
	size_t n1, n2;

	if (devnull == NULL && (devnull = fopen("/dev/null", "w")) == NULL)
		fail("/dev/null");
	if (size < 1)
		return 0;
	conf_defaults(&c);
	if (data[0] & 1) {
		(void)load(&c, data + 1, size - 1, devnull);
	} else {
		const char *p = (const char *)data + 1, *e = (const char *)data + size;

		while (p < e) {
			const char *lf = memchr(p, '\n', (size_t)(e - p));
			size_t len = (lf ? lf : e) - p;
			char *kv = malloc(len + 1);

			memcpy(kv, p, len);
			kv[len] = '\0';
			(void)conf_override(&c, kv, devnull);
			free(kv);
			p += len + 1;
		}
	}
	check_bounds(&c);

	d1 = dump(&c, &n1);
	conf_defaults(&again);
	if (load(&again, d1, n1, devnull) != 0) {
		fprintf(stderr, "%.*s", (int)n1, d1);
		fail("conf_dump output does not read back");
	}
	d2 = dump(&again, &n2);
	if (n1 != n2 || memcmp(d1, d2, n1) != 0)
		fail("conf_dump output reads back differently");
	free(d1);
	free(d2);
	conf_free(&c);
	conf_free(&again);
	return 0;
}
