/*
 * The socket: QLocalSocket's state machine, buffered I/O, callbacks and blocking waits, over
 * the platform layer. The whole state machine lives here:
 *
 *   UNCONNECTED --connect--> CONNECTING --(accepted)--> CONNECTED --disconnect--> CLOSING
 *        ^                        |                         |                        |
 *        +------ failure ---------+------ abort / peer close / error ----------------+
 *
 * Callbacks fire in Qt's order (see connected_ok, connection_lost, finish_close). Any of
 * them may free the socket: every entry point holds the socket while it runs (hold/release),
 * checks s->dead after each callback, and the memory goes only when the outermost entry
 * point releases it.
 */
#include "internal.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DEFAULT_CONNECT_TIMEOUT 30000
#define RETRY_MIN_MS            1
#define RETRY_MAX_MS            100
#define READ_DIRECT_MIN         16384
#define READ_ROUNDS             16

struct lsock_socket {
    lsock_loop *loop;
    lsock_socket_callbacks cb;
    void *ud;
    lsock_state state;
    unsigned open_mode;
    unsigned options;
    int fd;
    lsock__io io;
    lsock__buf rbuf, wbuf;
    int64_t rbuf_limit;
    int64_t wbuf_limit;
    int throttled; /* reading paused: read buffer at its limit */
    int connect_timeout;
    char *name, *full;
    char *connecting_path; /* resolved name while CONNECTING */
    unsigned connecting_mode;
    uint64_t connect_deadline;
    int retry_delay;
    lsock_timer *retry;
    lsock__errinfo err;
    int64_t written_unreported; /* handed to the kernel, not yet told via bytes_written */
    int broken;                 /* a write failed with this errno; handled asynchronously */
    lsock__pending pend;
    int depth;
    int dead;
    int in_ready_read, in_bytes_written;
    int fd_blocking;        /* loop-less: the descriptor is blocking (reads pass MSG_DONTWAIT) */
    int fd_shared;          /* handed out or adopted: others may hold the file (lsock__io_close) */
    unsigned fd_fork_stamp; /* lsock__plat_fork_stamp() from before the descriptor was made */
    int sndbuf_grown;       /* the kernel refused a write once: its send buffer was raised */
    int block_next;         /* the next read_some blocks in recv() */
    int linger;             /* lsock_socket_set_linger(): ms, -1 unlimited */
    uint64_t linger_deadline; /* CLOSING with data queued: abort at this time (0: no bound) */
    lsock_timer *linger_timer;
    int watch_err;          /* starting to watch the descriptor failed with this errno */
    const char *watch_call; /* the call in which it failed */
};

static const char *const empty = "";

/* ---- lifetime ------------------------------------------------------------------------ */

static void hold(lsock_socket *s)
{
    s->depth++;
}

static void destroy(lsock_socket *s)
{
    lsock__buf_free(&s->rbuf);
    lsock__buf_free(&s->wbuf);
    free(s->name);
    free(s->full);
    free(s->connecting_path);
    free(s);
}

static void release(lsock_socket *s)
{
    if (--s->depth == 0 && s->dead) destroy(s);
}

static void pending_cb(lsock__pending *p);

static lsock_socket *alloc_socket(lsock_loop *loop)
{
    lsock_socket *s = calloc(1, sizeof *s);
    if (!s) return NULL;
    s->loop = loop;
    s->fd = -1;
    s->connect_timeout = DEFAULT_CONNECT_TIMEOUT;
    s->linger = -1;
    s->pend.cb = pending_cb;
    lsock__io_init(&s->io, -1, NULL, s);
    if (loop) lsock__loop_ref_objects(loop, 1);
    return s;
}

lsock_socket *lsock_socket_new(lsock_loop *loop)
{
    return alloc_socket(loop);
}

/* Closes the descriptor and stops all watching, firing nothing. */
static void drop_descriptor(lsock_socket *s)
{
    if (s->loop) {
        if (s->fd >= 0)
            lsock__io_close(s->loop, &s->io,
                            s->fd_shared || lsock__plat_forked_since(s->fd_fork_stamp));
        lsock__pending_cancel(s->loop, &s->pend);
    }
    if (s->retry) {
        lsock_timer_free(s->retry);
        s->retry = NULL;
    }
    if (s->linger_timer) {
        lsock_timer_free(s->linger_timer);
        s->linger_timer = NULL;
    }
    s->linger_deadline = 0;
    s->watch_err = 0;
    s->watch_call = NULL;
    lsock__plat_close(s->fd);
    s->fd = -1;
    s->fd_blocking = 0;
    s->fd_shared = 0;
    s->sndbuf_grown = 0;
    s->throttled = 0;
    s->broken = 0;
    s->written_unreported = 0;
    free(s->connecting_path);
    s->connecting_path = NULL;
}

void lsock_socket_free(lsock_socket *s)
{
    if (!s || s->dead) return;
    drop_descriptor(s);
    s->state = LSOCK_UNCONNECTED;
    if (s->loop) lsock__loop_ref_objects(s->loop, -1);
    s->dead = 1;
    if (s->depth == 0) destroy(s);
}

void lsock_socket_set_callbacks(lsock_socket *s, const lsock_socket_callbacks *cb, void *ud)
{
    if (!s) return;
    if (cb)
        s->cb = *cb;
    else
        memset(&s->cb, 0, sizeof s->cb);
    s->ud = ud;
}

void *lsock_socket_userdata(const lsock_socket *s)
{
    return s ? s->ud : NULL;
}

lsock_loop *lsock_socket_loop(const lsock_socket *s)
{
    return s ? s->loop : NULL;
}

/* ---- errors and callbacks ------------------------------------------------------------ */

static bool fail(lsock_socket *s, lsock_error code, const char *call, const char *detail)
{
    lsock__err_set(&s->err, code, call, detail);
    return false;
}

static void emit_state(lsock_socket *s, lsock_state st)
{
    if (!s->dead && s->cb.state_changed) s->cb.state_changed(s, st, s->ud);
}

static void emit_error(lsock_socket *s)
{
    if (!s->dead && s->cb.error_occurred) s->cb.error_occurred(s, s->err.code, s->ud);
}

/* readyRead is not emitted recursively (as Qt): data that arrives while the application is
 * inside ready_read waits in the buffer. */
static void emit_ready_read(lsock_socket *s)
{
    if (s->dead || !s->cb.ready_read || s->in_ready_read) return;
    s->in_ready_read = 1;
    s->cb.ready_read(s, s->ud);
    s->in_ready_read = 0;
}

