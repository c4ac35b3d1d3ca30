/*
 * libFuzzer harness for name resolution (lsock__name_resolve) and for listen / connect with
 * arbitrary names. The input is split at its first NUL byte: TMPDIR candidate, then name.
 *
 * Resolution is checked against the documented rule (a name starting with '/' is used as is;
 * any other is $TMPDIR/name, or /tmp/name, without a doubled '/'). listen() and connect()
 * run with relative names free of ".." only, under a private TMPDIR made at start-up, so the
 * fuzzer never creates files elsewhere; each run must leave that directory empty (no socket
 * file, no private directory), leak no descriptor, and fail only with documented errors.
 */
#include "internal.h"
#include "lsock.h"

#include <fcntl.h>
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond);               \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

static char private_tmp[64];

static int first_free_fd(void)
{
    int fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    CHECK(fd >= 0);
    close(fd);
    return fd;
}

static void cleanup(void)
{
    DIR *d = opendir(private_tmp);
    if (d) {
        struct dirent *e;
        char p[4200];
        while ((e = readdir(d)) != NULL) {
            if (e->d_name[0] == '.' && (!e->d_name[1] || (e->d_name[1] == '.' && !e->d_name[2])))
                continue;
            snprintf(p, sizeof p, "%s/%s", private_tmp, e->d_name);
            unlink(p);
            rmdir(p);
        }
        closedir(d);
    }
    rmdir(private_tmp);
}

static int dir_is_empty(const char *dir)
{
    DIR *d = opendir(dir);
    CHECK(d);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        if (!(e->d_name[0] == '.' && (!e->d_name[1] || (e->d_name[1] == '.' && !e->d_name[2]))))
            n++;
    closedir(d);
    return n == 0;
}

int LLVMFuzzerInitialize(int *argc, char ***argv);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    snprintf(private_tmp, sizeof private_tmp, "/tmp/lsock-fuzz-%ld-XXXXXX", (long)getpid());
    CHECK(mkdtemp(private_tmp) != NULL);
    atexit(cleanup);
    return 0;
}

/* The rule of README "Server names". */
static char *expected_resolution(const char *name, const char *tmpdir)
{
    if (name[0] == '/') return strdup(name);
    const char *dir = tmpdir && *tmpdir ? tmpdir : "/tmp";
    size_t dl = strlen(dir);
    while (dl > 1 && dir[dl - 1] == '/')
        dl--;
    char *out = malloc(dl + strlen(name) + 2);
    CHECK(out);
    memcpy(out, dir, dl);
    size_t k = dl;
    if (out[k - 1] != '/') out[k++] = '/';
    strcpy(out + k, name);
    return out;
}

static void check_resolution(const char *name, const char *tmpdir)
{
    if (tmpdir)
        setenv("TMPDIR", tmpdir, 1);
    else
        unsetenv("TMPDIR");
    char *got = NULL, why[320];
    CHECK(lsock__name_resolve(name, 0, &got, why, sizeof why) == 0);
    char *want = expected_resolution(name, tmpdir);
    CHECK(got && strcmp(got, want) == 0);
    free(got);
    free(want);
    /* An abstract name is the name as given, whatever TMPDIR says (as Qt 6). */
    got = NULL;
    CHECK(lsock__name_resolve(name, LSOCK_ABSTRACT_NAMESPACE, &got, why, sizeof why) == 0);
    CHECK(got && strcmp(got, name) == 0);
    free(got);
}

static int known_listen_error(lsock_error e)
{
    return e == LSOCK_ERR_SERVER_NOT_FOUND || e == LSOCK_ERR_ADDRESS_IN_USE ||
           e == LSOCK_ERR_SOCKET_ACCESS || e == LSOCK_ERR_UNKNOWN;
}

