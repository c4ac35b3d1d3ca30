/*
 * Fork policy (include/lsock.h, "Fork"): a child process that frees, aborts or writes on the
 * objects it inherited never changes the parent's loop, and a child that wants to keep using
 * an inherited loop calls lsock_loop_fork() first, which gives it a backend and a wakeup
 * channel of its own. Every test runs with each backend (make test: epoll, make test-poll).
 * Unix only: Windows has no fork().
 */
#include "test.h"
#include "lsock.h"

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include "support.h"

/* Waits for the child with a deadline (support.c's child_wait) and returns its exit code (-1:
 * killed or hung, and then killed). */
static int reap(pid_t pid)
{
    child c = {.pid = pid};
    int st = child_wait(&c, 10000);
    if (st == CHILD_RUNNING) {
        child_kill(&c);
        child_wait(&c, -1);
        return -1;
    }
    return st >= 0 ? st : -1;
}

static pid_t fork_test_child(void)
{
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    ASSERT(pid >= 0);
    if (pid == 0) alarm(20); /* a child never outlives its test */
    return pid;
}

/* A loop-driven lsock socket whose raw peer the test holds, already watched for reading. */
typedef struct forked {
    lsock_loop *loop;
    rawpair p;
    rec r;
} forked;

static void forked_open(forked *f)
{
    f->loop = loop_new();
    rawpair_open(&f->p, f->loop);
    rec_init(&f->r);
    lsock_socket_set_callbacks(f->p.s, &rec_cbs, &f->r);
    lsock_loop_run(f->loop, LSOCK_RUN_NOWAIT);
}

static void forked_close(forked *f)
{
    rawpair_close(&f->p);
    loop_free(f->loop);
}

/* The parent's socket still gets ready_read for bytes sent after the child is gone. */
static void parent_still_reads(forked *f)
{
    write_all_raw(f->p.pfd, "hello", 5);
    RUN_UNTIL(f->loop, f->r.ready_read > 0, 5000);
    char buf[8];
    ASSERT_EQ(lsock_socket_read(f->p.s, buf, sizeof buf), 5);
    ASSERT(memcmp(buf, "hello", 5) == 0);
}

TEST(child_freeing_an_inherited_socket_leaves_the_parent_reading)
{
    forked f;
    forked_open(&f);
    pid_t pid = fork_test_child();
    if (pid == 0) {
        lsock_socket_free(f.p.s);
        _exit(0);
    }
    ASSERT_EQ(reap(pid), 0);
    parent_still_reads(&f);
    forked_close(&f);
}

TEST(child_aborting_an_inherited_socket_leaves_the_parent_reading)
{
    forked f;
    forked_open(&f);
    pid_t pid = fork_test_child();
    if (pid == 0) {
        lsock_socket_abort(f.p.s);
        _exit(lsock_socket_state(f.p.s) == LSOCK_UNCONNECTED ? 0 : 1);
    }
    ASSERT_EQ(reap(pid), 0);
    parent_still_reads(&f);
    forked_close(&f);
}

/* The parent wrote 10 bytes (to the kernel at once) and gathered 20 more, then forked; the
 * child let go of the socket (how). The child sends none of the parent's bytes: the peer has
 * the 10, then, once the parent's loop runs, the 20, each byte once. */
static void child_leaves_gathered_writes_to_the_parent(void (*how)(lsock_socket *))
{
    forked f;
    forked_open(&f);
    unsigned char *data = pattern_new(64);
    ASSERT_EQ(lsock_socket_write(f.p.s, data, 10), 10);
    ASSERT_EQ(lsock_socket_write(f.p.s, data + 10, 20), 20); /* gathered */
    pid_t pid = fork_test_child();
    if (pid == 0) {
        how(f.p.s);
        _exit(0);
    }
    ASSERT_EQ(reap(pid), 0);
    size_t got = 0;
    drain_raw_until(f.p.pfd, &got, 10, 5000); /* its pattern check catches a byte sent twice */
    uint64_t dl = test_now_ms() + 5000;
    while (got < 30) {
        ASSERT(test_now_ms() < dl);
        lsock_loop_run(f.loop, LSOCK_RUN_NOWAIT);
        ASSERT_EQ(drain_raw(f.p.pfd, &got), 0);
        if (got < 30) raw_wait_readable(f.p.pfd, 10);
    }
    ASSERT_EQ(got, 30);
    free(data);
    forked_close(&f);
}

static void free_socket(lsock_socket *s)
{
    lsock_socket_free(s);
}

static void abort_socket(lsock_socket *s)
{
    lsock_socket_abort(s);
}

