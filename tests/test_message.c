/*
 * Messages (lsock_socket_write_message() and friends): the QDataStream << QByteArray framing
 * byte for byte, sizes from 0 to 1 MiB, hostile peers (oversized lengths, a length and then a
 * close, headers split over many writes, one byte at a time, 100,000 empty messages), the read
 * and write buffer limits, and the argument errors. The peer's raw bytes are written with
 * lsock_socket_write(), so every test runs on Unix and on Windows. The interop with real Qt
 * programs is in test_interop.c.
 */
#include "test.h"
#include "lsock.h"

#include <stdlib.h>
#include <string.h>

#include "support.h"
#include "internal.h" /* lsock__test_direct_reads, lsock__test_announced */

/* Waits (blocking sockets) until a whole message is buffered in s, flushing what the other
 * end of the pair (writer, may be NULL) still has queued meanwhile. */
static void wait_message2(lsock_socket *s, lsock_socket *writer)
{
    uint64_t deadline = test_now_ms() + 10000;
    while (!lsock_socket_can_read_message(s)) {
        ASSERT(test_now_ms() < deadline);
        if (writer && lsock_socket_bytes_to_write(writer) > 0) {
            lsock_socket_flush(writer);
            lsock_socket_wait_for_ready_read(s, 10);
        } else {
            ASSERT(lsock_socket_wait_for_ready_read(s, 5000));
        }
    }
}

static void wait_message(lsock_socket *s)
{
    wait_message2(s, NULL);
}

/* Writes all of buf from a blocking socket. */
static void send_all(lsock_socket *s, const void *buf, int64_t len)
{
    ASSERT_EQ(lsock_socket_write(s, buf, len), len);
    uint64_t deadline = test_now_ms() + 10000;
    while (lsock_socket_bytes_to_write(s) > 0) {
        ASSERT(test_now_ms() < deadline);
        lsock_socket_wait_for_bytes_written(s, 1000);
    }
}

TEST(messages_of_0_1_1000_70000_and_1_mib_arrive_whole_and_in_order)
{
    pair p;
    pair_open(&p, NULL);
    static const int64_t sizes[] = {0, 1, 1000, 70000, 1 << 20};
    enum { N = sizeof sizes / sizeof sizes[0] };
    unsigned char *data = pattern_new(1 << 20);
    unsigned char *in = malloc(1 << 20);
    ASSERT(in != NULL);
    for (int i = 0; i < N; i++)
        ASSERT_EQ(lsock_socket_write_message(p.client, data, sizes[i]), sizes[i]);
    for (int i = 0; i < N; i++) {
        wait_message2(p.peer, p.client);
        ASSERT_EQ(lsock_socket_next_message_size(p.peer), sizes[i]);
        ASSERT_EQ(lsock_socket_read_message(p.peer, in, 1 << 20), sizes[i]);
        ASSERT(memcmp(in, data, (size_t)sizes[i]) == 0);
    }
    ASSERT(!lsock_socket_can_read_message(p.peer));
    ASSERT_EQ(lsock_socket_next_message_size(p.peer), -1);
    free(in);
    free(data);
    pair_close(&p);
}

TEST(message_framing_is_qdatastream_of_a_qbytearray_and_a_null_one_arrives_empty)
{
    pair p;
    pair_open(&p, NULL);
    ASSERT_EQ(lsock_socket_write_message(p.client, "abc", 3), 3);
    ASSERT_EQ(lsock_socket_write_message(p.client, NULL, 0), 0);
    static const unsigned char want[] = {0, 0, 0, 3, 'a', 'b', 'c', 0, 0, 0, 0};
    unsigned char got[sizeof want];
    size_t n = 0;
    uint64_t deadline = test_now_ms() + 10000;
    while (n < sizeof want) {
        ASSERT(test_now_ms() < deadline);
        if (lsock_socket_bytes_available(p.peer) == 0)
            ASSERT(lsock_socket_wait_for_ready_read(p.peer, 5000));
        n += (size_t)lsock_socket_read(p.peer, got + n, (int64_t)(sizeof want - n));
    }
    ASSERT(memcmp(got, want, sizeof want) == 0);
    /* A null QByteArray (length 0xFFFFFFFF) is an empty message. */
    static const unsigned char null_msg[] = {0xff, 0xff, 0xff, 0xff, 0, 0, 0, 1, 'z'};
    send_all(p.peer, null_msg, sizeof null_msg);
    wait_message(p.client);
    ASSERT_EQ(lsock_socket_next_message_size(p.client), 0);
    char buf[4];
    ASSERT_EQ(lsock_socket_read_message(p.client, buf, 0), 0);
    wait_message(p.client);
    ASSERT_EQ(lsock_socket_read_message(p.client, buf, sizeof buf), 1);
    ASSERT_EQ(buf[0], 'z');
    pair_close(&p);
}

