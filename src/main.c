/*
 * main.c: arguments, configuration, logging, the peer, then one session.
 *
 * Exit codes, as qmail and skarnet use them: 0 the session ran (whatever
 * its end), 100 a permanent problem (bad configuration or usage), 111 a
 * temporary one (the Maildir could not be opened).
 */
#include <sys/socket.h>
#include <sys/wait.h>

#include <arpa/inet.h>
#include <netinet/in.h>

#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "addr.h"
#include "conf.h"
#include "io.h"
#include "log.h"
#include "maildir.h"
#include "milter.h"
#include "proxy.h"
#include "sd.h"
#include "smtp.h"
#include "tls.h"

#define EXIT_PERM	100
#define EXIT_TEMP	111

#ifndef VERSION
#define VERSION "0.1"
#endif

static const char usage[] =
    "usage: mailslot [-t] [-V] [-f file] [-o key=value]... [--help]\n";

static const char help[] =
    "mailslot: an SMTP server for one connection, on stdin/stdout (inetd,\n"
    "xinetd, tcpserver, systemd Accept=yes), delivering into a Maildir.\n"
    "With -o protocol=lmtp it speaks LMTP (RFC 2033) to an MTA instead.\n"
    "\n"
    "  -f file        configuration file (default " CONF_DEFAULT_FILE ", if present)\n"
    "  -o key=value   set one key, after the file; may be repeated\n"
    "  -t             check the configuration, print it, and exit (0 good, 100 bad)\n"
    "  -V             print the version and exit\n"
    "  --help         this text\n"
    "\n"
    "Keys (mailslot.conf(5); mailslot -t prints them with their values):\n";

/*
 * The process title is written over the argv and environment strings, so
 * the environment must move first.  libbsd's setproctitle_init() moves it
 * itself, with one setenv() per variable (a search and a malloc each),
 * unless environ no longer points at the area: copy it here into one block,
 * pointers and strings together.  Without memory, libbsd's way remains.
 */
static void
env_move(char *envp[])
{
	/* Held here too: glibc's clearenv() at exit (under valgrind) drops environ. */
	static char **volatile moved;
	size_t n = 0, size = 0;
	char **copy, *p;

	for (; envp[n] != NULL; n++)
		size += strlen(envp[n]) + 1;
	if ((copy = malloc((n + 1) * sizeof *copy + size)) == NULL)
		return;
	p = (char *)(copy + n + 1);
	for (size_t i = 0; i < n; i++) {
		size_t len = strlen(envp[i]) + 1;

		copy[i] = memcpy(p, envp[i], len);
		p += len;
	}
	copy[n] = NULL;
	environ = moved = copy;
}

static void
on_term(int sig)
{
	(void)sig;
	io_terminate = 1;
}

static void
signals(void)
{
	struct sigaction sa;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_term;	/* no SA_RESTART: a wait must end with EINTR */
	sigemptyset(&sa.sa_mask);
	sigaction(SIGTERM, &sa, NULL);
	sa.sa_handler = SIG_IGN;	/* a closed client is an EPIPE, not a death */
	sigaction(SIGPIPE, &sa, NULL);
}

/* The peer's address as Received writes it ("IPv6:" before an IPv6 one), and its port. */
static void
peer_set(struct peer *p, int family, const void *addr, unsigned port)
{
	char buf[INET6_ADDRSTRLEN];
	const unsigned char *a = addr;

	if (family == AF_INET6 && IN6_IS_ADDR_V4MAPPED((const struct in6_addr *)addr)) {
		family = AF_INET;
		a += 12;
	}
	if (inet_ntop(family, a, buf, sizeof(buf)) == NULL)
		return;
	if (family == AF_INET)
		strlcpy(p->ip, buf, sizeof(p->ip));
	else
		snprintf(p->ip, sizeof(p->ip), "IPv6:%s", buf);
	snprintf(p->port, sizeof(p->port), "%u", port);
}

