/*
 * libFuzzer harness for the byte queue (src/buffer.c) and the socket's buffered reads
 * (read / read_line / peek / skip / read_all / can_read_line / bytes_available / at_end, with
 * and without a read buffer limit). The input is a sequence of operations; each runs against
 * the code and against a flat-array reference model, and any difference aborts.
 *
 * Part one drives lsock__buf directly. Part two drives a loop-less lsock_socket adopted from
 * a socketpair: bytes "arrive" by being written to the other end and pulled in with
 * lsock_socket_wait_for_ready_read(s, 0).
 *
 *   make fuzz        (clang -fsanitize=fuzzer,address,undefined; FUZZ_SECONDS per harness)
 */
#include "buffer.h"
#include "lsock.h"

#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond);               \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

/* The input as a stream of small numbers and byte runs. */
struct input {
    const uint8_t *p;
    size_t n;
};

static unsigned take(struct input *in, unsigned bound)
{
    unsigned v = 0;
    if (in->n >= 2) {
        v = (unsigned)in->p[0] | (unsigned)in->p[1] << 8;
        in->p += 2;
        in->n -= 2;
    } else if (in->n == 1) {
        v = in->p[0];
        in->p++;
        in->n--;
    }
    return bound ? v % bound : v;
}

static const uint8_t *take_bytes(struct input *in, size_t *len)
{
    if (*len > in->n) *len = in->n;
    const uint8_t *p = in->p;
    in->p += *len;
    in->n -= *len;
    return p;
}

/* The reference: bytes in a flat array, front at index 0. */
struct model {
    uint8_t *data;
    size_t len, cap;
};

static void model_append(struct model *m, const void *src, size_t n)
{
    if (m->len + n > m->cap) {
        size_t cap = m->cap ? m->cap : 64;
        while (cap < m->len + n)
            cap *= 2;
        m->data = realloc(m->data, cap);
        CHECK(m->data);
        m->cap = cap;
    }
    if (n) memcpy(m->data + m->len, src, n);
    m->len += n;
}

static size_t model_consume(struct model *m, size_t n)
{
    if (n > m->len) n = m->len;
    if (n && m->len > n) memmove(m->data, m->data + n, m->len - n);
    m->len -= n;
    return n;
}

static size_t model_find(const struct model *m, size_t from, uint8_t c)
{
    for (size_t i = from; i < m->len; i++)
        if (m->data[i] == c) return i;
    return (size_t)-1;
}

static uint8_t scratch[70000];

/* ---- part one: lsock__buf ---------------------------------------------------------------- */

static void check_buf(const lsock__buf *b, const struct model *m)
{
    CHECK(lsock__buf_len(b) == m->len);
    CHECK(b->head <= b->tail && b->tail <= b->cap);
    if (m->len) CHECK(memcmp(lsock__buf_begin(b), m->data, m->len) == 0);
}

