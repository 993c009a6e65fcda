/* conf.h: the configuration, one table of keys (see conf.c). */
#ifndef MAILSLOT_CONF_H
#define MAILSLOT_CONF_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

enum line_endings {
	LE_AUTO,	/* crlf on a socket, lf otherwise */
	LE_CRLF,	/* data ends only at CRLF "." CRLF */
	LE_STRICT,	/* crlf, and any bare CR or LF fails the message (554) */
	LE_LF,		/* a bare LF ends lines, and LF "." LF ends the data */
};

/* What the session speaks: SMTP, or LMTP (RFC 2033) behind an MTA. */
enum protocol { PROTO_SMTP, PROTO_LMTP };

/* What a milter that cannot be reached or breaks the protocol gives. */
enum milter_action { MA_TEMPFAIL, MA_ACCEPT, MA_REJECT };

struct config {
	char		*hostname;
	char		*maildir;
	uint64_t	 max_message_size;
	uint64_t	 min_free_space;
	long long	 max_recipients;
	long long	 command_timeout;
	long long	 data_timeout;
	long long	 max_errors;
	bool		 vrfy;
	bool		 expn;
	bool		 terminal_delivery;
	bool		 accept_mail;
	int		 line_endings;	/* enum line_endings */
	char		*mailboxes;	/* "" unset: everything goes to maildir */
	char		*domains;	/* "" any */
	char		*aliases;
	char		*forward_command;
	char		*quota;		/* default Maildir++ quota, "" none */
	char		*recipient_delimiter;
	char		*user;
	char		*tls_certificate;
	char		*tls_key;
	char		*tls_protocols;
	char		*tls_ciphers;
	bool		 tls_required;
	char		*milters;	/* "" none; "unix:PATH inet:HOST:PORT ..." */
	long long	 milter_timeout;
	int		 milter_default_action;	/* enum milter_action */
	char		*filter_command;	/* "" none; words, no shell */
	long long	 filter_timeout;
	char		*proxy_from;	/* trusted balancers, "" none (src/proxy.c) */
	long long	 proxy_timeout;
	int		 protocol;	/* enum protocol */
};

/* Is any filter (milter or filter command) configured?  (verdict.h) */
static inline bool
conf_filtered(const struct config *c)
{
	return c->milters[0] != '\0' || c->filter_command[0] != '\0';
}

#define CONF_DEFAULT_FILE "/etc/mailslot/mailslot.conf"

/* Fill every key with its default. */
void conf_defaults(struct config *);

/*
 * Read a configuration file.  Problems are printed to `err` (one line each,
 * naming file:line and the key) and counted; the return value is that count.
 * `must_exist` false makes a missing file silently acceptable.
 */
int conf_load_file(struct config *, const char *path, bool must_exist, FILE *err);

/* Apply one "KEY=VALUE" override from -o; returns 0 or 1 problem. */
int conf_override(struct config *, const char *kv, FILE *err);

/* Fill the values that depend on the environment (hostname, maildir). */
int conf_finish(struct config *, FILE *err);

/*
 * The first word of a program key (forward_command) names an executable
 * file by its absolute path; else a problem, printed, and 1.
 */
int conf_program_ok(const char *key, const char *cmd, FILE *err);

/* For -t: the catch-all Maildir can be written, or created (see conf.c). */
int conf_check_maildir(const struct config *, FILE *err);

/* Print every key's name, from the one table, wrapped for --help. */
void conf_list_keys(FILE *out);

/* Print every key with its current value, as a file conf_load_file reads. */
void conf_dump(const struct config *, FILE *out);

#endif
