/* Unix-specific guarantees: EINTR is retried, signal dispositions are never touched, every
 * descriptor survives no exec, abstract names make no file; socket files: a stale one is
 * reclaimed by exactly one of many racing servers, lsock_remove_server() removes sockets only,
 * a server inherited by a forked child leaves its file to the parent. */
#include "test.h"
#include "lsock.h"
#include "internal.h" /* the test hooks */

#include <fcntl.h>
#include <signal.h>
#include <stddef.h>
#ifdef __linux__
#include <sys/prctl.h>
#endif
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

#include "support.h"

static volatile sig_atomic_t ticks;

static void on_tick(int sig)
{
    (void)sig;
    ticks++;
}

/* Interrupts every blocking call about once a millisecond (no SA_RESTART). */
static void start_ticking(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_tick;
    sigemptyset(&sa.sa_mask);
    ASSERT_EQ(sigaction(SIGALRM, &sa, NULL), 0);
    struct itimerval it = {{0, 1000}, {0, 1000}};
    ASSERT_EQ(setitimer(ITIMER_REAL, &it, NULL), 0);
}

static void stop_ticking(void)
{
    struct itimerval it = {{0, 0}, {0, 0}};
    setitimer(ITIMER_REAL, &it, NULL);
}

enum { STREAM_BYTES = 4 << 20 };

static void child_stream(const char *name)
{
    lsock_socket *c = lsock_socket_new(NULL);
    if (!lsock_socket_connect(c, name, LSOCK_READ_WRITE)) _exit(2);
    static char chunk[65536];
    for (size_t i = 0; i < sizeof chunk; i++)
        chunk[i] = (char)i;
    for (int sent = 0; sent < STREAM_BYTES; sent += (int)sizeof chunk) {
        if (lsock_socket_write(c, chunk, sizeof chunk) != (int64_t)sizeof chunk) _exit(3);
        while (lsock_socket_bytes_to_write(c) > 0)
            if (!lsock_socket_wait_for_bytes_written(c, 10000)) _exit(4);
    }
    lsock_socket_disconnect(c);
    if (lsock_socket_state(c) != LSOCK_UNCONNECTED && !lsock_socket_wait_for_disconnected(c, 10000))
        _exit(5);
    lsock_socket_free(c);
    _exit(0);
}

