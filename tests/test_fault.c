/*
 * Fault tests: crashes, floods, descriptor exhaustion, slow readers, connection churn and
 * vanished peers. Each is bounded in time and count and stops by itself; children are killed
 * with their parent (support.c: PR_SET_PDEATHSIG; a job object on Windows), so a failed test
 * leaves no process behind. On Windows the children are processes of their own (CreateProcess)
 * killed with TerminateProcess; a process has no descriptor limit to lower there, so the
 * descriptor exhaustion tests are Unix-only.
 *
 * Heavy counts shrink under valgrind (detected through LD_PRELOAD) or with LSOCK_TEST_SCALE
 * (a percentage of the full counts, 1 to 100). LSOCK_TEST_SEED fixes the random choices; the
 * seed used is printed.
 */
#include "support.h"

#include <signal.h>
#include <time.h>
#ifndef _WIN32
#include <malloc.h>
#include <sys/resource.h>
#endif

/* support.h's loop helpers wait differently: these are the fault tests' own. */
#undef RUN_UNTIL

#if defined(__SANITIZE_ADDRESS__)
#define UNDER_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define UNDER_ASAN 1
#endif
#endif
#ifndef UNDER_ASAN
#define UNDER_ASAN 0
#endif

/* ---- helpers --------------------------------------------------------------------------- */

/* The default scale on Windows, in percent: every child is a process start of its own, and
 * every pipe operation a request to the Wine server under Wine. */
#ifdef _WIN32
#define PLATFORM_SCALE 10
#else
#define PLATFORM_SCALE 100
#endif

/* n scaled by LSOCK_TEST_SCALE percent (default 100, 10 on Windows, or 4 under valgrind); at
 * least min. */
static int scaled(int n, int min)
{
    const char *env = getenv("LSOCK_TEST_SCALE");
    int pct = env && atoi(env) > 0 ? atoi(env) : (under_valgrind() ? 4 : PLATFORM_SCALE);
    if (pct > 100) pct = 100;
    long v = (long)n * pct / 100;
    return v < min ? min : (int)v;
}

static uint64_t rng_state;

static void rng_seed(const char *test)
{
    const char *env = getenv("LSOCK_TEST_SEED");
    rng_state = env ? strtoull(env, NULL, 0) : (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 20);
    if (rng_state == 0) rng_state = 1;
    printf("%s: LSOCK_TEST_SEED=%llu\n", test, (unsigned long long)rng_state);
    fflush(stdout);
}

static uint64_t xorshift(uint64_t *s)
{
    uint64_t x = *s;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return *s = x;
}

static uint32_t rng_below(uint32_t n)
{
    return (uint32_t)(xorshift(&rng_state) % n);
}

static uint32_t fnv1a(uint32_t h, const void *data, size_t n)
{
    const unsigned char *p = data;
    for (size_t i = 0; i < n; i++) {
        h ^= p[i];
        h *= 16777619u;
    }
    return h;
}

static void noop_timer(lsock_timer *t, void *ud)
{
    (void)t;
    (void)ud;
}

static void stop_loop_cb(lsock_timer *t, void *ud)
{
    (void)t;
    lsock_loop_stop(ud);
}

/* One round of the loop that waits at most 10 ms: a round that only runs deferred work
 * (a deferred error report, bytes_written) may otherwise block until the next event. */
static void run_once_bounded(lsock_loop *loop)
{
    lsock_timer *t = lsock_timer_new(loop, noop_timer, NULL);
    ASSERT(t && lsock_timer_start(t, 10, 0));
    lsock_loop_run(loop, LSOCK_RUN_ONCE);
    lsock_timer_free(t);
}

