/* test_wg.c -- tp_wg: errors, immediate and timed-out waits, fan-out/fan-in across
 * workers, waiters that are tasks and plain threads, reuse. */
#include "tp_test.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>

/* ------------------------------------------------------------------- errors ---- */

static void *errors(void *arg)
{
    tp_wg *g = arg;
    ck_assert_int_eq(tp_wg_init(g), 0);
    ck_assert_int_eq(tp_wg_wait(g, 0), 0); /* zero: returns at once */
    ck_assert_int_eq(tp_wg_wait(g, -1), 0);
    ck_assert_err(tp_wg_wait(g, -2), EINVAL);
    ck_assert_err(tp_wg_done(g), EINVAL); /* below zero */
    ck_assert_int_eq(tp_wg_add(g, 2), 0);
    ck_assert_err(tp_wg_add(g, -3), EINVAL); /* ... and unchanged: */
    ck_assert_err(tp_wg_add(g, INT64_MAX), EOVERFLOW);
    ck_assert_err(tp_wg_wait(g, 0), ETIMEDOUT);
    int64_t d = in_ms(20);
    ck_assert_err(tp_wg_wait(g, d), ETIMEDOUT);
    ck_assert(tp_now() >= d);
    ck_assert_int_eq(tp_wg_done(g), 0);
    ck_assert_err(tp_wg_wait(g, 0), ETIMEDOUT); /* still 1 */
    ck_assert_int_eq(tp_wg_add(g, 0), 0);
    ck_assert_int_eq(tp_wg_done(g), 0);
    ck_assert_int_eq(tp_wg_wait(g, 0), 0);
    ck_assert_int_eq(tp_wg_destroy(g), 0); /* the timed-out waiter left */
    return NULL;
}

START_TEST(test_wg_errors)
{
    ck_assert_err(tp_wg_init(NULL), EINVAL);
    ck_assert_err(tp_wg_add(NULL, 1), EINVAL);
    ck_assert_err(tp_wg_done(NULL), EINVAL);
    ck_assert_err(tp_wg_wait(NULL, 0), EINVAL);
    ck_assert_err(tp_wg_destroy(NULL), EINVAL);
    tp_wg *g = malloc(sizeof *g);
    errors(g);
    tp_pool *p = test_pool(1);
    void *res = (void *)1;
    ck_assert_int_eq(tp_join(tp_spawn(p, errors, g), &res, -1), 0);
    ck_assert_ptr_null(res);
    ck_assert_int_eq(tp_pool_destroy(p), 0);
    free(g);
}
END_TEST

/* A task that has never parked has no stack-save buffer yet: make allocating it fail
   (on a worker with one stack, where a parked task must be able to be copied out). */
static void *wait_without_memory(void *arg)
{
    atomic_store(&tp__alloc_countdown, 1);
    int rc = tp_wg_wait(arg, -1);
    int err = errno;
    atomic_store(&tp__alloc_countdown, 0);
    return (void *)(intptr_t)(rc == -1 && err == ENOMEM);
}

START_TEST(test_wg_enomem)
{
    tp_pool *p = test_pool_stacks(1, 1);
    tp_wg *g = malloc(sizeof *g);
    tp_wg_init(g);
    tp_wg_add(g, 1);
    void *ok = NULL;
    ck_assert_int_eq(tp_join(tp_spawn(p, wait_without_memory, g), &ok, -1), 0);
    ck_assert_ptr_eq(ok, (void *)1);
    ck_assert_int_eq(tp_wg_destroy(g), 0); /* the failed waiter left no trace */
    ck_assert_int_eq(tp_pool_destroy(p), 0);
    free(g);
}
END_TEST

/* ------------------------------------------------------------- fan-out/in ---- */

#define WORKERS_N 200
#define WAITERS_N 4 /* 3 tasks, 1 thread */

struct fan {
    tp_wg work, start;
    atomic_int done[WORKERS_N];
    atomic_int early; /* a waiter that returned before all work was done */
    atomic_int bad;
};

struct job {
    struct fan *f;
    int i;
};

