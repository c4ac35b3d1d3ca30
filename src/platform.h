/*
 * The platform contract: what the portable core (the .c files in src/) asks of a platform layer
 * (src/unix/: AF_UNIX sockets; src/win/: named pipes) and of an event backend (src/unix/epoll.c,
 * src/unix/poll.c, src/win/iocp.c), chosen at build time. Nothing here is public. As nng's
 * core/platform.h, this is the whole seam: a new platform implements exactly these calls.
 *
 * Values. A descriptor (`int fd`) is the platform's own handle for a socket, a listener or a
 * wakeup channel: the descriptor itself on Unix, an index into a table of objects on Windows.
 * Calls return 0 or a count on success and a negative errno value on failure (-EAGAIN: would
 * block); the core maps them with lsock__connect_error() / lsock__listen_error().
 *
 * Lifetime. A descriptor returned by a call belongs to the core until it passes it to
 * lsock__plat_close() or lsock__plat_close_linger(), exactly once. Before closing a
 * descriptor that a backend watches, the core takes it out of the backend
 * (lsock__backend_forget()), so a backend never reports a closed or reused number. A backend
 * lives as long as its loop; lsock__backend_free() closes what lsock__backend_new() opened.
 *
 * Threads. Calls on different descriptors may run on different threads at once; one
 * descriptor is used by one thread at a time. A backend is used by its loop's thread only.
 * lsock__plat_wakeup_signal() is the one call that any thread may make on any loop's wakeup.
 *
 * Fork (Unix). A child made by fork() holds copies of every descriptor, backends included:
 * an epoll instance is one open file shared by parent and child, so what the child changes in
 * it changes the parent's loop. lsock__plat_fork_generation() tells a process from its
 * parent; the loop (loop.c) never touches a backend made under another generation, and
 * lsock_loop_fork() makes the child a new backend and wakeup channel. Descriptors carry a
 * fork stamp (lsock__plat_fork_stamp()) so that closing one that a fork may have copied
 * unregisters it first (a registration lives as long as its open file). Windows has no fork:
 * the generation and the stamps never change there.
 */
#ifndef LSOCK_PLATFORM_H
#define LSOCK_PLATFORM_H

#include "lsock.h"

#include <stddef.h>
#include <stdint.h>

/* Events a backend watches and reports. */
enum { LSOCK__READABLE = 1, LSOCK__WRITABLE = 2 };

/* Milliseconds of a monotonic clock. */
uint64_t lsock__now_ms(void);
/* Microseconds of the same clock (busy polling). */
uint64_t lsock__now_us(void);

/* ---- names ----------------------------------------------------------------------------- */

/* Resolves a name as Qt 6 does: absolute path as is, else $TMPDIR/name (or /tmp/name); in the
 * abstract namespace (LSOCK_ABSTRACT_NAMESPACE in options, where there is one) the name as
 * given, no directory in front. With LSOCK_PER_USER a bare name goes in the user's private
 * directory (Unix: made if missing, refused if unsafe; Windows: \\.\pipe\<SID>\name).
 * Returns 0 with *out malloc'd, -ENOMEM, or -EACCES with the reason in why. */
int lsock__name_resolve(const char *name, unsigned options, char **out, char *why, size_t whysize);
/* Why a resolved name can name no server here, as a constant text for the error
 * (LSOCK_ERR_INVALID_ARGUMENT), or NULL when it can. Windows refuses a pipe name that is empty
 * or has a "." or ".." component, which Win32 path rules would take out of \\.\pipe\; Unix
 * refuses nothing here. */
const char *lsock__name_check(const char *path);

/* ---- the event backend ------------------------------------------------------------------ */

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
/* Waits up to timeout ms (-1 forever) and calls report(loop, fd, revents) per ready fd.
 * Returns the number reported, or -errno (-EINTR when a signal came first). */
int lsock__backend_poll(lsock__backend *b, int timeout, void (*report)(lsock_loop *, int, unsigned),
                        lsock_loop *loop);
int lsock__backend_fd(lsock__backend *b);
/* 1 when a descriptor left ready is reported again at the next poll (level-triggered), so a
 * server may accept less than the whole backlog per event. */
int lsock__backend_reports_again(void);
const char *lsock__backend_name(void);

/* ---- sockets, listeners, wakeups ------------------------------------------------------- */

