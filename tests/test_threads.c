/*
 * Threads (also run under ThreadSanitizer): one loop per thread with its own server and
 * client, blocking clients in threads against a loop server, lsock_loop_wakeup() from other
 * threads.
 */
#include "test.h"
#include "lsock.h"

#include <fcntl.h>
#ifndef _WIN32
#include <poll.h>
#endif
#include <pthread.h>
#include <signal.h>
#include <sched.h>
#include <stdatomic.h>
#include <time.h>
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

/* ---- one loop per thread: a server and a client exchanging lines ----------------------- */

enum { MESSAGES = 50 };

typedef struct worker {
    char name[128];
    int index;
    int replies; /* lines the client got back */
    int echoed;  /* lines the server side echoed */
    bool ok;
    lsock_socket *peer;
    lsock_socket *client;
    pthread_t th;
} worker;

static void worker_peer_ready_read(lsock_socket *s, void *u)
{
    worker *w = u;
    char line[128];
    while (lsock_socket_can_read_line(s)) {
        int64_t n = lsock_socket_read_line(s, line, sizeof line);
        ASSERT(n > 0);
        ASSERT_EQ(lsock_socket_write(s, line, n), n);
        w->echoed++;
    }
}

static void worker_send(worker *w)
{
    char msg[64];
    int m = snprintf(msg, sizeof msg, "thread %d message %d\n", w->index, w->replies);
    ASSERT_EQ(lsock_socket_write(w->client, msg, m), m);
}

static void worker_client_ready_read(lsock_socket *s, void *u)
{
    worker *w = u;
    char line[128], want[64];
    while (lsock_socket_can_read_line(s)) {
        ASSERT(lsock_socket_read_line(s, line, sizeof line) > 0);
        snprintf(want, sizeof want, "thread %d message %d\n", w->index, w->replies);
        ASSERT_STR_EQ(line, want);
        w->replies++;
        if (w->replies < MESSAGES) worker_send(w);
    }
}

static void *worker_main(void *arg)
{
    worker *w = arg;
    lsock_loop *loop = lsock_loop_new();
    ASSERT(loop != NULL);
    lsock_timer *tick = lsock_timer_new(loop, tick_cb, NULL);
    ASSERT(lsock_timer_start(tick, 10, 10));
    lsock_server *srv = lsock_server_new(loop);
    ASSERT(lsock_server_listen(srv, w->name));
    w->client = lsock_socket_new(loop);
    lsock_socket_callbacks ccb;
    memset(&ccb, 0, sizeof ccb);
    ccb.ready_read = worker_client_ready_read;
    lsock_socket_set_callbacks(w->client, &ccb, w);
    ASSERT(lsock_socket_connect(w->client, w->name, LSOCK_READ_WRITE));
    RUN_UNTIL(loop, lsock_server_has_pending_connections(srv), 10000);
    w->peer = lsock_server_next_pending_connection(srv);
    ASSERT(w->peer != NULL);
    lsock_socket_callbacks pcb;
    memset(&pcb, 0, sizeof pcb);
    pcb.ready_read = worker_peer_ready_read;
    lsock_socket_set_callbacks(w->peer, &pcb, w);
    worker_send(w);
    RUN_UNTIL(loop, w->replies == MESSAGES, 20000);
    ASSERT_EQ(w->echoed, MESSAGES);
    lsock_socket_free(w->client);
    lsock_socket_free(w->peer);
    lsock_server_free(srv);
    lsock_timer_free(tick);
    ASSERT(lsock_loop_free(loop));
    w->ok = true;
    return NULL;
}

static void run_workers(int n)
{
    worker *ws = calloc((size_t)n, sizeof *ws);
    ASSERT(ws != NULL);
    for (int i = 0; i < n; i++) {
        snprintf(ws[i].name, sizeof ws[i].name, "%s", test_name("thr"));
        ws[i].index = i;
    }
    for (int i = 0; i < n; i++)
        ASSERT_EQ(pthread_create(&ws[i].th, NULL, worker_main, &ws[i]), 0);
    for (int i = 0; i < n; i++) {
        ASSERT_EQ(pthread_join(ws[i].th, NULL), 0);
        ASSERT(ws[i].ok);
        ASSERT_EQ(ws[i].replies, MESSAGES);
        ASSERT(!file_exists(path_of(ws[i].name)));
    }
    free(ws);
}

TEST(one_thread_with_its_own_loop_exchanges_messages)
{
    run_workers(1);
}

TEST(five_threads_with_their_own_loops_exchange_messages)
{
    run_workers(5);
}

TEST(twenty_threads_with_their_own_loops_exchange_messages)
{
    run_workers(20);
}

/* ---- blocking clients in threads, one loop server -------------------------------------- */

typedef struct bclient {
    const char *name;
    int index;
    bool ok;
    pthread_t th;
} bclient;

