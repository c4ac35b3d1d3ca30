/*
 * Writes by reference (lsock_socket_write_owned): what the kernel does not take at once is
 * queued as the caller's buffer itself and released once sent or dropped; the whole write or
 * nothing; order with the writes around it; bytes_to_write, bytes_written and the waits; every
 * end of the connection releasing it exactly once; the argument and limit errors leaving the
 * buffer with the caller. Every test runs on Unix and on Windows.
 */
#include "test.h"
#include "lsock.h"

#include <stdlib.h>
#include <string.h>

#include "support.h"

/* Big enough that the kernel (Unix: a 512 KiB send buffer at most) and the pipe never take it
 * at once, so that most of it is queued. */
#define BIG (8u << 20)

typedef struct releases {
    int calls;
    void *last;
    void *ud;
} releases;

static void count_release(void *buf, void *ud)
{
    releases *r = ud;
    r->calls++;
    r->last = buf;
}

static void free_release(void *buf, void *ud)
{
    free(buf);
    ((releases *)ud)->calls++;
}

/* The peer's reader: appends what arrives. */
typedef struct sink {
    unsigned char *data;
    size_t len, cap;
    int64_t written; /* bytes_written of the writer */
} sink;

static void sink_ready_read(lsock_socket *s, void *u)
{
    sink *k = u;
    for (;;) {
        int64_t avail = lsock_socket_bytes_available(s);
        if (avail <= 0) break;
        if (k->len + (size_t)avail > k->cap) {
            k->cap = (k->len + (size_t)avail) * 2;
            k->data = realloc(k->data, k->cap);
            ASSERT(k->data);
        }
        int64_t n = lsock_socket_read(s, k->data + k->len, avail);
        ASSERT(n > 0);
        k->len += (size_t)n;
    }
}

static void sink_bytes_written(lsock_socket *s, int64_t n, void *u)
{
    (void)s;
    ((sink *)u)->written += n;
}

static const lsock_socket_callbacks sink_cbs = {.ready_read = sink_ready_read};
static const lsock_socket_callbacks writer_cbs = {.bytes_written = sink_bytes_written};

typedef struct fixture {
    lsock_loop *loop;
    pair p;
    sink in;     /* what the peer received */
    sink counts; /* the client's bytes_written */
} fixture;

static void fixture_open(fixture *f)
{
    memset(f, 0, sizeof *f);
    f->loop = loop_new();
    pair_open(&f->p, f->loop);
    lsock_socket_set_callbacks(f->p.peer, &sink_cbs, &f->in);
    lsock_socket_set_callbacks(f->p.client, &writer_cbs, &f->counts);
}

static void fixture_close(fixture *f)
{
    pair_close(&f->p);
    lsock_loop_free(f->loop);
    free(f->in.data);
}

/* Writes BIG pattern bytes by reference (counted in r); returns the buffer to free. */
static unsigned char *write_big_owned(lsock_socket *s, releases *r)
{
    unsigned char *data = pattern_new(BIG);
    ASSERT_EQ(lsock_socket_write_owned(s, data, BIG, count_release, r), (int64_t)BIG);
    return data;
}

TEST(write_owned_that_the_kernel_takes_whole_releases_before_it_returns)
{
    fixture f;
    fixture_open(&f);
    releases r = {0, NULL, NULL};
    char msg[] = "hello, by reference";
    ASSERT_EQ(lsock_socket_write_owned(f.p.client, msg, 19, count_release, &r), 19);
    ASSERT_EQ(r.calls, 1);
    ASSERT(r.last == msg);
    ASSERT_EQ(lsock_socket_bytes_to_write(f.p.client), 0);
    ASSERT_EQ(lsock_socket_write_owned(f.p.client, msg, 0, count_release, &r), 0);
    ASSERT_EQ(r.calls, 2); /* an empty write is done at once too */
    ASSERT_EQ(lsock_socket_write_owned(f.p.client, (void *)"!", 1, NULL, NULL), 1);
    RUN_UNTIL(f.loop, f.in.len == 20, 5000);
    ASSERT(memcmp(f.in.data, "hello, by reference!", 20) == 0);
    fixture_close(&f);
}

/* The unsent part is sent from the caller's buffer itself: a byte changed after the call (which
 * the contract forbids, and which only a test does) arrives changed. */
