/*
 * Single-instance applications (lsock_instance_*): the election, messages from secondaries,
 * crashes on either side, app ids and scopes, and another user.
 *
 * Processes are children of this test executable (child_start: fork on Unix, CreateProcess on
 * Windows). They start together through a gate: a pipe whose write ends the parent closes once
 * all are running, which every child waits for (proc_read_byte returns -1).
 */
#include "test.h"
#include "lsock.h"
#include "loop_util.h"
#include "support.h"
#include "internal.h" /* lsock__plat_process_id */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#ifndef _WIN32
#include <sys/wait.h>
#include <unistd.h>
#endif

/* What a primary of the tests records. */
typedef struct inbox {
    int calls;
    char last[256];
    int64_t last_len;
    lsock_credentials sender;
    int free_inside; /* free the instance inside the callback */
    int freed;
    unsigned char seen[64]; /* "m<k>" messages of the race, by k */
    int distinct, dup;
} inbox;

static void on_message(lsock_instance *inst, const void *msg, int64_t len,
                       const lsock_credentials *sender, void *ud)
{
    inbox *in = ud;
    in->calls++;
    in->last_len = len;
    size_t n = len < (int64_t)sizeof in->last - 1 ? (size_t)len : sizeof in->last - 1;
    memcpy(in->last, msg, n);
    in->last[n] = '\0';
    in->sender = *sender;
    if (in->last[0] == 'm') {
        int k = atoi(in->last + 1);
        if (k < 0 || k >= 64 || in->seen[k])
            in->dup = 1;
        else
            in->seen[k] = 1, in->distinct++;
    }
    if (in->free_inside) {
        lsock_instance_free(inst);
        in->freed = 1;
    }
}

/* A unique app id for this test run. */
static const char *app(const char *tag)
{
    static char id[8][128];
    static int k;
    char *out = id[k++ % 8];
    snprintf(out, sizeof id[0], "%s", test_name(tag));
    return out;
}

/* ---- secondaries in child processes ------------------------------------------------------ */

/* "APP SCOPE MESSAGE": acquires (must be secondary) and sends MESSAGE. Exit 0 sent and
 * acknowledged, 1 became primary, 2 acquire failed, 3 + the error when send failed. */
CHILD_MAIN(secondary_send)
{
    char id[128], msg[128];
    int scope;
    if (sscanf(arg, "%127s %d %127s", id, &scope, msg) != 3) return 90;
    lsock_instance *inst = lsock_instance_new(NULL, id, scope);
    if (!inst) return 91;
    int rc = lsock_instance_acquire(inst, 20000), status = 0;
    if (rc != 0) {
        fprintf(stderr, "acquire: %d %s\n", rc, lsock_instance_error_string(inst));
        status = rc == 1 ? 1 : 2;
    } else if (!lsock_instance_send(inst, msg, (int64_t)strlen(msg), 20000)) {
        fprintf(stderr, "send: %s\n", lsock_instance_error_string(inst));
        status = 3 + (int)lsock_instance_error(inst);
    }
    lsock_instance_free(inst); /* on every path: valgrind checks the children too */
    return status;
}

/* "APP READY_FD": the primary, which says 'P' on READY_FD and then idles until killed. */
CHILD_MAIN(primary_idle)
{
    char id[128];
    long long fd;
    if (sscanf(arg, "%127s %lld", id, &fd) != 2) return 90;
    lsock_loop *loop = lsock_loop_new();
    lsock_instance *inst = lsock_instance_new(loop, id, LSOCK_INSTANCE_PER_USER);
    if (!inst || lsock_instance_acquire(inst, 20000) != 1) return 2;
    proc_write_byte((raw_fd)fd, 'P');
    child_idle_forever();
    return 0;
}

/* "APP READY_FD": a secondary that says 'C' once connected, then sends a 32 MiB message (it is
 * killed while sending). */
CHILD_MAIN(secondary_big)
{
    char id[128];
    long long fd;
    if (sscanf(arg, "%127s %lld", id, &fd) != 2) return 90;
    lsock_instance *inst = lsock_instance_new(NULL, id, LSOCK_INSTANCE_PER_USER);
    if (!inst || lsock_instance_acquire(inst, 20000) != 0) return 2;
    size_t n = 32u << 20;
    char *big = calloc(1, n);
    if (!big) return 4;
    proc_write_byte((raw_fd)fd, 'C');
    lsock_instance_send(inst, big, (int64_t)n, 60000);
    free(big);
    lsock_instance_free(inst);
    return 5;
}