/* The peer: the socket itself, else what the launcher says, else unknown. */
static void
find_peer(int fd, struct peer *p)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);
	const char *env;
	unsigned char bin[sizeof(struct in6_addr)];

	memset(p, 0, sizeof(*p));
	if (getpeername(fd, (struct sockaddr *)&ss, &len) == 0) {
		if (ss.ss_family == AF_INET) {
			struct sockaddr_in *sin = (struct sockaddr_in *)&ss;

			peer_set(p, AF_INET, &sin->sin_addr, ntohs(sin->sin_port));
		} else if (ss.ss_family == AF_INET6) {
			struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss;

			peer_set(p, AF_INET6, &sin6->sin6_addr, ntohs(sin6->sin6_port));
		}
	}
	if (p->ip[0] == '\0' && ((env = getenv("TCPREMOTEIP")) != NULL ||
	    (env = getenv("REMOTE_ADDR")) != NULL)) {
		if (inet_pton(AF_INET, env, bin) == 1)
			strlcpy(p->ip, env, sizeof(p->ip));
		else if (inet_pton(AF_INET6, env, bin) == 1)
			snprintf(p->ip, sizeof(p->ip), "IPv6:%s", env);
		if (p->ip[0] != '\0' && (env = getenv("TCPREMOTEPORT")) != NULL) {
			const char *errstr = NULL;
			long long port = strtonum(env, 0, 65535, &errstr);

			if (errstr == NULL)
				snprintf(p->port, sizeof(p->port), "%lld", port);
		}
	}
	/* A name the launcher looked up; mailslot itself does no DNS. */
	if ((env = getenv("TCPREMOTEHOST")) != NULL && addr_domain_ok(env, strlen(env)))
		strlcpy(p->host, env, sizeof(p->host));
}

/* The UCSPI variables a child (forward_command) inherits name the proxied ends. */
static void
proxy_env(const struct proxy_hdr *h)
{
	char buf[INET6_ADDRSTRLEN], port[8];
	struct peer local = { 0 };

	unsetenv("TCPREMOTEHOST");	/* the launcher's name for the balancer */
	unsetenv("TCPREMOTEINFO");
	unsetenv("REMOTE_ADDR");
	if (h->kind != PROXY_PEER) {
		unsetenv("TCPREMOTEIP");
		unsetenv("TCPREMOTEPORT");
		unsetenv("TCPLOCALIP");
		unsetenv("TCPLOCALPORT");
		return;
	}
	peer_set(&local, h->family, h->src, h->sport);
	strlcpy(buf, local.ip + (strncmp(local.ip, "IPv6:", 5) == 0 ? 5 : 0), sizeof(buf));
	setenv("TCPREMOTEIP", buf, 1);
	setenv("TCPREMOTEPORT", local.port, 1);
	memset(&local, 0, sizeof(local));
	peer_set(&local, h->family, h->dst, h->dport);
	strlcpy(buf, local.ip + (strncmp(local.ip, "IPv6:", 5) == 0 ? 5 : 0), sizeof(buf));
	setenv("TCPLOCALIP", buf, 1);
	snprintf(port, sizeof(port), "%u", h->dport);
	setenv("TCPLOCALPORT", port, 1);
}

/*
 * A connection from a trusted balancer (proxy_from) starts with a PROXY
 * header, whose source is then the peer everywhere: Received, the log, the
 * children's environment; its destination is the address the client
 * reached (address literals).  Without a valid header in proxy_timeout the
 * connection is closed with nothing said, and the log says why.  Returns
 * 0 to go on, -1 to close.
 */
static int
proxy_step(const struct proxy_trust *trust, const struct config *c, struct io *io,
    int fd, struct peer *p, struct router *router)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);
	struct proxy_hdr h;
	const char *why;
	const unsigned char *a;
	int family;

	if (trust->n == 0 || getpeername(fd, (struct sockaddr *)&ss, &len) != 0)
		return 0;
	if (ss.ss_family == AF_INET) {
		family = AF_INET;
		a = (const unsigned char *)&((struct sockaddr_in *)&ss)->sin_addr;
	} else if (ss.ss_family == AF_INET6) {
		family = AF_INET6;
		a = ((struct sockaddr_in6 *)&ss)->sin6_addr.s6_addr;
	} else
		return 0;
	if (!proxy_trusted(trust, family, a))
		return 0;
	if (proxy_read(io, (int)c->proxy_timeout, &h, &why) == -1) {
		log_msg(LOG_NOTICE, "event=proxy error=\"%s\" proxy=%s", why, p->ip);
		return -1;
	}
	strlcpy(p->proxy, p->ip, sizeof(p->proxy));
	if (h.kind != PROXY_LOCAL) {	/* LOCAL: a health check, the balancer is the peer */
		p->ip[0] = p->port[0] = p->host[0] = '\0';
		if (h.kind == PROXY_PEER)
			peer_set(p, h.family, h.src, h.sport);
		if (router != NULL)
			route_local_set(router, h.kind == PROXY_PEER ? h.family : 0, h.dst);
	}
	proxy_env(&h);
	return 0;
}

