/*
 * Server behaviour (QLocalServer): defaults, listen and its errors, stale files and
 * lsock_remove_server(), access modes, the abstract namespace, the pending queue and
 * max_pending, listen_descriptor, freeing inside the callback, many client processes.
 */
#include "test.h"
#include "lsock.h"

#include <dirent.h>
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

/* ---- server helpers -------------------------------------------------------------------- */

typedef struct srvrec {
    int new_connections;
    bool free_in_callback;
    bool freed;
    bool take_in_callback;
    lsock_socket *taken[64];
    int ntaken;
} srvrec;

static void on_new_connection(lsock_server *srv, void *u)
{
    srvrec *r = u;
    r->new_connections++;
    if (r->take_in_callback) {
        lsock_socket *s = lsock_server_next_pending_connection(srv);
        ASSERT(s != NULL);
        ASSERT(r->ntaken < 64);
        r->taken[r->ntaken++] = s;
    }
    if (r->free_in_callback && !r->freed) {
        r->freed = true;
        lsock_server_free(srv);
    }
}

static void srvrec_free_taken(srvrec *r)
{
    for (int i = 0; i < r->ntaken; i++)
        lsock_socket_free(r->taken[i]);
    r->ntaken = 0;
}

/* Entries of a directory other than . and .. */
static int dir_entries(const char *dir)
{
    DIR *d = opendir(dir);
    ASSERT(d != NULL);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) n++;
    closedir(d);
    return n;
}

/* A client on loop connects to name; returns it connected. */
static lsock_socket *connect_client(lsock_loop *loop, const char *name)
{
    lsock_socket *s = lsock_socket_new(loop);
    ASSERT(s != NULL);
    ASSERT(lsock_socket_connect(s, name, LSOCK_READ_WRITE));
    ASSERT_EQ(lsock_socket_state(s), LSOCK_CONNECTED);
    return s;
}

/* ---- defaults, listen and names -------------------------------------------------------- */

TEST(new_server_has_documented_defaults)
{
    lsock_loop *loop = loop_new();
    lsock_server *srv = lsock_server_new(loop);
    ASSERT(srv != NULL);
    ASSERT_EQ(lsock_server_max_pending_connections(srv), 30);
    ASSERT_EQ(lsock_server_listen_backlog_size(srv), 50);
    ASSERT(!lsock_server_is_listening(srv));
    ASSERT_EQ(lsock_server_descriptor(srv), -1);
    ASSERT_STR_EQ(lsock_server_name(srv), "");
    ASSERT_STR_EQ(lsock_server_full_server_name(srv), "");
    ASSERT_ERR(lsock_server_error(srv), LSOCK_ERR_NONE);
    ASSERT_STR_EQ(lsock_server_error_string(srv), "");
    ASSERT_EQ(lsock_server_socket_options(srv), 0);
    ASSERT(!lsock_server_has_pending_connections(srv));
    ASSERT(lsock_server_next_pending_connection(srv) == NULL);
    ASSERT(lsock_server_userdata(srv) == NULL);
    lsock_server_free(srv);
    loop_free(loop);
}

TEST(server_settings_are_kept)
{
    lsock_server *srv = lsock_server_new(NULL);
    int x;
    lsock_server_set_new_connection_callback(srv, on_new_connection, &x);
    ASSERT(lsock_server_userdata(srv) == &x);
    ASSERT(lsock_server_set_max_pending_connections(srv, 7));
    ASSERT_EQ(lsock_server_max_pending_connections(srv), 7);
    ASSERT(lsock_server_set_listen_backlog_size(srv, 3));
    ASSERT_EQ(lsock_server_listen_backlog_size(srv), 3);
    ASSERT(lsock_server_set_socket_options(srv, LSOCK_USER_ACCESS | LSOCK_RECLAIM_STALE));
    ASSERT_EQ(lsock_server_socket_options(srv), LSOCK_USER_ACCESS | LSOCK_RECLAIM_STALE);
    lsock_server_free(srv);
}

TEST(listen_creates_a_socket_file_and_sets_names)
{
    lsock_loop *loop = loop_new();
    const char *name = test_name("listen");
    lsock_server *srv = lsock_server_new(loop);
    ASSERT(lsock_server_listen(srv, name));
    ASSERT(lsock_server_is_listening(srv));
    ASSERT_STR_EQ(lsock_server_name(srv), name);
    ASSERT_STR_EQ(lsock_server_full_server_name(srv), path_of(name));
    ASSERT(lsock_server_descriptor(srv) >= 0);
    ASSERT_ERR(lsock_server_error(srv), LSOCK_ERR_NONE);
    ASSERT(file_exists(path_of(name))); /* on Windows: the pipe of that name */
#ifndef _WIN32
    struct stat st;
    ASSERT_EQ(lstat(path_of(name), &st), 0);
    ASSERT(S_ISSOCK(st.st_mode));
#endif
    lsock_server_free(srv);
    ASSERT(!file_exists(path_of(name)));
    loop_free(loop);
}

TEST(server_descriptor_is_close_on_exec)
{
#ifdef _WIN32
    SKIP("a server's descriptor is lsock's own number on Windows, no HANDLE: a server is a set "
         "of pipe instances");
#endif
    lsock_server *srv = lsock_server_new(NULL);
    ASSERT(lsock_server_listen(srv, test_name("cloexec")));
    int fl = fcntl((int)lsock_server_descriptor(srv), F_GETFD);
    ASSERT(fl >= 0);
    ASSERT(fl & FD_CLOEXEC);
    lsock_server_free(srv);
}

