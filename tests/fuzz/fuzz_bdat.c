/*
 * fuzz_bdat: addr_bdat, the framing of "BDAT <size> [LAST]".  Checked
 * against what RFC 3030 2 says the argument is: digits (a 64-bit number),
 * then nothing, or one or more spaces and LAST in any case.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "addr.h"

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char arg[128], *p;
	uint64_t n, want = 0;
	bool last, ok, fits = true, want_ok, want_last = false;
	size_t i = 0;

	if (size >= sizeof(arg))
		return 0;
	memcpy(arg, data, size);
	arg[size] = '\0';

	/* The reference: written the plain way. */
	while (arg[i] >= '0' && arg[i] <= '9') {
		unsigned d = (unsigned)(arg[i] - '0');

		if (want > (UINT64_MAX - d) / 10)
			fits = false;
		else
			want = want * 10 + d;
		i++;
	}
	if (i == 0 || !fits) {
		if (addr_bdat(arg, &n, &last, &ok))
			abort();	/* no 64-bit size, yet accepted */
		return 0;
	}
	p = arg + i;
	want_ok = *p == '\0';
	if (*p == ' ') {
		p += strspn(p, " ");
		want_last = strcasecmp(p, "LAST") == 0;
		want_ok = want_last;
	}
	if (!addr_bdat(arg, &n, &last, &ok) || n != want || last != want_last ||
	    ok != want_ok)
		abort();
	return 0;
}