/* Runs the primary's loop until cond or 20 s. */
#define SERVE_UNTIL(loop, cond) RUN_UNTIL(loop, cond, 20000)

/* Runs loop until child c ends; its exit status. */
static int serve_until_exit(lsock_loop *loop, child *c)
{
    uint64_t dl = test_now_ms() + 30000;
    for (;;) {
        int st = child_wait(c, 0);
        if (st != CHILD_RUNNING) return st;
        ASSERT(test_now_ms() < dl);
        lsock_loop_run(loop, LSOCK_RUN_NOWAIT);
        child_wait(c, 2); /* a bounded pause: the child runs meanwhile */
    }
}

/* ---- the election, in one process --------------------------------------------------------- */

TEST(first_acquire_is_primary_and_a_second_instance_is_secondary)
{
    lsock_loop *loop = loop_new();
    const char *id = app("elect");
    inbox in = {0};
    lsock_instance *a = lsock_instance_new(loop, id, LSOCK_INSTANCE_PER_USER);
    ASSERT(a);
    ASSERT(!lsock_instance_is_primary(a));
    ASSERT_EQ(lsock_instance_primary_pid(a), -1);
    lsock_instance_set_message_callback(a, on_message, &in);
    ASSERT_EQ(lsock_instance_acquire(a, 5000), 1);
    ASSERT(lsock_instance_is_primary(a));
    ASSERT_EQ(lsock_instance_primary_pid(a), (int64_t)lsock__plat_process_id());
    lsock_instance *b = lsock_instance_new(NULL, id, LSOCK_INSTANCE_PER_USER);
    ASSERT_EQ(lsock_instance_acquire(b, 5000), 0);
    ASSERT(!lsock_instance_is_primary(b));
    ASSERT_EQ(lsock_instance_primary_pid(b), (int64_t)lsock__plat_process_id());
    /* Acquiring twice is refused; a primary does not send. */
    ASSERT_EQ(lsock_instance_acquire(b, 10), -1);
    ASSERT_ERR(lsock_instance_error(b), LSOCK_ERR_OPERATION);
    ASSERT(!lsock_instance_send(a, "x", 1, 10));
    ASSERT_ERR(lsock_instance_error(a), LSOCK_ERR_OPERATION);
    ASSERT(starts_with(lsock_instance_error_string(a), "lsock_instance_send: "));
    lsock_instance_free(b);
    lsock_instance_free(a);
    /* The name is free again at once. */
    lsock_instance *c = lsock_instance_new(loop, id, LSOCK_INSTANCE_PER_USER);
    ASSERT_EQ(lsock_instance_acquire(c, 5000), 1);
    lsock_instance_free(c);
    loop_free(loop);
}

TEST(instance_bad_arguments_fail_clearly)
{
    ASSERT(lsock_instance_new(NULL, NULL, LSOCK_INSTANCE_PER_USER) == NULL);
    ASSERT(lsock_instance_new(NULL, "", LSOCK_INSTANCE_PER_USER) == NULL);
    ASSERT(lsock_instance_new(NULL, "x", 3) == NULL);
    ASSERT(lsock_instance_new(NULL, "x", -1) == NULL);
    ASSERT_EQ(lsock_instance_acquire(NULL, 0), -1);
    ASSERT(!lsock_instance_send(NULL, "x", 1, 0));
    ASSERT(!lsock_instance_is_primary(NULL));
    ASSERT_EQ(lsock_instance_primary_pid(NULL), -1);
    ASSERT_ERR(lsock_instance_error(NULL), LSOCK_ERR_NONE);
    ASSERT_STR_EQ(lsock_instance_error_string(NULL), "");
    lsock_instance_free(NULL);
    lsock_instance *i = lsock_instance_new(NULL, app("bad"), LSOCK_INSTANCE_PER_USER);
    ASSERT(!lsock_instance_send(i, "x", 1, 0)); /* not acquired */
    ASSERT_ERR(lsock_instance_error(i), LSOCK_ERR_OPERATION);
    ASSERT_STR_EQ(lsock_instance_error_string(i),
                  "lsock_instance_send: Operation not allowed in this state (not acquired: call "
                  "lsock_instance_acquire() first)");
    lsock_instance_free(i);
}

