/*
 * Regressions: each test holds a bug found in review and since fixed. Tests compute
 * their result, clean up (sockets, servers, files), then assert, so a failure leaves nothing
 * behind. Every wait is bounded by a deadline or by a callback counter.
 */
#include "test.h"
#include "lsock.h"
#include "support.h"

/* Runs the loop (RUN_ONCE) until cond holds or ms pass; evaluates to whether cond held. */
#define RUN_UNTIL_OR(loop, cond, ms)                                                               \
    ({                                                                                             \
        uint64_t dl_ = test_now_ms() + (ms);                                                       \
        while (!(cond) && test_now_ms() <= dl_)                                                    \
            lsock_loop_run((loop), LSOCK_RUN_ONCE);                                                \
        (bool)(cond);                                                                              \
    })

/* ---- A: wait_for_disconnected on a throttled loop socket ------------------------------- */

/* wait_loop(ignore_limit) used to clear s->throttled without restarting the loop's READABLE
 * watcher. After such a wait timed out, after_consume() saw throttled == 0 and never restarted
 * the watcher: the socket never read again on its loop. The wait now honours the limit (it
 * refuses a full buffer at once); the loop must still read after it. */
TEST(wait_for_disconnected_timeout_on_throttled_socket_keeps_loop_reading)
{
    lsock_loop *loop = loop_new();
    pair p;
    pair_open(&p, loop);
    ASSERT(lsock_socket_set_read_buffer_size(p.client, 128));
    unsigned char *data = pattern_new(256);
    ASSERT_EQ(lsock_socket_write(p.peer, data, 256), 256);
    RUN_UNTIL(loop, lsock_socket_bytes_available(p.client) == 128, 5000); /* now throttled */
    /* The buffer is full and the peer stays connected: refused, nothing read past the limit. */
    ASSERT(!lsock_socket_wait_for_disconnected(p.client, 20));
    ASSERT_ERR(lsock_socket_error(p.client), LSOCK_ERR_OPERATION);
    ASSERT_EQ(lsock_socket_bytes_available(p.client), 128);
    unsigned char buf[512];
    ASSERT_EQ(lsock_socket_read(p.client, buf, sizeof buf), 128);
    ASSERT(memcmp(buf, data, 128) == 0);
    RUN_UNTIL(loop, lsock_socket_bytes_available(p.client) == 128, 5000);
    ASSERT_EQ(lsock_socket_read(p.client, buf, sizeof buf), 128);
    ASSERT(memcmp(buf, data + 128, 128) == 0);
    /* The peer sends more: the client's loop must see it. */
    ASSERT_EQ(lsock_socket_write(p.peer, "more", 4), 4);
    bool got = RUN_UNTIL_OR(loop, lsock_socket_bytes_available(p.client) == 4, 2000);
    free(data);
    pair_close(&p);
    loop_free(loop);
    ASSERT(got);
}

/* ---- B: timer repeat overflow ---------------------------------------------------------- */

static void count_fires(lsock_timer *t, void *u)
{
    int *n = u;
    if (++*n >= 5) lsock_timer_stop(t); /* bounds the test when the bug is present */
}

/* run_timers() computes "now + t->repeat" without the overflow check lsock_timer_start()
 * has for timeout_ms: a repeat of UINT64_MAX (e.g. (uint64_t)-1) wraps to "now - 1" and the
 * timer fires again and again inside one run_timers() call (an endless loop without the
 * counter above). */
TEST(timer_with_huge_repeat_fires_once_then_waits)
{
    lsock_loop *loop = lsock_loop_new();
    ASSERT(loop != NULL);
    int fired = 0;
    lsock_timer *t = lsock_timer_new(loop, count_fires, &fired);
    ASSERT(t != NULL);
    ASSERT(lsock_timer_start(t, 0, UINT64_MAX));
    lsock_loop_run(loop, LSOCK_RUN_NOWAIT);
    int timeout = lsock_loop_backend_timeout(loop);
    lsock_timer_free(t);
    ASSERT(lsock_loop_free(loop));
    ASSERT_EQ(fired, 1);
    ASSERT(timeout > 1000000);
}

/* ---- C: data the peer sent before closing is lost when a write fails ------------------- */

/* A write to a peer that has closed fails (EPIPE) and is reported later (s->broken); the
 * deferred report (pending_cb -> handle_broken, or on_io / the wait calls, which check
 * s->broken first) ends the connection without reading what the peer sent before it closed:
 * "hello" is still in the kernel and is dropped with the descriptor. The socket's own test
 * raw_peer_close_after_write_keeps_all_data_readable shows the intent: data before a peer's
 * close stays readable. */
