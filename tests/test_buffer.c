/* The byte queue on its own, no sockets: against a simple model, byte by byte and in odd
 * chunks, with line search, peek, consume and memory release. */
#include "test.h"
#include "buffer.h"

#include <stdlib.h>

TEST(buffer_starts_empty)
{
    lsock__buf b = LSOCK__BUF_INIT;
    ASSERT_EQ(lsock__buf_len(&b), 0);
    char c;
    ASSERT_EQ(lsock__buf_peek(&b, &c, 1), 0);
    ASSERT_EQ(lsock__buf_consume(&b, 5), 0);
    ASSERT_EQ(lsock__buf_find(&b, 0, '\n'), (long long)(size_t)-1);
    lsock__buf_free(&b);
}

TEST(buffer_append_peek_consume_roundtrip)
{
    lsock__buf b = LSOCK__BUF_INIT;
    ASSERT_EQ(lsock__buf_append(&b, "hello world", 11), 0);
    char out[16] = {0};
    ASSERT_EQ(lsock__buf_peek(&b, out, 5), 5);
    ASSERT(memcmp(out, "hello", 5) == 0);
    ASSERT_EQ(lsock__buf_len(&b), 11);
    ASSERT_EQ(lsock__buf_consume(&b, 6), 6);
    ASSERT_EQ(lsock__buf_peek(&b, out, sizeof out), 5);
    ASSERT(memcmp(out, "world", 5) == 0);
    ASSERT_EQ(lsock__buf_consume(&b, 100), 5);
    ASSERT_EQ(lsock__buf_len(&b), 0);
    lsock__buf_free(&b);
}

TEST(buffer_find_newline_from_offset)
{
    lsock__buf b = LSOCK__BUF_INIT;
    ASSERT_EQ(lsock__buf_append(&b, "ab\ncd\n", 6), 0);
    ASSERT_EQ(lsock__buf_find(&b, 0, '\n'), 2);
    ASSERT_EQ(lsock__buf_find(&b, 3, '\n'), 5);
    ASSERT_EQ(lsock__buf_find(&b, 6, '\n'), (long long)(size_t)-1);
    lsock__buf_consume(&b, 3);
    ASSERT_EQ(lsock__buf_find(&b, 0, '\n'), 2);
    lsock__buf_free(&b);
}

/* Random operations against a flat model array. */
static void model_run(unsigned seed, size_t max_chunk)
{
    srand(seed);
    lsock__buf b = LSOCK__BUF_INIT;
    size_t cap = 1 << 20, mlen = 0;
    char *model = malloc(cap);
    char *tmp = malloc(cap);
    ASSERT(model && tmp);
    unsigned char next = 0;
    for (int op = 0; op < 20000; op++) {
        int kind = rand() % 4;
        size_t n = (size_t)rand() % (max_chunk + 1);
        if (kind <= 1) {
            if (mlen + n > cap) continue;
            for (size_t i = 0; i < n; i++)
                tmp[i] = (char)next++;
            if (kind == 0) {
                ASSERT_EQ(lsock__buf_append(&b, tmp, n), 0);
            } else {
                char *p = lsock__buf_reserve(&b, n);
                ASSERT(p || n == 0);
                if (n) memcpy(p, tmp, n);
                lsock__buf_commit(&b, n);
            }
            memcpy(model + mlen, tmp, n);
            mlen += n;
        } else if (kind == 2) {
            size_t got = lsock__buf_peek(&b, tmp, n);
            ASSERT_EQ(got, n < mlen ? n : mlen);
            ASSERT(got == 0 || memcmp(tmp, model, got) == 0);
        } else {
            size_t got = lsock__buf_consume(&b, n);
            ASSERT_EQ(got, n < mlen ? n : mlen);
            memmove(model, model + got, mlen - got);
            mlen -= got;
        }
        ASSERT_EQ(lsock__buf_len(&b), mlen);
        if (mlen) ASSERT(memcmp(lsock__buf_begin(&b), model, mlen) == 0);
    }
    lsock__buf_free(&b);
    free(model);
    free(tmp);
}

TEST(buffer_matches_model_byte_by_byte)
{
    model_run(1, 1);
}

