/* The loop: run modes, timers, stop, wakeup from another thread, embedding hooks. */
#include "test.h"
#include "lsock.h"

#ifndef _WIN32
#include <poll.h>
#endif
#include <pthread.h>
#ifndef _WIN32
#include <signal.h>
#include <sys/time.h>
#include <time.h>
#else
#define WIN32_LEAN_AND_MEAN
#include <windows.h>
#endif

#include "internal.h" /* deferred work (lsock__pending) is internal */

TEST(loop_run_without_work_returns_zero)
{
    lsock_loop *loop = lsock_loop_new();
    ASSERT(loop);
    ASSERT_EQ(lsock_loop_run(loop, LSOCK_RUN_DEFAULT), 0);
    ASSERT_EQ(lsock_loop_run(loop, LSOCK_RUN_ONCE), 0);
    ASSERT_EQ(lsock_loop_run(loop, LSOCK_RUN_NOWAIT), 0);
    ASSERT(lsock_loop_free(loop));
}

TEST(loop_run_rejects_bad_mode)
{
    lsock_loop *loop = lsock_loop_new();
    ASSERT_EQ(lsock_loop_run(loop, (lsock_run_mode)42), -1);
    ASSERT_EQ(lsock_loop_run(NULL, LSOCK_RUN_DEFAULT), -1);
    ASSERT(lsock_loop_free(loop));
}

TEST(loop_backend_name_is_build_backend)
{
    lsock_loop *loop = lsock_loop_new();
    const char *name = lsock_loop_backend_name(loop);
#ifdef _WIN32
    ASSERT(strcmp(name, "iocp") == 0);
#else
    ASSERT(strcmp(name, "epoll") == 0 || strcmp(name, "poll") == 0);
#endif
    if (strcmp(name, "epoll") == 0)
        ASSERT(lsock_loop_backend_fd(loop) >= 0);
    else
        ASSERT_EQ(lsock_loop_backend_fd(loop), -1);
    ASSERT(lsock_loop_free(loop));
}

TEST(loop_free_refuses_while_objects_remain)
{
    lsock_loop *loop = lsock_loop_new();
    lsock_socket *s = lsock_socket_new(loop);
    ASSERT(!lsock_loop_free(loop));
    lsock_socket_free(s);
    lsock_server *srv = lsock_server_new(loop);
    ASSERT(!lsock_loop_free(loop));
    lsock_server_free(srv);
    ASSERT(lsock_loop_free(loop));
    ASSERT(lsock_loop_free(NULL));
}

static void count_cb(lsock_timer *t, void *ud)
{
    (*(int *)ud)++;
}

TEST(timer_fires_once_after_timeout)
{
    lsock_loop *loop = lsock_loop_new();
    int n = 0;
    lsock_timer *t = lsock_timer_new(loop, count_cb, &n);
    uint64_t start = test_now_ms();
    ASSERT(lsock_timer_start(t, 20, 0));
    ASSERT(lsock_timer_is_active(t));
    ASSERT_EQ(lsock_loop_run(loop, LSOCK_RUN_DEFAULT), 0);
    ASSERT_EQ(n, 1);
    ASSERT(test_now_ms() - start >= 19);
    ASSERT(!lsock_timer_is_active(t));
    lsock_timer_free(t);
    ASSERT(lsock_loop_free(loop));
}

static void stop_after_three(lsock_timer *t, void *ud)
{
    int *n = ud;
    if (++*n == 3) lsock_timer_stop(t);
}

TEST(timer_repeats_until_stopped)
{
    lsock_loop *loop = lsock_loop_new();
    int n = 0;
    lsock_timer *t = lsock_timer_new(loop, stop_after_three, &n);
    lsock_timer_start(t, 1, 1);
    ASSERT_EQ(lsock_loop_run(loop, LSOCK_RUN_DEFAULT), 0);
    ASSERT_EQ(n, 3);
    lsock_timer_free(t);
    ASSERT(lsock_loop_free(loop));
}

static void free_self(lsock_timer *t, void *ud)
{
    (*(int *)ud)++;
    lsock_timer_free(t);
}

TEST(timer_free_inside_own_callback)
{
    lsock_loop *loop = lsock_loop_new();
    int n = 0;
    lsock_timer *t = lsock_timer_new(loop, free_self, &n);
    lsock_timer_start(t, 0, 5); /* repeating: the free must stop it */
    ASSERT_EQ(lsock_loop_run(loop, LSOCK_RUN_DEFAULT), 0);
    ASSERT_EQ(n, 1);
    ASSERT(lsock_loop_free(loop));
}

