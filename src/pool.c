/* pool.c -- creating, waiting for, measuring and destroying a pool of workers. */
#include "tp_internal.h"

#include <sched.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#define TP__DEFAULT_STACK ((size_t)1 << 20)
#define TP__MIN_STACK ((size_t)16 << 10)
#define TP__MAX_STACK ((size_t)1 << 30)
#define TP__MAX_WORKERS 1024

static int worker_init(tp_pool *pool, struct tp__worker *w, unsigned index)
{
    tp__spin_init(&w->lock);
    tp__rq_init(&w->ready, w->rq_levels);
    tp__rb_init(&w->timers);
    w->pool = pool;
    w->index = index;
    w->rng = 0x9E3779B97F4A7C15ull * (index + 1);
    w->evfd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (w->evfd < 0)
        return -1;
    w->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (w->epfd < 0)
        return -1;
    /* data.ptr NULL marks the wake-up eventfd; I/O registrations will carry pointers. */
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = NULL};
    if (epoll_ctl(w->epfd, EPOLL_CTL_ADD, w->evfd, &ev) < 0)
        return -1;
    return tp__stack_create(w, pool->stack_size, pool->stacks);
}

static void worker_fini(struct tp__worker *w)
{
    if (w->evfd >= 0)
        close(w->evfd);
    if (w->epfd >= 0)
        close(w->epfd);
    tp__stack_destroy(w);
}

static void pool_free(tp_pool *pool, unsigned initialised)
{
    for (unsigned i = 0; i < initialised; i++)
        worker_fini(&pool->workers[i]);
    pthread_mutex_destroy(&pool->idle_mu);
    pthread_cond_destroy(&pool->idle_cv);
    free(pool->workers);
    free(pool);
}

static void stop_workers(tp_pool *pool, unsigned started)
{
    atomic_store(&pool->stopping, 1);
    for (unsigned i = 0; i < started; i++) {
        struct tp__worker *w = &pool->workers[i];
        atomic_store(&w->sleeping, 1); /* force the eventfd write */
        tp__worker_kick(w);
    }
    for (unsigned i = 0; i < started; i++)
        pthread_join(pool->workers[i].thread, NULL);
}

static int attr_values(const tp_pool_attr *attr, unsigned *workers, size_t *stack,
                       unsigned *stacks)
{
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    *workers = attr && attr->workers ? attr->workers : (unsigned)(cpus > 0 ? cpus : 1);
    *stack = attr && attr->stack_size ? attr->stack_size : TP__DEFAULT_STACK;
    *stacks = attr && attr->stacks ? attr->stacks : TP__SLOTS;
    if (*workers > TP__MAX_WORKERS || *stack < TP__MIN_STACK || *stack > TP__MAX_STACK ||
        *stacks > TP__SLOTS) {
        errno = EINVAL;
        return -1;
    }
    return 0;
}

tp_pool *tp_pool_create(const tp_pool_attr *attr)
{
    unsigned n, stacks, i = 0, started = 0;
    size_t stack;
    if (attr_values(attr, &n, &stack, &stacks) < 0)
        return NULL;
    tp_pool *pool = tp__calloc(1, sizeof *pool);
    if (!pool) {
        errno = ENOMEM;
        return NULL;
    }
    pool->nworkers = n;
    pool->stack_size = stack;
    pool->stacks = stacks;
    pthread_mutex_init(&pool->idle_mu, NULL);
    pthread_cond_init(&pool->idle_cv, NULL);
    int err = ENOMEM;
    pool->workers = tp__calloc_aligned(n, sizeof *pool->workers, _Alignof(struct tp__worker));
    if (!pool->workers)
        goto fail;
    for (; i < n; i++) {
        if (worker_init(pool, &pool->workers[i], i) < 0) {
            err = errno; /* EMFILE/ENFILE (descriptors) or ENOMEM */
            goto fail_worker;
        }
    }
    if (tp__stack_register(pool) < 0)
        goto fail;
    for (; started < n; started++) {
        err = pthread_create(&pool->workers[started].thread, NULL, tp__worker_main,
                             &pool->workers[started]);
        if (err) {
            err = EAGAIN;
            stop_workers(pool, started);
            tp__stack_unregister(pool);
            goto fail;
        }
    }
    return pool;
fail_worker:
    i++; /* the failed worker holds whatever it managed to open */
fail:
    pool_free(pool, i);
    errno = err;
    return NULL;
}