static void wait_on_socket(lsock_socket *s)
{
    lsock_socket_wait_for_bytes_written(s, 0);
    lsock_socket_wait_for_ready_read(s, 0);
    lsock_socket_flush(s);
    lsock_socket_wait_for_disconnected(s, 0);
}

static void disconnect_socket(lsock_socket *s)
{
    lsock_socket_disconnect(s);
    lsock_socket_free(s);
}

static void loop_fork_and_run(lsock_socket *s)
{
    lsock_loop *loop = lsock_socket_loop(s);
    if (!lsock_loop_fork(loop)) _exit(3);
    for (int i = 0; i < 5; i++)
        lsock_loop_run(loop, LSOCK_RUN_NOWAIT);
    lsock_socket_free(s);
}

TEST(child_freeing_an_inherited_socket_sends_none_of_the_writes_the_parent_gathered)
{
    child_leaves_gathered_writes_to_the_parent(free_socket);
}

TEST(child_aborting_an_inherited_socket_sends_none_of_the_writes_the_parent_gathered)
{
    child_leaves_gathered_writes_to_the_parent(abort_socket);
}

TEST(child_waiting_on_an_inherited_socket_sends_none_of_the_writes_the_parent_gathered)
{
    child_leaves_gathered_writes_to_the_parent(wait_on_socket);
}

TEST(child_disconnecting_an_inherited_socket_sends_none_of_the_writes_the_parent_gathered)
{
    child_leaves_gathered_writes_to_the_parent(disconnect_socket);
}

TEST(child_running_its_forked_loop_sends_none_of_the_writes_the_parent_gathered)
{
    child_leaves_gathered_writes_to_the_parent(loop_fork_and_run);
}

/* A child that writes twice on an inherited socket (its loop cannot run) gathers nothing:
 * both writes reach the peer at once, before the child frees the socket. */
TEST(child_writes_on_an_inherited_socket_are_never_gathered)
{
    forked f;
    forked_open(&f);
    unsigned char *data = pattern_new(64);
    ASSERT_EQ(lsock_socket_write(f.p.s, data, 10), 10); /* the parent's, to the kernel */
    pid_t pid = fork_test_child();
    if (pid == 0) {
        int ok = lsock_socket_write(f.p.s, data + 10, 5) == 5 &&
                 lsock_socket_write(f.p.s, data + 15, 5) == 5 &&
                 lsock_socket_bytes_to_write(f.p.s) == 0;
        lsock_socket_free(f.p.s);
        _exit(ok ? 0 : 1);
    }
    ASSERT_EQ(reap(pid), 0);
    size_t got = 0;
    drain_raw_until(f.p.pfd, &got, 20, 5000);
    free(data);
    forked_close(&f);
}

TEST(child_freeing_an_inherited_loop_leaves_the_parent_running)
{
    forked f;
    forked_open(&f);
    pid_t pid = fork_test_child();
    if (pid == 0) {
        lsock_socket_free(f.p.s);
        lsock_timer_free(g_tick);
        _exit(lsock_loop_free(f.loop) ? 0 : 1);
    }
    ASSERT_EQ(reap(pid), 0);
    parent_still_reads(&f);
    forked_close(&f);
}

TEST(child_writing_on_an_inherited_socket_leaves_the_parent_loop_idle)
{
    forked f;
    forked_open(&f);
    pid_t pid = fork_test_child();
    if (pid == 0) {
        /* Fill the kernel's buffer until a write has to be queued: lsock would then watch for
         * writability, which must not reach the loop the parent still polls. */
        static char chunk[65536];
        for (int i = 0; i < 256 && lsock_socket_bytes_to_write(f.p.s) == 0; i++)
            if (lsock_socket_write(f.p.s, chunk, sizeof chunk) < 0) break;
        _exit(lsock_socket_bytes_to_write(f.p.s) > 0 ||
                      lsock_socket_state(f.p.s) == LSOCK_UNCONNECTED
                  ? 0
                  : 1);
    }
    ASSERT_EQ(reap(pid), 0);
    /* Read what the child sent: the parent's socket is writable again. */
    static char sink[65536];
    ssize_t drained = 0, r;
    while ((r = read(f.p.pfd, sink, sizeof sink)) > 0)
        drained += r;
    ASSERT(drained > 0);
    int n = run_for(f.loop, 200);
    ASSERT(n < 100);
    parent_still_reads(&f);
    forked_close(&f);
}

TEST(running_an_inherited_loop_without_loop_fork_fails)
{
    forked f;
    forked_open(&f);
    pid_t pid = fork_test_child();
    if (pid == 0) {
        write_all_raw(f.p.pfd, "x", 1);
        int rc = lsock_loop_run(f.loop, LSOCK_RUN_NOWAIT);
        _exit(rc == -1 && f.r.ready_read == 0 ? 0 : 1);
    }
    ASSERT_EQ(reap(pid), 0);
    RUN_UNTIL(f.loop, f.r.ready_read > 0, 5000); /* the byte the child sent */
    forked_close(&f);
}

