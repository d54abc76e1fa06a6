/* W1 spawn-park -- threadplex.
 * Usage: w1_spawn_park [N=1000000] [workers=1]
 * Workload (as the Go and Boost.Fiber peers): create N unbuffered channels of long (ONE
 * CHANNEL PER TASK) and spawn N tasks; task i bumps a "parked" counter and blocks in
 * tp_chan_recv(ch[i]).  Main is a task of the pool (see bench.h), like Go's main
 * goroutine: it spawns the N tasks, then parks until all N have reached their receive --
 * the task whose bump makes the counter N sends one token on a 1-slot buffered channel
 * main waits on (the WaitGroup of the Go peer) -- then sends i on ch[i] for i = 0..N-1
 * (each send finds its receiver already waiting) and joins all N tasks (tp_join, like
 * the Boost peer's join).
 * Reports: total wall time (spawn + park + wake + exit), the spawn+park phase alone, peak
 * RSS (getrusage ru_maxrss), and (peak RSS - RSS at program start) * 1024 / N bytes per
 * task: the channel, the task's control block, its saved stack segment and the two
 * pointer arrays.  check: the values received sum to N(N-1)/2.
 */
#include "bench.h"

#include <stdatomic.h>

static struct {
    long n;
    tp_chan **ch;         /* ch[i]: task i's own unbuffered channel */
    tp_task **tasks;      /* to join them */
    tp_chan *all_parked;  /* one token once every task has bumped `parked` */
    atomic_long parked;   /* tasks that reached their receive */
    atomic_long sum;      /* of the values received */
    double wall_ms, spawn_park_ms;
    long peak_kib;
} g;

static void *parker(void *arg)
{
    long i = (long)(intptr_t)arg, v = -1;
    if (atomic_fetch_add_explicit(&g.parked, 1, memory_order_relaxed) + 1 == g.n) {
        long token = 1;
        BENCH_TRY(tp_chan_send(g.all_parked, &token, -1));
    }
    BENCH_TRY(tp_chan_recv(g.ch[i], &v, -1));
    atomic_fetch_add_explicit(&g.sum, v, memory_order_relaxed);
    return NULL;
}

static void *main_task(void *unused)
{
    long n = g.n, token;
    int64_t t0 = bench_now_ns();
    g.ch = BENCH_NONNULL(malloc((size_t)n * sizeof *g.ch));
    g.tasks = BENCH_NONNULL(malloc((size_t)n * sizeof *g.tasks));
    for (long i = 0; i < n; i++) {
        g.ch[i] = BENCH_NONNULL(tp_chan_create(sizeof(long), 0));
        g.tasks[i] = BENCH_NONNULL(tp_spawn(NULL, parker, (void *)(intptr_t)i));
    }
    BENCH_TRY(tp_chan_recv(g.all_parked, &token, -1));
    int64_t t1 = bench_now_ns();
    for (long i = 0; i < n; i++)
        BENCH_TRY(tp_chan_send(g.ch[i], &i, -1));
    for (long i = 0; i < n; i++)
        BENCH_TRY(tp_join(g.tasks[i], NULL, -1));
    int64_t t2 = bench_now_ns();
    g.peak_kib = bench_maxrss_kib();
    g.wall_ms = (double)(t2 - t0) / 1e6;
    g.spawn_park_ms = (double)(t1 - t0) / 1e6;
    for (long i = 0; i < n; i++)
        BENCH_TRY(tp_chan_destroy(g.ch[i]));
    free(g.ch);
    free(g.tasks);
    return NULL;
}

int main(int argc, char **argv)
{
    g.n = bench_arg(argc, argv, 1, 1000000);
    unsigned workers = (unsigned)bench_arg(argc, argv, 2, 1);
    if (g.n < 1)
        g.n = 1;
    char wl[64];
    snprintf(wl, sizeof wl, "W1-spawn-park-t%u", workers);
    long base_kib = bench_maxrss_kib();
    tp_pool *pool = bench_pool(workers);
    g.all_parked = BENCH_NONNULL(tp_chan_create(sizeof(long), 1));
    bench_main_task(pool, main_task, NULL);
    bench_report(wl, "wall", g.wall_ms, "ms");
    bench_report(wl, "spawn_park", g.spawn_park_ms, "ms");
    bench_report(wl, "peak_rss", (double)g.peak_kib / 1024, "MiB");
    bench_report(wl, "rss_per_task", (double)(g.peak_kib - base_kib) * 1024 / (double)g.n, "B");
    bench_check(wl, atomic_load(&g.sum) == g.n * (g.n - 1) / 2);
    tp_chan_destroy(g.all_parked);
    BENCH_TRY(tp_pool_destroy(pool));
    return 0;
}
