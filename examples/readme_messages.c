#include <lsock.h>
#include <stdio.h>

/* A server and a client in one process, without a loop: the client sends one message. */
int main(int argc, char **argv)
{
    const char *name = argc > 1 ? argv[1] : "lsock-messages";
    lsock_server *srv = lsock_server_new(NULL);
    lsock_socket *client = lsock_socket_new(NULL), *peer = NULL;
    char msg[64];
    bool ok = lsock_server_listen(srv, name) &&
              lsock_socket_connect(client, name, LSOCK_READ_WRITE) &&
              lsock_server_wait_for_new_connection(srv, 5000, NULL) &&
              (peer = lsock_server_next_pending_connection(srv)) != NULL &&
              lsock_socket_write_message(client, "hello in QDataStream framing", 28) == 28;
    while (ok && !lsock_socket_can_read_message(peer))
        ok = lsock_socket_wait_for_ready_read(peer, 5000);
    int64_t n = ok ? lsock_socket_read_message(peer, msg, sizeof msg) : -1;
    if (n >= 0)
        printf("one message of %lld bytes: %.*s\n", (long long)n, (int)n, msg);
    else
        fprintf(stderr, "%s\n", lsock_socket_error_string(peer ? peer : client));
    lsock_socket_free(peer);
    lsock_socket_free(client);
    lsock_server_free(srv);
    return n >= 0 ? 0 : 1;
}
