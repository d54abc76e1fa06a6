/* million.c -- park a million tasks at once and report what each one costs.
 *
 * Every task blocks receiving from its own unbuffered channel.  Once all of them are
 * parked, main (a plain thread) sends each one a value and waits for them all.  Memory
 * per parked task = growth of the resident set while they are all parked, divided by N:
 * it includes the task's control block, its saved stack segment and its channel.
 * Run: ./examples/million [N] [workers]
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <threadplex.h>
#include <unistd.h>

static long rss_kib(void)
{
    FILE *f = fopen("/proc/self/statm", "r");
    long pages = 0, resident = 0;
    if (f) {
        if (fscanf(f, "%ld %ld", &pages, &resident) != 2)
            resident = 0;
        fclose(f);
    }
    return resident * (sysconf(_SC_PAGESIZE) / 1024);
}

static void *waiter(void *arg)
{
    tp_chan *ch = arg;
    uint64_t v;
    if (tp_chan_recv(ch, &v, -1) < 0)
        return (void *)-1;
    return (void *)(uintptr_t)v;
}

int main(int argc, char **argv)
{
    long n = argc > 1 ? atol(argv[1]) : 1000000;
    unsigned workers = argc > 2 ? (unsigned)atoi(argv[2]) : 2;
    tp_pool_attr attr = {.workers = workers, .stack_size = 0};
    tp_pool *pool = tp_pool_create(&attr);
    tp_chan **ch = calloc((size_t)n, sizeof *ch);
    tp_task **t = calloc((size_t)n, sizeof *t);
    if (!pool || !ch || !t) {
        perror("threadplex");
        return 1;
    }
    long base = rss_kib();
    int64_t t0 = tp_now();
    for (long i = 0; i < n; i++) {
        ch[i] = tp_chan_create(sizeof(uint64_t), 0);
        t[i] = ch[i] ? tp_spawn(pool, waiter, ch[i]) : NULL;
        if (!t[i]) {
            perror("spawn");
            return 1;
        }
    }
    tp_stats st;
    do { /* wait until every task is parked in its receive */
        tp_pool_stats(pool, &st);
        if (st.tasks_parked < (uint64_t)n)
            usleep(1000);
    } while (st.tasks_parked < (uint64_t)n);
    int64_t t1 = tp_now();
    long parked_rss = rss_kib();
    for (long i = 0; i < n; i++) {
        uint64_t v = (uint64_t)i;
        tp_chan_send(ch[i], &v, -1);
    }
    uint64_t sum = 0;
    for (long i = 0; i < n; i++) {
        void *r;
        tp_join(t[i], &r, -1);
        sum += (uintptr_t)r;
        tp_chan_destroy(ch[i]);
    }
    int64_t t2 = tp_now();
    int ok = sum == (uint64_t)n * (uint64_t)(n - 1) / 2;
    printf("million: %ld tasks parked at once on %u workers\n", n, workers);
    printf("million: saved stack bytes while parked: %" PRIu64 " (%.0f B per task)\n",
           st.saved_bytes, (double)st.saved_bytes / (double)n);
    printf("million: resident memory per parked task: %.0f B (task + saved stack + channel)\n",
           (double)(parked_rss - base) * 1024.0 / (double)n);
    printf("million: spawn+park %" PRId64 " ms, wake+finish %" PRId64 " ms, check %s\n",
           t1 - t0, t2 - t1, ok ? "OK" : "FAILED");
    free(ch);
    free(t);
    tp_pool_destroy(pool);
    return ok ? 0 : 1;
}