static int order_log[8], order_n;
static void order_cb(lsock_timer *t, void *ud)
{
    order_log[order_n++] = (int)(intptr_t)ud;
}

TEST(timers_fire_in_due_order)
{
    lsock_loop *loop = lsock_loop_new();
    lsock_timer *a = lsock_timer_new(loop, order_cb, (void *)1);
    lsock_timer *b = lsock_timer_new(loop, order_cb, (void *)2);
    lsock_timer *c = lsock_timer_new(loop, order_cb, (void *)3);
    lsock_timer_start(a, 30, 0);
    lsock_timer_start(b, 10, 0);
    lsock_timer_start(c, 20, 0);
    lsock_loop_run(loop, LSOCK_RUN_DEFAULT);
    ASSERT_EQ(order_n, 3);
    ASSERT_EQ(order_log[0], 2);
    ASSERT_EQ(order_log[1], 3);
    ASSERT_EQ(order_log[2], 1);
    lsock_timer_free(a);
    lsock_timer_free(b);
    lsock_timer_free(c);
    ASSERT(lsock_loop_free(loop));
}

TEST(timer_stop_before_due_never_fires)
{
    lsock_loop *loop = lsock_loop_new();
    int n = 0;
    lsock_timer *t = lsock_timer_new(loop, count_cb, &n);
    lsock_timer_start(t, 10, 0);
    lsock_timer_stop(t);
    ASSERT_EQ(lsock_loop_run(loop, LSOCK_RUN_DEFAULT), 0);
    ASSERT_EQ(n, 0);
    lsock_timer_free(t);
    ASSERT(lsock_loop_free(loop));
}

TEST(timer_rejects_bad_arguments)
{
    ASSERT(lsock_timer_new(NULL, count_cb, NULL) == NULL);
    lsock_loop *loop = lsock_loop_new();
    ASSERT(lsock_timer_new(loop, NULL, NULL) == NULL);
    ASSERT(!lsock_timer_start(NULL, 1, 1));
    lsock_timer_stop(NULL);
    lsock_timer_free(NULL);
    ASSERT(!lsock_timer_is_active(NULL));
    ASSERT(lsock_loop_free(loop));
}

static void stop_loop_cb(lsock_timer *t, void *ud)
{
    lsock_loop_stop(ud);
}

TEST(loop_stop_returns_with_work_remaining)
{
    lsock_loop *loop = lsock_loop_new();
    lsock_timer *t = lsock_timer_new(loop, stop_loop_cb, loop);
    lsock_timer_start(t, 1, 1);
    ASSERT(lsock_loop_run(loop, LSOCK_RUN_DEFAULT) != 0);
    lsock_timer_free(t);
    ASSERT(lsock_loop_free(loop));
}

TEST(loop_nowait_does_not_block)
{
    lsock_loop *loop = lsock_loop_new();
    int n = 0;
    lsock_timer *t = lsock_timer_new(loop, count_cb, &n);
    lsock_timer_start(t, 60000, 0);
    uint64_t start = test_now_ms();
    ASSERT(lsock_loop_run(loop, LSOCK_RUN_NOWAIT) != 0);
    ASSERT(test_now_ms() - start < 1000);
    ASSERT_EQ(n, 0);
    lsock_timer_free(t);
    ASSERT(lsock_loop_free(loop));
}

TEST(loop_backend_timeout_reports_next_timer)
{
    lsock_loop *loop = lsock_loop_new();
    ASSERT_EQ(lsock_loop_backend_timeout(loop), -1);
    int n = 0;
    lsock_timer *t = lsock_timer_new(loop, count_cb, &n);
    lsock_timer_start(t, 5000, 0);
    int to = lsock_loop_backend_timeout(loop);
    ASSERT(to > 4000 && to <= 5000);
    lsock_timer_start(t, 0, 0);
    ASSERT_EQ(lsock_loop_backend_timeout(loop), 0);
    lsock_timer_free(t);
    ASSERT(lsock_loop_free(loop));
}

