/*
 * Trust: LSOCK_SAME_USER_ONLY on both sides, LSOCK_PER_USER names, peer SIDs and security
 * descriptors (Windows), and socket activation (lsock_server_listen_activated()).
 *
 * "Another user" is uid 65534 (nobody) on Unix: those tests need root and skip otherwise.
 * Where no second user can run (Windows under Wine), lsock__test_foreign_user makes lsock take
 * every peer for another user, which runs the same refusal paths with the comparison's answer
 * forced; the comparison itself is tested with the current user on both ends.
 */
#include "test.h"
#include "lsock.h"
#include "internal.h" /* lsock__test_foreign_user */
#include "loop_util.h"
#include "support.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#ifndef _WIN32
#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;
#endif

/* ---- helpers --------------------------------------------------------------------------- */

typedef struct counter {
    int calls;
    lsock_socket *last;
} counter;

static void count_connection(lsock_server *srv, void *ud)
{
    counter *c = ud;
    lsock_socket *s;
    while ((s = lsock_server_next_pending_connection(srv))) {
        c->calls++;
        if (c->last) lsock_socket_free(c->last);
        c->last = s;
    }
}

static lsock_server *listen_on(lsock_loop *loop, const char *name, unsigned options, counter *c)
{
    lsock_server *srv = lsock_server_new(loop);
    ASSERT(srv);
    ASSERT(lsock_server_set_socket_options(srv, options));
    lsock_server_set_new_connection_callback(srv, count_connection, c);
    if (!lsock_server_listen(srv, name)) FAIL_("listen: %s", lsock_server_error_string(srv));
    return srv;
}

/* ---- LSOCK_SAME_USER_ONLY, both platforms -------------------------------------------- */

TEST(same_user_only_is_a_socket_and_a_server_option)
{
    lsock_socket *s = lsock_socket_new(NULL);
    ASSERT(lsock_socket_set_options(s, LSOCK_SAME_USER_ONLY | LSOCK_PER_USER));
    ASSERT_EQ(lsock_socket_options(s), LSOCK_SAME_USER_ONLY | LSOCK_PER_USER);
    lsock_socket_free(s);
    lsock_server *srv = lsock_server_new(NULL);
    ASSERT(lsock_server_set_socket_options(srv, LSOCK_SAME_USER_ONLY | LSOCK_PER_USER));
    ASSERT_EQ(lsock_server_socket_options(srv), LSOCK_SAME_USER_ONLY | LSOCK_PER_USER);
    lsock_server_free(srv);
}

TEST(same_user_only_server_and_client_of_one_user_connect)
{
    lsock_loop *loop = loop_new();
    const char *name = test_name("same");
    counter c = {0, NULL};
    lsock_server *srv = listen_on(loop, name, LSOCK_SAME_USER_ONLY, &c);
    lsock_socket *s = lsock_socket_new(NULL);
    ASSERT(lsock_socket_set_options(s, LSOCK_SAME_USER_ONLY));
    if (!lsock_socket_connect(s, name, LSOCK_READ_WRITE))
        FAIL_("connect: %s", lsock_socket_error_string(s));
    ASSERT_EQ(lsock_socket_state(s), LSOCK_CONNECTED);
    RUN_UNTIL(loop, c.calls == 1, 5000);
    ASSERT(lsock_socket_write(s, "hi", 2) == 2);
    ASSERT(lsock_socket_wait_for_bytes_written(s, 5000));
    RUN_UNTIL(loop, lsock_socket_bytes_available(c.last) == 2, 5000);
    lsock_socket_free(c.last);
    lsock_socket_free(s);
    lsock_server_free(srv);
    loop_free(loop);
}

/* The server takes every peer for another user: the peer is closed before it is queued. */
TEST(same_user_only_server_closes_a_peer_of_another_user_before_it_is_queued)
{
    lsock_loop *loop = loop_new();
    const char *name = test_name("drop");
    counter c = {0, NULL};
    lsock_server *srv = listen_on(loop, name, LSOCK_SAME_USER_ONLY, &c);
    ASSERT(lsock_server_set_max_pending_connections(srv, 1));
    lsock__test_foreign_user = 1;
    lsock_socket *s[3];
    for (int i = 0; i < 3; i++) {
        s[i] = lsock_socket_new(NULL);
        ASSERT(lsock_socket_connect(s[i], name, LSOCK_READ_WRITE)); /* the kernel connects */
    }
    for (int i = 0; i < 3; i++) {
        uint64_t dl = test_now_ms() + 5000;
        while (lsock_socket_state(s[i]) != LSOCK_UNCONNECTED) {
            ASSERT(test_now_ms() < dl);
            lsock_loop_run(loop, LSOCK_RUN_NOWAIT);
            lsock_socket_wait_for_ready_read(s[i], 10);
        }
        ASSERT_ERR(lsock_socket_error(s[i]), LSOCK_ERR_PEER_CLOSED);
        lsock_socket_free(s[i]);
    }
    ASSERT_EQ(c.calls, 0);
    ASSERT(!lsock_server_has_pending_connections(srv));
    /* Three dropped, and max_pending_connections (1) still has room for one of the user's. */
    lsock__test_foreign_user = 0;
    lsock_socket *mine = lsock_socket_new(NULL);
    ASSERT(lsock_socket_connect(mine, name, LSOCK_READ_WRITE));
    RUN_UNTIL(loop, c.calls == 1, 5000);
    lsock_socket_free(c.last);
    lsock_socket_free(mine);
    lsock_server_free(srv);
    loop_free(loop);
}