static void emit_bytes_written(lsock_socket *s)
{
    if (s->written_unreported == 0 || s->dead) return;
    if (!s->cb.bytes_written) {
        s->written_unreported = 0;
        return;
    }
    if (s->in_bytes_written) return;
    int64_t n = s->written_unreported;
    s->written_unreported = 0;
    s->in_bytes_written = 1;
    s->cb.bytes_written(s, n, s->ud);
    s->in_bytes_written = 0;
}

/* ---- closing ------------------------------------------------------------------------- */

static void clear_names(lsock_socket *s)
{
    free(s->name);
    free(s->full);
    s->name = s->full = NULL;
}

/*
 * The end of a connection, in the order a real Qt 5 QLocalSocket emits its signals:
 * state_changed(CLOSING) (unless already closing), then the state becomes UNCONNECTED and
 * state_changed(UNCONNECTED), read_channel_finished, disconnected fire. Unread data stays.
 */
static void finish_close(lsock_socket *s)
{
    int was_connected = s->state == LSOCK_CONNECTED || s->state == LSOCK_CLOSING;
    if (s->state == LSOCK_UNCONNECTED) return;
    if (s->state == LSOCK_CONNECTED) {
        s->state = LSOCK_CLOSING;
        emit_state(s, LSOCK_CLOSING);
        if (s->dead || s->state != LSOCK_CLOSING) return; /* the callback closed it already */
    }
    drop_descriptor(s);
    lsock__buf_clear(&s->wbuf);
    s->state = LSOCK_UNCONNECTED;
    clear_names(s);
    emit_state(s, LSOCK_UNCONNECTED);
    if (!was_connected) return;
    if (!s->dead && s->cb.read_channel_finished) s->cb.read_channel_finished(s, s->ud);
    if (!s->dead && s->cb.disconnected) s->cb.disconnected(s, s->ud);
}

/* Qt's setErrorAndEmit: record, error_occurred, then the connection (if any) ends. */
static void error_and_close(lsock_socket *s, lsock_error code, const char *call, const char *detail)
{
    lsock__err_set(&s->err, code, call, detail);
    emit_error(s);
    if (s->dead) return;
    finish_close(s);
}

static lsock_error io_error(int err)
{
    return (err == EPIPE || err == ECONNRESET) ? LSOCK_ERR_PEER_CLOSED : LSOCK_ERR_CONNECTION;
}

static void connection_lost(lsock_socket *s, int err, const char *call)
{
    error_and_close(s, err ? io_error(err) : LSOCK_ERR_PEER_CLOSED, call,
                    err && io_error(err) != LSOCK_ERR_PEER_CLOSED ? lsock__plat_strerror(err)
                                                                  : NULL);
}

/* ---- watching ------------------------------------------------------------------------ */

static void watch_failure_detail(char *buf, size_t size, int err)
{
    snprintf(buf, size, "cannot watch the connection: %s", lsock__plat_strerror(err));
}

/*
 * Starts watching events on the loop. If the loop refuses (the backend is out of memory or
 * space), the connection would be deaf: the failure is recorded and reported from the loop
 * (or the next wait call), and the connection ends with SOCKET_RESOURCE (report_deferred).
 */
static void start_io(lsock_socket *s, unsigned events, const char *call)
{
    int rc = lsock__io_start(s->loop, &s->io, events);
    if (rc == 0 || s->watch_err) return;
    s->watch_err = -rc;
    s->watch_call = call;
    lsock__pending_queue(s->loop, &s->pend);
}

static void handle_watch_failure(lsock_socket *s)
{
    char detail[96];
    watch_failure_detail(detail, sizeof detail, s->watch_err);
    s->watch_err = 0;
    error_and_close(s, LSOCK_ERR_SOCKET_RESOURCE, s->watch_call, detail);
}

/* ---- reading and writing ------------------------------------------------------------- */

static void set_throttle(lsock_socket *s, int on)
{
    if (s->throttled == on) return;
    s->throttled = on;
    if (!s->loop || s->fd < 0) return;
    if (on)
        lsock__io_stop(s->loop, &s->io, LSOCK__READABLE);
    else
        start_io(s, LSOCK__READABLE, "lsock_socket_read");
}

/* The read buffer holds its limit: nothing more is read from the kernel until the
 * application reads. */
static int rbuf_full(const lsock_socket *s)
{
    return s->rbuf_limit > 0 && (int64_t)lsock__buf_len(&s->rbuf) >= s->rbuf_limit;
}

/* Resumes reading once the application has made room below the limit. */
static void after_consume(lsock_socket *s)
{
    if (s->throttled && (s->rbuf_limit == 0 || (int64_t)lsock__buf_len(&s->rbuf) < s->rbuf_limit))
        set_throttle(s, 0);
}

/*
 * Reads what the kernel has, up to the read buffer limit: every read path goes through here,
 * so none reads past it. Returns bytes added (> 0), 0 at end of stream, -EAGAIN when nothing
 * (or no room), -errno.
 */
static int64_t read_some(lsock_socket *s)
{
    int64_t total = 0;
    for (int round = 0; round < READ_ROUNDS; round++) {
        size_t want = 65536;
        if (s->rbuf_limit > 0) {
            int64_t room = s->rbuf_limit - (int64_t)lsock__buf_len(&s->rbuf);
            if (room <= 0) {
                set_throttle(s, 1);
                break;
            }
            if ((uint64_t)room < want) want = (size_t)room;
        }
        int64_t r;
        size_t asked;
        int discard = !(s->open_mode & LSOCK_READ_ONLY);
        size_t scratch_size = 0;
        char *scratch = s->loop ? lsock__loop_scratch(s->loop, &scratch_size) : NULL;
        if (!discard && (lsock__buf_space(&s->rbuf) >= READ_DIRECT_MIN || !scratch)) {
            size_t space = lsock__buf_space(&s->rbuf);
            if (space < want && space < READ_DIRECT_MIN) space = want;
            if (space > want) space = want;
            char *p = lsock__buf_reserve(&s->rbuf, space);
            if (!p) return total > 0 ? total : -ENOMEM;
            asked = space;
            r = round == 0 && s->block_next ? lsock__plat_read_blocking(s->fd, p, space)
                                            : lsock__plat_read(s->fd, p, space);
            if (r > 0) lsock__buf_commit(&s->rbuf, (size_t)r);
        } else {
            if (want > scratch_size) want = scratch_size;
            char local[4096];
            if (!scratch) {
                scratch = local;
                if (want > sizeof local) want = sizeof local;
            }
            asked = want;
            r = lsock__plat_read(s->fd, scratch, want);
            if (r > 0 && !discard && lsock__buf_append(&s->rbuf, scratch, (size_t)r) < 0)
                return -ENOMEM; /* the bytes are lost only when memory is */
        }
        if (r > 0) {
            if (!discard) total += r;
            if ((size_t)r < asked) break;
            continue;
        }
        if (r == 0) return total > 0 ? total : 0;
        if (r == -EAGAIN) break;
        return total > 0 ? total : r;
    }
    return total > 0 ? total : -EAGAIN;
}

