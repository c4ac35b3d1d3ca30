/* The helpers of support.h and loop_util.h, shared by the suites through lsock_testlib. */
#ifdef _WIN32
#define WIN32_LEAN_AND_MEAN
#include <windows.h>
#include <aclapi.h>
#include <psapi.h>
#endif
#include "support.h"

#ifdef __linux__
#include <sys/prctl.h>
#include <sys/syscall.h>
#endif
#ifndef _WIN32
#include <grp.h>
#include <signal.h>
#include <unistd.h>
#endif
#include <time.h>

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
    pair_open_with(p, loop, 0);
}

void pair_open_with(pair *p, lsock_loop *loop, unsigned options)
{
    memset(p, 0, sizeof *p);
    snprintf(p->name, sizeof p->name, "%s", test_name("pair"));
    p->srv = lsock_server_new(loop);
    ASSERT(p->srv != NULL);
    if (options) ASSERT(lsock_server_set_socket_options(p->srv, options));
    ASSERT(lsock_server_listen(p->srv, p->name));
    p->client = lsock_socket_new(loop);
    ASSERT(p->client != NULL);
    if (options) ASSERT(lsock_socket_set_options(p->client, options));
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

/* ---- raw peers --------------------------------------------------------------------------- */

/* The Unix-only helpers: on Windows the calls they make are win_posix.h's stand-ins. */
int raw_bound(const char *path)
{
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    ASSERT(fd >= 0);
    struct sockaddr_un a;
    memset(&a, 0, sizeof a);
    a.sun_family = AF_UNIX;
    ASSERT(strlen(path) < sizeof a.sun_path);
    strcpy(a.sun_path, path);
    ASSERT_EQ(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
    return fd;
}

int raw_listener(const char *path, int backlog)
{
    int fd = raw_bound(path);
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

void set_nonblock(int fd)
{
    int fl = fcntl(fd, F_GETFL);
    ASSERT(fl >= 0);
    ASSERT_EQ(fcntl(fd, F_SETFL, fl | O_NONBLOCK), 0);
}

#ifdef _WIN32

/* Byte-mode pipes with the buffers lsock's own servers have. */
#define RAW_PIPE_BUF 65536

static HANDLE pipe_instance(const char *path, DWORD flags)
{
    HANDLE h = CreateNamedPipeA(path, PIPE_ACCESS_DUPLEX | flags,
                                PIPE_TYPE_BYTE | PIPE_READMODE_BYTE | PIPE_WAIT,
                                PIPE_UNLIMITED_INSTANCES, RAW_PIPE_BUF, RAW_PIPE_BUF, 0, NULL);
    if (h == INVALID_HANDLE_VALUE) FAIL_("CreateNamedPipe(%s): error %lu", path, GetLastError());
    return h;
}

/* One ReadFile or WriteFile that waits for its end; works on handles opened with or without
 * FILE_FLAG_OVERLAPPED. Returns the bytes moved; *err gets the error (0 on success). */
static DWORD pipe_io(HANDLE h, bool wr, void *buf, DWORD n, DWORD *err)
{
    OVERLAPPED ov;
    memset(&ov, 0, sizeof ov);
    ov.hEvent = CreateEventA(NULL, TRUE, FALSE, NULL);
    ASSERT(ov.hEvent != NULL);
    DWORD done = 0;
    BOOL ok = wr ? WriteFile(h, buf, n, NULL, &ov) : ReadFile(h, buf, n, NULL, &ov);
    *err = ok ? 0 : GetLastError();
    if (ok || *err == ERROR_IO_PENDING) {
        ok = GetOverlappedResult(h, &ov, &done, TRUE);
        *err = ok ? 0 : GetLastError();
    }
    CloseHandle(ov.hEvent);
    return done;
}

struct raw_server {
    char path[512];
    HANDLE inst; /* the instance waiting for the next client */
};

raw_server *raw_listen(const char *name, int backlog)
{
    (void)backlog; /* one instance waits at a time; raw_accept() puts the next in place */
    raw_server *l = calloc(1, sizeof *l);
    ASSERT(l != NULL);
    snprintf(l->path, sizeof l->path, "%s", path_of(name));
    l->inst = pipe_instance(l->path, FILE_FLAG_FIRST_PIPE_INSTANCE);
    return l;
}

raw_fd raw_accept(raw_server *l)
{
    /* A waiting instance answers PeekNamedPipe with an error until a client connects; a
     * client that connected and left already makes it ERROR_BROKEN_PIPE (accepted, at EOF). */
    uint64_t dl = test_now_ms() + 5000;
    DWORD avail;
    while (!PeekNamedPipe(l->inst, NULL, 0, NULL, &avail, NULL) &&
           GetLastError() != ERROR_BROKEN_PIPE) {
        if (test_now_ms() > dl) FAIL_("raw_accept: no client within 5 s");
        Sleep(1);
    }
    HANDLE h = l->inst;
    l->inst = pipe_instance(l->path, 0);
    return (raw_fd)h;
}

raw_fd raw_server_fd(const raw_server *l)
{
    return (raw_fd)l->inst;
}

void raw_server_close(raw_server *l)
{
    if (!l) return;
    CloseHandle(l->inst);
    free(l);
}

void raw_close(raw_fd fd)
{
    if (fd != RAW_NONE) CloseHandle((HANDLE)fd);
}

void write_all_raw(raw_fd fd, const void *buf, size_t n)
{
    const char *p = buf;
    while (n) {
        DWORD err, chunk = n > (1u << 20) ? (1u << 20) : (DWORD)n;
        DWORD w = pipe_io((HANDLE)fd, true, (void *)p, chunk, &err);
        if (err) FAIL_("write_all_raw: error %lu", err);
        ASSERT(w > 0);
        p += w;
        n -= w;
    }
}

int64_t raw_read(raw_fd fd, void *buf, size_t n)
{
    DWORD avail = 0;
    if (!PeekNamedPipe((HANDLE)fd, NULL, 0, NULL, &avail, NULL)) {
        DWORD e = GetLastError();
        if (e == ERROR_BROKEN_PIPE || e == ERROR_PIPE_NOT_CONNECTED || e == ERROR_NO_DATA) return 0;
        FAIL_("raw_read: PeekNamedPipe: error %lu", e);
    }
    if (avail == 0) return -1;
    DWORD err, got = pipe_io((HANDLE)fd, false, buf, avail < n ? avail : (DWORD)n, &err);
    if (err == ERROR_BROKEN_PIPE || err == ERROR_PIPE_NOT_CONNECTED) return 0;
    if (err && err != ERROR_MORE_DATA) FAIL_("raw_read: ReadFile: error %lu", err);
    return (int64_t)got;
}

bool raw_wait_readable(raw_fd fd, int ms)
{
    /* No readiness to wait on for a pipe without starting a read: look every millisecond. */
    uint64_t dl = test_now_ms() + (uint64_t)ms;
    for (;;) {
        DWORD avail = 0;
        if (!PeekNamedPipe((HANDLE)fd, NULL, 0, NULL, &avail, NULL) || avail > 0) return true;
        if (test_now_ms() >= dl) return false;
        Sleep(1);
    }
}

bool raw_is_open(intptr_t fd)
{
    DWORD flags;
    return GetHandleInformation((HANDLE)fd, &flags) != 0;
}

bool raw_is_inherited(intptr_t fd)
{
    DWORD flags = 0;
    ASSERT(GetHandleInformation((HANDLE)fd, &flags));
    return (flags & HANDLE_FLAG_INHERIT) != 0;
}

void raw_socketpair(raw_fd sv[2])
{
    const char *path = path_of(test_name("sp"));
    HANDLE srv = pipe_instance(path, FILE_FLAG_OVERLAPPED | FILE_FLAG_FIRST_PIPE_INSTANCE);
    HANDLE cli = CreateFileA(path, GENERIC_READ | GENERIC_WRITE, 0, NULL, OPEN_EXISTING,
                             FILE_FLAG_OVERLAPPED, NULL);
    if (cli == INVALID_HANDLE_VALUE) FAIL_("CreateFile(%s): error %lu", path, GetLastError());
    sv[0] = (raw_fd)srv;
    sv[1] = (raw_fd)cli;
}

void fullsrv_open(fullsrv *f, const char *tag)
{
    snprintf(f->name, sizeof f->name, "%s", test_name(tag));
    const char *path = path_of(f->name);
    f->lfd = (raw_fd)pipe_instance(path, FILE_FLAG_FIRST_PIPE_INSTANCE);
    HANDLE c = CreateFileA(path, GENERIC_READ | GENERIC_WRITE, 0, NULL, OPEN_EXISTING, 0, NULL);
    if (c == INVALID_HANDLE_VALUE) FAIL_("CreateFile(%s): error %lu", path, GetLastError());
    f->fds[0] = (raw_fd)c;
    f->n = 1;
}

raw_fd fullsrv_accept(fullsrv *f)
{
    return (raw_fd)pipe_instance(path_of(f->name), 0);
}

void fullsrv_close(fullsrv *f)
{
    for (int i = 0; i < f->n; i++)
        raw_close(f->fds[i]);
    raw_close(f->lfd);
}

#else /* Unix */

struct raw_server {
    char path[512];
    int fd;
};

raw_server *raw_listen(const char *name, int backlog)
{
    raw_server *l = calloc(1, sizeof *l);
    ASSERT(l != NULL);
    snprintf(l->path, sizeof l->path, "%s", path_of(name));
    l->fd = raw_listener(l->path, backlog);
    return l;
}

raw_fd raw_accept(raw_server *l)
{
    struct pollfd pfd = {.fd = l->fd, .events = POLLIN};
    ASSERT_EQ(poll(&pfd, 1, 5000), 1);
    int fd = accept4(l->fd, NULL, NULL, SOCK_CLOEXEC);
    ASSERT(fd >= 0);
    return fd;
}

raw_fd raw_server_fd(const raw_server *l)
{
    return l->fd;
}

void raw_server_close(raw_server *l)
{
    if (!l) return;
    close(l->fd);
    unlink(l->path);
    free(l);
}

void raw_close(raw_fd fd)
{
    if (fd != RAW_NONE) close(fd);
}

/* Fills the backlog of a raw listener; returns the number of raw clients in *fds. */
static int fill_backlog(const char *path, int *fds, int max)
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

raw_fd fullsrv_accept(fullsrv *f)
{
    int fd = accept4(f->lfd, NULL, NULL, SOCK_CLOEXEC);
    ASSERT(fd >= 0);
    return fd;
}

void fullsrv_close(fullsrv *f)
{
    for (int i = 0; i < f->n; i++)
        close(f->fds[i]);
    close(f->lfd);
    unlink(path_of(f->name));
}

void write_all_raw(raw_fd fd, const void *buf, size_t n)
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

int64_t raw_read(raw_fd fd, void *buf, size_t n)
{
    ssize_t r = recv(fd, buf, n, MSG_DONTWAIT);
    if (r >= 0) return (int64_t)r;
    if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) return -1;
    if (errno == ECONNRESET) return 0;
    FAIL_("raw_read: %s", strerror(errno));
}

bool raw_wait_readable(raw_fd fd, int ms)
{
    struct pollfd pfd = {.fd = fd, .events = POLLIN};
    uint64_t dl = test_now_ms() + (uint64_t)ms;
    for (;;) {
        uint64_t now = test_now_ms();
        int left = now >= dl ? 0 : (int)(dl - now);
        int rc = poll(&pfd, 1, left);
        if (rc > 0) return true;
        if (rc == 0) return false;
        ASSERT(errno == EINTR);
    }
}

bool raw_is_open(intptr_t fd)
{
    return fcntl((int)fd, F_GETFD) >= 0;
}

bool raw_is_inherited(intptr_t fd)
{
    int fl = fcntl((int)fd, F_GETFD);
    ASSERT(fl >= 0);
    return (fl & FD_CLOEXEC) == 0;
}

void raw_socketpair(raw_fd sv[2])
{
    ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
}

#endif

void rawpair_open(rawpair *p, lsock_loop *loop)
{
    snprintf(p->name, sizeof p->name, "%s", test_name("raw"));
    p->l = raw_listen(p->name, 8);
    p->s = lsock_socket_new(loop);
    ASSERT(p->s != NULL);
    ASSERT(lsock_socket_connect(p->s, p->name, LSOCK_READ_WRITE));
    ASSERT_EQ(lsock_socket_state(p->s), LSOCK_CONNECTED);
    p->pfd = raw_accept(p->l);
#ifndef _WIN32
    set_nonblock(p->pfd); /* the Unix raw helpers expect a non-blocking peer */
#endif
}

void rawpair_close(rawpair *p)
{
    if (p->s) lsock_socket_free(p->s);
    p->s = NULL;
    raw_close(p->pfd);
    p->pfd = RAW_NONE;
    raw_server_close(p->l);
    p->l = NULL;
}

int drain_raw(raw_fd fd, size_t *total)
{
    static unsigned char buf[65536];
    for (;;) {
        int64_t n = raw_read(fd, buf, sizeof buf);
        if (n == 0) return -1;
        if (n < 0) return 0;
        for (int64_t i = 0; i < n; i++)
            if (buf[i] != pattern_byte(*total + (size_t)i))
                FAIL_("byte %zu differs", *total + (size_t)i);
        *total += (size_t)n;
    }
}

void drain_raw_until(raw_fd fd, size_t *total, size_t want, int ms)
{
    uint64_t dl = test_now_ms() + (uint64_t)ms;
    while (*total < want) {
        if (test_now_ms() > dl) FAIL_("%zu of %zu bytes after %d ms", *total, want, ms);
        int ended = drain_raw(fd, total) < 0;
        if (ended && *total < want) FAIL_("end of stream after %zu of %zu bytes", *total, want);
        if (*total < want) raw_wait_readable(fd, 100);
    }
    if (*total != want) FAIL_("%zu bytes where %zu were sent", *total, want);
}

struct raw_writer {
    raw_fd fd;
    const unsigned char *data;
    size_t n;
    bool ok;
    pthread_t th;
};

static void *raw_writer_main(void *arg)
{
    raw_writer *w = arg;
    write_all_raw(w->fd, w->data, w->n); /* fails the test on an error */
    raw_close(w->fd);
    w->ok = true;
    return NULL;
}

raw_writer *raw_write_and_close_async(raw_fd fd, const void *data, size_t n)
{
    raw_writer *w = calloc(1, sizeof *w);
    ASSERT(w != NULL);
    w->fd = fd;
    w->data = data;
    w->n = n;
    ASSERT_EQ(pthread_create(&w->th, NULL, raw_writer_main, w), 0);
    return w;
}

bool raw_writer_join(raw_writer *w)
{
    ASSERT_EQ(pthread_join(w->th, NULL), 0);
    bool ok = w->ok;
    free(w);
    return ok;
}

/* ---- child processes --------------------------------------------------------------------- */

#ifdef _WIN32

/* Exit code of a child that child_kill() ended (TerminateProcess). */
#define KILLED_CODE 0xdead

/* Children end with the test: they join this job, which goes with this process's last
 * handle. Made at start-up, so that the handle counts a test compares do not see it come. */
static HANDLE child_job;

__attribute__((constructor)) static void make_child_job(void)
{
    child_job = CreateJobObjectA(NULL, NULL);
    if (!child_job) return;
    JOBOBJECT_EXTENDED_LIMIT_INFORMATION li;
    memset(&li, 0, sizeof li);
    li.BasicLimitInformation.LimitFlags = JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE;
    SetInformationJobObject(child_job, JobObjectExtendedLimitInformation, &li, sizeof li);
}

void child_start(child *c, const char *fn, const char *arg)
{
    ASSERT(test_child_lookup_(fn) != NULL);
    ASSERT(strchr(arg, '"') == NULL);
    char exe[MAX_PATH], cmd[MAX_PATH + 1024];
    ASSERT(GetModuleFileNameA(NULL, exe, sizeof exe) > 0);
    snprintf(cmd, sizeof cmd, "\"%s\" --child %s \"%s\"", exe, fn, arg);
    STARTUPINFOA si;
    PROCESS_INFORMATION pi;
    memset(&si, 0, sizeof si);
    si.cb = sizeof si;
    fflush(stdout);
    fflush(stderr);
    if (!CreateProcessA(NULL, cmd, NULL, NULL, TRUE, 0, NULL, NULL, &si, &pi))
        FAIL_("CreateProcess(%s): error %lu", cmd, GetLastError());
    if (child_job) AssignProcessToJobObject(child_job, pi.hProcess);
    CloseHandle(pi.hThread);
    memset(c, 0, sizeof *c);
    c->pid = (int64_t)pi.dwProcessId;
    c->handle = (intptr_t)pi.hProcess;
}

int child_wait(child *c, int ms)
{
    if (c->ended) return c->status;
    DWORD w = WaitForSingleObject((HANDLE)c->handle, ms < 0 ? INFINITE : (DWORD)ms);
    if (w == WAIT_TIMEOUT) return CHILD_RUNNING;
    ASSERT_EQ(w, WAIT_OBJECT_0);
    DWORD code = 0;
    ASSERT(GetExitCodeProcess((HANDLE)c->handle, &code));
    CloseHandle((HANDLE)c->handle);
    c->handle = 0;
    c->ended = true;
    c->status = code == KILLED_CODE ? CHILD_KILLED : (int)code;
    return c->status;
}

void child_kill(child *c)
{
    ASSERT(!c->ended);
    ASSERT(TerminateProcess((HANDLE)c->handle, KILLED_CODE));
}

void child_lower_priority(void)
{
    SetPriorityClass(GetCurrentProcess(), BELOW_NORMAL_PRIORITY_CLASS);
}

void child_idle_forever(void)
{
    for (;;)
        Sleep(INFINITE);
}

void proc_pipe(raw_fd fds[2])
{
    SECURITY_ATTRIBUTES sa = {sizeof sa, NULL, TRUE}; /* children inherit both ends */
    HANDLE r, w;
    ASSERT(CreatePipe(&r, &w, &sa, 0));
    fds[0] = (raw_fd)r;
    fds[1] = (raw_fd)w;
}

bool proc_write_byte(raw_fd fd, char c)
{
    DWORD n = 0;
    return WriteFile((HANDLE)fd, &c, 1, &n, NULL) && n == 1;
}

int proc_read_byte(raw_fd fd, int ms)
{
    uint64_t dl = test_now_ms() + (uint64_t)(ms < 0 ? 0 : ms);
    for (;;) {
        DWORD avail = 0;
        if (!PeekNamedPipe((HANDLE)fd, NULL, 0, NULL, &avail, NULL)) return -1; /* closed */
        if (avail > 0) {
            unsigned char c;
            DWORD n = 0;
            if (!ReadFile((HANDLE)fd, &c, 1, &n, NULL) || n != 1) return -1;
            return c;
        }
        if (ms >= 0 && test_now_ms() >= dl) return -2;
        Sleep(1);
    }
}

#else /* Unix */

/* fork(); the child dies with its parent (Linux), exits 99 if the parent is already gone, and
 * ends after alarm_secs at most (0: no bound). */
static pid_t fork_linked(unsigned alarm_secs)
{
    pid_t parent = getpid();
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    ASSERT(pid >= 0);
    if (pid == 0) {
#ifdef __linux__
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent) _exit(99);
#endif
        if (alarm_secs) alarm(alarm_secs);
    }
    return pid;
}

pid_t fork_linked_child(void)
{
    return fork_linked(60); /* a child never outlives its test */
}

void child_start(child *c, const char *fn, const char *arg)
{
    test_child_fn f = test_child_lookup_(fn);
    ASSERT(f != NULL);
    pid_t pid = fork_linked(0);
    if (pid == 0) {
        int rc = f(arg);
        fflush(stdout);
        fflush(stderr);
        _exit(rc);
    }
    memset(c, 0, sizeof *c);
    c->pid = pid;
}

static int decode_status(int st)
{
    if (WIFEXITED(st)) return WEXITSTATUS(st);
    if (WIFSIGNALED(st)) return WTERMSIG(st) == SIGKILL ? CHILD_KILLED : -WTERMSIG(st);
    return -1;
}

/* Waits up to ms for the child's end as an event: a pidfd becomes readable when the process
 * exits (Linux 5.3+). Elsewhere there is no descriptor for it without a signal handler, and
 * the caller looks again after a millisecond. */
static void wait_for_child_end(pid_t pid, int ms)
{
#if defined(__linux__) && defined(SYS_pidfd_open)
    int pfd = (int)syscall(SYS_pidfd_open, pid, 0);
    if (pfd >= 0) {
        struct pollfd p = {pfd, POLLIN, 0};
        while (poll(&p, 1, ms) < 0 && errno == EINTR) {
        }
        close(pfd);
        return;
    }
#else
    (void)pid;
#endif
    (void)ms;
    struct pollfd none;
    poll(&none, 0, 1);
}

int child_wait(child *c, int ms)
{
    if (c->ended) return c->status;
    int st = 0;
    uint64_t dl = test_now_ms() + (uint64_t)(ms < 0 ? 0 : ms);
    for (;;) {
        pid_t w = waitpid((pid_t)c->pid, &st, ms < 0 ? 0 : WNOHANG);
        if (w < 0 && errno == EINTR) continue;
        ASSERT(w >= 0);
        if (w == (pid_t)c->pid) break;
        uint64_t now = test_now_ms();
        if (now >= dl) return CHILD_RUNNING;
        wait_for_child_end((pid_t)c->pid, (int)(dl - now));
    }
    c->ended = true;
    c->status = decode_status(st);
    return c->status;
}

void child_kill(child *c)
{
    ASSERT(!c->ended);
    ASSERT_EQ(kill((pid_t)c->pid, SIGKILL), 0);
}

void child_lower_priority(void)
{
    errno = 0;
    if (nice(10) == -1 && errno != 0) FAIL_("nice: %s", strerror(errno));
}

void child_idle_forever(void)
{
    for (;;)
        pause();
}

void become_nobody(void)
{
    if (setgroups(0, NULL) != 0 || setgid(65534) != 0 || setuid(65534) != 0) _exit(98);
    if (getuid() != 65534 || geteuid() != 65534) _exit(98);
}

void proc_pipe(raw_fd fds[2])
{
    ASSERT_EQ(pipe(fds), 0);
}

bool proc_write_byte(raw_fd fd, char c)
{
    return write(fd, &c, 1) == 1;
}

int proc_read_byte(raw_fd fd, int ms)
{
    struct pollfd p = {fd, POLLIN, 0};
    uint64_t dl = test_now_ms() + (uint64_t)(ms < 0 ? 0 : ms);
    for (;;) {
        int left = -1;
        if (ms >= 0) {
            uint64_t now = test_now_ms();
            left = now >= dl ? 0 : (int)(dl - now);
        }
        int rc = poll(&p, 1, left);
        if (rc < 0 && errno == EINTR) continue;
        ASSERT(rc >= 0);
        if (rc == 0) return -2;
        unsigned char c;
        ssize_t n = read(fd, &c, 1);
        if (n < 0 && errno == EINTR) continue;
        return n == 1 ? c : -1;
    }
}

#endif

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

/* ---- the platform ------------------------------------------------------------------------ */

bool under_valgrind(void)
{
    const char *p = getenv("LD_PRELOAD");
    return p && strstr(p, "vgpreload") != NULL;
}

const char *wine_version(void)
{
#ifdef _WIN32
    HMODULE nt = GetModuleHandleA("ntdll.dll");
    FARPROC f = nt ? GetProcAddress(nt, "wine_get_version") : NULL;
    if (f) return ((const char *(*)(void))(void (*)(void))f)();
#endif
    return NULL;
}

/* A pause that is itself the behaviour under test (the chaos clients' random pacing between
 * messages, so that kills fall at every point of a message); never a wait for an event. */
void sleep_ms(int ms)
{
#ifdef _WIN32
    Sleep((DWORD)ms);
#else
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
#endif
}

long process_rss_kib(void)
{
#ifdef _WIN32
    PROCESS_MEMORY_COUNTERS pmc;
    memset(&pmc, 0, sizeof pmc);
    pmc.cb = sizeof pmc;
    if (!GetProcessMemoryInfo(GetCurrentProcess(), &pmc, sizeof pmc)) return -1;
    return (long)(pmc.WorkingSetSize / 1024);
#else
    FILE *f = fopen("/proc/self/statm", "r");
    long size = 0, rss = 0;
    if (!f) return -1;
    if (fscanf(f, "%ld %ld", &size, &rss) != 2) rss = -1;
    fclose(f);
    return rss < 0 ? -1 : rss * (sysconf(_SC_PAGESIZE) / 1024);
#endif
}

/* ---- files and users ------------------------------------------------------------------- */

#ifdef _WIN32
bool file_exists(const char *path)
{
    if (!starts_with(path, "\\\\.\\pipe\\"))
        return GetFileAttributesA(path) != INVALID_FILE_ATTRIBUTES;
    /* Waits at most 1 ms and connects nothing: an instance is free (TRUE) or all are busy
     * (ERROR_SEM_TIMEOUT) where a server holds the name; ERROR_FILE_NOT_FOUND where none. */
    if (WaitNamedPipeA(path, 1)) return true;
    DWORD e = GetLastError();
    return e == ERROR_SEM_TIMEOUT || e == ERROR_PIPE_BUSY;
}

unsigned access_mode_of(const char *name)
{
    HANDLE tok = NULL;
    ASSERT(OpenProcessToken(GetCurrentProcess(), TOKEN_QUERY, &tok));
    union {
        TOKEN_USER u;
        char b[512];
    } user;
    union {
        TOKEN_PRIMARY_GROUP g;
        char b[512];
    } group;
    DWORD n;
    ASSERT(GetTokenInformation(tok, TokenUser, &user, sizeof user, &n));
    ASSERT(GetTokenInformation(tok, TokenPrimaryGroup, &group, sizeof group, &n));
    CloseHandle(tok);
    BYTE world[SECURITY_MAX_SID_SIZE];
    DWORD wlen = sizeof world;
    ASSERT(CreateWellKnownSid(WinWorldSid, NULL, world, &wlen));
    const char *path = path_of(name);
    HANDLE h = CreateFileA(path, READ_CONTROL, 0, NULL, OPEN_EXISTING, 0, NULL);
    if (h == INVALID_HANDLE_VALUE) FAIL_("CreateFile(%s): error %lu", path, GetLastError());
    PACL dacl = NULL;
    PSECURITY_DESCRIPTOR sd = NULL;
    ASSERT_EQ(GetSecurityInfo(h, SE_KERNEL_OBJECT, DACL_SECURITY_INFORMATION, NULL, NULL, &dacl,
                              NULL, &sd),
              ERROR_SUCCESS);
    CloseHandle(h);
    ASSERT(dacl != NULL);
    unsigned mode = 0;
    for (DWORD i = 0; i < dacl->AceCount; i++) {
        ACCESS_ALLOWED_ACE *ace;
        ASSERT(GetAce(dacl, i, (void **)&ace));
        ASSERT_EQ(ace->Header.AceType, ACCESS_ALLOWED_ACE_TYPE);
        /* Read and write make a class's access; instance creation is the server user's
         * alone, so it does not count. */
        const DWORD rw =
            (FILE_GENERIC_READ | FILE_GENERIC_WRITE) & ~(DWORD)FILE_CREATE_PIPE_INSTANCE;
        if ((ace->Mask & rw) != rw) continue;
        PSID sid = (PSID)&ace->SidStart;
        if (EqualSid(sid, user.u.User.Sid)) mode |= 0700;
        if (EqualSid(sid, group.g.PrimaryGroup)) mode |= 0070;
        if (EqualSid(sid, (PSID)world)) mode |= 0007;
    }
    LocalFree(sd);
    return mode;
}
#else
bool file_exists(const char *path)
{
    struct stat st;
    return lstat(path, &st) == 0;
}

unsigned access_mode_of(const char *name)
{
    struct stat st;
    ASSERT_EQ(lstat(path_of(name), &st), 0);
    ASSERT(S_ISSOCK(st.st_mode));
    return st.st_mode & 0777;
}
#endif

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

int counted_since(atomic_ulong *counter, unsigned long *mark)
{
    unsigned long now = atomic_load(counter);
    int since = now > *mark;
    *mark = now;
#ifdef _WIN32
    since = 1;
#endif
    return since;
}
