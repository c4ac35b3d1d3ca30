/*
 * Descriptors passed with the byte stream: lsock_socket_attach_descriptors() and
 * lsock_socket_take_descriptors().
 *
 * Writer. Attached descriptors are copied (the caller keeps its own) and wait for the next
 * write; that write binds them to the stream position of its first byte (fd_out) and goes
 * through the write buffer. The flush sends the bytes before that position as usual, then the
 * byte at it alone with the descriptors (lsock__plat_write_fds), then the rest. Sending the
 * byte alone lets the reader tell exactly which byte they came with.
 *
 * Reader. Every read asks for descriptors too (lsock__plat_read). Those that arrive are kept
 * with the position of their byte (fd_in) and become takeable once the application has read
 * past it, so they belong to what it has just read. Any that are lost on the way (the process
 * is out of descriptors: MSG_CTRUNC) end the connection with SOCKET_RESOURCE (socket_io.c),
 * and the rest of that read are closed.
 *
 * Descriptors nobody takes are closed with the socket: on free, abort and a new connection,
 * and (the unsent ones) when the connection ends.
 */
#include "socket.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- the queue ----------------------------------------------------------------------- */

/* Room for n more entries: 0, or -1 out of memory. */
static int fdq_reserve(lsock__fdq *q, size_t n)
{
    if (q->head + q->len + n <= q->cap) return 0;
    if (q->head > 0) {
        memmove(q->v, q->v + q->head, q->len * sizeof *q->v);
        q->head = 0;
        if (q->len + n <= q->cap) return 0;
    }
    size_t cap = q->cap ? q->cap : 8;
    while (cap < q->len + n)
        cap *= 2;
    lsock__fdmark *v = realloc(q->v, cap * sizeof *v);
    if (!v) return -1;
    q->v = v;
    q->cap = cap;
    return 0;
}

/* Appends to a queue with room (fdq_reserve). */
static void fdq_push(lsock__fdq *q, uint64_t pos, intptr_t fd)
{
    q->v[q->head + q->len].pos = pos;
    q->v[q->head + q->len].fd = fd;
    q->len++;
}

static const lsock__fdmark *fdq_front(const lsock__fdq *q)
{
    return q->v + q->head;
}

static void fdq_pop(lsock__fdq *q, size_t n)
{
    q->head += n;
    q->len -= n;
    if (q->len == 0) q->head = 0;
}

static void fdq_free(lsock__fdq *q)
{
    free(q->v);
    memset(q, 0, sizeof *q);
}

void lsock__socket_drop_fds_out(lsock_socket *s)
{
    lsock__fdq *qs[2] = {&s->fd_attach, &s->fd_out};
    for (int k = 0; k < 2; k++) {
        for (size_t i = 0; i < qs[k]->len; i++)
            lsock__plat_release_descriptor(s->fd, qs[k]->v[qs[k]->head + i].fd, 0);
        fdq_free(qs[k]);
    }
}

void lsock__socket_drop_fds_in(lsock_socket *s)
{
    for (size_t i = 0; i < s->fd_in.len; i++)
        lsock__plat_close_descriptor(s->fd_in.v[s->fd_in.head + i].fd);
    fdq_free(&s->fd_in);
}

/* ---- the writer ---------------------------------------------------------------------- */

int lsock__socket_reserve_fds(lsock_socket *s)
{
    return fdq_reserve(&s->fd_out, s->fd_attach.len);
}

void lsock__socket_bind_fds(lsock_socket *s, uint64_t pos)
{
    for (size_t i = 0; i < s->fd_attach.len; i++)
        fdq_push(&s->fd_out, pos, s->fd_attach.v[s->fd_attach.head + i].fd);
    fdq_pop(&s->fd_attach, s->fd_attach.len);
}

int64_t lsock__socket_send_with_fds(lsock_socket *s, const char *p, size_t n)
{
    const lsock__fdmark *m = fdq_front(&s->fd_out);
    if (m->pos > s->tx_sent) {
        /* The bytes before the one the descriptors go with, as usual. */
        if (m->pos - s->tx_sent < n) n = (size_t)(m->pos - s->tx_sent);
        return lsock__plat_write(s->fd, p, n);
    }
    intptr_t fds[LSOCK__FDS_MAX];
    fds[0] = m->fd;
    int count = 1;
    while ((size_t)count < s->fd_out.len && count < LSOCK__FDS_MAX && m[count].pos == m->pos) {
        fds[count] = m[count].fd;
        count++;
    }
    int64_t r = lsock__plat_write_fds(s->fd, p, 1, fds, count);
    if (r > 0) {
        /* The peer has its copies: ours go. */
        for (int i = 0; i < count; i++)
            lsock__plat_release_descriptor(s->fd, fds[i], 1);
        fdq_pop(&s->fd_out, (size_t)count);
    }
    return r;
}

