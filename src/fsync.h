#ifndef MAILSLOT_FSYNC_H
#define MAILSLOT_FSYNC_H

#include <stddef.h>

/*
 * fsync n descriptors, all at once where the kernel allows (io_uring), else
 * one after the other.  errs[i] gets 0 or the errno of fds[i]'s fsync.
 */
void fsync_all(const int *fds, int *errs, size_t n);

#endif
