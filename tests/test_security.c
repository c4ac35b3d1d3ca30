/*
 * Security guarantees of the Unix socket files:
 *  - access options are applied atomically: no other user gets in while a restrictive server
 *    starts (a second process, as another user, hammers connect during listen);
 *  - the private directory used to set the mode cannot be entered, replaced or pre-empted by
 *    another user in a shared sticky directory such as /tmp;
 *  - a symlink or directory planted at the name (before listen, or during it) is never
 *    followed, replaced or removed;
 *  - lsock_server_close() removes only the file the server made, even one replaced right after
 *    it appeared;
 *  - LSOCK_RECLAIM_STALE removes only a stale socket file of the server's own user;
 *  - the access options hold for abstract servers too: each peer's credentials are checked;
 *  - peer credentials name the real peer process and user across fork.
 *
 * "Another user" is uid/gid 65534 (nobody): those tests need root and skip otherwise. They run
 * in a shared-/tmp stand-in: a fresh directory under /tmp with mode 01777.
 *
 * The TOCTOU tests interpose mkdtemp(): lsock calls it between checking the name and linking
 * the socket into place, which is exactly when an attacker would act, so the interposer runs
 * the attacker there. A test fails (rather than passing vacuously) if lsock stops calling it.
 */
#include "test.h"
#include "lsock.h"
#include "internal.h" /* the test hooks */
#include "support.h"

#include <dirent.h>
#include <dlfcn.h>
#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

enum { NOBODY = 65534 };

/* ---- helpers --------------------------------------------------------------------------- */

static void need_root(void)
{
    if (geteuid() != 0) SKIP("needs root to act as another user (uid %d)", NOBODY);
}

/* A fresh directory under /tmp with /tmp's mode (01777): a shared directory of our own. */
static char shared_dir[64];

static const char *make_shared_dir(void)
{
    snprintf(shared_dir, sizeof shared_dir, "/tmp/lsock-sec-%ld-XXXXXX", (long)getpid());
    ASSERT(mkdtemp(shared_dir) != NULL);
    ASSERT_EQ(chmod(shared_dir, 01777), 0);
    return shared_dir;
}

/* Removes a directory tree (entries one level deep, and directories one more level). */
static void remove_tree(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d) return;
    struct dirent *e;
    char path[512];
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        struct stat st;
        if (lstat(path, &st) == 0 && S_ISDIR(st.st_mode))
            remove_tree(path);
        else
            unlink(path);
    }
    closedir(d);
    rmdir(dir);
}

static int count_entries(const char *dir)
{
    DIR *d = opendir(dir);
    ASSERT(d);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0) n++;
    closedir(d);
    return n;
}

static int wait_child(pid_t pid)
{
    int status = 0;
    while (waitpid(pid, &status, 0) < 0)
        if (errno != EINTR) return -1;
    return status;
}

/* connect(2) on a fresh socket: 0 when connected, else errno. */
static int raw_connect(const char *path)
{
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0) return errno;
    struct sockaddr_un sa;
    memset(&sa, 0, sizeof sa);
    sa.sun_family = AF_UNIX;
    size_t len = strlen(path);
    if (len >= sizeof sa.sun_path) {
        close(fd);
        return ENAMETOOLONG;
    }
    memcpy(sa.sun_path, path, len + 1);
    int rc = connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0 ? 0 : errno;
    close(fd);
    return rc;
}

/* A socket bound at path with plain bind(2), listening if backlog > 0. */
static int raw_bind(const char *path, int backlog)
{
    return backlog > 0 ? raw_listener(path, backlog) : raw_bound(path);
}

static void path_in(char *out, size_t size, const char *dir, const char *name)
{
    snprintf(out, size, "%s/%s", dir, name);
}

/* ---- atomic access options ------------------------------------------------------------- */

struct hammer_report {
    long attempts, denied, in_restricted, in_open, private_tries, private_in;
};

/* The other user: connects to "restricted" and "open" in dir as fast as it can, and to
 * anything that looks like a private directory of lsock's, until the control pipe closes. */
