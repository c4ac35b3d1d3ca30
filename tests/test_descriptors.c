/*
 * Descriptor passing (lsock_socket_attach_descriptors, lsock_socket_take_descriptors): pipe
 * ends, sockets, regular files and memfds that work in the receiver and arrive close-on-exec;
 * a helper started with fork + exec; 253 at once and the bounds; a descriptor takeable only
 * once its byte is read, also behind queued bytes, a read buffer limit and random
 * interleavings; never taken, never sent: closed; a receiver out of descriptors; the argument
 * errors.
 */
#include "test.h"
#include "lsock.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "support.h"

#ifndef _WIN32
#include <spawn.h>
#include <sys/mman.h>
#include <sys/resource.h>

extern char **environ;
#endif

#define NOT_YET_ON_WINDOWS                                                                         \
    "descriptor passing is Unix only for now: both calls fail with UNSUPPORTED_OPERATION on "      \
    "Windows (attach_and_take_refuse_bad_arguments_with_nothing_attached)"

/* ---- helpers ------------------------------------------------------------------------------ */

/* Attaches n descriptors, writes len bytes and waits until the kernel has them all. */
static void send_with(lsock_socket *s, const void *buf, int64_t len, const intptr_t *fds, int n)
{
    if (n > 0) ASSERT(lsock_socket_attach_descriptors(s, fds, n));
    ASSERT_EQ(lsock_socket_write(s, buf, len), len);
    uint64_t deadline = test_now_ms() + 10000;
    while (lsock_socket_bytes_to_write(s) > 0) {
        ASSERT(test_now_ms() < deadline);
        lsock_socket_wait_for_bytes_written(s, 1000);
    }
}

/* Waits (blocking socket) until at least n bytes are buffered. */
static void wait_bytes(lsock_socket *s, int64_t n)
{
    uint64_t deadline = test_now_ms() + 10000;
    while (lsock_socket_bytes_available(s) < n) {
        ASSERT(test_now_ms() < deadline);
        lsock_socket_wait_for_ready_read(s, 1000);
    }
}

static void recv_exact(lsock_socket *s, void *buf, int64_t n)
{
    wait_bytes(s, n);
    ASSERT_EQ(lsock_socket_read(s, buf, n), n);
}

#ifndef _WIN32
static bool is_cloexec(intptr_t fd)
{
    int fl = fcntl((int)fd, F_GETFD);
    return fl >= 0 && (fl & FD_CLOEXEC);
}

static ino_t inode_of(intptr_t fd)
{
    struct stat st;
    ASSERT_EQ(fstat((int)fd, &st), 0);
    return st.st_ino;
}

/* Writes text into fd and reads it back from rfd. */
static void pipe_carries(int wfd, int rfd, const char *text)
{
    size_t n = strlen(text);
    ASSERT_EQ(write(wfd, text, n), (ssize_t)n);
    char got[64] = {0};
    ASSERT_EQ(read(rfd, got, sizeof got), (ssize_t)n);
    ASSERT(memcmp(got, text, n) == 0);
}
#endif

/* ---- what passes, and how it arrives ------------------------------------------------------ */

TEST(a_pipe_end_passed_with_a_message_works_in_the_receiver_and_is_close_on_exec)
{
#ifdef _WIN32
    SKIP(NOT_YET_ON_WINDOWS);
#else
    pair p;
    pair_open(&p, NULL);
    int pp[2];
    ASSERT_EQ(pipe(pp), 0);
    intptr_t out = pp[1];
    ASSERT(lsock_socket_attach_descriptors(p.client, &out, 1));
    ASSERT_EQ(lsock_socket_write_message(p.client, "pipe", 4), 4);
    uint64_t deadline = test_now_ms() + 10000;
    while (!lsock_socket_can_read_message(p.peer)) {
        ASSERT(test_now_ms() < deadline);
        lsock_socket_wait_for_ready_read(p.peer, 1000);
    }
    intptr_t got[4];
    ASSERT_EQ(lsock_socket_take_descriptors(p.peer, got, 4), 0); /* its byte is unread */
    char msg[8];
    ASSERT_EQ(lsock_socket_read_message(p.peer, msg, sizeof msg), 4);
    ASSERT(memcmp(msg, "pipe", 4) == 0);
    ASSERT_EQ(lsock_socket_take_descriptors(p.peer, got, 4), 1);
    ASSERT(got[0] != pp[1]);
    ASSERT(is_cloexec(got[0]));
    ASSERT_EQ(inode_of(got[0]), inode_of(pp[1]));
    /* The caller kept its own: both ends write into the same pipe. */
    pipe_carries((int)got[0], pp[0], "from the receiver");
    pipe_carries(pp[1], pp[0], "from the sender");
    ASSERT_EQ(lsock_socket_take_descriptors(p.peer, got, 4), 0);
    close((int)got[0]);
    close(pp[0]);
    close(pp[1]);
    pair_close(&p);
#endif
}