/*
 * Handles readability: reads, fires ready_read, and ends the connection on end of stream or
 * error. Returns 1 if data arrived, 0 if nothing, -1 if the connection ended.
 */
static int on_readable(lsock_socket *s)
{
    int64_t r = read_some(s);
    if (r > 0) {
        emit_ready_read(s);
        if (s->dead || s->state == LSOCK_UNCONNECTED) return -1;
        /* End of stream behind the data is seen on the next readiness report. */
        return 1;
    }
    if (r == -EAGAIN) return 0;
    if (r == -ENOMEM) {
        error_and_close(s, LSOCK_ERR_SOCKET_RESOURCE, "lsock_socket_read", "out of memory");
        return -1;
    }
    connection_lost(s, r == 0 ? 0 : (int)-r, "lsock_socket_read");
    return -1;
}

/* Writes queued data until the kernel is full. Returns bytes written or -errno. */
static int64_t flush_some(lsock_socket *s)
{
    int64_t total = 0;
    while (lsock__buf_len(&s->wbuf) > 0) {
        int64_t r = lsock__plat_write(s->fd, lsock__buf_begin(&s->wbuf), lsock__buf_len(&s->wbuf));
        if (r > 0) {
            lsock__buf_consume(&s->wbuf, (size_t)r);
            total += r;
            continue;
        }
        if (r == -EAGAIN || r == 0) break;
        return total > 0 ? total : r;
    }
    s->written_unreported += total;
    return total;
}

/* The writer side after a flush: watch for room, or finish a graceful close. */
static void after_flush(lsock_socket *s)
{
    if (s->loop && s->fd >= 0) {
        if (lsock__buf_len(&s->wbuf) > 0)
            start_io(s, LSOCK__WRITABLE, "lsock_socket_write");
        else
            lsock__io_stop(s->loop, &s->io, LSOCK__WRITABLE);
    }
}

/* Reads what the peer sent before the connection broke, so that it stays readable (as Qt,
 * whose dispatcher reads before it writes), up to the read buffer limit: what lies beyond it
 * goes with the connection, whose error is reported next. Returns -1 if a callback ended the
 * connection. */
static int drain_before_loss(lsock_socket *s)
{
    if (s->fd < 0 || !(s->open_mode & LSOCK_READ_ONLY)) return 0;
    int got = 0;
    int64_t r;
    while ((r = read_some(s)) > 0)
        got = 1;
    if (got) {
        emit_ready_read(s);
        if (s->dead || s->state == LSOCK_UNCONNECTED) return -1;
    }
    return 0;
}

/* A write failed earlier: report it now (from the loop or a wait call). */
static void handle_broken(lsock_socket *s)
{
    int err = s->broken;
    s->broken = 0;
    if (drain_before_loss(s) < 0) return;
    connection_lost(s, err, "lsock_socket_write");
}

/* A failure recorded earlier (a broken write, a descriptor the loop could not watch): report
 * it now, from the loop or a wait call. Returns 1 if there was one (the connection ended). */
static int report_deferred(lsock_socket *s)
{
    if (s->broken) {
        handle_broken(s);
        return 1;
    }
    if (s->watch_err) {
        handle_watch_failure(s);
        return 1;
    }
    return 0;
}

/* Writable: flush, report, complete CLOSING. Returns -1 if the connection ended. */
static int on_writable(lsock_socket *s)
{
    int64_t r = flush_some(s);
    if (r < 0) {
        if (drain_before_loss(s) == 0) connection_lost(s, (int)-r, "lsock_socket_write");
        return -1;
    }
    after_flush(s);
    emit_bytes_written(s);
    if (s->dead) return -1;
    if (s->state == LSOCK_CLOSING && lsock__buf_len(&s->wbuf) == 0) {
        finish_close(s);
        return -1;
    }
    return s->state == LSOCK_UNCONNECTED ? -1 : 0;
}

static void on_io(lsock__io *io, unsigned revents)
{
    lsock_socket *s = io->data;
    hold(s);
    if (!s->cb.bytes_written) s->written_unreported = 0;
    if (!report_deferred(s)) {
        if (revents & LSOCK__WRITABLE) on_writable(s);
        if (!s->dead && s->fd >= 0 && (revents & LSOCK__READABLE) && !s->throttled) on_readable(s);
    }
    release(s);
}

/* Deferred work from the loop: a broken write or a failed watch to report, or bytes_written
 * after writes that went straight to the kernel. */
static void pending_cb(lsock__pending *p)
{
    lsock_socket *s = (lsock_socket *)((char *)p - offsetof(lsock_socket, pend));
    hold(s);
    if (!report_deferred(s)) emit_bytes_written(s);
    release(s);
}

/* Starts watching a connected descriptor on the loop (a failure is reported from the loop:
 * see start_io). */
static void watch(lsock_socket *s, const char *call)
{
    if (!s->loop) return;
    lsock__io_init(&s->io, s->fd, on_io, s);
    start_io(s, LSOCK__READABLE, call);
}

/* ---- connecting ---------------------------------------------------------------------- */

/* The kernel connected: watch the connection (if the loop cannot, the connect fails with
 * SOCKET_RESOURCE rather than leave a deaf socket), then CONNECTED and connected. */
static void connected_ok(lsock_socket *s)
{
    if (s->retry) {
        lsock_timer_free(s->retry);
        s->retry = NULL;
    }
    if (s->loop) {
        lsock__io_init(&s->io, s->fd, on_io, s);
        int rc = lsock__io_start(s->loop, &s->io, LSOCK__READABLE);
        if (rc < 0) {
            char detail[96];
            watch_failure_detail(detail, sizeof detail, -rc);
            lsock__plat_close(s->fd);
            s->fd = -1;
            error_and_close(s, LSOCK_ERR_SOCKET_RESOURCE, "lsock_socket_connect", detail);
            return;
        }
    }
    free(s->full);
    s->full = s->connecting_path;
    s->connecting_path = NULL;
    s->open_mode = s->connecting_mode;
    s->state = LSOCK_CONNECTED;
    if (!s->loop && lsock__plat_set_blocking(s->fd) == 0) s->fd_blocking = 1;
    emit_state(s, LSOCK_CONNECTED);
    if (!s->dead && s->state == LSOCK_CONNECTED && s->cb.connected) s->cb.connected(s, s->ud);
}

static void connect_failed(lsock_socket *s, int err)
{
    lsock__plat_close(s->fd);
    s->fd = -1;
    error_and_close(s, lsock__connect_error(err), "lsock_socket_connect",
                    err == ENAMETOOLONG ? lsock__plat_name_limit_text()
                                        : lsock__plat_strerror(err));
}

