/* W4 sieve -- threadplex.
 * Usage: w4_sieve [P=10000] [workers=1]
 * Workload (as the Go and Boost.Fiber peers): the classic concurrent prime sieve.  A
 * generator task sends 2, 3, 4, ... on an unbuffered channel of long.  Main (a task, see
 * bench.h) receives a prime p from its current channel, spawns a filter task (in =
 * current channel, out = a new unbuffered channel) that forwards every value not
 * divisible by p, and continues on `out`.  Repeats until P primes have been received.
 * A filter's three parameters live in a small heap block (a task argument must not point
 * into the shared stack).
 * Reports: wall time from the generator's spawn to receipt of the P-th prime.  Like both
 * peers, the sieve is then abandoned: the process ends with _exit(0) without tearing
 * down the still-blocked tasks.  Extra lines (no peer equivalent, tp_pool_stats): context
 * switches per prime found and bytes copied per switch.  check: the 10,000th prime is
 * 104729.
 */
#include "bench.h"

#include <unistd.h>

struct filter {
    tp_chan *in, *out;
    long prime;
};

static struct {
    long p;
    double wall_ms;
    long prime; /* the P-th */
} g;

static void *generate(void *arg)
{
    tp_chan *out = arg;
    for (long i = 2;; i++)
        BENCH_TRY(tp_chan_send(out, &i, -1));
    return NULL;
}

static void *filter(void *arg)
{
    struct filter *f = arg;
    for (long v;;) {
        BENCH_TRY(tp_chan_recv(f->in, &v, -1));
        if (v % f->prime != 0)
            BENCH_TRY(tp_chan_send(f->out, &v, -1));
    }
    return NULL;
}

static void *main_task(void *unused)
{
    int64_t t0 = bench_now_ns();
    tp_chan *ch = BENCH_NONNULL(tp_chan_create(sizeof(long), 0));
    BENCH_NONNULL(tp_spawn(NULL, generate, ch));
    long prime = 0;
    for (long k = 0; k < g.p; k++) {
        BENCH_TRY(tp_chan_recv(ch, &prime, -1));
        struct filter *f = BENCH_NONNULL(malloc(sizeof *f));
        f->in = ch;
        f->out = BENCH_NONNULL(tp_chan_create(sizeof(long), 0));
        f->prime = prime;
        BENCH_NONNULL(tp_spawn(NULL, filter, f));
        ch = f->out;
    }
    g.wall_ms = (double)(bench_now_ns() - t0) / 1e6;
    g.prime = prime;
    return NULL;
}

int main(int argc, char **argv)
{
    g.p = bench_arg(argc, argv, 1, 10000);
    unsigned workers = (unsigned)bench_arg(argc, argv, 2, 1);
    char wl[64];
    snprintf(wl, sizeof wl, "W4-sieve-t%u", workers);
    tp_pool *pool = bench_pool(workers);
    bench_main_task(pool, main_task, NULL);
    tp_stats st;
    BENCH_TRY(tp_pool_stats(pool, &st));
    bench_report(wl, "wall", g.wall_ms, "ms");
    bench_report(wl, "switches_per_prime", (double)st.switches / (double)(g.p ? g.p : 1), "-");
    bench_report(wl, "copied_per_switch", st.switches ? (double)st.copied_bytes / (double)st.switches : 0, "B");
    bench_check(wl, g.p != 10000 || g.prime == 104729);
    _exit(0); /* abandon the sieve: its tasks are blocked forever */
}
