/*
 * Blocking use (QLocalSocket::waitFor*, QLocalServer::waitForNewConnection): sockets and
 * servers without a loop, and the wait calls on objects that have one without running it.
 */
#include "test.h"
#include "lsock.h"

#include <fcntl.h>
#ifndef _WIN32
#include <poll.h>
#endif
#include <pthread.h>
#include <signal.h>
#ifdef _WIN32
#include "win_posix.h" /* the Unix-only calls: a test that reaches one skips */
#else
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#endif
#include <unistd.h>

#include "support.h"
#include "internal.h" /* lsock__test_announced, lsock__test_direct_reads */

/* ---- blocking helpers ------------------------------------------------------------------ */

static int g_new_connections;
static void count_new_connection(lsock_server *srv, void *u)
{
    (void)srv;
    (void)u;
    g_new_connections++;
}

/* A peer thread: reads everything from a raw end until EOF, counting and checking bytes. */
typedef struct reader {
    raw_fd fd;
    size_t total;
    bool eof;
    pthread_t th;
} reader;

static void *reader_main(void *arg)
{
    reader *rd = arg;
    unsigned char buf[65536];
    for (;;) {
        if (!raw_wait_readable(rd->fd, 10000)) break;
        int64_t n = raw_read(rd->fd, buf, sizeof buf);
        if (n < 0) continue;
        if (n == 0) {
            rd->eof = true;
            break;
        }
        for (int64_t i = 0; i < n; i++)
            if (buf[i] != pattern_byte(rd->total + (size_t)i)) return NULL;
        rd->total += (size_t)n;
    }
    return NULL;
}

/* ---- server without a loop ------------------------------------------------------------- */

TEST(wait_for_new_connection_fires_callback_and_returns_true)
{
    const char *name = test_name("bsrv");
    lsock_server *srv = lsock_server_new(NULL);
    lsock_server_set_new_connection_callback(srv, count_new_connection, NULL);
    ASSERT(lsock_server_listen(srv, name));
    lsock_socket *c = lsock_socket_new(NULL);
    ASSERT(lsock_socket_connect(c, name, LSOCK_READ_WRITE));
    ASSERT_EQ(lsock_socket_state(c), LSOCK_CONNECTED);
    bool timed_out = true;
    ASSERT(lsock_server_wait_for_new_connection(srv, 5000, &timed_out));
    ASSERT(!timed_out);
    ASSERT_EQ(g_new_connections, 1);
    ASSERT(lsock_server_has_pending_connections(srv));
    lsock_socket *s = lsock_server_next_pending_connection(srv);
    ASSERT(s != NULL);
    ASSERT(lsock_socket_loop(s) == NULL);
    ASSERT_EQ(lsock_socket_state(s), LSOCK_CONNECTED);
    lsock_socket_free(s);
    lsock_socket_free(c);
    lsock_server_free(srv);
}

TEST(wait_for_new_connection_times_out)
{
    lsock_server *srv = lsock_server_new(NULL);
    lsock_server_set_new_connection_callback(srv, count_new_connection, NULL);
    ASSERT(lsock_server_listen(srv, test_name("bto")));
    bool timed_out = false;
    uint64_t t0 = test_now_ms();
    ASSERT(!lsock_server_wait_for_new_connection(srv, 100, &timed_out));
    uint64_t took = test_now_ms() - t0;
    ASSERT(timed_out);
    ASSERT_ERR(lsock_server_error(srv), LSOCK_ERR_SOCKET_TIMEOUT);
    ASSERT(starts_with(lsock_server_error_string(srv), "lsock_server_wait_for_new_connection: "));
    ASSERT(lsock_server_is_listening(srv));
    ASSERT(took >= 90);
    ASSERT(took < 3000);
    ASSERT_EQ(g_new_connections, 0);
    ASSERT(lsock_server_wait_for_new_connection(srv, 0, NULL) == false);
    lsock_server_free(srv);
}

TEST(wait_for_new_connection_accepts_null_timed_out)
{
    const char *name = test_name("bnull");
    lsock_server *srv = lsock_server_new(NULL);
    ASSERT(lsock_server_listen(srv, name));
    lsock_socket *c = lsock_socket_new(NULL);
    ASSERT(lsock_socket_connect(c, name, LSOCK_READ_WRITE));
    ASSERT(lsock_server_wait_for_new_connection(srv, -1, NULL));
    lsock_socket *s = lsock_server_next_pending_connection(srv);
    ASSERT(s != NULL);
    lsock_socket_free(s);
    lsock_socket_free(c);
    lsock_server_free(srv);
}

TEST(wait_for_new_connection_when_not_listening_fails_at_once)
{
    lsock_server *srv = lsock_server_new(NULL);
    bool timed_out = true;
    uint64_t t0 = test_now_ms();
    ASSERT(!lsock_server_wait_for_new_connection(srv, 3000, &timed_out));
    ASSERT(test_now_ms() - t0 < 1000);
    ASSERT(!timed_out);
    ASSERT_ERR(lsock_server_error(srv), LSOCK_ERR_OPERATION);
    ASSERT(starts_with(lsock_server_error_string(srv), "lsock_server_wait_for_new_connection: "));
    lsock_server_free(srv);
}

TEST(wait_for_new_connection_returns_true_when_one_is_already_pending)
{
    const char *name = test_name("bpend");
    lsock_server *srv = lsock_server_new(NULL);
    ASSERT(lsock_server_listen(srv, name));
    lsock_socket *c1 = lsock_socket_new(NULL);
    ASSERT(lsock_socket_connect(c1, name, LSOCK_READ_WRITE));
    ASSERT(lsock_server_wait_for_new_connection(srv, 5000, NULL));
    bool timed_out = true;
    ASSERT(lsock_server_wait_for_new_connection(srv, 100, &timed_out));
    ASSERT(!timed_out);
    lsock_socket_free(lsock_server_next_pending_connection(srv));
    lsock_socket_free(c1);
    lsock_server_free(srv);
}

