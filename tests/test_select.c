/* test_select.c -- tp_select: argument errors, fairness, closed channels, deadlines,
 * repeated channels, and races with other selects, plain operations and close, from
 * tasks on every worker and from plain threads.  Every message is counted. */
#include "tp_test.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <string.h>

#define SENTINEL 7777 /* an err value select must leave alone */

/* Run fn(arg) as a task of a fresh pool and return its result. */
static void *in_task(void *(*fn)(void *), void *arg)
{
    tp_pool *p = test_pool(2);
    tp_task *t = tp_spawn(p, fn, arg);
    ck_assert_ptr_nonnull(t);
    void *res = (void *)1;
    ck_assert_int_eq(tp_join(t, &res, -1), 0);
    ck_assert_int_eq(tp_pool_destroy(p), 0);
    return res;
}

static tp_case mk(tp_chan *ch, int op, void *elem)
{
    tp_case c = {.ch = ch, .op = op, .elem = elem, .err = SENTINEL};
    return c;
}

/* ------------------------------------------------------------- bad arguments ---- */

START_TEST(test_select_bad_args)
{
    tp_chan *a = tp_chan_create(sizeof(int), 1);
    int v = 0;
    tp_case c[2] = {mk(a, TP_RECV, &v), mk(a, TP_SEND, &v)};
    ck_assert_err(tp_select(NULL, 1, 0), EINVAL);
    ck_assert_err(tp_select(NULL, 0, 0), EINVAL);
    ck_assert_err(tp_select(c, 0, -1), EINVAL);
    ck_assert_err(tp_select(c, 2, -2), EINVAL);
    c[1].ch = NULL;
    ck_assert_err(tp_select(c, 2, 0), EINVAL);
    c[1].ch = a;
    c[1].elem = NULL;
    ck_assert_err(tp_select(c, 2, 0), EINVAL);
    c[1].elem = &v;
    c[1].op = 0;
    ck_assert_err(tp_select(c, 2, 0), EINVAL);
    c[1].op = TP_SEND | TP_RECV;
    ck_assert_err(tp_select(c, 2, 0), EINVAL);
    ck_assert_int_eq(c[0].err, SENTINEL);
    ck_assert_int_eq(c[1].err, SENTINEL);
    /* no case at all, with a deadline: sleeps until it */
    int64_t d = in_ms(20);
    ck_assert_err(tp_select(c, 0, d), ETIMEDOUT);
    ck_assert(tp_now() >= d);
    ck_assert_err(tp_select(c, 0, 0), ETIMEDOUT);
    ck_assert_int_eq(tp_chan_destroy(a), 0);
}
END_TEST

/* ------------------------------------------------------------------ fairness ---- */

#define ROUNDS 20000

/* k always-ready cases, ROUNDS selects: each case must be chosen close to ROUNDS/k
   times.  The bound is 8 standard deviations of the binomial count: a fair select fails
   it with probability far below 1e-12; one that favours the first ready case fails it
   always.  With `gap`, a never-ready case sits among them at index 1: a select that
   starts at a random case and scans on would pick the case after it twice as often. */
