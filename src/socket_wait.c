/*
 * The socket's blocking waits (lsock_socket_wait_for_*): they poll the socket's own descriptor,
 * without the loop, through the I/O paths of socket_io.c. The state machine and lifetime are
 * in socket.c, the struct in socket.h.
 */
#include "socket.h"

#include <limits.h>

/* ---- blocking waits ------------------------------------------------------------------ */

/* The read buffer holds its limit: nothing more is read from the kernel until the
 * application reads. */
static int rbuf_full(const lsock_socket *s)
{
    int64_t limit = lsock__socket_read_limit(s);
    return limit > 0 && (int64_t)lsock__buf_len(&s->rbuf) >= limit;
}

/* A loop-less socket's linger is enforced by the wait calls, which ask this. */
static int linger_due(const lsock_socket *s)
{
    return lsock__socket_lingering(s) && lsock__now_ms() >= s->linger_deadline;
}

/* Milliseconds left until deadline (msecs -1: forever). */
static int remaining(uint64_t deadline, int msecs)
{
    if (msecs < 0) return -1;
    uint64_t now = lsock__now_ms();
    return now >= deadline ? 0 : (int)(deadline - now);
}

static bool timed_out(lsock_socket *s, const char *call)
{
    return lsock__socket_fail(s, LSOCK_ERR_SOCKET_TIMEOUT, call, NULL);
}