TEST(loop_fork_lets_the_child_use_the_inherited_loop)
{
    forked f;
    forked_open(&f);
    pid_t pid = fork_test_child();
    if (pid == 0) {
        if (!lsock_loop_fork(f.loop)) _exit(1);
        RUN_UNTIL(f.loop, f.r.ready_read > 0, 5000);
        char buf[8];
        if (lsock_socket_read(f.p.s, buf, sizeof buf) != 4 || memcmp(buf, "ping", 4) != 0) _exit(2);
        if (lsock_socket_write(f.p.s, "pong", 4) != 4) _exit(3);
        RUN_UNTIL(f.loop, lsock_socket_bytes_to_write(f.p.s) == 0, 5000);
        lsock_socket_free(f.p.s);
        lsock_timer_free(g_tick);
        _exit(lsock_loop_free(f.loop) ? 0 : 4);
    }
    write_all_raw(f.p.pfd, "ping", 4);
    char buf[4];
    size_t got = 0;
    uint64_t deadline = test_now_ms() + 5000;
    while (got < 4) {
        ASSERT(test_now_ms() < deadline);
        struct pollfd pfd = {f.p.pfd, POLLIN, 0};
        poll(&pfd, 1, 50);
        ssize_t r = read(f.p.pfd, buf + got, 4 - got);
        if (r > 0) got += (size_t)r;
    }
    ASSERT(memcmp(buf, "pong", 4) == 0);
    ASSERT_EQ(reap(pid), 0);
    parent_still_reads(&f);
    forked_close(&f);
}

TEST(loop_fork_then_freeing_an_inherited_server_leaves_the_child_loop_idle)
{
    lsock_loop *loop = loop_new();
    const char *name = test_name("forkedsrv");
    lsock_server *srv = lsock_server_new(loop);
    ASSERT(lsock_server_listen(srv, name));
    /* A client waits in the backlog: the listener stays readable while nobody accepts. */
    lsock_socket *c = lsock_socket_new(NULL);
    ASSERT(lsock_socket_connect(c, name, LSOCK_READ_WRITE));
    pid_t pid = fork_test_child();
    if (pid == 0) {
        /* The child's own backend watches the listener; freeing the server must take it out
         * of that backend, or the child's loop would be woken for a descriptor it closed. */
        if (!lsock_loop_fork(loop)) _exit(1);
        lsock_server_free(srv);
        int n = run_for(loop, 200);
        _exit(n < 100 ? 0 : 2);
    }
    ASSERT_EQ(reap(pid), 0);
    ASSERT(file_exists(path_of(name)));
    RUN_UNTIL(loop, lsock_server_has_pending_connections(srv), 5000);
    lsock_socket *peer = lsock_server_next_pending_connection(srv);
    ASSERT(peer != NULL);
    lsock_socket_free(peer);
    lsock_socket_free(c);
    lsock_server_free(srv);
    loop_free(loop);
}

static int fired;
static void count_fired(lsock_timer *t, void *u)
{
    (void)t;
    (void)u;
    fired++;
}

/* Two lsock sockets on one loop, each with bytes waiting before the run, so that one poll
 * reports both: the first ready_read forks, and the test looks at what each process does
 * with the rest of that batch. */
typedef struct batch {
    lsock_loop *loop;
    rawpair p[2];
    rec r[2];
    bool loop_fork; /* the child calls lsock_loop_fork() inside the callback */
    pid_t child;    /* set in the parent by the forking callback; 0 in the child */
    int forked;     /* 1 in both processes once the callback forked */
    int fork_ok;    /* the child: lsock_loop_fork() returned true */
} batch;

static batch *g_batch;

static void fork_in_ready_read(lsock_socket *s, rec *r)
{
    (void)s;
    (void)r;
    batch *b = g_batch;
    if (b->forked) return;
    b->forked = 1;
    b->child = fork_test_child();
    if (b->child == 0 && b->loop_fork) {
        b->fork_ok = lsock_loop_fork(b->loop);
        lsock_loop_stop(b->loop);
    }
}

static void batch_open(batch *b, bool loop_fork)
{
    memset(b, 0, sizeof *b);
    b->loop = loop_new();
    b->loop_fork = loop_fork;
    g_batch = b;
    for (int i = 0; i < 2; i++) {
        rawpair_open(&b->p[i], b->loop);
        rec_init(&b->r[i]);
        b->r[i].on_ready_read = fork_in_ready_read;
        lsock_socket_set_callbacks(b->p[i].s, &rec_cbs, &b->r[i]);
    }
    lsock_loop_run(b->loop, LSOCK_RUN_NOWAIT); /* both watched for reading */
    write_all_raw(b->p[0].pfd, "one", 3);
    write_all_raw(b->p[1].pfd, "two", 3);
}