static bool attach_failure(lsock_socket *s, int err, int index)
{
    static const char call[] = "lsock_socket_attach_descriptors";
    char detail[160];
    lsock_error code = LSOCK_ERR_SOCKET_RESOURCE;
    if (err == EBADF) {
        code = LSOCK_ERR_INVALID_ARGUMENT;
        snprintf(detail, sizeof detail, "fds[%d] is not an open descriptor", index);
    } else if (err == ENOTSUP) {
        code = LSOCK_ERR_UNSUPPORTED_OPERATION;
        snprintf(detail, sizeof detail,
                 "this connection carries no handles: on Windows both ends set "
                 "LSOCK_PASS_DESCRIPTORS before connecting or listening");
    } else if (err == EACCES) {
        code = LSOCK_ERR_SOCKET_ACCESS;
        snprintf(detail, sizeof detail, "fds[%d] cannot be duplicated: %s", index,
                 lsock__plat_strerror(err));
    } else {
        snprintf(detail, sizeof detail, "fds[%d] cannot be copied: %s", index,
                 lsock__plat_strerror(err));
    }
    return lsock__socket_fail(s, code, call, detail);
}

bool lsock_socket_attach_descriptors(lsock_socket *s, const intptr_t *fds, int count)
{
    static const char call[] = "lsock_socket_attach_descriptors";
    if (!s) return false;
    if (!fds || count < 1 || count > LSOCK__FDS_MAX)
        return lsock__socket_fail(s, LSOCK_ERR_INVALID_ARGUMENT, call,
                                  !fds ? "NULL fds" : "count out of range (1 to 253)");
    if ((size_t)count > LSOCK__FDS_MAX - s->fd_attach.len)
        return lsock__socket_fail(s, LSOCK_ERR_INVALID_ARGUMENT, call,
                                  "at most 253 descriptors go with one write, and some are "
                                  "attached already");
    if (s->state != LSOCK_CONNECTED || !(s->open_mode & LSOCK_WRITE_ONLY))
        return lsock__socket_fail(s, LSOCK_ERR_OPERATION, call,
                                  s->state != LSOCK_CONNECTED ? "not connected"
                                                              : "not open for writing");
    if (fdq_reserve(&s->fd_attach, (size_t)count) < 0)
        return lsock__socket_fail(s, LSOCK_ERR_SOCKET_RESOURCE, call, "out of memory");
    size_t before = s->fd_attach.len;
    for (int i = 0; i < count; i++) {
        intptr_t copy;
        int rc = lsock__plat_dup_descriptor(s->fd, fds[i], &copy);
        if (rc < 0) {
            /* Nothing of this call stays attached. */
            while (s->fd_attach.len > before)
                lsock__plat_release_descriptor(
                    s->fd, s->fd_attach.v[s->fd_attach.head + --s->fd_attach.len].fd, 0);
            return attach_failure(s, -rc, i);
        }
        fdq_push(&s->fd_attach, 0, copy);
    }
    return true;
}

/* ---- the reader ---------------------------------------------------------------------- */

int lsock__socket_keep_fds(lsock_socket *s, lsock__fds_in *in, uint64_t pos, size_t len,
                           int discard)
{
    int lost = in->truncated || (!discard && fdq_reserve(&s->fd_in, (size_t)in->count) < 0);
    if (lost || discard) {
        for (int i = 0; i < in->count; i++)
            lsock__plat_close_descriptor(in->fd[i]);
        return lost ? -1 : 0;
    }
    uint64_t at = in->last && len > 0 ? pos + len - 1 : pos;
    for (int i = 0; i < in->count; i++)
        fdq_push(&s->fd_in, at, in->fd[i]);
    return 0;
}

int lsock_socket_take_descriptors(lsock_socket *s, intptr_t *fds, int max)
{
    if (!s) return -1;
    if (max < 0 || (!fds && max > 0)) {
        lsock__socket_fail(s, LSOCK_ERR_INVALID_ARGUMENT, "lsock_socket_take_descriptors",
                           max < 0 ? "negative max" : "NULL fds");
        return -1;
    }
    /* Takeable: came with a byte the application has read (the read buffer holds the rest). */
    uint64_t read = s->rx_total - lsock__buf_len(&s->rbuf);
    int n = 0;
    while (n < max && s->fd_in.len > 0 && fdq_front(&s->fd_in)->pos < read) {
        fds[n++] = fdq_front(&s->fd_in)->fd;
        fdq_pop(&s->fd_in, 1);
    }
    return n;
}
