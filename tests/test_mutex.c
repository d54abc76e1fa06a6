/* test_mutex.c -- tp_mutex: errors, mutual exclusion under contention from tasks on
 * every worker and plain threads, FIFO hand-off without barging, parking while holding. */
#include "tp_test.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>

/* ------------------------------------------------------------------- errors ---- */

static void *unlock_foreign(void *arg)
{
    tp_mutex *m = arg;
    errno = 0;
    long rc = tp_mutex_unlock(m);
    return (void *)(intptr_t)(rc == -1 && errno == EPERM);
}

static void *lock_unlock(void *arg)
{
    tp_mutex *m = arg;
    if (tp_mutex_lock(m) < 0)
        return (void *)1;
    return (void *)(intptr_t)tp_mutex_unlock(m);
}

START_TEST(test_mutex_errors)
{
    ck_assert_err(tp_mutex_init(NULL), EINVAL);
    ck_assert_err(tp_mutex_lock(NULL), EINVAL);
    ck_assert_err(tp_mutex_unlock(NULL), EINVAL);
    ck_assert_err(tp_mutex_destroy(NULL), EINVAL);
    tp_pool *p = test_pool(2);
    tp_mutex *m = malloc(sizeof *m);
    ck_assert_int_eq(tp_mutex_init(m), 0);
    ck_assert_err(tp_mutex_unlock(m), EPERM); /* nobody holds it */
    ck_assert_int_eq(tp_mutex_lock(m), 0);
    ck_assert_err(tp_mutex_lock(m), EDEADLK); /* not recursive */
    ck_assert_err(tp_mutex_destroy(m), EBUSY);
    /* a task cannot unlock what a thread holds */
    void *ok = NULL;
    ck_assert_int_eq(tp_join(tp_spawn(p, unlock_foreign, m), &ok, -1), 0);
    ck_assert_ptr_eq(ok, (void *)1);
    /* a waiter keeps it busy even across the hand-off */
    tp_task *t = tp_spawn(p, lock_unlock, m);
    wait_parked(p, 1);
    ck_assert_err(tp_mutex_destroy(m), EBUSY);
    ck_assert_int_eq(tp_mutex_unlock(m), 0);
    ck_assert_int_eq(tp_join(t, &ok, -1), 0);
    ck_assert_ptr_null(ok);
    ck_assert_int_eq(tp_mutex_destroy(m), 0);
    ck_assert_int_eq(tp_pool_destroy(p), 0);
    free(m);
}
END_TEST

/* A task that has never parked has no stack-save buffer yet: make allocating it fail
   (on a worker with one stack, where a parked task must be able to be copied out). */
static void *lock_without_memory(void *arg)
{
    atomic_store(&tp__alloc_countdown, 1);
    int rc = tp_mutex_lock(arg);
    int err = errno;
    atomic_store(&tp__alloc_countdown, 0);
    return (void *)(intptr_t)(rc == -1 && err == ENOMEM);
}

START_TEST(test_mutex_enomem)
{
    tp_pool *p = test_pool_stacks(1, 1);
    tp_mutex *m = malloc(sizeof *m);
    tp_mutex_init(m);
    ck_assert_int_eq(tp_mutex_lock(m), 0);
    void *ok = NULL;
    ck_assert_int_eq(tp_join(tp_spawn(p, lock_without_memory, m), &ok, -1), 0);
    ck_assert_ptr_eq(ok, (void *)1);
    ck_assert_int_eq(tp_mutex_unlock(m), 0);
    ck_assert_int_eq(tp_mutex_destroy(m), 0); /* the failed locker left no trace */
    ck_assert_int_eq(tp_pool_destroy(p), 0);
    free(m);
}
END_TEST

/* A task holds it: a plain thread cannot unlock it. */
static void *hold_and_check_thread(void *arg)
{
    tp_mutex *m = arg;
    if (tp_mutex_lock(m) < 0)
        return (void *)1;
    pthread_t th;
    void *ok = NULL;
    if (pthread_create(&th, NULL, unlock_foreign, m) != 0)
        return (void *)2;
    pthread_join(th, &ok); /* blocks the worker briefly: fine in a test */
    if (ok != (void *)1)
        return (void *)3;
    return (void *)(intptr_t)tp_mutex_unlock(m);
}

