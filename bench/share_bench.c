/*
 * Handing a consumer process a block of memory: passing a memfd (one descriptor with one
 * message, lsock_socket_attach_descriptors) against streaming the same bytes through the
 * socket. Each run starts with the block filled in the producer and ends when the consumer
 * has read every byte (a checksum, mapped with MAP_POPULATE or read from the stream) and said
 * so; the two ways alternate, medians of ROUNDS. A benchmark, not a test: it prints.
 *
 *   lsock-share-bench [MIB] [ROUNDS]          (make bench: 1024 5; BENCH_SHORT=1: 64 3)
 */
#define _GNU_SOURCE
#include <lsock.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#ifdef __linux__
#include <signal.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#define CHUNK (1 << 20)

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static uint64_t sum_words(uint64_t h, const uint64_t *w, size_t words)
{
    for (size_t i = 0; i < words; i++)
        h = (h ^ w[i]) * 0x100000001B3u;
    return h;
}

static void die(const char *what, lsock_socket *s)
{
    fprintf(stderr, "share bench: %s: %s\n", what, s ? lsock_socket_error_string(s) : "");
    exit(1);
}

/* Plain bytes only (no message framing: the stream that follows is raw). */
static void wait_bytes(lsock_socket *s, int64_t n)
{
    while (lsock_socket_bytes_available(s) < n)
        if (!lsock_socket_wait_for_ready_read(s, 30000)) die("nothing arrived", s);
}

/* The consumer: for each connection, a byte "m" with a memfd or "s" followed by the
 * stream; replies with the checksum of all the bytes (8 bytes). */