TEST(a_socket_a_regular_file_and_a_memfd_pass_in_one_write)
{
#ifdef _WIN32
    SKIP(NOT_YET_ON_WINDOWS);
#else
    pair p;
    pair_open(&p, NULL);
    int sv[2];
    ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    char path[] = "/tmp/lsock-test-fd-XXXXXX";
    int file = mkstemp(path);
    ASSERT(file >= 0);
    unlink(path);
    ASSERT_EQ(write(file, "file data", 9), 9);
    int mem = -1;
#ifdef __linux__
    mem = memfd_create("lsock-test", MFD_CLOEXEC);
    ASSERT(mem >= 0);
    ASSERT_EQ(ftruncate(mem, 4096), 0);
    char *map = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, mem, 0);
    ASSERT(map != MAP_FAILED);
    strcpy(map, "shared memory");
#endif
    intptr_t fds[3] = {sv[1], file, mem};
    int n = mem >= 0 ? 3 : 2;
    send_with(p.client, "x", 1, fds, n);
    char c;
    recv_exact(p.peer, &c, 1);
    intptr_t got[3];
    ASSERT_EQ(lsock_socket_take_descriptors(p.peer, got, 3), n);
    for (int i = 0; i < n; i++)
        ASSERT(is_cloexec(got[i]));
    /* The socket: a byte each way. */
    ASSERT_EQ(write((int)got[0], "s", 1), 1);
    ASSERT_EQ(read(sv[0], &c, 1), 1);
    ASSERT_EQ(c, 's');
    /* The file: read from the start with pread (the offset is shared with the sender's). */
    char buf[32] = {0};
    ASSERT_EQ(pread((int)got[1], buf, sizeof buf, 0), 9);
    ASSERT(memcmp(buf, "file data", 9) == 0);
#ifdef __linux__
    /* The memfd: mapped in the receiver, it shows what the sender wrote and sees changes. */
    char *theirs = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, (int)got[2], 0);
    ASSERT(theirs != MAP_FAILED);
    ASSERT_STR_EQ(theirs, "shared memory");
    strcpy(theirs, "changed");
    ASSERT_STR_EQ(map, "changed");
    munmap(theirs, 4096);
    munmap(map, 4096);
    close(mem);
#endif
    for (int i = 0; i < n; i++)
        close((int)got[i]);
    close(sv[0]);
    close(sv[1]);
    close(file);
    pair_close(&p);
#endif
}

#ifndef _WIN32
/* The helper, started with fork + exec: connects to the server named in arg, receives a pipe
 * end and a file with the message "go", checks they are close-on-exec, writes "helper" into
 * both, and exits 0 when all went well. */
CHILD_MAIN(exec_helper)
{
    lsock_socket *s = lsock_socket_new(NULL);
    int status = 1;
    if (!s || !lsock_socket_connect(s, arg, LSOCK_READ_WRITE)) goto out;
    uint64_t deadline = test_now_ms() + 10000;
    while (!lsock_socket_can_read_message(s) && test_now_ms() < deadline)
        lsock_socket_wait_for_ready_read(s, 1000);
    char msg[8];
    if (lsock_socket_read_message(s, msg, sizeof msg) != 2 || memcmp(msg, "go", 2) != 0) goto out;
    intptr_t got[2];
    if (lsock_socket_take_descriptors(s, got, 2) != 2) goto out;
    status = 2;
    if (is_cloexec(got[0]) && is_cloexec(got[1]) && write((int)got[0], "helper", 6) == 6 &&
        write((int)got[1], "helper", 6) == 6)
        status = 0;
    close((int)got[0]);
    close((int)got[1]);
out:
    lsock_socket_free(s);
    return status;
}
#endif

