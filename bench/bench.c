/*
 * lsock-bench: lsock side by side with raw blocking syscalls (the floor) and libuv, in one run;
 * lsock's messages beside nng and ZeroMQ (the "messages" rows, see run_msg).
 *
 * Every measurement forks: the server side runs in a child process, the measured client side in
 * this process. Which side runs which implementation:
 *
 *   pingpong, stream, connrate  both sides in the implementation under test (raw on both sides
 *                               is the floor);
 *   blocking                    the client is the implementation under test (lsock: no loop,
 *                               lsock_socket_wait_for_ready_read only); the echo server is raw
 *                               for every implementation. libuv has no blocking API: n/a;
 *   fanin                       the server is the implementation under test; the clients are
 *                               the same raw non-blocking epoll programs for every
 *                               implementation, spread over FANIN_PROCS processes.
 *
 * Raw means blocking read()/write() on an AF_UNIX SOCK_STREAM socket (for fanin, whose server
 * must multiplex, raw is a minimal epoll loop with non-blocking sockets and no per-connection
 * state). Epoll (pingpong 1 B and connrate only) is the floor of any event-driven design: the
 * same workload as a minimal hand-written epoll loop on both sides, no library, no per-connection
 * state; lsock/epoll is then lsock's own cost, lsock/raw adds the cost of waiting in epoll_wait
 * instead of in read().
 *
 * The two processes of pingpong and connrate either share one CPU or run on two; the round trip
 * differs several times between the two (a wake-up across CPUs is slow on some virtual machines),
 * and unpinned the scheduler picks, so the headline rows are followed by one row per placement,
 * pinned (", 1 CPU": both on CPU 0; ", 2 CPUs": client on 0, server on 1). Implementations are
 * interleaved round by round (raw, lsock, libuv, then lsock, libuv, raw, ...: the order rotates so
 * that none always runs first) and the median of the rounds is reported.
 *
 *   lsock-bench [--short] [--rounds N] [--only LIST] [--no-sizes] [--data FILE]
 *               [--msg-data FILE] [--table-data FILE] [--impl LIST] [--size BYTES]
 *               [--peer IMPL] [--cpus C,S]
 *
 * --only takes a comma-separated subset of
 * pingpong,blocking,stream,refill,connrate,fanin,messages,sizes (refill64, refill-owned and
 * refill4 name one refill row each, blocking-stream the blocking stream row);
 * --impl a subset of raw,lsock,libuv,epoll (for profiling one implementation); --size BYTES limits
 * the sizes sweep to one message size; --peer IMPL runs the server side of pingpong and stream
 * with IMPL for every implementation (so only the client side differs); --cpus C,S pins the
 * measured (client) side to CPU C and the server processes to CPU S (C == S: one shared CPU).
 * Unpinned, the scheduler's placement of the two processes is part of the noise.
 * --data, --msg-data and --table-data name the files the size sweep, the message rows and the
 * workload table leave for the charts (bench/plot.sh). BENCH_SHORT=1 in the environment is --short:
 * tiny sizes, three rounds, for CI.
 */
#include "lsock.h"

#ifdef BENCH_HAVE_LIBUV
#include <uv.h>
#endif
#ifdef BENCH_HAVE_NNG
#include <nng/nng.h>
#include <nng/protocol/pair1/pair.h>
#endif
#ifdef BENCH_HAVE_ZMQ
#include <zmq.h>
#endif

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#ifdef BENCH_HAVE_URING
#include <liburing.h>
#endif
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* NNG and ZMQ: the message workloads only (nng pair1 and a ZeroMQ PAIR socket over ipc://). */
enum { RAW, LSOCK, LIBUV, EPOLL, NNG, ZMQ, NIMPL };
#ifdef BENCH_HAVE_LIBUV
static const bool have_libuv = true;
#else
static const bool have_libuv = false;
#endif
#ifdef BENCH_HAVE_NNG
static const bool have_nng = true;
#else
static const bool have_nng = false;
#endif
#ifdef BENCH_HAVE_ZMQ
static const bool have_zmq = true;
#else
static const bool have_zmq = false;
#endif
static const char *const impl_name[NIMPL] = {"raw", "lsock", "libuv", "epoll", "nng", "zmq"};
static const char *g_impls;   /* --impl: the implementations to run; NULL: all */
static size_t g_one_size;     /* --size: the one message size of the sizes sweep; 0: all */
static bool g_short;          /* --short */
static int g_peer = -1;       /* --peer: the server side of pingpong and stream; -1: same */
static int g_cpu_server = -1; /* --cpus C,S: the CPU of the server processes; -1: any */

/* The first two CPUs this process may run on; returns how many there are (at most 2). */
static int usable_cpus(int out[2])
{
    cpu_set_t set;
    int n = 0;
    out[0] = out[1] = 0;
    if (sched_getaffinity(0, sizeof set, &set) < 0) return 1;
    for (int c = 0; c < CPU_SETSIZE && n < 2; c++)
        if (CPU_ISSET(c, &set)) out[n++] = c;
    if (n == 1) out[1] = out[0];
    return n ? n : 1;
}

static void pin_to(int cpu)
{
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    if (sched_setaffinity(0, sizeof set, &set) < 0) {
        fprintf(stderr, "lsock-bench: cannot pin to CPU %d: %s\n", cpu, strerror(errno));
        exit(1);
    }
}

#define MAX_ROUNDS  15
#define RBUF        65536
#define BACKLOG     1024
#define FANIN_PROCS 4
#define FANIN_MSG   64

/* ---- helpers -------------------------------------------------------------------------- */

static void die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "lsock-bench: ");
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    exit(1);
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static char g_path[108];
static char g_msg[1 << 20]; /* message contents sent by every client */
static char g_buf[RBUF];    /* read buffer of every side */

static void new_path(void)
{
    static int n;
    snprintf(g_path, sizeof g_path, "/tmp/lsock-bench-%d-%d.sock", (int)getpid(), n++);
    unlink(g_path);
}

static int g_ready_w = -1;

/* Tells the parent that the child's server is listening. */
static void signal_ready(void)
{
    char c = 1;
    if (write(g_ready_w, &c, 1) != 1) _exit(2);
    close(g_ready_w);
    g_ready_w = -1;
}

/* Forks a child running fn(arg); returns once the child called signal_ready(). */
static pid_t spawn(void (*fn)(const void *), const void *arg)
{
    int p[2];
    new_path();
    if (pipe2(p, O_CLOEXEC) < 0) die("pipe: %s", strerror(errno));
    fflush(stdout);
    pid_t pid = fork();
    if (pid < 0) die("fork: %s", strerror(errno));
    if (pid == 0) {
        close(p[0]);
        if (g_cpu_server >= 0) pin_to(g_cpu_server);
        g_ready_w = p[1];
        fn(arg);
        _exit(0);
    }
    close(p[1]);
    char c;
    if (read(p[0], &c, 1) != 1) die("a server child failed to start");
    close(p[0]);
    return pid;
}

/* SIGTERM, not SIGKILL, so that a child run under valgrind or perf still writes its profile. */
static void reap(pid_t pid)
{
    kill(pid, SIGTERM);
    waitpid(pid, NULL, 0);
    unlink(g_path);
}

static int raw_listen(void)
{
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    strcpy(sa.sun_path, g_path);
    if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof sa) < 0 || listen(fd, BACKLOG) < 0)
        die("raw listen %s: %s", g_path, strerror(errno));
    return fd;
}

static int raw_connect(void)
{
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    strcpy(sa.sun_path, g_path);
    if (fd < 0) die("socket: %s", strerror(errno));
    while (connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0)
        if (errno != EINTR) die("raw connect %s: %s", g_path, strerror(errno));
    return fd;
}

static void write_all(int fd, const void *p, size_t n)
{
    while (n > 0) {
        ssize_t r = write(fd, p, n);
        if (r < 0) {
            if (errno == EINTR) continue;
            die("write: %s", strerror(errno));
        }
        p = (const char *)p + r;
        n -= (size_t)r;
    }
}

static void read_full(int fd, void *p, size_t n)
{
    while (n > 0) {
        ssize_t r = read(fd, p, n > RBUF ? RBUF : n);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) die("read: %s", r == 0 ? "end of stream" : strerror(errno));
        p = (char *)p + r;
        n -= (size_t)r;
    }
}

/* Resident set size of a process in bytes. */
static double rss_of(pid_t pid)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/statm", (int)pid);
    FILE *f = fopen(path, "r");
    long size = 0, res = 0;
    if (!f) return -1;
    if (fscanf(f, "%ld %ld", &size, &res) != 2) res = -1;
    fclose(f);
    return (double)res * (double)sysconf(_SC_PAGESIZE);
}

static int g_rusage; /* BENCH_RUSAGE=1: CPU time of each side of each measurement */

/* Whether the environment variable name is set to something other than "" or "0". */
static bool env_on(const char *name)
{
    const char *v = getenv(name);
    return v && *v && strcmp(v, "0") != 0;
}

/* The CPU time (user + system, seconds) process pid has used so far, from /proc/PID/stat, and
 * in *sys the system part; -1 when it cannot be read. */
static double cpu_of(pid_t pid, double *sys)
{
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    char *p = strrchr(buf, ')'); /* the command name may hold spaces */
    unsigned long ut, st;
    if (!p || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut, &st) != 2)
        return -1;
    *sys = (double)st / (double)sysconf(_SC_CLK_TCK);
    return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

/* lsock_loop_set_busy_poll() for every loop made while it is set (the busy-poll rows; the
 * server processes inherit it). */
static int g_busy_us;

static lsock_loop *lsock_loop_or_die(void)
{
    lsock_loop *loop = lsock_loop_new();
    if (!loop) die("lsock_loop_new failed");
#ifndef BENCH_NO_BUSY_POLL /* a library from before lsock_loop_set_busy_poll() */
    if (g_busy_us) lsock_loop_set_busy_poll(loop, g_busy_us);
#endif
    return loop;
}

static lsock_socket *lsock_connect_or_die(lsock_loop *loop, const lsock_socket_callbacks *cb,
                                          void *ud)
{
    lsock_socket *s = lsock_socket_new(loop);
    if (!s) die("lsock_socket_new failed");
    lsock_socket_set_callbacks(s, cb, ud);
    if (!lsock_socket_connect(s, g_path, LSOCK_READ_WRITE) ||
        (lsock_socket_state(s) == LSOCK_CONNECTING && !lsock_socket_wait_for_connected(s, 10000)))
        die("lsock connect: %s", lsock_socket_error_string(s));
    return s;
}

/* ---- servers (child processes) --------------------------------------------------------- */

/* Raw blocking echo server: one connection at a time, echoes until end of stream. */
static void raw_echo_server(const void *arg)
{
    int lfd = raw_listen();
    signal_ready();
    for (;;) {
        int fd = accept(lfd, NULL, NULL);
        if (fd < 0) continue;
        for (;;) {
            ssize_t r = read(fd, g_buf, sizeof g_buf);
            if (r < 0 && errno == EINTR) continue;
            if (r <= 0) break;
            write_all(fd, g_buf, (size_t)r);
        }
        close(fd);
    }
}

/* Raw multiplexing echo server for fanin (and, with arg non-NULL, the epoll floor of pingpong
 * and connrate: one accept per wake-up, level-triggered epoll reports the rest): epoll,
 * non-blocking, no per-connection state. */