TEST(write_owned_queues_the_buffer_itself_and_releases_it_once_sent)
{
    fixture f;
    fixture_open(&f);
    releases r = {0, NULL, NULL};
    unsigned char *data = write_big_owned(f.p.client, &r);
    ASSERT_EQ(r.calls, 0);
    int64_t queued = lsock_socket_bytes_to_write(f.p.client);
    ASSERT(queued > 0 && queued < (int64_t)BIG);
    data[BIG - 1] ^= 0xFF; /* not sent yet: it is queued as data, not as a copy */
    RUN_UNTIL(f.loop, r.calls == 1, 20000);
    ASSERT(r.last == data);
    ASSERT_EQ(lsock_socket_bytes_to_write(f.p.client), 0);
    RUN_UNTIL(f.loop, f.in.len == BIG && f.counts.written == (int64_t)BIG, 20000);
    ASSERT(memcmp(f.in.data, data, BIG) == 0);
    ASSERT_EQ(f.in.data[BIG - 1], (unsigned char)(pattern_byte(BIG - 1) ^ 0xFF));
    ASSERT_EQ(r.calls, 1);
    free(data);
    fixture_close(&f);
}

/* Writes of every kind around owned buffers (a gathered small write before, copies after, many
 * owned buffers queued at once) arrive in the order they were made. */
TEST(writes_around_write_owned_arrive_in_order)
{
    fixture f;
    fixture_open(&f);
    releases r = {0, NULL, NULL};
    size_t piece = 1u << 20;
    int owned = 20;
    size_t total = 0;
    unsigned char *expect = malloc((size_t)owned * (piece + 16) + 64);
    ASSERT(expect);
#define EXPECT(p, n)                                                                               \
    do {                                                                                           \
        memcpy(expect + total, (p), (n));                                                          \
        total += (n);                                                                              \
    } while (0)
    ASSERT_EQ(lsock_socket_write(f.p.client, "head", 4), 4); /* straight to the kernel */
    EXPECT("head", 4);
    ASSERT_EQ(lsock_socket_write(f.p.client, "gathered", 8), 8); /* gathered behind it */
    EXPECT("gathered", 8);
    for (int i = 0; i < owned; i++) {
        unsigned char *b = malloc(piece);
        ASSERT(b);
        memset(b, 'a' + i, piece);
        EXPECT(b, piece);
        ASSERT_EQ(lsock_socket_write_owned(f.p.client, b, (int64_t)piece, free_release, &r),
                  (int64_t)piece);
        char tail[16];
        int n = snprintf(tail, sizeof tail, "<%d>", i);
        lsock_iovec iov[2] = {{tail, 1}, {tail + 1, (size_t)n - 1}};
        ASSERT_EQ(i % 2 ? lsock_socket_write(f.p.client, tail, n)
                        : lsock_socket_writev(f.p.client, iov, 2),
                  n);
        EXPECT(tail, (size_t)n);
    }
#undef EXPECT
    ASSERT(r.calls < owned); /* the kernel has not taken them all yet: they wait in the queue */
    RUN_UNTIL(f.loop, f.in.len == total, 30000);
    ASSERT(memcmp(f.in.data, expect, total) == 0);
    ASSERT_EQ(r.calls, owned);
    RUN_UNTIL(f.loop, f.counts.written == (int64_t)total, 5000);
    free(expect);
    fixture_close(&f);
}

/* Small writes behind an owned buffer share copies (one allocation per 64 KiB, not one
 * each) and arrive in order after it. */
TEST(small_writes_behind_write_owned_arrive_in_order)
{
    fixture f;
    fixture_open(&f);
    releases r = {0, NULL, NULL};
    unsigned char *data = write_big_owned(f.p.client, &r);
    size_t smalls = 200000;
    for (size_t i = 0; i < smalls; i++) {
        unsigned char c = pattern_byte(BIG + i);
        ASSERT_EQ(lsock_socket_write(f.p.client, &c, 1), 1);
    }
    ASSERT_EQ(lsock_socket_bytes_to_write(f.p.client) > (int64_t)smalls, 1);
    RUN_UNTIL(f.loop, f.in.len == BIG + smalls, 30000);
    for (size_t i = 0; i < BIG + smalls; i++)
        if (f.in.data[i] != pattern_byte(i)) ASSERT_EQ(i, (size_t)-1); /* the first wrong byte */
    ASSERT_EQ(r.calls, 1);
    free(data);
    fixture_close(&f);
}

