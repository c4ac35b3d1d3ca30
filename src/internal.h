/*
 * Internal declarations shared by the portable core (the .c files in src/) and the platform layer
 * (src/unix/, later src/win/). Nothing here is public. Cross-file names carry the lsock__
 * prefix; file-local statics carry none.
 *
 * The seam between core and platform:
 *  - lsock__io: one watched descriptor (or, on Windows, handle) with a callback; the loop's
 *    backend (epoll.c / poll.c) tells the loop which watchers are ready.
 *  - lsock__plat_*: the socket operations (connect, accept, read, write, listen, ...), each
 *    returning 0 / a count on success and a negative lsock__perr on failure.
 */
#ifndef LSOCK_INTERNAL_H
#define LSOCK_INTERNAL_H

#include "lsock.h"
#include "buffer.h"

#include <stdint.h>
#include <stddef.h>

/* ---- errors ---------------------------------------------------------------------------- */

/* An error with the text of its call: "lsock_socket_connect: Connection refused". */
typedef struct lsock__errinfo {
    lsock_error code;
    char text[160];
} lsock__errinfo;

void lsock__err_set(lsock__errinfo *e, lsock_error code, const char *call, const char *detail);
void lsock__err_clear(lsock__errinfo *e);
/* The one error mapping: -errno (or errno) of connect / of bind, listen and their files. */
lsock_error lsock__connect_error(int err);
lsock_error lsock__listen_error(int err);

/* ---- names ----------------------------------------------------------------------------- */

/* Resolves a name as Qt does: absolute path as is, else $TMPDIR/name (or /tmp/name). Returns
 * a malloc'd string, or NULL on no memory. */
char *lsock__name_resolve(const char *name);

/* ---- loop internals -------------------------------------------------------------------- */

enum { LSOCK__READABLE = 1, LSOCK__WRITABLE = 2 };

typedef struct lsock__io lsock__io;
typedef void (*lsock__io_cb)(lsock__io *io, unsigned revents);

struct lsock__io {
    int fd;
    unsigned events;    /* wanted */
    unsigned installed; /* what the backend watches now */
    lsock__io_cb cb;
    void *data;
};

/* Work deferred to the next loop iteration (e.g. bytes_written after a direct write). */
typedef struct lsock__pending lsock__pending;
struct lsock__pending {
    lsock__pending *next;
    void (*cb)(lsock__pending *p);
    int queued;
    unsigned gen;
};

void lsock__io_init(lsock__io *io, int fd, lsock__io_cb cb, void *data);
/* Adds events to what io watches. Returns 0 or -errno (-ENOMEM, or the backend's error, e.g.
 * -ENOSPC from epoll_ctl); on failure io watches what it watched before. */
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
/* A 64 KiB scratch area for reads on this loop. */
char *lsock__loop_scratch(lsock_loop *loop, size_t *size);

uint64_t lsock__now_ms(void);

/* The backend (src/unix/epoll.c or src/unix/poll.c). */
typedef struct lsock__backend lsock__backend;
lsock__backend *lsock__backend_new(void);
void lsock__backend_free(lsock__backend *b);
/* Changes what the backend watches on fd from old to events (0: remove). 0 or -errno. */
int lsock__backend_set(lsock__backend *b, int fd, unsigned old, unsigned events);
/* Like lsock__backend_set(b, fd, old, 0), for a descriptor that is closed right after. Unless
 * shared (someone else may hold the open file: the descriptor was handed out or adopted, or
 * the process forked while it was open), a backend whose registrations close() ends (epoll)
 * may skip the system call. */
int lsock__backend_forget(lsock__backend *b, int fd, unsigned old, int shared);
/* Waits up to timeout ms (-1 forever) and calls report(loop, fd, revents) per ready fd. */
int lsock__backend_poll(lsock__backend *b, int timeout, void (*report)(lsock_loop *, int, unsigned),
                        lsock_loop *loop);
int lsock__backend_fd(lsock__backend *b);
/* 1 when a descriptor left ready is reported again at the next poll (level-triggered), so a
 * server may accept less than the whole backlog per event. */
int lsock__backend_reports_again(void);
const char *lsock__backend_name(void);

/* ---- platform: sockets (src/unix/platform.c) ------------------------------------------- */

/* Forks and descriptors: take a stamp before creating a descriptor; when closing it,
 * lsock__plat_forked_since(stamp) tells whether a fork may have copied it into a child
 * (pthread_atfork handlers count forks; children made without them, posix_spawn and vfork,
 * run exec at once and close-on-exec drops their copies). Always 0 where there is no fork. */
unsigned lsock__plat_fork_stamp(void);
int lsock__plat_forked_since(unsigned stamp);

