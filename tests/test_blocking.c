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

#define UNUSED __attribute__((unused))

/* ---- helpers --------------------------------------------------------------------------- */

/* The path the library resolves a name to. */
static UNUSED const char *path_of(const char *name)
{
    static char bufs[8][512];
    static unsigned slot;
    char *out = bufs[slot++ % 8];
#ifdef _WIN32
    /* Named pipes: \\.\pipe\NAME unless the name has the prefix already. */
    snprintf(out, 512, "%s%s", strncmp(name, "\\\\.\\pipe\\", 9) == 0 ? "" : "\\\\.\\pipe\\", name);
    return out;
#endif
    if (name[0] == '/') {
        snprintf(out, 512, "%s", name);
        return out;
    }
    const char *dir = getenv("TMPDIR");
    if (!dir || !*dir) dir = "/tmp";
    size_t n = strlen(dir);
    snprintf(out, 512, "%s%s%s", dir, dir[n - 1] == '/' ? "" : "/", name);
    return out;
}

static UNUSED bool starts_with(const char *s, const char *prefix)
{
    return s && strncmp(s, prefix, strlen(prefix)) == 0;
}

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

/* Runs the loop for about ms milliseconds (to show that something does NOT happen). */
static UNUSED void run_for(lsock_loop *loop, int ms)
{
    uint64_t end = test_now_ms() + (uint64_t)ms;
    while (test_now_ms() < end)
        lsock_loop_run(loop, LSOCK_RUN_ONCE);
}

/* Records every callback of a socket into a log ("state:CONNECTING connected ..."). */
typedef struct rec {
    char log[4096];
    int connected, disconnected, errors, ready_read, about_to_close, rcf, state_changes;
    int bytes_written_calls;
    lsock_error last_error;
    lsock_state state_in_rcf, state_in_disconnected;
    int64_t avail_in_about_to_close;
    int64_t written;
    int64_t max_available;
    int in_write, bw_inside_write;
    int depth, max_depth;
    bool log_io; /* also log ready_read and bytes_written */
    const char *free_in;
    bool freed;
    void (*on_ready_read)(lsock_socket *s, struct rec *r);
    void *user;
} rec;

static UNUSED void rec_init(rec *r)
{
    memset(r, 0, sizeof *r);
    r->state_in_rcf = (lsock_state)-1;
    r->state_in_disconnected = (lsock_state)-1;
    r->avail_in_about_to_close = -1;
}

static UNUSED void rec_add(rec *r, const char *ev)
{
    size_t n = strlen(r->log);
    snprintf(r->log + n, sizeof r->log - n, "%s%s", n ? " " : "", ev);
}