TEST(read_message_into_a_smaller_buffer_fails_invalid_argument_and_consumes_nothing)
{
    pair p;
    pair_open(&p, NULL);
    ASSERT_EQ(lsock_socket_write_message(p.client, "hello", 5), 5);
    wait_message(p.peer);
    char buf[8];
    ASSERT_EQ(lsock_socket_read_message(p.peer, buf, 4), -1);
    ASSERT_ERR(lsock_socket_error(p.peer), LSOCK_ERR_INVALID_ARGUMENT);
    ASSERT_STR_EQ(lsock_socket_error_string(p.peer),
                  "lsock_socket_read_message: Invalid argument (the next message is 5 bytes, "
                  "more than max (4))");
    ASSERT_EQ(lsock_socket_bytes_available(p.peer), 9);
    ASSERT_EQ(lsock_socket_read_message(p.peer, buf, sizeof buf), 5);
    ASSERT(memcmp(buf, "hello", 5) == 0);
    ASSERT_EQ(lsock_socket_read_message(p.peer, NULL, -1), -1);
    ASSERT_ERR(lsock_socket_error(p.peer), LSOCK_ERR_INVALID_ARGUMENT);
    pair_close(&p);
}

TEST(a_header_split_over_many_writes_and_a_message_sent_a_byte_at_a_time_arrive_whole)
{
    pair p;
    pair_open(&p, NULL);
    enum { LEN = 1000 };
    unsigned char raw[4 + LEN];
    raw[0] = 0;
    raw[1] = 0;
    raw[2] = LEN >> 8;
    raw[3] = LEN & 0xff;
    unsigned char *data = pattern_new(LEN);
    memcpy(raw + 4, data, LEN);
    for (size_t i = 0; i < sizeof raw; i++) {
        send_all(p.peer, raw + i, 1);
        if (i + 1 < sizeof raw) {
            /* Never whole before the last byte; a read of a partial one says so. */
            lsock_socket_wait_for_ready_read(p.client, i < 8 ? 1000 : 0);
            ASSERT(!lsock_socket_can_read_message(p.client));
        }
    }
    char buf[8];
    if (!lsock_socket_can_read_message(p.client)) {
        ASSERT_EQ(lsock_socket_read_message(p.client, buf, sizeof buf), -1);
        ASSERT_ERR(lsock_socket_error(p.client), LSOCK_ERR_OPERATION);
    }
    wait_message(p.client);
    unsigned char in[LEN];
    ASSERT_EQ(lsock_socket_read_message(p.client, in, LEN), LEN);
    ASSERT(memcmp(in, data, LEN) == 0);
    free(data);
    pair_close(&p);
}

/* The peer announces more than the maximum: error, abort, nothing of that size allocated. */
static void check_oversized(int64_t max, const unsigned char header[4])
{
    pair p;
    pair_open(&p, NULL);
    if (max >= 0) lsock_socket_set_max_message_size(p.client, max);
    ASSERT(!lsock_socket_can_read_message(p.client)); /* message mode */
    rec r;
    rec_init(&r);
    lsock_socket_set_callbacks(p.client, &rec_cbs, &r);
    send_all(p.peer, header, 4);
    send_all(p.peer, "some bytes", 10);
    uint64_t deadline = test_now_ms() + 10000;
    while (lsock_socket_state(p.client) == LSOCK_CONNECTED) {
        ASSERT(test_now_ms() < deadline);
        lsock_socket_wait_for_ready_read(p.client, 1000);
    }
    ASSERT_ERR(lsock_socket_error(p.client), LSOCK_ERR_DATAGRAM_TOO_LARGE);
    ASSERT(starts_with(lsock_socket_error_string(p.client),
                       "lsock_socket_read: Datagram too large (the peer announced a message of "));
    ASSERT_EQ(r.errors, 1);
    ASSERT_EQ(lsock_socket_state(p.client), LSOCK_UNCONNECTED);
    ASSERT_EQ(lsock_socket_bytes_available(p.client), 0);
    ASSERT(!lsock_socket_can_read_message(p.client));
    pair_close(&p);
}

