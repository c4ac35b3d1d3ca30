/*
 * Bad input: NULL objects, negative sizes, NULL buffers, unknown flags and modes, names too
 * long, invalid descriptors, calls in the wrong state; and that a failed call leaves the
 * object usable.
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

/* ---- NULL objects ---------------------------------------------------------------------- */

TEST(null_socket_calls_fail_without_crashing)
{
    char buf[8];
    size_t len = 5;
    lsock_credentials cr;
    bool open0 = raw_is_open(0);
    lsock_socket_free(NULL);
    lsock_socket_set_callbacks(NULL, NULL, NULL);
    ASSERT(lsock_socket_userdata(NULL) == NULL);
    ASSERT(lsock_socket_loop(NULL) == NULL);
    ASSERT(!lsock_socket_set_server_name(NULL, "x"));
    ASSERT_STR_EQ(lsock_socket_server_name(NULL), "");
    ASSERT_STR_EQ(lsock_socket_full_server_name(NULL), "");
    ASSERT(!lsock_socket_set_options(NULL, 0));
    ASSERT_EQ(lsock_socket_options(NULL), 0);
    ASSERT(!lsock_socket_set_connect_timeout(NULL, 10));
    ASSERT(!lsock_socket_connect(NULL, "x", LSOCK_READ_WRITE));
    lsock_socket_disconnect(NULL);
    lsock_socket_abort(NULL);
    lsock_socket_close(NULL);
    ASSERT_EQ(lsock_socket_state(NULL), LSOCK_UNCONNECTED);
    ASSERT_ERR(lsock_socket_error(NULL), LSOCK_ERR_NONE);
    ASSERT_STR_EQ(lsock_socket_error_string(NULL), "");
    ASSERT(!lsock_socket_is_valid(NULL));
    ASSERT_EQ(lsock_socket_open_mode(NULL), 0);
    ASSERT_EQ(lsock_socket_read(NULL, buf, sizeof buf), -1);
    ASSERT_EQ(lsock_socket_read_line(NULL, buf, sizeof buf), -1);
    ASSERT(lsock_socket_read_all(NULL, &len) == NULL);
    ASSERT(lsock_socket_read_all(NULL, NULL) == NULL);
    ASSERT_EQ(lsock_socket_peek(NULL, buf, sizeof buf), -1);
    ASSERT_EQ(lsock_socket_skip(NULL, 4), -1);
    ASSERT_EQ(lsock_socket_write(NULL, "x", 1), -1);
    ASSERT(!lsock_socket_can_read_line(NULL));
    ASSERT_EQ(lsock_socket_bytes_available(NULL), 0);
    ASSERT_EQ(lsock_socket_bytes_to_write(NULL), 0);
    ASSERT(lsock_socket_at_end(NULL));
    ASSERT(!lsock_socket_flush(NULL));
    ASSERT_EQ(lsock_socket_read_buffer_size(NULL), 0);
    ASSERT(!lsock_socket_set_read_buffer_size(NULL, 10));
    ASSERT(!lsock_socket_wait_for_connected(NULL, 10));
    ASSERT(!lsock_socket_wait_for_disconnected(NULL, 10));
    ASSERT(!lsock_socket_wait_for_ready_read(NULL, 10));
    ASSERT(!lsock_socket_wait_for_bytes_written(NULL, 10));
    ASSERT(!lsock_socket_set_descriptor(NULL, 0, LSOCK_CONNECTED, LSOCK_READ_WRITE));
    ASSERT_EQ(lsock_socket_descriptor(NULL), -1);
    ASSERT(!lsock_socket_peer_credentials(NULL, &cr));
    /* descriptor 0 was not taken by the NULL call */
    ASSERT_EQ(raw_is_open(0), open0);
}

TEST(null_server_calls_fail_without_crashing)
{
    bool timed_out = true;
    lsock_server_free(NULL);
    lsock_server_set_new_connection_callback(NULL, NULL, NULL);
    ASSERT(lsock_server_userdata(NULL) == NULL);
    ASSERT(!lsock_server_set_socket_options(NULL, 0));
    ASSERT_EQ(lsock_server_socket_options(NULL), 0);
    ASSERT(!lsock_server_set_listen_backlog_size(NULL, 5));
    ASSERT(!lsock_server_set_max_pending_connections(NULL, 5));
    ASSERT(!lsock_server_listen(NULL, "x"));
    ASSERT(!lsock_server_listen_descriptor(NULL, 3));
    ASSERT(!lsock_server_is_listening(NULL));
    lsock_server_close(NULL);
    ASSERT(!lsock_server_has_pending_connections(NULL));
    ASSERT(lsock_server_next_pending_connection(NULL) == NULL);
    ASSERT(!lsock_server_wait_for_new_connection(NULL, 10, &timed_out));
    ASSERT(!timed_out);
    ASSERT(!lsock_server_wait_for_new_connection(NULL, 10, NULL));
    ASSERT_STR_EQ(lsock_server_name(NULL), "");
    ASSERT_STR_EQ(lsock_server_full_server_name(NULL), "");
    ASSERT_EQ(lsock_server_descriptor(NULL), -1);
    ASSERT_ERR(lsock_server_error(NULL), LSOCK_ERR_NONE);
    ASSERT_STR_EQ(lsock_server_error_string(NULL), "");
    ASSERT(!lsock_remove_server(NULL));
    ASSERT(!lsock_remove_server(""));
}