static void *bclient_main(void *arg)
{
    bclient *c = arg;
    lsock_socket *s = lsock_socket_new(NULL);
    ASSERT(s != NULL);
    ASSERT(lsock_socket_connect(s, c->name, LSOCK_READ_WRITE));
    for (int i = 0; i < 20; i++) {
        char msg[64], line[128];
        int m = snprintf(msg, sizeof msg, "client %d line %d\n", c->index, i);
        ASSERT_EQ(lsock_socket_write(s, msg, m), m);
        uint64_t dl = test_now_ms() + 10000;
        while (!lsock_socket_can_read_line(s)) {
            ASSERT(test_now_ms() < dl);
            ASSERT(lsock_socket_wait_for_ready_read(s, 5000));
        }
        ASSERT_EQ(lsock_socket_read_line(s, line, sizeof line), m);
        ASSERT_STR_EQ(line, msg);
    }
    lsock_socket_disconnect(s);
    ASSERT_EQ(lsock_socket_state(s), LSOCK_UNCONNECTED);
    lsock_socket_free(s);
    c->ok = true;
    return NULL;
}

typedef struct hub {
    lsock_socket *conns[16];
    int nconns;
    int disconnected;
} hub;

static void hub_ready_read(lsock_socket *s, void *u)
{
    char line[128];
    (void)u;
    while (lsock_socket_can_read_line(s)) {
        int64_t n = lsock_socket_read_line(s, line, sizeof line);
        ASSERT(n > 0);
        ASSERT_EQ(lsock_socket_write(s, line, n), n);
    }
}

static void hub_disconnected(lsock_socket *s, void *u)
{
    hub *h = u;
    (void)s;
    h->disconnected++;
}

static void hub_new_connection(lsock_server *srv, void *u)
{
    hub *h = u;
    lsock_socket *s = lsock_server_next_pending_connection(srv);
    ASSERT(s != NULL);
    ASSERT(h->nconns < 16);
    h->conns[h->nconns++] = s;
    lsock_socket_callbacks cb;
    memset(&cb, 0, sizeof cb);
    cb.ready_read = hub_ready_read;
    cb.disconnected = hub_disconnected;
    lsock_socket_set_callbacks(s, &cb, h);
}

TEST(blocking_clients_in_eight_threads_talk_to_one_loop_server)
{
    lsock_loop *loop = loop_new();
    const char *name = test_name("hub");
    hub h;
    memset(&h, 0, sizeof h);
    lsock_server *srv = lsock_server_new(loop);
    lsock_server_set_new_connection_callback(srv, hub_new_connection, &h);
    ASSERT(lsock_server_listen(srv, name));
    enum { N = 8 };
    bclient cs[N];
    memset(cs, 0, sizeof cs);
    for (int i = 0; i < N; i++) {
        cs[i].name = name;
        cs[i].index = i;
        ASSERT_EQ(pthread_create(&cs[i].th, NULL, bclient_main, &cs[i]), 0);
    }
    RUN_UNTIL(loop, h.disconnected == N, 30000);
    for (int i = 0; i < N; i++) {
        ASSERT_EQ(pthread_join(cs[i].th, NULL), 0);
        ASSERT(cs[i].ok);
    }
    for (int i = 0; i < h.nconns; i++)
        lsock_socket_free(h.conns[i]);
    lsock_server_free(srv);
    loop_free(loop);
}

/* A client thread with its own loop talking to a server in the main thread's loop. */
typedef struct loopclient {
    const char *name;
    int got;
    bool ok;
} loopclient;

static void loopclient_ready_read(lsock_socket *s, void *u)
{
    loopclient *c = u;
    char buf[256];
    int64_t n;
    while ((n = lsock_socket_read(s, buf, sizeof buf)) > 0)
        c->got += (int)n;
}

static void *loopclient_main(void *arg)
{
    loopclient *c = arg;
    lsock_loop *loop = lsock_loop_new();
    lsock_timer *tick = lsock_timer_new(loop, tick_cb, NULL);
    ASSERT(lsock_timer_start(tick, 10, 10));
    lsock_socket *s = lsock_socket_new(loop);
    lsock_socket_callbacks cb;
    memset(&cb, 0, sizeof cb);
    cb.ready_read = loopclient_ready_read;
    lsock_socket_set_callbacks(s, &cb, c);
    ASSERT(lsock_socket_connect(s, c->name, LSOCK_READ_WRITE));
    ASSERT_EQ(lsock_socket_write(s, "start\n", 6), 6);
    RUN_UNTIL(loop, lsock_socket_state(s) == LSOCK_UNCONNECTED, 20000);
    loopclient_ready_read(s, c);
    lsock_socket_free(s);
    lsock_timer_free(tick);
    ASSERT(lsock_loop_free(loop));
    c->ok = true;
    return NULL;
}