TEST(descriptors_reach_a_helper_started_with_fork_and_exec)
{
#ifdef _WIN32
    SKIP(NOT_YET_ON_WINDOWS);
#else
    lsock_server *srv = lsock_server_new(NULL);
    ASSERT(srv != NULL);
    const char *name = test_name("exec");
    ASSERT(lsock_server_listen(srv, name));
    char exe[4096];
    ssize_t len = readlink("/proc/self/exe", exe, sizeof exe - 1);
    ASSERT(len > 0);
    exe[len] = '\0';
    char *argv[] = {exe, "--child", "exec_helper", (char *)name, NULL};
    pid_t pid;
    ASSERT_EQ(posix_spawn(&pid, exe, NULL, NULL, argv, environ), 0);
    ASSERT(lsock_server_wait_for_new_connection(srv, 10000, NULL));
    lsock_socket *peer = lsock_server_next_pending_connection(srv);
    ASSERT(peer != NULL);
    int pp[2];
    ASSERT_EQ(pipe(pp), 0);
    char path[] = "/tmp/lsock-test-fd-XXXXXX";
    int file = mkstemp(path);
    ASSERT(file >= 0);
    unlink(path);
    intptr_t fds[2] = {pp[1], file};
    ASSERT(lsock_socket_attach_descriptors(peer, fds, 2));
    ASSERT_EQ(lsock_socket_write_message(peer, "go", 2), 2);
    lsock_socket_wait_for_bytes_written(peer, 5000);
    close(pp[1]);
    int status = -1;
    ASSERT_EQ(waitpid(pid, &status, 0), pid);
    ASSERT(WIFEXITED(status));
    ASSERT_EQ(WEXITSTATUS(status), 0);
    char buf[16] = {0};
    ASSERT_EQ(read(pp[0], buf, sizeof buf), 6);
    ASSERT(memcmp(buf, "helper", 6) == 0);
    ASSERT_EQ(pread(file, buf, sizeof buf, 0), 6);
    ASSERT(memcmp(buf, "helper", 6) == 0);
    close(pp[0]);
    close(file);
    lsock_socket_free(peer);
    lsock_server_free(srv);
#endif
}

TEST(with_a_loop_descriptors_arrive_in_ready_read_with_their_message)
{
#ifdef _WIN32
    SKIP(NOT_YET_ON_WINDOWS);
#else
    lsock_loop *loop = loop_new();
    pair p;
    pair_open(&p, loop);
    rec r;
    rec_init(&r);
    lsock_socket_set_callbacks(p.peer, &rec_cbs, &r);
    int pp[2];
    ASSERT_EQ(pipe(pp), 0);
    intptr_t fds[1] = {pp[1]};
    for (int i = 0; i < 3; i++) {
        ASSERT_EQ(lsock_socket_write_message(p.client, "plain", 5), 5);
        ASSERT(lsock_socket_attach_descriptors(p.client, fds, 1));
        ASSERT_EQ(lsock_socket_write_message(p.client, "with", 4), 4);
    }
    int taken = 0, messages = 0;
    uint64_t deadline = test_now_ms() + 10000;
    while (messages < 6) {
        ASSERT(test_now_ms() < deadline);
        lsock_loop_run(loop, LSOCK_RUN_ONCE);
        char msg[8];
        while (lsock_socket_can_read_message(p.peer)) {
            int64_t n = lsock_socket_read_message(p.peer, msg, sizeof msg);
            intptr_t got[2];
            int k = lsock_socket_take_descriptors(p.peer, got, 2);
            /* Each "with" brings exactly one descriptor, each "plain" none. */
            ASSERT_EQ(k, n == 4 ? 1 : 0);
            if (k == 1) {
                ASSERT_EQ(inode_of(got[0]), inode_of(pp[1]));
                close((int)got[0]);
                taken++;
            }
            messages++;
        }
    }
    ASSERT_EQ(taken, 3);
    ASSERT(r.ready_read > 0);
    close(pp[0]);
    close(pp[1]);
    pair_close(&p);
    lsock_loop_free(loop);
#endif
}

/* ---- bounds -------------------------------------------------------------------------------- */

