/* test_cond.c -- tp_cond: errors, re-acquiring the mutex after a timeout (also when
 * another party holds it), FIFO signal without spurious wake-ups, broadcast, and a
 * bounded producer/consumer queue with deadlines, tasks and plain threads mixed. */
#include "tp_test.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>

/* Run fn(arg) as a task of a fresh pool (stacks per worker: 0, the default) and return
   its result. */
static void *in_task_stacks(unsigned stacks, void *(*fn)(void *), void *arg)
{
    tp_pool *p = test_pool_stacks(2, stacks);
    tp_task *t = tp_spawn(p, fn, arg);
    ck_assert_ptr_nonnull(t);
    void *res = (void *)1;
    ck_assert_int_eq(tp_join(t, &res, -1), 0);
    ck_assert_int_eq(tp_pool_destroy(p), 0);
    return res;
}

static void *in_task(void *(*fn)(void *), void *arg) { return in_task_stacks(0, fn, arg); }

/* Spawn into pool p, or start a plain thread when p is NULL. */
struct party {
    tp_task *task;
    pthread_t thread;
};

static struct party start(tp_pool *p, void *(*fn)(void *), void *arg)
{
    struct party x = {NULL, 0};
    if (p)
        ck_assert_ptr_nonnull(x.task = tp_spawn(p, fn, arg));
    else
        ck_assert_int_eq(pthread_create(&x.thread, NULL, fn, arg), 0);
    return x;
}

static void *finish(struct party x)
{
    void *res = (void *)1;
    if (x.task)
        ck_assert_int_eq(tp_join(x.task, &res, -1), 0);
    else
        ck_assert_int_eq(pthread_join(x.thread, &res), 0);
    return res;
}

/* ------------------------------------------------------------------- errors ---- */

struct pair {
    tp_mutex m;
    tp_cond c;
};

static void *errors(void *arg)
{
    struct pair *x = arg;
    ck_assert_err(tp_cond_wait(&x->c, &x->m, -1), EPERM); /* not holding m */
    ck_assert_int_eq(tp_mutex_lock(&x->m), 0);
    ck_assert_err(tp_cond_wait(NULL, &x->m, -1), EINVAL);
    ck_assert_err(tp_cond_wait(&x->c, NULL, -1), EINVAL);
    ck_assert_err(tp_cond_wait(&x->c, &x->m, -2), EINVAL);
    ck_assert_err(tp_cond_wait(&x->c, &x->m, 0), ETIMEDOUT);
    /* every outcome leaves the caller holding m */
    int64_t d = in_ms(20);
    ck_assert_err(tp_cond_wait(&x->c, &x->m, d), ETIMEDOUT);
    ck_assert(tp_now() >= d);
    ck_assert_err(tp_mutex_destroy(&x->m), EBUSY);
    ck_assert_int_eq(tp_mutex_unlock(&x->m), 0);
    ck_assert_int_eq(tp_cond_signal(&x->c), 0);    /* nobody waits: no effect */
    ck_assert_int_eq(tp_cond_broadcast(&x->c), 0);
    ck_assert_int_eq(tp_cond_destroy(&x->c), 0);   /* the timed-out waiter left */
    return NULL;
}

START_TEST(test_cond_errors)
{
    ck_assert_err(tp_cond_init(NULL), EINVAL);
    ck_assert_err(tp_cond_signal(NULL), EINVAL);
    ck_assert_err(tp_cond_broadcast(NULL), EINVAL);
    ck_assert_err(tp_cond_destroy(NULL), EINVAL);
    struct pair *x = malloc(sizeof *x);
    for (int in_a_task = 0; in_a_task < 2; in_a_task++) {
        ck_assert_int_eq(tp_mutex_init(&x->m), 0);
        ck_assert_int_eq(tp_cond_init(&x->c), 0);
        ck_assert_ptr_null(in_a_task ? in_task(errors, x) : errors(x));
        ck_assert_int_eq(tp_mutex_destroy(&x->m), 0);
    }
    free(x);
}
END_TEST

/* A task that has never parked has no stack-save buffer yet: make allocating it fail
   (on workers with one stack, where a parked task must be able to be copied out).
   The wait must fail before releasing anything. */
static void *wait_without_memory(void *arg)
{
    struct pair *x = arg;
    tp_mutex_lock(&x->m);
    atomic_store(&tp__alloc_countdown, 1);
    int rc = tp_cond_wait(&x->c, &x->m, -1);
    int err = errno;
    atomic_store(&tp__alloc_countdown, 0);
    int still_held = tp_mutex_unlock(&x->m) == 0;
    return (void *)(intptr_t)(rc == -1 && err == ENOMEM && still_held);
}

