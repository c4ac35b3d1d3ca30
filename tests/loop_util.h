/*
 * The loop helpers every suite shares: a loop with a 10 ms ticking timer (so that
 * LSOCK_RUN_ONCE never blocks past a test's deadline), RUN_UNTIL with a deadline, run_for, and
 * the names of the states.
 */
#ifndef LSOCK_TEST_LOOP_UTIL_H
#define LSOCK_TEST_LOOP_UTIL_H

#include "test.h"
#include "lsock.h"

#define UNUSED __attribute__((unused))

/* A timer ticking every 10 ms keeps LSOCK_RUN_ONCE from blocking past a test's deadline. */
static lsock_timer *g_tick;
static UNUSED void tick_cb(lsock_timer *t, void *u)
{
    (void)t;
    (void)u;
}

static UNUSED lsock_loop *loop_new(void)
{
    lsock_loop *loop = lsock_loop_new();
    ASSERT(loop != NULL);
    g_tick = lsock_timer_new(loop, tick_cb, NULL);
    ASSERT(g_tick != NULL);
    ASSERT(lsock_timer_start(g_tick, 10, 10));
    return loop;
}

static UNUSED void loop_free(lsock_loop *loop)
{
    lsock_timer_free(g_tick);
    g_tick = NULL;
    ASSERT(lsock_loop_free(loop));
}

/* Runs the loop until cond holds; fails the test after ms milliseconds. */
#define RUN_UNTIL(loop, cond, ms)                                                                  \
    do {                                                                                           \
        uint64_t dl_ = test_now_ms() + (ms);                                                       \
        while (!(cond)) {                                                                          \
            if (test_now_ms() > dl_) FAIL_("timed out waiting for %s", #cond);                     \
            lsock_loop_run((loop), LSOCK_RUN_ONCE);                                                \
        }                                                                                          \
    } while (0)

/* Runs the loop for about ms milliseconds (to show that something does NOT happen). Returns
 * the iterations it made: an idle loop (the 10 ms ticker of loop_new) makes a few dozen, one
 * that the backend wakes at once every time makes thousands. */
static UNUSED int run_for(lsock_loop *loop, int ms)
{
    int n = 0;
    uint64_t end = test_now_ms() + (uint64_t)ms;
    while (test_now_ms() < end) {
        lsock_loop_run(loop, LSOCK_RUN_ONCE);
        n++;
    }
    return n;
}

static UNUSED const char *state_name(lsock_state st)
{
    switch (st) {
    case LSOCK_UNCONNECTED:
        return "UNCONNECTED";
    case LSOCK_CONNECTING:
        return "CONNECTING";
    case LSOCK_CONNECTED:
        return "CONNECTED";
    case LSOCK_CLOSING:
        return "CLOSING";
    }
    return "?";
}

#endif
