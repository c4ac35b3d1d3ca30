/*
 * What only Windows does (named pipes): pipe names, pipe instances kept waiting for bursts,
 * ERROR_PIPE_BUSY retried until the connect timeout, access options as a DACL, peer process
 * ids, and what Windows cannot do behaving as Qt documents it. Built on Windows only.
 */
#include "test.h"
#include "internal.h"
#include "loop_util.h"

#define WIN32_LEAN_AND_MEAN
#include <windows.h>
#include <aclapi.h>

static bool ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && strcmp(s + n - m, suffix) == 0;
}

static void check_name(const char *name, const char *want)
{
    char *got = NULL, why[320];
    ASSERT_EQ(lsock__name_resolve(name, 0, &got, why, sizeof why), 0);
    ASSERT_STR_EQ(got, want);
    free(got);
}

TEST(win_bare_name_maps_to_pipe_namespace)
{
    check_name("app", "\\\\.\\pipe\\app");
    check_name("sub/app", "\\\\.\\pipe\\sub/app");
    check_name("/tmp/app", "\\\\.\\pipe\\/tmp/app");
}

TEST(win_name_with_pipe_prefix_is_used_as_is)
{
    check_name("\\\\.\\pipe\\app", "\\\\.\\pipe\\app");
}

TEST(win_full_server_names_are_pipe_paths_and_prefix_meets_bare)
{
    const char *name = test_name("full");
    lsock_server *srv = lsock_server_new(NULL);
    ASSERT(lsock_server_listen(srv, name));
    ASSERT(strncmp(lsock_server_full_server_name(srv), "\\\\.\\pipe\\", 9) == 0);
    ASSERT(ends_with(lsock_server_full_server_name(srv), name));
    lsock_socket *s = lsock_socket_new(NULL);
    ASSERT(lsock_socket_connect(s, lsock_server_full_server_name(srv), LSOCK_READ_WRITE));
    ASSERT_STR_EQ(lsock_socket_full_server_name(s), lsock_server_full_server_name(srv));
    ASSERT(lsock_server_wait_for_new_connection(srv, 5000, NULL));
    lsock_socket_free(s);
    lsock_server_free(srv);
}

TEST(win_second_listen_on_a_live_name_fails_address_in_use)
{
    const char *name = test_name("twice");
    lsock_server *a = lsock_server_new(NULL), *b = lsock_server_new(NULL);
    ASSERT(lsock_server_listen(a, name));
    ASSERT(!lsock_server_listen(b, name));
    ASSERT_ERR(lsock_server_error(b), LSOCK_ERR_ADDRESS_IN_USE);
    lsock_server_close(a);
    ASSERT(lsock_server_listen(b, name)); /* the pipe went with its last handle */
    lsock_server_free(a);
    lsock_server_free(b);
}

TEST(win_remove_server_has_nothing_to_remove_and_returns_true)
{
    const char *name = test_name("remove");
    ASSERT(lsock_remove_server(name));
    lsock_server *srv = lsock_server_new(NULL);
    ASSERT(lsock_server_listen(srv, name));
    ASSERT(lsock_remove_server(name)); /* Qt: does nothing on Windows */
    lsock_socket *s = lsock_socket_new(NULL);
    ASSERT(lsock_socket_connect(s, name, LSOCK_READ_WRITE));
    ASSERT_EQ(lsock_socket_state(s), LSOCK_CONNECTED);
    lsock_socket_free(s);
    lsock_server_free(srv);
}

TEST(win_connect_to_missing_pipe_fails_server_not_found)
{
    lsock_socket *s = lsock_socket_new(NULL);
    ASSERT(!lsock_socket_connect(s, test_name("missing"), LSOCK_READ_WRITE));
    ASSERT_ERR(lsock_socket_error(s), LSOCK_ERR_SERVER_NOT_FOUND);
    lsock_socket_free(s);
}

TEST(win_name_limit_is_256_characters_with_the_prefix)
{
    char name[300];
    memset(name, 'w', 248); /* 9 + 248 = 257 */
    name[248] = '\0';
    lsock_server *srv = lsock_server_new(NULL);
    ASSERT(!lsock_server_listen(srv, name));
    ASSERT_ERR(lsock_server_error(srv), LSOCK_ERR_SERVER_NOT_FOUND);
    ASSERT(strstr(lsock_server_error_string(srv), "256") != NULL);
    lsock_socket *s = lsock_socket_new(NULL);
    ASSERT(!lsock_socket_connect(s, name, LSOCK_READ_WRITE));
    ASSERT_ERR(lsock_socket_error(s), LSOCK_ERR_SERVER_NOT_FOUND);
    snprintf(name, 60, "%s", test_name("x"));
    size_t n = strlen(name);
    memset(name + n, 'w', 247 - n); /* 9 + 247 = 256: fits */
    name[247] = '\0';
    ASSERT(lsock_server_listen(srv, name));
    ASSERT(lsock_socket_connect(s, name, LSOCK_READ_WRITE));
    ASSERT_EQ(lsock_socket_state(s), LSOCK_CONNECTED);
    lsock_socket_free(s);
    lsock_server_free(srv);
}