START_TEST(test_cond_enomem)
{
    struct pair *x = malloc(sizeof *x);
    tp_mutex_init(&x->m);
    tp_cond_init(&x->c);
    ck_assert_ptr_eq(in_task_stacks(1, wait_without_memory, x), (void *)1);
    ck_assert_int_eq(tp_cond_destroy(&x->c), 0);
    ck_assert_int_eq(tp_mutex_destroy(&x->m), 0);
    free(x);
}
END_TEST

/* ------------------------------------------------ timeout while m is taken ---- */

struct contended {
    tp_pool *pool;
    tp_mutex m;
    tp_cond c;
    int other_done; /* guarded by m */
};

static void *other(void *arg)
{
    struct contended *x = arg;
    if (tp_mutex_lock(&x->m) < 0)
        return (void *)1;
    tp_sleep(in_ms(60)); /* holds m past the waiter's deadline */
    x->other_done = 1;
    return (void *)(intptr_t)tp_mutex_unlock(&x->m);
}

/* The waiter holds m while `other` queues for it; its cond_wait hands m to `other`,
   which keeps it beyond the waiter's deadline.  The waiter must time out and still
   return holding m -- which it can only get after `other` has finished. */
static void *timed_waiter(void *arg)
{
    struct contended *x = arg;
    tp_mutex_lock(&x->m);
    tp_task *o = tp_spawn(NULL, other, x);
    for (tp_stats st;;) { /* until `other` is parked on m */
        tp_pool_stats(x->pool, &st);
        if (st.tasks_parked >= 1)
            break;
        tp_yield();
    }
    errno = 0;
    int rc = tp_cond_wait(&x->c, &x->m, in_ms(20));
    int err = errno, saw = x->other_done;
    int unlocked = tp_mutex_unlock(&x->m);
    void *ores = (void *)1;
    tp_join(o, &ores, -1);
    return (void *)(intptr_t)(rc == -1 && err == ETIMEDOUT && saw == 1 && unlocked == 0 &&
                              ores == NULL);
}

START_TEST(test_cond_timeout_reacquires)
{
    struct contended *x = calloc(1, sizeof *x);
    x->pool = test_pool(2);
    tp_mutex_init(&x->m);
    tp_cond_init(&x->c);
    void *ok = NULL;
    ck_assert_int_eq(tp_join(tp_spawn(x->pool, timed_waiter, x), &ok, -1), 0);
    ck_assert_ptr_eq(ok, (void *)1);
    ck_assert_int_eq(tp_mutex_destroy(&x->m), 0);
    ck_assert_int_eq(tp_cond_destroy(&x->c), 0);
    ck_assert_int_eq(tp_pool_destroy(x->pool), 0);
    free(x);
}
END_TEST

/* --------------------------------------------------- signal order, broadcast ---- */

#define NWAIT 6 /* 4 tasks and 2 threads */

struct line {
    tp_mutex m;
    tp_cond c;
    int waiting;       /* guarded by m: how many have queued on c */
    int tokens;        /* guarded by m: signals not yet consumed */
    int woken;         /* guarded by m */
    int order[NWAIT];  /* guarded by m: queue position of the k-th to wake */
    atomic_int bad;
};

static void *line_up(void *arg)
{
    struct line *l = arg;
    tp_mutex_lock(&l->m);
    int pos = l->waiting++; /* we queue on c before m is released: in this order */
    if (tp_cond_wait(&l->c, &l->m, in_ms(30000)) < 0)
        atomic_fetch_add(&l->bad, 1);
    if (l->tokens-- <= 0) /* woken without a signal */
        atomic_fetch_add(&l->bad, 1);
    l->order[l->woken++] = pos;
    tp_mutex_unlock(&l->m);
    return NULL;
}

/* Wait (polling under m) until *field reaches value. */
static void until(struct line *l, int *field, int value)
{
    for (;;) {
        tp_mutex_lock(&l->m);
        int v = *field;
        tp_mutex_unlock(&l->m);
        if (v >= value)
            return;
        sched_yield();
    }
}

static struct line *line_start(tp_pool *p, struct party *w)
{
    struct line *l = calloc(1, sizeof *l);
    tp_mutex_init(&l->m);
    tp_cond_init(&l->c);
    for (int i = 0; i < NWAIT; i++) {
        w[i] = start(i % 3 == 2 ? NULL : p, line_up, l);
        until(l, &l->waiting, i + 1); /* one at a time: a known queue order */
    }
    return l;
}