/* Negative results of lsock__plat_* are -errno values; lsock__connect_error and
 * lsock__listen_error map them. */
const char *lsock__plat_strerror(int err);

/* A new non-blocking, close-on-exec stream socket connected (or connecting) to path.
 * Returns the fd, or -errno (-EAGAIN: backlog full, retry). *fd_out receives the socket on
 * -EAGAIN too (the caller retries connect on it or closes it). */
int lsock__plat_connect(const char *path, int abstract, int *fd_out);
/* Retries connect on an fd that got -EAGAIN. 0 when connected, -errno otherwise. */
int lsock__plat_reconnect(int fd, const char *path, int abstract);
/* Binds and listens on path; with access bits, does it in a private directory and moves
 * the socket into place with its final mode. Fills dev/ino of the file. fd or -errno. */
int lsock__plat_listen(const char *path, int abstract, unsigned access, int backlog, uint64_t *dev,
                       uint64_t *ino);
/* Probes whether a live server listens on path: 1 yes, 0 no (refused), -errno otherwise. */
int lsock__plat_probe(const char *path);
/* Accepts one connection: fd, or -errno (-EAGAIN when none). */
int lsock__plat_accept(int lfd);
/* Reads up to n bytes: count, 0 on EOF, -errno (-EAGAIN when none). Retries EINTR. */
int64_t lsock__plat_read(int fd, void *buf, size_t n);
/* Writes up to n bytes without SIGPIPE: count, or -errno (-EAGAIN when full). */
int64_t lsock__plat_write(int fd, const void *buf, size_t n);
/* A loop-less socket's descriptor is left blocking (every other call passes MSG_DONTWAIT)
 * so that wait_for_ready_read(-1) blocks in recv() itself, one system call as with raw
 * blocking I/O. set_blocking may decline (-errno); the core then polls as usual. */
int64_t lsock__plat_read_blocking(int fd, void *buf, size_t n);
int lsock__plat_set_blocking(int fd);
/* Raises the kernel's send buffer of a connection that streams (best effort). */
void lsock__plat_grow_send_buffer(int fd);
void lsock__plat_close(int fd);
/* Waits until fd has any of events or timeout ms pass (-1: forever). Returns the ready
 * events, 0 on timeout, -errno. */
int lsock__plat_wait(int fd, unsigned events, int timeout);
/* Sleeps up to ms without busy-waiting (used between connect retries without a loop). */
void lsock__plat_sleep_ms(int ms);
/* Adopts a descriptor (Unix) or HANDLE (Windows) from the user: a connected stream socket /
 * pipe end, or with listening, a listening socket. Returns the descriptor number the core
 * uses from then on, or -errno (-ENOTSOCK for other kinds); on failure the caller's
 * descriptor is left as it was. */
int lsock__plat_adopt(intptr_t handle, int listening);
/* The platform's own handle behind a core descriptor (the fd itself on Unix). */
intptr_t lsock__plat_native(int fd);
int lsock__plat_peer_credentials(int fd, lsock_credentials *out);
/* Removes path if it is still the file (dev, ino). */
void lsock__plat_unlink_if_same(const char *path, uint64_t dev, uint64_t ino);
/* Removes a socket file (lsock_remove_server): 0 or -errno; -ENOENT counts as removed. */
int lsock__plat_remove(const char *path);
int lsock__plat_file_exists(const char *path);
/* 1 if path is a socket file (not following symlinks), else 0. */
int lsock__plat_is_socket(const char *path);
/* The address a socket is bound to, as a malloc'd path in *out; *abstract says whether it
 * is in the abstract namespace. 0 or -errno. */
int lsock__plat_local_name(int fd, char **out, int *abstract);
/* Maximum length of a resolved name that fits a socket address as is (sun_path minus the
 * NUL); longer paths may still work (see lsock__plat_name_limit_text). */
size_t lsock__plat_name_max(void);
/* The explanation given with a too-long name error. */
const char *lsock__plat_name_limit_text(void);
/* The loop's wakeup channel: rfd becomes readable after lsock__plat_wakeup_signal(wfd). */
int lsock__plat_wakeup_open(int *rfd, int *wfd);
void lsock__plat_wakeup_signal(int wfd);
void lsock__plat_wakeup_drain(int rfd);

/* ---- socket and server, shared between socket.c and server.c ---------------------------- */

/* Makes a connected socket on loop for an accepted fd (server use). NULL on no memory. */
lsock_socket *lsock__socket_from_accepted(lsock_loop *loop, int fd, unsigned fork_stamp,
                                          const char *name, const char *full);
/* Starts watching an accepted socket handed to the user. */
void lsock__socket_activate(lsock_socket *s);

#endif
