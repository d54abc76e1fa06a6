/* test_badinput.c -- every public function with bad input: NULL handles, closed
 * channels, objects destroyed and recreated, pointers into a shared stack as spawn
 * arguments, absurd sizes, deadlines below -1, calls that make no sense where they are
 * made (tp_pool_wait in a task, tp_join of oneself, of a detached task, ...).
 *
 * One table, one row per call.  Each row says where it runs (a plain thread, a task, or
 * both, run once in each), the result the documentation promises and, for a failure,
 * the exact errno (man pages, ERRORS).  Rows run against a fresh environment: a pool,
 * channels in known states, and tasks parked in known ways, so each row sees exactly the
 * state it names; after every row the environment is torn down and the pool must be
 * empty again, so a row that broke something is caught at that row.
 */
#include "tp_test.h"

#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

/* ---------------------------------------------------------------- the env ---- */

struct env {
    tp_pool *pool;
    tp_chan *open0;    /* rendezvous, open, nobody waiting */
    tp_chan *empty;    /* capacity 2, open, empty */
    tp_chan *full;     /* capacity 1, open, one value buffered */
    tp_chan *closed;   /* capacity 2, closed, empty */
    tp_chan *hold;     /* rendezvous the parked tasks below wait on */
    tp_task *blocked;  /* parked on hold, joinable, nobody joining it */
    tp_task *detached; /* parked on hold, detached */
    tp_task *joined;   /* parked on hold, a task is joining it */
    tp_task *joiner;   /* the task joining `joined` (itself joinable) */
    void *stack_addr;  /* an address inside a worker's shared stack */
    tp_mutex *mutex;   /* unlocked */
    tp_mutex *held;    /* locked by a parked task (holder) */
    tp_task *holder;
    tp_cond *cond;
    tp_wg *wg;         /* counter 1 */
    tp_wg *wg0;        /* counter 0 */
};

static void *wait_on_hold(void *arg)
{
    struct env *e = arg;
    char c;
    tp_chan_recv(e->hold, &c, -1); /* EPIPE at teardown */
    return NULL;
}

static void *join_joined(void *arg)
{
    struct env *e = arg;
    return (void *)(intptr_t)tp_join(e->joined, NULL, -1);
}

static void *hold_mutex(void *arg)
{
    struct env *e = arg;
    char c;
    tp_mutex_lock(e->held);
    tp_chan_recv(e->hold, &c, -1);
    tp_mutex_unlock(e->held);
    return NULL;
}

static void *note_stack_addr(void *arg)
{
    struct env *e = arg;
    e->stack_addr = __builtin_frame_address(0); /* only compared, never dereferenced */
    return NULL;
}

static struct env *env_up(tp_pool *p)
{
    struct env *e = calloc(1, sizeof *e);
    ck_assert_ptr_nonnull(e);
    e->pool = p;
    e->open0 = tp_chan_create(4, 0);
    e->empty = tp_chan_create(4, 2);
    e->full = tp_chan_create(4, 1);
    e->closed = tp_chan_create(4, 2);
    e->hold = tp_chan_create(1, 0);
    ck_assert(e->open0 && e->empty && e->full && e->closed && e->hold);
    int v = 42;
    ck_assert_int_eq(tp_chan_send(e->full, &v, 0), 0);
    ck_assert_int_eq(tp_chan_close(e->closed), 0);
    e->mutex = calloc(1, sizeof *e->mutex);
    e->held = calloc(1, sizeof *e->held);
    e->cond = calloc(1, sizeof *e->cond);
    e->wg = calloc(1, sizeof *e->wg);
    e->wg0 = calloc(1, sizeof *e->wg0);
    ck_assert_int_eq(tp_mutex_init(e->mutex), 0);
    ck_assert_int_eq(tp_mutex_init(e->held), 0);
    ck_assert_int_eq(tp_cond_init(e->cond), 0);
    ck_assert_int_eq(tp_wg_init(e->wg), 0);
    ck_assert_int_eq(tp_wg_init(e->wg0), 0);
    ck_assert_int_eq(tp_wg_add(e->wg, 1), 0);
    ck_assert_int_eq(tp_join(tp_spawn(p, note_stack_addr, e), NULL, -1), 0);
    e->blocked = tp_spawn(p, wait_on_hold, e);
    e->detached = tp_spawn(p, wait_on_hold, e);
    e->joined = tp_spawn(p, wait_on_hold, e);
    e->holder = tp_spawn(p, hold_mutex, e);
    ck_assert(e->blocked && e->detached && e->joined && e->holder);
    ck_assert_int_eq(tp_detach(e->detached), 0);
    wait_parked(p, 4);
    e->joiner = tp_spawn(p, join_joined, e);
    ck_assert_ptr_nonnull(e->joiner);
    wait_parked(p, 5);
    return e;
}