static void raw_epoll_echo_server(const void *arg)
{
    bool accept_one = arg != NULL;
    int lfd = raw_listen();
    fcntl(lfd, F_SETFL, O_NONBLOCK);
    int ep = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event ev = {.events = EPOLLIN, .data.fd = lfd}, evs[256];
    epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev);
    signal_ready();
    for (;;) {
        int n = epoll_wait(ep, evs, 256, -1);
        for (int i = 0; i < n; i++) {
            int fd = evs[i].data.fd;
            if (fd == lfd) {
                int c;
                while ((c = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC)) >= 0) {
                    struct epoll_event e = {.events = EPOLLIN, .data.fd = c};
                    epoll_ctl(ep, EPOLL_CTL_ADD, c, &e);
                    if (accept_one) break;
                }
                continue;
            }
            ssize_t r = read(fd, g_buf, sizeof g_buf);
            if (r > 0) {
                if (send(fd, g_buf, (size_t)r, MSG_NOSIGNAL) != r) close(fd); /* not with 64 B */
            } else if (r == 0 || errno != EAGAIN) {
                close(fd);
            }
        }
    }
}

#ifdef BENCH_HAVE_URING
/*
 * BENCH_FANIN_URING=1: fanin's raw server is this minimal io_uring echo server instead of the
 * epoll one, to show what a completion-based loop would serve: a multishot accept, one receive
 * per connection in flight, each answered by a send of the same bytes linked before the next
 * receive, and one io_uring_enter per batch of completions. No per-connection state but a
 * 64-byte buffer per descriptor.
 */
#define URING_MAX_FD 16384
#define URING_ACCEPT UINT64_MAX
#define URING_SEND   (1ull << 32)
static char (*uring_bufs)[64];

static struct io_uring_sqe *uring_sqe(struct io_uring *ring)
{
    struct io_uring_sqe *sqe;
    while (!(sqe = io_uring_get_sqe(ring)))
        io_uring_submit(ring); /* the queue is full: hand it to the kernel and go on */
    return sqe;
}

static void uring_recv(struct io_uring *ring, int fd)
{
    struct io_uring_sqe *sqe = uring_sqe(ring);
    io_uring_prep_recv(sqe, fd, uring_bufs[fd], sizeof uring_bufs[fd], 0);
    sqe->user_data = (uint64_t)fd;
}

static void uring_echo_server(const void *arg)
{
    int lfd = raw_listen();
    uring_bufs = calloc(URING_MAX_FD, sizeof *uring_bufs);
    if (!uring_bufs) die("uring server: out of memory");
    struct io_uring ring;
    struct io_uring_params prm = {0};
    /* Completions are run when the server enters the kernel, not signalled to it as they
     * happen (without this, a server alone on its CPU is interrupted for every one). */
    prm.flags = IORING_SETUP_CQSIZE;
#ifdef IORING_SETUP_DEFER_TASKRUN
    prm.flags |= IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN;
#endif
    prm.cq_entries = 32768;
    int rc = io_uring_queue_init_params(4096, &ring, &prm);
    if (rc == -EINVAL && prm.flags != IORING_SETUP_CQSIZE) { /* a kernel before 6.1 */
        memset(&prm, 0, sizeof prm);
        prm.flags = IORING_SETUP_CQSIZE;
        prm.cq_entries = 32768;
        rc = io_uring_queue_init_params(4096, &ring, &prm);
    }
    if (rc < 0) die("uring server: io_uring_queue_init_params: %s", strerror(-rc));
    struct io_uring_sqe *sqe = uring_sqe(&ring);
    io_uring_prep_multishot_accept(sqe, lfd, NULL, NULL, SOCK_CLOEXEC);
    sqe->user_data = URING_ACCEPT;
    signal_ready();
    for (;;) {
        rc = io_uring_submit_and_wait(&ring, 1);
        if (rc < 0 && rc != -EINTR)
            die("uring server: io_uring_submit_and_wait: %s", strerror(-rc));
        struct io_uring_cqe *cqe;
        unsigned head, seen = 0;
        io_uring_for_each_cqe(&ring, head, cqe)
        {
            seen++;
            uint64_t ud = cqe->user_data;
            int res = cqe->res;
            if (ud == URING_ACCEPT) {
                if (res >= URING_MAX_FD)
                    close(res);
                else if (res >= 0)
                    uring_recv(&ring, res);
                if (!(cqe->flags & IORING_CQE_F_MORE)) die("uring server: accept ended");
                continue;
            }
            int fd = (int)(ud & 0xffffffffu);
            if (ud & URING_SEND)
                continue; /* failed (CQE_SKIP_SUCCESS): the linked receive
                             is cancelled, and its completion closes fd */
            if (res <= 0) {
                close(fd);
                continue;
            }
            if (io_uring_sq_space_left(&ring) < 2) /* the linked pair in one submission */
                io_uring_submit(&ring);
            sqe = uring_sqe(&ring);
            io_uring_prep_send(sqe, fd, uring_bufs[fd], (size_t)res, MSG_NOSIGNAL);
            sqe->user_data = (uint64_t)fd | URING_SEND;
            sqe->flags |= IOSQE_CQE_SKIP_SUCCESS | IOSQE_IO_LINK; /* the receive waits for it */
            uring_recv(&ring, fd);
        }
        io_uring_cq_advance(&ring, seen);
    }
}
#endif

/* Raw sink for stream: reads *total bytes, then acknowledges with one byte. */
static void raw_sink_server(const void *arg)
{
    uint64_t total = *(const uint64_t *)arg;
    int lfd = raw_listen();
    signal_ready();
    int fd = accept(lfd, NULL, NULL);
    uint64_t got = 0;
    while (got < total) {
        ssize_t r = read(fd, g_buf, sizeof g_buf);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) _exit(3);
        got += (uint64_t)r;
    }
    write_all(fd, "k", 1);
    while (read(fd, g_buf, sizeof g_buf) > 0) {
    }
}

/* lsock echo server: event-driven, any number of connections. */
static void ls_echo_ready_read(lsock_socket *s, void *ud)
{
    int64_t n;
    while ((n = lsock_socket_read(s, g_buf, sizeof g_buf)) > 0)
        lsock_socket_write(s, g_buf, n);
}

static void ls_free_on_disconnect(lsock_socket *s, void *ud)
{
    lsock_socket_free(s);
}

static uint64_t ls_sink_total, ls_sink_got;

static void ls_sink_ready_read(lsock_socket *s, void *ud)
{
    int64_t n;
    while ((n = lsock_socket_read(s, g_buf, sizeof g_buf)) > 0) {
        ls_sink_got += (uint64_t)n;
        if (ls_sink_got == ls_sink_total) lsock_socket_write(s, "k", 1);
    }
}

static void ls_new_connection(lsock_server *srv, void *ud)
{
    static const lsock_socket_callbacks echo = {.ready_read = ls_echo_ready_read,
                                                .disconnected = ls_free_on_disconnect};
    static const lsock_socket_callbacks sink = {.ready_read = ls_sink_ready_read,
                                                .disconnected = ls_free_on_disconnect};
    lsock_socket *s;
    while ((s = lsock_server_next_pending_connection(srv)))
        lsock_socket_set_callbacks(s, ud ? &sink : &echo, NULL);
}

static void lsock_server_run(const uint64_t *sink_total)
{
    lsock_loop *loop = lsock_loop_or_die();
    lsock_server *srv = lsock_server_new(loop);
    if (sink_total) ls_sink_total = *sink_total;
    lsock_server_set_listen_backlog_size(srv, BACKLOG);
    lsock_server_set_new_connection_callback(srv, ls_new_connection, (void *)sink_total);
    if (!lsock_server_listen(srv, g_path)) die("lsock listen: %s", lsock_server_error_string(srv));
    signal_ready();
    lsock_loop_run(loop, LSOCK_RUN_DEFAULT);
}

static void lsock_echo_server(const void *arg)
{
    lsock_server_run(NULL);
}

static void lsock_sink_server(const void *arg)
{
    lsock_server_run(arg);
}

#ifdef BENCH_HAVE_LIBUV
static void uv_alloc_static(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
    *buf = uv_buf_init(g_buf, sizeof g_buf);
}

static void uv_free_handle(uv_handle_t *h)
{
    free(h);
}

static void uv_free_req(uv_write_t *req, int status)
{
    free(req);
}

/* Writes like a careful libuv user: uv_try_write, and the rest copied into a uv_write. */
static int uv_send(uv_stream_t *st, const char *p, size_t n)
{
    uv_buf_t b = uv_buf_init((char *)p, (unsigned)n);
    int r = uv_try_write(st, &b, 1);
    if (r == UV_EAGAIN) r = 0;
    if (r < 0) return r;
    if ((size_t)r == n) return 0;
    uv_write_t *req = malloc(sizeof *req + n - (size_t)r);
    if (!req) return UV_ENOMEM;
    memcpy(req + 1, p + r, n - (size_t)r);
    b = uv_buf_init((char *)(req + 1), (unsigned)(n - (size_t)r));
    return uv_write(req, st, &b, 1, uv_free_req);
}

static void uv_echo_read(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf)
{
    if (nread > 0) {
        if (uv_send(st, buf->base, (size_t)nread) < 0) uv_close((uv_handle_t *)st, uv_free_handle);
    } else if (nread < 0) {
        uv_close((uv_handle_t *)st, uv_free_handle);
    }
}

static uint64_t uv_sink_total, uv_sink_got;

static void uv_sink_read(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf)
{
    if (nread > 0) {
        uv_sink_got += (uint64_t)nread;
        if (uv_sink_got == uv_sink_total) uv_send(st, "k", 1);
    } else if (nread < 0) {
        uv_close((uv_handle_t *)st, uv_free_handle);
    }
}

static void uv_on_connection(uv_stream_t *server, int status)
{
    if (status < 0) return;
    uv_pipe_t *c = malloc(sizeof *c);
    uv_pipe_init(server->loop, c, 0);
    if (uv_accept(server, (uv_stream_t *)c) < 0) {
        uv_close((uv_handle_t *)c, uv_free_handle);
        return;
    }
    uv_read_start((uv_stream_t *)c, uv_alloc_static, server->data ? uv_sink_read : uv_echo_read);
}

static void libuv_server_run(const uint64_t *sink_total)
{
    uv_loop_t *loop = uv_default_loop();
    static uv_pipe_t server;
    uv_pipe_init(loop, &server, 0);
    server.data = (void *)sink_total;
    if (sink_total) uv_sink_total = *sink_total;
    int r = uv_pipe_bind(&server, g_path);
    if (r == 0) r = uv_listen((uv_stream_t *)&server, BACKLOG, uv_on_connection);
    if (r < 0) die("libuv listen: %s", uv_strerror(r));
    signal_ready();
    uv_run(loop, UV_RUN_DEFAULT);
}

static void libuv_echo_server(const void *arg)
{
    libuv_server_run(NULL);
}

static void libuv_sink_server(const void *arg)
{
    libuv_server_run(arg);
}

/* Connects a uv_pipe_t to g_path, running the loop until connected. */
static int uv_connected_status;
static void uv_on_connect(uv_connect_t *req, int status)
{
    uv_connected_status = status;
}

static void uv_connect_or_die(uv_loop_t *loop, uv_pipe_t *p)
{
    static uv_connect_t req;
    uv_pipe_init(loop, p, 0);
    uv_connected_status = 1;
    uv_pipe_connect(&req, p, g_path, uv_on_connect);
    while (uv_connected_status == 1)
        uv_run(loop, UV_RUN_ONCE);
    if (uv_connected_status < 0) die("libuv connect: %s", uv_strerror(uv_connected_status));
}
#endif

/* The server side of pingpong and stream: the implementation under test, or the one --peer
 * names for every implementation (to tell the cost of each side apart). */
typedef void (*server_fn)(const void *);

static void epoll_echo_server(const void *arg)
{
    raw_epoll_echo_server("accept one");
}

