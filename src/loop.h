/*
 * The loop's internals, for the objects that run on it (socket*.c, server.c) and for loop.c
 * itself: watchers of descriptors, deferred work, and the loop's counters. Timers are public
 * (lsock_timer in lsock.h); their heap is private to loop.c. Nothing here is public.
 *
 * A watcher (lsock__io) is one descriptor with a callback: the loop installs in its backend
 * what the watcher wants (lsock__io_start / lsock__io_stop) and calls back with what the
 * backend reports. Callbacks may stop or free any watcher, timer or object, the one being
 * dispatched included: watchers are looked up by descriptor for every reported event.
 * Deferred work (lsock__pending) runs at the next iteration, before the backend is polled.
 */
#ifndef LSOCK_LOOP_H
#define LSOCK_LOOP_H

#include "platform.h"

#include <stddef.h>
#include <stdint.h>

typedef struct lsock__io lsock__io;
typedef void (*lsock__io_cb)(lsock__io *io, unsigned revents);

struct lsock__io {
    int fd;
    unsigned events;    /* wanted */
    unsigned installed; /* what the backend watches now */
    lsock__io_cb cb;
    void *data;
};

/* Work deferred to the next loop iteration (e.g. bytes_written after a direct write). An
 * intrusive node of a circular doubly-linked list: queued and cancelled in O(1), wherever it
 * is (the loop's queue or the snapshot a run of the queue works through). */
typedef struct lsock__pending lsock__pending;
struct lsock__pending {
    lsock__pending *next, *prev;
    void (*cb)(lsock__pending *p);
    int queued;
};

void lsock__io_init(lsock__io *io, int fd, lsock__io_cb cb, void *data);
/* Adds events to what io watches. Returns 0 or -errno (-ENOMEM, the backend's error, e.g.
 * -ENOSPC from epoll_ctl, or -EPERM on a loop inherited across fork()); on failure io watches
 * what it watched before. */
int lsock__io_start(lsock_loop *loop, lsock__io *io, unsigned events);
/* Failure injection for tests: when non-zero, the next lsock__io_start() that would change
 * what the backend watches fails with -lsock__test_io_start_fail, which then resets to 0. */
extern int lsock__test_io_start_fail;
/* Removes events; with all events removed the descriptor leaves the backend. */
void lsock__io_stop(lsock_loop *loop, lsock__io *io, unsigned events);
/* Stops io for good: its descriptor is closed right after. shared: see lsock__backend_forget. */
void lsock__io_close(lsock_loop *loop, lsock__io *io, int shared);
/* Queues p to run at the next iteration (once, however often it is queued). */
void lsock__pending_queue(lsock_loop *loop, lsock__pending *p);
void lsock__pending_cancel(lsock_loop *loop, lsock__pending *p);
/* Objects (sockets, servers, timers) that keep lsock_loop_free() from freeing the loop. */
void lsock__loop_ref_objects(lsock_loop *loop, int delta);
/* Listening servers: work for lsock_loop_run() even while accepting is paused. */
void lsock__loop_ref_listeners(lsock_loop *loop, int delta);
/* How many times the loop has polled its backend (a new value per iteration). */
uint64_t lsock__loop_iteration(const lsock_loop *loop);
/* Whether this process is a child of fork() that inherited the loop (no lsock_loop_fork()). */
int lsock__loop_inherited(const lsock_loop *loop);
/* A 64 KiB scratch area for reads on this loop. */
char *lsock__loop_scratch(lsock_loop *loop, size_t *size);

#endif
