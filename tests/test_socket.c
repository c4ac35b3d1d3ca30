/*
 * Socket behaviour (QLocalSocket): name resolution, connect and its errors, the order of the
 * callbacks, reading and writing, disconnect/abort/close, the read buffer limit, peer
 * credentials, close-on-exec descriptors, adopting descriptors, freeing inside callbacks.
 */
#include "test.h"
#include "lsock.h"

#include <fcntl.h>
#ifndef _WIN32
#include <poll.h>
#endif
#include <pthread.h>
#include <signal.h>
#ifdef _WIN32
#include "win_posix.h" /* the Unix-only calls: a test that reaches one skips */
#else
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#endif
#include <unistd.h>

#include "support.h"

#include "internal.h" /* lsock__test_io_start_fail, lsock__plat_strerror */

/* ---- defaults and names ---------------------------------------------------------------- */

TEST(new_socket_has_documented_defaults)
{
    lsock_loop *loop = loop_new();
    lsock_socket *s = lsock_socket_new(loop);
    ASSERT(s != NULL);
    ASSERT_EQ(lsock_socket_state(s), LSOCK_UNCONNECTED);
    ASSERT_ERR(lsock_socket_error(s), LSOCK_ERR_NONE);
    ASSERT_STR_EQ(lsock_socket_error_string(s), "");
    ASSERT_STR_EQ(lsock_socket_server_name(s), "");
    ASSERT_STR_EQ(lsock_socket_full_server_name(s), "");
    ASSERT_EQ(lsock_socket_descriptor(s), -1);
    ASSERT(!lsock_socket_is_valid(s));
    ASSERT_EQ(lsock_socket_open_mode(s), 0);
    ASSERT_EQ(lsock_socket_read_buffer_size(s), 0);
    ASSERT_EQ(lsock_socket_connect_timeout(s), 30000);
    ASSERT_EQ(lsock_socket_options(s), 0);
    ASSERT(lsock_socket_loop(s) == loop);
    ASSERT(lsock_socket_userdata(s) == NULL);
    ASSERT_EQ(lsock_socket_bytes_available(s), 0);
    ASSERT_EQ(lsock_socket_bytes_to_write(s), 0);
    ASSERT(lsock_socket_at_end(s));
    ASSERT(!lsock_socket_can_read_line(s));
    lsock_socket_free(s);
    loop_free(loop);
}

TEST(set_callbacks_sets_userdata)
{
    lsock_socket *s = lsock_socket_new(NULL);
    ASSERT(s != NULL);
    ASSERT(lsock_socket_loop(s) == NULL);
    int x = 0;
    lsock_socket_set_callbacks(s, &rec_cbs, &x);
    ASSERT(lsock_socket_userdata(s) == &x);
    lsock_socket_set_callbacks(s, NULL, NULL);
    ASSERT(lsock_socket_userdata(s) == NULL);
    lsock_socket_free(s);
}

TEST(connect_timeout_setting_is_kept)
{
    lsock_socket *s = lsock_socket_new(NULL);
    ASSERT(lsock_socket_set_connect_timeout(s, 1234));
    ASSERT_EQ(lsock_socket_connect_timeout(s), 1234);
    lsock_socket_free(s);
}

/* Connects a client to a server listening on name; checks both full names equal want. */
static void check_resolves_to(const char *name, const char *want)
{
    lsock_loop *loop = loop_new();
    lsock_server *srv = lsock_server_new(loop);
    ASSERT(lsock_server_listen(srv, name));
    ASSERT_STR_EQ(lsock_server_full_server_name(srv), want);
    ASSERT(file_exists(want));
    lsock_socket *s = lsock_socket_new(loop);
    ASSERT(lsock_socket_connect(s, name, LSOCK_READ_WRITE));
    ASSERT_EQ(lsock_socket_state(s), LSOCK_CONNECTED);
    ASSERT_STR_EQ(lsock_socket_server_name(s), name);
    ASSERT_STR_EQ(lsock_socket_full_server_name(s), want);
    lsock_socket_free(s);
    lsock_server_free(srv);
    ASSERT(!file_exists(want));
    loop_free(loop);
}

/* On Windows a name is a pipe name, \\.\pipe\NAME, and TMPDIR plays no part (as in Qt): the
 * TMPDIR tests check there that setting it changes nothing. */
#ifdef _WIN32
static void check_tmpdir_is_ignored(const char *tmpdir, const char *tag)
{
    if (tmpdir)
        ASSERT_EQ(_putenv_s("TMPDIR", tmpdir), 0);
    else
        ASSERT_EQ(_putenv_s("TMPDIR", ""), 0);
    const char *name = test_name(tag);
    char want[512];
    snprintf(want, sizeof want, "\\\\.\\pipe\\%s", name);
    check_resolves_to(name, want);
}
#endif

TEST(relative_name_resolves_under_tmpdir)
{
#ifdef _WIN32
    check_tmpdir_is_ignored("C:\\lsock-tmpdir", "rel");
    return;
#endif
    const char *dir = make_tmpdir();
    setenv("TMPDIR", dir, 1);
    const char *name = test_name("rel");
    char want[512];
    snprintf(want, sizeof want, "%s/%s", dir, name);
    check_resolves_to(name, want);
    ASSERT_EQ(rmdir(dir), 0);
}

TEST(tmpdir_trailing_slash_is_not_doubled)
{
#ifdef _WIN32
    check_tmpdir_is_ignored("C:\\lsock-tmpdir\\", "slash");
    return;
#endif
    const char *dir = make_tmpdir();
    char withslash[256];
    snprintf(withslash, sizeof withslash, "%s/", dir);
    setenv("TMPDIR", withslash, 1);
    const char *name = test_name("slash");
    char want[512];
    snprintf(want, sizeof want, "%s/%s", dir, name);
    check_resolves_to(name, want);
    ASSERT_EQ(rmdir(dir), 0);
}

TEST(unset_tmpdir_resolves_under_slash_tmp)
{
#ifdef _WIN32
    check_tmpdir_is_ignored(NULL, "notmp");
    return;
#endif
    unsetenv("TMPDIR");
    const char *name = test_name("notmp");
    char want[512];
    snprintf(want, sizeof want, "/tmp/%s", name);
    check_resolves_to(name, want);
}

TEST(absolute_name_is_used_as_is)
{
#ifdef _WIN32
    SKIP("Windows has no absolute socket paths: \"/x\" is the pipe \\\\.\\pipe\\/x (test_win.c)");
#endif
    const char *dir = make_tmpdir();
    setenv("TMPDIR", "/nonexistent-lsock-dir", 1);
    char name[256];
    snprintf(name, sizeof name, "%s/abs.sock", dir);
    check_resolves_to(name, name);
    ASSERT_EQ(rmdir(dir), 0);
}

TEST(set_server_name_is_used_by_connect_with_null_name)
{
    lsock_loop *loop = loop_new();
    const char *name = test_name("setname");
    lsock_server *srv = lsock_server_new(loop);
    ASSERT(lsock_server_listen(srv, name));
    lsock_socket *s = lsock_socket_new(loop);
    ASSERT(lsock_socket_set_server_name(s, name));
    ASSERT_STR_EQ(lsock_socket_server_name(s), name);
    ASSERT_STR_EQ(lsock_socket_full_server_name(s), path_of(name));
    ASSERT(lsock_socket_connect(s, NULL, LSOCK_READ_WRITE));
    ASSERT_EQ(lsock_socket_state(s), LSOCK_CONNECTED);
    ASSERT_STR_EQ(lsock_socket_full_server_name(s), path_of(name));
    lsock_socket_free(s);
    lsock_server_free(srv);
    loop_free(loop);
}

TEST(names_are_cleared_when_the_connection_ends)
{
    lsock_loop *loop = loop_new();
    pair p;
    pair_open(&p, loop);
    ASSERT_STR_EQ(lsock_socket_server_name(p.client), p.name);
    ASSERT_STR_EQ(lsock_socket_full_server_name(p.client), path_of(p.name));
    ASSERT_STR_EQ(lsock_socket_server_name(p.peer), p.name);
    ASSERT_STR_EQ(lsock_socket_full_server_name(p.peer), path_of(p.name));
    lsock_socket_disconnect(p.client);
    ASSERT_STR_EQ(lsock_socket_server_name(p.client), "");
    ASSERT_STR_EQ(lsock_socket_full_server_name(p.client), "");
    RUN_UNTIL(loop, lsock_socket_state(p.peer) == LSOCK_UNCONNECTED, 5000);
    ASSERT_STR_EQ(lsock_socket_server_name(p.peer), "");
    ASSERT_STR_EQ(lsock_socket_full_server_name(p.peer), "");
    pair_close(&p);
    loop_free(loop);
}

TEST(connect_with_empty_name_fails_server_not_found)
{
    lsock_socket *s = lsock_socket_new(NULL);
    ASSERT(!lsock_socket_connect(s, "", LSOCK_READ_WRITE));
    ASSERT_ERR(lsock_socket_error(s), LSOCK_ERR_SERVER_NOT_FOUND);
    ASSERT(starts_with(lsock_socket_error_string(s), "lsock_socket_connect: "));
    ASSERT_EQ(lsock_socket_state(s), LSOCK_UNCONNECTED);
    lsock_socket_free(s);
}

TEST(connect_with_null_name_and_no_set_name_fails_server_not_found)
{
    lsock_socket *s = lsock_socket_new(NULL);
    ASSERT(!lsock_socket_connect(s, NULL, LSOCK_READ_WRITE));
    ASSERT_ERR(lsock_socket_error(s), LSOCK_ERR_SERVER_NOT_FOUND);
    ASSERT(starts_with(lsock_socket_error_string(s), "lsock_socket_connect: "));
    lsock_socket_free(s);
}

/* An absolute path of exactly len bytes under /tmp. */
static void long_path(char *out, size_t len)
{
    int n = snprintf(out, len + 1, "/tmp/lsock-%ld-", (long)getpid());
    for (size_t i = (size_t)n; i < len; i++)
        out[i] = 'x';
    out[len] = '\0';
}

TEST(connect_with_path_of_108_bytes_fails_server_not_found_naming_the_limit)
{
#ifdef _WIN32
    SKIP("the 107-byte sun_path limit is Unix's; a pipe name's limit is tested in test_win.c");
#endif
    char path[200];
    long_path(path, 108);
    lsock_socket *s = lsock_socket_new(NULL);
    ASSERT(!lsock_socket_connect(s, path, LSOCK_READ_WRITE));
    ASSERT_ERR(lsock_socket_error(s), LSOCK_ERR_SERVER_NOT_FOUND);
    const char *es = lsock_socket_error_string(s);
    ASSERT(starts_with(es, "lsock_socket_connect: "));
    if (!strstr(es, "107") && !strstr(es, "108")) FAIL_("no limit in \"%s\"", es);
    lsock_socket_free(s);
}

TEST(connect_with_path_of_107_bytes_works)
{
#ifdef _WIN32
    SKIP("the 107-byte sun_path limit is Unix's; a pipe name's limit is tested in test_win.c");
#endif
    char path[200];
    long_path(path, 107);
    lsock_loop *loop = loop_new();
    lsock_server *srv = lsock_server_new(loop);
    ASSERT(lsock_server_listen(srv, path));
    lsock_socket *s = lsock_socket_new(loop);
    ASSERT(lsock_socket_connect(s, path, LSOCK_READ_WRITE));
    ASSERT_EQ(lsock_socket_state(s), LSOCK_CONNECTED);
    ASSERT_STR_EQ(lsock_socket_full_server_name(s), path);
    lsock_socket_free(s);
    lsock_server_free(srv);
    loop_free(loop);
    ASSERT(!file_exists(path));
}

/* ---- connect and its errors ------------------------------------------------------------ */

TEST(connect_success_fires_connecting_connected_then_connected)
{
    lsock_loop *loop = loop_new();
    const char *name = test_name("ok");
    lsock_server *srv = lsock_server_new(loop);
    ASSERT(lsock_server_listen(srv, name));
    rec r;
    rec_init(&r);
    lsock_socket *s = lsock_socket_new(loop);
    lsock_socket_set_callbacks(s, &rec_cbs, &r);
    ASSERT(lsock_socket_connect(s, name, LSOCK_READ_WRITE));
    ASSERT_STR_EQ(r.log, "state:CONNECTING state:CONNECTED connected");
    ASSERT_EQ(lsock_socket_state(s), LSOCK_CONNECTED);
    ASSERT(lsock_socket_is_valid(s));
    ASSERT_EQ(lsock_socket_open_mode(s), LSOCK_READ_WRITE);
    ASSERT(lsock_socket_descriptor(s) >= 0);
    ASSERT_ERR(lsock_socket_error(s), LSOCK_ERR_NONE);
    lsock_socket_free(s);
    lsock_server_free(srv);
    loop_free(loop);
}

static void check_connect_failure(const char *name, lsock_error want)
{
    lsock_loop *loop = loop_new();
    rec r;
    rec_init(&r);
    lsock_socket *s = lsock_socket_new(loop);
    lsock_socket_set_callbacks(s, &rec_cbs, &r);
    ASSERT(!lsock_socket_connect(s, name, LSOCK_READ_WRITE));
    ASSERT_ERR(lsock_socket_error(s), want);
    ASSERT(starts_with(lsock_socket_error_string(s), "lsock_socket_connect: "));
    char want_log[256];
    snprintf(want_log, sizeof want_log, "state:CONNECTING error:%s state:UNCONNECTED",
             lsock_error_name(want));
    ASSERT_STR_EQ(r.log, want_log);
    ASSERT_EQ(lsock_socket_state(s), LSOCK_UNCONNECTED);
    ASSERT_EQ(lsock_socket_descriptor(s), -1);
    ASSERT(!lsock_socket_is_valid(s));
    run_for(loop, 30);
    ASSERT_EQ(r.connected, 0);
    ASSERT_EQ(r.disconnected, 0);
    lsock_socket_free(s);
    loop_free(loop);
}

TEST(connect_to_missing_file_fails_server_not_found_with_callbacks)
{
    check_connect_failure(test_name("missing"), LSOCK_ERR_SERVER_NOT_FOUND);
}

TEST(connect_to_stale_socket_file_fails_connection_refused)
{
#ifdef _WIN32
    SKIP("a named pipe is never stale: it goes with its server's last handle");
#endif
    const char *name = test_name("stale");
    make_stale(path_of(name));
    check_connect_failure(name, LSOCK_ERR_CONNECTION_REFUSED);
    unlink(path_of(name));
}

static char g_access_dir[128];

static void connect_in_closed_dir(void)
{
    char path[256];
    snprintf(path, sizeof path, "%s/s", g_access_dir);
    lsock_socket *s = lsock_socket_new(NULL);
    ASSERT(!lsock_socket_connect(s, path, LSOCK_READ_WRITE));
    ASSERT_ERR(lsock_socket_error(s), LSOCK_ERR_SOCKET_ACCESS);
    ASSERT(starts_with(lsock_socket_error_string(s), "lsock_socket_connect: "));
    ASSERT_EQ(lsock_socket_state(s), LSOCK_UNCONNECTED);
    lsock_socket_free(s);
}

TEST(connect_to_socket_in_inaccessible_directory_fails_socket_access)
{
#ifdef _WIN32
    SKIP("a pipe name has no directory whose permissions could refuse a client");
#endif
    snprintf(g_access_dir, sizeof g_access_dir, "%s", make_tmpdir());
    char path[256];
    snprintf(path, sizeof path, "%s/s", g_access_dir);
    int lfd = raw_listener(path, 4);
    ASSERT_EQ(chmod(g_access_dir, 0), 0);
    run_unprivileged(connect_in_closed_dir);
    ASSERT_EQ(chmod(g_access_dir, 0700), 0);
    close(lfd);
    unlink(path);
    rmdir(g_access_dir);
}