START_TEST(test_cond_signal_fifo)
{
    tp_pool *p = test_pool(2);
    struct party w[NWAIT];
    struct line *l = line_start(p, w);
    ck_assert_err(tp_cond_destroy(&l->c), EBUSY);
    for (int i = 0; i < NWAIT; i++) {
        tp_mutex_lock(&l->m);
        l->tokens++;
        ck_assert_int_eq(tp_cond_signal(&l->c), 0);
        tp_mutex_unlock(&l->m);
        until(l, &l->woken, i + 1);
        tp_mutex_lock(&l->m);
        ck_assert_int_eq(l->woken, i + 1); /* exactly one per signal */
        ck_assert_int_eq(l->order[i], i);  /* longest waiter first */
        tp_mutex_unlock(&l->m);
    }
    for (int i = 0; i < NWAIT; i++)
        ck_assert_ptr_null(finish(w[i]));
    ck_assert_int_eq(atomic_load(&l->bad), 0);
    ck_assert_int_eq(tp_cond_destroy(&l->c), 0);
    ck_assert_int_eq(tp_mutex_destroy(&l->m), 0);
    free(l);
    ck_assert_int_eq(tp_pool_destroy(p), 0);
}
END_TEST

START_TEST(test_cond_broadcast)
{
    tp_pool *p = test_pool(2);
    struct party w[NWAIT];
    struct line *l = line_start(p, w);
    tp_mutex_lock(&l->m);
    l->tokens = NWAIT;
    ck_assert_int_eq(tp_cond_broadcast(&l->c), 0); /* once, for all of them */
    tp_mutex_unlock(&l->m);
    for (int i = 0; i < NWAIT; i++)
        ck_assert_ptr_null(finish(w[i]));
    ck_assert_int_eq(atomic_load(&l->bad), 0);
    ck_assert_int_eq(l->woken, NWAIT);
    ck_assert_int_eq(tp_cond_destroy(&l->c), 0);
    ck_assert_int_eq(tp_mutex_destroy(&l->m), 0);
    free(l);
    ck_assert_int_eq(tp_pool_destroy(p), 0);
}
END_TEST

/* ------------------------------------------------------ producer / consumer ---- */

#define QCAP 8
#define PRODUCERS 4 /* 3 tasks, 1 thread */
#define CONSUMERS 3 /* 2 tasks, 1 thread */
#define ITEMS 3000  /* per producer */

struct bq {
    tp_mutex m;
    tp_cond not_empty, not_full;
    long buf[QCAP];
    int head, count;     /* guarded by m */
    long taken;          /* guarded by m: items consumed so far */
    long sum;            /* guarded by m */
    long timeouts;       /* guarded by m */
    atomic_int bad;
};

static void *produce(void *arg)
{
    struct bq *q = arg;
    for (long i = 1; i <= ITEMS; i++) {
        tp_mutex_lock(&q->m);
        while (q->count == QCAP) {
            if (tp_cond_wait(&q->not_full, &q->m, in_ms(5)) < 0) {
                if (errno != ETIMEDOUT)
                    atomic_fetch_add(&q->bad, 1);
                q->timeouts++; /* we hold m again: this write is safe */
            }
        }
        q->buf[(q->head + q->count++) % QCAP] = i;
        tp_cond_signal(&q->not_empty);
        tp_mutex_unlock(&q->m);
    }
    return NULL;
}

static void *consume(void *arg)
{
    struct bq *q = arg;
    tp_mutex_lock(&q->m);
    for (;;) {
        while (q->count == 0 && q->taken < (long)PRODUCERS * ITEMS) {
            if (tp_cond_wait(&q->not_empty, &q->m, in_ms(5)) < 0) {
                if (errno != ETIMEDOUT)
                    atomic_fetch_add(&q->bad, 1);
                q->timeouts++;
            }
        }
        if (q->count == 0)
            break; /* everything was taken */
        q->sum += q->buf[q->head];
        q->head = (q->head + 1) % QCAP;
        q->count--;
        if (++q->taken == (long)PRODUCERS * ITEMS)
            tp_cond_broadcast(&q->not_empty); /* release the other consumers */
        tp_cond_signal(&q->not_full);
    }
    tp_mutex_unlock(&q->m);
    return NULL;
}

