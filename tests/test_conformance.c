/*
 * Qt conformance: one test per behaviour that Qt documents for QLocalSocket/QLocalServer or
 * that Qt's own test suite (tst_qlocalsocket) checks, written afresh against lsock. Where
 * lsock differs from Qt on purpose, the test checks lsock's documented behaviour and says so;
 * docs/qt-compatibility.md lists those differences.
 */
#include "support.h"

#include <stddef.h>

/* A pair (support.h) connected in the given open mode, waited for with the blocking calls. */
static void pair_open_mode(pair *p, lsock_loop *loop, unsigned mode)
{
    memset(p, 0, sizeof *p);
    snprintf(p->name, sizeof p->name, "%s", test_name("conf"));
    p->srv = lsock_server_new(loop);
    ASSERT(lsock_server_listen(p->srv, p->name));
    p->client = lsock_socket_new(loop);
    ASSERT(lsock_socket_connect(p->client, p->name, mode));
    ASSERT(lsock_socket_wait_for_connected(p->client, 3000));
    ASSERT(lsock_server_wait_for_new_connection(p->srv, 3000, NULL));
    p->peer = lsock_server_next_pending_connection(p->srv);
    ASSERT(p->peer != NULL);
}

/* ---- defaults ---------------------------------------------------------------------------- */

TEST(socket_defaults)
{
    lsock_socket *s = lsock_socket_new(NULL);
    ASSERT_EQ(lsock_socket_state(s), LSOCK_UNCONNECTED);
    /* Qt reports UnknownSocketError before any error; lsock has NONE (documented). */
    ASSERT_ERR(lsock_socket_error(s), LSOCK_ERR_NONE);
    ASSERT(strcmp(lsock_socket_server_name(s), "") == 0);
    ASSERT(strcmp(lsock_socket_full_server_name(s), "") == 0);
    ASSERT_EQ(lsock_socket_read_buffer_size(s), 0);
    ASSERT_EQ(lsock_socket_descriptor(s), -1);
    ASSERT_EQ(lsock_socket_bytes_available(s), 0);
    ASSERT_EQ(lsock_socket_bytes_to_write(s), 0);
    ASSERT(!lsock_socket_can_read_line(s));
    ASSERT(!lsock_socket_is_valid(s));
    ASSERT(!lsock_socket_flush(s));
    ASSERT_EQ(lsock_socket_open_mode(s), 0u);
    ASSERT(!lsock_socket_wait_for_connected(s, 0));
    ASSERT(!lsock_socket_wait_for_disconnected(s, 0));
    ASSERT(!lsock_socket_wait_for_ready_read(s, 0));
    lsock_socket_abort(s);
    lsock_socket_close(s);
    ASSERT_EQ(lsock_socket_state(s), LSOCK_UNCONNECTED);
    lsock_socket_free(s);
}

TEST(server_defaults)
{
    lsock_server *srv = lsock_server_new(NULL);
    ASSERT(strcmp(lsock_server_name(srv), "") == 0);
    ASSERT(strcmp(lsock_server_full_server_name(srv), "") == 0);
    ASSERT(!lsock_server_is_listening(srv));
    ASSERT_EQ(lsock_server_max_pending_connections(srv), 30);
    ASSERT_EQ(lsock_server_listen_backlog_size(srv), 50);
    ASSERT_EQ(lsock_server_descriptor(srv), -1);
    ASSERT(!lsock_server_has_pending_connections(srv));
    ASSERT(lsock_server_next_pending_connection(srv) == NULL);
    ASSERT_ERR(lsock_server_error(srv), LSOCK_ERR_NONE); /* Qt: UnknownSocketError */
    ASSERT_EQ(lsock_server_socket_options(srv), 0u);
    bool timed_out = true;
    ASSERT(!lsock_server_wait_for_new_connection(srv, 0, &timed_out));
    ASSERT(!timed_out);
    lsock_server_close(srv);
    lsock_server_free(srv);
}

TEST(listen_on_an_empty_name_fails)
{
    lsock_server *srv = lsock_server_new(NULL);
    ASSERT(!lsock_server_listen(srv, ""));
    /* Qt: HostNotFoundError, "QLocalServer::listen: Name error". */
    ASSERT_ERR(lsock_server_error(srv), LSOCK_ERR_SERVER_NOT_FOUND);
    ASSERT(!lsock_server_is_listening(srv));
    ASSERT(strcmp(lsock_server_name(srv), "") == 0);
    lsock_server_free(srv);
}

/* ---- listen and connect ------------------------------------------------------------------ */