static UNUSED void maybe_free(lsock_socket *s, rec *r, const char *cb)
{
    if (r->free_in && strcmp(r->free_in, cb) == 0 && !r->freed) {
        r->freed = true;
        lsock_socket_free(s);
    }
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

static UNUSED void on_connected(lsock_socket *s, void *u)
{
    rec *r = u;
    r->connected++;
    rec_add(r, "connected");
    maybe_free(s, r, "connected");
}

static UNUSED void on_disconnected(lsock_socket *s, void *u)
{
    rec *r = u;
    r->disconnected++;
    r->state_in_disconnected = lsock_socket_state(s);
    rec_add(r, "disconnected");
    maybe_free(s, r, "disconnected");
}

static UNUSED void on_error(lsock_socket *s, lsock_error err, void *u)
{
    rec *r = u;
    char buf[64];
    r->errors++;
    r->last_error = err;
    snprintf(buf, sizeof buf, "error:%s", lsock_error_name(err));
    rec_add(r, buf);
    maybe_free(s, r, "error_occurred");
}

static UNUSED void on_state(lsock_socket *s, lsock_state st, void *u)
{
    rec *r = u;
    char buf[64];
    r->state_changes++;
    snprintf(buf, sizeof buf, "state:%s", state_name(st));
    rec_add(r, buf);
    maybe_free(s, r, "state_changed");
}

static UNUSED void on_ready_read(lsock_socket *s, void *u)
{
    rec *r = u;
    r->ready_read++;
    r->depth++;
    if (r->depth > r->max_depth) r->max_depth = r->depth;
    int64_t avail = lsock_socket_bytes_available(s);
    if (avail > r->max_available) r->max_available = avail;
    if (r->log_io) rec_add(r, "ready_read");
    if (r->on_ready_read) r->on_ready_read(s, r);
    r->depth--;
    maybe_free(s, r, "ready_read");
}

static UNUSED void on_bytes_written(lsock_socket *s, int64_t n, void *u)
{
    rec *r = u;
    r->bytes_written_calls++;
    r->written += n;
    if (r->in_write) r->bw_inside_write++;
    if (r->log_io) rec_add(r, "bytes_written");
    maybe_free(s, r, "bytes_written");
}

static UNUSED void on_about_to_close(lsock_socket *s, void *u)
{
    rec *r = u;
    r->about_to_close++;
    r->avail_in_about_to_close = lsock_socket_bytes_available(s);
    rec_add(r, "about_to_close");
    maybe_free(s, r, "about_to_close");
}

static UNUSED void on_rcf(lsock_socket *s, void *u)
{
    rec *r = u;
    r->rcf++;
    r->state_in_rcf = lsock_socket_state(s);
    rec_add(r, "read_channel_finished");
    maybe_free(s, r, "read_channel_finished");
}

static UNUSED const lsock_socket_callbacks rec_cbs = {
    on_connected,  on_disconnected,  on_error,          on_state,
    on_ready_read, on_bytes_written, on_about_to_close, on_rcf,
};

/* A server, a client connected to it and the server's end of that connection. */
typedef struct pair {
    lsock_server *srv;
    lsock_socket *client;
    lsock_socket *peer;
    char name[128];
} pair;

static UNUSED void pair_open(pair *p, lsock_loop *loop)
{
    memset(p, 0, sizeof *p);
    snprintf(p->name, sizeof p->name, "%s", test_name("pair"));
    p->srv = lsock_server_new(loop);
    ASSERT(p->srv != NULL);
    ASSERT(lsock_server_listen(p->srv, p->name));
    p->client = lsock_socket_new(loop);
    ASSERT(p->client != NULL);
    ASSERT(lsock_socket_connect(p->client, p->name, LSOCK_READ_WRITE));
    ASSERT_EQ(lsock_socket_state(p->client), LSOCK_CONNECTED);
    if (loop)
        RUN_UNTIL(loop, lsock_server_has_pending_connections(p->srv), 5000);
    else
        ASSERT(lsock_server_wait_for_new_connection(p->srv, 5000, NULL));
    p->peer = lsock_server_next_pending_connection(p->srv);
    ASSERT(p->peer != NULL);
}

static UNUSED void pair_close(pair *p)
{
    if (p->client) lsock_socket_free(p->client);
    if (p->peer) lsock_socket_free(p->peer);
    if (p->srv) lsock_server_free(p->srv);
    p->client = p->peer = NULL;
    p->srv = NULL;
}

/* A raw listening socket on path. */
static UNUSED int raw_listener(const char *path, int backlog)
{
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    ASSERT(fd >= 0);
    struct sockaddr_un a;
    memset(&a, 0, sizeof a);
    a.sun_family = AF_UNIX;
    ASSERT(strlen(path) < sizeof a.sun_path);
    strcpy(a.sun_path, path);
    ASSERT_EQ(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
    ASSERT_EQ(listen(fd, backlog), 0);
    return fd;
}

/* Leaves a socket file on path that nobody listens on. */
static UNUSED void make_stale(const char *path)
{
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    ASSERT(fd >= 0);
    struct sockaddr_un a;
    memset(&a, 0, sizeof a);
    a.sun_family = AF_UNIX;
    strcpy(a.sun_path, path);
    ASSERT_EQ(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
    close(fd);
}

static UNUSED int raw_accept(int lfd)
{
    struct pollfd pfd = {.fd = lfd, .events = POLLIN};
    ASSERT_EQ(poll(&pfd, 1, 5000), 1);
    int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
    ASSERT(fd >= 0);
    return fd;
}

static UNUSED void set_nonblock(int fd)
{
    int fl = fcntl(fd, F_GETFL);
    ASSERT(fl >= 0);
    ASSERT_EQ(fcntl(fd, F_SETFL, fl | O_NONBLOCK), 0);
}

/* Fills the backlog of a raw listener; returns the number of raw clients in *fds. */
static UNUSED int fill_backlog(const char *path, int *fds, int max)
{
    struct sockaddr_un a;
    memset(&a, 0, sizeof a);
    a.sun_family = AF_UNIX;
    strcpy(a.sun_path, path);
    int n = 0;
    for (;;) {
        ASSERT(n < max);
        int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        ASSERT(fd >= 0);
        if (connect(fd, (struct sockaddr *)&a, sizeof a) == 0) {
            fds[n++] = fd;
            continue;
        }
        ASSERT(errno == EAGAIN || errno == EWOULDBLOCK);
        close(fd);
        return n;
    }
}

static UNUSED unsigned char pattern_byte(size_t i)
{
    return (unsigned char)((i * 7u) % 251u);
}

static UNUSED unsigned char *pattern_new(size_t n)
{
    unsigned char *b = malloc(n);
    ASSERT(b != NULL);
    for (size_t i = 0; i < n; i++)
        b[i] = pattern_byte(i);
    return b;
}

/* Reads what the raw fd has now (non-blocking); checks the pattern. Returns -1 at EOF. */
static UNUSED int drain_raw(int fd, size_t *total)
{
    unsigned char buf[65536];
    for (;;) {
        ssize_t n = read(fd, buf, sizeof buf);
        if (n == 0) return -1;
        if (n < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK) return 0;
            if (errno == ECONNRESET) return -1;
            FAIL_("read: %s", strerror(errno));
        }
        for (ssize_t i = 0; i < n; i++)
            if (buf[i] != pattern_byte(*total + (size_t)i)) FAIL_("byte %zu differs", *total + i);
        *total += (size_t)n;
    }
}

/* A client socket connected to a raw listener, and the raw accepted end (non-blocking). */
typedef struct rawpair {
    char name[128];
    int lfd, pfd;
    lsock_socket *s;
} rawpair;

static UNUSED void rawpair_open(rawpair *p, lsock_loop *loop)
{
    snprintf(p->name, sizeof p->name, "%s", test_name("raw"));
    p->lfd = raw_listener(path_of(p->name), 8);
    p->s = lsock_socket_new(loop);
    ASSERT(p->s != NULL);
    ASSERT(lsock_socket_connect(p->s, p->name, LSOCK_READ_WRITE));
    ASSERT_EQ(lsock_socket_state(p->s), LSOCK_CONNECTED);
    p->pfd = raw_accept(p->lfd);
    set_nonblock(p->pfd);
}

static UNUSED void rawpair_close(rawpair *p)
{
    if (p->s) lsock_socket_free(p->s);
    p->s = NULL;
    if (p->pfd >= 0) close(p->pfd);
    if (p->lfd >= 0) close(p->lfd);
    p->pfd = p->lfd = -1;
    unlink(path_of(p->name));
}

static UNUSED void write_all_raw(int fd, const void *buf, size_t n)
{
    const char *p = buf;
    while (n) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && (errno == EAGAIN || errno == EINTR)) {
            struct pollfd pfd = {.fd = fd, .events = POLLOUT};
            poll(&pfd, 1, 1000);
            continue;
        }
        ASSERT(w > 0);
        p += w;
        n -= (size_t)w;
    }
}

