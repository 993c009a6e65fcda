/*
 * fuzz_alias: the alias file reader (src/route.c, through alias_check).
 *
 * Input: one octet that picks the local domains (example.org alone, or
 * example.org and b\xc3\xbccher.example), then the file, handed over
 * through a memfd under its /proc/self/fd name.  Every entry, continuation
 * line, target kind and the expansion (nesting, loops) is exercised; the
 * reader must not crash, leak, or take long (libFuzzer's -timeout).
 */
#include <sys/mman.h>

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "route.h"

static FILE *devnull;

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const char *const one[] = { "example.org", NULL };
	static const char *const two[] = { "example.org", "b\xc3\xbc" "cher.example", NULL };
	char path[64];
	int fd, problems;

	if (devnull == NULL && (devnull = fopen("/dev/null", "w")) == NULL)
		abort();
	if (size < 1)
		return 0;
	if ((fd = memfd_create("fuzz_alias", MFD_CLOEXEC)) == -1)
		abort();
	if (size > 1 && write(fd, data + 1, size - 1) != (ssize_t)(size - 1))
		abort();
	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	problems = alias_check(path, data[0] & 1 ? two : one, devnull);
	if (problems < 0)
		abort();
	close(fd);
	return 0;
}
