/*
 * The socket's I/O paths: watching the descriptor, reading and writing between the kernel and
 * the buffers, the loop's callbacks, and the public read and write calls. The state machine
 * and lifetime are in socket.c, the blocking waits in socket_wait.c, the struct in socket.h.
 */
#include "socket.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define READ_DIRECT_MIN 16384
#define READ_ROUNDS     16
#define BIG_READS_KEPT  4
#define MESSAGE_HEAD    4096  /* message mode: what is buffered of a message before announcing */
#define MESSAGE_TAIL    4096  /* read_message: what one direct read buffers past its message */
#define WSEG_KEEP       64    /* queue entries an empty write queue keeps */
#define COPY_SEGMENT    65536 /* the least a copy queued behind an owned buffer allocates */
/* read_some: descriptors that came with the data were lost (lsock__socket_keep_fds). */
#define LOST_FDS (-EMFILE)

/* ---- callbacks ----------------------------------------------------------------------- */

/* readyRead is not emitted recursively (as Qt): data that arrives while the application is
 * inside ready_read waits in the buffer. */
static void emit_ready_read(lsock_socket *s)
{
    if (s->dead || !s->cb.ready_read || s->in_ready_read) return;
    s->in_ready_read = 1;
    s->cb.ready_read(s, s->ud);
    s->in_ready_read = 0;
}

/* ---- watching ------------------------------------------------------------------------ */

void lsock__socket_watch_failure_detail(char *buf, size_t size, int err)
{
    snprintf(buf, size, "cannot watch the connection: %s", lsock__plat_strerror(err));
}

/*
 * Starts watching events on the loop. If the loop refuses (the backend is out of memory or
 * space), the connection would be deaf: the failure is recorded and reported from the loop
 * (or the next wait call), and the connection ends with SOCKET_RESOURCE
 * (lsock__socket_report_deferred).
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
    lsock__socket_watch_failure_detail(detail, sizeof detail, s->watch_err);
    s->watch_err = 0;
    lsock__socket_error_and_close(s, LSOCK_ERR_SOCKET_RESOURCE, s->watch_call, detail);
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

/* Resumes reading once the application has made room below the limit. */
void lsock__socket_after_consume(lsock_socket *s)
{
    if (!s->throttled) return;
    int64_t limit = lsock__socket_read_limit(s);
    if (limit == 0 || (int64_t)lsock__buf_len(&s->rbuf) < limit) set_throttle(s, 0);
}

/*
 * Reads what the kernel has, up to the read buffer limit: every read path into the buffer goes
 * through here, so none reads past it. cap > 0: no more than cap bytes (those ready_read
 * announced); 0: what there is, which takes in the announced bytes too. Returns bytes added
 * (> 0), 0 at end of stream, -EAGAIN when nothing (or no room), -errno.
 */
static int64_t read_some_capped(lsock_socket *s, int64_t cap)
{
    int64_t total = 0;
    if (cap == 0) s->kernel_avail = 0;
    for (int round = 0; round < READ_ROUNDS; round++) {
        size_t want = 65536;
        if (cap > 0 && (uint64_t)(cap - total) < want) want = (size_t)(cap - total);
        if (want == 0) break;
        int64_t limit = lsock__socket_read_limit(s);
        if (limit > 0) {
            int64_t room = limit - (int64_t)lsock__buf_len(&s->rbuf);
            if (room <= 0) {
                set_throttle(s, 1);
                break;
            }
            if ((uint64_t)room < want) want = (size_t)room;
        }
        int64_t r;
        size_t asked;
        lsock__fds_in in;
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
            r = round == 0 && s->block_next ? lsock__plat_read_blocking(s->fd, p, space, &in)
                                            : lsock__plat_read(s->fd, p, space, &in);
            if (r > 0) lsock__buf_commit(&s->rbuf, (size_t)r);
        } else {
            char local[4096];
            if (!scratch) { /* no loop: its scratch buffer is not there */
                scratch = local;
                scratch_size = sizeof local;
            }
            if (want > scratch_size) want = scratch_size;
            asked = want;
            r = lsock__plat_read(s->fd, scratch, want, &in);
            if (r > 0 && !discard && lsock__buf_append(&s->rbuf, scratch, (size_t)r) < 0) {
                lsock__socket_keep_fds(s, &in, 0, 0, 1);
                return -ENOMEM; /* the bytes are lost only when memory is */
            }
        }
        uint64_t at = s->rx_total; /* the stream position of this read's first byte */
        if (r > 0 && !discard) s->rx_total += (uint64_t)r; /* in the buffer: counted, kept */
        if ((in.count > 0 || in.truncated) &&
            lsock__socket_keep_fds(s, &in, at, r > 0 ? (size_t)r : 0, discard) < 0)
            return LOST_FDS;
        if (r > 0) {
            if (!discard) total += r;
            if ((size_t)r < asked && !in.more) break;
            continue;
        }
        if (r == 0) return total > 0 ? total : 0;
        if (r == -EAGAIN) break;
        return total > 0 ? total : r;
    }
    return total > 0 ? total : -EAGAIN;
}

static int64_t read_some(lsock_socket *s)
{
    return read_some_capped(s, 0);
}

/* Ends the connection after a read that failed (r: 0 end of stream, or -errno). Returns -1. */
static int read_failed(lsock_socket *s, int64_t r)
{
    if (r == -EPROTO) { /* Windows: a framed stream (LSOCK_PASS_DESCRIPTORS) that is not */
        lsock__socket_error_and_close(s, LSOCK_ERR_CONNECTION, "lsock_socket_read",
                                      "the peer's stream is not framed for handles: both ends "
                                      "set LSOCK_PASS_DESCRIPTORS");
        return -1;
    }
    if (r == -EACCES) { /* Windows: handle values from a peer of another user */
        lsock__socket_error_and_close(s, LSOCK_ERR_SOCKET_ACCESS, "lsock_socket_read",
                                      "handles from a peer of another user are refused");
        return -1;
    }
    if (r == -ENOMEM || r == LOST_FDS) {
        lsock__socket_error_and_close(
            s, LSOCK_ERR_SOCKET_RESOURCE, "lsock_socket_read",
            r == -ENOMEM ? "out of memory"
                         : "descriptors sent with the data were lost: this process cannot "
                           "receive more (its descriptor limit, or out of memory)");
        return -1;
    }
    lsock__socket_connection_lost(s, r == 0 ? 0 : (int)-r, "lsock_socket_read");
    return -1;
}