TEST(wait_for_new_connection_works_on_a_loop_server_without_running_the_loop)
{
    lsock_loop *loop = loop_new();
    const char *name = test_name("bloop");
    lsock_server *srv = lsock_server_new(loop);
    lsock_server_set_new_connection_callback(srv, count_new_connection, NULL);
    ASSERT(lsock_server_listen(srv, name));
    lsock_socket *c = lsock_socket_new(loop);
    ASSERT(lsock_socket_connect(c, name, LSOCK_READ_WRITE));
    ASSERT(lsock_server_wait_for_new_connection(srv, 5000, NULL));
    ASSERT_EQ(g_new_connections, 1);
    lsock_socket *s = lsock_server_next_pending_connection(srv);
    ASSERT(s != NULL);
    ASSERT(lsock_socket_loop(s) == loop);
    /* Waits on the loop sockets too, without running the loop. */
    ASSERT_EQ(lsock_socket_write(c, "abc", 3), 3);
    ASSERT(lsock_socket_wait_for_bytes_written(c, 5000));
    ASSERT(lsock_socket_wait_for_ready_read(s, 5000));
    ASSERT_EQ(lsock_socket_bytes_available(s), 3);
    lsock_socket_free(c);
    ASSERT(lsock_socket_wait_for_disconnected(s, 5000));
    ASSERT_EQ(lsock_socket_state(s), LSOCK_UNCONNECTED);
    lsock_socket_free(s);
    lsock_server_free(srv);
    loop_free(loop);
}

/* ---- sockets without a loop ------------------------------------------------------------ */

TEST(wait_for_ready_read_fires_ready_read_inside_the_wait)
{
    pair p;
    pair_open(&p, NULL);
    rec r;
    rec_init(&r);
    lsock_socket_set_callbacks(p.peer, &rec_cbs, &r);
    ASSERT_EQ(lsock_socket_write(p.client, "hello\n", 6), 6);
    ASSERT_EQ(r.ready_read, 0);
    ASSERT(lsock_socket_wait_for_ready_read(p.peer, 5000));
    ASSERT_EQ(r.ready_read, 1);
    char line[16];
    ASSERT(lsock_socket_can_read_line(p.peer));
    ASSERT_EQ(lsock_socket_read_line(p.peer, line, sizeof line), 6);
    ASSERT_STR_EQ(line, "hello\n");
    pair_close(&p);
}

TEST(wait_for_ready_read_times_out_with_socket_timeout)
{
    pair p;
    pair_open(&p, NULL);
    uint64_t t0 = test_now_ms();
    ASSERT(!lsock_socket_wait_for_ready_read(p.client, 100));
    uint64_t took = test_now_ms() - t0;
    ASSERT(took >= 90);
    ASSERT(took < 3000);
    ASSERT_ERR(lsock_socket_error(p.client), LSOCK_ERR_SOCKET_TIMEOUT);
    ASSERT(starts_with(lsock_socket_error_string(p.client), "lsock_socket_wait_for_ready_read: "));
    ASSERT_EQ(lsock_socket_state(p.client), LSOCK_CONNECTED);
    /* still usable */
    ASSERT_EQ(lsock_socket_write(p.peer, "x", 1), 1);
    ASSERT(lsock_socket_wait_for_ready_read(p.client, 5000));
    pair_close(&p);
}

TEST(wait_for_ready_read_on_unconnected_socket_fails_at_once_setting_no_error)
{
    lsock_socket *s = lsock_socket_new(NULL);
    uint64_t t0 = test_now_ms();
    ASSERT(!lsock_socket_wait_for_ready_read(s, 3000));
    ASSERT(test_now_ms() - t0 < 1000);
    /* As Qt: a wait on an unconnected socket sets no error. */
    ASSERT_ERR(lsock_socket_error(s), LSOCK_ERR_NONE);
    ASSERT_STR_EQ(lsock_socket_error_string(s), "");
    lsock_socket_free(s);
}

TEST(wait_for_ready_read_returns_false_when_the_peer_closes)
{
    pair p;
    pair_open(&p, NULL);
    rec r;
    rec_init(&r);
    lsock_socket_set_callbacks(p.client, &rec_cbs, &r);
    lsock_socket_free(p.peer);
    p.peer = NULL;
    ASSERT(!lsock_socket_wait_for_ready_read(p.client, 5000));
    ASSERT_ERR(lsock_socket_error(p.client), LSOCK_ERR_PEER_CLOSED);
    ASSERT_EQ(lsock_socket_state(p.client), LSOCK_UNCONNECTED);
    ASSERT_STR_EQ(
        r.log,
        "error:PEER_CLOSED state:CLOSING state:UNCONNECTED read_channel_finished disconnected");
    pair_close(&p);
}

TEST(wait_for_disconnected_returns_true_when_peer_closes)
{
    pair p;
    pair_open(&p, NULL);
    rec r;
    rec_init(&r);
    lsock_socket_set_callbacks(p.client, &rec_cbs, &r);
    ASSERT_EQ(lsock_socket_write(p.peer, "bye", 3), 3);
    lsock_socket_free(p.peer);
    p.peer = NULL;
    ASSERT(lsock_socket_wait_for_disconnected(p.client, 5000));
    ASSERT_EQ(lsock_socket_state(p.client), LSOCK_UNCONNECTED);
    ASSERT_EQ(r.disconnected, 1);
    ASSERT_EQ(r.state_in_disconnected, LSOCK_UNCONNECTED);
    ASSERT_EQ(lsock_socket_bytes_available(p.client), 3);
    pair_close(&p);
}

/* A peer thread that waits for a line, then closes its socket. */
static void *close_after_line(void *arg)
{
    lsock_socket *s = arg;
    uint64_t dl = test_now_ms() + 5000;
    while (!lsock_socket_can_read_line(s) && test_now_ms() < dl)
        lsock_socket_wait_for_ready_read(s, 1000);
    lsock_socket_free(s);
    return NULL;
}

TEST(wait_for_disconnected_blocks_until_a_peer_thread_closes)
{
    pair p;
    pair_open(&p, NULL);
    pthread_t th;
    ASSERT_EQ(pthread_create(&th, NULL, close_after_line, p.peer), 0);
    p.peer = NULL;
    ASSERT_EQ(lsock_socket_write(p.client, "done\n", 5), 5);
    ASSERT(lsock_socket_wait_for_disconnected(p.client, 5000));
    ASSERT_EQ(lsock_socket_state(p.client), LSOCK_UNCONNECTED);
    ASSERT_EQ(pthread_join(th, NULL), 0);
    pair_close(&p);
}

TEST(wait_for_disconnected_on_unconnected_socket_fails_at_once_setting_no_error)
{
    lsock_socket *s = lsock_socket_new(NULL);
    uint64_t t0 = test_now_ms();
    ASSERT(!lsock_socket_wait_for_disconnected(s, 3000));
    ASSERT(test_now_ms() - t0 < 1000);
    /* As Qt: a wait on an unconnected socket sets no error. */
    ASSERT_ERR(lsock_socket_error(s), LSOCK_ERR_NONE);
    ASSERT_STR_EQ(lsock_socket_error_string(s), "");
    lsock_socket_free(s);
}