TEST(null_loop_and_timer_calls_fail_without_crashing)
{
    ASSERT(lsock_loop_free(NULL));
    ASSERT_EQ(lsock_loop_run(NULL, LSOCK_RUN_NOWAIT), -1);
    lsock_loop_stop(NULL);
    lsock_loop_wakeup(NULL);
    ASSERT_EQ(lsock_loop_backend_fd(NULL), -1);
    ASSERT(lsock_timer_new(NULL, NULL, NULL) == NULL);
    ASSERT(!lsock_timer_start(NULL, 1, 1));
    lsock_timer_stop(NULL);
    ASSERT(!lsock_timer_is_active(NULL));
    lsock_timer_free(NULL);
}

TEST(unknown_error_codes_have_invalid_names)
{
    ASSERT_STR_EQ(lsock_error_name((lsock_error)-1), "INVALID");
    ASSERT_STR_EQ(lsock_error_name(LSOCK_ERR_COUNT_), "INVALID");
    ASSERT_STR_EQ(lsock_strerror((lsock_error)9999), "Invalid error code");
    ASSERT_STR_EQ(lsock_error_name(LSOCK_ERR_INVALID_ARGUMENT), "INVALID_ARGUMENT");
}

TEST(loop_run_with_bad_mode_fails)
{
    lsock_loop *loop = lsock_loop_new();
    ASSERT(loop != NULL);
    ASSERT_EQ(lsock_loop_run(loop, (lsock_run_mode)42), -1);
    ASSERT(lsock_loop_free(loop));
}

TEST(loop_free_with_objects_left_returns_false)
{
    lsock_loop *loop = lsock_loop_new();
    lsock_socket *s = lsock_socket_new(loop);
    ASSERT(!lsock_loop_free(loop));
    lsock_socket_free(s);
    lsock_server *srv = lsock_server_new(loop);
    ASSERT(!lsock_loop_free(loop));
    lsock_server_free(srv);
    ASSERT(lsock_loop_free(loop));
}

/* ---- bad sizes and buffers ------------------------------------------------------------- */

TEST(negative_sizes_fail_invalid_argument)
{
    lsock_loop *loop = loop_new();
    pair p;
    pair_open(&p, loop);
    ASSERT_EQ(lsock_socket_write(p.peer, "abc", 3), 3);
    RUN_UNTIL(loop, lsock_socket_bytes_available(p.client) == 3, 5000);
    char buf[8];
    ASSERT_EQ(lsock_socket_read(p.client, buf, -1), -1);
    ASSERT_ERR(lsock_socket_error(p.client), LSOCK_ERR_INVALID_ARGUMENT);
    ASSERT(starts_with(lsock_socket_error_string(p.client), "lsock_socket_read: "));
    ASSERT_EQ(lsock_socket_peek(p.client, buf, -5), -1);
    ASSERT_ERR(lsock_socket_error(p.client), LSOCK_ERR_INVALID_ARGUMENT);
    ASSERT(starts_with(lsock_socket_error_string(p.client), "lsock_socket_peek: "));
    ASSERT_EQ(lsock_socket_skip(p.client, -1), -1);
    ASSERT_ERR(lsock_socket_error(p.client), LSOCK_ERR_INVALID_ARGUMENT);
    ASSERT(starts_with(lsock_socket_error_string(p.client), "lsock_socket_skip: "));
    ASSERT_EQ(lsock_socket_read_line(p.client, buf, -1), -1);
    ASSERT_ERR(lsock_socket_error(p.client), LSOCK_ERR_INVALID_ARGUMENT);
    ASSERT_EQ(lsock_socket_write(p.client, "x", -1), -1);
    ASSERT_ERR(lsock_socket_error(p.client), LSOCK_ERR_INVALID_ARGUMENT);
    ASSERT(starts_with(lsock_socket_error_string(p.client), "lsock_socket_write: "));
    ASSERT(!lsock_socket_set_read_buffer_size(p.client, -1));
    ASSERT_ERR(lsock_socket_error(p.client), LSOCK_ERR_INVALID_ARGUMENT);
    ASSERT(starts_with(lsock_socket_error_string(p.client), "lsock_socket_set_read_buffer_size: "));
    ASSERT_EQ(lsock_socket_read_buffer_size(p.client), 0);
    /* nothing was consumed and the socket still works */
    ASSERT_EQ(lsock_socket_bytes_available(p.client), 3);
    ASSERT_EQ(lsock_socket_state(p.client), LSOCK_CONNECTED);
    ASSERT_EQ(lsock_socket_read(p.client, buf, sizeof buf), 3);
    ASSERT_EQ(lsock_socket_bytes_to_write(p.client), 0);
    pair_close(&p);
    loop_free(loop);
}

