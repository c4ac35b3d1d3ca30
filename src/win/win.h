/*
 * Shared between the Windows platform layer (platform.c) and its loop backend (iocp.c).
 *
 * The seam's `int fd` is, on Windows, an index into a process-wide table of objects (see
 * platform.c): a connected pipe end, a listener with its waiting pipe instances, or a loop's
 * wakeup. The core never sees a HANDLE, so it stays the same on both platforms.
 */
#ifndef LSOCK_WIN_H
#define LSOCK_WIN_H

#ifndef WIN32_LEAN_AND_MEAN
#define WIN32_LEAN_AND_MEAN
#endif
#include <windows.h>

#include "platform.h"

/* The completion key of fd's object: its index with the slot's generation, so that a packet
 * queued for an object that is gone is recognised and dropped. */
ULONG_PTR lsock__win_key(int fd);
/* Associates fd's handles with port (once), starts a read when events ask for reading, and
 * queues a packet when the object is already ready for events. 0 or -errno. */
int lsock__win_watch(int fd, HANDLE port, unsigned events);
/* What a completion packet with key means: fills *fd_out with the descriptor to report (a
 * listener for one of its pipe instances) and returns the ready events (0: nothing, or a
 * stale packet). Only for packets from port. */
unsigned lsock__win_ready(ULONG_PTR key, HANDLE port, int *fd_out);

/* This process's user SID as a string ("S-1-5-21-..."): 0, -ERANGE, -EACCES. */
int lsock__win_own_sid(char *buf, size_t size);

#endif
