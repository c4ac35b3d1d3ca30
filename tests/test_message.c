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

TEST_MAIN()