static void fuzz_buf(struct input *in)
{
    lsock__buf b = LSOCK__BUF_INIT;
    struct model m = {0};
    int ops = 0;
    while (in->n > 0 && ops++ < 2000) {
        switch (take(in, 8)) {
        case 0: { /* append */
            size_t n = take(in, 9000);
            const uint8_t *src = take_bytes(in, &n);
            CHECK(lsock__buf_append(&b, src, n) == 0);
            model_append(&m, src, n);
            break;
        }
        case 1: { /* reserve, write part, commit */
            size_t want = take(in, 70000), k = take(in, 0);
            char *p = lsock__buf_reserve(&b, want);
            CHECK(p != NULL);
            CHECK(lsock__buf_space(&b) >= want);
            k = want ? k % (want + 1) : 0;
            for (size_t i = 0; i < k; i++)
                scratch[i] = (uint8_t)(i * 7 + m.len);
            if (k) memcpy(p, scratch, k);
            lsock__buf_commit(&b, k);
            model_append(&m, scratch, k);
            break;
        }
        case 2: { /* peek */
            size_t n = take(in, 70000);
            size_t got = lsock__buf_peek(&b, scratch, n);
            CHECK(got == (n < m.len ? n : m.len));
            if (got) CHECK(memcmp(scratch, m.data, got) == 0);
            break;
        }
        case 3: { /* consume */
            size_t n = take(in, 0) * (take(in, 4) + 1);
            CHECK(lsock__buf_consume(&b, n) == model_consume(&m, n));
            break;
        }
        case 4: { /* find */
            size_t from = take(in, 9000);
            uint8_t c = (uint8_t)take(in, 256);
            CHECK(lsock__buf_find(&b, from, (char)c) == model_find(&m, from, c));
            break;
        }
        case 5: /* clear */
            lsock__buf_clear(&b);
            m.len = 0;
            break;
        case 6: /* impossible reservations leave the queue as it was */
            CHECK(lsock__buf_reserve(&b, SIZE_MAX - take(in, 16)) == NULL);
            break;
        default: { /* consume everything but a few, then append: exercises compaction */
            size_t keep = take(in, 64);
            if (keep < m.len) {
                lsock__buf_consume(&b, m.len - keep);
                model_consume(&m, m.len - keep);
            }
            size_t n = take(in, 4096);
            const uint8_t *src = take_bytes(in, &n);
            CHECK(lsock__buf_append(&b, src, n) == 0);
            model_append(&m, src, n);
            break;
        }
        }
        check_buf(&b, &m);
    }
    lsock__buf_free(&b);
    free(m.data);
}

/* ---- part two: a socket's buffered reads --------------------------------------------------- */

struct sock_model {
    struct model buffered; /* in the socket's read buffer */
    struct model kernel;   /* written to the other end, not yet pulled in */
    int64_t limit;
};

/* What wait_for_ready_read(s, 0) moves from the kernel into the buffer. */
static void model_pull(struct sock_model *sm)
{
    size_t room = sm->kernel.len;
    if (sm->limit > 0) {
        int64_t free_room = sm->limit - (int64_t)sm->buffered.len;
        if (free_room < 0) free_room = 0;
        if ((size_t)free_room < room) room = (size_t)free_room;
    }
    model_append(&sm->buffered, sm->kernel.data, room);
    model_consume(&sm->kernel, room);
}

static void check_socket(lsock_socket *s, struct sock_model *sm)
{
    CHECK(lsock_socket_bytes_available(s) == (int64_t)sm->buffered.len);
    CHECK(lsock_socket_at_end(s) == (sm->buffered.len == 0));
    CHECK(lsock_socket_can_read_line(s) == (model_find(&sm->buffered, 0, '\n') != (size_t)-1));
    CHECK(lsock_socket_state(s) == LSOCK_CONNECTED);
}

