/*
 * filter.h: filter_command, the qmail-style content filter.  It runs once
 * per message, after the data is complete and after the milters, before
 * the reply: the message on its standard input exactly as the first copy
 * will be stored (mailslot's trace included), the envelope in its
 * environment.  Its exit code is the verdict, with qmail's meanings:
 *
 *	0	accept; the header fields it printed are added below
 *		mailslot's Received field
 *	100	refuse: 554 5.7.1, with its first line of output as the text
 *	111, 75	defer: 451 4.7.1, the same
 *	other	(a signal, any other code, more than filter_timeout): 451 4.7.1,
 *		and its process group is killed
 *
 * Whatever it exits leaving in its process group is killed too.
 */
#ifndef MAILSLOT_FILTER_H
#define MAILSLOT_FILTER_H

#include "conf.h"
#include "deliver.h"
#include "verdict.h"

#define FILTER_MAX_OUTPUT	(64 * 1024)	/* read of its standard output */
#define FILTER_MAX_FIELDS	100		/* header fields taken from it */
#define FILTER_MAX_TEXT		200		/* octets of a refusal's text */
#define FILTER_MAX_STDERR	1024		/* octets of its stderr logged */
#define FILTER_MAX_WORDS	64		/* in filter_command */

/* What the environment tells about the session. */
struct filter_env {
	const char	*client_addr;	/* "" when unknown (a pipe) */
	const char	*client_name;	/* "" when none */
	const char	*helo;
	bool		 tls;
};

/*
 * Run filter_command on the message of `d`.  The verdict: VD_ACCEPT (the
 * fields to add are in `ed`, as inserts), VD_REJECT or VD_TEMPFAIL: `vr` has
 * 554 5.7.1 or 451 4.7.1 and the filter's text (empty when it gave none)
 * for exits 100, 111 and 75; vr->code is 0 for a failure.
 */
enum verdict filter_run(const struct config *, struct delivery *d,
    const struct filter_env *, struct vreply *vr, struct edits *ed);

#endif