/* A server, and a client socket (on loop, or loop-less when NULL) with SAME_USER_ONLY that
 * takes every server for another user's. */
typedef struct refusal {
    lsock_loop *loop;
    counter c;
    lsock_server *srv;
    lsock_socket *s;
    rec r;
} refusal;

static void refusal_open(refusal *f, const char *tag, bool on_loop)
{
    f->loop = loop_new();
    f->c = (counter){0, NULL};
    f->srv = listen_on(f->loop, test_name(tag), 0, &f->c);
    f->s = lsock_socket_new(on_loop ? f->loop : NULL);
    rec_init(&f->r);
    lsock_socket_set_callbacks(f->s, &rec_cbs, &f->r);
    ASSERT(lsock_socket_set_options(f->s, LSOCK_SAME_USER_ONLY));
    lsock__test_foreign_user = 1;
}

static void refusal_close(refusal *f)
{
    lsock__test_foreign_user = 0;
    lsock_socket_free(f->s);
    run_for(f->loop, 20);
    if (f->c.last) lsock_socket_free(f->c.last);
    lsock_server_free(f->srv);
    loop_free(f->loop);
}

/* The client takes the server for another user: SOCKET_ACCESS, never CONNECTED. */
TEST(same_user_only_client_refuses_a_server_of_another_user_with_socket_access)
{
    refusal f;
    refusal_open(&f, "refuse", false);
    const char *name = lsock_server_name(f.srv);
    ASSERT(!lsock_socket_connect(f.s, name, LSOCK_READ_WRITE));
    lsock__test_foreign_user = 0;
    ASSERT_ERR(lsock_socket_error(f.s), LSOCK_ERR_SOCKET_ACCESS);
    if (!strstr(lsock_socket_error_string(f.s), "the server runs as another user ("))
        FAIL_("error string: %s", lsock_socket_error_string(f.s));
    ASSERT(strstr(f.r.log, "state:CONNECTED") == NULL);
    ASSERT_EQ(f.r.connected, 0);
    ASSERT_EQ(lsock_socket_state(f.s), LSOCK_UNCONNECTED);
    ASSERT_EQ(lsock_socket_descriptor(f.s), -1);
    /* Without the option the same server is reached. */
    ASSERT(lsock_socket_set_options(f.s, 0));
    ASSERT(lsock_socket_connect(f.s, name, LSOCK_READ_WRITE));
    refusal_close(&f);
}

TEST(same_user_only_client_on_a_loop_refuses_a_server_of_another_user)
{
    refusal f;
    refusal_open(&f, "refloop", true);
    lsock_socket_connect(f.s, lsock_server_name(f.srv), LSOCK_READ_WRITE);
    RUN_UNTIL(f.loop, lsock_socket_state(f.s) == LSOCK_UNCONNECTED, 5000);
    lsock__test_foreign_user = 0;
    ASSERT_ERR(lsock_socket_error(f.s), LSOCK_ERR_SOCKET_ACCESS);
    ASSERT(strstr(f.r.log, "error:") != NULL);
    ASSERT(strstr(f.r.log, "state:CONNECTED") == NULL);
    ASSERT_EQ(f.r.connected, 0);
    refusal_close(&f);
}

/* ---- peer SIDs and security descriptors ------------------------------------------------ */

TEST(peer_sid_names_the_user_of_the_process_at_each_end)
{
#ifndef _WIN32
    lsock_socket *u = lsock_socket_new(NULL);
    char sid[128];
    ASSERT(!lsock_socket_peer_sid(u, sid, sizeof sid));
    ASSERT_ERR(lsock_socket_error(u), LSOCK_ERR_UNSUPPORTED_OPERATION);
    lsock_socket_free(u);
    SKIP("Unix users are uids (lsock_socket_peer_credentials()); peer_sid is Windows-only");
#else
    lsock_loop *loop = loop_new();
    const char *name = test_name("sid");
    counter c = {0, NULL};
    lsock_server *srv = listen_on(loop, name, 0, &c);
    lsock_socket *s = lsock_socket_new(NULL);
    char sid[256], back[256], tiny[4];
    ASSERT(!lsock_socket_peer_sid(s, sid, sizeof sid));
    ASSERT_ERR(lsock_socket_error(s), LSOCK_ERR_OPERATION);
    ASSERT(lsock_socket_connect(s, name, LSOCK_READ_WRITE));
    RUN_UNTIL(loop, c.calls == 1, 5000);
    if (!lsock_socket_peer_sid(s, sid, sizeof sid))
        FAIL_("peer_sid: %s", lsock_socket_error_string(s));
    ASSERT(starts_with(sid, "S-1-"));
    ASSERT(lsock_socket_peer_sid(c.last, back, sizeof back));
    ASSERT_STR_EQ(sid, back); /* one user at both ends */
    ASSERT(!lsock_socket_peer_sid(s, tiny, sizeof tiny));
    ASSERT_ERR(lsock_socket_error(s), LSOCK_ERR_INVALID_ARGUMENT);
    ASSERT(!lsock_socket_peer_sid(s, NULL, 10));
    ASSERT_ERR(lsock_socket_error(s), LSOCK_ERR_INVALID_ARGUMENT);
    lsock_socket_free(c.last);
    lsock_socket_free(s);
    lsock_server_free(srv);
    loop_free(loop);
#endif
}