static void listen_and_connect(int n)
{
    lsock_loop *loop = loop_new();
    const char *name = test_name("lac");
    lsock_server *srv = lsock_server_new(loop);
    ASSERT(lsock_server_listen(srv, name));
    ASSERT(lsock_server_is_listening(srv));
    ASSERT(strcmp(lsock_server_name(srv), name) == 0);
    ASSERT(strcmp(lsock_server_full_server_name(srv), path_of(name)) == 0);
    lsock_socket *c[5];
    rec r[5];
    for (int i = 0; i < n; i++) {
        rec_init_qt(&r[i]);
        c[i] = lsock_socket_new(loop);
        lsock_socket_set_callbacks(c[i], &rec_cbs, &r[i]);
        ASSERT(lsock_socket_connect(c[i], name, LSOCK_READ_WRITE));
        ASSERT(lsock_socket_wait_for_connected(c[i], 3000));
        ASSERT(strcmp(lsock_socket_server_name(c[i]), name) == 0);
        ASSERT(strcmp(lsock_socket_full_server_name(c[i]), path_of(name)) == 0);
    }
    run_for(loop, 50);
    lsock_socket *peers[5];
    for (int i = 0; i < n; i++) {
        RUN_UNTIL(loop, lsock_server_has_pending_connections(srv), 3000);
        peers[i] = lsock_server_next_pending_connection(srv);
        ASSERT_EQ(lsock_socket_state(peers[i]), LSOCK_CONNECTED);
    }
    ASSERT(!lsock_server_has_pending_connections(srv));
    for (int i = 0; i < n; i++) {
        ASSERT_EQ(r[i].connected, 1);
        ASSERT_EQ(r[i].state_changes, 2); /* CONNECTING, CONNECTED */
        ASSERT_EQ(r[i].errors, 0);
        lsock_socket_free(c[i]);
        lsock_socket_free(peers[i]);
    }
    lsock_server_close(srv);
    ASSERT(!lsock_server_is_listening(srv));
    lsock_server_free(srv);
    loop_free(loop);
}

TEST(listen_and_connect_with_no_client)
{
    listen_and_connect(0);
}

TEST(listen_and_connect_with_one_client)
{
    listen_and_connect(1);
}

TEST(listen_and_connect_with_five_clients)
{
    listen_and_connect(5);
}

TEST(three_clients_connect_before_the_server_accepts)
{
    lsock_server *srv = lsock_server_new(NULL);
    const char *name = test_name("multi");
    ASSERT(lsock_server_listen(srv, name));
    lsock_socket *c[3];
    for (int i = 0; i < 3; i++) {
        c[i] = lsock_socket_new(NULL);
        ASSERT(lsock_socket_connect(c[i], name, LSOCK_READ_WRITE));
    }
    for (int i = 0; i < 3; i++)
        ASSERT(lsock_socket_wait_for_connected(c[i], 200 + i));
    for (int i = 0; i < 3; i++) {
        ASSERT(lsock_server_wait_for_new_connection(srv, 200 + i, NULL));
        lsock_socket *s = lsock_server_next_pending_connection(srv);
        ASSERT(s != NULL);
        lsock_socket_free(s);
    }
    for (int i = 0; i < 3; i++)
        lsock_socket_free(c[i]);
    lsock_server_free(srv);
}

/* ---- reading and writing ----------------------------------------------------------------- */

TEST(fifty_kb_line_is_read_with_read_line)
{
    pair p;
    pair_open_mode(&p, NULL, LSOCK_READ_WRITE);
    size_t n = 50 * 1024;
    char *line = malloc(n + 1);
    for (size_t i = 0; i < n - 1; i++)
        line[i] = (char)('a' + i % 26);
    line[n - 1] = '\n';
    ASSERT_EQ(lsock_socket_write(p.client, line, (int64_t)n), (int64_t)n);
    while (!lsock_socket_can_read_line(p.peer)) {
        lsock_socket_wait_for_bytes_written(p.client, 100);
        ASSERT(lsock_socket_wait_for_ready_read(p.peer, 3000));
    }
    char *got = malloc(n + 1);
    ASSERT_EQ(lsock_socket_read_line(p.peer, got, (int64_t)n + 1), (int64_t)n);
    ASSERT(memcmp(got, line, n) == 0 && got[n] == '\0');
    free(got);
    free(line);
    pair_close(&p);
}

TEST(read_buffer_of_128_bytes_reads_256_in_two_halves)
{
    pair p;
    pair_open_mode(&p, NULL, LSOCK_READ_WRITE);
    ASSERT(lsock_socket_set_read_buffer_size(p.client, 128));
    ASSERT_EQ(lsock_socket_read_buffer_size(p.client), 128);
    unsigned char *data = qt_pattern_new(256), buf[256];
    ASSERT_EQ(lsock_socket_write(p.peer, data, 256), 256);
    ASSERT(lsock_socket_wait_for_bytes_written(p.peer, 3000));
    ASSERT(lsock_socket_wait_for_ready_read(p.client, 3000));
    ASSERT_EQ(lsock_socket_bytes_available(p.client), 128);
    ASSERT_EQ(lsock_socket_read(p.client, buf, 128), 128);
    ASSERT(memcmp(buf, data, 128) == 0);
    ASSERT_EQ(lsock_socket_bytes_available(p.client), 0);
    ASSERT(lsock_socket_wait_for_ready_read(p.client, 3000));
    ASSERT_EQ(lsock_socket_read(p.client, buf, 128), 128);
    ASSERT(memcmp(buf, data + 128, 128) == 0);
    free(data);
    pair_close(&p);
}

/* A framed command protocol: 4-byte big-endian length, then the command. */
static void send_frame(lsock_socket *s, const char *cmd)
{
    uint32_t n = (uint32_t)strlen(cmd);
    unsigned char hdr[4] = {(unsigned char)(n >> 24), (unsigned char)(n >> 16),
                            (unsigned char)(n >> 8), (unsigned char)n};
    ASSERT_EQ(lsock_socket_write(s, hdr, 4), 4);
    ASSERT_EQ(lsock_socket_write(s, cmd, n), (int64_t)n);
}