static void fairness_round(int recv, int k, int gap)
{
    int n = k + gap, bad = 0;
    tp_chan *ch[5];
    tp_case c[5];
    int val[5] = {0};
    long count[5] = {0};
    /* no ck_assert inside the loops: in fork mode each one is a write to a pipe */
    for (int i = 0; i < n; i++) {
        bool blocked = gap && i == 1;
        ch[i] = tp_chan_create(sizeof(int), blocked ? 0 : ROUNDS);
        ck_assert_ptr_nonnull(ch[i]);
        for (int j = 0; recv && !blocked && j < ROUNDS; j++)
            bad += tp_chan_send(ch[i], &j, 0) != 0;
        c[i] = mk(ch[i], recv ? TP_RECV : TP_SEND, &val[i]);
    }
    for (int r = 0; r < ROUNDS && !bad; r++) {
        int i = tp_select(c, (size_t)n, 0);
        if (i < 0 || i >= n || c[i].err != 0) {
            bad++;
            break;
        }
        c[i].err = SENTINEL;
        if (recv && val[i] != (int)count[i]) /* each channel delivers in order */
            bad++;
        count[i]++;
    }
    ck_assert_int_eq(bad, 0);
    double p = 1.0 / k, mean = ROUNDS * p;
    double bound = 8.0 * __builtin_sqrt(ROUNDS * p * (1 - p));
    for (int i = 0; i < n; i++) {
        ck_assert_int_eq(c[i].err, SENTINEL);
        if (gap && i == 1) {
            ck_assert_int_eq(count[i], 0);
            continue;
        }
        ck_assert_msg(count[i] > mean - bound && count[i] < mean + bound,
                      "k=%d gap=%d case %d chosen %ld times of %d", k, gap, i, count[i],
                      ROUNDS);
    }
    for (int i = 0; i < n; i++)
        ck_assert_int_eq(tp_chan_destroy(ch[i]), 0);
}

static void *fairness(void *arg)
{
    int recv = (int)(intptr_t)arg;
    for (int k = 2; k <= 4; k++)
        for (int gap = 0; gap <= 1; gap++)
            fairness_round(recv, k, gap);
    return NULL;
}

START_TEST(test_select_fair_thread)
{
    fairness((void *)0);
    fairness((void *)1);
}
END_TEST

START_TEST(test_select_fair_task)
{
    ck_assert_ptr_null(in_task(fairness, (void *)0));
    ck_assert_ptr_null(in_task(fairness, (void *)1));
}
END_TEST

/* ------------------------------------------------------------ closed channels ---- */

static void *closed_cases(void *arg)
{
    (void)arg;
    tp_chan *open = tp_chan_create(sizeof(int), 0);
    tp_chan *shut = tp_chan_create(sizeof(int), 2);
    int v = 42, a = 0, b = 0;
    ck_assert_int_eq(tp_chan_send(shut, &v, 0), 0);
    ck_assert_int_eq(tp_chan_close(shut), 0);
    /* a closed channel still drains what it buffered, with err 0 */
    tp_case c[2] = {mk(open, TP_RECV, &a), mk(shut, TP_RECV, &b)};
    ck_assert_int_eq(tp_select(c, 2, 0), 1);
    ck_assert_int_eq(c[1].err, 0);
    ck_assert_int_eq(b, 42);
    ck_assert_int_eq(c[0].err, SENTINEL);
    /* drained: EPIPE, written only in the returned case */
    c[1].err = SENTINEL;
    b = -1;
    ck_assert_int_eq(tp_select(c, 2, -1), 1);
    ck_assert_int_eq(c[1].err, EPIPE);
    ck_assert_int_eq(c[0].err, SENTINEL);
    ck_assert_int_eq(b, -1);
    /* a send on a closed channel completes at once with EPIPE */
    tp_case s[2] = {mk(open, TP_SEND, &a), mk(shut, TP_SEND, &v)};
    ck_assert_int_eq(tp_select(s, 2, -1), 1);
    ck_assert_int_eq(s[1].err, EPIPE);
    ck_assert_int_eq(s[0].err, SENTINEL);
    ck_assert_int_eq(tp_chan_destroy(open), 0);
    ck_assert_int_eq(tp_chan_destroy(shut), 0);
    return NULL;
}

START_TEST(test_select_closed)
{
    closed_cases(NULL);
    ck_assert_ptr_null(in_task(closed_cases, NULL));
}
END_TEST

/* A select blocked on two channels when one of them is closed. */
struct blocked {
    tp_chan *a, *b;
    int op;
    int idx, err, other_err;
};

