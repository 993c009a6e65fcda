/*
 * bench/noopmilter.c: a milter that accepts everything, for `make bench`
 * row (vi): what the milter round trips cost mailslot per message.
 *
 *	noopmilter SOCKETPATH
 *
 * Listens on a unix socket, a thread per connection.  It negotiates
 * version 6 with no actions and no skipped or no-reply steps (so every
 * step is a round trip, the dearest case), and answers continue to each
 * step, accept at the end of the body; macros, abort and quit need no
 * answer.  Not hardened: a bench tool for loopback.
 */
#include <sys/socket.h>
#include <sys/un.h>

#include <arpa/inet.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int
full(int fd, void *p, size_t n)
{
	char *c = p;

	while (n > 0) {
		ssize_t r = read(fd, c, n);

		if (r <= 0)
			return -1;
		c += r;
		n -= (size_t)r;
	}
	return 0;
}

static int
reply(int fd, char cmd, const void *data, uint32_t n)
{
	char buf[64];
	uint32_t len = htonl(n + 1);

	memcpy(buf, &len, 4);
	buf[4] = cmd;
	memcpy(buf + 5, data, n);
	return write(fd, buf, 5 + n) == (ssize_t)(5 + n) ? 0 : -1;
}

static void *
serve(void *arg)
{
	int fd = (int)(intptr_t)arg;
	static _Thread_local char data[1 << 17];

	for (;;) {
		uint32_t len;
		char cmd;
		int r = 0;

		if (full(fd, &len, 4) == -1)
			break;
		len = ntohl(len);
		if (len == 0 || len > sizeof(data) + 1 || full(fd, &cmd, 1) == -1)
			break;
		/* the data is not looked at */
		if (len > 1 && full(fd, data, len - 1) == -1)
			break;
		switch (cmd) {
		case 'O': {
			uint32_t v[3] = { htonl(6), 0, 0 };

			r = reply(fd, 'O', v, sizeof(v));
			break;
		}
		case 'D': case 'A':
			break;
		case 'Q':
			r = -1;
			break;
		case 'E':
			r = reply(fd, 'a', NULL, 0);
			break;
		default:
			r = reply(fd, 'c', NULL, 0);
		}
		if (r == -1)
			break;
	}
	close(fd);
	return NULL;
}

int
main(int argc, char *argv[])
{
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	int s;

	if (argc != 2 || strlen(argv[1]) >= sizeof(sun.sun_path)) {
		fprintf(stderr, "usage: noopmilter SOCKETPATH\n");
		return 64;
	}
	signal(SIGPIPE, SIG_IGN);
	memcpy(sun.sun_path, argv[1], strlen(argv[1]) + 1);
	unlink(argv[1]);
	if ((s = socket(AF_UNIX, SOCK_STREAM, 0)) == -1 ||
	    bind(s, (struct sockaddr *)&sun, sizeof(sun)) == -1 || listen(s, 128) == -1) {
		perror("noopmilter");
		return 1;
	}
	for (;;) {
		int c = accept(s, NULL, NULL);
		pthread_t t;

		if (c == -1)
			continue;
		if (pthread_create(&t, NULL, serve, (void *)(intptr_t)c) != 0)
			close(c);
		else
			pthread_detach(t);
	}
}
