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
#include "park.h"

static atomic_long sum; /* of the values received */

static void *parker(void *arg)
{
    atomic_fetch_add_explicit(&sum, park_wait((long)(intptr_t)arg), memory_order_relaxed);
    return NULL;
}

static int check(void)
{
    return atomic_load(&sum) == park.n * (park.n - 1) / 2;
}

int main(int argc, char **argv)
{
    return park_bench(argc, argv, "W1-spawn-park", 1000000, parker, check);
}
