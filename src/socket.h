/*
 * The socket's private parts, shared by the four files that implement it: socket.c (the state
 * machine and lifetime), socket_io.c (the I/O paths), socket_wait.c (the blocking waits) and
 * socket_message.c (messages).
 * Not installed; what server.c needs of the socket is in internal.h.
 */
#ifndef LSOCK_SOCKET_H
#define LSOCK_SOCKET_H

#include "internal.h"
#include "buffer.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Descriptors passed with the byte stream (descriptors.c), each with the position in the
 * stream of the byte it goes with: a queue, oldest first. */
typedef struct lsock__fdmark {
    uint64_t pos;
    intptr_t fd;
} lsock__fdmark;
typedef struct lsock__fdq {
    lsock__fdmark *v;
    size_t head, len, cap;
} lsock__fdq;

/* Writes queued by reference (lsock_socket_write_owned), behind the bytes of the write buffer:
 * a queue, oldest first, of buffers the application handed over, each released once sent or
 * dropped; bytes counts what is left of them. */
typedef struct lsock__wseg {
    char *base;
    size_t len, off; /* off: the bytes of it already sent */
    size_t cap;      /* a copy's allocation (copies queued behind take its spare room) */
    lsock_release_fn release;
    void *ud;
} lsock__wseg;
typedef struct lsock__wsegq {
    lsock__wseg *v;
    size_t head, len, cap;
    uint64_t bytes;
} lsock__wsegq;

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
    int read_wait;          /* loop-less, in wait_for_ready_read: the read may announce */
    int linger;             /* lsock_socket_set_linger(): ms, -1 unlimited */
    uint64_t linger_deadline; /* CLOSING with data queued: abort at this time (0: no bound) */
    lsock_timer *linger_timer;
    int discard;         /* the connection ends in an abort: the platform drops its unsent data */
    int watch_err;       /* starting to watch the descriptor failed with this errno */
    int64_t msg_max;     /* the longest message either way (lsock_socket_set_max_message_size) */
    int msg_mode;        /* a message call was made: the next unread byte starts a message header */
    uint64_t sent_iter;  /* 1 + the loop iteration in which a write last reached the kernel */
    int gathering;       /* wbuf holds writes gathered in this iteration (should_gather) */
    unsigned gather_gen; /* lsock__plat_fork_generation() of the process that gathered them */
    const char *watch_call;      /* the call in which it failed */
    uint64_t tx_sent;            /* bytes handed to the platform since the socket was made */
    uint64_t rx_total;           /* bytes added to the read buffer since the socket was made */
    lsock__fdq fd_attach;        /* attached, waiting for the next write (pos unused) */
    lsock__fdq fd_out;           /* bound to the stream byte at pos, not yet sent */
    lsock__fdq fd_in;            /* received with the stream byte at pos, not yet taken */
    lsock__wsegq wsegs;          /* queued by reference, behind wbuf's bytes */
    int64_t kernel_avail;        /* bytes announced and left in the kernel for a read straight
                                    into the caller's buffer: inside ready_read, and after a
                                    loop-less wait_for_ready_read (see defer_read) */
    lsock_socket *announce_next; /* the list of sockets announcing (socket_io.c) */
    unsigned announce_gen;       /* lsock__plat_fork_generation() of the process that announced */
    int big_reads;               /* > 0: a recent read found READ_DIRECT_MIN or more (defer_read) */
    int read_end_set;            /* a read straight into the caller's buffer met the end or an */
    int64_t read_end; /* error: read_end (0 end of stream, -errno), reported from the loop */
};

/* ---- socket.c: lifetime, callbacks, closing, connecting ------------------------------ */

/* Frees the memory of a dead socket (lsock__socket_release calls it for the last holder). */
void lsock__socket_destroy(lsock_socket *s);
/* Reports what went to the kernel since the last report through bytes_written, never nested. */
void lsock__socket_emit_bytes_written(lsock_socket *s);
/* Ends the connection in Qt's order (CLOSING, UNCONNECTED, read_channel_finished, disconnected). */
void lsock__socket_finish_close(lsock_socket *s);
/* Records the error, fires error_occurred, then ends the connection (Qt's setErrorAndEmit). */
void lsock__socket_error_and_close(lsock_socket *s, lsock_error code, const char *call,
                                   const char *detail);