TEST(wait_for_disconnected_times_out_while_peer_stays)
{
    pair p;
    pair_open(&p, NULL);
    ASSERT(!lsock_socket_wait_for_disconnected(p.client, 100));
    ASSERT_ERR(lsock_socket_error(p.client), LSOCK_ERR_SOCKET_TIMEOUT);
    ASSERT(
        starts_with(lsock_socket_error_string(p.client), "lsock_socket_wait_for_disconnected: "));
    ASSERT_EQ(lsock_socket_state(p.client), LSOCK_CONNECTED);
    pair_close(&p);
}

TEST(wait_for_disconnected_after_disconnect_delivers_queued_data)
{
    const char *name = test_name("bclosing");
    raw_server *l = raw_listen(name, 4);
    rec r;
    rec_init(&r);
    lsock_socket *s = lsock_socket_new(NULL);
    lsock_socket_set_callbacks(s, &rec_cbs, &r);
    ASSERT(lsock_socket_connect(s, name, LSOCK_READ_WRITE));
    reader rd;
    memset(&rd, 0, sizeof rd);
    rd.fd = raw_accept(l);
    size_t n = 8u << 20;
    unsigned char *data = pattern_new(n);
    uint64_t t0 = test_now_ms();
    ASSERT_EQ(lsock_socket_write(s, data, (int64_t)n), (int64_t)n);
    ASSERT(test_now_ms() - t0 < 2000); /* never blocks, even without a loop */
    ASSERT(lsock_socket_bytes_to_write(s) > 0);
    lsock_socket_disconnect(s);
    ASSERT_EQ(lsock_socket_state(s), LSOCK_CLOSING);
    ASSERT_EQ(pthread_create(&rd.th, NULL, reader_main, &rd), 0);
    ASSERT(lsock_socket_wait_for_disconnected(s, 10000));
    ASSERT_EQ(lsock_socket_state(s), LSOCK_UNCONNECTED);
    ASSERT_EQ(pthread_join(rd.th, NULL), 0);
    ASSERT(rd.eof);
    ASSERT_EQ(rd.total, n);
    ASSERT_EQ(r.written, (int64_t)n);
    ASSERT_STR_EQ(r.log, "state:CONNECTING state:CONNECTED connected state:CLOSING "
                         "state:UNCONNECTED read_channel_finished disconnected");
    free(data);
    lsock_socket_free(s);
    raw_close(rd.fd);
    raw_server_close(l);
}

TEST(wait_for_bytes_written_returns_true_after_a_write)
{
    pair p;
    pair_open(&p, NULL);
    rec r;
    rec_init(&r);
    lsock_socket_set_callbacks(p.client, &rec_cbs, &r);
    ASSERT_EQ(lsock_socket_write(p.client, "12345", 5), 5);
    ASSERT_EQ(r.bytes_written_calls, 0);
    ASSERT(lsock_socket_wait_for_bytes_written(p.client, 5000));
    ASSERT_EQ(r.written, 5);
    ASSERT(r.bytes_written_calls >= 1);
    /* nothing written since */
    uint64_t t0 = test_now_ms();
    ASSERT(!lsock_socket_wait_for_bytes_written(p.client, 2000));
    ASSERT(test_now_ms() - t0 < 1000);
    ASSERT_EQ(r.written, 5);
    ASSERT_EQ(lsock_socket_state(p.client), LSOCK_CONNECTED);
    pair_close(&p);
}

TEST(wait_for_bytes_written_on_unconnected_socket_fails_setting_no_error)
{
    lsock_socket *s = lsock_socket_new(NULL);
    uint64_t t0 = test_now_ms();
    ASSERT(!lsock_socket_wait_for_bytes_written(s, 3000));
    ASSERT(test_now_ms() - t0 < 1000);
    /* As Qt: a wait on an unconnected socket sets no error. */
    ASSERT_ERR(lsock_socket_error(s), LSOCK_ERR_NONE);
    ASSERT_STR_EQ(lsock_socket_error_string(s), "");
    lsock_socket_free(s);
}

TEST(wait_for_bytes_written_drains_a_large_write_to_a_reading_peer)
{
    const char *name = test_name("bbig");
    raw_server *l = raw_listen(name, 4);
    rec r;
    rec_init(&r);
    lsock_socket *s = lsock_socket_new(NULL);
    lsock_socket_set_callbacks(s, &rec_cbs, &r);
    ASSERT(lsock_socket_connect(s, name, LSOCK_READ_WRITE));
    reader rd;
    memset(&rd, 0, sizeof rd);
    rd.fd = raw_accept(l);
    ASSERT_EQ(pthread_create(&rd.th, NULL, reader_main, &rd), 0);
    size_t n = 4u << 20;
    unsigned char *data = pattern_new(n);
    ASSERT_EQ(lsock_socket_write(s, data, (int64_t)n), (int64_t)n);
    uint64_t dl = test_now_ms() + 10000;
    while (r.written < (int64_t)n) {
        ASSERT(test_now_ms() < dl);
        ASSERT(lsock_socket_wait_for_bytes_written(s, 5000));
    }
    ASSERT_EQ(r.written, (int64_t)n);
    ASSERT_EQ(lsock_socket_bytes_to_write(s), 0);
    lsock_socket_free(s);
    ASSERT_EQ(pthread_join(rd.th, NULL), 0);
    ASSERT_EQ(rd.total, n);
    free(data);
    raw_close(rd.fd);
    raw_server_close(l);
}

TEST(wait_for_bytes_written_to_vanished_peer_fails_peer_closed)
{
    rawpair p;
    rawpair_open(&p, NULL);
    raw_close(p.pfd);
    p.pfd = RAW_NONE;
    char buf[1024];
    memset(buf, 'q', sizeof buf);
    rec r;
    rec_init(&r);
    lsock_socket_set_callbacks(p.s, &rec_cbs, &r);
    int64_t w = lsock_socket_write(p.s, buf, sizeof buf);
    if (w == -1)
        ASSERT_ERR(lsock_socket_error(p.s), LSOCK_ERR_PEER_CLOSED);
    else
        ASSERT_EQ(w, (int64_t)sizeof buf);
    /* Without a loop the failure is reported by the next wait. */
    ASSERT(!lsock_socket_wait_for_bytes_written(p.s, 5000));
    ASSERT_ERR(lsock_socket_error(p.s), LSOCK_ERR_PEER_CLOSED);
    ASSERT_STR_EQ(
        r.log,
        "error:PEER_CLOSED state:CLOSING state:UNCONNECTED read_channel_finished disconnected");
    ASSERT_EQ(lsock_socket_state(p.s), LSOCK_UNCONNECTED);
    rawpair_close(&p);
}