/*
 * Reading straight into the application's buffer. When the loop reports data, lsock's read
 * buffer is empty and the kernel holds at least READ_DIRECT_MIN bytes (FIONREAD), ready_read
 * fires with those bytes announced but left in the kernel (s->kernel_avail). A read of at
 * least READ_DIRECT_MIN bytes inside it takes them from the kernel into the caller's buffer:
 * one copy, as read(2), where buffering first copies twice. The announced bytes are all a
 * read may take, so ready_read fires for new bytes only, exactly as when they are buffered:
 * - bytes_available() and at_end() count the announced bytes without reading them;
 * - every other call that looks at the buffer (a smaller read, read_line, peek, skip,
 *   can_read_line, read_all, the message calls, set_read_buffer_size, the waits) and every
 *   end of the connection (disconnect, a broken write) buffers them first (settle);
 * - what the application leaves is buffered when ready_read returns, without a second
 *   ready_read; what arrived meanwhile stays in the kernel for the loop's next report;
 * - the end of the stream or an error that such a read meets is reported from the loop
 *   (read_end), as a broken write is;
 * - a fork() inside ready_read buffers them first (lsock__socket_before_fork), so that parent
 *   and child each hold them, as they would have.
 * A socket without a loop does the same in wait_for_ready_read: the wait polls (rather than
 * blocking in recv()), announces what the kernel holds and returns true; the announced bytes
 * stay announced after it, for the reads that follow, until a call that looks at the buffer
 * or the next wait buffers them. After a fork() they stay the parent's: the child, whose copy
 * of the socket says they were announced by another process (announce_gen), counts and reads
 * none of them, so nothing it does (a read, a disconnect) takes them from the parent; they are
 * the child's to read only as new bytes, after a wait of its own, as any in the kernel.
 * The FIONREAD costs a system call, so only a socket that found READ_DIRECT_MIN or more in
 * the kernel in one of its last BIG_READS_KEPT reads asks (s->big_reads): a ping-pong pays
 * nothing, and a stream keeps asking past the small remainder a capped read_some leaves. Not
 * with a loop but no ready_read callback, in message mode, with a read buffer limit, in the
 * other waits' reads, or where the platform has no such count (Windows: see
 * lsock__plat_bytes_in_kernel).
 */
int64_t lsock__socket_announced(const lsock_socket *s)
{
    if (s->kernel_avail <= 0) return 0;
    return s->announce_gen == lsock__plat_fork_generation() ? s->kernel_avail : 0;
}

int lsock__socket_may_defer(const lsock_socket *s)
{
    return s->big_reads && !s->in_ready_read && !s->block_next &&
           (s->open_mode & LSOCK_READ_ONLY) && s->rbuf_limit == 0 && !s->read_end_set &&
           s->kernel_avail == 0 && (s->msg_mode || lsock__buf_len(&s->rbuf) == 0);
}

static int64_t defer_read(lsock_socket *s)
{
    if (!lsock__socket_may_defer(s) || s->msg_mode || (s->loop ? !s->cb.ready_read : !s->read_wait))
        return 0;
    int64_t n = lsock__plat_bytes_in_kernel(s->fd);
    if (n < 0) { /* no such count here: buffer as usual */
        s->big_reads = 0;
        return 0;
    }
    if (n > (int64_t)READ_ROUNDS * 65536) n = (int64_t)READ_ROUNDS * 65536; /* settle's bound */
    if (n >= READ_DIRECT_MIN)
        s->big_reads = BIG_READS_KEPT;
    else
        s->big_reads--; /* small pieces: after a few, no more FIONREAD until a large read */
    return n;
}

/* The end of the stream or an error met outside the loop's read: reported from the loop. */
static void set_read_end(lsock_socket *s, int64_t r)
{
    s->read_end = r;
    s->read_end_set = 1;
    if (s->loop) lsock__pending_queue(s->loop, &s->pend);
}

void lsock__socket_settle(lsock_socket *s)
{
    int64_t n = lsock__socket_announced(s);
    s->kernel_avail = 0;
    if (n <= 0) return;
    int64_t r = read_some_capped(s, n);
    if (r <= 0 && r != -EAGAIN) set_read_end(s, r);
}

atomic_ulong lsock__test_announced, lsock__test_direct_reads;

/* The sockets of this thread inside a ready_read with bytes left in the kernel, innermost
 * first (a wait or a nested loop run inside one can announce another). */
static _Thread_local lsock_socket *announcing;

void lsock__socket_before_fork(void)
{
    for (lsock_socket *s = announcing; s; s = s->announce_next)
        lsock__socket_settle(s);
}

/* A read straight from the kernel into the caller's buffer, of the bytes ready_read or a
 * loop-less wait announced (s->kernel_avail). Returns the bytes read (0 if the kernel had none
 * after all). */
static int64_t read_direct(lsock_socket *s, char *buf, size_t max)
{
    int64_t total = 0;
    if ((uint64_t)s->kernel_avail < max) max = (size_t)s->kernel_avail;
    while ((size_t)total < max) {
        lsock__fds_in in;
        int64_t r = lsock__plat_read(s->fd, buf + total, max - (size_t)total, &in);
        uint64_t at = s->rx_total; /* the stream position of this read's first byte */
        if (r > 0) s->rx_total += (uint64_t)r;
        int lost = (in.count > 0 || in.truncated) &&
                   lsock__socket_keep_fds(s, &in, at, r > 0 ? (size_t)r : 0, 0) < 0;
        if (r > 0) {
            total += r;
            s->kernel_avail -= r;
            atomic_fetch_add_explicit(&lsock__test_direct_reads, 1, memory_order_relaxed);
        }
        if (lost) { /* the rest stays readable, as when buffered; the error comes next */
            lsock__socket_settle(s);
            set_read_end(s, LOST_FDS);
            break;
        }
        if (r == 0 || (r < 0 && r != -EAGAIN)) {
            s->kernel_avail = 0; /* the announced bytes went elsewhere (another process) */
            set_read_end(s, r);
            break;
        }
        if (r < 0) { /* -EAGAIN: another process took them */
            s->kernel_avail = 0;
            break;
        }
    }
    return total;
}

