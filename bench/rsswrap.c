/*
 * rsswrap.c: run a program and record its peak RSS (BENCHMARKS.md).
 *
 *	rsswrap FILE PROGRAM [ARG]...
 *
 * systemd-socket-activate execs what it runs, so the process it starts
 * cannot be asked for its children's usage afterwards; this sits in between:
 * fork, exec PROGRAM (fds 0, 1 and 2 are passed on untouched), wait4(), then
 * append one line "maxrss_kib=N cpu_us=T status=S" to FILE (T: user and
 * system CPU time of the child, exec included) with O_APPEND, a single
 * write, so concurrent sessions do not mix their lines.  The exit status is
 * the program's.
 *
 * ru_maxrss of the child is the largest RSS the child ever had, the copy of
 * this program before the exec included (Linux carries it over exec); that
 * copy holds only the few anonymous pages touched here, far below what
 * any program that follows needs, so the maximum is the program's own.
 */
#include <sys/resource.h>
#include <sys/wait.h>

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

int
main(int argc, char *argv[])
{
	struct rusage ru;
	char line[128];
	pid_t pid;
	int status, fd, n;

	if (argc < 3) {
		fputs("usage: rsswrap FILE PROGRAM [ARG]...\n", stderr);
		return 100;
	}
	if ((pid = fork()) == -1)
		return 111;
	if (pid == 0) {
		execv(argv[2], argv + 2);
		_exit(127);
	}
	/*
	 * The session is the child's alone: this copy of fd 0 and 1 goes.
	 * A launcher that is stopped now must not lose the child's line.
	 */
	close(0);
	close(1);
	signal(SIGTERM, SIG_IGN);
	signal(SIGHUP, SIG_IGN);
	signal(SIGINT, SIG_IGN);
	while (wait4(pid, &status, 0, &ru) == -1)
		if (errno != EINTR)
			return 111;
	n = snprintf(line, sizeof(line), "maxrss_kib=%ld cpu_us=%lld status=%d\n",
	    ru.ru_maxrss,
	    (long long)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1000000 +
	    ru.ru_utime.tv_usec + ru.ru_stime.tv_usec,
	    WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status));
	if ((fd = open(argv[1], O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644)) != -1) {
		if (write(fd, line, (size_t)n) != n)
			status = 1;
		close(fd);
	}
	return WIFEXITED(status) ? WEXITSTATUS(status) : 111;
}