static void env_down(struct env *e)
{
    ck_assert_int_eq(tp_chan_close(e->hold), 0);
    void *r = (void *)1;
    ck_assert_int_eq(tp_join(e->blocked, NULL, -1), 0);
    ck_assert_int_eq(tp_join(e->joiner, &r, -1), 0);
    ck_assert_ptr_eq(r, NULL); /* its join of `joined` succeeded */
    ck_assert_int_eq(tp_join(e->holder, NULL, -1), 0);
    ck_assert_int_eq(tp_pool_wait(e->pool), 0);
    tp_stats st;
    ck_assert_int_eq(tp_pool_stats(e->pool, &st), 0);
    ck_assert_uint_eq(st.tasks_live, 0);
    ck_assert_uint_eq(st.tasks_parked, 0);
    ck_assert_uint_eq(st.saved_bytes, 0);
    ck_assert_int_eq(tp_chan_destroy(e->open0), 0);
    ck_assert_int_eq(tp_chan_destroy(e->empty), 0);
    ck_assert_int_eq(tp_chan_destroy(e->full), 0);
    ck_assert_int_eq(tp_chan_destroy(e->closed), 0);
    ck_assert_int_eq(tp_chan_destroy(e->hold), 0);
    ck_assert_int_eq(tp_wg_done(e->wg), 0);
    ck_assert_int_eq(tp_mutex_destroy(e->mutex), 0);
    ck_assert_int_eq(tp_mutex_destroy(e->held), 0);
    ck_assert_int_eq(tp_cond_destroy(e->cond), 0);
    ck_assert_int_eq(tp_wg_destroy(e->wg), 0);
    ck_assert_int_eq(tp_wg_destroy(e->wg0), 0);
    free(e->mutex);
    free(e->held);
    free(e->cond);
    free(e->wg);
    free(e->wg0);
    free(e);
}

/* ------------------------------------------------------------ row helpers ---- */

static void *ret_arg(void *arg) { return arg; }

/* A call returning a pointer, as a row result: 0 for NULL, 1 otherwise. */
#define P(expr) ((expr) != NULL)

static int val = 7;    /* a value to send (static: never on a task's stack) */
static int sink;       /* where received values go */

/* Things that must work after an object is destroyed and a new one made. */
static long chan_recreate(void)
{
    tp_chan *c = tp_chan_create(sizeof(int), 1);
    if (!c || tp_chan_destroy(c) != 0)
        return -1;
    c = tp_chan_create(sizeof(int), 1);
    int v = 5, w = 0;
    long rc = c && tp_chan_send(c, &v, 0) == 0 && tp_chan_recv(c, &w, 0) == 0 && w == 5 ? 0 : -1;
    if (c)
        tp_chan_destroy(c);
    return rc;
}

static long pool_recreate(void)
{
    tp_pool_attr a = {.workers = 1, .stack_size = 0};
    for (int i = 0; i < 2; i++) {
        tp_pool *p = tp_pool_create(&a);
        void *r = NULL;
        if (!p || tp_join(tp_spawn(p, ret_arg, p), &r, -1) != 0 || r != p)
            return -1;
        if (tp_pool_destroy(p) != 0)
            return -1;
    }
    return 0;
}