TEST(eintr_is_retried_in_blocking_waits)
{
    const char *name = test_name("eintr");
    lsock_server *srv = lsock_server_new(NULL);
    ASSERT(lsock_server_listen(srv, name));
    fflush(stdout);
    pid_t pid = fork();
    ASSERT(pid >= 0);
    if (pid == 0) child_stream(name);
    start_ticking();
    bool timed_out = true;
    ASSERT(lsock_server_wait_for_new_connection(srv, 10000, &timed_out));
    ASSERT(!timed_out);
    lsock_socket *s = lsock_server_next_pending_connection(srv);
    ASSERT(s);
    int64_t got = 0;
    char buf[65536];
    uint64_t deadline = test_now_ms() + 30000;
    while (lsock_socket_state(s) == LSOCK_CONNECTED) {
        ASSERT(test_now_ms() < deadline);
        lsock_socket_wait_for_ready_read(s, 10000);
        int64_t n;
        while ((n = lsock_socket_read(s, buf, sizeof buf)) > 0) {
            for (int64_t i = 0; i < n; i++)
                ASSERT_EQ((unsigned char)buf[i], (unsigned char)((got + i) % 65536));
            got += n;
        }
    }
    while (lsock_socket_bytes_available(s) > 0)
        got += lsock_socket_read(s, buf, sizeof buf);
    stop_ticking();
    ASSERT_EQ(got, STREAM_BYTES);
    ASSERT_ERR(lsock_socket_error(s), LSOCK_ERR_PEER_CLOSED);
    ASSERT(ticks > 0);
    int status;
    ASSERT_EQ(waitpid(pid, &status, 0), pid);
    ASSERT(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    lsock_socket_free(s);
    lsock_server_free(srv);
}

TEST(signal_dispositions_are_never_changed)
{
    struct sigaction before, after;
    ASSERT_EQ(sigaction(SIGPIPE, NULL, &before), 0);
    ASSERT(before.sa_handler == SIG_DFL);
    lsock_loop *loop = lsock_loop_new();
    const char *name = test_name("sigs");
    lsock_server *srv = lsock_server_new(loop);
    ASSERT(lsock_server_listen(srv, name));
    lsock_socket *c = lsock_socket_new(loop);
    ASSERT(lsock_socket_connect(c, name, LSOCK_READ_WRITE));
    ASSERT(lsock_server_wait_for_new_connection(srv, 5000, NULL));
    lsock_socket *p = lsock_server_next_pending_connection(srv);
    lsock_socket_free(p); /* the peer vanishes */
    for (int i = 0; i < 100 && lsock_socket_state(c) == LSOCK_CONNECTED; i++) {
        lsock_socket_write(c, "x", 1);
        lsock_loop_run(loop, LSOCK_RUN_NOWAIT);
    }
    ASSERT_EQ(sigaction(SIGPIPE, NULL, &after), 0);
    ASSERT(after.sa_handler == SIG_DFL);
    lsock_socket_free(c);
    lsock_server_free(srv);
    ASSERT(lsock_loop_free(loop));
}

TEST(loop_descriptors_are_close_on_exec)
{
    /* Every descriptor the loop opens (backend, wakeup) carries FD_CLOEXEC. */
    char before[1024] = {0};
    for (int fd = 0; fd < 1024; fd++)
        before[fd] = fcntl(fd, F_GETFD) >= 0;
    lsock_loop *loop = lsock_loop_new();
    int opened = 0;
    for (int fd = 0; fd < 1024; fd++) {
        int fl = fcntl(fd, F_GETFD);
        if (fl < 0 || before[fd]) continue;
        opened++;
        if (!(fl & FD_CLOEXEC)) FAIL_("descriptor %d of the loop is not close-on-exec", fd);
    }
    ASSERT(opened > 0);
    ASSERT(lsock_loop_free(loop));
    for (int fd = 0; fd < 1024; fd++)
        ASSERT_EQ(fcntl(fd, F_GETFD) >= 0, before[fd]); /* and the loop closed them all */
}

TEST(abstract_namespace_makes_no_file)
{
#ifndef __linux__
    SKIP("the abstract namespace is Linux-only");
#endif
    const char *name = test_name("abstract");
    lsock_server *srv = lsock_server_new(NULL);
    ASSERT(lsock_server_set_socket_options(srv, LSOCK_ABSTRACT_NAMESPACE));
    ASSERT(lsock_server_listen(srv, name));
    struct stat st;
    ASSERT_STR_EQ(lsock_server_full_server_name(srv), name);
    ASSERT(stat(path_of(name), &st) < 0); /* where the name without the option would be */
    lsock_socket *c = lsock_socket_new(NULL);
    /* Without the option the name means a file, which does not exist. */
    ASSERT(!lsock_socket_connect(c, name, LSOCK_READ_WRITE));
    ASSERT_ERR(lsock_socket_error(c), LSOCK_ERR_SERVER_NOT_FOUND);
    ASSERT(lsock_socket_set_options(c, LSOCK_ABSTRACT_NAMESPACE));
    ASSERT(lsock_socket_connect(c, name, LSOCK_READ_WRITE));
    ASSERT_EQ(lsock_socket_state(c), LSOCK_CONNECTED);
    lsock_socket_free(c);
    lsock_server_free(srv);
}

TEST(fds_return_to_baseline_after_many_connections)
{
    const char *name = test_name("fdleak");
    lsock_loop *loop = lsock_loop_new();
    lsock_server *srv = lsock_server_new(loop);
    ASSERT(lsock_server_listen(srv, name));
    int base = test_count_fds();
    for (int i = 0; i < 500; i++) {
        lsock_socket *c = lsock_socket_new(loop);
        ASSERT(lsock_socket_connect(c, name, LSOCK_READ_WRITE));
        ASSERT(lsock_server_wait_for_new_connection(srv, 5000, NULL));
        lsock_socket *p = lsock_server_next_pending_connection(srv);
        ASSERT(p);
        ASSERT_EQ(lsock_socket_write(c, "x", 1), 1);
        ASSERT(lsock_socket_wait_for_ready_read(p, 5000));
        lsock_socket_free(p);
        lsock_socket_free(c);
        lsock_loop_run(loop, LSOCK_RUN_NOWAIT);
    }
    ASSERT_EQ(test_count_fds(), base);
    lsock_server_free(srv);
    ASSERT(lsock_loop_free(loop));
}

/* A directory path of about 300 bytes under /tmp, created level by level. */
static void make_deep_dir(char *out, size_t size)
{
    int n = snprintf(out, size, "/tmp/lsock-deep-%ld", (long)getpid());
    ASSERT(mkdir(out, 0700) == 0 || errno == EEXIST);
    while (n < 300) {
        n += snprintf(out + n, size - (size_t)n, "/%s", "directory-level-with-a-long-name");
        ASSERT(mkdir(out, 0700) == 0 || errno == EEXIST);
    }
}

static void remove_deep_dir(char *dir)
{
    char *root_end = strstr(dir + 5, "/directory-level");
    while (strlen(dir) > 5) {
        ASSERT_EQ(rmdir(dir), 0);
        char *slash = strrchr(dir, '/');
        if (!root_end || slash < root_end) break;
        *slash = '\0';
    }
}

TEST(long_path_beyond_sun_path_listens_and_connects)
{
    char dir[512], path[600];
    make_deep_dir(dir, sizeof dir);
    snprintf(path, sizeof path, "%s/server.sock", dir);
    ASSERT(strlen(path) > 108);
    lsock_server *srv = lsock_server_new(NULL);
    ASSERT(lsock_server_listen(srv, path));
    ASSERT_STR_EQ(lsock_server_full_server_name(srv), path);
    struct stat st;
    ASSERT_EQ(stat(path, &st), 0); /* the file is where it was asked, not truncated */
    ASSERT(S_ISSOCK(st.st_mode));
    lsock_socket *c = lsock_socket_new(NULL);
    ASSERT(lsock_socket_connect(c, path, LSOCK_READ_WRITE));
    ASSERT_EQ(lsock_socket_state(c), LSOCK_CONNECTED);
    ASSERT_STR_EQ(lsock_socket_full_server_name(c), path);
    ASSERT(lsock_server_wait_for_new_connection(srv, 5000, NULL));
    lsock_socket *p = lsock_server_next_pending_connection(srv);
    ASSERT_EQ(lsock_socket_write(c, "ping\n", 5), 5);
    ASSERT(lsock_socket_wait_for_ready_read(p, 5000));
    char line[16];
    ASSERT_EQ(lsock_socket_read_line(p, line, sizeof line), 5);
    lsock_socket_free(p);
    lsock_socket_free(c);
    lsock_server_free(srv);
    ASSERT(stat(path, &st) < 0); /* close removed it */
    remove_deep_dir(dir);
}

TEST(long_path_with_access_options_gets_exact_mode)
{
    char dir[512], path[600];
    make_deep_dir(dir, sizeof dir);
    snprintf(path, sizeof path, "%s/private.sock", dir);
    lsock_server *srv = lsock_server_new(NULL);
    ASSERT(lsock_server_set_socket_options(srv, LSOCK_USER_ACCESS));
    ASSERT(lsock_server_listen(srv, path));
    struct stat st;
    ASSERT_EQ(stat(path, &st), 0);
    ASSERT_EQ(st.st_mode & 0777, 0700);
    lsock_server_free(srv);
    remove_deep_dir(dir);
}

TEST(long_path_with_too_long_last_component_names_the_limit)
{
    char path[400];
    int n = snprintf(path, sizeof path, "/tmp/");
    memset(path + n, 'z', 200);
    path[n + 200] = '\0';
    lsock_server *srv = lsock_server_new(NULL);
    ASSERT(!lsock_server_listen(srv, path));
    ASSERT_ERR(lsock_server_error(srv), LSOCK_ERR_SERVER_NOT_FOUND);
    ASSERT(strstr(lsock_server_error_string(srv), "limit is 107") != NULL);
    lsock_server_free(srv);
}

/* ---- closing a descriptor that another holder keeps open ------------------------------ */

/* Both ends freed: the connection's files are at end of stream (readable) from now on. */
static void free_both_ends(pair *p)
{
    lsock_socket_free(p->client);
    lsock_socket_free(p->peer);
    p->client = p->peer = NULL;
}

TEST(closing_a_handed_out_and_copied_descriptor_leaves_the_loop_idle)
{
    lsock_loop *loop = loop_new();
    pair p;
    pair_open(&p, loop);
    int copy = dup((int)lsock_socket_descriptor(p.peer));
    ASSERT(copy >= 0);
    free_both_ends(&p);
    int n = run_for(loop, 200);
    close(copy);
    ASSERT(n < 100);
    pair_close(&p);
    loop_free(loop);
}

TEST(closing_an_adopted_descriptor_with_a_copy_kept_leaves_the_loop_idle)
{
    lsock_loop *loop = loop_new();
    int sv[2];
    ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    int copy = dup(sv[0]);
    ASSERT(copy >= 0);
    lsock_socket *s = lsock_socket_new(loop);
    ASSERT(lsock_socket_set_descriptor(s, sv[0], LSOCK_CONNECTED, LSOCK_READ_WRITE));
    close(sv[1]); /* end of stream: readable from now on */
    lsock_socket_free(s);
    int n = run_for(loop, 200);
    close(copy);
    ASSERT(n < 100);
    loop_free(loop);
}

TEST(sockets_closed_after_a_fork_leave_the_loop_idle)
{
    lsock_loop *loop = loop_new();
    pair p;
    pair_open(&p, loop);
    /* The child keeps the server end (p.peer, never handed out) and drops the client end, so
     * that the server end is at end of stream once the parent frees both. */
    int client_fd = (int)lsock_socket_descriptor(p.client);
    int go[2], ready[2];
    ASSERT_EQ(pipe(go), 0);
    ASSERT_EQ(pipe(ready), 0);
    pid_t pid = fork();
    ASSERT(pid >= 0);
    if (pid == 0) {
        close(go[1]);
        close(client_fd);
        char c = 1;
        if (write(ready[1], &c, 1) != 1) _exit(1);
        ssize_t r = read(go[0], &c, 1); /* until the parent is done */
        _exit(r == 0 ? 0 : 1);
    }
    close(go[0]);
    close(ready[1]);
    char c;
    ASSERT_EQ(read(ready[0], &c, 1), 1);
    close(ready[0]);
    free_both_ends(&p);
    int n = run_for(loop, 200);
    close(go[1]);
    int status = 0;
    ASSERT_EQ(waitpid(pid, &status, 0), pid);
    ASSERT(n < 100);
    pair_close(&p);
    loop_free(loop);
}

/* ---- reclaiming a stale socket file ---------------------------------------------------- */

enum { RACERS = 4 };

/* A racer's report: 'W' it listens, 'L' it failed (with the error), 'A' it accepted the
 * parent's client. Two bytes: atomic on a pipe shared by all racers. */
static void report(int fd, char what, lsock_error err)
{
    char msg[2] = {what, (char)err};
    if (write(fd, msg, 2) != 2) _exit(9);
}

/* One racing process: waits at the start line (start closes), listens with RECLAIM_STALE on
 * path and reports. A winner then waits for the parent's client (told from the losers' probe
 * connections by its pid), reports it, and serves until done closes. */
static void racer(const char *path, int start, int rep, int done)
{
#ifdef __linux__
    prctl(PR_SET_PDEATHSIG, SIGKILL);
#endif
    alarm(60);
    char c;
    if (read(start, &c, 1) != 0) _exit(2);
    lsock_server *srv = lsock_server_new(NULL);
    if (!srv || !lsock_server_set_socket_options(srv, LSOCK_RECLAIM_STALE)) _exit(3);
    bool won = lsock_server_listen(srv, path);
    report(rep, won ? 'W' : 'L', lsock_server_error(srv));
    if (!won) {
        lsock_server_free(srv);
        _exit(0);
    }
    pid_t parent = getppid();
    uint64_t deadline = test_now_ms() + 20000;
    bool found = false;
    while (!found) {
        if (test_now_ms() > deadline) _exit(4);
        if (!lsock_server_wait_for_new_connection(srv, 1000, NULL)) continue;
        lsock_socket *s;
        while ((s = lsock_server_next_pending_connection(srv)) != NULL) {
            lsock_credentials cr;
            if (lsock_socket_peer_credentials(s, &cr) && cr.pid == parent) found = true;
            lsock_socket_free(s);
        }
    }
    report(rep, 'A', LSOCK_ERR_NONE);
    if (read(done, &c, 1) != 0) _exit(5);
    lsock_server_free(srv);
    _exit(0);
}

/* Reads one two-byte report, failing the test after ms. */
static void read_report(int fd, char msg[2], int ms)
{
    struct pollfd p = {.fd = fd, .events = POLLIN};
    ASSERT_EQ(poll(&p, 1, ms), 1);
    ASSERT_EQ(read(fd, msg, 2), 2);
}

/* One round: RACERS processes start together over a fresh stale file at path. Exactly one
 * listen() must succeed, the others fail ADDRESS_IN_USE, and a client reaches the winner. */
static void reclaim_race_round(const char *path, int round)
{
    make_stale(path);
    int start[2], rep[2], done[2];
    ASSERT_EQ(pipe(start), 0);
    ASSERT_EQ(pipe(rep), 0);
    ASSERT_EQ(pipe(done), 0);
    pid_t pids[RACERS];
    fflush(stdout);
    fflush(stderr);
    for (int i = 0; i < RACERS; i++) {
        pids[i] = fork();
        ASSERT(pids[i] >= 0);
        if (pids[i] == 0) {
            close(start[1]);
            close(rep[0]);
            close(done[1]);
            racer(path, start[0], rep[1], done[0]);
        }
    }
    close(start[0]);
    close(rep[1]);
    close(done[0]);
    close(start[1]); /* go */
    int winners = 0;
    for (int i = 0; i < RACERS; i++) {
        char msg[2];
        read_report(rep[0], msg, 20000);
        if (msg[0] == 'W') {
            winners++;
        } else {
            ASSERT_EQ(msg[0], 'L');
            ASSERT_ERR((lsock_error)msg[1], LSOCK_ERR_ADDRESS_IN_USE);
        }
    }
    if (winners != 1) FAIL_("round %d: %d of %d racers listen", round, winners, RACERS);
    lsock_socket *c = lsock_socket_new(NULL);
    ASSERT(lsock_socket_connect(c, path, LSOCK_READ_WRITE));
    ASSERT_EQ(lsock_socket_state(c), LSOCK_CONNECTED);
    char msg[2];
    read_report(rep[0], msg, 20000);
    ASSERT_EQ(msg[0], 'A'); /* the winner accepted this client */
    lsock_socket_free(c);
    close(done[1]);
    for (int i = 0; i < RACERS; i++) {
        int status = 0;
        ASSERT_EQ(waitpid(pids[i], &status, 0), pids[i]);
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
            FAIL_("round %d: racer %d ended with status %d", round, i, status);
    }
    close(rep[0]);
    ASSERT(!file_exists(path)); /* the winner removed its own file when it closed */
}

TEST(reclaim_stale_by_racing_processes_has_exactly_one_reachable_winner)
{
    const char *dir = make_tmpdir();
    char path[256];
    snprintf(path, sizeof path, "%s/s", dir);
    /* 300 rounds (about 10 s on a loaded machine) or 30 s, whichever comes first; at least 3. */
    int rounds = under_valgrind() ? 5 : 300, done = 0;
    uint64_t end = test_now_ms() + 30000;
    while (done < rounds && (done < 3 || test_now_ms() < end))
        reclaim_race_round(path, done++);
    printf("%d rounds of %d processes, one winner each\n", done, RACERS);
    ASSERT_EQ(rmdir(dir), 0);
}

static lsock_server *g_second;
static bool g_second_won;

/* Runs a second server's whole listen() at the point where the first has found the file
 * stale and is about to remove it. */
static void second_listen(const char *path)
{
    lsock__test_hook_reclaim = NULL;
    g_second = lsock_server_new(NULL);
    ASSERT(lsock_server_set_socket_options(g_second, LSOCK_RECLAIM_STALE));
    g_second_won = lsock_server_listen(g_second, path);
}

TEST(reclaim_stale_by_a_second_server_before_the_first_removes_the_file_fails_address_in_use)
{
    const char *dir = make_tmpdir();
    char path[256];
    snprintf(path, sizeof path, "%s/s", dir);
    make_stale(path);
    lsock__test_hook_reclaim = second_listen;
    lsock_server *first = lsock_server_new(NULL);
    ASSERT(lsock_server_set_socket_options(first, LSOCK_RECLAIM_STALE));
    bool first_won = lsock_server_listen(first, path);
    lsock__test_hook_reclaim = NULL;
    ASSERT(g_second != NULL); /* the hook ran */
    ASSERT_EQ(first_won + g_second_won, 1);
    ASSERT(first_won);
    ASSERT_ERR(lsock_server_error(g_second), LSOCK_ERR_ADDRESS_IN_USE);
    printf("second: %s\n", lsock_server_error_string(g_second));
    lsock_socket *c = lsock_socket_new(NULL);
    ASSERT(lsock_socket_connect(c, path, LSOCK_READ_WRITE));
    ASSERT(lsock_server_wait_for_new_connection(first, 5000, NULL));
    lsock_socket_free(c);
    lsock_server_free(g_second);
    lsock_server_free(first);
    ASSERT(!file_exists(path));
    ASSERT_EQ(rmdir(dir), 0);
}

/* A child forked (by another thread, say) while a listen holds the directory's reclaim lock
 * shares the lock's open file: it must not keep the directory locked after that listen. */
static pid_t g_holder = -1;
static int g_holder_pipe[2] = {-1, -1};

static void fork_a_holder(const char *path)
{
    (void)path;
    lsock__test_hook_reclaim = NULL;
    ASSERT_EQ(pipe(g_holder_pipe), 0);
    fflush(stdout);
    fflush(stderr);
    g_holder = fork();
    ASSERT(g_holder >= 0);
    if (g_holder == 0) {
        alarm(20);
        close(g_holder_pipe[1]);
        char c;
        while (read(g_holder_pipe[0], &c, 1) < 0 && errno == EINTR)
            ; /* until the test closes the pipe */
        _exit(0);
    }
    close(g_holder_pipe[0]);
}

TEST(reclaim_lock_is_released_by_listen_even_when_a_child_forked_while_it_was_held)
{
    const char *dir = make_tmpdir();
    char a[256], b[256];
    snprintf(a, sizeof a, "%s/a", dir);
    snprintf(b, sizeof b, "%s/b", dir);
    make_stale(a);
    make_stale(b);
    lsock__test_hook_reclaim = fork_a_holder;
    lsock_server *first = lsock_server_new(NULL);
    ASSERT(lsock_server_set_socket_options(first, LSOCK_RECLAIM_STALE));
    ASSERT(lsock_server_listen(first, a));
    lsock__test_hook_reclaim = NULL;
    ASSERT(g_holder > 0); /* the hook ran: the child lives on, holding a copy of the lock */
    lsock_server *second = lsock_server_new(NULL);
    ASSERT(lsock_server_set_socket_options(second, LSOCK_RECLAIM_STALE));
    bool ok = lsock_server_listen(second, b);
    if (!ok) printf("second: %s\n", lsock_server_error_string(second));
    close(g_holder_pipe[1]);
    int status = 0;
    ASSERT_EQ(waitpid(g_holder, &status, 0), g_holder);
    ASSERT(ok);
    lsock_server_free(second);
    lsock_server_free(first);
    ASSERT_EQ(rmdir(dir), 0);
}

/* The reclaim lock needs to open the directory for reading; where the user may only write and
 * search it, the reclaim still works (without taking turns), as it did before the lock. */
static void reclaim_in_a_write_only_directory(void)
{
    char dir[] = "/tmp/lsock-wx-XXXXXX";
    ASSERT(mkdtemp(dir) != NULL);
    char path[64];
    snprintf(path, sizeof path, "%s/srv", dir);
    make_stale(path);
    ASSERT_EQ(chmod(dir, 0300), 0);
    lsock_server *srv = lsock_server_new(NULL);
    ASSERT(lsock_server_set_socket_options(srv, LSOCK_RECLAIM_STALE));
    bool ok = lsock_server_listen(srv, path);
    if (!ok) printf("%s\n", lsock_server_error_string(srv));
    ASSERT(ok);
    lsock_socket *c = lsock_socket_new(NULL);
    ASSERT(lsock_socket_connect(c, path, LSOCK_READ_WRITE));
    ASSERT_EQ(lsock_socket_state(c), LSOCK_CONNECTED);
    lsock_socket_free(c);
    lsock_server_free(srv);
    ASSERT_EQ(chmod(dir, 0700), 0);
    ASSERT_EQ(rmdir(dir), 0);
}

TEST(reclaim_stale_works_in_a_directory_the_user_may_write_but_not_read)
{
    run_unprivileged(reclaim_in_a_write_only_directory);
}

/* ---- lsock_remove_server() removes socket files only ------------------------------------ */

enum { REGULAR_FILE, FIFO, SYMLINK_TO_SOCKET };

static void remove_server_keeps(int kind)
{
    const char *dir = make_tmpdir();
    char path[256], target[256];
    snprintf(path, sizeof path, "%s/srv", dir);
    snprintf(target, sizeof target, "%s/target", dir);
    mode_t type = S_IFLNK;
    switch (kind) {
    case REGULAR_FILE:
        close(open(path, O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, 0600));
        type = S_IFREG;
        break;
    case FIFO:
        ASSERT_EQ(mkfifo(path, 0600), 0);
        type = S_IFIFO;
        break;
    case SYMLINK_TO_SOCKET:
        make_stale(target);
        ASSERT_EQ(symlink(target, path), 0);
        break;
    }
    struct stat before, after;
    ASSERT_EQ(lstat(path, &before), 0);
    ASSERT_EQ(before.st_mode & S_IFMT, type);
    ASSERT(!lsock_remove_server(path));
    ASSERT_EQ(lstat(path, &after), 0);
    ASSERT_EQ(after.st_ino, before.st_ino);
    if (kind == SYMLINK_TO_SOCKET) {
        ASSERT_EQ(stat(target, &after), 0);
        ASSERT(S_ISSOCK(after.st_mode));
        ASSERT(lsock_remove_server(target)); /* a socket file itself goes */
        ASSERT(!file_exists(target));
    }
    ASSERT_EQ(unlink(path), 0);
    ASSERT_EQ(rmdir(dir), 0);
}

TEST(remove_server_keeps_a_regular_file)
{
    remove_server_keeps(REGULAR_FILE);
}

TEST(remove_server_keeps_a_fifo)
{
    remove_server_keeps(FIFO);
}

TEST(remove_server_keeps_a_symlink_even_to_a_socket)
{
    remove_server_keeps(SYMLINK_TO_SOCKET);
}

/* ---- listen_descriptor on an abstract socket -------------------------------------------- */

TEST(listen_descriptor_on_an_abstract_socket_keeps_the_options_so_a_later_listen_makes_a_file)
{
#ifndef __linux__
    SKIP("the abstract namespace is Linux-only");
#endif
    const char *name = test_name("absfd");
    const char *full = name; /* an abstract name is the name as given, as in Qt 6 */
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    ASSERT(fd >= 0);
    struct sockaddr_un a;
    memset(&a, 0, sizeof a);
    a.sun_family = AF_UNIX;
    memcpy(a.sun_path + 1, full, strlen(full));
    socklen_t len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + strlen(full));
    ASSERT_EQ(bind(fd, (struct sockaddr *)&a, len), 0);
    ASSERT_EQ(listen(fd, 8), 0);
    lsock_server *srv = lsock_server_new(NULL);
    ASSERT(lsock_server_set_socket_options(srv, LSOCK_RECLAIM_STALE));
    ASSERT(lsock_server_listen_descriptor(srv, fd));
    ASSERT_EQ(lsock_server_socket_options(srv), LSOCK_RECLAIM_STALE);
    lsock_socket *c = lsock_socket_new(NULL);
    ASSERT(lsock_socket_set_options(c, LSOCK_ABSTRACT_NAMESPACE));
    ASSERT(lsock_socket_connect(c, name, LSOCK_READ_WRITE));
    ASSERT(lsock_server_wait_for_new_connection(srv, 5000, NULL));
    lsock_socket_free(c);
    lsock_server_close(srv);
    /* The next listen follows the options: a file in the file system. */
    const char *dir = make_tmpdir();
    char path[256];
    snprintf(path, sizeof path, "%s/s", dir);
    ASSERT(lsock_server_listen(srv, path));
    struct stat st;
    ASSERT_EQ(lstat(path, &st), 0);
    ASSERT(S_ISSOCK(st.st_mode));
    c = lsock_socket_new(NULL);
    ASSERT(lsock_socket_connect(c, path, LSOCK_READ_WRITE));
    ASSERT(lsock_server_wait_for_new_connection(srv, 5000, NULL));
    lsock_socket_free(c);
    lsock_server_free(srv);
    ASSERT_EQ(rmdir(dir), 0);
}