/* Runs the loop until cond holds; fails the test after ms milliseconds. */
#define RUN_UNTIL(loop, cond, ms)                                                                  \
    do {                                                                                           \
        uint64_t dl_ = test_now_ms() + (ms);                                                       \
        while (!(cond)) {                                                                          \
            if (test_now_ms() > dl_) FAIL_("timed out waiting for %s", #cond);                     \
            run_once_bounded(loop);                                                                \
        }                                                                                          \
    } while (0)

/* Runs the loop for ms milliseconds, woken by a timer (the loop blocks in between). */
static void run_loop_for(lsock_loop *loop, int ms)
{
    lsock_timer *t = lsock_timer_new(loop, stop_loop_cb, loop);
    ASSERT(t);
    ASSERT(lsock_timer_start(t, (uint64_t)ms, 0));
    lsock_loop_run(loop, LSOCK_RUN_DEFAULT);
    lsock_timer_free(t);
}

/* Bytes the allocator has handed out and not taken back; -1 where not measurable (the
 * sanitizers and valgrind have their own leak checks, which these builds run). */
static long long heap_in_use(void)
{
#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 33))
    if (UNDER_ASAN || under_valgrind()) return -1;
    struct mallinfo2 mi = mallinfo2();
    return (long long)mi.uordblks + (long long)mi.hblkhd;
#else
    return -1;
#endif
}

/* ---- chaos: clients killed mid-write ----------------------------------------------------- */

enum { MSG_MAGIC = 0x4c53434bu, HDR = 16, TRAILER = 4 };

struct chaos_result {
    int messages;  /* intact messages received, in order */
    int partial;   /* bytes of an incomplete message left at the close */
    int closes;    /* connections seen closing */
    int connected; /* identified itself */
};

struct chaos {
    lsock_loop *loop;
    lsock_server *srv;
    struct chaos_result *res;
    int nclients;
    int live;     /* server-side connections open */
    int accepted; /* connections accepted */
    uint32_t maxlen;
    unsigned char *msg;
    size_t msg_cap;
};

struct chaos_conn {
    struct chaos *ch;
    int id;       /* -1 until the first header */
    uint32_t seq; /* next expected */
};

static uint32_t chaos_len(uint32_t id, uint32_t seq, uint32_t max)
{
    uint64_t s = ((uint64_t)id << 32 | seq) * 0x9e3779b97f4a7c15ull + 1;
    xorshift(&s);
    return (uint32_t)(xorshift(&s) % (max + 1));
}

static void chaos_payload(unsigned char *p, uint32_t id, uint32_t seq, uint32_t len)
{
    uint64_t s = ((uint64_t)seq << 32 | id) * 0xbf58476d1ce4e5b9ull + 7;
    for (uint32_t i = 0; i < len; i++)
        p[i] = (unsigned char)xorshift(&s);
}

static void put32(unsigned char *p, uint32_t v)
{
    memcpy(p, &v, 4);
}

static uint32_t get32(const unsigned char *p)
{
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}

/* A client process: messages of random length with a checksum, written with pauses. arg is
 * "NAME ID NMSG MAXLEN GATE_READ GATE_WRITE" (the gate's ends as the child inherited them). */
CHILD_MAIN(chaos_client)
{
    char name[128];
    unsigned id, maxlen;
    int nmsg;
    long long gate, gate_w;
    if (sscanf(arg, "%127s %u %d %u %lld %lld", name, &id, &nmsg, &maxlen, &gate, &gate_w) != 6)
        return 1;
    raw_close((raw_fd)gate_w);
    child_lower_priority();                               /* the server and the driver keep up */
    if (proc_read_byte((raw_fd)gate, -1) != -1) return 8; /* all start when the gate closes */
    lsock_socket *c = lsock_socket_new(NULL);
    if (!c || !lsock_socket_connect(c, name, LSOCK_READ_WRITE)) return 2;
    if (!lsock_socket_wait_for_connected(c, 30000)) return 3;
    unsigned char *m = malloc(HDR + maxlen + TRAILER);
    if (!m) return 4;
    uint64_t pause = (uint64_t)id * 77 + 3;
    for (int seq = 0; seq < nmsg; seq++) {
        uint32_t len = chaos_len(id, (uint32_t)seq, maxlen);
        put32(m, MSG_MAGIC);
        put32(m + 4, id);
        put32(m + 8, (uint32_t)seq);
        put32(m + 12, len);
        chaos_payload(m + HDR, id, (uint32_t)seq, len);
        put32(m + HDR + len, fnv1a(2166136261u, m, HDR + len));
        /* Two writes, so that a kill can fall between the halves of one message too. */
        size_t total = HDR + len + TRAILER, half = total / 2;
        if (lsock_socket_write(c, m, (int64_t)half) != (int64_t)half) return 5;
        if (lsock_socket_write(c, m + half, (int64_t)(total - half)) != (int64_t)(total - half))
            return 5;
        while (lsock_socket_bytes_to_write(c) > 0)
            if (!lsock_socket_wait_for_bytes_written(c, 30000)) return 6;
        sleep_ms((int)(xorshift(&pause) % 4));
    }
    lsock_socket_disconnect(c);
    if (lsock_socket_state(c) != LSOCK_UNCONNECTED && !lsock_socket_wait_for_disconnected(c, 30000))
        return 7;
    lsock_socket_free(c);
    free(m);
    return 0;
}

static void chaos_parse(lsock_socket *s, struct chaos_conn *cc)
{
    struct chaos *ch = cc->ch;
    unsigned char hdr[HDR];
    while (lsock_socket_bytes_available(s) >= HDR) {
        ASSERT_EQ(lsock_socket_peek(s, hdr, HDR), HDR);
        if (get32(hdr) != MSG_MAGIC) FAIL_("corrupt header (magic %08x)", get32(hdr));
        uint32_t id = get32(hdr + 4), seq = get32(hdr + 8), len = get32(hdr + 12);
        if (id >= (uint32_t)ch->nclients) FAIL_("corrupt header (id %u)", id);
        if (cc->id < 0) {
            cc->id = (int)id;
            ch->res[id].connected++;
        }
        if ((int)id != cc->id) FAIL_("client id changed from %d to %u", cc->id, id);
        if (seq != cc->seq) FAIL_("client %u: message %u arrived, %u expected", id, seq, cc->seq);
        size_t need = HDR + (size_t)len + TRAILER;
        if (len > 1u << 20) FAIL_("corrupt length %u", len);
        if (lsock_socket_bytes_available(s) < (int64_t)need) break;
        if (need > ch->msg_cap) {
            ch->msg = realloc(ch->msg, need);
            ASSERT(ch->msg);
            ch->msg_cap = need;
        }
        ASSERT_EQ(lsock_socket_read(s, ch->msg, (int64_t)need), (int64_t)need);
        uint32_t sum = fnv1a(2166136261u, ch->msg, HDR + len);
        if (sum != get32(ch->msg + HDR + len))
            FAIL_("client %u message %u: checksum mismatch", id, seq);
        if (len != chaos_len(id, seq, ch->maxlen)) FAIL_("client %u message %u: length", id, seq);
        cc->seq++;
        ch->res[id].messages++;
    }
}

static void chaos_ready_read(lsock_socket *s, void *ud)
{
    chaos_parse(s, ud);
}

static void chaos_disconnected(lsock_socket *s, void *ud)
{
    struct chaos_conn *cc = ud;
    struct chaos *ch = cc->ch;
    chaos_parse(s, cc);
    if (cc->id >= 0) {
        ch->res[cc->id].closes++;
        ch->res[cc->id].partial = (int)lsock_socket_bytes_available(s);
    }
    ch->live--;
    free(cc);
    lsock_socket_free(s);
}

static void chaos_new_connection(lsock_server *srv, void *ud)
{
    static const lsock_socket_callbacks cbs = {.ready_read = chaos_ready_read,
                                               .disconnected = chaos_disconnected};
    struct chaos *ch = ud;
    lsock_socket *s;
    while ((s = lsock_server_next_pending_connection(srv))) {
        struct chaos_conn *cc = calloc(1, sizeof *cc);
        ASSERT(cc);
        cc->ch = ch;
        cc->id = -1;
        lsock_socket_set_callbacks(s, &cbs, cc);
        ch->live++;
        ch->accepted++;
    }
}

TEST(chaos_clients_killed_mid_write_lose_no_message_of_the_survivors)
{
    rng_seed("chaos");
    /* Each client sends more than its connection holds in flight (the kernel takes about
     * 1 MiB), so that a kill cuts it off while it still has messages to send. */
    const int nclients = scaled(200, 8), nmsg = under_valgrind() ? 8 : 64;
    const int nkill = nclients / 4 > 0 ? nclients / 4 : 1;
    const uint32_t maxlen = under_valgrind() ? 4096 : 65536;
    const char *name = test_name("chaos");
    struct chaos ch;
    memset(&ch, 0, sizeof ch);
    ch.nclients = nclients;
    ch.maxlen = maxlen;
    ch.res = calloc((size_t)nclients, sizeof *ch.res);
    child *kids = calloc((size_t)nclients, sizeof *kids);
    int *status = calloc((size_t)nclients, sizeof *status);
    char *done = calloc((size_t)nclients, 1), *victim = calloc((size_t)nclients, 1);
    ASSERT(ch.res && kids && status && done && victim);
    ch.loop = lsock_loop_new();
    ch.srv = lsock_server_new(ch.loop);
    ASSERT(lsock_server_set_listen_backlog_size(ch.srv, 256));
    ASSERT(lsock_server_set_max_pending_connections(ch.srv, 64));
    lsock_server_set_new_connection_callback(ch.srv, chaos_new_connection, &ch);
    ASSERT(lsock_server_listen(ch.srv, name));
    int base_fds = test_count_fds();
    /* A ticking timer bounds each wait of the loop: children are reaped between waits. */
    lsock_timer *tick = lsock_timer_new(ch.loop, noop_timer, NULL);
    ASSERT(tick && lsock_timer_start(tick, 2, 2));
    raw_fd gate[2];
    proc_pipe(gate);
    uint64_t t0 = test_now_ms();
    for (int i = 0; i < nclients; i++) {
        char arg[256];
        snprintf(arg, sizeof arg, "%s %d %d %u %lld %lld", name, i, nmsg, maxlen,
                 (long long)gate[0], (long long)gate[1]);
        child_start(&kids[i], "chaos_client", arg);
    }
    raw_close(gate[0]);
    raw_close(gate[1]);
    /* The driver: every millisecond or two a random client still running is killed. */
    int killed = 0, reaped = 0;
    uint64_t start = test_now_ms(), deadline = start + 60000;
    while (reaped < nclients || ch.live > 0) {
        ASSERT(test_now_ms() < deadline);
        lsock_loop_run(ch.loop, LSOCK_RUN_NOWAIT);
        /* About one kill a millisecond from the start, caught up after a long round. */
        uint64_t target = test_now_ms() - start;
        while (killed < nkill && (uint64_t)killed < target) {
            /* A victim among the clients still running that have messages left to send. */
            int alive = 0;
            for (int i = 0; i < nclients; i++)
                alive += !done[i] && !victim[i] && ch.res[i].messages < nmsg;
            if (alive == 0) break;
            int k = (int)rng_below((uint32_t)alive);
            for (int i = 0; i < nclients; i++) {
                if (done[i] || victim[i] || ch.res[i].messages >= nmsg) continue;
                if (k-- == 0) {
                    child_kill(&kids[i]);
                    victim[i] = 1;
                    killed++;
                    break;
                }
            }
        }
        for (int i = 0; i < nclients; i++) {
            if (done[i]) continue;
            int st = child_wait(&kids[i], 0);
            if (st == CHILD_RUNNING) continue;
            status[i] = st;
            done[i] = 1;
            reaped++;
        }
        lsock_loop_run(ch.loop, LSOCK_RUN_ONCE); /* a short wait: clients keep writing */
    }
    int survivors = 0, cut = 0, mid_message = 0;
    for (int i = 0; i < nclients; i++) {
        if (status[i] >= 0) {
            if (status[i] != 0) FAIL_("client %d exited %d", i, status[i]);
            survivors++;
            if (ch.res[i].messages != nmsg || ch.res[i].partial != 0 || ch.res[i].closes != 1)
                FAIL_("surviving client %d: %d of %d messages, %d partial bytes, %d closes", i,
                      ch.res[i].messages, nmsg, ch.res[i].partial, ch.res[i].closes);
        } else {
            ASSERT_EQ(status[i], CHILD_KILLED);
            ASSERT(ch.res[i].messages <= nmsg);
            ASSERT(ch.res[i].closes <= 1);
            if (ch.res[i].messages < nmsg) cut++;
            if (ch.res[i].partial > 0) mid_message++;
        }
    }
    printf("chaos: %d clients, %d killed (%d before their last message, %d mid-message), %d "
           "survived, %d connections, %llu ms\n",
           nclients, killed, cut, mid_message, survivors, ch.accepted,
           (unsigned long long)(test_now_ms() - t0));
    ASSERT(killed > 0);
    ASSERT(cut > 0); /* some client was killed while it still had messages to send */
    ASSERT(survivors > 0);
    lsock_timer_free(tick);
    ASSERT(lsock_server_is_listening(ch.srv));
    ASSERT_ERR(lsock_server_error(ch.srv), LSOCK_ERR_NONE);
    /* The server still serves: one more client gets through. */
    lsock_socket *c = lsock_socket_new(NULL);
    ASSERT(lsock_socket_connect(c, name, LSOCK_READ_WRITE));
    RUN_UNTIL(ch.loop, ch.live == 1, 5000);
    lsock_socket_free(c);
    RUN_UNTIL(ch.loop, ch.live == 0, 5000);
    ASSERT_EQ(test_count_fds(), base_fds);
    lsock_server_free(ch.srv);
    ASSERT(lsock_loop_free(ch.loop));
    free(ch.msg);
    free(ch.res);
    free(kids);
    free(status);
    free(done);
    free(victim);
}

/* ---- server crash ------------------------------------------------------------------------ */

enum { CRASH_BYTES = 48 * 1024 };

static unsigned char pattern_at(size_t i, unsigned salt)
{
    return (unsigned char)((i * 31u + i / 251u + salt) & 0xff);
}

/* The server process: sends CRASH_BYTES to each of n clients, waits until the kernel has it
 * all, says so on the pipe, then waits to be killed. arg is "NAME N PIPE_WRITE". */
CHILD_MAIN(crash_server)
{
    char name[128];
    int n;
    long long wfd;
    if (sscanf(arg, "%127s %d %lld", name, &n, &wfd) != 3) return 1;
    lsock_server *srv = lsock_server_new(NULL);
    if (!lsock_server_listen(srv, name)) return 2;
    if (!proc_write_byte((raw_fd)wfd, 'L')) return 3;
    static unsigned char data[CRASH_BYTES];
    lsock_socket **peers = calloc((size_t)n, sizeof *peers);
    for (int i = 0; i < n; i++) {
        if (!lsock_server_wait_for_new_connection(srv, 10000, NULL)) return 4;
        peers[i] = lsock_server_next_pending_connection(srv);
        for (size_t k = 0; k < sizeof data; k++)
            data[k] = pattern_at(k, (unsigned)i);
        if (lsock_socket_write(peers[i], data, sizeof data) != (int64_t)sizeof data) return 5;
        while (lsock_socket_bytes_to_write(peers[i]) > 0)
            if (!lsock_socket_wait_for_bytes_written(peers[i], 10000)) return 6;
    }
    if (!proc_write_byte((raw_fd)wfd, 'S')) return 7;
    child_idle_forever();
    return 0;
}

static void wait_byte(raw_fd fd, char want)
{
    ASSERT_EQ(proc_read_byte(fd, 10000), want);
}

struct crash_client {
    lsock_socket *s;
    int disconnected;
    lsock_error err;
    uint64_t when;
};

static void crash_disconnected(lsock_socket *s, void *ud)
{
    struct crash_client *cc = ud;
    cc->disconnected++;
    cc->err = lsock_socket_error(s);
    cc->when = test_now_ms();
}

static void server_crash_then_restart(int reclaim)
{
    const int n = scaled(10, 3);
    const char *name = test_name(reclaim ? "crash-reclaim" : "crash-remove");
    lsock_loop *loop = lsock_loop_new();
    int base_fds = test_count_fds();
    raw_fd pfd[2];
    proc_pipe(pfd);
    char arg[256];
    snprintf(arg, sizeof arg, "%s %d %lld", name, n, (long long)pfd[1]);
    child srv_proc;
    child_start(&srv_proc, "crash_server", arg);
    raw_close(pfd[1]);
    wait_byte(pfd[0], 'L');
    static const lsock_socket_callbacks cbs = {.disconnected = crash_disconnected};
    struct crash_client *cl = calloc((size_t)n, sizeof *cl);
    ASSERT(cl);
    for (int i = 0; i < n; i++) {
        cl[i].s = lsock_socket_new(loop);
        lsock_socket_set_callbacks(cl[i].s, &cbs, &cl[i]);
        ASSERT(lsock_socket_connect(cl[i].s, name, LSOCK_READ_WRITE));
        ASSERT(lsock_socket_wait_for_connected(cl[i].s, 5000));
    }
    /* Everything sent is in the clients' kernel buffers; nobody has read a byte yet. */
    wait_byte(pfd[0], 'S');
    uint64_t killed_at = test_now_ms();
    child_kill(&srv_proc);
    ASSERT_EQ(child_wait(&srv_proc, 10000), CHILD_KILLED);
    int all = 0;
    uint64_t deadline = test_now_ms() + 5000;
    while (all < n) {
        ASSERT(test_now_ms() < deadline);
        run_once_bounded(loop);
        all = 0;
        for (int i = 0; i < n; i++)
            all += cl[i].disconnected;
    }
    uint64_t last = 0;
    for (int i = 0; i < n; i++)
        if (cl[i].when > last) last = cl[i].when;
    printf("server killed: %d clients saw PEER_CLOSED within %llu ms\n", n,
           (unsigned long long)(last - killed_at));
    unsigned char *buf = malloc(CRASH_BYTES + 1);
    ASSERT(buf);
    for (int i = 0; i < n; i++) {
        ASSERT_EQ(cl[i].disconnected, 1);
        ASSERT_ERR(cl[i].err, LSOCK_ERR_PEER_CLOSED);
        ASSERT(cl[i].when - killed_at < 2000); /* promptly */
        ASSERT_EQ(lsock_socket_state(cl[i].s), LSOCK_UNCONNECTED);
        /* All the data the server had handed to the kernel is still readable. */
        ASSERT_EQ(lsock_socket_bytes_available(cl[i].s), CRASH_BYTES);
        ASSERT_EQ(lsock_socket_read(cl[i].s, buf, CRASH_BYTES + 1), CRASH_BYTES);
        for (size_t k = 0; k < CRASH_BYTES; k++)
            if (buf[k] != pattern_at(k, (unsigned)i)) FAIL_("client %d byte %zu differs", i, k);
    }
    free(buf);
    lsock_server *srv = lsock_server_new(loop);
#ifndef _WIN32
    /* The dead server's socket file stays behind: the name is taken until reclaimed. (A pipe
     * goes with its last handle: on Windows the name is free at once, and reclaiming or
     * removing it does nothing.) */
    ASSERT(!lsock_server_listen(srv, name));
    ASSERT_ERR(lsock_server_error(srv), LSOCK_ERR_ADDRESS_IN_USE);
#endif
    if (reclaim)
        ASSERT(lsock_server_set_socket_options(srv, LSOCK_RECLAIM_STALE));
    else
        ASSERT(lsock_remove_server(name));
    ASSERT(lsock_server_listen(srv, name));
    /* The old clients reconnect to the new server. */
    for (int i = 0; i < n; i++) {
        ASSERT(lsock_socket_connect(cl[i].s, name, LSOCK_READ_WRITE));
        ASSERT_EQ(lsock_socket_state(cl[i].s), LSOCK_CONNECTED);
    }
    for (int i = 0; i < n; i++) {
        RUN_UNTIL(loop, lsock_server_has_pending_connections(srv), 5000);
        lsock_socket *p = lsock_server_next_pending_connection(srv);
        ASSERT_EQ(lsock_socket_write(p, "hi", 2), 2);
        lsock_socket_free(p);
    }
    for (int i = 0; i < n; i++) {
        RUN_UNTIL(loop, lsock_socket_bytes_available(cl[i].s) == 2, 5000);
        lsock_socket_free(cl[i].s);
    }
    free(cl);
    lsock_server_free(srv);
    raw_close(pfd[0]);
    ASSERT_EQ(test_count_fds(), base_fds);
    ASSERT(lsock_loop_free(loop));
}

TEST(server_killed_clients_see_peer_closed_keep_data_and_reclaim_stale_restarts)
{
    server_crash_then_restart(1);
}

TEST(server_killed_clients_see_peer_closed_keep_data_and_remove_server_restarts)
{
    server_crash_then_restart(0);
}

/* ---- descriptor exhaustion ------------------------------------------------------------- */

/* Unix only: a Windows process has no descriptor limit to lower (RLIMIT_NOFILE), and its
 * handle table holds some 16 million entries. */
#define NO_DESCRIPTOR_LIMIT                                                                        \
    "Windows has no per-process descriptor limit to lower (RLIMIT_NOFILE): a process may hold "    \
    "some 16 million handles"

#ifndef _WIN32
static double cpu_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

struct exhaust {
    int hogs[4096];
    int nhogs;
    struct rlimit saved;
};

/* Lowers RLIMIT_NOFILE to the descriptors in use and fills any gap below it, so the next
 * descriptor the process asks for fails with EMFILE. Skips the test where the limit is not
 * enforced (valgrind emulates it). */
static void exhaust_fds(struct exhaust *ex)
{
    /* valgrind emulates the limit: it closes a descriptor the kernel made above it and
     * reports EMFILE, so an accepted connection would be lost, which the real limit never
     * does (accept fails before taking the connection from the backlog). */
    if (under_valgrind()) SKIP("valgrind emulates RLIMIT_NOFILE (connections would be lost)");
    ASSERT_EQ(getrlimit(RLIMIT_NOFILE, &ex->saved), 0);
    int maxfd = 0;
    for (int fd = 0; fd < 1024; fd++)
        if (fcntl(fd, F_GETFD) >= 0) maxfd = fd;
    struct rlimit low = ex->saved;
    low.rlim_cur = (rlim_t)maxfd + 1;
    ASSERT_EQ(setrlimit(RLIMIT_NOFILE, &low), 0);
    ex->nhogs = 0;
    for (;;) {
        int fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
        if (fd < 0) {
            ASSERT(errno == EMFILE);
            break;
        }
        if (ex->nhogs == (int)(sizeof ex->hogs / sizeof ex->hogs[0])) {
            close(fd);
            for (int i = 0; i < ex->nhogs; i++)
                close(ex->hogs[i]);
            setrlimit(RLIMIT_NOFILE, &ex->saved);
            SKIP("RLIMIT_NOFILE is not enforced here (valgrind emulates it)");
        }
        ex->hogs[ex->nhogs++] = fd;
    }
}

static void release_fds(struct exhaust *ex)
{
    for (int i = 0; i < ex->nhogs; i++)
        close(ex->hogs[i]);
    ex->nhogs = 0;
    ASSERT_EQ(setrlimit(RLIMIT_NOFILE, &ex->saved), 0);
}

/* The flood: connects n clients once told to, says so, then expects one byte on each. arg is
 * "NAME N GO_READ READY_WRITE". */
CHILD_MAIN(flood_client)
{
    char name[128];
    int n;
    long long go_fd, ready_fd;
    if (sscanf(arg, "%127s %d %lld %lld", name, &n, &go_fd, &ready_fd) != 4) return 1;
    if (proc_read_byte((raw_fd)go_fd, -1) != 'G') return 2;
    lsock_socket **cs = calloc((size_t)n, sizeof *cs);
    for (int i = 0; i < n; i++) {
        cs[i] = lsock_socket_new(NULL);
        if (!lsock_socket_connect(cs[i], name, LSOCK_READ_WRITE)) return 3;
    }
    if (!proc_write_byte((raw_fd)ready_fd, 'R')) return 4;
    for (int i = 0; i < n; i++) {
        if (!lsock_socket_wait_for_connected(cs[i], 20000)) return 5;
        while (lsock_socket_bytes_available(cs[i]) < 1)
            if (!lsock_socket_wait_for_ready_read(cs[i], 20000)) return 6;
        lsock_socket_free(cs[i]);
    }
    free(cs);
    return 0;
}

/* Starts the flood process, which waits for 'G' on go[0] and says 'R' on ready[1]. */
static void start_flood(child *c, const char *name, int n, raw_fd go[2], raw_fd ready[2])
{
    proc_pipe(go);
    proc_pipe(ready);
    char arg[256];
    snprintf(arg, sizeof arg, "%s %d %lld %lld", name, n, (long long)go[0], (long long)ready[1]);
    child_start(c, "flood_client", arg);
}

static void close_pipes(raw_fd go[2], raw_fd ready[2])
{
    raw_close(go[0]);
    raw_close(go[1]);
    raw_close(ready[0]);
    raw_close(ready[1]);
}

struct exhaust_srv {
    lsock_socket *existing; /* the connection made before the exhaustion */
    int accepted;
    int echoes;
};

static void echo_ready_read(lsock_socket *s, void *ud)
{
    char buf[256];
    int64_t n;
    (void)ud;
    while ((n = lsock_socket_read(s, buf, sizeof buf)) > 0)
        ASSERT_EQ(lsock_socket_write(s, buf, n), n);
}

static void exhaust_new_connection(lsock_server *srv, void *ud)
{
    static const lsock_socket_callbacks echo = {.ready_read = echo_ready_read};
    struct exhaust_srv *es = ud;
    lsock_socket *s;
    while ((s = lsock_server_next_pending_connection(srv))) {
        if (!es->existing) {
            es->existing = s;
            lsock_socket_set_callbacks(s, &echo, es);
            continue;
        }
        ASSERT_EQ(lsock_socket_write(s, "k", 1), 1);
        lsock_socket_disconnect(s);
        lsock_socket_free(s);
        es->accepted++;
    }
}

static void count_echo(lsock_socket *s, void *ud)
{
    struct exhaust_srv *es = ud;
    char buf[64];
    int64_t n;
    while ((n = lsock_socket_read(s, buf, sizeof buf)) > 0)
        es->echoes += (int)n;
}

static void ping_cb(lsock_timer *t, void *ud)
{
    (void)t;
    ASSERT_EQ(lsock_socket_write(ud, "p", 1), 1);
}

static void wait_did_not_return(int sig)
{
    static const char msg[] = "lsock_server_wait_for_new_connection(srv, 1000 ms) has not "
                              "returned after 15 s while out of descriptors\n";
    (void)sig;
    if (write(2, msg, sizeof msg - 1) < 0) _exit(1);
    _exit(1);
}
#endif

TEST(fd_exhaustion_pauses_accepting_without_spinning_serves_existing_clients_and_recovers)
{
#ifdef _WIN32
    SKIP(NO_DESCRIPTOR_LIMIT);
#else
    const int nflood = 40;
    const char *name = test_name("emfile");
    lsock_loop *loop = lsock_loop_new();
    lsock_server *srv = lsock_server_new(loop);
    struct exhaust_srv es;
    memset(&es, 0, sizeof es);
    lsock_server_set_new_connection_callback(srv, exhaust_new_connection, &es);
    ASSERT(lsock_server_set_listen_backlog_size(srv, 128));
    ASSERT(lsock_server_listen(srv, name));
    static const lsock_socket_callbacks counting = {.ready_read = count_echo};
    lsock_socket *c0 = lsock_socket_new(loop);
    lsock_socket_set_callbacks(c0, &counting, &es);
    ASSERT(lsock_socket_connect(c0, name, LSOCK_READ_WRITE));
    RUN_UNTIL(loop, es.existing != NULL, 5000);
    raw_fd go[2], ready[2];
    child flood;
    start_flood(&flood, name, nflood, go, ready);
    lsock_timer *ping = lsock_timer_new(loop, ping_cb, c0);
    ASSERT(ping);
    struct exhaust ex;
    exhaust_fds(&ex);
    ASSERT(proc_write_byte(go[1], 'G'));
    wait_byte(ready[0], 'R'); /* the flood waits in the listen backlog */
    /* A second of loop time while no descriptor can be had: the loop must sleep, not spin. */
    ASSERT(lsock_timer_start(ping, 20, 50));
    double cpu0 = cpu_seconds();
    uint64_t wall0 = test_now_ms();
    run_loop_for(loop, 1000);
    double cpu = cpu_seconds() - cpu0;
    double wall = (double)(test_now_ms() - wall0) / 1000.0;
    lsock_timer_stop(ping);
    printf("out of descriptors: %.3f s CPU over %.3f s, %d accepted, %d echoes\n", cpu, wall,
           es.accepted, es.echoes);
    ASSERT_EQ(es.accepted, 0);
    ASSERT_ERR(lsock_server_error(srv), LSOCK_ERR_SOCKET_RESOURCE);
    ASSERT(lsock_server_is_listening(srv));
    ASSERT(cpu < 0.2 * wall);
    ASSERT(es.echoes >= 10); /* the existing client was served all along */
    release_fds(&ex);
    RUN_UNTIL(loop, es.accepted == nflood, 10000);
    ASSERT_EQ(child_wait(&flood, 20000), 0);
    lsock_timer_free(ping);
    lsock_socket_free(c0);
    lsock_socket_free(es.existing);
    lsock_server_free(srv);
    close_pipes(go, ready);
    ASSERT(lsock_loop_free(loop));
#endif
}

TEST(fd_exhaustion_wait_for_new_connection_sleeps_and_recovers)
{
#ifdef _WIN32
    SKIP(NO_DESCRIPTOR_LIMIT);
#else
    const int nflood = 8;
    const char *name = test_name("emfile-wait");
    lsock_server *srv = lsock_server_new(NULL);
    ASSERT(lsock_server_listen(srv, name));
    raw_fd go[2], ready[2];
    child flood;
    start_flood(&flood, name, nflood, go, ready);
    struct exhaust ex;
    exhaust_fds(&ex);
    ASSERT(proc_write_byte(go[1], 'G'));
    wait_byte(ready[0], 'R');
    double cpu0 = cpu_seconds();
    uint64_t wall0 = test_now_ms();
    bool timed_out = false;
    /* A wait that does not end by itself fails here, not at the harness's deadline. */
    signal(SIGALRM, wait_did_not_return);
    unsigned left = alarm(15);
    ASSERT(!lsock_server_wait_for_new_connection(srv, 1000, &timed_out));
    alarm(left);
    double cpu = cpu_seconds() - cpu0;
    double wall = (double)(test_now_ms() - wall0) / 1000.0;
    printf("out of descriptors, blocking: %.3f s CPU over %.3f s\n", cpu, wall);
    ASSERT(timed_out);
    ASSERT(wall >= 0.9);
    ASSERT(cpu < 0.2 * wall);
    release_fds(&ex);
    for (int i = 0; i < nflood; i++) {
        ASSERT(lsock_server_wait_for_new_connection(srv, 5000, NULL));
        lsock_socket *s = lsock_server_next_pending_connection(srv);
        ASSERT(s);
        ASSERT_EQ(lsock_socket_write(s, "k", 1), 1);
        lsock_socket_free(s);
    }
    ASSERT_EQ(child_wait(&flood, 20000), 0);
    lsock_server_free(srv);
    close_pipes(go, ready);
#endif
}

/* ---- slow reader ----------------------------------------------------------------------- */

enum { SLOW_RBUF = 64 * 1024, SLOW_WBUF = 64 * 1024 };

struct slow {
    lsock_socket *writer, *reader;
    size_t total, sent, got;
    int reading;
    int64_t max_queued, max_buffered;
    unsigned char chunk[65536];
};

static void slow_fill(struct slow *sl)
{
    while (sl->sent < sl->total) {
        size_t n = sl->total - sl->sent;
        if (n > sizeof sl->chunk) n = sizeof sl->chunk;
        for (size_t i = 0; i < n; i++)
            sl->chunk[i] = pattern_at(sl->sent + i, 7);
        int64_t w = lsock_socket_write(sl->writer, sl->chunk, (int64_t)n);
        ASSERT(w >= 0);
        sl->sent += (size_t)w;
        int64_t q = lsock_socket_bytes_to_write(sl->writer);
        if (q > sl->max_queued) sl->max_queued = q;
        if ((size_t)w < n) break; /* the queue is full: the rest waits for bytes_written */
    }
}

static void slow_bytes_written(lsock_socket *s, int64_t n, void *ud)
{
    (void)s;
    (void)n;
    slow_fill(ud);
}

static void slow_ready_read(lsock_socket *s, void *ud)
{
    struct slow *sl = ud;
    int64_t avail = lsock_socket_bytes_available(s);
    if (avail > sl->max_buffered) sl->max_buffered = avail;
    if (!sl->reading) return;
    unsigned char buf[8192];
    int64_t n;
    while ((n = lsock_socket_read(s, buf, sizeof buf)) > 0) {
        for (int64_t i = 0; i < n; i++)
            if (buf[i] != pattern_at(sl->got + (size_t)i, 7))
                FAIL_("byte %zu differs", sl->got + (size_t)i);
        sl->got += (size_t)n;
    }
}

TEST(slow_reader_bounded_memory_with_read_and_write_limits_and_nothing_lost)
{
    const char *name = test_name("slow");
    lsock_loop *loop = lsock_loop_new();
    lsock_server *srv = lsock_server_new(loop);
    ASSERT(lsock_server_listen(srv, name));
    struct slow *sl = calloc(1, sizeof *sl);
    ASSERT(sl);
    sl->total = (size_t)scaled(64, 4) << 20;
    sl->reader = lsock_socket_new(loop);
    ASSERT(lsock_socket_set_read_buffer_size(sl->reader, SLOW_RBUF));
    static const lsock_socket_callbacks rcb = {.ready_read = slow_ready_read};
    lsock_socket_set_callbacks(sl->reader, &rcb, sl);
    ASSERT(lsock_socket_connect(sl->reader, name, LSOCK_READ_WRITE));
    RUN_UNTIL(loop, lsock_server_has_pending_connections(srv), 5000);
    sl->writer = lsock_server_next_pending_connection(srv);
    ASSERT(lsock_socket_set_write_buffer_size(sl->writer, SLOW_WBUF));
    static const lsock_socket_callbacks wcb = {.bytes_written = slow_bytes_written};
    lsock_socket_set_callbacks(sl->writer, &wcb, sl);
    long rss0 = process_rss_kib();
    /* The reader does not read for half a second while the writer keeps trying. */
    slow_fill(sl);
    for (int i = 0; i < 10; i++) {
        run_loop_for(loop, 50);
        slow_fill(sl);
    }
    long rss1 = process_rss_kib();
    printf("stalled reader: %zu of %zu bytes accepted, writer queue max %lld, reader buffer max "
           "%lld, RSS %+ld KiB\n",
           sl->sent, sl->total, (long long)sl->max_queued, (long long)sl->max_buffered,
           rss1 - rss0);
    ASSERT(sl->sent < sl->total);
    ASSERT(sl->max_queued <= SLOW_WBUF);
    ASSERT(sl->max_buffered <= SLOW_RBUF);
    ASSERT(lsock_socket_bytes_available(sl->reader) <= SLOW_RBUF);
    if (rss0 > 0 && !UNDER_ASAN) ASSERT(rss1 - rss0 < 8 * 1024);
    /* The reader resumes: every byte arrives, in order. */
    sl->reading = 1;
    slow_ready_read(sl->reader, sl);
    uint64_t deadline = test_now_ms() + 30000;
    while (sl->got < sl->total) {
        ASSERT(test_now_ms() < deadline);
        run_once_bounded(loop);
        ASSERT(lsock_socket_bytes_to_write(sl->writer) <= SLOW_WBUF);
        ASSERT(lsock_socket_bytes_available(sl->reader) <= SLOW_RBUF);
    }
    ASSERT_EQ(sl->got, sl->total);
    ASSERT(sl->max_queued <= SLOW_WBUF);
    ASSERT(sl->max_buffered <= SLOW_RBUF);
    lsock_socket_free(sl->writer);
    lsock_socket_free(sl->reader);
    lsock_server_free(srv);
    free(sl);
    ASSERT(lsock_loop_free(loop));
}

/* ---- connection churn ------------------------------------------------------------------ */

TEST(hundred_thousand_sequential_connections_grow_neither_fds_nor_memory)
{
    const int n = scaled(100000, 2000), warmup = n / 50;
    const char *name = test_name("churn");
    lsock_loop *loop = lsock_loop_new();
    lsock_server *srv = lsock_server_new(loop);
    ASSERT(lsock_server_listen(srv, name));
    int base_fds = -1;
    long long heap0 = -1;
    uint64_t t0 = test_now_ms();
    for (int i = 0; i < n; i++) {
        if (i == warmup) {
            base_fds = test_count_fds();
            heap0 = heap_in_use();
        }
        /* Alternately a loop-less client and one on the loop. */
        lsock_socket *c = lsock_socket_new(i % 2 ? loop : NULL);
        ASSERT(lsock_socket_connect(c, name, LSOCK_READ_WRITE));
        ASSERT(lsock_server_wait_for_new_connection(srv, 5000, NULL));
        lsock_socket *p = lsock_server_next_pending_connection(srv);
        ASSERT(p);
        ASSERT_EQ(lsock_socket_write(c, "x", 1), 1);
        ASSERT(lsock_socket_wait_for_ready_read(p, 5000));
        char ch;
        ASSERT_EQ(lsock_socket_read(p, &ch, 1), 1);
        if (i % 3 == 0) {
            lsock_socket_disconnect(c); /* graceful */
            lsock_socket_free(p);
        } else {
            lsock_socket_free(p);
            lsock_socket_free(c);
            c = NULL;
        }
        if (c) lsock_socket_free(c);
        if (i % 256 == 0) lsock_loop_run(loop, LSOCK_RUN_NOWAIT);
    }
    lsock_loop_run(loop, LSOCK_RUN_NOWAIT);
    int fds = test_count_fds();
    long long heap1 = heap_in_use();
    printf("%d connections in %llu ms; fds %d -> %d; heap %lld -> %lld bytes\n", n,
           (unsigned long long)(test_now_ms() - t0), base_fds, fds, heap0, heap1);
    ASSERT_EQ(fds, base_fds);
    if (heap0 >= 0 && heap1 >= 0) ASSERT(heap1 - heap0 < 64 * 1024);
    lsock_server_free(srv);
    ASSERT(lsock_loop_free(loop));
}

/* ---- SIGPIPE --------------------------------------------------------------------------- */

/* SIGPIPE at its default (terminate) and unblocked. Windows has no SIGPIPE: a write to a pipe
 * whose reader is gone fails with ERROR_NO_DATA, and nothing is raised. */
static void default_sigpipe(void)
{
#ifndef _WIN32
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = SIG_DFL;
    sigemptyset(&sa.sa_mask);
    ASSERT_EQ(sigaction(SIGPIPE, &sa, NULL), 0);
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGPIPE);
    ASSERT_EQ(sigprocmask(SIG_UNBLOCK, &set, NULL), 0);
#endif
}