TEST(buffer_matches_model_odd_chunks)
{
    model_run(2, 37);
    model_run(3, 4099);
}

TEST(buffer_releases_memory_when_drained)
{
    lsock__buf b = LSOCK__BUF_INIT;
    char big[100000];
    memset(big, 'x', sizeof big);
    ASSERT_EQ(lsock__buf_append(&b, big, sizeof big), 0);
    ASSERT(b.cap >= sizeof big);
    lsock__buf_consume(&b, sizeof big);
    ASSERT_EQ(b.cap, 0);
    ASSERT(b.data == NULL);
    lsock__buf_free(&b);
}

TEST(buffer_releases_small_allocation_when_drained)
{
    lsock__buf b = LSOCK__BUF_INIT;
    ASSERT_EQ(lsock__buf_append(&b, "x", 1), 0);
    ASSERT(b.cap > 0);
    lsock__buf_consume(&b, 1);
    ASSERT_EQ(b.cap, 0);
    ASSERT(b.data == NULL);
    ASSERT_EQ(lsock__buf_len(&b), 0);
    ASSERT_EQ(lsock__buf_append(&b, "yz", 2), 0); /* and takes memory again when written */
    char out[2];
    ASSERT_EQ(lsock__buf_peek(&b, out, 2), 2);
    ASSERT(memcmp(out, "yz", 2) == 0);
    lsock__buf_free(&b);
}

TEST(buffer_drained_starts_again_at_the_size_it_had)
{
    lsock__buf b = LSOCK__BUF_INIT;
    char chunk[100];
    memset(chunk, 'g', sizeof chunk);
    for (int i = 0; i < 30; i++) /* 3,000 bytes appended in small pieces: grown to 4 KiB */
        ASSERT_EQ(lsock__buf_append(&b, chunk, sizeof chunk), 0);
    size_t grown = b.cap;
    ASSERT(grown >= 3000 && grown <= 4096);
    lsock__buf_consume(&b, 3000);
    ASSERT(b.data == NULL);
    ASSERT_EQ(lsock__buf_append(&b, "x", 1), 0); /* one allocation of the old size, at once */
    ASSERT_EQ(b.cap, grown);
    lsock__buf_clear(&b);

    char big[100000]; /* a big queue's next start is capped at 4 KiB */
    memset(big, 'x', sizeof big);
    ASSERT_EQ(lsock__buf_append(&b, big, sizeof big), 0);
    lsock__buf_consume(&b, sizeof big);
    ASSERT_EQ(lsock__buf_append(&b, "x", 1), 0);
    ASSERT_EQ(b.cap, 4096);
    lsock__buf_free(&b);
    ASSERT_EQ(lsock__buf_append(&b, "x", 1), 0); /* freed: back to the smallest start */
    ASSERT(b.cap < 4096);
    lsock__buf_free(&b);
}

TEST(buffer_reserve_refuses_impossible_size)
{
    lsock__buf b = LSOCK__BUF_INIT;
    ASSERT_EQ(lsock__buf_append(&b, "abc", 3), 0);
    ASSERT(lsock__buf_reserve(&b, SIZE_MAX - 1) == NULL);
    ASSERT_EQ(lsock__buf_len(&b), 3); /* nothing lost */
    char out[3];
    lsock__buf_peek(&b, out, 3);
    ASSERT(memcmp(out, "abc", 3) == 0);
    lsock__buf_free(&b);
}

TEST(buffer_compacts_instead_of_growing)
{
    lsock__buf b = LSOCK__BUF_INIT;
    char chunk[200];
    memset(chunk, 'a', sizeof chunk);
    ASSERT_EQ(lsock__buf_append(&b, chunk, sizeof chunk), 0);
    size_t cap = b.cap;
    for (int i = 0; i < 1000; i++) {
        lsock__buf_consume(&b, 150);
        ASSERT_EQ(lsock__buf_append(&b, chunk, 150), 0);
    }
    ASSERT_EQ(b.cap, cap);
    ASSERT_EQ(lsock__buf_len(&b), 200);
    lsock__buf_free(&b);
}

TEST_MAIN()