TEST(connect_to_full_backlog_times_out_with_socket_timeout)
{
    fullsrv f;
    fullsrv_open(&f, "full");
    const char *name = f.name;
    rec r;
    rec_init(&r);
    lsock_socket *s = lsock_socket_new(NULL);
    lsock_socket_set_callbacks(s, &rec_cbs, &r);
    ASSERT(lsock_socket_set_connect_timeout(s, 200));
    ASSERT(lsock_socket_connect(s, name, LSOCK_READ_WRITE));
    ASSERT_EQ(lsock_socket_state(s), LSOCK_CONNECTING);
    ASSERT_STR_EQ(r.log, "state:CONNECTING");
    uint64_t t0 = test_now_ms();
    ASSERT(!lsock_socket_wait_for_connected(s, 5000));
    uint64_t took = test_now_ms() - t0;
    ASSERT(took < 4000);
    ASSERT_ERR(lsock_socket_error(s), LSOCK_ERR_SOCKET_TIMEOUT);
    ASSERT_EQ(lsock_socket_state(s), LSOCK_UNCONNECTED);
    ASSERT_STR_EQ(r.log, "state:CONNECTING error:SOCKET_TIMEOUT state:UNCONNECTED");
    ASSERT_EQ(r.connected, 0);
    lsock_socket_free(s);
    fullsrv_close(&f);
}

TEST(connect_to_full_backlog_times_out_on_the_loop)
{
    lsock_loop *loop = loop_new();
    fullsrv f;
    fullsrv_open(&f, "fullloop");
    const char *name = f.name;
    rec r;
    rec_init(&r);
    lsock_socket *s = lsock_socket_new(loop);
    lsock_socket_set_callbacks(s, &rec_cbs, &r);
    ASSERT(lsock_socket_set_connect_timeout(s, 200));
    ASSERT(lsock_socket_connect(s, name, LSOCK_READ_WRITE));
    ASSERT_EQ(lsock_socket_state(s), LSOCK_CONNECTING);
    RUN_UNTIL(loop, r.errors > 0, 5000);
    ASSERT_ERR(lsock_socket_error(s), LSOCK_ERR_SOCKET_TIMEOUT);
    ASSERT_EQ(lsock_socket_state(s), LSOCK_UNCONNECTED);
    ASSERT_STR_EQ(r.log, "state:CONNECTING error:SOCKET_TIMEOUT state:UNCONNECTED");
    lsock_socket_free(s);
    fullsrv_close(&f);
    loop_free(loop);
}

TEST(connect_to_full_backlog_succeeds_once_server_accepts)
{
    fullsrv f;
    fullsrv_open(&f, "fullok");
    const char *name = f.name;
    ASSERT(f.n > 0);
    rec r;
    rec_init(&r);
    lsock_socket *s = lsock_socket_new(NULL);
    lsock_socket_set_callbacks(s, &rec_cbs, &r);
    ASSERT(lsock_socket_set_connect_timeout(s, 5000));
    ASSERT(lsock_socket_connect(s, name, LSOCK_READ_WRITE));
    ASSERT_EQ(lsock_socket_state(s), LSOCK_CONNECTING);
    /* The first wait fails (nobody accepts yet)... */
    ASSERT(!lsock_socket_wait_for_connected(s, 100));
    ASSERT_ERR(lsock_socket_error(s), LSOCK_ERR_SOCKET_TIMEOUT);
    ASSERT_EQ(lsock_socket_state(s), LSOCK_CONNECTING);
    /* ...then the server accepts one queued connection, which makes room. */
    raw_fd afd = fullsrv_accept(&f);
    ASSERT(lsock_socket_wait_for_connected(s, 5000));
    ASSERT_EQ(lsock_socket_state(s), LSOCK_CONNECTED);
    ASSERT_STR_EQ(r.log, "state:CONNECTING state:CONNECTED connected");
    lsock_socket_free(s);
    raw_close(afd);
    fullsrv_close(&f);
}

TEST(connect_to_full_backlog_succeeds_on_the_loop_once_server_accepts)
{
    lsock_loop *loop = loop_new();
    fullsrv f;
    fullsrv_open(&f, "fullokloop");
    const char *name = f.name;
    rec r;
    rec_init(&r);
    lsock_socket *s = lsock_socket_new(loop);
    lsock_socket_set_callbacks(s, &rec_cbs, &r);
    ASSERT(lsock_socket_set_connect_timeout(s, 5000));
    ASSERT(lsock_socket_connect(s, name, LSOCK_READ_WRITE));
    ASSERT_EQ(lsock_socket_state(s), LSOCK_CONNECTING);
    run_for(loop, 50);
    ASSERT_EQ(lsock_socket_state(s), LSOCK_CONNECTING);
    raw_fd afd = fullsrv_accept(&f);
    RUN_UNTIL(loop, r.connected > 0, 5000);
    ASSERT_EQ(lsock_socket_state(s), LSOCK_CONNECTED);
    ASSERT_STR_EQ(r.log, "state:CONNECTING state:CONNECTED connected");
    lsock_socket_free(s);
    raw_close(afd);
    fullsrv_close(&f);
    loop_free(loop);
}

TEST(connect_while_connected_fails_operation_and_keeps_connection)
{
    lsock_loop *loop = loop_new();
    pair p;
    pair_open(&p, loop);
    int64_t fd = lsock_socket_descriptor(p.client);
    ASSERT(!lsock_socket_connect(p.client, p.name, LSOCK_READ_WRITE));
    ASSERT_ERR(lsock_socket_error(p.client), LSOCK_ERR_OPERATION);
    ASSERT(starts_with(lsock_socket_error_string(p.client), "lsock_socket_connect: "));
    ASSERT_EQ(lsock_socket_state(p.client), LSOCK_CONNECTED);
    ASSERT_EQ(lsock_socket_descriptor(p.client), fd);
    ASSERT_EQ(lsock_socket_write(p.client, "x", 1), 1);
    RUN_UNTIL(loop, lsock_socket_bytes_available(p.peer) == 1, 5000);
    pair_close(&p);
    loop_free(loop);
}

TEST(failed_connect_then_good_connect_works)
{
    lsock_loop *loop = loop_new();
    const char *name = test_name("retry");
    lsock_socket *s = lsock_socket_new(loop);
    ASSERT(!lsock_socket_connect(s, name, LSOCK_READ_WRITE));
    ASSERT_ERR(lsock_socket_error(s), LSOCK_ERR_SERVER_NOT_FOUND);
    lsock_server *srv = lsock_server_new(loop);
    ASSERT(lsock_server_listen(srv, name));
    ASSERT(lsock_socket_connect(s, name, LSOCK_READ_WRITE));
    ASSERT_EQ(lsock_socket_state(s), LSOCK_CONNECTED);
    lsock_socket_free(s);
    lsock_server_free(srv);
    loop_free(loop);
}

TEST(socket_reconnects_after_disconnect)
{
    lsock_loop *loop = loop_new();
    pair p;
    pair_open(&p, loop);
    lsock_socket_disconnect(p.client);
    ASSERT_EQ(lsock_socket_state(p.client), LSOCK_UNCONNECTED);
    ASSERT(lsock_socket_connect(p.client, p.name, LSOCK_READ_WRITE));
    ASSERT_EQ(lsock_socket_state(p.client), LSOCK_CONNECTED);
    RUN_UNTIL(loop, lsock_server_has_pending_connections(p.srv), 5000);
    lsock_socket *second = lsock_server_next_pending_connection(p.srv);
    ASSERT(second != NULL);
    ASSERT_EQ(lsock_socket_write(p.client, "abc", 3), 3);
    RUN_UNTIL(loop, lsock_socket_bytes_available(second) == 3, 5000);
    lsock_socket_free(second);
    pair_close(&p);
    loop_free(loop);
}

/* ---- peer close ------------------------------------------------------------------------ */

static void check_peer_close(int how)
{
    lsock_loop *loop = loop_new();
    pair p;
    pair_open(&p, loop);
    rec r;
    rec_init(&r);
    lsock_socket_set_callbacks(p.client, &rec_cbs, &r);
    ASSERT_EQ(lsock_socket_write(p.peer, "hello", 5), 5);
    if (how == 0) {
        lsock_socket_free(p.peer);
    } else {
        ASSERT(lsock_socket_wait_for_bytes_written(p.peer, 5000) ||
               lsock_socket_bytes_to_write(p.peer) == 0);
        lsock_socket_abort(p.peer);
        ASSERT_EQ(lsock_socket_state(p.peer), LSOCK_UNCONNECTED);
        lsock_socket_free(p.peer);
    }
    p.peer = NULL;
    RUN_UNTIL(loop, r.disconnected > 0, 5000);
    ASSERT_STR_EQ(
        r.log,
        "error:PEER_CLOSED state:CLOSING state:UNCONNECTED read_channel_finished disconnected");
    ASSERT_EQ(r.state_in_rcf, LSOCK_UNCONNECTED);
    ASSERT_EQ(r.state_in_disconnected, LSOCK_UNCONNECTED);
    ASSERT_ERR(lsock_socket_error(p.client), LSOCK_ERR_PEER_CLOSED);
    ASSERT_EQ(lsock_socket_state(p.client), LSOCK_UNCONNECTED);
    ASSERT_EQ(lsock_socket_bytes_available(p.client), 5);
    char buf[16] = {0};
    ASSERT_EQ(lsock_socket_read(p.client, buf, sizeof buf), 5);
    ASSERT_STR_EQ(buf, "hello");
    ASSERT(lsock_socket_at_end(p.client));
    run_for(loop, 30);
    ASSERT_EQ(r.disconnected, 1);
    ASSERT_EQ(r.errors, 1);
    pair_close(&p);
    loop_free(loop);
}

TEST(peer_free_fires_error_finished_unconnected_disconnected_and_keeps_data)
{
    check_peer_close(0);
}

TEST(peer_abort_fires_error_finished_unconnected_disconnected_and_keeps_data)
{
    check_peer_close(1);
}

TEST(raw_peer_close_after_write_keeps_all_data_readable)
{
    lsock_loop *loop = loop_new();
    rawpair p;
    rawpair_open(&p, loop);
    rec r;
    rec_init(&r);
    lsock_socket_set_callbacks(p.s, &rec_cbs, &r);
    size_t n = 100000;
    unsigned char *data = pattern_new(n);
    /* The connection may not take it all at once: a writer thread writes it all, then
     * closes the raw end, while the loop reads. */
    raw_writer *w = raw_write_and_close_async(p.pfd, data, n);
    p.pfd = RAW_NONE;
    RUN_UNTIL(loop, r.disconnected > 0, 10000);
    ASSERT(raw_writer_join(w));
    ASSERT_STR_EQ(
        r.log,
        "error:PEER_CLOSED state:CLOSING state:UNCONNECTED read_channel_finished disconnected");
    ASSERT_EQ(lsock_socket_bytes_available(p.s), (int64_t)n);
    size_t len = 0;
    unsigned char *all = lsock_socket_read_all(p.s, &len);
    ASSERT(all != NULL);
    ASSERT_EQ(len, n);
    ASSERT(memcmp(all, data, n) == 0);
    free(all);
    free(data);
    rawpair_close(&p);
    loop_free(loop);
}

/* ---- disconnect, abort, close ---------------------------------------------------------- */

TEST(disconnect_with_nothing_queued_completes_within_the_call)
{
    lsock_loop *loop = loop_new();
    pair p;
    pair_open(&p, loop);
    rec r, pr;
    rec_init(&r);
    rec_init(&pr);
    lsock_socket_set_callbacks(p.client, &rec_cbs, &r);
    lsock_socket_set_callbacks(p.peer, &rec_cbs, &pr);
    lsock_socket_disconnect(p.client);
    ASSERT_STR_EQ(r.log, "state:CLOSING state:UNCONNECTED read_channel_finished disconnected");
    ASSERT_EQ(lsock_socket_state(p.client), LSOCK_UNCONNECTED);
    ASSERT_EQ(r.state_in_disconnected, LSOCK_UNCONNECTED);
    ASSERT_EQ(lsock_socket_descriptor(p.client), -1);
    ASSERT_ERR(lsock_socket_error(p.client), LSOCK_ERR_NONE);
    RUN_UNTIL(loop, pr.disconnected > 0, 5000);
    ASSERT_ERR(pr.last_error, LSOCK_ERR_PEER_CLOSED);
    pair_close(&p);
    loop_free(loop);
}

TEST(disconnect_with_queued_data_stays_closing_until_flushed)
{
    lsock_loop *loop = loop_new();
    rawpair p;
    rawpair_open(&p, loop);
    rec r;
    rec_init(&r);
    lsock_socket_set_callbacks(p.s, &rec_cbs, &r);
    size_t n = 8u << 20;
    unsigned char *data = pattern_new(n);
    ASSERT_EQ(lsock_socket_write(p.s, data, (int64_t)n), (int64_t)n);
    ASSERT(lsock_socket_bytes_to_write(p.s) > 0);
    lsock_socket_disconnect(p.s);
    ASSERT_STR_EQ(r.log, "state:CLOSING");
    ASSERT_EQ(lsock_socket_state(p.s), LSOCK_CLOSING);
    ASSERT(lsock_socket_is_valid(p.s));
    run_for(loop, 30);
    ASSERT_EQ(lsock_socket_state(p.s), LSOCK_CLOSING);
    ASSERT_STR_EQ(r.log, "state:CLOSING");
    /* Now the peer reads everything. */
    size_t got = 0;
    bool eof = false;
    uint64_t dl = test_now_ms() + 20000;
    while (!(eof && r.disconnected)) {
        ASSERT(test_now_ms() < dl);
        if (!eof && drain_raw(p.pfd, &got) < 0) eof = true;
        lsock_loop_run(loop, LSOCK_RUN_ONCE);
    }
    ASSERT_EQ(got, n);
    ASSERT_STR_EQ(r.log, "state:CLOSING state:UNCONNECTED read_channel_finished disconnected");
    ASSERT_EQ(lsock_socket_state(p.s), LSOCK_UNCONNECTED);
    ASSERT_EQ(lsock_socket_bytes_to_write(p.s), 0);
    ASSERT_EQ(r.written, (int64_t)n);
    free(data);
    rawpair_close(&p);
    loop_free(loop);
}

TEST(disconnect_keeps_unread_data_readable)
{
    lsock_loop *loop = loop_new();
    pair p;
    pair_open(&p, loop);
    ASSERT_EQ(lsock_socket_write(p.peer, "keep", 4), 4);
    RUN_UNTIL(loop, lsock_socket_bytes_available(p.client) == 4, 5000);
    lsock_socket_disconnect(p.client);
    ASSERT_EQ(lsock_socket_state(p.client), LSOCK_UNCONNECTED);
    ASSERT_EQ(lsock_socket_bytes_available(p.client), 4);
    char buf[8] = {0};
    ASSERT_EQ(lsock_socket_read(p.client, buf, sizeof buf), 4);
    ASSERT_STR_EQ(buf, "keep");
    pair_close(&p);
    loop_free(loop);
}

TEST(abort_drops_queued_data_and_disconnects_within_the_call)
{
    lsock_loop *loop = loop_new();
    rawpair p;
    rawpair_open(&p, loop);
    rec r;
    rec_init(&r);
    lsock_socket_set_callbacks(p.s, &rec_cbs, &r);
    size_t n = 8u << 20;
    unsigned char *data = pattern_new(n);
    ASSERT_EQ(lsock_socket_write(p.s, data, (int64_t)n), (int64_t)n);
    ASSERT(lsock_socket_bytes_to_write(p.s) > 0);
    lsock_socket_abort(p.s);
    ASSERT_STR_EQ(
        r.log, "about_to_close state:CLOSING state:UNCONNECTED read_channel_finished disconnected");
    ASSERT_EQ(lsock_socket_state(p.s), LSOCK_UNCONNECTED);
    ASSERT_EQ(lsock_socket_bytes_to_write(p.s), 0);
    ASSERT_EQ(lsock_socket_descriptor(p.s), -1);
    ASSERT(!lsock_socket_is_valid(p.s));
    /* The peer sees the end of the stream, with less than everything. */
    size_t got = 0;
    uint64_t dl = test_now_ms() + 5000;
    for (;;) {
        ASSERT(test_now_ms() < dl);
        if (drain_raw(p.pfd, &got) < 0) break;
        raw_wait_readable(p.pfd, 100);
    }
    ASSERT(got < n);
    run_for(loop, 30);
    ASSERT_EQ(r.disconnected, 1);
    free(data);
    rawpair_close(&p);
    loop_free(loop);
}

