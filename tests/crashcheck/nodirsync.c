/*
 * nodirsync.c: a deliberately broken mailslot, for the crash checker's own
 * test.  Preloaded, it turns fsync() and fdatasync() of a directory into a
 * no-op that reports success, so a new name is never made durable; the
 * checker must then report acknowledged messages lost.
 */
#define _GNU_SOURCE
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

static int
is_dir(int fd)
{
	struct stat st;

	return fstat(fd, &st) == 0 && S_ISDIR(st.st_mode);
}

int
fsync(int fd)
{
	return is_dir(fd) ? 0 : (int)syscall(SYS_fsync, fd);
}

int
fdatasync(int fd)
{
	return is_dir(fd) ? 0 : (int)syscall(SYS_fdatasync, fd);
}