TEST(client_loop_thread_and_server_loop_thread_stream_a_megabyte)
{
    lsock_loop *loop = loop_new();
    const char *name = test_name("xthr");
    lsock_server *srv = lsock_server_new(loop);
    ASSERT(lsock_server_listen(srv, name));
    loopclient c;
    memset(&c, 0, sizeof c);
    c.name = name;
    pthread_t th;
    ASSERT_EQ(pthread_create(&th, NULL, loopclient_main, &c), 0);
    RUN_UNTIL(loop, lsock_server_has_pending_connections(srv), 10000);
    lsock_socket *s = lsock_server_next_pending_connection(srv);
    RUN_UNTIL(loop, lsock_socket_can_read_line(s), 10000);
    int n = 1 << 20;
    char *data = malloc((size_t)n);
    memset(data, 'm', (size_t)n);
    ASSERT_EQ(lsock_socket_write(s, data, n), n);
    lsock_socket_disconnect(s);
    RUN_UNTIL(loop, lsock_socket_state(s) == LSOCK_UNCONNECTED, 20000);
    ASSERT_EQ(pthread_join(th, NULL), 0);
    ASSERT(c.ok);
    ASSERT_EQ(c.got, n);
    free(data);
    lsock_socket_free(s);
    lsock_server_free(srv);
    loop_free(loop);
}

/* ---- lsock_loop_wakeup from other threads ---------------------------------------------- */

static void never_cb(lsock_timer *t, void *u)
{
    (void)t;
    *(int *)u += 1;
}

typedef struct waker {
    lsock_loop *loop;
    pthread_t th;
} waker;

static void *waker_main(void *arg)
{
    waker *w = arg;
    /* The wakeup may land before the loop blocks or while it is blocked: either way the
     * run must return promptly, because the wakeup stays pending until the loop sees it. */
    lsock_loop_wakeup(w->loop);
    return NULL;
}

TEST(wakeup_from_another_thread_returns_run_once_promptly)
{
    lsock_loop *loop = lsock_loop_new();
    ASSERT(loop != NULL);
    int fired = 0;
    lsock_timer *t = lsock_timer_new(loop, never_cb, &fired);
    ASSERT(lsock_timer_start(t, 60000, 60000)); /* keeps the loop blocked, never fires */
    waker w = {loop, 0};
    uint64_t t0 = test_now_ms();
    ASSERT_EQ(pthread_create(&w.th, NULL, waker_main, &w), 0);
    int rc = lsock_loop_run(loop, LSOCK_RUN_ONCE);
    uint64_t took = test_now_ms() - t0;
    ASSERT(rc != 0); /* the timer is still active */
    ASSERT(took < 2000);
    ASSERT_EQ(fired, 0);
    ASSERT_EQ(pthread_join(w.th, NULL), 0);
    lsock_timer_free(t);
    ASSERT(lsock_loop_free(loop));
}

typedef struct pinger {
    lsock_loop *loop;
    atomic_int round;
    atomic_int done;
    int rounds;
} pinger;

static void *pinger_main(void *arg)
{
    pinger *p = arg;
    for (int k = 1; k <= p->rounds; k++) {
        while (atomic_load(&p->round) < k)
            sched_yield();
        lsock_loop_wakeup(p->loop);
    }
    atomic_store(&p->done, 1);
    return NULL;
}

TEST(every_wakeup_of_many_rounds_returns_run_once)
{
    lsock_loop *loop = lsock_loop_new();
    int fired = 0;
    lsock_timer *t = lsock_timer_new(loop, never_cb, &fired);
    ASSERT(lsock_timer_start(t, 60000, 60000));
    pinger p;
    p.loop = loop;
    atomic_init(&p.round, 0);
    atomic_init(&p.done, 0);
    p.rounds = 200;
    pthread_t th;
    ASSERT_EQ(pthread_create(&th, NULL, pinger_main, &p), 0);
    uint64_t t0 = test_now_ms();
    for (int k = 1; k <= p.rounds; k++) {
        atomic_store(&p.round, k);
        lsock_loop_run(loop, LSOCK_RUN_ONCE);
    }
    ASSERT(test_now_ms() - t0 < 10000);
    ASSERT_EQ(pthread_join(th, NULL), 0);
    ASSERT_EQ(fired, 0);
    lsock_timer_free(t);
    ASSERT(lsock_loop_free(loop));
}

static void *wake_many(void *arg)
{
    lsock_loop *loop = arg;
    for (int i = 0; i < 1000; i++)
        lsock_loop_wakeup(loop);
    return NULL;
}

TEST(concurrent_wakeups_from_many_threads_are_safe)
{
    lsock_loop *loop = lsock_loop_new();
    int fired = 0;
    lsock_timer *t = lsock_timer_new(loop, never_cb, &fired);
    ASSERT(lsock_timer_start(t, 60000, 60000));
    pthread_t th[8];
    for (int i = 0; i < 8; i++)
        ASSERT_EQ(pthread_create(&th[i], NULL, wake_many, loop), 0);
    /* The loop keeps running while the wakeups arrive; each run returns. */
    uint64_t t0 = test_now_ms();
    for (int i = 0; i < 20; i++)
        ASSERT(lsock_loop_run(loop, LSOCK_RUN_NOWAIT) != 0);
    for (int i = 0; i < 8; i++)
        ASSERT_EQ(pthread_join(th[i], NULL), 0);
    /* All pending wakeups make at most a prompt return now. */
    lsock_loop_run(loop, LSOCK_RUN_NOWAIT);
    ASSERT(test_now_ms() - t0 < 10000);
    lsock_timer_free(t);
    ASSERT(lsock_loop_free(loop));
}

TEST_MAIN()
