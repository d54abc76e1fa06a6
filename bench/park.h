/* park.h -- the harness W1 and W6 share (public API only).
 *
 * Both workloads are "spawn N tasks, each blocks on its own unbuffered channel, then
 * main feeds each one value and joins them all"; they differ only in what a task has on
 * its stack when it blocks.  The program supplies the task function, which calls
 * park_wait(i) where it wants to block, and a check; this file does the rest: main as a
 * task of the pool, the timing of both phases, peak RSS and the result lines.
 */
#ifndef BENCH_PARK_H
#define BENCH_PARK_H

#include "bench.h"

#include <stdatomic.h>

static struct {
    long n;
    tp_chan **ch;         /* ch[i]: task i's own unbuffered channel */
    tp_task **tasks;      /* to join them */
    tp_chan *all_parked;  /* one token once every task has bumped `parked` */
    atomic_long parked;   /* tasks that reached their receive */
    void *(*fn)(void *);  /* the program's task function; its argument is i */
    double wall_ms, spawn_park_ms;
    long peak_kib;
} park;

/* Task i: count itself parked (the last one tells main) and block until main's value
   arrives; returns that value. */
static inline long park_wait(long i)
{
    long v = -1;
    if (atomic_fetch_add_explicit(&park.parked, 1, memory_order_relaxed) + 1 == park.n) {
        long token = 1;
        BENCH_TRY(tp_chan_send(park.all_parked, &token, -1));
    }
    BENCH_TRY(tp_chan_recv(park.ch[i], &v, -1));
    return v;
}

static void *park_main_task(void *unused)
{
    long n = park.n, token;
    (void)unused;
    int64_t t0 = bench_now_ns();
    park.ch = BENCH_NONNULL(malloc((size_t)n * sizeof *park.ch));
    park.tasks = BENCH_NONNULL(malloc((size_t)n * sizeof *park.tasks));
    for (long i = 0; i < n; i++) {
        park.ch[i] = BENCH_NONNULL(tp_chan_create(sizeof(long), 0));
        park.tasks[i] = BENCH_NONNULL(tp_spawn(NULL, park.fn, (void *)(intptr_t)i));
    }
    BENCH_TRY(tp_chan_recv(park.all_parked, &token, -1));
    int64_t t1 = bench_now_ns();
    for (long i = 0; i < n; i++)
        BENCH_TRY(tp_chan_send(park.ch[i], &i, -1));
    for (long i = 0; i < n; i++)
        BENCH_TRY(tp_join(park.tasks[i], NULL, -1));
    int64_t t2 = bench_now_ns();
    park.peak_kib = bench_maxrss_kib();
    park.wall_ms = (double)(t2 - t0) / 1e6;
    park.spawn_park_ms = (double)(t1 - t0) / 1e6;
    for (long i = 0; i < n; i++)
        BENCH_TRY(tp_chan_destroy(park.ch[i]));
    free(park.ch);
    free(park.tasks);
    return NULL;
}

/* main() of W1/W6: arguments [N=default_n] [workers=1]; the workload is named
   "<name>-t<workers>"; check() runs after every task has finished. */
static inline int park_bench(int argc, char **argv, const char *name, long default_n,
                             void *(*fn)(void *), int (*check)(void))
{
    park.n = bench_arg(argc, argv, 1, default_n);
    unsigned workers = (unsigned)bench_arg(argc, argv, 2, 1);
    if (park.n < 1)
        park.n = 1;
    park.fn = fn;
    char wl[64];
    snprintf(wl, sizeof wl, "%s-t%u", name, workers);
    long base_kib = bench_maxrss_kib();
    tp_pool *pool = bench_pool(workers);
    park.all_parked = BENCH_NONNULL(tp_chan_create(sizeof(long), 1));
    bench_main_task(pool, park_main_task, NULL);
    bench_report(wl, "wall", park.wall_ms, "ms");
    bench_report(wl, "spawn_park", park.spawn_park_ms, "ms");
    bench_report(wl, "peak_rss", (double)park.peak_kib / 1024, "MiB");
    bench_report(wl, "rss_per_task", (double)(park.peak_kib - base_kib) * 1024 / (double)park.n,
                 "B");
    bench_check(wl, check());
    BENCH_TRY(tp_chan_destroy(park.all_parked));
    BENCH_TRY(tp_pool_destroy(pool));
    return 0;
}

#endif
