/* Error names and messages: one table, every value covered, unknown values handled. */
#include "test.h"
#include "lsock.h"

#include "internal.h" /* the error text of a call (lsock__err_set) */

TEST(error_names_match_enum)
{
    ASSERT_STR_EQ(lsock_error_name(LSOCK_ERR_NONE), "NONE");
    ASSERT_STR_EQ(lsock_error_name(LSOCK_ERR_CONNECTION_REFUSED), "CONNECTION_REFUSED");
    ASSERT_STR_EQ(lsock_error_name(LSOCK_ERR_PEER_CLOSED), "PEER_CLOSED");
    ASSERT_STR_EQ(lsock_error_name(LSOCK_ERR_SERVER_NOT_FOUND), "SERVER_NOT_FOUND");
    ASSERT_STR_EQ(lsock_error_name(LSOCK_ERR_SOCKET_ACCESS), "SOCKET_ACCESS");
    ASSERT_STR_EQ(lsock_error_name(LSOCK_ERR_SOCKET_RESOURCE), "SOCKET_RESOURCE");
    ASSERT_STR_EQ(lsock_error_name(LSOCK_ERR_SOCKET_TIMEOUT), "SOCKET_TIMEOUT");
    ASSERT_STR_EQ(lsock_error_name(LSOCK_ERR_DATAGRAM_TOO_LARGE), "DATAGRAM_TOO_LARGE");
    ASSERT_STR_EQ(lsock_error_name(LSOCK_ERR_CONNECTION), "CONNECTION");
    ASSERT_STR_EQ(lsock_error_name(LSOCK_ERR_UNSUPPORTED_OPERATION), "UNSUPPORTED_OPERATION");
    ASSERT_STR_EQ(lsock_error_name(LSOCK_ERR_UNKNOWN), "UNKNOWN");
    ASSERT_STR_EQ(lsock_error_name(LSOCK_ERR_OPERATION), "OPERATION");
    ASSERT_STR_EQ(lsock_error_name(LSOCK_ERR_ADDRESS_IN_USE), "ADDRESS_IN_USE");
    ASSERT_STR_EQ(lsock_error_name(LSOCK_ERR_INVALID_ARGUMENT), "INVALID_ARGUMENT");
}

TEST(error_none_is_zero)
{
    ASSERT_EQ(LSOCK_ERR_NONE, 0);
}

TEST(error_messages_are_distinct_and_nonempty)
{
    for (int i = 0; i < LSOCK_ERR_COUNT_; i++) {
        const char *m = lsock_strerror((lsock_error)i);
        ASSERT(m && *m);
        for (int j = 0; j < i; j++)
            ASSERT(strcmp(m, lsock_strerror((lsock_error)j)) != 0);
    }
    ASSERT_STR_EQ(lsock_strerror(LSOCK_ERR_CONNECTION_REFUSED), "Connection refused");
}

TEST(error_unknown_value_is_named_invalid)
{
    ASSERT_STR_EQ(lsock_error_name((lsock_error)999), "INVALID");
    ASSERT_STR_EQ(lsock_error_name((lsock_error)-1), "INVALID");
    ASSERT_STR_EQ(lsock_strerror((lsock_error)999), "Invalid error code");
}

TEST(version_matches_macros)
{
    char want[32];
    snprintf(want, sizeof want, "%d.%d.%d", LSOCK_VERSION_MAJOR, LSOCK_VERSION_MINOR,
             LSOCK_VERSION_PATCH);
    ASSERT_STR_EQ(lsock_version(), want);
}

TEST(error_text_of_a_name_too_long_keeps_the_whole_explanation)
{
    char name[400];
#ifdef _WIN32
    memset(name, 'n', 300);
    name[300] = '\0';
#else
    memcpy(name, "/tmp/", 5);
    memset(name + 5, 'n', 300);
    name[305] = '\0';
#endif
    lsock_server *srv = lsock_server_new(NULL);
    ASSERT(!lsock_server_listen(srv, name));
    ASSERT_ERR(lsock_server_error(srv), LSOCK_ERR_SERVER_NOT_FOUND);
    const char *text = lsock_server_error_string(srv);
    const char *why = lsock__plat_name_limit_text();
    const char *at = strstr(text, why);
    ASSERT(at != NULL);
    ASSERT_STR_EQ(at + strlen(why), ")");
    lsock_server_free(srv);
}

TEST(error_text_too_long_is_cut_at_a_word_boundary)
{
    char detail[2000], full[2100];
    size_t n = 0;
    while (n + 12 < sizeof detail)
        n += (size_t)snprintf(detail + n, sizeof detail - n, "word%zu ", n);
    detail[n - 1] = '\0';
    snprintf(full, sizeof full, "lsock_x: %s (%s)", lsock_strerror(LSOCK_ERR_UNKNOWN), detail);
    lsock__errinfo e = {LSOCK_ERR_NONE, NULL};
    lsock__err_set(&e, LSOCK_ERR_UNKNOWN, "lsock_x", detail);
    ASSERT_ERR(e.code, LSOCK_ERR_UNKNOWN);
    size_t len = strlen(e.text);
    ASSERT(len < LSOCK__ERRTEXT_SIZE && len > LSOCK__ERRTEXT_SIZE / 2);
    ASSERT_STR_EQ(e.text + len - 4, "...)");
    size_t kept = len - 4;
    ASSERT(strncmp(e.text, full, kept) == 0); /* a prefix of the whole text... */
    ASSERT(full[kept] == ' ');                /* ...ending where a word ends */
    ASSERT(e.text[kept - 1] != ' ');
    lsock__err_free(&e);
}

TEST(error_text_is_empty_until_the_first_error_and_after_a_clear)
{
    lsock__errinfo e = {LSOCK_ERR_NONE, NULL};
    ASSERT_STR_EQ(lsock__err_text(&e), "");
    lsock__err_set(&e, LSOCK_ERR_SOCKET_TIMEOUT, "lsock_x", NULL);
    ASSERT_STR_EQ(lsock__err_text(&e), "lsock_x: Socket operation timed out");
    lsock__err_clear(&e);
    ASSERT_ERR(e.code, LSOCK_ERR_NONE);
    ASSERT_STR_EQ(lsock__err_text(&e), "");
    lsock__err_free(&e);
    ASSERT_STR_EQ(lsock__err_text(&e), "");
}

TEST_MAIN()