static long sync_recreate(void)
{
    tp_mutex *m = calloc(1, sizeof *m);
    long rc = -1;
    if (tp_mutex_init(m) == 0 && tp_mutex_destroy(m) == 0 && tp_mutex_init(m) == 0 &&
        tp_mutex_lock(m) == 0 && tp_mutex_unlock(m) == 0 && tp_mutex_destroy(m) == 0)
        rc = 0;
    free(m);
    return rc;
}

static long spawn_local_addr(void)
{
    volatile int local = 0;
    return P(tp_spawn(NULL, ret_arg, (void *)&local));
}

/* A select case receiving from the empty channel. */
#define recv_empty(e) ((tp_case){.ch = (e)->empty, .op = TP_RECV, .elem = &sink})

static long select_closed_send(struct env *e)
{
    tp_case c = {.ch = e->closed, .op = TP_SEND, .elem = &val, .err = -1};
    int rc = tp_select(&c, 1, 0);
    return rc == 0 && c.err == EPIPE ? 0 : -1;
}

static long select_bad(struct env *e, int which)
{
    tp_case c[2] = {{.ch = e->empty, .op = TP_RECV, .elem = &sink},
                    {.ch = e->empty, .op = TP_RECV, .elem = &sink}};
    switch (which) {
    case 0: c[1].ch = NULL; break;
    case 1: c[1].elem = NULL; break;
    case 2: c[1].op = 3; break;
    default: c[1].op = 0; break;
    }
    return tp_select(c, 2, 0);
}

static long cond_wait_unheld(struct env *e) { return tp_cond_wait(e->cond, e->mutex, 0); }

static long mutex_relock(struct env *e)
{
    if (tp_mutex_lock(e->mutex) != 0)
        return 1;
    errno = 0;
    long rc = tp_mutex_lock(e->mutex);
    int err = errno;
    tp_mutex_unlock(e->mutex);
    errno = err;
    return rc;
}

static long mutex_destroy_locked(struct env *e)
{
    if (tp_mutex_lock(e->mutex) != 0)
        return 1;
    errno = 0;
    long rc = tp_mutex_destroy(e->mutex);
    int err = errno;
    tp_mutex_unlock(e->mutex);
    errno = err;
    return rc;
}

static long cond_wait_bad_deadline(struct env *e)
{
    if (tp_mutex_lock(e->mutex) != 0)
        return 1;
    errno = 0;
    long rc = tp_cond_wait(e->cond, e->mutex, -2);
    int err = errno;
    tp_mutex_unlock(e->mutex);
    errno = err;
    return rc;
}

static long cond_wait_timeout_relocks(struct env *e)
{
    if (tp_mutex_lock(e->mutex) != 0)
        return 1;
    errno = 0;
    long rc = tp_cond_wait(e->cond, e->mutex, 0);
    int err = errno;
    /* held again: unlocking must succeed */
    if (tp_mutex_unlock(e->mutex) != 0)
        return 2;
    errno = err;
    return rc;
}

static long wg_below_zero(struct env *e)
{
    long rc = tp_wg_add(e->wg0, -1);
    int err = errno;
    if (tp_wg_wait(e->wg0, 0) != 0) /* unchanged: still zero */
        return 2;
    errno = err;
    return rc;
}

static long wg_overflow(struct env *e)
{
    if (tp_wg_add(e->wg0, INT64_MAX) != 0)
        return 1;
    errno = 0;
    long rc = tp_wg_add(e->wg0, 1);
    int err = errno;
    tp_wg_add(e->wg0, -INT64_MAX);
    errno = err;
    return rc;
}

/* --------------------------------------------------------------- the table ---- */

enum { THREAD = 1, TASK = 2, BOTH = 3 };

struct row {
    const char *call; /* the expression, for messages */
    int where;
    long ret; /* the documented result */
    int err;  /* its errno when ret is -1 (or 0 for a NULL pointer); 0: not checked */
};