/* Forks and descriptors: take a stamp before creating a descriptor; when closing it,
 * lsock__plat_forked_since(stamp) tells whether a fork may have copied it into a child
 * (pthread_atfork handlers count forks; children made without them, posix_spawn and vfork,
 * run exec at once and close-on-exec drops their copies). Always 0 where there is no fork. */
/* Called by the platform in the thread that calls fork(), before it does (pthread_atfork):
 * bytes that a ready_read in progress announced but left in the kernel are buffered, so that
 * parent and child each hold them as they hold the rest of the buffer (socket_io.c). */
void lsock__socket_before_fork(void);
unsigned lsock__plat_fork_stamp(void);
int lsock__plat_forked_since(unsigned stamp);
/* Changes in a child made by fork() (each process has its own value; the parent's never
 * changes): a loop made under another generation was inherited across a fork. Always 0
 * where there is no fork. */
unsigned lsock__plat_fork_generation(void);

/* Negative results of lsock__plat_* are -errno values; lsock__connect_error and
 * lsock__listen_error map them. */
const char *lsock__plat_strerror(int err);

/* A new non-blocking, close-on-exec stream socket connected (or connecting) to path.
 * Returns the fd, or -errno (-EAGAIN: backlog full, retry). *fd_out receives the socket on
 * -EAGAIN too (the caller retries connect on it or closes it). */
int lsock__plat_connect(const char *path, int abstract, int *fd_out);
/* Retries connect on an fd that got -EAGAIN. 0 when connected, -errno otherwise. */
int lsock__plat_reconnect(int fd, const char *path, int abstract);
/* Binds and listens on path: a file name is bound in a private directory, given its mode
 * (access bits; none: the umask's) and linked into place listening; an abstract name is bound
 * as is. Windows: sddl, when not NULL, is the pipes' security descriptor instead of the one
 * the access bits make (checked by lsock__plat_check_sddl() before); Unix ignores it. Fills
 * dev/ino of the file lsock made, read before it appeared at path. fd or -errno (-EEXIST:
 * something appeared at path meanwhile). */
int lsock__plat_listen(const char *path, int abstract, unsigned access, const char *sddl,
                       int backlog, uint64_t *dev, uint64_t *ino);
/* Probes whether a live server listens on path: 1 yes, 0 no (refused), -errno otherwise. */
int lsock__plat_probe(const char *path);
/* Accepts one connection: fd, or -errno (-EAGAIN when none). */
int lsock__plat_accept(int lfd);
/* Descriptors that came with the bytes of one read (lsock_socket_attach_descriptors): at most
 * LSOCK__FDS_MAX per write, as Linux's SCM_MAX_FD. */
#define LSOCK__FDS_MAX 253
typedef struct lsock__fds_in {
    int count;     /* descriptors in fd[], owned by the caller from then on */
    int truncated; /* some were lost (MSG_CTRUNC: the process is out of descriptors) */
    int last;      /* they came with the last byte read (1) or with the first (0) */
    int more;      /* the read stopped short at their byte: more may be there already */
    intptr_t fd[LSOCK__FDS_MAX];
} lsock__fds_in;
/* Reads up to n bytes and the descriptors that came with them (into *in, whose count and
 * truncated the call sets): count, 0 on EOF, -errno (-EAGAIN when none). Retries EINTR. */
int64_t lsock__plat_read(int fd, void *buf, size_t n, lsock__fds_in *in);
/* The same into two buffers: an bytes into a, then what follows into b (bn may be 0), in one
 * call (Unix: one recvmsg; Windows: a only, it is never asked for more, see
 * lsock__plat_bytes_in_kernel). */
int64_t lsock__plat_read2(int fd, void *a, size_t an, void *b, size_t bn, lsock__fds_in *in);
/* Writes up to n bytes without SIGPIPE: count, or -errno (-EAGAIN when full). */
int64_t lsock__plat_write(int fd, const void *buf, size_t n);
/* The same for the concatenation of n buffers (1 <= n <= LSOCK__IOV_BATCH), in one call. */
#define LSOCK__IOV_BATCH 64
int64_t lsock__plat_writev(int fd, const lsock_iovec *iov, int n);
/* A loop-less socket's descriptor is left blocking (every other call passes MSG_DONTWAIT)
 * so that wait_for_ready_read(-1) blocks in recv() itself, one system call as with raw
 * blocking I/O (unless the socket reads large pieces: it then polls, and its reads go
 * straight into the caller's buffer, see defer_read in socket_io.c). set_blocking may decline
 * (-errno); the core then polls as usual. */