/* One more attempt while the server's backlog is full. Returns 1 connected, 0 still
 * connecting, -1 failed (callbacks fired). */
static int retry_connect(lsock_socket *s)
{
    int rc = lsock__plat_reconnect(s->fd, s->connecting_path,
                                   (s->options & LSOCK_ABSTRACT_NAMESPACE) != 0);
    if (rc == 0) {
        connected_ok(s);
        return 1;
    }
    if (rc != -EAGAIN) {
        connect_failed(s, -rc);
        return -1;
    }
    if (lsock__now_ms() >= s->connect_deadline) {
        lsock__plat_close(s->fd);
        s->fd = -1;
        error_and_close(s, LSOCK_ERR_SOCKET_TIMEOUT, "lsock_socket_connect",
                        "the server's backlog stayed full");
        return -1;
    }
    if (s->retry_delay < RETRY_MAX_MS) s->retry_delay *= 2;
    if (s->retry_delay > RETRY_MAX_MS) s->retry_delay = RETRY_MAX_MS;
    return 0;
}

static void retry_timer_cb(lsock_timer *t, void *ud)
{
    lsock_socket *s = ud;
    hold(s);
    if (retry_connect(s) == 0 && !s->dead && s->retry)
        lsock_timer_start(s->retry, (uint64_t)s->retry_delay, 0);
    release(s);
}

static bool valid_mode(unsigned mode)
{
    return mode != 0 && (mode & ~(unsigned)LSOCK_READ_WRITE) == 0;
}

static bool do_connect(lsock_socket *s, const char *name, unsigned open_mode)
{
    static const char call[] = "lsock_socket_connect";
    if (s->state != LSOCK_UNCONNECTED) {
        /* As Qt: error_occurred(OPERATION), and the current connection is kept. */
        fail(s, LSOCK_ERR_OPERATION, call, "the socket is not unconnected");
        emit_error(s);
        return false;
    }
    if (!valid_mode(open_mode)) return fail(s, LSOCK_ERR_INVALID_ARGUMENT, call, "open mode");
    if (name) {
        char *copy = strdup(name);
        if (!copy) return fail(s, LSOCK_ERR_SOCKET_RESOURCE, call, "out of memory");
        free(s->name);
        s->name = copy;
    }
    lsock__err_clear(&s->err);
    lsock__buf_clear(&s->rbuf);
    lsock__buf_clear(&s->wbuf);
    s->state = LSOCK_CONNECTING;
    s->connecting_mode = open_mode;
    emit_state(s, LSOCK_CONNECTING);
    if (s->dead || s->state != LSOCK_CONNECTING) return false;
    if (!s->name || !*s->name) {
        error_and_close(s, LSOCK_ERR_SERVER_NOT_FOUND, call, "empty name");
        return false;
    }
    char *path = lsock__name_resolve(s->name);
    if (!path) {
        error_and_close(s, LSOCK_ERR_SOCKET_RESOURCE, call, "out of memory");
        return false;
    }
    s->connecting_path = path;
    int fd = -1;
    s->fd_fork_stamp = lsock__plat_fork_stamp();
    int rc = lsock__plat_connect(path, (s->options & LSOCK_ABSTRACT_NAMESPACE) != 0, &fd);
    s->fd = fd;
    if (rc >= 0) {
        connected_ok(s);
        return !s->dead && s->state != LSOCK_UNCONNECTED;
    }
    if (rc != -EAGAIN) {
        connect_failed(s, -rc);
        return false;
    }
    /* The backlog is full: stay CONNECTING and retry with growing pauses, never spinning. */
    s->connect_deadline = lsock__now_ms() + (uint64_t)s->connect_timeout;
    s->retry_delay = RETRY_MIN_MS;
    if (s->loop) {
        s->retry = lsock_timer_new(s->loop, retry_timer_cb, s);
        if (!s->retry || !lsock_timer_start(s->retry, (uint64_t)s->retry_delay, 0)) {
            connect_failed(s, ENOMEM);
            return false;
        }
    }
    return true;
}

bool lsock_socket_connect(lsock_socket *s, const char *name, unsigned open_mode)
{
    if (!s || s->dead) return false;
    hold(s);
    bool ok = do_connect(s, name, open_mode);
    release(s);
    return ok;
}

/* ---- closing: the three ways --------------------------------------------------------- */

/* The linger time ran out with data still queued: abort, as Qt reports errors (error_occurred,
 * then the connection ends), dropping the queue. */
static void linger_expired(lsock_socket *s)
{
    error_and_close(s, LSOCK_ERR_SOCKET_TIMEOUT, "lsock_socket_disconnect",
                    "the peer did not take the queued data within the linger time");
}

/* CLOSING with data queued and a linger time running. */
static int lingering(const lsock_socket *s)
{
    return s->state == LSOCK_CLOSING && s->linger_deadline != 0 && lsock__buf_len(&s->wbuf) > 0;
}

/* A loop-less socket's linger is enforced by the wait calls, which ask this. */
static int linger_due(const lsock_socket *s)
{
    return lingering(s) && lsock__now_ms() >= s->linger_deadline;
}

static void linger_timer_cb(lsock_timer *t, void *ud)
{
    lsock_socket *s = ud;
    hold(s);
    if (lingering(s)) linger_expired(s);
    release(s);
}

/* CLOSING with data the kernel did not take: bound the wait by the linger time (from now). */
static void start_linger(lsock_socket *s)
{
    if (s->linger_timer) lsock_timer_stop(s->linger_timer);
    s->linger_deadline = 0;
    if (s->linger < 0) return;
    if (s->linger == 0) {
        linger_expired(s);
        return;
    }
    s->linger_deadline = lsock__now_ms() + (uint64_t)s->linger;
    if (!s->loop) return;
    if (!s->linger_timer) s->linger_timer = lsock_timer_new(s->loop, linger_timer_cb, s);
    if (!s->linger_timer || !lsock_timer_start(s->linger_timer, (uint64_t)s->linger, 0))
        error_and_close(s, LSOCK_ERR_SOCKET_RESOURCE, "lsock_socket_disconnect",
                        "out of memory for the linger timer");
}

static void do_disconnect(lsock_socket *s)
{
    if (s->state == LSOCK_UNCONNECTED || s->state == LSOCK_CLOSING) return;
    if (s->state == LSOCK_CONNECTING) {
        finish_close(s);
        return;
    }
    s->state = LSOCK_CLOSING;
    emit_state(s, LSOCK_CLOSING);
    if (s->dead || s->state != LSOCK_CLOSING) return;
    if (report_deferred(s)) return;
    if (lsock__buf_len(&s->wbuf) > 0) {
        int64_t r = flush_some(s);
        if (r < 0) {
            connection_lost(s, (int)-r, "lsock_socket_disconnect");
            return;
        }
        after_flush(s);
        if (lsock__buf_len(&s->wbuf) > 0) {
            start_linger(s); /* CLOSING until the rest is written, or the linger time is up */
            return;
        }
    }
    finish_close(s);
}