static void hammer(const char *dir, int ctl, int report)
{
    become_nobody();
    struct hammer_report r;
    memset(&r, 0, sizeof r);
    char restricted[256], open_path[256], p[512];
    path_in(restricted, sizeof restricted, dir, "restricted");
    path_in(open_path, sizeof open_path, dir, "open");
    for (;;) {
        struct pollfd pf = {ctl, POLLIN, 0};
        if (poll(&pf, 1, 0) != 0) break;
        for (int k = 0; k < 64; k++) {
            int rc = raw_connect(restricted);
            r.attempts++;
            if (rc == 0) r.in_restricted++;
            if (rc == EACCES) r.denied++;
        }
        if (r.in_open == 0 && raw_connect(open_path) == 0) r.in_open++;
        DIR *d = opendir(dir);
        if (d) {
            struct dirent *e;
            while ((e = readdir(d)) != NULL) {
                if (strncmp(e->d_name, "restricted.", 11) != 0) continue;
                snprintf(p, sizeof p, "%s/%s/s", dir, e->d_name);
                r.private_tries++;
                if (raw_connect(p) == 0) r.private_in++;
            }
            closedir(d);
        }
    }
    if (write(report, &r, sizeof r) != (ssize_t)sizeof r) _exit(3);
    _exit(0);
}

