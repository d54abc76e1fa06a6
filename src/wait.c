/* wait.c -- one way to block, for tasks and plain threads alike.
 *
 * A blocking operation fills a struct tp__wait, queues registrations (tp__wnode) on the
 * objects it waits for, and calls tp__wait_block().  Whoever completes it -- a matching
 * channel operation, a close, an unlock, a timer -- must first win tp__wait_claim(); the
 * loser leaves it alone.  That single compare-and-swap is what makes "a value arrived"
 * and "the deadline passed" mutually exclusive outcomes.
 *
 * A task parks (its worker runs other tasks); a plain thread sleeps on a futex word in
 * its own wait record.
 */
#include "tp_internal.h"

void tp__wait_init(struct tp__wait *w, tp_task *self)
{
    atomic_store_explicit(&w->claimed, 0, memory_order_relaxed);
    w->status = 0;
    w->index = 0;
    w->task = self;
    atomic_store_explicit(&w->futex, 0, memory_order_relaxed);
    w->cancel = NULL;
    w->obj = NULL;
}

void tp__wait_complete(struct tp__wait *w, int status, int index)
{
    w->status = status;
    w->index = index;
    if (w->task) {
        tp__wake(w->task);
        return;
    }
    /* A woken thread may return and reuse its stack at once: after the store, w is
       only an address for the futex call (a stale wake-up there is harmless). */
    atomic_store_explicit(&w->futex, 1, memory_order_release);
    tp__thread_futex_wake(&w->futex);
}

static int thread_block(struct tp__wait *w, tp__spin *held, int64_t deadline)
{
    if (held)
        tp__spin_unlock(held);
    while (!atomic_load_explicit(&w->futex, memory_order_acquire)) {
        if (deadline >= 0 && tp_now() >= deadline) {
            if (tp__wait_claim(w)) {
                if (w->cancel)
                    w->cancel(w);
                return ETIMEDOUT;
            }
            deadline = -1; /* someone is completing it: wait for them */
            continue;
        }
        tp__thread_futex_wait(&w->futex, deadline);
    }
    return w->status;
}

int tp__wait_block(struct tp__wait *w, tp__spin *held, int64_t deadline)
{
    if (w->task)
        return tp__park(w->task, held, deadline) < 0 ? ENOMEM : w->status;
    return thread_block(w, held, deadline);
}

/* ---------------------------------------------------------------- wait queues ---- */

void tp__wq_push(struct tp__wqueue *q, struct tp__wnode *n)
{
    n->next = NULL;
    n->prev = q->tail;
    if (q->tail)
        q->tail->next = n;
    else
        q->head = n;
    q->tail = n;
}

void tp__wq_remove(struct tp__wqueue *q, struct tp__wnode *n)
{
    if (n->prev)
        n->prev->next = n->next;
    else
        q->head = n->next;
    if (n->next)
        n->next->prev = n->prev;
    else
        q->tail = n->prev;
    tp__wnode_init(n);
}

struct tp__wnode *tp__wq_claim_first(struct tp__wqueue *q)
{
    for (struct tp__wnode *n = q->head; n; n = n->next) {
        if (tp__wait_claim(n->w)) {
            tp__wq_remove(q, n);
            return n;
        }
    }
    return NULL;
}

void tp__wnode_queue(struct tp__wnode *n, struct tp__wqueue *q, tp__spin *lock)
{
    n->q = q;
    n->lock = lock;
    tp__wq_push(q, n);
}

void tp__wnode_cancel(struct tp__wait *w)
{
    struct tp__wnode *n = w->obj;
    tp__spin_lock(n->lock);
    if (tp__wq_queued(n))
        tp__wq_remove(n->q, n);
    tp__spin_unlock(n->lock);
}

struct tp__wnode *tp__wq_claim_all(struct tp__wqueue *q)
{
    struct tp__wnode *n, *list = NULL, **tail = &list;
    while ((n = tp__wq_claim_first(q))) { /* keep FIFO order in the chain */
        *tail = n;
        tail = &n->next;
    }
    *tail = NULL;
    return list;
}

void tp__wq_complete_all(struct tp__wnode *list, int status)
{
    while (list) { /* read next first: a woken party may reuse its node at once */
        struct tp__wnode *n = list;
        list = n->next;
        tp__wait_complete(n->w, status, n->index);
    }
}
