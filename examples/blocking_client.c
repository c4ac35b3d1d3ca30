/*
 * blocking_client: an lsock client without an event loop. Every step blocks, with a timeout,
 * through the lsock_socket_wait_for_*() calls, as with QLocalSocket's waitFor*().
 *
 *   blocking_client [NAME [MESSAGE]]
 *
 * NAME defaults to "lsock-echo" (run echo_server first). Sends MESSAGE (default "ping") as one
 * line, reads the reply line and checks that it is the same. Exit status 0 on success.
 */
#include <lsock.h>

#include <stdio.h>
#include <string.h>

#define TIMEOUT_MS 5000

/* Callbacks work without a loop too: the wait calls fire them synchronously. */
static void on_bytes_written(lsock_socket *s, int64_t bytes, void *userdata)
{
    (void)s;
    (void)userdata;
    printf("bytes_written: %lld bytes\n", (long long)bytes);
}

static int fail(lsock_socket *s, const char *step)
{
    fprintf(stderr, "%s failed: %s\n", step, lsock_socket_error_string(s));
    lsock_socket_free(s);
    return 1;
}

int main(int argc, char **argv)
{
    const char *name = argc > 1 ? argv[1] : "lsock-echo";
    const char *message = argc > 2 ? argv[2] : "ping";
    char out[1024], in[1024];

    int len = snprintf(out, sizeof out, "%s\n", message);
    if (len < 0 || len >= (int)sizeof out) {
        fprintf(stderr, "message too long\n");
        return 2;
    }
    setvbuf(stdout, NULL, _IOLBF, 0);

    lsock_socket *s = lsock_socket_new(NULL); /* no loop: blocking use */
    if (!s) {
        fprintf(stderr, "out of memory\n");
        return 1;
    }
    const lsock_socket_callbacks callbacks = {.bytes_written = on_bytes_written};
    lsock_socket_set_callbacks(s, &callbacks, NULL);

    printf("connecting to %s\n", name);
    if (!lsock_socket_connect(s, name, LSOCK_READ_WRITE)) return fail(s, "connect");
    if (!lsock_socket_wait_for_connected(s, TIMEOUT_MS)) return fail(s, "wait_for_connected");
    printf("connected to %s\n", lsock_socket_full_server_name(s));

    if (lsock_socket_write(s, out, len) != len) return fail(s, "write");
    printf("wrote %d bytes\n", len);
    /* True as soon as the data is with the kernel (write() may have handed it over already). */
    if (!lsock_socket_wait_for_bytes_written(s, TIMEOUT_MS))
        return fail(s, "wait_for_bytes_written");
    printf("written\n");

    while (!lsock_socket_can_read_line(s))
        if (!lsock_socket_wait_for_ready_read(s, TIMEOUT_MS)) return fail(s, "wait_for_ready_read");
    if (lsock_socket_read_line(s, in, sizeof in) <= 0) return fail(s, "read_line");
    printf("received %zu bytes: %s", strlen(in), in);

    lsock_socket_disconnect(s);
    if (lsock_socket_state(s) != LSOCK_UNCONNECTED &&
        !lsock_socket_wait_for_disconnected(s, TIMEOUT_MS))
        return fail(s, "wait_for_disconnected");
    printf("disconnected\n");

    int ok = strcmp(in, out) == 0;
    printf("%s\n", ok ? "ok: the reply matches" : "failed: the reply differs");
    lsock_socket_free(s);
    return ok ? 0 : 1;
}