void lsock_socket_disconnect(lsock_socket *s)
{
    if (!s || s->dead) return;
    hold(s);
    do_disconnect(s);
    release(s);
}

void lsock_socket_abort(lsock_socket *s)
{
    if (!s || s->dead) return;
    hold(s);
    if (s->state != LSOCK_UNCONNECTED && s->open_mode != 0 && s->cb.about_to_close)
        s->cb.about_to_close(s, s->ud); /* as Qt's abort(), which closes the device */
    if (s->dead) {
        release(s);
        return;
    }
    lsock__buf_clear(&s->wbuf);
    lsock__buf_clear(&s->rbuf);
    finish_close(s);
    if (!s->dead && s->state == LSOCK_UNCONNECTED) s->open_mode = 0;
    release(s);
}

void lsock_socket_close(lsock_socket *s)
{
    if (!s || s->dead) return;
    hold(s);
    if (s->open_mode != 0 || s->state != LSOCK_UNCONNECTED) {
        /* As QIODevice::close: about_to_close only for an open device. */
        if (s->open_mode != 0 && s->cb.about_to_close) s->cb.about_to_close(s, s->ud);
        if (!s->dead) {
            lsock__buf_clear(&s->rbuf);
            after_consume(s);
            s->open_mode = 0;
            do_disconnect(s);
        }
    }
    release(s);
}

/* ---- accessors ----------------------------------------------------------------------- */

bool lsock_socket_set_server_name(lsock_socket *s, const char *name)
{
    static const char call[] = "lsock_socket_set_server_name";
    if (!s) return false;
    if (s->state != LSOCK_UNCONNECTED)
        return fail(s, LSOCK_ERR_OPERATION, call, "the socket is not unconnected");
    char *copy = NULL, *full = NULL;
    if (name && *name && (!(copy = strdup(name)) || !(full = lsock__name_resolve(name)))) {
        free(copy);
        return fail(s, LSOCK_ERR_SOCKET_RESOURCE, call, "out of memory");
    }
    clear_names(s);
    s->name = copy;
    s->full = full;
    return true;
}

const char *lsock_socket_server_name(const lsock_socket *s)
{
    return s && s->name ? s->name : empty;
}

const char *lsock_socket_full_server_name(const lsock_socket *s)
{
    return s && s->full ? s->full : empty;
}

bool lsock_socket_set_options(lsock_socket *s, unsigned options)
{
    if (!s) return false;
    if (options & ~(unsigned)LSOCK_ABSTRACT_NAMESPACE)
        return fail(s, LSOCK_ERR_INVALID_ARGUMENT, "lsock_socket_set_options", "unknown flags");
    if (s->state != LSOCK_UNCONNECTED)
        return fail(s, LSOCK_ERR_OPERATION, "lsock_socket_set_options",
                    "the socket is not unconnected");
    s->options = options;
    return true;
}

unsigned lsock_socket_options(const lsock_socket *s)
{
    return s ? s->options : 0;
}

bool lsock_socket_set_connect_timeout(lsock_socket *s, int msecs)
{
    if (!s) return false;
    if (msecs < 0)
        return fail(s, LSOCK_ERR_INVALID_ARGUMENT, "lsock_socket_set_connect_timeout",
                    "negative timeout");
    s->connect_timeout = msecs;
    return true;
}

int lsock_socket_connect_timeout(const lsock_socket *s)
{
    return s ? s->connect_timeout : -1;
}

void lsock_socket_set_linger(lsock_socket *s, int msecs)
{
    if (!s || s->dead) return;
    if (msecs < -1) {
        fail(s, LSOCK_ERR_INVALID_ARGUMENT, "lsock_socket_set_linger",
             "negative time other than -1");
        return;
    }
    s->linger = msecs;
    if (s->state != LSOCK_CLOSING || lsock__buf_len(&s->wbuf) == 0) return;
    hold(s); /* already closing: the new time counts from now */
    start_linger(s);
    release(s);
}

int lsock_socket_linger(const lsock_socket *s)
{
    return s ? s->linger : -1;
}

lsock_state lsock_socket_state(const lsock_socket *s)
{
    return s ? s->state : LSOCK_UNCONNECTED;
}

lsock_error lsock_socket_error(const lsock_socket *s)
{
    return s ? s->err.code : LSOCK_ERR_NONE;
}

const char *lsock_socket_error_string(const lsock_socket *s)
{
    return s ? s->err.text : empty;
}

bool lsock_socket_is_valid(const lsock_socket *s)
{
    return s && (s->state == LSOCK_CONNECTED || s->state == LSOCK_CLOSING);
}

unsigned lsock_socket_open_mode(const lsock_socket *s)
{
    return s ? s->open_mode : 0;
}

/* ---- I/O calls ----------------------------------------------------------------------- */

static bool can_read(lsock_socket *s, const void *buf, int64_t max, const char *call)
{
    if (!s) return false;
    if (max < 0 || (!buf && max > 0))
        return fail(s, LSOCK_ERR_INVALID_ARGUMENT, call, max < 0 ? "negative size" : "NULL buffer");
    if (!(s->open_mode & LSOCK_READ_ONLY))
        return fail(s, LSOCK_ERR_OPERATION, call, "not open for reading");
    return true;
}

int64_t lsock_socket_read(lsock_socket *s, void *buf, int64_t max)
{
    if (!can_read(s, buf, max, "lsock_socket_read")) return -1;
    size_t n = lsock__buf_peek(&s->rbuf, buf, (size_t)max);
    lsock__buf_consume(&s->rbuf, n);
    after_consume(s);
    return (int64_t)n;
}

int64_t lsock_socket_read_line(lsock_socket *s, char *buf, int64_t max)
{
    if (!can_read(s, buf, max, "lsock_socket_read_line")) return -1;
    if (max < 2) {
        fail(s, LSOCK_ERR_INVALID_ARGUMENT, "lsock_socket_read_line", "max must be at least 2");
        return -1;
    }
    size_t limit = (size_t)(max - 1);
    size_t nl = lsock__buf_find(&s->rbuf, 0, '\n');
    size_t n = nl == (size_t)-1 ? lsock__buf_len(&s->rbuf) : nl + 1;
    if (n > limit) n = limit;
    lsock__buf_peek(&s->rbuf, buf, n);
    buf[n] = '\0';
    lsock__buf_consume(&s->rbuf, n);
    after_consume(s);
    return (int64_t)n;
}

