/*
 * lsock: local inter-process communication with the model of Qt's QLocalSocket and
 * QLocalServer, in C. Unix domain sockets on Unix, named pipes on Windows.
 *
 * Two ways to use it:
 *  - event-driven: create an lsock_loop, give sockets and servers that loop, set callbacks,
 *    and run the loop with lsock_loop_run();
 *  - blocking: pass NULL as the loop and use the lsock_*_wait_for_*() calls, which block the
 *    calling thread on one object and fire its callbacks synchronously, as Qt's waitFor*() do.
 *    The wait calls also work on objects that have a loop.
 *
 * Threads: one loop per thread. An object is used only from the thread that runs its loop (an
 * object without a loop from one thread at a time). lsock_loop_wakeup() is the one call that is
 * safe from any thread.
 *
 * Fork (Unix): a child made with fork() shares its parent's descriptors, the open file of the
 * epoll backend among them. The rule, as libuv's: objects inherited by a child never change
 * anything of the parent's.
 *  - In the child, freeing, closing or aborting an inherited socket, server, timer or loop
 *    only lets go of the child's copies (small writes the parent had gathered, see
 *    lsock_socket_write(), stay the parent's to send): the parent's loop keeps watching what
 *    it watched, and a server removes its socket file only in the process that created it (so
 *    a child's lsock_server_free() never unlinks the parent's live name).
 *  - An inherited loop is not run: lsock_loop_run() returns -1 in the child (a run that was
 *    under way when a callback forked returns -1 as soon as that callback returns, having
 *    dispatched nothing more: the rest of its events are the parent's), and anything
 *    that would make the loop watch a descriptor (a write that has to be queued, a connect)
 *    fails on that object with LSOCK_ERR_SOCKET_RESOURCE, instead of changing the backend the
 *    parent polls.
 *  - A child that wants to keep using an inherited loop calls lsock_loop_fork() first: the
 *    loop gets a backend and a wakeup channel of its own, watching what it watched before,
 *    and every inherited object on it works in the child from then on. The parent's objects
 *    are not affected.
 *  - Loop-less objects (blocking use) need nothing: what a child does on an inherited
 *    connection (reading, writing) is shared with the parent as with any descriptor. Bytes
 *    that a wait_for_ready_read() of the parent reported but left in the kernel (see
 *    lsock_socket_read()) stay the parent's: the child's copy counts none of them.
 * Windows has no fork(); lsock_loop_fork() has nothing to do there.
 *
 * Errors: calls that fail return false, -1 or NULL; the object's error()/error_string() then
 * say why, and the string names the call that failed ("lsock_socket_connect: Connection
 * refused"). A NULL object argument makes a call fail without touching anything.
 *
 * Ownership: every object is created by its _new() call and released by its _free() call.
 * Strings returned by the library belong to the object and live until the next call that
 * changes them or the object is freed; buffers returned by lsock_socket_read_all() belong to
 * the caller (free()).
 */
#ifndef LSOCK_H
#define LSOCK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(_WIN32) && defined(LSOCK_SHARED)
#ifdef LSOCK_BUILDING
#define LSOCK_API __declspec(dllexport)
#else
#define LSOCK_API __declspec(dllimport)
#endif
#elif defined(__GNUC__)
#define LSOCK_API __attribute__((visibility("default")))
#else
#define LSOCK_API
#endif

#define LSOCK_VERSION_MAJOR 0
#define LSOCK_VERSION_MINOR 1
#define LSOCK_VERSION_PATCH 0

typedef struct lsock_loop lsock_loop;
typedef struct lsock_socket lsock_socket;
typedef struct lsock_server lsock_server;
typedef struct lsock_timer lsock_timer;

/* QLocalSocket::LocalSocketState. */
typedef enum lsock_state {
    LSOCK_UNCONNECTED = 0, /* not connected */
    LSOCK_CONNECTING = 1,  /* connection being established (e.g. server backlog full) */
    LSOCK_CONNECTED = 2,   /* connection established */
    LSOCK_CLOSING = 3      /* about to close; data may still be waiting to be written */
} lsock_state;

/* QLocalSocket::LocalSocketError, plus OPERATION (not allowed in this state), ADDRESS_IN_USE
 * (server) and INVALID_ARGUMENT (a negative size, a NULL buffer, unknown flags, a name that
 * names no pipe on Windows). */
#define LSOCK_ERROR_MAP(X)                                                                         \
    X(NONE, "No error")                                                                            \
    X(CONNECTION_REFUSED, "Connection refused")                                                    \
    X(PEER_CLOSED, "Remote closed")                                                                \
    X(SERVER_NOT_FOUND, "Server not found")                                                        \
    X(SOCKET_ACCESS, "Permission denied")                                                          \
    X(SOCKET_RESOURCE, "Out of resources")                                                         \
    X(SOCKET_TIMEOUT, "Socket operation timed out")                                                \
    X(DATAGRAM_TOO_LARGE, "Datagram too large")                                                    \
    X(CONNECTION, "Connection error")                                                              \
    X(UNSUPPORTED_OPERATION, "Operation not supported")                                            \
    X(UNKNOWN, "Unknown error")                                                                    \
    X(OPERATION, "Operation not allowed in this state")                                            \
    X(ADDRESS_IN_USE, "Address in use")                                                            \
    X(INVALID_ARGUMENT, "Invalid argument")

typedef enum lsock_error {
#define LSOCK_ERROR_ENUM_(name, text) LSOCK_ERR_##name,
    LSOCK_ERROR_MAP(LSOCK_ERROR_ENUM_)
#undef LSOCK_ERROR_ENUM_
        LSOCK_ERR_COUNT_
} lsock_error;

/* The enumerator's name without prefix ("PEER_CLOSED"); "INVALID" for an unknown value. */
LSOCK_API const char *lsock_error_name(lsock_error err);
/* A short human-readable message ("Connection refused"); "Invalid error code" if unknown. */
LSOCK_API const char *lsock_strerror(lsock_error err);

/* Open modes (QIODevice::OpenMode subset). */
enum {
    LSOCK_READ_ONLY = 1,
    LSOCK_WRITE_ONLY = 2,
    LSOCK_READ_WRITE = LSOCK_READ_ONLY | LSOCK_WRITE_ONLY
};

/* lsock_loop_run() modes, as libuv's. */
typedef enum lsock_run_mode {
    LSOCK_RUN_DEFAULT = 0, /* run until no work remains or lsock_loop_stop() */
    LSOCK_RUN_ONCE = 1,    /* wait for events once (blocking), dispatch them, return */
    LSOCK_RUN_NOWAIT = 2   /* dispatch what is ready now, never block */
} lsock_run_mode;

