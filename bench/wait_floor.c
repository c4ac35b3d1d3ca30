/*
 * lsock-wait-floor: the floor of a 1-byte ping-pong for each way a process can wait for its
 * peer's byte, no library on either side. It answers one question: how much faster than an
 * epoll loop (libuv's design, and lsock's) could any event loop make a round trip on this
 * machine, without spinning?
 *
 *   raw      blocking read() + write(): no event loop at all
 *   poll     poll() on the socket and a second descriptor (a loop's wake-up pipe), then
 *            recv() + send()
 *   epoll    epoll_wait(), then recv() + send()
 *   io_uring the reply's send and the next receive submitted together, one io_uring_enter()
 *            per round trip (the fewest system calls a completion-based loop can make)
 *
 * Each in three placements (unpinned, both processes on one CPU, one on each of two CPUs),
 * interleaved round by round; medians in µs per round trip, and each against epoll.
 *
 *   lsock-wait-floor [ROUNDS] [ROUND_TRIPS]       (default 5 rounds of 50,000 round trips)
 *
 * Where io_uring cannot be set up (a kernel without it, io_uring_disabled, a seccomp filter),
 * its column says so and the others are measured.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <liburing.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MAX_ROUNDS 64

static long g_trips = 50000;

static void die(const char *what)
{
    fprintf(stderr, "lsock-wait-floor: %s: %s\n", what, strerror(errno));
    exit(1);
}

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static void pin(int cpu)
{
    if (cpu < 0) return;
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    if (sched_setaffinity(0, sizeof set, &set) < 0) die("sched_setaffinity");
}

/* Each side: the initiator sends first and counts replies; the other echoes. */
static void side_raw(int fd, int init)
{
    char b = 'x';
    if (init && write(fd, &b, 1) != 1) die("write");
    for (long i = 0; i < g_trips; i++) {
        if (read(fd, &b, 1) != 1) die("read");
        if ((!init || i + 1 < g_trips) && write(fd, &b, 1) != 1) die("write");
    }
}

static void nonblocking(int fd)
{
    if (fcntl(fd, F_SETFL, O_NONBLOCK) < 0) die("fcntl");
}

static int echo_one(int fd, int init, long *i)
{
    char b;
    ssize_t r = recv(fd, &b, 1, 0);
    if (r < 0 && errno == EAGAIN) return 0;
    if (r != 1) die("recv");
    ++*i;
    if ((!init || *i < g_trips) && send(fd, &b, 1, MSG_NOSIGNAL) != 1) die("send");
    return 1;
}

static void side_poll(int fd, int init)
{
    int wake[2];
    if (pipe(wake) < 0) die("pipe");
    nonblocking(fd);
    struct pollfd pf[2] = {{.fd = fd, .events = POLLIN}, {.fd = wake[0], .events = POLLIN}};
    if (init && send(fd, "x", 1, MSG_NOSIGNAL) != 1) die("send");
    for (long i = 0; i < g_trips;) {
        if (poll(pf, 2, -1) < 0 && errno != EINTR) die("poll");
        if (pf[0].revents) echo_one(fd, init, &i);
    }
    close(wake[0]), close(wake[1]);
}

static void side_epoll(int fd, int init)
{
    int ep = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event ev = {.events = EPOLLIN, .data.fd = fd};
    if (ep < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) < 0) die("epoll");
    nonblocking(fd);
    if (init && send(fd, "x", 1, MSG_NOSIGNAL) != 1) die("send");
    for (long i = 0; i < g_trips;) {
        int n = epoll_wait(ep, &ev, 1, -1);
        if (n < 0 && errno != EINTR) die("epoll_wait");
        if (n > 0) echo_one(fd, init, &i);
    }
    close(ep);
}

enum { UD_RECV = 1, UD_SEND = 2 };

static int g_skip_success; /* the kernel can leave out a successful send's completion */

static struct io_uring_sqe *get_sqe(struct io_uring *ring)
{
    struct io_uring_sqe *sqe = io_uring_get_sqe(ring);
    if (!sqe) { /* never more than two are queued in a ring of eight */
        errno = ENOSPC;
        die("io_uring_get_sqe");
    }
    return sqe;
}

static void queue_send(struct io_uring *ring, int fd, const char *b)
{
    struct io_uring_sqe *sqe = get_sqe(ring);
    io_uring_prep_send(sqe, fd, b, 1, MSG_NOSIGNAL);
    sqe->user_data = UD_SEND;
#ifdef IOSQE_CQE_SKIP_SUCCESS
    if (g_skip_success) sqe->flags |= IOSQE_CQE_SKIP_SUCCESS; /* a completion only if it fails */
#endif
}

static void queue_recv(struct io_uring *ring, int fd, char *b)
{
    struct io_uring_sqe *sqe = get_sqe(ring);
    io_uring_prep_recv(sqe, fd, b, 1, 0);
    sqe->user_data = UD_RECV;
}

static void side_uring(int fd, int init)
{
    struct io_uring ring;
    static char in, out = 'x';
    int rc = io_uring_queue_init(8, &ring, 0);
    if (rc < 0) {
        errno = -rc;
        die("io_uring_queue_init");
    }
    if (init) queue_send(&ring, fd, &out);
    queue_recv(&ring, fd, &in);
    for (long i = 0; i < g_trips;) {
        rc = io_uring_submit_and_wait(&ring, 1);
        if (rc < 0 && rc != -EINTR) {
            errno = -rc;
            die("io_uring_submit_and_wait");
        }
        struct io_uring_cqe *cqe;
        while (io_uring_peek_cqe(&ring, &cqe) == 0) {
            int res = cqe->res;
            unsigned long long ud = cqe->user_data;
            io_uring_cqe_seen(&ring, cqe);
            errno = res < 0 ? -res : EPROTO;
            if (ud == UD_SEND) {
                if (res != 1) die("io_uring send");
                continue;
            }
            if (res != 1) die("io_uring recv");
            i++;
            if (!init || i < g_trips) queue_send(&ring, fd, &out);
            if (i < g_trips) queue_recv(&ring, fd, &in);
        }
    }
    rc = io_uring_submit(&ring); /* the echo side's last reply */
    if (rc < 0) {
        errno = -rc;
        die("io_uring_submit");
    }
    if (!init && !g_skip_success) /* the last reply's completion: it has been sent */
        while ((rc = io_uring_submit_and_wait(&ring, 1)) == -EINTR)
            ;
    io_uring_queue_exit(&ring);
}