static server_fn echo_server_for(int impl)
{
    if (g_peer >= 0) impl = g_peer;
    if (impl == EPOLL) return epoll_echo_server;
#ifdef BENCH_HAVE_LIBUV
    if (impl == LIBUV) return libuv_echo_server;
#endif
    return impl == LSOCK ? lsock_echo_server : raw_echo_server;
}

static server_fn sink_server_for(int impl)
{
    if (g_peer >= 0) impl = g_peer;
#ifdef BENCH_HAVE_LIBUV
    if (impl == LIBUV) return libuv_sink_server;
#endif
    return impl == LSOCK ? lsock_sink_server : raw_sink_server;
}

/* ---- pingpong -------------------------------------------------------------------------- */

typedef struct {
    size_t size;
    long iters;
    int busy_us; /* lsock's loops busy-poll this long (lsock_loop_set_busy_poll); 0: not */
} pp_params;

/* Raw client: blocking write then read; above 64 KiB interleaved with poll() so that neither
 * side blocks writing while the other is blocked writing too. */
static void raw_roundtrip(int fd, size_t size)
{
    if (size <= 65536) {
        write_all(fd, g_msg, size);
        read_full(fd, g_buf, size);
        return;
    }
    size_t sent = 0, got = 0;
    while (got < size) {
        struct pollfd p = {.fd = fd, .events = (short)(POLLIN | (sent < size ? POLLOUT : 0))};
        if (poll(&p, 1, -1) < 0) continue;
        if (p.revents & POLLOUT) {
            ssize_t r = send(fd, g_msg + sent, size - sent, MSG_DONTWAIT | MSG_NOSIGNAL);
            if (r > 0) sent += (size_t)r;
        }
        if (p.revents & (POLLIN | POLLHUP)) {
            ssize_t r = recv(fd, g_buf, sizeof g_buf, MSG_DONTWAIT);
            if (r == 0) die("pingpong: end of stream");
            if (r > 0) got += (size_t)r;
        }
    }
}

static double raw_pingpong(const pp_params *pp)
{
    pid_t pid = spawn(echo_server_for(RAW), NULL);
    int fd = raw_connect();
    double t0 = now_s();
    for (long i = 0; i < pp->iters; i++)
        raw_roundtrip(fd, pp->size);
    double t = now_s() - t0;
    close(fd);
    reap(pid);
    return t / (double)pp->iters * 1e6;
}

typedef struct {
    lsock_loop *loop;
    size_t size, got;
    long iters, done;
} lpp_state;

static void lpp_ready_read(lsock_socket *s, void *ud)
{
    lpp_state *c = ud;
    int64_t n;
    while ((n = lsock_socket_read(s, g_buf, sizeof g_buf)) > 0) {
        c->got += (size_t)n;
        if (c->got < c->size) continue;
        c->got -= c->size;
        if (++c->done == c->iters) {
            lsock_loop_stop(c->loop);
            return;
        }
        lsock_socket_write(s, g_msg, (int64_t)c->size);
    }
}

static double lsock_pingpong(const pp_params *pp)
{
    pid_t pid = spawn(echo_server_for(LSOCK), NULL);
    lpp_state c = {lsock_loop_or_die(), pp->size, 0, pp->iters, 0};
    lsock_socket_callbacks cb = {.ready_read = lpp_ready_read};
    lsock_socket *s = lsock_connect_or_die(c.loop, &cb, &c);
    double t0 = now_s();
    lsock_socket_write(s, g_msg, (int64_t)pp->size);
    lsock_loop_run(c.loop, LSOCK_RUN_DEFAULT);
    double t = now_s() - t0;
    if (c.done != pp->iters) die("lsock pingpong: connection lost");
    lsock_socket_free(s);
    lsock_loop_free(c.loop);
    reap(pid);
    return t / (double)pp->iters * 1e6;
}

#ifdef BENCH_HAVE_LIBUV
typedef struct {
    size_t size, got;
    long iters, done;
} upp_state;

static void upp_write(uv_stream_t *st, size_t size)
{
    static uv_write_t req;
    uv_buf_t b = uv_buf_init(g_msg, (unsigned)size);
    int r = uv_try_write(st, &b, 1);
    if (r == UV_EAGAIN) r = 0;
    if (r < 0) die("libuv write: %s", uv_strerror(r));
    if ((size_t)r < size) { /* g_msg is static: no copy needed, one message in flight */
        b = uv_buf_init(g_msg + r, (unsigned)(size - (size_t)r));
        uv_write(&req, st, &b, 1, NULL);
    }
}

static void upp_read(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf)
{
    upp_state *c = st->data;
    if (nread < 0) die("libuv pingpong: %s", uv_strerror((int)nread));
    c->got += (size_t)nread;
    if (c->got < c->size) return;
    c->got -= c->size;
    if (++c->done == c->iters) {
        uv_read_stop(st);
        uv_close((uv_handle_t *)st, NULL);
        return;
    }
    upp_write(st, c->size);
}

static double libuv_pingpong(const pp_params *pp)
{
    pid_t pid = spawn(echo_server_for(LIBUV), NULL);
    uv_loop_t loop;
    uv_loop_init(&loop);
    uv_pipe_t p;
    uv_connect_or_die(&loop, &p);
    upp_state c = {pp->size, 0, pp->iters, 0};
    p.data = &c;
    double t0 = now_s();
    uv_read_start((uv_stream_t *)&p, uv_alloc_static, upp_read);
    upp_write((uv_stream_t *)&p, pp->size);
    uv_run(&loop, UV_RUN_DEFAULT);
    double t = now_s() - t0;
    uv_loop_close(&loop);
    reap(pid);
    return t / (double)pp->iters * 1e6;
}
#endif

/* The epoll floor: a non-blocking socket in a minimal epoll loop. */
static double epoll_pingpong(const pp_params *pp)
{
    if (pp->size > 4096) return -1; /* one send always takes it whole */
    pid_t pid = spawn(echo_server_for(EPOLL), NULL);
    int fd = raw_connect(), ep = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event ev = {.events = EPOLLIN, .data.fd = fd};
    if (ep < 0 || fcntl(fd, F_SETFL, O_NONBLOCK) < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) < 0)
        die("epoll pingpong: %s", strerror(errno));
    size_t got = 0;
    double t0 = now_s();
    if (send(fd, g_msg, pp->size, MSG_NOSIGNAL) != (ssize_t)pp->size) die("epoll pingpong: send");
    for (long done = 0; done < pp->iters;) {
        if (epoll_wait(ep, &ev, 1, -1) < 1) continue;
        ssize_t r = read(fd, g_buf, sizeof g_buf);
        if (r < 0 && errno == EAGAIN) continue;
        if (r <= 0) die("epoll pingpong: %s", r == 0 ? "end of stream" : strerror(errno));
        got += (size_t)r;
        if (got < pp->size) continue;
        got -= pp->size;
        if (++done < pp->iters && send(fd, g_msg, pp->size, MSG_NOSIGNAL) != (ssize_t)pp->size)
            die("epoll pingpong: send");
    }
    double t = now_s() - t0;
    close(fd);
    close(ep);
    reap(pid);
    return t / (double)pp->iters * 1e6;
}

static double run_pingpong(int impl, const void *params, double *extra)
{
    switch (impl) {
    case EPOLL:
        return epoll_pingpong(params);
    case RAW:
        return raw_pingpong(params);
    case LSOCK: {
        g_busy_us = ((const pp_params *)params)->busy_us;
        double r = lsock_pingpong(params);
        g_busy_us = 0;
        return r;
    }
#ifdef BENCH_HAVE_LIBUV
    case LIBUV:
        return libuv_pingpong(params);
#endif
    }
    return -1;
}

/* ---- blocking -------------------------------------------------------------------------- */

static double lsock_blocking(const pp_params *pp)
{
    pid_t pid = spawn(raw_echo_server, NULL);
    lsock_socket *s = lsock_connect_or_die(NULL, NULL, NULL);
    double t0 = now_s();
    for (long i = 0; i < pp->iters; i++) {
        if (lsock_socket_write(s, g_msg, (int64_t)pp->size) < 0) die("lsock write");
        size_t got = 0;
        while (got < pp->size) {
            if (lsock_socket_bytes_available(s) == 0 && !lsock_socket_wait_for_ready_read(s, -1))
                die("lsock_socket_wait_for_ready_read: %s", lsock_socket_error_string(s));
            got += (size_t)lsock_socket_read(s, g_buf, sizeof g_buf);
        }
    }
    double t = now_s() - t0;
    lsock_socket_free(s);
    reap(pid);
    return t / (double)pp->iters * 1e6;
}

static double run_blocking(int impl, const void *params, double *extra)
{
    switch (impl) {
    case RAW:
        return raw_pingpong(params);
    case LSOCK:
        return lsock_blocking(params);
    }
    return -1; /* libuv has no blocking API */
}

/* ---- stream ---------------------------------------------------------------------------- */

typedef struct {
    size_t chunk;
    uint64_t total;
    /* The refill pattern of a Qt-style program: keep refill bytes queued, writing chunks from
     * bytes_written (libuv: that many bytes of writes in flight); 0: write while nothing is
     * queued (lsock), 1 MiB in flight (libuv). */
    size_t refill;
    int owned; /* lsock: lsock_socket_write_owned() (static data, as libuv's), not a copy */
} st_params;

static double raw_stream(const st_params *sp)
{
    pid_t pid = spawn(sink_server_for(RAW), &sp->total);
    int fd = raw_connect();
    double t0 = now_s();
    for (uint64_t sent = 0; sent < sp->total;) {
        size_t n = sp->total - sent < sp->chunk ? (size_t)(sp->total - sent) : sp->chunk;
        write_all(fd, g_msg, n);
        sent += n;
    }
    read_full(fd, g_buf, 1);
    double t = now_s() - t0;
    close(fd);
    reap(pid);
    return (double)sp->total / t / 1e9;
}

typedef struct {
    lsock_loop *loop;
    const st_params *sp;
    uint64_t sent;
    int acked;
} lst_state;

/* Writes chunks while all of them go straight to the kernel; resumes on bytes_written. */
static void lst_fill(lsock_socket *s, lst_state *c)
{
    int64_t below = c->sp->refill ? (int64_t)c->sp->refill : 1;
    while (c->sent < c->sp->total && lsock_socket_bytes_to_write(s) < below) {
        uint64_t left = c->sp->total - c->sent;
        size_t n = left < c->sp->chunk ? (size_t)left : c->sp->chunk;
#ifndef BENCH_NO_WRITE_OWNED /* a library from before lsock_socket_write_owned() */
        if (c->sp->owned) {
            if (lsock_socket_write_owned(s, g_msg, (int64_t)n, NULL, NULL) < 0) die("lsock write");
            c->sent += n;
            continue;
        }
#endif
        if (lsock_socket_write(s, g_msg, (int64_t)n) < 0) die("lsock write");
        c->sent += n;
    }
}

static void lst_bytes_written(lsock_socket *s, int64_t n, void *ud)
{
    lst_fill(s, ud);
}

static void lst_ready_read(lsock_socket *s, void *ud)
{
    lst_state *c = ud;
    if (lsock_socket_read(s, g_buf, 1) == 1) {
        c->acked = 1;
        lsock_loop_stop(c->loop);
    }
}

static double lsock_stream(const st_params *sp)
{
    pid_t pid = spawn(sink_server_for(LSOCK), &sp->total);
    lst_state c = {lsock_loop_or_die(), sp, 0, 0};
    lsock_socket_callbacks cb = {.ready_read = lst_ready_read, .bytes_written = lst_bytes_written};
    lsock_socket *s = lsock_connect_or_die(c.loop, &cb, &c);
    double t0 = now_s();
    lst_fill(s, &c);
    lsock_loop_run(c.loop, LSOCK_RUN_DEFAULT);
    double t = now_s() - t0;
    if (!c.acked) die("lsock stream: connection lost");
    lsock_socket_free(s);
    lsock_loop_free(c.loop);
    reap(pid);
    return (double)sp->total / t / 1e9;
}