TEST(send_with_a_negative_size_or_null_message_fails_invalid_argument)
{
    lsock_loop *loop = loop_new();
    const char *id = app("badsend");
    lsock_instance *a = lsock_instance_new(loop, id, LSOCK_INSTANCE_PER_USER);
    ASSERT_EQ(lsock_instance_acquire(a, 5000), 1);
    lsock_instance *b = lsock_instance_new(NULL, id, LSOCK_INSTANCE_PER_USER);
    ASSERT_EQ(lsock_instance_acquire(b, 5000), 0);
    ASSERT(!lsock_instance_send(b, "x", -1, 10));
    ASSERT_ERR(lsock_instance_error(b), LSOCK_ERR_INVALID_ARGUMENT);
    ASSERT(!lsock_instance_send(b, NULL, 3, 10));
    ASSERT_ERR(lsock_instance_error(b), LSOCK_ERR_INVALID_ARGUMENT);
    lsock_instance_free(b);
    lsock_instance_free(a);
    loop_free(loop);
}

/* ---- messages ---------------------------------------------------------------------------- */

TEST(a_secondary_message_reaches_the_primary_once_with_its_sender_and_is_acknowledged)
{
    lsock_loop *loop = loop_new();
    const char *id = app("msg");
    inbox in = {0};
    lsock_instance *p = lsock_instance_new(loop, id, LSOCK_INSTANCE_PER_USER);
    lsock_instance_set_message_callback(p, on_message, &in);
    ASSERT_EQ(lsock_instance_acquire(p, 5000), 1);
    child c;
    char arg[256];
    snprintf(arg, sizeof arg, "%s %d open-file.txt", id, LSOCK_INSTANCE_PER_USER);
    child_start(&c, "secondary_send", arg);
    ASSERT_EQ(serve_until_exit(loop, &c), 0); /* it returns only once acknowledged */
    ASSERT_EQ(in.calls, 1);
    ASSERT_STR_EQ(in.last, "open-file.txt");
    ASSERT_EQ(in.last_len, 13);
    ASSERT_EQ(in.sender.pid, c.pid);
#ifndef _WIN32
    ASSERT_EQ(in.sender.uid, (int64_t)geteuid());
#endif
    lsock_instance_free(p);
    loop_free(loop);
}

TEST(an_empty_message_is_delivered_as_empty)
{
    lsock_loop *loop = loop_new();
    const char *id = app("empty");
    inbox in = {0};
    lsock_instance *p = lsock_instance_new(loop, id, LSOCK_INSTANCE_PER_USER);
    lsock_instance_set_message_callback(p, on_message, &in);
    ASSERT_EQ(lsock_instance_acquire(p, 5000), 1);
    lsock_instance *s = lsock_instance_new(NULL, id, LSOCK_INSTANCE_PER_USER);
    ASSERT_EQ(lsock_instance_acquire(s, 5000), 0);
    /* The secondary waits for the acknowledgement, which needs the primary's loop: drive it
     * from the same thread by sending first with a zero wait, then serving. */
    ASSERT(!lsock_instance_send(s, "", 0, 0));
    ASSERT_ERR(lsock_instance_error(s), LSOCK_ERR_SOCKET_TIMEOUT);
    SERVE_UNTIL(loop, in.calls == 1);
    ASSERT_EQ(in.last_len, 0);
    lsock_instance_free(s);
    lsock_instance_free(p);
    loop_free(loop);
}

TEST(a_primary_may_free_the_instance_inside_the_message_callback)
{
    lsock_loop *loop = loop_new();
    const char *id = app("freecb");
    inbox in = {0};
    in.free_inside = 1;
    lsock_instance *p = lsock_instance_new(loop, id, LSOCK_INSTANCE_PER_USER);
    lsock_instance_set_message_callback(p, on_message, &in);
    ASSERT_EQ(lsock_instance_acquire(p, 5000), 1);
    child c;
    char arg[256];
    snprintf(arg, sizeof arg, "%s %d bye", id, LSOCK_INSTANCE_PER_USER);
    child_start(&c, "secondary_send", arg);
    /* Freed before acknowledging: the secondary's send sees the primary end. */
    ASSERT_EQ(serve_until_exit(loop, &c), 3 + LSOCK_ERR_PEER_CLOSED);
    ASSERT_EQ(in.calls, 1);
    ASSERT(in.freed);
    /* And the name is free: a new start is primary. */
    lsock_instance *q = lsock_instance_new(loop, id, LSOCK_INSTANCE_PER_USER);
    ASSERT_EQ(lsock_instance_acquire(q, 5000), 1);
    lsock_instance_free(q);
    loop_free(loop);
}