TEST(listen_twice_fails_operation_and_keeps_listening)
{
    lsock_loop *loop = loop_new();
    const char *name = test_name("twice");
    lsock_server *srv = lsock_server_new(loop);
    ASSERT(lsock_server_listen(srv, name));
    ASSERT(!lsock_server_listen(srv, test_name("twice2")));
    ASSERT_ERR(lsock_server_error(srv), LSOCK_ERR_OPERATION);
    ASSERT(starts_with(lsock_server_error_string(srv), "lsock_server_listen: "));
    ASSERT(lsock_server_is_listening(srv));
    ASSERT_STR_EQ(lsock_server_name(srv), name);
    lsock_socket *c = connect_client(loop, name);
    RUN_UNTIL(loop, lsock_server_has_pending_connections(srv), 5000);
    lsock_socket_free(c);
    lsock_server_free(srv);
    loop_free(loop);
}

TEST(listen_with_empty_name_fails_server_not_found)
{
    lsock_server *srv = lsock_server_new(NULL);
    ASSERT(!lsock_server_listen(srv, ""));
    ASSERT_ERR(lsock_server_error(srv), LSOCK_ERR_SERVER_NOT_FOUND);
    ASSERT(starts_with(lsock_server_error_string(srv), "lsock_server_listen: "));
    ASSERT(!lsock_server_is_listening(srv));
    lsock_server_free(srv);
}

static void long_path(char *out, size_t len)
{
    int n = snprintf(out, len + 1, "/tmp/lsock-%ld-", (long)getpid());
    for (size_t i = (size_t)n; i < len; i++)
        out[i] = 'y';
    out[len] = '\0';
}

TEST(listen_with_path_of_108_bytes_fails_server_not_found_naming_the_limit)
{
#ifdef _WIN32
    SKIP("the 107-byte sun_path limit is Unix's; a pipe name's limit is tested in test_win.c");
#endif
    char path[200];
    long_path(path, 108);
    lsock_server *srv = lsock_server_new(NULL);
    ASSERT(!lsock_server_listen(srv, path));
    ASSERT_ERR(lsock_server_error(srv), LSOCK_ERR_SERVER_NOT_FOUND);
    const char *es = lsock_server_error_string(srv);
    ASSERT(starts_with(es, "lsock_server_listen: "));
    if (!strstr(es, "107") && !strstr(es, "108")) FAIL_("no limit in \"%s\"", es);
    ASSERT(!file_exists(path));
    lsock_server_free(srv);
}

TEST(listen_with_path_of_107_bytes_works)
{
#ifdef _WIN32
    SKIP("the 107-byte sun_path limit is Unix's; a pipe name's limit is tested in test_win.c");
#endif
    char path[200];
    long_path(path, 107);
    lsock_server *srv = lsock_server_new(NULL);
    ASSERT(lsock_server_listen(srv, path));
    ASSERT_STR_EQ(lsock_server_full_server_name(srv), path);
    ASSERT(file_exists(path));
    lsock_server_free(srv);
    ASSERT(!file_exists(path));
}

TEST(listen_with_too_long_relative_name_fails_server_not_found)
{
    /* Past the limit of the platform: a socket address (107 bytes) under /tmp, or a pipe name
     * (256 characters with \\.\pipe\). */
#ifdef _WIN32
    enum { LEN = 260 };
#else
    enum { LEN = 150 };
#endif
    char name[300];
    memset(name, 'n', LEN);
    name[LEN] = '\0';
    lsock_server *srv = lsock_server_new(NULL);
    ASSERT(!lsock_server_listen(srv, name));
    ASSERT_ERR(lsock_server_error(srv), LSOCK_ERR_SERVER_NOT_FOUND);
    lsock_server_free(srv);
}

TEST(failed_listen_then_good_listen_works)
{
    lsock_loop *loop = loop_new();
    lsock_server *srv = lsock_server_new(loop);
    ASSERT(!lsock_server_listen(srv, ""));
    ASSERT_ERR(lsock_server_error(srv), LSOCK_ERR_SERVER_NOT_FOUND);
    const char *name = test_name("again");
    ASSERT(lsock_server_listen(srv, name));
    ASSERT(lsock_server_is_listening(srv));
    lsock_socket *c = connect_client(loop, name);
    RUN_UNTIL(loop, lsock_server_has_pending_connections(srv), 5000);
    lsock_socket_free(c);
    lsock_server_free(srv);
    loop_free(loop);
}

TEST(close_then_listen_again_works)
{
    lsock_loop *loop = loop_new();
    const char *name = test_name("relisten");
    lsock_server *srv = lsock_server_new(loop);
    ASSERT(lsock_server_listen(srv, name));
    lsock_server_close(srv);
    ASSERT(!lsock_server_is_listening(srv));
    ASSERT_STR_EQ(lsock_server_name(srv), "");
    ASSERT_STR_EQ(lsock_server_full_server_name(srv), "");
    ASSERT_EQ(lsock_server_descriptor(srv), -1);
    ASSERT(!file_exists(path_of(name)));
    ASSERT(lsock_server_listen(srv, name));
    lsock_socket *c = connect_client(loop, name);
    RUN_UNTIL(loop, lsock_server_has_pending_connections(srv), 5000);
    lsock_socket_free(c);
    lsock_server_free(srv);
    loop_free(loop);
}

/* ---- address in use, stale files, removing --------------------------------------------- */

TEST(listen_on_name_of_live_server_fails_address_in_use)
{
    lsock_loop *loop = loop_new();
    const char *name = test_name("live");
    lsock_server *a = lsock_server_new(loop);
    lsock_server *b = lsock_server_new(loop);
    ASSERT(lsock_server_listen(a, name));
    ASSERT(!lsock_server_listen(b, name));
    ASSERT_ERR(lsock_server_error(b), LSOCK_ERR_ADDRESS_IN_USE);
    ASSERT(starts_with(lsock_server_error_string(b), "lsock_server_listen: "));
    ASSERT(!lsock_server_is_listening(b));
    lsock_server_free(b);
    /* b's failure and free left a's file in place. */
    ASSERT(file_exists(path_of(name)));
    lsock_socket *c = connect_client(loop, name);
    RUN_UNTIL(loop, lsock_server_has_pending_connections(a), 5000);
    lsock_socket_free(c);
    lsock_server_free(a);
    loop_free(loop);
}