void *lsock_socket_read_all(lsock_socket *s, size_t *len)
{
    if (len) *len = 0;
    if (!can_read(s, NULL, 0, "lsock_socket_read_all")) return NULL;
    size_t n = lsock__buf_len(&s->rbuf);
    char *out = malloc(n + 1);
    if (!out) {
        fail(s, LSOCK_ERR_SOCKET_RESOURCE, "lsock_socket_read_all", "out of memory");
        return NULL;
    }
    lsock__buf_peek(&s->rbuf, out, n);
    out[n] = '\0';
    lsock__buf_consume(&s->rbuf, n);
    after_consume(s);
    if (len) *len = n;
    return out;
}

int64_t lsock_socket_peek(lsock_socket *s, void *buf, int64_t max)
{
    if (!can_read(s, buf, max, "lsock_socket_peek")) return -1;
    return (int64_t)lsock__buf_peek(&s->rbuf, buf, (size_t)max);
}

int64_t lsock_socket_skip(lsock_socket *s, int64_t max)
{
    if (!can_read(s, NULL, max < 0 ? max : 0, "lsock_socket_skip")) return -1;
    size_t n = lsock__buf_consume(&s->rbuf, (size_t)max);
    after_consume(s);
    return (int64_t)n;
}

bool lsock_socket_can_read_line(const lsock_socket *s)
{
    return s && (s->open_mode & LSOCK_READ_ONLY) &&
           lsock__buf_find(&s->rbuf, 0, '\n') != (size_t)-1;
}

int64_t lsock_socket_bytes_available(const lsock_socket *s)
{
    return s ? (int64_t)lsock__buf_len(&s->rbuf) : 0;
}

int64_t lsock_socket_bytes_to_write(const lsock_socket *s)
{
    return s ? (int64_t)lsock__buf_len(&s->wbuf) : 0;
}

bool lsock_socket_at_end(const lsock_socket *s)
{
    return !s || lsock__buf_len(&s->rbuf) == 0;
}

/* Schedules bytes_written (or a broken-write report) for the next loop iteration. Without
 * a loop the count waits for the next wait_for_*() call. */
static void defer_report(lsock_socket *s)
{
    /* Without a bytes_written callback there is nobody to tell: no deferred call per write
     * (the count is dropped at the socket's next loop event, see on_io). */
    if (s->loop && (s->broken || (s->written_unreported && s->cb.bytes_written)))
        lsock__pending_queue(s->loop, &s->pend);
}

int64_t lsock_socket_write(lsock_socket *s, const void *buf, int64_t len)
{
    static const char call[] = "lsock_socket_write";
    if (!s) return -1;
    if (len < 0 || (!buf && len > 0)) {
        fail(s, LSOCK_ERR_INVALID_ARGUMENT, call, len < 0 ? "negative size" : "NULL buffer");
        return -1;
    }
    if (s->state != LSOCK_CONNECTED || !(s->open_mode & LSOCK_WRITE_ONLY)) {
        fail(s, LSOCK_ERR_OPERATION, call,
             s->state != LSOCK_CONNECTED ? "not connected" : "not open for writing");
        return -1;
    }
    if (s->broken) return len; /* the connection is ending; its error is on the way */
    if (len == 0) return 0;
    size_t done = 0;
    if (s->wbuf_limit > 0 && lsock__buf_len(&s->wbuf) > 0 &&
        (int64_t)lsock__buf_len(&s->wbuf) + len > s->wbuf_limit) {
        /* The queue would refuse part of this: first give the kernel what it takes now. */
        int64_t r = flush_some(s);
        if (r < 0) {
            s->broken = (int)-r;
            defer_report(s);
            return len;
        }
        after_flush(s);
    }
    if (lsock__buf_len(&s->wbuf) == 0) {
        /* Fast path: straight to the kernel; only the remainder is queued. */
        int64_t r = lsock__plat_write(s->fd, buf, (size_t)len);
        if ((r >= 0 || r == -EAGAIN) && (r < 0 ? 0 : r) < len && !s->sndbuf_grown) {
            /* The connection streams: give it a larger kernel buffer and offer the rest. */
            s->sndbuf_grown = 1;
            lsock__plat_grow_send_buffer(s->fd);
            int64_t more = lsock__plat_write(s->fd, (const char *)buf + (r > 0 ? r : 0),
                                             (size_t)(len - (r > 0 ? r : 0)));
            if (more > 0) r = (r > 0 ? r : 0) + more;
        }
        if (r > 0) {
            done = (size_t)r;
            s->written_unreported += r;
        } else if (r < 0 && r != -EAGAIN) {
            /* As Qt: the write is accepted and the failure is reported from the loop (or the
             * next wait call): error_occurred, then the connection ends. */
            s->broken = (int)-r;
            defer_report(s);
            return len;
        }
    }
    size_t take = (size_t)len - done;
    if (s->wbuf_limit > 0) {
        int64_t room = s->wbuf_limit - (int64_t)lsock__buf_len(&s->wbuf);
        if (room < 0) room = 0;
        if ((uint64_t)take > (uint64_t)room) take = (size_t)room;
    }
    if (take > 0) {
        if (lsock__buf_append(&s->wbuf, (const char *)buf + done, take) < 0) {
            fail(s, LSOCK_ERR_SOCKET_RESOURCE, call, "out of memory");
            defer_report(s);
            return done ? (int64_t)done : -1;
        }
        after_flush(s);
    }
    defer_report(s);
    return (int64_t)(done + take);
}

bool lsock_socket_flush(lsock_socket *s)
{
    if (!s || s->fd < 0 || lsock__buf_len(&s->wbuf) == 0 || s->broken) return false;
    int64_t r = flush_some(s);
    if (r < 0) {
        s->broken = (int)-r; /* reported from the loop or the next wait call */
        defer_report(s);
        return false;
    }
    after_flush(s);
    defer_report(s);
    if (r > 0 && s->state == LSOCK_CLOSING && lsock__buf_len(&s->wbuf) == 0 && s->loop)
        start_io(s, LSOCK__WRITABLE, "lsock_socket_flush"); /* the loop completes the close */
    return r > 0;
}

int64_t lsock_socket_read_buffer_size(const lsock_socket *s)
{
    return s ? s->rbuf_limit : 0;
}

bool lsock_socket_set_read_buffer_size(lsock_socket *s, int64_t size)
{
    if (!s) return false;
    if (size < 0)
        return fail(s, LSOCK_ERR_INVALID_ARGUMENT, "lsock_socket_set_read_buffer_size",
                    "negative size");
    s->rbuf_limit = size;
    after_consume(s);
    return true;
}

