/* W3 pingpong-cross -- threadplex.
 * Usage: w3_pingpong_cross [R=1000000]
 * Workload (as the Go and Boost.Fiber peers): as W2 (ping/pong over two unbuffered
 * channels a and b, R round trips) but a pool of TWO workers with ping and pong on
 * different workers, so every hop wakes a task of the other worker.
 * Placement: a task that has started never changes worker, but a task that has not
 * started may be stolen by an idle worker.  So ping and pong are spawned from the plain
 * main thread (such spawns go to a worker's stealable queue, never to its private
 * "run next" slot) and each, once started, records its thread id (gettid) and spins --
 * without yielding, so its worker can run nothing else -- until the other has started:
 * the second one can then only be started by the other worker.  Each task reads gettid
 * again at its end; check FAILs if the two tasks shared a thread or one moved.
 * Reports: ns per round trip, timed inside ping from its first send to its last
 * receive; switches per round trip, bytes copied per switch and worker sleeps in the
 * kernel per round trip (tp_pool_stats; no peer equivalent); and,
 * as workload W3-idle-pool, the CPU the process uses (getrusage, user + system) during
 * ~1 s right after the ping-pong, while the 2-worker pool is idle and the main thread
 * sleeps, as a percentage of one core.  check: last value R and distinct threads.
 */
#include "bench.h"

#include <stdatomic.h>
#include <sys/syscall.h>
#include <unistd.h>

#define HANDSHAKE_NS 10000000000LL /* give up (check FAIL) if the partner never starts */

static struct {
    long r;
    tp_chan *a, *b;
    int64_t elapsed_ns;
    long last;
    atomic_int started;       /* tasks that have recorded their thread */
    long tid[2], tid_end[2];  /* [0] ping, [1] pong */
    atomic_int handshake_bad; /* a partner never started */
} g;

static long tid_now(void) { return (long)syscall(SYS_gettid); }

/* Record this task's thread, then hold the worker until the partner has started. */
static void handshake(int who)
{
    g.tid[who] = tid_now();
    atomic_fetch_add(&g.started, 1);
    int64_t t0 = bench_now_ns();
    while (atomic_load(&g.started) < 2) {
        if (bench_now_ns() - t0 > HANDSHAKE_NS) {
            atomic_store(&g.handshake_bad, 1);
            break;
        }
    }
}

static void *pong(void *unused)
{
    long v;
    handshake(1);
    for (long i = 0; i < g.r; i++) {
        BENCH_TRY(tp_chan_recv(g.a, &v, -1));
        v++;
        BENCH_TRY(tp_chan_send(g.b, &v, -1));
    }
    g.tid_end[1] = tid_now();
    return NULL;
}

static void *ping(void *unused)
{
    long v = 0;
    handshake(0);
    int64_t t0 = bench_now_ns();
    for (long i = 0; i < g.r; i++) {
        BENCH_TRY(tp_chan_send(g.a, &v, -1));
        BENCH_TRY(tp_chan_recv(g.b, &v, -1));
    }
    g.elapsed_ns = bench_now_ns() - t0;
    g.last = v;
    g.tid_end[0] = tid_now();
    return NULL;
}

/* Percent of one core the process used while idle for about `ms` milliseconds. */
static double idle_cpu_pct(int ms)
{
    int64_t c0 = bench_cpu_ns(), t0 = bench_now_ns();
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000};
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
        ;
    int64_t c1 = bench_cpu_ns(), t1 = bench_now_ns();
    return 100.0 * (double)(c1 - c0) / (double)(t1 - t0);
}

int main(int argc, char **argv)
{
    const char *wl = "W3-pingpong-cross";
    g.r = bench_arg(argc, argv, 1, 1000000);
    if (g.r < 1)
        g.r = 1;
    tp_pool *pool = bench_pool(2);
    g.a = BENCH_NONNULL(tp_chan_create(sizeof(long), 0));
    g.b = BENCH_NONNULL(tp_chan_create(sizeof(long), 0));
    tp_task *po = BENCH_NONNULL(tp_spawn(pool, pong, NULL));
    tp_task *pi = BENCH_NONNULL(tp_spawn(pool, ping, NULL));
    BENCH_TRY(tp_join(pi, NULL, -1));
    BENCH_TRY(tp_join(po, NULL, -1));
    tp_stats st;
    BENCH_TRY(tp_pool_stats(pool, &st));
    double idle = idle_cpu_pct(1000);
    bench_report(wl, "round_trip", (double)g.elapsed_ns / (double)g.r, "ns");
    bench_report(wl, "switches_per_rt", (double)st.switches / (double)g.r, "-");
    bench_report(wl, "copied_per_switch", st.switches ? (double)st.copied_bytes / (double)st.switches : 0, "B");
    bench_report(wl, "sleeps_per_rt", (double)st.sleeps / (double)g.r, "-");
    bench_check(wl, g.last == g.r && !atomic_load(&g.handshake_bad) && g.tid[0] != g.tid[1] &&
                        g.tid_end[0] == g.tid[0] && g.tid_end[1] == g.tid[1]);
    bench_report("W3-idle-pool", "cpu", idle, "%");
    BENCH_TRY(tp_chan_destroy(g.a));
    BENCH_TRY(tp_chan_destroy(g.b));
    BENCH_TRY(tp_pool_destroy(pool));
    return 0;
}