TEST(win_peer_credentials_give_process_ids_and_no_uid)
{
    const char *name = test_name("cred");
    lsock_server *srv = lsock_server_new(NULL);
    ASSERT(lsock_server_listen(srv, name));
    lsock_socket *c = lsock_socket_new(NULL);
    ASSERT(lsock_socket_connect(c, name, LSOCK_READ_WRITE));
    ASSERT(lsock_server_wait_for_new_connection(srv, 5000, NULL));
    lsock_socket *p = lsock_server_next_pending_connection(srv);
    lsock_credentials cr;
    ASSERT(lsock_socket_peer_credentials(p, &cr));
    ASSERT_EQ(cr.pid, (int64_t)GetCurrentProcessId());
    ASSERT_EQ(cr.uid, -1);
    ASSERT_EQ(cr.gid, -1);
    ASSERT(lsock_socket_peer_credentials(c, &cr));
    ASSERT_EQ(cr.pid, (int64_t)GetCurrentProcessId());
    lsock_socket_free(c);
    lsock_socket_free(p);
    lsock_server_free(srv);
}

TEST(win_burst_of_clients_finds_backlog_instances_waiting)
{
    const char *name = test_name("burst");
    lsock_loop *loop = lsock_loop_new();
    lsock_server *srv = lsock_server_new(loop);
    ASSERT(lsock_server_set_listen_backlog_size(srv, 40));
    ASSERT(lsock_server_set_max_pending_connections(srv, 100));
    ASSERT(lsock_server_listen(srv, name));
    lsock_socket *c[40];
    for (int i = 0; i < 40; i++) { /* the loop does not run: every instance waits already */
        c[i] = lsock_socket_new(loop);
        ASSERT(lsock_socket_connect(c[i], name, LSOCK_READ_WRITE));
        ASSERT_EQ(lsock_socket_state(c[i]), LSOCK_CONNECTED);
    }
    int got = 0;
    uint64_t dl = test_now_ms() + 10000;
    while (got < 40 && test_now_ms() < dl) {
        lsock_loop_run(loop, LSOCK_RUN_NOWAIT);
        lsock_socket *p;
        while ((p = lsock_server_next_pending_connection(srv)) != NULL) {
            got++;
            lsock_socket_free(p);
        }
        Sleep(1);
    }
    ASSERT_EQ(got, 40);
    for (int i = 0; i < 40; i++)
        lsock_socket_free(c[i]);
    lsock_server_free(srv);
    ASSERT(lsock_loop_free(loop));
}

TEST(win_busy_pipe_stays_connecting_and_connects_once_an_instance_frees)
{
    const char *name = test_name("busy");
    lsock_loop *loop = lsock_loop_new();
    lsock_timer *tick = lsock_timer_new(loop, tick_cb, NULL);
    lsock_timer_start(tick, 10, 10);
    lsock_server *srv = lsock_server_new(loop);
    ASSERT(lsock_server_set_listen_backlog_size(srv, 1));
    ASSERT(lsock_server_listen(srv, name));
    lsock_socket *a = lsock_socket_new(loop), *b = lsock_socket_new(loop);
    ASSERT(lsock_socket_connect(a, name, LSOCK_READ_WRITE));
    ASSERT_EQ(lsock_socket_state(a), LSOCK_CONNECTED);
    ASSERT(lsock_socket_connect(b, name, LSOCK_READ_WRITE)); /* ERROR_PIPE_BUSY */
    ASSERT_EQ(lsock_socket_state(b), LSOCK_CONNECTING);
    /* The loop accepts a, which puts a fresh instance in place; b's retry finds it. */
    RUN_UNTIL(loop, lsock_socket_state(b) == LSOCK_CONNECTED, 10000);
    lsock_socket_free(a);
    lsock_socket_free(b);
    lsock_server_free(srv);
    lsock_timer_free(tick);
    ASSERT(lsock_loop_free(loop));
}

TEST(win_busy_pipe_times_out_after_the_connect_timeout)
{
    const char *name = test_name("busyto");
    lsock_server *srv = lsock_server_new(NULL); /* never accepts */
    ASSERT(lsock_server_set_listen_backlog_size(srv, 1));
    ASSERT(lsock_server_listen(srv, name));
    lsock_socket *a = lsock_socket_new(NULL), *b = lsock_socket_new(NULL);
    ASSERT(lsock_socket_connect(a, name, LSOCK_READ_WRITE));
    ASSERT(lsock_socket_set_connect_timeout(b, 200));
    ASSERT(lsock_socket_connect(b, name, LSOCK_READ_WRITE));
    ASSERT_EQ(lsock_socket_state(b), LSOCK_CONNECTING);
    uint64_t start = test_now_ms();
    ASSERT(!lsock_socket_wait_for_connected(b, 5000));
    ASSERT_ERR(lsock_socket_error(b), LSOCK_ERR_SOCKET_TIMEOUT);
    ASSERT(test_now_ms() - start < 4000);
    ASSERT_EQ(lsock_socket_state(b), LSOCK_UNCONNECTED);
    lsock_socket_free(a);
    lsock_socket_free(b);
    lsock_server_free(srv);
}