static void recv_frame(lsock_socket *s, char *out, size_t size)
{
    unsigned char hdr[4];
    while (lsock_socket_bytes_available(s) < 4)
        ASSERT(lsock_socket_wait_for_ready_read(s, 3000));
    ASSERT_EQ(lsock_socket_peek(s, hdr, 4), 4);
    uint32_t n = (uint32_t)hdr[0] << 24 | (uint32_t)hdr[1] << 16 | (uint32_t)hdr[2] << 8 | hdr[3];
    ASSERT(n < size);
    while (lsock_socket_bytes_available(s) < 4 + (int64_t)n)
        ASSERT(lsock_socket_wait_for_ready_read(s, 3000));
    ASSERT_EQ(lsock_socket_skip(s, 4), 4);
    ASSERT_EQ(lsock_socket_read(s, out, n), (int64_t)n);
    out[n] = '\0';
}

static void command_protocol(lsock_socket *asker, lsock_socket *answerer)
{
    char buf[128], want[160];
    for (int i = 0; i < 20; i++) {
        snprintf(buf, sizeof buf, "command %d", i);
        send_frame(asker, buf);
        ASSERT(lsock_socket_wait_for_bytes_written(asker, 3000));
        recv_frame(answerer, buf, sizeof buf);
        snprintf(want, sizeof want, "command %d", i);
        ASSERT(strcmp(buf, want) == 0);
        snprintf(want, sizeof want, "reply to %s", buf);
        send_frame(answerer, want);
        ASSERT(lsock_socket_wait_for_bytes_written(answerer, 3000));
        recv_frame(asker, buf, sizeof buf);
        ASSERT(strcmp(buf, want) == 0);
    }
}

TEST(framed_command_protocol_client_to_server)
{
    pair p;
    pair_open_mode(&p, NULL, LSOCK_READ_WRITE);
    command_protocol(p.client, p.peer);
    pair_close(&p);
}

TEST(framed_command_protocol_server_to_client)
{
    pair p;
    pair_open_mode(&p, NULL, LSOCK_READ_WRITE);
    command_protocol(p.peer, p.client);
    pair_close(&p);
}

TEST(full_path_and_bare_name_reach_the_same_server)
{
    const char *name = test_name("full");
    char full[512];
    snprintf(full, sizeof full, "%s", path_of(name));
    lsock_server *srv = lsock_server_new(NULL);
    ASSERT(lsock_server_listen(srv, full));
    ASSERT(strcmp(lsock_server_name(srv), full) == 0);
    ASSERT(strcmp(lsock_server_full_server_name(srv), full) == 0);
    const char *names[2] = {full, name};
    for (int i = 0; i < 2; i++) {
        lsock_socket *c = lsock_socket_new(NULL);
        ASSERT(lsock_socket_connect(c, names[i], LSOCK_READ_WRITE));
        ASSERT(strcmp(lsock_socket_server_name(c), names[i]) == 0);
        ASSERT(strcmp(lsock_socket_full_server_name(c), full) == 0);
        ASSERT(lsock_server_wait_for_new_connection(srv, 3000, NULL));
        lsock_socket_free(lsock_server_next_pending_connection(srv));
        lsock_socket_free(c);
    }
    lsock_server_free(srv);
}

/* ---- descriptors ------------------------------------------------------------------------- */

TEST(set_descriptor_on_a_socketpair)
{
    raw_fd sv[2];
    raw_socketpair(sv); /* on Windows the two ends of a pipe */
    lsock_socket *s = lsock_socket_new(NULL);
    ASSERT(lsock_socket_set_descriptor(s, sv[0], LSOCK_CONNECTED, LSOCK_READ_WRITE));
    ASSERT_EQ(lsock_socket_descriptor(s), sv[0]);
    ASSERT_EQ(lsock_socket_state(s), LSOCK_CONNECTED);
    ASSERT(lsock_socket_is_valid(s));
    write_all_raw(sv[1], "hi", 2);
    ASSERT(lsock_socket_wait_for_ready_read(s, 3000));
    char buf[4];
    ASSERT_EQ(lsock_socket_read(s, buf, 4), 2);
    lsock_socket_free(s);
    raw_close(sv[1]);
}

/* Qt 5's setSocketDescriptor(-1) returns false but leaves the socket ConnectedState; lsock
 * refuses -1 and stays unconnected (a deliberate difference). */
TEST(set_descriptor_with_minus_one)
{
    lsock_socket *s = lsock_socket_new(NULL);
    ASSERT(!lsock_socket_set_descriptor(s, -1, LSOCK_CONNECTED, LSOCK_READ_WRITE));
    ASSERT_ERR(lsock_socket_error(s), LSOCK_ERR_UNSUPPORTED_OPERATION);
    ASSERT_EQ(lsock_socket_state(s), LSOCK_UNCONNECTED);
    ASSERT_EQ(lsock_socket_descriptor(s), -1);
    lsock_socket_free(s);
}

/* ---- threads and processes --------------------------------------------------------------- */

static void echo_ready_read(lsock_socket *s, void *u)
{
    char line[256];
    while (lsock_socket_can_read_line(s)) {
        int64_t n = lsock_socket_read_line(s, line, sizeof line);
        ASSERT(n > 0);
        ASSERT_EQ(lsock_socket_write(s, line, n), n);
    }
}

static void echo_disconnected(lsock_socket *s, void *u)
{
    int *left = u;
    (*left)--;
    lsock_socket_free(s);
}

