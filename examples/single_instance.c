/*
 * single_instance: run it, then run it again (from another shell) with arguments: the first
 * one, the primary, prints them; the later ones hand them over and exit.
 *
 *   single_instance [--app ID] [--count N] [ARGS...]
 *
 * ID defaults to "org.example.single-instance". The primary exits after N messages (--count;
 * without it, it runs until killed). A later start joins its ARGS with spaces into one
 * message, sends it to the primary (which prints it with the sender's pid) and exits 0 once
 * the primary has taken it.
 */
#include <lsock.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct primary {
    lsock_loop *loop;
    int count, got;
};

static void on_message(lsock_instance *inst, const void *msg, int64_t len,
                       const lsock_credentials *sender, void *userdata)
{
    struct primary *p = userdata;
    (void)inst;
    printf("message from pid %lld: %.*s\n", (long long)sender->pid, (int)len, (const char *)msg);
    fflush(stdout);
    if (p->count > 0 && ++p->got >= p->count) lsock_loop_stop(p->loop);
}

int main(int argc, char **argv)
{
    const char *app = "org.example.single-instance";
    struct primary p = {lsock_loop_new(), 0, 0};
    int i = 1;
    for (; i + 1 < argc && argv[i][0] == '-' && argv[i][1] == '-'; i += 2) {
        if (!strcmp(argv[i], "--app"))
            app = argv[i + 1];
        else if (!strcmp(argv[i], "--count"))
            p.count = atoi(argv[i + 1]);
        else
            break;
    }
    lsock_instance *inst = lsock_instance_new(p.loop, app, LSOCK_INSTANCE_PER_USER);
    if (!p.loop || !inst) {
        fprintf(stderr, "out of memory\n");
        return 1;
    }
    lsock_instance_set_message_callback(inst, on_message, &p);
    int rc = lsock_instance_acquire(inst, 5000);
    if (rc < 0) {
        fprintf(stderr, "%s\n", lsock_instance_error_string(inst));
        return 1;
    }
    if (rc == 1) {
        printf("primary (pid %lld): waiting for the arguments of later starts\n",
               (long long)lsock_instance_primary_pid(inst));
        fflush(stdout);
        lsock_loop_run(p.loop, LSOCK_RUN_DEFAULT);
    } else {
        char msg[4096] = "";
        size_t n = 0;
        for (; i < argc; i++) {
            int w = snprintf(msg + n, sizeof msg - n, "%s%s", n ? " " : "", argv[i]);
            if (w < 0 || (size_t)w >= sizeof msg - n) break;
            n += (size_t)w;
        }
        if (!lsock_instance_send(inst, msg, (int64_t)n, 5000)) {
            fprintf(stderr, "%s\n", lsock_instance_error_string(inst));
            return 1;
        }
        printf("handed \"%s\" to the primary (pid %lld)\n", msg,
               (long long)lsock_instance_primary_pid(inst));
    }
    lsock_instance_free(inst);
    lsock_loop_free(p.loop);
    return 0;
}