TEST(win_access_options_become_a_dacl_the_owner_passes)
{
    const unsigned opts[] = {LSOCK_USER_ACCESS, LSOCK_USER_ACCESS | LSOCK_GROUP_ACCESS,
                             LSOCK_WORLD_ACCESS};
    for (size_t i = 0; i < sizeof opts / sizeof opts[0]; i++) {
        const char *name = test_name("dacl");
        lsock_server *srv = lsock_server_new(NULL);
        ASSERT(lsock_server_set_socket_options(srv, opts[i]));
        ASSERT(lsock_server_listen(srv, name));
        lsock_socket *s = lsock_socket_new(NULL);
        ASSERT(lsock_socket_connect(s, name, LSOCK_READ_WRITE));
        ASSERT(lsock_server_wait_for_new_connection(srv, 5000, NULL));
        lsock_socket *p = lsock_server_next_pending_connection(srv);
        ASSERT(lsock_socket_write(s, "x", 1) == 1);
        ASSERT(lsock_socket_wait_for_ready_read(p, 5000));
        lsock_socket_free(p);
        lsock_socket_free(s);
        lsock_server_free(srv);
    }
}

TEST(win_abstract_namespace_is_ignored_as_qt_documents)
{
    const char *name = test_name("abstract");
    lsock_server *srv = lsock_server_new(NULL);
    ASSERT(lsock_server_set_socket_options(srv, LSOCK_ABSTRACT_NAMESPACE));
    ASSERT(lsock_server_listen(srv, name));
    lsock_socket *s = lsock_socket_new(NULL);
    ASSERT(lsock_socket_set_options(s, LSOCK_ABSTRACT_NAMESPACE));
    ASSERT(lsock_socket_connect(s, name, LSOCK_READ_WRITE));
    ASSERT_EQ(lsock_socket_state(s), LSOCK_CONNECTED);
    lsock_socket_free(s);
    lsock_server_free(srv);
}

TEST(win_set_descriptor_adopts_connected_pipe_handles)
{
    wchar_t wname[128];
    swprintf(wname, 128, L"\\\\.\\pipe\\lsock-adopt-%lu", (unsigned long)GetCurrentProcessId());
    HANDLE srv =
        CreateNamedPipeW(wname, PIPE_ACCESS_DUPLEX | FILE_FLAG_OVERLAPPED,
                         PIPE_TYPE_BYTE | PIPE_READMODE_BYTE | PIPE_WAIT, 1, 65536, 65536, 0, NULL);
    ASSERT(srv != INVALID_HANDLE_VALUE);
    HANDLE cli = CreateFileW(wname, GENERIC_READ | GENERIC_WRITE, 0, NULL, OPEN_EXISTING,
                             FILE_FLAG_OVERLAPPED, NULL);
    ASSERT(cli != INVALID_HANDLE_VALUE);
    OVERLAPPED ov;
    memset(&ov, 0, sizeof ov);
    ov.hEvent = CreateEventW(NULL, TRUE, FALSE, NULL);
    ASSERT(!ConnectNamedPipe(srv, &ov));
    ASSERT_EQ(GetLastError(), ERROR_PIPE_CONNECTED);
    CloseHandle(ov.hEvent);

    lsock_socket *a = lsock_socket_new(NULL), *b = lsock_socket_new(NULL);
    ASSERT(lsock_socket_set_descriptor(a, (intptr_t)srv, LSOCK_CONNECTED, LSOCK_READ_WRITE));
    ASSERT(lsock_socket_set_descriptor(b, (intptr_t)cli, LSOCK_CONNECTED, LSOCK_READ_WRITE));
    ASSERT_EQ(lsock_socket_state(a), LSOCK_CONNECTED);
    ASSERT_EQ(lsock_socket_descriptor(a), (intptr_t)srv); /* the HANDLE itself */
    ASSERT_EQ(lsock_socket_descriptor(b), (intptr_t)cli);
    ASSERT_EQ(lsock_socket_write(b, "ping\n", 5), 5);
    ASSERT(lsock_socket_wait_for_ready_read(a, 5000));
    char line[16];
    ASSERT_EQ(lsock_socket_read_line(a, line, sizeof line), 5);
    ASSERT_STR_EQ(line, "ping\n");
    ASSERT_EQ(lsock_socket_write(a, "pong\n", 5), 5);
    ASSERT(lsock_socket_wait_for_ready_read(b, 5000));
    ASSERT_EQ(lsock_socket_read_line(b, line, sizeof line), 5);
    ASSERT_STR_EQ(line, "pong\n");
    {
        lsock_credentials cr;
        ASSERT(lsock_socket_peer_credentials(a, &cr));
        ASSERT_EQ(cr.pid, (int64_t)GetCurrentProcessId());
    }
    lsock_socket_free(b); /* closes the client HANDLE */
    ASSERT(lsock_socket_wait_for_disconnected(a, 5000));
    ASSERT_ERR(lsock_socket_error(a), LSOCK_ERR_PEER_CLOSED);
    lsock_socket_free(a);
}