static void echo_new_connection(lsock_server *srv, void *u)
{
    static const lsock_socket_callbacks cb = {.ready_read = echo_ready_read,
                                              .disconnected = echo_disconnected};
    lsock_socket *s;
    while ((s = lsock_server_next_pending_connection(srv)) != NULL) {
        lsock_socket_set_callbacks(s, &cb, u);
        echo_ready_read(s, u);
    }
}

typedef struct echo_server {
    const char *name;
    int clients;
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool ready;
} echo_server;

/* Serves `clients` connections on its own loop in its own thread, then returns. */
static void *echo_server_main(void *arg)
{
    echo_server *e = arg;
    lsock_loop *loop = lsock_loop_new();
    lsock_server *srv = lsock_server_new(loop);
    int left = e->clients;
    lsock_server_set_new_connection_callback(srv, echo_new_connection, &left);
    ASSERT(lsock_server_listen(srv, e->name));
    pthread_mutex_lock(&e->mu);
    e->ready = true;
    pthread_cond_signal(&e->cv);
    pthread_mutex_unlock(&e->mu);
    uint64_t deadline = test_now_ms() + 20000;
    while (left > 0) {
        ASSERT(test_now_ms() < deadline);
        lsock_loop_run(loop, LSOCK_RUN_ONCE);
    }
    lsock_server_free(srv);
    ASSERT(lsock_loop_free(loop));
    return NULL;
}

/* A client process: arg is "NAME INDEX". */
CHILD_MAIN(client_exchange)
{
    char name[128];
    int i = 0;
    if (sscanf(arg, "%127s %d", name, &i) != 2) return 2;
    lsock_socket *c = lsock_socket_new(NULL);
    if (!lsock_socket_connect(c, name, LSOCK_READ_WRITE)) return 3;
    char msg[64], got[64];
    int m = snprintf(msg, sizeof msg, "hello %d\n", i);
    if (lsock_socket_write(c, msg, m) != m) return 4;
    while (!lsock_socket_can_read_line(c))
        if (!lsock_socket_wait_for_ready_read(c, 5000)) return 5;
    if (lsock_socket_read_line(c, got, sizeof got) != m || strcmp(got, msg) != 0) return 6;
    lsock_socket_disconnect(c);
    lsock_socket_free(c);
    return 0;
}

typedef struct client_arg {
    const char *name;
    int i, rc;
} client_arg;

/* Each client thread has its own loop, connects, exchanges a line, disconnects. */
static void *client_thread(void *arg)
{
    client_arg *a = arg;
    lsock_loop *loop = lsock_loop_new();
    lsock_socket *c = lsock_socket_new(loop);
    rec r;
    rec_init_qt(&r);
    lsock_socket_set_callbacks(c, &rec_cbs, &r);
    a->rc = 1;
    if (lsock_socket_connect(c, a->name, LSOCK_READ_WRITE)) {
        char msg[64], got[64];
        int m = snprintf(msg, sizeof msg, "thread %d\n", a->i);
        lsock_socket_write(c, msg, m);
        uint64_t deadline = test_now_ms() + 10000;
        while (!lsock_socket_can_read_line(c) && test_now_ms() < deadline &&
               lsock_socket_state(c) == LSOCK_CONNECTED)
            lsock_loop_run(loop, LSOCK_RUN_ONCE);
        if (lsock_socket_read_line(c, got, sizeof got) == m && strcmp(got, msg) == 0) a->rc = 0;
    }
    lsock_socket_free(c);
    lsock_loop_free(loop);
    return NULL;
}

static void threaded_connections(int n)
{
    echo_server e = {.name = test_name("thr"), .clients = n};
    ASSERT_EQ(pthread_mutex_init(&e.mu, NULL), 0);
    ASSERT_EQ(pthread_cond_init(&e.cv, NULL), 0);
    ASSERT_EQ(pthread_create(&e.thread, NULL, echo_server_main, &e), 0);
    pthread_mutex_lock(&e.mu);
    while (!e.ready)
        pthread_cond_wait(&e.cv, &e.mu);
    pthread_mutex_unlock(&e.mu);
    pthread_t t[20];
    client_arg a[20];
    for (int i = 0; i < n; i++) {
        a[i] = (client_arg){.name = e.name, .i = i, .rc = -1};
        ASSERT_EQ(pthread_create(&t[i], NULL, client_thread, &a[i]), 0);
    }
    for (int i = 0; i < n; i++) {
        pthread_join(t[i], NULL);
        ASSERT_EQ(a[i].rc, 0);
    }
    pthread_join(e.thread, NULL);
}

TEST(threaded_connections_1)
{
    threaded_connections(1);
}

TEST(threaded_connections_10)
{
    threaded_connections(10);
}

TEST(threaded_connections_20)
{
    threaded_connections(20);
}

static void process_connections(int n)
{
    lsock_loop *loop = loop_new();
    const char *name = test_name("proc");
    lsock_server *srv = lsock_server_new(loop);
    int left = n;
    lsock_server_set_new_connection_callback(srv, echo_new_connection, &left);
    ASSERT(lsock_server_listen(srv, name));
    child kids[30];
    for (int i = 0; i < n; i++) {
        char arg[160];
        snprintf(arg, sizeof arg, "%s %d", name, i);
        child_start(&kids[i], "client_exchange", arg);
    }
    RUN_UNTIL(loop, left == 0, 20000);
    for (int i = 0; i < n; i++)
        ASSERT_EQ(child_wait(&kids[i], 10000), 0);
    lsock_server_free(srv);
    loop_free(loop);
}