static void *select_two(void *arg)
{
    struct blocked *x = arg;
    int va = 1, vb = 2;
    tp_case c[2] = {mk(x->a, x->op, &va), mk(x->b, x->op, &vb)};
    x->idx = tp_select(c, 2, in_ms(10000));
    x->err = c[x->idx < 0 ? 0 : x->idx].err;
    x->other_err = c[x->idx == 0 ? 1 : 0].err;
    return NULL;
}

START_TEST(test_select_close_wakes)
{
    tp_pool *p = test_pool(2);
    for (int op = TP_SEND; op <= TP_RECV; op++) {
        struct blocked *x = calloc(1, sizeof *x);
        x->a = tp_chan_create(sizeof(int), 0);
        x->b = tp_chan_create(sizeof(int), 0);
        x->op = op;
        tp_task *t = tp_spawn(p, select_two, x);
        wait_parked(p, 1);
        ck_assert_err(tp_chan_destroy(x->b), EBUSY); /* the select is registered */
        ck_assert_int_eq(tp_chan_close(x->b), 0);
        ck_assert_int_eq(tp_join(t, NULL, -1), 0);
        ck_assert_int_eq(x->idx, 1);
        ck_assert_int_eq(x->err, EPIPE);
        ck_assert_int_eq(x->other_err, SENTINEL);
        /* its registration on a was withdrawn */
        ck_assert_int_eq(tp_chan_destroy(x->a), 0);
        ck_assert_int_eq(tp_chan_destroy(x->b), 0);
        free(x);
    }
    ck_assert_int_eq(tp_pool_destroy(p), 0);
}
END_TEST

/* ------------------------------------------------------------------ deadlines ---- */

static void *deadlines(void *arg)
{
    (void)arg;
    tp_chan *a = tp_chan_create(sizeof(int), 0), *b = tp_chan_create(sizeof(int), 1);
    int x = 5, y = 0;
    ck_assert_int_eq(tp_chan_send(b, &x, 0), 0); /* b is full: a send must wait */
    tp_case c[2] = {mk(a, TP_RECV, &y), mk(b, TP_SEND, &x)};
    ck_assert_err(tp_select(c, 2, 0), ETIMEDOUT);
    ck_assert_err(tp_select(c, 2, 1), ETIMEDOUT); /* long past */
    int64_t d = in_ms(30);
    ck_assert_err(tp_select(c, 2, d), ETIMEDOUT);
    ck_assert(tp_now() >= d);
    ck_assert_int_eq(c[0].err, SENTINEL);
    ck_assert_int_eq(c[1].err, SENTINEL);
    ck_assert_int_eq(y, 0);
    /* nothing was left queued, and the value was not sent */
    ck_assert_int_eq(tp_chan_recv(b, &y, 0), 0);
    ck_assert_err(tp_chan_recv(b, &y, 0), ETIMEDOUT);
    ck_assert_int_eq(tp_chan_destroy(a), 0);
    ck_assert_int_eq(tp_chan_destroy(b), 0);
    return NULL;
}

START_TEST(test_select_deadline)
{
    deadlines(NULL);
    ck_assert_ptr_null(in_task(deadlines, NULL));
}
END_TEST

/* ---------------------------------------------------- one channel, many cases ---- */

static void *same_channel(void *arg)
{
    (void)arg;
    tp_chan *a = tp_chan_create(sizeof(int), 0);
    int x = 1, y = 0, z = 0;
    /* a select's own send and receive never meet each other */
    tp_case c[3] = {mk(a, TP_RECV, &y), mk(a, TP_SEND, &x), mk(a, TP_RECV, &z)};
    ck_assert_err(tp_select(c, 3, in_ms(20)), ETIMEDOUT);
    ck_assert_int_eq(tp_chan_destroy(a), 0);
    /* buffered: one value, two receive cases, one completes */
    tp_chan *b = tp_chan_create(sizeof(int), 4);
    x = 9;
    ck_assert_int_eq(tp_chan_send(b, &x, 0), 0);
    tp_case d[2] = {mk(b, TP_RECV, &y), mk(b, TP_RECV, &z)};
    int i = tp_select(d, 2, -1);
    ck_assert(i == 0 || i == 1);
    ck_assert_int_eq(i == 0 ? y : z, 9);
    ck_assert_int_eq(i == 0 ? z : y, 0);
    ck_assert_err(tp_select(d, 2, 0), ETIMEDOUT);
    ck_assert_int_eq(tp_chan_destroy(b), 0);
    return NULL;
}

