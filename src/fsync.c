/*
 * fsync.c: many fsyncs at once.
 *
 * One after the other, every fsync waits for a journal commit and a disk
 * cache flush of its own: ten copies of a message for ten Maildirs cost
 * twenty of them (ten files, then ten new/ directories).  Submitted
 * together, they run at once, and the file system serves them with one or
 * two: the journal takes all the pending ones into one commit, and the
 * block layer merges the flushes.
 *
 * They are submitted with Linux AIO (IOCB_CMD_FSYNC, since 4.18), which
 * runs each on a kernel worker.  The context is set up on first use and
 * kept: tearing it down waits for an RCU grace period (tens of
 * milliseconds), at io_destroy() as at exit, which is why main() closes the
 * connection before it returns.  io_uring was measured too: its workers
 * are started one by one for each new process, and it served ten fsyncs no
 * faster than a plain loop.  Where AIO is missing or refused (ENOSYS,
 * EPERM under seccomp, EAGAIN past fs.aio-max-nr), or stops answering,
 * whatever is left is synced one by one.
 *
 * A failed fsync is not tried again: after one, a second can report
 * success for data that was lost.
 */
#include <sys/syscall.h>

#include <linux/aio_abi.h>

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>

#include "fsync.h"

#define BATCH	16

static aio_context_t ctx;
static int aio_state;		/* 0 untried, 1 ready, -1 not to be used */

static bool
aio_ready(void)
{
	if (aio_state == 0)
		aio_state = syscall(SYS_io_setup, BATCH, &ctx) == 0 ? 1 : -1;
	return aio_state == 1;
}

/*
 * fsync fds[0..n) (n <= BATCH) through AIO: how many have their answer in
 * errs.  After a failure the context is not used again: answers still due
 * could be taken for those of a later call.
 */
static size_t
aio_fsync(const int *fds, int *errs, size_t n)
{
	struct iocb cb[BATCH], *cbp[BATCH];
	struct io_event ev[BATCH];
	long sub, got = 0;

	memset(cb, 0, n * sizeof(cb[0]));
	for (size_t i = 0; i < n; i++) {
		cb[i].aio_lio_opcode = IOCB_CMD_FSYNC;
		cb[i].aio_fildes = (uint32_t)fds[i];
		cb[i].aio_data = i;
		cbp[i] = &cb[i];
	}
	if ((sub = syscall(SYS_io_submit, ctx, (long)n, cbp)) <= 0) {
		aio_state = -1;
		return 0;
	}
	while (got < sub) {
		long r = syscall(SYS_io_getevents, ctx, sub - got, sub - got, ev, NULL);

		if (r == -1 && errno == EINTR)
			continue;
		if (r <= 0) {
			aio_state = -1;
			return 0;	/* unknown: all of them again, by hand */
		}
		for (long j = 0; j < r; j++)
			if (ev[j].data < n)
				errs[ev[j].data] = ev[j].res < 0 ? (int)-ev[j].res : 0;
		got += r;
	}
	return (size_t)sub;
}

void
fsync_all(const int *fds, int *errs, size_t n)
{
	size_t done = 0;

	if (n > 1 && aio_ready())
		while (done < n) {
			size_t k = aio_fsync(fds + done, errs + done,
			    n - done < BATCH ? n - done : BATCH);

			if (k == 0)
				break;
			done += k;
		}
	for (; done < n; done++)
		errs[done] = fsync(fds[done]) == -1 ? errno : 0;
}