/*
 * Started as root (inetd often is), become `user` before the first byte of
 * input is read.  Returns 0, or -1 with the reason logged.
 */
static int
drop_privileges(const struct config *c)
{
	struct passwd *pw;

	if (geteuid() != 0)
		return 0;
	/* As OpenSMTPD's maildir agent: mail is never written as root. */
	if (c->user[0] == '\0') {
		log_msg(LOG_ERR, "event=config problem=\"started as root without user: "
		    "refusing to deliver as root\"");
		return -1;
	}
	if ((pw = getpwnam(c->user)) == NULL) {
		log_msg(LOG_ERR, "event=config problem=\"user: no account %s\"", c->user);
		return -1;
	}
	if (pw->pw_uid == 0) {
		log_msg(LOG_ERR, "event=config problem=\"user: %s is root\"", c->user);
		return -1;
	}
	if (initgroups(pw->pw_name, pw->pw_gid) == -1 || setgid(pw->pw_gid) == -1 ||
	    setuid(pw->pw_uid) == -1 || setuid(0) != -1) {
		log_msg(LOG_ERR, "event=error op=setuid user=%s error=\"%s\"", c->user,
		    strerror(errno));
		return -1;
	}
	return 0;
}

/* What only the account that delivers can tell. */
static int
check_access(const struct config *c, FILE *err)
{
	return conf_program_ok("forward_command", c->forward_command, err) +
	    conf_program_ok("filter_command", c->filter_command, err) +
	    conf_check_maildir(c, err);
}

/*
 * -t: whether forward_command and filter_command can be run and the catch-all Maildir written
 * or created, judged as the account that would do it.  Started as root
 * with `user`, a child becomes that account (as a connection would) and
 * checks; root itself could write anywhere.  Returns the number of
 * problems (printed to err), or 1 when the child failed.
 */
static int
check_as_user(const struct config *c, FILE *err)
{
	pid_t pid;
	int status;

	if (geteuid() != 0 || c->user[0] == '\0')
		return check_access(c, err);
	fflush(err);
	if ((pid = fork()) == -1) {
		fprintf(err, "mailslot: maildir: cannot check: %s\n", strerror(errno));
		return 1;
	}
	if (pid == 0) {
		if (drop_privileges(c) == -1)
			_exit(1);
		_exit(check_access(c, err) == 0 ? 0 : 1);
	}
	while (waitpid(pid, &status, 0) == -1)
		if (errno != EINTR)
			return 1;
	return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : 1;
}

/* Hand configuration problems to the log, line by line. */
static void
log_problems(char *text)
{
	for (char *line = strtok(text, "\n"); line != NULL; line = strtok(NULL, "\n")) {
		char e[LOG_QUOTED(256)];

		log_msg(LOG_ERR, "event=config problem=%s",
		    log_quote(e, sizeof(e), line, strlen(line)));
	}
}

