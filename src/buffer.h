/*
 * Byte queue: a pure module with no sockets in it. A contiguous allocation with a read
 * offset; bytes are appended at the end and consumed from the front. When the queue empties
 * its memory is released, so an idle connection costs nothing; the size it had (up to 4 KiB)
 * is where its next allocation starts, so that a busy queue pays one allocation per batch,
 * not a series of doublings.
 */
#ifndef LSOCK_BUFFER_H
#define LSOCK_BUFFER_H

#include <stddef.h>

typedef struct lsock__buf {
    char *data;
    size_t cap;
    size_t head; /* first unread byte */
    size_t tail; /* one past the last byte */
    size_t hint; /* the capacity when last emptied (at most 4 KiB): where the next one starts */
} lsock__buf;

#define LSOCK__BUF_INIT                                                                            \
    {                                                                                              \
        NULL, 0, 0, 0, 0                                                                           \
    }

static inline size_t lsock__buf_len(const lsock__buf *b)
{
    return b->tail - b->head;
}
static inline const char *lsock__buf_begin(const lsock__buf *b)
{
    return b->data + b->head;
}

/* Room for at least n more bytes at the end; returns the write position or NULL on no
 * memory (the queue is unchanged). Commit what was written with lsock__buf_commit. */
char *lsock__buf_reserve(lsock__buf *b, size_t n);
/* The contiguous free space at the end now (may be 0). */
size_t lsock__buf_space(const lsock__buf *b);
void lsock__buf_commit(lsock__buf *b, size_t n);
/* Appends n bytes. 0, or -1 on no memory (nothing appended). */
int lsock__buf_append(lsock__buf *b, const void *src, size_t n);
/* Copies up to n bytes from the front without consuming. Returns the count. */
size_t lsock__buf_peek(const lsock__buf *b, void *dst, size_t n);
/* Drops up to n bytes from the front. Returns the count. */
size_t lsock__buf_consume(lsock__buf *b, size_t n);
/* Offset of the first byte c at or after from, or (size_t)-1. */
size_t lsock__buf_find(const lsock__buf *b, size_t from, char c);
void lsock__buf_clear(lsock__buf *b);
void lsock__buf_free(lsock__buf *b);

#endif
