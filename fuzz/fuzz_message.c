/*
 * libFuzzer harness for the message decoder (src/socket_message.c): arbitrary bytes from a
 * peer, cut into arbitrary pieces, arrive at a loop-less lsock_socket adopted from a
 * socketpair, with an arbitrary maximum message size and read buffer limit. After each piece
 * the socket reads what it can and takes every whole message; a flat reference decoder says
 * what must come out: the same messages in order, can_read_message() exactly when one is
 * whole, and the connection aborted with DATAGRAM_TOO_LARGE exactly when the next header
 * announces more than the maximum.
 *
 *   make fuzz        (clang -fsanitize=fuzzer,address,undefined; FUZZ_SECONDS per harness)
 */
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

enum { MAX_INPUT = 1 << 16 };

/* The reference: every byte sent, and how far the messages taken so far reach. */
static uint8_t sent[MAX_INPUT];
static size_t nsent, taken;

/* The next message as the reference decodes it: 1 whole (*at, *size), 0 not yet, -1 too long. */
static int model_next(int64_t max, size_t *at, size_t *size)
{
    if (nsent - taken < 4) return 0;
    const uint8_t *h = sent + taken;
    uint32_t len = (uint32_t)h[0] << 24 | (uint32_t)h[1] << 16 | (uint32_t)h[2] << 8 | h[3];
    if (len != 0xFFFFFFFFu && (int64_t)len > max) return -1;
    size_t n = len == 0xFFFFFFFFu ? 0 : len;
    if (nsent - taken - 4 < n) return 0;
    *at = taken + 4;
    *size = n;
    return 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2 || size > MAX_INPUT) return 0;
    int64_t max = (int64_t)data[0] * 41;                      /* 0 to 10455 */
    int64_t limit = data[1] < 64 ? 0 : (int64_t)data[1] * 16; /* none, or 1024 to 4080 */
    data += 2;
    size -= 2;
    int sv[2];
    CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0);
    CHECK(fcntl(sv[1], F_SETFL, O_NONBLOCK) == 0);
    lsock_socket *s = lsock_socket_new(NULL);
    CHECK(lsock_socket_set_descriptor(s, sv[0], LSOCK_CONNECTED, LSOCK_READ_WRITE));
    lsock_socket_set_max_message_size(s, max);
    if (limit) CHECK(lsock_socket_set_read_buffer_size(s, limit));
    nsent = taken = 0;
    static uint8_t buf[20000];
    int aborted = 0;
    while (size > 0 && !aborted) {
        size_t piece = 1 + data[0] % 64;
        data++;
        size--;
        if (piece > size) piece = size;
        if (piece > 0) CHECK(write(sv[1], data, piece) == (ssize_t)piece);
        memcpy(sent + nsent, data, piece);
        nsent += piece;
        data += piece;
        size -= piece;
        /* Take every whole message, and pull in what arrived (a wait of 0 reads what is
         * there), until neither makes progress. */
        for (int round = 0; round < 1000; round++) {
            int progress = 0;
            while (lsock_socket_can_read_message(s)) {
                size_t at, n;
                CHECK(model_next(max, &at, &n) == 1);
                CHECK(lsock_socket_next_message_size(s) == (int64_t)n);
                CHECK(lsock_socket_read_message(s, buf, sizeof buf) == (int64_t)n);
                CHECK(memcmp(buf, sent + at, n) == 0);
                taken = at + n;
                progress = 1;
            }
            if (lsock_socket_state(s) != LSOCK_CONNECTED) break;
            if (lsock_socket_wait_for_ready_read(s, 0)) progress = 1;
            if (!progress) break;
        }
        size_t at, n;
        int next = model_next(max, &at, &n);
        if (next < 0) {
            /* The header is in: the connection ended with DATAGRAM_TOO_LARGE. */
            CHECK(lsock_socket_state(s) == LSOCK_UNCONNECTED);
            CHECK(lsock_socket_error(s) == LSOCK_ERR_DATAGRAM_TOO_LARGE);
            CHECK(!lsock_socket_can_read_message(s));
            aborted = 1;
        } else {
            CHECK(lsock_socket_state(s) == LSOCK_CONNECTED);
            CHECK(next == 0); /* every whole message was taken */
            CHECK(!lsock_socket_can_read_message(s));
        }
    }
    lsock_socket_free(s);
    close(sv[1]);
    return 0;
}
