/*
 * tls.c: STARTTLS (RFC 3207) through libtls.
 *
 * libtls is given the connection through callbacks rather than the bare
 * fds (tls_accept_fds): OpenSSL would then call read() and write() on the
 * launcher's blocking socket, and a client that sends half a ClientHello
 * and stops would hold mailslot for ever.  The callbacks make every call
 * non-blocking by itself, as io's socket transport does (MSG_DONTWAIT,
 * MSG_NOSIGNAL), so the fd's flags stay as the launcher set them and every
 * wait is a poll() with a deadline: the handshake's here, the session's in
 * io.c.  After the handshake the session reads and writes through the
 * `tls` transport below and does not know the difference.
 *
 * Everything is loaded when the client says STARTTLS, not at start-up, so
 * a plain session costs nothing; mailslot serves one connection, so there
 * is one server context per process and it lives in `server` below.
 */
#include <sys/socket.h>
#include <sys/stat.h>

#include <dlfcn.h>
#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <tls.h>		/* libtls's, not ours: no -I for src/ */

#include "log.h"
#include "tls.h"

/*
 * libtls, and through it libssl and libcrypto, is loaded with dlopen()
 * when a client says STARTTLS (or -t checks the pair), as sd.c does for
 * libsystemd: linked, the dynamic loader would map and bind all three at
 * every exec, some four million instructions and 1.8 MiB per connection,
 * for sessions that mostly never use them.  The pointers are typed from
 * libtls's own header, so a mismatch fails to compile.
 */
#define LIBTLS_FUNCS(X) \
	X(tls_init) \
	X(tls_config_new) \
	X(tls_config_free) \
	X(tls_config_error) \
	X(tls_config_parse_protocols) \
	X(tls_config_set_protocols) \
	X(tls_config_set_ciphers) \
	X(tls_config_set_keypair_file) \
	X(tls_config_clear_keys) \
	X(tls_config_insecure_noverifycert) \
	X(tls_config_insecure_noverifyname) \
	X(tls_config_insecure_noverifytime) \
	X(tls_server) \
	X(tls_client) \
	X(tls_configure) \
	X(tls_free) \
	X(tls_error) \
	X(tls_accept_cbs) \
	X(tls_accept_socket) \
	X(tls_connect_socket) \
	X(tls_handshake) \
	X(tls_read) \
	X(tls_write) \
	X(tls_close) \
	X(tls_conn_version) \
	X(tls_conn_cipher) \
	X(tls_conn_cipher_strength) \
	X(tls_peer_cert_notafter) \

#define LIBTLS_PTR(f) static __typeof__(f) *p_##f;
LIBTLS_FUNCS(LIBTLS_PTR)
#undef LIBTLS_PTR

#define tls_init(...) p_tls_init(__VA_ARGS__)
#define tls_config_new(...) p_tls_config_new(__VA_ARGS__)
#define tls_config_free(...) p_tls_config_free(__VA_ARGS__)
#define tls_config_error(...) p_tls_config_error(__VA_ARGS__)
#define tls_config_parse_protocols(...) p_tls_config_parse_protocols(__VA_ARGS__)
#define tls_config_set_protocols(...) p_tls_config_set_protocols(__VA_ARGS__)
#define tls_config_set_ciphers(...) p_tls_config_set_ciphers(__VA_ARGS__)
#define tls_config_set_keypair_file(...) p_tls_config_set_keypair_file(__VA_ARGS__)
#define tls_config_clear_keys(...) p_tls_config_clear_keys(__VA_ARGS__)
#define tls_config_insecure_noverifycert(...) p_tls_config_insecure_noverifycert(__VA_ARGS__)
#define tls_config_insecure_noverifyname(...) p_tls_config_insecure_noverifyname(__VA_ARGS__)
#define tls_config_insecure_noverifytime(...) p_tls_config_insecure_noverifytime(__VA_ARGS__)
#define tls_server(...) p_tls_server(__VA_ARGS__)
#define tls_client(...) p_tls_client(__VA_ARGS__)
#define tls_configure(...) p_tls_configure(__VA_ARGS__)
#define tls_free(...) p_tls_free(__VA_ARGS__)
#define tls_error(...) p_tls_error(__VA_ARGS__)
#define tls_accept_cbs(...) p_tls_accept_cbs(__VA_ARGS__)
#define tls_accept_socket(...) p_tls_accept_socket(__VA_ARGS__)
#define tls_connect_socket(...) p_tls_connect_socket(__VA_ARGS__)
#define tls_handshake(...) p_tls_handshake(__VA_ARGS__)
#define tls_read(...) p_tls_read(__VA_ARGS__)
#define tls_write(...) p_tls_write(__VA_ARGS__)
#define tls_close(...) p_tls_close(__VA_ARGS__)
#define tls_conn_version(...) p_tls_conn_version(__VA_ARGS__)
#define tls_conn_cipher(...) p_tls_conn_cipher(__VA_ARGS__)
#define tls_conn_cipher_strength(...) p_tls_conn_cipher_strength(__VA_ARGS__)
#define tls_peer_cert_notafter(...) p_tls_peer_cert_notafter(__VA_ARGS__)