TEST(win_set_descriptor_rejects_what_is_not_a_connected_pipe)
{
    lsock_socket *s = lsock_socket_new(NULL);
    ASSERT(!lsock_socket_set_descriptor(s, -1, LSOCK_CONNECTED, LSOCK_READ_WRITE));
    ASSERT_ERR(lsock_socket_error(s), LSOCK_ERR_UNSUPPORTED_OPERATION);
    wchar_t path[MAX_PATH], file[MAX_PATH];
    ASSERT(GetTempPathW(MAX_PATH, path) > 0);
    ASSERT(GetTempFileNameW(path, L"lsk", 0, file) != 0);
    HANDLE f = CreateFileW(file, GENERIC_READ | GENERIC_WRITE, 0, NULL, CREATE_ALWAYS,
                           FILE_FLAG_DELETE_ON_CLOSE, NULL);
    ASSERT(f != INVALID_HANDLE_VALUE);
    ASSERT(!lsock_socket_set_descriptor(s, (intptr_t)f, LSOCK_CONNECTED, LSOCK_READ_WRITE));
    ASSERT_ERR(lsock_socket_error(s), LSOCK_ERR_UNSUPPORTED_OPERATION);
    ASSERT_EQ(lsock_socket_state(s), LSOCK_UNCONNECTED);
    CloseHandle(f); /* still the caller's: lsock left it alone */
    lsock_socket_free(s);
}

TEST(win_listen_descriptor_is_unsupported)
{
    lsock_server *srv = lsock_server_new(NULL);
    ASSERT(!lsock_server_listen_descriptor(srv, 4));
    ASSERT_ERR(lsock_server_error(srv), LSOCK_ERR_UNSUPPORTED_OPERATION);
    ASSERT(!lsock_server_is_listening(srv));
    lsock_server_free(srv);
}

TEST(win_data_written_before_close_reaches_the_peer)
{
    const char *name = test_name("linger");
    lsock_server *srv = lsock_server_new(NULL);
    ASSERT(lsock_server_listen(srv, name));
    lsock_socket *c = lsock_socket_new(NULL);
    ASSERT(lsock_socket_connect(c, name, LSOCK_READ_WRITE));
    ASSERT(lsock_server_wait_for_new_connection(srv, 5000, NULL));
    lsock_socket *p = lsock_server_next_pending_connection(srv);
    /* More than the pipe buffer, less than one write chunk: the write is still in flight
     * when the close comes, and its bytes must get through all the same. */
    size_t n = 200000;
    char *buf = malloc(n);
    for (size_t i = 0; i < n; i++)
        buf[i] = (char)(i % 251);
    ASSERT_EQ(lsock_socket_write(c, buf, (int64_t)n), (int64_t)n);
    ASSERT_EQ(lsock_socket_bytes_to_write(c), 0);
    /* The write in flight keeps the socket CLOSING, as Qt's pipe writer does: a process that
     * ended now would lose it. */
    lsock_socket_disconnect(c);
    ASSERT_EQ(lsock_socket_state(c), LSOCK_CLOSING);
    uint64_t dl = test_now_ms() + 5000;
    while (lsock_socket_bytes_available(p) < (int64_t)n && test_now_ms() < dl)
        lsock_socket_wait_for_ready_read(p, 1000);
    ASSERT_EQ(lsock_socket_bytes_available(p), (int64_t)n);
    ASSERT(lsock_socket_wait_for_disconnected(c, 5000));
    ASSERT_EQ(lsock_socket_state(c), LSOCK_UNCONNECTED);
    ASSERT(!lsock_socket_wait_for_ready_read(p, 5000));
    char *out = malloc(n);
    ASSERT_EQ(lsock_socket_read(p, out, (int64_t)n), (int64_t)n);
    ASSERT(memcmp(out, buf, n) == 0);
    ASSERT_ERR(lsock_socket_error(p), LSOCK_ERR_PEER_CLOSED);
    free(buf);
    free(out);
    lsock_socket_free(c);
    lsock_socket_free(p);
    lsock_server_free(srv);
}

/* ---- the lifetime of overlapped I/O ------------------------------------------------------ */

/* Every heap of the process passes HeapValidate: a completion written into freed memory (an
 * OVERLAPPED or a read buffer) corrupts the heap's free lists, which this finds. */
static void assert_heaps_valid(void)
{
    HANDLE heaps[256];
    DWORD n = GetProcessHeaps(256, heaps);
    ASSERT(n > 0 && n <= 256);
    for (DWORD i = 0; i < n; i++)
        ASSERT(HeapValidate(heaps[i], 0, NULL));
}

typedef struct handoff {
    lsock_socket *volatile s;
    HANDLE go, done; /* auto-reset */
    volatile LONG handed, freed, stop;
} handoff;

/* Spins until *flag is set, making no system call: under Wine a thread takes the completion of
 * its overlapped I/O (data and status) only when it waits, so a read this thread started
 * cannot complete before the other thread has freed the socket. */
static void spin_until(volatile LONG *flag)
{
    uint64_t dl = test_now_ms() + 10000;
    while (!InterlockedCompareExchange(flag, 0, 0))
        if (test_now_ms() > dl) FAIL_("the other thread never answered");
}

/* The first thread of each round: starts a read on the loop-less socket that stays pending
 * (nothing has arrived yet) and a write that completes at once, and hands the socket over. */
static DWORD WINAPI start_read_then_hand_off(LPVOID arg)
{
    handoff *h = arg;
    for (;;) {
        WaitForSingleObject(h->go, INFINITE);
        if (h->stop) break;
        lsock_socket *s = h->s;
        if (lsock_socket_wait_for_ready_read(s, 0)) FAIL_("nothing was sent yet");
        if (lsock_socket_error(s) != LSOCK_ERR_SOCKET_TIMEOUT) FAIL_("wait_for_ready_read(0)");
        if (lsock_socket_write(s, "x", 1) != 1) FAIL_("write");
        InterlockedExchange(&h->handed, 1);
        spin_until(&h->freed);
        SetEvent(h->done); /* and waits: the read's completion arrives now */
    }
    return 0;
}