TEST(listen_on_stale_file_fails_address_in_use)
{
#ifdef _WIN32
    SKIP("a named pipe is never stale: it goes with its server's last handle");
#endif
    const char *name = test_name("stale");
    make_stale(path_of(name));
    lsock_server *srv = lsock_server_new(NULL);
    ASSERT(!lsock_server_listen(srv, name));
    ASSERT_ERR(lsock_server_error(srv), LSOCK_ERR_ADDRESS_IN_USE);
    ASSERT(starts_with(lsock_server_error_string(srv), "lsock_server_listen: "));
    ASSERT(file_exists(path_of(name)));
    lsock_server_free(srv);
    unlink(path_of(name));
}

TEST(remove_server_removes_stale_file_so_listen_works)
{
#ifdef _WIN32
    SKIP("a named pipe is never stale: it goes with its server's last handle");
#endif
    lsock_loop *loop = loop_new();
    const char *name = test_name("remove");
    make_stale(path_of(name));
    lsock_server *srv = lsock_server_new(loop);
    ASSERT(!lsock_server_listen(srv, name));
    ASSERT(lsock_remove_server(name));
    ASSERT(!file_exists(path_of(name)));
    ASSERT(lsock_server_listen(srv, name));
    lsock_socket *c = connect_client(loop, name);
    RUN_UNTIL(loop, lsock_server_has_pending_connections(srv), 5000);
    lsock_socket_free(c);
    lsock_server_free(srv);
    loop_free(loop);
}

TEST(remove_server_of_missing_name_returns_true)
{
    ASSERT(lsock_remove_server(test_name("gone")));
}

TEST(reclaim_stale_listens_over_a_stale_file)
{
#ifdef _WIN32
    SKIP("a named pipe is never stale: it goes with its server's last handle");
#endif
    lsock_loop *loop = loop_new();
    const char *name = test_name("reclaim");
    make_stale(path_of(name));
    lsock_server *srv = lsock_server_new(loop);
    ASSERT(lsock_server_set_socket_options(srv, LSOCK_RECLAIM_STALE));
    ASSERT(lsock_server_listen(srv, name));
    ASSERT(lsock_server_is_listening(srv));
    lsock_socket *c = connect_client(loop, name);
    RUN_UNTIL(loop, lsock_server_has_pending_connections(srv), 5000);
    lsock_socket_free(c);
    lsock_server_free(srv);
    ASSERT(!file_exists(path_of(name)));
    loop_free(loop);
}

TEST(reclaim_stale_does_not_take_the_name_of_a_live_server)
{
    lsock_loop *loop = loop_new();
    const char *name = test_name("nosteal");
    lsock_server *a = lsock_server_new(loop);
    ASSERT(lsock_server_listen(a, name));
    lsock_server *b = lsock_server_new(loop);
    ASSERT(lsock_server_set_socket_options(b, LSOCK_RECLAIM_STALE));
    ASSERT(!lsock_server_listen(b, name));
    ASSERT_ERR(lsock_server_error(b), LSOCK_ERR_ADDRESS_IN_USE);
    lsock_server_free(b);
    /* a keeps working, both for a client now and after the probe. */
    run_for(loop, 50); /* b may have probed a by connecting */
    while (lsock_server_has_pending_connections(a))
        lsock_socket_free(lsock_server_next_pending_connection(a));
    lsock_socket *c = connect_client(loop, name);
    RUN_UNTIL(loop, lsock_server_has_pending_connections(a), 5000);
    lsock_socket *peer = lsock_server_next_pending_connection(a);
    ASSERT_EQ(lsock_socket_write(c, "hi", 2), 2);
    RUN_UNTIL(loop, lsock_socket_bytes_available(peer) == 2, 5000);
    lsock_socket_free(peer);
    lsock_socket_free(c);
    lsock_server_free(a);
    loop_free(loop);
}

TEST(server_close_removes_its_own_file)
{
    const char *name = test_name("ownfile");
    lsock_server *srv = lsock_server_new(NULL);
    ASSERT(lsock_server_listen(srv, name));
    ASSERT(file_exists(path_of(name)));
    lsock_server_close(srv);
    ASSERT(!file_exists(path_of(name)));
    lsock_server_free(srv);
}

TEST(server_close_keeps_a_file_that_another_server_made)
{
#ifdef _WIN32
    SKIP("a socket file unlinked and taken over is Unix-only: a named pipe is no file");
#endif
    lsock_loop *loop = loop_new();
    const char *name = test_name("other");
    lsock_server *a = lsock_server_new(loop);
    ASSERT(lsock_server_listen(a, name));
    ASSERT_EQ(unlink(path_of(name)), 0);
    lsock_server *b = lsock_server_new(loop);
    ASSERT(lsock_server_listen(b, name));
    lsock_server_close(a);
    ASSERT(file_exists(path_of(name)));
    lsock_socket *c = connect_client(loop, name);
    RUN_UNTIL(loop, lsock_server_has_pending_connections(b), 5000);
    lsock_socket_free(c);
    lsock_server_free(a);
    ASSERT(file_exists(path_of(name)));
    lsock_server_free(b);
    ASSERT(!file_exists(path_of(name)));
    loop_free(loop);
}

/* ---- access options -------------------------------------------------------------------- */

/* The options give the socket file its mode; on Windows the pipe its DACL, which
 * access_mode_of() reads as a mode. */