TEST(access_options_are_atomic_another_user_never_connects_during_listen)
{
    need_root();
    const char *dir = make_shared_dir();
    char restricted[256], open_path[256];
    path_in(restricted, sizeof restricted, dir, "restricted");
    path_in(open_path, sizeof open_path, dir, "open");
    /* With umask 0 a socket file is born 0777: only an atomic mode keeps the user out. */
    mode_t old_umask = umask(0);
    int ctl[2], rep[2];
    ASSERT_EQ(pipe(ctl), 0);
    ASSERT_EQ(pipe(rep), 0);
    pid_t pid = fork_linked_child();
    if (pid == 0) {
        close(ctl[1]);
        close(rep[0]);
        hammer(dir, ctl[0], rep[1]);
    }
    close(ctl[0]);
    close(rep[1]);
    /* Listen and close over and over with LSOCK_USER_ACCESS while the other user hammers. */
    uint64_t end = test_now_ms() + (under_valgrind() ? 4000 : 1500);
    int rounds = 0;
    while (test_now_ms() < end || rounds < 20) {
        lsock_server *srv = lsock_server_new(NULL);
        ASSERT(lsock_server_set_socket_options(srv, LSOCK_USER_ACCESS));
        ASSERT(lsock_server_listen(srv, restricted));
        struct stat st;
        ASSERT_EQ(lstat(restricted, &st), 0);
        ASSERT_EQ(st.st_mode & 07777, 0700);
        bool timed_out = false;
        while (lsock_server_wait_for_new_connection(srv, 0, &timed_out)) {
            lsock_socket *s = lsock_server_next_pending_connection(srv);
            lsock_credentials cr;
            ASSERT(lsock_socket_peer_credentials(s, &cr));
            FAIL_("round %d: a connection from uid %lld got into a 0700 server", rounds,
                  (long long)cr.uid);
        }
        lsock_server_free(srv);
        rounds++;
    }
    /* The control: a server open to all takes the same user in. */
    lsock_server *srv = lsock_server_new(NULL);
    ASSERT(lsock_server_set_socket_options(srv, LSOCK_WORLD_ACCESS));
    ASSERT(lsock_server_listen(srv, open_path));
    ASSERT(lsock_server_wait_for_new_connection(srv, 10000, NULL));
    lsock_socket *s = lsock_server_next_pending_connection(srv);
    lsock_credentials cr;
    ASSERT(lsock_socket_peer_credentials(s, &cr));
    ASSERT_EQ(cr.uid, NOBODY);
    lsock_socket_free(s);
    close(ctl[1]);
    struct hammer_report r;
    struct pollfd pf = {rep[0], POLLIN, 0};
    ASSERT_EQ(poll(&pf, 1, 10000), 1);
    ASSERT_EQ(read(rep[0], &r, sizeof r), (ssize_t)sizeof r);
    int st = wait_child(pid);
    ASSERT(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    printf("%d listens; the other user made %ld connects (%ld denied), %ld into private "
           "directories, got into the restricted server %ld times, the open one %ld\n",
           rounds, r.attempts, r.denied, r.private_tries, r.in_restricted, r.in_open);
    ASSERT_EQ(r.in_restricted, 0);
    ASSERT_EQ(r.private_in, 0);
    ASSERT(r.denied > 0); /* it really tried while the file was there */
    ASSERT_EQ(r.in_open, 1);
    lsock_server_free(srv);
    umask(old_umask);
    close(rep[0]);
    ASSERT_EQ(count_entries(dir), 0); /* no private directory left behind */
    remove_tree(dir);
}

/* ---- the private directory and the public name, at the moment of listen --------------- */

/* What the interposed mkdtemp() does, as the other user, right after lsock made its private
 * directory (after the name was checked, before the socket is linked into place). */
enum attack {
    ATTACK_NONE,
    ATTACK_ENTER_PRIVATE_DIR, /* plant a file or symlink inside it, rename or remove it */
    ATTACK_SYMLINK_AT_NAME,   /* plant a symlink at the public name */
    ATTACK_DIR_AT_NAME        /* plant a directory owned by the other user at the name */
};

static enum attack attack;
static int mkdtemp_calls;
static char private_dir[512], attack_name[512], symlink_target[512];
static int attack_result; /* child's exit status */

static void attacker(const char *dir)
{
    become_nobody();
    char p[600];
    struct stat st;
    switch (attack) {
    case ATTACK_ENTER_PRIVATE_DIR:
        /* lsock's directory: fresh, ours, 0700, a real directory and not a link. */
        if (lstat(dir, &st) != 0 || !S_ISDIR(st.st_mode) || (st.st_mode & 07777) != 0700 ||
            st.st_uid != 0)
            _exit(10);
        snprintf(p, sizeof p, "%s/s", dir);
        if (symlink("/tmp/elsewhere", p) == 0) _exit(11);
        if (mknod(p, S_IFREG | 0666, 0) == 0) _exit(12);
        if (raw_connect(p) == 0) _exit(13);
        snprintf(p, sizeof p, "%s.moved", dir);
        if (rename(dir, p) == 0) _exit(14);
        if (rmdir(dir) == 0) _exit(15);
        _exit(0);
    case ATTACK_SYMLINK_AT_NAME:
        _exit(symlink(symlink_target, attack_name) == 0 ? 0 : 20);
    case ATTACK_DIR_AT_NAME:
        _exit(mkdir(attack_name, 0777) == 0 ? 0 : 30);
    default:
        _exit(0);
    }
}

char *mkdtemp(char *template);

char *mkdtemp(char *template)
{
    static char *(*real)(char *);
    if (!real) real = (char *(*)(char *))dlsym(RTLD_NEXT, "mkdtemp");
    char *r = real(template);
    if (!r || attack == ATTACK_NONE) return r;
    mkdtemp_calls++;
    snprintf(private_dir, sizeof private_dir, "%s", r);
    pid_t pid = fork();
    if (pid == 0) attacker(r);
    int st = 0;
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {
    }
    attack_result = WIFEXITED(st) ? WEXITSTATUS(st) : 100 + WTERMSIG(st);
    return r;
}

TEST(private_directory_cannot_be_entered_replaced_or_removed_by_another_user)
{
    need_root();
    const char *dir = make_shared_dir();
    char name[256];
    path_in(name, sizeof name, dir, "srv");
    mode_t old_umask = umask(0);
    attack = ATTACK_ENTER_PRIVATE_DIR;
    lsock_server *srv = lsock_server_new(NULL);
    ASSERT(lsock_server_set_socket_options(srv, LSOCK_USER_ACCESS));
    ASSERT(lsock_server_listen(srv, name));
    attack = ATTACK_NONE;
    umask(old_umask);
    if (mkdtemp_calls == 0) FAIL_("listen with access options no longer calls mkdtemp()");
    if (attack_result != 0) FAIL_("the other user's attack step %d succeeded", attack_result);
    struct stat st;
    ASSERT_EQ(lstat(name, &st), 0);
    ASSERT(S_ISSOCK(st.st_mode));
    ASSERT_EQ(st.st_mode & 07777, 0700);
    ASSERT(lstat(private_dir, &st) != 0); /* gone */
    ASSERT_EQ(count_entries(dir), 1);
    lsock_socket *c = lsock_socket_new(NULL);
    ASSERT(lsock_socket_connect(c, name, LSOCK_READ_WRITE));
    ASSERT(lsock_server_wait_for_new_connection(srv, 5000, NULL));
    lsock_socket_free(c);
    lsock_server_free(srv);
    ASSERT_EQ(count_entries(dir), 0);
    remove_tree(dir);
}

TEST(symlink_planted_at_the_name_during_listen_is_never_replaced_or_followed)
{
    need_root();
    const char *dir = make_shared_dir();
    char name[256], target[256];
    path_in(name, sizeof name, dir, "srv");
    path_in(target, sizeof target, dir, "victim");
    snprintf(attack_name, sizeof attack_name, "%s", name);
    snprintf(symlink_target, sizeof symlink_target, "%s", target);
    attack = ATTACK_SYMLINK_AT_NAME;
    lsock_server *srv = lsock_server_new(NULL);
    ASSERT(lsock_server_set_socket_options(srv, LSOCK_USER_ACCESS | LSOCK_RECLAIM_STALE));
    bool ok = lsock_server_listen(srv, name);
    attack = ATTACK_NONE;
    if (mkdtemp_calls == 0) FAIL_("listen with access options no longer calls mkdtemp()");
    ASSERT_EQ(attack_result, 0); /* the symlink was planted after the check */
    ASSERT(!ok);
    ASSERT_ERR(lsock_server_error(srv), LSOCK_ERR_ADDRESS_IN_USE);
    struct stat st;
    ASSERT_EQ(lstat(name, &st), 0);
    ASSERT(S_ISLNK(st.st_mode));      /* the link is still there, untouched */
    ASSERT(lstat(target, &st) != 0);  /* nothing was made through it */
    ASSERT_EQ(count_entries(dir), 1); /* no private directory left behind */
    lsock_server_free(srv);
    ASSERT_EQ(lstat(name, &st), 0);
    remove_tree(dir);
}

TEST(directory_of_another_user_planted_at_the_name_during_listen_is_left_alone)
{
    need_root();
    const char *dir = make_shared_dir();
    char name[256];
    path_in(name, sizeof name, dir, "srv");
    snprintf(attack_name, sizeof attack_name, "%s", name);
    attack = ATTACK_DIR_AT_NAME;
    lsock_server *srv = lsock_server_new(NULL);
    ASSERT(lsock_server_set_socket_options(srv, LSOCK_USER_ACCESS | LSOCK_RECLAIM_STALE));
    bool ok = lsock_server_listen(srv, name);
    attack = ATTACK_NONE;
    if (mkdtemp_calls == 0) FAIL_("listen with access options no longer calls mkdtemp()");
    ASSERT_EQ(attack_result, 0);
    ASSERT(!ok);
    ASSERT_ERR(lsock_server_error(srv), LSOCK_ERR_ADDRESS_IN_USE);
    struct stat st;
    ASSERT_EQ(lstat(name, &st), 0);
    ASSERT(S_ISDIR(st.st_mode));
    ASSERT_EQ(st.st_uid, NOBODY);
    ASSERT_EQ(count_entries(name), 0); /* nothing put inside it */
    ASSERT_EQ(count_entries(dir), 1);
    lsock_server_free(srv);
    remove_tree(dir);
}

/* Planted before listen, with and without access options and RECLAIM_STALE. */
static void listen_over_planted(int kind, unsigned options)
{
    char dirbuf[128];
    snprintf(dirbuf, sizeof dirbuf, "/tmp/lsock-plant-%ld-XXXXXX", (long)getpid());
    ASSERT(mkdtemp(dirbuf) != NULL);
    char name[256], target[256], inside[300];
    path_in(name, sizeof name, dirbuf, "srv");
    path_in(target, sizeof target, dirbuf, "victim");
    struct stat st;
    switch (kind) {
    case 0: /* a dangling symlink: binding through it would create the target */
        ASSERT_EQ(symlink(target, name), 0);
        break;
    case 1: /* a symlink to a stale socket file elsewhere: reclaiming must not follow it */
        close(raw_bind(target, 0));
        ASSERT_EQ(symlink(target, name), 0);
        break;
    case 2: /* a directory, of another user where we can arrange it */
        ASSERT_EQ(mkdir(name, 0777), 0);
        if (geteuid() == 0) ASSERT_EQ(chown(name, NOBODY, NOBODY), 0);
        break;
    }
    lsock_server *srv = lsock_server_new(NULL);
    ASSERT(lsock_server_set_socket_options(srv, options));
    ASSERT(!lsock_server_listen(srv, name));
    ASSERT_ERR(lsock_server_error(srv), LSOCK_ERR_ADDRESS_IN_USE);
    ASSERT_EQ(lstat(name, &st), 0);
    if (kind == 2) {
        ASSERT(S_ISDIR(st.st_mode));
        snprintf(inside, sizeof inside, "%s", name);
        ASSERT_EQ(count_entries(inside), 0);
    } else {
        ASSERT(S_ISLNK(st.st_mode));
    }
    if (kind == 0) ASSERT(lstat(target, &st) != 0);
    if (kind == 1) ASSERT(lstat(target, &st) == 0 && S_ISSOCK(st.st_mode));
    ASSERT_EQ(count_entries(dirbuf), kind == 1 ? 2 : 1);
    lsock_server_free(srv);
    remove_tree(dirbuf);
}

TEST(listen_refuses_a_planted_symlink_or_directory_at_the_name)
{
    static const unsigned opts[] = {0, LSOCK_RECLAIM_STALE, LSOCK_USER_ACCESS,
                                    LSOCK_USER_ACCESS | LSOCK_RECLAIM_STALE};
    for (int kind = 0; kind < 3; kind++)
        for (size_t i = 0; i < sizeof opts / sizeof opts[0]; i++)
            listen_over_planted(kind, opts[i]);
}

/* ---- close removes only its own file --------------------------------------------------- */

static void replace_then_close(int kind)
{
    char dirbuf[128], name[256], other[256];
    snprintf(dirbuf, sizeof dirbuf, "/tmp/lsock-repl-%ld-XXXXXX", (long)getpid());
    ASSERT(mkdtemp(dirbuf) != NULL);
    path_in(name, sizeof name, dirbuf, "srv");
    path_in(other, sizeof other, dirbuf, "other");
    lsock_server *srv = lsock_server_new(NULL);
    ASSERT(lsock_server_listen(srv, name));
    ASSERT_EQ(unlink(name), 0);
    int fd = -1;
    switch (kind) {
    case 0: /* a regular file */
        fd = open(name, O_CREAT | O_EXCL | O_WRONLY, 0600);
        ASSERT(fd >= 0);
        close(fd);
        fd = -1;
        break;
    case 1: /* a symlink */
        ASSERT_EQ(symlink(other, name), 0);
        break;
    case 2: /* another program's socket, not lsock's */
        fd = raw_bind(name, 4);
        break;
    case 3: /* a rename of another file over it (a new inode at the same name) */
    {
        int f = open(other, O_CREAT | O_EXCL | O_WRONLY, 0600);
        ASSERT(f >= 0);
        close(f);
        ASSERT_EQ(rename(other, name), 0);
        break;
    }
    }
    struct stat before, after;
    ASSERT_EQ(lstat(name, &before), 0);
    lsock_server_close(srv);
    ASSERT(!lsock_server_is_listening(srv));
    ASSERT_EQ(lstat(name, &after), 0);
    ASSERT_EQ(after.st_ino, before.st_ino);
    ASSERT_EQ(after.st_mode, before.st_mode);
    if (kind == 2) ASSERT_EQ(raw_connect(name), 0); /* the other program still serves */
    lsock_server_free(srv);
    ASSERT_EQ(lstat(name, &after), 0);
    if (fd >= 0) close(fd);
    remove_tree(dirbuf);
}

TEST(server_close_keeps_a_regular_file_that_replaced_its_socket)
{
    replace_then_close(0);
}

TEST(server_close_keeps_a_symlink_that_replaced_its_socket)
{
    replace_then_close(1);
}

TEST(server_close_keeps_a_foreign_socket_that_replaced_its_socket)
{
    replace_then_close(2);
}

TEST(server_close_keeps_a_file_renamed_over_its_socket)
{
    replace_then_close(3);
}

/* ---- peer credentials across users ----------------------------------------------------- */

TEST(peer_credentials_name_another_user_across_fork)
{
    need_root();
    const char *dir = make_shared_dir();
    char name[256];
    path_in(name, sizeof name, dir, "cred");
    lsock_loop *loop = lsock_loop_new();
    lsock_server *srv = lsock_server_new(loop);
    ASSERT(lsock_server_set_socket_options(srv, LSOCK_WORLD_ACCESS));
    ASSERT(lsock_server_listen(srv, name));
    pid_t parent = getpid();
    pid_t pid = fork_linked_child();
    if (pid == 0) {
        become_nobody();
        lsock_socket *c = lsock_socket_new(NULL);
        if (!lsock_socket_connect(c, name, LSOCK_READ_WRITE)) _exit(2);
        lsock_credentials cr;
        if (!lsock_socket_peer_credentials(c, &cr)) _exit(3);
        if (cr.pid != parent || cr.uid != 0) _exit(4); /* the server's side, seen by the client */
        lsock_socket_wait_for_disconnected(c, 5000);
        lsock_socket_free(c);
        _exit(0);
    }
    uint64_t deadline = test_now_ms() + 5000;
    while (!lsock_server_has_pending_connections(srv)) {
        ASSERT(test_now_ms() < deadline);
        ASSERT(lsock_server_wait_for_new_connection(srv, 100, NULL) ||
               lsock_server_error(srv) == LSOCK_ERR_SOCKET_TIMEOUT);
    }
    lsock_socket *peer = lsock_server_next_pending_connection(srv);
    lsock_credentials cr;
    memset(&cr, 0, sizeof cr);
    ASSERT(lsock_socket_peer_credentials(peer, &cr));
    ASSERT_EQ(cr.pid, pid);
    ASSERT_EQ(cr.uid, NOBODY);
    ASSERT_EQ(cr.gid, NOBODY);
    lsock_socket_free(peer);
    int st = wait_child(pid);
    ASSERT(WIFEXITED(st));
    ASSERT_EQ(WEXITSTATUS(st), 0);
    lsock_server_free(srv);
    ASSERT(lsock_loop_free(loop));
    remove_tree(dir);
}

/* ---- long paths ------------------------------------------------------------------------ */

/* A path longer than sun_path whose last component does not fit after "/proc/self/fd/N/":
 * no client can reach it, so listen must fail naming the limit, with access options too
 * (the options bind under a short private name first; the public name must still be
 * reachable). Other long-path cases: test_unix.c long_path_*. */
TEST(long_path_with_access_options_fails_listen_when_clients_could_not_connect)
{
    char dir[128], path[400];
    snprintf(dir, sizeof dir, "/tmp/lsock-longsec-%ld-XXXXXX", (long)getpid());
    ASSERT(mkdtemp(dir) != NULL);
    int n = snprintf(path, sizeof path, "%s/", dir);
    while (n < 140)
        path[n++] = 'a';
    path[n] = '\0';
    static const unsigned opts[] = {0, LSOCK_USER_ACCESS, LSOCK_WORLD_ACCESS};
    for (size_t i = 0; i < sizeof opts / sizeof opts[0]; i++) {
        lsock_server *srv = lsock_server_new(NULL);
        ASSERT(lsock_server_set_socket_options(srv, opts[i]));
        bool ok = lsock_server_listen(srv, path);
        lsock_socket *c = lsock_socket_new(NULL);
        bool reachable = lsock_socket_connect(c, path, LSOCK_READ_WRITE);
        fprintf(stderr, "options %u: listen %s, connect %s (%s)\n", opts[i], ok ? "ok" : "failed",
                reachable ? "ok" : "failed", lsock_socket_error_string(c));
        ASSERT(!reachable);
        ASSERT_ERR(lsock_socket_error(c), LSOCK_ERR_SERVER_NOT_FOUND);
        lsock_socket_free(c);
        if (ok) FAIL_("options %u: listen succeeded on a name no client can connect to", opts[i]);
        ASSERT_ERR(lsock_server_error(srv), LSOCK_ERR_SERVER_NOT_FOUND);
        ASSERT(strstr(lsock_server_error_string(srv), "limit is 107") != NULL);
        lsock_server_free(srv);
        ASSERT_EQ(count_entries(dir), 0);
    }
    remove_tree(dir);
}

/* ---- the file replaced right after it appeared ----------------------------------------- */

static void replace_at_publication(const char *path)
{
    lsock__test_hook_published = NULL;
    ASSERT_EQ(unlink(path), 0);
    int fd = open(path, O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, 0600);
    ASSERT(fd >= 0);
    close(fd);
}

static void replaced_right_after_listen(unsigned options)
{
    char dirbuf[128], name[256];
    snprintf(dirbuf, sizeof dirbuf, "/tmp/lsock-pub-%ld-XXXXXX", (long)getpid());
    ASSERT(mkdtemp(dirbuf) != NULL);
    path_in(name, sizeof name, dirbuf, "srv");
    lsock__test_hook_published = replace_at_publication;
    lsock_server *srv = lsock_server_new(NULL);
    ASSERT(lsock_server_set_socket_options(srv, options));
    ASSERT(lsock_server_listen(srv, name));
    ASSERT(lsock__test_hook_published == NULL); /* the hook ran */
    struct stat before, after;
    ASSERT_EQ(lstat(name, &before), 0);
    ASSERT(S_ISREG(before.st_mode));
    lsock_server_close(srv);
    ASSERT_EQ(lstat(name, &after), 0);
    ASSERT_EQ(after.st_ino, before.st_ino);
    lsock_server_free(srv);
    ASSERT_EQ(lstat(name, &after), 0);
    remove_tree(dirbuf);
}

TEST(server_close_keeps_a_file_that_replaced_its_socket_right_after_it_appeared)
{
    replaced_right_after_listen(0);
    replaced_right_after_listen(LSOCK_USER_ACCESS);
}

/* ---- reclaiming only the user's own stale files ---------------------------------------- */

TEST(reclaim_stale_leaves_a_stale_socket_of_another_user_alone)
{
    need_root();
    const char *dir = make_shared_dir();
    char name[256];
    path_in(name, sizeof name, dir, "srv");
    close(raw_bind(name, 0)); /* stale: nobody listens */
    ASSERT_EQ(lchown(name, NOBODY, NOBODY), 0);
    struct stat before, after;
    ASSERT_EQ(lstat(name, &before), 0);
    lsock_server *srv = lsock_server_new(NULL);
    ASSERT(lsock_server_set_socket_options(srv, LSOCK_RECLAIM_STALE));
    ASSERT(!lsock_server_listen(srv, name));
    ASSERT_ERR(lsock_server_error(srv), LSOCK_ERR_ADDRESS_IN_USE);
    printf("%s\n", lsock_server_error_string(srv));
    ASSERT(strstr(lsock_server_error_string(srv), "another user") != NULL);
    ASSERT_EQ(lstat(name, &after), 0);
    ASSERT(S_ISSOCK(after.st_mode));
    ASSERT_EQ(after.st_ino, before.st_ino);
    ASSERT_EQ(after.st_uid, NOBODY);
    /* Its own user's stale file it does reclaim. */
    ASSERT_EQ(lchown(name, geteuid(), getegid()), 0);
    ASSERT(lsock_server_listen(srv, name));
    lsock_server_free(srv);
    ASSERT_EQ(count_entries(dir), 0);
    remove_tree(dir);
}

/* ---- access options on abstract servers ------------------------------------------------ */

struct admitted {
    int calls;
    lsock_socket *conn;
    lsock_credentials cr;
};

static void admit(lsock_server *srv, void *u)
{
    struct admitted *a = u;
    a->calls++;
    lsock_socket *s = lsock_server_next_pending_connection(srv);
    ASSERT(s != NULL);
    ASSERT(lsock_socket_peer_credentials(s, &a->cr));
    ASSERT_EQ(lsock_socket_write(s, "ok", 2), 2);
    if (a->conn) lsock_socket_free(a->conn);
    a->conn = s;
}

static void no_op(lsock_timer *t, void *u)
{
    (void)t;
    (void)u;
}

enum { CHILD_ADMITTED = 10, CHILD_REFUSED = 20 };

/* A client process as uid/gid connects to an abstract server with options; the server (on a
 * loop) answers "ok" to whom it admits. The child exits CHILD_ADMITTED when it reads the
 * answer, CHILD_REFUSED when the server closes the connection unanswered. */
static void abstract_access_case(unsigned options, uid_t uid, gid_t gid, bool want_admitted)
{
#ifndef __linux__
    SKIP("the abstract namespace is Linux-only");
#endif
    if ((uid != geteuid() || gid != getegid()) && geteuid() != 0)
        SKIP("needs root to act as another user (uid %d)", (int)uid);
    const char *name = test_name("absacc");
    lsock_loop *loop = lsock_loop_new();
    lsock_server *srv = lsock_server_new(loop);
    struct admitted a;
    memset(&a, 0, sizeof a);
    lsock_server_set_new_connection_callback(srv, admit, &a);
    ASSERT(lsock_server_set_socket_options(srv, options | LSOCK_ABSTRACT_NAMESPACE));
    ASSERT(lsock_server_listen(srv, name));
    lsock_timer *tick = lsock_timer_new(loop, no_op, NULL);
    ASSERT(lsock_timer_start(tick, 10, 10)); /* RUN_ONCE returns at least every 10 ms */
    pid_t pid = fork_linked_child();
    if (pid == 0) {
        alarm(30);
        if (uid != geteuid() || gid != getegid()) {
            if (setgroups(0, NULL) != 0 || setgid(gid) != 0 || setuid(uid) != 0) _exit(98);
        }
        lsock_socket *c = lsock_socket_new(NULL);
        if (!lsock_socket_set_options(c, LSOCK_ABSTRACT_NAMESPACE)) _exit(2);
        if (!lsock_socket_connect(c, name, LSOCK_READ_WRITE)) _exit(3);
        char buf[8];
        if (lsock_socket_wait_for_ready_read(c, 20000))
            _exit(lsock_socket_read(c, buf, sizeof buf) == 2 && memcmp(buf, "ok", 2) == 0
                      ? CHILD_ADMITTED
                      : 4);
        _exit(lsock_socket_error(c) == LSOCK_ERR_PEER_CLOSED ? CHILD_REFUSED : 5);
    }
    uint64_t deadline = test_now_ms() + 25000;
    int status = 0;
    while (waitpid(pid, &status, WNOHANG) == 0) {
        ASSERT(test_now_ms() < deadline);
        lsock_loop_run(loop, LSOCK_RUN_ONCE);
    }
    ASSERT(WIFEXITED(status));
    printf("options %u, peer uid %d gid %d: child exit %d, %d admitted\n", options, (int)uid,
           (int)gid, WEXITSTATUS(status), a.calls);
    if (want_admitted) {
        ASSERT_EQ(WEXITSTATUS(status), CHILD_ADMITTED);
        ASSERT_EQ(a.calls, 1);
        ASSERT_EQ(a.cr.uid, uid);
        ASSERT_EQ(a.cr.gid, gid);
    } else {
        ASSERT_EQ(WEXITSTATUS(status), CHILD_REFUSED);
        ASSERT_EQ(a.calls, 0);
        ASSERT(!lsock_server_has_pending_connections(srv));
    }
    if (a.conn) lsock_socket_free(a.conn);
    lsock_timer_free(tick);
    lsock_server_free(srv);
    ASSERT(lsock_loop_free(loop));
}

TEST(abstract_server_with_user_access_refuses_another_user)
{
    abstract_access_case(LSOCK_USER_ACCESS, NOBODY, NOBODY, false);
}

TEST(abstract_server_with_user_access_admits_the_same_user)
{
    abstract_access_case(LSOCK_USER_ACCESS, geteuid(), getegid(), true);
}

TEST(abstract_server_with_world_access_admits_another_user)
{
    abstract_access_case(LSOCK_WORLD_ACCESS, NOBODY, NOBODY, true);
}

TEST(abstract_server_with_group_access_admits_its_group_and_refuses_another)
{
    abstract_access_case(LSOCK_GROUP_ACCESS, NOBODY, getegid(), true);
    abstract_access_case(LSOCK_GROUP_ACCESS, NOBODY, NOBODY, false);
}

TEST(abstract_server_without_access_options_admits_another_user)
{
    abstract_access_case(0, NOBODY, NOBODY, true);
}

TEST_MAIN()