TEST(null_buffers_with_nonzero_size_fail_invalid_argument)
{
    lsock_loop *loop = loop_new();
    pair p;
    pair_open(&p, loop);
    ASSERT_EQ(lsock_socket_write(p.peer, "abc", 3), 3);
    RUN_UNTIL(loop, lsock_socket_bytes_available(p.client) == 3, 5000);
    ASSERT_EQ(lsock_socket_read(p.client, NULL, 3), -1);
    ASSERT_ERR(lsock_socket_error(p.client), LSOCK_ERR_INVALID_ARGUMENT);
    ASSERT_EQ(lsock_socket_peek(p.client, NULL, 3), -1);
    ASSERT_ERR(lsock_socket_error(p.client), LSOCK_ERR_INVALID_ARGUMENT);
    ASSERT_EQ(lsock_socket_read_line(p.client, NULL, 10), -1);
    ASSERT_ERR(lsock_socket_error(p.client), LSOCK_ERR_INVALID_ARGUMENT);
    ASSERT_EQ(lsock_socket_write(p.client, NULL, 3), -1);
    ASSERT_ERR(lsock_socket_error(p.client), LSOCK_ERR_INVALID_ARGUMENT);
    ASSERT_EQ(lsock_socket_bytes_available(p.client), 3);
    ASSERT_EQ(lsock_socket_state(p.client), LSOCK_CONNECTED);
    lsock_credentials *none = NULL;
    ASSERT(!lsock_socket_peer_credentials(p.client, none));
    ASSERT_ERR(lsock_socket_error(p.client), LSOCK_ERR_INVALID_ARGUMENT);
    pair_close(&p);
    loop_free(loop);
}

TEST(zero_sizes_succeed_with_zero)
{
    lsock_loop *loop = loop_new();
    pair p;
    pair_open(&p, loop);
    char buf[4];
    ASSERT_EQ(lsock_socket_write(p.client, buf, 0), 0);
    ASSERT_EQ(lsock_socket_write(p.client, NULL, 0), 0);
    ASSERT_EQ(lsock_socket_read(p.client, buf, 0), 0);
    ASSERT_EQ(lsock_socket_read(p.client, NULL, 0), 0);
    ASSERT_EQ(lsock_socket_peek(p.client, buf, 0), 0);
    ASSERT_EQ(lsock_socket_skip(p.client, 0), 0);
    ASSERT_ERR(lsock_socket_error(p.client), LSOCK_ERR_NONE);
    size_t len = 7;
    char *all = lsock_socket_read_all(p.client, &len);
    ASSERT(all != NULL);
    ASSERT_EQ(len, 0);
    free(all);
    all = lsock_socket_read_all(p.client, NULL); /* len may be NULL */
    ASSERT(all != NULL);
    free(all);
    pair_close(&p);
    loop_free(loop);
}

TEST(read_line_with_max_below_two_fails_invalid_argument)
{
    lsock_loop *loop = loop_new();
    pair p;
    pair_open(&p, loop);
    ASSERT_EQ(lsock_socket_write(p.peer, "a\n", 2), 2);
    RUN_UNTIL(loop, lsock_socket_bytes_available(p.client) == 2, 5000);
    char buf[4];
    ASSERT_EQ(lsock_socket_read_line(p.client, buf, 1), -1);
    ASSERT_ERR(lsock_socket_error(p.client), LSOCK_ERR_INVALID_ARGUMENT);
    ASSERT(starts_with(lsock_socket_error_string(p.client), "lsock_socket_read_line: "));
    ASSERT_EQ(lsock_socket_read_line(p.client, buf, 0), -1);
    ASSERT_EQ(lsock_socket_bytes_available(p.client), 2);
    pair_close(&p);
    loop_free(loop);
}

TEST(server_setters_reject_values_below_one)
{
    lsock_server *srv = lsock_server_new(NULL);
    ASSERT(!lsock_server_set_listen_backlog_size(srv, 0));
    ASSERT_ERR(lsock_server_error(srv), LSOCK_ERR_INVALID_ARGUMENT);
    ASSERT(starts_with(lsock_server_error_string(srv), "lsock_server_set_listen_backlog_size: "));
    ASSERT(!lsock_server_set_listen_backlog_size(srv, -3));
    ASSERT_EQ(lsock_server_listen_backlog_size(srv), 50);
    ASSERT(!lsock_server_set_max_pending_connections(srv, 0));
    ASSERT_ERR(lsock_server_error(srv), LSOCK_ERR_INVALID_ARGUMENT);
    ASSERT(
        starts_with(lsock_server_error_string(srv), "lsock_server_set_max_pending_connections: "));
    ASSERT(!lsock_server_set_max_pending_connections(srv, -1));
    ASSERT_EQ(lsock_server_max_pending_connections(srv), 30);
    /* still usable */
    ASSERT(lsock_server_listen(srv, test_name("setters")));
    lsock_server_free(srv);
}

