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

static bool ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && strcmp(s + n - m, suffix) == 0;
}

static void check_name(const char *name, const char *want)
{
    char *got = lsock__name_resolve(name);
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
    lsock_socket_disconnect(c);
    ASSERT_EQ(lsock_socket_state(c), LSOCK_UNCONNECTED);
    while (lsock_socket_wait_for_ready_read(p, 5000)) {
    }
    ASSERT_EQ(lsock_socket_bytes_available(p), (int64_t)n);
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

TEST_MAIN()