START_TEST(test_select_same_channel)
{
    same_channel(NULL);
    ck_assert_ptr_null(in_task(same_channel, NULL));
}
END_TEST

/* A task blocks with the same channel in two receive cases plus other channels (more
   than the stack-array size): one send completes exactly one case, and nothing stays
   queued (a second send finds no receiver, destroy succeeds). */
#define MANY 40

struct many {
    tp_chan *ch[5];
    int got[MANY];
    int idx;
};

static void *select_many(void *arg)
{
    struct many *m = arg;
    int got[MANY];
    tp_case c[MANY];
    for (int i = 0; i < MANY; i++) {
        got[i] = -1;
        c[i] = mk(m->ch[i % 5], TP_RECV, &got[i]);
    }
    m->idx = tp_select(c, MANY, -1);
    for (int i = 0; i < MANY; i++) {
        m->got[i] = got[i];
        ck_assert_int_eq(c[i].err, i == m->idx ? 0 : SENTINEL);
    }
    return NULL;
}

START_TEST(test_select_many_cases)
{
    tp_pool *p = test_pool(2);
    struct many *m = calloc(1, sizeof *m);
    for (int i = 0; i < 5; i++)
        m->ch[i] = tp_chan_create(sizeof(int), 0);
    tp_task *t = tp_spawn(p, select_many, m);
    wait_parked(p, 1);
    int v = 123;
    ck_assert_int_eq(tp_chan_send(m->ch[3], &v, -1), 0);
    ck_assert_int_eq(tp_join(t, NULL, -1), 0);
    ck_assert_int_eq(m->idx % 5, 3);
    for (int i = 0; i < MANY; i++)
        ck_assert_int_eq(m->got[i], i == m->idx ? 123 : -1);
    ck_assert_err(tp_chan_send(m->ch[3], &v, 0), ETIMEDOUT);
    for (int i = 0; i < 5; i++)
        ck_assert_int_eq(tp_chan_destroy(m->ch[i]), 0);
    free(m);
    ck_assert_int_eq(tp_pool_destroy(p), 0);
}
END_TEST

/* --------------------------------------------------------------------- ENOMEM ---- */

static void *no_memory(void *arg)
{
    (void)arg;
    tp_chan *a = tp_chan_create(sizeof(int), 0);
    int v = 0, w[MANY];
    tp_case c[MANY];
    for (int i = 0; i < MANY; i++)
        c[i] = mk(a, TP_RECV, &w[i]);
    if (tp_self()) { /* a task that never parked: the 2nd allocation saves its stack */
        atomic_store(&tp__alloc_countdown, 2);
        ck_assert_err(tp_select(c, 1, in_ms(5000)), ENOMEM);
    }
    atomic_store(&tp__alloc_countdown, 1); /* the registration block */
    ck_assert_err(tp_select(c, 1, in_ms(5000)), ENOMEM);
    atomic_store(&tp__alloc_countdown, 1); /* the scratch arrays of a large select */
    ck_assert_err(tp_select(c, MANY, in_ms(5000)), ENOMEM);
    atomic_store(&tp__alloc_countdown, 0);
    ck_assert_int_eq(c[0].err, SENTINEL);
    ck_assert_err(tp_chan_send(a, &v, 0), ETIMEDOUT); /* nobody registered */
    ck_assert_int_eq(tp_chan_destroy(a), 0);
    return NULL;
}

