#include <lsock.h>
#include <stdio.h>

int main(int argc, char **argv)
{
    char reply[256];
    lsock_socket *s = lsock_socket_new(NULL); /* no loop: blocking calls only */
    bool ok = lsock_socket_connect(s, argc > 1 ? argv[1] : "lsock-echo", LSOCK_READ_WRITE) &&
              lsock_socket_wait_for_connected(s, 5000) && lsock_socket_write(s, "hello\n", 6) == 6;
    while (ok && !lsock_socket_can_read_line(s))
        ok = lsock_socket_wait_for_ready_read(s, 5000);
    ok = ok && lsock_socket_read_line(s, reply, sizeof reply) > 0;
    if (ok)
        printf("reply: %s", reply);
    else
        fprintf(stderr, "%s\n", lsock_socket_error_string(s));
    lsock_socket_free(s);
    return ok ? 0 : 1;
}