/* ---- fork ------------------------------------------------------------------------------ */

TEST(server_freed_in_a_forked_child_leaves_the_parent_its_file_and_its_listener)
{
    lsock_loop *loop = loop_new();
    const char *name = test_name("forked");
    lsock_server *srv = lsock_server_new(loop);
    ASSERT(lsock_server_listen(srv, name));
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    ASSERT(pid >= 0);
    if (pid == 0) {
        alarm(30);
        lsock_server_free(srv);
        _exit(0);
    }
    int status = 0;
    ASSERT_EQ(waitpid(pid, &status, 0), pid);
    ASSERT(WIFEXITED(status));
    ASSERT_EQ(WEXITSTATUS(status), 0);
    ASSERT(file_exists(path_of(name)));
    lsock_socket *c = lsock_socket_new(loop);
    ASSERT(lsock_socket_connect(c, name, LSOCK_READ_WRITE));
    ASSERT_EQ(lsock_socket_state(c), LSOCK_CONNECTED);
    RUN_UNTIL(loop, lsock_server_has_pending_connections(srv), 5000);
    lsock_socket *peer = lsock_server_next_pending_connection(srv);
    ASSERT_EQ(lsock_socket_write(peer, "up", 2), 2);
    RUN_UNTIL(loop, lsock_socket_bytes_available(c) == 2, 5000);
    lsock_socket_free(peer);
    lsock_socket_free(c);
    lsock_server_free(srv);
    ASSERT(!file_exists(path_of(name)));
    loop_free(loop);
}