static bool wait_connected(lsock_socket *s, int msecs)
{
    static const char call[] = "lsock_socket_wait_for_connected";
    /* As Qt: not connecting, the answer is the state, and the error (why a connect failed)
     * stays as it is. */
    if (s->state != LSOCK_CONNECTING) return s->state == LSOCK_CONNECTED;
    uint64_t deadline = lsock__now_ms() + (uint64_t)(msecs < 0 ? 0 : msecs);
    for (;;) {
        int rc = lsock__socket_retry_connect(s);
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
    if (goal == FOR_CLOSE) return !(s->state == LSOCK_CLOSING && lsock__socket_unsent(s));
    return 1;
}

/* Milliseconds to poll: up to the wait's deadline, and while CLOSING up to the linger's. */
static int wait_left(const lsock_socket *s, uint64_t deadline, int msecs)
{
    int left = remaining(deadline, msecs);
    if (lsock__socket_lingering(s)) {
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
 * Enforces the linger time of a CLOSING socket. call names the wait in errors. Returns WAIT_DONE,
 * WAIT_TIMEOUT, WAIT_ENDED (the connection ended) or WAIT_FULL.
 */
static int wait_loop(lsock_socket *s, int msecs, wait_goal goal, const char *call)
{
    uint64_t deadline = lsock__now_ms() + (uint64_t)(msecs < 0 ? 0 : msecs);
    /* The bytes ready_read or a loop-less wait announced: buffered first (and a header among
     * them beyond the maximum ends the connection, as on arrival). */
    int had = lsock__socket_announced(s) > 0;
    lsock__socket_settle(s);
    if (had && s->msg_mode && lsock__socket_check_message(s, call) < 0) return WAIT_ENDED;
    for (;;) {
        if (lsock__socket_report_deferred(s)) return WAIT_ENDED;
        if (linger_due(s)) {
            lsock__socket_linger_expired(s);
            return WAIT_ENDED;
        }
        int full = s->throttled || rbuf_full(s);
        if (full && needs_reading(s, goal)) return WAIT_FULL;
        unsigned ev = full ? 0 : LSOCK__READABLE;
        if (lsock__socket_queued(s) > 0 ||
            (goal == FOR_CLOSE && s->state == LSOCK_CLOSING && lsock__socket_unsent(s)))
            ev |= LSOCK__WRITABLE;
        if (ev == 0)
            return WAIT_FULL; /* reading paused and nothing to write: nothing to wait for */
        int left = wait_left(s, deadline, msecs);
        /* A loop-less wait for data on a socket that reads large pieces polls, so that it can
         * announce the bytes rather than buffer them (defer_read in socket_io.c). */
        int read_wait = goal == FOR_READ && !s->loop;
        int block = ev == LSOCK__READABLE && left < 0 && s->fd_blocking &&
                    !(read_wait && lsock__socket_may_defer(s));
        int rc = block ? LSOCK__READABLE : lsock__plat_wait(s->fd, ev, left);
        if (rc == 0) {
            if (linger_due(s) || remaining(deadline, msecs) != 0) continue;
            return WAIT_TIMEOUT;
        }
        if (rc < 0) {
            lsock__socket_connection_lost(s, -rc, call);
            return WAIT_ENDED;
        }
        int wrote = 0, got = 0;
        if (rc & LSOCK__WRITABLE) {
            uint64_t before = lsock__socket_queued(s);
            if (lsock__socket_on_writable(s) < 0) return WAIT_ENDED;
            wrote = lsock__socket_queued(s) < before;
        }
        if (rc & LSOCK__READABLE) {
            s->block_next = block;
            s->read_wait = read_wait;
            int r = lsock__socket_on_readable(s);
            if (!s->dead) s->block_next = s->read_wait = 0;
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
        return lsock__socket_fail(s, LSOCK_ERR_OPERATION, call,
                                  "the read buffer is full: read from it first");
    return rc == WAIT_DONE && !s->dead;
}

bool lsock_socket_wait_for_connected(lsock_socket *s, int msecs)
{
    if (!s || s->dead) return false;
    lsock__socket_hold(s);
    bool ok = wait_connected(s, msecs);
    lsock__socket_release(s);
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
    if (s->state == LSOCK_UNCONNECTED) return false; /* as Qt: the error stays as it is */
    if (!connect_phase(s, &msecs)) return false;
    lsock__socket_flush_gathered(s); /* a failure is reported just below */
    if (lsock__socket_report_deferred(s)) return false;
    if (s->state == LSOCK_UNCONNECTED) return false;
    /* A full read buffer fails at once, whatever is queued for writing (wait_loop). */
    return wait_result(s, wait_loop(s, msecs, FOR_READ, call), call);
}

bool lsock_socket_wait_for_ready_read(lsock_socket *s, int msecs)
{
    if (!s || s->dead) return false;
    lsock__socket_hold(s);
    bool ok = wait_ready_read(s, msecs);
    lsock__socket_release(s);
    return ok;
}

static bool wait_bytes_written(lsock_socket *s, int msecs)
{
    static const char call[] = "lsock_socket_wait_for_bytes_written";
    if (!connect_phase(s, &msecs)) return false;
    lsock__socket_flush_gathered(s); /* a failure is reported just below */
    if (lsock__socket_report_deferred(s)) return false;
    if (s->written_unreported > 0) {
        /* Data already went straight to the kernel: that is the write being waited for. */
        if (s->loop) lsock__pending_cancel(s->loop, &s->pend);
        lsock__socket_emit_bytes_written(s);
        return !s->dead;
    }
    if (s->state == LSOCK_UNCONNECTED) return false; /* as Qt: the error stays as it is */
    if (s->fd < 0 || lsock__socket_queued(s) == 0)
        return lsock__socket_fail(s, LSOCK_ERR_OPERATION, call, "nothing written to wait for");
    return wait_result(s, wait_loop(s, msecs, FOR_WRITTEN, call), call);
}

bool lsock_socket_wait_for_bytes_written(lsock_socket *s, int msecs)
{
    if (!s || s->dead) return false;
    lsock__socket_hold(s);
    bool ok = wait_bytes_written(s, msecs);
    lsock__socket_release(s);
    return ok;
}

/* True once the socket is disconnected, however that came (the peer closed, an error, the
 * linger time ran out: the error says which). */
static bool wait_disconnected(lsock_socket *s, int msecs)
{
    static const char call[] = "lsock_socket_wait_for_disconnected";
    if (s->state == LSOCK_UNCONNECTED) return false; /* as Qt: the error stays as it is */
    if (!connect_phase(s, &msecs)) return false;
    if (s->state == LSOCK_CLOSING && !lsock__socket_unsent(s) && !s->broken && !s->watch_err &&
        !s->read_end_set) {
        lsock__socket_finish_close(s);
        return !s->dead;
    }
    int rc = wait_loop(s, msecs, FOR_CLOSE, call);
    if (rc == WAIT_ENDED) return !s->dead && s->state == LSOCK_UNCONNECTED;
    return wait_result(s, rc, call);
}

bool lsock_socket_wait_for_disconnected(lsock_socket *s, int msecs)
{
    if (!s || s->dead) return false;
    lsock__socket_hold(s);
    bool ok = wait_disconnected(s, msecs);
    lsock__socket_release(s);
    return ok;
}