/* Ends the connection after an I/O error (errno; 0: end of stream): PEER_CLOSED or CONNECTION. */
void lsock__socket_connection_lost(lsock_socket *s, int err, const char *call);
/* One more connect attempt while the backlog is full: 1 connected, 0 connecting, -1 failed. */
int lsock__socket_retry_connect(lsock_socket *s);
/* Aborts a CLOSING socket whose linger time ran out with data still queued. */
void lsock__socket_linger_expired(lsock_socket *s);

/* ---- socket_io.c: watching, reading and writing -------------------------------------- */

/* Writes "cannot watch the connection: <cause>" into buf. */
void lsock__socket_watch_failure_detail(char *buf, size_t size, int err);
/* Resumes reading once the application has made room below the read buffer limit. */
void lsock__socket_after_consume(lsock_socket *s);
/* Reads, fires ready_read, ends the connection at end of stream: 1 data, 0 nothing, -1 ended. */
int lsock__socket_on_readable(lsock_socket *s);
/* Writes queued data until the kernel is full: bytes written or -errno. */
int64_t lsock__socket_flush_some(lsock_socket *s);
/* Drops everything queued for writing: the write buffer's bytes, and the buffers queued by
 * reference, each released. */
void lsock__socket_drop_queued(lsock_socket *s);
/* Buffers the bytes ready_read announced but left in the kernel (s->kernel_avail), before a
 * call that looks at the read buffer or ends the connection. */
void lsock__socket_settle(lsock_socket *s);
/* Whether a read now could be announced rather than buffered (defer_read), short of asking the
 * kernel: a wait for data then polls instead of blocking in recv(). */
int lsock__socket_may_defer(const lsock_socket *s);
/* Message mode: the bytes of the next message not yet buffered (its header is), 0 when it is
 * whole, -1 when no header is buffered or it announces more than the maximum. */
int64_t lsock__socket_message_rest(const lsock_socket *s);
/* read_message: the rest bytes of the next message, announced, straight into dst (see
 * socket_io.c). 1: all there; 0: fewer came, appended to the read buffer (nothing lost). */
int lsock__socket_read_rest(lsock_socket *s, char *dst, size_t rest);
#define LSOCK__MSG_HEADER 4 /* the 32-bit big-endian length before every message */
/* The announced bytes (s->kernel_avail) this process may read: none in a child of fork()
 * for what its parent announced, which stays the parent's (defer_read). */
int64_t lsock__socket_announced(const lsock_socket *s);
/* The write of len bytes, the concatenation of iov[0..n): to the kernel when nothing is
 * queued, the rest queued. whole: all of it or nothing (SOCKET_RESOURCE) where a write buffer
 * limit applies, a non-empty queue taking no more than the limit. Returns the bytes accepted
 * or -1. */
int64_t lsock__socket_write_iov(lsock_socket *s, const lsock_iovec *iov, int n, int64_t len,
                                int whole, const char *call);

/* ---- descriptors.c: descriptors passed with the stream ------------------------------- */

/* Closes and forgets the descriptors attached or bound but never sent (Windows: the copies
 * made in the peer process, while the connection's descriptor is open). */
void lsock__socket_drop_fds_out(lsock_socket *s);
/* Closes and forgets the descriptors received and never taken. */
void lsock__socket_drop_fds_in(lsock_socket *s);
/* Closes every descriptor of the socket: attached, unsent, untaken. */
static inline void lsock__socket_drop_fds(lsock_socket *s)
{
    lsock__socket_drop_fds_out(s);
    lsock__socket_drop_fds_in(s);
}
/* The writer side: descriptors attached, or bound to bytes not yet sent (the slow path). */
static inline int lsock__socket_has_fds_out(const lsock_socket *s)
{
    return s->fd_attach.len > 0 || s->fd_out.len > 0;
}
/* Makes room to bind the attached descriptors: 0, or -1 out of memory. */
int lsock__socket_reserve_fds(lsock_socket *s);
/* A write that starts at stream position pos is queued: the attached descriptors go with its
 * first byte (room made by lsock__socket_reserve_fds). */