TEST(a_secondary_killed_mid_send_delivers_nothing)
{
    lsock_loop *loop = loop_new();
    const char *id = app("midsend");
    inbox in = {0};
    lsock_instance *p = lsock_instance_new(loop, id, LSOCK_INSTANCE_PER_USER);
    lsock_instance_set_message_callback(p, on_message, &in);
    ASSERT_EQ(lsock_instance_acquire(p, 5000), 1);
    raw_fd ready[2];
    proc_pipe(ready);
    child big;
    char arg[256];
    snprintf(arg, sizeof arg, "%s %lld", id, (long long)ready[1]);
    child_start(&big, "secondary_big", arg);
    uint64_t dl = test_now_ms() + 20000;
    int b;
    for (;;) { /* serve it until it sends */
        ASSERT(test_now_ms() < dl);
        lsock_loop_run(loop, LSOCK_RUN_NOWAIT);
        if ((b = proc_read_byte(ready[0], 2)) != -2) break;
    }
    ASSERT_EQ(b, 'C');
    for (int i = 0; i < 20; i++) /* part of the 32 MiB arrives */
        lsock_loop_run(loop, LSOCK_RUN_NOWAIT);
    child_kill(&big);
    ASSERT_EQ(child_wait(&big, 20000), CHILD_KILLED);
    child c;
    snprintf(arg, sizeof arg, "%s %d after", id, LSOCK_INSTANCE_PER_USER);
    child_start(&c, "secondary_send", arg);
    ASSERT_EQ(serve_until_exit(loop, &c), 0);
    ASSERT_EQ(in.calls, 1); /* the whole message of the live secondary, nothing of the other */
    ASSERT_STR_EQ(in.last, "after");
    raw_close(ready[0]);
    raw_close(ready[1]);
    lsock_instance_free(p);
    loop_free(loop);
}

/* ---- crashes ------------------------------------------------------------------------------ */

TEST(a_killed_primary_leaves_the_name_to_the_next_start_at_once)
{
    const char *id = app("killed");
    raw_fd ready[2];
    proc_pipe(ready);
    child c;
    char arg[256];
    snprintf(arg, sizeof arg, "%s %lld", id, (long long)ready[1]);
    child_start(&c, "primary_idle", arg);
    ASSERT_EQ(proc_read_byte(ready[0], 20000), 'P');
    lsock_instance *probe = lsock_instance_new(NULL, id, LSOCK_INSTANCE_PER_USER);
    ASSERT_EQ(lsock_instance_acquire(probe, 5000), 0);
    ASSERT_EQ(lsock_instance_primary_pid(probe), c.pid);
    lsock_instance_free(probe);
    child_kill(&c);
    ASSERT_EQ(child_wait(&c, 20000), CHILD_KILLED);
    lsock_loop *loop = loop_new();
    lsock_instance *next = lsock_instance_new(loop, id, LSOCK_INSTANCE_PER_USER);
    ASSERT_EQ(lsock_instance_acquire(next, 0), 1); /* no waiting: the first try */
    lsock_instance_free(next);
    loop_free(loop);
    raw_close(ready[0]);
    raw_close(ready[1]);
}

/* ---- the race ------------------------------------------------------------------------------ */

/* "APP INDEX N GATE GATE_W": waits for the gate, then acquires. The primary receives the N - 1
 * messages of the others and exits 100 + how many distinct ones it got (200 on a duplicate);
 * a secondary sends "m<INDEX>" and exits 0 once acknowledged. */
static void race_tick(lsock_timer *t, void *ud)
{
    (void)t;
    (void)ud;
}

