/* wait.c -- one way to block, for tasks and plain threads alike.
 *
 * A blocking operation fills a struct tp__wait, queues registrations (tp__wnode) on the
 * objects it waits for, and calls tp__wait_block().  Whoever completes it -- a matching
 * channel operation, a close, an unlock, a timer -- must first win tp__wait_claim(); the
 * loser leaves it alone.  That single compare-and-swap is what makes "a value arrived"
 * and "the deadline passed" mutually exclusive outcomes.
 *
 * A task parks (its worker runs other tasks); a plain thread sleeps on its wait record's
 * state word (a futex) until the completer sets TP__WAIT_WOKEN in it.
 */
#include "tp_internal.h"

void tp__wait_complete(struct tp__wait *w, int status)
{
    tp__wait_complete_inline(w, status);
}

void tp__wait_wake_thread(struct tp__wait *w)
{
    /* A woken thread may return and reuse its stack at once: after the store, w is
       only an address for the futex call (a stale wake-up there is harmless). */
    atomic_fetch_or_explicit(&w->state, TP__WAIT_WOKEN, memory_order_release);
    tp__thread_futex_wake(&w->state);
}

void tp__wait_cancel(struct tp__wait *w)
{
    static tp__cancel_fn *const fns[] = {
        [TP__CANCEL_CHAN_SEND] = tp__chan_cancel_send,
        [TP__CANCEL_CHAN_RECV] = tp__chan_cancel_recv,
        [TP__CANCEL_COND] = tp__cond_cancel,
        [TP__CANCEL_WG] = tp__wg_cancel,
        [TP__CANCEL_SELECT] = tp__select_cancel,
        [TP__CANCEL_JOIN] = tp__join_cancel,
    };
    TP__ASSERT(w->cancel < sizeof fns / sizeof fns[0]);
    if (w->cancel != TP__CANCEL_NONE)
        fns[w->cancel](w);
}

static int thread_block(struct tp__wait *w, tp__spin *held, int64_t deadline)
{
    if (held)
        tp__spin_unlock(held);
    unsigned s;
    while (!((s = atomic_load_explicit(&w->state, memory_order_acquire)) & TP__WAIT_WOKEN)) {
        if (deadline >= 0 && tp_now() >= deadline) {
            if (tp__wait_claim(w)) {
                tp__wait_cancel(w);
                return ETIMEDOUT;
            }
            deadline = -1; /* someone is completing it: wait for them */
            continue;
        }
        /* Returns at once if the word is no longer s (claimed meanwhile, say). */
        tp__thread_futex_wait(&w->state, s, deadline);
    }
    return w->status;
}

int tp__wait_block(struct tp__wait *w, tp__spin *held, int64_t deadline)
{
    if (tp__wait_is_task(w))
        return tp__park(tp__wait_task(w), held, deadline) < 0 ? ENOMEM : w->status;
    return thread_block(w, held, deadline);
}

/* ---------------------------------------------------------------- wait queues ---- */

void tp__wq_remove(struct tp__wqueue *q, struct tp__wnode *n)
{
    tp__wq_remove_inline(q, n);
}

struct tp__wnode *tp__wq_claim_scan(struct tp__wqueue *q)
{
    struct tp__wnode *n = q->head;
    do {
        if (tp__wait_claim(n->w)) {
            tp__wq_remove(q, n);
            return n;
        }
        n = n->next;
    } while (n != q->head);
    return NULL;
}

void tp__wnode_withdraw(struct tp__wnode *n, tp__spin *lock)
{
    tp__spin_lock(lock);
    if (tp__wq_queued(n))
        tp__wq_remove(n->q, n);
    tp__spin_unlock(lock);
}

struct tp__wnode *tp__wq_claim_all(struct tp__wqueue *q)
{
    struct tp__wnode *n, *list = NULL, **tail = &list;
    while ((n = tp__wq_claim_first(q))) { /* keep FIFO order in the chain */
        *tail = n;
        tail = &n->next; /* (an unqueued node's next is free: prev marks it unqueued) */
    }
    *tail = NULL;
    return list;
}

void tp__wq_complete_all(struct tp__wnode *list, int status)
{
    while (list) { /* read next first: a woken party may reuse its node at once */
        struct tp__wnode *n = list;
        list = n->next;
        tp__wait_complete(n->w, status);
    }
}
