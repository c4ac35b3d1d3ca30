/*
 * The Windows loop backend: one I/O completion port per loop.
 *
 * Why a completion port and not WaitForMultipleObjects: WaitForMultipleObjects stops at 64
 * handles (MAXIMUM_WAIT_OBJECTS), and one server alone keeps listen_backlog_size (default 50)
 * pipe instances waiting; a loop with a few servers and clients would need helper threads
 * to wait in groups of 64. A port takes any number of handles, wakes for exactly the objects
 * that completed, and PostQueuedCompletionStatus gives the cross-thread wakeup for free.
 *
 * Level-triggered like epoll: a packet only says "look at this object again"; the platform
 * layer (lsock__win_ready) answers with what the object is ready for now, and
 * lsock__backend_set queues a packet itself when a watcher starts on an object that is
 * already ready, so no readiness is lost between packets.
 */
#include "win.h"

#include <errno.h>
#include <stdlib.h>

#define MAX_EVENTS 128

struct lsock__backend {
    HANDLE port;
    OVERLAPPED_ENTRY events[MAX_EVENTS];
};

lsock__backend *lsock__backend_new(void)
{
    lsock__backend *b = malloc(sizeof *b);
    if (!b) return NULL;
    b->port = CreateIoCompletionPort(INVALID_HANDLE_VALUE, NULL, 0, 1);
    if (!b->port) {
        free(b);
        return NULL;
    }
    return b;
}

void lsock__backend_free(lsock__backend *b)
{
    CloseHandle(b->port);
    free(b);
}

int lsock__backend_set(lsock__backend *b, int fd, unsigned old, unsigned events)
{
    return lsock__win_watch(fd, b->port, events & ~old);
}

int lsock__backend_reports_again(void)
{
    /* Packets say "look again" once; what is left after a partial accept gets none. */
    return 0;
}

int lsock__backend_forget(lsock__backend *b, int fd, unsigned old, int shared)
{
    (void)shared; /* the backend's own table must always forget the descriptor */
    return lsock__backend_set(b, fd, old, 0);
}

int lsock__backend_poll(lsock__backend *b, int timeout, void (*report)(lsock_loop *, int, unsigned),
                        lsock_loop *loop)
{
    ULONG n = 0;
    DWORD ms = timeout < 0 ? INFINITE : (DWORD)timeout;
    if (!GetQueuedCompletionStatusEx(b->port, b->events, MAX_EVENTS, &n, ms, FALSE))
        return GetLastError() == WAIT_TIMEOUT ? 0 : -EIO;
    for (ULONG i = 0; i < n; i++) {
        ULONG_PTR key = b->events[i].lpCompletionKey;
        int dup = 0;
        for (ULONG j = 0; j < i && !dup; j++)
            dup = b->events[j].lpCompletionKey == key;
        if (dup) continue; /* one look per object and round is enough */
        int fd = -1;
        unsigned ev = lsock__win_ready(key, b->port, &fd);
        if (ev && fd >= 0) report(loop, fd, ev);
    }
    return (int)n;
}

int lsock__backend_fd(lsock__backend *b)
{
    return -1; /* a completion port is a HANDLE, not a descriptor another loop can poll */
}

const char *lsock__backend_name(void)
{
    return "iocp";
}