/* Each row's call is an expression over `e`; X-macros turn it into a function. */
#define ROWS(X)                                                                            \
    /* pools */                                                                            \
    X(THREAD, P(tp_pool_create(&(tp_pool_attr){.workers = 1025})), 0, EINVAL)              \
    X(THREAD, P(tp_pool_create(&(tp_pool_attr){.workers = UINT_MAX})), 0, EINVAL)          \
    X(THREAD, P(tp_pool_create(&(tp_pool_attr){.stack_size = 1})), 0, EINVAL)              \
    X(THREAD, P(tp_pool_create(&(tp_pool_attr){.stack_size = 16383})), 0, EINVAL)          \
    X(THREAD, P(tp_pool_create(&(tp_pool_attr){.stack_size = (1ul << 30) + 1})), 0, EINVAL) \
    X(THREAD, P(tp_pool_create(&(tp_pool_attr){.stack_size = SIZE_MAX})), 0, EINVAL)       \
    X(THREAD, P(tp_pool_create(&(tp_pool_attr){.stacks = TP_POOL_MAX_STACKS + 1})), 0, EINVAL) \
    X(BOTH, tp_pool_wait(NULL), -1, EINVAL)                                                \
    X(BOTH, tp_pool_destroy(NULL), -1, EINVAL)                                             \
    X(BOTH, tp_pool_stats(NULL, &(tp_stats){0}), -1, EINVAL)                               \
    X(BOTH, tp_pool_stats(e->pool, NULL), -1, EINVAL)                                      \
    X(TASK, tp_pool_wait(e->pool), -1, EDEADLK)                                            \
    X(TASK, tp_pool_destroy(e->pool), -1, EDEADLK)                                         \
    X(THREAD, pool_recreate(), 0, 0)                                                       \
    /* tasks */                                                                            \
    X(THREAD, P(tp_spawn(NULL, ret_arg, NULL)), 0, EINVAL)                                 \
    X(BOTH, P(tp_spawn(e->pool, NULL, NULL)), 0, EINVAL)                                   \
    X(BOTH, P(tp_spawn(e->pool, ret_arg, e->stack_addr)), 0, EINVAL)                       \
    X(TASK, spawn_local_addr(), 0, EINVAL)                                                 \
    X(BOTH, tp_join(NULL, NULL, -1), -1, EINVAL)                                           \
    X(BOTH, tp_join(NULL, NULL, 0), -1, EINVAL)                                            \
    X(TASK, tp_join(tp_self(), NULL, -1), -1, EDEADLK)                                     \
    X(TASK, tp_join(tp_self(), NULL, 0), -1, EDEADLK)                                      \
    X(BOTH, tp_join(e->detached, NULL, -1), -1, EINVAL)                                    \
    X(BOTH, tp_join(e->detached, NULL, 0), -1, EINVAL)                                     \
    X(BOTH, tp_join(e->joined, NULL, -1), -1, EINVAL)                                      \
    X(BOTH, tp_join(e->blocked, NULL, -2), -1, EINVAL)                                     \
    X(BOTH, tp_join(e->blocked, NULL, INT64_MIN), -1, EINVAL)                              \
    X(BOTH, tp_join(e->blocked, NULL, 0), -1, ETIMEDOUT)                                   \
    X(BOTH, tp_join(e->blocked, NULL, 1), -1, ETIMEDOUT)                                   \
    X(BOTH, tp_join(e->blocked, NULL, tp_now() + 2), -1, ETIMEDOUT)                        \
    X(BOTH, tp_detach(NULL), -1, EINVAL)                                                   \
    X(BOTH, tp_detach(e->detached), -1, EINVAL)                                            \
    X(BOTH, tp_detach(e->joined), -1, EINVAL)                                              \
    X(THREAD, (tp_exit(NULL), 0), 0, 0)                                                    \
    X(THREAD, P(tp_self()), 0, 0)                                                          \
    X(TASK, P(tp_self()), 1, 0)                                                            \
    X(BOTH, (long)tp_id(NULL), 0, EINVAL)                                                  \
    X(BOTH, tp_yield(), 0, 0)                                                              \
    X(BOTH, tp_sleep(-2), -1, EINVAL)                                                      \
    X(BOTH, tp_sleep(INT64_MIN), -1, EINVAL)                                               \
    X(BOTH, tp_sleep(0), 0, 0)                                                             \
    X(BOTH, tp_sleep(1), 0, 0)                                                             \
    X(BOTH, tp_sleep(tp_now()), 0, 0)                                                      \
    /* channels */                                                                         \
    X(BOTH, P(tp_chan_create(0, 0)), 0, EINVAL)                                            \
    X(BOTH, P(tp_chan_create(0, 1)), 0, EINVAL)                                            \
    X(BOTH, P(tp_chan_create(1, SIZE_MAX)), 0, EINVAL)                                     \
    X(BOTH, P(tp_chan_create(SIZE_MAX, 0)), 0, EINVAL)                                     \
    X(BOTH, P(tp_chan_create(SIZE_MAX, 2)), 0, EINVAL)                                     \
    X(BOTH, P(tp_chan_create((size_t)1 << 20, (size_t)1 << 21)), 0, EINVAL)                \
    X(BOTH, P(tp_chan_create(((size_t)1 << 40) + 1, 0)), 0, EINVAL)                        \
    X(BOTH, tp_chan_send(NULL, &val, 0), -1, EINVAL)                                       \
    X(BOTH, tp_chan_send(NULL, &val, -1), -1, EINVAL)                                      \
    X(BOTH, tp_chan_recv(NULL, &sink, -1), -1, EINVAL)                                     \
    X(BOTH, tp_chan_close(NULL), -1, EINVAL)                                               \
    X(BOTH, tp_chan_destroy(NULL), -1, EINVAL)                                             \
    X(BOTH, tp_chan_send(e->empty, NULL, 0), -1, EINVAL)                                   \
    X(BOTH, tp_chan_recv(e->full, NULL, 0), -1, EINVAL)                                    \
    X(BOTH, tp_chan_send(e->empty, &val, -2), -1, EINVAL)                                  \
    X(BOTH, tp_chan_send(e->empty, &val, INT64_MIN), -1, EINVAL)                           \
    X(BOTH, tp_chan_recv(e->full, &sink, -2), -1, EINVAL)                                  \
    X(BOTH, tp_chan_recv(e->full, &sink, INT64_MIN), -1, EINVAL)                           \
    X(BOTH, tp_chan_send(e->closed, &val, 0), -1, EPIPE)                                   \
    X(BOTH, tp_chan_send(e->closed, &val, -1), -1, EPIPE)                                  \
    X(BOTH, tp_chan_recv(e->closed, &sink, 0), -1, EPIPE)                                  \
    X(BOTH, tp_chan_recv(e->closed, &sink, -1), -1, EPIPE)                                 \
    X(BOTH, tp_chan_close(e->closed), -1, EPIPE)                                           \
    X(BOTH, tp_chan_send(e->full, &val, 0), -1, ETIMEDOUT)                                 \
    X(BOTH, tp_chan_send(e->full, &val, 1), -1, ETIMEDOUT)                                 \
    X(BOTH, tp_chan_send(e->full, &val, tp_now() + 2), -1, ETIMEDOUT)                      \
    X(BOTH, tp_chan_send(e->open0, &val, 0), -1, ETIMEDOUT)                                \
    X(BOTH, tp_chan_send(e->open0, &val, tp_now() + 2), -1, ETIMEDOUT)                     \
    X(BOTH, tp_chan_recv(e->empty, &sink, 0), -1, ETIMEDOUT)                               \
    X(BOTH, tp_chan_recv(e->empty, &sink, 1), -1, ETIMEDOUT)                               \
    X(BOTH, tp_chan_recv(e->open0, &sink, 0), -1, ETIMEDOUT)                               \
    X(BOTH, tp_chan_recv(e->open0, &sink, tp_now() + 2), -1, ETIMEDOUT)                    \
    X(BOTH, tp_chan_destroy(e->hold), -1, EBUSY)                                           \
    X(BOTH, chan_recreate(), 0, 0)                                                         \
    /* select */                                                                           \
    X(BOTH, tp_select(NULL, 0, 0), -1, EINVAL)                                             \
    X(BOTH, tp_select(NULL, 1, 0), -1, EINVAL)                                             \
    X(BOTH, tp_select(&(tp_case){0}, 0, -1), -1, EINVAL)                                   \
    X(BOTH, tp_select(&(tp_case){0}, (size_t)INT_MAX + 1, 0), -1, EINVAL)                  \
    X(BOTH, tp_select(&recv_empty(e), 1, -2), -1, EINVAL)                                  \
    X(BOTH, select_bad(e, 0), -1, EINVAL)                                                  \
    X(BOTH, select_bad(e, 1), -1, EINVAL)                                                  \
    X(BOTH, select_bad(e, 2), -1, EINVAL)                                                  \
    X(BOTH, select_bad(e, 3), -1, EINVAL)                                                  \
    X(BOTH, tp_select(&recv_empty(e), 1, 0), -1, ETIMEDOUT)                               \
    X(BOTH, tp_select(&(tp_case){0}, 0, 0), -1, ETIMEDOUT)                                 \
    X(BOTH, select_closed_send(e), 0, 0)                                                   \
    /* mutexes */                                                                          \
    X(BOTH, tp_mutex_init(NULL), -1, EINVAL)                                               \
    X(BOTH, tp_mutex_lock(NULL), -1, EINVAL)                                               \
    X(BOTH, tp_mutex_unlock(NULL), -1, EINVAL)                                             \
    X(BOTH, tp_mutex_destroy(NULL), -1, EINVAL)                                            \
    X(BOTH, tp_mutex_unlock(e->mutex), -1, EPERM)                                          \
    X(BOTH, tp_mutex_unlock(e->held), -1, EPERM)                                           \
    X(BOTH, tp_mutex_destroy(e->held), -1, EBUSY)                                          \
    X(BOTH, mutex_relock(e), -1, EDEADLK)                                                  \
    X(BOTH, mutex_destroy_locked(e), -1, EBUSY)                                            \
    X(BOTH, sync_recreate(), 0, 0)                                                         \
    /* conditions */                                                                       \
    X(BOTH, tp_cond_init(NULL), -1, EINVAL)                                                \
    X(BOTH, tp_cond_signal(NULL), -1, EINVAL)                                              \
    X(BOTH, tp_cond_broadcast(NULL), -1, EINVAL)                                           \
    X(BOTH, tp_cond_destroy(NULL), -1, EINVAL)                                             \
    X(BOTH, tp_cond_wait(NULL, e->mutex, 0), -1, EINVAL)                                   \
    X(BOTH, tp_cond_wait(e->cond, NULL, 0), -1, EINVAL)                                    \
    X(BOTH, cond_wait_unheld(e), -1, EPERM)                                                \
    X(BOTH, tp_cond_wait(e->cond, e->held, 0), -1, EPERM)                                  \
    X(BOTH, cond_wait_bad_deadline(e), -1, EINVAL)                                         \
    X(BOTH, cond_wait_timeout_relocks(e), -1, ETIMEDOUT)                                   \
    X(BOTH, tp_cond_signal(e->cond), 0, 0)                                                 \
    X(BOTH, tp_cond_broadcast(e->cond), 0, 0)                                              \
    /* wait groups */                                                                      \
    X(BOTH, tp_wg_init(NULL), -1, EINVAL)                                                  \
    X(BOTH, tp_wg_add(NULL, 1), -1, EINVAL)                                                \
    X(BOTH, tp_wg_done(NULL), -1, EINVAL)                                                  \
    X(BOTH, tp_wg_wait(NULL, 0), -1, EINVAL)                                               \
    X(BOTH, tp_wg_destroy(NULL), -1, EINVAL)                                               \
    X(BOTH, tp_wg_done(e->wg0), -1, EINVAL)                                                \
    X(BOTH, wg_below_zero(e), -1, EINVAL)                                                  \
    X(BOTH, wg_overflow(e), -1, EOVERFLOW)                                                 \
    X(BOTH, tp_wg_wait(e->wg, -2), -1, EINVAL)                                             \
    X(BOTH, tp_wg_wait(e->wg, 0), -1, ETIMEDOUT)                                           \
    X(BOTH, tp_wg_wait(e->wg, tp_now() + 2), -1, ETIMEDOUT)                                \
    X(BOTH, tp_wg_wait(e->wg0, 0), 0, 0)                                                   \
    X(BOTH, tp_wg_wait(e->wg0, -1), 0, 0)