TEST(read_started_on_one_thread_and_socket_freed_on_another_never_touches_freed_memory)
{
    const char *name = test_name("handoff");
    lsock_server *srv = lsock_server_new(NULL);
    ASSERT(lsock_server_listen(srv, name));
    handoff h = {0};
    h.go = CreateEventW(NULL, FALSE, FALSE, NULL);
    h.done = CreateEventW(NULL, FALSE, FALSE, NULL);
    HANDLE t = CreateThread(NULL, 0, start_read_then_hand_off, &h, 0, NULL);
    ASSERT(h.go && h.done && t);
    char data[4096];
    memset(data, 'd', sizeof data);
    for (int round = 0; round < 200; round++) {
        lsock_socket *c = lsock_socket_new(NULL);
        ASSERT(lsock_socket_connect(c, name, LSOCK_READ_WRITE));
        ASSERT(lsock_server_wait_for_new_connection(srv, 5000, NULL));
        lsock_socket *p = lsock_server_next_pending_connection(srv);
        ASSERT(p != NULL);
        h.s = c;
        h.handed = h.freed = 0;
        SetEvent(h.go);
        spin_until(&h.handed);
        /* The socket is this thread's now (one thread at a time). Data on its way completes
         * the read that the other thread started, while this thread frees the socket. */
        ASSERT_EQ(lsock_socket_write(p, data, (int64_t)sizeof data), (int64_t)sizeof data);
        lsock_socket_free(c);
        InterlockedExchange(&h.freed, 1);
        ASSERT_EQ(WaitForSingleObject(h.done, 5000), WAIT_OBJECT_0);
        char x;
        ASSERT(lsock_socket_wait_for_ready_read(p, 5000));
        ASSERT_EQ(lsock_socket_read(p, &x, 1), 1);
        ASSERT_EQ(x, 'x');
        lsock_socket_free(p);
        assert_heaps_valid();
    }
    h.stop = 1;
    SetEvent(h.go);
    ASSERT_EQ(WaitForSingleObject(t, 5000), WAIT_OBJECT_0);
    CloseHandle(t);
    CloseHandle(h.go);
    CloseHandle(h.done);
    lsock_server_free(srv);
    assert_heaps_valid();
}

/* Writes n bytes that stay in flight (more than the pipe's buffer, less than one write of the
 * platform layer): write() takes them all and nothing stays queued in lsock. */
static void write_in_flight(lsock_socket *s, size_t n)
{
    char *buf = malloc(n);
    ASSERT(buf != NULL);
    for (size_t i = 0; i < n; i++)
        buf[i] = (char)(i % 251);
    ASSERT_EQ(lsock_socket_write(s, buf, (int64_t)n), (int64_t)n);
    ASSERT_EQ(lsock_socket_bytes_to_write(s), 0);
    free(buf);
}

/* Listens on name again within ms: the name is free once every handle of the old pipe is
 * closed. Fails the test if it stays taken. */
static void listen_again_within(const char *name, int ms)
{
    lsock_server *srv = lsock_server_new(NULL);
    uint64_t dl = test_now_ms() + (uint64_t)ms;
    while (!lsock_server_listen(srv, name)) {
        ASSERT_ERR(lsock_server_error(srv), LSOCK_ERR_ADDRESS_IN_USE);
        if (test_now_ms() > dl) FAIL_("the name stayed taken for %d ms", ms);
        Sleep(10);
    }
    lsock_server_free(srv);
}

TEST(both_ends_closing_with_writes_in_flight_free_the_name)
{
    const char *name = test_name("bothw");
    lsock_server *srv = lsock_server_new(NULL);
    ASSERT(lsock_server_listen(srv, name));
    lsock_socket *c = lsock_socket_new(NULL);
    ASSERT(lsock_socket_connect(c, name, LSOCK_READ_WRITE));
    ASSERT(lsock_server_wait_for_new_connection(srv, 5000, NULL));
    lsock_socket *p = lsock_server_next_pending_connection(srv);
    ASSERT(p != NULL);
    /* Neither end reads: each write waits for the other end. */
    write_in_flight(c, 200000);
    write_in_flight(p, 200000);
    lsock_socket_disconnect(c);
    ASSERT_EQ(lsock_socket_state(c), LSOCK_CLOSING); /* its write is in flight */
    lsock_socket_free(c);
    lsock_socket_free(p);
    lsock_server_free(srv);
    /* A lingering end reads (and drops) what comes in, so both writes complete and both
     * handles close: the name is free again. */
    listen_again_within(name, 10000);
}

/* A raw client of name's pipe that never reads (a synchronous handle). */
static HANDLE raw_client(const char *name)
{
    wchar_t w[300];
    char *path = NULL, why[320];
    ASSERT_EQ(lsock__name_resolve(name, 0, &path, why, sizeof why), 0);
    ASSERT(MultiByteToWideChar(CP_UTF8, 0, path, -1, w, 300) > 0);
    free(path);
    HANDLE h = CreateFileW(w, GENERIC_READ | GENERIC_WRITE, 0, NULL, OPEN_EXISTING, 0, NULL);
    ASSERT(h != INVALID_HANDLE_VALUE);
    return h;
}