/* Tasks alive = spawned - finished, summed over the workers (each counts its own tasks'
   spawns and the finishes it runs, on its own cache line: a shared counter touched by
   every spawn and every finish on every worker made fork/join code no faster on two
   workers than on one).  Finishes are read first: a finish counted implies its spawn is
   visible too, so the result is never below the truth, and it is 0 only once every task
   counted so far has finished. */
static uint64_t pool_spawned(tp_pool *pool)
{
    uint64_t spawned = atomic_load(&pool->spawned);
    for (unsigned i = 0; i < pool->nworkers; i++)
        spawned += atomic_load_explicit(&pool->workers[i].st_spawned, memory_order_relaxed);
    return spawned;
}

uint64_t tp__pool_live(tp_pool *pool)
{
    uint64_t finished = 0;
    for (unsigned i = 0; i < pool->nworkers; i++)
        finished += atomic_load_explicit(&pool->workers[i].st_finished, memory_order_acquire);
    return pool_spawned(pool) - finished;
}

/* On w's thread, once a task has finished there.  Counting it and then looking for
   waiters (both sequentially consistent) pairs with tp_pool_wait announcing itself and
   then summing: one of the two sees the other. */
void tp__pool_task_done(struct tp__worker *w)
{
    tp_pool *pool = w->pool;
    atomic_fetch_add(&w->st_finished, 1);
    if (!atomic_load(&pool->waiters))
        return;
    pthread_mutex_lock(&pool->idle_mu);
    if (tp__pool_live(pool) == 0)
        pthread_cond_broadcast(&pool->idle_cv);
    pthread_mutex_unlock(&pool->idle_mu);
}

int tp_pool_wait(tp_pool *pool)
{
    if (!pool) {
        errno = EINVAL;
        return -1;
    }
    if (tp__self_worker) { /* a worker waiting for its own pool would wait forever */
        errno = EDEADLK;
        return -1;
    }
    pthread_mutex_lock(&pool->idle_mu);
    atomic_fetch_add(&pool->waiters, 1);
    while (tp__pool_live(pool))
        pthread_cond_wait(&pool->idle_cv, &pool->idle_mu);
    atomic_fetch_sub(&pool->waiters, 1);
    pthread_mutex_unlock(&pool->idle_mu);
    return 0;
}

int tp_pool_destroy(tp_pool *pool)
{
    if (tp_pool_wait(pool) < 0)
        return -1;
    stop_workers(pool, pool->nworkers);
    /* A thread that queued the last task may still be kicking its worker. */
    for (unsigned i = 0; i < pool->nworkers; i++)
        while (atomic_load_explicit(&pool->workers[i].wakers, memory_order_acquire))
            sched_yield();
    for (unsigned i = 0; i < pool->nworkers; i++)
        tp__done_free_all(&pool->workers[i]); /* finished, never joined nor detached */
    tp__stack_unregister(pool);
    pool_free(pool, pool->nworkers);
    return 0;
}

int tp_pool_stats(tp_pool *pool, tp_stats *out)
{
    if (!pool || !out) {
        errno = EINVAL;
        return -1;
    }
    memset(out, 0, sizeof *out);
    for (unsigned i = 0; i < pool->nworkers; i++) {
        struct tp__worker *w = &pool->workers[i];
        /* woken first, parked last: a task counted woken was counted parked before */
        uint64_t woken = atomic_load_explicit(&w->st_woken, memory_order_relaxed) +
                         atomic_load_explicit(&w->st_rwoken, memory_order_relaxed);
        uint64_t parked = atomic_load_explicit(&w->st_parked, memory_order_acquire);
        out->tasks_parked += parked > woken ? parked - woken : 0;
        out->saved_bytes += atomic_load_explicit(&w->st_saved, memory_order_relaxed);
        out->saved_capacity += atomic_load_explicit(&w->st_saved_cap, memory_order_relaxed);
        out->switches += atomic_load_explicit(&w->st_switches, memory_order_relaxed);
        out->copied_bytes += atomic_load_explicit(&w->st_copied, memory_order_relaxed);
        out->steals += atomic_load_explicit(&w->st_steals, memory_order_relaxed);
        out->sleeps += atomic_load_explicit(&w->st_sleeps, memory_order_relaxed);
    }
    out->tasks_live = tp__pool_live(pool);
    out->tasks_spawned = pool_spawned(pool);
    out->workers = pool->nworkers;
    return 0;
}