TEST(negative_connect_timeout_fails_invalid_argument)
{
    lsock_socket *s = lsock_socket_new(NULL);
    ASSERT(!lsock_socket_set_connect_timeout(s, -5));
    ASSERT_ERR(lsock_socket_error(s), LSOCK_ERR_INVALID_ARGUMENT);
    ASSERT(starts_with(lsock_socket_error_string(s), "lsock_socket_set_connect_timeout: "));
    ASSERT_EQ(lsock_socket_connect_timeout(s), 30000);
    lsock_socket_free(s);
}

/* ---- unknown flags and modes ----------------------------------------------------------- */

TEST(unknown_socket_option_flags_fail_invalid_argument)
{
    lsock_socket *s = lsock_socket_new(NULL);
    ASSERT(!lsock_socket_set_options(s, 0x100));
    ASSERT_ERR(lsock_socket_error(s), LSOCK_ERR_INVALID_ARGUMENT);
    ASSERT(starts_with(lsock_socket_error_string(s), "lsock_socket_set_options: "));
    ASSERT_EQ(lsock_socket_options(s), 0);
    ASSERT(!lsock_socket_set_options(s, LSOCK_ABSTRACT_NAMESPACE | 0x200));
    ASSERT_EQ(lsock_socket_options(s), 0);
    /* access modes are server options */
    ASSERT(!lsock_socket_set_options(s, LSOCK_USER_ACCESS));
    ASSERT_ERR(lsock_socket_error(s), LSOCK_ERR_INVALID_ARGUMENT);
    ASSERT(lsock_socket_set_options(s, LSOCK_ABSTRACT_NAMESPACE));
    ASSERT(lsock_socket_set_options(s, 0));
    lsock_socket_free(s);
}

TEST(unknown_server_option_flags_fail_invalid_argument)
{
    lsock_server *srv = lsock_server_new(NULL);
    ASSERT(!lsock_server_set_socket_options(srv, 256));
    ASSERT_ERR(lsock_server_error(srv), LSOCK_ERR_INVALID_ARGUMENT);
    ASSERT(starts_with(lsock_server_error_string(srv), "lsock_server_set_socket_options: "));
    ASSERT_EQ(lsock_server_socket_options(srv), 0);
    ASSERT(!lsock_server_set_socket_options(srv, 0x80000000u | LSOCK_USER_ACCESS));
    ASSERT_EQ(lsock_server_socket_options(srv), 0);
    ASSERT(lsock_server_set_socket_options(srv, LSOCK_WORLD_ACCESS | LSOCK_RECLAIM_STALE));
    lsock_server_free(srv);
}

TEST(connect_with_bad_open_mode_fails_invalid_argument)
{
    lsock_loop *loop = loop_new();
    const char *name = test_name("mode");
    lsock_server *srv = lsock_server_new(loop);
    ASSERT(lsock_server_listen(srv, name));
    rec r;
    rec_init(&r);
    lsock_socket *s = lsock_socket_new(loop);
    lsock_socket_set_callbacks(s, &rec_cbs, &r);
    ASSERT(!lsock_socket_connect(s, name, 0));
    ASSERT_ERR(lsock_socket_error(s), LSOCK_ERR_INVALID_ARGUMENT);
    ASSERT(starts_with(lsock_socket_error_string(s), "lsock_socket_connect: "));
    ASSERT(!lsock_socket_connect(s, name, 8));
    ASSERT_ERR(lsock_socket_error(s), LSOCK_ERR_INVALID_ARGUMENT);
    ASSERT_STR_EQ(r.log, "");
    ASSERT_EQ(lsock_socket_state(s), LSOCK_UNCONNECTED);
    /* then a good connect works */
    ASSERT(lsock_socket_connect(s, name, LSOCK_READ_WRITE));
    ASSERT_EQ(lsock_socket_state(s), LSOCK_CONNECTED);
    lsock_socket_free(s);
    lsock_server_free(srv);
    loop_free(loop);
}

/* ---- names ----------------------------------------------------------------------------- */

TEST(too_long_names_fail_server_not_found_and_leave_objects_usable)
{
    lsock_loop *loop = loop_new();
    char name[300];
    memset(name, 'L', 250);
    name[250] = '\0';
    lsock_server *srv = lsock_server_new(loop);
    ASSERT(!lsock_server_listen(srv, name));
    ASSERT_ERR(lsock_server_error(srv), LSOCK_ERR_SERVER_NOT_FOUND);
    ASSERT(strstr(lsock_server_error_string(srv), "limit") != NULL);
    lsock_socket *s = lsock_socket_new(loop);
    ASSERT(!lsock_socket_connect(s, name, LSOCK_READ_WRITE));
    ASSERT_ERR(lsock_socket_error(s), LSOCK_ERR_SERVER_NOT_FOUND);
    ASSERT(strstr(lsock_socket_error_string(s), "limit") != NULL);
    const char *good = test_name("good");
    ASSERT(lsock_server_listen(srv, good));
    ASSERT(lsock_socket_connect(s, good, LSOCK_READ_WRITE));
    ASSERT_EQ(lsock_socket_state(s), LSOCK_CONNECTED);
    lsock_socket_free(s);
    lsock_server_free(srv);
    loop_free(loop);
}