static void *work(void *arg)
{
    struct job *j = arg;
    if (tp_wg_wait(&j->f->start, -1) < 0) /* all start together */
        atomic_fetch_add(&j->f->bad, 1);
    if (j->i % 7 == 0)
        tp_sleep(in_ms(1));
    else
        tp_yield();
    atomic_store(&j->f->done[j->i], 1);
    if (tp_wg_done(&j->f->work) < 0)
        atomic_fetch_add(&j->f->bad, 1);
    return NULL;
}

static void *waiter(void *arg)
{
    struct fan *f = arg;
    if (tp_wg_wait(&f->work, in_ms(30000)) < 0)
        atomic_fetch_add(&f->bad, 1);
    for (int i = 0; i < WORKERS_N; i++)
        if (!atomic_load(&f->done[i]))
            atomic_fetch_add(&f->early, 1);
    return NULL;
}

START_TEST(test_wg_fan_out_in)
{
    tp_pool *p = test_pool(2);
    struct fan *f = calloc(1, sizeof *f);
    struct job *jobs = calloc(WORKERS_N, sizeof *jobs);
    tp_wg_init(&f->work);
    tp_wg_init(&f->start);
    for (int round = 0; round < 20; round++) { /* the same groups, reused */
        for (int i = 0; i < WORKERS_N; i++)
            atomic_store(&f->done[i], 0);
        ck_assert_int_eq(tp_wg_add(&f->work, WORKERS_N), 0);
        ck_assert_int_eq(tp_wg_add(&f->start, 1), 0);
        tp_task *w[WAITERS_N - 1];
        for (int i = 0; i < WAITERS_N - 1; i++)
            ck_assert_ptr_nonnull(w[i] = tp_spawn(p, waiter, f));
        pthread_t th;
        ck_assert_int_eq(pthread_create(&th, NULL, waiter, f), 0);
        for (int i = 0; i < WORKERS_N; i++) {
            jobs[i] = (struct job){f, i};
            tp_task *t = tp_spawn(p, work, &jobs[i]);
            ck_assert_ptr_nonnull(t);
            ck_assert_int_eq(tp_detach(t), 0);
        }
        ck_assert_int_eq(tp_wg_done(&f->start), 0); /* go */
        ck_assert_int_eq(tp_wg_wait(&f->work, -1), 0);
        for (int i = 0; i < WAITERS_N - 1; i++)
            ck_assert_int_eq(tp_join(w[i], NULL, -1), 0);
        ck_assert_int_eq(pthread_join(th, NULL), 0);
        ck_assert_int_eq(tp_pool_wait(p), 0); /* the detached jobs have returned */
        ck_assert_int_eq(atomic_load(&f->bad), 0);
        ck_assert_int_eq(atomic_load(&f->early), 0);
    }
    ck_assert_int_eq(tp_wg_destroy(&f->work), 0);
    ck_assert_int_eq(tp_wg_destroy(&f->start), 0);
    free(jobs);
    free(f);
    ck_assert_int_eq(tp_pool_destroy(p), 0);
}
END_TEST

/* ---------------------------------------------------------------- EBUSY ---- */

static void *wait_forever(void *arg) { return (void *)(intptr_t)tp_wg_wait(arg, -1); }

START_TEST(test_wg_destroy_busy)
{
    tp_pool *p = test_pool(2);
    tp_wg *g = malloc(sizeof *g);
    tp_wg_init(g);
    tp_wg_add(g, 1);
    tp_task *t = tp_spawn(p, wait_forever, g);
    wait_parked(p, 1);
    ck_assert_err(tp_wg_destroy(g), EBUSY);
    ck_assert_int_eq(tp_wg_done(g), 0);
    void *res = (void *)1;
    ck_assert_int_eq(tp_join(t, &res, -1), 0);
    ck_assert_ptr_null(res);
    ck_assert_int_eq(tp_wg_destroy(g), 0);
    free(g);
    ck_assert_int_eq(tp_pool_destroy(p), 0);
}
END_TEST

static Suite *wg_suite(void)
{
    Suite *s = suite_create("wg");
    TCase *tc = tcase_create("wg");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_wg_errors);
    tcase_add_test(tc, test_wg_enomem);
    tcase_add_test(tc, test_wg_fan_out_in);
    tcase_add_test(tc, test_wg_destroy_busy);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) { return test_run(wg_suite()); }