TEST(loop_backend_fd_becomes_readable_when_work_is_ready)
{
    lsock_loop *loop = lsock_loop_new();
    int fd = lsock_loop_backend_fd(loop);
    if (fd < 0) {
        lsock_loop_free(loop);
        SKIP("the %s backend has no descriptor to embed", lsock_loop_backend_name(loop));
    }
#ifndef _WIN32
    const char *name = test_name("embed");
    lsock_server *srv = lsock_server_new(loop);
    ASSERT(lsock_server_listen(srv, name));
    struct pollfd p = {fd, POLLIN, 0};
    ASSERT_EQ(poll(&p, 1, 0), 0);
    lsock_socket *c = lsock_socket_new(NULL);
    ASSERT(lsock_socket_connect(c, name, LSOCK_READ_WRITE));
    ASSERT_EQ(poll(&p, 1, 5000), 1); /* the foreign loop sees work */
    lsock_loop_run(loop, LSOCK_RUN_NOWAIT);
    ASSERT(lsock_server_has_pending_connections(srv));
    lsock_socket_free(c);
    lsock_server_free(srv);
    ASSERT(lsock_loop_free(loop));
#endif
}

struct waker {
    lsock_loop *loop;
    int go;
};

static void *wake_thread(void *arg)
{
    struct waker *w = arg;
    while (!__atomic_load_n(&w->go, __ATOMIC_ACQUIRE)) {
    }
    lsock_loop_wakeup(w->loop);
    return NULL;
}

TEST(loop_wakeup_from_other_thread_returns_run_once)
{
    lsock_loop *loop = lsock_loop_new();
    int n = 0;
    lsock_timer *t = lsock_timer_new(loop, count_cb, &n);
    lsock_timer_start(t, 60000, 0); /* keeps the loop blocked */
    struct waker w = {loop, 0};
    pthread_t th;
    ASSERT_EQ(pthread_create(&th, NULL, wake_thread, &w), 0);
    __atomic_store_n(&w.go, 1, __ATOMIC_RELEASE);
    uint64_t start = test_now_ms();
    ASSERT(lsock_loop_run(loop, LSOCK_RUN_ONCE) != 0);
    ASSERT(test_now_ms() - start < 10000);
    ASSERT_EQ(n, 0);
    pthread_join(th, NULL);
    /* A second wakeup works too: the coalescing flag was reset. */
    lsock_loop_wakeup(loop);
    start = test_now_ms();
    lsock_loop_run(loop, LSOCK_RUN_ONCE);
    ASSERT(test_now_ms() - start < 10000);
    lsock_timer_free(t);
    ASSERT(lsock_loop_free(loop));
}

/* ---- deferred work, timers and stop under re-entrancy --------------------------------- */

typedef struct deferred {
    lsock__pending p;
    lsock_loop *loop;
    int ran;
    struct deferred *queue_first; /* queued by this one's callback, before the nested run */
    int nested;
} deferred;

static void deferred_cb(lsock__pending *p)
{
    deferred *d = (deferred *)p;
    d->ran++;
    if (d->queue_first) lsock__pending_queue(d->loop, &d->queue_first->p);
    if (d->nested) lsock_loop_run(d->loop, LSOCK_RUN_NOWAIT);
}

static void deferred_init(deferred *d, lsock_loop *loop)
{
    memset(d, 0, sizeof *d);
    d->p.cb = deferred_cb;
    d->loop = loop;
}

TEST(nested_run_in_a_deferred_callback_leaves_no_deferred_work_behind)
{
    lsock_loop *loop = lsock_loop_new();
    deferred a, b, c;
    deferred_init(&a, loop);
    deferred_init(&b, loop);
    deferred_init(&c, loop);
    a.queue_first = &c; /* a queues c, then runs the loop from inside its callback */
    a.nested = 1;
    lsock__pending_queue(loop, &a.p);
    lsock__pending_queue(loop, &b.p);
    for (int i = 0; i < 3; i++)
        lsock_loop_run(loop, LSOCK_RUN_NOWAIT);
    ASSERT_EQ(a.ran, 1);
    ASSERT_EQ(b.ran, 1);
    ASSERT_EQ(c.ran, 1);
    ASSERT_EQ(lsock_loop_backend_timeout(loop), -1); /* nothing left: no busy spin */
    ASSERT_EQ(lsock_loop_run(loop, LSOCK_RUN_NOWAIT), 0);
    ASSERT(lsock_loop_free(loop));
}

TEST(deferred_work_cancelled_by_an_earlier_callback_of_the_same_round_never_runs)
{
    lsock_loop *loop = lsock_loop_new();
    deferred a, b;
    deferred_init(&a, loop);
    deferred_init(&b, loop);
    lsock__pending_queue(loop, &a.p);
    lsock__pending_queue(loop, &b.p);
    lsock__pending_cancel(loop, &a.p);
    lsock__pending_queue(loop, &a.p); /* now after b */
    lsock__pending_cancel(loop, &b.p);
    ASSERT_EQ(lsock_loop_run(loop, LSOCK_RUN_NOWAIT), 0);
    ASSERT_EQ(a.ran, 1);
    ASSERT_EQ(b.ran, 0);
    ASSERT(lsock_loop_free(loop));
}