/* ---- abstract names and adopted descriptors, as Qt 6 ------------------------------------ */

/* A connected raw client of addr (len bytes). */
static int raw_connect_addr(const struct sockaddr_un *addr, socklen_t len)
{
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    ASSERT(fd >= 0);
    ASSERT_EQ(connect(fd, (const struct sockaddr *)addr, len), 0);
    return fd;
}

static socklen_t abstract_addr(struct sockaddr_un *a, const char *name)
{
    memset(a, 0, sizeof *a);
    a->sun_family = AF_UNIX;
    ASSERT(strlen(name) + 1 < sizeof a->sun_path);
    memcpy(a->sun_path + 1, name, strlen(name));
    return (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + strlen(name));
}

TEST(abstract_address_is_a_nul_and_the_name_as_given_without_padding)
{
#ifndef __linux__
    SKIP("the abstract namespace is Linux-only");
#endif
    const char *name = test_name("absaddr");
    lsock_server *srv = lsock_server_new(NULL);
    ASSERT(lsock_server_set_socket_options(srv, LSOCK_ABSTRACT_NAMESPACE));
    ASSERT(lsock_server_listen(srv, name));
    struct sockaddr_un got, want;
    socklen_t len = sizeof got;
    ASSERT_EQ(getsockname((int)lsock_server_descriptor(srv), (struct sockaddr *)&got, &len), 0);
    socklen_t want_len = abstract_addr(&want, name);
    ASSERT_EQ(len, want_len); /* offsetof + 1 + the name's bytes: no trailing NULs */
    ASSERT(memcmp(got.sun_path, want.sun_path, want_len - offsetof(struct sockaddr_un, sun_path)) ==
           0);
    /* A client of exactly that address, as a Qt 6 client forms it, reaches the server. */
    int fd = raw_connect_addr(&want, want_len);
    ASSERT(lsock_server_wait_for_new_connection(srv, 5000, NULL));
    close(fd);
    lsock_server_free(srv);
}