static bool
libtls_load(char *why, size_t n)
{
	static void *lib;

	if (lib != NULL)
		return true;
	if ((lib = dlopen(LIBTLS_SONAME, RTLD_NOW | RTLD_LOCAL)) == NULL) {
		snprintf(why, n, "cannot load %s: %s", LIBTLS_SONAME, dlerror());
		return false;
	}
#define LIBTLS_SYM(f) \
	if ((*(void **)&p_##f = dlsym(lib, #f)) == NULL) { \
		snprintf(why, n, "%s lacks %s", LIBTLS_SONAME, #f); \
		dlclose(lib); \
		lib = NULL; \
		return false; \
	}
	LIBTLS_FUNCS(LIBTLS_SYM)
#undef LIBTLS_SYM
	return true;
}

#define EXPIRY_WARN_DAYS	14
#define CLOSE_WAIT_MS		1000	/* for close_notify on the way out */

struct tls_server {
	struct tls_config	*cfg;
	struct tls		*ctx;	/* the server context */
	struct tls		*conn;	/* the accepted connection */
	int			 rfd, wfd;
	bool			 rsock, wsock;
	int			 err;	/* errno of the last failed read or write */
	bool			 eof;	/* the client closed the connection */
	pid_t			 pid;	/* who may close the connection */
	char			 using[128];
};

static struct tls_server server = { .rfd = -1, .wfd = -1 };

static long long
now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static bool
is_socket(int fd)
{
	struct stat st;

	return fstat(fd, &st) == 0 && S_ISSOCK(st.st_mode);
}

/*
 * Library messages go into log lines between quotes, without OpenSSL's
 * "error:0A00010B:SSL routines::" before the words that matter.  They are
 * the library's words and the configured paths, never the client's, so a
 * control character, quote or backslash (there should be none) becomes a
 * '?' rather than an escape four times as long: smtp.c's buffer is short.
 */
static void
reason(char *why, size_t n, const char *what, const char *detail)
{
	const char *e, *words;
	int k;

	if (detail == NULL)
		detail = "unknown error";
	if ((e = strstr(detail, "error:")) != NULL && (words = strstr(e, "::")) != NULL)
		k = snprintf(why, n, "%s%s%.*s%s", what ? what : "", what ? ": " : "",
		    (int)(e - detail), detail, words + 2);
	else
		k = snprintf(why, n, "%s%s%s", what ? what : "", what ? ": " : "", detail);
	for (char *p = why; k >= 0 && *p != '\0'; p++)
		if (*p < 0x20 || *p > 0x7e || *p == '"' || *p == '\\')
			*p = '?';
}

/* ---- The bytes under TLS ------------------------------------------------ */

/*
 * A pipe (by hand, or a test) cannot be asked not to block, so it is
 * polled first, and written no more than PIPE_BUF at a time (that much
 * into a pipe with room never blocks; OpenSSL sends the rest later); a
 * socket is asked directly.  EINTR is a "try again": the caller's poll()
 * then looks at io_terminate.
 */
static ssize_t
cb_read(struct tls *t, void *buf, size_t n, void *arg)
{
	struct tls_server *ts = arg;
	ssize_t r;

	(void)t;
	if (ts->rsock)
		r = recv(ts->rfd, buf, n, MSG_DONTWAIT);
	else {
		struct pollfd pfd = { .fd = ts->rfd, .events = POLLIN };

		if (poll(&pfd, 1, 0) == 0)
			return TLS_WANT_POLLIN;
		r = read(ts->rfd, buf, n);
	}
	if (r >= 0) {
		ts->eof = r == 0;
		return r;
	}
	if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
		return TLS_WANT_POLLIN;
	ts->err = errno;
	return -1;
}

static ssize_t
cb_write(struct tls *t, const void *buf, size_t n, void *arg)
{
	struct tls_server *ts = arg;
	ssize_t r;

	(void)t;
	if (ts->wsock)
		r = send(ts->wfd, buf, n, MSG_DONTWAIT | MSG_NOSIGNAL);
	else {
		struct pollfd pfd = { .fd = ts->wfd, .events = POLLOUT };

		if (poll(&pfd, 1, 0) == 0)
			return TLS_WANT_POLLOUT;
		r = write(ts->wfd, buf, n < PIPE_BUF ? n : PIPE_BUF);
	}
	if (r >= 0)
		return r;
	if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
		return TLS_WANT_POLLOUT;
	ts->err = errno;
	return -1;
}

/*
 * io's view: -1 must come with an errno that is not EINTR or EAGAIN (io
 * would try again, and libtls would fail again): the socket's own error
 * when there was one, else EPROTO, with libtls's reason in the log.
 */
static ssize_t
failed(struct tls_server *ts)
{
	char why[512];

	reason(why, sizeof(why), NULL, tls_error(ts->conn));
	log_msg(LOG_NOTICE, "event=tls error=\"%s\"", why);
	errno = ts->err != 0 ? ts->err : EPROTO;
	ts->err = 0;
	return -1;
}

/*
 * A client that closes the connection without close_notify is an end of
 * file, as in plain text: SMTP marks the end of a message itself, so a
 * truncation cannot pass for a complete one (RFC 8446 6.1 leaves it to the
 * application).
 */
static ssize_t
tls_tread(void *ctx, int fd, void *buf, size_t n)
{
	struct tls_server *ts = ctx;
	ssize_t r = tls_read(ts->conn, buf, n);

	(void)fd;
	if (r == TLS_WANT_POLLIN)
		return IO_WANT_READ;
	if (r == TLS_WANT_POLLOUT)
		return IO_WANT_WRITE;
	if (r == -1 && ts->eof)
		return 0;
	return r == -1 ? failed(ts) : r;
}

static ssize_t
tls_twrite(void *ctx, int fd, const void *buf, size_t n)
{
	ssize_t r = tls_write(((struct tls_server *)ctx)->conn, buf, n);

	(void)fd;
	if (r == TLS_WANT_POLLIN)
		return IO_WANT_READ;
	if (r == TLS_WANT_POLLOUT)
		return IO_WANT_WRITE;
	return r == -1 ? failed(ctx) : r;
}

static const struct transport io_tls = { "tls", tls_tread, tls_twrite };

/* ---- Configuration ------------------------------------------------------- */

/*
 * The server's configuration from the tls_* keys; with `pair`, the
 * certificate and key are loaded too.  Protocols and ciphers are set here,
 * never left to the system's OpenSSL defaults.
 */
static struct tls_config *
server_config(const struct config *c, bool pair, char *why, size_t n)
{
	struct tls_config *cfg;
	uint32_t protocols;

	if (!libtls_load(why, n))
		return NULL;
	if (tls_init() == -1 || (cfg = tls_config_new()) == NULL) {
		snprintf(why, n, "cannot initialise libtls");
		return NULL;
	}
	if (tls_config_parse_protocols(&protocols, c->tls_protocols) == -1) {
		snprintf(why, n, "tls_protocols: not a list of protocols: %s", c->tls_protocols);
		goto fail;
	}
	if (tls_config_set_protocols(cfg, protocols) == -1) {
		reason(why, n, "tls_protocols", tls_config_error(cfg));
		goto fail;
	}
	if (tls_config_set_ciphers(cfg, c->tls_ciphers) == -1) {
		reason(why, n, "tls_ciphers", tls_config_error(cfg));
		goto fail;
	}
	if (pair && tls_config_set_keypair_file(cfg, c->tls_certificate, c->tls_key) == -1) {
		reason(why, n, "tls_certificate/tls_key", tls_config_error(cfg));
		goto fail;
	}
	return cfg;
fail:
	tls_config_free(cfg);
	return NULL;
}

/* A server context with the pair; the key is checked against the certificate here. */
static struct tls *
server_context(struct tls_config *cfg, char *why, size_t n)
{
	struct tls *ctx;

	if ((ctx = tls_server()) == NULL) {
		snprintf(why, n, "cannot create a TLS context");
		return NULL;
	}
	if (tls_configure(ctx, cfg) == -1) {
		reason(why, n, "tls_certificate/tls_key", tls_error(ctx));
		tls_free(ctx);
		return NULL;
	}
	return ctx;
}

static void
server_free(struct tls_server *ts)
{
	if (p_tls_free == NULL)
		return;		/* libtls never loaded: nothing to free */
	tls_free(ts->conn);
	tls_free(ts->ctx);
	tls_config_free(ts->cfg);
	ts->conn = ts->ctx = NULL;
	ts->cfg = NULL;
}

__attribute__((hot))
bool
tls_offered(const struct config *c)
{
	return c->tls_certificate[0] != '\0' && c->tls_key[0] != '\0';
}

/*
 * A second call returns what the first loaded, so main can call this
 * before it gives up root, and the key need only be readable by root.
 */
struct tls_server *
tls_prepare(const struct config *c, char *why, size_t n)
{
	struct tls_server *ts = &server;

	if (!tls_offered(c)) {
		snprintf(why, n, "no certificate configured");
		return NULL;
	}
	/* Loaded already: by a start as root, before it became `user`. */
	if (ts->ctx != NULL && ts->conn == NULL)
		return ts;
	server_free(ts);
	if ((ts->cfg = server_config(c, true, why, n)) == NULL)
		return NULL;
	if ((ts->ctx = server_context(ts->cfg, why, n)) == NULL) {
		server_free(ts);
		return NULL;
	}
	/* The server context holds the key now; the configuration's copy goes. */
	tls_config_clear_keys(ts->cfg);
	return ts;
}

/* ---- The handshake -------------------------------------------------------- */

/*
 * close_notify when the process ends (RFC 8446 6.1), from the process that
 * did the handshake only, and for CLOSE_WAIT_MS at most: a client that has
 * gone or stopped reading does not delay the exit.
 */
__attribute__((hot))
void
tls_finish(void)
{
	struct tls_server *ts = &server;
	long long deadline = now_ms() + CLOSE_WAIT_MS;

	if (ts->conn == NULL || ts->pid != getpid())
		return;
	for (int i = 0; i < 16; i++) {
		struct pollfd pfd;
		long long left = deadline - now_ms();
		int r = tls_close(ts->conn);

		if ((r != TLS_WANT_POLLIN && r != TLS_WANT_POLLOUT) || left <= 0)
			break;
		pfd.fd = r == TLS_WANT_POLLIN ? ts->rfd : ts->wfd;
		pfd.events = r == TLS_WANT_POLLIN ? POLLIN : POLLOUT;
		if (poll(&pfd, 1, (int)left) == 0)
			break;
	}
	server_free(ts);
}

int
tls_start(struct tls_server *ts, struct io *io, int timeout, char *why, size_t n)
{
	long long deadline = now_ms() + timeout * 1000LL;
	static bool registered;

	ts->rfd = io->rfd;
	ts->wfd = io->wfd;
	ts->rsock = is_socket(io->rfd);
	ts->wsock = io->wfd == io->rfd ? ts->rsock : is_socket(io->wfd);
	ts->err = 0;
	ts->eof = false;
	if (tls_accept_cbs(ts->ctx, &ts->conn, cb_read, cb_write, ts) == -1) {
		reason(why, n, "accept", tls_error(ts->ctx));
		server_free(ts);
		return -1;
	}
	for (;;) {
		struct pollfd pfd;
		long long left;
		int r = tls_handshake(ts->conn);

		if (r == 0)
			break;
		if (r != TLS_WANT_POLLIN && r != TLS_WANT_POLLOUT) {
			if (ts->err != 0)
				snprintf(why, n, "handshake: %s", strerror(ts->err));
			else	/* libtls says "handshake failed: ..." itself */
				reason(why, n, NULL, tls_error(ts->conn));
			server_free(ts);
			return -1;
		}
		pfd.fd = r == TLS_WANT_POLLIN ? ts->rfd : ts->wfd;
		pfd.events = r == TLS_WANT_POLLIN ? POLLIN : POLLOUT;
		do {
			if (io_terminate) {
				snprintf(why, n, "handshake: shutting down");
				server_free(ts);
				return -1;
			}
			if ((left = deadline - now_ms()) <= 0) {
				snprintf(why, n, "handshake: timeout after %d seconds", timeout);
				server_free(ts);
				return -1;
			}
			r = poll(&pfd, 1, left > 60000 ? 60000 : (int)left);
		} while (r == 0 || (r == -1 && errno == EINTR));
		if (r == -1) {
			snprintf(why, n, "handshake: poll: %s", strerror(errno));
			server_free(ts);
			return -1;
		}
	}

	/*
	 * Postfix's form, which Received parsers know.  libtls gives one
	 * strength; it is both the secret and the algorithm bits for every
	 * cipher the "secure" and "compat" sets allow.
	 */
	snprintf(ts->using, sizeof(ts->using), "%s with cipher %s (%d/%d bits)",
	    tls_conn_version(ts->conn), tls_conn_cipher(ts->conn),
	    tls_conn_cipher_strength(ts->conn), tls_conn_cipher_strength(ts->conn));
	io->t = &io_tls;
	io->tctx = ts;
	ts->pid = getpid();
	if (!registered)
		registered = atexit(tls_finish) == 0;
	return 0;
}

const char *
tls_describe(const struct io *io)
{
	return io->t == &io_tls ? ((struct tls_server *)io->tctx)->using : NULL;
}

/* ---- mailslot -t ------------------------------------------------------------ */

/*
 * libtls shows a certificate's dates only for the peer's, so -t gets them
 * the honest way: a handshake with itself over a socketpair, as a client
 * would see the server.  That also proves the pair, the protocols and the
 * ciphers make a working server together, with no second crypto library.
 */
static int
self_handshake(struct tls *srv, const struct config *c, time_t *notafter,
    char *why, size_t n)
{
	struct tls_config *ccfg = NULL;
	struct tls *cli = NULL, *conn = NULL;
	uint32_t protocols;
	int sv[2], rc = -1;
	bool sdone = false, cdone = false;

	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) == -1) {
		snprintf(why, n, "socketpair: %s", strerror(errno));
		return -1;
	}
	if ((ccfg = tls_config_new()) == NULL || (cli = tls_client()) == NULL) {
		snprintf(why, n, "cannot create a TLS client");
		goto out;
	}
	/* The client takes what the server offers: it is the server being tested. */
	if (tls_config_parse_protocols(&protocols, c->tls_protocols) == -1 ||
	    tls_config_set_protocols(ccfg, protocols) == -1 ||
	    tls_config_set_ciphers(ccfg, "all") == -1) {
		reason(why, n, "test client", tls_config_error(ccfg));
		goto out;
	}
	tls_config_insecure_noverifycert(ccfg);
	tls_config_insecure_noverifyname(ccfg);
	tls_config_insecure_noverifytime(ccfg);
	if (tls_configure(cli, ccfg) == -1 || tls_connect_socket(cli, sv[1], NULL) == -1) {
		reason(why, n, "test client", tls_error(cli));
		goto out;
	}
	if (tls_accept_socket(srv, &conn, sv[0]) == -1) {
		reason(why, n, "accept", tls_error(srv));
		goto out;
	}
	for (int round = 0; round < 100 && !(sdone && cdone); round++) {
		struct pollfd pfd[2] = { { .fd = sv[0], .events = POLLIN },
		    { .fd = sv[1], .events = POLLIN } };
		int r;

		if (!cdone) {
			r = tls_handshake(cli);
			if (r == 0)
				cdone = true;
			else if (r != TLS_WANT_POLLIN && r != TLS_WANT_POLLOUT) {
				reason(why, n, "handshake (client side)", tls_error(cli));
				goto out;
			}
		}
		if (!sdone) {
			r = tls_handshake(conn);
			if (r == 0)
				sdone = true;
			else if (r != TLS_WANT_POLLIN && r != TLS_WANT_POLLOUT) {
				reason(why, n, "handshake", tls_error(conn));
				goto out;
			}
		}
		if (!(sdone && cdone) && poll(pfd, 2, 1000) == 0) {
			snprintf(why, n, "handshake with itself stalled");
			goto out;
		}
	}
	if (!(sdone && cdone)) {
		snprintf(why, n, "handshake with itself did not finish");
		goto out;
	}
	if ((*notafter = tls_peer_cert_notafter(cli)) == -1) {
		reason(why, n, "certificate", tls_error(cli));
		goto out;
	}
	rc = 0;
out:
	tls_free(conn);
	tls_free(cli);
	tls_config_free(ccfg);
	close(sv[0]);
	close(sv[1]);
	return rc;
}

