#include <lsock.h>
#include <stdio.h>

static void on_ready_read(lsock_socket *s, void *userdata)
{
    char line[256];
    int64_t n;
    (void)userdata;
    while (lsock_socket_can_read_line(s) && (n = lsock_socket_read_line(s, line, sizeof line)) > 0)
        lsock_socket_write(s, line, n); /* echo the line back */
}

static void on_disconnected(lsock_socket *s, void *userdata)
{
    (void)userdata;
    lsock_socket_free(s); /* allowed inside the socket's own callbacks */
}

static void on_new_connection(lsock_server *srv, void *userdata)
{
    static const lsock_socket_callbacks cb = {.ready_read = on_ready_read,
                                              .disconnected = on_disconnected};
    lsock_socket *s;
    (void)userdata;
    while ((s = lsock_server_next_pending_connection(srv)))
        lsock_socket_set_callbacks(s, &cb, NULL);
}

int main(int argc, char **argv)
{
    lsock_loop *loop = lsock_loop_new();
    lsock_server *srv = lsock_server_new(loop);
    lsock_server_set_new_connection_callback(srv, on_new_connection, NULL);
    if (!lsock_server_listen(srv, argc > 1 ? argv[1] : "lsock-echo")) {
        fprintf(stderr, "%s\n", lsock_server_error_string(srv));
        return 1;
    }
    return lsock_loop_run(loop, LSOCK_RUN_DEFAULT); /* serves until killed */
}