TEST(a_peer_announcing_more_than_the_maximum_gets_datagram_too_large_and_the_connection_ends)
{
    static const unsigned char h1001[4] = {0, 0, 0x03, 0xe9};
    check_oversized(1000, h1001);
    /* 4 GiB - 2 against the default 64 MiB: never allocated. */
    static const unsigned char huge[4] = {0xff, 0xff, 0xff, 0xfe};
    check_oversized(-1, huge);
}

TEST(a_length_followed_by_a_close_leaves_no_message_and_keeps_the_bytes)
{
    pair p;
    pair_open(&p, NULL);
    static const unsigned char part[] = {0, 0, 0, 100, 'a', 'b'};
    send_all(p.peer, part, sizeof part);
    lsock_socket_disconnect(p.peer);
    ASSERT(!lsock_socket_can_read_message(p.client));
    uint64_t deadline = test_now_ms() + 10000;
    while (lsock_socket_state(p.client) == LSOCK_CONNECTED) {
        ASSERT(test_now_ms() < deadline);
        lsock_socket_wait_for_ready_read(p.client, 1000);
    }
    ASSERT(!lsock_socket_can_read_message(p.client));
    char buf[8];
    ASSERT_EQ(lsock_socket_read_message(p.client, buf, sizeof buf), -1);
    ASSERT_ERR(lsock_socket_error(p.client), LSOCK_ERR_OPERATION);
    ASSERT_EQ(lsock_socket_read(p.client, buf, sizeof buf), (int64_t)sizeof part);
    pair_close(&p);
}

TEST(a_hundred_thousand_empty_messages_all_arrive)
{
    lsock_loop *loop = loop_new();
    pair p;
    pair_open(&p, loop);
    enum { N = 100000 };
    for (int i = 0; i < N; i++)
        ASSERT_EQ(lsock_socket_write_message(p.client, "", 0), 0);
    int got = 0;
    uint64_t deadline = test_now_ms() + 20000;
    char c;
    while (got < N) {
        ASSERT(test_now_ms() < deadline);
        lsock_loop_run(loop, LSOCK_RUN_ONCE);
        while (lsock_socket_read_message(p.peer, &c, 1) == 0)
            got++;
    }
    ASSERT_EQ(got, N);
    ASSERT_EQ(lsock_socket_bytes_available(p.peer), 0);
    pair_close(&p);
    loop_free(loop);
}

TEST(a_message_longer_than_the_read_buffer_limit_arrives_whole_and_the_limit_holds_between)
{
    pair p;
    pair_open(&p, NULL);
    ASSERT(lsock_socket_set_read_buffer_size(p.peer, 4096));
    enum { LEN = 70000 };
    unsigned char *data = pattern_new(LEN);
    for (int i = 0; i < 3; i++)
        ASSERT_EQ(lsock_socket_write_message(p.client, data, LEN), LEN);
    unsigned char *in = malloc(LEN);
    ASSERT(in != NULL);
    for (int i = 0; i < 3; i++) {
        wait_message2(p.peer, p.client);
        /* Never more than the message (and what the limit allows behind it). */
        ASSERT(lsock_socket_bytes_available(p.peer) <= 4 + LEN + 4096);
        ASSERT_EQ(lsock_socket_read_message(p.peer, in, LEN), LEN);
        ASSERT(memcmp(in, data, LEN) == 0);
    }
    free(in);
    free(data);
    pair_close(&p);
}