static int restarts;
static void restart_with_zero(lsock_timer *t, void *u)
{
    (void)u;
    restarts++;
    lsock_timer_start(t, 0, 0);
}

TEST(timer_restarted_with_zero_in_its_callback_waits_for_the_next_pass)
{
    lsock_loop *loop = lsock_loop_new();
    lsock_timer *t = lsock_timer_new(loop, restart_with_zero, NULL);
    ASSERT(lsock_timer_start(t, 0, 0));
    lsock_loop_run(loop, LSOCK_RUN_NOWAIT);
    /* One pass runs timers before and after polling: once each at most. */
    ASSERT(restarts >= 1 && restarts <= 2);
    int before = restarts;
    lsock_loop_run(loop, LSOCK_RUN_NOWAIT);
    ASSERT(restarts > before && restarts <= before + 2);
    lsock_timer_free(t);
    ASSERT(lsock_loop_free(loop));
}

typedef struct stopper {
    lsock_loop *loop;
    int calls;
} stopper;

/* The first call stops the loop, then runs a nested pass. It also moves the timer 2 s away:
 * a stop ends the run after the current iteration, and on a slow machine a 1 ms timer would be due
 * again before that iteration ends, which is allowed and says nothing about the stop. */
static void stop_then_nest(lsock_timer *t, void *u)
{
    stopper *st = u;
    st->calls++;
    if (st->calls == 1 || st->calls >= 50) lsock_loop_stop(st->loop);
    if (st->calls == 1) {
        lsock_timer_start(t, 2000, 1);
        lsock_loop_run(st->loop, LSOCK_RUN_NOWAIT);
    }
}

TEST(nested_run_keeps_a_pending_stop_for_the_outer_run)
{
    lsock_loop *loop = lsock_loop_new();
    stopper st = {loop, 0};
    lsock_timer *t = lsock_timer_new(loop, stop_then_nest, &st);
    ASSERT(lsock_timer_start(t, 1, 1));
    ASSERT(lsock_loop_run(loop, LSOCK_RUN_DEFAULT) != 0); /* stopped with the timer running */
    ASSERT_EQ(st.calls, 1);
    /* The stop ended that run only: the next one runs. */
    ASSERT(lsock_timer_start(t, 1, 1));
    uint64_t deadline = test_now_ms() + 5000;
    while (st.calls < 2 && test_now_ms() < deadline)
        lsock_loop_run(loop, LSOCK_RUN_ONCE);
    ASSERT(st.calls >= 2); /* one pass may run a 1 ms timer before and after polling */
    lsock_timer_free(t);
    ASSERT(lsock_loop_free(loop));
}

TEST(loop_stop_outside_a_run_is_forgotten)
{
    lsock_loop *loop = lsock_loop_new();
    stopper st = {loop, 0};
    lsock_timer *t = lsock_timer_new(loop, stop_then_nest, &st);
    ASSERT(lsock_timer_start(t, 1, 1));
    lsock_loop_stop(loop);
    ASSERT(lsock_loop_run(loop, LSOCK_RUN_DEFAULT) != 0);
    ASSERT_EQ(st.calls, 1); /* ran until the callback's own stop */
    lsock_timer_free(t);
    ASSERT(lsock_loop_free(loop));
}

static int fired_once;
static void mark_fired(lsock_timer *t, void *u)
{
    (void)t;
    (void)u;
    fired_once++;
}

#ifndef _WIN32
static void ignore_tick(int sig)
{
    (void)sig;
}
#endif

TEST(run_once_waits_through_signals_until_an_event)
{
#ifdef _WIN32
    SKIP("Windows has no signals that interrupt a wait (no EINTR from a completion port)");
#else
    lsock_loop *loop = lsock_loop_new();
    lsock_timer *t = lsock_timer_new(loop, mark_fired, NULL);
    ASSERT(lsock_timer_start(t, 200, 0));
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = ignore_tick; /* no SA_RESTART: every wait is interrupted */
    sigemptyset(&sa.sa_mask);
    ASSERT_EQ(sigaction(SIGALRM, &sa, NULL), 0);
    struct itimerval it = {{0, 1000}, {0, 1000}};
    ASSERT_EQ(setitimer(ITIMER_REAL, &it, NULL), 0);
    uint64_t t0 = test_now_ms();
    lsock_loop_run(loop, LSOCK_RUN_ONCE);
    struct itimerval off = {{0, 0}, {0, 0}};
    setitimer(ITIMER_REAL, &off, NULL);
    ASSERT_EQ(fired_once, 1);
    ASSERT(test_now_ms() - t0 >= 150);
    lsock_timer_free(t);
    ASSERT(lsock_loop_free(loop));
#endif
}