TEST(253_descriptors_go_with_one_write_and_more_are_refused)
{
#ifdef _WIN32
    SKIP(NOT_YET_ON_WINDOWS);
#else
    pair p;
    pair_open(&p, NULL);
    int pp[2];
    ASSERT_EQ(pipe(pp), 0);
    intptr_t fds[LSOCK_MAX_DESCRIPTORS + 1];
    for (int i = 0; i <= LSOCK_MAX_DESCRIPTORS; i++)
        fds[i] = pp[1];
    int before = test_count_fds();
    ASSERT(!lsock_socket_attach_descriptors(p.client, fds, LSOCK_MAX_DESCRIPTORS + 1));
    ASSERT_ERR(lsock_socket_error(p.client), LSOCK_ERR_INVALID_ARGUMENT);
    ASSERT_EQ(test_count_fds(), before);
    /* Calls before one write add up to the same bound. */
    ASSERT(lsock_socket_attach_descriptors(p.client, fds, 200));
    ASSERT(!lsock_socket_attach_descriptors(p.client, fds, 54));
    ASSERT_ERR(lsock_socket_error(p.client), LSOCK_ERR_INVALID_ARGUMENT);
    ASSERT(lsock_socket_attach_descriptors(p.client, fds, 53));
    send_with(p.client, "y", 1, NULL, 0);
    char c;
    recv_exact(p.peer, &c, 1);
    intptr_t got[LSOCK_MAX_DESCRIPTORS + 1];
    ASSERT_EQ(lsock_socket_take_descriptors(p.peer, got, LSOCK_MAX_DESCRIPTORS + 1),
              LSOCK_MAX_DESCRIPTORS);
    for (int i = 0; i < LSOCK_MAX_DESCRIPTORS; i++) {
        ASSERT_EQ(inode_of(got[i]), inode_of(pp[1]));
        close((int)got[i]);
    }
    ASSERT_EQ(test_count_fds(), before);
    close(pp[0]);
    close(pp[1]);
    pair_close(&p);
#endif
}

TEST(attach_and_take_refuse_bad_arguments_with_nothing_attached)
{
    pair p;
    pair_open(&p, NULL);
#ifdef _WIN32
    intptr_t valid = (intptr_t)GetStdHandle(STD_ERROR_HANDLE);
#else
    intptr_t valid = 2;
#endif
    intptr_t fds[2] = {valid, valid};
    ASSERT(!lsock_socket_attach_descriptors(NULL, fds, 1));
    ASSERT(!lsock_socket_attach_descriptors(p.client, NULL, 1));
    ASSERT_ERR(lsock_socket_error(p.client), LSOCK_ERR_INVALID_ARGUMENT);
    ASSERT(!lsock_socket_attach_descriptors(p.client, fds, 0));
    ASSERT_ERR(lsock_socket_error(p.client), LSOCK_ERR_INVALID_ARGUMENT);
    ASSERT(!lsock_socket_attach_descriptors(p.client, fds, -1));
    ASSERT_ERR(lsock_socket_error(p.client), LSOCK_ERR_INVALID_ARGUMENT);
    ASSERT_EQ(lsock_socket_take_descriptors(p.peer, fds, -1), -1);
    ASSERT_ERR(lsock_socket_error(p.peer), LSOCK_ERR_INVALID_ARGUMENT);
    ASSERT_EQ(lsock_socket_take_descriptors(p.peer, NULL, 1), -1);
    ASSERT_ERR(lsock_socket_error(p.peer), LSOCK_ERR_INVALID_ARGUMENT);
    ASSERT_EQ(lsock_socket_take_descriptors(p.peer, NULL, 0), 0);
    ASSERT_EQ(lsock_socket_take_descriptors(NULL, fds, 1), -1);
    ASSERT_EQ(lsock_socket_take_descriptors(p.peer, fds, 2), 0);
#ifdef _WIN32
    ASSERT(!lsock_socket_attach_descriptors(p.client, fds, 1));
    ASSERT_ERR(lsock_socket_error(p.client), LSOCK_ERR_UNSUPPORTED_OPERATION);
#else
    /* The second is no open descriptor: the copy of the first goes too. */
    int before = test_count_fds();
    fds[1] = 1000000;
    ASSERT(!lsock_socket_attach_descriptors(p.client, fds, 2));
    ASSERT_ERR(lsock_socket_error(p.client), LSOCK_ERR_INVALID_ARGUMENT);
    ASSERT(strstr(lsock_socket_error_string(p.client), "fds[1]") != NULL);
    ASSERT_EQ(test_count_fds(), before);
    fds[1] = -1;
    ASSERT(!lsock_socket_attach_descriptors(p.client, fds, 2));
    ASSERT_ERR(lsock_socket_error(p.client), LSOCK_ERR_INVALID_ARGUMENT);
    ASSERT_EQ(test_count_fds(), before);
    /* Nothing stayed attached: the next write carries none. */
    send_with(p.client, "z", 1, NULL, 0);
    char c;
    recv_exact(p.peer, &c, 1);
    ASSERT_EQ(lsock_socket_take_descriptors(p.peer, fds, 2), 0);
#endif
    /* Not connected. */
    lsock_socket_abort(p.client);
    ASSERT(!lsock_socket_attach_descriptors(p.client, fds, 1));
    ASSERT_ERR(lsock_socket_error(p.client), LSOCK_ERR_OPERATION);
    pair_close(&p);
}