TEST(write_message_beyond_the_maximum_fails_datagram_too_large_and_sends_nothing)
{
    pair p;
    pair_open(&p, NULL);
    lsock_socket_set_max_message_size(p.client, 10);
    ASSERT_EQ(lsock_socket_max_message_size(p.client), 10);
    ASSERT_EQ(lsock_socket_write_message(p.client, "0123456789a", 11), -1);
    ASSERT_ERR(lsock_socket_error(p.client), LSOCK_ERR_DATAGRAM_TOO_LARGE);
    ASSERT_STR_EQ(lsock_socket_error_string(p.client),
                  "lsock_socket_write_message: Datagram too large (a message of 11 bytes; the "
                  "maximum is 10 (lsock_socket_set_max_message_size()))");
    ASSERT_EQ(lsock_socket_write_message(p.client, "0123456789", 10), 10);
    wait_message(p.peer);
    ASSERT_EQ(lsock_socket_bytes_available(p.peer), 14); /* only the second one */
    ASSERT_EQ(lsock_socket_write_message(p.client, NULL, 1), -1);
    ASSERT_ERR(lsock_socket_error(p.client), LSOCK_ERR_INVALID_ARGUMENT);
    ASSERT_EQ(lsock_socket_write_message(p.client, "x", -1), -1);
    ASSERT_ERR(lsock_socket_error(p.client), LSOCK_ERR_INVALID_ARGUMENT);
    pair_close(&p);
}

TEST(write_message_with_a_write_buffer_limit_takes_all_or_nothing)
{
    pair p;
    pair_open(&p, NULL);
    ASSERT(lsock_socket_set_write_buffer_size(p.client, 1000));
    enum { CHUNK = 65536 };
    unsigned char *data = pattern_new(CHUNK);
    /* An empty queue takes a message longer than the limit: fill the kernel with one. */
    uint64_t deadline = test_now_ms() + 10000;
    while (lsock_socket_bytes_to_write(p.client) == 0) {
        ASSERT(test_now_ms() < deadline);
        ASSERT_EQ(lsock_socket_write_message(p.client, data, CHUNK), CHUNK);
    }
    int64_t queued = lsock_socket_bytes_to_write(p.client);
    ASSERT(queued > 0);
    /* A queue that holds something takes a message only if all of it fits the limit. */
    ASSERT_EQ(lsock_socket_write_message(p.client, data, 1000), -1);
    ASSERT_ERR(lsock_socket_error(p.client), LSOCK_ERR_SOCKET_RESOURCE);
    ASSERT_EQ(lsock_socket_bytes_to_write(p.client), queued);
    free(data);
    pair_close(&p);
}

TEST(max_message_size_out_of_range_fails_invalid_argument_and_keeps_the_maximum)
{
    lsock_socket *s = lsock_socket_new(NULL);
    ASSERT_EQ(lsock_socket_max_message_size(s), LSOCK_DEFAULT_MAX_MESSAGE_SIZE);
    lsock_socket_set_max_message_size(s, -1);
    ASSERT_ERR(lsock_socket_error(s), LSOCK_ERR_INVALID_ARGUMENT);
    lsock_socket_set_max_message_size(s, 0xFFFFFFFFll);
    ASSERT_ERR(lsock_socket_error(s), LSOCK_ERR_INVALID_ARGUMENT);
    ASSERT_STR_EQ(lsock_socket_error_string(s), "lsock_socket_set_max_message_size: Invalid "
                                                "argument (the maximum must be 0 to 0xFFFFFFFE)");
    ASSERT_EQ(lsock_socket_max_message_size(s), LSOCK_DEFAULT_MAX_MESSAGE_SIZE);
    lsock_socket_set_max_message_size(s, 0xFFFFFFFEll);
    ASSERT_EQ(lsock_socket_max_message_size(s), 0xFFFFFFFEll);
    lsock_socket_free(s);
}

TEST(message_calls_on_an_unconnected_socket)
{
    lsock_socket *s = lsock_socket_new(NULL);
    ASSERT_EQ(lsock_socket_write_message(s, "x", 1), -1);
    ASSERT_ERR(lsock_socket_error(s), LSOCK_ERR_OPERATION);
    ASSERT(!lsock_socket_can_read_message(s));
    ASSERT_EQ(lsock_socket_next_message_size(s), -1);
    char c;
    ASSERT_EQ(lsock_socket_read_message(s, &c, 1), -1);
    ASSERT_ERR(lsock_socket_error(s), LSOCK_ERR_OPERATION);
    lsock_socket_free(s);
}

/* ---- messages read straight into the caller's buffer ------------------------------------- */

/* Message i of a stream: its size (large and small, around the 16 KiB and 4 KiB thresholds)
 * and its first byte's offset into the pattern, so that a message out of place shows. */
static int64_t stream_size(int i)
{
    static const int64_t sizes[] = {65536, 16384, 100000, 20, 70000, 4093, 0, 300000};
    return sizes[i % (int)(sizeof sizes / sizeof sizes[0])];
}