TEST(wait_for_connected_on_connected_socket_returns_true)
{
    pair p;
    pair_open(&p, NULL);
    ASSERT(lsock_socket_wait_for_connected(p.client, 1000));
    pair_close(&p);
}

TEST(wait_for_connected_on_unconnected_socket_fails_at_once_setting_no_error)
{
    lsock_socket *s = lsock_socket_new(NULL);
    uint64_t t0 = test_now_ms();
    ASSERT(!lsock_socket_wait_for_connected(s, 3000));
    ASSERT(test_now_ms() - t0 < 1000);
    /* As Qt: a wait on an unconnected socket sets no error. */
    ASSERT_ERR(lsock_socket_error(s), LSOCK_ERR_NONE);
    ASSERT_STR_EQ(lsock_socket_error_string(s), "");
    lsock_socket_free(s);
}

/* The canonical pattern: connect(); if (!wait_for_connected()) print(error_string()). After
 * a failed connect (its result ignored, as Qt code does) every wait returns false at once and
 * the error is still the connect's, word for word, as in Qt 5 and Qt 6. */
static void check_waits_keep_the_connect_error(lsock_socket *s, lsock_error want)
{
    ASSERT_ERR(lsock_socket_error(s), want);
    char text[512];
    snprintf(text, sizeof text, "%s", lsock_socket_error_string(s));
    ASSERT(starts_with(text, "lsock_socket_connect: "));
    uint64_t t0 = test_now_ms();
    ASSERT(!lsock_socket_wait_for_connected(s, 3000));
    ASSERT(!lsock_socket_wait_for_ready_read(s, 3000));
    ASSERT(!lsock_socket_wait_for_bytes_written(s, 3000));
    ASSERT(!lsock_socket_wait_for_disconnected(s, 3000));
    ASSERT(test_now_ms() - t0 < 1000);
    ASSERT_ERR(lsock_socket_error(s), want);
    ASSERT_STR_EQ(lsock_socket_error_string(s), text);
    ASSERT_EQ(lsock_socket_state(s), LSOCK_UNCONNECTED);
}

TEST(waits_after_a_connect_to_a_missing_server_keep_server_not_found)
{
    lsock_socket *s = lsock_socket_new(NULL);
    lsock_socket_connect(s, test_name("nosuch"), LSOCK_READ_WRITE);
    check_waits_keep_the_connect_error(s, LSOCK_ERR_SERVER_NOT_FOUND);
    lsock_socket_free(s);
}

TEST(waits_after_a_refused_connect_keep_connection_refused)
{
#ifdef _WIN32
    SKIP("a pipe name exists only while its server does: Windows has no stale name to refuse");
#else
    const char *path = path_of(test_name("stale"));
    make_stale(path);
    lsock_socket *s = lsock_socket_new(NULL);
    lsock_socket_connect(s, path, LSOCK_READ_WRITE);
    check_waits_keep_the_connect_error(s, LSOCK_ERR_CONNECTION_REFUSED);
    lsock_socket_free(s);
    unlink(path);
#endif
}

/* Makes room on a full server (from a thread): accepts one connection. */
typedef struct room {
    fullsrv *f;
    raw_fd accepted;
} room;

static void *accept_one(void *arg)
{
    room *r = arg;
    r->accepted = fullsrv_accept(r->f);
    return NULL;
}

TEST(wait_for_connected_succeeds_when_a_server_thread_accepts)
{
    fullsrv f;
    fullsrv_open(&f, "bfull");
    const char *name = f.name;
    rec r;
    rec_init(&r);
    lsock_socket *s = lsock_socket_new(NULL);
    lsock_socket_set_callbacks(s, &rec_cbs, &r);
    ASSERT(lsock_socket_set_connect_timeout(s, 5000));
    ASSERT(lsock_socket_connect(s, name, LSOCK_READ_WRITE));
    ASSERT_EQ(lsock_socket_state(s), LSOCK_CONNECTING);
    room io = {&f, RAW_NONE};
    pthread_t th;
    ASSERT_EQ(pthread_create(&th, NULL, accept_one, &io), 0);
    ASSERT(lsock_socket_wait_for_connected(s, 5000));
    ASSERT_EQ(lsock_socket_state(s), LSOCK_CONNECTED);
    ASSERT_STR_EQ(r.log, "state:CONNECTING state:CONNECTED connected");
    ASSERT_EQ(pthread_join(th, NULL), 0);
    ASSERT(io.accepted != RAW_NONE);
    lsock_socket_free(s);
    raw_close(io.accepted);
    fullsrv_close(&f);
}

TEST(blocking_connect_to_missing_server_fails_synchronously)
{
    rec r;
    rec_init(&r);
    lsock_socket *s = lsock_socket_new(NULL);
    lsock_socket_set_callbacks(s, &rec_cbs, &r);
    ASSERT(!lsock_socket_connect(s, test_name("bmiss"), LSOCK_READ_WRITE));
    ASSERT_ERR(lsock_socket_error(s), LSOCK_ERR_SERVER_NOT_FOUND);
    ASSERT_STR_EQ(r.log, "state:CONNECTING error:SERVER_NOT_FOUND state:UNCONNECTED");
    ASSERT(!lsock_socket_wait_for_connected(s, 100));
    lsock_socket_free(s);
}

TEST(blocking_write_of_64_mib_returns_at_once)
{
    rawpair p;
    rawpair_open(&p, NULL);
    size_t n = 64u << 20;
    char *data = malloc(n);
    ASSERT(data != NULL);
    memset(data, 'b', n);
    uint64_t t0 = test_now_ms();
    ASSERT_EQ(lsock_socket_write(p.s, data, (int64_t)n), (int64_t)n);
    ASSERT(test_now_ms() - t0 < 2000);
    ASSERT(lsock_socket_bytes_to_write(p.s) > 0);
    free(data);
    rawpair_close(&p);
}

TEST(blocking_echo_round_trip_with_lines)
{
    pair p;
    pair_open(&p, NULL);
    char line[64];
    for (int i = 0; i < 20; i++) {
        char msg[32];
        int m = snprintf(msg, sizeof msg, "msg %d\n", i);
        ASSERT_EQ(lsock_socket_write(p.client, msg, m), m);
        while (!lsock_socket_can_read_line(p.peer))
            ASSERT(lsock_socket_wait_for_ready_read(p.peer, 5000));
        ASSERT_EQ(lsock_socket_read_line(p.peer, line, sizeof line), m);
        ASSERT_STR_EQ(line, msg);
        ASSERT_EQ(lsock_socket_write(p.peer, line, m), m);
        while (!lsock_socket_can_read_line(p.client))
            ASSERT(lsock_socket_wait_for_ready_read(p.client, 5000));
        ASSERT_EQ(lsock_socket_read_line(p.client, line, sizeof line), m);
        ASSERT_STR_EQ(line, msg);
    }
    pair_close(&p);
}