CHILD_MAIN(racer)
{
    char id[128];
    int index, n;
    long long gate, gate_w;
    if (sscanf(arg, "%127s %d %d %lld %lld", id, &index, &n, &gate, &gate_w) != 5) return 90;
    raw_close((raw_fd)gate_w);
    if (proc_read_byte((raw_fd)gate, -1) != -1) return 91;
    lsock_loop *loop = lsock_loop_new();
    lsock_instance *inst = lsock_instance_new(loop, id, LSOCK_INSTANCE_PER_USER);
    inbox in = {0};
    lsock_instance_set_message_callback(inst, on_message, &in);
    int rc = lsock_instance_acquire(inst, 20000), status;
    if (rc == 1) {
        lsock_timer *tick = lsock_timer_new(loop, race_tick, NULL);
        lsock_timer_start(tick, 10, 10); /* RUN_ONCE returns at least every 10 ms */
        uint64_t dl = test_now_ms() + 20000;
        while (in.distinct < n - 1 && !in.dup && test_now_ms() < dl)
            lsock_loop_run(loop, LSOCK_RUN_ONCE);
        status = in.dup ? 200 : 100 + in.distinct;
        lsock_timer_free(tick);
    } else if (rc != 0) {
        status = 2;
    } else {
        char msg[16];
        snprintf(msg, sizeof msg, "m%d", index);
        status = lsock_instance_send(inst, msg, (int64_t)strlen(msg), 20000) ? 0 : 3;
    }
    lsock_instance_free(inst); /* on every path: valgrind checks the children too */
    lsock_loop_free(loop);
    return status;
}

TEST(processes_starting_together_elect_exactly_one_primary_and_every_message_arrives_once)
{
    /* Unix: 8 processes, 50 rounds. Wine starts a process in tens of milliseconds, and every
     * process runs under valgrind in its build: fewer there. */
    bool slow = wine_version() || under_valgrind();
    int n = slow ? 4 : 8, rounds = slow ? 5 : 50;
    for (int r = 0; r < rounds; r++) {
        const char *id = app("race");
        raw_fd gate[2];
        proc_pipe(gate);
        child kids[8];
        for (int i = 0; i < n; i++) {
            char arg[256];
            snprintf(arg, sizeof arg, "%s %d %d %lld %lld", id, i, n, (long long)gate[0],
                     (long long)gate[1]);
            child_start(&kids[i], "racer", arg);
        }
        raw_close(gate[0]);
        raw_close(gate[1]); /* the gate opens: all acquire together */
        int primaries = 0, secondaries = 0;
        for (int i = 0; i < n; i++) {
            int st = child_wait(&kids[i], 60000);
            if (st == 100 + n - 1)
                primaries++;
            else if (st == 0)
                secondaries++;
            else
                FAIL_("round %d: racer %d ended with %d", r, i, st);
        }
        ASSERT_EQ(primaries, 1);
        ASSERT_EQ(secondaries, n - 1);
    }
}

/* ---- app ids and scopes -------------------------------------------------------------------- */

TEST(long_and_odd_app_ids_work_and_two_ids_are_independent)
{
    lsock_loop *loop = loop_new();
    size_t n = 10000;
    char *odd = malloc(n + 1);
    for (size_t i = 0; i < n; i++)
        odd[i] = (char)(1 + (i * 37) % 255); /* every byte but NUL, '/' and '\\' included */
    odd[n] = '\0';
    memcpy(odd, app("odd"), 20); /* unique per run */
    lsock_instance *a = lsock_instance_new(loop, odd, LSOCK_INSTANCE_PER_USER);
    ASSERT(a);
    ASSERT_EQ(lsock_instance_acquire(a, 5000), 1);
    lsock_instance *a2 = lsock_instance_new(NULL, odd, LSOCK_INSTANCE_PER_USER);
    ASSERT_EQ(lsock_instance_acquire(a2, 5000), 0);
    /* One byte different at the end: another application. */
    odd[n - 1] = odd[n - 1] == 'x' ? 'y' : 'x';
    lsock_instance *b = lsock_instance_new(loop, odd, LSOCK_INSTANCE_PER_USER);
    ASSERT_EQ(lsock_instance_acquire(b, 5000), 1);
    lsock_instance_free(b);
    lsock_instance_free(a2);
    lsock_instance_free(a);
    free(odd);
    loop_free(loop);
}