TEST(abort_on_unconnected_socket_fires_nothing)
{
    lsock_socket *s = lsock_socket_new(NULL);
    rec r;
    rec_init(&r);
    lsock_socket_set_callbacks(s, &rec_cbs, &r);
    lsock_socket_abort(s);
    lsock_socket_disconnect(s);
    lsock_socket_close(s);
    ASSERT_STR_EQ(r.log, "");
    ASSERT_EQ(lsock_socket_state(s), LSOCK_UNCONNECTED);
    lsock_socket_free(s);
}

TEST(close_fires_about_to_close_with_data_readable_then_drops_it)
{
    lsock_loop *loop = loop_new();
    pair p;
    pair_open(&p, loop);
    rec r;
    rec_init(&r);
    lsock_socket_set_callbacks(p.client, &rec_cbs, &r);
    ASSERT_EQ(lsock_socket_write(p.peer, "data", 4), 4);
    RUN_UNTIL(loop, lsock_socket_bytes_available(p.client) == 4, 5000);
    rec_init(&r);
    lsock_socket_close(p.client);
    ASSERT_STR_EQ(r.log, "about_to_close state:CLOSING state:UNCONNECTED "
                         "read_channel_finished disconnected");
    ASSERT_EQ(r.avail_in_about_to_close, 4);
    ASSERT_EQ(lsock_socket_bytes_available(p.client), 0);
    ASSERT_EQ(lsock_socket_open_mode(p.client), 0);
    ASSERT_EQ(lsock_socket_state(p.client), LSOCK_UNCONNECTED);
    pair_close(&p);
    loop_free(loop);
}

TEST(close_delivers_queued_data_before_disconnecting)
{
    lsock_loop *loop = loop_new();
    rawpair p;
    rawpair_open(&p, loop);
    rec r;
    rec_init(&r);
    lsock_socket_set_callbacks(p.s, &rec_cbs, &r);
    size_t n = 4u << 20;
    unsigned char *data = pattern_new(n);
    ASSERT_EQ(lsock_socket_write(p.s, data, (int64_t)n), (int64_t)n);
    lsock_socket_close(p.s);
    ASSERT_STR_EQ(r.log, "about_to_close state:CLOSING");
    ASSERT_EQ(lsock_socket_open_mode(p.s), 0);
    size_t got = 0;
    bool eof = false;
    uint64_t dl = test_now_ms() + 20000;
    while (!(eof && r.disconnected)) {
        ASSERT(test_now_ms() < dl);
        if (!eof && drain_raw(p.pfd, &got) < 0) eof = true;
        lsock_loop_run(loop, LSOCK_RUN_ONCE);
    }
    ASSERT_EQ(got, n);
    ASSERT_STR_EQ(r.log, "about_to_close state:CLOSING state:UNCONNECTED "
                         "read_channel_finished disconnected");
    free(data);
    rawpair_close(&p);
    loop_free(loop);
}

/* ---- writing --------------------------------------------------------------------------- */

TEST(write_of_64_mib_returns_at_once_on_a_loop_socket)
{
    lsock_loop *loop = loop_new();
    rawpair p;
    rawpair_open(&p, loop);
    size_t n = 64u << 20;
    char *data = malloc(n);
    ASSERT(data != NULL);
    memset(data, 'a', n);
    uint64_t t0 = test_now_ms();
    ASSERT_EQ(lsock_socket_write(p.s, data, (int64_t)n), (int64_t)n);
    ASSERT(test_now_ms() - t0 < 2000);
    ASSERT(lsock_socket_bytes_to_write(p.s) > 0);
    ASSERT_EQ(lsock_socket_state(p.s), LSOCK_CONNECTED);
    free(data);
    rawpair_close(&p);
    loop_free(loop);
}

TEST(bytes_written_fires_from_the_loop_and_sums_to_all_written)
{
    lsock_loop *loop = loop_new();
    rawpair p;
    rawpair_open(&p, loop);
    rec r;
    rec_init(&r);
    lsock_socket_set_callbacks(p.s, &rec_cbs, &r);
    size_t n = 1u << 20;
    unsigned char *data = pattern_new(n);
    r.in_write = 1;
    ASSERT_EQ(lsock_socket_write(p.s, data, 10), 10);
    ASSERT_EQ(lsock_socket_write(p.s, data + 10, (int64_t)n - 10), (int64_t)n - 10);
    r.in_write = 0;
    ASSERT_EQ(r.bytes_written_calls, 0);
    size_t got = 0;
    uint64_t dl = test_now_ms() + 10000;
    while (r.written < (int64_t)n || got < n) {
        ASSERT(test_now_ms() < dl);
        drain_raw(p.pfd, &got);
        lsock_loop_run(loop, LSOCK_RUN_ONCE);
    }
    ASSERT_EQ(r.written, (int64_t)n);
    ASSERT_EQ(got, n);
    ASSERT_EQ(r.bw_inside_write, 0);
    ASSERT_EQ(lsock_socket_bytes_to_write(p.s), 0);
    /* A small write: fires once more from the loop, not from the write. */
    int calls = r.bytes_written_calls;
    r.in_write = 1;
    ASSERT_EQ(lsock_socket_write(p.s, data, 7), 7);
    r.in_write = 0;
    ASSERT_EQ(r.bytes_written_calls, calls);
    RUN_UNTIL(loop, r.written == (int64_t)n + 7, 5000);
    ASSERT_EQ(r.bw_inside_write, 0);
    free(data);
    rawpair_close(&p);
    loop_free(loop);
}

TEST(write_while_unconnected_fails_operation)
{
    lsock_socket *s = lsock_socket_new(NULL);
    ASSERT_EQ(lsock_socket_write(s, "x", 1), -1);
    ASSERT_ERR(lsock_socket_error(s), LSOCK_ERR_OPERATION);
    ASSERT(starts_with(lsock_socket_error_string(s), "lsock_socket_write: "));
    lsock_socket_free(s);
}

TEST(write_to_read_only_socket_fails_operation)
{
    lsock_loop *loop = loop_new();
    const char *name = test_name("ro");
    lsock_server *srv = lsock_server_new(loop);
    ASSERT(lsock_server_listen(srv, name));
    lsock_socket *s = lsock_socket_new(loop);
    ASSERT(lsock_socket_connect(s, name, LSOCK_READ_ONLY));
    ASSERT_EQ(lsock_socket_open_mode(s), LSOCK_READ_ONLY);
    ASSERT_EQ(lsock_socket_write(s, "x", 1), -1);
    ASSERT_ERR(lsock_socket_error(s), LSOCK_ERR_OPERATION);
    ASSERT(starts_with(lsock_socket_error_string(s), "lsock_socket_write: "));
    RUN_UNTIL(loop, lsock_server_has_pending_connections(srv), 5000);
    lsock_socket *peer = lsock_server_next_pending_connection(srv);
    ASSERT_EQ(lsock_socket_write(peer, "yz", 2), 2);
    RUN_UNTIL(loop, lsock_socket_bytes_available(s) == 2, 5000);
    lsock_socket_free(peer);
    lsock_socket_free(s);
    lsock_server_free(srv);
    loop_free(loop);
}

TEST(read_from_write_only_socket_fails_operation)
{
    lsock_loop *loop = loop_new();
    const char *name = test_name("wo");
    lsock_server *srv = lsock_server_new(loop);
    ASSERT(lsock_server_listen(srv, name));
    lsock_socket *s = lsock_socket_new(loop);
    ASSERT(lsock_socket_connect(s, name, LSOCK_WRITE_ONLY));
    ASSERT_EQ(lsock_socket_open_mode(s), LSOCK_WRITE_ONLY);
    char buf[4];
    ASSERT_EQ(lsock_socket_read(s, buf, sizeof buf), -1);
    ASSERT_ERR(lsock_socket_error(s), LSOCK_ERR_OPERATION);
    ASSERT(starts_with(lsock_socket_error_string(s), "lsock_socket_read: "));
    ASSERT_EQ(lsock_socket_write(s, "ok", 2), 2);
    RUN_UNTIL(loop, lsock_server_has_pending_connections(srv), 5000);
    lsock_socket *peer = lsock_server_next_pending_connection(srv);
    RUN_UNTIL(loop, lsock_socket_bytes_available(peer) == 2, 5000);
    lsock_socket_free(peer);
    lsock_socket_free(s);
    lsock_server_free(srv);
    loop_free(loop);
}

TEST(write_to_vanished_peer_does_not_kill_the_process_and_ends_peer_closed)
{
    lsock_loop *loop = loop_new();
    rawpair p;
    rawpair_open(&p, loop);
    rec r;
    rec_init(&r);
    lsock_socket_set_callbacks(p.s, &rec_cbs, &r);
    raw_close(p.pfd);
    p.pfd = RAW_NONE;
    /* SIGPIPE keeps whatever disposition the process has (default): no handler is set. */
    char buf[4096];
    memset(buf, 'z', sizeof buf);
    int64_t w = lsock_socket_write(p.s, buf, sizeof buf);
    if (w == -1) {
        ASSERT_ERR(lsock_socket_error(p.s), LSOCK_ERR_PEER_CLOSED);
    } else {
        ASSERT_EQ(w, (int64_t)sizeof buf);
    }
    RUN_UNTIL(loop, lsock_socket_state(p.s) == LSOCK_UNCONNECTED, 5000);
    ASSERT_ERR(lsock_socket_error(p.s), LSOCK_ERR_PEER_CLOSED);
    ASSERT_EQ(r.disconnected, 1);
    rawpair_close(&p);
    loop_free(loop);
}

TEST(flush_hands_queued_data_to_the_kernel)
{
    lsock_loop *loop = loop_new();
    rawpair p;
    rawpair_open(&p, loop);
    size_t n = 4u << 20;
    unsigned char *data = pattern_new(n);
    ASSERT_EQ(lsock_socket_write(p.s, data, (int64_t)n), (int64_t)n);
    int64_t queued = lsock_socket_bytes_to_write(p.s);
    ASSERT(queued > 0);
    ASSERT(!lsock_socket_flush(p.s)); /* the kernel is full: nothing goes */
    size_t got = 0;
    drain_raw(p.pfd, &got);
    ASSERT(got > 0);
    ASSERT(lsock_socket_flush(p.s));
    ASSERT(lsock_socket_bytes_to_write(p.s) < queued);
    free(data);
    rawpair_close(&p);
    loop_free(loop);
}

/* ---- gathering small writes ------------------------------------------------------------ */

/* Reads pattern bytes from the raw end until it has n in all (more fails), with a deadline;
 * eof: then expects the end of the stream. */
static void expect_raw(raw_fd fd, size_t n, bool eof)
{
    size_t got = 0;
    int ended = 0;
    uint64_t dl = test_now_ms() + 5000;
    while (got < n || (eof && !ended)) {
        ASSERT(test_now_ms() < dl);
        if (drain_raw(fd, &got) < 0)
            ended = 1;
        else
            raw_wait_readable(fd, 100);
        if (ended) break;
    }
    ASSERT_EQ(got, n);
    ASSERT_EQ(ended, eof ? 1 : 0);
}

/* Writes pattern bytes [from, from + len) of data. */
static void write_part(lsock_socket *s, const unsigned char *data, size_t from, size_t len)
{
    ASSERT_EQ(lsock_socket_write(s, data + from, (int64_t)len), (int64_t)len);
}

TEST(small_writes_after_the_first_in_an_iteration_are_gathered_until_the_loop_runs)
{
    lsock_loop *loop = loop_new();
    rawpair p;
    rawpair_open(&p, loop);
    rec r;
    rec_init(&r);
    lsock_socket_set_callbacks(p.s, &rec_cbs, &r);
    unsigned char *data = pattern_new(4096);
    write_part(p.s, data, 0, 10); /* the first: to the kernel at once */
    ASSERT_EQ(lsock_socket_bytes_to_write(p.s), 0);
    write_part(p.s, data, 10, 20);
    write_part(p.s, data, 30, 20);
    write_part(p.s, data, 50, 20);
    /* Gathered bytes count as handed over: code that writes while nothing is queued goes on. */
    ASSERT_EQ(lsock_socket_bytes_to_write(p.s), 0);
    expect_raw(p.pfd, 10, false); /* the gathered 60 are not in the kernel yet */
    int64_t none;
    unsigned char b;
    none = raw_read(p.pfd, &b, 1);
    ASSERT_EQ(none, -1);
    RUN_UNTIL(loop, r.written == 70, 5000); /* one system call hands them over */
    ASSERT_EQ(r.bytes_written_calls, 1);
    ASSERT_EQ(lsock_socket_bytes_to_write(p.s), 0);
    size_t got = 10;
    drain_raw_until(p.pfd, &got, 70, 5000);
    /* A new iteration: its first write goes straight out again. */
    write_part(p.s, data, 70, 5);
    ASSERT_EQ(lsock_socket_bytes_to_write(p.s), 0);
    free(data);
    rawpair_close(&p);
    loop_free(loop);
}

TEST(a_gathered_batch_goes_out_once_it_reaches_64_kib)
{
    lsock_loop *loop = loop_new();
    rawpair p;
    rawpair_open(&p, loop);
    unsigned char *data = pattern_new(70000);
    write_part(p.s, data, 0, 10);
    size_t off = 10;
    while (off + 1000 <= 10 + 65536) { /* 65 writes of 1000 bytes: 65,000 gathered */
        write_part(p.s, data, off, 1000);
        off += 1000;
    }
    write_part(p.s, data, off, 1000); /* would pass 64 KiB: the batch goes first */
    off += 1000;
    ASSERT_EQ(lsock_socket_bytes_to_write(p.s), 0);
    expect_raw(p.pfd, off - 1000, false);   /* all but the write that opened the next batch */
    lsock_loop_run(loop, LSOCK_RUN_NOWAIT); /* which the deferred work sends */
    size_t got = off - 1000;
    drain_raw_until(p.pfd, &got, off, 5000);
    free(data);
    rawpair_close(&p);
    loop_free(loop);
}

TEST(writes_larger_than_16_kib_are_never_gathered)
{
    lsock_loop *loop = loop_new();
    rawpair p;
    rawpair_open(&p, loop);
    unsigned char *data = pattern_new(40000);
    write_part(p.s, data, 0, 10);
    write_part(p.s, data, 10, 16385);
    ASSERT_EQ(lsock_socket_bytes_to_write(p.s), 0);
    expect_raw(p.pfd, 16395, false);
    free(data);
    rawpair_close(&p);
    loop_free(loop);
}

TEST(a_socket_without_a_loop_never_gathers_writes)
{
    rawpair p;
    rawpair_open(&p, NULL);
    unsigned char *data = pattern_new(100);
    write_part(p.s, data, 0, 10);
    write_part(p.s, data, 10, 20);
    ASSERT_EQ(lsock_socket_bytes_to_write(p.s), 0);
    expect_raw(p.pfd, 30, false);
    free(data);
    rawpair_close(&p);
}

/* A socket on a loop writes 10 bytes (to the kernel at once) and 20 more (gathered); then
 * act() does what the test is about, and the raw peer must get all 30, in order, without the
 * loop running (and the end of the stream when eof). */
static void gathered_then(void (*act)(lsock_socket *s, lsock_loop *loop, raw_fd peer), bool eof)
{
    lsock_loop *loop = loop_new();
    rawpair p;
    rawpair_open(&p, loop);
    unsigned char *data = pattern_new(100);
    write_part(p.s, data, 0, 10);
    write_part(p.s, data, 10, 20);
    act(p.s, loop, p.pfd);
    if (eof) p.s = NULL; /* freed, or ended, by act */
    expect_raw(p.pfd, 30, eof);
    free(data);
    rawpair_close(&p);
    loop_free(loop);
}

static void act_free(lsock_socket *s, lsock_loop *loop, raw_fd peer)
{
    lsock_socket_free(s);
}