TEST(process_connections_1)
{
    process_connections(1);
}

TEST(process_connections_3)
{
    process_connections(3);
}

TEST(process_connections_10)
{
    process_connections(10);
}

TEST(process_connections_30)
{
    process_connections(30);
}

TEST(long_path_fails_to_listen_and_to_connect)
{
    char name[300];
    memset(name, 'a', 256);
    name[256] = '\0';
    lsock_server *srv = lsock_server_new(NULL);
    ASSERT(!lsock_server_listen(srv, name));
    ASSERT(!lsock_server_is_listening(srv));
    ASSERT_ERR(lsock_server_error(srv), LSOCK_ERR_SERVER_NOT_FOUND);
    lsock_server_free(srv);
    rec r;
    rec_init_qt(&r);
    lsock_socket *c = lsock_socket_new(NULL);
    lsock_socket_set_callbacks(c, &rec_cbs, &r);
    ASSERT(!lsock_socket_connect(c, name, LSOCK_READ_WRITE));
    ASSERT_EQ(lsock_socket_state(c), LSOCK_UNCONNECTED);
    ASSERT_ERR(lsock_socket_error(c), LSOCK_ERR_SERVER_NOT_FOUND);
    ASSERT(strcmp(r.log, "state:CONNECTING error:SERVER_NOT_FOUND state:UNCONNECTED") == 0);
    lsock_socket_free(c);
}

/* ---- waiting ----------------------------------------------------------------------------- */

TEST(wait_for_disconnected_when_the_client_disconnects)
{
    pair p;
    pair_open_mode(&p, NULL, LSOCK_READ_WRITE);
    lsock_socket_disconnect(p.client);
    uint64_t t0 = test_now_ms();
    ASSERT(lsock_socket_wait_for_disconnected(p.peer, 3000));
    ASSERT(test_now_ms() - t0 < 2000);
    ASSERT_EQ(lsock_socket_state(p.peer), LSOCK_UNCONNECTED);
    pair_close(&p);
}

TEST(wait_for_disconnected_when_the_server_disconnects)
{
    pair p;
    pair_open_mode(&p, NULL, LSOCK_READ_WRITE);
    lsock_socket_close(p.peer);
    ASSERT_EQ(lsock_socket_state(p.peer), LSOCK_UNCONNECTED);
    uint64_t t0 = test_now_ms();
    ASSERT(lsock_socket_wait_for_disconnected(p.client, 3000));
    ASSERT(test_now_ms() - t0 < 2000);
    ASSERT_EQ(lsock_socket_state(p.client), LSOCK_UNCONNECTED);
    pair_close(&p);
}

static void read_one_then_wait(lsock_socket *s, rec *r)
{
    char c;
    ASSERT_EQ(lsock_socket_read(s, &c, 1), 1);
    uint64_t t0 = test_now_ms();
    ASSERT(!lsock_socket_wait_for_ready_read(s, 3000)); /* the peer is gone: at once */
    ASSERT(test_now_ms() - t0 < 2000);
    r->user = (void *)1;
}

TEST(wait_for_ready_read_on_a_disconnected_socket_returns_at_once)
{
    pair p;
    pair_open_mode(&p, NULL, LSOCK_READ_WRITE);
    rec r;
    rec_init_qt(&r);
    r.on_ready_read = read_one_then_wait;
    lsock_socket_set_callbacks(p.client, &rec_cbs, &r);
    ASSERT_EQ(lsock_socket_write(p.peer, "\n", 1), 1);
    ASSERT(lsock_socket_wait_for_bytes_written(p.peer, 3000));
    lsock_socket_abort(p.peer);
    uint64_t t0 = test_now_ms();
    lsock_socket_wait_for_ready_read(p.client, 3000);
    ASSERT(r.user == (void *)1);
    ASSERT(test_now_ms() - t0 < 2000);
    ASSERT_EQ(lsock_socket_state(p.client), LSOCK_UNCONNECTED);
    t0 = test_now_ms();
    ASSERT(!lsock_socket_wait_for_ready_read(p.client, 3000));
    ASSERT(test_now_ms() - t0 < 2000);
    pair_close(&p);
}

/* The client writes a byte and closes; the server's end still reads it inside about_to_close
 * when it closes in turn. */
TEST(delayed_disconnect_keeps_data_readable_in_about_to_close)
{
    pair p;
    pair_open_mode(&p, NULL, LSOCK_READ_WRITE);
    rec r;
    rec_init_qt(&r);
    lsock_socket_set_callbacks(p.peer, &rec_cbs, &r);
    ASSERT_EQ(lsock_socket_write(p.client, "x", 1), 1);
    lsock_socket_close(p.client);
    ASSERT(lsock_socket_wait_for_ready_read(p.peer, 3000));
    lsock_socket_close(p.peer);
    ASSERT_EQ(r.about_to_close, 1);
    ASSERT(r.open_in_about_to_close);
    ASSERT_EQ(r.avail_in_about_to_close, 1);
    pair_close(&p);
}

/* ---- names, recycling -------------------------------------------------------------------- */