#ifdef BENCH_HAVE_LIBUV
#define UST_WINDOW_MAX 256
typedef struct {
    const st_params *sp;
    uint64_t sent;
    int inflight, window;
    uv_write_t reqs[UST_WINDOW_MAX];
    int free_reqs[UST_WINDOW_MAX];
} ust_state;

static void ust_fill(uv_stream_t *st);

static void ust_written(uv_write_t *req, int status)
{
    ust_state *c = req->handle->data;
    c->free_reqs[--c->inflight] = (int)(req - c->reqs);
    if (status < 0) die("libuv stream write: %s", uv_strerror(status));
    ust_fill(req->handle);
}

/* Keeps up to 1 MiB of uv_write requests in flight (static data: libuv does not copy). */
static void ust_fill(uv_stream_t *st)
{
    ust_state *c = st->data;
    while (c->sent < c->sp->total && c->inflight < c->window) {
        uint64_t left = c->sp->total - c->sent;
        size_t n = left < c->sp->chunk ? (size_t)left : c->sp->chunk;
        uv_buf_t b = uv_buf_init(g_msg, (unsigned)n);
        int idx = c->free_reqs[c->inflight++];
        int r = uv_write(&c->reqs[idx], st, &b, 1, ust_written);
        if (r < 0) die("libuv write: %s", uv_strerror(r));
        c->sent += n;
    }
}

static void ust_read(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf)
{
    if (nread < 0) die("libuv stream: %s", uv_strerror((int)nread));
    if (nread > 0) {
        uv_read_stop(st);
        uv_close((uv_handle_t *)st, NULL);
    }
}

static double libuv_stream(const st_params *sp)
{
    pid_t pid = spawn(sink_server_for(LIBUV), &sp->total);
    uv_loop_t loop;
    uv_loop_init(&loop);
    uv_pipe_t p;
    uv_connect_or_die(&loop, &p);
    static ust_state c;
    memset(&c, 0, sizeof c);
    c.sp = sp;
    c.window = (int)((sp->refill ? sp->refill : (size_t)1 << 20) / sp->chunk);
    if (c.window < 2) c.window = 2;
    if (c.window > UST_WINDOW_MAX) c.window = UST_WINDOW_MAX;
    for (int i = 0; i < UST_WINDOW_MAX; i++)
        c.free_reqs[i] = i;
    p.data = &c;
    double t0 = now_s();
    uv_read_start((uv_stream_t *)&p, uv_alloc_static, ust_read);
    ust_fill((uv_stream_t *)&p);
    uv_run(&loop, UV_RUN_DEFAULT);
    double t = now_s() - t0;
    uv_loop_close(&loop);
    reap(pid);
    return (double)sp->total / t / 1e9;
}
#endif

static double run_stream(int impl, const void *params, double *extra)
{
    switch (impl) {
    case RAW:
        return raw_stream(params);
    case LSOCK:
        return lsock_stream(params);
#ifdef BENCH_HAVE_LIBUV
    case LIBUV:
        return libuv_stream(params);
#endif
    }
    return -1;
}

/* The blocking stream: a raw server sends total bytes; the client under test reads them 64 KiB
 * at a time, blocking (raw: read(); lsock: no loop, wait_for_ready_read(-1) then reads until
 * none is left). */
static void raw_source_server(const void *arg)
{
    uint64_t total = *(const uint64_t *)arg;
    int lfd = raw_listen();
    signal_ready();
    int fd = accept(lfd, NULL, NULL);
    for (uint64_t sent = 0; sent < total;) {
        size_t n = total - sent < 65536 ? (size_t)(total - sent) : 65536;
        write_all(fd, g_msg, n);
        sent += n;
    }
    while (read(fd, g_buf, sizeof g_buf) > 0) {
    }
}

static double raw_blocking_stream(const st_params *sp)
{
    pid_t pid = spawn(raw_source_server, &sp->total);
    int fd = raw_connect();
    double t0 = now_s();
    for (uint64_t got = 0; got < sp->total;) {
        ssize_t r = read(fd, g_buf, sp->chunk);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) die("raw blocking stream: read");
        got += (uint64_t)r;
    }
    double t = now_s() - t0;
    close(fd);
    reap(pid);
    return (double)sp->total / t / 1e9;
}

static double lsock_blocking_stream(const st_params *sp)
{
    pid_t pid = spawn(raw_source_server, &sp->total);
    lsock_socket *s = lsock_connect_or_die(NULL, NULL, NULL);
    double t0 = now_s();
    for (uint64_t got = 0; got < sp->total;) {
        if (!lsock_socket_wait_for_ready_read(s, -1))
            die("lsock_socket_wait_for_ready_read: %s", lsock_socket_error_string(s));
        int64_t r;
        while ((r = lsock_socket_read(s, g_buf, (int64_t)sp->chunk)) > 0)
            got += (uint64_t)r;
    }
    double t = now_s() - t0;
    lsock_socket_free(s);
    reap(pid);
    return (double)sp->total / t / 1e9;
}

static double run_blocking_stream(int impl, const void *params, double *extra)
{
    (void)extra;
    switch (impl) {
    case RAW:
        return raw_blocking_stream(params);
    case LSOCK:
        return lsock_blocking_stream(params);
    }
    return -1; /* libuv has no blocking API */
}

/* ---- connrate -------------------------------------------------------------------------- */

typedef struct {
    long conns;
} cr_params;

static double raw_connrate(const cr_params *cp)
{
    pid_t pid = spawn(raw_echo_server, NULL);
    double t0 = now_s();
    for (long i = 0; i < cp->conns; i++) {
        int fd = raw_connect();
        write_all(fd, "x", 1);
        read_full(fd, g_buf, 1);
        close(fd);
    }
    double t = now_s() - t0;
    reap(pid);
    return (double)cp->conns / t;
}

typedef struct {
    lsock_loop *loop;
    long conns, done;
} lcr_state;

static void lcr_start(lcr_state *c);

static void lcr_ready_read(lsock_socket *s, void *ud)
{
    lcr_state *c = ud;
    if (lsock_socket_read(s, g_buf, 1) != 1) return;
    lsock_socket_free(s); /* closes */
    if (++c->done < c->conns) lcr_start(c);
}

static void lcr_start(lcr_state *c)
{
    static const lsock_socket_callbacks cb = {.ready_read = lcr_ready_read};
    lsock_socket *s = lsock_connect_or_die(c->loop, &cb, c);
    lsock_socket_write(s, "x", 1);
}

static double lsock_connrate(const cr_params *cp)
{
    pid_t pid = spawn(lsock_echo_server, NULL);
    lcr_state c = {lsock_loop_or_die(), cp->conns, 0};
    double t0 = now_s();
    lcr_start(&c);
    lsock_loop_run(c.loop, LSOCK_RUN_DEFAULT);
    double t = now_s() - t0;
    if (c.done != cp->conns) die("lsock connrate: stopped after %ld", c.done);
    if (!lsock_loop_free(c.loop)) die("lsock connrate: loop still in use");
    reap(pid);
    return (double)cp->conns / t;
}

#ifdef BENCH_HAVE_LIBUV
typedef struct {
    uv_loop_t *loop;
    long conns, done;
} ucr_state;

static ucr_state ucr;
static void ucr_start(void);

static void ucr_closed(uv_handle_t *h)
{
    free(h);
    if (++ucr.done < ucr.conns) ucr_start();
}

static void ucr_read(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf)
{
    if (nread < 0) die("libuv connrate: %s", uv_strerror((int)nread));
    if (nread > 0) uv_close((uv_handle_t *)st, ucr_closed);
}

static void ucr_connected(uv_connect_t *req, int status)
{
    if (status < 0) die("libuv connect: %s", uv_strerror(status));
    uv_read_start(req->handle, uv_alloc_static, ucr_read);
    uv_buf_t b = uv_buf_init("x", 1);
    if (uv_try_write(req->handle, &b, 1) != 1) die("libuv connrate: write");
}

static void ucr_start(void)
{
    static uv_connect_t req;
    uv_pipe_t *p = malloc(sizeof *p);
    uv_pipe_init(ucr.loop, p, 0);
    uv_pipe_connect(&req, p, g_path, ucr_connected);
}

static double libuv_connrate(const cr_params *cp)
{
    pid_t pid = spawn(libuv_echo_server, NULL);
    uv_loop_t loop;
    uv_loop_init(&loop);
    ucr.loop = &loop;
    ucr.conns = cp->conns;
    ucr.done = 0;
    double t0 = now_s();
    ucr_start();
    uv_run(&loop, UV_RUN_DEFAULT);
    double t = now_s() - t0;
    uv_loop_close(&loop);
    reap(pid);
    return (double)cp->conns / t;
}
#endif

/* The epoll floor: each connection registered, waited on and closed (close removes it from
 * the epoll set: nothing else holds the descriptor). */
static double epoll_connrate(const cr_params *cp)
{
    pid_t pid = spawn(echo_server_for(EPOLL), NULL);
    int ep = epoll_create1(EPOLL_CLOEXEC);
    if (ep < 0) die("epoll connrate: %s", strerror(errno));
    double t0 = now_s();
    for (long i = 0; i < cp->conns; i++) {
        int fd = raw_connect();
        struct epoll_event ev = {.events = EPOLLIN, .data.fd = fd};
        if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) < 0) die("epoll connrate: %s", strerror(errno));
        if (send(fd, "x", 1, MSG_NOSIGNAL) != 1) die("epoll connrate: send");
        while (epoll_wait(ep, &ev, 1, -1) < 1) {
        }
        if (read(fd, g_buf, 1) != 1) die("epoll connrate: read");
        close(fd);
    }
    double t = now_s() - t0;
    close(ep);
    reap(pid);
    return (double)cp->conns / t;
}

#ifdef BENCH_HAVE_URING
/* BENCH_CONNRATE_URING=1: the EPOLL column of connrate is a minimal io_uring client against
 * the io_uring echo server instead: per connection socket() and connect(), then the byte's
 * send and the reply's receive in one io_uring_enter, then close(). */
static double uring_connrate(const cr_params *cp)
{
    pid_t pid = spawn(uring_echo_server, NULL);
    struct io_uring ring;
    int rc = io_uring_queue_init(8, &ring, 0);
    if (rc < 0) die("uring connrate: io_uring_queue_init: %s", strerror(-rc));
    double t0 = now_s();
    for (long i = 0; i < cp->conns; i++) {
        int fd = raw_connect();
        struct io_uring_sqe *sqe = uring_sqe(&ring);
        io_uring_prep_send(sqe, fd, "x", 1, MSG_NOSIGNAL);
        sqe->user_data = URING_SEND;
        sqe->flags |= IOSQE_CQE_SKIP_SUCCESS | IOSQE_IO_LINK;
        sqe = uring_sqe(&ring);
        io_uring_prep_recv(sqe, fd, g_buf, 1, 0);
        sqe->user_data = 1;
        for (int got = 0; !got;) {
            rc = io_uring_submit_and_wait(&ring, 1);
            if (rc < 0 && rc != -EINTR) die("uring connrate: %s", strerror(-rc));
            struct io_uring_cqe *cqe;
            while (io_uring_peek_cqe(&ring, &cqe) == 0) {
                int res = cqe->res;
                uint64_t ud = cqe->user_data;
                io_uring_cqe_seen(&ring, cqe);
                if (ud == URING_SEND || res != 1) die("uring connrate: %s", strerror(-res));
                got = 1;
            }
        }
        close(fd);
    }
    double t = now_s() - t0;
    io_uring_queue_exit(&ring);
    reap(pid);
    return (double)cp->conns / t;
}
#endif