/* Socket options (QLocalServer::SocketOption, plus RECLAIM_STALE and lsock's own). The access
 * options give the socket file its mode; on an abstract name (no file) they are checked per peer
 * instead (see lsock_server_set_socket_options()). On Windows they become the pipe's DACL: USER
 * grants the user everything, GROUP (the user's primary group) and OTHER (Everyone) read and
 * write only, never the right to create instances of the pipe, which stays with the server's
 * own user (Qt grants all three FILE_ALL_ACCESS, letting any of them serve the pipe's
 * clients); ABSTRACT_NAMESPACE and RECLAIM_STALE do nothing (no files; a pipe is never
 * stale). */
enum {
    LSOCK_USER_ACCESS = 1,        /* socket file mode 0700; abstract: peers of the same uid */
    LSOCK_GROUP_ACCESS = 2,       /* 0070; abstract: peers of the same gid */
    LSOCK_OTHER_ACCESS = 4,       /* 0007; abstract: any peer */
    LSOCK_WORLD_ACCESS = 7,       /* 0777 */
    LSOCK_ABSTRACT_NAMESPACE = 8, /* Linux abstract namespace: no file is made; as in Qt 6 the
                                     address is "\0" + the name as given (no directory in
                                     front, no padding), the full name the name itself */
    LSOCK_RECLAIM_STALE = 16,     /* listen() removes a stale socket file of the user's own */
    LSOCK_SAME_USER_ONLY = 32,    /* server: drop peers of another user before they are queued;
                                     socket: refuse a server of another user (SOCKET_ACCESS),
                                     never connected. See docs/security.md */
    LSOCK_PER_USER = 64,          /* bare names resolve in the user's private directory */
    LSOCK_PASS_DESCRIPTORS = 128  /* the connection carries descriptors (see
                                     lsock_socket_attach_descriptors): Windows frames the pipe
                                     stream for handle values, both ends set it; Unix: accepted,
                                     changes nothing */
};

/* ------------------------------------------------------------------------------------------ */
/* Version                                                                                    */

/* The library version as "MAJOR.MINOR.PATCH"; static storage. */
LSOCK_API const char *lsock_version(void);

/* ------------------------------------------------------------------------------------------ */
/* Loop                                                                                       */

/* A new event loop (epoll or poll backend, chosen at build time); NULL when out of resources. */
LSOCK_API lsock_loop *lsock_loop_new(void);
/* Frees the loop. Returns false and frees nothing while sockets, servers or timers still use
 * it (free them first) or while lsock_loop_run() runs it (free it after the run returns);
 * true on success or when loop is NULL. */
LSOCK_API bool lsock_loop_free(lsock_loop *loop);
/* Runs the loop in the given mode. Returns non-zero while work remains (sockets being read or
 * written, listening servers even while their queue is full, started timers), 0 when none
 * remains; -1 on a bad argument. */
LSOCK_API int lsock_loop_run(lsock_loop *loop, lsock_run_mode mode);
/* Makes the running lsock_loop_run() return after the current iteration. Loop thread only. */
LSOCK_API void lsock_loop_stop(lsock_loop *loop);
/* Wakes the loop from its wait; the one call safe from any thread. The loop returns from
 * LSOCK_RUN_ONCE, or goes round once more in LSOCK_RUN_DEFAULT. */
LSOCK_API void lsock_loop_wakeup(lsock_loop *loop);
/* A descriptor that becomes readable when the loop has work, to embed the loop in a foreign
 * one (GLib, Qt, libuv): when it is readable, call lsock_loop_run(loop, LSOCK_RUN_NOWAIT).
 * -1 where the backend cannot offer one (poll backend), and in a child of fork() until it
 * calls lsock_loop_fork() (the descriptor would be the parent's). */
LSOCK_API int lsock_loop_backend_fd(lsock_loop *loop);
/* Milliseconds until the loop next needs to run (next timer): 0 if now, -1 if no timer. */
LSOCK_API int lsock_loop_backend_timeout(lsock_loop *loop);
/* "epoll" or "poll" (Unix), "iocp" (Windows); static storage. */
LSOCK_API const char *lsock_loop_backend_name(lsock_loop *loop);
/* Busy polling, for latency-critical programs (off by default): before it blocks, the loop
 * asks the backend for events without waiting, again and again, for up to usecs
 * microseconds (never past its next timer), and blocks only if none came. A reply that
 * arrives within that time is taken without the wake-up of a sleeping thread, at the price of
 * a CPU kept busy meanwhile. 0 turns it off; values below 0 count as 0, above 1,000,000 (one
 * second) as 1,000,000. */
#define LSOCK_BUSY_POLL_MAX 1000000
LSOCK_API void lsock_loop_set_busy_poll(lsock_loop *loop, int usecs);
/* The busy-poll time in microseconds (0: off, or NULL). */
LSOCK_API int lsock_loop_busy_poll(const lsock_loop *loop);
/* In a child made by fork(): gives the inherited loop a backend and a wakeup channel of its
 * own, watching the same descriptors, so that the child can run it (see "Fork" above; as
 * libuv's uv_loop_fork()). Call it before any other call on the loop or its objects; inside
 * a callback of the loop too (a fork in a callback): the run goes on in the child with the
 * new backend, and the rest of the events polled before the fork are left to the parent.
 * Returns
 * true on success, and at once (doing nothing) in the process that created the loop or one
 * that already called it, and on Windows; false when out of resources or on NULL (the loop
 * is then left as it was: still not runnable in the child). */
LSOCK_API bool lsock_loop_fork(lsock_loop *loop);

/* A timer on loop, calling cb(timer, userdata) when it fires; NULL on bad argument/no memory. */
LSOCK_API lsock_timer *lsock_timer_new(lsock_loop *loop, void (*cb)(lsock_timer *, void *),
                                       void *userdata);
/* Starts (or restarts) the timer: first fires after timeout_ms, then every repeat_ms if
 * repeat_ms is non-zero. Returns false on a NULL timer. */
LSOCK_API bool lsock_timer_start(lsock_timer *timer, uint64_t timeout_ms, uint64_t repeat_ms);
/* Stops the timer; it will not fire until started again. */
LSOCK_API void lsock_timer_stop(lsock_timer *timer);
/* True while the timer is started. */
LSOCK_API bool lsock_timer_is_active(const lsock_timer *timer);
/* Stops and frees the timer; safe inside its own callback. */
LSOCK_API void lsock_timer_free(lsock_timer *timer);

/* ------------------------------------------------------------------------------------------ */
/* Socket (QLocalSocket)                                                                      */

/* Callbacks, Qt's signals; any may be NULL. Every one may free the socket.
 * A connected socket whose loop cannot watch its descriptor (the backend refuses: out of
 * memory, epoll_ctl ENOSPC), when it is adopted, handed out by a server, or resumes reading
 * or writing, reports it from the loop (or the next wait call) instead of going deaf:
 * error_occurred(LSOCK_ERR_SOCKET_RESOURCE), the error string naming the cause, then the
 * connection ends as on any error (state_changed(CLOSING), state_changed(UNCONNECTED),
 * read_channel_finished, disconnected). */
