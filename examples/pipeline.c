/* pipeline.c -- a channel pipeline across workers:
 *
 *   generator --> [filter: drop multiples of 3] --> [filter: square] --> sink
 *
 * Each stage is a task; stages talk over buffered channels and end by closing their
 * output when their input is closed and drained.  The sink checks the sum against a
 * plain loop.  Build: make; run: ./examples/pipeline [N]
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <threadplex.h>

struct stage {
    tp_chan *in, *out;
    uint64_t n; /* generator: how many values */
};

static void *generator(void *arg)
{
    struct stage *s = arg;
    for (uint64_t i = 1; i <= s->n; i++)
        if (tp_chan_send(s->out, &i, -1) < 0)
            return (void *)1;
    tp_chan_close(s->out);
    return NULL;
}

static void *drop_threes(void *arg)
{
    struct stage *s = arg;
    uint64_t v;
    while (tp_chan_recv(s->in, &v, -1) == 0)
        if (v % 3 != 0 && tp_chan_send(s->out, &v, -1) < 0)
            return (void *)1;
    tp_chan_close(s->out);
    return NULL;
}

static void *square(void *arg)
{
    struct stage *s = arg;
    uint64_t v;
    while (tp_chan_recv(s->in, &v, -1) == 0) {
        v *= v;
        if (tp_chan_send(s->out, &v, -1) < 0)
            return (void *)1;
    }
    tp_chan_close(s->out);
    return NULL;
}

static void *sink(void *arg)
{
    struct stage *s = arg;
    uint64_t v, sum = 0, count = 0;
    while (tp_chan_recv(s->in, &v, -1) == 0) {
        sum += v;
        count++;
    }
    printf("sink: received %" PRIu64 " values, sum of squares %" PRIu64 " (worker task %" PRIu64 ")\n",
           count, sum, tp_id(tp_self()));
    s->n = sum;
    return NULL;
}

int main(int argc, char **argv)
{
    uint64_t n = argc > 1 ? strtoull(argv[1], NULL, 10) : 100000;
    tp_pool *pool = tp_pool_create(NULL); /* one worker per CPU */
    tp_chan *c1 = tp_chan_create(sizeof(uint64_t), 64);
    tp_chan *c2 = tp_chan_create(sizeof(uint64_t), 64);
    tp_chan *c3 = tp_chan_create(sizeof(uint64_t), 64);
    if (!pool || !c1 || !c2 || !c3) {
        perror("threadplex");
        return 1;
    }
    /* Stage descriptions live in main's frame: main is a plain thread, whose stack does
       not move, so pointing tasks at it is fine (a task's locals would not be). */
    struct stage gen = {NULL, c1, n}, f1 = {c1, c2, 0}, f2 = {c2, c3, 0}, out = {c3, NULL, 0};
    tp_task *t[4] = {tp_spawn(pool, generator, &gen), tp_spawn(pool, drop_threes, &f1),
                     tp_spawn(pool, square, &f2), tp_spawn(pool, sink, &out)};
    int failed = 0;
    for (int i = 0; i < 4; i++) {
        void *res;
        if (!t[i] || tp_join(t[i], &res, -1) < 0 || res != NULL)
            failed = 1;
    }
    uint64_t expect = 0;
    for (uint64_t i = 1; i <= n; i++)
        if (i % 3 != 0)
            expect += i * i;
    tp_stats st;
    tp_pool_stats(pool, &st);
    printf("pipeline: %s (expected %" PRIu64 "), %" PRIu64 " context switches on %" PRIu64
           " workers, %" PRIu64 " stack bytes copied\n",
           !failed && out.n == expect ? "OK" : "FAILED", expect, st.switches, st.workers,
           st.copied_bytes);
    tp_chan_destroy(c1);
    tp_chan_destroy(c2);
    tp_chan_destroy(c3);
    tp_pool_destroy(pool);
    return !failed && out.n == expect ? 0 : 1;
}