static void check_access_mode(unsigned option, unsigned want)
{
#ifndef _WIN32 /* a directory of its own, to see that no file is left behind */
    const char *dir = make_tmpdir();
    setenv("TMPDIR", dir, 1);
#endif
    lsock_loop *loop = loop_new();
    const char *name = test_name("mode");
    lsock_server *srv = lsock_server_new(loop);
    ASSERT(lsock_server_set_socket_options(srv, option));
    ASSERT(lsock_server_listen(srv, name));
    ASSERT_STR_EQ(lsock_server_full_server_name(srv), path_of(name));
    ASSERT_EQ(access_mode_of(name), want);
#ifndef _WIN32
    ASSERT_EQ(dir_entries(dir), 1); /* no temporary directory left behind */
#endif
    lsock_socket *c = connect_client(loop, name);
    RUN_UNTIL(loop, lsock_server_has_pending_connections(srv), 5000);
    lsock_socket_free(c);
    lsock_server_free(srv);
#ifndef _WIN32
    ASSERT_EQ(dir_entries(dir), 0);
    ASSERT_EQ(rmdir(dir), 0);
#endif
    loop_free(loop);
}

TEST(user_access_option_makes_mode_0700)
{
    check_access_mode(LSOCK_USER_ACCESS, 0700);
}

TEST(group_access_option_makes_mode_0070)
{
    check_access_mode(LSOCK_GROUP_ACCESS, 0070);
}

TEST(other_access_option_makes_mode_0007)
{
    check_access_mode(LSOCK_OTHER_ACCESS, 0007);
}

TEST(world_access_option_makes_mode_0777)
{
    check_access_mode(LSOCK_WORLD_ACCESS, 0777);
}

TEST(user_and_group_access_options_make_mode_0770)
{
    check_access_mode(LSOCK_USER_ACCESS | LSOCK_GROUP_ACCESS, 0770);
}

static char g_ro_dir[128];

static void listen_in_read_only_dir(void)
{
    char path[256];
    snprintf(path, sizeof path, "%s/s", g_ro_dir);
    lsock_server *srv = lsock_server_new(NULL);
    ASSERT(!lsock_server_listen(srv, path));
    ASSERT_ERR(lsock_server_error(srv), LSOCK_ERR_SOCKET_ACCESS);
    ASSERT(starts_with(lsock_server_error_string(srv), "lsock_server_listen: "));
    ASSERT(!lsock_server_is_listening(srv));
    lsock_server_free(srv);
}

TEST(listen_in_unwritable_directory_fails_socket_access)
{
#ifdef _WIN32
    SKIP("a pipe name has no directory that could be read-only");
#endif
    snprintf(g_ro_dir, sizeof g_ro_dir, "%s", make_tmpdir());
    ASSERT_EQ(chmod(g_ro_dir, 0555), 0);
    run_unprivileged(listen_in_read_only_dir);
    ASSERT_EQ(rmdir(g_ro_dir), 0);
}

/* As Qt 6: an accepted socket's full name is the server's, its name the last component. */
TEST(accepted_socket_is_named_from_the_listening_address_as_qt6)
{
#ifdef _WIN32
    /* A pipe name is no path: an accepted end keeps the server's name as given. */
    const char *path = test_name("sub/named");
    const char *base = path;
#else
    const char *dir = make_tmpdir();
    char path[256];
    snprintf(path, sizeof path, "%s/named", dir);
    const char *base = "named";
#endif
    lsock_server *srv = lsock_server_new(NULL);
    ASSERT(lsock_server_listen(srv, path));
    lsock_socket *c = lsock_socket_new(NULL);
    ASSERT(lsock_socket_connect(c, path, LSOCK_READ_WRITE));
    ASSERT(lsock_server_wait_for_new_connection(srv, 5000, NULL));
    lsock_socket *acc = lsock_server_next_pending_connection(srv);
    ASSERT(acc != NULL);
    ASSERT_STR_EQ(lsock_socket_full_server_name(acc), lsock_server_full_server_name(srv));
    ASSERT_STR_EQ(lsock_socket_server_name(acc), base);
    ASSERT_STR_EQ(lsock_socket_server_name(c), path); /* the client keeps the name it gave */
    lsock_socket_free(acc);
    lsock_socket_free(c);
    lsock_server_free(srv);
#ifndef _WIN32
    ASSERT_EQ(rmdir(dir), 0);
#endif
}

/* ---- abstract namespace ---------------------------------------------------------------- */

TEST(abstract_namespace_server_makes_no_file_and_clients_connect)
{
#ifndef __linux__
    SKIP("the abstract namespace is Linux only (Windows ignores the option, test_win.c)");
#endif
    const char *dir = make_tmpdir();
    setenv("TMPDIR", dir, 1);
    lsock_loop *loop = loop_new();
    const char *name = test_name("abs");
    lsock_server *srv = lsock_server_new(loop);
    ASSERT(lsock_server_set_socket_options(srv, LSOCK_ABSTRACT_NAMESPACE));
    ASSERT(lsock_server_listen(srv, name));
    /* As Qt 6: the address is "\0" and the name as given, which is also the full name. */
    ASSERT_STR_EQ(lsock_server_full_server_name(srv), name);
    ASSERT(!file_exists(path_of(name)));
    ASSERT_EQ(dir_entries(dir), 0);
    lsock_socket *c = lsock_socket_new(loop);
    ASSERT(lsock_socket_set_options(c, LSOCK_ABSTRACT_NAMESPACE));
    ASSERT_EQ(lsock_socket_options(c), LSOCK_ABSTRACT_NAMESPACE);
    ASSERT(lsock_socket_connect(c, name, LSOCK_READ_WRITE));
    ASSERT_EQ(lsock_socket_state(c), LSOCK_CONNECTED);
    ASSERT_STR_EQ(lsock_socket_full_server_name(c), name);
    RUN_UNTIL(loop, lsock_server_has_pending_connections(srv), 5000);
    lsock_socket *peer = lsock_server_next_pending_connection(srv);
    ASSERT_EQ(lsock_socket_write(peer, "abs", 3), 3);
    RUN_UNTIL(loop, lsock_socket_bytes_available(c) == 3, 5000);
    /* A client without the option looks for a file and finds none. */
    lsock_socket *plain = lsock_socket_new(loop);
    ASSERT(!lsock_socket_connect(plain, name, LSOCK_READ_WRITE));
    ASSERT_ERR(lsock_socket_error(plain), LSOCK_ERR_SERVER_NOT_FOUND);
    lsock_socket_free(plain);
    lsock_socket_free(peer);
    lsock_socket_free(c);
    lsock_server_free(srv);
    ASSERT_EQ(rmdir(dir), 0);
    loop_free(loop);
}

