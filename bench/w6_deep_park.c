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
#include "park.h"

#define DEPTH 16 /* frames, each with a 256-byte array */

static atomic_long bad; /* tasks whose sum was wrong */

static BENCH_NOINLINE long deep(int depth, long seed)
{
    unsigned char buf[256];
    for (int i = 0; i < 256; i++)
        buf[i] = (unsigned char)(seed + depth + i);
    __asm__ volatile("" : : "r"(buf) : "memory"); /* buf really lives in this frame */
    long v = depth == 1 ? park_wait(seed) : deep(depth - 1, seed);
    for (int i = 0; i < 256; i++)
        v += buf[i];
    return v;
}

static void *parker(void *arg)
{
    long i = (long)(intptr_t)arg;
    if (deep(DEPTH, i) != i + DEPTH * 32640L)
        atomic_fetch_add(&bad, 1);
    return NULL;
}

static int check(void)
{
    return atomic_load(&bad) == 0;
}

int main(int argc, char **argv)
{
    return park_bench(argc, argv, "W6-deep-park", 100000, parker, check);
}