/*
 * Message mode, the same for read_message(): the head of the next message (up to MESSAGE_HEAD
 * bytes) is buffered, and when the rest of it, READ_DIRECT_MIN or more, is all in the kernel
 * already, that is announced instead of buffered: can_read_message() and next_message_size()
 * count it, and read_message() takes it straight into the caller's buffer, with the start of
 * what follows (lsock__socket_read_rest). A message that has not all arrived is buffered as
 * usual, and so are small ones (after BIG_READS_KEPT reports of less than READ_DIRECT_MIN in
 * the kernel, without asking FIONREAD until a large read). Returns
 * the bytes announced, 0 (*head: what the head read buffered), or -1 when the connection
 * ended (a read error, or a header beyond the maximum).
 */
static int64_t defer_message(lsock_socket *s, int64_t *head)
{
    *head = 0;
    if (!lsock__socket_may_defer(s) || (s->loop ? !s->cb.ready_read : !s->read_wait)) return 0;
    int64_t n = lsock__plat_bytes_in_kernel(s->fd);
    if (n < 0) { /* no such count here: buffer as usual */
        s->big_reads = 0;
        return 0;
    }
    if (n < READ_DIRECT_MIN) {
        s->big_reads--; /* small messages: after a few, no FIONREAD until a large read */
        return 0;
    }
    if (lsock__buf_len(&s->rbuf) < LSOCK__MSG_HEADER) {
        int64_t r = read_some_capped(s, MESSAGE_HEAD);
        if (r == -EAGAIN) return 0;
        if (r <= 0) return read_failed(s, r);
        *head = r;
        n -= r;
        if (lsock__socket_check_message(s, "lsock_socket_read") < 0) return -1;
    }
    int64_t rest = lsock__socket_message_rest(s);
    if (n > (int64_t)READ_ROUNDS * 65536) n = (int64_t)READ_ROUNDS * 65536; /* settle's bound */
    return rest >= READ_DIRECT_MIN && n >= rest ? n : 0;
}

int lsock__socket_read_rest(lsock_socket *s, char *dst, size_t rest)
{
    size_t got = 0;
    int64_t end = 1;
    int lost = 0;
    while (got < rest && !lost && end > 0) {
        lsock__fds_in in;
        /* Past the message, as much of what was announced behind it as MESSAGE_TAIL. */
        int64_t behind = s->kernel_avail - (int64_t)(rest - got);
        size_t tail_n = behind <= 0 ? 0 : behind < MESSAGE_TAIL ? (size_t)behind : MESSAGE_TAIL;
        char *tail = tail_n ? lsock__buf_reserve(&s->rbuf, tail_n) : NULL;
        if (!tail) tail_n = 0;
        int64_t r = lsock__plat_read2(s->fd, dst + got, rest - got, tail, tail_n, &in);
        uint64_t at = s->rx_total; /* the stream position of this read's first byte */
        if (r > 0) s->rx_total += (uint64_t)r;
        lost = (in.count > 0 || in.truncated) &&
               lsock__socket_keep_fds(s, &in, at, r > 0 ? (size_t)r : 0, 0) < 0;
        if (r > 0) {
            size_t mine = (size_t)r < rest - got ? (size_t)r : rest - got;
            got += mine;
            if ((size_t)r > mine) lsock__buf_commit(&s->rbuf, (size_t)r - mine);
            s->kernel_avail = s->kernel_avail > r ? s->kernel_avail - r : 0;
            atomic_fetch_add_explicit(&lsock__test_direct_reads, 1, memory_order_relaxed);
        } else if (r == -EAGAIN) {
            end = 0; /* another process took them: nothing more is announced */
            s->kernel_avail = 0;
        } else {
            end = -1; /* the end of the stream or an error, reported from the loop */
            s->kernel_avail = 0;
            set_read_end(s, r);
        }
    }
    if (got < rest && got > 0 && lsock__buf_append(&s->rbuf, dst, got) < 0) {
        s->kernel_avail = 0;
        set_read_end(s, -ENOMEM); /* the bytes are lost only when memory is */
    }
    if (lost) { /* the rest stays readable, as when buffered; the error comes next */
        lsock__socket_settle(s);
        set_read_end(s, LOST_FDS);
    }
    return got == rest;
}

/*
 * Handles readability: reads (or announces, see defer_read), fires ready_read, and ends the
 * connection on end of stream or error. Returns 1 if data arrived, 0 if nothing, -1 if the
 * connection ended.
 */
int lsock__socket_on_readable(lsock_socket *s)
{
    if (s->read_end_set) return lsock__socket_report_deferred(s) ? -1 : 0;
    int64_t head = 0;
    int64_t n = s->msg_mode ? defer_message(s, &head) : defer_read(s);
    if (n < 0) return -1;
    if (n > 0) {
        s->kernel_avail = n;
        s->announce_gen = lsock__plat_fork_generation();
        atomic_fetch_add_explicit(&lsock__test_announced, 1, memory_order_relaxed);
        s->announce_next = announcing;
        announcing = s;
        emit_ready_read(s);
        announcing = s->announce_next; /* callbacks nest: s is the innermost again */
        if (s->dead || s->state == LSOCK_UNCONNECTED) return -1;
        /* What the application left, announced already: buffered, except after a loop-less
         * wait, whose caller reads it next (defer_read). */
        if (s->loop) {
            lsock__socket_settle(s);
            /* A header among them beyond the maximum ends the connection now, as it would
             * have when they arrived (a direct read may stop short of it: descriptors). */
            if (s->msg_mode && lsock__socket_check_message(s, "lsock_socket_read") < 0) return -1;
        }
        if (s->read_end_set) return lsock__socket_report_deferred(s) ? -1 : 1;
        return 1;
    }
    int64_t r = read_some(s);
    if (head > 0) {                                    /* what the head read buffered comes first */
        if (r < 0 && r != -EAGAIN) set_read_end(s, r); /* reported after these bytes */
        r = r > 0 ? r + head : head;
    }
    if (r > 0) {
        if (r >= READ_DIRECT_MIN) s->big_reads = BIG_READS_KEPT;
        if (s->msg_mode && lsock__socket_check_message(s, "lsock_socket_read") < 0) return -1;
        emit_ready_read(s);
        if (s->dead || s->state == LSOCK_UNCONNECTED) return -1;
        /* End of stream behind the data is seen on the next readiness report. */
        return 1;
    }
    if (r == -EAGAIN) return 0;
    return read_failed(s, r);
}