TEST(set_security_descriptor_takes_sddl_and_rejects_what_windows_cannot_parse)
{
    lsock_server *srv = lsock_server_new(NULL);
#ifndef _WIN32
    ASSERT(!lsock_server_set_security_descriptor(srv, "D:P(A;;GA;;;OW)"));
    ASSERT_ERR(lsock_server_error(srv), LSOCK_ERR_UNSUPPORTED_OPERATION);
    lsock_server_free(srv);
    SKIP("socket files have modes (the ACCESS options), not security descriptors: Windows-only");
#else
    ASSERT(!lsock_server_set_security_descriptor(srv, "this is not SDDL"));
    ASSERT_ERR(lsock_server_error(srv), LSOCK_ERR_INVALID_ARGUMENT);
    /* The current user (owner rights) may do everything: its own clients connect. */
    ASSERT(lsock_server_set_security_descriptor(srv, "D:P(A;;GA;;;OW)(A;;GA;;;CO)"));
    const char *name = test_name("sddl");
    ASSERT(lsock_server_listen(srv, name));
    lsock_socket *s = lsock_socket_new(NULL);
    if (!lsock_socket_connect(s, name, LSOCK_READ_WRITE))
        FAIL_("connect: %s", lsock_socket_error_string(s));
    lsock_socket_free(s);
    ASSERT(lsock_server_set_security_descriptor(srv, NULL)); /* back to the options */
    lsock_server_free(srv);
#endif
}

TEST(security_descriptor_that_denies_everyone_keeps_clients_out)
{
#ifndef _WIN32
    SKIP("Windows-only (pipe security descriptors); Unix: the ACCESS options' file modes");
#else
    if (wine_version())
        SKIP("Wine (%s) does not check a named pipe's DACL when a client opens it", wine_version());
    lsock_server *srv = lsock_server_new(NULL);
    ASSERT(lsock_server_set_security_descriptor(srv, "D:P(D;;GA;;;WD)(A;;GA;;;OW)"));
    const char *name = test_name("deny");
    ASSERT(lsock_server_listen(srv, name));
    lsock_socket *s = lsock_socket_new(NULL);
    ASSERT(!lsock_socket_connect(s, name, LSOCK_READ_WRITE));
    ASSERT_ERR(lsock_socket_error(s), LSOCK_ERR_SOCKET_ACCESS);
    lsock_socket_free(s);
    lsock_server_free(srv);
#endif
}

/* ---- LSOCK_PER_USER ------------------------------------------------------------------- */

TEST(per_user_server_and_client_meet_at_the_same_private_name)
{
    lsock_loop *loop = loop_new();
    const char *name = test_name("peruser");
    counter c = {0, NULL};
    lsock_server *srv = listen_on(loop, name, LSOCK_PER_USER, &c);
    const char *full = lsock_server_full_server_name(srv);
#ifdef _WIN32
    ASSERT(starts_with(full, "\\\\.\\pipe\\S-1-"));
#else
    char want[64];
    snprintf(want, sizeof want, "/lsock-%lu/", (unsigned long)geteuid());
    const char *xdg = getenv("XDG_RUNTIME_DIR");
    ASSERT(strstr(full, want) != NULL || (xdg && starts_with(full, xdg)));
#endif
    ASSERT(strcmp(full + strlen(full) - strlen(name), name) == 0);
    lsock_socket *s = lsock_socket_new(NULL);
    ASSERT(lsock_socket_set_options(s, LSOCK_PER_USER));
    if (!lsock_socket_connect(s, name, LSOCK_READ_WRITE))
        FAIL_("connect: %s", lsock_socket_error_string(s));
    ASSERT_STR_EQ(lsock_socket_full_server_name(s), full);
    RUN_UNTIL(loop, c.calls == 1, 5000);
    lsock_socket_free(c.last);
    lsock_socket_free(s);
    /* A client without the option looks elsewhere. */
    s = lsock_socket_new(NULL);
    ASSERT(!lsock_socket_connect(s, name, LSOCK_READ_WRITE));
    ASSERT_ERR(lsock_socket_error(s), LSOCK_ERR_SERVER_NOT_FOUND);
    lsock_socket_free(s);
    lsock_server_free(srv);
    loop_free(loop);
}

#ifndef _WIN32
/* Resolves name with LSOCK_PER_USER through a socket's set_server_name: the full name, or ""
 * with the error in *err. */
static const char *per_user_full(lsock_socket *s, const char *name, lsock_error *err)
{
    ASSERT(lsock_socket_set_options(s, LSOCK_PER_USER));
    *err = LSOCK_ERR_NONE;
    if (!lsock_socket_set_server_name(s, name)) *err = lsock_socket_error(s);
    return lsock_socket_full_server_name(s);
}

/* A fresh TMPDIR for the test, XDG_RUNTIME_DIR unset. */
static char tmp_dir[128];