TEST(scopes_do_not_see_each_other)
{
    lsock_loop *loop = loop_new();
    const char *id = app("scopes");
    lsock_instance *user = lsock_instance_new(loop, id, LSOCK_INSTANCE_PER_USER);
    lsock_instance *session = lsock_instance_new(loop, id, LSOCK_INSTANCE_PER_SESSION);
    lsock_instance *sys = lsock_instance_new(loop, id, LSOCK_INSTANCE_SYSTEM);
    ASSERT_EQ(lsock_instance_acquire(user, 5000), 1);
    ASSERT_EQ(lsock_instance_acquire(session, 5000), 1);
    ASSERT_EQ(lsock_instance_acquire(sys, 5000), 1);
#ifndef _WIN32
    /* Another login session (XDG_SESSION_ID) is another primary; the same one is not. */
    setenv("XDG_SESSION_ID", "lsocktest1", 1);
    lsock_instance *s1 = lsock_instance_new(loop, id, LSOCK_INSTANCE_PER_SESSION);
    ASSERT_EQ(lsock_instance_acquire(s1, 5000), 1);
    lsock_instance *s1b = lsock_instance_new(NULL, id, LSOCK_INSTANCE_PER_SESSION);
    ASSERT_EQ(lsock_instance_acquire(s1b, 5000), 0);
    setenv("XDG_SESSION_ID", "bad/../id", 1); /* not a session id: getsid(0) is used */
    lsock_instance *s2 = lsock_instance_new(NULL, id, LSOCK_INSTANCE_PER_SESSION);
    ASSERT_EQ(lsock_instance_acquire(s2, 5000), 0); /* the first session one's */
    unsetenv("XDG_SESSION_ID");
    lsock_instance_free(s2);
    lsock_instance_free(s1b);
    lsock_instance_free(s1);
#endif
    lsock_instance_free(sys);
    lsock_instance_free(session);
    lsock_instance_free(user);
    loop_free(loop);
}

/* ---- another user (Unix, root) -------------------------------------------------------------- */

TEST(another_user_cannot_be_primary_for_this_users_app_nor_receive_its_messages)
{
#ifdef _WIN32
    SKIP("no second user under Wine (see docs/security.md); the per-user name and the SID "
         "checks are tested in test_trust");
#else
    if (geteuid() != 0) SKIP("needs root to run a process as another user (uid 65534)");
    lsock_loop *loop = loop_new();
    const char *id = app("users");
    /* TMPDIR shared by both users, so that only the scope keeps them apart. */
    char dir[128];
    snprintf(dir, sizeof dir, "/tmp/lsock-inst-%ld-XXXXXX", (long)getpid());
    ASSERT(mkdtemp(dir));
    ASSERT_EQ(chmod(dir, 01777), 0);
    setenv("TMPDIR", dir, 1);
    unsetenv("XDG_RUNTIME_DIR");
    inbox in = {0};
    lsock_instance *p = lsock_instance_new(loop, id, LSOCK_INSTANCE_PER_USER);
    lsock_instance_set_message_callback(p, on_message, &in);
    ASSERT_EQ(lsock_instance_acquire(p, 5000), 1);
    pid_t pid = fork_linked_child();
    if (pid == 0) { /* nobody: its own primary, never this user's secondary */
        become_nobody();
        lsock_instance *o = lsock_instance_new(NULL, id, LSOCK_INSTANCE_PER_USER);
        int rc = lsock_instance_acquire(o, 5000);
        _exit(rc == 1 ? 0 : 10 + rc);
    }
    int status = 0;
    uint64_t dl = test_now_ms() + 30000;
    lsock_timer *tick = lsock_timer_new(loop, race_tick, NULL);
    ASSERT(lsock_timer_start(tick, 5, 5)); /* RUN_ONCE returns at least every 5 ms */
    while (waitpid(pid, &status, WNOHANG) == 0) {
        ASSERT(test_now_ms() < dl);
        lsock_loop_run(loop, LSOCK_RUN_ONCE);
    }
    lsock_timer_free(tick);
    ASSERT(WIFEXITED(status));
    ASSERT_EQ(WEXITSTATUS(status), 0);
    ASSERT_EQ(in.calls, 0);
    lsock_instance_free(p);
    char sub[256];
    snprintf(sub, sizeof sub, "%s/lsock-65534", dir);
    rmdir(sub);
    snprintf(sub, sizeof sub, "%s/lsock-0", dir);
    rmdir(sub);
    rmdir(dir);
    loop_free(loop);
#endif
}

TEST_MAIN()