TEST(data_before_peer_close_survives_a_failed_write_on_the_loop)
{
    lsock_loop *loop = loop_new();
    rawpair p;
    rawpair_open(&p, loop);
    rec r;
    rec_init(&r);
    lsock_socket_set_callbacks(p.s, &rec_cbs, &r);
    write_all_raw(p.pfd, "hello", 5);
    raw_close(p.pfd);
    p.pfd = RAW_NONE;
    int64_t w = lsock_socket_write(p.s, "x", 1); /* EPIPE, reported from the loop */
    bool ended = RUN_UNTIL_OR(loop, r.disconnected > 0, 5000);
    int64_t avail = lsock_socket_bytes_available(p.s);
    int ready_read = r.ready_read;
    rawpair_close(&p);
    loop_free(loop);
    ASSERT_EQ(w, 1);
    ASSERT(ended);
    ASSERT_EQ(ready_read, 1);
    ASSERT_EQ(avail, 5);
}

TEST(data_before_peer_close_survives_a_failed_write_without_loop)
{
    rawpair p;
    rawpair_open(&p, NULL);
    write_all_raw(p.pfd, "hello", 5);
    raw_close(p.pfd);
    p.pfd = RAW_NONE;
    int64_t w = lsock_socket_write(p.s, "x", 1); /* EPIPE, reported by the next wait */
    lsock_socket_wait_for_ready_read(p.s, 2000); /* true or false: "hello" must stay */
    int64_t avail = lsock_socket_bytes_available(p.s);
    rawpair_close(&p);
    ASSERT_EQ(w, 1);
    ASSERT_EQ(avail, 5);
}

/* on_io() (and wait_loop()) handle WRITABLE before READABLE. A socket with queued data whose
 * peer replies and closes without reading gets HUP|ERR (reported as both): the flush fails
 * first and the connection ends with the reply unread in the kernel. Qt's event dispatcher
 * activates the read notifier first, so Qt delivers the reply. */
TEST(reply_before_peer_close_survives_pending_queued_writes)
{
    lsock_loop *loop = loop_new();
    rawpair p;
    rawpair_open(&p, loop);
    rec r;
    rec_init(&r);
    lsock_socket_set_callbacks(p.s, &rec_cbs, &r);
    size_t n = 4u << 20;
    unsigned char *data = pattern_new(n);
    ASSERT_EQ(lsock_socket_write(p.s, data, (int64_t)n), (int64_t)n);
    ASSERT(lsock_socket_bytes_to_write(p.s) > 0); /* the kernel did not take it all */
    write_all_raw(p.pfd, "reply", 5);
    raw_close(p.pfd); /* with the client's data unread */
    p.pfd = RAW_NONE;
    bool ended = RUN_UNTIL_OR(loop, r.disconnected > 0, 5000);
    int64_t avail = lsock_socket_bytes_available(p.s);
    free(data);
    rawpair_close(&p);
    loop_free(loop);
    ASSERT(ended);
    ASSERT_EQ(avail, 5);
}

/* ---- D: abort() after a reconnect from disconnected ------------------------------------ */

typedef struct reconn {
    const char *name;
    int done;
} reconn;

static void reconnect_on_disconnected(lsock_socket *s, void *u)
{
    reconn *rc = u;
    if (rc->done++) return;
    lsock_socket_connect(s, rc->name, LSOCK_READ_WRITE);
}

/* lsock_socket_abort() sets open_mode = 0 after finish_close(), whose disconnected callback
 * may already have connected again (auto-reconnect): the new connection is CONNECTED and
 * valid but has open mode 0, so every read and write on it fails with OPERATION. */
TEST(abort_leaves_a_reconnection_from_disconnected_usable)
{
    lsock_loop *loop = loop_new();
    const char *name = test_name("reconn");
    lsock_server *srv = lsock_server_new(loop);
    ASSERT(lsock_server_listen(srv, name));
    lsock_socket *s = lsock_socket_new(loop);
    ASSERT(lsock_socket_connect(s, name, LSOCK_READ_WRITE));
    reconn rc = {name, 0};
    lsock_socket_callbacks cb = {0};
    cb.disconnected = reconnect_on_disconnected;
    lsock_socket_set_callbacks(s, &cb, &rc);
    lsock_socket_abort(s);
    lsock_state st = lsock_socket_state(s);
    unsigned mode = lsock_socket_open_mode(s);
    int64_t w = lsock_socket_write(s, "x", 1);
    lsock_socket_free(s);
    lsock_server_free(srv);
    loop_free(loop);
    ASSERT_EQ(rc.done, 1);
    ASSERT_EQ(st, LSOCK_CONNECTED);
    ASSERT_EQ(mode, LSOCK_READ_WRITE);
    ASSERT_EQ(w, 1);
}