/* Whether io_uring can be used here; if not, why in why. */
static int uring_usable(char *why, size_t n)
{
    struct io_uring ring;
    int rc = io_uring_queue_init(8, &ring, 0);
    if (rc < 0) {
        snprintf(why, n, "io_uring_setup: %s", strerror(-rc));
        return 0;
    }
#if defined(IOSQE_CQE_SKIP_SUCCESS) && defined(IORING_FEAT_CQE_SKIP)
    g_skip_success = (ring.features & IORING_FEAT_CQE_SKIP) != 0;
#endif
    io_uring_queue_exit(&ring);
    return 1;
}

static const struct {
    const char *name;
    void (*side)(int fd, int init);
} ways[] = {
    {"raw", side_raw}, {"poll", side_poll}, {"epoll", side_epoll}, {"io_uring", side_uring}};
#define NWAYS (int)(sizeof ways / sizeof ways[0])

/* µs per round trip, the initiator on CPU c, the echo side on CPU s (-1: unpinned). */
static double measure(int way, int c, int s)
{
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0) die("socketpair");
    fflush(stdout);
    pid_t pid = fork();
    if (pid < 0) die("fork");
    if (pid == 0) {
        close(sv[0]);
        pin(s);
        ways[way].side(sv[1], 0);
        _exit(0);
    }
    close(sv[1]);
    cpu_set_t saved;
    if (sched_getaffinity(0, sizeof saved, &saved) < 0) die("sched_getaffinity");
    pin(c);
    double t = now_s();
    ways[way].side(sv[0], 1);
    t = now_s() - t;
    sched_setaffinity(0, sizeof saved, &saved);
    close(sv[0]);
    int status;
    if (waitpid(pid, &status, 0) < 0 || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        fprintf(stderr, "lsock-wait-floor: the %s echo side failed\n", ways[way].name);
        exit(1);
    }
    return t / (double)g_trips * 1e6;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

int main(int argc, char **argv)
{
    signal(SIGPIPE, SIG_IGN); /* a side that dies makes the other's write fail, not kill it */
    int rounds = argc > 1 ? atoi(argv[1]) : 5;
    if (argc > 2) g_trips = atol(argv[2]);
    if (rounds < 1 || rounds > MAX_ROUNDS || g_trips < 1) {
        fprintf(stderr, "usage: %s [ROUNDS (1-%d)] [ROUND_TRIPS]\n", argv[0], MAX_ROUNDS);
        return 2;
    }
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) < 0) die("sched_getaffinity");
    int cpu[2] = {-1, -1}, ncpu = 0;
    for (int i = 0; i < CPU_SETSIZE && ncpu < 2; i++)
        if (CPU_ISSET(i, &set)) cpu[ncpu++] = i;
    struct {
        const char *name;
        int c, s;
    } place[] = {{"unpinned", -1, -1}, {"1 CPU", cpu[0], cpu[0]}, {"2 CPUs", cpu[0], cpu[1]}};
    int nplace = ncpu > 1 ? 3 : 2;

    static double v[3][NWAYS][MAX_ROUNDS];
    char why[128] = "";
    int have_uring = uring_usable(why, sizeof why);
    printf("lsock-wait-floor: %d rounds of %ld round trips of 1 byte (AF_UNIX socketpair)\n",
           rounds, g_trips);
    if (!have_uring) printf("io_uring: skipped: %s\n", why);
    for (int r = 0; r < rounds; r++) {
        for (int p = 0; p < nplace; p++)
            for (int k = 0; k < NWAYS; k++) {
                int w = (k + r) % NWAYS; /* rotate: no way always runs first */
                if (ways[w].side == side_uring && !have_uring) continue;
                v[p][w][r] = measure(w, place[p].c, place[p].s);
            }
        printf(".");
        fflush(stdout);
    }
    printf("\n\n%-10s", "placement");
    for (int k = 0; k < NWAYS; k++)
        printf(" %9s", ways[k].name);
    for (int k = 0; k < NWAYS; k++)
        if (strcmp(ways[k].name, "epoll") != 0) printf(" %9s/epoll", ways[k].name);
    printf("\n");
    for (int p = 0; p < nplace; p++) {
        double m[NWAYS];
        printf("%-10s", place[p].name);
        for (int k = 0; k < NWAYS; k++) {
            int skipped = ways[k].side == side_uring && !have_uring;
            m[k] = skipped ? -1 : median(v[p][k], rounds);
            if (skipped)
                printf(" %9s", "skipped");
            else
                printf(" %9.2f", m[k]);
        }
        for (int k = 0; k < NWAYS; k++) {
            if (strcmp(ways[k].name, "epoll") == 0) continue;
            if (m[k] < 0)
                printf(" %15s", "-");
            else
                printf(" %15.3f", m[k] / m[2]);
        }
        printf("\n");
    }
    printf("(µs per round trip, medians; x/epoll below 1 is faster than an epoll loop)\n");
    return 0;
}