static double run_connrate(int impl, const void *params, double *extra)
{
    switch (impl) {
    case EPOLL:
#ifdef BENCH_HAVE_URING
        if (env_on("BENCH_CONNRATE_URING")) return uring_connrate(params);
#endif
        return epoll_connrate(params);
    case RAW:
        return raw_connrate(params);
    case LSOCK:
        return lsock_connrate(params);
#ifdef BENCH_HAVE_LIBUV
    case LIBUV:
        return libuv_connrate(params);
#endif
    }
    return -1;
}

/* ---- fanin ----------------------------------------------------------------------------- */

typedef struct {
    long clients;
    double seconds;
} fi_params;

/* One client process: n raw non-blocking connections on epoll. Connects, does one echo on
 * each (then they are idle), reports ready, waits for go, then echoes 64-byte messages on
 * every connection for the given time and reports the count of round trips. */
static void fanin_client(long n, double seconds, int ready_w, int go_r, int result_w)
{
    int ep = epoll_create1(EPOLL_CLOEXEC);
    int *fds = malloc((size_t)n * sizeof *fds);
    int maxfd = 0;
    for (long i = 0; i < n; i++) {
        fds[i] = raw_connect();
        fcntl(fds[i], F_SETFL, O_NONBLOCK);
        struct epoll_event e = {.events = EPOLLIN, .data.fd = fds[i]};
        epoll_ctl(ep, EPOLL_CTL_ADD, fds[i], &e);
        if (fds[i] > maxfd) maxfd = fds[i];
    }
    unsigned char *pos = calloc((size_t)maxfd + 1, 1);
    struct epoll_event evs[256];
    int64_t count = 0;
    for (int phase = 0; phase < 2; phase++) {
        for (long i = 0; i < n; i++)
            if (send(fds[i], g_msg, FANIN_MSG, MSG_NOSIGNAL) != FANIN_MSG) _exit(4);
        double deadline = phase ? now_s() + seconds : 0;
        int64_t want = phase ? INT64_MAX : n;
        while (count < want) {
            int k = epoll_wait(ep, evs, 256, 100);
            for (int j = 0; j < k; j++) {
                int fd = evs[j].data.fd;
                ssize_t r = read(fd, g_buf, FANIN_MSG - pos[fd]);
                if (r == 0) _exit(5);
                if (r < 0) continue;
                pos[fd] = (unsigned char)(pos[fd] + r);
                if (pos[fd] < FANIN_MSG) continue;
                pos[fd] = 0;
                count++;
                if (phase) send(fd, g_msg, FANIN_MSG, MSG_NOSIGNAL);
            }
            if (phase && now_s() >= deadline) break;
        }
        if (phase == 0) {
            char c = 1;
            if (write(ready_w, &c, 1) != 1 || read(go_r, &c, 1) != 1) _exit(6);
            count = 0;
        }
    }
    if (write(result_w, &count, sizeof count) != sizeof count) _exit(7);
    pause(); /* keep the connections open until the parent is done */
}

static double run_fanin(int impl, const void *params, double *mem_per_conn)
{
    const fi_params *fp = params;
    void (*server)(const void *) = impl == RAW ? raw_epoll_echo_server : lsock_echo_server;
    if (impl == RAW && env_on("BENCH_FANIN_URING")) {
#ifdef BENCH_HAVE_URING
        server = uring_echo_server;
#else
        die("BENCH_FANIN_URING: this lsock-bench was built without liburing (liburing-dev)");
#endif
    }
#ifdef BENCH_HAVE_LIBUV
    if (impl == LIBUV) server = libuv_echo_server;
#endif
    pid_t spid = spawn(server, NULL);
    usleep(20000);
    double rss0 = rss_of(spid);
    int ready[2], go[2], result[2];
    if (pipe2(ready, O_CLOEXEC) < 0 || pipe2(go, O_CLOEXEC) < 0 || pipe2(result, O_CLOEXEC) < 0)
        die("pipe: %s", strerror(errno));
    pid_t cpid[FANIN_PROCS];
    for (int i = 0; i < FANIN_PROCS; i++) {
        long n = fp->clients / FANIN_PROCS + (i < fp->clients % FANIN_PROCS);
        fflush(stdout);
        cpid[i] = fork();
        if (cpid[i] < 0) die("fork: %s", strerror(errno));
        if (cpid[i] == 0) {
            fanin_client(n, fp->seconds, ready[1], go[0], result[1]);
            _exit(0);
        }
    }
    char c;
    for (int i = 0; i < FANIN_PROCS; i++)
        if (read(ready[0], &c, 1) != 1) die("fanin: a client process failed");
    usleep(100000); /* let the server settle with every connection idle */
    double rss1 = rss_of(spid);
    *mem_per_conn = (rss1 - rss0) / (double)fp->clients;
    double sys0, sys1, cpu0 = cpu_of(spid, &sys0), t0 = now_s();
    for (int i = 0; i < FANIN_PROCS; i++)
        if (write(go[1], "g", 1) != 1) die("fanin: go");
    int64_t total = 0;
    for (int i = 0; i < FANIN_PROCS; i++) {
        int64_t n;
        if (read(result[0], &n, sizeof n) != sizeof n) die("fanin: a client process failed");
        total += n;
    }
    double cpu1 = cpu_of(spid, &sys1), t1 = now_s();
    if (g_rusage && cpu0 >= 0 && cpu1 >= 0) /* is the server what limits the round trips? */
        printf("\n    the server's CPU while measured: %.0f %% of one CPU, %.0f %% of it in the "
               "kernel",
               100.0 * (cpu1 - cpu0) / (t1 - t0),
               cpu1 > cpu0 ? 100.0 * (sys1 - sys0) / (cpu1 - cpu0) : 0.0);
    for (int i = 0; i < FANIN_PROCS; i++) {
        kill(cpid[i], SIGKILL);
        waitpid(cpid[i], NULL, 0);
    }
    close(ready[0]), close(ready[1]), close(go[0]), close(go[1]);
    close(result[0]), close(result[1]);
    reap(spid);
    return (double)total / fp->seconds;
}

/* ---- messages -------------------------------------------------------------------------- */

/*
 * Messages of size bytes: a round trip (the client sends one, the server echoes it, count
 * times) or one way (the client sends count, the server answers the last with one of 1 byte).
 * lsock with lsock_socket_write_message() / read_message() on its loop; nng with a pair1 socket
 * and ZeroMQ with a PAIR socket, both over ipc:// on the same kind of path, blocking send and
 * receive as their own examples do; and, for the round trip, lsock's byte pingpong of the same
 * size (the RAW column of these rows), the floor lsock's messages are held to.
 */
typedef struct {
    size_t size;
    long count;
    int one_way;
} msg_params;

static const msg_params *g_msgp; /* the server child's parameters */

static void lsm_ready_read(lsock_socket *s, void *ud)
{
    static long got;
    int64_t n;
    while ((n = lsock_socket_read_message(s, g_buf, sizeof g_buf)) >= 0) {
        if (!g_msgp->one_way)
            lsock_socket_write_message(s, g_buf, n);
        else if (++got == g_msgp->count)
            lsock_socket_write_message(s, "k", 1);
    }
}

static void lsm_new_connection(lsock_server *srv, void *ud)
{
    static const lsock_socket_callbacks cb = {.ready_read = lsm_ready_read,
                                              .disconnected = ls_free_on_disconnect};
    lsock_socket *s;
    while ((s = lsock_server_next_pending_connection(srv)))
        lsock_socket_set_callbacks(s, &cb, NULL);
}

static void lsock_msg_server(const void *arg)
{
    g_msgp = arg;
    lsock_loop *loop = lsock_loop_or_die();
    lsock_server *srv = lsock_server_new(loop);
    lsock_server_set_new_connection_callback(srv, lsm_new_connection, NULL);
    if (!lsock_server_listen(srv, g_path)) die("lsock listen: %s", lsock_server_error_string(srv));
    signal_ready();
    lsock_loop_run(loop, LSOCK_RUN_DEFAULT);
}

typedef struct {
    lsock_loop *loop;
    const msg_params *mp;
    long done, sent;
} lsm_state;

/* One way: keeps about 256 KiB queued, refilled as it drains (as a user streaming would). */
static void lsm_fill(lsock_socket *s, lsm_state *c)
{
    while (c->sent < c->mp->count && lsock_socket_bytes_to_write(s) < 262144) {
        if (lsock_socket_write_message(s, g_msg, (int64_t)c->mp->size) < 0)
            die("lsock write_message: %s", lsock_socket_error_string(s));
        c->sent++;
    }
}

static void lsmc_bytes_written(lsock_socket *s, int64_t n, void *ud)
{
    lsm_state *c = ud;
    if (c->mp->one_way) lsm_fill(s, c);
}

static void lsmc_ready_read(lsock_socket *s, void *ud)
{
    lsm_state *c = ud;
    while (lsock_socket_read_message(s, g_buf, sizeof g_buf) >= 0) {
        if (c->mp->one_way || ++c->done == c->mp->count) {
            c->done = c->mp->count;
            lsock_loop_stop(c->loop);
            return;
        }
        lsock_socket_write_message(s, g_msg, (int64_t)c->mp->size);
    }
}

static double lsock_msg(const msg_params *mp)
{
    pid_t pid = spawn(lsock_msg_server, mp);
    lsm_state c = {lsock_loop_or_die(), mp, 0, 0};
    lsock_socket_callbacks cb = {.ready_read = lsmc_ready_read,
                                 .bytes_written = lsmc_bytes_written};
    lsock_socket *s = lsock_connect_or_die(c.loop, &cb, &c);
    double t0 = now_s();
    if (mp->one_way)
        lsm_fill(s, &c);
    else if (lsock_socket_write_message(s, g_msg, (int64_t)mp->size) < 0)
        die("lsock write_message: %s", lsock_socket_error_string(s));
    lsock_loop_run(c.loop, LSOCK_RUN_DEFAULT);
    double t = now_s() - t0;
    if (c.done != mp->count) die("lsock messages: connection lost");
    lsock_socket_free(s);
    lsock_loop_free(c.loop);
    reap(pid);
    return mp->one_way ? (double)mp->count / t : t / (double)mp->count * 1e6;
}

#ifdef BENCH_HAVE_NNG
static void bench_nng_server(const void *arg)
{
    const msg_params *mp = arg;
    nng_socket sock;
    char url[128];
    snprintf(url, sizeof url, "ipc://%s", g_path);
    if (nng_pair1_open(&sock) != 0 || nng_listen(sock, url, NULL, 0) != 0) die("nng listen");
    signal_ready();
    for (long got = 0;;) {
        size_t n = sizeof g_buf;
        if (nng_recv(sock, g_buf, &n, 0) != 0) break;
        if (!mp->one_way)
            nng_send(sock, g_buf, n, 0);
        else if (++got == mp->count)
            nng_send(sock, "k", 1, 0);
    }
}

static double bench_nng(const msg_params *mp)
{
    pid_t pid = spawn(bench_nng_server, mp);
    nng_socket sock;
    char url[128];
    snprintf(url, sizeof url, "ipc://%s", g_path);
    if (nng_pair1_open(&sock) != 0 || nng_dial(sock, url, NULL, 0) != 0) die("nng dial");
    double t0 = now_s();
    size_t n;
    for (long i = 0; i < mp->count; i++) {
        if (nng_send(sock, g_msg, mp->size, 0) != 0) die("nng send");
        n = sizeof g_buf;
        if (!mp->one_way && nng_recv(sock, g_buf, &n, 0) != 0) die("nng recv");
    }
    n = sizeof g_buf;
    if (mp->one_way && nng_recv(sock, g_buf, &n, 0) != 0) die("nng recv");
    double t = now_s() - t0;
    nng_close(sock);
    reap(pid);
    return mp->one_way ? (double)mp->count / t : t / (double)mp->count * 1e6;
}