/* ---- E: run_pending runs work queued by its own callbacks ------------------------------ */

typedef struct pump {
    lsock_socket *victim;
    int calls;
} pump;

static void pump_bytes_written(lsock_socket *s, int64_t n, void *u)
{
    pump *pm = u;
    pm->calls++;
    if (pm->victim) {
        lsock_socket_free(pm->victim); /* cancels the victim's deferred call: the last one */
        pm->victim = NULL;
    }
    if (pm->calls < 50) lsock_socket_write(s, "x", 1); /* queues this socket's call again */
}

static void nothing_written(lsock_socket *s, int64_t n, void *u) {}

/* run_pending() stops at the entry that was last when it started ("work queued by these
 * callbacks waits for the next round"); when a callback cancels that entry (frees its socket)
 * the stop never comes and work queued meanwhile runs in the same round, without polling or
 * timers: a bytes_written pump that also drops another client monopolises the loop. */
TEST(pending_work_queued_by_a_callback_waits_for_the_next_round)
{
    lsock_loop *loop = loop_new();
    pair p;
    pair_open(&p, loop);
    lsock_socket *other = lsock_socket_new(loop);
    ASSERT(lsock_socket_connect(other, p.name, LSOCK_READ_WRITE));
    pump pm = {other, 0};
    lsock_socket_callbacks a = {0}, b = {0};
    a.bytes_written = pump_bytes_written;
    b.bytes_written = nothing_written;
    lsock_socket_set_callbacks(p.client, &a, &pm);
    lsock_socket_set_callbacks(other, &b, NULL);
    ASSERT_EQ(lsock_socket_write(p.client, "a", 1), 1); /* queued first */
    ASSERT_EQ(lsock_socket_write(other, "b", 1), 1);    /* queued last */
    lsock_loop_run(loop, LSOCK_RUN_NOWAIT);
    int calls = pm.calls;
    pair_close(&p);
    loop_free(loop);
    ASSERT_EQ(calls, 1);
}

/* ---- F: header: a listening server whose queue is full is not "work" ------------------- */

/* lsock.h: lsock_loop_run() "Returns non-zero while work remains (active sockets, listening
 * servers, started timers)". A server paused on max_pending_connections has no watcher, so
 * loop_alive() says no work and lsock_loop_run(LSOCK_RUN_DEFAULT) returns while it listens. */
TEST(listening_server_with_full_queue_keeps_the_loop_alive)
{
    lsock_loop *loop = lsock_loop_new(); /* no tick timer: only the server is work */
    ASSERT(loop != NULL);
    const char *name = test_name("paused");
    lsock_server *srv = lsock_server_new(loop);
    ASSERT(lsock_server_set_max_pending_connections(srv, 1));
    ASSERT(lsock_server_listen(srv, name));
    lsock_socket *c = lsock_socket_new(NULL);
    ASSERT(lsock_socket_connect(c, name, LSOCK_READ_WRITE));
    uint64_t dl = test_now_ms() + 5000;
    while (!lsock_server_has_pending_connections(srv) && test_now_ms() < dl)
        lsock_loop_run(loop, LSOCK_RUN_NOWAIT);
    bool pending = lsock_server_has_pending_connections(srv);
    bool listening = lsock_server_is_listening(srv);
    int alive = lsock_loop_run(loop, LSOCK_RUN_NOWAIT);
    lsock_socket_free(c);
    lsock_server_free(srv);
    ASSERT(lsock_loop_free(loop));
    ASSERT(pending);
    ASSERT(listening);
    ASSERT(alive != 0);
}

/* ---- G: lsock_loop_free() inside the loop's own run ------------------------------------ */

typedef struct lf {
    lsock_loop *loop;
    bool freed;
} lf;

static void free_everything(lsock_timer *t, void *u)
{
    lf *x = u;
    lsock_timer_free(t); /* "safe inside its own callback"; the loop now has no objects */
    x->freed = lsock_loop_free(x->loop);
}

/* lsock_loop_free() checks only the object count, not whether lsock_loop_run() is on the
 * stack: freed from a callback once the last object is gone, it succeeds, and run_timers()
 * (t->in_cb, loop->nheap), then lsock_loop_run() go on using the freed loop (ASan:
 * heap-use-after-free). It should refuse (false) while the loop runs. */