static void act_abort(lsock_socket *s, lsock_loop *loop, raw_fd peer)
{
    lsock_socket_abort(s);
    ASSERT_EQ(lsock_socket_state(s), LSOCK_UNCONNECTED);
    lsock_socket_free(s);
}

static void act_disconnect(lsock_socket *s, lsock_loop *loop, raw_fd peer)
{
    lsock_socket_disconnect(s);
    RUN_UNTIL(loop, lsock_socket_state(s) == LSOCK_UNCONNECTED, 5000);
    lsock_socket_free(s);
}

static void act_flush(lsock_socket *s, lsock_loop *loop, raw_fd peer)
{
    ASSERT(lsock_socket_flush(s));
    ASSERT_EQ(lsock_socket_bytes_to_write(s), 0);
}

static void act_wait_written(lsock_socket *s, lsock_loop *loop, raw_fd peer)
{
    ASSERT(lsock_socket_wait_for_bytes_written(s, 5000));
    ASSERT_EQ(lsock_socket_bytes_to_write(s), 0);
}

static void act_wait_read(lsock_socket *s, lsock_loop *loop, raw_fd peer)
{
    write_all_raw(peer, "x", 1); /* what the wait finds at once */
    ASSERT(lsock_socket_wait_for_ready_read(s, 5000));
}

TEST(free_first_sends_the_writes_gathered_in_this_iteration)
{
    gathered_then(act_free, true);
}

TEST(abort_first_sends_the_writes_gathered_in_this_iteration)
{
    gathered_then(act_abort, true);
}

TEST(disconnect_sends_the_writes_gathered_in_this_iteration)
{
    gathered_then(act_disconnect, true);
}

TEST(flush_sends_the_writes_gathered_in_this_iteration)
{
    gathered_then(act_flush, false);
}

TEST(wait_for_bytes_written_sends_the_writes_gathered_in_this_iteration)
{
    gathered_then(act_wait_written, false);
}

TEST(wait_for_ready_read_first_sends_the_writes_gathered_in_this_iteration)
{
    gathered_then(act_wait_read, false);
}

/* Both ends write 16 MiB at once; each reads what the other sent, intact. */
typedef struct stream {
    const unsigned char *data;
    size_t len, sent, got;
} stream;

static void stream_read(lsock_socket *s, rec *r)
{
    stream *st = r->user;
    unsigned char buf[65536];
    int64_t n;
    while ((n = lsock_socket_read(s, buf, sizeof buf)) > 0) {
        for (int64_t i = 0; i < n; i++)
            if (buf[i] != pattern_byte(st->got + (size_t)i)) FAIL_("byte %zu differs", st->got);
        st->got += (size_t)n;
    }
}

TEST(both_directions_stream_16_mib_intact)
{
    lsock_loop *loop = loop_new();
    pair p;
    pair_open(&p, loop);
    size_t n = 16u << 20;
    unsigned char *data = pattern_new(n);
    stream a = {data, n, 0, 0}, b = {data, n, 0, 0};
    rec ra, rb;
    rec_init(&ra);
    rec_init(&rb);
    ra.on_ready_read = stream_read;
    ra.user = &a;
    rb.on_ready_read = stream_read;
    rb.user = &b;
    lsock_socket_set_callbacks(p.client, &rec_cbs, &ra);
    lsock_socket_set_callbacks(p.peer, &rec_cbs, &rb);
    ASSERT_EQ(lsock_socket_write(p.client, data, (int64_t)n), (int64_t)n);
    ASSERT_EQ(lsock_socket_write(p.peer, data, (int64_t)n), (int64_t)n);
    RUN_UNTIL(loop, a.got == n && b.got == n, 30000);
    RUN_UNTIL(loop, ra.written == (int64_t)n && rb.written == (int64_t)n, 5000);
    ASSERT_EQ(lsock_socket_bytes_to_write(p.client), 0);
    ASSERT_EQ(lsock_socket_bytes_to_write(p.peer), 0);
    free(data);
    pair_close(&p);
    loop_free(loop);
}

/* Writes the next chunk from bytes_written, as a producer does. */
typedef struct chain {
    const unsigned char *data;
    size_t len, next;
    lsock_socket *s;
} chain;

static void chain_more(lsock_socket *s, int64_t n, void *u)
{
    chain *c = u;
    (void)n;
    if (c->next < c->len) {
        size_t k = c->len - c->next < 4096 ? c->len - c->next : 4096;
        ASSERT_EQ(lsock_socket_write(s, c->data + c->next, (int64_t)k), (int64_t)k);
        c->next += k;
    }
}

TEST(writes_from_bytes_written_continue_the_stream)
{
    lsock_loop *loop = loop_new();
    pair p;
    pair_open(&p, loop);
    size_t n = 256u * 1024;
    unsigned char *data = pattern_new(n);
    chain c = {data, n, 0, p.client};
    lsock_socket_callbacks cb;
    memset(&cb, 0, sizeof cb);
    cb.bytes_written = chain_more;
    lsock_socket_set_callbacks(p.client, &cb, &c);
    stream st = {data, n, 0, 0};
    rec r;
    rec_init(&r);
    r.on_ready_read = stream_read;
    r.user = &st;
    lsock_socket_set_callbacks(p.peer, &rec_cbs, &r);
    ASSERT_EQ(lsock_socket_write(p.client, data, 4096), 4096);
    c.next = 4096;
    RUN_UNTIL(loop, st.got == n, 10000);
    free(data);
    pair_close(&p);
    loop_free(loop);
}

static void abort_in_ready_read(lsock_socket *s, rec *r)
{
    (void)r;
    lsock_socket_abort(s);
}

TEST(abort_inside_ready_read_ends_the_connection_cleanly)
{
    lsock_loop *loop = loop_new();
    pair p;
    pair_open(&p, loop);
    rec r, pr;
    rec_init(&r);
    rec_init(&pr);
    r.on_ready_read = abort_in_ready_read;
    lsock_socket_set_callbacks(p.client, &rec_cbs, &r);
    lsock_socket_set_callbacks(p.peer, &rec_cbs, &pr);
    ASSERT_EQ(lsock_socket_write(p.peer, "abc", 3), 3);
    RUN_UNTIL(loop, r.disconnected > 0, 5000);
    ASSERT_EQ(lsock_socket_state(p.client), LSOCK_UNCONNECTED);
    ASSERT_EQ(lsock_socket_bytes_available(p.client), 0);
    ASSERT_EQ(r.ready_read, 1);
    RUN_UNTIL(loop, pr.disconnected > 0, 5000);
    ASSERT_ERR(pr.last_error, LSOCK_ERR_PEER_CLOSED);
    run_for(loop, 20);
    ASSERT_EQ(r.disconnected, 1);
    pair_close(&p);
    loop_free(loop);
}

TEST(peer_closing_while_closing_ends_with_peer_closed)
{
    lsock_loop *loop = loop_new();
    rawpair p;
    rawpair_open(&p, loop);
    rec r;
    rec_init(&r);
    lsock_socket_set_callbacks(p.s, &rec_cbs, &r);
    size_t n = 8u << 20;
    char *data = calloc(1, n);
    ASSERT_EQ(lsock_socket_write(p.s, data, (int64_t)n), (int64_t)n);
    lsock_socket_disconnect(p.s);
    ASSERT_EQ(lsock_socket_state(p.s), LSOCK_CLOSING);
    raw_close(p.pfd);
    p.pfd = RAW_NONE;
    RUN_UNTIL(loop, r.disconnected > 0, 5000);
    ASSERT_STR_EQ(r.log, "state:CLOSING error:PEER_CLOSED state:UNCONNECTED "
                         "read_channel_finished disconnected");
    ASSERT_ERR(lsock_socket_error(p.s), LSOCK_ERR_PEER_CLOSED);
    ASSERT_EQ(lsock_socket_bytes_to_write(p.s), 0);
    free(data);
    rawpair_close(&p);
    loop_free(loop);
}

/* ---- reading --------------------------------------------------------------------------- */

TEST(read_returns_available_bytes_and_zero_when_empty)
{
    lsock_loop *loop = loop_new();
    pair p;
    pair_open(&p, loop);
    char buf[16];
    ASSERT_EQ(lsock_socket_read(p.client, buf, sizeof buf), 0);
    ASSERT_EQ(lsock_socket_write(p.peer, "0123456789", 10), 10);
    RUN_UNTIL(loop, lsock_socket_bytes_available(p.client) == 10, 5000);
    ASSERT_EQ(lsock_socket_read(p.client, buf, 4), 4);
    ASSERT(memcmp(buf, "0123", 4) == 0);
    ASSERT_EQ(lsock_socket_bytes_available(p.client), 6);
    ASSERT_EQ(lsock_socket_read(p.client, buf, sizeof buf), 6);
    ASSERT(memcmp(buf, "456789", 6) == 0);
    ASSERT_EQ(lsock_socket_read(p.client, buf, sizeof buf), 0);
    ASSERT(lsock_socket_at_end(p.client));
    pair_close(&p);
    loop_free(loop);
}

TEST(read_line_follows_qiodevice_readline)
{
    lsock_loop *loop = loop_new();
    pair p;
    pair_open(&p, loop);
    char buf[64];
    memset(buf, 'Q', sizeof buf);
    ASSERT_EQ(lsock_socket_read_line(p.client, buf, sizeof buf), 0);
    ASSERT(!lsock_socket_can_read_line(p.client));
    ASSERT_EQ(lsock_socket_write(p.peer, "ab\ncd\nef", 8), 8);
    RUN_UNTIL(loop, lsock_socket_bytes_available(p.client) == 8, 5000);
    ASSERT(lsock_socket_can_read_line(p.client));
    ASSERT_EQ(lsock_socket_read_line(p.client, buf, sizeof buf), 3);
    ASSERT_STR_EQ(buf, "ab\n");
    /* max - 1 bytes, NUL-terminated */
    ASSERT_EQ(lsock_socket_read_line(p.client, buf, 2), 1);
    ASSERT_STR_EQ(buf, "c");
    ASSERT_EQ(lsock_socket_read_line(p.client, buf, sizeof buf), 2);
    ASSERT_STR_EQ(buf, "d\n");
    ASSERT(!lsock_socket_can_read_line(p.client));
    /* no newline: what is there */
    ASSERT_EQ(lsock_socket_read_line(p.client, buf, sizeof buf), 2);
    ASSERT_STR_EQ(buf, "ef");
    ASSERT_EQ(lsock_socket_read_line(p.client, buf, sizeof buf), 0);
    pair_close(&p);
    loop_free(loop);
}

TEST(read_all_returns_everything_nul_terminated)
{
    lsock_loop *loop = loop_new();
    pair p;
    pair_open(&p, loop);
    size_t len = 99;
    char *all = lsock_socket_read_all(p.client, &len);
    ASSERT(all != NULL);
    ASSERT_EQ(len, 0);
    ASSERT_EQ(all[0], '\0');
    free(all);
    ASSERT_EQ(lsock_socket_write(p.peer, "line one\nline two", 17), 17);
    RUN_UNTIL(loop, lsock_socket_bytes_available(p.client) == 17, 5000);
    all = lsock_socket_read_all(p.client, &len);
    ASSERT(all != NULL);
    ASSERT_EQ(len, 17);
    ASSERT_STR_EQ(all, "line one\nline two");
    free(all);
    ASSERT_EQ(lsock_socket_bytes_available(p.client), 0);
    pair_close(&p);
    loop_free(loop);
}

TEST(peek_copies_without_consuming_and_skip_discards)
{
    lsock_loop *loop = loop_new();
    pair p;
    pair_open(&p, loop);
    ASSERT_EQ(lsock_socket_write(p.peer, "abcdef", 6), 6);
    RUN_UNTIL(loop, lsock_socket_bytes_available(p.client) == 6, 5000);
    char buf[16] = {0};
    ASSERT_EQ(lsock_socket_peek(p.client, buf, 3), 3);
    ASSERT(memcmp(buf, "abc", 3) == 0);
    ASSERT_EQ(lsock_socket_bytes_available(p.client), 6);
    ASSERT_EQ(lsock_socket_skip(p.client, 2), 2);
    ASSERT_EQ(lsock_socket_bytes_available(p.client), 4);
    ASSERT_EQ(lsock_socket_peek(p.client, buf, sizeof buf), 4);
    ASSERT(memcmp(buf, "cdef", 4) == 0);
    ASSERT_EQ(lsock_socket_skip(p.client, 100), 4);
    ASSERT_EQ(lsock_socket_skip(p.client, 100), 0);
    ASSERT_EQ(lsock_socket_peek(p.client, buf, sizeof buf), 0);
    ASSERT(lsock_socket_at_end(p.client));
    pair_close(&p);
    loop_free(loop);
}

TEST(at_end_and_bytes_available_follow_the_buffer)
{
    lsock_loop *loop = loop_new();
    pair p;
    pair_open(&p, loop);
    ASSERT(lsock_socket_at_end(p.client));
    ASSERT_EQ(lsock_socket_write(p.peer, "z", 1), 1);
    RUN_UNTIL(loop, !lsock_socket_at_end(p.client), 5000);
    ASSERT_EQ(lsock_socket_bytes_available(p.client), 1);
    char c;
    ASSERT_EQ(lsock_socket_read(p.client, &c, 1), 1);
    ASSERT(lsock_socket_at_end(p.client));
    pair_close(&p);
    loop_free(loop);
}

TEST(ready_read_fires_when_data_arrives)
{
    lsock_loop *loop = loop_new();
    pair p;
    pair_open(&p, loop);
    rec r;
    rec_init(&r);
    lsock_socket_set_callbacks(p.client, &rec_cbs, &r);
    run_for(loop, 20);
    ASSERT_EQ(r.ready_read, 0);
    ASSERT_EQ(lsock_socket_write(p.peer, "ping", 4), 4);
    RUN_UNTIL(loop, r.ready_read > 0, 5000);
    ASSERT_EQ(r.max_available, 4);
    pair_close(&p);
    loop_free(loop);
}

/* In ready_read: have the peer write more, then wait for it right here. */
static void nested_wait(lsock_socket *s, rec *r)
{
    lsock_socket *peer = r->user;
    if (r->ready_read == 1) {
        ASSERT_EQ(lsock_socket_write(peer, "more", 4), 4);
        lsock_socket_wait_for_ready_read(s, 1000);
    }
}

TEST(ready_read_is_not_emitted_recursively)
{
    lsock_loop *loop = loop_new();
    pair p;
    pair_open(&p, loop);
    rec r;
    rec_init(&r);
    r.on_ready_read = nested_wait;
    r.user = p.peer;
    lsock_socket_set_callbacks(p.client, &rec_cbs, &r);
    ASSERT_EQ(lsock_socket_write(p.peer, "first", 5), 5);
    RUN_UNTIL(loop, lsock_socket_bytes_available(p.client) == 9, 5000);
    ASSERT_EQ(r.max_depth, 1);
    char buf[16] = {0};
    ASSERT_EQ(lsock_socket_read(p.client, buf, sizeof buf), 9);
    ASSERT_STR_EQ(buf, "firstmore");
    pair_close(&p);
    loop_free(loop);
}

/* ---- read buffer size ------------------------------------------------------------------ */

TEST(read_buffer_size_limits_buffered_bytes_and_loses_nothing)
{
    lsock_loop *loop = loop_new();
    pair p;
    pair_open(&p, loop);
    rec r;
    rec_init(&r);
    lsock_socket_set_callbacks(p.client, &rec_cbs, &r);
    ASSERT(lsock_socket_set_read_buffer_size(p.client, 128));
    ASSERT_EQ(lsock_socket_read_buffer_size(p.client), 128);
    unsigned char *data = pattern_new(256);
    ASSERT_EQ(lsock_socket_write(p.peer, data, 256), 256);
    RUN_UNTIL(loop, lsock_socket_bytes_available(p.client) == 128, 5000);
    run_for(loop, 50);
    ASSERT_EQ(lsock_socket_bytes_available(p.client), 128);
    ASSERT(r.max_available <= 128);
    unsigned char buf[256];
    ASSERT_EQ(lsock_socket_read(p.client, buf, 256), 128);
    ASSERT(memcmp(buf, data, 128) == 0);
    RUN_UNTIL(loop, lsock_socket_bytes_available(p.client) == 128, 5000);
    ASSERT(r.max_available <= 128);
    ASSERT_EQ(lsock_socket_read(p.client, buf, 256), 128);
    ASSERT(memcmp(buf, data + 128, 128) == 0);
    run_for(loop, 20);
    ASSERT_EQ(lsock_socket_bytes_available(p.client), 0);
    free(data);
    pair_close(&p);
    loop_free(loop);
}

