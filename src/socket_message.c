/*
 * Messages over any connection, in the framing of Qt's QDataStream << QByteArray: a 32-bit
 * big-endian length, then the bytes (0xFFFFFFFF: a null QByteArray, read as an empty message).
 * The framing is lsock's own on every platform (byte-mode pipes on Windows too). The rules
 * (message mode, the maximum, the read buffer limit) are in include/lsock.h.
 */
#include "socket.h"

#include <stdio.h>
#include <string.h>

#define HEADER      LSOCK__MSG_HEADER
#define NULL_LENGTH 0xFFFFFFFFu
#define MAX_LIMIT   0xFFFFFFFEll

/* Makes a const entry point put the socket in message mode. (Every lsock_socket is
 * heap-allocated and mutable; const is the API's promise of no visible change.) */
static void enter_message_mode(const lsock_socket *s)
{
    /* Bytes left in the kernel (announced, see defer_message in socket_io.c) stay there
     * behind a buffered header: they are the rest of that message. Otherwise: buffered, and
     * a header among them beyond the maximum ends the connection, as on arrival. */
    int was = s->msg_mode;
    ((lsock_socket *)s)->msg_mode = 1;
    if (was && lsock__buf_len(&s->rbuf) >= HEADER) return;
    int had = lsock__socket_announced(s) > 0;
    lsock__socket_settle((lsock_socket *)s);
    if (was && had) lsock__socket_check_message((lsock_socket *)s, "lsock_socket_read");
}

/* The length in the header at the head of the read buffer: 1 when there is one, else 0. */
static int head_length(const lsock_socket *s, uint32_t *len)
{
    unsigned char h[HEADER];
    if (lsock__buf_peek(&s->rbuf, h, HEADER) < HEADER) return 0;
    *len = (uint32_t)h[0] << 24 | (uint32_t)h[1] << 16 | (uint32_t)h[2] << 8 | h[3];
    return 1;
}

static int too_long(const lsock_socket *s, uint32_t len)
{
    return len != NULL_LENGTH && (int64_t)len > s->msg_max;
}

/* The size of the message whose header is at the head of the read buffer (0 for an empty
 * or null one), or -1 when no header is buffered or it announces more than the maximum. */
static int64_t head_size(const lsock_socket *s)
{
    uint32_t len;
    if (!head_length(s, &len) || too_long(s, len)) return -1;
    return len == NULL_LENGTH ? 0 : (int64_t)len;
}

int64_t lsock__socket_message_rest(const lsock_socket *s)
{
    int64_t size = head_size(s);
    if (size < 0) return -1;
    int64_t have = (int64_t)lsock__buf_len(&s->rbuf) - HEADER;
    return size > have ? size - have : 0;
}

/* The size of the message at the head of the read buffer when it is whole (its rest may be
 * announced, left in the kernel), else -1. */
static int64_t whole_message(const lsock_socket *s)
{
    int64_t size = head_size(s);
    if (size < 0) return -1;
    int64_t have = (int64_t)lsock__buf_len(&s->rbuf) - HEADER;
    return have >= size || size - have <= lsock__socket_announced(s) ? size : -1;
}

int64_t lsock__socket_read_limit(const lsock_socket *s)
{
    if (s->rbuf_limit == 0 || !s->msg_mode) return s->rbuf_limit;
    uint32_t len;
    if (!head_length(s, &len)) return s->rbuf_limit < HEADER ? HEADER : s->rbuf_limit;
    if (too_long(s, len)) return s->rbuf_limit;
    int64_t need = HEADER + (len == NULL_LENGTH ? 0 : (int64_t)len);
    return need > s->rbuf_limit ? need : s->rbuf_limit;
}

int lsock__socket_check_message(lsock_socket *s, const char *call)
{
    uint32_t len;
    if (!head_length(s, &len) || !too_long(s, len)) return 0;
    char detail[160];
    snprintf(detail, sizeof detail,
             "the peer announced a message of %lu bytes; the maximum is %lld (lsock_socket_set_"
             "max_message_size())",
             (unsigned long)len, (long long)s->msg_max);
    lsock__socket_hold(s);
    lsock__buf_clear(&s->rbuf);   /* nothing of it is kept, nor read on */
    s->kernel_avail = 0;          /* (nor what was announced behind it) */
    lsock__socket_drop_fds_in(s); /* nor what came with it */
    s->discard = 1;               /* an abort: nothing queued goes out either */
    lsock__socket_error_and_close(s, LSOCK_ERR_DATAGRAM_TOO_LARGE, call, detail);
    if (!s->dead) s->discard = 0;
    lsock__socket_release(s);
    return -1;
}