static const char *fresh_tmpdir(void)
{
    snprintf(tmp_dir, sizeof tmp_dir, "/tmp/lsock-trust-%ld-XXXXXX", (long)getpid());
    ASSERT(mkdtemp(tmp_dir));
    ASSERT_EQ(chmod(tmp_dir, 01777), 0);
    setenv("TMPDIR", tmp_dir, 1);
    unsetenv("XDG_RUNTIME_DIR");
    return tmp_dir;
}

static void private_path(char *out, size_t size)
{
    snprintf(out, size, "%s/lsock-%lu", tmp_dir, (unsigned long)geteuid());
}
#endif

TEST(per_user_name_without_xdg_runtime_dir_makes_lsock_uid_with_mode_0700)
{
#ifdef _WIN32
    SKIP("Windows per-user names are pipe names with the user's SID: no directory to make");
#else
    fresh_tmpdir();
    char dir[256], want[300];
    private_path(dir, sizeof dir);
    snprintf(want, sizeof want, "%s/app", dir);
    umask(0);
    lsock_socket *s = lsock_socket_new(NULL);
    lsock_error err;
    ASSERT_STR_EQ(per_user_full(s, "app", &err), want);
    ASSERT_ERR(err, LSOCK_ERR_NONE);
    struct stat st;
    ASSERT_EQ(lstat(dir, &st), 0);
    ASSERT(S_ISDIR(st.st_mode));
    ASSERT_EQ(st.st_mode & 07777, 0700);
    ASSERT_EQ(st.st_uid, geteuid());
    lsock_socket_free(s);
    rmdir(dir);
    rmdir(tmp_dir);
#endif
}

TEST(per_user_name_resolves_in_xdg_runtime_dir_when_it_is_private)
{
#ifdef _WIN32
    SKIP("XDG_RUNTIME_DIR is a Unix convention; Windows per-user names carry the user's SID");
#else
    fresh_tmpdir();
    char xdg[256], want[300];
    snprintf(xdg, sizeof xdg, "%s/run", tmp_dir);
    ASSERT_EQ(mkdir(xdg, 0700), 0);
    setenv("XDG_RUNTIME_DIR", xdg, 1);
    snprintf(want, sizeof want, "%s/app", xdg);
    lsock_socket *s = lsock_socket_new(NULL);
    lsock_error err;
    ASSERT_STR_EQ(per_user_full(s, "app", &err), want);
    /* Absolute and abstract names are left as they are. */
    ASSERT_STR_EQ(per_user_full(s, "/var/run/x.sock", &err), "/var/run/x.sock");
    ASSERT(lsock_socket_set_options(s, LSOCK_PER_USER | LSOCK_ABSTRACT_NAMESPACE));
    ASSERT(lsock_socket_set_server_name(s, "abs"));
    ASSERT_STR_EQ(lsock_socket_full_server_name(s), "abs");
    /* An XDG_RUNTIME_DIR open to others (or relative, or missing) is passed over. */
    ASSERT_EQ(chmod(xdg, 0755), 0);
    char fallback[300];
    private_path(fallback, sizeof fallback);
    strcat(fallback, "/app");
    ASSERT_STR_EQ(per_user_full(s, "app", &err), fallback);
    ASSERT_EQ(chmod(xdg, 0700), 0); /* left as found, but for the test's own change */
    setenv("XDG_RUNTIME_DIR", "relative/dir", 1);
    ASSERT_STR_EQ(per_user_full(s, "app", &err), fallback);
    unsetenv("XDG_RUNTIME_DIR");
    lsock_socket_free(s);
    char dir[256];
    private_path(dir, sizeof dir);
    rmdir(dir);
    rmdir(xdg);
    rmdir(tmp_dir);
#endif
}

#ifndef _WIN32
/* The private directory's path is taken by something unsafe: every per-user resolution fails
 * with SOCKET_ACCESS naming the reason, and the thing is left exactly as it was. */
static void refused_private_dir(const char *why_part)
{
    char dir[256];
    private_path(dir, sizeof dir);
    struct stat before, after;
    ASSERT_EQ(lstat(dir, &before), 0);
    lsock_socket *s = lsock_socket_new(NULL);
    lsock_error err;
    ASSERT_STR_EQ(per_user_full(s, "app", &err), "");
    ASSERT_ERR(err, LSOCK_ERR_SOCKET_ACCESS);
    if (!strstr(lsock_socket_error_string(s), why_part))
        FAIL_("error \"%s\" does not say \"%s\"", lsock_socket_error_string(s), why_part);
    ASSERT(lsock_socket_set_options(s, LSOCK_PER_USER));
    ASSERT(!lsock_socket_connect(s, "app", LSOCK_READ_WRITE));
    ASSERT_ERR(lsock_socket_error(s), LSOCK_ERR_SOCKET_ACCESS);
    lsock_socket_free(s);
    lsock_server *srv = lsock_server_new(NULL);
    ASSERT(lsock_server_set_socket_options(srv, LSOCK_PER_USER));
    ASSERT(!lsock_server_listen(srv, "app"));
    ASSERT_ERR(lsock_server_error(srv), LSOCK_ERR_SOCKET_ACCESS);
    lsock_server_free(srv);
    ASSERT_EQ(lstat(dir, &after), 0);
    ASSERT_EQ(after.st_mode, before.st_mode);
    ASSERT_EQ(after.st_uid, before.st_uid);
    ASSERT_EQ(after.st_ino, before.st_ino);
}
#endif