static void read_into_total(lsock_socket *s, rec *r)
{
    unsigned char buf[1000];
    size_t *total = r->user;
    int64_t n;
    while ((n = lsock_socket_read(s, buf, sizeof buf)) > 0) {
        for (int64_t i = 0; i < n; i++)
            if (buf[i] != pattern_byte(*total + (size_t)i)) FAIL_("byte %zu differs", *total);
        *total += (size_t)n;
    }
}

TEST(read_buffer_size_streams_a_megabyte_intact)
{
    lsock_loop *loop = loop_new();
    pair p;
    pair_open(&p, loop);
    size_t total = 0;
    rec r;
    rec_init(&r);
    r.on_ready_read = read_into_total;
    r.user = &total;
    lsock_socket_set_callbacks(p.client, &rec_cbs, &r);
    ASSERT(lsock_socket_set_read_buffer_size(p.client, 4096));
    size_t n = 1u << 20;
    unsigned char *data = pattern_new(n);
    ASSERT_EQ(lsock_socket_write(p.peer, data, (int64_t)n), (int64_t)n);
    RUN_UNTIL(loop, total == n, 10000);
    ASSERT(r.max_available <= 4096);
    free(data);
    pair_close(&p);
    loop_free(loop);
}

TEST(read_buffer_limit_delivers_everything_before_the_peer_close)
{
    lsock_loop *loop = loop_new();
    pair p;
    pair_open(&p, loop);
    rec r;
    rec_init(&r);
    lsock_socket_set_callbacks(p.client, &rec_cbs, &r);
    ASSERT(lsock_socket_set_read_buffer_size(p.client, 128));
    unsigned char *data = pattern_new(1000);
    ASSERT_EQ(lsock_socket_write(p.peer, data, 1000), 1000);
    lsock_socket_free(p.peer);
    p.peer = NULL;
    unsigned char got[1000];
    size_t total = 0;
    uint64_t dl = test_now_ms() + 5000;
    while (total < 1000) {
        ASSERT(test_now_ms() < dl);
        lsock_loop_run(loop, LSOCK_RUN_ONCE);
        ASSERT(lsock_socket_bytes_available(p.client) <= 128);
        int64_t k = lsock_socket_read(p.client, got + total, (int64_t)(1000 - total));
        ASSERT(k >= 0);
        total += (size_t)k;
    }
    ASSERT(memcmp(got, data, 1000) == 0);
    RUN_UNTIL(loop, r.disconnected > 0, 5000);
    ASSERT_ERR(lsock_socket_error(p.client), LSOCK_ERR_PEER_CLOSED);
    free(data);
    pair_close(&p);
    loop_free(loop);
}

TEST(read_buffer_size_zero_lifts_the_limit)
{
    lsock_loop *loop = loop_new();
    pair p;
    pair_open(&p, loop);
    ASSERT(lsock_socket_set_read_buffer_size(p.client, 16));
    unsigned char *data = pattern_new(4096);
    ASSERT_EQ(lsock_socket_write(p.peer, data, 4096), 4096);
    RUN_UNTIL(loop, lsock_socket_bytes_available(p.client) == 16, 5000);
    run_for(loop, 30);
    ASSERT_EQ(lsock_socket_bytes_available(p.client), 16);
    ASSERT(lsock_socket_set_read_buffer_size(p.client, 0));
    RUN_UNTIL(loop, lsock_socket_bytes_available(p.client) == 4096, 5000);
    unsigned char buf[4096];
    ASSERT_EQ(lsock_socket_read(p.client, buf, sizeof buf), 4096);
    ASSERT(memcmp(buf, data, 4096) == 0);
    free(data);
    pair_close(&p);
    loop_free(loop);
}

/* ---- credentials ----------------------------------------------------------------------- */

/* The uid and gid a peer's credentials give: the process's own on Unix; -1 on Windows, which
 * identifies users by SID, not by number (the pid is the peer process's id on both). */
static int64_t own_uid(void)
{
#ifdef _WIN32
    return -1;
#else
    return (int64_t)getuid();
#endif
}

static int64_t own_gid(void)
{
#ifdef _WIN32
    return -1;
#else
    return (int64_t)getgid();
#endif
}

/* A peer process: connects to the server named in arg ("NAME PARENT_PID"), checks that the
 * credentials name its parent, then stays connected until the parent drops the connection. */
CHILD_MAIN(credentials_peer)
{
    char name[128];
    long long parent = 0;
    if (sscanf(arg, "%127s %lld", name, &parent) != 2) return 1;
    lsock_socket *c = lsock_socket_new(NULL);
    if (!c || !lsock_socket_connect(c, name, LSOCK_READ_WRITE)) return 2;
    lsock_credentials cr;
    if (!lsock_socket_peer_credentials(c, &cr)) return 3;
    if (cr.pid != parent || cr.uid != own_uid() || cr.gid != own_gid()) return 4;
    if (!lsock_socket_wait_for_disconnected(c, 5000)) return 5;
    lsock_socket_free(c);
    return 0;
}

TEST(peer_credentials_across_fork_give_pid_uid_gid)
{
    lsock_loop *loop = loop_new();
    const char *name = test_name("cred");
    lsock_server *srv = lsock_server_new(loop);
    ASSERT(lsock_server_listen(srv, name));
    char arg[256];
    snprintf(arg, sizeof arg, "%s %lld", name, (long long)getpid());
    child c;
    child_start(&c, "credentials_peer", arg);
    RUN_UNTIL(loop, lsock_server_has_pending_connections(srv), 5000);
    lsock_socket *peer = lsock_server_next_pending_connection(srv);
    ASSERT(peer != NULL);
    lsock_credentials cr;
    memset(&cr, 0, sizeof cr);
    ASSERT(lsock_socket_peer_credentials(peer, &cr));
    ASSERT_EQ(cr.pid, c.pid);
    ASSERT_EQ(cr.uid, own_uid());
    ASSERT_EQ(cr.gid, own_gid());
    lsock_socket_free(peer);
    ASSERT_EQ(child_wait(&c, 10000), 0);
    lsock_server_free(srv);
    loop_free(loop);
}

TEST(peer_credentials_fail_when_unconnected)
{
    lsock_socket *s = lsock_socket_new(NULL);
    lsock_credentials cr;
    ASSERT(!lsock_socket_peer_credentials(s, &cr));
    ASSERT_ERR(lsock_socket_error(s), LSOCK_ERR_OPERATION);
    ASSERT(starts_with(lsock_socket_error_string(s), "lsock_socket_peer_credentials: "));
    lsock_socket_free(s);
}

/* ---- descriptors ----------------------------------------------------------------------- */

/* Close-on-exec on Unix; on Windows, where a child inherits the handles marked inheritable
 * (there is no exec), a handle without HANDLE_FLAG_INHERIT. */
static bool is_cloexec(intptr_t fd)
{
    return !raw_is_inherited(fd);
}

TEST(socket_descriptors_are_close_on_exec)
{
    lsock_loop *loop = loop_new();
    pair p;
    pair_open(&p, loop);
    ASSERT(is_cloexec(lsock_socket_descriptor(p.client)));
    ASSERT(is_cloexec(lsock_socket_descriptor(p.peer)));
#ifndef _WIN32 /* on Windows a server's descriptor is lsock's own number, no HANDLE (README) */
    ASSERT(is_cloexec(lsock_server_descriptor(p.srv)));
#endif
    pair_close(&p);
    loop_free(loop);
}

TEST(freeing_connected_sockets_leaks_no_descriptors)
{
    int before = test_count_fds();
    lsock_loop *loop = loop_new();
    for (int i = 0; i < 5; i++) {
        pair p;
        pair_open(&p, loop);
        ASSERT_EQ(lsock_socket_write(p.client, "x", 1), 1);
        pair_close(&p);
    }
    lsock_socket *s = lsock_socket_new(loop);
    ASSERT(!lsock_socket_connect(s, test_name("nofd"), LSOCK_READ_WRITE));
    lsock_socket_free(s);
    loop_free(loop);
    ASSERT_EQ(test_count_fds(), before);
}

TEST(set_descriptor_adopts_a_socketpair_end)
{
    lsock_loop *loop = loop_new();
    raw_fd sv[2];
    raw_socketpair(sv);
    lsock_socket *s = lsock_socket_new(loop);
    rec r;
    rec_init(&r);
    lsock_socket_set_callbacks(s, &rec_cbs, &r);
    ASSERT(lsock_socket_set_descriptor(s, sv[0], LSOCK_CONNECTED, LSOCK_READ_WRITE));
    ASSERT_STR_EQ(r.log, "state:CONNECTED");
    ASSERT_EQ(lsock_socket_state(s), LSOCK_CONNECTED);
    ASSERT_EQ(lsock_socket_descriptor(s), sv[0]);
    ASSERT(lsock_socket_is_valid(s));
    ASSERT_EQ(lsock_socket_open_mode(s), LSOCK_READ_WRITE);
    ASSERT_EQ(lsock_socket_write(s, "ping", 4), 4);
    char buf[8] = {0};
    ASSERT(raw_wait_readable(sv[1], 5000));
    ASSERT_EQ(raw_read(sv[1], buf, sizeof buf), 4);
    ASSERT_STR_EQ(buf, "ping");
    write_all_raw(sv[1], "pong", 4);
    RUN_UNTIL(loop, lsock_socket_bytes_available(s) == 4, 5000);
    memset(buf, 0, sizeof buf);
    ASSERT_EQ(lsock_socket_read(s, buf, sizeof buf), 4);
    ASSERT_STR_EQ(buf, "pong");
    lsock_socket_free(s);
    /* The socket owned sv[0] and closed it: the other end sees EOF. */
    ASSERT(raw_wait_readable(sv[1], 5000));
    ASSERT_EQ(raw_read(sv[1], buf, sizeof buf), 0);
    raw_close(sv[1]);
    loop_free(loop);
}

TEST(set_descriptor_rejects_invalid_closed_and_file_descriptors)
{
    lsock_socket *s = lsock_socket_new(NULL);
    ASSERT(!lsock_socket_set_descriptor(s, -1, LSOCK_CONNECTED, LSOCK_READ_WRITE));
    ASSERT_ERR(lsock_socket_error(s), LSOCK_ERR_UNSUPPORTED_OPERATION);
    ASSERT(starts_with(lsock_socket_error_string(s), "lsock_socket_set_descriptor: "));
    int fd = dup(1);
    ASSERT(fd >= 0);
    close(fd);
    ASSERT(!lsock_socket_set_descriptor(s, fd, LSOCK_CONNECTED, LSOCK_READ_WRITE));
    ASSERT_ERR(lsock_socket_error(s), LSOCK_ERR_UNSUPPORTED_OPERATION);
    char path[256];
    snprintf(path, sizeof path, "/tmp/%s", test_name("file"));
    int ffd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    ASSERT(ffd >= 0);
    ASSERT(!lsock_socket_set_descriptor(s, ffd, LSOCK_CONNECTED, LSOCK_READ_WRITE));
    ASSERT_ERR(lsock_socket_error(s), LSOCK_ERR_UNSUPPORTED_OPERATION);
    ASSERT_EQ(lsock_socket_state(s), LSOCK_UNCONNECTED);
    ASSERT_EQ(lsock_socket_descriptor(s), -1);
    close(ffd);
    unlink(path);
    lsock_socket_free(s);
}

TEST(set_descriptor_while_connected_fails_operation)
{
    lsock_loop *loop = loop_new();
    pair p;
    pair_open(&p, loop);
    raw_fd sv[2];
    raw_socketpair(sv);
    ASSERT(!lsock_socket_set_descriptor(p.client, sv[0], LSOCK_CONNECTED, LSOCK_READ_WRITE));
    ASSERT_ERR(lsock_socket_error(p.client), LSOCK_ERR_OPERATION);
    ASSERT(starts_with(lsock_socket_error_string(p.client), "lsock_socket_set_descriptor: "));
    ASSERT_EQ(lsock_socket_state(p.client), LSOCK_CONNECTED);
    raw_close(sv[0]);
    raw_close(sv[1]);
    pair_close(&p);
    loop_free(loop);
}

/* ---- freeing inside callbacks ---------------------------------------------------------- */

TEST(free_socket_inside_connected)
{
    lsock_loop *loop = loop_new();
    const char *name = test_name("fconn");
    lsock_server *srv = lsock_server_new(loop);
    ASSERT(lsock_server_listen(srv, name));
    rec r;
    rec_init(&r);
    r.free_in = "connected";
    lsock_socket *s = lsock_socket_new(loop);
    lsock_socket_set_callbacks(s, &rec_cbs, &r);
    lsock_socket_connect(s, name, LSOCK_READ_WRITE);
    ASSERT(r.freed);
    RUN_UNTIL(loop, lsock_server_has_pending_connections(srv), 5000);
    lsock_socket *peer = lsock_server_next_pending_connection(srv);
    run_for(loop, 20);
    lsock_socket_free(peer);
    lsock_server_free(srv);
    loop_free(loop);
}

TEST(free_socket_inside_state_changed_during_connect)
{
    lsock_loop *loop = loop_new();
    const char *name = test_name("fstate");
    lsock_server *srv = lsock_server_new(loop);
    ASSERT(lsock_server_listen(srv, name));
    rec r;
    rec_init(&r);
    r.free_in = "state_changed";
    lsock_socket *s = lsock_socket_new(loop);
    lsock_socket_set_callbacks(s, &rec_cbs, &r);
    lsock_socket_connect(s, name, LSOCK_READ_WRITE);
    ASSERT(r.freed);
    ASSERT_EQ(r.connected, 0);
    run_for(loop, 20);
    while (lsock_server_has_pending_connections(srv))
        lsock_socket_free(lsock_server_next_pending_connection(srv));
    lsock_server_free(srv);
    loop_free(loop);
}

TEST(free_socket_inside_error_occurred_during_connect)
{
    lsock_loop *loop = loop_new();
    rec r;
    rec_init(&r);
    r.free_in = "error_occurred";
    lsock_socket *s = lsock_socket_new(loop);
    lsock_socket_set_callbacks(s, &rec_cbs, &r);
    ASSERT(!lsock_socket_connect(s, test_name("ferr"), LSOCK_READ_WRITE));
    ASSERT(r.freed);
    ASSERT_STR_EQ(r.log, "state:CONNECTING error:SERVER_NOT_FOUND");
    run_for(loop, 20);
    loop_free(loop);
}

/* Frees the client inside the named callback fired from the loop after trigger(). */
static void check_free_inside(const char *cb, int trigger)
{
    lsock_loop *loop = loop_new();
    pair p;
    pair_open(&p, loop);
    rec r;
    rec_init(&r);
    r.free_in = cb;
    lsock_socket_set_callbacks(p.client, &rec_cbs, &r);
    if (trigger == 0) { /* peer writes */
        ASSERT_EQ(lsock_socket_write(p.peer, "data", 4), 4);
    } else if (trigger == 1) { /* peer goes away after writing */
        ASSERT_EQ(lsock_socket_write(p.peer, "data", 4), 4);
        lsock_socket_free(p.peer);
        p.peer = NULL;
    } else { /* the client writes */
        ASSERT_EQ(lsock_socket_write(p.client, "data", 4), 4);
    }
    RUN_UNTIL(loop, r.freed, 5000);
    p.client = NULL;
    run_for(loop, 30);
    pair_close(&p);
    loop_free(loop);
}

TEST(free_socket_inside_ready_read)
{
    check_free_inside("ready_read", 0);
}

TEST(free_socket_inside_disconnected)
{
    check_free_inside("disconnected", 1);
}

TEST(free_socket_inside_error_occurred_for_peer_closed)
{
    check_free_inside("error_occurred", 1);
}