/* ---- which byte a descriptor goes with ---------------------------------------------------- */

TEST(a_descriptor_is_takeable_only_after_its_byte_is_read)
{
#ifdef _WIN32
    SKIP(NOT_YET_ON_WINDOWS);
#else
    pair p;
    pair_open(&p, NULL);
    int pp[2];
    ASSERT_EQ(pipe(pp), 0);
    intptr_t fd = pp[1];
    send_with(p.client, "abc", 3, NULL, 0);
    send_with(p.client, "d", 1, &fd, 1);
    send_with(p.client, "ef", 2, NULL, 0);
    wait_bytes(p.peer, 6);
    intptr_t got[2];
    char buf[8];
    ASSERT_EQ(lsock_socket_peek(p.peer, buf, 6), 6); /* peeking reads nothing */
    ASSERT_EQ(lsock_socket_take_descriptors(p.peer, got, 2), 0);
    ASSERT_EQ(lsock_socket_read(p.peer, buf, 3), 3);
    ASSERT_EQ(lsock_socket_take_descriptors(p.peer, got, 2), 0);
    ASSERT_EQ(lsock_socket_read(p.peer, buf, 1), 1);
    ASSERT_EQ(buf[0], 'd');
    ASSERT_EQ(lsock_socket_take_descriptors(p.peer, got, 2), 1);
    close((int)got[0]);
    ASSERT_EQ(lsock_socket_skip(p.peer, 2), 2);
    ASSERT_EQ(lsock_socket_take_descriptors(p.peer, got, 2), 0);
    close(pp[0]);
    close(pp[1]);
    pair_close(&p);
#endif
}

TEST(attaching_while_bytes_are_queued_goes_with_the_next_write_behind_them)
{
#ifdef _WIN32
    SKIP(NOT_YET_ON_WINDOWS);
#else
    pair p;
    pair_open(&p, NULL);
    /* More than the kernel holds: most of it stays queued in the client. */
    enum { BIG = 8 << 20 };
    unsigned char *data = pattern_new(BIG);
    ASSERT_EQ(lsock_socket_write(p.client, data, BIG), BIG);
    ASSERT(lsock_socket_bytes_to_write(p.client) > 0);
    int pp[2];
    ASSERT_EQ(pipe(pp), 0);
    intptr_t fd = pp[1];
    ASSERT(lsock_socket_attach_descriptors(p.client, &fd, 1));
    ASSERT_EQ(lsock_socket_write(p.client, "X", 1), 1);
    /* Read everything in 64 KiB pieces: nothing to take before the X. */
    unsigned char *in = malloc(65536);
    ASSERT(in != NULL);
    int64_t got_bytes = 0;
    intptr_t got[2];
    uint64_t deadline = test_now_ms() + 20000;
    while (got_bytes < BIG) {
        ASSERT(test_now_ms() < deadline);
        lsock_socket_flush(p.client);
        lsock_socket_wait_for_ready_read(p.peer, 100);
        int64_t want = BIG - got_bytes < 65536 ? BIG - got_bytes : 65536;
        int64_t n = lsock_socket_read(p.peer, in, want);
        ASSERT(n >= 0);
        for (int64_t i = 0; i < n; i++)
            ASSERT_EQ(in[i], pattern_byte((size_t)(got_bytes + i)));
        got_bytes += n;
        ASSERT_EQ(lsock_socket_take_descriptors(p.peer, got, 2), 0);
    }
    send_with(p.client, "", 0, NULL, 0);
    char c;
    recv_exact(p.peer, &c, 1);
    ASSERT_EQ(c, 'X');
    ASSERT_EQ(lsock_socket_take_descriptors(p.peer, got, 2), 1);
    ASSERT_EQ(inode_of(got[0]), inode_of(pp[1]));
    close((int)got[0]);
    free(in);
    free(data);
    close(pp[0]);
    close(pp[1]);
    pair_close(&p);
#endif
}