TEST(listen_with_null_name_fails_server_not_found)
{
    lsock_server *srv = lsock_server_new(NULL);
    ASSERT(!lsock_server_listen(srv, NULL));
    ASSERT_ERR(lsock_server_error(srv), LSOCK_ERR_SERVER_NOT_FOUND);
    ASSERT(starts_with(lsock_server_error_string(srv), "lsock_server_listen: "));
    lsock_server_free(srv);
}

TEST(names_with_odd_bytes_round_trip)
{
    lsock_loop *loop = loop_new();
    char name[128];
    snprintf(name, sizeof name, "%s with spaces\tand \xc3\xa9", test_name("odd"));
    lsock_server *srv = lsock_server_new(loop);
    ASSERT(lsock_server_listen(srv, name));
    ASSERT_STR_EQ(lsock_server_name(srv), name);
    lsock_socket *s = lsock_socket_new(loop);
    ASSERT(lsock_socket_connect(s, name, LSOCK_READ_WRITE));
    ASSERT_STR_EQ(lsock_socket_server_name(s), name);
    lsock_socket_free(s);
    lsock_server_free(srv);
    loop_free(loop);
}

TEST(failed_connect_clears_the_names)
{
    lsock_socket *s = lsock_socket_new(NULL);
    ASSERT(!lsock_socket_connect(s, test_name("nothere"), LSOCK_READ_WRITE));
    ASSERT_STR_EQ(lsock_socket_server_name(s), "");
    ASSERT_STR_EQ(lsock_socket_full_server_name(s), "");
    ASSERT(!lsock_socket_connect(s, NULL, LSOCK_READ_WRITE));
    ASSERT_ERR(lsock_socket_error(s), LSOCK_ERR_SERVER_NOT_FOUND);
    lsock_socket_free(s);
}

/* ---- invalid descriptors --------------------------------------------------------------- */

TEST(set_descriptor_rejects_non_stream_and_unconnected_sockets)
{
    lsock_socket *s = lsock_socket_new(NULL);
    ASSERT(!lsock_socket_set_descriptor(s, 1 << 30, LSOCK_CONNECTED, LSOCK_READ_WRITE));
    ASSERT_ERR(lsock_socket_error(s), LSOCK_ERR_UNSUPPORTED_OPERATION);
    ASSERT(starts_with(lsock_socket_error_string(s), "lsock_socket_set_descriptor: "));
#ifdef _WIN32
    /* Windows: a pipe instance that no client connected to (a pipe has no datagram kind). */
    raw_server *l = raw_listen(test_name("unconnected"), 1);
    ASSERT(!lsock_socket_set_descriptor(s, raw_server_fd(l), LSOCK_CONNECTED, LSOCK_READ_WRITE));
    ASSERT_ERR(lsock_socket_error(s), LSOCK_ERR_UNSUPPORTED_OPERATION);
    raw_server_close(l);
#else
    int dg = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    ASSERT(dg >= 0);
    ASSERT(!lsock_socket_set_descriptor(s, dg, LSOCK_CONNECTED, LSOCK_READ_WRITE));
    ASSERT_ERR(lsock_socket_error(s), LSOCK_ERR_UNSUPPORTED_OPERATION);
    ASSERT(starts_with(lsock_socket_error_string(s), "lsock_socket_set_descriptor: "));
    close(dg);
    int un = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    ASSERT(un >= 0);
    ASSERT(!lsock_socket_set_descriptor(s, un, LSOCK_CONNECTED, LSOCK_READ_WRITE));
    ASSERT_ERR(lsock_socket_error(s), LSOCK_ERR_UNSUPPORTED_OPERATION);
    close(un);
    int pfd[2];
    ASSERT_EQ(pipe(pfd), 0);
    ASSERT(!lsock_socket_set_descriptor(s, pfd[0], LSOCK_CONNECTED, LSOCK_READ_WRITE));
    ASSERT_ERR(lsock_socket_error(s), LSOCK_ERR_UNSUPPORTED_OPERATION);
    close(pfd[0]);
    close(pfd[1]);
#endif
    ASSERT_EQ(lsock_socket_state(s), LSOCK_UNCONNECTED);
    lsock_socket_free(s);
}