/* Windows ignores the option (as Qt documents): the name is a pipe name, in use all the same. */
TEST(abstract_namespace_name_in_use_fails_address_in_use)
{
#if !defined(__linux__) && !defined(_WIN32)
    SKIP("abstract namespace is Linux only");
#endif
    /* On Windows the name is probed as any pipe name (Wine does not enforce
     * FILE_FLAG_FIRST_PIPE_INSTANCE, so the probe is what refuses the second server there). */
    const char *name = test_name("absuse");
    lsock_server *a = lsock_server_new(NULL);
    lsock_server *b = lsock_server_new(NULL);
    ASSERT(lsock_server_set_socket_options(a, LSOCK_ABSTRACT_NAMESPACE));
    ASSERT(lsock_server_set_socket_options(b, LSOCK_ABSTRACT_NAMESPACE | LSOCK_RECLAIM_STALE));
    ASSERT(lsock_server_listen(a, name));
    ASSERT(!lsock_server_listen(b, name));
    ASSERT_ERR(lsock_server_error(b), LSOCK_ERR_ADDRESS_IN_USE);
    lsock_server_close(a);
    ASSERT(lsock_server_listen(b, name));
    lsock_server_free(a);
    lsock_server_free(b);
}

TEST(abstract_namespace_client_to_missing_server_fails)
{
#if !defined(__linux__) && !defined(_WIN32)
    SKIP("abstract namespace is Linux only");
#endif
    lsock_socket *c = lsock_socket_new(NULL);
    ASSERT(lsock_socket_set_options(c, LSOCK_ABSTRACT_NAMESPACE));
    ASSERT(!lsock_socket_connect(c, test_name("absnone"), LSOCK_READ_WRITE));
    lsock_error e = lsock_socket_error(c);
#ifdef _WIN32
    /* Windows ignores the option: a missing pipe, as for any name. */
    ASSERT_ERR(e, LSOCK_ERR_SERVER_NOT_FOUND);
#else
    /* Linux answers ECONNREFUSED for a missing abstract name. */
    if (e != LSOCK_ERR_SERVER_NOT_FOUND) ASSERT_ERR(e, LSOCK_ERR_CONNECTION_REFUSED);
#endif
    lsock_socket_free(c);
}

/* ---- pending connections --------------------------------------------------------------- */

TEST(new_connection_fires_once_per_accepted_connection)
{
    lsock_loop *loop = loop_new();
    const char *name = test_name("newconn");
    srvrec r;
    memset(&r, 0, sizeof r);
    lsock_server *srv = lsock_server_new(loop);
    lsock_server_set_new_connection_callback(srv, on_new_connection, &r);
    ASSERT(lsock_server_listen(srv, name));
    lsock_socket *c[3];
    for (int i = 0; i < 3; i++)
        c[i] = connect_client(loop, name);
    RUN_UNTIL(loop, r.new_connections == 3, 5000);
    run_for(loop, 30);
    ASSERT_EQ(r.new_connections, 3);
    for (int i = 0; i < 3; i++) {
        ASSERT(lsock_server_has_pending_connections(srv));
        lsock_socket *s = lsock_server_next_pending_connection(srv);
        ASSERT(s != NULL);
        lsock_socket_free(s);
    }
    ASSERT(!lsock_server_has_pending_connections(srv));
    ASSERT(lsock_server_next_pending_connection(srv) == NULL);
    for (int i = 0; i < 3; i++)
        lsock_socket_free(c[i]);
    lsock_server_free(srv);
    loop_free(loop);
}

TEST(next_pending_connection_returns_null_when_empty)
{
    lsock_loop *loop = loop_new();
    lsock_server *srv = lsock_server_new(loop);
    ASSERT(lsock_server_listen(srv, test_name("empty")));
    run_for(loop, 20);
    ASSERT(!lsock_server_has_pending_connections(srv));
    ASSERT(lsock_server_next_pending_connection(srv) == NULL);
    lsock_server_free(srv);
    loop_free(loop);
}

TEST(pending_connection_is_connected_on_the_server_loop)
{
    lsock_loop *loop = loop_new();
    const char *name = test_name("pend");
    lsock_server *srv = lsock_server_new(loop);
    ASSERT(lsock_server_listen(srv, name));
    lsock_socket *c = connect_client(loop, name);
    RUN_UNTIL(loop, lsock_server_has_pending_connections(srv), 5000);
    lsock_socket *s = lsock_server_next_pending_connection(srv);
    ASSERT(s != NULL);
    ASSERT_EQ(lsock_socket_state(s), LSOCK_CONNECTED);
    ASSERT(lsock_socket_loop(s) == loop);
    ASSERT(lsock_socket_is_valid(s));
    ASSERT_EQ(lsock_socket_open_mode(s), LSOCK_READ_WRITE);
    ASSERT(lsock_socket_descriptor(s) >= 0);
    ASSERT_EQ(lsock_socket_write(s, "to client", 9), 9);
    ASSERT_EQ(lsock_socket_write(c, "to server", 9), 9);
    RUN_UNTIL(loop, lsock_socket_bytes_available(s) == 9 && lsock_socket_bytes_available(c) == 9,
              5000);
    char buf[16] = {0};
    ASSERT_EQ(lsock_socket_read(s, buf, sizeof buf), 9);
    ASSERT_STR_EQ(buf, "to server");
    memset(buf, 0, sizeof buf);
    ASSERT_EQ(lsock_socket_read(c, buf, sizeof buf), 9);
    ASSERT_STR_EQ(buf, "to client");
    lsock_socket_free(s);
    lsock_socket_free(c);
    lsock_server_free(srv);
    loop_free(loop);
}