START_TEST(test_select_enomem)
{
    no_memory(NULL);
    ck_assert_ptr_null(in_task(no_memory, NULL));
}
END_TEST

/* ------------------------------------------------------------------ the races ---- */

/* Producers (tasks on both workers and plain threads) send distinct numbered messages,
   each through a select over all channels (some with short deadlines, retried) or a
   plain send; consumers receive through selects over all channels (or a plain receive)
   until every channel is closed and drained.  Every message must arrive exactly once,
   intact. */
#define NCH 3
#define PRODUCERS 6 /* 4 tasks, 2 threads */
#define CONSUMERS 4 /* 3 tasks, 1 thread */
#define PER 1500

struct msg {
    uint64_t v;
    uint64_t check[4]; /* larger than a task's inline buffer: exercises heap copies */
};

struct race {
    tp_chan *ch[NCH];
    atomic_int seen[PRODUCERS * PER];
    atomic_long received;
    atomic_int bad;
};

struct role {
    struct race *r;
    int id;
};

static struct msg make_msg(uint64_t v)
{
    struct msg m = {.v = v};
    for (int j = 0; j < 4; j++)
        m.check[j] = v * (j + 3) ^ 0xA5A5A5A5u;
    return m;
}

static void *producer(void *arg)
{
    struct role *ro = arg;
    struct race *r = ro->r;
    for (int i = 0; i < PER; i++) {
        struct msg m = make_msg((uint64_t)ro->id * PER + (uint64_t)i);
        if (i % 200 == 199) /* a pause: consumers' deadlines expire meanwhile */
            tp_sleep(in_ms(3));
        if (i % 5 == 4) { /* now and then a plain send */
            if (tp_chan_send(r->ch[i % NCH], &m, -1) < 0)
                atomic_fetch_add(&r->bad, 1);
            continue;
        }
        tp_case c[NCH];
        for (int k = 0; k < NCH; k++)
            c[k] = mk(r->ch[k], TP_SEND, &m);
        int rc;
        do /* short deadlines: timeouts race with deliveries; retry */
            rc = tp_select(c, NCH, i % 3 == 0 ? in_ms(1) : -1);
        while (rc < 0 && errno == ETIMEDOUT);
        if (rc < 0 || c[rc].err != 0)
            atomic_fetch_add(&r->bad, 1);
    }
    return NULL;
}

static void consume(struct race *r, const struct msg *m)
{
    struct msg want = make_msg(m->v);
    if (m->v >= PRODUCERS * PER || memcmp(m, &want, sizeof want) != 0) {
        atomic_fetch_add(&r->bad, 1);
        return;
    }
    atomic_fetch_add(&r->seen[m->v], 1);
    atomic_fetch_add(&r->received, 1);
}

static void *consumer(void *arg)
{
    struct role *ro = arg;
    struct race *r = ro->r;
    struct msg m[NCH];
    tp_case c[NCH];
    size_t n = NCH;
    long last_epoch = 0;
    for (int k = 0; k < NCH; k++)
        c[k] = mk(r->ch[k], TP_RECV, &m[k]);
    while (n > 0) {
        if (ro->id == 0 && n == NCH) { /* one consumer mixes in plain receives */
            struct msg x;
            if (tp_chan_recv(r->ch[0], &x, in_ms(1)) == 0)
                consume(r, &x);
        }
        int i = tp_select(c, n, ro->id == 1 ? in_ms(2) : -1);
        if (i < 0) {
            if (errno != ETIMEDOUT)
                atomic_fetch_add(&r->bad, 1);
            continue;
        }
        if (c[i].err == EPIPE) { /* closed and drained: drop that case */
            c[i] = c[--n];
            continue;
        }
        consume(r, c[i].elem); /* cases move when one is dropped */
        long epoch = atomic_load(&r->received) / 1000;
        if (epoch != last_epoch) { /* all consumers pause: producers' deadlines expire */
            last_epoch = epoch;
            tp_sleep(in_ms(3));
        }
        c[i].err = SENTINEL;
    }
    return NULL;
}