TEST(set_descriptor_with_bad_state_or_mode_fails_invalid_argument)
{
    raw_fd sv[2];
    raw_socketpair(sv);
    lsock_socket *s = lsock_socket_new(NULL);
    ASSERT(!lsock_socket_set_descriptor(s, sv[0], LSOCK_UNCONNECTED, LSOCK_READ_WRITE));
    ASSERT_ERR(lsock_socket_error(s), LSOCK_ERR_INVALID_ARGUMENT);
    ASSERT(!lsock_socket_set_descriptor(s, sv[0], LSOCK_CONNECTING, LSOCK_READ_WRITE));
    ASSERT_ERR(lsock_socket_error(s), LSOCK_ERR_INVALID_ARGUMENT);
    ASSERT(!lsock_socket_set_descriptor(s, sv[0], (lsock_state)77, LSOCK_READ_WRITE));
    ASSERT_ERR(lsock_socket_error(s), LSOCK_ERR_INVALID_ARGUMENT);
    ASSERT(!lsock_socket_set_descriptor(s, sv[0], LSOCK_CONNECTED, 0));
    ASSERT_ERR(lsock_socket_error(s), LSOCK_ERR_INVALID_ARGUMENT);
    ASSERT(!lsock_socket_set_descriptor(s, sv[0], LSOCK_CONNECTED, 12));
    ASSERT_ERR(lsock_socket_error(s), LSOCK_ERR_INVALID_ARGUMENT);
    /* the failures did not take the descriptor: a good call does */
    ASSERT(raw_is_open(sv[0]));
    rec r;
    rec_init(&r);
    lsock_socket_set_callbacks(s, &rec_cbs, &r);
    ASSERT(lsock_socket_set_descriptor(s, sv[0], LSOCK_CONNECTED, LSOCK_READ_WRITE));
    ASSERT_STR_EQ(r.log, "state:CONNECTED");
    ASSERT_EQ(lsock_socket_state(s), LSOCK_CONNECTED);
    lsock_socket_free(s);
    raw_close(sv[1]);
}

TEST(set_descriptor_on_connected_socket_fails_operation)
{
    raw_fd a[2], b[2];
    raw_socketpair(a);
    raw_socketpair(b);
    lsock_socket *s = lsock_socket_new(NULL);
    ASSERT(lsock_socket_set_descriptor(s, a[0], LSOCK_CONNECTED, LSOCK_READ_WRITE));
    ASSERT(!lsock_socket_set_descriptor(s, b[0], LSOCK_CONNECTED, LSOCK_READ_WRITE));
    ASSERT_ERR(lsock_socket_error(s), LSOCK_ERR_OPERATION);
    ASSERT_EQ(lsock_socket_descriptor(s), a[0]);
    lsock_socket_free(s);
    raw_close(a[1]);
    raw_close(b[0]);
    raw_close(b[1]);
}

TEST(listen_descriptor_rejects_closed_unbound_and_unlistening_sockets)
{
    lsock_server *srv = lsock_server_new(NULL);
    int fd = dup(1);
    ASSERT(fd >= 0);
    close(fd);
    ASSERT(!lsock_server_listen_descriptor(srv, fd));
    ASSERT_ERR(lsock_server_error(srv), LSOCK_ERR_UNSUPPORTED_OPERATION);
    ASSERT(starts_with(lsock_server_error_string(srv), "lsock_server_listen_descriptor: "));
    /* a connected stream socket is not a listening one */
    raw_fd sv[2];
    raw_socketpair(sv);
    ASSERT(!lsock_server_listen_descriptor(srv, sv[0]));
    ASSERT_ERR(lsock_server_error(srv), LSOCK_ERR_UNSUPPORTED_OPERATION);
    raw_close(sv[0]);
    raw_close(sv[1]);
#ifndef _WIN32 /* a Unix socket state: a pipe has no bound-but-not-listening stage */
    /* a bound socket that does not listen */
    const char *name = test_name("nolisten");
    int b = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_un a;
    memset(&a, 0, sizeof a);
    a.sun_family = AF_UNIX;
    strcpy(a.sun_path, path_of(name));
    ASSERT_EQ(bind(b, (struct sockaddr *)&a, sizeof a), 0);
    ASSERT(!lsock_server_listen_descriptor(srv, b));
    ASSERT_ERR(lsock_server_error(srv), LSOCK_ERR_UNSUPPORTED_OPERATION);
    close(b);
    unlink(path_of(name));
#endif
    ASSERT(!lsock_server_is_listening(srv));
    /* a regular file */
    char path[256];
    snprintf(path, sizeof path, "/tmp/%s", test_name("file"));
    int f = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    ASSERT(f >= 0);
    ASSERT(!lsock_server_listen_descriptor(srv, f));
    ASSERT_ERR(lsock_server_error(srv), LSOCK_ERR_UNSUPPORTED_OPERATION);
    close(f);
    unlink(path);
    /* still usable */
    ASSERT(lsock_server_listen(srv, test_name("after")));
    lsock_server_free(srv);
}

TEST(listen_descriptor_while_listening_fails_operation)
{
    const char *name = test_name("ldtwice");
    lsock_server *srv = lsock_server_new(NULL);
    ASSERT(lsock_server_listen(srv, test_name("first")));
    raw_server *l = raw_listen(name, 4);
    ASSERT(!lsock_server_listen_descriptor(srv, raw_server_fd(l)));
    ASSERT_ERR(lsock_server_error(srv), LSOCK_ERR_OPERATION);
    raw_server_close(l);
    lsock_server_free(srv);
}