/* Writes queued data until the kernel is full. Returns bytes written or -errno. */
/* Gathered bytes of the parent, in a child of fork(): the parent sends them (they count as
 * handed over), so this process drops its copy. Returns whether it did. */
static int drop_parents_gathered(lsock_socket *s)
{
    if (!s->gathering || s->gather_gen == lsock__plat_fork_generation()) return 0;
    lsock__buf_clear(&s->wbuf); /* gathering starts on an empty queue: all of it is theirs */
    s->gathering = 0;
    return 1;
}

/* ---- the write queue: the write buffer's bytes, then buffers queued by reference -------- */

static void release_wseg(lsock__wseg *g)
{
    if (g->release) g->release(g->base, g->ud);
}

/* An empty queue gives its array back once it has grown (as the byte buffers do). */
static void wseg_trim(lsock__wsegq *q)
{
    if (q->len > 0) return;
    q->head = 0;
    if (q->cap <= WSEG_KEEP) return;
    free(q->v);
    q->v = NULL;
    q->cap = 0;
}

void lsock__socket_drop_queued(lsock_socket *s)
{
    lsock__buf_clear(&s->wbuf);
    lsock__wsegq *q = &s->wsegs;
    while (q->len > 0) { /* popped first: a release that looks finds a consistent queue */
        lsock__wseg g = q->v[q->head++];
        q->len--;
        q->bytes -= g.len - g.off;
        release_wseg(&g);
    }
    wseg_trim(q);
}

/* Room for one more buffer queued by reference. 0, or -1 on no memory. */
static int wseg_reserve(lsock__wsegq *q)
{
    if (q->len == 0) q->head = 0;
    if (q->head + q->len < q->cap) return 0;
    if (q->head > 0 && q->len <= q->cap / 2) { /* slide the live entries to the front */
        memmove(q->v, q->v + q->head, q->len * sizeof *q->v);
        q->head = 0;
        return 0;
    }
    size_t cap = q->cap ? q->cap * 2 : 8;
    lsock__wseg *v = realloc(q->v, cap * sizeof *v);
    if (!v) return -1;
    q->v = v;
    q->cap = cap;
    return 0;
}

/* Queues len bytes of base from off on, behind everything queued (after wseg_reserve). */
static void wseg_push(lsock__wsegq *q, char *base, size_t len, size_t off, lsock_release_fn release,
                      void *ud)
{
    lsock__wseg *g = &q->v[q->head + q->len++];
    g->base = base;
    g->len = g->cap = len;
    g->off = off;
    g->release = release;
    g->ud = ud;
    q->bytes += len - off;
}

/* Drops n bytes the kernel took from the front of the queue, releasing the buffers sent. */
static void consume_sent(lsock_socket *s, size_t n)
{
    n -= lsock__buf_consume(&s->wbuf, n);
    lsock__wsegq *q = &s->wsegs;
    while (n > 0 && q->len > 0) {
        lsock__wseg *g = &q->v[q->head];
        size_t m = g->len - g->off;
        if (m > n) m = n;
        g->off += m;
        q->bytes -= m;
        n -= m;
        if (g->off < g->len) break;
        lsock__wseg done = *g;
        q->head++;
        q->len--;
        release_wseg(&done);
    }
    wseg_trim(q);
}

/* Offers the kernel the front of the queue: the write buffer and the buffers queued by
 * reference, gathered in one call (LSOCK__IOV_BATCH at most). */
static int64_t send_queued(lsock_socket *s)
{
    lsock_iovec v[LSOCK__IOV_BATCH];
    int k = 0;
    if (lsock__buf_len(&s->wbuf) > 0) {
        v[k].base = lsock__buf_begin(&s->wbuf);
        v[k++].len = lsock__buf_len(&s->wbuf);
    }
    const lsock__wsegq *q = &s->wsegs;
    for (size_t i = 0; i < q->len && k < LSOCK__IOV_BATCH; i++) {
        const lsock__wseg *g = &q->v[q->head + i];
        v[k].base = g->base + g->off;
        v[k++].len = g->len - g->off;
    }
    if (k == 0) return 0;  /* nothing queued */
    if (s->fd_out.len > 0) /* the descriptors go with their byte: one buffer at a time */
        return lsock__socket_send_with_fds(s, v[0].base, v[0].len);
    return k == 1 ? lsock__plat_write(s->fd, v[0].base, v[0].len) : lsock__plat_writev(s->fd, v, k);
}

int64_t lsock__socket_flush_some(lsock_socket *s)
{
    int64_t total = 0;
    drop_parents_gathered(s);
    s->gathering = 0; /* what the kernel leaves is queued like any other refusal */
    while (lsock__socket_queued(s) > 0) {
        int64_t r = send_queued(s);
        if (r > 0) {
            consume_sent(s, (size_t)r);
            s->tx_sent += (uint64_t)r;
            total += r;
            continue;
        }
        if ((r == -EAGAIN || r == 0) && !s->sndbuf_grown) {
            /* The connection streams: give it a larger kernel buffer and offer the rest. */
            s->sndbuf_grown = 1;
            lsock__plat_grow_send_buffer(s->fd);
            continue;
        }
        if (r == -EAGAIN || r == 0) break;
        return total > 0 ? total : r;
    }
    s->written_unreported += total;
    return total;
}

/* The writer side after a flush: watch for room while data stays queued, else stop watching
 * (a graceful close is finished by the callers: on_writable, do_disconnect, flush). */
void lsock__socket_after_flush(lsock_socket *s)
{
    if (s->loop && s->fd >= 0) {
        if (lsock__socket_queued(s) > 0 || (s->state == LSOCK_CLOSING && lsock__socket_unsent(s)))
            start_io(s, LSOCK__WRITABLE, "lsock_socket_write");
        else
            lsock__io_stop(s->loop, &s->io, LSOCK__WRITABLE);
    }
}

/*
 * Gathering small writes. A program that writes many small pieces (messages, lines) would
 * cost a system call each. Within one loop iteration the first write goes to the kernel at
 * once, so a reply keeps its latency; the small writes after it that find nothing queued are
 * gathered in the write buffer and handed over together: by the socket's deferred work when
 * the loop next runs it, as soon as GATHER_FLUSH bytes are gathered, before a write larger
 * than GATHER_MAX, or when the socket is flushed, waited on, disconnected, aborted or freed.
 * Gathered bytes count as handed over: bytes_to_write() leaves them out, so code that writes
 * while bytes_to_write() is 0 streams as before. A socket without a loop never gathers.
 */