TEST(wait_with_no_timeout_returns_when_data_arrives)
{
    pair p;
    pair_open(&p, NULL);
    ASSERT_EQ(lsock_socket_write(p.client, "now", 3), 3);
    ASSERT(lsock_socket_wait_for_ready_read(p.peer, -1));
    ASSERT_EQ(lsock_socket_bytes_available(p.peer), 3);
    pair_close(&p);
}

TEST(free_socket_inside_ready_read_fired_by_a_wait)
{
    pair p;
    pair_open(&p, NULL);
    rec r;
    rec_init(&r);
    r.free_in = "ready_read";
    lsock_socket_set_callbacks(p.peer, &rec_cbs, &r);
    ASSERT_EQ(lsock_socket_write(p.client, "x", 1), 1);
    lsock_socket_wait_for_ready_read(p.peer, 5000);
    ASSERT(r.freed);
    p.peer = NULL;
    pair_close(&p);
}

TEST(free_socket_inside_disconnected_fired_by_a_wait)
{
    pair p;
    pair_open(&p, NULL);
    rec r;
    rec_init(&r);
    r.free_in = "disconnected";
    lsock_socket_set_callbacks(p.peer, &rec_cbs, &r);
    lsock_socket_free(p.client);
    p.client = NULL;
    lsock_socket_wait_for_disconnected(p.peer, 5000);
    ASSERT(r.freed);
    p.peer = NULL;
    pair_close(&p);
}

static void free_server_cb(lsock_server *srv, void *u)
{
    *(bool *)u = true;
    lsock_server_free(srv);
}

TEST(free_server_inside_new_connection_fired_by_a_wait)
{
    const char *name = test_name("bfreesrv");
    bool freed = false;
    lsock_server *srv = lsock_server_new(NULL);
    lsock_server_set_new_connection_callback(srv, free_server_cb, &freed);
    ASSERT(lsock_server_listen(srv, name));
    lsock_socket *c = lsock_socket_new(NULL);
    ASSERT(lsock_socket_connect(c, name, LSOCK_READ_WRITE));
    lsock_server_wait_for_new_connection(srv, 5000, NULL);
    ASSERT(freed);
    ASSERT(lsock_socket_wait_for_disconnected(c, 5000));
    lsock_socket_free(c);
}

TEST(wait_for_connected_on_a_loop_socket_times_out_and_frees_cleanly)
{
    lsock_loop *loop = loop_new();
    fullsrv f;
    fullsrv_open(&f, "bloopfull");
    const char *name = f.name;
    rec r;
    rec_init(&r);
    lsock_socket *s = lsock_socket_new(loop);
    lsock_socket_set_callbacks(s, &rec_cbs, &r);
    ASSERT(lsock_socket_set_connect_timeout(s, 150));
    ASSERT(lsock_socket_connect(s, name, LSOCK_READ_WRITE));
    ASSERT(!lsock_socket_wait_for_connected(s, 5000));
    ASSERT_ERR(lsock_socket_error(s), LSOCK_ERR_SOCKET_TIMEOUT);
    ASSERT_EQ(lsock_socket_state(s), LSOCK_UNCONNECTED);
    ASSERT_STR_EQ(r.log, "state:CONNECTING error:SOCKET_TIMEOUT state:UNCONNECTED");
    run_for(loop, 30); /* the retry timer must not fire any more */
    ASSERT_EQ(r.errors, 1);
    lsock_socket_free(s);
    fullsrv_close(&f);
    loop_free(loop);
}

TEST(free_socket_inside_bytes_written_fired_by_a_wait)
{
    pair p;
    pair_open(&p, NULL);
    rec r;
    rec_init(&r);
    r.free_in = "bytes_written";
    lsock_socket_set_callbacks(p.client, &rec_cbs, &r);
    ASSERT_EQ(lsock_socket_write(p.client, "x", 1), 1);
    lsock_socket_wait_for_bytes_written(p.client, 5000);
    ASSERT(r.freed);
    p.client = NULL;
    pair_close(&p);
}

TEST(wait_for_ready_read_with_full_read_buffer_fails_at_once_without_reading)
{
    pair p;
    pair_open(&p, NULL);
    ASSERT(lsock_socket_set_read_buffer_size(p.client, 4));
    ASSERT_EQ(lsock_socket_write(p.peer, "0123456789", 10), 10);
    ASSERT(lsock_socket_wait_for_ready_read(p.client, 5000));
    ASSERT_EQ(lsock_socket_bytes_available(p.client), 4);
    uint64_t t0 = test_now_ms();
    ASSERT(!lsock_socket_wait_for_ready_read(p.client, -1)); /* nothing could ever arrive */
    ASSERT(test_now_ms() - t0 < 2000);
    ASSERT_ERR(lsock_socket_error(p.client), LSOCK_ERR_OPERATION);
    ASSERT(strstr(lsock_socket_error_string(p.client), "read buffer is full") != NULL);
    ASSERT_EQ(lsock_socket_bytes_available(p.client), 4);
    char buf[16];
    ASSERT_EQ(lsock_socket_read(p.client, buf, sizeof buf), 4);
    ASSERT(lsock_socket_wait_for_ready_read(p.client, 5000));
    ASSERT_EQ(lsock_socket_bytes_available(p.client), 4);
    pair_close(&p);
}

/* ---- the read buffer limit in the waits ------------------------------------------------- */

#define FULL_BUFFER_TEXT                                                                           \
    "Operation not allowed in this state (the read buffer is full: read from it first)"

/* A peer thread: streams total bytes of the pattern through a loop-less socket, then
 * disconnects and frees it. ok: everything was handed to the kernel. The thread lives on until
 * the reader is done: on Windows a thread that ends cancels the I/O it started (the last write
 * may still be in the pipe when the socket is freed), which no Unix kernel does. */
typedef struct streamer {
    lsock_socket *s;
    size_t total;
    bool ok;
    bool reader_done;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    pthread_t th;
} streamer;