static UNUSED bool file_exists(const char *path)
{
    struct stat st;
    return lstat(path, &st) == 0;
}

/* A fresh directory for TMPDIR; returns its path (static storage). */
static UNUSED const char *make_tmpdir(void)
{
    static char dir[128];
    snprintf(dir, sizeof dir, "/tmp/lsock-test-dir-XXXXXX");
    ASSERT(mkdtemp(dir) != NULL);
    return dir;
}

/* Runs fn as an unprivileged user: directly unless root; as root in a child that drops to
 * nobody (skips when that is impossible). */
static UNUSED void run_unprivileged(void (*fn)(void))
{
    if (geteuid() != 0) {
        fn();
        return;
    }
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    ASSERT(pid >= 0);
    if (pid == 0) {
        if (setgid(65534) != 0 || setuid(65534) != 0) _exit(77);
        fn();
        _exit(0);
    }
    int status = 0;
    ASSERT_EQ(waitpid(pid, &status, 0), pid);
    if (WIFEXITED(status) && WEXITSTATUS(status) == 77) SKIP("runs as root and cannot drop it");
    ASSERT(WIFEXITED(status));
    ASSERT_EQ(WEXITSTATUS(status), 0);
}

/* ---- blocking helpers ------------------------------------------------------------------ */

static int g_new_connections;
static void count_new_connection(lsock_server *srv, void *u)
{
    (void)srv;
    (void)u;
    g_new_connections++;
}