void lsock__socket_bind_fds(lsock_socket *s, uint64_t pos);
/* Hands the platform queued bytes (at most n from the head of the write buffer), sending the
 * descriptors bound to the first of them: the count, or -errno. */
int64_t lsock__socket_send_with_fds(lsock_socket *s, const char *p, size_t n);
/* Keeps the descriptors of a read that added len bytes at stream position pos (discard: the
 * bytes were not kept, the descriptors are closed). -1 when some were lost (truncated) or
 * there is no memory to keep them: every one of this read is closed. */
int lsock__socket_keep_fds(lsock_socket *s, lsock__fds_in *in, uint64_t pos, size_t len,
                           int discard);

/* ---- socket_message.c: messages ------------------------------------------------------- */

/* The read buffer limit in effect: the set one, raised while a message no longer than the
 * maximum is incomplete so that it always arrives whole (message mode only). 0: none. */
int64_t lsock__socket_read_limit(const lsock_socket *s);
/* In message mode, checks the header at the head of the read buffer: a length beyond the
 * maximum fires error_occurred(DATAGRAM_TOO_LARGE) and aborts the connection (-1). 0: fine. */
int lsock__socket_check_message(lsock_socket *s, const char *call);
/* After a flush: watch for room while data is queued, stop watching once it is all written. */
void lsock__socket_after_flush(lsock_socket *s);
/* Hands the gathered writes (see should_gather in socket_io.c) to the kernel. Returns -1 if
 * the connection broke (s->broken is set, reported by lsock__socket_report_deferred). */
int lsock__socket_flush_gathered(lsock_socket *s);
/* Hands gathered writes (see should_gather in socket_io.c) to the kernel before the descriptor
 * closes or the queue is dropped, as they would have gone had they not been gathered. */
void lsock__socket_flush_before_close(lsock_socket *s);
/* Reports a failure recorded earlier (broken write, failed watch): 1 if there was one. */
int lsock__socket_report_deferred(lsock_socket *s);
/* Flushes, fires bytes_written, completes CLOSING: -1 if the connection ended, else 0. */
int lsock__socket_on_writable(lsock_socket *s);
/* The loop's callback for the socket's descriptor. */
void lsock__socket_on_io(lsock__io *io, unsigned revents);
/* The loop's callback for the socket's deferred work (s->pend). */
void lsock__socket_pending_cb(lsock__pending *p);
/* Starts watching a connected descriptor on the loop (no-op without a loop). */
void lsock__socket_watch(lsock_socket *s, const char *call);

/* ---- small helpers, inline for the hot path ------------------------------------------ */

/* Keeps the socket's memory while an entry point runs (callbacks may free the socket). */
static inline void lsock__socket_hold(lsock_socket *s)
{
    s->depth++;
}

/* Ends a hold; the memory goes with the outermost one once the socket is dead. */
static inline void lsock__socket_release(lsock_socket *s)
{
    if (--s->depth == 0 && s->dead) lsock__socket_destroy(s);
}

/* Records an error on the socket; returns false for the caller to return. */
static inline bool lsock__socket_fail(lsock_socket *s, lsock_error code, const char *call,
                                      const char *detail)
{
    lsock__err_set(&s->err, code, call, detail);
    return false;
}

/* The bytes queued for writing: copied into the write buffer, then those queued by reference. */
static inline uint64_t lsock__socket_queued(const lsock_socket *s)
{
    return lsock__buf_len(&s->wbuf) + s->wsegs.bytes;
}

/* CLOSING with data queued and a linger time running. */
static inline int lsock__socket_lingering(const lsock_socket *s)
{
    return s->state == LSOCK_CLOSING && s->linger_deadline != 0 && lsock__socket_queued(s) > 0;
}

/* Whether the socket still has bytes to deliver: queued, or taken by the platform and not yet
 * delivered (Windows: a write in flight). A graceful close completes only once this is 0. */
static inline int lsock__socket_unsent(const lsock_socket *s)
{
    return lsock__socket_queued(s) > 0 || (s->fd >= 0 && lsock__plat_write_in_flight(s->fd));
}

#endif
