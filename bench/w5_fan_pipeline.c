/* W5 fan-out/fan-in pipeline -- threadplex.
 * Usage: w5_fan_pipeline [M=10000000] [workers=1]
 * Workload (as the Go and Boost.Fiber peers): a producer task sends 0..M-1 on ONE shared
 * buffered channel of uint64_t with capacity 128 (`in`) and closes it; 8 worker tasks
 * receive from `in` until it fails with EPIPE (closed and drained), apply hash() and
 * send on ONE shared buffered channel of capacity 128 (`out`); a collector task receives
 * exactly M values and sums them (mod 2^64).  Main (a task, see bench.h) spawns the
 * producer, the 8 workers and the collector, joins the collector (end of timing), then
 * joins the rest.
 * Reports: items per second (M / wall time from spawning the producer to the collector
 * finishing) and OK/FAIL for the checksum against a sequential loop (untimed).  Extra
 * lines (no peer equivalent, tp_pool_stats): context switches per item and bytes copied
 * per switch.
 */
#include "bench.h"

#define FAN 8

static struct {
    long m;
    tp_chan *in, *out;
    uint64_t sum;
    double secs;
} g;

static inline uint64_t hash(uint64_t x)
{
    x *= 0x9E3779B97F4A7C15ull;
    return x ^ (x >> 29);
}

static void *producer(void *unused)
{
    for (uint64_t i = 0; i < (uint64_t)g.m; i++)
        BENCH_TRY(tp_chan_send(g.in, &i, -1));
    BENCH_TRY(tp_chan_close(g.in));
    return NULL;
}

static void *worker(void *unused)
{
    uint64_t v;
    while (tp_chan_recv(g.in, &v, -1) == 0) {
        v = hash(v);
        BENCH_TRY(tp_chan_send(g.out, &v, -1));
    }
    if (errno != EPIPE)
        BENCH_TRY(-1);
    return NULL;
}

static void *collector(void *unused)
{
    uint64_t s = 0, v;
    for (long i = 0; i < g.m; i++) {
        BENCH_TRY(tp_chan_recv(g.out, &v, -1));
        s += v;
    }
    g.sum = s;
    return NULL;
}

static void *main_task(void *unused)
{
    tp_task *tasks[FAN + 1];
    int64_t t0 = bench_now_ns();
    tasks[0] = BENCH_NONNULL(tp_spawn(NULL, producer, NULL));
    for (int w = 0; w < FAN; w++)
        tasks[w + 1] = BENCH_NONNULL(tp_spawn(NULL, worker, NULL));
    tp_task *coll = BENCH_NONNULL(tp_spawn(NULL, collector, NULL));
    BENCH_TRY(tp_join(coll, NULL, -1));
    g.secs = (double)(bench_now_ns() - t0) / 1e9;
    for (int i = 0; i < FAN + 1; i++)
        BENCH_TRY(tp_join(tasks[i], NULL, -1));
    return NULL;
}

int main(int argc, char **argv)
{
    g.m = bench_arg(argc, argv, 1, 10000000);
    unsigned workers = (unsigned)bench_arg(argc, argv, 2, 1);
    char wl[64];
    snprintf(wl, sizeof wl, "W5-fan-pipeline-t%u", workers);
    uint64_t expect = 0;
    for (uint64_t i = 0; i < (uint64_t)g.m; i++)
        expect += hash(i);
    tp_pool *pool = bench_pool(workers);
    g.in = BENCH_NONNULL(tp_chan_create(sizeof(uint64_t), 128));
    g.out = BENCH_NONNULL(tp_chan_create(sizeof(uint64_t), 128));
    bench_main_task(pool, main_task, NULL);
    tp_stats st;
    BENCH_TRY(tp_pool_stats(pool, &st));
    bench_report(wl, "throughput", (double)g.m / g.secs, "items/s");
    bench_report(wl, "switches_per_item", (double)st.switches / (double)(g.m ? g.m : 1), "-");
    bench_report(wl, "copied_per_switch", st.switches ? (double)st.copied_bytes / (double)st.switches : 0, "B");
    bench_check(wl, g.sum == expect);
    BENCH_TRY(tp_chan_destroy(g.in));
    BENCH_TRY(tp_chan_destroy(g.out));
    BENCH_TRY(tp_pool_destroy(pool));
    return 0;
}
