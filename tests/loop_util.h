/*
 * The loop helpers every suite shares, defined in support.c (part of lsock_testlib): a loop
 * with a 10 ms ticking timer (so that LSOCK_RUN_ONCE never blocks past a test's deadline),
 * RUN_UNTIL with a deadline, run_for, and the names of the states.
 */
#ifndef LSOCK_TEST_LOOP_UTIL_H
#define LSOCK_TEST_LOOP_UTIL_H

#include "test.h"
#include "lsock.h"

/* The ticker of the loop of loop_new (NULL without one), and its callback, which does
 * nothing: a timer ticking every 10 ms keeps LSOCK_RUN_ONCE from blocking past a test's
 * deadline. */
extern lsock_timer *g_tick;
void tick_cb(lsock_timer *t, void *u);

/* A new loop with the 10 ms ticker (g_tick). */
lsock_loop *loop_new(void);
/* Frees g_tick and the loop (asserts that the loop could be freed). */
void loop_free(lsock_loop *loop);

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
int run_for(lsock_loop *loop, int ms);

/* "UNCONNECTED", "CONNECTING", "CONNECTED", "CLOSING" ("?" for anything else). */
const char *state_name(lsock_state st);

#endif
