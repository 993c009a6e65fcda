/*
 * fuzz_milter: the parser of what a milter sends (src/milter.c, through
 * milter_parse_packets): the negotiation's answer with its macro lists,
 * a step's verdict, the end of body's changes and reply codes; then the
 * changes kept applied by edit_message (src/edit.c) to a small message
 * whose Received field sits below (data[0] >> 6) of its fields.
 *
 * Input: one octet that picks the stage (negotiation, SMTP step, end of
 * body) and whether the actions and SMFIP_HDR_LEADSPC and SMFIP_SKIP were
 * negotiated, then the packets as they would come off the socket.  The
 * parser must not crash, leak or read outside them; every change it keeps
 * must pass the checks the delivery applies (edit_name_ok, edit_value_ok).
 * The edited message's header section must be fields and their folds
 * only: no line of white space alone, no line that is neither.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "edit.h"
#include "maildir.h"
#include "milter.h"

static const char message[] = "A: 1\nB: two\n\tfolded\nC: 3\n\nbody\n";

/* The header section of fd's file: fields and folds, to the empty line. */
static void
check_header(int fd, uint64_t len)
{
	char *b = malloc(len + 1);
	size_t at = 0;

	if (b == NULL || pread(fd, b, len, 0) != (ssize_t)len)
		abort();
	b[len] = '\0';
	while (at < len) {
		char *lf = memchr(b + at, '\n', len - at);
		size_t n = lf != NULL ? (size_t)(lf - (b + at)) : len - at;
		const char *l = b + at;

		if (n == 0)
			break;
		if (l[0] == ' ' || l[0] == '\t') {
			if (strspn(l, " \t") >= n)
				abort();	/* white space alone */
		} else if (memchr(l, ':', n) == NULL)
			abort();		/* not a field */
		at += n + 1;
	}
	free(b);
}

static void
apply(const struct edits *ed, unsigned nabove)
{
	static char inbuf[4096], outbuf[4096];
	struct msg in, out;
	struct rcvd_at at = { .nabove = nabove }, oat;
	char why[256];

	if (msg_open_spool(&in, inbuf, sizeof(inbuf)) == -1)
		return;
	if (msg_open_spool(&out, outbuf, sizeof(outbuf)) == -1) {
		msg_abort(&in);
		return;
	}
	msg_put(&in, message, sizeof(message) - 1);
	if (msg_flush(&in) == 0 &&
	    edit_message(&out, &in, &at, ed, false, &oat, why, sizeof(why)) == 0)
		check_header(out.fd, out.octets);
	msg_abort(&in);
	msg_abort(&out);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct edits ed;
	struct vreply vr;
	uint32_t actions, proto;
	int r;

	if (size < 1)
		return 0;
	actions = data[0] & 0x08 ? 0x1ff : 0x001;
	proto = (data[0] & 0x10 ? 0x100000 : 0) | (data[0] & 0x20 ? 0x400 : 0);
	edits_init(&ed);
	r = milter_parse_packets(data[0] % 3, actions, proto, data + 1, size - 1, &ed, &vr);
	if (r < -1 || r > VD_QUARANTINE)
		abort();
	for (size_t i = 0; i < ed.nh; i++)
		if (!edit_name_ok(ed.h[i].name) ||
		    (ed.h[i].value != NULL && !edit_value_ok(ed.h[i].value)))
			abort();
	if ((r == VD_REJECT || r == VD_TEMPFAIL) && vr.code != 0 &&
	    (vr.code / 100 != (r == VD_REJECT ? 5 : 4) || strlen(vr.text) >= VREPLY_MAX))
		abort();
	if ((r == VD_CONTINUE || r == VD_ACCEPT || r == VD_QUARANTINE) &&
	    (ed.nh > 0 || ed.body_fd != -1))
		apply(&ed, (unsigned)(data[0] >> 6));
	edits_free(&ed);
	return 0;
}
