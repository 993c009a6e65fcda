/* sd.c: libsystemd through dlopen(); see sd.h for why. */
#include <dlfcn.h>
#include <stdlib.h>

#include <systemd/sd-daemon.h>
#include <systemd/sd-journal.h>

#include "sd.h"

/* Typed from libsystemd's own headers, so a mismatch fails to compile. */
static void *lib;
static __typeof__(sd_listen_fds) *p_listen_fds;
static __typeof__(sd_journal_send) *p_journal_send;

static bool
load(void)
{
	static bool tried;

	if (!tried) {
		tried = true;
		lib = dlopen("libsystemd.so.0", RTLD_NOW | RTLD_LOCAL);
		if (lib != NULL) {
			*(void **)&p_listen_fds = dlsym(lib, "sd_listen_fds");
			*(void **)&p_journal_send = dlsym(lib, "sd_journal_send");
		}
	}
	return lib != NULL;
}

int
sd_listen_fds_lazy(void)
{
	int n;

	/* Only a process systemd started has LISTEN_FDS: skip the load otherwise. */
	if (getenv("LISTEN_FDS") == NULL)
		return 0;
	if (!load() || p_listen_fds == NULL)
		return 0;
	n = p_listen_fds(1);
	return n < 0 ? 0 : n;
}

bool
sd_journal_line(int prio, const char *session, const char *msg)
{
	if (!load() || p_journal_send == NULL)
		return false;
	return p_journal_send("MESSAGE=%s", msg, "PRIORITY=%d", prio,
	    "SYSLOG_FACILITY=%d", 2 /* LOG_MAIL >> 3 */,
	    "SYSLOG_IDENTIFIER=mailslot", "MAILSLOT_SESSION=%s", session,
	    NULL) >= 0;
}