/* ---- calls in the wrong state ---------------------------------------------------------- */

TEST(set_server_name_while_connected_fails_operation)
{
    lsock_loop *loop = loop_new();
    pair p;
    pair_open(&p, loop);
    ASSERT(!lsock_socket_set_server_name(p.client, "other"));
    ASSERT_ERR(lsock_socket_error(p.client), LSOCK_ERR_OPERATION);
    ASSERT(starts_with(lsock_socket_error_string(p.client), "lsock_socket_set_server_name: "));
    ASSERT_STR_EQ(lsock_socket_server_name(p.client), p.name);
    ASSERT_EQ(lsock_socket_state(p.client), LSOCK_CONNECTED);
    pair_close(&p);
    loop_free(loop);
}

TEST(set_options_while_connected_fails_operation)
{
    lsock_loop *loop = loop_new();
    pair p;
    pair_open(&p, loop);
    ASSERT(!lsock_socket_set_options(p.client, LSOCK_ABSTRACT_NAMESPACE));
    ASSERT_ERR(lsock_socket_error(p.client), LSOCK_ERR_OPERATION);
    ASSERT(starts_with(lsock_socket_error_string(p.client), "lsock_socket_set_options: "));
    ASSERT_EQ(lsock_socket_options(p.client), 0);
    pair_close(&p);
    loop_free(loop);
}

TEST(calls_on_unconnected_socket_fail_operation)
{
    lsock_socket *s = lsock_socket_new(NULL);
    char buf[8];
    ASSERT_EQ(lsock_socket_write(s, "x", 1), -1);
    ASSERT_ERR(lsock_socket_error(s), LSOCK_ERR_OPERATION);
    ASSERT(starts_with(lsock_socket_error_string(s), "lsock_socket_write: "));
    ASSERT_EQ(lsock_socket_read(s, buf, sizeof buf), -1);
    ASSERT_ERR(lsock_socket_error(s), LSOCK_ERR_OPERATION);
    ASSERT(starts_with(lsock_socket_error_string(s), "lsock_socket_read: "));
    ASSERT_EQ(lsock_socket_read_line(s, buf, sizeof buf), -1);
    ASSERT_ERR(lsock_socket_error(s), LSOCK_ERR_OPERATION);
    ASSERT_EQ(lsock_socket_peek(s, buf, sizeof buf), -1);
    ASSERT_ERR(lsock_socket_error(s), LSOCK_ERR_OPERATION);
    ASSERT_EQ(lsock_socket_skip(s, 1), -1);
    ASSERT_ERR(lsock_socket_error(s), LSOCK_ERR_OPERATION);
    size_t len = 3;
    ASSERT(lsock_socket_read_all(s, &len) == NULL);
    ASSERT_ERR(lsock_socket_error(s), LSOCK_ERR_OPERATION);
    ASSERT(!lsock_socket_flush(s));
    lsock_credentials cr;
    ASSERT(!lsock_socket_peer_credentials(s, &cr));
    ASSERT_ERR(lsock_socket_error(s), LSOCK_ERR_OPERATION);
    ASSERT_EQ(lsock_socket_descriptor(s), -1);
    lsock_socket_free(s);
}

TEST(write_after_disconnect_fails_operation)
{
    lsock_loop *loop = loop_new();
    pair p;
    pair_open(&p, loop);
    lsock_socket_disconnect(p.client);
    ASSERT_EQ(lsock_socket_write(p.client, "late", 4), -1);
    ASSERT_ERR(lsock_socket_error(p.client), LSOCK_ERR_OPERATION);
    pair_close(&p);
    loop_free(loop);
}

TEST(write_while_closing_fails_operation)
{
    lsock_loop *loop = loop_new();
    rawpair p;
    rawpair_open(&p, loop);
    size_t n = 4u << 20;
    char *data = calloc(1, n);
    ASSERT_EQ(lsock_socket_write(p.s, data, (int64_t)n), (int64_t)n);
    lsock_socket_disconnect(p.s);
    ASSERT_EQ(lsock_socket_state(p.s), LSOCK_CLOSING);
    ASSERT_EQ(lsock_socket_write(p.s, "x", 1), -1);
    ASSERT_ERR(lsock_socket_error(p.s), LSOCK_ERR_OPERATION);
    ASSERT(!lsock_socket_connect(p.s, p.name, LSOCK_READ_WRITE));
    ASSERT_ERR(lsock_socket_error(p.s), LSOCK_ERR_OPERATION);
    ASSERT_EQ(lsock_socket_state(p.s), LSOCK_CLOSING);
    free(data);
    rawpair_close(&p);
    loop_free(loop);
}