typedef struct lsock_socket_callbacks {
    void (*connected)(lsock_socket *s, void *userdata);
    void (*disconnected)(lsock_socket *s, void *userdata);
    void (*error_occurred)(lsock_socket *s, lsock_error err, void *userdata);
    void (*state_changed)(lsock_socket *s, lsock_state state, void *userdata);
    void (*ready_read)(lsock_socket *s, void *userdata);
    void (*bytes_written)(lsock_socket *s, int64_t bytes, void *userdata);
    void (*about_to_close)(lsock_socket *s, void *userdata);
    void (*read_channel_finished)(lsock_socket *s, void *userdata);
} lsock_socket_callbacks;

/* Peer process credentials. */
typedef struct lsock_credentials {
    int64_t pid; /* -1 when the platform cannot tell */
    int64_t uid;
    int64_t gid;
} lsock_credentials;

/* A new unconnected socket on loop; loop may be NULL for blocking use only. NULL on no memory. */
LSOCK_API lsock_socket *lsock_socket_new(lsock_loop *loop);
/* Aborts the connection if any (no callbacks fire) and frees the socket. Safe inside the
 * socket's own callbacks (the memory is released when the callback returns). */
LSOCK_API void lsock_socket_free(lsock_socket *s);
/* Copies the callback table (cb may be NULL: none) and sets the userdata passed to them. */
LSOCK_API void lsock_socket_set_callbacks(lsock_socket *s, const lsock_socket_callbacks *cb,
                                          void *userdata);
/* The userdata given to lsock_socket_set_callbacks(). */
LSOCK_API void *lsock_socket_userdata(const lsock_socket *s);
/* The loop the socket runs on, or NULL. */
LSOCK_API lsock_loop *lsock_socket_loop(const lsock_socket *s);

/* Sets the name connect() uses when given NULL. Fails (LSOCK_ERR_OPERATION) unless
 * unconnected, or on no memory. */
LSOCK_API bool lsock_socket_set_server_name(lsock_socket *s, const char *name);
/* The name as given to set_server_name()/connect(); "" if none. Owned by the socket. */
LSOCK_API const char *lsock_socket_server_name(const lsock_socket *s);
/* The resolved path ("/tmp/name") of the name set or connected to (an abstract name: the name
 * as given); "" if none. As in Qt, both names are cleared when the connection ends or fails. */
LSOCK_API const char *lsock_socket_full_server_name(const lsock_socket *s);
/* Sets options for the next connect (LSOCK_ABSTRACT_NAMESPACE, LSOCK_SAME_USER_ONLY,
 * LSOCK_PER_USER). False unless unconnected (LSOCK_ERR_OPERATION), or on other flags
 * (LSOCK_ERR_INVALID_ARGUMENT).
 *
 * LSOCK_SAME_USER_ONLY: once the kernel has connected, and before state_changed(CONNECTED),
 * the server's user is checked (Unix: SO_PEERCRED on the connection gives the listener's uid;
 * Windows: the user SID of the pipe server's process, or the pipe's owner when that process
 * cannot be opened). Another user's server fails the connect
 * with LSOCK_ERR_SOCKET_ACCESS naming that uid or SID; the socket never reports CONNECTED. The
 * same with the blocking API.
 *
 * LSOCK_PER_USER: a bare name (not absolute, not abstract) resolves in the user's private
 * directory: $XDG_RUNTIME_DIR when it is an absolute path to a directory of this user with no
 * group or other access, else $TMPDIR/lsock-<uid> (or /tmp/lsock-<uid>), made with mode 0700
 * when missing. That directory is refused with LSOCK_ERR_SOCKET_ACCESS, never repaired, when
 * it is a symlink, not a directory, another user's, or open to others. Windows: the pipe
 * \\.\pipe\<user SID>\name. Absolute names, pipe paths and abstract names are unchanged
 * (the abstract namespace has no directory to make private: use LSOCK_SAME_USER_ONLY there).
 * full_server_name() shows the result. */
LSOCK_API bool lsock_socket_set_options(lsock_socket *s, unsigned options);
LSOCK_API unsigned lsock_socket_options(const lsock_socket *s);
/* Time connect() keeps retrying while the server's backlog is full; default 30000 ms. */
LSOCK_API bool lsock_socket_set_connect_timeout(lsock_socket *s, int msecs);
LSOCK_API int lsock_socket_connect_timeout(const lsock_socket *s);
/* Bounds how long disconnect() (and close()) stays CLOSING with data queued that the peer
 * does not take: if the queue has not drained msecs after disconnect(), the socket aborts:
 * error_occurred(LSOCK_ERR_SOCKET_TIMEOUT), then state_changed(UNCONNECTED),
 * read_channel_finished and disconnected, and the queued data is dropped (unread received
 * data stays readable). -1 (the default, as Qt): no bound; 0: abort at once if disconnect()
 * cannot hand all queued data to the kernel. Set while CLOSING, the time counts from this
 * call. With a loop a timer enforces it; without one, the wait calls do (after the abort
 * wait_for_disconnected() returns true, the socket being disconnected, and
 * wait_for_bytes_written() false, both with the error SOCKET_TIMEOUT). Values below -1 are
 * refused: the setting is kept and the error is LSOCK_ERR_INVALID_ARGUMENT. On Windows the
 * linger time also bounds the last write still in flight in the pipe when the socket closes
 * (disconnect(), free()): the pipe end stays open for it that long at most (30 s when no
 * linger time is set), reading and dropping what the peer sends meanwhile, then cancels it;
 * abort() cancels it at once. On Unix the kernel keeps what it took. */
LSOCK_API void lsock_socket_set_linger(lsock_socket *s, int msecs);
/* The linger time in ms, -1 (unlimited) by default and for a NULL socket. */
LSOCK_API int lsock_socket_linger(const lsock_socket *s);

/* Connects to name (NULL: the name set by set_server_name()) in open_mode. Callbacks fire
 * synchronously: state_changed(CONNECTING), then on success state_changed(CONNECTED) and
 * connected; on failure error_occurred(err) and state_changed(UNCONNECTED). If the server's
 * backlog is full the socket stays CONNECTING and retries (on its loop, or inside
 * wait_for_connected()) until the connect timeout. If the loop cannot watch the new
 * connection (its backend refuses the descriptor), the connect fails with
 * LSOCK_ERR_SOCKET_RESOURCE, the text naming the cause. On Windows a name that names no pipe
 * fails with LSOCK_ERR_INVALID_ARGUMENT, the text saying why: the bare prefix \\.\pipe\ (or
 * "\", "/": nothing after the prefix), or a name with a "." or ".." component, which Windows
 * would resolve out of \\.\pipe\ (..\x opens the file x); Qt tries to open such names.
 * Returns true when CONNECTED or CONNECTING. */
