/* W2 pingpong-local -- threadplex.
 * Usage: w2_pingpong_local [R=1000000]
 * Workload (as the Go and Boost.Fiber peers): a pool of ONE worker.  Task "ping" sends a
 * long on unbuffered channel a, task "pong" receives it and sends it + 1 on unbuffered
 * channel b, ping receives it: that is one round trip; R round trips.  Main (a task, see
 * bench.h) spawns pong then ping and joins both.
 * Reports: ns per round trip, timed inside ping from before its first send to after its
 * last receive.  Extra lines (no peer equivalent), from tp_pool_stats over the whole
 * run: context switches per round trip, and stack bytes copied per switch (copied_bytes
 * / switches: the copy-stack cost).  check: ping's last value is R.
 */
#include "bench.h"

static struct {
    long r;
    tp_chan *a, *b;
    int64_t elapsed_ns;
    long last;
} g;

static void *pong(void *unused)
{
    long v;
    for (long i = 0; i < g.r; i++) {
        BENCH_TRY(tp_chan_recv(g.a, &v, -1));
        v++;
        BENCH_TRY(tp_chan_send(g.b, &v, -1));
    }
    return NULL;
}

static void *ping(void *unused)
{
    long v = 0;
    int64_t t0 = bench_now_ns();
    for (long i = 0; i < g.r; i++) {
        BENCH_TRY(tp_chan_send(g.a, &v, -1));
        BENCH_TRY(tp_chan_recv(g.b, &v, -1));
    }
    g.elapsed_ns = bench_now_ns() - t0;
    g.last = v;
    return NULL;
}

static void *main_task(void *unused)
{
    tp_task *po = BENCH_NONNULL(tp_spawn(NULL, pong, NULL));
    tp_task *pi = BENCH_NONNULL(tp_spawn(NULL, ping, NULL));
    BENCH_TRY(tp_join(pi, NULL, -1));
    BENCH_TRY(tp_join(po, NULL, -1));
    return NULL;
}

int main(int argc, char **argv)
{
    const char *wl = "W2-pingpong-local";
    g.r = bench_arg(argc, argv, 1, 1000000);
    if (g.r < 1)
        g.r = 1;
    tp_pool *pool = bench_pool(1);
    g.a = BENCH_NONNULL(tp_chan_create(sizeof(long), 0));
    g.b = BENCH_NONNULL(tp_chan_create(sizeof(long), 0));
    bench_main_task(pool, main_task, NULL);
    tp_stats st;
    BENCH_TRY(tp_pool_stats(pool, &st));
    bench_report(wl, "round_trip", (double)g.elapsed_ns / (double)g.r, "ns");
    bench_report(wl, "switches_per_rt", (double)st.switches / (double)g.r, "-");
    bench_report(wl, "copied_per_switch", st.switches ? (double)st.copied_bytes / (double)st.switches : 0, "B");
    bench_check(wl, g.last == g.r);
    BENCH_TRY(tp_chan_destroy(g.a));
    BENCH_TRY(tp_chan_destroy(g.b));
    BENCH_TRY(tp_pool_destroy(pool));
    return 0;
}
