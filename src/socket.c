/*
 * The socket: QLocalSocket's state machine and the socket's lifetime, callbacks, closing,
 * connecting and accessors, over the platform layer. The I/O paths are in socket_io.c, the
 * blocking waits in socket_wait.c, the struct and what the three share in socket.h. The whole
 * state machine lives here:
 *
 *   UNCONNECTED --connect--> CONNECTING --(accepted)--> CONNECTED --disconnect--> CLOSING
 *        ^                        |                         |                        |
 *        +------ failure ---------+------ abort / peer close / error ----------------+
 *
 * Callbacks fire in Qt's order (see connected_ok, lsock__socket_connection_lost,
 * lsock__socket_finish_close). Any of them may free the socket: every entry point holds the
 * socket while it runs (lsock__socket_hold/lsock__socket_release), checks s->dead after each
 * callback, and the memory goes only when the outermost entry point releases it.
 */
#include "socket.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DEFAULT_CONNECT_TIMEOUT 30000
#define RETRY_MIN_MS            1
#define RETRY_MAX_MS            100

static const char *const empty = "";

/* ---- lifetime ------------------------------------------------------------------------ */

void lsock__socket_destroy(lsock_socket *s)
{
    lsock__buf_free(&s->rbuf);
    lsock__socket_drop_queued(s);
    lsock__buf_free(&s->wbuf);
    free(s->wsegs.v);
    lsock__socket_drop_fds(s);
    free(s->name);
    free(s->full);
    free(s->connecting_path);
    lsock__err_free(&s->err);
    free(s);
}

static lsock_socket *alloc_socket(lsock_loop *loop)
{
    lsock_socket *s = calloc(1, sizeof *s);
    if (!s) return NULL;
    s->loop = loop;
    s->fd = -1;
    s->connect_timeout = DEFAULT_CONNECT_TIMEOUT;
    s->linger = -1;
    s->msg_max = LSOCK_DEFAULT_MAX_MESSAGE_SIZE;
    s->pend.cb = lsock__socket_pending_cb;
    lsock__io_init(&s->io, -1, NULL, s);
    if (loop) lsock__loop_ref_objects(loop, 1);
    return s;
}

lsock_socket *lsock_socket_new(lsock_loop *loop)
{
    return alloc_socket(loop);
}

/* How long what the platform still holds to write may take to reach the peer once the
 * descriptor is closed (lsock__plat_close_linger): nothing after an abort, the rest of the
 * linger time when one is set, else the platform's own bound. */
static int close_linger(const lsock_socket *s)
{
    if (s->discard) return 0;
    if (s->linger < 0) return -1;
    if (s->linger_deadline == 0) return s->linger;
    uint64_t now = lsock__now_ms();
    return now >= s->linger_deadline ? 0 : (int)(s->linger_deadline - now);
}

/* Closes the descriptor and stops all watching, firing nothing. */
static void drop_descriptor(lsock_socket *s)
{
    lsock__socket_settle(s); /* ended inside ready_read: the bytes it announced stay readable */
    s->kernel_avail = 0;
    s->read_end_set = 0; /* nothing more comes from this descriptor, nor is reported */
    s->big_reads = 0;
    lsock__socket_flush_before_close(s);
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
    int linger = close_linger(s);
    s->linger_deadline = 0;
    s->discard = 0;
    s->watch_err = 0;
    s->watch_call = NULL;
    if (s->fd >= 0) lsock__plat_close_linger(s->fd, linger);
    s->fd = -1;
    s->fd_blocking = 0;
    s->fd_shared = 0;
    s->sndbuf_grown = 0;
    s->sent_iter = 0;
    s->throttled = 0;
    s->broken = 0;
    s->written_unreported = 0;
    free(s->connecting_path);
    s->connecting_path = NULL;
}