typedef struct msg_reader {
    int next, count, bad, calls;
    unsigned char *pattern, *in;
    int leave_first; /* the first ready_read reads nothing: the messages wait for the next */
} msg_reader;

/* Reads every whole message, checking each against the stream. */
static void read_stream_messages(lsock_socket *s, msg_reader *r)
{
    while (lsock_socket_can_read_message(s)) {
        int64_t want = stream_size(r->next);
        if (lsock_socket_next_message_size(s) != want) r->bad++;
        int64_t n = lsock_socket_read_message(s, r->in, 1 << 20);
        if (n != want || memcmp(r->in, r->pattern + r->next % 7, (size_t)want) != 0) r->bad++;
        r->next++;
    }
}

static void msg_ready_read(lsock_socket *s, void *u)
{
    msg_reader *r = u;
    if (r->calls++ == 0 && r->leave_first) return;
    read_stream_messages(s, r);
}

/* Sends the stream's messages first to last, on a loop. */
static void send_stream(lsock_loop *loop, pair *p, msg_reader *r, int first, int last)
{
    for (int i = first; i < last; i++)
        ASSERT_EQ(lsock_socket_write_message(p->client, r->pattern + i % 7, stream_size(i)),
                  stream_size(i));
    RUN_UNTIL(loop, r->next == last, 20000);
}

static void msg_reader_init(msg_reader *r)
{
    memset(r, 0, sizeof *r);
    r->pattern = pattern_new(300000 + 8);
    r->in = malloc(1 << 20);
    ASSERT(r->in != NULL);
}

static void msg_reader_free(msg_reader *r)
{
    free(r->pattern);
    free(r->in);
}

/* With a loop: ready_read reading every whole message. Messages of 16 KiB and more whose rest
 * is all in the kernel go from there into the caller's buffer, the others are buffered; every
 * one arrives whole and in order, the small and empty ones among them too. */
TEST(messages_read_in_ready_read_go_straight_into_the_buffer_whole_and_in_order)
{
    lsock_loop *loop = loop_new();
    pair p;
    pair_open(&p, loop);
    msg_reader r;
    msg_reader_init(&r);
    lsock_socket_callbacks cb = {.ready_read = msg_ready_read};
    lsock_socket_set_callbacks(p.peer, &cb, &r);
    unsigned long mark = atomic_load(&lsock__test_direct_reads);
    send_stream(loop, &p, &r, 0, 400);
    ASSERT_EQ(r.bad, 0);
    ASSERT(counted_since(&lsock__test_direct_reads, &mark));
    msg_reader_free(&r);
    pair_close(&p);
    lsock_loop_free(loop);
}

/* Without a loop: wait_for_ready_read until a message is whole, then read_message; the same
 * stream, the same guarantees. */
TEST(messages_read_after_a_loopless_wait_go_straight_into_the_buffer_whole_and_in_order)
{
    pair p;
    pair_open(&p, NULL);
    msg_reader r;
    msg_reader_init(&r);
    unsigned long mark = atomic_load(&lsock__test_direct_reads);
    for (int i = 0; i < 200; i++) {
        ASSERT_EQ(lsock_socket_write_message(p.client, r.pattern + i % 7, stream_size(i)),
                  stream_size(i));
        wait_message2(p.peer, p.client);
        read_stream_messages(p.peer, &r);
        ASSERT_EQ(r.next, i + 1);
    }
    ASSERT_EQ(r.next, 200);
    ASSERT_EQ(r.bad, 0);
    ASSERT(counted_since(&lsock__test_direct_reads, &mark));
    msg_reader_free(&r);
    pair_close(&p);
}

/* A ready_read that reads none of the messages it was told of: they are buffered when it
 * returns (ready_read does not fire again for them), and read afterwards they are all there,
 * whole and in order. */
