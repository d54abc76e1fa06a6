/* W7 fork-join sum -- threadplex.
 * Usage: w7_forkjoin [N=10000000] [workers=1]
 * Workload (as the Go peer; there is no Boost.Fiber one): sum(lo, hi) returns lo when
 * lo == hi; otherwise it spawns two tasks for sum(lo, mid) and sum(mid+1, hi), mid =
 * lo + (hi-lo)/2, joins both (tp_join, which also frees them) and adds their results.
 * Main (a task, see bench.h) calls sum(0, N) directly, so about 2N tasks are spawned.
 * A task's (lo, hi) travel packed into its argument pointer (two 32-bit halves: no
 * allocation, and nothing that points into the shared stack) and its sum comes back as
 * the join result.
 * Reports: wall time of sum(0, N) (inside the main task); peak RSS, tasks spawned, context
 * switches per task and bytes copied per switch (tp_pool_stats; no peer equivalent); and
 * a check that the sum equals N(N+1)/2.
 */
#include "bench.h"

static struct {
    long n;
    double wall_ms;
    int64_t result;
} g;

static inline void *pack(uint32_t lo, uint32_t hi)
{
    return (void *)(uintptr_t)(((uint64_t)hi << 32) | lo);
}

static void *sum_task(void *arg);

static int64_t sum(uint32_t lo, uint32_t hi)
{
    if (lo == hi)
        return lo;
    uint32_t mid = lo + (hi - lo) / 2;
    void *left, *right;
    tp_task *l = BENCH_NONNULL(tp_spawn(NULL, sum_task, pack(lo, mid)));
    tp_task *r = BENCH_NONNULL(tp_spawn(NULL, sum_task, pack(mid + 1, hi)));
    BENCH_TRY(tp_join(l, &left, -1));
    BENCH_TRY(tp_join(r, &right, -1));
    return (int64_t)(intptr_t)left + (int64_t)(intptr_t)right;
}

static void *sum_task(void *arg)
{
    uint64_t v = (uint64_t)(uintptr_t)arg;
    return (void *)(intptr_t)sum((uint32_t)v, (uint32_t)(v >> 32));
}

static void *main_task(void *unused)
{
    int64_t t0 = bench_now_ns();
    g.result = sum(0, (uint32_t)g.n);
    g.wall_ms = (double)(bench_now_ns() - t0) / 1e6;
    return NULL;
}

int main(int argc, char **argv)
{
    g.n = bench_arg(argc, argv, 1, 10000000);
    unsigned workers = (unsigned)bench_arg(argc, argv, 2, 1);
    if (g.n < 0 || g.n > (long)UINT32_MAX - 1) {
        fprintf(stderr, "w7_forkjoin: N must be in [0, %lu]\n", (unsigned long)UINT32_MAX - 1);
        return 2;
    }
    char wl[64];
    snprintf(wl, sizeof wl, "W7-forkjoin-t%u", workers);
    tp_pool *pool = bench_pool(workers);
    bench_main_task(pool, main_task, NULL);
    tp_stats st;
    BENCH_TRY(tp_pool_stats(pool, &st));
    bench_report(wl, "wall", g.wall_ms, "ms");
    bench_report(wl, "peak_rss", (double)bench_maxrss_kib() / 1024, "MiB");
    bench_report(wl, "tasks", (double)st.tasks_spawned, "-");
    bench_report(wl, "switches_per_task", (double)st.switches / (double)st.tasks_spawned, "-");
    bench_report(wl, "copied_per_switch", st.switches ? (double)st.copied_bytes / (double)st.switches : 0, "B");
    bench_check(wl, g.result == (int64_t)g.n * (g.n + 1) / 2);
    BENCH_TRY(tp_pool_destroy(pool));
    return 0;
}
