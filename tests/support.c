/* The helpers of support.h and loop_util.h, shared by the suites through lsock_testlib. */
#include "support.h"

/* ---- loops ----------------------------------------------------------------------------- */

lsock_timer *g_tick;

void tick_cb(lsock_timer *t, void *u)
{
    (void)t;
    (void)u;
}

lsock_loop *loop_new(void)
{
    lsock_loop *loop = lsock_loop_new();
    ASSERT(loop != NULL);
    g_tick = lsock_timer_new(loop, tick_cb, NULL);
    ASSERT(g_tick != NULL);
    ASSERT(lsock_timer_start(g_tick, 10, 10));
    return loop;
}

void loop_free(lsock_loop *loop)
{
    lsock_timer_free(g_tick);
    g_tick = NULL;
    ASSERT(lsock_loop_free(loop));
}

int run_for(lsock_loop *loop, int ms)
{
    int n = 0;
    uint64_t end = test_now_ms() + (uint64_t)ms;
    while (test_now_ms() < end) {
        lsock_loop_run(loop, LSOCK_RUN_ONCE);
        n++;
    }
    return n;
}

const char *state_name(lsock_state st)
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

/* ---- names ----------------------------------------------------------------------------- */

const char *path_of(const char *name)
{
    static char bufs[8][512];
    static unsigned slot;
    char *out = bufs[slot++ % 8];
#ifdef _WIN32
    /* Named pipes: \\.\pipe\NAME unless the name has the prefix already. */
    snprintf(out, 512, "%s%s", strncmp(name, "\\\\.\\pipe\\", 9) == 0 ? "" : "\\\\.\\pipe\\", name);
#else
    if (name[0] == '/') {
        snprintf(out, 512, "%s", name);
        return out;
    }
    const char *dir = getenv("TMPDIR");
    if (!dir || !*dir) dir = "/tmp";
    size_t n = strlen(dir);
    snprintf(out, 512, "%s%s%s", dir, dir[n - 1] == '/' ? "" : "/", name);
#endif
    return out;
}

bool starts_with(const char *s, const char *prefix)
{
    return s && strncmp(s, prefix, strlen(prefix)) == 0;
}

/* ---- the callback recorder ------------------------------------------------------------- */

void rec_init(rec *r)
{
    memset(r, 0, sizeof *r);
    r->state_in_rcf = (lsock_state)-1;
    r->state_in_disconnected = (lsock_state)-1;
    r->avail_in_about_to_close = -1;
    r->avail_in_rcf = -1;
}

void rec_init_qt(rec *r)
{
    rec_init(r);
    r->qt_log = true;
}

void rec_add(rec *r, const char *ev)
{
    size_t n = strlen(r->log);
    snprintf(r->log + n, sizeof r->log - n, "%s%s", n ? " " : "", ev);
}

/* Frees the socket once, from the callback that free_in names. */
static void maybe_free(lsock_socket *s, rec *r, const char *cb)
{
    if (r->free_in && strcmp(r->free_in, cb) == 0 && !r->freed) {
        r->freed = true;
        lsock_socket_free(s);
    }
}

/* Logs ev, or "ev(STATE)" with the socket's state in the Qt tokens. */
static void rec_add_with_state(rec *r, lsock_socket *s, const char *ev)
{
    char buf[64];
    if (!r->qt_log) {
        rec_add(r, ev);
        return;
    }
    snprintf(buf, sizeof buf, "%s(%s)", ev, state_name(lsock_socket_state(s)));
    rec_add(r, buf);
}

void on_connected(lsock_socket *s, void *u)
{
    rec *r = u;
    r->connected++;
    if (!r->qt_log) rec_add(r, "connected");
    maybe_free(s, r, "connected");
}

void on_disconnected(lsock_socket *s, void *u)
{
    rec *r = u;
    r->disconnected++;
    r->state_in_disconnected = lsock_socket_state(s);
    rec_add_with_state(r, s, "disconnected");
    maybe_free(s, r, "disconnected");
}

void on_error(lsock_socket *s, lsock_error err, void *u)
{
    rec *r = u;
    char buf[64];
    r->errors++;
    r->last_error = err;
    snprintf(buf, sizeof buf, "error:%s", lsock_error_name(err));
    rec_add(r, buf);
    maybe_free(s, r, "error_occurred");
}

void on_state(lsock_socket *s, lsock_state st, void *u)
{
    rec *r = u;
    char buf[64];
    r->state_changes++;
    snprintf(buf, sizeof buf, "state:%s", state_name(st));
    rec_add(r, buf);
    maybe_free(s, r, "state_changed");
}

void on_ready_read(lsock_socket *s, void *u)
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

void on_bytes_written(lsock_socket *s, int64_t n, void *u)
{
    rec *r = u;
    r->bytes_written_calls++;
    r->written += n;
    if (r->in_write) r->bw_inside_write++;
    if (r->log_io) rec_add(r, "bytes_written");
    maybe_free(s, r, "bytes_written");
}