TEST(accepting_pauses_at_max_pending_connections)
{
    lsock_loop *loop = loop_new();
    const char *name = test_name("maxpend");
    srvrec r;
    memset(&r, 0, sizeof r);
    lsock_server *srv = lsock_server_new(loop);
    lsock_server_set_new_connection_callback(srv, on_new_connection, &r);
    ASSERT(lsock_server_set_max_pending_connections(srv, 2));
    ASSERT(lsock_server_listen(srv, name));
    lsock_socket *c[5];
    for (int i = 0; i < 5; i++)
        c[i] = connect_client(loop, name);
    RUN_UNTIL(loop, r.new_connections == 2, 5000);
    run_for(loop, 60);
    ASSERT_EQ(r.new_connections, 2);
    int taken = 0;
    lsock_socket *got[5];
    while (taken < 5) {
        ASSERT(lsock_server_has_pending_connections(srv));
        got[taken] = lsock_server_next_pending_connection(srv);
        ASSERT(got[taken] != NULL);
        taken++;
        int want = taken + 2 < 5 ? taken + 2 : 5;
        RUN_UNTIL(loop, r.new_connections == want, 5000);
        run_for(loop, 40);
        ASSERT_EQ(r.new_connections, want); /* exactly 2 pending (or what is left) */
    }
    ASSERT(!lsock_server_has_pending_connections(srv));
    ASSERT(lsock_server_next_pending_connection(srv) == NULL);
    for (int i = 0; i < 5; i++) {
        lsock_socket_free(got[i]);
        lsock_socket_free(c[i]);
    }
    lsock_server_free(srv);
    loop_free(loop);
}

TEST(taking_connections_inside_new_connection_keeps_accepting)
{
    lsock_loop *loop = loop_new();
    const char *name = test_name("takecb");
    srvrec r;
    memset(&r, 0, sizeof r);
    r.take_in_callback = true;
    lsock_server *srv = lsock_server_new(loop);
    lsock_server_set_new_connection_callback(srv, on_new_connection, &r);
    ASSERT(lsock_server_set_max_pending_connections(srv, 1));
    ASSERT(lsock_server_listen(srv, name));
    lsock_socket *c[6];
    for (int i = 0; i < 6; i++)
        c[i] = connect_client(loop, name);
    RUN_UNTIL(loop, r.ntaken == 6, 5000);
    ASSERT_EQ(r.new_connections, 6);
    srvrec_free_taken(&r);
    for (int i = 0; i < 6; i++)
        lsock_socket_free(c[i]);
    lsock_server_free(srv);
    loop_free(loop);
}

/* A listener is accepted from one connection per event at first (no failing accept() for a
 * server woken per connection); a backlog that is still there at the next iteration doubles
 * the batch, so a burst takes a few iterations, not one per connection, and none is lost. */
TEST(a_burst_of_connections_is_accepted_in_growing_batches)
{
    enum { N = 100 };
    lsock_loop *loop = loop_new();
    const char *name = test_name("burst");
    srvrec r;
    memset(&r, 0, sizeof r);
    lsock_server *srv = lsock_server_new(loop);
    lsock_server_set_new_connection_callback(srv, on_new_connection, &r);
    lsock_server_set_listen_backlog_size(srv, 2 * N);
    ASSERT(lsock_server_set_max_pending_connections(srv, 2 * N));
    ASSERT(lsock_server_listen(srv, name));
    lsock_socket *c[N];
    for (int i = 0; i < N; i++)
        c[i] = connect_client(loop, name);
    int iterations = 0;
    uint64_t deadline = test_now_ms() + 5000;
    while (r.new_connections < N) {
        ASSERT(test_now_ms() < deadline);
        lsock_loop_run(loop, LSOCK_RUN_ONCE);
        iterations++;
    }
    ASSERT_EQ(r.new_connections, N);
    ASSERT(iterations <= 20); /* 1 + 2 + 4 + ... reaches 100 in 7; one per event would be 100 */
    for (int i = 0; i < N; i++) {
        lsock_socket *s = lsock_server_next_pending_connection(srv);
        ASSERT(s != NULL);
        lsock_socket_free(s);
        lsock_socket_free(c[i]);
    }
    ASSERT(lsock_server_next_pending_connection(srv) == NULL);
    lsock_server_free(srv);
    loop_free(loop);
}

TEST(server_close_frees_pending_connections_and_their_clients_see_the_close)
{
    lsock_loop *loop = loop_new();
    const char *name = test_name("closepend");
    srvrec r;
    memset(&r, 0, sizeof r);
    lsock_server *srv = lsock_server_new(loop);
    lsock_server_set_new_connection_callback(srv, on_new_connection, &r);
    ASSERT(lsock_server_listen(srv, name));
    rec cr[3];
    lsock_socket *c[3];
    for (int i = 0; i < 3; i++) {
        rec_init(&cr[i]);
        c[i] = connect_client(loop, name);
        lsock_socket_set_callbacks(c[i], &rec_cbs, &cr[i]);
    }
    RUN_UNTIL(loop, r.new_connections == 3, 5000);
    lsock_server_close(srv);
    ASSERT(!lsock_server_has_pending_connections(srv));
    ASSERT(lsock_server_next_pending_connection(srv) == NULL);
    ASSERT(!lsock_server_is_listening(srv));
    RUN_UNTIL(loop, cr[0].disconnected && cr[1].disconnected && cr[2].disconnected, 5000);
    for (int i = 0; i < 3; i++) {
        ASSERT_ERR(cr[i].last_error, LSOCK_ERR_PEER_CLOSED);
        lsock_socket_free(c[i]);
    }
    lsock_server_free(srv);
    loop_free(loop);
}