TEST(listen_after_remove_server)
{
    const char *name = test_name("rm");
    ASSERT(lsock_remove_server(name));
    lsock_server *a = lsock_server_new(NULL), *b = lsock_server_new(NULL);
    ASSERT(lsock_server_listen(a, name));
    ASSERT(!lsock_server_listen(b, name));
    ASSERT_ERR(lsock_server_error(b), LSOCK_ERR_ADDRESS_IN_USE);
    ASSERT(lsock_remove_server(name));
#ifdef _WIN32
    /* Qt: on Windows removeServer() does nothing; a's pipe holds the name until a closes. */
    ASSERT(!lsock_server_listen(b, name));
    ASSERT_ERR(lsock_server_error(b), LSOCK_ERR_ADDRESS_IN_USE);
    lsock_server_close(a);
#endif
    ASSERT(lsock_server_listen(b, name));
    lsock_socket *c = lsock_socket_new(NULL);
    ASSERT(lsock_socket_connect(c, name, LSOCK_READ_WRITE));
    ASSERT(lsock_server_wait_for_new_connection(b, 3000, NULL));
    lsock_socket_free(c);
    lsock_server_free(a);
    lsock_server_free(b);
}

TEST(recycle_server)
{
    const char *name = test_name("recycle");
    lsock_server *srv = lsock_server_new(NULL);
    for (int round = 0; round < 3; round++) {
        ASSERT(lsock_server_listen(srv, name));
        lsock_socket *c = lsock_socket_new(NULL);
        ASSERT(lsock_socket_connect(c, name, LSOCK_READ_WRITE));
        ASSERT(lsock_server_wait_for_new_connection(srv, 3000, NULL));
        lsock_socket *s = lsock_server_next_pending_connection(srv);
        ASSERT(s != NULL);
        lsock_socket_free(s);
        lsock_socket_free(c);
        lsock_server_close(srv);
        ASSERT(!lsock_server_is_listening(srv));
    }
    lsock_server_free(srv);
}

TEST(recycle_client_socket)
{
    const char *name = test_name("recycle");
    lsock_server *srv = lsock_server_new(NULL);
    ASSERT(lsock_server_listen(srv, name));
    lsock_socket *c = lsock_socket_new(NULL);
    for (int round = 0; round < 3; round++) {
        ASSERT(lsock_socket_connect(c, name, LSOCK_READ_WRITE));
        ASSERT(lsock_server_wait_for_new_connection(srv, 3000, NULL));
        lsock_socket *s = lsock_server_next_pending_connection(srv);
        char buf[16];
        ASSERT_EQ(lsock_socket_write(s, "data\n", 5), 5);
        ASSERT(lsock_socket_wait_for_ready_read(c, 3000));
        ASSERT_EQ(lsock_socket_read_line(c, buf, sizeof buf), 5);
        ASSERT(strcmp(buf, "data\n") == 0);
        lsock_socket_disconnect(c);
        ASSERT_EQ(lsock_socket_state(c), LSOCK_UNCONNECTED);
        lsock_socket_free(s);
    }
    lsock_socket_free(c);
    lsock_server_free(srv);
}

/* Qt: connectToServer() on a connected socket emits errorOccurred(OperationError) and keeps
 * the connection (no state change). */
TEST(connect_on_a_connected_socket_emits_operation_error_and_keeps_the_connection)
{
    pair p;
    pair_open_mode(&p, NULL, LSOCK_READ_WRITE);
    rec r;
    rec_init_qt(&r);
    lsock_socket_set_callbacks(p.client, &rec_cbs, &r);
    ASSERT(!lsock_socket_connect(p.client, p.name, LSOCK_READ_WRITE));
    ASSERT_EQ(lsock_socket_state(p.client), LSOCK_CONNECTED);
    ASSERT_EQ(r.state_changes, 0);
    fprintf(stderr, "callbacks: \"%s\" (Qt: \"error:OPERATION\")\n", r.log);
    ASSERT(strcmp(r.log, "error:OPERATION") == 0);
    ASSERT_EQ(lsock_socket_write(p.client, "ok", 2), 2);
    ASSERT(lsock_socket_wait_for_ready_read(p.peer, 3000));
    pair_close(&p);
}

/* ---- write-only, writing and disconnecting ----------------------------------------------- */

TEST(write_only_socket)
{
    pair p;
    pair_open_mode(&p, NULL, LSOCK_WRITE_ONLY);
    ASSERT_EQ(lsock_socket_open_mode(p.client), (unsigned)LSOCK_WRITE_ONLY);
    ASSERT_EQ(lsock_socket_state(p.client), LSOCK_CONNECTED);
    ASSERT_EQ(lsock_socket_write(p.client, "w", 1), 1);
    ASSERT(lsock_socket_wait_for_ready_read(p.peer, 3000));
    ASSERT_EQ(lsock_socket_write(p.peer, "r", 1), 1);
    ASSERT_EQ(lsock_socket_bytes_available(p.client), 0);
    lsock_socket_abort(p.peer);
    ASSERT(lsock_socket_wait_for_disconnected(p.client, 3000));
    ASSERT_EQ(lsock_socket_state(p.client), LSOCK_UNCONNECTED);
    ASSERT_EQ(lsock_socket_bytes_available(p.client), 0);
    pair_close(&p);
}