struct thread_role {
    struct role role;
    int consumer;
};

static void *run_role(void *arg)
{
    struct thread_role *tr = arg;
    return tr->consumer ? consumer(&tr->role) : producer(&tr->role);
}

START_TEST(test_select_race)
{
    tp_pool *p = test_pool(2);
    struct race *r = calloc(1, sizeof *r);
    size_t caps[NCH] = {0, 1, 8};
    for (int k = 0; k < NCH; k++)
        r->ch[k] = tp_chan_create(sizeof(struct msg), caps[k]);
    struct thread_role roles[PRODUCERS + CONSUMERS];
    tp_task *tasks[PRODUCERS + CONSUMERS];
    pthread_t threads[PRODUCERS + CONSUMERS];
    int nt = 0, nth = 0;
    for (int i = 0; i < PRODUCERS + CONSUMERS; i++) {
        int cons = i >= PRODUCERS;
        int id = cons ? i - PRODUCERS : i;
        roles[i] = (struct thread_role){{r, id}, cons};
        bool thread = cons ? id == CONSUMERS - 1 : id >= PRODUCERS - 2;
        if (thread)
            ck_assert_int_eq(pthread_create(&threads[nth++], NULL, run_role, &roles[i]), 0);
        else
            ck_assert_ptr_nonnull(tasks[nt++] = tp_spawn(p, run_role, &roles[i]));
    }
    /* producers first: tasks 0..3, threads 0..1 */
    for (int i = 0; i < PRODUCERS - 2; i++)
        ck_assert_int_eq(tp_join(tasks[i], NULL, -1), 0);
    for (int i = 0; i < 2; i++)
        ck_assert_int_eq(pthread_join(threads[i], NULL), 0);
    for (int k = 0; k < NCH; k++) /* consumers may be blocked in selects on these */
        ck_assert_int_eq(tp_chan_close(r->ch[k]), 0);
    for (int i = PRODUCERS - 2; i < nt; i++)
        ck_assert_int_eq(tp_join(tasks[i], NULL, -1), 0);
    for (int i = 2; i < nth; i++)
        ck_assert_int_eq(pthread_join(threads[i], NULL), 0);
    ck_assert_int_eq(atomic_load(&r->bad), 0);
    ck_assert_int_eq(atomic_load(&r->received), PRODUCERS * PER);
    for (int i = 0; i < PRODUCERS * PER; i++)
        ck_assert_msg(atomic_load(&r->seen[i]) == 1, "message %d seen %d times", i,
                      atomic_load(&r->seen[i]));
    for (int k = 0; k < NCH; k++)
        ck_assert_int_eq(tp_chan_destroy(r->ch[k]), 0);
    free(r);
    ck_assert_int_eq(tp_pool_destroy(p), 0);
}
END_TEST

/* A value that lands in a buffer while a select prepares to block must not be missed:
   a producer thread feeds a one-slot channel, a consumer task selects over it (and a
   channel that never becomes ready).  A missed value would leave both blocked -- the
   consumer on the receive, the producer on the full slot -- until the deadline. */
#define FEED_N 20000

struct feed {
    tp_chan *ch, *never;
    atomic_int bad;
};

static void *feeder(void *arg)
{
    struct feed *f = arg;
    for (int i = 0; i < FEED_N; i++)
        if (tp_chan_send(f->ch, &i, -1) < 0)
            atomic_fetch_add(&f->bad, 1);
    return NULL;
}

static void *eater(void *arg)
{
    struct feed *f = arg;
    for (int i = 0; i < FEED_N; i++) {
        int v = -1, w;
        tp_case c[2] = {mk(f->never, TP_RECV, &w), mk(f->ch, TP_RECV, &v)};
        if (tp_select(c, 2, in_ms(10000)) != 1 || v != i)
            atomic_fetch_add(&f->bad, 1);
    }
    return NULL;
}