/* The parent: the child is gone and the parent's sockets got all their bytes. */
static void batch_parent_finish(batch *b)
{
    ASSERT(b->child > 0);
    ASSERT_EQ(reap(b->child), 0);
    RUN_UNTIL(b->loop,
              lsock_socket_bytes_available(b->p[0].s) == 3 &&
                  lsock_socket_bytes_available(b->p[1].s) == 3,
              5000);
    for (int i = 0; i < 2; i++)
        rawpair_close(&b->p[i]);
    loop_free(b->loop);
}

TEST(fork_in_a_callback_without_loop_fork_leaves_the_rest_of_the_batch_to_the_parent)
{
    batch b;
    batch_open(&b, false);
    int rc = lsock_loop_run(b.loop, LSOCK_RUN_ONCE);
    if (b.forked && b.child == 0) {
        /* The child returned from the callback into the parent's run: that run ends at once
         * with -1, having dispatched nothing more, and no later run takes anything. */
        int ready = b.r[0].ready_read + b.r[1].ready_read;
        int again = lsock_loop_run(b.loop, LSOCK_RUN_NOWAIT);
        _exit(rc == -1 && ready == 1 && again == -1 ? 0 : 1);
    }
    ASSERT(b.forked);
    batch_parent_finish(&b);
}

TEST(loop_fork_in_a_callback_lets_the_child_run_on_without_the_rest_of_the_batch)
{
    batch b;
    batch_open(&b, true);
    int rc = lsock_loop_run(b.loop, LSOCK_RUN_ONCE);
    if (b.forked && b.child == 0) {
        /* The old backend's batch is the parent's: the child's run dispatched nothing more
         * from it (and never read the freed backend: the asan build checks that), then its
         * own loop runs. */
        int ready = b.r[0].ready_read + b.r[1].ready_read;
        /* The new backend would now report the shared sockets to the child too: let go of
         * them, so that the bytes stay the parent's. */
        for (int i = 0; i < 2; i++)
            lsock_socket_free(b.p[i].s);
        fired = 0;
        lsock_timer *t = lsock_timer_new(b.loop, count_fired, NULL);
        lsock_timer_start(t, 1, 0);
        uint64_t deadline = test_now_ms() + 5000;
        while (fired == 0 && test_now_ms() < deadline)
            lsock_loop_run(b.loop, LSOCK_RUN_ONCE);
        _exit(b.fork_ok && rc >= 0 && ready == 1 && fired == 1 ? 0 : 1);
    }
    ASSERT(b.forked);
    batch_parent_finish(&b);
}

TEST(loop_fork_gives_the_child_a_wakeup_of_its_own)
{
    lsock_loop *loop = lsock_loop_new();
    ASSERT(loop);
    lsock_timer *t = lsock_timer_new(loop, count_fired, NULL);
    pid_t pid = fork_test_child();
    if (pid == 0) {
        if (!lsock_loop_fork(loop)) _exit(1);
        lsock_loop_wakeup(loop);
        _exit(0);
    }
    ASSERT_EQ(reap(pid), 0);
    /* Woken by the child's wakeup, RUN_ONCE would return before the timer is due. */
    ASSERT(lsock_timer_start(t, 300, 0));
    lsock_loop_run(loop, LSOCK_RUN_ONCE);
    ASSERT_EQ(fired, 1);
    lsock_timer_free(t);
    ASSERT(lsock_loop_free(loop));
}

TEST(loop_fork_in_a_grandchild_gives_it_a_loop_of_its_own)
{
    forked f;
    forked_open(&f);
    pid_t pid = fork_test_child();
    if (pid == 0) {
        pid_t g = fork();
        if (g < 0) _exit(1);
        if (g == 0) {
            if (!lsock_loop_fork(f.loop)) _exit(1);
            write_all_raw(f.p.pfd, "g", 1);
            RUN_UNTIL(f.loop, f.r.ready_read > 0, 5000);
            char c = 0;
            _exit(lsock_socket_read(f.p.s, &c, 1) == 1 && c == 'g' ? 0 : 3);
        }
        int status = 0;
        if (waitpid(g, &status, 0) != g || !WIFEXITED(status)) _exit(2);
        _exit(WEXITSTATUS(status));
    }
    ASSERT_EQ(reap(pid), 0);
    parent_still_reads(&f);
    forked_close(&f);
}

TEST_MAIN()