static void write_to_client_and_disconnect(int chunks)
{
    lsock_loop *loop = loop_new();
    pair p;
    pair_open_mode(&p, loop, LSOCK_READ_WRITE);
    rec r;
    rec_init_qt(&r);
    lsock_socket_set_callbacks(p.client, &rec_cbs, &r);
    size_t chunk = 2048, total = chunk * (size_t)chunks;
    unsigned char *data = qt_pattern_new(total);
    for (int i = 0; i < chunks; i++)
        ASSERT_EQ(lsock_socket_write(p.peer, data + chunk * (size_t)i, (int64_t)chunk),
                  (int64_t)chunk);
    ASSERT(lsock_socket_wait_for_bytes_written(p.peer, 3000) ||
           lsock_socket_bytes_to_write(p.peer) == 0);
    lsock_socket_close(p.peer);
    lsock_server_close(p.srv);
    RUN_UNTIL(loop, r.rcf == 1 && r.disconnected == 1, 5000);
    run_for(loop, 50);
    ASSERT_EQ(r.rcf, 1);
    ASSERT_EQ(lsock_socket_state(p.client), LSOCK_UNCONNECTED);
    ASSERT_EQ(lsock_socket_bytes_available(p.client), (int64_t)total);
    unsigned char *got = malloc(total);
    ASSERT_EQ(lsock_socket_read(p.client, got, (int64_t)total), (int64_t)total);
    ASSERT(memcmp(got, data, total) == 0);
    free(got);
    free(data);
    pair_close(&p);
    loop_free(loop);
}

TEST(write_to_client_and_disconnect_1_chunk)
{
    write_to_client_and_disconnect(1);
}

TEST(write_to_client_and_disconnect_20_chunks)
{
    write_to_client_and_disconnect(20);
}

/* Qt: the peer aborted, the client has not noticed yet: putChar() still succeeds (the byte is
 * buffered), waitForBytesWritten() fails, errorOccurred fires once, the state ends
 * UnconnectedState. */
TEST(write_to_a_disconnected_socket)
{
    pair p;
    pair_open_mode(&p, NULL, LSOCK_READ_WRITE);
    rec r;
    rec_init_qt(&r);
    lsock_socket_set_callbacks(p.client, &rec_cbs, &r);
    lsock_socket_abort(p.peer);
    ASSERT_EQ(lsock_socket_state(p.client), LSOCK_CONNECTED);
    int64_t w = lsock_socket_write(p.client, "", 1);
    fprintf(stderr, "write returned %lld (Qt: 1)\n", (long long)w);
    ASSERT(!lsock_socket_wait_for_bytes_written(p.client, 3000));
    ASSERT_EQ(r.errors, 1);
    ASSERT_ERR(r.last_error, LSOCK_ERR_PEER_CLOSED);
    ASSERT_EQ(lsock_socket_state(p.client), LSOCK_UNCONNECTED);
    ASSERT_EQ(w, 1);
    pair_close(&p);
}

TEST(bytes_written_counts_every_byte)
{
    lsock_loop *loop = loop_new();
    pair p;
    pair_open_mode(&p, loop, LSOCK_READ_WRITE);
    rec r;
    rec_init_qt(&r);
    lsock_socket_set_callbacks(p.client, &rec_cbs, &r);
    size_t n = 4 * 1024 * 1024;
    unsigned char *data = qt_pattern_new(n), *buf = malloc(65536);
    ASSERT_EQ(lsock_socket_write(p.client, data, 1000), 1000);
    ASSERT(lsock_socket_wait_for_bytes_written(p.client, 3000));
    ASSERT_EQ(r.written, 1000);
    ASSERT_EQ(lsock_socket_write(p.client, data, (int64_t)n), (int64_t)n);
    size_t got = 0;
    uint64_t deadline = test_now_ms() + 10000;
    while (got < n + 1000 || r.written < (int64_t)(n + 1000)) {
        ASSERT(test_now_ms() < deadline);
        lsock_loop_run(loop, LSOCK_RUN_ONCE);
        int64_t k;
        while ((k = lsock_socket_read(p.peer, buf, 65536)) > 0)
            got += (size_t)k;
    }
    ASSERT_EQ(r.written, (int64_t)(n + 1000));
    ASSERT_EQ(lsock_socket_bytes_to_write(p.client), 0);
    free(data);
    free(buf);
    pair_close(&p);
    loop_free(loop);
}

/* ---- disconnect notifications ------------------------------------------------------------ */

TEST(state_is_unconnected_inside_disconnect_callbacks_sync)
{
    pair p;
    pair_open_mode(&p, NULL, LSOCK_READ_WRITE);
    rec r;
    rec_init_qt(&r);
    lsock_socket_set_callbacks(p.client, &rec_cbs, &r);
    lsock_socket_free(p.peer);
    p.peer = NULL;
    ASSERT(!lsock_socket_wait_for_ready_read(p.client, 3000));
    ASSERT_EQ(r.rcf, 1);
    ASSERT_EQ(r.disconnected, 1);
    ASSERT_EQ(r.state_in_rcf, LSOCK_UNCONNECTED);
    ASSERT_EQ(r.state_in_disconnected, LSOCK_UNCONNECTED);
    ASSERT_EQ(lsock_socket_write(p.client, "", 1), -1);
    pair_close(&p);
}

TEST(state_is_unconnected_inside_disconnect_callbacks_async)
{
    lsock_loop *loop = loop_new();
    pair p;
    pair_open_mode(&p, loop, LSOCK_READ_WRITE);
    rec r;
    rec_init_qt(&r);
    lsock_socket_set_callbacks(p.client, &rec_cbs, &r);
    lsock_socket_free(p.peer);
    p.peer = NULL;
    RUN_UNTIL(loop, r.disconnected == 1, 5000);
    ASSERT_EQ(r.rcf, 1);
    ASSERT_EQ(r.state_in_rcf, LSOCK_UNCONNECTED);
    ASSERT_EQ(r.state_in_disconnected, LSOCK_UNCONNECTED);
    pair_close(&p);
    loop_free(loop);
}

