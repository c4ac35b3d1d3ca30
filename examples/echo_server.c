/*
 * echo_server: an event-driven lsock server that sends every line it receives back to its
 * sender.
 *
 *   echo_server [NAME [CLIENTS]]
 *
 * NAME defaults to "lsock-echo". With CLIENTS, the server stops accepting after that many
 * connections and exits once they have all disconnected; without it, it runs until SIGINT or
 * SIGTERM. Exit status 0 on a clean exit, 1 on error.
 */
#define _POSIX_C_SOURCE 200809L
#include <lsock.h>

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct client {
    struct server *server;
    lsock_socket *sock;
    int id;
    struct client *next;
};

struct server {
    lsock_loop *loop;
    lsock_server *srv;
    lsock_timer *signal_timer;
    struct client *clients;
    int max_clients; /* 0: no limit */
    int accepted;
    int served;
};

static volatile sig_atomic_t got_signal;

static void on_signal(int sig)
{
    got_signal = sig;
}

static void remove_client(struct client *c)
{
    struct client **p = &c->server->clients;
    while (*p && *p != c)
        p = &(*p)->next;
    if (*p) *p = c->next;
    lsock_socket_free(c->sock); /* safe inside the socket's own callbacks */
    free(c);
}

/* Echoes whole lines, and any partial line too long for the buffer. */
static void on_ready_read(lsock_socket *s, void *userdata)
{
    struct client *c = userdata;
    char line[4096];
    while (lsock_socket_can_read_line(s) ||
           lsock_socket_bytes_available(s) >= (int64_t)sizeof line - 1) {
        int64_t n = lsock_socket_read_line(s, line, sizeof line);
        if (n <= 0) break;
        if (lsock_socket_write(s, line, n) != n) {
            fprintf(stderr, "client %d: %s\n", c->id, lsock_socket_error_string(s));
            lsock_socket_abort(s);
            return;
        }
        printf("client %d: echoed %lld bytes\n", c->id, (long long)n);
    }
}

static void on_error(lsock_socket *s, lsock_error err, void *userdata)
{
    struct client *c = userdata;
    /* PEER_CLOSED is how every client leaves; disconnected follows. */
    if (err != LSOCK_ERR_PEER_CLOSED)
        fprintf(stderr, "client %d: %s\n", c->id, lsock_socket_error_string(s));
}

static void on_disconnected(lsock_socket *s, void *userdata)
{
    (void)s;
    struct client *c = userdata;
    struct server *server = c->server;
    printf("client %d: client disconnected\n", c->id);
    server->served++;
    remove_client(c);
    if (server->max_clients > 0 && server->served >= server->max_clients) {
        printf("served %d clients, exiting\n", server->served);
        lsock_loop_stop(server->loop);
    }
}

static void on_new_connection(lsock_server *srv, void *userdata)
{
    static const lsock_socket_callbacks callbacks = {
        .ready_read = on_ready_read,
        .error_occurred = on_error,
        .disconnected = on_disconnected,
    };
    struct server *server = userdata;
    lsock_socket *s;
    while ((s = lsock_server_next_pending_connection(srv)) != NULL) {
        struct client *c = calloc(1, sizeof *c);
        if (!c) {
            fprintf(stderr, "out of memory\n");
            lsock_socket_free(s);
            continue;
        }
        c->server = server;
        c->sock = s;
        c->id = ++server->accepted;
        c->next = server->clients;
        server->clients = c;
        lsock_socket_set_callbacks(s, &callbacks, c);

        lsock_credentials cred;
        if (lsock_socket_peer_credentials(s, &cred))
            printf("client %d: client connected (pid %lld, uid %lld)\n", c->id, (long long)cred.pid,
                   (long long)cred.uid);
        else
            printf("client %d: client connected\n", c->id);

        /* Data may have arrived with the connection. */
        if (lsock_socket_bytes_available(s) > 0) on_ready_read(s, c);

        if (server->max_clients > 0 && server->accepted >= server->max_clients) {
            printf("accepted %d clients, no longer listening\n", server->accepted);
            lsock_server_close(srv);
            break;
        }
    }
}

/* Signals are only noted by the handler; the loop looks at the flag from this timer. */
static void on_signal_timer(lsock_timer *t, void *userdata)
{
    (void)t;
    struct server *server = userdata;
    if (got_signal) {
        printf("signal %d, exiting\n", (int)got_signal);
        lsock_loop_stop(server->loop);
    }
}

int main(int argc, char **argv)
{
    const char *name = argc > 1 ? argv[1] : "lsock-echo";
    struct server server = {0};
    int status = 1;

    if (argc > 2) {
        char *end;
        long n = strtol(argv[2], &end, 10);
        if (*end || n < 1 || n > 1000000) {
            fprintf(stderr, "usage: %s [NAME [CLIENTS]]\n", argv[0]);
            return 2;
        }
        server.max_clients = (int)n;
    }
#ifdef _WIN32
    setvbuf(stdout, NULL, _IONBF, 0); /* the Windows C runtime has no line buffering */
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
#else
    setvbuf(stdout, NULL, _IOLBF, 0);

    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
#endif

    server.loop = lsock_loop_new();
    if (!server.loop) {
        fprintf(stderr, "lsock_loop_new failed\n");
        return 1;
    }
    server.srv = lsock_server_new(server.loop);
    server.signal_timer = lsock_timer_new(server.loop, on_signal_timer, &server);
    if (!server.srv || !server.signal_timer) {
        fprintf(stderr, "out of memory\n");
        goto out;
    }
    lsock_server_set_new_connection_callback(server.srv, on_new_connection, &server);
    /* Owner-only socket file; take over a file left behind by a server that crashed. */
    lsock_server_set_socket_options(server.srv, LSOCK_USER_ACCESS | LSOCK_RECLAIM_STALE);
    if (!lsock_server_listen(server.srv, name)) {
        fprintf(stderr, "%s\n", lsock_server_error_string(server.srv));
        goto out;
    }
    printf("listening on %s (%s backend)\n", lsock_server_full_server_name(server.srv),
           lsock_loop_backend_name(server.loop));
    lsock_timer_start(server.signal_timer, 100, 100);

    lsock_loop_run(server.loop, LSOCK_RUN_DEFAULT);
    status = 0;

out:
    while (server.clients)
        remove_client(server.clients);
    lsock_timer_free(server.signal_timer);
    lsock_server_free(server.srv); /* closes it and removes the socket file */
    if (!lsock_loop_free(server.loop)) {
        fprintf(stderr, "lsock_loop_free: objects still use the loop\n");
        status = 1;
    }
    return status;
}
