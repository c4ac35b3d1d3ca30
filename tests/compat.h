/*
 * Helpers shared by the Qt conformance and interop suites (test_conformance.c,
 * test_interop.c): a callback recorder whose log uses the same tokens as tests/qt/qt_peer.cpp,
 * the test pattern and its FNV-1a checksum. The loop helpers are in loop_util.h.
 */
#ifndef LSOCK_TEST_COMPAT_H
#define LSOCK_TEST_COMPAT_H

#include "test.h"
#include "lsock.h"

#include <stdbool.h>

#include "loop_util.h"

/* Records a socket's callbacks. The log leaves out ready_read, bytes_written and connected
 * (their number depends on timing) and names the rest as qt_peer does. */
typedef struct rec {
    char log[2048];
    int connected, disconnected, errors, ready_read, about_to_close, rcf, state_changes;
    int bytes_written_calls;
    int64_t written;
    lsock_error last_error;
    lsock_state state_in_rcf, state_in_disconnected;
    int64_t avail_in_about_to_close, avail_in_rcf;
    bool open_in_about_to_close;
    void (*on_ready_read)(lsock_socket *s, struct rec *r);
    void *user;
} rec;

static UNUSED void rec_init(rec *r)
{
    memset(r, 0, sizeof *r);
    r->state_in_rcf = r->state_in_disconnected = (lsock_state)-1;
    r->avail_in_about_to_close = r->avail_in_rcf = -1;
}

static UNUSED void rec_add(rec *r, const char *ev)
{
    size_t n = strlen(r->log);
    snprintf(r->log + n, sizeof r->log - n, "%s%s", n ? " " : "", ev);
}

static UNUSED void rec_on_connected(lsock_socket *s, void *u)
{
    ((rec *)u)->connected++;
}

static UNUSED void rec_on_disconnected(lsock_socket *s, void *u)
{
    rec *r = u;
    char buf[64];
    r->disconnected++;
    r->state_in_disconnected = lsock_socket_state(s);
    snprintf(buf, sizeof buf, "disconnected(%s)", state_name(lsock_socket_state(s)));
    rec_add(r, buf);
}

static UNUSED void rec_on_error(lsock_socket *s, lsock_error err, void *u)
{
    rec *r = u;
    char buf[64];
    r->errors++;
    r->last_error = err;
    snprintf(buf, sizeof buf, "error:%s", lsock_error_name(err));
    rec_add(r, buf);
}

static UNUSED void rec_on_state(lsock_socket *s, lsock_state st, void *u)
{
    rec *r = u;
    char buf[64];
    r->state_changes++;
    snprintf(buf, sizeof buf, "state:%s", state_name(st));
    rec_add(r, buf);
}

static UNUSED void rec_on_ready_read(lsock_socket *s, void *u)
{
    rec *r = u;
    r->ready_read++;
    if (r->on_ready_read) r->on_ready_read(s, r);
}

static UNUSED void rec_on_bytes_written(lsock_socket *s, int64_t n, void *u)
{
    rec *r = u;
    r->bytes_written_calls++;
    r->written += n;
}

static UNUSED void rec_on_about_to_close(lsock_socket *s, void *u)
{
    rec *r = u;
    r->about_to_close++;
    r->avail_in_about_to_close = lsock_socket_bytes_available(s);
    r->open_in_about_to_close = lsock_socket_open_mode(s) != 0;
    rec_add(r, "about_to_close");
}

static UNUSED void rec_on_rcf(lsock_socket *s, void *u)
{
    rec *r = u;
    char buf[64];
    r->rcf++;
    r->state_in_rcf = lsock_socket_state(s);
    r->avail_in_rcf = lsock_socket_bytes_available(s);
    snprintf(buf, sizeof buf, "read_channel_finished(%s)", state_name(lsock_socket_state(s)));
    rec_add(r, buf);
}

static UNUSED const lsock_socket_callbacks rec_cbs = {
    rec_on_connected,  rec_on_disconnected,  rec_on_error,          rec_on_state,
    rec_on_ready_read, rec_on_bytes_written, rec_on_about_to_close, rec_on_rcf,
};

/* The test pattern (as qt_peer's) and FNV-1a 64. */
static UNUSED unsigned char pattern_byte(uint64_t i)
{
    return (unsigned char)(((uint32_t)i * 2654435761u) >> 24);
}

static UNUSED unsigned char *pattern_new(size_t n)
{
    unsigned char *b = malloc(n ? n : 1);
    ASSERT(b != NULL);
    for (size_t i = 0; i < n; i++)
        b[i] = pattern_byte(i);
    return b;
}

#define FNV_INIT 14695981039346656037ull

static UNUSED uint64_t fnv_add(uint64_t h, const void *data, size_t n)
{
    const unsigned char *p = data;
    for (size_t i = 0; i < n; i++) {
        h ^= p[i];
        h *= 1099511628211ull;
    }
    return h;
}

static UNUSED uint64_t pattern_fnv(size_t n)
{
    uint64_t h = FNV_INIT;
    for (size_t i = 0; i < n; i++) {
        unsigned char b = pattern_byte(i);
        h = fnv_add(h, &b, 1);
    }
    return h;
}

/* The path the library resolves a name to ($TMPDIR or /tmp). */
static UNUSED const char *path_of(const char *name)
{
    static char bufs[8][512];
    static unsigned slot;
    char *out = bufs[slot++ % 8];
    if (name[0] == '/') {
        snprintf(out, 512, "%s", name);
        return out;
    }
    const char *dir = getenv("TMPDIR");
    if (!dir || !*dir) dir = "/tmp";
    size_t n = strlen(dir);
    snprintf(out, 512, "%s%s%s", dir, dir[n - 1] == '/' ? "" : "/", name);
    return out;
}

#endif