TEST(server_free_frees_pending_connections)
{
    lsock_loop *loop = loop_new();
    const char *name = test_name("freepend");
    srvrec r;
    memset(&r, 0, sizeof r);
    lsock_server *srv = lsock_server_new(loop);
    lsock_server_set_new_connection_callback(srv, on_new_connection, &r);
    ASSERT(lsock_server_listen(srv, name));
    lsock_socket *c = connect_client(loop, name);
    RUN_UNTIL(loop, r.new_connections == 1, 5000);
    lsock_server_free(srv);
    RUN_UNTIL(loop, lsock_socket_state(c) == LSOCK_UNCONNECTED, 5000);
    lsock_socket_free(c);
    loop_free(loop);
}

TEST(taken_connections_survive_server_close)
{
    lsock_loop *loop = loop_new();
    const char *name = test_name("survive");
    lsock_server *srv = lsock_server_new(loop);
    ASSERT(lsock_server_listen(srv, name));
    lsock_socket *c = connect_client(loop, name);
    RUN_UNTIL(loop, lsock_server_has_pending_connections(srv), 5000);
    lsock_socket *s = lsock_server_next_pending_connection(srv);
    lsock_server_free(srv);
    ASSERT_EQ(lsock_socket_state(s), LSOCK_CONNECTED);
    ASSERT_EQ(lsock_socket_write(c, "still", 5), 5);
    RUN_UNTIL(loop, lsock_socket_bytes_available(s) == 5, 5000);
    ASSERT_EQ(lsock_socket_write(s, "here", 4), 4);
    RUN_UNTIL(loop, lsock_socket_bytes_available(c) == 4, 5000);
    lsock_socket_free(s);
    lsock_socket_free(c);
    loop_free(loop);
}

TEST(free_server_inside_new_connection)
{
    lsock_loop *loop = loop_new();
    const char *name = test_name("freecb");
    srvrec r;
    memset(&r, 0, sizeof r);
    r.free_in_callback = true;
    lsock_server *srv = lsock_server_new(loop);
    lsock_server_set_new_connection_callback(srv, on_new_connection, &r);
    ASSERT(lsock_server_listen(srv, name));
    lsock_socket *c1 = connect_client(loop, name);
    lsock_socket *c2 = connect_client(loop, name);
    RUN_UNTIL(loop, r.freed, 5000);
    ASSERT_EQ(r.new_connections, 1);
    RUN_UNTIL(loop,
              lsock_socket_state(c1) == LSOCK_UNCONNECTED &&
                  lsock_socket_state(c2) == LSOCK_UNCONNECTED,
              5000);
    ASSERT_EQ(r.new_connections, 1);
    ASSERT(!file_exists(path_of(name)));
    lsock_socket_free(c1);
    lsock_socket_free(c2);
    loop_free(loop);
}

TEST(free_server_with_a_taken_connection_inside_new_connection)
{
    lsock_loop *loop = loop_new();
    const char *name = test_name("freecb2");
    srvrec r;
    memset(&r, 0, sizeof r);
    r.free_in_callback = true;
    r.take_in_callback = true;
    lsock_server *srv = lsock_server_new(loop);
    lsock_server_set_new_connection_callback(srv, on_new_connection, &r);
    ASSERT(lsock_server_listen(srv, name));
    lsock_socket *c = connect_client(loop, name);
    RUN_UNTIL(loop, r.freed, 5000);
    ASSERT_EQ(r.ntaken, 1);
    ASSERT_EQ(lsock_socket_write(c, "x", 1), 1);
    RUN_UNTIL(loop, lsock_socket_bytes_available(r.taken[0]) == 1, 5000);
    srvrec_free_taken(&r);
    lsock_socket_free(c);
    loop_free(loop);
}

/* ---- listen_descriptor ----------------------------------------------------------------- */

TEST(listen_descriptor_with_bound_listening_socket_accepts_clients)
{
#ifdef _WIN32
    SKIP("lsock_server_listen_descriptor() is not supported on Windows: a server is a set of "
         "pipe instances that lsock creates");
#endif
    lsock_loop *loop = loop_new();
    const char *name = test_name("lfd");
    int fd = raw_listener(path_of(name), 8);
    srvrec r;
    memset(&r, 0, sizeof r);
    lsock_server *srv = lsock_server_new(loop);
    lsock_server_set_new_connection_callback(srv, on_new_connection, &r);
    ASSERT(lsock_server_listen_descriptor(srv, fd));
    ASSERT(lsock_server_is_listening(srv));
    ASSERT_EQ(lsock_server_descriptor(srv), fd);
    lsock_socket *c = connect_client(loop, name);
    RUN_UNTIL(loop, r.new_connections == 1, 5000);
    lsock_socket *s = lsock_server_next_pending_connection(srv);
    ASSERT(s != NULL);
    ASSERT_EQ(lsock_socket_write(s, "fd", 2), 2);
    RUN_UNTIL(loop, lsock_socket_bytes_available(c) == 2, 5000);
    lsock_socket_free(s);
    lsock_socket_free(c);
    lsock_server_free(srv);
    /* The server owned the descriptor and closed it. */
    ASSERT_EQ(fcntl(fd, F_GETFD), -1);
    unlink(path_of(name));
    loop_free(loop);
}