TEST(free_socket_inside_read_channel_finished)
{
    check_free_inside("read_channel_finished", 1);
}

TEST(free_socket_inside_bytes_written)
{
    check_free_inside("bytes_written", 2);
}

TEST(free_socket_inside_ready_read_when_peer_closes)
{
    check_free_inside("ready_read", 1);
}

TEST(free_socket_inside_about_to_close)
{
    lsock_loop *loop = loop_new();
    pair p;
    pair_open(&p, loop);
    rec r;
    rec_init(&r);
    r.free_in = "about_to_close";
    lsock_socket_set_callbacks(p.client, &rec_cbs, &r);
    lsock_socket_close(p.client);
    ASSERT(r.freed);
    p.client = NULL;
    run_for(loop, 20);
    pair_close(&p);
    loop_free(loop);
}

TEST(free_socket_inside_disconnected_fired_by_disconnect)
{
    lsock_loop *loop = loop_new();
    pair p;
    pair_open(&p, loop);
    rec r;
    rec_init(&r);
    r.free_in = "disconnected";
    lsock_socket_set_callbacks(p.client, &rec_cbs, &r);
    lsock_socket_disconnect(p.client);
    ASSERT(r.freed);
    p.client = NULL;
    run_for(loop, 20);
    pair_close(&p);
    loop_free(loop);
}

TEST(free_socket_inside_state_changed_closing_with_queued_data)
{
    lsock_loop *loop = loop_new();
    rawpair p;
    rawpair_open(&p, loop);
    rec r;
    rec_init(&r);
    r.free_in = "state_changed";
    lsock_socket_set_callbacks(p.s, &rec_cbs, &r);
    size_t n = 4u << 20;
    char *data = calloc(1, n);
    ASSERT_EQ(lsock_socket_write(p.s, data, (int64_t)n), (int64_t)n);
    lsock_socket_disconnect(p.s);
    ASSERT(r.freed);
    p.s = NULL;
    run_for(loop, 20);
    free(data);
    rawpair_close(&p);
    loop_free(loop);
}

/* Fills a raw listener's backlog; the socket connects (CONNECTING) on loop. */
TEST(free_socket_inside_connected_fired_by_the_retry_on_the_loop)
{
    lsock_loop *loop = loop_new();
    fullsrv f;
    fullsrv_open(&f, "full");
    rec r;
    rec_init(&r);
    r.free_in = "connected";
    lsock_socket *s = lsock_socket_new(loop);
    lsock_socket_set_callbacks(s, &rec_cbs, &r);
    ASSERT(lsock_socket_connect(s, f.name, LSOCK_READ_WRITE));
    ASSERT_EQ(lsock_socket_state(s), LSOCK_CONNECTING);
    raw_fd afd = fullsrv_accept(&f);
    RUN_UNTIL(loop, r.freed, 5000);
    run_for(loop, 30);
    raw_close(afd);
    fullsrv_close(&f);
    loop_free(loop);
}

TEST(free_socket_inside_error_occurred_for_connect_timeout_on_the_loop)
{
    lsock_loop *loop = loop_new();
    fullsrv f;
    fullsrv_open(&f, "full");
    rec r;
    rec_init(&r);
    r.free_in = "error_occurred";
    lsock_socket *s = lsock_socket_new(loop);
    lsock_socket_set_callbacks(s, &rec_cbs, &r);
    ASSERT(lsock_socket_set_connect_timeout(s, 50));
    ASSERT(lsock_socket_connect(s, f.name, LSOCK_READ_WRITE));
    RUN_UNTIL(loop, r.freed, 5000);
    ASSERT_STR_EQ(r.log, "state:CONNECTING error:SOCKET_TIMEOUT");
    run_for(loop, 30);
    fullsrv_close(&f);
    loop_free(loop);
}

TEST(write_buffer_limit_bounds_queue_and_loses_nothing)
{
    lsock_loop *loop = loop_new();
    pair p;
    pair_open(&p, loop);
    ASSERT_EQ(lsock_socket_write_buffer_size(p.client), 0);
    ASSERT(lsock_socket_set_write_buffer_size(p.client, 65536));
    ASSERT_EQ(lsock_socket_write_buffer_size(p.client), 65536);
    enum { TOTAL = 8 << 20 };
    unsigned char *data = pattern_new(TOTAL);
    size_t sent = 0, got = 0;
    unsigned char *in = malloc(TOTAL);
    ASSERT(in);
    /* The reader does not read until the writer is refused: the queue stays bounded. */
    while (sent < TOTAL) {
        int64_t n = lsock_socket_write(p.client, data + sent, TOTAL - (int64_t)sent);
        ASSERT(n >= 0);
        ASSERT(lsock_socket_bytes_to_write(p.client) <= 65536);
        if (n == 0) break;
        sent += (size_t)n;
    }
    ASSERT(sent < TOTAL); /* the kernel and the queue filled up */
    uint64_t deadline = test_now_ms() + 20000;
    while (got < TOTAL) {
        ASSERT(test_now_ms() < deadline);
        lsock_loop_run(loop, LSOCK_RUN_ONCE);
        int64_t n = lsock_socket_read(p.peer, in + got, TOTAL - (int64_t)got);
        ASSERT(n >= 0);
        got += (size_t)n;
        if (sent < TOTAL) {
            n = lsock_socket_write(p.client, data + sent, TOTAL - (int64_t)sent);
            ASSERT(n >= 0);
            sent += (size_t)n;
        }
        ASSERT(lsock_socket_bytes_to_write(p.client) <= 65536);
    }
    ASSERT(memcmp(in, data, TOTAL) == 0);
    free(in);
    free(data);
    pair_close(&p);
    loop_free(loop);
}

/* ---- gather writes ------------------------------------------------------------------------ */

TEST(writev_sends_the_concatenation_of_its_buffers_in_order)
{
    lsock_loop *loop = loop_new();
    pair p;
    pair_open(&p, loop);
    enum { BIG = 300000 }; /* more than one pipe write and one kernel buffer on its own */
    unsigned char *data = pattern_new(BIG + 11);
    lsock_iovec iov[5] = {
        {data, 5}, {NULL, 0}, {data + 5, 1}, {data + 6, BIG}, {data + 6 + BIG, 5}};
    ASSERT_EQ(lsock_socket_writev(p.client, iov, 5), BIG + 11);
    ASSERT_EQ(lsock_socket_writev(p.client, iov, 0), 0);
    unsigned char *in = malloc(BIG + 11);
    ASSERT(in != NULL);
    size_t got = 0;
    uint64_t deadline = test_now_ms() + 10000;
    while (got < BIG + 11) {
        ASSERT(test_now_ms() < deadline);
        lsock_loop_run(loop, LSOCK_RUN_ONCE);
        int64_t n = lsock_socket_read(p.peer, in + got, BIG + 11 - (int64_t)got);
        ASSERT(n >= 0);
        got += (size_t)n;
    }
    ASSERT(memcmp(in, data, BIG + 11) == 0);
    free(in);
    free(data);
    pair_close(&p);
    loop_free(loop);
}

TEST(writev_of_more_buffers_than_one_system_call_takes_loses_nothing)
{
    pair p;
    pair_open(&p, NULL);
    enum { N = LSOCK_IOV_MAX };
    unsigned char *data = pattern_new(N * 3);
    lsock_iovec *iov = calloc(N, sizeof *iov);
    ASSERT(iov != NULL);
    for (int i = 0; i < N; i++)
        iov[i] = (lsock_iovec){data + 3 * i, 3};
    ASSERT_EQ(lsock_socket_writev(p.client, iov, N), N * 3);
    unsigned char in[N * 3];
    size_t got = 0;
    uint64_t deadline = test_now_ms() + 10000;
    while (got < sizeof in) {
        ASSERT(test_now_ms() < deadline);
        if (lsock_socket_bytes_available(p.peer) == 0) {
            lsock_socket_flush(p.client);
            lsock_socket_wait_for_ready_read(p.peer, 100);
        }
        int64_t n = lsock_socket_read(p.peer, in + got, (int64_t)(sizeof in - got));
        ASSERT(n >= 0);
        got += (size_t)n;
    }
    ASSERT(memcmp(in, data, sizeof in) == 0);
    free(iov);
    free(data);
    pair_close(&p);
}