TEST(per_user_refuses_a_private_directory_that_is_a_symlink)
{
#ifdef _WIN32
    SKIP("no per-user directory on Windows (pipe names carry the user's SID)");
#else
    fresh_tmpdir();
    char dir[256], target[256];
    private_path(dir, sizeof dir);
    snprintf(target, sizeof target, "%s/elsewhere", tmp_dir);
    ASSERT_EQ(mkdir(target, 0700), 0);
    ASSERT_EQ(symlink(target, dir), 0);
    refused_private_dir("is a symbolic link");
    struct stat st;
    ASSERT_EQ(stat(target, &st), 0);
    ASSERT_EQ(st.st_nlink, 2); /* nothing was made through the link */
    unlink(dir);
    rmdir(target);
    rmdir(tmp_dir);
#endif
}

TEST(per_user_refuses_a_private_directory_open_to_others)
{
#ifdef _WIN32
    SKIP("no per-user directory on Windows (pipe names carry the user's SID)");
#else
    fresh_tmpdir();
    char dir[256];
    private_path(dir, sizeof dir);
    ASSERT_EQ(mkdir(dir, 0700), 0);
    ASSERT_EQ(chmod(dir, 0777), 0);
    refused_private_dir("is open to other users (mode 777)");
    rmdir(dir);
    rmdir(tmp_dir);
#endif
}

TEST(per_user_refuses_a_private_directory_of_another_user)
{
#ifdef _WIN32
    SKIP("no per-user directory on Windows (pipe names carry the user's SID)");
#else
    if (geteuid() != 0) SKIP("needs root to make a directory of another user (uid 65534)");
    fresh_tmpdir();
    char dir[256];
    private_path(dir, sizeof dir);
    ASSERT_EQ(mkdir(dir, 0700), 0);
    ASSERT_EQ(chown(dir, 65534, 65534), 0);
    refused_private_dir("belongs to uid 65534");
    rmdir(dir);
    rmdir(tmp_dir);
#endif
}

TEST(per_user_refuses_a_file_at_the_private_directory)
{
#ifdef _WIN32
    SKIP("no per-user directory on Windows (pipe names carry the user's SID)");
#else
    fresh_tmpdir();
    char dir[256];
    private_path(dir, sizeof dir);
    int fd = open(dir, O_CREAT | O_WRONLY | O_CLOEXEC, 0600);
    ASSERT(fd >= 0);
    close(fd);
    refused_private_dir("is not a directory");
    unlink(dir);
    rmdir(tmp_dir);
#endif
}

/* ---- Unix: another user for real (root) -------------------------------------------------- */

#ifndef _WIN32
enum { NOBODY = 65534 };

static void need_root(void)
{
    if (geteuid() != 0) SKIP("needs root to run a process as another user (uid %d)", NOBODY);
}