/* A peer process that connects, reads nothing, and waits to be killed. arg is
 * "NAME PIPE_WRITE". */
CHILD_MAIN(idle_peer)
{
    char name[128];
    long long wfd;
    if (sscanf(arg, "%127s %lld", name, &wfd) != 2) return 1;
    lsock_socket *c = lsock_socket_new(NULL);
    if (!lsock_socket_connect(c, name, LSOCK_READ_WRITE)) return 2;
    if (!proc_write_byte((raw_fd)wfd, 'C')) return 3;
    child_idle_forever();
    return 0;
}

struct vanish {
    int errors, disconnected;
    lsock_error err;
};

static void vanish_error(lsock_socket *s, lsock_error err, void *ud)
{
    struct vanish *v = ud;
    (void)s;
    v->errors++;
    v->err = err;
}

static void vanish_disconnected(lsock_socket *s, void *ud)
{
    struct vanish *v = ud;
    (void)s;
    v->disconnected++;
}

static void write_to_killed_peer(int on_loop)
{
    default_sigpipe();
    const char *name = test_name("sigpipe");
    lsock_loop *loop = on_loop ? lsock_loop_new() : NULL;
    lsock_server *srv = lsock_server_new(loop);
    ASSERT(lsock_server_listen(srv, name));
    raw_fd pfd[2];
    proc_pipe(pfd);
    char arg[256];
    snprintf(arg, sizeof arg, "%s %lld", name, (long long)pfd[1]);
    child peer;
    child_start(&peer, "idle_peer", arg);
    wait_byte(pfd[0], 'C');
    ASSERT(lsock_server_wait_for_new_connection(srv, 5000, NULL));
    lsock_socket *s = lsock_server_next_pending_connection(srv);
    ASSERT(s);
    struct vanish v;
    memset(&v, 0, sizeof v);
    static const lsock_socket_callbacks cbs = {.error_occurred = vanish_error,
                                               .disconnected = vanish_disconnected};
    lsock_socket_set_callbacks(s, &cbs, &v);
    /* Fill the kernel (its send buffer is 512 KiB, doubled by Linux) and queue some more,
     * then the peer dies. */
    static unsigned char data[4 << 20];
    memset(data, 'q', sizeof data);
    ASSERT_EQ(lsock_socket_write(s, data, sizeof data), (int64_t)sizeof data);
    ASSERT(lsock_socket_bytes_to_write(s) > 0);
    child_kill(&peer);
    ASSERT_EQ(child_wait(&peer, 10000), CHILD_KILLED);
    /* Every way of writing now meets EPIPE: none may raise SIGPIPE. */
    lsock_socket_flush(s);
    for (int i = 0; i < 4 && lsock_socket_state(s) == LSOCK_CONNECTED; i++) {
        int64_t w = lsock_socket_write(s, data, 4096);
        ASSERT(w == 4096 || w == -1);
    }
    if (on_loop) {
        RUN_UNTIL(loop, lsock_socket_state(s) == LSOCK_UNCONNECTED, 5000);
    } else {
        ASSERT(!lsock_socket_wait_for_bytes_written(s, 5000));
        if (lsock_socket_state(s) != LSOCK_UNCONNECTED)
            ASSERT(!lsock_socket_wait_for_ready_read(s, 5000));
    }
    ASSERT_EQ(lsock_socket_state(s), LSOCK_UNCONNECTED);
    ASSERT_ERR(lsock_socket_error(s), LSOCK_ERR_PEER_CLOSED);
    ASSERT_ERR(v.err, LSOCK_ERR_PEER_CLOSED);
    ASSERT_EQ(v.disconnected, 1);
    ASSERT_EQ(lsock_socket_write(s, "x", 1), -1);
    lsock_socket_free(s);
    lsock_server_free(srv);
    raw_close(pfd[0]);
    raw_close(pfd[1]);
    if (loop) ASSERT(lsock_loop_free(loop));
}

TEST(sigpipe_default_write_to_killed_peer_on_the_loop_ends_peer_closed)
{
    write_to_killed_peer(1);
}

TEST(sigpipe_default_write_to_killed_peer_blocking_ends_peer_closed)
{
    write_to_killed_peer(0);
}

TEST_MAIN()