int
tls_check(const struct config *c, FILE *out)
{
	struct tls_config *cfg;
	struct tls *srv;
	char why[512], date[64];
	time_t notafter, now = time(NULL);
	struct tm tm;

	if ((cfg = server_config(c, tls_offered(c), why, sizeof(why))) == NULL) {
		fprintf(out, "mailslot: %s\n", why);
		return 1;
	}
	if (!tls_offered(c)) {
		tls_config_free(cfg);
		return 0;
	}
	if ((srv = server_context(cfg, why, sizeof(why))) == NULL ||
	    self_handshake(srv, c, &notafter, why, sizeof(why)) == -1) {
		fprintf(out, "mailslot: %s (tls_certificate %s, tls_key %s)\n", why,
		    c->tls_certificate, c->tls_key);
		tls_free(srv);
		tls_config_free(cfg);
		return 1;
	}
	tls_free(srv);
	tls_config_free(cfg);

	/* Expired or nearly: STARTTLS still works, so a warning, not a failure. */
	if (gmtime_r(&notafter, &tm) == NULL ||
	    strftime(date, sizeof(date), "%Y-%m-%d %H:%M:%S UTC", &tm) == 0)
		snprintf(date, sizeof(date), "%lld", (long long)notafter);
	if (notafter <= now)
		fprintf(out, "mailslot: warning: tls_certificate %s expired on %s\n",
		    c->tls_certificate, date);
	else if (notafter - now < EXPIRY_WARN_DAYS * 86400)
		fprintf(out, "mailslot: warning: tls_certificate %s expires in %lld days, on %s\n",
		    c->tls_certificate, (long long)((notafter - now) / 86400), date);
	return 0;
}