START_TEST(test_mutex_owner_is_task)
{
    tp_pool *p = test_pool(1);
    tp_mutex *m = malloc(sizeof *m);
    tp_mutex_init(m);
    void *res = (void *)9;
    ck_assert_int_eq(tp_join(tp_spawn(p, hold_and_check_thread, m), &res, -1), 0);
    ck_assert_ptr_null(res);
    ck_assert_int_eq(tp_mutex_destroy(m), 0);
    ck_assert_int_eq(tp_pool_destroy(p), 0);
    free(m);
}
END_TEST

/* --------------------------------------------------------------- contention ---- */

#define ITERS 10000

struct counter {
    tp_mutex m;
    long value;        /* guarded by m, deliberately not atomic */
    atomic_int inside; /* 1 while somebody is in the critical section */
    atomic_int overlaps;
};

static void *hammer(void *arg)
{
    struct counter *c = arg;
    bool task = tp_self() != NULL;
    for (int i = 0; i < ITERS; i++) {
        if (tp_mutex_lock(&c->m) < 0)
            return (void *)1;
        if (atomic_exchange(&c->inside, 1))
            atomic_fetch_add(&c->overlaps, 1);
        c->value++;
        if (task && i % 1000 == 999)
            tp_sleep(in_ms(1)); /* park while holding it */
        else if (task && i % 100 == 50)
            tp_yield();
        atomic_store(&c->inside, 0);
        if (tp_mutex_unlock(&c->m) < 0)
            return (void *)2;
    }
    return NULL;
}

START_TEST(test_mutex_contention)
{
    tp_pool *p = test_pool(2);
    struct counter *c = calloc(1, sizeof *c);
    ck_assert_int_eq(tp_mutex_init(&c->m), 0);
    enum { TASKS = 8, THREADS = 2 };
    tp_task *t[TASKS];
    pthread_t th[THREADS];
    for (int i = 0; i < TASKS; i++)
        ck_assert_ptr_nonnull(t[i] = tp_spawn(p, hammer, c));
    for (int i = 0; i < THREADS; i++)
        ck_assert_int_eq(pthread_create(&th[i], NULL, hammer, c), 0);
    for (int i = 0; i < TASKS; i++) {
        void *res = (void *)1;
        ck_assert_int_eq(tp_join(t[i], &res, -1), 0);
        ck_assert_ptr_null(res);
    }
    for (int i = 0; i < THREADS; i++) {
        void *res = (void *)1;
        ck_assert_int_eq(pthread_join(th[i], &res), 0);
        ck_assert_ptr_null(res);
    }
    ck_assert_int_eq(atomic_load(&c->overlaps), 0);
    ck_assert_int_eq(c->value, (long)(TASKS + THREADS) * ITERS);
    ck_assert_int_eq(tp_mutex_destroy(&c->m), 0);
    ck_assert_int_eq(tp_pool_destroy(p), 0);
    free(c);
}
END_TEST

/* --------------------------------------------------------------------- FIFO ---- */

#define WAITERS 6

struct queue_order {
    tp_mutex m;
    int order[WAITERS + 1];
    int n; /* guarded by m */
};

struct waiter {
    struct queue_order *q;
    int id;
};

static void *take_turn(void *arg)
{
    struct waiter *w = arg;
    if (tp_mutex_lock(&w->q->m) < 0)
        return (void *)1;
    w->q->order[w->q->n++] = w->id;
    return (void *)(intptr_t)tp_mutex_unlock(&w->q->m);
}

/* The main thread holds the mutex while tasks on both workers queue one by one (each
   known to be parked before the next starts).  Then main unlocks and at once locks
   again: ownership must pass to the waiters in arrival order, and main -- which asks
   last -- must get it last, although it asks while it is running and they are not. */