#define GATHER_MAX   16384
#define GATHER_FLUSH 65536

/* Never in a child of fork() that has not called lsock_loop_fork(): its loop cannot run to
 * send them. */
static int should_gather(const lsock_socket *s, int64_t len)
{
    return s->loop && len <= GATHER_MAX && (s->wbuf_limit == 0 || len <= s->wbuf_limit) &&
           s->sent_iter == lsock__loop_iteration(s->loop) + 1 && !lsock__loop_inherited(s->loop);
}

static void mark_sent(lsock_socket *s)
{
    if (s->loop) s->sent_iter = lsock__loop_iteration(s->loop) + 1;
}

/* The gathered bytes are the parent's when a child of fork() holds the inherited socket: the
 * parent sends them, the child never does (the fork policy in lsock.h), on any path. */
int lsock__socket_flush_gathered(lsock_socket *s)
{
    drop_parents_gathered(s);
    int here = s->gathering;
    s->gathering = 0;
    if (!here || s->fd < 0 || s->broken || s->state != LSOCK_CONNECTED ||
        lsock__buf_len(&s->wbuf) == 0)
        return 0;
    int64_t r = lsock__socket_flush_some(s);
    if (r < 0) {
        s->broken = (int)-r;
        return -1;
    }
    mark_sent(s);
    lsock__socket_after_flush(s);
    return 0;
}

void lsock__socket_flush_before_close(lsock_socket *s)
{
    drop_parents_gathered(s);
    if (s->gathering && s->fd >= 0 && !s->broken) (void)lsock__socket_flush_some(s);
    s->gathering = 0;
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
    lsock__socket_connection_lost(s, err, "lsock_socket_write");
}

/* A failure recorded earlier (a broken write, a descriptor the loop could not watch): report
 * it now, from the loop or a wait call. Returns 1 if there was one (the connection ended). */