static void fuzz_socket(struct input *in)
{
    int sv[2];
    CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0);
    lsock_socket *s = lsock_socket_new(NULL);
    CHECK(s);
    CHECK(lsock_socket_set_descriptor(s, sv[0], LSOCK_CONNECTED, LSOCK_READ_WRITE));
    struct sock_model sm = {{0}, {0}, 0};
    int ops = 0;
    while (in->n > 0 && ops++ < 500) {
        unsigned op = take(in, 9);
        switch (op) {
        case 0: { /* bytes arrive */
            size_t n = take(in, 4096);
            const uint8_t *src = take_bytes(in, &n);
            if (sm.kernel.len + n > 65536) n = 0; /* stay below the kernel's buffer */
            if (n) CHECK(write(sv[1], src, n) == (ssize_t)n);
            model_append(&sm.kernel, src, n);
            bool got = lsock_socket_wait_for_ready_read(s, 0);
            size_t before = sm.buffered.len;
            model_pull(&sm);
            CHECK(got == (sm.buffered.len > before));
            /* A full read buffer is refused at once; otherwise nothing came in time. */
            if (!got)
                CHECK(lsock_socket_error(s) == (sm.limit > 0 && (int64_t)before >= sm.limit
                                                    ? LSOCK_ERR_OPERATION
                                                    : LSOCK_ERR_SOCKET_TIMEOUT));
            break;
        }
        case 1: { /* read */
            int64_t max = (int64_t)take(in, 9000);
            int64_t r = lsock_socket_read(s, scratch, max);
            size_t want = (size_t)max < sm.buffered.len ? (size_t)max : sm.buffered.len;
            CHECK(r == (int64_t)want);
            if (want) CHECK(memcmp(scratch, sm.buffered.data, want) == 0);
            model_consume(&sm.buffered, want);
            break;
        }
        case 2: { /* read_line: QIODevice::readLine */
            int64_t max = (int64_t)take(in, 9000);
            memset(scratch, 0xAA, 16);
            int64_t r = lsock_socket_read_line(s, (char *)scratch, max);
            if (max < 2) {
                CHECK(r == -1);
                CHECK(lsock_socket_error(s) == LSOCK_ERR_INVALID_ARGUMENT);
                break;
            }
            size_t nl = model_find(&sm.buffered, 0, '\n');
            size_t want = nl == (size_t)-1 ? sm.buffered.len : nl + 1;
            if (want > (size_t)max - 1) want = (size_t)max - 1;
            CHECK(r == (int64_t)want);
            if (want) CHECK(memcmp(scratch, sm.buffered.data, want) == 0);
            CHECK(scratch[want] == 0);
            model_consume(&sm.buffered, want);
            break;
        }
        case 3: { /* peek */
            int64_t max = (int64_t)take(in, 9000);
            int64_t r = lsock_socket_peek(s, scratch, max);
            size_t want = (size_t)max < sm.buffered.len ? (size_t)max : sm.buffered.len;
            CHECK(r == (int64_t)want);
            if (want) CHECK(memcmp(scratch, sm.buffered.data, want) == 0);
            break;
        }
        case 4: { /* skip */
            int64_t max = (int64_t)take(in, 9000);
            CHECK(lsock_socket_skip(s, max) == (int64_t)model_consume(&sm.buffered, (size_t)max));
            break;
        }
        case 5: { /* read_all */
            size_t len = 1;
            char *all = lsock_socket_read_all(s, &len);
            CHECK(all != NULL);
            CHECK(len == sm.buffered.len);
            if (len) CHECK(memcmp(all, sm.buffered.data, len) == 0);
            CHECK(all[len] == '\0');
            free(all);
            sm.buffered.len = 0;
            break;
        }
        case 6: { /* a read buffer limit (0: none) */
            int64_t limit = (int64_t)take(in, 4) * (int64_t)take(in, 3000);
            CHECK(lsock_socket_set_read_buffer_size(s, limit));
            sm.limit = limit;
            break;
        }
        case 7: { /* bad arguments change nothing */
            CHECK(lsock_socket_read(s, scratch, -1) == -1);
            CHECK(lsock_socket_peek(s, NULL, 1) == -1);
            CHECK(lsock_socket_skip(s, -5) == -1);
            CHECK(lsock_socket_read_line(s, (char *)scratch, 1) == -1);
            break;
        }
        default: { /* pull in what the limit now allows */
            bool got = lsock_socket_wait_for_ready_read(s, 0);
            size_t before = sm.buffered.len;
            model_pull(&sm);
            CHECK(got == (sm.buffered.len > before));
            break;
        }
        }
        check_socket(s, &sm);
    }
    lsock_socket_free(s);
    close(sv[1]);
    free(sm.buffered.data);
    free(sm.kernel.data);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0) return 0;
    struct input in = {data + 1, size - 1};
    if (data[0] & 1)
        fuzz_socket(&in);
    else
        fuzz_buf(&in);
    return 0;
}