int64_t lsock__plat_read_blocking(int fd, void *buf, size_t n, lsock__fds_in *in);
int lsock__plat_set_blocking(int fd);
/* Writes up to n (> 0) bytes with count descriptors attached to the first of them (Unix:
 * SCM_RIGHTS; the peer receives copies, the caller keeps fds). Count as lsock__plat_write;
 * the descriptors went when the count is > 0. */
int64_t lsock__plat_write_fds(int fd, const void *buf, size_t n, const intptr_t *fds, int count);
/* A copy of the caller's descriptor for the connection fd to send later: Unix, a close-on-exec
 * duplicate in this process; Windows, a duplicate made in the peer's process (its value is
 * what travels). 0 with *out; -EBADF for no open descriptor, -EACCES when the peer's process
 * may not receive it, -ENOTSUP for a connection that carries none (Windows without
 * lsock__plat_pass_descriptors), -EMFILE, -errno. */
int lsock__plat_dup_descriptor(int fd, intptr_t handle, intptr_t *out);
/* Lets go of a copy made by lsock__plat_dup_descriptor for fd: sent (Unix: the peer has its
 * own, ours is closed; Windows: nothing, it is the peer's), or never sent (Windows: closed in
 * the peer's process while fd is open). */
void lsock__plat_release_descriptor(int fd, intptr_t handle, int sent);
/* Closes a descriptor or handle that lsock received. */
void lsock__plat_close_descriptor(intptr_t handle);
/* Marks a new connection (before its first byte) as one that carries descriptors
 * (LSOCK_PASS_DESCRIPTORS). Windows: both directions are framed so that handle values travel
 * in the stream (src/win/platform.c); Unix: nothing changes, SCM_RIGHTS needs no framing. */
void lsock__plat_pass_descriptors(int fd);
/* Bytes waiting in the kernel to be read from a connection (FIONREAD), for reads straight into
 * the application's buffer (socket_io.c). Returns the count, or -1 where the platform has no
 * such count worth taking: Windows, whose reads copy from lsock's own read-ahead anyway. */
int64_t lsock__plat_bytes_in_kernel(int fd);
/* Raises the kernel's send buffer of a connection that streams (best effort). */
void lsock__plat_grow_send_buffer(int fd);
void lsock__plat_close(int fd);
/* Closes a connection at its end (disconnect, abort, free). What the platform took but has
 * not delivered yet gets up to linger_ms more to reach the peer: -1 the platform's default
 * bound, 0 none (an abort: dropped at once). Windows: a write still in flight, which lingers
 * at most that long; lsock__plat_close(fd) is linger_ms -1. Unix: the kernel delivers what it
 * took whatever linger_ms says. */
void lsock__plat_close_linger(int fd, int linger_ms);
/* 1 while bytes lsock__plat_write() took are still on their way to the peer and would be lost
 * if the process ended (Windows: a write in flight), else 0. Unix: 0, the kernel has them. A
 * graceful disconnect stays CLOSING until this is 0, as Qt's waits for its pipe writer. */
int lsock__plat_write_in_flight(int fd);
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
/* Whether the peer of fd runs as this process's user (Unix: its uid, from the kernel, equals
 * the effective uid; Windows: the user SID of the peer's process equals this process's).
 * 1 yes; 0 no, with who it is in detail ("uid 65534", "S-1-5-..."); -errno when it cannot be
 * told (a caller that requires the same user refuses then too). */
int lsock__plat_peer_same_user(int fd, char *detail, size_t size);
/* The user SID of the peer's process as a string. -ENOTSUP on Unix, -ERANGE if size is too
 * small, -EACCES when the process cannot be asked. */
int lsock__plat_peer_sid(int fd, char *buf, size_t size);
/* Checks SDDL for the pipes of a listener: 0, -EINVAL (unparsable), -ENOTSUP (Unix). */
int lsock__plat_check_sddl(const char *sddl);
/* The listening socket a service manager passed for name (LISTEN_PID, LISTEN_FDS,
 * LISTEN_FDNAMES; else by its bound path, equal to path): 1 with *fd (made non-blocking and
 * close-on-exec), 0 when none is passed or none matches, -errno for a match that is no
 * listening AF_UNIX stream socket (-EINVAL) or cannot be used. Always 0 on Windows. */