TEST(loop_fork_in_the_process_that_made_the_loop_changes_nothing)
{
    lsock_loop *loop = lsock_loop_new();
    int fd = lsock_loop_backend_fd(loop);
    ASSERT(lsock_loop_fork(loop));
    ASSERT_EQ(lsock_loop_backend_fd(loop), fd);
    ASSERT(!lsock_loop_fork(NULL));
    lsock_timer *t = lsock_timer_new(loop, mark_fired, NULL);
    ASSERT(lsock_timer_start(t, 1, 0));
    ASSERT_EQ(lsock_loop_run(loop, LSOCK_RUN_DEFAULT), 0);
    ASSERT_EQ(fired_once, 1);
    lsock_timer_free(t);
    ASSERT(lsock_loop_free(loop));
}

TEST(busy_poll_is_off_by_default_and_clamped_to_its_range)
{
    lsock_loop *loop = lsock_loop_new();
    ASSERT(loop != NULL);
    ASSERT_EQ(lsock_loop_busy_poll(loop), 0);
    lsock_loop_set_busy_poll(loop, 50);
    ASSERT_EQ(lsock_loop_busy_poll(loop), 50);
    lsock_loop_set_busy_poll(loop, -5);
    ASSERT_EQ(lsock_loop_busy_poll(loop), 0);
    lsock_loop_set_busy_poll(loop, LSOCK_BUSY_POLL_MAX + 1);
    ASSERT_EQ(lsock_loop_busy_poll(loop), LSOCK_BUSY_POLL_MAX);
    lsock_loop_set_busy_poll(loop, 0);
    ASSERT_EQ(lsock_loop_busy_poll(loop), 0);
    lsock_loop_set_busy_poll(NULL, 10); /* nothing */
    ASSERT_EQ(lsock_loop_busy_poll(NULL), 0);
    ASSERT(lsock_loop_free(loop));
}

static double process_cpu_ms(void)
{
#ifdef _WIN32
    FILETIME c, e, k, u;
    if (!GetProcessTimes(GetCurrentProcess(), &c, &e, &k, &u)) return -1;
    ULARGE_INTEGER a, b;
    a.LowPart = k.dwLowDateTime, a.HighPart = k.dwHighDateTime;
    b.LowPart = u.dwLowDateTime, b.HighPart = u.dwHighDateTime;
    return (double)(a.QuadPart + b.QuadPart) / 10000.0;
#else
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
#endif
}

static void count_fire(lsock_timer *t, void *u)
{
    (void)t;
    (*(int *)u)++;
}

/* An idle loop that busy-polls 2 ms at a time still sleeps between its events: a timer that
 * fires every 20 ms for 200 ms keeps the process well below one CPU. */
TEST(busy_poll_fires_timers_and_sleeps_when_nothing_comes)
{
    lsock_loop *loop = lsock_loop_new();
    lsock_loop_set_busy_poll(loop, 2000);
    int fired = 0;
    lsock_timer *t = lsock_timer_new(loop, count_fire, &fired);
    ASSERT(lsock_timer_start(t, 20, 20));
    double cpu0 = process_cpu_ms();
    uint64_t t0 = test_now_ms();
    while (fired < 10) {
        ASSERT(test_now_ms() - t0 < 10000);
        lsock_loop_run(loop, LSOCK_RUN_ONCE);
    }
    double wall = (double)(test_now_ms() - t0), cpu = process_cpu_ms() - cpu0;
    printf("10 timer events in %.0f ms of which %.1f ms on the CPU\n", wall, cpu);
    ASSERT(wall >= 150); /* the timer's own pace: the busy polling never fired it early */
    /* At most 2 ms of polling per 20 ms period (10 %), with room for a slow machine. */
    ASSERT(cpu < wall * 0.5);
    lsock_timer_free(t);
    ASSERT(lsock_loop_free(loop));
}

TEST_MAIN()
