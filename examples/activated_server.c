/*
 * activated_server: a line echo server for a service manager. It listens on the socket that
 * systemd (or systemd-socket-activate) passed, and on its own when started by hand; it admits
 * only clients of its own user (LSOCK_SAME_USER_ONLY: others are closed before they are
 * queued), and resolves a bare name in the user's private directory (LSOCK_PER_USER).
 *
 *   activated_server [NAME [CLIENTS]]
 *
 * NAME defaults to "lsock-activated" (with LSOCK_PER_USER: $XDG_RUNTIME_DIR/lsock-activated,
 * the path a unit's ListenStream=%t/lsock-activated gives; or the name of the socket in the
 * unit's FileDescriptorName=). With CLIENTS it exits after that many clients have come and
 * gone, else it runs until stopped. The units are in docs/security.md.
 */
#include <lsock.h>

#include <stdio.h>
#include <stdlib.h>

struct server {
    lsock_loop *loop;
    int max_clients, ended;
};

static void on_ready_read(lsock_socket *s, void *userdata)
{
    char line[4096];
    int64_t n;
    (void)userdata;
    while ((lsock_socket_can_read_line(s) ||
            lsock_socket_bytes_available(s) >= (int64_t)sizeof line - 1) &&
           (n = lsock_socket_read_line(s, line, sizeof line)) > 0)
        lsock_socket_write(s, line, n);
}

static void on_disconnected(lsock_socket *s, void *userdata)
{
    struct server *server = userdata;
    lsock_socket_free(s);
    if (server->max_clients > 0 && ++server->ended >= server->max_clients)
        lsock_loop_stop(server->loop);
}

static void on_new_connection(lsock_server *srv, void *userdata)
{
    static const lsock_socket_callbacks cb = {.ready_read = on_ready_read,
                                              .disconnected = on_disconnected};
    lsock_socket *s;
    while ((s = lsock_server_next_pending_connection(srv)) != NULL) {
        lsock_socket_set_callbacks(s, &cb, userdata);
        if (lsock_socket_bytes_available(s) > 0) on_ready_read(s, userdata);
    }
}

int main(int argc, char **argv)
{
    const char *name = argc > 1 ? argv[1] : "lsock-activated";
    struct server server = {lsock_loop_new(), argc > 2 ? atoi(argv[2]) : 0, 0};
    lsock_server *srv = lsock_server_new(server.loop);
    if (!server.loop || !srv) {
        fprintf(stderr, "out of memory\n");
        return 1;
    }
    lsock_server_set_new_connection_callback(srv, on_new_connection, &server);
    lsock_server_set_socket_options(srv, LSOCK_SAME_USER_ONLY | LSOCK_PER_USER | LSOCK_USER_ACCESS);
    if (!lsock_server_listen_activated(srv, name)) {
        fprintf(stderr, "%s\n", lsock_server_error_string(srv));
        return 1;
    }
    printf("%s %s\n", lsock_server_is_activated(srv) ? "activated on" : "listening on",
           lsock_server_full_server_name(srv));
    fflush(stdout);
    lsock_loop_run(server.loop, LSOCK_RUN_DEFAULT);
    lsock_server_free(srv);
    lsock_loop_free(server.loop);
    return 0;
}