int lsock__socket_report_deferred(lsock_socket *s)
{
    if (s->read_end_set) { /* met by a read straight into the caller's buffer */
        s->read_end_set = 0;
        read_failed(s, s->read_end);
        return 1;
    }
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
int lsock__socket_on_writable(lsock_socket *s)
{
    int64_t r = lsock__socket_flush_some(s);
    if (r < 0) {
        if (drain_before_loss(s) == 0)
            lsock__socket_connection_lost(s, (int)-r, "lsock_socket_write");
        return -1;
    }
    lsock__socket_after_flush(s);
    lsock__socket_emit_bytes_written(s);
    if (s->dead) return -1;
    if (s->state == LSOCK_CLOSING && !lsock__socket_unsent(s)) {
        lsock__socket_finish_close(s);
        return -1;
    }
    return s->state == LSOCK_UNCONNECTED ? -1 : 0;
}

void lsock__socket_on_io(lsock__io *io, unsigned revents)
{
    lsock_socket *s = io->data;
    lsock__socket_hold(s);
    if (!s->cb.bytes_written) s->written_unreported = 0;
    if (!lsock__socket_report_deferred(s)) {
        if (revents & LSOCK__WRITABLE) lsock__socket_on_writable(s);
        if (!s->dead && s->fd >= 0 && (revents & LSOCK__READABLE) && !s->throttled)
            lsock__socket_on_readable(s);
    }
    lsock__socket_release(s);
}

/* Deferred work from the loop: a broken write or a failed watch to report, or bytes_written
 * after writes that went straight to the kernel. */
void lsock__socket_pending_cb(lsock__pending *p)
{
    lsock_socket *s = (lsock_socket *)((char *)p - offsetof(lsock_socket, pend));
    lsock__socket_hold(s);
    if (!lsock__socket_report_deferred(s)) {
        if (lsock__socket_flush_gathered(s) < 0)
            lsock__socket_report_deferred(s);
        else
            lsock__socket_emit_bytes_written(s);
    }
    lsock__socket_release(s);
}

/* Starts watching a connected descriptor on the loop (a failure is reported from the loop:
 * see start_io). */
void lsock__socket_watch(lsock_socket *s, const char *call)
{
    if (!s->loop) return;
    lsock__io_init(&s->io, s->fd, lsock__socket_on_io, s);
    start_io(s, LSOCK__READABLE, call);
}

/* ---- I/O calls ----------------------------------------------------------------------- */

static bool can_read(lsock_socket *s, const void *buf, int64_t max, const char *call)
{
    if (!s) return false;
    if (max < 0 || (!buf && max > 0))
        return lsock__socket_fail(s, LSOCK_ERR_INVALID_ARGUMENT, call,
                                  max < 0 ? "negative size" : "NULL buffer");
    if (!(s->open_mode & LSOCK_READ_ONLY))
        return lsock__socket_fail(s, LSOCK_ERR_OPERATION, call, "not open for reading");
    return true;
}

int64_t lsock_socket_read(lsock_socket *s, void *buf, int64_t max)
{
    if (!can_read(s, buf, max, "lsock_socket_read")) return -1;
    if (s->kernel_avail > 0) {
        if (lsock__socket_announced(s) == 0) s->kernel_avail = 0; /* the parent's (fork) */
        if (s->kernel_avail > 0 && max >= READ_DIRECT_MIN && lsock__buf_len(&s->rbuf) == 0)
            return read_direct(s, buf, (size_t)max);
        lsock__socket_settle(s); /* a smaller read: from the buffer, as any other */
    }
    size_t n = lsock__buf_peek(&s->rbuf, buf, (size_t)max);
    lsock__buf_consume(&s->rbuf, n);
    lsock__socket_after_consume(s);
    return (int64_t)n;
}

int64_t lsock_socket_read_line(lsock_socket *s, char *buf, int64_t max)
{
    if (!can_read(s, buf, max, "lsock_socket_read_line")) return -1;
    lsock__socket_settle(s);
    if (max < 2) {
        lsock__socket_fail(s, LSOCK_ERR_INVALID_ARGUMENT, "lsock_socket_read_line",
                           "max must be at least 2");
        return -1;
    }
    size_t limit = (size_t)(max - 1);
    size_t nl = lsock__buf_find(&s->rbuf, 0, '\n');
    size_t n = nl == (size_t)-1 ? lsock__buf_len(&s->rbuf) : nl + 1;
    if (n > limit) n = limit;
    lsock__buf_peek(&s->rbuf, buf, n);
    buf[n] = '\0';
    lsock__buf_consume(&s->rbuf, n);
    lsock__socket_after_consume(s);
    return (int64_t)n;
}

void *lsock_socket_read_all(lsock_socket *s, size_t *len)
{
    if (len) *len = 0;
    if (!can_read(s, NULL, 0, "lsock_socket_read_all")) return NULL;
    lsock__socket_settle(s);
    size_t n = lsock__buf_len(&s->rbuf);
    char *out = malloc(n + 1);
    if (!out) {
        lsock__socket_fail(s, LSOCK_ERR_SOCKET_RESOURCE, "lsock_socket_read_all", "out of memory");
        return NULL;
    }
    lsock__buf_peek(&s->rbuf, out, n);
    out[n] = '\0';
    lsock__buf_consume(&s->rbuf, n);
    lsock__socket_after_consume(s);
    if (len) *len = n;
    return out;
}

int64_t lsock_socket_peek(lsock_socket *s, void *buf, int64_t max)
{
    if (!can_read(s, buf, max, "lsock_socket_peek")) return -1;
    lsock__socket_settle(s);
    return (int64_t)lsock__buf_peek(&s->rbuf, buf, (size_t)max);
}

int64_t lsock_socket_skip(lsock_socket *s, int64_t max)
{
    if (!can_read(s, NULL, max < 0 ? max : 0, "lsock_socket_skip")) return -1;
    lsock__socket_settle(s);
    size_t n = lsock__buf_consume(&s->rbuf, (size_t)max);
    lsock__socket_after_consume(s);
    return (int64_t)n;
}

bool lsock_socket_can_read_line(const lsock_socket *s)
{
    if (s) lsock__socket_settle((lsock_socket *)s); /* every socket is heap-allocated, mutable */
    return s && (s->open_mode & LSOCK_READ_ONLY) &&
           lsock__buf_find(&s->rbuf, 0, '\n') != (size_t)-1;
}

int64_t lsock_socket_bytes_available(const lsock_socket *s)
{
    return s ? (int64_t)lsock__buf_len(&s->rbuf) + lsock__socket_announced(s) : 0;
}

int64_t lsock_socket_bytes_to_write(const lsock_socket *s)
{
    return s && !s->gathering ? (int64_t)lsock__socket_queued(s) : 0;
}

bool lsock_socket_at_end(const lsock_socket *s)
{
    return !s || (lsock__buf_len(&s->rbuf) == 0 && lsock__socket_announced(s) == 0);
}

/* Schedules bytes_written (or a broken-write report) for the next loop iteration. Without
 * a loop the count waits for the next wait_for_*() call. */
static void defer_report(lsock_socket *s)
{
    /* Without a bytes_written callback there is nobody to tell: no deferred call per write
     * (the count is dropped at the socket's next loop event, see lsock__socket_on_io). */
    if (s->loop && (s->broken || (s->written_unreported && s->cb.bytes_written)))
        lsock__pending_queue(s->loop, &s->pend);
}

/* Offers the kernel iov's bytes from offset skip on, in one call (a batch of at most
 * LSOCK__IOV_BATCH buffers). A single buffer takes the plain write. */
static int64_t send_iov(lsock_socket *s, const lsock_iovec *iov, int n, size_t skip)
{
    if (n == 1)
        return lsock__plat_write(s->fd, (const char *)iov[0].base + skip, iov[0].len - skip);
    lsock_iovec part[LSOCK__IOV_BATCH];
    int k = 0;
    for (int i = 0; i < n && k < LSOCK__IOV_BATCH; i++) {
        if (skip >= iov[i].len) {
            skip -= iov[i].len;
            continue;
        }
        part[k].base = (const char *)iov[i].base + skip;
        part[k++].len = iov[i].len - skip;
        skip = 0;
    }
    return k == 0 ? 0 : lsock__plat_writev(s->fd, part, k);
}

static void free_copy(void *buf, void *ud)
{
    (void)ud;
    free(buf);
}

/* Room for take bytes behind buffers queued by reference: at the end of the last segment when
 * it is a copy with room, else in a new copy segment of at least COPY_SEGMENT bytes (so that
 * small writes share one allocation and one buffer of a gathered send). NULL on no memory. */
static char *copy_room(lsock__wsegq *q, size_t take)
{
    lsock__wseg *last = &q->v[q->head + q->len - 1];
    if (last->release == free_copy && last->cap - last->len >= take) {
        char *dst = last->base + last->len;
        last->len += take;
        q->bytes += take;
        return dst;
    }
    size_t cap = take < COPY_SEGMENT ? COPY_SEGMENT : take;
    char *base = wseg_reserve(q) < 0 ? NULL : malloc(cap);
    if (!base) return NULL;
    wseg_push(q, base, take, 0, free_copy, NULL);
    q->v[q->head + q->len - 1].cap = cap;
    return base;
}

/* Queues take bytes of iov from offset skip on: all of them, or none (-1, no memory). Into
 * the write buffer, or behind buffers queued by reference as a copy (copy_room). */
static int queue_iov(lsock_socket *s, const lsock_iovec *iov, int n, size_t skip, size_t take)
{
    int behind = s->wsegs.len > 0;
    char *dst = behind ? copy_room(&s->wsegs, take) : lsock__buf_reserve(&s->wbuf, take);
    if (!dst) return -1;
    size_t done = 0;
    for (int i = 0; i < n && done < take; i++) {
        if (skip >= iov[i].len) {
            skip -= iov[i].len;
            continue;
        }
        size_t m = iov[i].len - skip;
        if (m > take - done) m = take - done;
        memcpy(dst + done, (const char *)iov[i].base + skip, m);
        done += m;
        skip = 0;
    }
    if (!behind) lsock__buf_commit(&s->wbuf, take);
    return 0;
}

/* Before a write of len bytes that the queue (at its limit) would refuse in part: gives the
 * kernel what it takes now. -1 when the connection broke (reported from the loop). */
static int flush_for_room(lsock_socket *s, int64_t len)
{
    uint64_t queued = lsock__socket_queued(s);
    if (s->wbuf_limit == 0 || queued == 0 || (int64_t)queued + len <= s->wbuf_limit) return 0;
    int64_t r = lsock__socket_flush_some(s);
    if (r < 0) {
        s->broken = (int)-r;
        defer_report(s);
        return -1;
    }
    lsock__socket_after_flush(s);
    return 0;
}

/* A write while descriptors are attached or on their way: it is queued whole (up to the write
 * buffer limit) so that the flush sends the descriptors with the byte they belong to
 * (descriptors.c), then flushed. The attached descriptors go with its first byte. */
static int64_t write_with_fds(lsock_socket *s, const lsock_iovec *iov, int n, int64_t len,
                              int whole, const char *call)
{
    drop_parents_gathered(s); /* a child of fork(): the parent's batch is the parent's */
    s->gathering = 0;         /* what was gathered goes first, as queued bytes */
    if (flush_for_room(s, len) < 0) return len; /* broken: its error is on the way */
    size_t take = (size_t)len;
    if (s->wbuf_limit > 0) {
        int64_t room = s->wbuf_limit - (int64_t)lsock__socket_queued(s);
        if (room < 0) room = 0;
        if ((uint64_t)take > (uint64_t)room && !whole) take = (size_t)room;
        if ((uint64_t)take > (uint64_t)room && lsock__socket_queued(s) > 0) {
            /* whole: an empty queue takes a whole message beyond the limit, as elsewhere */
            lsock__socket_fail(s, LSOCK_ERR_SOCKET_RESOURCE, call,
                               "the write buffer cannot take the whole message now (its "
                               "limit, lsock_socket_set_write_buffer_size())");
            return -1;
        }
    }
    if (take == 0) return 0; /* the descriptors wait for a write that the queue takes */
    if (lsock__socket_reserve_fds(s) < 0 || queue_iov(s, iov, n, 0, take) < 0) {
        lsock__socket_fail(s, LSOCK_ERR_SOCKET_RESOURCE, call, "out of memory");
        return -1;
    }
    if (s->fd_attach.len > 0)
        lsock__socket_bind_fds(s, s->tx_sent + lsock__socket_queued(s) - take);
    int64_t r = lsock__socket_flush_some(s);
    if (r < 0) {
        s->broken = (int)-r;
    } else {
        if (r > 0) mark_sent(s);
        lsock__socket_after_flush(s);
    }
    defer_report(s);
    return (int64_t)take;
}

/* The fast path of a write that finds nothing queued: straight to the kernel. Returns the bytes
 * the kernel took, or -1 when the connection broke: as Qt, the write is accepted and the
 * failure is reported from the loop (or the next wait call): error_occurred, then the end. */
static int64_t send_first(lsock_socket *s, const lsock_iovec *iov, int n, int64_t len)
{
    int64_t r = send_iov(s, iov, n, 0);
    if ((r >= 0 || r == -EAGAIN) && (r < 0 ? 0 : r) < len && !s->sndbuf_grown) {
        /* The connection streams: give it a larger kernel buffer and offer the rest. */
        s->sndbuf_grown = 1;
        lsock__plat_grow_send_buffer(s->fd);
        int64_t more = send_iov(s, iov, n, (size_t)(r > 0 ? r : 0));
        if (more > 0) r = (r > 0 ? r : 0) + more;
    }
    if (r > 0) {
        s->tx_sent += (uint64_t)r;
        s->written_unreported += r;
        mark_sent(s);
        return r;
    }
    if (r == -EAGAIN || r == 0) return 0;
    s->broken = (int)-r;
    defer_report(s);
    return -1;
}

/* A write's buffer: INVALID_ARGUMENT for a negative size or a NULL buffer of some size. */
static bool valid_buffer(lsock_socket *s, const void *buf, int64_t len, const char *call)
{
    if (len >= 0 && (buf || len == 0)) return true;
    return lsock__socket_fail(s, LSOCK_ERR_INVALID_ARGUMENT, call,
                              len < 0 ? "negative size" : "NULL buffer");
}

/* A write needs a connection open for writing: OPERATION otherwise. */
static bool can_write(lsock_socket *s, const char *call)
{
    if (s->state == LSOCK_CONNECTED && (s->open_mode & LSOCK_WRITE_ONLY)) return true;
    return lsock__socket_fail(s, LSOCK_ERR_OPERATION, call,
                              s->state != LSOCK_CONNECTED ? "not connected"
                                                          : "not open for writing");
}

/* The write of len bytes, the concatenation of iov (checked by the caller): straight to the
 * kernel when nothing is queued, the rest queued up to the write buffer limit. */
int64_t lsock__socket_write_iov(lsock_socket *s, const lsock_iovec *iov, int n, int64_t len,
                                int whole, const char *call)
{
    if (!can_write(s, call)) return -1;
    if (s->broken) return len; /* the connection is ending; its error is on the way */
    if (len == 0) return 0;
    if (lsock__socket_has_fds_out(s)) return write_with_fds(s, iov, n, len, whole, call);
    size_t done = 0;
    if (flush_for_room(s, len) < 0) return len; /* broken: its error is on the way */
    if (whole && s->wbuf_limit > 0 && lsock__socket_queued(s) > 0 &&
        (int64_t)lsock__socket_queued(s) + len > s->wbuf_limit) {
        lsock__socket_fail(s, LSOCK_ERR_SOCKET_RESOURCE, call,
                           "the write buffer cannot take the whole message now (its limit, "
                           "lsock_socket_set_write_buffer_size())");
        return -1;
    }
    if (s->gathering &&
        (len > GATHER_MAX || lsock__buf_len(&s->wbuf) + (uint64_t)len > GATHER_FLUSH) &&
        lsock__socket_flush_gathered(s) < 0) {
        defer_report(s); /* the batch is full, or a large write comes: hand the batch over */
        return len;
    }
    if (lsock__socket_queued(s) == 0 && should_gather(s, len)) {
        s->gathering = 1;
        s->gather_gen = lsock__plat_fork_generation();
    } else if (lsock__socket_queued(s) == 0) {
        int64_t r = send_first(s, iov, n, len); /* only the remainder is queued */
        if (r < 0) return len;                  /* broken: its error is on the way */
        done = (size_t)r;
    }
    size_t take = (size_t)len - done;
    if (s->wbuf_limit > 0 && !whole) { /* an empty queue takes a whole message beyond it */
        int64_t room = s->wbuf_limit - (int64_t)lsock__socket_queued(s);
        if (room < 0) room = 0;
        if ((uint64_t)take > (uint64_t)room) take = (size_t)room;
    }
    if (take > 0) {
        if (queue_iov(s, iov, n, done, take) < 0) {
            lsock__socket_fail(s, LSOCK_ERR_SOCKET_RESOURCE, call, "out of memory");
            defer_report(s);
            return done ? (int64_t)done : -1;
        }
        if (s->gathering)
            lsock__pending_queue(s->loop, &s->pend);
        else
            lsock__socket_after_flush(s);
    }
    defer_report(s);
    return (int64_t)(done + take);
}

int64_t lsock_socket_write(lsock_socket *s, const void *buf, int64_t len)
{
    static const char call[] = "lsock_socket_write";
    if (!s) return -1;
    if (!valid_buffer(s, buf, len, call)) return -1;
    lsock_iovec one = {buf, (size_t)len};
    return lsock__socket_write_iov(s, &one, 1, len, 0, call);
}

/*
 * A write by reference: what the kernel does not take at once is queued as the caller's buffer
 * itself (s->wsegs), not copied, and released once sent or dropped. The whole write or nothing:
 * on failure (-1) the buffer stays the caller's and release is not called; on success release
 * is called exactly once, possibly before this returns.
 */
int64_t lsock_socket_write_owned(lsock_socket *s, void *buf, int64_t len, lsock_release_fn release,
                                 void *ud)
{
    static const char call[] = "lsock_socket_write_owned";
    if (!s) return -1;
    if (!valid_buffer(s, buf, len, call)) return -1;
    if (!can_write(s, call)) return -1;
    lsock__wseg g = {buf, (size_t)len, 0, (size_t)len, release, ud};
    /* The batch of small writes gathered before it goes first; a connection that broke takes
     * it (its error is on the way), as a write. */
    if (len == 0 || s->broken || lsock__socket_flush_gathered(s) < 0 ||
        flush_for_room(s, len) < 0) {
        defer_report(s);
        release_wseg(&g);
        return len;
    }
    uint64_t queued = lsock__socket_queued(s);
    if (s->wbuf_limit > 0 && queued > 0 && (int64_t)queued + len > s->wbuf_limit) {
        lsock__socket_fail(s, LSOCK_ERR_SOCKET_RESOURCE, call,
                           "the write buffer cannot take the whole write now (its limit, "
                           "lsock_socket_set_write_buffer_size())");
        return -1;
    }
    int fds = lsock__socket_has_fds_out(s);
    if (wseg_reserve(&s->wsegs) < 0 || (fds && lsock__socket_reserve_fds(s) < 0)) {
        lsock__socket_fail(s, LSOCK_ERR_SOCKET_RESOURCE, call, "out of memory");
        return -1;
    }
    if (!fds && queued == 0) {
        lsock_iovec one = {buf, (size_t)len};
        int64_t r = send_first(s, &one, 1, len);
        if (r < 0 || r == len) { /* broken (its error is on the way), or all of it went */
            defer_report(s);     /* bytes_written (or the error) from the loop */
            release_wseg(&g);
            return len;
        }
        g.off = (size_t)r;
    }
    if (s->fd_attach.len > 0) lsock__socket_bind_fds(s, s->tx_sent + queued);
    wseg_push(&s->wsegs, g.base, g.len, g.off, g.release, g.ud);
    if (fds) { /* the descriptors go with its first byte: sent now (see write_with_fds) */
        int64_t r = lsock__socket_flush_some(s);
        if (r < 0)
            s->broken = (int)-r;
        else if (r > 0)
            mark_sent(s);
    }
    if (!s->broken) lsock__socket_after_flush(s);
    defer_report(s);
    return len;
}

int64_t lsock_socket_writev(lsock_socket *s, const lsock_iovec *iov, int iovcnt)
{
    static const char call[] = "lsock_socket_writev";
    if (!s) return -1;
    if (iovcnt < 0 || iovcnt > LSOCK_IOV_MAX || (!iov && iovcnt > 0)) {
        lsock__socket_fail(s, LSOCK_ERR_INVALID_ARGUMENT, call,
                           iovcnt < 0 || iovcnt > LSOCK_IOV_MAX ? "iovcnt out of range (0 to 1024)"
                                                                : "NULL iov");
        return -1;
    }
    uint64_t total = 0;
    for (int i = 0; i < iovcnt; i++) {
        if (!iov[i].base && iov[i].len > 0) {
            lsock__socket_fail(s, LSOCK_ERR_INVALID_ARGUMENT, call, "NULL buffer");
            return -1;
        }
        if (iov[i].len > (uint64_t)INT64_MAX - total) {
            lsock__socket_fail(s, LSOCK_ERR_INVALID_ARGUMENT, call, "total size beyond INT64_MAX");
            return -1;
        }
        total += iov[i].len;
    }
    /* Empty buffers are left out, so that a single one left takes the plain write. */
    int n = 0;
    const lsock_iovec *first = iov;
    for (int i = 0; i < iovcnt; i++)
        if (iov[i].len > 0 && n++ == 0) first = iov + i;
    if (n <= 1) return lsock__socket_write_iov(s, first, n, (int64_t)total, 0, call);
    return lsock__socket_write_iov(s, iov, iovcnt, (int64_t)total, 0, call);
}

bool lsock_socket_flush(lsock_socket *s)
{
    if (!s || s->fd < 0 || lsock__socket_queued(s) == 0 || s->broken) return false;
    int64_t r = lsock__socket_flush_some(s);
    if (r < 0) {
        s->broken = (int)-r; /* reported from the loop or the next wait call */
        defer_report(s);
        return false;
    }
    lsock__socket_after_flush(s);
    defer_report(s);
    if (r > 0 && s->state == LSOCK_CLOSING && lsock__socket_queued(s) == 0 && s->loop)
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
        return lsock__socket_fail(s, LSOCK_ERR_INVALID_ARGUMENT,
                                  "lsock_socket_set_read_buffer_size", "negative size");
    lsock__socket_settle(s); /* announced bytes count as read in, whatever the new limit */
    s->rbuf_limit = size;
    lsock__socket_after_consume(s);
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
        return lsock__socket_fail(s, LSOCK_ERR_INVALID_ARGUMENT,
                                  "lsock_socket_set_write_buffer_size", "negative size");
    s->wbuf_limit = size;
    return true;
}