void on_about_to_close(lsock_socket *s, void *u)
{
    rec *r = u;
    r->about_to_close++;
    r->avail_in_about_to_close = lsock_socket_bytes_available(s);
    r->open_in_about_to_close = lsock_socket_open_mode(s) != 0;
    rec_add(r, "about_to_close");
    maybe_free(s, r, "about_to_close");
}

void on_rcf(lsock_socket *s, void *u)
{
    rec *r = u;
    r->rcf++;
    r->state_in_rcf = lsock_socket_state(s);
    r->avail_in_rcf = lsock_socket_bytes_available(s);
    rec_add_with_state(r, s, "read_channel_finished");
    maybe_free(s, r, "read_channel_finished");
}

const lsock_socket_callbacks rec_cbs = {
    on_connected,  on_disconnected,  on_error,          on_state,
    on_ready_read, on_bytes_written, on_about_to_close, on_rcf,
};

/* ---- connected sockets ----------------------------------------------------------------- */

void pair_open(pair *p, lsock_loop *loop)
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

void pair_close(pair *p)
{
    if (p->client) lsock_socket_free(p->client);
    if (p->peer) lsock_socket_free(p->peer);
    if (p->srv) lsock_server_free(p->srv);
    p->client = p->peer = NULL;
    p->srv = NULL;
}

/* ---- raw AF_UNIX sockets (on Windows the stand-ins of win_posix.h skip) ----------------- */

int raw_listener(const char *path, int backlog)
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

void make_stale(const char *path)
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

int raw_accept(int lfd)
{
    struct pollfd pfd = {.fd = lfd, .events = POLLIN};
    ASSERT_EQ(poll(&pfd, 1, 5000), 1);
    int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
    ASSERT(fd >= 0);
    return fd;
}

void set_nonblock(int fd)
{
    int fl = fcntl(fd, F_GETFL);
    ASSERT(fl >= 0);
    ASSERT_EQ(fcntl(fd, F_SETFL, fl | O_NONBLOCK), 0);
}

int fill_backlog(const char *path, int *fds, int max)
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

void fullsrv_open(fullsrv *f, const char *tag)
{
    snprintf(f->name, sizeof f->name, "%s", test_name(tag));
    f->lfd = raw_listener(path_of(f->name), 0);
    f->n = fill_backlog(path_of(f->name), f->fds, 512);
}

void fullsrv_close(fullsrv *f)
{
    for (int i = 0; i < f->n; i++)
        close(f->fds[i]);
    close(f->lfd);
    unlink(path_of(f->name));
}

void rawpair_open(rawpair *p, lsock_loop *loop)
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

void rawpair_close(rawpair *p)
{
    if (p->s) lsock_socket_free(p->s);
    p->s = NULL;
    if (p->pfd >= 0) close(p->pfd);
    if (p->lfd >= 0) close(p->lfd);
    p->pfd = p->lfd = -1;
    unlink(path_of(p->name));
}

void write_all_raw(int fd, const void *buf, size_t n)
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

/* ---- byte patterns --------------------------------------------------------------------- */

unsigned char pattern_byte(size_t i)
{
    return (unsigned char)((i * 7u) % 251u);
}

unsigned char *pattern_new(size_t n)
{
    unsigned char *b = malloc(n ? n : 1);
    ASSERT(b != NULL);
    for (size_t i = 0; i < n; i++)
        b[i] = pattern_byte(i);
    return b;
}

int drain_raw(int fd, size_t *total)
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

unsigned char qt_pattern_byte(uint64_t i)
{
    return (unsigned char)(((uint32_t)i * 2654435761u) >> 24);
}

unsigned char *qt_pattern_new(size_t n)
{
    unsigned char *b = malloc(n ? n : 1);
    ASSERT(b != NULL);
    for (size_t i = 0; i < n; i++)
        b[i] = qt_pattern_byte(i);
    return b;
}

uint64_t fnv_add(uint64_t h, const void *data, size_t n)
{
    const unsigned char *p = data;
    for (size_t i = 0; i < n; i++) {
        h ^= p[i];
        h *= 1099511628211ull;
    }
    return h;
}

uint64_t qt_pattern_fnv(size_t n)
{
    uint64_t h = FNV_INIT;
    for (size_t i = 0; i < n; i++) {
        unsigned char b = qt_pattern_byte(i);
        h = fnv_add(h, &b, 1);
    }
    return h;
}

/* ---- files and users ------------------------------------------------------------------- */

bool file_exists(const char *path)
{
    struct stat st;
    return lstat(path, &st) == 0;
}

const char *make_tmpdir(void)
{
    static char dir[128];
    snprintf(dir, sizeof dir, "/tmp/lsock-test-dir-XXXXXX");
    ASSERT(mkdtemp(dir) != NULL);
    return dir;
}

void run_unprivileged(void (*fn)(void))
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
