/*
 * Byte queue (see buffer.h). Growth doubles the capacity; space at the front freed by
 * consumed bytes is reclaimed by moving the live bytes down when that is cheaper than
 * growing. An empty queue gives its memory back: an idle connection holds no buffer (a
 * 256-byte one kept per connection was a quarter of an idle connection's memory). It keeps
 * the size it had, up to LSOCK__BUF_HINT_MAX, and its next allocation starts there: a busy
 * queue pays one malloc() and one free() per batch (from the allocator's free lists), not a
 * series of reallocations growing from LSOCK__BUF_MIN again.
 */
#include "buffer.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define LSOCK__BUF_MIN      256
#define LSOCK__BUF_HINT_MAX 4096

size_t lsock__buf_space(const lsock__buf *b)
{
    return b->cap - b->tail;
}

/* Empties the queue and gives its memory back, so that idle connections stay small. */
static void reset(lsock__buf *b)
{
    b->head = b->tail = 0;
    if (b->cap) b->hint = b->cap < LSOCK__BUF_HINT_MAX ? b->cap : LSOCK__BUF_HINT_MAX;
    free(b->data);
    b->data = NULL;
    b->cap = 0;
}

char *lsock__buf_reserve(lsock__buf *b, size_t n)
{
    if (b->data && b->cap - b->tail >= n) return b->data + b->tail;
    size_t len = b->tail - b->head;
    if (n > SIZE_MAX / 2 - len) return NULL;
    /* Moving the live bytes down is enough when at least half the buffer would be free. */
    if (b->head > 0 && b->cap - len >= n && len <= b->cap / 2) {
        memmove(b->data, b->data + b->head, len);
        b->head = 0;
        b->tail = len;
        return b->data + b->tail;
    }
    size_t cap = b->cap ? b->cap : b->hint > LSOCK__BUF_MIN ? b->hint : LSOCK__BUF_MIN;
    while (cap - len < n)
        cap *= 2;
    char *p;
    if (b->head == 0) {
        p = realloc(b->data, cap);
        if (!p) return NULL;
    } else {
        p = malloc(cap);
        if (!p) return NULL;
        memcpy(p, b->data + b->head, len);
        free(b->data);
    }
    b->data = p;
    b->cap = cap;
    b->head = 0;
    b->tail = len;
    return b->data + b->tail;
}

void lsock__buf_commit(lsock__buf *b, size_t n)
{
    b->tail += n;
}

int lsock__buf_append(lsock__buf *b, const void *src, size_t n)
{
    if (n == 0) return 0;
    char *p = lsock__buf_reserve(b, n);
    if (!p) return -1;
    memcpy(p, src, n);
    b->tail += n;
    return 0;
}

size_t lsock__buf_peek(const lsock__buf *b, void *dst, size_t n)
{
    size_t len = b->tail - b->head;
    if (n > len) n = len;
    if (n) memcpy(dst, b->data + b->head, n);
    return n;
}

size_t lsock__buf_consume(lsock__buf *b, size_t n)
{
    size_t len = b->tail - b->head;
    if (n >= len) {
        reset(b);
        return len;
    }
    b->head += n;
    return n;
}

size_t lsock__buf_find(const lsock__buf *b, size_t from, char c)
{
    size_t len = b->tail - b->head;
    if (from >= len) return (size_t)-1;
    const char *p = memchr(b->data + b->head + from, c, len - from);
    return p ? (size_t)(p - (b->data + b->head)) : (size_t)-1;
}

void lsock__buf_clear(lsock__buf *b)
{
    reset(b);
}

void lsock__buf_free(lsock__buf *b)
{
    free(b->data);
    b->data = NULL;
    b->cap = b->head = b->tail = b->hint = 0;
}