void lsock_socket_free(lsock_socket *s)
{
    if (!s || s->dead) return;
    lsock__socket_drop_fds_out(s); /* while the connection's peer is known (Windows) */
    s->kernel_avail = 0;           /* nothing is read on into a socket being freed */
    drop_descriptor(s);
    s->state = LSOCK_UNCONNECTED;
    if (s->loop) lsock__loop_ref_objects(s->loop, -1);
    s->dead = 1;
    if (s->depth == 0) lsock__socket_destroy(s);
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

static void emit_state(lsock_socket *s, lsock_state st)
{
    if (!s->dead && s->cb.state_changed) s->cb.state_changed(s, st, s->ud);
}

static void emit_error(lsock_socket *s)
{
    if (!s->dead && s->cb.error_occurred) s->cb.error_occurred(s, s->err.code, s->ud);
}

void lsock__socket_emit_bytes_written(lsock_socket *s)
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
void lsock__socket_finish_close(lsock_socket *s)
{
    int was_connected = s->state == LSOCK_CONNECTED || s->state == LSOCK_CLOSING;
    if (s->state == LSOCK_UNCONNECTED) return;
    if (s->state == LSOCK_CONNECTED) {
        s->state = LSOCK_CLOSING;
        emit_state(s, LSOCK_CLOSING);
        if (s->dead || s->state != LSOCK_CLOSING) return; /* the callback closed it already */
    }
    lsock__socket_drop_fds_out(s); /* descriptors that never went, while the peer is known */
    drop_descriptor(s);
    lsock__socket_drop_queued(s);
    s->state = LSOCK_UNCONNECTED;
    clear_names(s);
    emit_state(s, LSOCK_UNCONNECTED);
    if (!was_connected) return;
    if (!s->dead && s->cb.read_channel_finished) s->cb.read_channel_finished(s, s->ud);
    if (!s->dead && s->cb.disconnected) s->cb.disconnected(s, s->ud);
}

/* Qt's setErrorAndEmit: record, error_occurred, then the connection (if any) ends. */
void lsock__socket_error_and_close(lsock_socket *s, lsock_error code, const char *call,
                                   const char *detail)
{
    lsock__err_set(&s->err, code, call, detail);
    emit_error(s);
    if (s->dead) return;
    lsock__socket_finish_close(s);
}

static lsock_error io_error(int err)
{
    return (err == EPIPE || err == ECONNRESET) ? LSOCK_ERR_PEER_CLOSED : LSOCK_ERR_CONNECTION;
}

void lsock__socket_connection_lost(lsock_socket *s, int err, const char *call)
{
    lsock__socket_error_and_close(
        s, err ? io_error(err) : LSOCK_ERR_PEER_CLOSED, call,
        err && io_error(err) != LSOCK_ERR_PEER_CLOSED ? lsock__plat_strerror(err) : NULL);
}

/* ---- connecting ---------------------------------------------------------------------- */

/* The kernel connected: watch the connection (if the loop cannot, the connect fails with
 * SOCKET_RESOURCE rather than leave a deaf socket), then CONNECTED and connected. */
/* The options the name is resolved with: the abstract namespace only where there is one. */
static unsigned resolve_options(const lsock_socket *s)
{
    return lsock__plat_has_abstract() ? s->options
                                      : s->options & ~(unsigned)LSOCK_ABSTRACT_NAMESPACE;
}

/* LSOCK_SAME_USER_ONLY, before CONNECTED: a server of another user (or of a user that cannot
 * be told) fails the connect with SOCKET_ACCESS. Returns false when it did. */
static bool server_user_ok(lsock_socket *s)
{
    if (!(s->options & LSOCK_SAME_USER_ONLY)) return true;
    char who[128], detail[224];
    int rc = lsock__plat_peer_same_user(s->fd, who, sizeof who);
    if (rc == 1) return true;
    if (rc == 0)
        snprintf(detail, sizeof detail,
                 "the server runs as another user (%s) and LSOCK_SAME_USER_ONLY is set", who);
    else
        snprintf(detail, sizeof detail,
                 "the server's user cannot be told (%s) and LSOCK_SAME_USER_ONLY is set",
                 lsock__plat_strerror(rc));
    lsock__plat_close(s->fd);
    s->fd = -1;
    lsock__socket_error_and_close(s, LSOCK_ERR_SOCKET_ACCESS, "lsock_socket_connect", detail);
    return false;
}

static void connected_ok(lsock_socket *s)
{
    if (s->retry) {
        lsock_timer_free(s->retry);
        s->retry = NULL;
    }
    if (!server_user_ok(s)) return;
    if (s->loop) {
        lsock__io_init(&s->io, s->fd, lsock__socket_on_io, s);
        int rc = lsock__io_start(s->loop, &s->io, LSOCK__READABLE);
        if (rc < 0) {
            char detail[96];
            lsock__socket_watch_failure_detail(detail, sizeof detail, -rc);
            lsock__plat_close(s->fd);
            s->fd = -1;
            lsock__socket_error_and_close(s, LSOCK_ERR_SOCKET_RESOURCE, "lsock_socket_connect",
                                          detail);
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
    lsock__socket_error_and_close(s, lsock__connect_error(err), "lsock_socket_connect",
                                  err == ENAMETOOLONG ? lsock__plat_name_limit_text()
                                                      : lsock__plat_strerror(err));
}

/* One more attempt while the server's backlog is full. Returns 1 connected, 0 still
 * connecting, -1 failed (callbacks fired). */
int lsock__socket_retry_connect(lsock_socket *s)
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
        lsock__socket_error_and_close(s, LSOCK_ERR_SOCKET_TIMEOUT, "lsock_socket_connect",
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
    lsock__socket_hold(s);
    if (lsock__socket_retry_connect(s) == 0 && !s->dead && s->retry)
        lsock_timer_start(s->retry, (uint64_t)s->retry_delay, 0);
    lsock__socket_release(s);
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
        lsock__socket_fail(s, LSOCK_ERR_OPERATION, call, "the socket is not unconnected");
        emit_error(s);
        return false;
    }
    if (!valid_mode(open_mode))
        return lsock__socket_fail(s, LSOCK_ERR_INVALID_ARGUMENT, call, "open mode");
    if (name) {
        char *copy = strdup(name);
        if (!copy) return lsock__socket_fail(s, LSOCK_ERR_SOCKET_RESOURCE, call, "out of memory");
        free(s->name);
        s->name = copy;
    }
    lsock__err_clear(&s->err);
    lsock__buf_clear(&s->rbuf);
    lsock__socket_drop_queued(s);
    lsock__socket_drop_fds(s);
    s->state = LSOCK_CONNECTING;
    s->connecting_mode = open_mode;
    emit_state(s, LSOCK_CONNECTING);
    if (s->dead || s->state != LSOCK_CONNECTING) return false;
    if (!s->name || !*s->name) {
        lsock__socket_error_and_close(s, LSOCK_ERR_SERVER_NOT_FOUND, call, "empty name");
        return false;
    }
    char *path = NULL, why[320];
    int resolved = lsock__name_resolve(s->name, resolve_options(s), &path, why, sizeof why);
    if (resolved < 0) {
        lsock__socket_error_and_close(
            s, resolved == -EACCES ? LSOCK_ERR_SOCKET_ACCESS : LSOCK_ERR_SOCKET_RESOURCE, call,
            resolved == -EACCES ? why : "out of memory");
        return false;
    }
    const char *refused = lsock__name_check(path);
    if (refused) {
        free(path);
        lsock__socket_error_and_close(s, LSOCK_ERR_INVALID_ARGUMENT, call, refused);
        return false;
    }
    s->connecting_path = path;
    int fd = -1;
    s->fd_fork_stamp = lsock__plat_fork_stamp();
    int rc = lsock__plat_connect(path, (s->options & LSOCK_ABSTRACT_NAMESPACE) != 0, &fd);
    s->fd = fd;
    if (fd >= 0 && (rc >= 0 || rc == -EAGAIN) && (s->options & LSOCK_PASS_DESCRIPTORS))
        lsock__plat_pass_descriptors(fd); /* before the first byte either way */
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
    lsock__socket_hold(s);
    bool ok = do_connect(s, name, open_mode);
    lsock__socket_release(s);
    return ok;
}

/* ---- closing: the three ways --------------------------------------------------------- */

/* The linger time ran out with data still queued: abort, as Qt reports errors (error_occurred,
 * then the connection ends), dropping the queue. */
void lsock__socket_linger_expired(lsock_socket *s)
{
    s->discard = 1;
    lsock__socket_error_and_close(s, LSOCK_ERR_SOCKET_TIMEOUT, "lsock_socket_disconnect",
                                  "the peer did not take the queued data within the linger time");
}

static void linger_timer_cb(lsock_timer *t, void *ud)
{
    lsock_socket *s = ud;
    lsock__socket_hold(s);
    if (lsock__socket_lingering(s)) lsock__socket_linger_expired(s);
    lsock__socket_release(s);
}

/* CLOSING with data the kernel did not take: bound the wait by the linger time (from now). */
static void start_linger(lsock_socket *s)
{
    if (s->linger_timer) lsock_timer_stop(s->linger_timer);
    s->linger_deadline = 0;
    if (s->linger < 0) return;
    if (s->linger == 0) {
        lsock__socket_linger_expired(s);
        return;
    }
    s->linger_deadline = lsock__now_ms() + (uint64_t)s->linger;
    if (!s->loop) return;
    if (!s->linger_timer) s->linger_timer = lsock_timer_new(s->loop, linger_timer_cb, s);
    if (!s->linger_timer || !lsock_timer_start(s->linger_timer, (uint64_t)s->linger, 0))
        lsock__socket_error_and_close(s, LSOCK_ERR_SOCKET_RESOURCE, "lsock_socket_disconnect",
                                      "out of memory for the linger timer");
}

static void do_disconnect(lsock_socket *s)
{
    if (s->state == LSOCK_UNCONNECTED || s->state == LSOCK_CLOSING) return;
    if (s->state == LSOCK_CONNECTING) {
        lsock__socket_finish_close(s);
        return;
    }
    s->state = LSOCK_CLOSING;
    emit_state(s, LSOCK_CLOSING);
    if (s->dead || s->state != LSOCK_CLOSING) return;
    if (lsock__socket_report_deferred(s)) return;
    lsock__socket_flush_gathered(s); /* a parent's gathered bytes are dropped, ours sent */
    if (lsock__socket_queued(s) > 0) {
        int64_t r = lsock__socket_flush_some(s);
        if (r < 0) {
            lsock__socket_connection_lost(s, (int)-r, "lsock_socket_disconnect");
            return;
        }
    }
    if (lsock__socket_unsent(s)) {
        lsock__socket_after_flush(s);
        start_linger(s); /* CLOSING until the rest is written, or the linger time is up */
        return;
    }
    lsock__socket_finish_close(s);
}

void lsock_socket_disconnect(lsock_socket *s)
{
    if (!s || s->dead) return;
    lsock__socket_hold(s);
    do_disconnect(s);
    lsock__socket_release(s);
}

void lsock_socket_abort(lsock_socket *s)
{
    if (!s || s->dead) return;
    lsock__socket_hold(s);
    if (s->state != LSOCK_UNCONNECTED && s->open_mode != 0 && s->cb.about_to_close)
        s->cb.about_to_close(s, s->ud); /* as Qt's abort(), which closes the device */
    if (s->dead) {
        lsock__socket_release(s);
        return;
    }
    lsock__socket_flush_before_close(s);
    lsock__socket_drop_queued(s);
    lsock__buf_clear(&s->rbuf);
    s->kernel_avail = 0;       /* unread bytes are dropped, those left in the kernel too */
    lsock__socket_drop_fds(s); /* never taken, or never sent */
    s->discard = 1;            /* and what the platform still holds (Windows: a write in flight) */
    lsock__socket_finish_close(s);
    if (!s->dead) {
        s->discard = 0;
        if (s->state == LSOCK_UNCONNECTED) s->open_mode = 0;
    }
    lsock__socket_release(s);
}

void lsock_socket_close(lsock_socket *s)
{
    if (!s || s->dead) return;
    lsock__socket_hold(s);
    if (s->open_mode != 0 || s->state != LSOCK_UNCONNECTED) {
        /* As QIODevice::close: about_to_close only for an open device. */
        if (s->open_mode != 0 && s->cb.about_to_close) s->cb.about_to_close(s, s->ud);
        if (!s->dead) {
            lsock__buf_clear(&s->rbuf);
            s->kernel_avail = 0;          /* nor those ready_read left in the kernel */
            lsock__socket_drop_fds_in(s); /* they came with bytes nobody will read */
            lsock__socket_after_consume(s);
            s->open_mode = 0;
            do_disconnect(s);
        }
    }
    lsock__socket_release(s);
}

/* ---- accessors ----------------------------------------------------------------------- */

bool lsock_socket_set_server_name(lsock_socket *s, const char *name)
{
    static const char call[] = "lsock_socket_set_server_name";
    if (!s) return false;
    if (s->state != LSOCK_UNCONNECTED)
        return lsock__socket_fail(s, LSOCK_ERR_OPERATION, call, "the socket is not unconnected");
    char *copy = NULL, *full = NULL, why[320];
    int rc = 0;
    if (name && *name &&
        (!(copy = strdup(name)) ||
         (rc = lsock__name_resolve(name, resolve_options(s), &full, why, sizeof why)) < 0)) {
        free(copy);
        if (rc == -EACCES) return lsock__socket_fail(s, LSOCK_ERR_SOCKET_ACCESS, call, why);
        return lsock__socket_fail(s, LSOCK_ERR_SOCKET_RESOURCE, call, "out of memory");
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
    if (options & ~(unsigned)(LSOCK_ABSTRACT_NAMESPACE | LSOCK_SAME_USER_ONLY | LSOCK_PER_USER |
                              LSOCK_PASS_DESCRIPTORS))
        return lsock__socket_fail(s, LSOCK_ERR_INVALID_ARGUMENT, "lsock_socket_set_options",
                                  "unknown flags");
    if (s->state != LSOCK_UNCONNECTED)
        return lsock__socket_fail(s, LSOCK_ERR_OPERATION, "lsock_socket_set_options",
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
        return lsock__socket_fail(s, LSOCK_ERR_INVALID_ARGUMENT, "lsock_socket_set_connect_timeout",
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
        lsock__socket_fail(s, LSOCK_ERR_INVALID_ARGUMENT, "lsock_socket_set_linger",
                           "negative time other than -1");
        return;
    }
    s->linger = msecs;
    if (s->state != LSOCK_CLOSING || !lsock__socket_unsent(s)) return;
    lsock__socket_hold(s); /* already closing: the new time counts from now */
    start_linger(s);
    lsock__socket_release(s);
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
    return s ? lsock__err_text(&s->err) : empty;
}

bool lsock_socket_is_valid(const lsock_socket *s)
{
    return s && (s->state == LSOCK_CONNECTED || s->state == LSOCK_CLOSING);
}

unsigned lsock_socket_open_mode(const lsock_socket *s)
{
    return s ? s->open_mode : 0;
}

/* ---- descriptors and credentials ----------------------------------------------------- */

bool lsock_socket_set_descriptor(lsock_socket *s, intptr_t fd, lsock_state state,
                                 unsigned open_mode)
{
    static const char call[] = "lsock_socket_set_descriptor";
    if (!s || s->dead) return false;
    if (s->state != LSOCK_UNCONNECTED)
        return lsock__socket_fail(s, LSOCK_ERR_OPERATION, call, "the socket is not unconnected");
    if (state != LSOCK_CONNECTED)
        return lsock__socket_fail(s, LSOCK_ERR_INVALID_ARGUMENT, call,
                                  "state must be LSOCK_CONNECTED");
    if (!valid_mode(open_mode))
        return lsock__socket_fail(s, LSOCK_ERR_INVALID_ARGUMENT, call, "open mode");
    if (fd == -1)
        return lsock__socket_fail(s, LSOCK_ERR_UNSUPPORTED_OPERATION, call, "invalid descriptor");
    int rc = lsock__plat_adopt(fd, 0);
    if (rc < 0)
        return lsock__socket_fail(s, LSOCK_ERR_UNSUPPORTED_OPERATION, call,
                                  lsock__plat_strerror(rc));
    /* The names, as Qt 6 describes an adopted descriptor: the peer's address (the socket's own
     * for an accepted one), the full name, and its last component (an abstract name whole).
     * LSOCK_ABSTRACT_NAMESPACE follows the address, as in Qt 6, so that connecting again by
     * the name reaches the same address. */
    char *full = NULL, *name = NULL;
    int abstract = 0;
    if (lsock__plat_local_name(rc, 1, &full, &abstract) == -ENOMEM)
        return lsock__socket_fail(s, LSOCK_ERR_SOCKET_RESOURCE, call, "out of memory");
    if (full && *full) {
        const char *base = abstract ? NULL : strrchr(full, '/');
        name = strdup(base && base[1] ? base + 1 : full);
        if (!name) {
            free(full);
            return lsock__socket_fail(s, LSOCK_ERR_SOCKET_RESOURCE, call, "out of memory");
        }
    } else {
        free(full);
        full = NULL;
    }
    clear_names(s);
    s->name = name;
    s->full = full;
    if (full)
        s->options = abstract ? s->options | LSOCK_ABSTRACT_NAMESPACE
                              : s->options & ~(unsigned)LSOCK_ABSTRACT_NAMESPACE;
    lsock__socket_hold(s);
    lsock__err_clear(&s->err);
    lsock__buf_clear(&s->rbuf);
    lsock__socket_drop_queued(s);
    lsock__socket_drop_fds(s);
    s->fd = rc;
    s->fd_shared = 1; /* the application may keep its own copies */
    s->open_mode = open_mode;
    s->state = LSOCK_CONNECTED;
    lsock__socket_watch(s, call);
    emit_state(s, LSOCK_CONNECTED);
    lsock__socket_release(s);
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
    if (!out) return lsock__socket_fail(s, LSOCK_ERR_INVALID_ARGUMENT, call, "NULL output");
    if (s->fd < 0 || s->state == LSOCK_CONNECTING)
        return lsock__socket_fail(s, LSOCK_ERR_OPERATION, call, "not connected");
    int rc = lsock__plat_peer_credentials(s->fd, out);
    if (rc < 0)
        return lsock__socket_fail(s, LSOCK_ERR_UNSUPPORTED_OPERATION, call,
                                  lsock__plat_strerror(rc));
    return true;
}

bool lsock_socket_peer_sid(const lsock_socket *cs, char *buf, size_t size)
{
    static const char call[] = "lsock_socket_peer_sid";
    if (!cs) return false;
    lsock_socket *s = (lsock_socket *)cs; /* the error is recorded, as by every call */
    if (!buf || size == 0)
        return lsock__socket_fail(s, LSOCK_ERR_INVALID_ARGUMENT, call, "NULL buffer");
    buf[0] = '\0';
    int rc =
        lsock__plat_peer_sid(s->fd >= 0 && s->state != LSOCK_CONNECTING ? s->fd : -1, buf, size);
    if (rc == -ENOTSUP)
        return lsock__socket_fail(s, LSOCK_ERR_UNSUPPORTED_OPERATION, call,
                                  "users are uids here: see lsock_socket_peer_credentials()");
    if (s->fd < 0 || s->state == LSOCK_CONNECTING)
        return lsock__socket_fail(s, LSOCK_ERR_OPERATION, call, "not connected");
    if (rc == -ERANGE)
        return lsock__socket_fail(s, LSOCK_ERR_INVALID_ARGUMENT, call, "the buffer is too small");
    if (rc < 0)
        return lsock__socket_fail(s, LSOCK_ERR_SOCKET_ACCESS, call, lsock__plat_strerror(rc));
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
    lsock__socket_watch(s, "lsock_server_next_pending_connection");
}