static void *stream_main(void *arg)
{
    streamer *st = arg;
    unsigned char *data = pattern_new(st->total);
    if (lsock_socket_write(st->s, data, (int64_t)st->total) == (int64_t)st->total) {
        uint64_t dl = test_now_ms() + 30000;
        while (lsock_socket_bytes_to_write(st->s) > 0 && test_now_ms() < dl)
            lsock_socket_wait_for_bytes_written(st->s, 1000);
        st->ok = lsock_socket_bytes_to_write(st->s) == 0;
    }
    lsock_socket_disconnect(st->s);
    lsock_socket_free(st->s);
    free(data);
    struct timespec dl;
    clock_gettime(CLOCK_REALTIME, &dl);
    dl.tv_sec += 60;
    pthread_mutex_lock(&st->mu);
    while (!st->reader_done)
        if (pthread_cond_timedwait(&st->cv, &st->mu, &dl) != 0) break;
    pthread_mutex_unlock(&st->mu);
    return NULL;
}

TEST(wait_for_disconnected_never_reads_past_the_read_buffer_limit)
{
    const int64_t limit = 65536;
    pair p;
    pair_open(&p, NULL);
    rec r;
    rec_init(&r);
    lsock_socket_set_callbacks(p.client, &rec_cbs, &r);
    ASSERT(lsock_socket_set_read_buffer_size(p.client, limit));
    streamer st = {.s = p.peer, .total = 8u << 20};
    p.peer = NULL;
    pthread_mutex_init(&st.mu, NULL);
    pthread_cond_init(&st.cv, NULL);
    ASSERT_EQ(pthread_create(&st.th, NULL, stream_main, &st), 0);
    /* The peer streams far more than the limit and stays connected: the wait fills the buffer
     * up to the limit, then refuses to read on. */
    ASSERT(!lsock_socket_wait_for_disconnected(p.client, 5000));
    ASSERT_ERR(lsock_socket_error(p.client), LSOCK_ERR_OPERATION);
    ASSERT_STR_EQ(lsock_socket_error_string(p.client),
                  "lsock_socket_wait_for_disconnected: " FULL_BUFFER_TEXT);
    ASSERT_EQ(lsock_socket_bytes_available(p.client), limit);
    ASSERT(r.max_available <= limit);
    ASSERT_EQ(lsock_socket_state(p.client), LSOCK_CONNECTED);
    /* Reading and waiting again gets every byte in order, then the end. */
    unsigned char *buf = malloc((size_t)limit);
    ASSERT(buf != NULL);
    size_t got = 0;
    uint64_t dl = test_now_ms() + 60000;
    for (bool done = false;;) {
        int64_t n = lsock_socket_read(p.client, buf, limit);
        ASSERT(n >= 0);
        for (int64_t i = 0; i < n; i++)
            if (buf[i] != pattern_byte(got + (size_t)i)) FAIL_("byte %zu differs", got + (size_t)i);
        got += (size_t)n;
        if (done) break;
        ASSERT(test_now_ms() < dl);
        if (lsock_socket_wait_for_disconnected(p.client, 5000)) {
            done = true;
            continue;
        }
        ASSERT_ERR(lsock_socket_error(p.client), LSOCK_ERR_OPERATION);
        ASSERT(lsock_socket_bytes_available(p.client) <= limit);
    }
    pthread_mutex_lock(&st.mu);
    st.reader_done = true;
    pthread_cond_signal(&st.cv);
    pthread_mutex_unlock(&st.mu);
    ASSERT_EQ(lsock_socket_state(p.client), LSOCK_UNCONNECTED);
    ASSERT_EQ(got, st.total);
    ASSERT(r.max_available <= limit);
    ASSERT_EQ(pthread_join(st.th, NULL), 0);
    pthread_cond_destroy(&st.cv);
    pthread_mutex_destroy(&st.mu);
    ASSERT(st.ok);
    free(buf);
    pair_close(&p);
}

TEST(wait_for_ready_read_with_full_read_buffer_and_a_queued_write_fails_at_once_not_timeout)
{
    pair p;
    pair_open(&p, NULL);
    ASSERT(lsock_socket_set_read_buffer_size(p.client, 4));
    ASSERT_EQ(lsock_socket_write(p.peer, "0123456789", 10), 10);
    ASSERT(lsock_socket_wait_for_ready_read(p.client, 5000));
    ASSERT_EQ(lsock_socket_bytes_available(p.client), 4);
    /* A write the peer does not read stays queued. */
    size_t n = 8u << 20;
    unsigned char *data = pattern_new(n);
    ASSERT_EQ(lsock_socket_write(p.client, data, (int64_t)n), (int64_t)n);
    ASSERT(lsock_socket_bytes_to_write(p.client) > 0);
    uint64_t t0 = test_now_ms();
    ASSERT(!lsock_socket_wait_for_ready_read(p.client, 5000));
    ASSERT_ERR(lsock_socket_error(p.client), LSOCK_ERR_OPERATION); /* not SOCKET_TIMEOUT */
    ASSERT_STR_EQ(lsock_socket_error_string(p.client),
                  "lsock_socket_wait_for_ready_read: " FULL_BUFFER_TEXT);
    ASSERT(test_now_ms() - t0 < 2000);
    /* wait_for_disconnected, too, while the connection has data to read. */
    t0 = test_now_ms();
    ASSERT(!lsock_socket_wait_for_disconnected(p.client, 5000));
    ASSERT_ERR(lsock_socket_error(p.client), LSOCK_ERR_OPERATION);
    ASSERT_STR_EQ(lsock_socket_error_string(p.client),
                  "lsock_socket_wait_for_disconnected: " FULL_BUFFER_TEXT);
    ASSERT(test_now_ms() - t0 < 2000);
    ASSERT_EQ(lsock_socket_bytes_available(p.client), 4);
    ASSERT_EQ(lsock_socket_state(p.client), LSOCK_CONNECTED);
    free(data);
    pair_close(&p);
}

/* ---- linger without a loop -------------------------------------------------------------- */

/* The client queues 8 MiB that its loop-less peer never reads, with the given linger, and
 * disconnects: CLOSING with the queue held. Returns the time of the disconnect. */
static uint64_t disconnect_stalled(pair *p, rec *r, int linger)
{
    pair_open(p, NULL);
    rec_init(r);
    lsock_socket_set_callbacks(p->client, &rec_cbs, r);
    size_t n = 8u << 20;
    unsigned char *data = pattern_new(n);
    ASSERT_EQ(lsock_socket_write(p->client, data, (int64_t)n), (int64_t)n);
    free(data);
    ASSERT(lsock_socket_bytes_to_write(p->client) > 0);
    lsock_socket_set_linger(p->client, linger);
    ASSERT_EQ(lsock_socket_linger(p->client), linger);
    uint64_t t0 = test_now_ms();
    lsock_socket_disconnect(p->client);
    return t0;
}

#define LINGER_ABORT_LOG                                                                           \
    "state:CLOSING error:SOCKET_TIMEOUT state:UNCONNECTED read_channel_finished disconnected"