LSOCK_API bool lsock_socket_connect(lsock_socket *s, const char *name, unsigned open_mode);
/* Graceful close: CLOSING until all written data is delivered, then UNCONNECTED. Unread
 * received data stays readable. A peer that never reads keeps the socket CLOSING, holding its
 * queue, unless a linger time is set (lsock_socket_set_linger()). On Windows "delivered"
 * includes the last write still in flight in the pipe (as Qt's pipe writer), which a process
 * that ended would lose: the socket stays CLOSING until it completes, even with nothing left
 * in bytes_to_write(), so wait_for_disconnected() before exiting keeps every byte. That write
 * also ends with the thread that started it (Windows cancels a thread's I/O when it ends): a
 * thread that frees the socket and ends must wait for it first, as a process must. */
LSOCK_API void lsock_socket_disconnect(lsock_socket *s);
/* Immediate close: drops unwritten and unread data, UNCONNECTED on return. */
LSOCK_API void lsock_socket_abort(lsock_socket *s);
/* QIODevice::close(): about_to_close (data still readable), then unread data is dropped and
 * the socket disconnects gracefully. */
LSOCK_API void lsock_socket_close(lsock_socket *s);

LSOCK_API lsock_state lsock_socket_state(const lsock_socket *s);
/* The last error, LSOCK_ERR_NONE if none. */
LSOCK_API lsock_error lsock_socket_error(const lsock_socket *s);
/* The last error as text naming the call, e.g. "lsock_socket_connect: Connection refused";
 * "" when no error. Owned by the socket. */
LSOCK_API const char *lsock_socket_error_string(const lsock_socket *s);
/* True when connected or closing (the descriptor is usable). */
LSOCK_API bool lsock_socket_is_valid(const lsock_socket *s);
/* The open mode of the current connection; 0 when not open. */
LSOCK_API unsigned lsock_socket_open_mode(const lsock_socket *s);

/* Reads up to max bytes into buf. Returns bytes read (0 if none available), -1 on error
 * (not open for reading, bad argument). On a socket that streams, a read of 16 KiB or more
 * inside ready_read (with a loop), or after wait_for_ready_read() (without one), takes the
 * bytes straight from the kernel into buf (Unix: one copy, as read(2), where buffering first
 * would copy twice); what it may take and what every other call sees (bytes_available, peek,
 * read_line, the waits) are the same either way. */
LSOCK_API int64_t lsock_socket_read(lsock_socket *s, void *buf, int64_t max);
/* Reads a line (up to and including '\n', at most max - 1 bytes) into buf and NUL-terminates
 * it. Like QIODevice::readLine, reads what is there when no '\n' is buffered. Returns bytes
 * read (0 if none available), -1 on error (max < 2, not readable). */
LSOCK_API int64_t lsock_socket_read_line(lsock_socket *s, char *buf, int64_t max);
/* All buffered data in a malloc'd, NUL-terminated buffer the caller frees; *len gets its
 * length (may be 0). NULL on error. */
LSOCK_API void *lsock_socket_read_all(lsock_socket *s, size_t *len);
/* Copies up to max buffered bytes without consuming them. Returns the count, -1 on error. */
LSOCK_API int64_t lsock_socket_peek(lsock_socket *s, void *buf, int64_t max);
/* Discards up to max buffered bytes. Returns the count, -1 on error. */
LSOCK_API int64_t lsock_socket_skip(lsock_socket *s, int64_t max);
/* Queues len bytes for writing (written to the kernel at once when possible; never blocks).
 * Returns len (less only with a write buffer limit, see below), or -1 on error (not
 * connected for writing, bad argument, no memory).
 *
 * Small writes are gathered. On a socket with a loop, the first write of a loop iteration goes
 * to the kernel at once (a reply keeps its latency); a later write of up to 16 KiB in the same
 * iteration that finds nothing queued is gathered with the writes after it, and they go out
 * in one system call when the loop next runs, once 64 KiB are gathered, before a larger write,
 * or at lsock_socket_flush(), a wait, disconnect, abort or free, which all send them first.
 * Gathered bytes count as handed over (bytes_to_write() leaves them out), so code that writes
 * while bytes_to_write() is 0 streams as before. Many small writes (messages, lines, 4 KiB
 * chunks) then cost one system call, not one each. Outside lsock_loop_run() an iteration
 * lasts until the loop runs again: a program that writes from main() runs the loop or calls a
 * wait or flush. A socket without a loop never gathers. */
LSOCK_API int64_t lsock_socket_write(lsock_socket *s, const void *buf, int64_t len);
/* One buffer of a gather write. */
typedef struct lsock_iovec {
    const void *base;
    size_t len;
} lsock_iovec;
/* The most buffers one lsock_socket_writev() takes. */
#define LSOCK_IOV_MAX 1024
/* Gather write: as lsock_socket_write() for the concatenation of the buffers, one system call
 * where the kernel takes it all (up to 64 buffers in one call; the rest is queued as a write
 * would queue it). Returns the bytes accepted or -1: LSOCK_ERR_INVALID_ARGUMENT for iovcnt < 0
 * or > LSOCK_IOV_MAX, a NULL iov (iovcnt > 0), a NULL buffer of non-zero length, or a total
 * beyond INT64_MAX; otherwise the errors of lsock_socket_write(). On Windows the buffers are
 * gathered into the pipe write, which copies them anyway. */
LSOCK_API int64_t lsock_socket_writev(lsock_socket *s, const lsock_iovec *iov, int iovcnt);
/* Gives back a buffer handed over with lsock_socket_write_owned(), once lsock no longer needs
 * it: called from inside lsock (that write, a later write or flush, the loop, a wait, or the
 * end of the connection: disconnect, abort, close, free, a broken write), so it must not call
 * lsock functions on the socket; freeing the buffer, or counting it, is what it is for. */
typedef void (*lsock_release_fn)(void *buf, void *ud);
/* Write by reference, for large writes that would otherwise be copied into the write buffer:
 * as lsock_socket_write() of len bytes at buf, except that what the kernel does not take at
 * once is queued as buf itself, not a copy, and sent from there. The whole write is accepted
 * or none of it. The contract:
 * - On success (returns len) buf belongs to lsock until release(buf, ud) is called, exactly
 *   once: when its last byte has gone to the kernel (possibly before this call returns), or
 *   when the connection ends and its bytes are dropped. The caller must not change or free buf
 *   before then. release may be NULL (a buffer that lives on, such as a constant).
 * - On failure (-1) release is not called and buf stays the caller's: LSOCK_ERR_INVALID_ARGUMENT
 *   for len < 0 or a NULL buf with len > 0, LSOCK_ERR_OPERATION when not connected or not open
 *   for writing, LSOCK_ERR_SOCKET_RESOURCE when the write buffer limit
 *   (lsock_socket_set_write_buffer_size()) cannot take all of it behind what is queued, or out
 *   of memory.
 * - bytes_to_write(), bytes_written, the waits, descriptors attached before it, gathering and a
 *   graceful disconnect treat its bytes as those of any write; writes after it are queued
 *   behind it in order (copied, as lsock_socket_write() copies, into shared 64 KiB blocks).
 * - A child of fork() holds its own copy of the queue, as of the write buffer: what it frees or
 *   aborts is released in the child (mind a release with effects outside the process).
 * Unix: the unsent part is sent straight from buf, one copy less than lsock_socket_write() for
 * the bytes the kernel refused at once (docs/performance.md). Windows: the pipe write copies
 * buf into its own buffer anyway, so the calls differ only in who frees buf. */
