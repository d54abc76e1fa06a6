/* task.c -- spawning, joining, detaching and ending tasks.
 *
 * A task's control block lives until it is both finished and released: released by a
 * successful tp_join (the joiner frees it) or by tp_detach (the finisher frees it).
 * The finish protocol runs in the scheduler, after the task's last switch, so a joiner
 * on another worker can never free a block whose task is still executing.
 */
#include "tp_internal.h"
#include "park.h"

#include <sched.h>

/* Ids: each thread takes blocks of 1024 from a global counter, so spawning is not a
   contended atomic per task. */
static atomic_uint_fast64_t id_blocks = 1;
static TP__TLS uint64_t id_next, id_end;

static uint64_t new_id(void)
{
    if (TP__UNLIKELY(id_next == id_end)) {
        id_next = atomic_fetch_add(&id_blocks, 1) * 1024;
        id_end = id_next + 1024;
    }
    return id_next++;
}

tp_task *tp_spawn(tp_pool *pool, void *(*fn)(void *), void *arg)
{
    if (TP__UNLIKELY(!fn)) {
        errno = EINVAL;
        return NULL;
    }
    if (!pool) {
        if (!tp__current()) {
            errno = EINVAL;
            return NULL;
        }
        pool = tp__self_worker->pool;
    }
    if (TP__UNLIKELY(atomic_load_explicit(&pool->stopping, memory_order_relaxed) ||
                     tp__on_shared_stack(arg))) {
        errno = EINVAL;
        return NULL;
    }
    tp_task *t = tp__calloc(1, sizeof *t);
    if (TP__UNLIKELY(!t)) {
        errno = ENOMEM;
        return NULL;
    }
    tp__spin_init(&t->lock);
    t->fn = fn;
    t->arg = arg;
    t->pool = pool;
    t->id = new_id(); /* (calloc: flags 0, neither done nor detached) */
    struct tp__worker *self = tp__self_worker;
    if (self && self->pool == pool) /* its own counter: see tp__pool_live */
        tp__count(&self->st_spawned, 1);
    else
        atomic_fetch_add_explicit(&pool->spawned, 1, memory_order_relaxed);
    tp__place_new(pool, t);
    return t;
}

#if TP_ASAN
/* Under ASan a task must tell it that the switch is complete before anything else, so
   it starts here, one frame above its function (only there: see sched.c's run()). */
void *tp__task_entry(void *arg)
{
    tp_task *t = arg;
    san_back_in_task(t);
    void *(*fn)(void *) = t->fn;
    t->save = NULL; /* shares its word with fn */
    return fn(t->arg);
}
#endif

/* Where a task's function returns to (tp__ctx_init's `done`). */
void tp__task_return(void *result)
{
    tp_task *t = tp__current();
    t->arg = result;
    tp__exit_task(t);
}

void tp_exit(void *result)
{
    tp_task *t = tp__current();
    if (!t)
        return; /* contract: does nothing outside a task */
    t->arg = result;
    tp__exit_task(t);
}

/* Called by the scheduler once t has switched out for the last time. */
void tp__task_finish(struct tp__worker *w, tp_task *t)
{
    tp__stack_release(w, t);
#if TP_TSAN
    __tsan_destroy_fiber(t->tsan_fiber);
    t->tsan_fiber = NULL;
#endif
    /* Count it finished before anyone can learn that it is: a joiner that returns, or a
       tp_pool_stats after that, must not still see it live.  (tp_pool_destroy cannot
       free the pool under us: it joins this worker's thread first.) */
    tp__pool_task_done(w);
    tp__spin_lock(&t->lock);
    /* Before DONE is visible: nobody can release it before this. */
    if (!(t->flags & TP__TASK_DETACHED))
        tp__done_add(w, t);
    t->flags |= TP__TASK_DONE;
    struct tp__wait *j = t->joiner;
    bool detached = t->flags & TP__TASK_DETACHED;
    /* Claim under the lock: a joiner that timed out has claimed its own wait and waits
       for this lock in tp__join_cancel, so j is alive here -- after the unlock it may
       return and reuse that memory for another wait. */
    bool wake = j && tp__wait_claim(j);
    tp__spin_unlock(&t->lock);
    /* From here on t may be freed by a joiner that saw TP__TASK_DONE. */
    if (detached)
        free(t);
    else if (wake)
        tp__wait_complete(j, 0);
}

/* A joiner that timed out withdraws itself, unless the finisher already took it. */
void tp__join_cancel(struct tp__wait *w)
{
    tp_task *t = w->obj;
    tp__spin_lock(&t->lock);
    if (t->joiner == w)
        t->joiner = NULL;
    tp__spin_unlock(&t->lock);
}

static int reap(tp_task *t, void **result)
{
    if (result)
        *result = t->arg;
    tp__done_remove(t);
    free(t);
    return 0;
}

int tp_join(tp_task *t, void **result, int64_t deadline)
{
    if (TP__UNLIKELY(!t || tp__deadline_check(deadline) < 0)) {
        errno = EINVAL;
        return -1;
    }
    tp_task *self = tp__current();
    if (TP__UNLIKELY(t == self)) {
        errno = EDEADLK;
        return -1;
    }
    tp__spin_lock(&t->lock);
    if (t->flags & TP__TASK_DONE) {
        tp__spin_unlock(&t->lock);
        return reap(t, result);
    }
    int rc = EINVAL; /* detached, or someone else is joining it */
    if (!(t->flags & TP__TASK_DETACHED) && !t->joiner) {
        rc = ETIMEDOUT;
        if (deadline != 0) {
            struct tp__wait thread_wait, *w = self ? &self->wait : &thread_wait;
            tp__wait_init(w, self);
            w->cancel = TP__CANCEL_JOIN;
            w->obj = t;
            t->joiner = w;
            rc = tp__wait_block(w, &t->lock, deadline);
            if (rc == 0)
                return reap(t, result);
            if (rc != ENOMEM)
                goto fail;
            t->joiner = NULL;
        }
    }
    tp__spin_unlock(&t->lock);
fail:
    errno = rc;
    return -1;
}

int tp_detach(tp_task *t)
{
    if (TP__UNLIKELY(!t)) {
        errno = EINVAL;
        return -1;
    }
    tp__spin_lock(&t->lock);
    if ((t->flags & TP__TASK_DETACHED) || t->joiner) {
        tp__spin_unlock(&t->lock);
        errno = EINVAL;
        return -1;
    }
    if (t->flags & TP__TASK_DONE) {
        tp__spin_unlock(&t->lock);
        tp__done_remove(t);
        free(t);
        return 0;
    }
    t->flags |= TP__TASK_DETACHED;
    tp__spin_unlock(&t->lock);
    return 0;
}

tp_task *tp_self(void) { return tp__current(); }

uint64_t tp_id(const tp_task *t)
{
    if (!t) {
        errno = EINVAL;
        return 0;
    }
    return t->id;
}

int tp_yield(void)
{
    tp_task *t = tp__current();
    if (!t) {
        sched_yield();
        return 0;
    }
    if (tp__yield_task(t) < 0) {
        errno = ENOMEM;
        return -1;
    }
    return 0;
}