/* Waits up to ms for the other end of raw to be closed: a byte written to a pipe whose other
 * end is gone fails. Returns the milliseconds it took. */
static uint64_t wait_other_end_closed(HANDLE raw, int ms)
{
    uint64_t start = test_now_ms(), dl = start + (uint64_t)ms;
    for (;;) {
        DWORD n = 0;
        if (!WriteFile(raw, "y", 1, &n, NULL)) {
            DWORD e = GetLastError();
            if (e != ERROR_NO_DATA && e != ERROR_BROKEN_PIPE && e != ERROR_PIPE_NOT_CONNECTED)
                FAIL_("WriteFile failed with %lu", (unsigned long)e);
            return test_now_ms() - start;
        }
        if (test_now_ms() > dl) FAIL_("the other end stayed open for %d ms", ms);
        Sleep(10);
    }
}

TEST(peer_that_never_reads_does_not_pin_a_freed_end_past_its_linger_time)
{
    const char *name = test_name("noread");
    lsock_server *srv = lsock_server_new(NULL);
    ASSERT(lsock_server_listen(srv, name));
    HANDLE raw = raw_client(name);
    ASSERT(lsock_server_wait_for_new_connection(srv, 5000, NULL));
    lsock_socket *p = lsock_server_next_pending_connection(srv);
    ASSERT(p != NULL);
    lsock_socket_set_linger(p, 200);
    write_in_flight(p, 200000);
    lsock_socket_disconnect(p);
    ASSERT_EQ(lsock_socket_state(p), LSOCK_CLOSING); /* its write is in flight */
    lsock_socket_free(p);
    lsock_server_free(srv);
    /* The peer never reads: the end lingers for its write up to the linger time, then the
     * write is cancelled and the handle closed. */
    uint64_t took = wait_other_end_closed(raw, 10000);
    ASSERT(took < 5000);
    CloseHandle(raw);
}

TEST(abort_cancels_a_write_in_flight_at_once)
{
    const char *name = test_name("abortw");
    lsock_server *srv = lsock_server_new(NULL);
    ASSERT(lsock_server_listen(srv, name));
    HANDLE raw = raw_client(name);
    ASSERT(lsock_server_wait_for_new_connection(srv, 5000, NULL));
    lsock_socket *p = lsock_server_next_pending_connection(srv);
    ASSERT(p != NULL);
    write_in_flight(p, 200000);
    lsock_socket_abort(p); /* default linger (-1): only the abort ends the write */
    ASSERT_EQ(lsock_socket_state(p), LSOCK_UNCONNECTED);
    uint64_t took = wait_other_end_closed(raw, 10000);
    ASSERT(took < 2000);
    lsock_socket_free(p);
    lsock_server_free(srv);
    CloseHandle(raw);
}

/* ---- pipe instances --------------------------------------------------------------------- */

static int new_connections;

static void count_connection(lsock_server *srv, void *u)
{
    (void)srv;
    (void)u;
    new_connections++;
}

TEST(server_whose_instance_refill_failed_accepts_again_once_resources_return)
{
    const char *name = test_name("refill");
    lsock_loop *loop = loop_new();
    lsock_server *srv = lsock_server_new(loop);
    new_connections = 0;
    lsock_server_set_new_connection_callback(srv, count_connection, NULL);
    ASSERT(lsock_server_set_listen_backlog_size(srv, 1));
    ASSERT(lsock_server_listen(srv, name));
    /* Handles run out: the instance handed to the first client cannot be replaced. */
    lsock__test_pipe_instance_fail = EMFILE;
    lsock_socket *a = lsock_socket_new(loop);
    ASSERT(lsock_socket_connect(a, name, LSOCK_READ_WRITE));
    RUN_UNTIL(loop, new_connections == 1, 5000);
    ASSERT(lsock_server_is_listening(srv));
    /* Nothing waits for a client now: a new one finds the pipe busy and keeps retrying. */
    lsock_socket *b = lsock_socket_new(loop);
    ASSERT(lsock_socket_connect(b, name, LSOCK_READ_WRITE));
    ASSERT_EQ(lsock_socket_state(b), LSOCK_CONNECTING);
    run_for(loop, 300);
    ASSERT_EQ(lsock_socket_state(b), LSOCK_CONNECTING);
    /* Resources return: the server's retry makes an instance, and b gets in. */
    lsock__test_pipe_instance_fail = 0;
    RUN_UNTIL(loop, new_connections == 2 && lsock_socket_state(b) == LSOCK_CONNECTED, 5000);
    /* The server said why it could not accept meanwhile, as when out of descriptors on Unix. */
    ASSERT_ERR(lsock_server_error(srv), LSOCK_ERR_SOCKET_RESOURCE);
    ASSERT(strstr(lsock_server_error_string(srv), "handles") != NULL);
    lsock_socket *pa = lsock_server_next_pending_connection(srv);
    lsock_socket *pb = lsock_server_next_pending_connection(srv);
    ASSERT(pa != NULL && pb != NULL);
    ASSERT_EQ(lsock_socket_write(b, "b", 1), 1);
    RUN_UNTIL(loop, lsock_socket_bytes_available(pb) == 1, 5000);
    lsock_socket_free(pa);
    lsock_socket_free(pb);
    lsock_socket_free(a);
    lsock_socket_free(b);
    lsock_server_free(srv);
    loop_free(loop);
}

