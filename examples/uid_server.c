/*
 * uid_server: an event-driven lsock server that admits only clients running as its own user,
 * decided from the peer credentials the kernel gives (lsock_socket_peer_credentials()), and
 * echoes their lines. Every decision is printed.
 *
 *   uid_server [NAME [CLIENTS]]
 *
 * NAME defaults to "lsock-uid". The socket file is made world-accessible on purpose, so that
 * other users reach the credential check and are turned away by it; a real service would also
 * set LSOCK_USER_ACCESS, so that the file mode keeps them out before they connect. With
 * CLIENTS, the server exits after that many connections (admitted or not) have ended;
 * without it, it runs until SIGINT or SIGTERM. Exit status 0 on a clean exit.
 */
#define _POSIX_C_SOURCE 200809L
#include <lsock.h>

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

struct server {
    lsock_loop *loop;
    int64_t uid;     /* the user admitted */
    int max_clients; /* 0: no limit */
    int seen, ended;
};

static volatile sig_atomic_t got_signal;

static void on_signal(int sig)
{
    got_signal = sig;
}

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

static void client_ended(struct server *server)
{
    server->ended++;
    if (server->max_clients > 0 && server->ended >= server->max_clients) {
        printf("%d connections handled, exiting\n", server->ended);
        fflush(stdout);
        lsock_loop_stop(server->loop);
    }
}

static void on_disconnected(lsock_socket *s, void *userdata)
{
    struct server *server = userdata;
    lsock_socket_free(s); /* safe inside the socket's own callbacks */
    client_ended(server);
}

static void on_new_connection(lsock_server *srv, void *userdata)
{
    static const lsock_socket_callbacks admitted = {.ready_read = on_ready_read,
                                                    .disconnected = on_disconnected};
    struct server *server = userdata;
    lsock_socket *s;
    while ((s = lsock_server_next_pending_connection(srv)) != NULL) {
        server->seen++;
        lsock_credentials cred;
        if (!lsock_socket_peer_credentials(s, &cred)) {
            printf("rejected a client: no credentials (%s)\n", lsock_socket_error_string(s));
        } else if (cred.uid != server->uid) {
            printf("rejected pid %lld uid %lld: not uid %lld\n", (long long)cred.pid,
                   (long long)cred.uid, (long long)server->uid);
        } else {
            printf("admitted pid %lld uid %lld\n", (long long)cred.pid, (long long)cred.uid);
            fflush(stdout);
            lsock_socket_set_callbacks(s, &admitted, server);
            if (lsock_socket_bytes_available(s) > 0) on_ready_read(s, server);
            continue;
        }
        fflush(stdout);
        /* Turned away: told so, then disconnected; nothing it sent is read. */
        lsock_socket_write(s, "denied\n", 7);
        lsock_socket_disconnect(s);
        if (lsock_socket_state(s) == LSOCK_UNCONNECTED) {
            lsock_socket_free(s);
            client_ended(server);
        } else {
            lsock_socket_set_callbacks(
                s, &(lsock_socket_callbacks){.disconnected = on_disconnected}, server);
        }
    }
}

static void on_signal_timer(lsock_timer *t, void *userdata)
{
    struct server *server = userdata;
    (void)t;
    if (got_signal) {
        printf("signal %d, exiting\n", (int)got_signal);
        lsock_loop_stop(server->loop);
    }
}

int main(int argc, char **argv)
{
    const char *name = argc > 1 ? argv[1] : "lsock-uid";
    struct server server = {0};
    server.uid = (int64_t)geteuid();
    server.max_clients = argc > 2 ? atoi(argv[2]) : 0;
    server.loop = lsock_loop_new();
    lsock_server *srv = lsock_server_new(server.loop);
    lsock_timer *timer = lsock_timer_new(server.loop, on_signal_timer, &server);
    if (!server.loop || !srv || !timer) {
        fprintf(stderr, "out of memory\n");
        return 1;
    }
    struct sigaction sa = {0};
    sa.sa_handler = on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    lsock_timer_start(timer, 100, 100);
    lsock_server_set_new_connection_callback(srv, on_new_connection, &server);
    lsock_server_set_socket_options(srv, LSOCK_WORLD_ACCESS);
    if (!lsock_server_listen(srv, name)) {
        fprintf(stderr, "%s\n", lsock_server_error_string(srv));
        return 1;
    }
    printf("listening on %s, admitting uid %lld only\n", lsock_server_full_server_name(srv),
           (long long)server.uid);
    fflush(stdout);
    lsock_loop_run(server.loop, LSOCK_RUN_DEFAULT);
    lsock_timer_free(timer);
    lsock_server_free(srv); /* removes the socket file */
    lsock_loop_free(server.loop);
    return 0;
}