TEST(with_a_read_buffer_limit_descriptors_arrive_with_their_byte)
{
#ifdef _WIN32
    SKIP(NOT_YET_ON_WINDOWS);
#else
    pair p;
    pair_open(&p, NULL);
    ASSERT(lsock_socket_set_read_buffer_size(p.peer, 1000));
    int pp[2];
    ASSERT_EQ(pipe(pp), 0);
    intptr_t fd = pp[1];
    unsigned char *data = pattern_new(100000);
    /* Five writes of 20,000 bytes, a descriptor with the first byte of the 2nd and 5th. */
    for (int i = 0; i < 5; i++) {
        if (i == 1 || i == 4) ASSERT(lsock_socket_attach_descriptors(p.client, &fd, 1));
        ASSERT_EQ(lsock_socket_write(p.client, data + i * 20000, 20000), 20000);
    }
    int64_t total = 0;
    int taken = 0;
    unsigned char buf[700];
    uint64_t deadline = test_now_ms() + 20000;
    while (total < 100000) {
        ASSERT(test_now_ms() < deadline);
        lsock_socket_flush(p.client);
        lsock_socket_wait_for_ready_read(p.peer, 100);
        ASSERT(lsock_socket_bytes_available(p.peer) <= 1000);
        int64_t n = lsock_socket_read(p.peer, buf, sizeof buf);
        ASSERT(n >= 0);
        total += n;
        intptr_t got[2];
        int k = lsock_socket_take_descriptors(p.peer, got, 2);
        for (int i = 0; i < k; i++)
            close((int)got[i]);
        taken += k;
        /* Exactly the descriptors whose byte (20,000 and 80,000) has been read. */
        ASSERT_EQ(taken, (total > 20000) + (total > 80000));
    }
    free(data);
    close(pp[0]);
    close(pp[1]);
    pair_close(&p);
#endif
}

/* A xorshift generator, seeded per run and printed, so that a failure can be replayed. */
static uint64_t rnd_state;
static uint32_t rnd(uint32_t n)
{
    rnd_state ^= rnd_state << 13;
    rnd_state ^= rnd_state >> 7;
    rnd_state ^= rnd_state << 17;
    return (uint32_t)(rnd_state % n);
}

TEST(random_interleavings_of_writes_with_and_without_descriptors_keep_each_with_its_byte)
{
#ifdef _WIN32
    SKIP(NOT_YET_ON_WINDOWS);
#else
    const char *seed_env = getenv("LSOCK_TEST_SEED");
    rnd_state = seed_env ? strtoull(seed_env, NULL, 10) : (uint64_t)test_now_ms() | 1;
    printf("seed %llu (LSOCK_TEST_SEED replays it)\n", (unsigned long long)rnd_state);
    pair p;
    pair_open(&p, NULL);
    enum { PIPES = 16, MAX_WRITES = 1500 };
    const int WRITES = under_valgrind() ? 150 : MAX_WRITES;
    int pipes[PIPES][2];
    ino_t ino[PIPES];
    for (int i = 0; i < PIPES; i++) {
        ASSERT_EQ(pipe(pipes[i]), 0);
        ino[i] = inode_of(pipes[i][1]);
    }
    /* What was sent: for each descriptor, the stream position of its byte and its pipe. */
    static int64_t sent_pos[MAX_WRITES * 3];
    static int sent_pipe[MAX_WRITES * 3];
    int nsent = 0, ntaken = 0;
    unsigned char *data = pattern_new(200000);
    unsigned char *in = malloc(200000);
    ASSERT(in != NULL);
    int64_t written = 0, read_total = 0;
    uint64_t deadline = test_now_ms() + 60000;
    for (int w = 0; w < WRITES || read_total < written;) {
        ASSERT(test_now_ms() < deadline);
        if (w < WRITES && lsock_socket_bytes_to_write(p.client) < 1000000) {
            int64_t len = 1 + (int64_t)rnd(rnd(4) == 0 ? 100000 : 300);
            int k = rnd(3) == 0 ? 1 + (int)rnd(3) : 0;
            intptr_t fds[3];
            for (int i = 0; i < k; i++) {
                int which = (int)rnd(PIPES);
                fds[i] = pipes[which][1];
                sent_pos[nsent] = written;
                sent_pipe[nsent++] = which;
            }
            if (k > 0) ASSERT(lsock_socket_attach_descriptors(p.client, fds, k));
            /* The pattern repeats every 251 bytes: stream byte i is pattern_byte(i). */
            ASSERT_EQ(lsock_socket_write(p.client, data + (written % 251), len), len);
            written += len;
            w++;
        }
        lsock_socket_flush(p.client);
        lsock_socket_wait_for_ready_read(p.peer, rnd(2) ? 0 : 10);
        int64_t n = lsock_socket_read(p.peer, in, 1 + (int64_t)rnd(rnd(2) ? 50 : 150000));
        ASSERT(n >= 0);
        for (int64_t i = 0; i < n; i++)
            ASSERT_EQ(in[i], pattern_byte((size_t)(read_total + i)));
        read_total += n;
        intptr_t got[8];
        int k;
        while ((k = lsock_socket_take_descriptors(p.peer, got, 1 + (int)rnd(8))) > 0) {
            for (int i = 0; i < k; i++) {
                ASSERT(ntaken < nsent);
                ASSERT(sent_pos[ntaken] < read_total); /* its byte has been read */
                ASSERT_EQ(inode_of(got[i]), ino[sent_pipe[ntaken]]);
                close((int)got[i]);
                ntaken++;
            }
        }
        /* Every descriptor whose byte has been read is takeable: none is left behind. */
        ASSERT(ntaken == nsent || sent_pos[ntaken] >= read_total);
    }
    ASSERT_EQ(ntaken, nsent);
    printf("%d writes, %lld bytes, %d descriptors\n", WRITES, (long long)written, nsent);
    for (int i = 0; i < PIPES; i++) {
        close(pipes[i][0]);
        close(pipes[i][1]);
    }
    free(in);
    free(data);
    pair_close(&p);
#endif
}