/* nng refuses to run in a process forked after it started in the parent ("not fork-reentrant
 * safe"): each measurement runs in a child of its own, which reports its result by a pipe. */
static double bench_nng_isolated(const msg_params *mp)
{
    int p[2];
    if (pipe2(p, O_CLOEXEC) < 0) die("pipe: %s", strerror(errno));
    fflush(stdout);
    pid_t pid = fork();
    if (pid < 0) die("fork: %s", strerror(errno));
    if (pid == 0) {
        close(p[0]);
        double v = bench_nng(mp);
        _exit(write(p[1], &v, sizeof v) == sizeof v ? 0 : 1);
    }
    close(p[1]);
    double v = -1;
    if (read(p[0], &v, sizeof v) != sizeof v) v = -1;
    close(p[0]);
    waitpid(pid, NULL, 0);
    return v;
}
#endif

#ifdef BENCH_HAVE_ZMQ
static void bench_zmq_server(const void *arg)
{
    const msg_params *mp = arg;
    void *ctx = zmq_ctx_new(), *sock = zmq_socket(ctx, ZMQ_PAIR);
    char url[128];
    snprintf(url, sizeof url, "ipc://%s", g_path);
    if (!sock || zmq_bind(sock, url) != 0) die("zmq bind: %s", zmq_strerror(zmq_errno()));
    signal_ready();
    for (long got = 0;;) {
        int n = zmq_recv(sock, g_buf, sizeof g_buf, 0);
        if (n < 0) break;
        if (!mp->one_way)
            zmq_send(sock, g_buf, (size_t)n, 0);
        else if (++got == mp->count)
            zmq_send(sock, "k", 1, 0);
    }
}

static double bench_zmq(const msg_params *mp)
{
    pid_t pid = spawn(bench_zmq_server, mp);
    void *ctx = zmq_ctx_new(), *sock = zmq_socket(ctx, ZMQ_PAIR);
    char url[128];
    snprintf(url, sizeof url, "ipc://%s", g_path);
    if (!sock || zmq_connect(sock, url) != 0) die("zmq connect: %s", zmq_strerror(zmq_errno()));
    double t0 = now_s();
    for (long i = 0; i < mp->count; i++) {
        if (zmq_send(sock, g_msg, mp->size, 0) < 0) die("zmq send");
        if (!mp->one_way && zmq_recv(sock, g_buf, sizeof g_buf, 0) < 0) die("zmq recv");
    }
    if (mp->one_way && zmq_recv(sock, g_buf, sizeof g_buf, 0) < 0) die("zmq recv");
    double t = now_s() - t0;
    int zero = 0;
    zmq_setsockopt(sock, ZMQ_LINGER, &zero, sizeof zero);
    zmq_close(sock);
    zmq_ctx_term(ctx);
    reap(pid);
    return mp->one_way ? (double)mp->count / t : t / (double)mp->count * 1e6;
}
#endif

static double run_msg(int impl, const void *params, double *extra)
{
    const msg_params *mp = params;
    switch (impl) {
    case LSOCK:
        return lsock_msg(mp);
    case RAW: { /* lsock's byte pingpong of the same size */
        if (mp->one_way) return -1;
        pp_params pp = {mp->size, mp->count, 0};
        return lsock_pingpong(&pp);
    }
#ifdef BENCH_HAVE_NNG
    case NNG:
        return bench_nng_isolated(mp);
#endif
#ifdef BENCH_HAVE_ZMQ
    case ZMQ:
        return bench_zmq(mp);
#endif
    }
    return -1;
}

static bool want(const char *only, const char *name);

/* ---- the table ------------------------------------------------------------------------- */

typedef struct row {
    const char *name, *unit, *fmt;
    double (*fn)(int impl, const void *params, double *extra);
    const void *params;
    int lower_better;  /* latency, memory */
    double raw_target; /* lsock/raw must be <= (lower_better) or >= this; 0: none */
    int beat_libuv;    /* lsock must be better than libuv */
    double uv_target;  /* lsock/libuv must be <= (lower_better) or >= this; 0: none */
    double abs_max;    /* lsock value must be <= this; 0: none */
    int completes;     /* the target is that it runs to the end */
    struct row *extra; /* row receiving the extra value (fanin memory) */
    int epoll_floor;   /* also measured as a minimal epoll loop (the EPOLL column) */
    int pinned;        /* run with the client on CPU cpu_client and the server on cpu_server */
    int cpu_client, cpu_server;
    double v[NIMPL][MAX_ROUNDS];
    int nv[NIMPL];
    int skip[NIMPL];
} row;

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(const row *r, int impl)
{
    if (r->nv[impl] == 0) return -1;
    double t[MAX_ROUNDS];
    memcpy(t, r->v[impl], sizeof t);
    qsort(t, (size_t)r->nv[impl], sizeof *t, cmp_double);
    int n = r->nv[impl];
    return n % 2 ? t[n / 2] : (t[n / 2 - 1] + t[n / 2]) / 2;
}

static void fmt_val(char *out, size_t n, const row *r, int impl)
{
    double m = median(r, impl);
    if (impl == EPOLL && !r->epoll_floor)
        snprintf(out, n, "-");
    else if (r->skip[impl] || m < 0)
        snprintf(out, n, "%s", impl == LIBUV && !have_libuv ? "skipped" : "n/a");
    else
        snprintf(out, n, r->fmt, m);
}

static void target_text(char *out, size_t n, const row *r)
{
    char a[64] = "", b[32] = "";
    if (r->completes)
        snprintf(a, sizeof a, "completes");
    else if (r->abs_max > 0)
        snprintf(a, sizeof a, "<= %.0f %s", r->abs_max, r->unit);
    else if (r->raw_target > 0)
        snprintf(a, sizeof a, "%s %.2fx raw", r->lower_better ? "<=" : ">=", r->raw_target);
    if (r->uv_target > 0)
        snprintf(b, sizeof b, "%s%s %.2fx libuv", a[0] ? ", " : "",
                 r->lower_better ? "<=" : ">=", r->uv_target);
    else if (r->beat_libuv)
        snprintf(b, sizeof b, "%s%slibuv", a[0] ? ", " : "",
                 r->raw_target > 0 ? (r->lower_better ? "< " : "> ")
                                   : (r->lower_better ? "<= " : ">= "));
    snprintf(out, n, "%s%s", a[0] || b[0] ? a : "-", b);
}

/* "yes", "NO" or "-" (no target); "?" when a column it needs was not measured. */
static const char *target_met(const row *r)
{
    double raw = median(r, RAW), ls = median(r, LSOCK), uv = median(r, LIBUV);
    if (!r->completes && r->abs_max <= 0 && r->raw_target <= 0 && !r->beat_libuv &&
        r->uv_target <= 0)
        return "-";
    if (ls < 0) return "NO";
    if (r->completes) return "yes";
    bool ok = true, partial = false;
    if (r->abs_max > 0 && ls > r->abs_max) ok = false;
    if (r->raw_target > 0) {
        if (raw <= 0)
            partial = true;
        else if (r->lower_better ? ls / raw > r->raw_target : ls / raw < r->raw_target)
            ok = false;
    }
    if (r->uv_target > 0) {
        if (uv <= 0)
            partial = true;
        else if (r->lower_better ? ls / uv > r->uv_target : ls / uv < r->uv_target)
            ok = false;
    } else if (r->beat_libuv) {
        if (uv < 0)
            partial = true;
        else if (r->lower_better ? ls > uv : ls < uv)
            ok = false;
        if (!r->lower_better && r->raw_target == 0 && ls == uv) ok = true;
    }
    if (!ok) return "NO";
    if (partial) return have_libuv || raw <= 0 ? "?" : "yes (no libuv)";
    return g_peer >= 0 ? "? (--peer)" : "yes";
}

static void ratio_text(char *out, size_t n, double a, double b)
{
    if (a < 0 || b <= 0)
        snprintf(out, n, "-");
    else
        snprintf(out, n, "%.3f", a / b);
}

static void print_table(row **rows, int nrows, int rounds)
{
    printf("\nMedians of %d rounds; ratios are lsock / other of the values shown.\n", rounds);
    if (g_short)
        printf("Short mode: sizes too small to measure anything; met? is not meaningful.\n");
    printf("\n");
    bool floor = false;
    for (int i = 0; i < nrows; i++)
        floor |= rows[i]->epoll_floor;
    printf("%-36s %10s %10s %10s %9s %11s  %-30s %-5s", "workload", "raw", "lsock", "libuv",
           "lsock/raw", "lsock/libuv", "target", "met?");
    if (floor) printf(" %10s %11s", "epoll", "lsock/epoll");
    printf("\n");
    for (int i = 0; i < nrows; i++) {
        row *r = rows[i];
        char name[64], v[NIMPL][32], rr[16], ru[16], re[16], tg[64];
        snprintf(name, sizeof name, "%s (%s)", r->name, r->unit);
        for (int k = 0; k < NIMPL; k++)
            fmt_val(v[k], sizeof v[k], r, k);
        ratio_text(rr, sizeof rr, median(r, LSOCK), median(r, RAW));
        ratio_text(ru, sizeof ru, median(r, LSOCK), r->skip[LIBUV] ? -1 : median(r, LIBUV));
        ratio_text(re, sizeof re, median(r, LSOCK), r->epoll_floor ? median(r, EPOLL) : -1);
        target_text(tg, sizeof tg, r);
        printf("%-36s %10s %10s %10s %9s %11s  %-30s %-5s", name, v[RAW], v[LSOCK], v[LIBUV], rr,
               ru, tg, target_met(r));
        if (floor) printf(" %10s %11s", v[EPOLL], re);
        printf("\n");
    }
    fflush(stdout);
}

/* The table's medians for the workloads chart (bench/plot.sh) and for bench/compare.sh: one
 * line per row with a ratio to raw, "name" lsock/raw lsock/libuv raw lsock libuv lower_better
 * (-1: not measured), in table order. */
static void write_table_data(const char *file, row **rows, int nrows)
{
    FILE *f = fopen(file, "w");
    if (!f) die("%s: %s", file, strerror(errno));
    fprintf(f, "# workload lsock/raw lsock/libuv raw lsock libuv lower_better (medians of one "
               "interleaved run)\n");
    for (int i = 0; i < nrows; i++) {
        row *r = rows[i];
        double raw = median(r, RAW), ls = median(r, LSOCK), uv = median(r, LIBUV);
        if (raw <= 0 || ls <= 0) continue; /* memory rows: no raw side */
        int have_uv = uv > 0 && !r->skip[LIBUV];
        fprintf(f, "\"%s\" %.4f %.4f %.6g %.6g %.6g %d\n", r->name, ls / raw,
                have_uv ? ls / uv : -1.0, raw, ls, have_uv ? uv : -1.0, r->lower_better);
    }
    fclose(f);
    printf("\nworkload data written to %s\n", file);
}

/* The message rows: lsock's messages against nng and ZeroMQ, and (round trip) against lsock's
 * own byte pingpong of the same size, which sits in the RAW column. Targets: round trip
 * lsock <= 0.7x nng and ZeroMQ and <= 1.05x lsock bytes; one way >= 1.5x nng, >= 1.2x ZeroMQ. */