START_TEST(test_select_no_lost_wakeup)
{
    tp_pool *p = test_pool(2);
    struct feed *f = calloc(1, sizeof *f);
    f->ch = tp_chan_create(sizeof(int), 1);
    f->never = tp_chan_create(sizeof(int), 0);
    tp_task *t = tp_spawn(p, eater, f);
    pthread_t th;
    ck_assert_int_eq(pthread_create(&th, NULL, feeder, f), 0);
    ck_assert_int_eq(tp_join(t, NULL, -1), 0);
    ck_assert_int_eq(pthread_join(th, NULL), 0);
    ck_assert_int_eq(atomic_load(&f->bad), 0);
    ck_assert_int_eq(tp_chan_destroy(f->ch), 0);
    ck_assert_int_eq(tp_chan_destroy(f->never), 0);
    free(f);
    ck_assert_int_eq(tp_pool_destroy(p), 0);
}
END_TEST

/* Deadlines racing deliveries: a task sends and a plain thread receives over an
   unbuffered channel, both through selects with 1 ms deadlines, paced by millisecond
   sleeps of different lengths, so deadlines often expire just as partners arrive.  A send counts
   only if it succeeded and carries the number of earlier successes: the receiver must
   see 0, 1, 2, ... with nothing lost or repeated, and both sides must agree on the
   count. */
#define TICK_ROUNDS 300

struct tick {
    tp_chan *ch, *never, *never2; /* nobody else uses the never channels */
    long sent, got;
    atomic_int bad;
};

static void *tick_sender(void *arg)
{
    struct tick *x = arg;
    for (int r = 0; r < TICK_ROUNDS; r++) {
        long v = x->sent, w;
        tp_case c[2] = {mk(x->never, TP_RECV, &w), mk(x->ch, TP_SEND, &v)};
        int i = tp_select(c, 2, in_ms(1));
        if (i == 1 && c[1].err == 0)
            x->sent++;
        else if (i >= 0 || errno != ETIMEDOUT)
            atomic_fetch_add(&x->bad, 1);
        tp_sleep(in_ms(1));
    }
    return NULL;
}

static void *tick_receiver(void *arg)
{
    struct tick *x = arg;
    for (int r = 0; r < TICK_ROUNDS + 50; r++) { /* a few more: catch any stragglers */
        tp_sleep(in_ms(r % 3)); /* out of step with the sender: arrive at its deadline */
        long v = -1, w;
        tp_case c[2] = {mk(x->ch, TP_RECV, &v), mk(x->never2, TP_SEND, &w)};
        int i = tp_select(c, 2, in_ms(1));
        if (i == 0 && c[0].err == 0) {
            if (v != x->got)
                atomic_fetch_add(&x->bad, 1);
            x->got++;
        } else if (i >= 0 || errno != ETIMEDOUT) {
            atomic_fetch_add(&x->bad, 1);
        }
        tp_sleep(in_ms(1));
    }
    return NULL;
}

START_TEST(test_select_deadline_races_delivery)
{
    tp_pool *p = test_pool(2);
    struct tick *x = calloc(1, sizeof *x);
    x->ch = tp_chan_create(sizeof(long), 0);
    x->never = tp_chan_create(sizeof(long), 0);
    x->never2 = tp_chan_create(sizeof(long), 0);
    tp_task *t = tp_spawn(p, tick_sender, x);
    pthread_t th;
    ck_assert_int_eq(pthread_create(&th, NULL, tick_receiver, x), 0);
    ck_assert_int_eq(tp_join(t, NULL, -1), 0);
    ck_assert_int_eq(pthread_join(th, NULL), 0);
    ck_assert_int_eq(atomic_load(&x->bad), 0);
    ck_assert_int_eq(x->sent, x->got);
    ck_assert_int_eq(tp_chan_destroy(x->ch), 0);
    ck_assert_int_eq(tp_chan_destroy(x->never), 0);
    ck_assert_int_eq(tp_chan_destroy(x->never2), 0);
    free(x);
    ck_assert_int_eq(tp_pool_destroy(p), 0);
}
END_TEST

