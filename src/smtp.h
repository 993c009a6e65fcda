/* smtp.h: one SMTP session over a connection. */
#ifndef MAILSLOT_SMTP_H
#define MAILSLOT_SMTP_H

#include "conf.h"
#include "io.h"
#include "route.h"

struct peer {
	char	ip[64];		/* as written in Received: "192.0.2.1", "IPv6:::1"; "" unknown */
	char	host[256];	/* a name the launcher looked up, checked; "" unknown */
	char	port[8];	/* its TCP port, decimal; "" unknown */
	char	proxy[64];	/* the balancer whose PROXY header named this peer,
				   written as ip is; "" when there was none */
};

/*
 * Serve the connection on `io` until QUIT, a close, a timeout or SIGTERM.
 * Returns the process exit code.
 */
int smtp_run(const struct config *, const struct router *, struct io *,
    const struct peer *, enum line_endings);

/* The 421 a client gets when mailslot cannot even start (configuration). */
void smtp_refuse(struct io *, const char *hostname, const char *enh);

#endif