static void print_msg_table(row **rows, int nrows, int rounds)
{
    printf("\nMessages, medians of %d rounds (ratios: lsock messages / other):\n\n", rounds);
    printf("%-32s %10s %10s %10s %10s %11s %9s %9s  %-32s %-5s\n", "workload", "lsock msg",
           "lsock byte", "nng", "zmq", "msg/bytes", "/nng", "/zmq", "target", "met?");
    for (int i = 0; i < nrows; i++) {
        row *r = rows[i];
        char name[64], v[NIMPL][32], rb[16], rn[16], rz[16];
        snprintf(name, sizeof name, "%s (%s)", r->name, r->unit);
        for (int k = 0; k < NIMPL; k++)
            fmt_val(v[k], sizeof v[k], r, k);
        double ls = median(r, LSOCK), by = median(r, RAW), nn = median(r, NNG), zm = median(r, ZMQ);
        ratio_text(rb, sizeof rb, ls, by);
        ratio_text(rn, sizeof rn, ls, nn);
        ratio_text(rz, sizeof rz, ls, zm);
        const char *target =
            r->lower_better ? "<= 0.70x nng, zmq; <= 1.05x bytes" : ">= 1.50x nng, >= 1.20x zmq";
        bool known = ls > 0 && nn > 0 && zm > 0 && (!r->lower_better || by > 0);
        bool met = known && (r->lower_better ? ls / nn <= 0.70 && ls / zm <= 0.70 && ls / by <= 1.05
                                             : ls / nn >= 1.50 && ls / zm >= 1.20);
        printf("%-32s %10s %10s %10s %10s %11s %9s %9s  %-32s %-5s\n", name, v[LSOCK],
               r->lower_better ? v[RAW] : "-", v[NNG], v[ZMQ], r->lower_better ? rb : "-", rn, rz,
               target,
               !known ? "?"
               : met  ? "yes"
                      : "NO");
    }
    fflush(stdout);
}

/* The message medians for the chart (bench/plot.sh): one block per workload, separated by two
 * blank lines (gnuplot's index), each a line "label" value per implementation measured. */
static void write_msg_data(const char *path, row **rows, int nrows)
{
    FILE *f = fopen(path, "w");
    if (!f) die("%s: %s", path, strerror(errno));
    static const struct {
        int impl;
        const char *label;
    } cols[] = {{LSOCK, "lsock msg"}, {RAW, "lsock bytes"}, {NNG, "nng"}, {ZMQ, "zmq"}};
    for (int i = 0; i < nrows; i++) {
        fprintf(f, "%s# %s (%s)\n", i ? "\n\n" : "", rows[i]->name, rows[i]->unit);
        for (size_t k = 0; k < sizeof cols / sizeof cols[0]; k++) {
            double v = median(rows[i], cols[k].impl);
            if (v > 0) fprintf(f, "\"%s\" %.4f\n", cols[k].label, v);
        }
    }
    fclose(f);
    printf("\nmessage data written to %s\n", path);
}

static double tv_diff(const struct timeval *a, const struct timeval *b)
{
    return (double)(b->tv_sec - a->tv_sec) + (double)(b->tv_usec - a->tv_usec) * 1e-6;
}

static void run_row(row *r, int rounds)
{
    printf("  %-34s", r->name);
    fflush(stdout);
    cpu_set_t saved;
    int saved_server = g_cpu_server;
    if (r->pinned) {
        if (sched_getaffinity(0, sizeof saved, &saved) < 0) die("sched_getaffinity");
        pin_to(r->cpu_client);
        g_cpu_server = r->cpu_server;
    }
    for (int round = 0; round < rounds; round++) {
        for (int j = 0; j < NIMPL; j++) {
            int k = (round + j) % NIMPL; /* rotated: no implementation always runs first */
            if (r->skip[k] || (k == EPOLL && !r->epoll_floor) || !want(g_impls, impl_name[k]))
                continue;
            double extra = -1;
            struct rusage self0, self1, kids0, kids1;
            getrusage(RUSAGE_SELF, &self0);
            getrusage(RUSAGE_CHILDREN, &kids0);
            double val = r->fn(k, r->params, &extra);
            getrusage(RUSAGE_SELF, &self1);
            getrusage(RUSAGE_CHILDREN, &kids1);
            if (g_rusage)
                printf("\n    %-6s %12.4f  client user %.3f s sys %.3f s, servers user %.3f s sys "
                       "%.3f s",
                       impl_name[k], val, tv_diff(&self0.ru_utime, &self1.ru_utime),
                       tv_diff(&self0.ru_stime, &self1.ru_stime),
                       tv_diff(&kids0.ru_utime, &kids1.ru_utime),
                       tv_diff(&kids0.ru_stime, &kids1.ru_stime));
            if (val < 0) {
                r->skip[k] = 1;
                if (r->extra) r->extra->skip[k] = 1;
                continue;
            }
            r->v[k][r->nv[k]++] = val;
            if (r->extra && extra >= 0) r->extra->v[k][r->extra->nv[k]++] = extra;
        }
        printf(" .");
        fflush(stdout);
    }
    printf("\n");
    if (r->pinned) {
        if (sched_setaffinity(0, sizeof saved, &saved) < 0) die("sched_setaffinity");
        g_cpu_server = saved_server;
    }
}

/* ---- main ------------------------------------------------------------------------------ */

/* src pinned: the client side to CPU client, the servers to CPU server (-1: no such CPU, the
 * row is skipped). */
static row placed(const row *src, const char *name, int client, int server)
{
    row r = *src;
    r.name = name;
    r.extra = NULL; /* the memory row stays with the unpinned row */
    r.pinned = 1;
    r.cpu_client = client;
    r.cpu_server = server;
    return r;
}

static bool want(const char *only, const char *name)
{
    if (!only) return true;
    size_t n = strlen(name);
    for (const char *p = only; (p = strstr(p, name)); p += n)
        if ((p == only || p[-1] == ',') && (p[n] == ',' || p[n] == '\0')) return true;
    return false;
}

static const char *size_label(size_t s, char *buf, size_t n)
{
    if (s >= (1u << 20))
        snprintf(buf, n, "%zu MiB", s >> 20);
    else if (s >= 1024)
        snprintf(buf, n, "%zu KiB", s >> 10);
    else
        snprintf(buf, n, "%zu B", s);
    return buf;
}

static void run_sizes(bool short_mode, int rounds, const char *data_file)
{
    static const size_t full_sizes[] = {1, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576};
    static const size_t short_sizes[] = {1, 1024, 65536, 1048576};
    const size_t *sizes = short_mode ? short_sizes : full_sizes;
    int nsizes = short_mode ? 4 : 10;
    if (g_one_size) {
        if (g_one_size > sizeof g_msg) die("--size: at most %zu", sizeof g_msg);
        sizes = &g_one_size;
        nsizes = 1;
    }
    static row pp_rows[10], st_rows[10];
    static pp_params ppp[10];
    static st_params stp[10];
    printf("\nMessage sizes (pingpong latency and stream throughput per write size), %d rounds:\n",
           rounds);
    for (int i = 0; i < nsizes; i++) {
        size_t s = sizes[i];
        /* pingpong: enough round trips for ~0.2 s at raw speed; stream: 256 MiB or 200k writes */
        long iters = short_mode ? 200 : 20000;
        if (s >= 16384) iters = short_mode ? 50 : (long)((256u << 20) / s / 4);
        if (iters < 50) iters = 50;
        ppp[i] = (pp_params){s, iters, 0};
        uint64_t nwrites = short_mode ? 2000 : 200000;
        uint64_t total = (uint64_t)s * nwrites;
        uint64_t cap = short_mode ? (16u << 20) : (512u << 20);
        if (total > cap) total = cap;
        stp[i] = (st_params){s, total, 0, 0};
        char label[24];
        size_label(s, label, sizeof label);
        static char names[2][10][48];
        snprintf(names[0][i], sizeof names[0][i], "pingpong %s", label);
        snprintf(names[1][i], sizeof names[1][i], "stream %s writes", label);
        pp_rows[i] = (row){.name = names[0][i],
                           .unit = "us",
                           .fmt = "%.2f",
                           .fn = run_pingpong,
                           .params = &ppp[i],
                           .lower_better = 1};
        st_rows[i] = (row){.name = names[1][i],
                           .unit = "GB/s",
                           .fmt = "%.3f",
                           .fn = run_stream,
                           .params = &stp[i]};
        if (!have_libuv) pp_rows[i].skip[LIBUV] = st_rows[i].skip[LIBUV] = 1;
        pp_rows[i].skip[NNG] = pp_rows[i].skip[ZMQ] = st_rows[i].skip[NNG] = st_rows[i].skip[ZMQ] =
            1;
        run_row(&pp_rows[i], rounds);
        run_row(&st_rows[i], rounds);
    }
    row *all[20];
    for (int i = 0; i < nsizes; i++) {
        all[i] = &pp_rows[i];
        all[nsizes + i] = &st_rows[i];
    }
    print_table(all, 2 * nsizes, rounds);
    if (data_file) {
        FILE *f = fopen(data_file, "w");
        if (!f) die("%s: %s", data_file, strerror(errno));
        fprintf(f,
                "# size pp_raw_us pp_lsock_us pp_libuv_us st_raw_GBs st_lsock_GBs st_libuv_GBs\n");
        for (int i = 0; i < nsizes; i++)
            fprintf(f, "%zu %.4f %.4f %.4f %.5f %.5f %.5f\n", sizes[i], median(&pp_rows[i], RAW),
                    median(&pp_rows[i], LSOCK), median(&pp_rows[i], LIBUV),
                    median(&st_rows[i], RAW), median(&st_rows[i], LSOCK),
                    median(&st_rows[i], LIBUV));
        fclose(f);
        printf("\nsize data written to %s\n", data_file);
    }
}