static int reap(pid_t pid)
{
    int status = 0;
    while (waitpid(pid, &status, 0) < 0)
        if (errno != EINTR) return -1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

/* A fresh shared directory (mode 01777, as /tmp) for names both users reach. */
static void shared_name(char *out, size_t size, const char *leaf)
{
    fresh_tmpdir();
    snprintf(out, size, "%s/%s", tmp_dir, leaf);
}

#define FLOOD 1000

/* Another user opens FLOOD connections and keeps them; then checks that the server closed
 * every one (exit 0), or exits with how it failed. */
static int flood(const char *path, int ready_fd)
{
    become_nobody();
    struct rlimit rl = {FLOOD + 64, FLOOD + 64};
    setrlimit(RLIMIT_NOFILE, &rl);
    static int fds[FLOOD];
    for (int i = 0; i < FLOOD; i++) {
        fds[i] = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        struct sockaddr_un sa;
        memset(&sa, 0, sizeof sa);
        sa.sun_family = AF_UNIX;
        if (strlen(path) >= sizeof sa.sun_path) return 13;
        memcpy(sa.sun_path, path, strlen(path) + 1);
        if (fds[i] < 0 || connect(fds[i], (struct sockaddr *)&sa, sizeof sa) != 0) return 10;
    }
    if (write(ready_fd, "f", 1) != 1) return 11;
    for (int i = 0; i < FLOOD; i++) {
        struct pollfd pf = {fds[i], POLLIN, 0};
        char b;
        if (poll(&pf, 1, 30000) != 1 || read(fds[i], &b, 1) != 0) return 12;
    }
    return 0;
}
#endif

TEST(same_user_only_server_drops_another_user_and_a_flood_of_1000_does_not_starve_its_own)
{
#ifdef _WIN32
    SKIP("no second user under Wine: same_user_only_server_closes_a_peer_of_another_user_before_"
         "it_is_queued runs this path with the comparison forced");
#else
    need_root();
    char path[256];
    shared_name(path, sizeof path, "flood");
    lsock_loop *loop = loop_new();
    counter c = {0, NULL};
    lsock_server *srv = listen_on(loop, path, LSOCK_SAME_USER_ONLY | LSOCK_WORLD_ACCESS, &c);
    ASSERT(lsock_server_set_max_pending_connections(srv, 1));
    int pfd[2];
    ASSERT_EQ(pipe(pfd), 0);
    pid_t pid = fork_linked_child();
    if (pid == 0) {
        close(pfd[0]);
        _exit(flood(path, pfd[1]));
    }
    close(pfd[1]);
    uint64_t dl = test_now_ms() + 30000;
    for (;;) { /* serve the flood until the other user has all its connections */
        ASSERT(test_now_ms() < dl);
        struct pollfd pf = {pfd[0], POLLIN, 0};
        if (poll(&pf, 1, 0) == 1) break;
        lsock_loop_run(loop, LSOCK_RUN_NOWAIT);
        poll(&pf, 1, 5);
    }
    ASSERT_EQ(c.calls, 0);
    /* On the server's loop: while the flood still fills the backlog, the connect waits and
     * retries on the loop (CONNECTING), which a socket without a loop would never do here. */
    lsock_socket *mine = lsock_socket_new(loop);
    ASSERT(lsock_socket_connect(mine, path, LSOCK_READ_WRITE));
    RUN_UNTIL(loop, c.calls == 1, 30000);
    lsock_credentials cr;
    ASSERT(lsock_socket_peer_credentials(c.last, &cr));
    ASSERT_EQ(cr.uid, (int64_t)geteuid());
    ASSERT_EQ(reap(pid), 0); /* and every foreign connection was closed by the server */
    close(pfd[0]);
    lsock_socket_free(c.last);
    lsock_socket_free(mine);
    lsock_server_free(srv);
    loop_free(loop);
    rmdir(tmp_dir);
#endif
}

TEST(same_user_only_client_refuses_a_server_of_another_user_naming_its_uid)
{
#ifdef _WIN32
    SKIP("no second user under Wine: same_user_only_client_refuses_a_server_of_another_user_"
         "with_socket_access runs this path with the comparison forced");
#else
    need_root();
    char path[256];
    shared_name(path, sizeof path, "theirs");
    int pfd[2], done[2];
    ASSERT_EQ(pipe(pfd), 0);
    ASSERT_EQ(pipe(done), 0);
    pid_t pid = fork_linked_child();
    if (pid == 0) { /* the other user's server: accepts until told to stop */
        close(pfd[0]);
        close(done[1]);
        become_nobody();
        lsock_server *srv = lsock_server_new(NULL);
        lsock_server_set_socket_options(srv, LSOCK_WORLD_ACCESS);
        if (!lsock_server_listen(srv, path)) _exit(2);
        if (write(pfd[1], "l", 1) != 1) _exit(3);
        struct pollfd pf = {done[0], POLLIN, 0};
        while (poll(&pf, 1, 0) == 0) {
            bool timed_out;
            if (lsock_server_wait_for_new_connection(srv, 10, &timed_out))
                lsock_socket_free(lsock_server_next_pending_connection(srv));
        }
        lsock_server_free(srv);
        _exit(0);
    }
    close(pfd[1]);
    close(done[0]);
    char b;
    ASSERT_EQ(read(pfd[0], &b, 1), 1);
    lsock_socket *s = lsock_socket_new(NULL);
    ASSERT(lsock_socket_set_options(s, LSOCK_SAME_USER_ONLY));
    ASSERT(!lsock_socket_connect(s, path, LSOCK_READ_WRITE));
    ASSERT_ERR(lsock_socket_error(s), LSOCK_ERR_SOCKET_ACCESS);
    if (!strstr(lsock_socket_error_string(s), "uid 65534"))
        FAIL_("the error does not name the uid: %s", lsock_socket_error_string(s));
    ASSERT_EQ(lsock_socket_state(s), LSOCK_UNCONNECTED);
    ASSERT(lsock_socket_set_options(s, 0));
    if (!lsock_socket_connect(s, path, LSOCK_READ_WRITE))
        FAIL_("without the option: %s", lsock_socket_error_string(s));
    lsock_socket_free(s);
    ASSERT_EQ(write(done[1], "x", 1), 1);
    ASSERT_EQ(reap(pid), 0);
    close(pfd[0]);
    close(done[1]);
    rmdir(tmp_dir);
#endif
}

/* ---- socket activation --------------------------------------------------------------- */

TEST(listen_activated_with_nothing_passed_listens_normally)
{
#ifndef _WIN32
    unsetenv("LISTEN_PID");
    unsetenv("LISTEN_FDS");
    unsetenv("LISTEN_FDNAMES");
#endif
    lsock_server *srv = lsock_server_new(NULL);
    const char *name = test_name("act0");
    ASSERT(!lsock_server_is_activated(srv));
    ASSERT(lsock_server_listen_activated(srv, name));
    ASSERT(lsock_server_is_listening(srv));
    ASSERT(!lsock_server_is_activated(srv));
    ASSERT_STR_EQ(lsock_server_name(srv), name);
    lsock_socket *s = lsock_socket_new(NULL);
    ASSERT(lsock_socket_connect(s, name, LSOCK_READ_WRITE));
    lsock_socket_free(s);
    lsock_server_free(srv);
}

#ifndef _WIN32
/* An AF_UNIX socket bound at path, listening or not. */
static int bound_socket(const char *path, int listening)
{
    unlink(path);
    return listening ? raw_listener(path, 8) : raw_bound(path);
}

enum { ACT_LISTENING = 1, ACT_PLAIN = 2, ACT_PIPE = 3 };

static const char *g_fds_env; /* LISTEN_FDS as given, instead of the count */
static int g_second;          /* then a second server asks for the same name */

/* In a child: the descriptors of kinds[] at 3, 4, ... (sockets bound at dir/s<i>), the
 * environment as given, then listen_activated(name). Exit: 0 activated on the descriptor
 * expect_fd (checked by connecting to its path), 1 listened normally, 2 + the error failed. */
static int activation_case(const int *kinds, int n, const char *pid_env, const char *names,
                           const char *name, int expect_fd)
{
    char dir[128];
    snprintf(dir, sizeof dir, "/tmp/lsock-act-%ld-XXXXXX", (long)getpid());
    ASSERT(mkdtemp(dir));
    pid_t pid = fork_linked_child();
    if (pid == 0) {
        int tmp[16];
        char p[256];
        for (int i = 0; i < n; i++) {
            snprintf(p, sizeof p, "%s/s%d", dir, i);
            if (kinds[i] == ACT_PIPE) {
                int pp[2];
                if (pipe(pp) != 0) _exit(90);
                tmp[i] = pp[0];
            } else {
                tmp[i] = bound_socket(p, kinds[i] == ACT_LISTENING);
            }
        }
        for (int i = 0; i < n; i++) { /* move them up first: 3.. may be among them */
            int hi = fcntl(tmp[i], F_DUPFD_CLOEXEC, 100);
            if (hi < 0) _exit(91);
            tmp[i] = hi;
        }
        for (int i = 0; i < n; i++)
            if (dup2(tmp[i], 3 + i) != 3 + i) _exit(92);
        char pidtxt[32];
        snprintf(pidtxt, sizeof pidtxt, "%ld", (long)getpid());
        setenv("LISTEN_PID", pid_env ? pid_env : pidtxt, 1);
        char ntxt[16];
        snprintf(ntxt, sizeof ntxt, "%d", n);
        setenv("LISTEN_FDS", g_fds_env ? g_fds_env : ntxt, 1);
        if (names)
            setenv("LISTEN_FDNAMES", names, 1);
        else
            unsetenv("LISTEN_FDNAMES");
        char own[256]; /* no name: the path of the socket expected */
        snprintf(own, sizeof own, "%s/s%d", dir, expect_fd - 3);
        lsock_server *srv = lsock_server_new(NULL);
        if (!lsock_server_listen_activated(srv, name ? name : own))
            _exit(2 + (int)lsock_server_error(srv));
        if (!lsock_server_is_activated(srv)) {
            lsock_server_free(srv); /* removes the socket file of the normal listen */
            _exit(1);
        }
        if (lsock_server_descriptor(srv) != expect_fd) _exit(60);
        int fl = fcntl(expect_fd, F_GETFL), fdfl = fcntl(expect_fd, F_GETFD);
        if (!(fl & O_NONBLOCK) || !(fdfl & FD_CLOEXEC)) _exit(61);
        snprintf(p, sizeof p, "%s/s%d", dir, expect_fd - 3);
        lsock_socket *s = lsock_socket_new(NULL);
        if (!lsock_socket_connect(s, p, LSOCK_READ_WRITE)) _exit(62);
        bool timed_out;
        if (!lsock_server_wait_for_new_connection(srv, 5000, &timed_out)) _exit(63);
        if (g_second) { /* the descriptor is taken: never handed out again */
            lsock_server *again = lsock_server_new(NULL);
            lsock_server_listen_activated(again, name ? name : own);
            if (lsock_server_is_activated(again) || lsock_server_descriptor(again) == expect_fd)
                _exit(64);
            lsock_server_free(again);
        }
        _exit(0);
    }
    int rc = reap(pid);
    char p[256];
    for (int i = 0; i < n; i++) {
        snprintf(p, sizeof p, "%s/s%d", dir, i);
        unlink(p);
    }
    rmdir(dir);
    return rc;
}
#endif

TEST(listen_activated_takes_the_descriptor_named_in_listen_fdnames)
{
#ifdef _WIN32
    SKIP("no socket activation on Windows: listen_activated listens normally (tested above)");
#else
    int kinds[] = {ACT_LISTENING, ACT_LISTENING, ACT_LISTENING};
    ASSERT_EQ(activation_case(kinds, 3, NULL, "web:ctl:other", "ctl", 4), 0);
#endif
}

TEST(listen_activated_takes_the_descriptor_bound_at_the_name_without_fdnames)
{
#ifdef _WIN32
    SKIP("no socket activation on Windows: listen_activated listens normally (tested above)");
#else
    int kinds[] = {ACT_LISTENING, ACT_LISTENING};
    ASSERT_EQ(activation_case(kinds, 2, NULL, NULL, NULL, 4), 0);  /* the name: s1's path */
    ASSERT_EQ(activation_case(kinds, 2, NULL, "a:b", NULL, 4), 0); /* no name matches it */
#endif
}

TEST(listen_activated_ignores_a_wrong_listen_pid_and_a_malformed_listen_fds)
{
#ifdef _WIN32
    SKIP("no socket activation on Windows: listen_activated listens normally (tested above)");
#else
    int kinds[] = {ACT_LISTENING};
    char name[96];
    snprintf(name, sizeof name, "%s", test_name("svc"));
    ASSERT_EQ(activation_case(kinds, 1, "1", name, name, 3), 1);
    ASSERT_EQ(activation_case(kinds, 1, "12abc", name, name, 3), 1);
    ASSERT_EQ(activation_case(kinds, 1, "", name, name, 3), 1);
    /* A LISTEN_FDS that is no count from 1 to 4096 is nothing passed. */
    const char *bad[] = {"0", "-1", "4097", "99999999999999999999", "1x", " 1", ""};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        g_fds_env = bad[i];
        ASSERT_EQ(activation_case(kinds, 1, NULL, name, name, 3), 1);
    }
    g_fds_env = NULL;
#endif
}