TEST(connect_while_connecting_fails_operation)
{
    fullsrv f;
    fullsrv_open(&f, "connecting");
    const char *name = f.name;
    lsock_socket *s = lsock_socket_new(NULL);
    ASSERT(lsock_socket_set_connect_timeout(s, 5000));
    ASSERT(lsock_socket_connect(s, name, LSOCK_READ_WRITE));
    ASSERT_EQ(lsock_socket_state(s), LSOCK_CONNECTING);
    ASSERT(!lsock_socket_connect(s, name, LSOCK_READ_WRITE));
    ASSERT_ERR(lsock_socket_error(s), LSOCK_ERR_OPERATION);
    ASSERT(!lsock_socket_set_server_name(s, "x"));
    ASSERT_ERR(lsock_socket_error(s), LSOCK_ERR_OPERATION);
    ASSERT_EQ(lsock_socket_state(s), LSOCK_CONNECTING);
    ASSERT_EQ(lsock_socket_write(s, "x", 1), -1);
    ASSERT_ERR(lsock_socket_error(s), LSOCK_ERR_OPERATION);
    lsock_socket_abort(s);
    ASSERT_EQ(lsock_socket_state(s), LSOCK_UNCONNECTED);
    lsock_socket_free(s);
    fullsrv_close(&f);
}

TEST(free_while_connecting_on_a_loop_is_clean)
{
    lsock_loop *loop = loop_new();
    fullsrv f;
    fullsrv_open(&f, "freeconnecting");
    const char *name = f.name;
    rec r;
    rec_init(&r);
    lsock_socket *s = lsock_socket_new(loop);
    lsock_socket_set_callbacks(s, &rec_cbs, &r);
    ASSERT(lsock_socket_connect(s, name, LSOCK_READ_WRITE));
    ASSERT_EQ(lsock_socket_state(s), LSOCK_CONNECTING);
    run_for(loop, 30);
    lsock_socket_free(s);
    run_for(loop, 30);
    ASSERT_STR_EQ(r.log, "state:CONNECTING");
    fullsrv_close(&f);
    loop_free(loop);
}

TEST(disconnect_while_connecting_returns_to_unconnected)
{
    lsock_loop *loop = loop_new();
    fullsrv f;
    fullsrv_open(&f, "discconnecting");
    const char *name = f.name;
    rec r;
    rec_init(&r);
    lsock_socket *s = lsock_socket_new(loop);
    lsock_socket_set_callbacks(s, &rec_cbs, &r);
    ASSERT(lsock_socket_connect(s, name, LSOCK_READ_WRITE));
    lsock_socket_disconnect(s);
    ASSERT_EQ(lsock_socket_state(s), LSOCK_UNCONNECTED);
    ASSERT_STR_EQ(r.log, "state:CONNECTING state:UNCONNECTED");
    run_for(loop, 30);
    ASSERT_EQ(r.connected, 0);
    lsock_socket_free(s);
    fullsrv_close(&f);
    loop_free(loop);
}

TEST(server_calls_when_not_listening_are_harmless)
{
    lsock_server *srv = lsock_server_new(NULL);
    lsock_server_close(srv);
    lsock_server_close(srv);
    ASSERT(!lsock_server_has_pending_connections(srv));
    ASSERT(lsock_server_next_pending_connection(srv) == NULL);
    ASSERT_EQ(lsock_server_descriptor(srv), -1);
    ASSERT_ERR(lsock_server_error(srv), LSOCK_ERR_NONE);
    lsock_server_free(srv);
}

TEST(double_disconnect_and_abort_fire_once)
{
    lsock_loop *loop = loop_new();
    pair p;
    pair_open(&p, loop);
    rec r;
    rec_init(&r);
    lsock_socket_set_callbacks(p.client, &rec_cbs, &r);
    lsock_socket_disconnect(p.client);
    lsock_socket_disconnect(p.client);
    lsock_socket_abort(p.client);
    lsock_socket_close(p.client);
    ASSERT_EQ(r.disconnected, 1);
    ASSERT_EQ(r.rcf, 1);
    run_for(loop, 20);
    ASSERT_EQ(r.disconnected, 1);
    pair_close(&p);
    loop_free(loop);
}

TEST(fds_do_not_leak_on_failed_calls)
{
    int before = test_count_fds();
    lsock_loop *loop = loop_new();
    lsock_socket *s = lsock_socket_new(loop);
    lsock_server *srv = lsock_server_new(loop);
    for (int i = 0; i < 20; i++) {
        ASSERT(!lsock_socket_connect(s, test_name("nope"), LSOCK_READ_WRITE));
        ASSERT(!lsock_server_listen(srv, ""));
    }
#ifndef _WIN32 /* a stale name: a named pipe is never stale, it goes with its server */
    const char *name = test_name("stale");
    make_stale(path_of(name));
    for (int i = 0; i < 20; i++) {
        ASSERT(!lsock_socket_connect(s, name, LSOCK_READ_WRITE));
        ASSERT(!lsock_server_listen(srv, name));
    }
    unlink(path_of(name));
#endif
    lsock_socket_free(s);
    lsock_server_free(srv);
    loop_free(loop);
    ASSERT_EQ(test_count_fds(), before);
}

TEST_MAIN()