TEST(listen_descriptor_rejects_minus_one_and_non_sockets)
{
    lsock_server *srv = lsock_server_new(NULL);
    ASSERT(!lsock_server_listen_descriptor(srv, -1));
    ASSERT_ERR(lsock_server_error(srv), LSOCK_ERR_UNSUPPORTED_OPERATION);
    ASSERT(starts_with(lsock_server_error_string(srv), "lsock_server_listen_descriptor: "));
    raw_fd pfd[2];
    proc_pipe(pfd); /* an anonymous pipe */
    ASSERT(!lsock_server_listen_descriptor(srv, pfd[0]));
    ASSERT_ERR(lsock_server_error(srv), LSOCK_ERR_UNSUPPORTED_OPERATION);
    ASSERT(!lsock_server_is_listening(srv));
    raw_close(pfd[0]);
    raw_close(pfd[1]);
    lsock_server_free(srv);
}

/* ---- many processes -------------------------------------------------------------------- */

typedef struct echo {
    lsock_socket *conns[32];
    int nconns;
    int lines;
} echo;

static void echo_ready_read(lsock_socket *s, void *u)
{
    echo *e = u;
    char line[256], out[300];
    while (lsock_socket_can_read_line(s)) {
        int64_t n = lsock_socket_read_line(s, line, sizeof line);
        ASSERT(n > 0);
        int m = snprintf(out, sizeof out, "echo %s", line);
        ASSERT_EQ(lsock_socket_write(s, out, m), m);
        e->lines++;
    }
}

static void echo_new_connection(lsock_server *srv, void *u)
{
    echo *e = u;
    lsock_socket *s;
    while ((s = lsock_server_next_pending_connection(srv)) != NULL) {
        ASSERT(e->nconns < 32);
        e->conns[e->nconns++] = s;
        lsock_socket_callbacks cb;
        memset(&cb, 0, sizeof cb);
        cb.ready_read = echo_ready_read;
        lsock_socket_set_callbacks(s, &cb, e);
        echo_ready_read(s, e);
    }
}

/* A client process: arg is "NAME INDEX". */
CHILD_MAIN(exchange_line)
{
    char name[128];
    int i = 0;
    if (sscanf(arg, "%127s %d", name, &i) != 2) return 1;
    lsock_socket *c = lsock_socket_new(NULL);
    if (!c) return 2;
    if (!lsock_socket_connect(c, name, LSOCK_READ_WRITE)) return 3;
    char msg[64], want[80], got[128];
    int m = snprintf(msg, sizeof msg, "hello from %d\n", i);
    snprintf(want, sizeof want, "echo %s", msg);
    if (lsock_socket_write(c, msg, m) != m) return 4;
    if (!lsock_socket_wait_for_bytes_written(c, 5000)) return 5;
    uint64_t dl = test_now_ms() + 5000;
    while (!lsock_socket_can_read_line(c)) {
        if (test_now_ms() > dl) return 6;
        if (!lsock_socket_wait_for_ready_read(c, 5000)) return 7;
    }
    if (lsock_socket_read_line(c, got, sizeof got) != (int64_t)strlen(want)) return 8;
    if (strcmp(got, want) != 0) return 9;
    lsock_socket_disconnect(c);
    lsock_socket_free(c);
    return 0;
}

TEST(ten_processes_exchange_lines_with_a_loop_server)
{
    lsock_loop *loop = loop_new();
    const char *name = test_name("procs");
    echo e;
    memset(&e, 0, sizeof e);
    lsock_server *srv = lsock_server_new(loop);
    lsock_server_set_new_connection_callback(srv, echo_new_connection, &e);
    ASSERT(lsock_server_listen(srv, name));
    enum { N = 10 };
    child kids[N];
    for (int i = 0; i < N; i++) {
        char arg[160];
        snprintf(arg, sizeof arg, "%s %d", name, i);
        child_start(&kids[i], "exchange_line", arg);
    }
    int done = 0;
    bool reaped[N] = {false};
    uint64_t dl = test_now_ms() + 15000;
    while (done < N) {
        ASSERT(test_now_ms() < dl);
        lsock_loop_run(loop, LSOCK_RUN_ONCE);
        for (int i = 0; i < N; i++) {
            if (reaped[i]) continue;
            int status = child_wait(&kids[i], 0);
            if (status == CHILD_RUNNING) continue;
            if (status != 0) FAIL_("child %d: status %d", i, status);
            reaped[i] = true;
            done++;
        }
    }
    ASSERT_EQ(e.nconns, N);
    ASSERT_EQ(e.lines, N);
    for (int i = 0; i < e.nconns; i++)
        lsock_socket_free(e.conns[i]);
    lsock_server_free(srv);
    loop_free(loop);
}

TEST(listener_the_loop_cannot_watch_sets_socket_resource_and_retries)
{
    lsock_loop *loop = loop_new();
    const char *name = test_name("nowatchsrv");
    lsock_server *srv = lsock_server_new(loop);
    lsock__test_io_start_fail = ENOSPC;
    ASSERT(lsock_server_listen(srv, name));
    ASSERT_EQ(lsock__test_io_start_fail, 0);
    ASSERT_ERR(lsock_server_error(srv), LSOCK_ERR_SOCKET_RESOURCE);
    char want[256];
    snprintf(want, sizeof want,
             "lsock_server_accept: Out of resources (cannot watch the listening socket: %s)",
             lsock__plat_strerror(ENOSPC));
    ASSERT_STR_EQ(lsock_server_error_string(srv), want);
    ASSERT(lsock_server_is_listening(srv));
    /* A client waits in the backlog; the retry watches the listener again and accepts it. */
    lsock_socket *c = lsock_socket_new(loop);
    ASSERT(lsock_socket_connect(c, name, LSOCK_READ_WRITE));
    RUN_UNTIL(loop, lsock_server_has_pending_connections(srv), 5000);
    lsock_socket *s = lsock_server_next_pending_connection(srv);
    ASSERT(s != NULL);
    ASSERT_EQ(lsock_socket_write(c, "ping", 4), 4);
    RUN_UNTIL(loop, lsock_socket_bytes_available(s) == 4, 5000);
    lsock_socket_free(s);
    lsock_socket_free(c);
    lsock_server_free(srv);
    loop_free(loop);
}

TEST_MAIN()