TEST(wait_for_disconnected_honours_linger_when_the_peer_never_reads)
{
    pair p;
    rec r;
    uint64_t t0 = disconnect_stalled(&p, &r, 100);
    ASSERT_EQ(lsock_socket_state(p.client), LSOCK_CLOSING);
    /* Disconnected by the linger time, not by the wait's own timeout. */
    ASSERT(lsock_socket_wait_for_disconnected(p.client, 5000));
    uint64_t took = test_now_ms() - t0;
    ASSERT(took >= 90 && took < 2500);
    ASSERT_EQ(lsock_socket_state(p.client), LSOCK_UNCONNECTED);
    ASSERT_ERR(lsock_socket_error(p.client), LSOCK_ERR_SOCKET_TIMEOUT);
    ASSERT(starts_with(lsock_socket_error_string(p.client), "lsock_socket_disconnect: "));
    ASSERT_EQ(lsock_socket_bytes_to_write(p.client), 0);
    ASSERT_STR_EQ(r.log, LINGER_ABORT_LOG);
    pair_close(&p);
}

TEST(wait_for_bytes_written_honours_linger_when_the_peer_never_reads)
{
    pair p;
    rec r;
    uint64_t t0 = disconnect_stalled(&p, &r, 100);
    /* Reports what went to the kernel already, then waits for the rest until the linger. */
    while (lsock_socket_wait_for_bytes_written(p.client, 5000))
        ASSERT(test_now_ms() - t0 < 2500);
    uint64_t took = test_now_ms() - t0;
    ASSERT(took >= 90 && took < 2500);
    ASSERT_ERR(lsock_socket_error(p.client), LSOCK_ERR_SOCKET_TIMEOUT);
    ASSERT(starts_with(lsock_socket_error_string(p.client), "lsock_socket_disconnect: "));
    ASSERT_EQ(lsock_socket_state(p.client), LSOCK_UNCONNECTED);
    ASSERT_EQ(lsock_socket_bytes_to_write(p.client), 0);
    ASSERT_STR_EQ(r.log, LINGER_ABORT_LOG);
    pair_close(&p);
}

TEST(disconnect_with_linger_zero_aborts_at_once_when_data_stays_queued)
{
    pair p;
    rec r;
    disconnect_stalled(&p, &r, 0);
    ASSERT_EQ(lsock_socket_state(p.client), LSOCK_UNCONNECTED);
    ASSERT_ERR(lsock_socket_error(p.client), LSOCK_ERR_SOCKET_TIMEOUT);
    ASSERT_EQ(lsock_socket_bytes_to_write(p.client), 0);
    ASSERT_STR_EQ(r.log, LINGER_ABORT_LOG);
    pair_close(&p);
}

/* A socket opened for writing only drops what arrives. Without a loop it used to read into a
 * buffer of 0 bytes, take the 0 for the end of the stream and disconnect. */
TEST(write_only_socket_without_a_loop_stays_connected_when_bytes_arrive)
{
    lsock_server *srv = lsock_server_new(NULL);
    const char *name = test_name("wo");
    ASSERT(lsock_server_listen(srv, name));
    lsock_socket *c = lsock_socket_new(NULL);
    ASSERT(lsock_socket_connect(c, name, LSOCK_WRITE_ONLY));
    ASSERT(lsock_server_wait_for_new_connection(srv, 5000, NULL));
    lsock_socket *peer = lsock_server_next_pending_connection(srv);
    ASSERT_EQ(lsock_socket_write(peer, "abc", 3), 3);
    ASSERT(lsock_socket_wait_for_bytes_written(peer, 5000) ||
           lsock_socket_bytes_to_write(peer) == 0);
    for (int i = 0; i < 5; i++)
        lsock_socket_wait_for_ready_read(c, 20);
    ASSERT_EQ(lsock_socket_state(c), LSOCK_CONNECTED);
    ASSERT_EQ(lsock_socket_bytes_available(c), 0);
    ASSERT_EQ(lsock_socket_write(c, "q", 1), 1);
    uint64_t deadline = test_now_ms() + 5000;
    while (lsock_socket_bytes_available(peer) < 1) {
        ASSERT(test_now_ms() < deadline);
        lsock_socket_flush(c);
        lsock_socket_wait_for_ready_read(peer, 100);
    }
    ASSERT_EQ(lsock_socket_state(peer), LSOCK_CONNECTED);
    lsock_socket_free(c);
    lsock_socket_free(peer);
    lsock_server_free(srv);
}

/* ---- waits whose reads go straight into the caller's buffer ------------------------------ */

/* Reads what the socket holds in 64 KiB pieces, checking the pattern from *at on: how many
 * bytes, or -1 if one is wrong. */
static int64_t read_pieces(lsock_socket *s, size_t *at)
{
    static unsigned char buf[65536];
    int64_t total = 0, n;
    while ((n = lsock_socket_read(s, buf, sizeof buf)) > 0) {
        for (int64_t i = 0; i < n; i++)
            if (buf[i] != pattern_byte(*at + (size_t)i)) return -1;
        *at += (size_t)n;
        total += n;
    }
    return total;
}

/* Sends n pattern bytes from a loop-less client (whole in the kernel when it returns) and has
 * the loop-less peer read them with one wait (and the reads after it), from *at on. */
static void send_and_wait(pair *p, size_t n, size_t *at)
{
    unsigned char *data = pattern_new(*at + n);
    ASSERT_EQ(lsock_socket_write(p->client, data + *at, (int64_t)n), (int64_t)n);
    while (lsock_socket_bytes_to_write(p->client) > 0)
        ASSERT(lsock_socket_wait_for_bytes_written(p->client, 5000));
    ASSERT(lsock_socket_wait_for_ready_read(p->peer, 5000));
    free(data);
}

/* A loop-less pair whose peer has read one large piece: its next waits announce. */
static void blocking_pair_reading_large_pieces(pair *p, size_t *at)
{
    pair_open(p, NULL);
    *at = 0;
    send_and_wait(p, 100000, at);
    ASSERT_EQ(read_pieces(p->peer, at), 100000);
}

/* Such a pair whose peer's wait has just announced 100,000 bytes, left in the kernel (on
 * Windows: buffered, nothing is ever announced there). */
static void pair_with_announced_bytes(pair *p, size_t *at)
{
    blocking_pair_reading_large_pieces(p, at);
    unsigned long mark = atomic_load(&lsock__test_announced);
    send_and_wait(p, 100000, at);
    ASSERT(counted_since(&lsock__test_announced, &mark));
}