int64_t lsock_socket_write_buffer_size(const lsock_socket *s)
{
    return s ? s->wbuf_limit : 0;
}

bool lsock_socket_set_write_buffer_size(lsock_socket *s, int64_t size)
{
    if (!s) return false;
    if (size < 0)
        return fail(s, LSOCK_ERR_INVALID_ARGUMENT, "lsock_socket_set_write_buffer_size",
                    "negative size");
    s->wbuf_limit = size;
    return true;
}

/* ---- blocking waits ------------------------------------------------------------------ */

/* Milliseconds left until deadline (msecs -1: forever). */
static int remaining(uint64_t deadline, int msecs)
{
    if (msecs < 0) return -1;
    uint64_t now = lsock__now_ms();
    return now >= deadline ? 0 : (int)(deadline - now);
}

static bool timed_out(lsock_socket *s, const char *call)
{
    return fail(s, LSOCK_ERR_SOCKET_TIMEOUT, call, NULL);
}

static bool wait_connected(lsock_socket *s, int msecs)
{
    static const char call[] = "lsock_socket_wait_for_connected";
    if (s->state == LSOCK_CONNECTED || s->state == LSOCK_CLOSING) return true;
    if (s->state != LSOCK_CONNECTING) return fail(s, LSOCK_ERR_OPERATION, call, "not connecting");
    uint64_t deadline = lsock__now_ms() + (uint64_t)(msecs < 0 ? 0 : msecs);
    for (;;) {
        int rc = retry_connect(s);
        if (rc > 0) return !s->dead && s->state == LSOCK_CONNECTED;
        if (rc < 0 || s->dead) return false;
        int left = remaining(deadline, msecs);
        if (left == 0) return timed_out(s, call);
        int pause = s->retry_delay;
        if (left > 0 && pause > left) pause = left;
        uint64_t cd = s->connect_deadline, now = lsock__now_ms();
        if (cd > now && (uint64_t)pause > cd - now) pause = (int)(cd - now);
        lsock__plat_sleep_ms(pause);
    }
}

/* What a wait waits for. */
typedef enum wait_goal { FOR_READ, FOR_WRITTEN, FOR_CLOSE } wait_goal;

/* The outcomes of wait_loop. */
enum { WAIT_FULL = -2, WAIT_ENDED = -1, WAIT_TIMEOUT = 0, WAIT_DONE = 1 };

/* Whether the goal can only come from reading: data, or the end of a connection with nothing
 * left to write (the end of stream lies behind the unread data). */
static int needs_reading(const lsock_socket *s, wait_goal goal)
{
    if (goal == FOR_WRITTEN) return 0;
    if (goal == FOR_CLOSE) return !(s->state == LSOCK_CLOSING && lsock__buf_len(&s->wbuf) > 0);
    return 1;
}

/* Milliseconds to poll: up to the wait's deadline, and while CLOSING up to the linger's. */
static int wait_left(const lsock_socket *s, uint64_t deadline, int msecs)
{
    int left = remaining(deadline, msecs);
    if (lingering(s)) {
        uint64_t now = lsock__now_ms();
        uint64_t l = now >= s->linger_deadline ? 0 : s->linger_deadline - now;
        if (left < 0 || l < (uint64_t)left) left = l > INT_MAX ? INT_MAX : (int)l;
    }
    return left;
}

/*
 * The wait engine: polls this socket's descriptor only, doing its reads and writes, until
 * the goal is reached, the connection ends, or the time is up. Never reads past the read
 * buffer limit: a goal that needs reading while the buffer is full gives WAIT_FULL at once.
 * Enforces the linger time of a CLOSING socket. Returns WAIT_DONE, WAIT_TIMEOUT, WAIT_ENDED
 * (the connection ended) or WAIT_FULL.
 */
static int wait_loop(lsock_socket *s, int msecs, wait_goal goal)
{
    uint64_t deadline = lsock__now_ms() + (uint64_t)(msecs < 0 ? 0 : msecs);
    for (;;) {
        if (report_deferred(s)) return WAIT_ENDED;
        if (linger_due(s)) {
            linger_expired(s);
            return WAIT_ENDED;
        }
        int full = s->throttled || rbuf_full(s);
        if (full && needs_reading(s, goal)) return WAIT_FULL;
        unsigned ev = full ? 0 : LSOCK__READABLE;
        if (lsock__buf_len(&s->wbuf) > 0) ev |= LSOCK__WRITABLE;
        if (ev == 0)
            return WAIT_FULL; /* reading paused and nothing to write: nothing to wait for */
        int left = wait_left(s, deadline, msecs);
        int block = ev == LSOCK__READABLE && left < 0 && s->fd_blocking;
        int rc = block ? LSOCK__READABLE : lsock__plat_wait(s->fd, ev, left);
        if (rc == 0) {
            if (linger_due(s) || remaining(deadline, msecs) != 0) continue;
            return WAIT_TIMEOUT;
        }
        if (rc < 0) {
            connection_lost(s, -rc, "lsock_socket_wait");
            return WAIT_ENDED;
        }
        int wrote = 0, got = 0;
        if (rc & LSOCK__WRITABLE) {
            size_t before = lsock__buf_len(&s->wbuf);
            if (on_writable(s) < 0) return WAIT_ENDED;
            wrote = lsock__buf_len(&s->wbuf) < before;
        }
        if (rc & LSOCK__READABLE) {
            s->block_next = block;
            int r = on_readable(s);
            if (!s->dead) s->block_next = 0;
            if (r == 0 && block) s->fd_blocking = 0; /* not blocking after all: poll from now */
            if (r < 0) return WAIT_ENDED;
            got = r;
        }
        if (s->dead) return WAIT_ENDED;
        if ((goal == FOR_READ && got) || (goal == FOR_WRITTEN && wrote)) return WAIT_DONE;
    }
}

/* A wait's result as its return value and error. */
static bool wait_result(lsock_socket *s, int rc, const char *call)
{
    if (rc == WAIT_TIMEOUT) return timed_out(s, call);
    if (rc == WAIT_FULL)
        return fail(s, LSOCK_ERR_OPERATION, call, "the read buffer is full: read from it first");
    return rc == WAIT_DONE && !s->dead;
}

bool lsock_socket_wait_for_connected(lsock_socket *s, int msecs)
{
    if (!s || s->dead) return false;
    hold(s);
    bool ok = wait_connected(s, msecs);
    release(s);
    return ok;
}

/* The waits on a CONNECTING socket first wait for the connection, out of the same time.
 * Returns false if it did not come. */
static bool connect_phase(lsock_socket *s, int *msecs)
{
    if (s->state != LSOCK_CONNECTING) return true;
    uint64_t start = lsock__now_ms();
    if (!wait_connected(s, *msecs)) return false;
    if (*msecs >= 0) {
        uint64_t used = lsock__now_ms() - start;
        *msecs = used >= (uint64_t)*msecs ? 0 : *msecs - (int)used;
    }
    return true;
}