/* Senders (tasks and a thread) select over two unbuffered channels until they are
   closed; one receiver takes exactly N values and closes both.  An unbuffered send
   succeeds only when received, so the successes must add up to exactly N. */
#define CLOSE_N 3000

struct close_race {
    tp_chan *a, *b;
    atomic_long sent;
    atomic_int bad;
};

static void *close_sender(void *arg)
{
    struct close_race *x = arg;
    long v = 0;
    for (;;) {
        tp_case c[2] = {mk(x->a, TP_SEND, &v), mk(x->b, TP_SEND, &v)};
        int i = tp_select(c, 2, -1);
        if (i < 0) {
            atomic_fetch_add(&x->bad, 1);
            return NULL;
        }
        if (c[i].err == EPIPE)
            return NULL;
        atomic_fetch_add(&x->sent, 1);
        v++;
    }
}

static void *close_receiver(void *arg)
{
    struct close_race *x = arg;
    for (int n = 0; n < CLOSE_N; n++) {
        long v;
        tp_case c[2] = {mk(x->a, TP_RECV, &v), mk(x->b, TP_RECV, &v)};
        int i = tp_select(c, 2, n % 2 ? -1 : in_ms(10000));
        if (i < 0 || c[i].err != 0)
            atomic_fetch_add(&x->bad, 1);
    }
    tp_chan_close(x->a);
    tp_chan_close(x->b);
    return NULL;
}

START_TEST(test_select_close_race)
{
    tp_pool *p = test_pool(2);
    struct close_race *x = calloc(1, sizeof *x);
    x->a = tp_chan_create(sizeof(long), 0);
    x->b = tp_chan_create(sizeof(long), 0);
    tp_task *s[4];
    for (int i = 0; i < 4; i++)
        s[i] = tp_spawn(p, close_sender, x);
    pthread_t th;
    ck_assert_int_eq(pthread_create(&th, NULL, close_sender, x), 0);
    tp_task *rcv = tp_spawn(p, close_receiver, x);
    ck_assert_int_eq(tp_join(rcv, NULL, -1), 0);
    for (int i = 0; i < 4; i++)
        ck_assert_int_eq(tp_join(s[i], NULL, -1), 0);
    ck_assert_int_eq(pthread_join(th, NULL), 0);
    ck_assert_int_eq(atomic_load(&x->bad), 0);
    ck_assert_int_eq(atomic_load(&x->sent), CLOSE_N);
    ck_assert_int_eq(tp_chan_destroy(x->a), 0);
    ck_assert_int_eq(tp_chan_destroy(x->b), 0);
    free(x);
    ck_assert_int_eq(tp_pool_destroy(p), 0);
}
END_TEST

static Suite *select_suite(void)
{
    Suite *s = suite_create("select");
    TCase *tc = tcase_create("select");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_select_bad_args);
    tcase_add_test(tc, test_select_fair_thread);
    tcase_add_test(tc, test_select_fair_task);
    tcase_add_test(tc, test_select_closed);
    tcase_add_test(tc, test_select_close_wakes);
    tcase_add_test(tc, test_select_deadline);
    tcase_add_test(tc, test_select_same_channel);
    tcase_add_test(tc, test_select_many_cases);
    tcase_add_test(tc, test_select_enomem);
    tcase_add_test(tc, test_select_race);
    tcase_add_test(tc, test_select_no_lost_wakeup);
    tcase_add_test(tc, test_select_deadline_races_delivery);
    tcase_add_test(tc, test_select_close_race);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) { return test_run(select_suite()); }