/* A peer thread: reads everything from a raw fd until EOF, counting and checking bytes. */
typedef struct reader {
    int fd;
    size_t total;
    bool eof;
    pthread_t th;
} reader;

static void *reader_main(void *arg)
{
    reader *rd = arg;
    unsigned char buf[65536];
    for (;;) {
        struct pollfd pfd = {.fd = rd->fd, .events = POLLIN};
        if (poll(&pfd, 1, 10000) != 1) break;
        ssize_t n = read(rd->fd, buf, sizeof buf);
        if (n < 0 && (errno == EAGAIN || errno == EINTR)) continue;
        if (n <= 0) {
            rd->eof = true;
            break;
        }
        for (ssize_t i = 0; i < n; i++)
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

TEST(wait_for_ready_read_on_unconnected_socket_fails_at_once)
{
    lsock_socket *s = lsock_socket_new(NULL);
    uint64_t t0 = test_now_ms();
    ASSERT(!lsock_socket_wait_for_ready_read(s, 3000));
    ASSERT(test_now_ms() - t0 < 1000);
    ASSERT_ERR(lsock_socket_error(s), LSOCK_ERR_OPERATION);
    ASSERT(starts_with(lsock_socket_error_string(s), "lsock_socket_wait_for_ready_read: "));
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

TEST(wait_for_disconnected_on_unconnected_socket_fails_at_once)
{
    lsock_socket *s = lsock_socket_new(NULL);
    uint64_t t0 = test_now_ms();
    ASSERT(!lsock_socket_wait_for_disconnected(s, 3000));
    ASSERT(test_now_ms() - t0 < 1000);
    ASSERT_ERR(lsock_socket_error(s), LSOCK_ERR_OPERATION);
    ASSERT(starts_with(lsock_socket_error_string(s), "lsock_socket_wait_for_disconnected: "));
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
    int lfd = raw_listener(path_of(name), 4);
    rec r;
    rec_init(&r);
    lsock_socket *s = lsock_socket_new(NULL);
    lsock_socket_set_callbacks(s, &rec_cbs, &r);
    ASSERT(lsock_socket_connect(s, name, LSOCK_READ_WRITE));
    reader rd;
    memset(&rd, 0, sizeof rd);
    rd.fd = raw_accept(lfd);
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
    close(rd.fd);
    close(lfd);
    unlink(path_of(name));
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

TEST(wait_for_bytes_written_on_unconnected_socket_fails)
{
    lsock_socket *s = lsock_socket_new(NULL);
    uint64_t t0 = test_now_ms();
    ASSERT(!lsock_socket_wait_for_bytes_written(s, 3000));
    ASSERT(test_now_ms() - t0 < 1000);
    ASSERT_ERR(lsock_socket_error(s), LSOCK_ERR_OPERATION);
    ASSERT(starts_with(lsock_socket_error_string(s), "lsock_socket_wait_for_bytes_written: "));
    lsock_socket_free(s);
}

TEST(wait_for_bytes_written_drains_a_large_write_to_a_reading_peer)
{
    const char *name = test_name("bbig");
    int lfd = raw_listener(path_of(name), 4);
    rec r;
    rec_init(&r);
    lsock_socket *s = lsock_socket_new(NULL);
    lsock_socket_set_callbacks(s, &rec_cbs, &r);
    ASSERT(lsock_socket_connect(s, name, LSOCK_READ_WRITE));
    reader rd;
    memset(&rd, 0, sizeof rd);
    rd.fd = raw_accept(lfd);
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
    close(rd.fd);
    close(lfd);
    unlink(path_of(name));
}

TEST(wait_for_bytes_written_to_vanished_peer_fails_peer_closed)
{
    rawpair p;
    rawpair_open(&p, NULL);
    close(p.pfd);
    p.pfd = -1;
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

TEST(wait_for_connected_on_unconnected_socket_fails_at_once)
{
    lsock_socket *s = lsock_socket_new(NULL);
    uint64_t t0 = test_now_ms();
    ASSERT(!lsock_socket_wait_for_connected(s, 3000));
    ASSERT(test_now_ms() - t0 < 1000);
    ASSERT_ERR(lsock_socket_error(s), LSOCK_ERR_OPERATION);
    ASSERT(starts_with(lsock_socket_error_string(s), "lsock_socket_wait_for_connected: "));
    lsock_socket_free(s);
}

/* Accepts one connection from a raw listener (from a thread). */
static void *accept_one(void *arg)
{
    int *fds = arg; /* [0] listener in, [1] accepted out */
    fds[1] = accept4(fds[0], NULL, NULL, SOCK_CLOEXEC);
    return NULL;
}

TEST(wait_for_connected_succeeds_when_a_server_thread_accepts)
{
    const char *name = test_name("bfull");
    int lfd = raw_listener(path_of(name), 0);
    int fds[512];
    int n = fill_backlog(path_of(name), fds, 512);
    rec r;
    rec_init(&r);
    lsock_socket *s = lsock_socket_new(NULL);
    lsock_socket_set_callbacks(s, &rec_cbs, &r);
    ASSERT(lsock_socket_set_connect_timeout(s, 5000));
    ASSERT(lsock_socket_connect(s, name, LSOCK_READ_WRITE));
    ASSERT_EQ(lsock_socket_state(s), LSOCK_CONNECTING);
    int io[2] = {lfd, -1};
    pthread_t th;
    ASSERT_EQ(pthread_create(&th, NULL, accept_one, io), 0);
    ASSERT(lsock_socket_wait_for_connected(s, 5000));
    ASSERT_EQ(lsock_socket_state(s), LSOCK_CONNECTED);
    ASSERT_STR_EQ(r.log, "state:CONNECTING state:CONNECTED connected");
    ASSERT_EQ(pthread_join(th, NULL), 0);
    ASSERT(io[1] >= 0);
    lsock_socket_free(s);
    close(io[1]);
    for (int i = 0; i < n; i++)
        close(fds[i]);
    close(lfd);
    unlink(path_of(name));
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
    const char *name = test_name("bloopfull");
    int lfd = raw_listener(path_of(name), 0);
    int fds[512];
    int n = fill_backlog(path_of(name), fds, 512);
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
    for (int i = 0; i < n; i++)
        close(fds[i]);
    close(lfd);
    unlink(path_of(name));
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

TEST(wait_for_ready_read_with_full_read_buffer_times_out_without_reading)
{
    pair p;
    pair_open(&p, NULL);
    ASSERT(lsock_socket_set_read_buffer_size(p.client, 4));
    ASSERT_EQ(lsock_socket_write(p.peer, "0123456789", 10), 10);
    ASSERT(lsock_socket_wait_for_ready_read(p.client, 5000));
    ASSERT_EQ(lsock_socket_bytes_available(p.client), 4);
    ASSERT(!lsock_socket_wait_for_ready_read(p.client, 50));
    ASSERT_ERR(lsock_socket_error(p.client), LSOCK_ERR_SOCKET_TIMEOUT);
    ASSERT_EQ(lsock_socket_bytes_available(p.client), 4);
    char buf[16];
    ASSERT_EQ(lsock_socket_read(p.client, buf, sizeof buf), 4);
    ASSERT(lsock_socket_wait_for_ready_read(p.client, 5000));
    ASSERT_EQ(lsock_socket_bytes_available(p.client), 4);
    pair_close(&p);
}

TEST_MAIN()