LSOCK_API int64_t lsock_socket_write_owned(lsock_socket *s, void *buf, int64_t len,
                                           lsock_release_fn release, void *ud);

/*
 * Descriptor passing: open files, sockets, pipes and shared memory handed to the peer with the
 * byte stream, so that each arrives with the data it belongs to (for example one message).
 *
 * Unix: SCM_RIGHTS. The peer receives its own copies (close-on-exec); the caller keeps its
 * descriptors. The byte a descriptor goes with is sent alone with it, one system call more per
 * write that carries descriptors. Every read asks for descriptors, so none is lost to a read
 * that did not expect one. When the receiving process cannot take them all (its descriptor
 * limit: MSG_CTRUNC), error_occurred reports LSOCK_ERR_SOCKET_RESOURCE and the connection is
 * aborted; none of that read's descriptors is left open.
 *
 * Windows: a pipe has no side channel, so a connection that carries handles is framed: both
 * ends set LSOCK_PASS_DESCRIPTORS before connecting (lsock_socket_set_options) or listening
 * (lsock_server_set_socket_options); without it attaching fails with
 * LSOCK_ERR_UNSUPPORTED_OPERATION, and a framed stream is not for a Qt peer. Each handle is
 * duplicated into the peer's process when it is attached (DuplicateHandle; the peer's process
 * id from the pipe) and its value travels in the stream; a handle the peer's process may not
 * receive fails with LSOCK_ERR_SOCKET_ACCESS. Since a value in the stream could name any
 * handle, the receiver takes them only from a peer of its own user (who could duplicate
 * handles into it anyway): from another, the read fails with LSOCK_ERR_SOCKET_ACCESS and the
 * connection ends. Handles never taken are closed in the receiving process; attached ones that
 * never went are closed in the peer's.
 *
 * Descriptors never taken are closed when the socket is freed or aborted, when it connects
 * again, and when it is closed for reading; attached ones that never went, when the
 * connection ends.
 */
/* The most descriptors that go with one write. */
#define LSOCK_MAX_DESCRIPTORS 253
/* Sends descriptors (Unix file descriptors, Windows HANDLEs) with the first byte of the next
 * write (write, writev, write_message) that the socket accepts. The caller keeps its own
 * descriptors: they are copied now. Calls before one write add up, at most
 * LSOCK_MAX_DESCRIPTORS in all. While descriptors are attached or on their way, writes are
 * queued and flushed rather than written straight to the kernel. Returns false: LSOCK_ERR_
 * INVALID_ARGUMENT (NULL fds, count below 1 or beyond the maximum, fds[i] not an open
 * descriptor), LSOCK_ERR_OPERATION (not connected, not open for writing),
 * LSOCK_ERR_SOCKET_RESOURCE (no descriptor or memory left for the copies),
 * LSOCK_ERR_SOCKET_ACCESS (Windows: the peer's process may not receive it),
 * LSOCK_ERR_UNSUPPORTED_OPERATION (Windows: the connection was made without
 * LSOCK_PASS_DESCRIPTORS); nothing of that call stays attached. */
LSOCK_API bool lsock_socket_attach_descriptors(lsock_socket *s, const intptr_t *fds, int count);
/* Stores in fds, oldest first, up to max descriptors that arrived with bytes the caller has
 * already read (read, read_line, read_message, skip, read_all), so that they belong to what it
 * has just read; those that came with bytes still buffered wait. The caller owns them (close-
 * on-exec set). Returns how many were stored, 0 when none is ready, -1 for LSOCK_ERR_
 * INVALID_ARGUMENT (max < 0, NULL fds with max > 0). */
LSOCK_API int lsock_socket_take_descriptors(lsock_socket *s, intptr_t *fds, int max);

/*
 * Messages, framed exactly as Qt's QDataStream << QByteArray: a 32-bit big-endian length, then
 * the bytes; the length 0xFFFFFFFF is a null QByteArray, which arrives as an empty message. A
 * Qt 5 or Qt 6 program that reads and writes QByteArrays through a QDataStream on its
 * QLocalSocket exchanges messages with these calls, both ways.
 *
 * Message mode. The first message call (any below) puts the socket in message mode: from then
 * on the next unread byte is taken as the start of a message header. Byte reads may be mixed
 * with message reads as long as they consume whole messages (header included); a byte read
 * that stops inside a message leaves the stream misaligned, which is the caller's to mend.
 * bytes_written() counts the headers too.
 *
 * Limits. No message longer than the maximum (lsock_socket_set_max_message_size(), both
 * directions; 64 MiB by default) is sent or accepted: write_message() fails with
 * LSOCK_ERR_DATAGRAM_TOO_LARGE and sends nothing; a peer that announces a longer one gets
 * error_occurred(DATAGRAM_TOO_LARGE) and the connection is aborted, nothing of that size ever
 * allocated (checked as the header arrives, and by the message calls).
 *
 * Read buffer limit. A message no longer than the maximum always arrives whole: while it is
 * incomplete the read buffer may grow past its limit to hold it (where Qt's QDataStream
 * transactions would wait for ever); the limit applies again between messages.
 *
 * Callbacks and waits: ready_read fires as for bytes; can_read_message() says whether a whole
 * message is there. Blocking code loops on wait_for_ready_read() until can_read_message().
 */
#define LSOCK_DEFAULT_MAX_MESSAGE_SIZE (64 * 1024 * 1024)
/* Queues a message of len bytes: the header and the payload together, all or nothing (with a
 * write buffer limit whose non-empty queue cannot take it, none: LSOCK_ERR_SOCKET_RESOURCE; an
 * empty queue always takes one message). Never blocks. Returns len or -1:
 * LSOCK_ERR_INVALID_ARGUMENT (negative len, NULL buf), LSOCK_ERR_DATAGRAM_TOO_LARGE (beyond
 * the maximum), or the errors of lsock_socket_write(). */
