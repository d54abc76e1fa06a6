/* W6 deep-park -- threadplex.
 * Usage: w6_deep_park [N=100000] [workers=1]
 * Workload (as the Go and Boost.Fiber peers): as W1 (one unbuffered channel of long per
 * task, main is a task, spawns all N, waits until all are blocked, sends i on ch[i],
 * joins all), but each task first recurses 16 frames deep through deep(); every frame
 * fills a 256-byte local array with (seed + depth + i) (so ~4 KiB of live locals in
 * total) and the innermost frame bumps the "parked" counter and blocks in
 * tp_chan_recv(ch[i]).  After the value arrives each frame sums its array, so the arrays
 * stay live across the block: under copy-stack they are part of the segment saved while
 * the task is parked.  deep() is noinline and an empty asm takes the array's address,
 * so the compiler can neither merge the frames nor keep the arrays out of memory.
 * Reports: total wall time, spawn+park phase, peak RSS, (peak RSS - start RSS) * 1024 / N.
 * check: every task's deep() returned i + 16 * 32640 (256 consecutive bytes sum to
 * 0 + 1 + ... + 255 = 32640).
 */
#include "bench.h"

#include <stdatomic.h>

#define DEPTH 16 /* frames, each with a 256-byte array */

static struct {
    long n;
    tp_chan **ch;
    tp_task **tasks;
    tp_chan *all_parked;
    atomic_long parked;
    atomic_long bad; /* tasks whose sum was wrong */
    double wall_ms, spawn_park_ms;
    long peak_kib;
} g;

static BENCH_NOINLINE long deep(tp_chan *c, int depth, long seed)
{
    unsigned char buf[256];
    for (int i = 0; i < 256; i++)
        buf[i] = (unsigned char)(seed + depth + i);
    __asm__ volatile("" : : "r"(buf) : "memory"); /* buf really lives in this frame */
    long v = -1;
    if (depth == 1) {
        if (atomic_fetch_add_explicit(&g.parked, 1, memory_order_relaxed) + 1 == g.n) {
            long token = 1;
            BENCH_TRY(tp_chan_send(g.all_parked, &token, -1));
        }
        BENCH_TRY(tp_chan_recv(c, &v, -1));
    } else {
        v = deep(c, depth - 1, seed);
    }
    for (int i = 0; i < 256; i++)
        v += buf[i];
    return v;
}

static void *parker(void *arg)
{
    long i = (long)(intptr_t)arg;
    if (deep(g.ch[i], DEPTH, i) != i + DEPTH * 32640L)
        atomic_fetch_add(&g.bad, 1);
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
    g.n = bench_arg(argc, argv, 1, 100000);
    unsigned workers = (unsigned)bench_arg(argc, argv, 2, 1);
    if (g.n < 1)
        g.n = 1;
    char wl[64];
    snprintf(wl, sizeof wl, "W6-deep-park-t%u", workers);
    long base_kib = bench_maxrss_kib();
    tp_pool *pool = bench_pool(workers);
    g.all_parked = BENCH_NONNULL(tp_chan_create(sizeof(long), 1));
    bench_main_task(pool, main_task, NULL);
    bench_report(wl, "wall", g.wall_ms, "ms");
    bench_report(wl, "spawn_park", g.spawn_park_ms, "ms");
    bench_report(wl, "peak_rss", (double)g.peak_kib / 1024, "MiB");
    bench_report(wl, "rss_per_task", (double)(g.peak_kib - base_kib) * 1024 / (double)g.n, "B");
    bench_check(wl, atomic_load(&g.bad) == 0);
    tp_chan_destroy(g.all_parked);
    BENCH_TRY(tp_pool_destroy(pool));
    return 0;
}
