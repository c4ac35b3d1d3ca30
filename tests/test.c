/* The test runner behind test.h: registration, one child process per test, deadlines. */
#include "test.h"

#ifdef _WIN32
/* Windows has no fork(): the runner re-runs its own executable for one test (CreateProcess)
 * and a test run alone has a watchdog thread for its deadline. */
#define WIN32_LEAN_AND_MEAN
#include <windows.h>
#else
#include <dirent.h>
#include <signal.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#endif

#define MAX_TESTS    512
#define MAX_CHILDREN 32

static struct test_entry tests[MAX_TESTS];
static int ntests;

static struct {
    const char *name;
    test_child_fn fn;
} children[MAX_CHILDREN];
static int nchildren;

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

void test_register_child_(const char *name, test_child_fn fn)
{
    if (nchildren == MAX_CHILDREN) {
        fprintf(stderr, "too many child mains\n");
        exit(2);
    }
    children[nchildren].name = name;
    children[nchildren].fn = fn;
    nchildren++;
}

test_child_fn test_child_lookup_(const char *name)
{
    for (int i = 0; i < nchildren; i++)
        if (strcmp(children[i].name, name) == 0) return children[i].fn;
    return NULL;
}

#ifdef _WIN32
uint64_t test_now_ms(void)
{
    LARGE_INTEGER f, c;
    QueryPerformanceFrequency(&f);
    QueryPerformanceCounter(&c);
    return (uint64_t)(c.QuadPart / f.QuadPart) * 1000u +
           (uint64_t)(c.QuadPart % f.QuadPart) * 1000u / (uint64_t)f.QuadPart;
}

#define getpid() ((long)GetCurrentProcessId())

/* Counts the process's open handles (the Windows analogue of its descriptors). */
int test_count_fds(void)
{
    DWORD n = 0;
    return GetProcessHandleCount(GetCurrentProcess(), &n) ? (int)n : -1;
}
#else
uint64_t test_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

#endif

const char *test_name(const char *tag)
{
    static char slots[8][96];
    static unsigned counter;
    char *out = slots[counter % 8];
    /* A random part too: a file left by a killed run must not collide with a later process
     * that gets the same pid. */
    static unsigned salt;
    if (!salt) salt = ((unsigned)test_now_ms() * 2654435761u) ^ ((unsigned)getpid() << 16) ^ 1u;
    snprintf(out, sizeof slots[0], "lsock-test-%ld-%u-%06x-%s", (long)getpid(), counter,
             salt & 0xffffff, tag);
    counter++;
    return out;
}

#ifndef _WIN32
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

#endif

static int timeout_seconds(void)
{
    const char *env = getenv("LSOCK_TEST_TIMEOUT");
    int t = env ? atoi(env) : 0;
    return t > 0 ? t : 60;
}

#ifdef _WIN32
static DWORD WINAPI watchdog(LPVOID arg)
{
    Sleep((DWORD)timeout_seconds() * 1000u);
    fprintf(stderr, "%s: deadline passed\n", (const char *)arg);
    fflush(stderr);
    ExitProcess(1);
    return 0;
}

static LONG WINAPI crashed(EXCEPTION_POINTERS *e)
{
    unsigned long code = (unsigned long)e->ExceptionRecord->ExceptionCode;
    fprintf(stderr, "crashed: exception 0x%08lx\n", code);
    fflush(stderr);
    ExitProcess(1);
    return EXCEPTION_EXECUTE_HANDLER;
}

/* Runs t in this process, under a watchdog thread; does not return. */
static void run_here(const struct test_entry *t)
{
    SetErrorMode(SEM_FAILCRITICALERRORS | SEM_NOGPFAULTERRORBOX);
    SetUnhandledExceptionFilter(crashed);
    HANDLE th = CreateThread(NULL, 0, watchdog, (LPVOID)t->name, 0, NULL);
    if (th) CloseHandle(th);
    t->fn();
    fflush(stdout);
    fflush(stderr);
    exit(0);
}

/* Runs the child main fn of a child process started as "--child NAME ARG", under the same
 * watchdog as a test; does not return. */
static void run_child_here(const char *name, test_child_fn fn, const char *arg)
{
    SetErrorMode(SEM_FAILCRITICALERRORS | SEM_NOGPFAULTERRORBOX);
    SetUnhandledExceptionFilter(crashed);
    HANDLE th = CreateThread(NULL, 0, watchdog, (LPVOID)name, 0, NULL);
    if (th) CloseHandle(th);
    int rc = fn(arg);
    fflush(stdout);
    fflush(stderr);
    exit(rc);
}

/* Runs one test in a child process (this executable, with the test's name); returns 0 pass,
 * 77 skip, 1 fail. */
static int run_one(const struct test_entry *t)
{
    fflush(stdout);
    fflush(stderr);
    char exe[MAX_PATH], cmd[MAX_PATH + 200];
    if (!GetModuleFileNameA(NULL, exe, sizeof exe)) return 1;
    snprintf(cmd, sizeof cmd, "\"%s\" %s", exe, t->name);
    STARTUPINFOA si;
    PROCESS_INFORMATION pi;
    memset(&si, 0, sizeof si);
    si.cb = sizeof si;
    if (!CreateProcessA(NULL, cmd, NULL, NULL, TRUE, 0, NULL, NULL, &si, &pi)) {
        fprintf(stderr, "%s: CreateProcess failed (%lu)\n", t->name, GetLastError());
        return 1;
    }
    DWORD limit = (DWORD)timeout_seconds() * 1000u + 5000u, code = 1;
    if (WaitForSingleObject(pi.hProcess, limit) != WAIT_OBJECT_0) {
        TerminateProcess(pi.hProcess, 1);
        WaitForSingleObject(pi.hProcess, INFINITE);
        fprintf(stderr, "%s: deadline passed\n", t->name);
    } else {
        GetExitCodeProcess(pi.hProcess, &code);
    }
    CloseHandle(pi.hThread);
    CloseHandle(pi.hProcess);
    if (code == 0 || code == 77) return (int)code;
    fprintf(stderr, "%s: exit status %lu\n", t->name, code);
    return 1;
}
#else
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

#endif

int test_main_(int argc, char **argv)
{
    if (argc > 2 && strcmp(argv[1], "--child") == 0) {
        test_child_fn fn = test_child_lookup_(argv[2]);
        if (!fn) {
            fprintf(stderr, "no such child main: %s\n", argv[2]);
            return 2;
        }
#ifdef _WIN32
        run_child_here(argv[2], fn, argc > 3 ? argv[3] : "");
#else
        return fn(argc > 3 ? argv[3] : "");
#endif
    }
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
#ifdef _WIN32
        /* A single test named (as ctest and the runner's children run them): run it here. */
        if (argc == 2) run_here(&tests[i]);
#endif
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
