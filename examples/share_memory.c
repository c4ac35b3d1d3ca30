/*
 * share_memory: a producer hands a consumer a gigabyte by passing a descriptor of shared
 * memory (a Linux memfd, a Windows file mapping) with one message, instead of its bytes.
 *
 *   share_memory consume NAME          listens on NAME, takes one block, checks every byte
 *   share_memory produce NAME [MIB]    fills MIB MiB (default 1024) and passes it to NAME
 *
 * The message carries the size and a checksum; the descriptor goes with it
 * (lsock_socket_attach_descriptors) and the consumer takes it once it has read the message
 * (lsock_socket_take_descriptors), maps it and replies with the checksum of what it sees.
 * Both ends set LSOCK_PASS_DESCRIPTORS, which Windows needs to carry handles.
 */
#ifndef _WIN32
#define _GNU_SOURCE /* memfd_create */
#endif
#include <lsock.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#ifdef _WIN32
#define WIN32_LEAN_AND_MEAN
#include <windows.h>
#else
#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>
#endif

/* ---- shared memory, the platform's way ----------------------------------------------------- */

/* A new block of size bytes, mapped read-write at *map: its descriptor or handle, -1 on failure. */
static intptr_t block_new(uint64_t size, void **map)
{
#ifdef _WIN32
    HANDLE h = CreateFileMappingA(INVALID_HANDLE_VALUE, NULL, PAGE_READWRITE, (DWORD)(size >> 32),
                                  (DWORD)size, NULL);
    if (!h) return -1;
    *map = MapViewOfFile(h, FILE_MAP_ALL_ACCESS, 0, 0, (SIZE_T)size);
    if (!*map) {
        CloseHandle(h);
        return -1;
    }
    return (intptr_t)h;
#else
#ifdef __linux__
    int fd = memfd_create("share_memory", MFD_CLOEXEC);
#else
    char path[] = "/tmp/share_memory-XXXXXX";
    int fd = mkstemp(path);
    if (fd >= 0) unlink(path);
#endif
    if (fd < 0 || ftruncate(fd, (off_t)size) != 0) {
        if (fd >= 0) close(fd);
        return -1;
    }
    *map = mmap(NULL, (size_t)size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (*map == MAP_FAILED) {
        close(fd);
        return -1;
    }
    return fd;
#endif
}

/* Maps a block received from the producer, read-only. NULL on failure. */
static const void *block_map(intptr_t h, uint64_t size)
{
#ifdef _WIN32
    return MapViewOfFile((HANDLE)h, FILE_MAP_READ, 0, 0, (SIZE_T)size);
#else
#ifndef MAP_POPULATE
#define MAP_POPULATE 0
#endif
    /* MAP_POPULATE: the pages are mapped now, not one fault at a time. */
    void *m = mmap(NULL, (size_t)size, PROT_READ, MAP_SHARED | MAP_POPULATE, (int)h, 0);
    return m == MAP_FAILED ? NULL : m;
#endif
}

static void block_unmap(const void *map, uint64_t size)
{
#ifdef _WIN32
    (void)size;
    UnmapViewOfFile(map);
#else
    munmap((void *)map, (size_t)size);
#endif
}

static void block_close(intptr_t h)
{
#ifdef _WIN32
    CloseHandle((HANDLE)h);
#else
    close((int)h);
#endif
}

/* ---- the data ---------------------------------------------------------------------------- */

static void fill(uint64_t *w, uint64_t words)
{
    for (uint64_t i = 0; i < words; i++)
        w[i] = i * 0x9E3779B97F4A7C15u;
}

static uint64_t checksum(const uint64_t *w, uint64_t words)
{
    uint64_t h = 0;
    for (uint64_t i = 0; i < words; i++) {
        h = (h ^ w[i]) * 0x100000001B3u;
        h ^= h >> 32;
    }
    return h;
}

static double now_ms(void)
{
#ifdef _WIN32
    return (double)GetTickCount64();
#else
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
#endif
}

/* A message of two 64-bit numbers. */
static void put2(unsigned char out[16], uint64_t a, uint64_t b)
{
    for (int i = 0; i < 8; i++) {
        out[i] = (unsigned char)(a >> (8 * i));
        out[8 + i] = (unsigned char)(b >> (8 * i));
    }
}

static void get2(const unsigned char in[16], uint64_t *a, uint64_t *b)
{
    *a = *b = 0;
    for (int i = 0; i < 8; i++) {
        *a |= (uint64_t)in[i] << (8 * i);
        *b |= (uint64_t)in[8 + i] << (8 * i);
    }
}

/* Waits for one 16-byte message on a blocking socket. */
static bool read_pair(lsock_socket *s, uint64_t *a, uint64_t *b)
{
    unsigned char msg[16];
    while (!lsock_socket_can_read_message(s))
        if (!lsock_socket_wait_for_ready_read(s, 30000)) return false;
    if (lsock_socket_read_message(s, msg, sizeof msg) != 16) return false;
    get2(msg, a, b);
    return true;
}

/* ---- the two ends ------------------------------------------------------------------------ */

static int consume(const char *name)
{
    lsock_server *srv = lsock_server_new(NULL);
    lsock_socket *peer = NULL;
    int status = 1;
    if (!lsock_server_set_socket_options(srv, LSOCK_PASS_DESCRIPTORS) ||
        !lsock_server_listen(srv, name)) {
        fprintf(stderr, "consume: %s\n", lsock_server_error_string(srv));
        goto out;
    }
    printf("consumer: listening on %s\n", lsock_server_full_server_name(srv));
    fflush(stdout);
    if (!lsock_server_wait_for_new_connection(srv, 60000, NULL) ||
        !(peer = lsock_server_next_pending_connection(srv)))
        goto out;
    uint64_t size, their_sum;
    intptr_t h;
    if (!read_pair(peer, &size, &their_sum) || lsock_socket_take_descriptors(peer, &h, 1) != 1) {
        fprintf(stderr, "consume: no block arrived: %s\n", lsock_socket_error_string(peer));
        goto out;
    }
    double t0 = now_ms();
    const void *map = block_map(h, size);
    if (!map) {
        fprintf(stderr, "consume: cannot map the block\n");
        block_close(h);
        goto out;
    }
    uint64_t sum = checksum(map, size / 8);
    printf("consumer: mapped %llu MiB and read every byte in %.0f ms: checksum %016llx (%s)\n",
           (unsigned long long)(size >> 20), now_ms() - t0, (unsigned long long)sum,
           sum == their_sum ? "as sent" : "DIFFERENT");
    block_unmap(map, size);
    block_close(h);
    unsigned char reply[16];
    put2(reply, size, sum);
    if (lsock_socket_write_message(peer, reply, 16) == 16 &&
        lsock_socket_wait_for_bytes_written(peer, 30000) && sum == their_sum)
        status = 0;
    lsock_socket_wait_for_disconnected(peer, 30000);
out:
    lsock_socket_free(peer);
    lsock_server_free(srv);
    return status;
}

static int produce(const char *name, uint64_t mib)
{
    uint64_t size = mib << 20;
    void *map = NULL;
    intptr_t h = block_new(size, &map);
    if (h == -1) {
        fprintf(stderr, "produce: cannot make %llu MiB of shared memory\n",
                (unsigned long long)mib);
        return 1;
    }
    fill(map, size / 8);
    uint64_t sum = checksum(map, size / 8);
    lsock_socket *s = lsock_socket_new(NULL);
    int status = 1;
    double t0 = now_ms();
    unsigned char msg[16];
    put2(msg, size, sum);
    uint64_t got_size, got_sum;
    if (!lsock_socket_set_options(s, LSOCK_PASS_DESCRIPTORS) ||
        !lsock_socket_connect(s, name, LSOCK_READ_WRITE) ||
        !lsock_socket_attach_descriptors(s, &h, 1) ||
        lsock_socket_write_message(s, msg, sizeof msg) != (int64_t)sizeof msg ||
        !read_pair(s, &got_size, &got_sum)) {
        fprintf(stderr, "produce: %s\n", lsock_socket_error_string(s));
    } else {
        printf("producer: passed %llu MiB as one descriptor; the consumer saw checksum %016llx "
               "(%s) %.0f ms after the connect\n",
               (unsigned long long)mib, (unsigned long long)got_sum,
               got_sum == sum && got_size == size ? "the same" : "NOT the same", now_ms() - t0);
        status = got_sum == sum && got_size == size ? 0 : 1;
    }
    lsock_socket_free(s);
#ifdef _WIN32
    UnmapViewOfFile(map);
#else
    munmap(map, (size_t)size);
#endif
    block_close(h);
    return status;
}

int main(int argc, char **argv)
{
    if (argc >= 3 && strcmp(argv[1], "consume") == 0) return consume(argv[2]);
    if (argc >= 3 && strcmp(argv[1], "produce") == 0) {
        long long mib = argc > 3 ? atoll(argv[3]) : 1024;
        if (mib < 1 || mib > 65536) {
            fprintf(stderr, "share_memory: MIB must be 1 to 65536\n");
            return 2;
        }
        return produce(argv[2], (uint64_t)mib);
    }
    fprintf(stderr, "usage: share_memory consume NAME\n"
                    "       share_memory produce NAME [MIB]\n");
    return 2;
}