TEST(wait_for_new_connection_reports_a_failed_instance_refill_and_recovers)
{
    const char *name = test_name("refillw");
    lsock_server *srv = lsock_server_new(NULL);
    ASSERT(lsock_server_set_listen_backlog_size(srv, 1));
    ASSERT(lsock_server_listen(srv, name));
    lsock__test_pipe_instance_fail = ENOMEM;
    lsock_socket *a = lsock_socket_new(NULL);
    ASSERT(lsock_socket_connect(a, name, LSOCK_READ_WRITE));
    ASSERT(lsock_server_wait_for_new_connection(srv, 5000, NULL));
    lsock_socket *pa = lsock_server_next_pending_connection(srv);
    ASSERT(pa != NULL);
    /* No instance waits: the wait reports why, and times out, without spinning. */
    bool timed_out = false;
    ASSERT(!lsock_server_wait_for_new_connection(srv, 300, &timed_out));
    ASSERT(timed_out);
    ASSERT_ERR(lsock_server_error(srv), LSOCK_ERR_SOCKET_RESOURCE);
    lsock__test_pipe_instance_fail = 0;
    /* The next wait makes the instance; a client that connects then is accepted. */
    ASSERT(!lsock_server_wait_for_new_connection(srv, 200, &timed_out));
    ASSERT(timed_out);
    lsock_socket *b = lsock_socket_new(NULL);
    ASSERT(lsock_socket_connect(b, name, LSOCK_READ_WRITE));
    ASSERT_EQ(lsock_socket_state(b), LSOCK_CONNECTED);
    ASSERT(lsock_server_wait_for_new_connection(srv, 5000, NULL));
    lsock_socket *pb = lsock_server_next_pending_connection(srv);
    ASSERT(pb != NULL);
    lsock_socket_free(pa);
    lsock_socket_free(pb);
    lsock_socket_free(a);
    lsock_socket_free(b);
    lsock_server_free(srv);
}

typedef struct clients {
    const char *name;
    lsock_socket *c[100];
} clients;

static DWORD WINAPI connect_clients(LPVOID arg)
{
    clients *cl = arg;
    for (int i = 0; i < 100; i++) {
        cl->c[i] = lsock_socket_new(NULL);
        if (!lsock_socket_connect(cl->c[i], cl->name, LSOCK_READ_WRITE)) FAIL_("connect %d", i);
        if (!lsock_socket_wait_for_connected(cl->c[i], 5000)) FAIL_("connected %d", i);
    }
    return 0;
}

TEST(wait_for_new_connection_sees_clients_of_more_instances_than_one_wait_takes)
{
    clients cl = {test_name("many"), {0}};
    lsock_server *srv = lsock_server_new(NULL);
    ASSERT(lsock_server_set_listen_backlog_size(srv, 100)); /* WaitForMultipleObjects: 64 */
    ASSERT(lsock_server_set_max_pending_connections(srv, 100));
    ASSERT(lsock_server_listen(srv, cl.name));
    HANDLE t = CreateThread(NULL, 0, connect_clients, &cl, 0, NULL);
    ASSERT(t != NULL);
    int got = 0;
    while (got < 100) { /* clients arrive while the server waits */
        ASSERT(lsock_server_wait_for_new_connection(srv, 5000, NULL));
        lsock_socket *p;
        while ((p = lsock_server_next_pending_connection(srv)) != NULL) {
            got++;
            lsock_socket_free(p);
        }
    }
    ASSERT_EQ(WaitForSingleObject(t, 10000), WAIT_OBJECT_0);
    CloseHandle(t);
    for (int i = 0; i < 100; i++)
        lsock_socket_free(cl.c[i]);
    lsock_server_free(srv);
}

/* ---- access ------------------------------------------------------------------------------ */

static void *token_info_of(TOKEN_INFORMATION_CLASS cls)
{
    HANDLE tok;
    ASSERT(OpenProcessToken(GetCurrentProcess(), TOKEN_QUERY, &tok));
    DWORD n = 0;
    GetTokenInformation(tok, cls, NULL, 0, &n);
    void *p = malloc(n);
    ASSERT(p && GetTokenInformation(tok, cls, p, n, &n));
    CloseHandle(tok);
    return p;
}