/* bytes_written reports an owned write that the kernel took whole, as it does a write (a
 * producer that writes its next piece from bytes_written depends on it). */
TEST(bytes_written_reports_a_write_owned_taken_whole)
{
    fixture f;
    fixture_open(&f);
    releases r = {0, NULL, NULL};
    char msg[] = "hello, by reference";
    ASSERT_EQ(lsock_socket_write_owned(f.p.client, msg, 19, count_release, &r), 19);
    ASSERT_EQ(r.calls, 1);
    RUN_UNTIL(f.loop, f.counts.written == 19, 5000);
    RUN_UNTIL(f.loop, f.in.len == 19, 5000);
    fixture_close(&f);
}

typedef enum ending { BY_ABORT, BY_CLOSE, BY_FREE, BY_PEER_GONE } ending;

/* Queues an owned buffer that the kernel cannot take, ends the connection the given way, and
 * checks that the buffer was released exactly once. */
static void released_once_when(ending how)
{
    fixture f;
    fixture_open(&f);
    releases r = {0, NULL, NULL};
    unsigned char *data = write_big_owned(f.p.client, &r);
    ASSERT_EQ(r.calls, 0);
    switch (how) {
    case BY_ABORT:
        lsock_socket_abort(f.p.client);
        break;
    case BY_CLOSE:
        lsock_socket_set_linger(f.p.client, 0); /* closing gives up on what is queued at once */
        lsock_socket_close(f.p.client);
        RUN_UNTIL(f.loop, lsock_socket_state(f.p.client) == LSOCK_UNCONNECTED, 5000);
        break;
    case BY_FREE:
        lsock_socket_free(f.p.client);
        f.p.client = NULL;
        break;
    case BY_PEER_GONE:
        lsock_socket_abort(f.p.peer);
        RUN_UNTIL(f.loop, lsock_socket_state(f.p.client) == LSOCK_UNCONNECTED, 5000);
        break;
    }
    ASSERT_EQ(r.calls, 1);
    ASSERT(r.last == data);
    if (f.p.client) ASSERT_EQ(lsock_socket_bytes_to_write(f.p.client), 0);
    run_for(f.loop, 30);
    ASSERT_EQ(r.calls, 1);
    free(data);
    fixture_close(&f);
}

TEST(write_owned_buffer_is_released_once_by_abort)
{
    released_once_when(BY_ABORT);
}

TEST(write_owned_buffer_is_released_once_by_close_with_no_linger_time)
{
    released_once_when(BY_CLOSE);
}

TEST(write_owned_buffer_is_released_once_by_free)
{
    released_once_when(BY_FREE);
}

TEST(write_owned_buffer_is_released_once_when_the_peer_goes_away)
{
    released_once_when(BY_PEER_GONE);
}

/* A graceful disconnect sends the owned buffer first, then releases it and ends. */
TEST(disconnect_sends_a_queued_owned_buffer_then_releases_it)
{
    fixture f;
    fixture_open(&f);
    releases r = {0, NULL, NULL};
    unsigned char *data = write_big_owned(f.p.client, &r);
    lsock_socket_disconnect(f.p.client);
    ASSERT_EQ(lsock_socket_state(f.p.client), LSOCK_CLOSING);
    RUN_UNTIL(f.loop, lsock_socket_state(f.p.client) == LSOCK_UNCONNECTED, 20000);
    ASSERT_EQ(r.calls, 1);
    RUN_UNTIL(f.loop, f.in.len == BIG, 20000);
    ASSERT(memcmp(f.in.data, data, BIG) == 0);
    free(data);
    fixture_close(&f);
}