int64_t lsock_socket_write_message(lsock_socket *s, const void *buf, int64_t len)
{
    static const char call[] = "lsock_socket_write_message";
    if (!s) return -1;
    enter_message_mode(s);
    if (len < 0 || (!buf && len > 0)) {
        lsock__socket_fail(s, LSOCK_ERR_INVALID_ARGUMENT, call,
                           len < 0 ? "negative size" : "NULL buffer");
        return -1;
    }
    if (len > s->msg_max) {
        char detail[128];
        snprintf(detail, sizeof detail,
                 "a message of %lld bytes; the maximum is %lld (lsock_socket_set_max_message_"
                 "size())",
                 (long long)len, (long long)s->msg_max);
        lsock__socket_fail(s, LSOCK_ERR_DATAGRAM_TOO_LARGE, call, detail);
        return -1;
    }
    unsigned char h[HEADER] = {(unsigned char)(len >> 24), (unsigned char)(len >> 16),
                               (unsigned char)(len >> 8), (unsigned char)len};
    lsock_iovec iov[2] = {{h, HEADER}, {buf, (size_t)len}};
    int64_t r = lsock__socket_write_iov(s, iov, len > 0 ? 2 : 1, HEADER + len, 1, call);
    return r < 0 ? -1 : len;
}

bool lsock_socket_can_read_message(const lsock_socket *s)
{
    if (!s) return false;
    enter_message_mode(s);
    return whole_message(s) >= 0;
}

int64_t lsock_socket_next_message_size(const lsock_socket *s)
{
    if (!s) return -1;
    enter_message_mode(s);
    return whole_message(s);
}

int64_t lsock_socket_read_message(lsock_socket *s, void *buf, int64_t max)
{
    static const char call[] = "lsock_socket_read_message";
    if (!s) return -1;
    enter_message_mode(s);
    if (max < 0 || (!buf && max > 0)) {
        lsock__socket_fail(s, LSOCK_ERR_INVALID_ARGUMENT, call,
                           max < 0 ? "negative size" : "NULL buffer");
        return -1;
    }
    if (lsock__socket_check_message(s, call) < 0) return -1;
    int64_t size = whole_message(s);
    if (size < 0) {
        lsock__socket_fail(s, LSOCK_ERR_OPERATION, call,
                           "no whole message is buffered (lsock_socket_can_read_message())");
        return -1;
    }
    if (size > max) {
        char detail[128];
        snprintf(detail, sizeof detail, "the next message is %lld bytes, more than max (%lld)",
                 (long long)size, (long long)max);
        lsock__socket_fail(s, LSOCK_ERR_INVALID_ARGUMENT, call, detail);
        return -1;
    }
    int64_t have = (int64_t)lsock__buf_len(&s->rbuf) - HEADER;
    int direct = 0;
    if (have < size) { /* the rest is announced: straight from the kernel into buf */
        if (have > 0) memcpy(buf, lsock__buf_begin(&s->rbuf) + HEADER, (size_t)have);
        direct = lsock__socket_read_rest(s, (char *)buf + have, (size_t)(size - have));
        if (!direct && lsock__socket_message_rest(s) != 0) {
            /* Fewer came (another process read the rest): what came is buffered behind the
             * rest of the message, nothing is consumed. */
            lsock__socket_fail(s, LSOCK_ERR_OPERATION, call,
                               "no whole message is buffered (the rest was read elsewhere)");
            return -1;
        }
    }
    lsock__buf_consume(&s->rbuf, HEADER);
    if (direct) {
        lsock__buf_consume(&s->rbuf, (size_t)have); /* copied; what follows is the next one's */
    } else {
        if (size > 0) lsock__buf_peek(&s->rbuf, buf, (size_t)size);
        lsock__buf_consume(&s->rbuf, (size_t)size);
    }
    lsock__socket_after_consume(s);
    /* A header beyond the maximum right behind this message ends the connection now. */
    lsock__socket_check_message(s, call);
    return size;
}

void lsock_socket_set_max_message_size(lsock_socket *s, int64_t max)
{
    if (!s) return;
    enter_message_mode(s);
    if (max < 0 || max > MAX_LIMIT) {
        lsock__socket_fail(s, LSOCK_ERR_INVALID_ARGUMENT, "lsock_socket_set_max_message_size",
                           "the maximum must be 0 to 0xFFFFFFFE");
        return;
    }
    s->msg_max = max;
    lsock__socket_after_consume(s); /* a lower limit may no longer hold reading back */
}

int64_t lsock_socket_max_message_size(const lsock_socket *s)
{
    return s ? s->msg_max : 0;
}