START_TEST(test_mutex_fifo_handoff)
{
    tp_pool *p = test_pool(2);
    struct queue_order *q = calloc(1, sizeof *q);
    struct waiter w[WAITERS];
    tp_task *t[WAITERS];
    tp_mutex_init(&q->m);
    ck_assert_int_eq(tp_mutex_lock(&q->m), 0);
    for (int i = 0; i < WAITERS; i++) {
        w[i] = (struct waiter){q, i};
        ck_assert_ptr_nonnull(t[i] = tp_spawn(p, take_turn, &w[i]));
        wait_parked(p, (uint64_t)i + 1);
    }
    ck_assert_int_eq(tp_mutex_unlock(&q->m), 0);
    ck_assert_int_eq(tp_mutex_lock(&q->m), 0);
    q->order[q->n++] = WAITERS; /* main */
    ck_assert_int_eq(q->n, WAITERS + 1);
    for (int i = 0; i <= WAITERS; i++)
        ck_assert_int_eq(q->order[i], i);
    ck_assert_int_eq(tp_mutex_unlock(&q->m), 0);
    for (int i = 0; i < WAITERS; i++) {
        void *res = (void *)1;
        ck_assert_int_eq(tp_join(t[i], &res, -1), 0);
        ck_assert_ptr_null(res);
    }
    ck_assert_int_eq(tp_mutex_destroy(&q->m), 0);
    ck_assert_int_eq(tp_pool_destroy(p), 0);
    free(q);
}
END_TEST

/* ------------------------------------------------------ parking while holding ---- */

struct park_hold {
    tp_mutex m;
    int stage; /* guarded by m */
    atomic_int ready;
};

static void *holder(void *arg)
{
    struct park_hold *h = arg;
    if (tp_mutex_lock(&h->m) < 0)
        return (void *)1;
    atomic_store(&h->ready, 1);
    /* park (sleep, then a channel wait) while holding it; others queue meanwhile */
    tp_sleep(in_ms(20));
    tp_chan *ch = tp_chan_create(sizeof(int), 0);
    int v;
    if (tp_chan_recv(ch, &v, in_ms(10)) == 0 || errno != ETIMEDOUT)
        return (void *)2;
    tp_chan_destroy(ch);
    h->stage = 1;
    return (void *)(intptr_t)tp_mutex_unlock(&h->m);
}

static void *follower(void *arg)
{
    struct park_hold *h = arg;
    if (tp_mutex_lock(&h->m) < 0)
        return (void *)1;
    int seen = h->stage; /* the holder finished its critical section first */
    h->stage++;
    if (tp_mutex_unlock(&h->m) < 0)
        return (void *)2;
    return seen >= 1 ? NULL : (void *)3;
}

START_TEST(test_mutex_park_while_holding)
{
    tp_pool *p = test_pool(2);
    struct park_hold *h = calloc(1, sizeof *h);
    tp_mutex_init(&h->m);
    tp_task *a = tp_spawn(p, holder, h);
    while (!atomic_load(&h->ready))
        sched_yield();
    tp_task *b = tp_spawn(p, follower, h);
    tp_task *c = tp_spawn(p, follower, h);
    pthread_t th;
    ck_assert_int_eq(pthread_create(&th, NULL, follower, h), 0);
    void *res;
    ck_assert_int_eq(tp_join(a, &res, -1), 0);
    ck_assert_ptr_null(res);
    ck_assert_int_eq(tp_join(b, &res, -1), 0);
    ck_assert_ptr_null(res);
    ck_assert_int_eq(tp_join(c, &res, -1), 0);
    ck_assert_ptr_null(res);
    ck_assert_int_eq(pthread_join(th, &res), 0);
    ck_assert_ptr_null(res);
    ck_assert_int_eq(h->stage, 4);
    ck_assert_int_eq(tp_mutex_destroy(&h->m), 0);
    ck_assert_int_eq(tp_pool_destroy(p), 0);
    free(h);
}
END_TEST

static Suite *mutex_suite(void)
{
    Suite *s = suite_create("mutex");
    TCase *tc = tcase_create("mutex");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_mutex_errors);
    tcase_add_test(tc, test_mutex_owner_is_task);
    tcase_add_test(tc, test_mutex_enomem);
    tcase_add_test(tc, test_mutex_contention);
    tcase_add_test(tc, test_mutex_fifo_handoff);
    tcase_add_test(tc, test_mutex_park_while_holding);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) { return test_run(mutex_suite()); }
