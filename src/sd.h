/*
 * sd.h: the two libsystemd calls mailslot makes, loaded on first use.
 * Linking libsystemd makes the dynamic loader resolve its whole dependency
 * chain at every exec, and mailslot is exec'ed once per connection; most
 * connections (inetd, tcpserver, by hand) never need it.
 */
#ifndef MAILSLOT_SD_H
#define MAILSLOT_SD_H

#include <stdbool.h>

/* sd_listen_fds(1), or 0 when nothing was passed or libsystemd is absent. */
int sd_listen_fds_lazy(void);

/* sd_journal_send with MESSAGE, PRIORITY and mailslot's fields; false if unavailable. */
bool sd_journal_line(int prio, const char *session, const char *msg);

#endif
