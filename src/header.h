/*
 * header.h: one field of a stored message's own header section, for the
 * log (the Message-ID an operator traces a message by).
 */
#ifndef MAILSLOT_HEADER_H
#define MAILSLOT_HEADER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* No more of a message is read to find a field: the header section is bounded. */
#define HEADER_SCAN_MAX	(64 * 1024)

/*
 * The value of the first field called `name` (without the colon, lower
 * case) in the header section that starts at `off` in `fd` and runs for at
 * most `len` octets (LF or CRLF lines, as stored), unfolded and trimmed,
 * cut to `size` - 1 octets, raw: the caller escapes it.  False when there
 * is none in the first HEADER_SCAN_MAX octets.
 */
bool header_find(int fd, off_t off, uint64_t len, const char *name, char *out,
    size_t size);

#endif