TEST(listen_activated_refuses_a_passed_descriptor_that_is_not_a_listening_unix_socket)
{
#ifdef _WIN32
    SKIP("no socket activation on Windows: listen_activated listens normally (tested above)");
#else
    int plain[] = {ACT_PLAIN};
    ASSERT_EQ(activation_case(plain, 1, NULL, "svc", "svc", 3),
              2 + LSOCK_ERR_UNSUPPORTED_OPERATION);
    int pipe_kind[] = {ACT_PIPE};
    ASSERT_EQ(activation_case(pipe_kind, 1, NULL, "svc", "svc", 3),
              2 + LSOCK_ERR_UNSUPPORTED_OPERATION);
#endif
}

/* Started by systemd-socket-activate: listens on what it passed (named "svc"), answers the
 * first client with "activated" and exits. */
CHILD_MAIN(activated)
{
    lsock_server *srv = lsock_server_new(NULL);
    if (!lsock_server_listen_activated(srv, arg)) return 2;
    if (!lsock_server_is_activated(srv)) return 3;
    bool timed_out;
    if (!lsock_server_wait_for_new_connection(srv, 20000, &timed_out)) return 4;
    lsock_socket *s = lsock_server_next_pending_connection(srv);
    lsock_socket_write(s, "activated", 9);
    if (!lsock_socket_wait_for_bytes_written(s, 20000)) return 5;
    lsock_socket_disconnect(s);
    lsock_socket_free(s);
    lsock_server_free(srv);
    return 0;
}