static bool wait_ready_read(lsock_socket *s, int msecs)
{
    static const char call[] = "lsock_socket_wait_for_ready_read";
    if (!connect_phase(s, &msecs)) return false;
    if (report_deferred(s)) return false;
    if (s->state != LSOCK_CONNECTED && s->state != LSOCK_CLOSING)
        return fail(s, LSOCK_ERR_OPERATION, call, "not connected");
    /* A full read buffer fails at once, whatever is queued for writing (wait_loop). */
    return wait_result(s, wait_loop(s, msecs, FOR_READ), call);
}

bool lsock_socket_wait_for_ready_read(lsock_socket *s, int msecs)
{
    if (!s || s->dead) return false;
    hold(s);
    bool ok = wait_ready_read(s, msecs);
    release(s);
    return ok;
}

static bool wait_bytes_written(lsock_socket *s, int msecs)
{
    static const char call[] = "lsock_socket_wait_for_bytes_written";
    if (!connect_phase(s, &msecs)) return false;
    if (report_deferred(s)) return false;
    if (s->written_unreported > 0) {
        /* Data already went straight to the kernel: that is the write being waited for. */
        if (s->loop) lsock__pending_cancel(s->loop, &s->pend);
        emit_bytes_written(s);
        return !s->dead;
    }
    if (s->state == LSOCK_UNCONNECTED) return fail(s, LSOCK_ERR_OPERATION, call, "not connected");
    if (s->fd < 0 || lsock__buf_len(&s->wbuf) == 0)
        return fail(s, LSOCK_ERR_OPERATION, call, "nothing written to wait for");
    return wait_result(s, wait_loop(s, msecs, FOR_WRITTEN), call);
}

bool lsock_socket_wait_for_bytes_written(lsock_socket *s, int msecs)
{
    if (!s || s->dead) return false;
    hold(s);
    bool ok = wait_bytes_written(s, msecs);
    release(s);
    return ok;
}

/* True once the socket is disconnected, however that came (the peer closed, an error, the
 * linger time ran out: the error says which). */
static bool wait_disconnected(lsock_socket *s, int msecs)
{
    static const char call[] = "lsock_socket_wait_for_disconnected";
    if (s->state == LSOCK_UNCONNECTED) return fail(s, LSOCK_ERR_OPERATION, call, "not connected");
    if (!connect_phase(s, &msecs)) return false;
    if (s->state == LSOCK_CLOSING && lsock__buf_len(&s->wbuf) == 0 && !s->broken && !s->watch_err) {
        finish_close(s);
        return !s->dead;
    }
    int rc = wait_loop(s, msecs, FOR_CLOSE);
    if (rc == WAIT_ENDED) return !s->dead && s->state == LSOCK_UNCONNECTED;
    return wait_result(s, rc, call);
}

bool lsock_socket_wait_for_disconnected(lsock_socket *s, int msecs)
{
    if (!s || s->dead) return false;
    hold(s);
    bool ok = wait_disconnected(s, msecs);
    release(s);
    return ok;
}

/* ---- descriptors and credentials ----------------------------------------------------- */

bool lsock_socket_set_descriptor(lsock_socket *s, intptr_t fd, lsock_state state,
                                 unsigned open_mode)
{
    static const char call[] = "lsock_socket_set_descriptor";
    if (!s || s->dead) return false;
    if (s->state != LSOCK_UNCONNECTED)
        return fail(s, LSOCK_ERR_OPERATION, call, "the socket is not unconnected");
    if (state != LSOCK_CONNECTED)
        return fail(s, LSOCK_ERR_INVALID_ARGUMENT, call, "state must be LSOCK_CONNECTED");
    if (!valid_mode(open_mode)) return fail(s, LSOCK_ERR_INVALID_ARGUMENT, call, "open mode");
    if (fd == -1) return fail(s, LSOCK_ERR_UNSUPPORTED_OPERATION, call, "invalid descriptor");
    int rc = lsock__plat_adopt(fd, 0);
    if (rc < 0) return fail(s, LSOCK_ERR_UNSUPPORTED_OPERATION, call, lsock__plat_strerror(rc));
    hold(s);
    lsock__err_clear(&s->err);
    lsock__buf_clear(&s->rbuf);
    lsock__buf_clear(&s->wbuf);
    s->fd = rc;
    s->fd_shared = 1; /* the application may keep its own copies */
    s->open_mode = open_mode;
    s->state = LSOCK_CONNECTED;
    watch(s, call);
    emit_state(s, LSOCK_CONNECTED);
    release(s);
    return true;
}

intptr_t lsock_socket_descriptor(const lsock_socket *s)
{
    if (!s || s->state == LSOCK_UNCONNECTED || s->state == LSOCK_CONNECTING || s->fd < 0) return -1;
    /* Once handed out, the descriptor may be dup'ed: closing must unregister it explicitly.
     * (Every lsock_socket is heap-allocated and mutable; const is the API's promise of no
     * visible change.) */
    ((lsock_socket *)s)->fd_shared = 1;
    return lsock__plat_native(s->fd);
}

bool lsock_socket_peer_credentials(lsock_socket *s, lsock_credentials *out)
{
    static const char call[] = "lsock_socket_peer_credentials";
    if (!s) return false;
    if (!out) return fail(s, LSOCK_ERR_INVALID_ARGUMENT, call, "NULL output");
    if (s->fd < 0 || s->state == LSOCK_CONNECTING)
        return fail(s, LSOCK_ERR_OPERATION, call, "not connected");
    int rc = lsock__plat_peer_credentials(s->fd, out);
    if (rc < 0) return fail(s, LSOCK_ERR_UNSUPPORTED_OPERATION, call, lsock__plat_strerror(rc));
    return true;
}

/* ---- accepted connections (server.c) ------------------------------------------------- */

lsock_socket *lsock__socket_from_accepted(lsock_loop *loop, int fd, unsigned fork_stamp,
                                          const char *name, const char *full)
{
    lsock_socket *s = alloc_socket(loop);
    if (!s) return NULL;
    s->name = strdup(name);
    s->full = strdup(full);
    if (!s->name || !s->full) {
        s->fd = -1;
        lsock_socket_free(s);
        return NULL;
    }
    s->fd = fd;
    s->fd_fork_stamp = fork_stamp;
    s->state = LSOCK_CONNECTED;
    s->open_mode = LSOCK_READ_WRITE;
    return s;
}

void lsock__socket_activate(lsock_socket *s)
{
    watch(s, "lsock_server_next_pending_connection");
}
