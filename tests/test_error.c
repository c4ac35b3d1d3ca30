/* Error names and messages: one table, every value covered, unknown values handled. */
#include "test.h"
#include "lsock.h"

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

TEST_MAIN()
