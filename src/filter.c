/*
 * filter.c: filter_command (filter.h).
 *
 * No shell: the words of filter_command are its argv.  The child runs in
 * a process group of its own, with a clean environment (PATH and the
 * MAILSLOT_* variables), SIGPIPE and the other signals back to their
 * defaults.  The parent feeds its standard input and reads its standard
 * output and error in one poll() loop, so a filter that prints a lot
 * before it reads cannot deadlock; one that exits without reading is
 * judged by its exit code alone (EPIPE is not an error).  A process
 * descriptor (pidfd) in the same poll() tells when it exits; after
 * filter_timeout seconds its whole group is killed with SIGKILL and it is
 * reaped, so no process and no zombie is left; when it exits, what it
 * leaves in its group is killed before it is reaped.
 */
#include <sys/sendfile.h>
#include <sys/syscall.h>
#include <sys/wait.h>

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "edit.h"
#include "filter.h"
#include "io.h"
#include "log.h"

#define FILTER_PATH	"PATH=/usr/local/bin:/usr/bin:/bin"

static long long
now_ms(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (long long)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

/* "KEY=value", kept in env[]; false when out of memory. */
static bool
setv(char **env, size_t *n, const char *key, const char *value)
{
	if (asprintf(&env[*n], "%s=%s", key, value) == -1)
		return false;
	(*n)++;
	return true;
}

/* Read what fd has into buf (at most cap, the rest dropped); false at EOF or error. */
static bool
drain(int fd, char *buf, size_t *len, size_t cap, bool *cut)
{
	char scratch[4096];

	for (;;) {
		ssize_t r;

		if (*len < cap)
			r = read(fd, buf + *len, cap - *len);
		else
			r = read(fd, scratch, sizeof(scratch));
		if (r > 0) {
			if (*len < cap)
				*len += (size_t)r;
			else
				*cut = true;
			continue;
		}
		if (r == -1 && errno == EINTR)
			continue;
		return r == -1 && errno == EAGAIN;
	}
}

struct feeder {
	struct dpiece	*p;
	size_t		 n, at;
	int		 fd;		/* -1: done (all written, or the filter stopped reading) */
};

/* Write what the pipe takes now. */
static void
feed(struct feeder *f)
{
	while (f->fd != -1 && f->at < f->n) {
		struct dpiece *p = &f->p[f->at];
		ssize_t w;

		if (p->fd == -1)
			w = p->len > 0 ? write(f->fd, p->buf, p->len) : 0;
		else
			w = p->flen > 0 ? sendfile(f->fd, p->fd, &p->off,
			    p->flen > (1 << 20) ? (1 << 20) : (size_t)p->flen) : 0;
		if (w == -1 && errno == EINTR)
			continue;
		if (w == -1 && errno == EAGAIN)
			return;
		if (w < 0 || (w == 0 && (p->fd == -1 ? p->len : p->flen) > 0)) {
			/* EPIPE: it stopped reading; its exit code decides. */
			close(f->fd);
			f->fd = -1;
			return;
		}
		if (p->fd == -1) {
			p->buf += w;
			p->len -= (size_t)w;
			if (p->len == 0)
				f->at++;
		} else {
			p->flen -= (uint64_t)w;
			if (p->flen == 0)
				f->at++;
		}
	}
	if (f->fd != -1 && f->at == f->n) {
		close(f->fd);
		f->fd = -1;
	}
}

/* The first line of its output, printable ASCII only, for a refusal's reply. */
static void
reply_text(const char *out, size_t len, char *text, size_t size)
{
	size_t o = 0;

	for (size_t i = 0; i < len && out[i] != '\n' && o + 1 < size; i++) {
		unsigned char ch = (unsigned char)out[i];

		if (ch == '\r' && (i + 1 == len || out[i + 1] == '\n'))
			break;
		text[o++] = ch >= 0x20 && ch < 0x7f ? (char)ch : '?';
	}
	while (o > 0 && text[o - 1] == ' ')
		o--;
	text[o] = '\0';
}

/* A field line of its own: "Name:" and printable ASCII or tab, at most 998 octets. */
static bool
field_line(const char *l, size_t n, bool continuation)
{
	size_t name = 0;

	if (n > 998)
		return false;
	for (size_t i = 0; i < n; i++)
		if (((unsigned char)l[i] < 0x20 && l[i] != '\t') || (unsigned char)l[i] > 0x7e)
			return false;
	if (continuation)
		return n > 0 && (l[0] == ' ' || l[0] == '\t') && strspn(l, " \t") < n;
	while (name < n && l[name] > ' ' && l[name] != ':')
		name++;
	return name > 0 && name < n && l[name] == ':';
}

/*
 * The header fields it printed (exit 0), up to the first empty line:
 * "Name: value" lines, with continuation lines.  A line that is not one
 * is logged and dropped, with its continuation; so are fields past
 * FILTER_MAX_FIELDS and a line cut by FILTER_MAX_OUTPUT.
 */
static unsigned
fields(struct delivery *d, const char *out, size_t len, bool cut, struct edits *ed)
{
	unsigned base = delivery_received_index(d) + 1, taken = 0, dropped = 0;
	char *name = NULL, *value = NULL;
	size_t vlen = 0;
	bool skipping = false;

	for (size_t at = 0; at <= len; ) {
		const char *l = out + at, *lf = at < len ? memchr(l, '\n', len - at) : NULL;
		size_t n = lf != NULL ? (size_t)(lf - l) : len - at;
		bool last = lf == NULL, cont;

		if (last && cut)
			n = 0, dropped++;	/* a line cut short is not taken */
		at += n + 1;
		if (n > 0 && l[n - 1] == '\r')
			n--;
		cont = n > 0 && (l[0] == ' ' || l[0] == '\t');
		if (cont && field_line(l, n, true)) {
			char *nv;

			if (skipping || value == NULL)
				continue;
			if ((nv = realloc(value, vlen + n + 2)) == NULL)
				break;
			value = nv;
			value[vlen++] = '\n';
			memcpy(value + vlen, l, n);
			vlen += n;
			value[vlen] = '\0';
			continue;
		}
		/* The field so far is complete. */
		if (value != NULL) {
			if (taken < FILTER_MAX_FIELDS &&
			    edits_header(ed, HE_INSERT, base + taken, name, value) == 0)
				taken++;
			else
				dropped++;
			free(name);
			free(value);
			name = value = NULL;
		}
		if (n == 0 || last)
			break;		/* the end of the header fields it gave */
		skipping = !field_line(l, n, false);
		if (skipping) {
			dropped++;
			continue;
		}
		{
			const char *colon = memchr(l, ':', n);
			size_t nn = (size_t)(colon - l);

			name = strndup(l, nn);
			value = strndup(colon + 1, n - nn - 1);
			vlen = n - nn - 1;
			if (name == NULL || value == NULL)
				break;
		}
	}
	free(name);
	free(value);
	if (dropped > 0)
		log_msg(LOG_NOTICE, "event=filter id=%s dropped=%u reason=\"not a header field, "
		    "or past %d fields or %d octets\"", delivery_id(d), dropped,
		    FILTER_MAX_FIELDS, FILTER_MAX_OUTPUT);
	return taken;
}

/*
 * Has the filter exited?  Then what it left in its process group (a
 * background child) is killed before it is reaped: until then, as a
 * zombie, it holds the group's id, which no new process can take.
 */
static bool
gone(pid_t pid, int *status)
{
	siginfo_t si;

	memset(&si, 0, sizeof(si));
	if (waitid(P_PID, (id_t)pid, &si, WEXITED | WNOHANG | WNOWAIT) == -1 || si.si_pid != pid)
		return false;
	(void)kill(-pid, SIGKILL);
	while (waitpid(pid, status, 0) == -1)
		if (errno != EINTR)
			return false;
	return true;
}

static void
reset_child(int in, int out, int err)
{
	sigset_t all;
	int sigs[] = { SIGPIPE, SIGTERM, SIGINT, SIGHUP, SIGCHLD, SIGALRM, SIGUSR1, SIGUSR2 };

	setpgid(0, 0);
	for (size_t i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++)
		signal(sigs[i], SIG_DFL);
	sigemptyset(&all);
	sigprocmask(SIG_SETMASK, &all, NULL);
	if (dup2(in, 0) == -1 || dup2(out, 1) == -1 || dup2(err, 2) == -1)
		_exit(111);
}

enum verdict
filter_run(const struct config *c, struct delivery *d, const struct filter_env *fe,
    struct vreply *vr, struct edits *ed)
{
	char *words = strdup(c->filter_command), *save = NULL;
	char *argv[FILTER_MAX_WORDS + 1], *env[16], *rcpts = NULL, errtext[FILTER_MAX_STDERR];
	char *out = malloc(FILTER_MAX_OUTPUT), esc[LOG_QUOTED(FILTER_MAX_STDERR)];
	size_t argc = 0, nenv = 0, outlen = 0, errlen = 0, rlen = 0, npieces;
	struct dpiece pieces[4];
	struct feeder f = { .fd = -1 };
	int in[2] = { -1, -1 }, po[2] = { -1, -1 }, pe[2] = { -1, -1 }, pidfd = -1;
	int status = 0;
	bool out_open = true, err_open = true, exited = false, timedout = false, cut = false;
	bool term = false;
	bool errcut = false;
	long long deadline = now_ms() + c->filter_timeout * 1000;
	enum verdict v = VD_TEMPFAIL;
	const char *what = "failed";
	pid_t pid = -1;
	unsigned added = 0;

	vr->code = 0;
	vr->enh[0] = vr->text[0] = '\0';
	if (words == NULL || out == NULL)
		goto done;
	for (char *w = strtok_r(words, " \t", &save); w != NULL && argc < FILTER_MAX_WORDS;
	    w = strtok_r(NULL, " \t", &save))
		argv[argc++] = w;
	argv[argc] = NULL;
	if (argc == 0)
		goto done;
	/* The envelope: the recipients after the milters' edits. */
	for (size_t i = 0; delivery_rcpt(d, i) != NULL; i++) {
		const char *r = delivery_rcpt(d, i);
		char *nr = realloc(rcpts, rlen + strlen(r) + 2);

		if (nr == NULL)
			goto done;
		rcpts = nr;
		if (rlen > 0)
			rcpts[rlen++] = ' ';
		memcpy(rcpts + rlen, r, strlen(r) + 1);
		rlen += strlen(r);
	}
	env[nenv++] = FILTER_PATH;
	if (!setv(env, &nenv, "MAILSLOT_CLIENT_ADDR", fe->client_addr) ||
	    !setv(env, &nenv, "MAILSLOT_CLIENT_NAME", fe->client_name) ||
	    !setv(env, &nenv, "MAILSLOT_HELO", fe->helo) ||
	    !setv(env, &nenv, "MAILSLOT_SENDER", delivery_sender(d)) ||
	    !setv(env, &nenv, "MAILSLOT_RECIPIENTS", rcpts ? rcpts : "") ||
	    !setv(env, &nenv, "MAILSLOT_TLS", fe->tls ? "yes" : "no") ||
	    !setv(env, &nenv, "MAILSLOT_QUEUE_ID", delivery_id(d)))
		goto done;
	env[nenv] = NULL;
	if ((npieces = delivery_first_copy(d, pieces)) == 0)
		goto done;
	if (pipe2(in, O_CLOEXEC) == -1 || pipe2(po, O_CLOEXEC) == -1 ||
	    pipe2(pe, O_CLOEXEC) == -1)
		goto done;
	if ((pid = fork()) == -1)
		goto done;
	if (pid == 0) {
		reset_child(in[0], po[1], pe[1]);
		execve(argv[0], argv, env);
		_exit(127);
	}
	(void)setpgid(pid, pid);	/* both sides: no race with the kill */
	close(in[0]);
	close(po[1]);
	close(pe[1]);
	in[0] = po[1] = pe[1] = -1;
	pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
	fcntl(in[1], F_SETFL, O_NONBLOCK);
	fcntl(po[0], F_SETFL, O_NONBLOCK);
	fcntl(pe[0], F_SETFL, O_NONBLOCK);
	f = (struct feeder){ .p = pieces, .n = npieces, .fd = in[1] };
	in[1] = -1;

	while (!exited || out_open || err_open) {
		struct pollfd pfd[4];
		nfds_t np = 0;
		int ifd = -1, iout = -1, ierr = -1, ipid = -1, left, r;

		if ((left = (int)(deadline - now_ms())) <= 0) {
			timedout = true;
			break;
		}
		if (io_terminate) {	/* SIGTERM: the session says 421 */
			term = true;
			break;
		}
		if (f.fd != -1) {
			ifd = (int)np;
			pfd[np++] = (struct pollfd){ .fd = f.fd, .events = POLLOUT };
		}
		if (out_open) {
			iout = (int)np;
			pfd[np++] = (struct pollfd){ .fd = po[0], .events = POLLIN };
		}
		if (err_open) {
			ierr = (int)np;
			pfd[np++] = (struct pollfd){ .fd = pe[0], .events = POLLIN };
		}
		if (!exited && pidfd != -1) {
			ipid = (int)np;
			pfd[np++] = (struct pollfd){ .fd = pidfd, .events = POLLIN };
		}
		if (pidfd == -1 && !exited && left > 50)
			left = 50;	/* no pidfd: look again soon */
		if ((r = poll(pfd, np, left)) == -1 && errno != EINTR)
			break;
		if (r <= 0 && pidfd != -1)
			continue;
		if (ifd != -1 && pfd[ifd].revents)
			feed(&f);
		if (iout != -1 && pfd[iout].revents)
			out_open = drain(po[0], out, &outlen, FILTER_MAX_OUTPUT, &cut);
		if (ierr != -1 && pfd[ierr].revents)
			err_open = drain(pe[0], errtext, &errlen, sizeof(errtext), &errcut);
		if (!exited && (ipid == -1 || pfd[ipid].revents) && gone(pid, &status)) {
			exited = true;
			/* What it wrote is in the pipes; what a child of its own holds is not waited for. */
			if (f.fd != -1) {
				close(f.fd);
				f.fd = -1;
			}
			if (out_open)
				(void)drain(po[0], out, &outlen, FILTER_MAX_OUTPUT, &cut);
			if (err_open)
				(void)drain(pe[0], errtext, &errlen, sizeof(errtext), &errcut);
			out_open = err_open = false;
		}
	}
	if (!exited) {
		kill(-pid, SIGKILL);
		kill(pid, SIGKILL);
		while (waitpid(pid, &status, 0) == -1 && errno == EINTR)
			;
		what = timedout ? "timeout" : term ? "shutdown" : "failed";
	} else if (WIFEXITED(status)) {
		switch (WEXITSTATUS(status)) {
		case 0:
			v = VD_ACCEPT;
			what = "accept";
			added = fields(d, out, outlen, cut, ed);
			break;
		case 100:
			v = VD_REJECT;
			what = "reject";
			vr->code = 554;
			strlcpy(vr->enh, "5.7.1", sizeof(vr->enh));
			reply_text(out, outlen, vr->text, FILTER_MAX_TEXT + 1);
			break;
		case 111:
		case 75:
			what = "defer";
			vr->code = 451;
			strlcpy(vr->enh, "4.7.1", sizeof(vr->enh));
			reply_text(out, outlen, vr->text, FILTER_MAX_TEXT + 1);
			break;
		default:
			what = "failed";
			break;
		}
	}
	if (errlen > 0)
		log_msg(LOG_NOTICE, "event=filter-stderr id=%s text=%s cut=%s", delivery_id(d),
		    log_quote(esc, sizeof(esc), errtext, errlen), errcut ? "yes" : "no");
	if (!exited)
		log_msg(LOG_WARNING, "event=filter id=%s result=%s pid=%ld killed=group",
		    delivery_id(d), what, (long)pid);
	else if (WIFSIGNALED(status))
		log_msg(LOG_WARNING, "event=filter id=%s result=failed signal=%d", delivery_id(d),
		    WTERMSIG(status));
	else
		log_msg(v == VD_ACCEPT ? LOG_INFO : LOG_NOTICE,
		    "event=filter id=%s result=%s exit=%d fields=%u", delivery_id(d), what,
		    WEXITSTATUS(status), added);
	pid = 0;
done:
	if (pid == -1)
		log_msg(LOG_ERR, "event=error op=filter error=\"%s\"",
		    argc == 0 ? "empty filter_command" : strerror(errno));
	for (int i = 0; i < 2; i++) {
		if (in[i] != -1)
			close(in[i]);
		if (po[i] != -1)
			close(po[i]);
		if (pe[i] != -1)
			close(pe[i]);
	}
	if (f.fd != -1)
		close(f.fd);
	if (pidfd != -1)
		close(pidfd);
	for (size_t i = 1; i < nenv; i++)
		free(env[i]);
	free(rcpts);
	free(words);
	free(out);
	return v;
}
