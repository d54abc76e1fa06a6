/* timer.c -- the clock, deadlines, and sleeping.
 *
 * Every deadline is an absolute tp_now() time in milliseconds.  A task that parks with a
 * deadline goes into its worker's timer rbtree (keyed by deadline, FIFO among equals);
 * only that worker's thread touches the tree, so it needs no lock.  The worker fires
 * expired timers before each scheduling decision and sleeps no longer than the earliest.
 * The tree's node for a task is at the end of the task's save buffer (struct tp__tnode),
 * which the park reserves room for when it has a deadline, so that a control block
 * carries no tree node (tp_internal.h); woken, the task's worker takes it out.
 * A plain thread waits on a futex with an absolute CLOCK_MONOTONIC timeout instead.
 */
#include "tp_internal.h"

#include <linux/futex.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

int64_t tp_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Contract: -1 = forever, >= 0 = absolute; anything below -1 is EINVAL. */
int tp__deadline_check(int64_t deadline)
{
    if (TP__UNLIKELY(deadline < -1)) {
        errno = EINVAL;
        return -1;
    }
    return 0;
}

void tp__timer_add(struct tp__worker *w, tp_task *t, int64_t deadline)
{
    struct tp__tnode *n = tp__timer_node(t);
    n->task = t;
    tp__rb_insert(&w->timers, &n->rb, deadline);
    t->save_cap |= TP__SAVE_TIMED;
}

void tp__timer_remove(struct tp__worker *w, tp_task *t)
{
    tp__rb_remove(&w->timers, &tp__timer_node(t)->rb);
    t->save_cap &= ~TP__SAVE_TIMED;
}

/* Time out every task whose deadline is <= now.  Returns the earliest remaining deadline
   (-1: none).  A timer that loses the claim race does nothing: whoever won will wake the
   task, and the task removes nothing more when it resumes (its node is already out). */
int64_t tp__timer_fire(struct tp__worker *w, int64_t now)
{
    struct tp__rbnode *n;
    while ((n = w->timers.first) && n->key <= now) {
        tp_task *t = ((struct tp__tnode *)(void *)n)->task; /* (rb is its first member) */
        tp__timer_remove(w, t);
        if (!tp__wait_claim(&t->wait))
            continue;
        tp__wait_cancel(&t->wait);
        t->wait.status = ETIMEDOUT;
        tp__count(&w->st_woken, 1);
        tp__ready_local(w, t);
    }
    return n ? n->key : -1;
}

/* ------------------------------------------------------------- plain threads ---- */

static void deadline_to_ts(int64_t deadline, struct timespec *ts)
{
    ts->tv_sec = deadline / 1000;
    ts->tv_nsec = (deadline % 1000) * 1000000;
}

void tp__thread_futex_wait(atomic_uint *word, unsigned expect, int64_t deadline)
{
    struct timespec ts, *tsp = NULL;
    if (deadline >= 0) {
        deadline_to_ts(deadline, &ts);
        tsp = &ts;
    }
    /* FUTEX_WAIT_BITSET takes an absolute CLOCK_MONOTONIC time, which matches tp_now. */
    syscall(SYS_futex, word, FUTEX_WAIT_BITSET | FUTEX_PRIVATE_FLAG, expect, tsp, NULL,
            FUTEX_BITSET_MATCH_ANY);
}

void tp__thread_futex_wake(atomic_uint *word)
{
    syscall(SYS_futex, word, FUTEX_WAKE | FUTEX_PRIVATE_FLAG, 1, NULL, NULL, 0);
}

/* ---------------------------------------------------------------------- sleep ---- */

int tp_sleep(int64_t deadline)
{
    if (tp__deadline_check(deadline) < 0)
        return -1;
    tp_task *self = tp__current();
    if (!self) {
        if (deadline < 0) { /* forever: a thread that asks for it gets it */
            for (;;)
                pause();
        }
        struct timespec ts;
        deadline_to_ts(deadline, &ts);
        while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR)
            ;
        return 0;
    }
    if (deadline >= 0 && deadline <= tp_now())
        return 0;
    tp__wait_init(&self->wait, self);
    int rc = tp__wait_block(&self->wait, NULL, deadline);
    if (rc == ENOMEM) {
        errno = ENOMEM;
        return -1;
    }
    return 0;
}