TEST(writev_with_bad_arguments_fails_invalid_argument_and_sends_nothing)
{
    pair p;
    pair_open(&p, NULL);
    char x = 'x';
    lsock_iovec null_base[2] = {{&x, 1}, {NULL, 1}};
    lsock_iovec huge[2] = {{&x, (size_t)INT64_MAX}, {&x, 1}};
    struct {
        const lsock_iovec *iov;
        int n;
        const char *why;
    } bad[] = {
        {null_base, -1, "iovcnt out of range (0 to 1024)"},
        {null_base, LSOCK_IOV_MAX + 1, "iovcnt out of range (0 to 1024)"},
        {NULL, 1, "NULL iov"},
        {null_base, 2, "NULL buffer"},
        {huge, 2, "total size beyond INT64_MAX"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        ASSERT_EQ(lsock_socket_writev(p.client, bad[i].iov, bad[i].n), -1);
        ASSERT_ERR(lsock_socket_error(p.client), LSOCK_ERR_INVALID_ARGUMENT);
        char want[128];
        snprintf(want, sizeof want, "lsock_socket_writev: Invalid argument (%s)", bad[i].why);
        ASSERT_STR_EQ(lsock_socket_error_string(p.client), want);
        ASSERT_EQ(lsock_socket_bytes_to_write(p.client), 0);
    }
    ASSERT(!lsock_socket_wait_for_ready_read(p.peer, 50));
    ASSERT_EQ(lsock_socket_bytes_available(p.peer), 0);
    pair_close(&p);
}

TEST(writev_on_an_unconnected_socket_fails_operation)
{
    lsock_socket *s = lsock_socket_new(NULL);
    char x = 'x';
    lsock_iovec iov = {&x, 1};
    ASSERT_EQ(lsock_socket_writev(s, &iov, 1), -1);
    ASSERT_ERR(lsock_socket_error(s), LSOCK_ERR_OPERATION);
    ASSERT(starts_with(lsock_socket_error_string(s), "lsock_socket_writev: "));
    lsock_socket_free(s);
}

TEST(writev_with_a_write_buffer_limit_takes_what_fits)
{
    pair p;
    pair_open(&p, NULL);
    ASSERT(lsock_socket_set_write_buffer_size(p.client, 1000));
    /* Fill the kernel (and the pipe) until the queue holds something. */
    enum { CHUNK = 65536 };
    unsigned char *data = pattern_new(CHUNK);
    uint64_t deadline = test_now_ms() + 10000;
    while (lsock_socket_bytes_to_write(p.client) == 0) {
        ASSERT(test_now_ms() < deadline);
        ASSERT(lsock_socket_write(p.client, data, CHUNK) > 0);
    }
    int64_t queued = lsock_socket_bytes_to_write(p.client);
    ASSERT(queued > 0 && queued <= 1000);
    lsock_iovec iov[2] = {{data, 600}, {data + 600, 600}};
    int64_t n = lsock_socket_writev(p.client, iov, 2);
    ASSERT_EQ(n, 1000 - queued); /* the room left, no more */
    ASSERT_EQ(lsock_socket_bytes_to_write(p.client), 1000);
    free(data);
    pair_close(&p);
}

TEST(write_buffer_size_rejects_negative)
{
    lsock_socket *s = lsock_socket_new(NULL);
    ASSERT(!lsock_socket_set_write_buffer_size(s, -1));
    ASSERT_ERR(lsock_socket_error(s), LSOCK_ERR_INVALID_ARGUMENT);
    ASSERT(starts_with(lsock_socket_error_string(s), "lsock_socket_set_write_buffer_size: "));
    lsock_socket_free(s);
}

static uint64_t cpu_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

TEST(connect_retry_on_full_backlog_does_not_spin)
{
    lsock_loop *loop = loop_new();
    fullsrv f;
    fullsrv_open(&f, "nospin");
    lsock_socket *a = lsock_socket_new(loop), *b = lsock_socket_new(NULL);
    ASSERT(lsock_socket_set_connect_timeout(a, 600));
    ASSERT(lsock_socket_set_connect_timeout(b, 600));
    uint64_t wall0 = test_now_ms(), cpu0 = cpu_ms();
    ASSERT(lsock_socket_connect(a, f.name, LSOCK_READ_WRITE));
    ASSERT(lsock_socket_connect(b, f.name, LSOCK_READ_WRITE));
    ASSERT(!lsock_socket_wait_for_connected(b, 5000));                 /* retries without a loop */
    RUN_UNTIL(loop, lsock_socket_state(a) == LSOCK_UNCONNECTED, 5000); /* and on the loop */
    uint64_t wall = test_now_ms() - wall0, cpu = cpu_ms() - cpu0;
    ASSERT_ERR(lsock_socket_error(a), LSOCK_ERR_SOCKET_TIMEOUT);
    ASSERT_ERR(lsock_socket_error(b), LSOCK_ERR_SOCKET_TIMEOUT);
    ASSERT(wall >= 500);
    if (cpu * 5 > wall)
        FAIL_("retrying used %llu ms of CPU in %llu ms", (unsigned long long)cpu,
              (unsigned long long)wall);
    lsock_socket_free(a);
    lsock_socket_free(b);
    fullsrv_close(&f);
    loop_free(loop);
}

/* ---- linger: a graceful disconnect bounded in time ------------------------------------- */

/* The client queues n bytes that the peer, reading at most limit bytes, never takes: returns
 * once the peer is seen holding a full buffer and the client's queue is still non-empty. */
static void stall_peer(lsock_loop *loop, pair *p, int64_t limit, size_t n)
{
    ASSERT(lsock_socket_set_read_buffer_size(p->peer, limit));
    unsigned char *data = pattern_new(n);
    ASSERT_EQ(lsock_socket_write(p->client, data, (int64_t)n), (int64_t)n);
    free(data);
    RUN_UNTIL(loop, lsock_socket_bytes_available(p->peer) == limit, 5000);
    ASSERT(lsock_socket_bytes_to_write(p->client) > 0);
}

TEST(set_linger_keeps_values_and_refuses_negatives_other_than_minus_one)
{
    lsock_socket *s = lsock_socket_new(NULL);
    ASSERT_EQ(lsock_socket_linger(s), -1);
    lsock_socket_set_linger(s, 250);
    ASSERT_EQ(lsock_socket_linger(s), 250);
    ASSERT_ERR(lsock_socket_error(s), LSOCK_ERR_NONE);
    lsock_socket_set_linger(s, -2);
    ASSERT_EQ(lsock_socket_linger(s), 250);
    ASSERT_ERR(lsock_socket_error(s), LSOCK_ERR_INVALID_ARGUMENT);
    ASSERT(starts_with(lsock_socket_error_string(s), "lsock_socket_set_linger: "));
    lsock_socket_set_linger(s, 0);
    ASSERT_EQ(lsock_socket_linger(s), 0);
    lsock_socket_set_linger(s, -1);
    ASSERT_EQ(lsock_socket_linger(s), -1);
    lsock_socket_set_linger(NULL, 5);
    ASSERT_EQ(lsock_socket_linger(NULL), -1);
    lsock_socket_free(s);
}

TEST(disconnect_with_linger_aborts_with_socket_timeout_when_the_peer_never_reads)
{
    lsock_loop *loop = loop_new();
    pair p;
    pair_open(&p, loop);
    rec r;
    rec_init(&r);
    lsock_socket_set_callbacks(p.client, &rec_cbs, &r);
    stall_peer(loop, &p, 4096, 8u << 20);
    lsock_socket_set_linger(p.client, 100);
    uint64_t t0 = test_now_ms();
    lsock_socket_disconnect(p.client);
    ASSERT_EQ(lsock_socket_state(p.client), LSOCK_CLOSING);
    RUN_UNTIL(loop, lsock_socket_state(p.client) == LSOCK_UNCONNECTED, 5000);
    ASSERT(test_now_ms() - t0 >= 90);
    ASSERT_ERR(lsock_socket_error(p.client), LSOCK_ERR_SOCKET_TIMEOUT);
    ASSERT(starts_with(lsock_socket_error_string(p.client), "lsock_socket_disconnect: "));
    ASSERT_EQ(lsock_socket_bytes_to_write(p.client), 0);
    ASSERT_STR_EQ(r.log, "state:CLOSING error:SOCKET_TIMEOUT state:UNCONNECTED "
                         "read_channel_finished disconnected");
    pair_close(&p);
    loop_free(loop);
}

TEST(disconnect_without_linger_stays_closing_while_the_peer_never_reads)
{
    lsock_loop *loop = loop_new();
    pair p;
    pair_open(&p, loop);
    rec r;
    rec_init(&r);
    lsock_socket_set_callbacks(p.client, &rec_cbs, &r);
    stall_peer(loop, &p, 4096, 8u << 20);
    lsock_socket_disconnect(p.client);
    ASSERT_EQ(lsock_socket_state(p.client), LSOCK_CLOSING);
    int64_t queued = lsock_socket_bytes_to_write(p.client);
    ASSERT(run_for(loop, 300) > 3);
    ASSERT_EQ(lsock_socket_state(p.client), LSOCK_CLOSING);
    ASSERT_EQ(lsock_socket_bytes_to_write(p.client), queued);
    ASSERT_EQ(lsock_socket_bytes_available(p.peer), 4096);
    ASSERT_EQ(r.errors, 0);
    ASSERT_STR_EQ(r.log, "state:CLOSING");
    pair_close(&p);
    loop_free(loop);
}

TEST(linger_that_expires_after_the_queue_drained_does_nothing)
{
    lsock_loop *loop = loop_new();
    pair p;
    pair_open(&p, loop);
    rec r;
    rec_init(&r);
    lsock_socket_set_callbacks(p.client, &rec_cbs, &r);
    size_t n = 2u << 20;
    unsigned char *data = pattern_new(n);
    ASSERT_EQ(lsock_socket_write(p.client, data, (int64_t)n), (int64_t)n);
    ASSERT(lsock_socket_bytes_to_write(p.client) > 0);
    lsock_socket_set_linger(p.client, 1000);
    uint64_t t0 = test_now_ms();
    lsock_socket_disconnect(p.client);
    ASSERT_EQ(lsock_socket_state(p.client), LSOCK_CLOSING);
    /* The peer reads everything: the queue drains and the close completes. */
    RUN_UNTIL(loop, lsock_socket_state(p.client) == LSOCK_UNCONNECTED, 5000);
    RUN_UNTIL(loop, lsock_socket_bytes_available(p.peer) == (int64_t)n, 5000);
    ASSERT(test_now_ms() - t0 < 1000); /* else the linger time would be the test */
    ASSERT_ERR(lsock_socket_error(p.client), LSOCK_ERR_NONE);
    /* Past the linger time: nothing more happens. */
    while (test_now_ms() < t0 + 1200)
        lsock_loop_run(loop, LSOCK_RUN_ONCE);
    ASSERT_ERR(lsock_socket_error(p.client), LSOCK_ERR_NONE);
    ASSERT_EQ(r.errors, 0);
    ASSERT_STR_EQ(r.log, "state:CLOSING state:UNCONNECTED read_channel_finished disconnected");
    free(data);
    pair_close(&p);
    loop_free(loop);
}

/* ---- a descriptor the loop cannot watch ------------------------------------------------ */

/* The error text of a watch that failed with ENOSPC, after "<call>: ". */
static const char *watch_failure_text(const char *call)
{
    static char buf[256];
    snprintf(buf, sizeof buf, "%s: Out of resources (cannot watch the connection: %s)", call,
             lsock__plat_strerror(ENOSPC));
    return buf;
}

TEST(connect_fails_socket_resource_when_the_loop_cannot_watch_the_connection)
{
    lsock_loop *loop = loop_new();
    const char *name = test_name("nowatch");
    lsock_server *srv = lsock_server_new(loop);
    ASSERT(lsock_server_listen(srv, name));
    lsock_socket *s = lsock_socket_new(loop);
    rec r;
    rec_init(&r);
    lsock_socket_set_callbacks(s, &rec_cbs, &r);
    lsock__test_io_start_fail = ENOSPC;
    ASSERT(!lsock_socket_connect(s, name, LSOCK_READ_WRITE));
    ASSERT_EQ(lsock__test_io_start_fail, 0);
    ASSERT_ERR(lsock_socket_error(s), LSOCK_ERR_SOCKET_RESOURCE);
    ASSERT_STR_EQ(lsock_socket_error_string(s), watch_failure_text("lsock_socket_connect"));
    ASSERT_EQ(lsock_socket_state(s), LSOCK_UNCONNECTED);
    ASSERT_STR_EQ(r.log, "state:CONNECTING error:SOCKET_RESOURCE state:UNCONNECTED");
    /* Nothing is left half-made: the next connect works. */
    ASSERT(lsock_socket_connect(s, name, LSOCK_READ_WRITE));
    ASSERT_EQ(lsock_socket_state(s), LSOCK_CONNECTED);
    lsock_socket_free(s);
    lsock_server_free(srv);
    loop_free(loop);
}

TEST(accepted_connection_the_loop_cannot_watch_ends_with_socket_resource)
{
    lsock_loop *loop = loop_new();
    const char *name = test_name("nowatchacc");
    lsock_server *srv = lsock_server_new(loop);
    ASSERT(lsock_server_listen(srv, name));
    lsock_socket *c = lsock_socket_new(loop);
    ASSERT(lsock_socket_connect(c, name, LSOCK_READ_WRITE));
    RUN_UNTIL(loop, lsock_server_has_pending_connections(srv), 5000);
    lsock__test_io_start_fail = ENOSPC;
    lsock_socket *s = lsock_server_next_pending_connection(srv);
    ASSERT(s != NULL);
    ASSERT_EQ(lsock__test_io_start_fail, 0);
    rec r;
    rec_init(&r);
    lsock_socket_set_callbacks(s, &rec_cbs, &r);
    RUN_UNTIL(loop, lsock_socket_state(s) == LSOCK_UNCONNECTED, 2000);
    ASSERT_ERR(lsock_socket_error(s), LSOCK_ERR_SOCKET_RESOURCE);
    ASSERT_STR_EQ(lsock_socket_error_string(s),
                  watch_failure_text("lsock_server_next_pending_connection"));
    ASSERT_STR_EQ(r.log, "error:SOCKET_RESOURCE state:CLOSING state:UNCONNECTED "
                         "read_channel_finished disconnected");
    /* The client sees the connection end. */
    RUN_UNTIL(loop, lsock_socket_state(c) == LSOCK_UNCONNECTED, 5000);
    ASSERT_ERR(lsock_socket_error(c), LSOCK_ERR_PEER_CLOSED);
    lsock_socket_free(s);
    lsock_socket_free(c);
    lsock_server_free(srv);
    loop_free(loop);
}

TEST(adopted_descriptor_the_loop_cannot_watch_ends_with_socket_resource)
{
    lsock_loop *loop = loop_new();
    raw_fd sv[2];
    raw_socketpair(sv);
    lsock_socket *s = lsock_socket_new(loop);
    rec r;
    rec_init(&r);
    lsock_socket_set_callbacks(s, &rec_cbs, &r);
    lsock__test_io_start_fail = ENOSPC;
    ASSERT(lsock_socket_set_descriptor(s, sv[0], LSOCK_CONNECTED, LSOCK_READ_WRITE));
    ASSERT_EQ(lsock__test_io_start_fail, 0);
    RUN_UNTIL(loop, lsock_socket_state(s) == LSOCK_UNCONNECTED, 2000);
    ASSERT_ERR(lsock_socket_error(s), LSOCK_ERR_SOCKET_RESOURCE);
    ASSERT_STR_EQ(lsock_socket_error_string(s), watch_failure_text("lsock_socket_set_descriptor"));
    ASSERT_STR_EQ(r.log, "state:CONNECTED error:SOCKET_RESOURCE state:CLOSING state:UNCONNECTED "
                         "read_channel_finished disconnected");
    lsock_socket_free(s);
    /* The socket owned sv[0] and closed it: the other end sees EOF. */
    char buf[8];
    ASSERT(raw_wait_readable(sv[1], 5000));
    ASSERT_EQ(raw_read(sv[1], buf, sizeof buf), 0);
    raw_close(sv[1]);
    loop_free(loop);
}

TEST(socket_that_cannot_resume_reading_ends_with_socket_resource)
{
    lsock_loop *loop = loop_new();
    pair p;
    pair_open(&p, loop);
    rec r;
    rec_init(&r);
    lsock_socket_set_callbacks(p.client, &rec_cbs, &r);
    ASSERT(lsock_socket_set_read_buffer_size(p.client, 4));
    ASSERT_EQ(lsock_socket_write(p.peer, "0123456789", 10), 10);
    RUN_UNTIL(loop, lsock_socket_bytes_available(p.client) == 4, 5000); /* reading paused */
    lsock__test_io_start_fail = ENOSPC;
    char buf[16];
    ASSERT_EQ(lsock_socket_read(p.client, buf, sizeof buf), 4); /* resumes reading: refused */
    ASSERT_EQ(lsock__test_io_start_fail, 0);
    RUN_UNTIL(loop, lsock_socket_state(p.client) == LSOCK_UNCONNECTED, 2000);
    ASSERT_ERR(lsock_socket_error(p.client), LSOCK_ERR_SOCKET_RESOURCE);
    ASSERT_STR_EQ(lsock_socket_error_string(p.client), watch_failure_text("lsock_socket_read"));
    ASSERT_STR_EQ(r.log, "error:SOCKET_RESOURCE state:CLOSING state:UNCONNECTED "
                         "read_channel_finished disconnected");
    pair_close(&p);
    loop_free(loop);
}

typedef struct busy_pp {
    int left;
    lsock_loop *loop;
} busy_pp;

static void busy_echo(lsock_socket *s, void *u)
{
    (void)u;
    char c;
    while (lsock_socket_read(s, &c, 1) == 1)
        lsock_socket_write(s, &c, 1);
}

static void busy_back(lsock_socket *s, void *u)
{
    busy_pp *b = u;
    char c;
    while (lsock_socket_read(s, &c, 1) == 1)
        if (--b->left > 0) lsock_socket_write(s, &c, 1);
}

/* A loop that busy-polls delivers a pingpong as one that sleeps: 200 round trips of one
 * byte, every byte echoed. */
TEST(busy_poll_loop_delivers_a_pingpong_as_without_it)
{
    lsock_loop *loop = loop_new();
    lsock_loop_set_busy_poll(loop, 100);
    pair p;
    pair_open(&p, loop);
    lsock_socket_callbacks echo = {.ready_read = busy_echo};
    lsock_socket_callbacks back = {.ready_read = busy_back};
    busy_pp b = {200, loop};
    lsock_socket_set_callbacks(p.peer, &echo, NULL);
    lsock_socket_set_callbacks(p.client, &back, &b);
    ASSERT_EQ(lsock_socket_write(p.client, "x", 1), 1);
    RUN_UNTIL(loop, b.left == 0, 20000);
    pair_close(&p);
    lsock_loop_free(loop);
}

/* ---- ready_read that reads large pieces ------------------------------------------------ */

/* Whether reads straight from the kernel into the caller's buffer happened since *mark (and
 * moves the mark; on Windows always true, see counted_since). */
static int direct_reads_since(unsigned long *mark)
{
    return counted_since(&lsock__test_direct_reads, mark);
}

typedef struct big_reader {
    size_t total, want;
    int calls, one_piece; /* one_piece: read one 64 KiB piece per ready_read, leave the rest */
    int bad, rcf, disconnected, errors;
    lsock_error last_error;
    char log[256];
} big_reader;

static void big_ready_read(lsock_socket *s, void *u)
{
    big_reader *b = u;
    static unsigned char buf[65536];
    b->calls++;
    int64_t n;
    while ((n = lsock_socket_read(s, buf, sizeof buf)) > 0) {
        for (int64_t i = 0; i < n; i++)
            if (buf[i] != pattern_byte(b->total + (size_t)i)) b->bad++;
        b->total += (size_t)n;
        if (b->one_piece) break;
    }
}

static void big_rcf(lsock_socket *s, void *u)
{
    (void)s;
    big_reader *b = u;
    b->rcf++;
    strcat(b->log, "rcf ");
}

static void big_disconnected(lsock_socket *s, void *u)
{
    (void)s;
    big_reader *b = u;
    b->disconnected++;
    strcat(b->log, "disconnected ");
}

static void big_error(lsock_socket *s, lsock_error e, void *u)
{
    (void)s;
    big_reader *b = u;
    b->errors++;
    b->last_error = e;
    strcat(b->log, "error ");
}

static const lsock_socket_callbacks big_cbs = {.ready_read = big_ready_read,
                                               .read_channel_finished = big_rcf,
                                               .disconnected = big_disconnected,
                                               .error_occurred = big_error};

/* Streams n pattern bytes from the client to a peer whose ready_read reads 64 KiB pieces;
 * the client disconnects at the end when close_after. */
static void stream_to_big_reader(big_reader *b, size_t n, int close_after)
{
    lsock_loop *loop = loop_new();
    pair p;
    pair_open(&p, loop);
    lsock_socket_set_callbacks(p.peer, &big_cbs, b);
    unsigned char *data = pattern_new(n);
    ASSERT_EQ(lsock_socket_write(p.client, data, (int64_t)n), (int64_t)n);
    if (close_after) lsock_socket_disconnect(p.client);
    if (b->one_piece) {
        /* What ready_read leaves stays buffered (it is not announced again until more comes):
         * read it afterwards. */
        RUN_UNTIL(loop, b->total + (size_t)lsock_socket_bytes_available(p.peer) == n, 20000);
        b->one_piece = 0;
        big_ready_read(p.peer, b);
    }
    RUN_UNTIL(loop, b->total == n && (!close_after || b->disconnected), 20000);
    ASSERT_EQ(b->bad, 0);
    ASSERT_EQ(b->total, n);
    free(data);
    pair_close(&p);
    lsock_loop_free(loop);
}

TEST(ready_read_reading_64_kib_pieces_gets_every_byte_in_order)
{
    big_reader b;
    memset(&b, 0, sizeof b);
    unsigned long mark = atomic_load(&lsock__test_direct_reads);
    stream_to_big_reader(&b, 8u << 20, 0);
    ASSERT(b.calls > 0);
    ASSERT(direct_reads_since(&mark));
}

/* What ready_read leaves is kept in the buffer (none of it left in the kernel unannounced),
 * and ready_read fires again as more arrives. */
TEST(ready_read_that_reads_one_piece_leaves_the_rest_buffered_and_loses_nothing)
{
    big_reader b;
    memset(&b, 0, sizeof b);
    b.one_piece = 1;
    stream_to_big_reader(&b, 4u << 20, 0);
    ASSERT(b.calls > 1);
}

/* The end of the stream that a read in ready_read meets is reported from the loop, after the
 * data and in Qt's order, once. */
TEST(end_of_stream_met_by_a_read_in_ready_read_ends_the_connection_in_order)
{
    big_reader b;
    memset(&b, 0, sizeof b);
    stream_to_big_reader(&b, 300000, 1);
    ASSERT_EQ(b.errors, 1);
    ASSERT_ERR(b.last_error, LSOCK_ERR_PEER_CLOSED);
    ASSERT_EQ(b.rcf, 1);
    ASSERT_EQ(b.disconnected, 1);
    ASSERT_STR_EQ(b.log, "error rcf disconnected ");
}

typedef struct line_reader {
    int lines, bad, peeked;
} line_reader;

static void lines_ready_read(lsock_socket *s, void *u)
{
    line_reader *l = u;
    char head[4];
    if (lsock_socket_bytes_available(s) > 0 && lsock_socket_peek(s, head, 4) > 0) l->peeked++;
    char line[64], want[64];
    while (lsock_socket_can_read_line(s)) {
        lsock_socket_read_line(s, line, sizeof line);
        snprintf(want, sizeof want, "line %d\n", l->lines);
        if (strcmp(line, want) != 0) l->bad++;
        l->lines++;
    }
}

/* bytes_available, peek, can_read_line and read_line inside ready_read see the data as they
 * did when it was always buffered first. */
TEST(buffer_calls_in_ready_read_see_every_byte)
{
    lsock_loop *loop = loop_new();
    pair p;
    pair_open(&p, loop);
    line_reader l = {0, 0, 0};
    lsock_socket_callbacks cb = {.ready_read = lines_ready_read};
    lsock_socket_set_callbacks(p.peer, &cb, &l);
    char line[64];
    for (int i = 0; i < 20000; i++) {
        int n = snprintf(line, sizeof line, "line %d\n", i);
        ASSERT_EQ(lsock_socket_write(p.client, line, n), n);
    }
    RUN_UNTIL(loop, l.lines == 20000, 20000);
    ASSERT_EQ(l.bad, 0);
    ASSERT(l.peeked > 0);
    pair_close(&p);
    lsock_loop_free(loop);
}

/* ---- ready_read with the bytes left in the kernel (reads straight into the caller's buffer) */

typedef struct fresh_reader {
    size_t total;
    int64_t left; /* bytes_available() when the last ready_read returned */
    int calls, stale, empty, bad, disconnected;
} fresh_reader;

/* Reads 64 KiB pieces; every third call reads one piece and leaves the rest. Counts the calls
 * that announced no new byte (stale) and those with nothing to read at all (empty). */
static void fresh_ready_read(lsock_socket *s, void *u)
{
    fresh_reader *f = u;
    static unsigned char buf[65536];
    f->calls++;
    int64_t avail = lsock_socket_bytes_available(s);
    if (avail == 0) f->empty++;
    if (avail <= f->left) f->stale++;
    int64_t n;
    while ((n = lsock_socket_read(s, buf, sizeof buf)) > 0) {
        for (int64_t i = 0; i < n; i++)
            if (buf[i] != pattern_byte(f->total + (size_t)i)) f->bad++;
        f->total += (size_t)n;
        if (f->calls % 3 == 0) break;
    }
    f->left = lsock_socket_bytes_available(s);
}

static void fresh_disconnected(lsock_socket *s, void *u)
{
    (void)s;
    ((fresh_reader *)u)->disconnected++;
}

/* ready_read fires for new bytes only: never again for bytes it announced and the application
 * left, and never with nothing to read at a bare end of the stream. */
TEST(ready_read_fires_for_new_bytes_only_and_never_at_a_bare_end_of_stream)
{
    lsock_loop *loop = loop_new();
    pair p;
    pair_open(&p, loop);
    fresh_reader f;
    memset(&f, 0, sizeof f);
    lsock_socket_callbacks cb = {.ready_read = fresh_ready_read,
                                 .disconnected = fresh_disconnected};
    lsock_socket_set_callbacks(p.peer, &cb, &f);
    unsigned long mark = atomic_load(&lsock__test_direct_reads);
    size_t n = 4u << 20;
    unsigned char *data = pattern_new(n);
    ASSERT_EQ(lsock_socket_write(p.client, data, (int64_t)n), (int64_t)n);
    RUN_UNTIL(loop, f.total + (size_t)lsock_socket_bytes_available(p.peer) == n, 20000);
    /* What the last ready_read left: read outside it. */
    static unsigned char rest[65536];
    int64_t r;
    while ((r = lsock_socket_read(p.peer, rest, sizeof rest)) > 0) {
        for (int64_t i = 0; i < r; i++)
            if (rest[i] != pattern_byte(f.total + (size_t)i)) f.bad++;
        f.total += (size_t)r;
    }
    ASSERT_EQ(f.total, n);
    ASSERT_EQ(f.bad, 0);
    ASSERT(direct_reads_since(&mark));
    int calls = f.calls;
    lsock_socket_disconnect(p.client);
    RUN_UNTIL(loop, f.disconnected == 1, 5000);
    ASSERT_EQ(f.calls, calls); /* the end of the stream alone is no ready_read */
    ASSERT_EQ(f.stale, 0);
    ASSERT_EQ(f.empty, 0);
    free(data);
    pair_close(&p);
    lsock_loop_free(loop);
}

/* A socket whose ready_read reads 64 KiB pieces has seen a large read: the next data is
 * announced with its bytes left in the kernel. Streams n bytes through it. */
static void warm_up(lsock_loop *loop, pair *p, size_t n)
{
    big_reader b;
    memset(&b, 0, sizeof b);
    lsock_socket_set_callbacks(p->peer, &big_cbs, &b);
    unsigned char *data = pattern_new(n);
    ASSERT_EQ(lsock_socket_write(p->client, data, (int64_t)n), (int64_t)n);
    RUN_UNTIL(loop, b.total == n, 20000);
    ASSERT_EQ(b.bad, 0);
    free(data);
}

/* Reads the pattern bytes the socket holds: how many, or -1 if one is wrong. */
static int64_t read_pattern(lsock_socket *s)
{
    static unsigned char buf[65536];
    int64_t total = 0, n;
    while ((n = lsock_socket_read(s, buf, sizeof buf)) > 0) {
        for (int64_t i = 0; i < n; i++)
            if (buf[i] != pattern_byte((size_t)(total + i))) return -1;
        total += n;
    }
    return total;
}

#ifndef _WIN32
typedef struct peeker {
    int64_t left; /* bytes_available() when the last ready_read returned */
    int calls, stale, shrank;
} peeker;

/* Peeks, reads nothing: bytes_available() must not change across the peek (which buffers
 * what was announced), and every call must bring new bytes. */
static void peek_ready_read(lsock_socket *s, void *u)
{
    peeker *k = u;
    char c;
    k->calls++;
    int64_t before = lsock_socket_bytes_available(s);
    if (before <= k->left) k->stale++;
    lsock_socket_peek(s, &c, 1);
    if (lsock_socket_bytes_available(s) != before) k->shrank++;
    k->left = lsock_socket_bytes_available(s);
}
#endif

/* More than lsock buffers in one go (1 MiB) waiting in the kernel (a sender with a large
 * send buffer): what ready_read announces is what the buffer calls then see, and nothing is
 * announced twice. */
TEST(ready_read_announces_no_more_than_one_buffering_takes_in)
{
#ifdef _WIN32
    SKIP("a pipe's buffer is fixed when the server makes it, and Windows reads never leave "
         "bytes in a kernel: nothing to announce");
#else
    lsock_loop *loop = loop_new();
    pair p;
    pair_open(&p, loop);
    warm_up(loop, &p, 1u << 20);
    int big = 8 << 20;
    int fd = (int)lsock_socket_descriptor(p.client);
    if (setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &big, sizeof big) != 0)
        setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &big, sizeof big);
    peeker k = {0, 0, 0, 0};
    lsock_socket_callbacks cb = {.ready_read = peek_ready_read};
    lsock_socket_set_callbacks(p.peer, &cb, &k);
    size_t n = 3u << 20;
    unsigned char *data = pattern_new(n);
    ASSERT_EQ(lsock_socket_write(p.client, data, (int64_t)n), (int64_t)n);
    RUN_UNTIL(loop, lsock_socket_bytes_available(p.peer) == (int64_t)n, 10000);
    ASSERT_EQ(k.stale, 0);
    ASSERT_EQ(k.shrank, 0);
    ASSERT_EQ(read_pattern(p.peer), (int64_t)n);
    free(data);
    pair_close(&p);
    lsock_loop_free(loop);