LSOCK_API int64_t lsock_socket_write_message(lsock_socket *s, const void *buf, int64_t len);
/* True when a whole message is buffered. */
LSOCK_API bool lsock_socket_can_read_message(const lsock_socket *s);
/* The size of the next message (0 for an empty or null one), or -1 when none is whole. */
LSOCK_API int64_t lsock_socket_next_message_size(const lsock_socket *s);
/* Reads the next message whole into buf. Returns its size, or -1: LSOCK_ERR_OPERATION when no
 * whole message is buffered, LSOCK_ERR_INVALID_ARGUMENT when max is smaller than the message
 * (nothing is consumed) or buf is NULL, LSOCK_ERR_DATAGRAM_TOO_LARGE when the peer announced
 * one beyond the maximum (the connection is then aborted). On a socket that streams messages
 * of 16 KiB or more (Unix), a message whose rest was already in the kernel when ready_read
 * fired (or a loop-less wait returned) goes from there straight into buf, one copy instead of
 * two; "buffered" above counts those bytes, and nothing else differs. */
LSOCK_API int64_t lsock_socket_read_message(lsock_socket *s, void *buf, int64_t max);
/* The longest message in either direction, 0 to 0xFFFFFFFE (LSOCK_ERR_INVALID_ARGUMENT
 * otherwise, the maximum kept); default LSOCK_DEFAULT_MAX_MESSAGE_SIZE. */
LSOCK_API void lsock_socket_set_max_message_size(lsock_socket *s, int64_t max);
LSOCK_API int64_t lsock_socket_max_message_size(const lsock_socket *s);
/* True if a whole line ('\n') is buffered. */
LSOCK_API bool lsock_socket_can_read_line(const lsock_socket *s);
/* Bytes buffered for reading. */
LSOCK_API int64_t lsock_socket_bytes_available(const lsock_socket *s);
/* Bytes queued but not yet handed to the kernel. */
LSOCK_API int64_t lsock_socket_bytes_to_write(const lsock_socket *s);
/* True when no data is buffered for reading. */
LSOCK_API bool lsock_socket_at_end(const lsock_socket *s);
/* Writes as much queued data as the kernel takes now. True if anything was written. */
LSOCK_API bool lsock_socket_flush(lsock_socket *s);

/* Limit of the read buffer in bytes; 0 (default) is unlimited. A limit stops reading from
 * the kernel while the buffer is full (backpressure on the peer; nothing is lost). Every
 * path honours it, the loop and every wait call alike; only a connection that breaks while
 * the buffer is full loses, with it, what the peer sent beyond the limit. */
LSOCK_API int64_t lsock_socket_read_buffer_size(const lsock_socket *s);
LSOCK_API bool lsock_socket_set_read_buffer_size(lsock_socket *s, int64_t size);

/* Limit of the write queue in bytes; 0 (default) is unlimited. With a limit, write() takes
 * only what the kernel accepts now plus what fits in the queue, and returns that count
 * (possibly 0): the caller keeps the rest and writes it after bytes_written. Memory stays
 * bounded against a slow reader, and nothing is dropped. */
LSOCK_API int64_t lsock_socket_write_buffer_size(const lsock_socket *s);
LSOCK_API bool lsock_socket_set_write_buffer_size(lsock_socket *s, int64_t size);

/* Blocking waits (msecs -1: no timeout). They block on this socket only and fire its
 * callbacks synchronously. Each returns true when the event happened, false on timeout
 * (error LSOCK_ERR_SOCKET_TIMEOUT) or failure (the error says why).
 * As in Qt 5 and Qt 6, a wait on an unconnected socket returns false at once and leaves the
 * error as it was, so that after a failed connect (its result ignored) the error still says
 * why: SERVER_NOT_FOUND, CONNECTION_REFUSED, ... wait_for_connected() on a socket that is not
 * connecting returns whether it is CONNECTED (CLOSING: false), also without an error.
 * With a read buffer limit, a wait that can only be satisfied by reading finds the buffer
 * full and returns false at once with LSOCK_ERR_OPERATION ("the read buffer is full: read
 * from it first"), whatever is queued for writing, never reading past the limit:
 * wait_for_ready_read(), and wait_for_disconnected() unless it is CLOSING with data still to
 * write (the end of stream lies behind the unread data). wait_for_disconnected() reads up to
 * the limit first. Read from the buffer and wait again.
 * wait_for_disconnected() returns true once the socket is disconnected, by the peer, an
 * error or the linger time (lsock_socket_set_linger()); lsock_socket_error() says which. */
LSOCK_API bool lsock_socket_wait_for_connected(lsock_socket *s, int msecs);
LSOCK_API bool lsock_socket_wait_for_disconnected(lsock_socket *s, int msecs);
LSOCK_API bool lsock_socket_wait_for_ready_read(lsock_socket *s, int msecs);
LSOCK_API bool lsock_socket_wait_for_bytes_written(lsock_socket *s, int msecs);

/* Adopts a connected stream socket descriptor (the socket owns it from then on); state must
 * be LSOCK_CONNECTED. Fires state_changed(CONNECTED). False with
 * LSOCK_ERR_UNSUPPORTED_OPERATION for a descriptor that is not an open, connected stream
 * socket (-1 included), LSOCK_ERR_INVALID_ARGUMENT for another state or a bad open_mode,
 * LSOCK_ERR_OPERATION unless the socket is unconnected. As Qt 6, the names come from the
 * descriptor's address (the peer's; an accepted socket's own): the full name is the path (or
 * the abstract name), the name its last component (an abstract name whole), and
 * LSOCK_ABSTRACT_NAMESPACE is set or cleared to match, so that connecting again by the name
 * reaches the same address. (An lsock server's socket is bound elsewhere and linked into
 * place: its address is that other path.) On Windows fd is a connected pipe HANDLE opened
 * with FILE_FLAG_OVERLAPPED, and the names stay empty. */
LSOCK_API bool lsock_socket_set_descriptor(lsock_socket *s, intptr_t fd, lsock_state state,
                                           unsigned open_mode);
/* The descriptor, -1 when unconnected. Still owned by the socket. A socket without a loop
 * that connected itself keeps its descriptor in blocking mode (lsock's own calls never block
 * outside the waits); every other descriptor is non-blocking. On Windows this is the pipe's
 * HANDLE. */
LSOCK_API intptr_t lsock_socket_descriptor(const lsock_socket *s);

/* The connected peer's pid, uid and gid. False when not connected or not supported. */
LSOCK_API bool lsock_socket_peer_credentials(lsock_socket *s, lsock_credentials *out);
/* Windows: the peer process's user SID as a string ("S-1-5-21-...") into buf (NUL-terminated);
 * for a server whose process this one may not open, the pipe's owner SID.
 * False when not connected (LSOCK_ERR_OPERATION), when buf cannot hold it or is NULL
 * (LSOCK_ERR_INVALID_ARGUMENT), or when the peer's process cannot be asked
 * (LSOCK_ERR_SOCKET_ACCESS). Unix identifies users by uid (lsock_socket_peer_credentials()):
 * false with LSOCK_ERR_UNSUPPORTED_OPERATION. */