/* The pattern of a loop-less reader: wait_for_ready_read(-1), then 64 KiB reads until none
 * is left. The bytes go from the kernel into the caller's buffer, every one in order. (One
 * thread: the loop-less writer sends 256 KiB at a time, and the wait never waits for nothing:
 * while bytes are on their way, some are in the kernel.) */
TEST(wait_for_ready_read_without_a_loop_reading_64_kib_pieces_reads_straight_into_the_buffer)
{
    pair p;
    pair_open(&p, NULL);
    size_t n = 16u << 20, sent = 0, at = 0;
    unsigned char *data = pattern_new(n);
    unsigned long mark = atomic_load(&lsock__test_direct_reads);
    uint64_t deadline = test_now_ms() + 20000;
    while (at < n) {
        ASSERT(test_now_ms() < deadline);
        if (sent < n && lsock_socket_bytes_to_write(p.client) == 0) {
            size_t k = n - sent < 262144 ? n - sent : 262144;
            ASSERT_EQ(lsock_socket_write(p.client, data + sent, (int64_t)k), (int64_t)k);
            sent += k;
        }
        if (lsock_socket_bytes_to_write(p.client) > 0)
            lsock_socket_wait_for_bytes_written(p.client, 0); /* sends what the kernel takes */
        ASSERT(lsock_socket_wait_for_ready_read(p.peer, -1));
        ASSERT(lsock_socket_bytes_available(p.peer) > 0);
        ASSERT(read_pieces(p.peer, &at) > 0);
    }
    ASSERT_EQ(at, n);
    ASSERT(counted_since(&lsock__test_direct_reads, &mark));
    free(data);
    pair_close(&p);
}

/* bytes_available() after such a wait counts the announced bytes, and the other read calls
 * (peek, a small read) see them, in order, as if they were buffered. */
TEST(bytes_a_loopless_wait_announced_are_seen_by_every_read_call)
{
    pair p;
    size_t at;
    pair_with_announced_bytes(&p, &at);
    ASSERT_EQ(lsock_socket_bytes_available(p.peer), 100000);
    ASSERT(!lsock_socket_at_end(p.peer));
    unsigned char head[16];
    ASSERT_EQ(lsock_socket_peek(p.peer, head, sizeof head), 16);
    for (size_t i = 0; i < sizeof head; i++)
        ASSERT_EQ(head[i], pattern_byte(at + i));
    unsigned char small[100];
    ASSERT_EQ(lsock_socket_read(p.peer, small, sizeof small), 100);
    for (size_t i = 0; i < sizeof small; i++)
        ASSERT_EQ(small[i], pattern_byte(at + i));
    at += sizeof small;
    ASSERT_EQ(lsock_socket_bytes_available(p.peer), 100000 - 100);
    ASSERT_EQ(read_pieces(p.peer, &at), 100000 - 100);
    ASSERT(lsock_socket_at_end(p.peer));
    pair_close(&p);
}

/* A second wait for data keeps what the first announced (it buffers it) and waits for new
 * bytes: none come, so it times out, and the first bytes are all still there. */
TEST(a_second_wait_keeps_the_bytes_the_first_announced_and_waits_for_new_ones)
{
    pair p;
    size_t at;
    pair_with_announced_bytes(&p, &at);
    ASSERT_EQ(lsock_socket_bytes_available(p.peer), 100000);
    ASSERT(!lsock_socket_wait_for_ready_read(p.peer, 200));
    ASSERT_ERR(lsock_socket_error(p.peer), LSOCK_ERR_SOCKET_TIMEOUT);
    ASSERT_EQ(lsock_socket_bytes_available(p.peer), 100000);
    ASSERT_EQ(read_pieces(p.peer, &at), 100000);
    ASSERT_EQ(lsock_socket_state(p.peer), LSOCK_CONNECTED);
    pair_close(&p);
}

/* The peer's close behind announced bytes: they are all read, and the next wait reports the
 * end (PEER_CLOSED), as with buffered bytes. */
TEST(end_of_stream_behind_bytes_a_loopless_wait_announced_comes_after_them)
{
    pair p;
    size_t at;
    pair_with_announced_bytes(&p, &at);
    lsock_socket_free(p.client);
    p.client = NULL;
    ASSERT_EQ(read_pieces(p.peer, &at), 100000);
    ASSERT_EQ(lsock_socket_state(p.peer), LSOCK_CONNECTED);
    ASSERT(!lsock_socket_wait_for_ready_read(p.peer, 5000));
    ASSERT_ERR(lsock_socket_error(p.peer), LSOCK_ERR_PEER_CLOSED);
    ASSERT_EQ(lsock_socket_state(p.peer), LSOCK_UNCONNECTED);
    pair_close(&p);
}

/* disconnect() after such a wait: the announced bytes stay readable, as buffered ones do. */
TEST(disconnect_keeps_the_bytes_a_loopless_wait_announced_readable)
{
    pair p;
    size_t at;
    pair_with_announced_bytes(&p, &at);
    lsock_socket_disconnect(p.peer);
    ASSERT_EQ(lsock_socket_state(p.peer), LSOCK_UNCONNECTED);
    ASSERT_EQ(lsock_socket_bytes_available(p.peer), 100000);
    ASSERT_EQ(read_pieces(p.peer, &at), 100000);
    pair_close(&p);
}

/* A child of fork() leaves the bytes a loop-less wait announced to the parent (lsock.h,
 * "Fork"): its copy of the socket counts none of them, and nothing it does (a read, a
 * disconnect) takes them; the parent reads them all. */
TEST(a_child_of_fork_leaves_the_bytes_a_loopless_wait_announced_to_the_parent)
{
#ifdef _WIN32
    SKIP("Windows has no fork()");
#else
    pair p;
    size_t at;
    pair_with_announced_bytes(&p, &at);
    pid_t pid = fork();
    ASSERT(pid >= 0);
    if (pid == 0) {
        unsigned char buf[65536];
        int ok = lsock_socket_bytes_available(p.peer) == 0 && lsock_socket_at_end(p.peer) &&
                 lsock_socket_read(p.peer, buf, sizeof buf) == 0;
        lsock_socket_disconnect(p.peer);
        _exit(ok ? 0 : 3);
    }
    int st = 0;
    ASSERT_EQ(waitpid(pid, &st, 0), pid);
    ASSERT(WIFEXITED(st));
    ASSERT_EQ(WEXITSTATUS(st), 0);
    ASSERT_EQ(lsock_socket_bytes_available(p.peer), 100000);
    ASSERT_EQ(read_pieces(p.peer, &at), 100000);
    ASSERT_EQ(lsock_socket_state(p.peer), LSOCK_CONNECTED);
    pair_close(&p);
#endif
}

TEST_MAIN()