TEST(loop_free_inside_a_callback_of_that_loop_refuses)
{
    lsock_loop *loop = lsock_loop_new();
    ASSERT(loop != NULL);
    lf x = {loop, false};
    lsock_timer *t = lsock_timer_new(loop, free_everything, &x);
    ASSERT(t != NULL);
    ASSERT(lsock_timer_start(t, 0, 0));
    lsock_loop_run(loop, LSOCK_RUN_NOWAIT);
    bool freed_inside = x.freed;
    if (!freed_inside) ASSERT(lsock_loop_free(loop));
    ASSERT(!freed_inside);
}

TEST(wait_for_bytes_written_with_nothing_written_says_why)
{
    pair p;
    pair_open(&p, NULL);
    ASSERT(!lsock_socket_wait_for_bytes_written(p.client, 100));
    ASSERT_ERR(lsock_socket_error(p.client), LSOCK_ERR_OPERATION);
    ASSERT(strstr(lsock_socket_error_string(p.client), "nothing written") != NULL);
    pair_close(&p);
}

TEST(close_while_connecting_fires_no_about_to_close)
{
    fullsrv f;
    fullsrv_open(&f, "busy");
    lsock_socket *s = lsock_socket_new(NULL);
    rec r;
    rec_init(&r);
    lsock_socket_set_callbacks(s, &rec_cbs, &r);
    ASSERT(lsock_socket_connect(s, f.name, LSOCK_READ_WRITE));
    int connecting = lsock_socket_state(s) == LSOCK_CONNECTING;
    rec_init(&r);
    lsock_socket_close(s);
    int fired = strstr(r.log, "about_to_close") != NULL;
    lsock_socket_free(s);
    fullsrv_close(&f);
    ASSERT(connecting);
    ASSERT(!fired);
}

TEST(write_with_limit_offers_the_kernel_room_before_refusing)
{
    lsock_loop *loop = loop_new();
    pair p;
    pair_open(&p, loop);
    ASSERT(lsock_socket_set_write_buffer_size(p.client, 4096));
    static char chunk[65536];
    /* Fill the kernel and the queue. */
    while (lsock_socket_write(p.client, chunk, sizeof chunk) > 0) {
    }
    ASSERT_EQ(lsock_socket_bytes_to_write(p.client), 4096);
    /* The reader drains everything the kernel holds; the queue is still full. */
    char buf[65536];
    size_t drained = 0;
    uint64_t dl = test_now_ms() + 5000;
    while (lsock_socket_wait_for_ready_read(p.peer, 200) || lsock_socket_bytes_available(p.peer)) {
        int64_t k;
        while ((k = lsock_socket_read(p.peer, buf, sizeof buf)) > 0)
            drained += (size_t)k;
        if (test_now_ms() > dl) break;
    }
    ASSERT(drained > 0);
    /* Without running the loop, a write must now go through to the kernel, not be refused. */
    ASSERT(lsock_socket_write(p.client, chunk, sizeof chunk) > 4096);
    pair_close(&p);
    loop_free(loop);
}

static void count_connection(lsock_server *srv, void *u)
{
    (*(int *)u)++;
}

TEST(raising_max_pending_resumes_accepting_at_once)
{
    lsock_loop *loop = loop_new();
    const char *name = test_name("maxpend");
    lsock_server *srv = lsock_server_new(loop);
    int accepted = 0;
    lsock_server_set_new_connection_callback(srv, count_connection, &accepted);
    ASSERT(lsock_server_set_max_pending_connections(srv, 1));
    ASSERT(lsock_server_listen(srv, name));
    lsock_socket *a = lsock_socket_new(NULL), *b = lsock_socket_new(NULL);
    ASSERT(lsock_socket_connect(a, name, LSOCK_READ_WRITE));
    ASSERT(lsock_socket_connect(b, name, LSOCK_READ_WRITE));
    RUN_UNTIL(loop, accepted == 1, 5000);
    run_for(loop, 20); /* paused at one: the second waits in the kernel's backlog */
    ASSERT_EQ(accepted, 1);
    ASSERT(lsock_server_set_max_pending_connections(srv, 3));
    RUN_UNTIL(loop, accepted == 2, 5000); /* nothing taken from the queue */
    lsock_socket_free(a);
    lsock_socket_free(b);
    lsock_server_free(srv);
    loop_free(loop);
}

TEST_MAIN()