LSOCK_API bool lsock_socket_peer_sid(const lsock_socket *s, char *buf, size_t size);

/* ------------------------------------------------------------------------------------------ */
/* Server (QLocalServer)                                                                      */

/* A new server on loop; loop may be NULL for blocking use (wait_for_new_connection()). */
LSOCK_API lsock_server *lsock_server_new(lsock_loop *loop);
/* Closes (see lsock_server_close()) and frees the server and its pending connections. Safe
 * inside its own callback. */
LSOCK_API void lsock_server_free(lsock_server *srv);
/* cb(srv, userdata) fires once per accepted connection, which then waits in the pending
 * queue (lsock_server_next_pending_connection()). */
LSOCK_API void lsock_server_set_new_connection_callback(lsock_server *srv,
                                                        void (*cb)(lsock_server *, void *),
                                                        void *userdata);
LSOCK_API void *lsock_server_userdata(const lsock_server *srv);

/* Options used by the next listen(): the LSOCK_*_ACCESS file modes, ABSTRACT_NAMESPACE,
 * RECLAIM_STALE, SAME_USER_ONLY, PER_USER (see lsock_socket_set_options() for the names).
 * False on unknown flags (LSOCK_ERR_INVALID_ARGUMENT). With SAME_USER_ONLY each accepted peer
 * whose user (Unix: uid from SO_PEERCRED or getpeereid(); Windows: the user SID of the client's
 * process) is not this process's is closed before it is queued: it never reaches the
 * new-connection callback and never counts against max_pending_connections. With ABSTRACT_NAMESPACE
 * the access options are enforced at accept from each peer's credentials: USER admits peers
 * whose uid is this process's effective uid, GROUP peers whose (primary) gid is its effective
 * gid, OTHER anyone; a peer that does not qualify is closed before it is queued and never
 * reaches the new-connection callback. Root is not exempt. Without access options anyone
 * connects (as in Qt, which ignores the options on abstract names: a difference). */
LSOCK_API bool lsock_server_set_socket_options(lsock_server *srv, unsigned options);
LSOCK_API unsigned lsock_server_socket_options(const lsock_server *srv);
/* listen(2) backlog for the next listen(); default 50. False if size < 1
 * (LSOCK_ERR_INVALID_ARGUMENT). */
LSOCK_API bool lsock_server_set_listen_backlog_size(lsock_server *srv, int size);
LSOCK_API int lsock_server_listen_backlog_size(const lsock_server *srv);
/* Accepting pauses while this many connections wait in the queue; default 30. False if < 1
 * (LSOCK_ERR_INVALID_ARGUMENT). */
LSOCK_API bool lsock_server_set_max_pending_connections(lsock_server *srv, int n);
LSOCK_API int lsock_server_max_pending_connections(const lsock_server *srv);

/* Listens on name (resolved as for sockets). False with LSOCK_ERR_ADDRESS_IN_USE if a live
 * server holds the name, if a file that is not a socket is there, or if a stale socket file
 * remains: without LSOCK_RECLAIM_STALE, or when it belongs to another user (RECLAIM_STALE
 * removes only the user's own); LSOCK_ERR_SERVER_NOT_FOUND for an empty or too long name,
 * LSOCK_ERR_OPERATION if already listening, LSOCK_ERR_SOCKET_ACCESS when the directory is not
 * writable. With RECLAIM_STALE, processes reclaiming in one directory take turns (a lock on
 * the directory): of several starting together over one stale file exactly one listens, the
 * others fail ADDRESS_IN_USE; one that waits more than 2 s for its turn fails too. The socket
 * file appears at the name already listening, with its final mode. If the loop cannot watch
 * the listening socket (its backend refuses it), listen() still succeeds, the error is
 * LSOCK_ERR_SOCKET_RESOURCE naming the cause, and the server tries again every 100 ms, as when
 * out of descriptors; clients wait in the backlog meanwhile. On Windows a name that names no
 * pipe fails with LSOCK_ERR_INVALID_ARGUMENT (see lsock_socket_connect()), and a server that
 * cannot make a new pipe instance (out of handles or memory) sets LSOCK_ERR_SOCKET_RESOURCE
 * and tries again every 100 ms. */
LSOCK_API bool lsock_server_listen(lsock_server *srv, const char *name);
/* Listens on an already bound and listening socket descriptor, which the server then owns.
 * The options are left as set (an abstract descriptor does not add ABSTRACT_NAMESPACE: a
 * later listen() follows the options, unlike Qt 6) and none is applied to this descriptor.
 * Not supported on Windows yet (LSOCK_ERR_UNSUPPORTED_OPERATION). */
LSOCK_API bool lsock_server_listen_descriptor(lsock_server *srv, intptr_t fd);
/* Listens on the socket a service manager passed (systemd socket activation): when LISTEN_PID
 * is this process, the one of the LISTEN_FDS descriptors (from 3 on) whose LISTEN_FDNAMES entry
 * equals name, or else whose bound path equals name resolved as by lsock_server_listen() (the
 * options apply). It must be a listening AF_UNIX stream socket (LSOCK_ERR_UNSUPPORTED_OPERATION
 * otherwise, nothing changed); it is made non-blocking and close-on-exec, and the server owns
 * it. The environment is read, never changed, and malformed values (a LISTEN_FDS that is not a
 * number from 1 to 4096, a LISTEN_PID of another process) count as nothing passed. With
 * nothing passed, or nothing that matches, it listens normally (lsock_server_listen()).
 * Windows: always listens normally. LSOCK_SAME_USER_ONLY applies to an activated socket too. */
LSOCK_API bool lsock_server_listen_activated(lsock_server *srv, const char *name);
/* True when the server listens on a descriptor lsock_server_listen_activated() took over. */
LSOCK_API bool lsock_server_is_activated(const lsock_server *srv);
/* Windows: the security descriptor (SDDL, e.g. "D:P(A;;GA;;;OW)") of the pipes of the next
 * listen(), in place of the one the ACCESS options make; NULL: back to the options. False with
 * LSOCK_ERR_INVALID_ARGUMENT for SDDL Windows cannot parse (the previous one kept). Unix (file
 * modes, no descriptors): false with LSOCK_ERR_UNSUPPORTED_OPERATION. */
LSOCK_API bool lsock_server_set_security_descriptor(lsock_server *srv, const char *sddl);
LSOCK_API bool lsock_server_is_listening(const lsock_server *srv);
/* Stops listening and frees the connections still pending (as Qt); removes the socket file
 * only if it is still the one this server made, and only in the process that listened: a
 * child of fork() that closes or frees the server it inherited leaves the file, and the
 * parent's listening, alone. Connections already taken are unaffected. */
LSOCK_API void lsock_server_close(lsock_server *srv);

