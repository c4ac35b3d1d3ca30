/* Name resolution, as Qt resolves names: absolute paths as is, others under TMPDIR; on
 * Windows every name under \\.\pipe\, whatever TMPDIR says. */
#include "test.h"
#include "internal.h"

#include <stdlib.h>

/* lsock__name_resolve() that must succeed. */
static char *resolve(const char *name, unsigned options)
{
    char *out = NULL, why[320];
    int rc = lsock__name_resolve(name, options, &out, why, sizeof why);
    if (rc < 0) FAIL_("resolving %s: %d %s", name, rc, why);
    return out;
}

static void check(const char *tmpdir, const char *name, const char *want)
{
#ifdef _WIN32
    /* Windows: a name is a pipe name, \\.\pipe\NAME, and TMPDIR plays no part (as in Qt): the
     * same name resolves there whatever TMPDIR says. */
    ASSERT_EQ(_putenv_s("TMPDIR", tmpdir ? tmpdir : ""), 0);
    char pipe[512];
    snprintf(pipe, sizeof pipe, "\\\\.\\pipe\\%s", name);
    want = pipe;
#else
    if (tmpdir)
        setenv("TMPDIR", tmpdir, 1);
    else
        unsetenv("TMPDIR");
#endif
    char *got = resolve(name, 0);
    ASSERT_STR_EQ(got, want);
    free(got);
}

TEST(name_absolute_path_is_used_as_is)
{
#ifdef _WIN32
    SKIP("Windows has no absolute socket paths: \"/x\" is the pipe \\\\.\\pipe\\/x (test_win.c)");
#endif
    check("/var/tmp", "/run/user/1000/app.sock", "/run/user/1000/app.sock");
}

TEST(name_bare_goes_to_tmpdir)
{
    check("/var/tmp", "app", "/var/tmp/app");
}

TEST(name_bare_goes_to_tmp_without_tmpdir)
{
    check(NULL, "app", "/tmp/app");
    check("", "app", "/tmp/app");
}

TEST(name_tmpdir_trailing_slash_not_doubled)
{
    check("/var/tmp/", "app", "/var/tmp/app");
    check("/var/tmp//", "app", "/var/tmp/app");
    check("/", "app", "/app");
}

TEST(name_relative_with_directories_stays_under_tmpdir)
{
    check("/tmp", "sub/app", "/tmp/sub/app");
}

TEST(name_full_server_name_of_socket_and_server_agree)
{
    const char *name = test_name("fullname");
    lsock_server *srv = lsock_server_new(NULL);
    ASSERT(lsock_server_listen(srv, name));
    char *want = resolve(name, 0);
    ASSERT_STR_EQ(lsock_server_full_server_name(srv), want);
    ASSERT_STR_EQ(lsock_server_name(srv), name);
    lsock_socket *s = lsock_socket_new(NULL);
    ASSERT(lsock_socket_connect(s, name, LSOCK_READ_WRITE));
    ASSERT_STR_EQ(lsock_socket_full_server_name(s), want);
    ASSERT_STR_EQ(lsock_socket_server_name(s), name);
    lsock_socket_free(s);
    lsock_server_free(srv);
    free(want);
}

TEST(name_max_is_sun_path_minus_nul)
{
#ifdef _WIN32
    ASSERT_EQ(lsock__plat_name_max(), 256); /* a pipe name's limit */
#else
    ASSERT_EQ(lsock__plat_name_max(), 107);
#endif
}

TEST_MAIN()