/* ---- never taken, never sent: closed ------------------------------------------------------ */

/* Sends 10 descriptors to the peer, which reads their byte (end 0) or not (end 1) and never
 * takes them; then how (0 free, 1 abort, 2 close) ends the receiver; every copy is closed. */
static void untaken_are_closed(int read_byte, int how)
{
    pair p;
    pair_open(&p, NULL);
    int pp[2];
    ASSERT_EQ(pipe(pp), 0);
    int before = test_count_fds();
    intptr_t fds[10];
    for (int i = 0; i < 10; i++)
        fds[i] = pp[1];
    send_with(p.client, "ab", 2, fds, 10);
    wait_bytes(p.peer, 2);
    if (read_byte) {
        char c;
        ASSERT_EQ(lsock_socket_read(p.peer, &c, 1), 1);
    }
    ASSERT_EQ(test_count_fds(), before + 10); /* the receiver holds its copies */
    if (how == 0) {
        lsock_socket_free(p.peer);
        p.peer = NULL;
    } else if (how == 1) {
        lsock_socket_abort(p.peer);
    } else {
        lsock_socket_close(p.peer);
    }
    ASSERT_EQ(test_count_fds(), before - 1); /* and the connection's own descriptor */
    close(pp[0]);
    close(pp[1]);
    pair_close(&p);
}

TEST(descriptors_never_taken_are_closed_when_the_socket_is_freed_aborted_or_closed)
{
#ifdef _WIN32
    SKIP(NOT_YET_ON_WINDOWS);
#else
    for (int how = 0; how < 3; how++)
        for (int rb = 0; rb < 2; rb++)
            untaken_are_closed(rb, how);
#endif
}

TEST(attached_descriptors_never_sent_are_closed_with_the_connection)
{
#ifdef _WIN32
    SKIP(NOT_YET_ON_WINDOWS);
#else
    int pp[2];
    ASSERT_EQ(pipe(pp), 0);
    intptr_t fds[5] = {pp[1], pp[1], pp[1], pp[1], pp[1]};
    for (int how = 0; how < 3; how++) {
        pair p;
        pair_open(&p, NULL);
        int before = test_count_fds();
        ASSERT(lsock_socket_attach_descriptors(p.client, fds, 5));
        ASSERT_EQ(test_count_fds(), before + 5);
        if (how == 0) {
            lsock_socket_free(p.client);
            p.client = NULL;
        } else if (how == 1) {
            lsock_socket_abort(p.client);
        } else {
            lsock_socket_disconnect(p.client);
        }
        ASSERT_EQ(test_count_fds(), before - 1); /* and the connection's own descriptor */
        pair_close(&p);
    }
    close(pp[0]);
    close(pp[1]);
#endif
}