TEST(other_access_does_not_let_everyone_create_pipe_instances)
{
    const unsigned opts[] = {LSOCK_OTHER_ACCESS, LSOCK_GROUP_ACCESS | LSOCK_OTHER_ACCESS,
                             LSOCK_WORLD_ACCESS, LSOCK_GROUP_ACCESS};
    TOKEN_USER *user = token_info_of(TokenUser);
    TOKEN_PRIMARY_GROUP *group = token_info_of(TokenPrimaryGroup);
    BYTE world[SECURITY_MAX_SID_SIZE];
    DWORD wlen = sizeof world;
    ASSERT(CreateWellKnownSid(WinWorldSid, NULL, world, &wlen));
    for (size_t i = 0; i < sizeof opts / sizeof opts[0]; i++) {
        const char *name = test_name("nocreate");
        lsock_server *srv = lsock_server_new(NULL);
        ASSERT(lsock_server_set_socket_options(srv, opts[i]));
        ASSERT(lsock_server_listen(srv, name));
        lsock_socket *c = lsock_socket_new(NULL);
        ASSERT(lsock_socket_connect(c, name, LSOCK_READ_WRITE));
        ASSERT(lsock_server_wait_for_new_connection(srv, 5000, NULL));
        lsock_socket *p = lsock_server_next_pending_connection(srv);
        ASSERT(p != NULL);
        PACL dacl = NULL;
        PSECURITY_DESCRIPTOR sd = NULL;
        ASSERT_EQ(GetSecurityInfo((HANDLE)lsock_socket_descriptor(p), SE_KERNEL_OBJECT,
                                  DACL_SECURITY_INFORMATION, NULL, NULL, &dacl, NULL, &sd),
                  ERROR_SUCCESS);
        ASSERT(dacl != NULL);
        int saw_world = 0, saw_group = 0, saw_user = 0;
        for (DWORD a = 0; a < dacl->AceCount; a++) {
            ACCESS_ALLOWED_ACE *ace;
            ASSERT(GetAce(dacl, a, (void **)&ace));
            ASSERT_EQ(ace->Header.AceType, ACCESS_ALLOWED_ACE_TYPE);
            PSID sid = (PSID)&ace->SidStart;
            DWORD mask = ace->Mask;
            if (EqualSid(sid, user->User.Sid)) {
                saw_user = 1; /* the server's own user keeps creating its instances */
                ASSERT((mask & FILE_CREATE_PIPE_INSTANCE) != 0);
                continue;
            }
            /* Anyone else: clients read and write, never add an instance of the pipe. */
            ASSERT_EQ(mask & FILE_CREATE_PIPE_INSTANCE, 0);
            ASSERT_EQ(mask & (FILE_READ_DATA | FILE_WRITE_DATA), FILE_READ_DATA | FILE_WRITE_DATA);
            ASSERT_EQ(mask & (WRITE_DAC | WRITE_OWNER), 0);
            if (EqualSid(sid, (PSID)world)) saw_world = 1;
            if (EqualSid(sid, group->PrimaryGroup)) saw_group = 1;
        }
        ASSERT(saw_user);
        ASSERT_EQ(saw_world, (opts[i] & LSOCK_OTHER_ACCESS) != 0);
        if (!EqualSid(group->PrimaryGroup, user->User.Sid))
            ASSERT_EQ(saw_group, (opts[i] & LSOCK_GROUP_ACCESS) != 0);
        LocalFree(sd);
        /* and the clients of the pipe still read and write */
        ASSERT_EQ(lsock_socket_write(c, "x", 1), 1);
        ASSERT(lsock_socket_wait_for_ready_read(p, 5000));
        ASSERT_EQ(lsock_socket_bytes_available(p), 1);
        lsock_socket_free(c);
        lsock_socket_free(p);
        lsock_server_free(srv);
    }
    free(user);
    free(group);
}

/* ---- names ------------------------------------------------------------------------------- */

TEST(bare_pipe_prefix_and_dot_dot_names_are_refused_invalid_argument)
{
    const char *bad[] = {"\\\\.\\pipe\\",
                         "\\",
                         "\\\\",
                         "/",
                         "..\\x",
                         "../x",
                         "a\\..\\..\\x",
                         "a/../../x",
                         "\\\\.\\pipe\\..\\x",
                         "\\\\.\\pipe\\a\\..",
                         ".."};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        lsock_server *srv = lsock_server_new(NULL);
        if (lsock_server_listen(srv, bad[i])) FAIL_("listen(\"%s\") succeeded", bad[i]);
        if (lsock_server_error(srv) != LSOCK_ERR_INVALID_ARGUMENT)
            FAIL_("listen(\"%s\"): %s, %s", bad[i], lsock_error_name(lsock_server_error(srv)),
                  lsock_server_error_string(srv));
        ASSERT(strstr(lsock_server_error_string(srv), "pipe name") != NULL);
        ASSERT(!lsock_server_is_listening(srv));
        lsock_server_free(srv);
        lsock_socket *s = lsock_socket_new(NULL);
        if (lsock_socket_connect(s, bad[i], LSOCK_READ_WRITE))
            FAIL_("connect(\"%s\") succeeded", bad[i]);
        if (lsock_socket_error(s) != LSOCK_ERR_INVALID_ARGUMENT)
            FAIL_("connect(\"%s\"): %s, %s", bad[i], lsock_error_name(lsock_socket_error(s)),
                  lsock_socket_error_string(s));
        ASSERT(strstr(lsock_socket_error_string(s), "pipe name") != NULL);
        ASSERT_EQ(lsock_socket_state(s), LSOCK_UNCONNECTED);
        lsock_socket_free(s);
    }
    /* Dots inside a component are a name like any other. */
    const char *good = test_name("a..b");
    lsock_server *srv = lsock_server_new(NULL);
    ASSERT(lsock_server_listen(srv, good));
    lsock_socket *s = lsock_socket_new(NULL);
    ASSERT(lsock_socket_connect(s, good, LSOCK_READ_WRITE));
    ASSERT_EQ(lsock_socket_state(s), LSOCK_CONNECTED);
    lsock_socket_free(s);
    lsock_server_free(srv);
}

TEST_MAIN()