TEST(messages_ready_read_leaves_are_buffered_whole_for_the_next)
{
    lsock_loop *loop = loop_new();
    pair p;
    pair_open(&p, loop);
    msg_reader r;
    msg_reader_init(&r);
    lsock_socket_callbacks cb = {.ready_read = msg_ready_read};
    lsock_socket_set_callbacks(p.peer, &cb, &r);
    send_stream(loop, &p, &r, 0, 8); /* large reads first: the socket announces from now */
    r.calls = 0;
    r.leave_first = 1;
    unsigned long mark = atomic_load(&lsock__test_announced);
    for (int i = 8; i < 16; i++)
        ASSERT_EQ(lsock_socket_write_message(p.client, r.pattern + i % 7, stream_size(i)),
                  stream_size(i));
    RUN_UNTIL(loop, r.calls >= 1, 20000);
    RUN_UNTIL(loop, (read_stream_messages(p.peer, &r), r.next == 16), 20000);
    ASSERT_EQ(r.bad, 0);
    ASSERT(counted_since(&lsock__test_announced, &mark)); /* what it left was announced */
    msg_reader_free(&r);
    pair_close(&p);
    lsock_loop_free(loop);
}

/* After a loop-less wait told of a message whose rest is in the kernel: bytes_available
 * counts it, a byte peek sees its header, and read_message still reads it whole. */
TEST(an_announced_message_is_seen_by_peek_and_bytes_available_and_read_whole)
{
    pair p;
    pair_open(&p, NULL);
    msg_reader r;
    msg_reader_init(&r);
    for (int i = 0; i < 2; i++) { /* a large read first: the socket announces from now */
        ASSERT_EQ(lsock_socket_write_message(p.client, r.pattern + i % 7, 65536), 65536);
        wait_message2(p.peer, p.client);
        ASSERT_EQ(lsock_socket_read_message(p.peer, r.in, 1 << 20), 65536);
    }
    unsigned long mark = atomic_load(&lsock__test_announced);
    ASSERT_EQ(lsock_socket_write_message(p.client, r.pattern, 100000), 100000);
    wait_message2(p.peer, p.client);
    ASSERT(counted_since(&lsock__test_announced, &mark));
    ASSERT_EQ(lsock_socket_bytes_available(p.peer), 4 + 100000);
    ASSERT_EQ(lsock_socket_next_message_size(p.peer), 100000);
    unsigned char head[4];
    ASSERT_EQ(lsock_socket_peek(p.peer, head, 4), 4);
    ASSERT_EQ(head[1], 0x01);
    ASSERT_EQ(head[2], 0x86);
    ASSERT_EQ(head[3], 0xa0);
    ASSERT_EQ(lsock_socket_read_message(p.peer, r.in, 1 << 20), 100000);
    ASSERT(memcmp(r.in, r.pattern, 100000) == 0);
    ASSERT_EQ(lsock_socket_bytes_available(p.peer), 0);
    msg_reader_free(&r);
    pair_close(&p);
}

/* A header beyond the maximum right behind a message read straight from the kernel: the
 * message is read whole, then the connection ends with DATAGRAM_TOO_LARGE, as behind a
 * buffered one. */
TEST(an_oversized_header_behind_a_message_read_from_the_kernel_ends_the_connection)
{
    pair p;
    pair_open(&p, NULL);
    msg_reader r;
    msg_reader_init(&r);
    for (int i = 0; i < 2; i++) { /* a large read first: the socket announces from now */
        ASSERT_EQ(lsock_socket_write_message(p.client, r.pattern, 65536), 65536);
        wait_message2(p.peer, p.client);
        ASSERT_EQ(lsock_socket_read_message(p.peer, r.in, 1 << 20), 65536);
    }
    lsock_socket_set_max_message_size(p.peer, 200000);
    static const unsigned char big[4] = {0x7f, 0xff, 0xff, 0xff};
    unsigned long mark = atomic_load(&lsock__test_direct_reads);
    ASSERT_EQ(lsock_socket_write_message(p.client, r.pattern, 100000), 100000);
    ASSERT_EQ(lsock_socket_write(p.client, big, 4), 4);
    wait_message2(p.peer, p.client);
    ASSERT_EQ(lsock_socket_read_message(p.peer, r.in, 1 << 20), 100000);
    ASSERT(memcmp(r.in, r.pattern, 100000) == 0);
    ASSERT(counted_since(&lsock__test_direct_reads, &mark));
    ASSERT_ERR(lsock_socket_error(p.peer), LSOCK_ERR_DATAGRAM_TOO_LARGE);
    ASSERT_EQ(lsock_socket_state(p.peer), LSOCK_UNCONNECTED);
    msg_reader_free(&r);
    pair_close(&p);
}

TEST_MAIN()