/* Row i's call is case i of one switch; __COUNTER__ numbers the cases in the same order
   as the table's entries. */
enum { ROW_BASE = __COUNTER__ + 1 };

static long call_row(int i, struct env *e)
{
    switch (i + ROW_BASE) {
#define ROW_CASE(where, expr, ret, err)                                                    \
    case __COUNTER__:                                                                      \
        return (long)(expr);
        ROWS(ROW_CASE)
    }
    ck_abort_msg("no row %d", i);
    return 0;
}

static const struct row rows[] = {
#define ROW_ENTRY(where, expr, ret, err) {#expr, where, ret, err},
    ROWS(ROW_ENTRY)};
#define NROWS ((int)(sizeof rows / sizeof rows[0]))

/* ------------------------------------------------------------------ runner ---- */

struct outcome {
    int row;
    struct env *e;
    long ret;
    int err;
};

static void *run_row_in_task(void *arg)
{
    struct outcome *o = arg;
    errno = 0;
    o->ret = call_row(o->row, o->e);
    o->err = errno;
    return NULL;
}

static int checked;

static void run_row(tp_pool *p, int i, int where)
{
    const struct row *r = &rows[i];
    struct env *e = env_up(p);
    struct outcome *o = calloc(1, sizeof *o); /* shared with a task: on the heap */
    o->row = i;
    o->e = e;
    if (where == THREAD) {
        errno = 0;
        o->ret = call_row(i, e);
        o->err = errno;
    } else {
        tp_task *t = tp_spawn(p, run_row_in_task, o);
        ck_assert_ptr_nonnull(t);
        ck_assert_int_eq(tp_join(t, NULL, -1), 0);
    }
    const char *ctx = where == THREAD ? "plain thread" : "task";
    ck_assert_msg(o->ret == r->ret, "row %d (%s) in a %s: returned %ld, documented %ld (errno %d)",
                  i, r->call, ctx, o->ret, r->ret, o->err);
    if (r->err)
        ck_assert_msg(o->err == r->err, "row %d (%s) in a %s: errno %d (%s), documented %d (%s)",
                      i, r->call, ctx, o->err, strerror(o->err), r->err, strerror(r->err));
    free(o);
    env_down(e); /* and nothing the row did broke the pool or the objects */
    checked++;
}

START_TEST(test_bad_input_table)
{
    tp_pool *p = test_pool(2);
    for (int i = 0; i < NROWS; i++) {
        if (rows[i].where & THREAD)
            run_row(p, i, THREAD);
        if (rows[i].where & TASK)
            run_row(p, i, TASK);
    }
    tp_stats st;
    ck_assert_int_eq(tp_pool_stats(p, &st), 0);
    ck_assert_uint_eq(st.saved_capacity, 0);
    ck_assert_int_eq(tp_pool_destroy(p), 0);
    printf("badinput: %d rows, %d calls checked against their documented result\n", NROWS,
           checked);
}
END_TEST

/* tp_exit from a plain thread does nothing: the thread carries on. */
START_TEST(test_exit_in_thread_returns)
{
    int after = 0;
    tp_exit((void *)1);
    after = 1;
    ck_assert_int_eq(after, 1);
    ck_assert_ptr_null(tp_self());
}
END_TEST

int main(void)
{
    Suite *s = suite_create("badinput");
    TCase *tc = tcase_create("table");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_bad_input_table);
    tcase_add_test(tc, test_exit_in_thread_returns);
    suite_add_tcase(s, tc);
    return test_run(s);
}