/* Without a loop: the waits send the owned buffer, and release it once it is all sent. */
TEST(write_owned_without_a_loop_is_sent_by_the_waits)
{
    pair p;
    pair_open(&p, NULL);
    releases r = {0, NULL, NULL};
    unsigned char *data = write_big_owned(p.client, &r);
    unsigned char *got = malloc(BIG);
    ASSERT(got);
    size_t have = 0;
    uint64_t deadline = test_now_ms() + 20000;
    while (have < BIG) {
        ASSERT(test_now_ms() < deadline);
        if (lsock_socket_bytes_to_write(p.client) > 0)
            lsock_socket_wait_for_bytes_written(p.client, 10);
        lsock_socket_wait_for_ready_read(p.peer, 10);
        int64_t n = lsock_socket_read(p.peer, got + have, (int64_t)(BIG - have));
        ASSERT(n >= 0);
        have += (size_t)n;
    }
    ASSERT_EQ(r.calls, 1);
    ASSERT(memcmp(got, data, BIG) == 0);
    free(got);
    free(data);
    pair_close(&p);
}

/* Every failure leaves the buffer with the caller: release is never called. */
TEST(write_owned_failures_keep_the_buffer_with_the_caller)
{
    fixture f;
    fixture_open(&f);
    releases r = {0, NULL, NULL};
    char b[8] = "1234567";
    ASSERT_EQ(lsock_socket_write_owned(NULL, b, 8, count_release, &r), -1);
    ASSERT_EQ(lsock_socket_write_owned(f.p.client, b, -1, count_release, &r), -1);
    ASSERT_ERR(lsock_socket_error(f.p.client), LSOCK_ERR_INVALID_ARGUMENT);
    ASSERT_EQ(lsock_socket_write_owned(f.p.client, NULL, 8, count_release, &r), -1);
    ASSERT_ERR(lsock_socket_error(f.p.client), LSOCK_ERR_INVALID_ARGUMENT);
    ASSERT_STR_EQ(lsock_socket_error_string(f.p.client),
                  "lsock_socket_write_owned: Invalid argument (NULL buffer)");
    /* The write buffer limit cannot take all of it behind what is queued. */
    unsigned char *data = pattern_new(BIG);
    ASSERT_EQ(lsock_socket_write(f.p.client, data, BIG), (int64_t)BIG);
    ASSERT(lsock_socket_set_write_buffer_size(f.p.client, BIG));
    ASSERT_EQ(lsock_socket_write_owned(f.p.client, data, BIG, count_release, &r), -1);
    ASSERT_ERR(lsock_socket_error(f.p.client), LSOCK_ERR_SOCKET_RESOURCE);
    ASSERT(strstr(lsock_socket_error_string(f.p.client), "limit") != NULL);
    ASSERT_EQ(lsock_socket_state(f.p.client), LSOCK_CONNECTED);
    /* Not connected, and not open for writing. */
    lsock_socket *idle = lsock_socket_new(f.loop);
    ASSERT_EQ(lsock_socket_write_owned(idle, b, 8, count_release, &r), -1);
    ASSERT_ERR(lsock_socket_error(idle), LSOCK_ERR_OPERATION);
    lsock_socket_free(idle);
    ASSERT_EQ(r.calls, 0);
    free(data);
    fixture_close(&f);
}

/* A write after which the connection broke takes the buffer (its error is on the way) and
 * releases it: a writer that checks only the return value leaks nothing. */
TEST(write_owned_on_a_broken_connection_is_taken_and_released)
{
    fixture f;
    fixture_open(&f);
    releases r = {0, NULL, NULL};
    lsock_socket_abort(f.p.peer);
    unsigned char *data = pattern_new(BIG);
    int64_t n = 0;
    int accepted = 0;
    uint64_t deadline = test_now_ms() + 5000;
    /* Write until the broken pipe is seen (the first write may still go to the kernel). */
    while (lsock_socket_state(f.p.client) == LSOCK_CONNECTED && test_now_ms() < deadline) {
        n = lsock_socket_write_owned(f.p.client, data, 1000, count_release, &r);
        if (n < 0) break;
        ASSERT_EQ(n, 1000);
        accepted++;
        lsock_loop_run(f.loop, LSOCK_RUN_ONCE);
    }
    ASSERT(lsock_socket_state(f.p.client) == LSOCK_UNCONNECTED);
    /* Every accepted write was released once: none is left queued. */
    ASSERT(accepted > 0);
    ASSERT_EQ(r.calls, accepted);
    ASSERT_EQ(lsock_socket_bytes_to_write(f.p.client), 0);
    free(data);
    fixture_close(&f);
}

TEST_MAIN()