static void consumer(const char *name, uint64_t size, int runs)
{
    lsock_server *srv = lsock_server_new(NULL);
    if (!lsock_server_listen(srv, name)) exit(1);
    printf("ready\n");
    fflush(stdout);
    char *buf = malloc(CHUNK);
    for (int r = 0; r < runs; r++) {
        if (!lsock_server_wait_for_new_connection(srv, 60000, NULL)) exit(1);
        lsock_socket *s = lsock_server_next_pending_connection(srv);
        wait_bytes(s, 1);
        char kind;
        lsock_socket_read(s, &kind, 1);
        uint64_t h = 0;
        if (kind == 'm' || kind == 'h') {
            intptr_t fd;
            if (lsock_socket_take_descriptors(s, &fd, 1) != 1) die("no descriptor", s);
            void *m = mmap(NULL, size, PROT_READ, MAP_SHARED | (kind == 'm' ? MAP_POPULATE : 0),
                           (int)fd, 0);
            if (m == MAP_FAILED) die("mmap", NULL);
            /* 'h': the block is there to use; its last word proves it. */
            h = kind == 'm' ? sum_words(h, m, size / 8) : ((const uint64_t *)m)[size / 8 - 1];
            munmap(m, size);
            close((int)fd);
        } else {
            uint64_t got = 0;
            while (got < size) {
                int64_t avail = lsock_socket_bytes_available(s);
                if (avail < 8) { /* whole 64-bit words only: the size is a multiple of 8 */
                    if (!lsock_socket_wait_for_ready_read(s, 30000)) die("stream ended", s);
                    continue;
                }
                int64_t n = (avail < CHUNK ? avail : CHUNK) & ~(int64_t)7;
                lsock_socket_read(s, buf, n);
                if (kind == 's') h = sum_words(h, (const uint64_t *)buf, (size_t)n / 8);
                got += (uint64_t)n;
                if (got == size && kind == 't') memcpy(&h, buf + n - 8, 8); /* the last word */
            }
        }
        lsock_socket_write(s, &h, sizeof h);
        lsock_socket_wait_for_bytes_written(s, 30000);
        lsock_socket_wait_for_disconnected(s, 30000);
        lsock_socket_free(s);
    }
    free(buf);
    lsock_server_free(srv);
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* One run of the producer: kind 'm' (memfd, the consumer reads every byte), 'h' (memfd, the
 * consumer maps it), 's' (stream, the consumer reads every byte), 't' (stream, the consumer
 * only receives). Returns seconds until the consumer's reply arrived. */
static double produce(const char *name, char kind, int fd, const uint64_t *map, uint64_t size,
                      uint64_t want)
{
    int memfd_way = kind == 'm' || kind == 'h';
    double t0 = now_s();
    lsock_socket *s = lsock_socket_new(NULL);
    if (!lsock_socket_connect(s, name, LSOCK_READ_WRITE)) die("connect", s);
    if (memfd_way) {
        intptr_t d = fd;
        if (!lsock_socket_attach_descriptors(s, &d, 1)) die("attach", s);
        lsock_socket_write(s, &kind, 1);
    } else {
        lsock_socket_write(s, &kind, 1);
        const char *p = (const char *)map;
        for (uint64_t off = 0; off < size;) {
            uint64_t n = size - off < CHUNK ? size - off : CHUNK;
            int64_t w = lsock_socket_write(s, p + off, (int64_t)n);
            if (w < 0) die("write", s);
            off += (uint64_t)w;
            while (lsock_socket_bytes_to_write(s) > 4 * CHUNK)
                if (!lsock_socket_wait_for_bytes_written(s, 30000)) die("stalled", s);
        }
        while (lsock_socket_bytes_to_write(s) > 0)
            if (!lsock_socket_wait_for_bytes_written(s, 30000)) die("stalled", s);
    }
    wait_bytes(s, 8);
    uint64_t h = 0;
    lsock_socket_read(s, &h, sizeof h);
    double t = now_s() - t0;
    if (h != (kind == 'm' || kind == 's' ? want : map[size / 8 - 1]))
        die("the consumer saw other bytes", NULL);
    lsock_socket_free(s);
    return t;
}

int main(int argc, char **argv)
{
    uint64_t mib = argc > 1 ? strtoull(argv[1], NULL, 10) : 1024;
    int rounds = argc > 2 ? atoi(argv[2]) : 5;
    if (mib < 1 || rounds < 1) return 2;
    uint64_t size = mib << 20;
    char name[64];
    snprintf(name, sizeof name, "lsock-share-bench-%d", (int)getpid());
    int fd = memfd_create("share-bench", MFD_CLOEXEC);
    if (fd < 0 || ftruncate(fd, (off_t)size) != 0) die("memfd", NULL);
    uint64_t *map = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (map == MAP_FAILED) die("mmap", NULL);
    for (uint64_t i = 0; i < size / 8; i++)
        map[i] = i * 0x9E3779B97F4A7C15u;
    uint64_t want = sum_words(0, map, size / 8);

    int ready[2];
    if (pipe(ready) != 0) return 1;
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        dup2(ready[1], 1);
        consumer(name, size, 4 * rounds);
        _exit(0);
    }
    close(ready[1]);
    char line[16];
    if (read(ready[0], line, sizeof line) <= 0) die("consumer did not start", NULL);

    printf("share %llu MiB with a consumer process, %d rounds: ", (unsigned long long)mib, rounds);
    fflush(stdout);
    static const char kinds[4] = {'h', 't', 'm', 's'};
    double *t[4];
    for (int k = 0; k < 4; k++)
        t[k] = calloc((size_t)rounds, sizeof *t[k]);
    for (int r = 0; r < rounds; r++) {
        for (int k = 0; k < 4; k++)
            t[k][r] = produce(name, kinds[k], fd, map, size, want);
        printf(".");
        fflush(stdout);
    }
    printf("\n");
    int status = 0;
    waitpid(pid, &status, 0);
    double med[4];
    for (int k = 0; k < 4; k++) {
        qsort(t[k], (size_t)rounds, sizeof *t[k], cmp_double);
        med[k] = t[k][rounds / 2] * 1e3;
        free(t[k]);
    }
    printf("%-46s %9s %9s %8s\n", "workload (ms, medians)", "memfd", "stream", "ratio");
    printf("%-46s %9.2f %9.1f %8.4f\n", "hand over the block (consumer maps it)", med[0], med[1],
           med[0] / med[1]);
    printf("%-46s %9.1f %9.1f %8.3f\n", "hand over, consumer reads every byte", med[2], med[3],
           med[2] / med[3]);
    printf("(ratio: passing the descriptor / streaming the bytes; lower is faster)\n");
    munmap(map, size);
    close(fd);
    return 0;
}

#else
int main(void)
{
    printf("share bench: skipped: it passes a memfd, which only Linux has\n");
    return 0;
}
#endif