/* ---- socket options and listen_descriptor ------------------------------------------------ */

static void check_mode(unsigned option, unsigned mode)
{
    const char *name = test_name("mode");
    lsock_server *srv = lsock_server_new(NULL);
    ASSERT(lsock_server_set_socket_options(srv, option));
    ASSERT_EQ(lsock_server_socket_options(srv), option);
    ASSERT(lsock_server_listen(srv, name));
    /* The socket file's mode; on Windows the pipe's DACL, read as a mode. */
    ASSERT_EQ(access_mode_of(name), mode);
    lsock_server_free(srv);
}

TEST(user_access_option_file_mode)
{
    check_mode(LSOCK_USER_ACCESS, 0700);
}

TEST(group_access_option_file_mode)
{
    check_mode(LSOCK_GROUP_ACCESS, 0070);
}

TEST(other_access_option_file_mode)
{
    check_mode(LSOCK_OTHER_ACCESS, 0007);
}

TEST(world_access_option_file_mode)
{
    check_mode(LSOCK_WORLD_ACCESS, 0777);
}

static int bound_listener(const char *path, bool abstract)
{
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    ASSERT(fd >= 0);
    struct sockaddr_un a;
    memset(&a, 0, sizeof a);
    a.sun_family = AF_UNIX;
    socklen_t len;
    if (abstract) {
        memcpy(a.sun_path + 1, path, strlen(path));
        len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + strlen(path));
    } else {
        strcpy(a.sun_path, path);
        len = sizeof a;
    }
    ASSERT_EQ(bind(fd, (struct sockaddr *)&a, len), 0);
    ASSERT_EQ(listen(fd, 50), 0);
    return fd;
}

TEST(listen_descriptor_with_a_normal_socket)
{
#ifdef _WIN32
    SKIP("lsock_server_listen_descriptor() is not supported on Windows: a server is a set of "
         "pipe instances that lsock creates");
#endif
    const char *name = test_name("lfd");
    char path[512];
    snprintf(path, sizeof path, "%s", path_of(name));
    int fd = bound_listener(path, false);
    lsock_server *srv = lsock_server_new(NULL);
    ASSERT(lsock_server_listen_descriptor(srv, fd));
    ASSERT(lsock_server_is_listening(srv));
    ASSERT(strcmp(lsock_server_full_server_name(srv), path) == 0);
    ASSERT(strcmp(lsock_server_name(srv), name) == 0);
    lsock_socket *c = lsock_socket_new(NULL);
    ASSERT(lsock_socket_connect(c, name, LSOCK_READ_WRITE));
    ASSERT(lsock_server_wait_for_new_connection(srv, 3000, NULL));
    lsock_socket_free(c);
    lsock_server_free(srv);
    unlink(path);
}

/* Qt 6.2+ (as lsock): the full name of an abstract socket is its name without the leading
 * NUL (Qt 5 shows it as "@name"). Qt 6 also sets AbstractNamespaceOption on the server, so a
 * later listen(name) would bind an abstract name too; lsock keeps the options the user set
 * (a deliberate difference, unix.listen_descriptor_on_an_abstract_socket_...). */
TEST(listen_descriptor_with_an_abstract_socket)
{
#ifdef _WIN32
    SKIP("lsock_server_listen_descriptor() is not supported on Windows, and the abstract "
         "namespace is Linux only");
#endif
    char path[256];
    snprintf(path, sizeof path, "/tmp/abstract/%s", test_name("abs"));
    int fd = bound_listener(path, true);
    lsock_server *srv = lsock_server_new(NULL);
    ASSERT(lsock_server_listen_descriptor(srv, fd));
    ASSERT(lsock_server_is_listening(srv));
    ASSERT(strcmp(lsock_server_full_server_name(srv), path) == 0);
    ASSERT_STR_EQ(lsock_server_name(srv), path); /* Qt 6's parseSockaddr: an abstract name whole */
    ASSERT_EQ(lsock_server_socket_options(srv), 0);
    lsock_socket *c = lsock_socket_new(NULL);
    ASSERT(lsock_socket_set_options(c, LSOCK_ABSTRACT_NAMESPACE));
    ASSERT(lsock_socket_connect(c, path, LSOCK_READ_WRITE));
    ASSERT(lsock_server_wait_for_new_connection(srv, 3000, NULL));
    lsock_socket_free(c);
    lsock_server_free(srv);
}

/* Qt accepts any descriptor (a socketpair end: listening, empty names, no connection ever);
 * lsock refuses one that is not a listening socket (a deliberate difference). */
TEST(listen_descriptor_with_a_socketpair)
{
    raw_fd sv[2];
    raw_socketpair(sv); /* on Windows the two ends of a pipe, refused all the same */
    lsock_server *srv = lsock_server_new(NULL);
    ASSERT(!lsock_server_listen_descriptor(srv, sv[0]));
    ASSERT_ERR(lsock_server_error(srv), LSOCK_ERR_UNSUPPORTED_OPERATION);
    ASSERT(!lsock_server_is_listening(srv));
    ASSERT(strcmp(lsock_server_full_server_name(srv), "") == 0);
    ASSERT(strcmp(lsock_server_name(srv), "") == 0);
    lsock_server_free(srv);
    raw_close(sv[0]);
    raw_close(sv[1]);
}

TEST_MAIN()