TEST(listen_activated_never_hands_one_descriptor_to_two_servers)
{
#ifdef _WIN32
    SKIP("no socket activation on Windows: listen_activated listens normally (tested above)");
#else
    int kinds[] = {ACT_LISTENING};
    char name[96];
    snprintf(name, sizeof name, "%s", test_name("twice"));
    g_second = 1;
    ASSERT_EQ(activation_case(kinds, 1, NULL, name, name, 3), 0);
    g_second = 0;
#endif
}

TEST(listen_activated_with_systemd_socket_activate)
{
#ifdef _WIN32
    SKIP("systemd socket activation is Linux-only");
#else
    const char *tool = "/usr/bin/systemd-socket-activate";
    if (access(tool, X_OK) != 0)
        SKIP("%s is missing (Debian package systemd; .ci/run installs it)", tool);
    char path[256], exe[512];
    shared_name(path, sizeof path, "activated");
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    ASSERT(n > 0);
    exe[n] = '\0';
    char *argv[] = {(char *)tool, "-l",  path, "--fdname=svc", exe, "--child",
                    "activated",  "svc", NULL};
    pid_t pid;
    fflush(stdout);
    fflush(stderr);
    ASSERT_EQ(posix_spawn(&pid, tool, NULL, NULL, argv, environ), 0);
    uint64_t dl = test_now_ms() + 20000;
    struct stat st;
    while (lstat(path, &st) != 0) { /* the tool binds, then waits for a first client */
        if (test_now_ms() > dl) {
            kill(pid, SIGKILL);
            reap(pid);
            FAIL_("systemd-socket-activate never listened at %s", path);
        }
        struct pollfd none;
        poll(&none, 0, 5);
    }
    /* The file appears at bind(); the tool calls listen() just after: until then a connect is
     * refused, and is tried again. */
    lsock_socket *s = lsock_socket_new(NULL);
    bool ok;
    while (!(ok = lsock_socket_connect(s, path, LSOCK_READ_WRITE)) &&
           lsock_socket_error(s) == LSOCK_ERR_CONNECTION_REFUSED && test_now_ms() < dl) {
        struct pollfd none;
        poll(&none, 0, 5);
    }
    char buf[16] = "";
    int64_t got = 0;
    while (ok && got < 9 && lsock_socket_wait_for_ready_read(s, 20000))
        got += lsock_socket_read(s, buf + got, (int64_t)sizeof buf - 1 - got);
    lsock_socket_free(s);
    if (!ok || got != 9) kill(pid, SIGKILL);
    int rc = reap(pid);
    unlink(path);
    rmdir(tmp_dir);
    ASSERT(ok);
    ASSERT_STR_EQ(buf, "activated");
    ASSERT_EQ(rc, 0);
#endif
}

TEST_MAIN()