TEST(set_descriptor_takes_names_and_abstract_option_from_the_address_as_qt6)
{
#ifndef __linux__
    SKIP("the abstract namespace is Linux-only");
#endif
    /* A client of an abstract server: both names are the abstract name, the option is set. */
    const char *aname = test_name("absadopt");
    lsock_server *asrv = lsock_server_new(NULL);
    ASSERT(lsock_server_set_socket_options(asrv, LSOCK_ABSTRACT_NAMESPACE));
    ASSERT(lsock_server_listen(asrv, aname));
    struct sockaddr_un a;
    socklen_t alen = abstract_addr(&a, aname);
    int fd = raw_connect_addr(&a, alen);
    lsock_socket *s = lsock_socket_new(NULL);
    ASSERT(lsock_socket_set_descriptor(s, fd, LSOCK_CONNECTED, LSOCK_READ_WRITE));
    ASSERT_STR_EQ(lsock_socket_server_name(s), aname);
    ASSERT_STR_EQ(lsock_socket_full_server_name(s), aname);
    ASSERT_EQ(lsock_socket_options(s), LSOCK_ABSTRACT_NAMESPACE);
    lsock_socket_free(s);
    close(fd);
    lsock_server_free(asrv);
    /* A client of a path (a raw server bound there: an lsock server binds elsewhere and links
     * its socket into place, so its address is that other path): the path, its last
     * component, the option cleared. */
    const char *pname = test_name("pathadopt");
    const char *full = path_of(pname);
    int lfd = raw_listener(full, 4);
    ASSERT(lfd >= 0);
    struct sockaddr_un p;
    memset(&p, 0, sizeof p);
    p.sun_family = AF_UNIX;
    ASSERT(strlen(full) < sizeof p.sun_path);
    memcpy(p.sun_path, full, strlen(full) + 1);
    fd = raw_connect_addr(&p, sizeof p);
    s = lsock_socket_new(NULL);
    ASSERT(lsock_socket_set_options(s, LSOCK_ABSTRACT_NAMESPACE));
    ASSERT(lsock_socket_set_descriptor(s, fd, LSOCK_CONNECTED, LSOCK_READ_WRITE));
    ASSERT_STR_EQ(lsock_socket_full_server_name(s), full);
    ASSERT_STR_EQ(lsock_socket_server_name(s), pname);
    ASSERT_EQ(lsock_socket_options(s), 0);
    /* The accepted end has no peer address: its names come from its own, the server's. */
    int afd = accept(lfd, NULL, NULL);
    ASSERT(afd >= 0);
    lsock_socket *adopted = lsock_socket_new(NULL);
    ASSERT(lsock_socket_set_descriptor(adopted, afd, LSOCK_CONNECTED, LSOCK_READ_WRITE));
    ASSERT_STR_EQ(lsock_socket_full_server_name(adopted), full);
    ASSERT_STR_EQ(lsock_socket_server_name(adopted), pname);
    lsock_socket_free(adopted);
    close(afd);
    lsock_socket_free(s);
    close(fd);
    close(lfd);
    unlink(full);
}

TEST_MAIN()
