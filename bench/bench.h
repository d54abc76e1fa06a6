/* bench.h -- helpers shared by the benchmark programs of bench/ (public API only).
 *
 * Every program prints result lines in the peers' format (see bench/compare and
 * ../shared/bench/peers/README.md):
 *
 *     threadplex WORKLOAD METRIC VALUE UNIT        VALUE printed with %.6g
 *     threadplex WORKLOAD check OK|FAIL -
 *
 * "main" of a workload (the party the Go peer runs as its main goroutine and the Boost
 * peer as the thread's main fiber) is a task of the pool here too: the C main() only
 * creates the pool, spawns that task, joins it and prints.  So a "-tN" run has exactly N
 * threads doing work, like GOMAXPROCS=N, and main's channel operations are task-to-task
 * operations on a worker, as in the peers.
 */
#ifndef BENCH_H
#define BENCH_H

#include <threadplex.h>

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#define BENCH_NOINLINE __attribute__((noinline))

/* Monotonic wall clock in nanoseconds. */
static inline int64_t bench_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* Peak resident set size of the process so far, KiB (getrusage ru_maxrss). */
static inline long bench_maxrss_kib(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_maxrss;
}

/* CPU time (user + system) the whole process has used so far, nanoseconds. */
static inline int64_t bench_cpu_ns(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ((int64_t)ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1000000000 +
           ((int64_t)ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) * 1000;
}

/* Positional integer argument i (argv[i]) or def; like the peers' arg(). */
static inline long bench_arg(int argc, char **argv, int i, long def)
{
    return argc > i ? atol(argv[i]) : def;
}

static inline void bench_report(const char *wl, const char *metric, double v, const char *unit)
{
    printf("threadplex %s %s %.6g %s\n", wl, metric, v, unit);
    fflush(stdout);
}

static inline void bench_check(const char *wl, int ok)
{
    printf("threadplex %s check %s -\n", wl, ok ? "OK" : "FAIL");
    fflush(stdout);
}

/* A failed threadplex call in a benchmark is fatal: the figures would mean nothing. */
#define BENCH_TRY(expr)                                                                    \
    do {                                                                                   \
        if ((expr) < 0) {                                                                  \
            fprintf(stderr, "%s:%d: %s: %s\n", __FILE__, __LINE__, #expr, strerror(errno)); \
            exit(2);                                                                       \
        }                                                                                  \
    } while (0)

#define BENCH_NONNULL(expr)                                                                \
    ({                                                                                     \
        __typeof__(expr) bench_p_ = (expr);                                                \
        if (!bench_p_) {                                                                   \
            fprintf(stderr, "%s:%d: %s: %s\n", __FILE__, __LINE__, #expr, strerror(errno)); \
            exit(2);                                                                       \
        }                                                                                  \
        bench_p_;                                                                          \
    })

/* A pool of `workers` workers (at least 1). */
static inline tp_pool *bench_pool(unsigned workers)
{
    tp_pool_attr a = {.workers = workers ? workers : 1, .stack_size = 0};
    return BENCH_NONNULL(tp_pool_create(&a));
}

/* Run fn(arg) as the workload's main task and wait for it; returns its result. */
static inline void *bench_main_task(tp_pool *pool, void *(*fn)(void *), void *arg)
{
    void *res = NULL;
    tp_task *t = BENCH_NONNULL(tp_spawn(pool, fn, arg));
    BENCH_TRY(tp_join(t, &res, -1));
    return res;
}

#endif