START_TEST(test_cond_producer_consumer)
{
    tp_pool *p = test_pool(2);
    struct bq *q = calloc(1, sizeof *q);
    tp_mutex_init(&q->m);
    tp_cond_init(&q->not_empty);
    tp_cond_init(&q->not_full);
    struct party w[PRODUCERS + CONSUMERS];
    for (int i = 0; i < CONSUMERS; i++)
        w[i] = start(i == 0 ? NULL : p, consume, q);
    for (int i = 0; i < PRODUCERS; i++)
        w[CONSUMERS + i] = start(i == 0 ? NULL : p, produce, q);
    for (int i = 0; i < PRODUCERS + CONSUMERS; i++)
        ck_assert_ptr_null(finish(w[i]));
    ck_assert_int_eq(atomic_load(&q->bad), 0);
    ck_assert_int_eq(q->taken, (long)PRODUCERS * ITEMS);
    ck_assert_int_eq(q->sum, (long)PRODUCERS * ITEMS * (ITEMS + 1) / 2);
    ck_assert_int_eq(tp_cond_destroy(&q->not_empty), 0);
    ck_assert_int_eq(tp_cond_destroy(&q->not_full), 0);
    ck_assert_int_eq(tp_mutex_destroy(&q->m), 0);
    free(q);
    ck_assert_int_eq(tp_pool_destroy(p), 0);
}
END_TEST

/* --------------------------------------------- deadlines racing with signals ---- */

#define RACE_ROUNDS 300

struct race {
    tp_mutex m;
    tp_cond c;
    int tokens;  /* guarded by m */
    long woken, timed_out, signals;
    atomic_int stop, bad;
};

static void *racing_waiter(void *arg)
{
    struct race *r = arg;
    for (int i = 0; i < RACE_ROUNDS; i++) {
        tp_mutex_lock(&r->m);
        int rc = tp_cond_wait(&r->c, &r->m, in_ms(1));
        if (rc == 0) {
            if (r->tokens-- <= 0) /* woken by nothing */
                atomic_fetch_add(&r->bad, 1);
            r->woken++;
        } else if (errno == ETIMEDOUT) {
            r->timed_out++;
        } else {
            atomic_fetch_add(&r->bad, 1);
        }
        tp_mutex_unlock(&r->m);
    }
    return NULL;
}

static void *signaller(void *arg)
{
    struct race *r = arg;
    while (!atomic_load(&r->stop)) {
        tp_mutex_lock(&r->m);
        r->tokens++; /* a signal that finds no waiter leaves its token unused */
        r->signals++;
        tp_cond_signal(&r->c);
        tp_mutex_unlock(&r->m);
        tp_sleep(in_ms(1)); /* the pace of the waiters' deadlines: both outcomes occur */
    }
    return NULL;
}

START_TEST(test_cond_deadline_races_signal)
{
    tp_pool *p = test_pool(2);
    struct race *r = calloc(1, sizeof *r);
    tp_mutex_init(&r->m);
    tp_cond_init(&r->c);
    struct party w[4] = {start(p, racing_waiter, r), start(NULL, racing_waiter, r),
                         start(p, signaller, r), start(NULL, signaller, r)};
    ck_assert_ptr_null(finish(w[0]));
    ck_assert_ptr_null(finish(w[1]));
    atomic_store(&r->stop, 1);
    ck_assert_ptr_null(finish(w[2]));
    ck_assert_ptr_null(finish(w[3]));
    ck_assert_int_eq(atomic_load(&r->bad), 0);
    ck_assert_int_eq(r->woken + r->timed_out, 2 * RACE_ROUNDS);
    ck_assert(r->woken <= r->signals);
    ck_assert_int_eq(tp_cond_destroy(&r->c), 0);
    ck_assert_int_eq(tp_mutex_destroy(&r->m), 0);
    free(r);
    ck_assert_int_eq(tp_pool_destroy(p), 0);
}
END_TEST

static Suite *cond_suite(void)
{
    Suite *s = suite_create("cond");
    TCase *tc = tcase_create("cond");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_cond_errors);
    tcase_add_test(tc, test_cond_enomem);
    tcase_add_test(tc, test_cond_timeout_reacquires);
    tcase_add_test(tc, test_cond_signal_fifo);
    tcase_add_test(tc, test_cond_broadcast);
    tcase_add_test(tc, test_cond_producer_consumer);
    tcase_add_test(tc, test_cond_deadline_races_signal);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) { return test_run(cond_suite()); }
