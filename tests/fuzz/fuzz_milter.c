/*
 * fuzz_milter: the parser of what a milter sends (src/milter.c, through
 * milter_parse_packets): the negotiation's answer with its macro lists,
 * a step's verdict, the end of body's changes and reply codes.
 *
 * Input: one octet that picks the stage (negotiation, SMTP step, end of
 * body) and whether the actions and SMFIP_HDR_LEADSPC and SMFIP_SKIP were
 * negotiated, then the packets as they would come off the socket.  The
 * parser must not crash, leak or read outside them; every change it keeps
 * must pass the checks the delivery applies (edit_name_ok, edit_value_ok).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "edit.h"
#include "milter.h"

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
	edits_free(&ed);
	return 0;
}