int lsock__plat_activated_listener(const char *name, const char *path, int *fd);
/* Removes path if it is still the file (dev, ino): 0, -EEXIST when another file is there,
 * -errno (-ENOENT: none). */
int lsock__plat_unlink_if_same(const char *path, uint64_t dev, uint64_t ino);
/* Removes a socket file (lsock_remove_server): 0 or -errno; -ENOENT counts as removed, and
 * anything that is not a socket file is left (-ENOTSOCK). */
int lsock__plat_remove(const char *path);
/* What is at a server's name, not following a symlink. */
typedef struct lsock__file_info {
    int exists;
    int is_socket;
    int ours; /* owned by the process's effective user (Windows: always) */
    uint64_t dev, ino;
} lsock__file_info;
/* Fills *out (exists 0 when nothing is there): 0, or -errno when path cannot be looked at. */
int lsock__plat_file_info(const char *path, lsock__file_info *out);
/* Serialises the reclaiming of stale socket files between processes: an exclusive lock on
 * the directory of path, waited for up to wait_ms. A token for lsock__plat_name_unlock, or
 * -errno (-EWOULDBLOCK: still held elsewhere when the wait ended). */
int lsock__plat_name_lock(const char *path, int wait_ms);
void lsock__plat_name_unlock(int lock);
/* Whether an accepted peer passes the access bits of an abstract server (which has no file
 * mode): same effective uid (USER), same gid (GROUP), anyone (OTHER). 1 or 0. */
int lsock__plat_peer_allowed(int fd, unsigned access);
/* Whether LSOCK_ABSTRACT_NAMESPACE means anything here: 0 where it is ignored (Windows: pipe
 * names have no abstract namespace, as in Qt), so a name is examined as any other. */
int lsock__plat_has_abstract(void);
/* This process's id: a server inherited across fork() knows it is not in its creator. */
int64_t lsock__plat_process_id(void);
/* The login session of this process as a short text for single-instance names: Unix,
 * $XDG_SESSION_ID when it is 1 to 64 of [A-Za-z0-9_-], else "sid-" and getsid(0); Windows,
 * "ws-" and the process's session id. */
void lsock__plat_session_id(char *buf, size_t size);
/* The address a socket is bound to, as a malloc'd path in *out; *abstract says whether it
 * is in the abstract namespace. With peer, the address of the peer first, and the socket's own
 * when the peer has none (an accepted socket's peer is unbound), as Qt 6 describes an adopted
 * descriptor. 0 or -errno (-ENOTSUP where a descriptor has no such name). */
int lsock__plat_local_name(int fd, int peer, char **out, int *abstract);
/* Maximum length of a resolved name that fits a socket address as is (sun_path minus the
 * NUL); longer paths may still work (see lsock__plat_name_limit_text). */
size_t lsock__plat_name_max(void);
/* The explanation given with a too-long name error. */
const char *lsock__plat_name_limit_text(void);
/* The loop's wakeup channel: rfd becomes readable after lsock__plat_wakeup_signal(wfd). */
int lsock__plat_wakeup_open(int *rfd, int *wfd);
void lsock__plat_wakeup_signal(int wfd);
void lsock__plat_wakeup_drain(int rfd);

/* ---- test hooks ------------------------------------------------------------------------ */

/* Set only by tests (which link the static library), to run something at an exact point of a
 * race; NULL otherwise. */
/* listen() with LSOCK_RECLAIM_STALE: called with the path of a stale socket file the server is
 * about to remove (server.c). */
extern void (*lsock__test_hook_reclaim)(const char *path);
/* Called with the path of a listening socket's file right after it appears at its public name
 * (src/unix/platform.c). */
extern void (*lsock__test_hook_published)(const char *path);
/* Windows (src/win/platform.c): while not 0, every new pipe instance fails with this errno
 * (as when handles or memory run out). */
extern int lsock__test_pipe_instance_fail;
/* While not 0, lsock__plat_peer_same_user() reports every peer as another user: the paths
 * that refuse one, where a test cannot run a process as a second user (Windows under Wine, or
 * Unix without root). */
extern int lsock__test_foreign_user;
/* While not 0, lsock__plat_dup_descriptor() fails with this errno: the path of a handle that
 * cannot be duplicated into the peer (access denied), which no test can provoke under Wine.
 * Unix never looks at it. */
extern int lsock__test_dup_fail;

#endif