static void listen_and_connect(const char *name, unsigned options)
{
    setenv("TMPDIR", private_tmp, 1);
    lsock_server *srv = lsock_server_new(NULL);
    CHECK(srv);
    CHECK(lsock_server_set_socket_options(srv, options));
    bool ok = lsock_server_listen(srv, name);
    char *full = NULL, why[320];
    CHECK(lsock__name_resolve(name, options & LSOCK_ABSTRACT_NAMESPACE, &full, why, sizeof why) ==
          0);
    CHECK(full);
    if (ok) {
        CHECK(lsock_server_is_listening(srv));
        CHECK(strcmp(lsock_server_name(srv), name) == 0);
        CHECK(strcmp(lsock_server_full_server_name(srv), full) == 0);
        lsock_socket *c = lsock_socket_new(NULL);
        CHECK(c);
        CHECK(lsock_socket_set_options(c, options & LSOCK_ABSTRACT_NAMESPACE));
        CHECK(lsock_socket_connect(c, name, LSOCK_READ_WRITE));
        CHECK(lsock_socket_state(c) == LSOCK_CONNECTED);
        CHECK(strcmp(lsock_socket_full_server_name(c), full) == 0);
        bool timed_out = true;
        CHECK(lsock_server_wait_for_new_connection(srv, 5000, &timed_out));
        lsock_socket *p = lsock_server_next_pending_connection(srv);
        CHECK(p);
        CHECK(lsock_socket_write(c, "x", 1) == 1);
        CHECK(lsock_socket_wait_for_ready_read(p, 5000));
        lsock_socket_free(p);
        lsock_socket_free(c);
    } else {
        lsock_error e = lsock_server_error(srv);
        CHECK(known_listen_error(e));
        CHECK(strncmp(lsock_server_error_string(srv), "lsock_server_listen: ", 21) == 0);
        CHECK(!lsock_server_is_listening(srv));
        if (strlen(full) > lsock__plat_name_max() && e == LSOCK_ERR_SERVER_NOT_FOUND &&
            strchr(name, '/') == NULL)
            CHECK(strstr(lsock_server_error_string(srv), "limit") != NULL);
        /* A client to a name nobody listens on fails cleanly too. */
        lsock_socket *c = lsock_socket_new(NULL);
        CHECK(c);
        CHECK(!lsock_socket_connect(c, name, LSOCK_READ_WRITE) ||
              lsock_socket_state(c) == LSOCK_CONNECTED);
        lsock_socket_free(c);
    }
    lsock_server_free(srv);
    free(full);
    /* Nothing left behind: no socket file, no private directory. */
    CHECK(dir_is_empty(private_tmp));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0) return 0;
    int lowest_free_fd = first_free_fd();
    unsigned options = data[0];
    data++;
    size--;
    char *buf = malloc(size + 1);
    CHECK(buf);
    memcpy(buf, data, size);
    buf[size] = '\0';
    char *tmpdir = NULL, *name = buf;
    char *nul = memchr(buf, '\0', size);
    if (nul && nul < buf + size) {
        tmpdir = buf;
        name = nul + 1;
    }
    /* Resolution of any name under any TMPDIR (unset when the input has none). */
    check_resolution(name, tmpdir);
    check_resolution(name, "");
    /* listen / connect only where it cannot touch anything outside the private directory. */
    if (name[0] != '/' && strstr(name, "..") == NULL && *name) {
        unsigned opts = 0;
        if (options & 1) opts |= LSOCK_USER_ACCESS;
        if (options & 2) opts |= LSOCK_GROUP_ACCESS;
        if (options & 4) opts |= LSOCK_OTHER_ACCESS;
        if (options & 8) opts |= LSOCK_ABSTRACT_NAMESPACE;
        if (options & 16) opts |= LSOCK_RECLAIM_STALE;
        listen_and_connect(name, opts);
    } else if (!*name) {
        setenv("TMPDIR", private_tmp, 1);
        lsock_server *srv = lsock_server_new(NULL);
        CHECK(!lsock_server_listen(srv, name));
        CHECK(lsock_server_error(srv) == LSOCK_ERR_SERVER_NOT_FOUND);
        lsock_server_free(srv);
    }
    free(buf);
    CHECK(first_free_fd() == lowest_free_fd); /* no descriptor leaked */
    return 0;
}