LSOCK_API bool lsock_server_has_pending_connections(const lsock_server *srv);
/* The next accepted connection, now owned by the caller (lsock_socket_free()), connected and
 * running on the server's loop; NULL if none. Named as Qt 6 names it: full_server_name() is
 * the server's full name, server_name() its last component (an abstract name whole; on
 * Windows the server's name). */
LSOCK_API lsock_socket *lsock_server_next_pending_connection(lsock_server *srv);
/* Blocks up to msecs (-1: forever) for a connection; fires the new-connection callback.
 * True if a connection is pending; *timed_out (may be NULL) says whether it timed out. */
LSOCK_API bool lsock_server_wait_for_new_connection(lsock_server *srv, int msecs, bool *timed_out);

/* The name given to listen(), "" if not listening. Owned by the server. */
LSOCK_API const char *lsock_server_name(const lsock_server *srv);
/* The resolved path listened on, "" if not listening. Owned by the server. */
LSOCK_API const char *lsock_server_full_server_name(const lsock_server *srv);
/* The listening descriptor, -1 if not listening. */
LSOCK_API intptr_t lsock_server_descriptor(const lsock_server *srv);
LSOCK_API lsock_error lsock_server_error(const lsock_server *srv);
/* "lsock_server_listen: Address in use" and the like; "" when no error. */
LSOCK_API const char *lsock_server_error_string(const lsock_server *srv);

/* Removes the socket file of name (QLocalServer::removeServer). True if it is gone (or was
 * never there). Unlike Qt, which removes whatever is at the name, only a socket file is
 * removed: a regular file, a FIFO, a directory or a symlink (even one to a socket) stays,
 * and the call returns false. Windows: does nothing and returns true (as Qt). */
LSOCK_API bool lsock_remove_server(const char *name);

/* ------------------------------------------------------------------------------------------ */
/* Single instance                                                                            */

/*
 * One primary instance of an application; later starts hand it a message (their arguments)
 * and exit. See docs/single-instance.md.
 *
 * The election is the listening socket itself, never a lock file: the first process that
 * listens on the instance's name is the primary (Unix: binding the name, a stale socket file of
 * a dead primary reclaimed at once, one process at a time; Windows: FILE_FLAG_FIRST_PIPE_INSTANCE).
 * A process that finds the name taken connects to the primary and is a secondary; one that
 * finds it taken but not accepting (a primary starting, or one that just died) tries again
 * until its time is up.
 *
 * The name: "lsock-instance-" + the app id's first 32 bytes with every byte other than
 * [A-Za-z0-9._-] made '_' + "-" + 16 hex digits of the 64-bit FNV-1a hash of the whole id (and,
 * PER_SESSION, of "\n" and the session), stable across lsock versions. The id may be any
 * length and any bytes but NUL. The hash keeps ids apart; it is no security boundary (the
 * scope's options are).
 *
 * Scopes: PER_USER (the default) puts the name in the user's private directory
 * (LSOCK_PER_USER) and checks the user both ways (LSOCK_SAME_USER_ONLY, LSOCK_USER_ACCESS): no
 * other user's process can be this user's primary or receive its messages. PER_SESSION is
 * PER_USER with the login session in the name: Unix, $XDG_SESSION_ID when it is 1 to 64 of
 * [A-Za-z0-9_-], else the session id of getsid(0) (each terminal's own when no session manager
 * sets XDG_SESSION_ID); Windows, the session id of the process (ProcessIdToSessionId). SYSTEM:
 * one primary for all users, the name in the temporary directory, open to every user
 * (LSOCK_WORLD_ACCESS), no user checks; a stale file of another user blocks it until removed.
 *
 * Messages from secondaries are lsock messages (up to the default maximum, 64 MiB): each is
 * delivered once, whole, with the sender's credentials (Windows: pid; uid and gid -1), and the
 * secondary's send() returns true once the primary's callback has returned for it. A secondary
 * that dies mid-message delivers nothing. The primary receives on its loop; it may free the
 * instance inside the callback.
 */
typedef struct lsock_instance lsock_instance;
enum { LSOCK_INSTANCE_PER_USER = 0, LSOCK_INSTANCE_PER_SESSION = 1, LSOCK_INSTANCE_SYSTEM = 2 };
typedef void (*lsock_instance_message_cb)(lsock_instance *inst, const void *msg, int64_t len,
                                          const lsock_credentials *sender, void *userdata);

/* A new instance of app_id in scope; loop receives the primary's messages (NULL: a process that
 * will only send). NULL for a NULL or empty app_id, an unknown scope, or no memory. */
LSOCK_API lsock_instance *lsock_instance_new(lsock_loop *loop, const char *app_id, int scope);
/* Stops being primary (the name is free at once) or drops the connection to the primary, and
 * frees the instance. Safe inside the message callback. */
LSOCK_API void lsock_instance_free(lsock_instance *inst);
/* Elects, trying for up to msecs (-1: no limit): 1 primary, 0 another instance is primary (this
 * one is connected to it), -1 error: LSOCK_ERR_OPERATION (acquired already),
 * LSOCK_ERR_SOCKET_TIMEOUT (the name stayed taken and no primary answered),
 * LSOCK_ERR_SOCKET_ACCESS (a server of another user holds the name, or the private directory is
 * unsafe), or the error of listen or connect. */
LSOCK_API int lsock_instance_acquire(lsock_instance *inst, int msecs);
LSOCK_API bool lsock_instance_is_primary(const lsock_instance *inst);
LSOCK_API void lsock_instance_set_message_callback(lsock_instance *inst,
                                                   lsock_instance_message_cb cb, void *userdata);
/* Secondary: sends msg (len bytes) to the primary and waits up to msecs (-1: no limit) for its
 * acknowledgement. True once the primary's callback has run for it. False:
 * LSOCK_ERR_OPERATION (not a secondary), LSOCK_ERR_INVALID_ARGUMENT (negative len, NULL msg),
 * LSOCK_ERR_DATAGRAM_TOO_LARGE, LSOCK_ERR_SOCKET_TIMEOUT, LSOCK_ERR_PEER_CLOSED (the primary
 * ended first). */
LSOCK_API bool lsock_instance_send(lsock_instance *inst, const void *msg, int64_t len, int msecs);
/* The primary's process id (this process's when primary; for AllowSetForegroundWindow and the
 * like), -1 before acquire() or when the platform cannot tell. */
LSOCK_API int64_t lsock_instance_primary_pid(const lsock_instance *inst);
LSOCK_API lsock_error lsock_instance_error(const lsock_instance *inst);
/* "lsock_instance_acquire: ..." and the like; "" when no error. Owned by the instance. */
LSOCK_API const char *lsock_instance_error_string(const lsock_instance *inst);

#ifdef __cplusplus
}
#endif

#endif /* LSOCK_H */
