/*
 * echo_client: an event-driven lsock client for echo_server. It connects, sends a few lines,
 * reads the echoes as they arrive, checks them, and disconnects.
 *
 *   echo_client [NAME]
 *
 * NAME defaults to "lsock-echo". Exit status 0 only if every line came back unchanged.
 */
#include <lsock.h>

#include <stdbool.h>
#include <stdio.h>
#include <string.h>

static const char *const lines[] = {
    "hello, lsock\n",
    "the second line\n",
    "a line with\ttabs and  spaces\n",
    "1234567890 abcdefghijklmnopqrstuvwxyz ABCDEFGHIJKLMNOPQRSTUVWXYZ\n",
    "bye\n",
};
#define NLINES ((int)(sizeof lines / sizeof lines[0]))

struct client {
    lsock_loop *loop;
    lsock_timer *deadline;
    int received;
    int mismatches;
    bool failed;
};

static void on_state_changed(lsock_socket *s, lsock_state state, void *userdata)
{
    (void)s;
    (void)userdata;
    static const char *const names[] = {"unconnected", "connecting", "connected", "closing"};
    printf("state: %s\n", names[state]);
}

static void on_connected(lsock_socket *s, void *userdata)
{
    (void)userdata;
    printf("connected to %s\n", lsock_socket_full_server_name(s));
    for (int i = 0; i < NLINES; i++) {
        int64_t len = (int64_t)strlen(lines[i]);
        if (lsock_socket_write(s, lines[i], len) != len) {
            fprintf(stderr, "%s\n", lsock_socket_error_string(s));
            lsock_socket_abort(s);
            return;
        }
        printf("sent %lld bytes\n", (long long)len);
    }
}

static void on_ready_read(lsock_socket *s, void *userdata)
{
    struct client *c = userdata;
    char line[256];
    while (c->received < NLINES && lsock_socket_can_read_line(s)) {
        if (lsock_socket_read_line(s, line, sizeof line) <= 0) break;
        bool same = strcmp(line, lines[c->received]) == 0;
        printf("echo %d: %s%s", c->received + 1, same ? "" : "MISMATCH: ", line);
        if (!same) c->mismatches++;
        if (++c->received == NLINES) {
            printf("all %d echoes received, disconnecting\n", NLINES);
            lsock_socket_disconnect(s);
            return;
        }
    }
}

static void on_error(lsock_socket *s, lsock_error err, void *userdata)
{
    struct client *c = userdata;
    (void)err;
    fprintf(stderr, "error: %s\n", lsock_socket_error_string(s));
    if (c->received < NLINES) c->failed = true;
}

static void on_disconnected(lsock_socket *s, void *userdata)
{
    struct client *c = userdata;
    (void)s;
    printf("disconnected\n");
    lsock_timer_stop(c->deadline); /* nothing left to do: lsock_loop_run() returns */
}

static void on_deadline(lsock_timer *t, void *userdata)
{
    struct client *c = userdata;
    (void)t;
    fprintf(stderr, "timed out after %d of %d echoes\n", c->received, NLINES);
    c->failed = true;
    lsock_loop_stop(c->loop);
}

int main(int argc, char **argv)
{
    static const lsock_socket_callbacks callbacks = {
        .state_changed = on_state_changed,
        .connected = on_connected,
        .ready_read = on_ready_read,
        .error_occurred = on_error,
        .disconnected = on_disconnected,
    };
    const char *name = argc > 1 ? argv[1] : "lsock-echo";
    struct client c = {0};
    int status = 1;

    setvbuf(stdout, NULL, _IOLBF, 0);
    c.loop = lsock_loop_new();
    lsock_socket *s = lsock_socket_new(c.loop);
    c.deadline = lsock_timer_new(c.loop, on_deadline, &c);
    if (!c.loop || !s || !c.deadline) {
        fprintf(stderr, "out of resources\n");
        goto out;
    }
    lsock_socket_set_callbacks(s, &callbacks, &c);
    lsock_timer_start(c.deadline, 10000, 0);

    /* Callbacks fire from here on: state_changed, then connected (which sends the lines). */
    if (!lsock_socket_connect(s, name, LSOCK_READ_WRITE)) goto out; /* on_error printed why */

    lsock_loop_run(c.loop, LSOCK_RUN_DEFAULT);

    if (!c.failed && c.received == NLINES && c.mismatches == 0) {
        printf("ok: %d lines echoed\n", NLINES);
        status = 0;
    } else {
        fprintf(stderr, "failed: %d of %d echoes received, %d mismatched\n", c.received, NLINES,
                c.mismatches);
    }

out:
    lsock_socket_free(s);
    lsock_timer_free(c.deadline);
    lsock_loop_free(c.loop);
    return status;
}
