/*
 * A small test harness. Each file defines tests with TEST(name) { ... } and ends with
 * TEST_MAIN(). ctest runs every test as its own process ("test_x name"); the runner forks the
 * test into a child with a deadline (alarm), so a hang fails the test instead of the suite.
 * Without arguments the executable runs all its tests one after another, each in a child.
 *
 * CHILD_MAIN(name) { ... } defines what a child process of a test runs (support.h starts it
 * with child_start()): on Unix a forked child calls it directly; on Windows, which has no
 * fork(), the child is this executable started again as "test_x --child NAME ARG".
 */
#ifndef LSOCK_TEST_H
#define LSOCK_TEST_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef void (*test_fn)(void);
struct test_entry {
    const char *name;
    test_fn fn;
};

void test_register_(const char *name, test_fn fn);
int test_main_(int argc, char **argv);

/* The main function of a child process: its argument string, its exit status. */
typedef int (*test_child_fn)(const char *arg);
void test_register_child_(const char *name, test_child_fn fn);
/* The child main registered under name; NULL if none. */
test_child_fn test_child_lookup_(const char *name);
/* A unique name for a socket of this test: "lsock-test-<pid>-<n>-<tag>". Static storage
 * rotated over 8 slots. */
const char *test_name(const char *tag);
/* Milliseconds of a monotonic clock. */
uint64_t test_now_ms(void);
/* Counts the process's open file descriptors. */
int test_count_fds(void);

#define TEST(name)                                                                                 \
    static void test_##name(void);                                                                 \
    __attribute__((constructor)) static void test_reg_##name(void)                                 \
    {                                                                                              \
        test_register_(#name, test_##name);                                                        \
    }                                                                                              \
    static void test_##name(void)

#define CHILD_MAIN(name)                                                                           \
    static int child_##name(const char *arg);                                                      \
    __attribute__((constructor)) static void child_reg_##name(void)                                \
    {                                                                                              \
        test_register_child_(#name, child_##name);                                                 \
    }                                                                                              \
    static int child_##name(const char *arg)

#define TEST_MAIN()                                                                                \
    int main(int argc, char **argv)                                                                \
    {                                                                                              \
        return test_main_(argc, argv);                                                             \
    }

#define FAIL_(...)                                                                                 \
    do {                                                                                           \
        fprintf(stderr, "%s:%d: ", __FILE__, __LINE__);                                            \
        fprintf(stderr, __VA_ARGS__);                                                              \
        fprintf(stderr, "\n");                                                                     \
        abort();                                                                                   \
    } while (0)

#define ASSERT(cond)                                                                               \
    do {                                                                                           \
        if (!(cond)) FAIL_("assertion failed: %s", #cond);                                         \
    } while (0)

#define ASSERT_EQ(a, b)                                                                            \
    do {                                                                                           \
        long long a_ = (long long)(a), b_ = (long long)(b);                                        \
        if (a_ != b_) FAIL_("%s == %s: %lld != %lld", #a, #b, a_, b_);                             \
    } while (0)

#define ASSERT_STR_EQ(a, b)                                                                        \
    do {                                                                                           \
        const char *a_ = (a), *b_ = (b);                                                           \
        if (!a_ || !b_ || strcmp(a_, b_) != 0)                                                     \
            FAIL_("%s == %s: \"%s\" != \"%s\"", #a, #b, a_ ? a_ : "(null)", b_ ? b_ : "(null)");   \
    } while (0)

/* Asserts an lsock error value and prints both names when they differ. */
#define ASSERT_ERR(a, b)                                                                           \
    do {                                                                                           \
        lsock_error a_ = (a), b_ = (b);                                                            \
        if (a_ != b_)                                                                              \
            FAIL_("%s == %s: %s != %s", #a, #b, lsock_error_name(a_), lsock_error_name(b_));       \
    } while (0)

/* Skips the test: prints "skipped: <why>" and exits with ctest's skip code. */
#define SKIP(...)                                                                                  \
    do {                                                                                           \
        printf("skipped: ");                                                                       \
        printf(__VA_ARGS__);                                                                       \
        printf("\n");                                                                              \
        fflush(stdout);                                                                            \
        exit(77);                                                                                  \
    } while (0)

#endif
