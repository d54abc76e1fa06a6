/* select_timeout.c -- several producers multiplexed with tp_select and a timeout.
 *
 * Three producer tasks send on their own channels at different paces and close them
 * when done; the slow one pauses long enough for the consumer's timeout to fire.  The
 * consumer waits on all channels at once with a deadline, prints what arrives and every
 * timeout, drops a channel from its list when it reports EPIPE (closed and drained), and
 * stops when none is left.  Exit status 0 when every value arrived exactly once.
 * Build: make; run: ./examples/select_timeout
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <threadplex.h>

#define NPROD 3
#define TIMEOUT_MS 40

struct producer {
    const char *name;
    tp_chan *ch;
    int count;   /* values to send */
    int pace_ms; /* pause before each */
};

static void *produce(void *arg)
{
    struct producer *p = arg;
    for (int i = 1; i <= p->count; i++) {
        tp_sleep(tp_now() + p->pace_ms);
        if (tp_chan_send(p->ch, &i, -1) < 0)
            return (void *)1;
    }
    tp_chan_close(p->ch);
    return NULL;
}

struct consumer {
    struct producer *prod;
    int received, timeouts;
};

static void *consume(void *arg)
{
    struct consumer *c = arg;
    int64_t t0 = tp_now();
    int vals[NPROD];
    tp_case cases[NPROD];
    int owner[NPROD]; /* which producer each case belongs to (cases move when dropped) */
    size_t n = NPROD;
    for (int i = 0; i < NPROD; i++) {
        cases[i] = (tp_case){.ch = c->prod[i].ch, .op = TP_RECV, .elem = &vals[i]};
        owner[i] = i;
    }
    while (n > 0) {
        int i = tp_select(cases, n, tp_now() + TIMEOUT_MS);
        int64_t at = tp_now() - t0;
        if (i < 0) {
            if (errno != ETIMEDOUT)
                return (void *)1;
            printf("%5" PRId64 " ms  timeout: nothing for %d ms\n", at, TIMEOUT_MS);
            c->timeouts++;
            continue;
        }
        struct producer *p = &c->prod[owner[i]];
        if (cases[i].err == EPIPE) {
            printf("%5" PRId64 " ms  %s closed\n", at, p->name);
            cases[i] = cases[--n];
            owner[i] = owner[n];
            continue;
        }
        printf("%5" PRId64 " ms  %s sent %d\n", at, p->name, *(int *)cases[i].elem);
        c->received++;
    }
    return NULL;
}

int main(void)
{
    tp_pool *pool = tp_pool_create(NULL);
    if (!pool) {
        perror("tp_pool_create");
        return 1;
    }
    struct producer prod[NPROD] = {
        {"fast", NULL, 8, 5},
        {"medium", NULL, 4, 15},
        {"slow", NULL, 2, 120}, /* its pauses outlast the consumer's timeout */
    };
    int expected = 0;
    for (int i = 0; i < NPROD; i++) {
        prod[i].ch = tp_chan_create(sizeof(int), 0);
        if (!prod[i].ch) {
            perror("tp_chan_create");
            return 1;
        }
        expected += prod[i].count;
    }
    /* main is a plain thread: its locals stay put, so tasks may point at them */
    struct consumer cons = {prod, 0, 0};
    tp_task *ct = tp_spawn(pool, consume, &cons);
    tp_task *pt[NPROD];
    for (int i = 0; i < NPROD; i++)
        pt[i] = tp_spawn(pool, produce, &prod[i]);
    if (!ct || !pt[0] || !pt[1] || !pt[2]) {
        perror("tp_spawn");
        return 1;
    }
    void *bad = NULL, *r;
    for (int i = 0; i < NPROD; i++)
        if (tp_join(pt[i], &r, -1) < 0 || r)
            bad = r ? r : (void *)1;
    if (tp_join(ct, &r, -1) < 0 || r)
        bad = (void *)1;
    for (int i = 0; i < NPROD; i++)
        tp_chan_destroy(prod[i].ch);
    tp_pool_destroy(pool);
    printf("received %d of %d values, %d timeouts\n", cons.received, expected, cons.timeouts);
    return !bad && cons.received == expected ? 0 : 1;
}