TEST(a_write_only_receiver_closes_what_arrives)
{
#ifdef _WIN32
    SKIP(NOT_YET_ON_WINDOWS);
#else
    lsock_server *srv = lsock_server_new(NULL);
    const char *name = test_name("wo");
    ASSERT(lsock_server_listen(srv, name));
    lsock_socket *c = lsock_socket_new(NULL);
    ASSERT(lsock_socket_connect(c, name, LSOCK_WRITE_ONLY));
    ASSERT(lsock_server_wait_for_new_connection(srv, 5000, NULL));
    lsock_socket *peer = lsock_server_next_pending_connection(srv);
    int pp[2];
    ASSERT_EQ(pipe(pp), 0);
    int before = test_count_fds();
    intptr_t fds[3] = {pp[1], pp[1], pp[1]};
    send_with(peer, "abc", 3, fds, 3);
    /* The write-only client reads (and drops) what arrives while it waits. */
    lsock_socket_wait_for_ready_read(c, 200);
    lsock_socket_write(c, "q", 1);
    lsock_socket_wait_for_bytes_written(c, 200);
    ASSERT_EQ(test_count_fds(), before);
    close(pp[0]);
    close(pp[1]);
    lsock_socket_free(c);
    lsock_socket_free(peer);
    lsock_server_free(srv);
#endif
}

/* ---- a receiver out of descriptors -------------------------------------------------------- */

TEST(a_receiver_at_its_descriptor_limit_gets_socket_resource_and_leaks_nothing)
{
#ifdef _WIN32
    SKIP("Windows has no per-process descriptor limit to lower (RLIMIT_NOFILE); "
         "and " NOT_YET_ON_WINDOWS);
#else
    if (under_valgrind()) SKIP("valgrind emulates RLIMIT_NOFILE, above which it keeps its own");
    lsock_loop *loop = loop_new();
    pair p;
    pair_open(&p, loop);
    rec r;
    rec_init(&r);
    lsock_socket_set_callbacks(p.peer, &rec_cbs, &r);
    int pp[2];
    ASSERT_EQ(pipe(pp), 0);
    intptr_t fds[10];
    for (int i = 0; i < 10; i++)
        fds[i] = pp[1];
    ASSERT(lsock_socket_attach_descriptors(p.client, fds, 10));
    ASSERT_EQ(lsock_socket_write(p.client, "m", 1), 1);
    ASSERT(lsock_socket_flush(p.client) || lsock_socket_bytes_to_write(p.client) == 0);
    int before = test_count_fds();
    /* Room for 3 of the 10: the limit at the highest descriptor, every gap below filled. */
    struct rlimit saved, low;
    ASSERT_EQ(getrlimit(RLIMIT_NOFILE, &saved), 0);
    int maxfd = 0;
    for (int fd = 0; fd < 1024; fd++)
        if (fcntl(fd, F_GETFD) >= 0) maxfd = fd;
    low = saved;
    low.rlim_cur = (rlim_t)maxfd + 1;
    ASSERT_EQ(setrlimit(RLIMIT_NOFILE, &low), 0);
    static int hogs[1024];
    int nhogs = 0;
    int fd;
    while (nhogs < 1024 && (fd = open("/dev/null", O_RDONLY | O_CLOEXEC)) >= 0)
        hogs[nhogs++] = fd;
    ASSERT(nhogs >= 3 && nhogs < 1024);
    for (int i = 0; i < 3; i++)
        close(hogs[--nhogs]);
    RUN_UNTIL(loop, r.errors > 0, 5000);
    for (int i = 0; i < nhogs; i++)
        close(hogs[i]);
    ASSERT_EQ(setrlimit(RLIMIT_NOFILE, &saved), 0);
    ASSERT_ERR(r.last_error, LSOCK_ERR_SOCKET_RESOURCE);
    ASSERT(strstr(lsock_socket_error_string(p.peer), "descriptors") != NULL);
    ASSERT_EQ(lsock_socket_state(p.peer), LSOCK_UNCONNECTED);
    ASSERT_EQ(test_count_fds(), before - 1); /* none of the 3 left open; the connection closed */
    close(pp[0]);
    close(pp[1]);
    pair_close(&p);
    lsock_loop_free(loop);
#endif
}

TEST_MAIN()
