#include <lsock.h>
#include <stdio.h>
#include <string.h>

static void on_message(lsock_instance *inst, const void *msg, int64_t len,
                       const lsock_credentials *sender, void *userdata)
{
    (void)inst, (void)userdata;
    printf("pid %lld asks: %.*s\n", (long long)sender->pid, (int)len, (const char *)msg);
}

/* The first start is the primary and prints what later starts hand it; they exit at once. */
int main(int argc, char **argv)
{
    lsock_loop *loop = lsock_loop_new();
    lsock_instance *inst = lsock_instance_new(loop, "org.example.editor", LSOCK_INSTANCE_PER_USER);
    lsock_instance_set_message_callback(inst, on_message, NULL);
    const char *arg = argc > 1 ? argv[1] : "";
    int rc = lsock_instance_acquire(inst, 5000);
    if (rc == 1)
        lsock_loop_run(loop, LSOCK_RUN_DEFAULT); /* the primary, until stopped */
    else if (rc == 0 && !lsock_instance_send(inst, arg, (int64_t)strlen(arg), 5000))
        rc = -1;
    if (rc < 0) fprintf(stderr, "%s\n", lsock_instance_error_string(inst));
    lsock_instance_free(inst);
    lsock_loop_free(loop);
    return rc < 0 ? 1 : 0;
}
