/* tp_test.h -- small helpers shared by the Check suites. */
#ifndef TP_TEST_H
#define TP_TEST_H

#include <check.h>
#include <errno.h>
#include <sched.h>
#include <stdint.h>
#include <stdlib.h>
#include <threadplex.h>

/* ThreadSanitizer models every started task as a fiber and dies beyond 8128 of them,
   so tests that park huge numbers of tasks use a smaller count under it. */
#ifndef __has_feature
#define __has_feature(x) 0
#endif
#if defined(__SANITIZE_THREAD__) || __has_feature(thread_sanitizer)
#define TEST_UNDER_TSAN 1
#else
#define TEST_UNDER_TSAN 0
#endif

/* A pool with n workers (0 = one per CPU) of `stacks` shared stacks each (0 = the
   default); fails the test if it cannot be made. */
static inline tp_pool *test_pool_stacks(unsigned n, unsigned stacks)
{
    tp_pool_attr a = {.workers = n, .stack_size = 0, .stacks = stacks};
    tp_pool *p = tp_pool_create(&a);
    ck_assert_msg(p != NULL, "tp_pool_create: errno %d", errno);
    return p;
}

static inline tp_pool *test_pool(unsigned n) { return test_pool_stacks(n, 0); }

/* Assert that an expression returned -1 (or NULL) and set errno to e. */
#define ck_assert_err(expr, e)                                                           \
    do {                                                                                 \
        errno = 0;                                                                       \
        long long r_ = (long long)(intptr_t)(expr);                                      \
        int e_ = errno;                                                                  \
        ck_assert_msg(r_ == -1 || r_ == 0, "%s returned %lld, expected failure", #expr, r_); \
        ck_assert_msg(e_ == (e), "%s: errno %d, expected %d (%s)", #expr, e_, (e), #e);  \
    } while (0)

/* Fault injection (src/util.c): the Nth allocation from now fails. */
extern _Atomic long tp__alloc_countdown;

/* A deadline ms milliseconds from now. */
static inline int64_t in_ms(int64_t ms) { return tp_now() + ms; }

/* Block the calling plain thread until at least n tasks of p are parked (a condition
   that is polled, not a timed guess). */
static inline void wait_parked(tp_pool *p, uint64_t n)
{
    tp_stats st;
    while (tp_pool_stats(p, &st) == 0 && st.tasks_parked < n)
        sched_yield();
}

/* Run a Check suite in fork mode (each test in its own process) and exit with its result. */
static inline int test_run(Suite *s)
{
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}

#endif