int main(int argc, char **argv)
{
    bool short_mode = env_on("BENCH_SHORT"), sizes = true;
    int rounds = 0;
    const char *only = NULL, *data_file = NULL, *msg_data_file = NULL, *table_file = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--short"))
            short_mode = true;
        else if (!strcmp(argv[i], "--no-sizes"))
            sizes = false;
        else if (!strcmp(argv[i], "--rounds") && i + 1 < argc)
            rounds = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--only") && i + 1 < argc)
            only = argv[++i];
        else if (!strcmp(argv[i], "--data") && i + 1 < argc)
            data_file = argv[++i];
        else if (!strcmp(argv[i], "--msg-data") && i + 1 < argc)
            msg_data_file = argv[++i];
        else if (!strcmp(argv[i], "--table-data") && i + 1 < argc)
            table_file = argv[++i];
        else if (!strcmp(argv[i], "--impl") && i + 1 < argc)
            g_impls = argv[++i];
        else if (!strcmp(argv[i], "--peer") && i + 1 < argc) {
            const char *p = argv[++i];
            for (int k = 0; k < NIMPL; k++)
                if (!strcmp(p, impl_name[k])) g_peer = k;
            if (g_peer < 0 || (g_peer == LIBUV && !have_libuv)) die("--peer: unknown %s", p);
        } else if (!strcmp(argv[i], "--cpus") && i + 1 < argc) {
            int c = -1, sv = -1;
            if (sscanf(argv[++i], "%d,%d", &c, &sv) != 2 || c < 0 || sv < 0)
                die("--cpus: CLIENT,SERVER CPU numbers, e.g. 0,1");
            pin_to(c); /* the measured side and the fanin client processes */
            g_cpu_server = sv;
        } else if (!strcmp(argv[i], "--size") && i + 1 < argc)
            g_one_size = (size_t)strtoull(argv[++i], NULL, 0);
        else {
            fprintf(
                stderr,
                "usage: %s [--short] [--rounds N] [--only LIST] [--no-sizes] [--data FILE]\n"
                "       [--msg-data FILE] [--table-data FILE]\n"
                "       [--impl raw,lsock,libuv,epoll] [--size BYTES] [--peer raw|lsock|libuv]\n"
                "       [--cpus CLIENT,SERVER]\n"
                "LIST: comma-separated "
                "pingpong,blocking,stream,refill,connrate,fanin,messages,sizes\n"
                "      (refill64, refill-owned, refill4: one refill row each;\n"
                "      blocking-stream: the blocking stream row)\n",
                argv[0]);
            return 2;
        }
    }
    if (rounds <= 0) rounds = short_mode ? 3 : 5;
    g_short = short_mode;
    g_rusage = env_on("BENCH_RUSAGE");
    if (rounds > MAX_ROUNDS) rounds = MAX_ROUNDS;
    signal(SIGPIPE, SIG_IGN);
    memset(g_msg, 'm', sizeof g_msg);

    struct rlimit rl;
    getrlimit(RLIMIT_NOFILE, &rl);
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
    getrlimit(RLIMIT_NOFILE, &rl);

    printf("lsock-bench: lsock %s (%s backend), libuv %s; %s mode, %d rounds\n", lsock_version(),
#ifdef BENCH_HAVE_LIBUV
           "epoll", uv_version_string(),
#else
           "epoll", "skipped (libuv1-dev not found when this was built)",
#endif
           short_mode ? "short" : "full", rounds);
    if (!have_libuv) printf("libuv: skipped (install libuv1-dev and rebuild for its column)\n");
    if (g_cpu_server >= 0)
        printf("pinned: the measured side to one CPU, the servers to CPU %d\n", g_cpu_server);

    pp_params pp = {1, short_mode ? 2000 : 50000, 0};
    pp_params ppb = {1, short_mode ? 2000 : 50000, 50};
    pp_params bl = {1, short_mode ? 2000 : 50000, 0};
    st_params bls = {65536, short_mode ? (32u << 20) : (1u << 30), 0, 0};
    st_params st64 = {65536, short_mode ? (32u << 20) : (1u << 30), 0, 0};
    st_params st4 = {4096, short_mode ? (8u << 20) : (1u << 30), 0, 0};
    st_params rf64 = {65536, short_mode ? (32u << 20) : (256u << 20), 4 * 65536, 0};
    st_params rf4 = {4096, short_mode ? (8u << 20) : (256u << 20), 4 * 65536, 0};
    st_params rfo = {65536, rf64.total, 4 * 65536, 1};
    cr_params cr = {short_mode ? 500 : 20000};
    fi_params fi1 = {short_mode ? 100 : 1000, short_mode ? 0.2 : 2.0};
    fi_params fi10 = {short_mode ? 1000 : 10000, short_mode ? 0.2 : 2.0};

    static row r_pp = {.name = "pingpong 1 B",
                       .unit = "us",
                       .fmt = "%.2f",
                       .fn = run_pingpong,
                       .lower_better = 1,
                       .raw_target = 1.10,
                       .uv_target = 0.85};
    static row r_ppb = {.name = "pingpong 1 B, busy-poll 50 us",
                        .unit = "us",
                        .fmt = "%.2f",
                        .fn = run_pingpong,
                        .lower_better = 1,
                        .raw_target = 1.05};
    static row r_rf64 = {.name = "refill stream 64 KiB",
                         .unit = "GB/s",
                         .fmt = "%.3f",
                         .fn = run_stream,
                         .raw_target = 0.97,
                         .uv_target = 1.20};
    static row r_rfo = {.name = "refill stream 64 KiB, write_owned",
                        .unit = "GB/s",
                        .fmt = "%.3f",
                        .fn = run_stream,
                        .raw_target = 0.97,
                        .uv_target = 1.20};
    static row r_rf4 = {.name = "refill stream 4 KiB writes",
                        .unit = "GB/s",
                        .fmt = "%.3f",
                        .fn = run_stream,
                        .raw_target = 0.90,
                        .beat_libuv = 1};
    static row r_bl = {.name = "blocking 1 B",
                       .unit = "us",
                       .fmt = "%.2f",
                       .fn = run_blocking,
                       .lower_better = 1,
                       .raw_target = 1.05};
    static row r_bls = {.name = "blocking stream 64 KiB reads",
                        .unit = "GB/s",
                        .fmt = "%.3f",
                        .fn = run_blocking_stream,
                        .raw_target = 0.97};
    static row r_st64 = {.name = "stream 64 KiB writes",
                         .unit = "GB/s",
                         .fmt = "%.3f",
                         .fn = run_stream,
                         .raw_target = 0.95,
                         .beat_libuv = 1};
    static row r_st4 = {.name = "stream 4 KiB writes",
                        .unit = "GB/s",
                        .fmt = "%.3f",
                        .fn = run_stream,
                        .raw_target = 0.90,
                        .beat_libuv = 1};
    static row r_cr = {.name = "connrate",
                       .unit = "conn/s",
                       .fmt = "%.0f",
                       .fn = run_connrate,
                       .raw_target = 0.90,
                       .beat_libuv = 1};
    static row r_fi1 = {.fn = run_fanin, .unit = "rt/s", .fmt = "%.0f", .uv_target = 1.50};
    static row r_fi1m = {.unit = "B/conn", .fmt = "%.0f", .lower_better = 1, .abs_max = 1024};
    static row r_fi10 = {.fn = run_fanin, .unit = "rt/s", .fmt = "%.0f", .completes = 1};
    static row r_fi10m = {.unit = "B/conn", .fmt = "%.0f", .lower_better = 1, .abs_max = 2048};
    static char n1[40], n1m[40], n10[40], n10m[40];
    snprintf(n1, sizeof n1, "fanin %ld", fi1.clients);
    snprintf(n1m, sizeof n1m, "fanin %ld idle mem", fi1.clients);
    snprintf(n10, sizeof n10, "fanin %ld", fi10.clients);
    snprintf(n10m, sizeof n10m, "fanin %ld idle mem", fi10.clients);
    r_fi1.name = n1, r_fi1m.name = n1m, r_fi10.name = n10, r_fi10m.name = n10m;
    r_pp.params = &pp, r_bl.params = &bl, r_st64.params = &st64, r_st4.params = &st4;
    r_ppb.params = &ppb, r_rf64.params = &rf64, r_rf4.params = &rf4;
    r_rfo.params = &rfo;
    r_cr.params = &cr, r_fi1.params = &fi1, r_fi10.params = &fi10;
    r_fi1.extra = &r_fi1m, r_fi10.extra = &r_fi10m;
    r_bls.params = &bls;
    r_bl.skip[LIBUV] = r_bls.skip[LIBUV] = 1; /* no blocking API */
    r_pp.epoll_floor = r_cr.epoll_floor = 1;

    /* The same two rows pinned, once per placement, and fanin 1,000 with the clients on one
     * CPU and the server alone on the other: how much a server serves when the scheduler's
     * sharing of the CPUs is out of the picture. Left out when --cpus pins everything. */
    int cpus[2];
    int two = usable_cpus(cpus) > 1 ? cpus[1] : -1;
    static row r_pp1, r_pp2, r_cr1, r_cr2, r_fi1p;
    static char n1p[48];
    snprintf(n1p, sizeof n1p, "fanin %ld, server's own CPU", fi1.clients);
    r_pp1 = placed(&r_pp, "pingpong 1 B, 1 CPU", cpus[0], cpus[0]);
    r_pp2 = placed(&r_pp, "pingpong 1 B, 2 CPUs", cpus[0], two);
    r_cr1 = placed(&r_cr, "connrate, 1 CPU", cpus[0], cpus[0]);
    r_cr2 = placed(&r_cr, "connrate, 2 CPUs", cpus[0], two);
    r_fi1p = placed(&r_fi1, n1p, cpus[0], two);

    row *table[32];
    int n = 0;
    struct {
        const char *key, *own; /* own: a key for this row alone (for profiling one) */
        row *r;
    } all[] = {{"pingpong", NULL, &r_pp},       {"pingpong", NULL, &r_pp1},
               {"pingpong", NULL, &r_pp2},      {"pingpong", NULL, &r_ppb},
               {"blocking", NULL, &r_bl},       {"blocking", "blocking-stream", &r_bls},
               {"stream", NULL, &r_st64},       {"stream", NULL, &r_st4},
               {"refill", "refill64", &r_rf64}, {"refill", "refill-owned", &r_rfo},
               {"refill", "refill4", &r_rf4},   {"connrate", NULL, &r_cr},
               {"connrate", NULL, &r_cr1},      {"connrate", NULL, &r_cr2},
               {"fanin", NULL, &r_fi1},         {"fanin", NULL, &r_fi1p},
               {"fanin", NULL, &r_fi10}};
    printf("\nRunning (one dot per round of raw, lsock, libuv, epoll where measured):\n");
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) {
        row *r = all[i].r;
        if (!want(only, all[i].key) && !(all[i].own && want(only, all[i].own))) continue;
        if (r->pinned && g_cpu_server >= 0) continue; /* --cpus: everything is pinned already */
        if (r->pinned && r->cpu_server < 0) {
            printf("  %-34s skipped: only one CPU is usable\n", r->name);
            continue;
        }
        if (!have_libuv) r->skip[LIBUV] = 1;
        if (r == &r_fi10 && rl.rlim_cur < (rlim_t)fi10.clients + 64) {
            printf("  %-34s skipped: RLIMIT_NOFILE hard limit %llu < %ld (raise it, e.g. "
                   "ulimit -Hn)\n",
                   r->name, (unsigned long long)rl.rlim_max, fi10.clients + 64);
            continue;
        }
        r->skip[NNG] = r->skip[ZMQ] = 1; /* the message rows only */
        if (r->extra) r->extra->skip[NNG] = r->extra->skip[ZMQ] = 1;
        if (r->extra && r->skip[LIBUV]) r->extra->skip[LIBUV] = 1;
        run_row(r, rounds);
        table[n++] = r;
        if (r->extra) table[n++] = r->extra;
    }
    if (n) print_table(table, n, rounds);
    if (n && table_file) write_table_data(table_file, table, n);

    /* Messages: lsock against nng and ZeroMQ (and its own byte pingpong). */
    static msg_params m_rt = {64, 0, 0}, m_64 = {64, 0, 1}, m_64k = {65536, 0, 1};
    m_rt.count = short_mode ? 2000 : 50000;
    m_64.count = short_mode ? 20000 : 200000;
    m_64k.count = short_mode ? 500 : 20000;
    static row r_mrt = {.name = "message round trip 64 B",
                        .unit = "us",
                        .fmt = "%.2f",
                        .fn = run_msg,
                        .lower_better = 1};
    static row r_m64 = {.name = "messages one way 64 B", .unit = "msg/s", .fmt = "%.0f"};
    static row r_m64k = {.name = "messages one way 64 KiB", .unit = "msg/s", .fmt = "%.0f"};
    r_mrt.params = &m_rt, r_m64.params = &m_64, r_m64k.params = &m_64k;
    r_m64.fn = r_m64k.fn = run_msg;
    row *mrows[] = {&r_mrt, &r_m64, &r_m64k};
    if (want(only, "messages")) {
        if (!have_nng) printf("nng: skipped (install libnng-dev and rebuild for its column)\n");
        if (!have_zmq) printf("zmq: skipped (install libzmq3-dev and rebuild for its column)\n");
        printf("\nRunning the message workloads (lsock messages, lsock bytes, nng, zmq):\n");
        for (int i = 0; i < 3; i++) {
            mrows[i]->skip[LIBUV] = 1;
            if (!have_nng) mrows[i]->skip[NNG] = 1;
            if (!have_zmq) mrows[i]->skip[ZMQ] = 1;
            run_row(mrows[i], rounds);
        }
        print_msg_table(mrows, 3, rounds);
        if (msg_data_file) write_msg_data(msg_data_file, mrows, 3);
    }
    if (sizes && want(only, "sizes")) run_sizes(short_mode, short_mode ? rounds : 3, data_file);
    return 0;
}