#endif
}

typedef struct end_in_ready_read {
    int calls, fork_status;
    int64_t avail;
    pid_t child; /* in the child: its own pid */
    void (*act)(lsock_socket *s, struct end_in_ready_read *e);
    int child_reads;   /* act_fork: the child reads inside ready_read */
    int64_t child_got; /* what it read */
} end_in_ready_read;

static void end_ready_read(lsock_socket *s, void *u)
{
    end_in_ready_read *e = u;
    e->calls++;
    e->avail = lsock_socket_bytes_available(s);
    e->act(s, e);
}

static void act_disconnect_in_ready_read(lsock_socket *s, end_in_ready_read *e)
{
    (void)e;
    lsock_socket_disconnect(s);
}

/* disconnect() inside ready_read, before reading: the announced bytes stay readable after the
 * connection ends, as when they were buffered first. */
TEST(disconnect_inside_ready_read_keeps_the_bytes_it_announced)
{
    lsock_loop *loop = loop_new();
    pair p;
    pair_open(&p, loop);
    warm_up(loop, &p, 1u << 20);
    end_in_ready_read e = {0, 0, 0, 0, act_disconnect_in_ready_read, 0, 0};
    lsock_socket_callbacks cb = {.ready_read = end_ready_read};
    lsock_socket_set_callbacks(p.peer, &cb, &e);
    unsigned long announced = atomic_load(&lsock__test_announced);
    size_t n = 100000;
    unsigned char *data = pattern_new(n);
    ASSERT_EQ(lsock_socket_write(p.client, data, (int64_t)n), (int64_t)n);
    RUN_UNTIL(loop, e.calls == 1, 5000);
#ifndef _WIN32 /* Windows never leaves bytes in the kernel: see direct_reads_since */
    ASSERT(atomic_load(&lsock__test_announced) > announced);
#else
    (void)announced;
#endif
    ASSERT_EQ(lsock_socket_state(p.peer), LSOCK_UNCONNECTED);
    ASSERT_EQ(lsock_socket_bytes_available(p.peer), e.avail);
    ASSERT_EQ(read_pattern(p.peer), e.avail);
    ASSERT(e.avail >= 16384);
    free(data);
    pair_close(&p);
    lsock_loop_free(loop);
}

#ifndef _WIN32
static void act_fork(lsock_socket *s, end_in_ready_read *e)
{
    pid_t pid = fork();
    ASSERT(pid >= 0);
    if (pid == 0) {
        e->child = getpid(); /* the child returns from ready_read into lsock, and stops */
        if (e->child_reads) e->child_got = read_pattern(s);
        return;
    }
    int st = 0;
    ASSERT_EQ(waitpid(pid, &st, 0), pid); /* the child is done before the parent goes on */
    e->fork_status = st;
}

/* fork() inside ready_read, the child reading inside it (child_reads) or after it: each
 * process holds the bytes ready_read announced, as when they were buffered first; the child
 * takes nothing of the parent's. */
static void fork_inside_ready_read(int child_reads)
{
    lsock_loop *loop = loop_new();
    pair p;
    pair_open(&p, loop);
    warm_up(loop, &p, 1u << 20);
    end_in_ready_read e = {0, 0, 0, 0, act_fork, child_reads, 0};
    lsock_socket_callbacks cb = {.ready_read = end_ready_read};
    lsock_socket_set_callbacks(p.peer, &cb, &e);
    unsigned long announced = atomic_load(&lsock__test_announced);
    size_t n = 100000;
    unsigned char *data = pattern_new(n);
    ASSERT_EQ(lsock_socket_write(p.client, data, (int64_t)n), (int64_t)n);
    RUN_UNTIL(loop, e.calls == 1, 5000);
    if (e.child == getpid()) { /* the child: its own copy of the announced bytes, whole */
        int64_t got = child_reads ? e.child_got : read_pattern(p.peer);
        _exit(got == e.avail && e.avail >= 16384 ? 0 : 3);
    }
    ASSERT(WIFEXITED(e.fork_status));
    ASSERT_EQ(WEXITSTATUS(e.fork_status), 0);
    ASSERT(atomic_load(&lsock__test_announced) > announced);
    RUN_UNTIL(loop, lsock_socket_bytes_available(p.peer) == (int64_t)n, 5000);
    ASSERT_EQ(read_pattern(p.peer), (int64_t)n);
    free(data);
    pair_close(&p);
    lsock_loop_free(loop);
}
#endif

TEST(fork_inside_ready_read_gives_parent_and_child_each_the_announced_bytes)
{
#ifdef _WIN32
    SKIP("Windows has no fork()");
#else
    fork_inside_ready_read(0);
#endif
}

TEST(a_child_reading_inside_ready_read_takes_nothing_of_the_parents)
{
#ifdef _WIN32
    SKIP("Windows has no fork()");
#else
    fork_inside_ready_read(1);
#endif
}

#ifndef _WIN32
static void note_ready_read(lsock_socket *s, void *u)
{
    end_in_ready_read *e = u;
    e->calls++;
    e->avail = lsock_socket_bytes_available(s);
}
#endif

/* A child of fork() (without lsock_loop_fork()) that waits on an inherited socket whose
 * ready_read only notes what came: the bytes stay readable after it, announced once. */
TEST(a_child_waiting_on_an_inherited_socket_keeps_what_ready_read_announced)
{
#ifdef _WIN32
    SKIP("Windows has no fork()");
#else
    lsock_loop *loop = loop_new();
    pair p;
    pair_open(&p, loop);
    warm_up(loop, &p, 1u << 20);
    end_in_ready_read e = {0, 0, 0, 0, NULL, 0, 0};
    lsock_socket_callbacks cb = {.ready_read = note_ready_read};
    lsock_socket_set_callbacks(p.peer, &cb, &e);
    unsigned long announced = atomic_load(&lsock__test_announced);
    size_t n = 100000;
    unsigned char *data = pattern_new(n);
    int sync[2];
    ASSERT_EQ(pipe(sync), 0);
    pid_t pid = fork();
    ASSERT(pid >= 0);
    if (pid == 0) {
        char go;
        close(sync[1]);
        if (read(sync[0], &go, 1) != 1) _exit(4);
        int64_t have = 0;
        uint64_t deadline = test_now_ms() + 5000;
        while (have < (int64_t)n && test_now_ms() < deadline) {
            int calls = e.calls;
            if (!lsock_socket_wait_for_ready_read(p.peer, 1000)) _exit(5);
            if (e.calls != calls + 1) _exit(6);                            /* once per arrival */
            if (lsock_socket_bytes_available(p.peer) != e.avail) _exit(7); /* kept */
            have = e.avail;
        }
        _exit(read_pattern(p.peer) == (int64_t)n && atomic_load(&lsock__test_announced) > announced
                  ? 0
                  : 3);
    }
    close(sync[0]);
    ASSERT_EQ(lsock_socket_write(p.client, data, (int64_t)n), (int64_t)n);
    ASSERT_EQ(write(sync[1], "g", 1), 1);
    /* The parent sends what the kernel did not take, without reading the peer's side. */
    int st = 0;
    uint64_t deadline = test_now_ms() + 10000;
    while (waitpid(pid, &st, WNOHANG) == 0) {
        ASSERT(test_now_ms() < deadline);
        if (lsock_socket_bytes_to_write(p.client) > 0)
            lsock_socket_wait_for_bytes_written(p.client, 10);
        else
            lsock_socket_wait_for_ready_read(p.client, 10);
    }
    close(sync[1]);
    ASSERT(WIFEXITED(st));
    ASSERT_EQ(WEXITSTATUS(st), 0);
    free(data);
    pair_close(&p);
    lsock_loop_free(loop);
#endif
}

/* wait_for_ready_read on a socket with a loop whose ready_read takes every byte straight from
 * the kernel: the wait has what it waited for. */
TEST(wait_for_ready_read_is_met_when_ready_read_takes_every_byte)
{
    lsock_loop *loop = loop_new();
    pair p;
    pair_open(&p, loop);
    warm_up(loop, &p, 1u << 20);
    big_reader b;
    memset(&b, 0, sizeof b);
    lsock_socket_set_callbacks(p.peer, &big_cbs, &b);
    unsigned long mark = atomic_load(&lsock__test_direct_reads);
    size_t n = 100000;
    unsigned char *data = pattern_new(n);
    ASSERT_EQ(lsock_socket_write(p.client, data, (int64_t)n), (int64_t)n);
    uint64_t deadline = test_now_ms() + 5000;
    while (b.total < n) {
        ASSERT(test_now_ms() < deadline);
        ASSERT(lsock_socket_wait_for_ready_read(p.peer, 5000));
    }
    ASSERT_EQ(b.total, n);
    ASSERT_EQ(b.bad, 0);
    ASSERT(direct_reads_since(&mark));
    free(data);
    pair_close(&p);
    lsock_loop_free(loop);
}

TEST_MAIN()