int
main(int argc, char *argv[], char *envp[])
{
	static struct config conf;	/* static: it lives as long as the process */
	struct maildir md;
	static struct router *router;	/* static too: reachable until exit */
	struct peer peer;
	static struct proxy_trust trust;	/* static: it lives as long as the process */
	const char *file = NULL;
	char *problems_text = NULL;
	size_t problems_len = 0;
	FILE *problems;
	int ch, nproblems = 0, rfd = 0, wfd = 1;
	bool check = false;
	enum line_endings le;
	static struct io io;

	env_move(envp);
	setproctitle_init(argc, argv, envp);
	for (int i = 1; i < argc; i++)
		if (strcmp(argv[i], "--help") == 0) {
			fputs(usage, stdout);
			fputs(help, stdout);
			conf_list_keys(stdout);
			fputs("See mailslot(8) and mailslot.conf(5).\n", stdout);
			return 0;
		}

	if ((problems = open_memstream(&problems_text, &problems_len)) == NULL)
		return EXIT_TEMP;
	conf_defaults(&conf);
	while ((ch = getopt(argc, argv, "f:o:tV")) != -1) {
		switch (ch) {
		case 'f':
			file = optarg;
			break;
		case 'o':
			break;	/* applied after the file, below */
		case 't':
			check = true;
			break;
		case 'V':
			printf("mailslot %s\n", VERSION);
			fclose(problems);
			free(problems_text);
			return 0;
		default:
			fputs(usage, stderr);
			fclose(problems);
			free(problems_text);
			return EXIT_PERM;
		}
	}
	if (optind != argc) {
		fputs(usage, stderr);
		fclose(problems);
		free(problems_text);
		return EXIT_PERM;
	}
	nproblems += conf_load_file(&conf, file ? file : CONF_DEFAULT_FILE,
	    file != NULL, problems);
	optind = 1;
	while ((ch = getopt(argc, argv, "f:o:tV")) != -1)
		if (ch == 'o')
			nproblems += conf_override(&conf, optarg, problems);
	nproblems += conf_finish(&conf, problems);
	nproblems += milter_check(conf.milters, problems);
	nproblems += proxy_trust_parse(conf.proxy_from, &trust, problems);
	if (nproblems == 0)
		router = router_new(&conf, problems, &nproblems);
	if (!quota_valid(conf.quota)) {
		fprintf(problems, "mailslot: quota: \"%s\" is not a Maildir++ quota\n", conf.quota);
		nproblems++;
	}
	fclose(problems);

	if (check) {
		if (nproblems == 0)
			nproblems += tls_check(&conf, stderr);
		/*
		 * What a connection finds out only when it writes: for -t, not
		 * at connection start, where a broken forward_command fails its
		 * forwards (451) but not local mail, and a Maildir that cannot
		 * be made is a 421 4.3.0 by itself.
		 */
		if (nproblems == 0)
			nproblems += check_as_user(&conf, stderr);
		fputs(problems_text, stderr);
		if (nproblems == 0)
			conf_dump(&conf, stdout);
		free(problems_text);
		return nproblems == 0 ? 0 : EXIT_PERM;
	}

	log_open();
	signals();
	if (sd_listen_fds_lazy() == 1)	/* a plain Accept=yes unit: the connection is fd 3 */
		rfd = wfd = 3;
	io_init(&io, rfd, wfd, (int)conf.command_timeout);

	if (nproblems > 0) {
		/* The reasons go to the log, never to the client as free text. */
		log_problems(problems_text);
		smtp_refuse(&io, conf.hostname[0] ? conf.hostname : "localhost", "4.3.5");
		free(problems_text);
		return EXIT_PERM;
	}
	free(problems_text);
	/* Started as root: load the TLS key while it can still be read. */
	if (geteuid() == 0 && conf.user[0] != '\0' && tls_offered(&conf)) {
		char why[256];

		if (tls_prepare(&conf, why, sizeof(why)) == NULL)
			log_msg(LOG_ERR, "event=tls error=\"%s\"", why);
	}
	if (drop_privileges(&conf) == -1) {
		smtp_refuse(&io, conf.hostname, "4.3.5");
		return EXIT_PERM;
	}

	find_peer(rfd, &peer);
	if (router != NULL)
		route_local_address(router, rfd);
	/* Before the greeting, and before any 421 that could follow it. */
	if (proxy_step(&trust, &conf, &io, rfd, &peer, router) == -1) {
		close(rfd);
		if (wfd != rfd)
			close(wfd);
		return 0;
	}
	le = (enum line_endings)conf.line_endings;
	/*
	 * lf only for a person typing: a pipe may be a TLS wrapper's
	 * (s6-tlsserver) with a network client behind it.  isatty() is an
	 * ioctl: asked only of a character device (io_init's fstat).
	 */
	if (le == LE_AUTO)
		le = io.chardev && isatty(rfd) ? LE_LF : LE_CRLF;

	/* The catch-all is created (0700) if missing; a broken one is a 421 now. */
	if (conf.mailboxes[0] == '\0') {
		if (maildir_open(&md, conf.maildir, conf.hostname) == -1) {
			log_msg(LOG_ERR, "event=error op=maildir path=%s error=\"%s\"",
			    conf.maildir, strerror(errno));
			smtp_refuse(&io, conf.hostname, "4.3.0");
			return EXIT_TEMP;
		}
		maildir_keep(&md, conf.maildir);	/* for the first delivery */
	}
	{
		int rc = smtp_run(&conf, router, &io, &peer, le);

		/*
		 * The client sees the end now, not when the process has gone:
		 * exit can wait, for the kernel to tear down what fsync_all()
		 * set up (src/fsync.c).
		 */
		tls_finish();
		close(rfd);
		if (wfd != rfd)
			close(wfd);
		return rc;
	}
}
