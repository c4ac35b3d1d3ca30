/* The test runner behind test.h: registration, one child process per test, deadlines. */
#include "test.h"

#include <dirent.h>
#include <signal.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MAX_TESTS 512

static struct test_entry tests[MAX_TESTS];
static int ntests;

void test_register_(const char *name, test_fn fn)
{
    if (ntests == MAX_TESTS) {
        fprintf(stderr, "too many tests\n");
        exit(2);
    }
    tests[ntests].name = name;
    tests[ntests].fn = fn;
    ntests++;
}

uint64_t test_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

const char *test_name(const char *tag)
{
    static char slots[8][96];
    static unsigned counter;
    char *out = slots[counter % 8];
    snprintf(out, sizeof slots[0], "lsock-test-%ld-%u-%s", (long)getpid(), counter, tag);
    counter++;
    return out;
}

int test_count_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    if (!d) return -1;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        if (e->d_name[0] != '.') n++;
    closedir(d);
    return n - 1; /* the DIR's own descriptor */
}

static int timeout_seconds(void)
{
    const char *env = getenv("LSOCK_TEST_TIMEOUT");
    int t = env ? atoi(env) : 0;
    return t > 0 ? t : 60;
}

/* Runs one test in a child; returns 0 pass, 77 skip, 1 fail. */
static int run_one(const struct test_entry *t)
{
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid < 0) {
        perror("fork");
        return 1;
    }
    if (pid == 0) {
        alarm((unsigned)timeout_seconds());
        t->fn();
        fflush(stdout);
        _exit(0);
    }
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0) return 0;
    if (WIFEXITED(status) && WEXITSTATUS(status) == 77) return 77;
    if (WIFSIGNALED(status))
        fprintf(stderr, "%s: killed by signal %d%s\n", t->name, WTERMSIG(status),
                WTERMSIG(status) == SIGALRM ? " (deadline passed)" : "");
    else
        fprintf(stderr, "%s: exit status %d\n", t->name, WEXITSTATUS(status));
    return 1;
}

int test_main_(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "--list") == 0) {
        for (int i = 0; i < ntests; i++)
            printf("%s\n", tests[i].name);
        return 0;
    }
    int failed = 0, skipped = 0, ran = 0;
    for (int i = 0; i < ntests; i++) {
        if (argc > 1) {
            int wanted = 0;
            for (int a = 1; a < argc; a++)
                if (strcmp(argv[a], tests[i].name) == 0) wanted = 1;
            if (!wanted) continue;
        }
        ran++;
        int rc = run_one(&tests[i]);
        if (rc == 77) {
            skipped++;
            if (argc == 1) printf("skip %s\n", tests[i].name);
        } else if (rc != 0) {
            failed++;
            printf("FAIL %s\n", tests[i].name);
        } else if (argc == 1) {
            printf("ok   %s\n", tests[i].name);
        }
    }
    if (ran == 0) {
        fprintf(stderr, "no such test\n");
        return 2;
    }
    if (argc == 1) printf("%d tests, %d failed, %d skipped\n", ran, failed, skipped);
    if (failed) return 1;
    return (skipped == ran) ? 77 : 0;
}
