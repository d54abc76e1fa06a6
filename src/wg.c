/* wg.c -- wait groups: a counter that parties wait to see reach zero.
 *
 * A spinlock guards the counter and a FIFO of waiters.  The change that brings the
 * counter to zero claims every waiter under the lock and wakes them after dropping it,
 * so a waiter released by zero returns 0 even if the counter goes up again before it
 * runs (the zero happened).  A waiter whose deadline claimed it first times out and
 * unqueues itself (tp__wg_cancel).
 */
#include "tp_internal.h"

struct wg {
    tp__spin lock;             /* guards count and waiters */
    int64_t count;             /* never negative */
    struct tp__wqueue waiters; /* blocked in tp_wg_wait */
};
_Static_assert(sizeof(struct wg) <= sizeof(tp_wg), "tp_wg is too small");
_Static_assert(_Alignof(struct wg) <= _Alignof(tp_wg), "tp_wg is misaligned");

#define WG(g) ((struct wg *)(void *)(g)->tp_private_)

static int fail(int err)
{
    errno = err;
    return -1;
}

int tp_wg_init(tp_wg *pg)
{
    if (TP__UNLIKELY(!pg))
        return fail(EINVAL);
    memset(pg, 0, sizeof *pg); /* count 0, no waiters */
    tp__spin_init(&WG(pg)->lock);
    return 0;
}

int tp_wg_add(tp_wg *pg, int64_t delta)
{
    if (TP__UNLIKELY(!pg))
        return fail(EINVAL);
    struct wg *g = WG(pg);
    tp__spin_lock(&g->lock);
    int64_t v;
    int err = 0;
    if (TP__UNLIKELY(__builtin_add_overflow(g->count, delta, &v)))
        err = EOVERFLOW; /* count >= 0, so only a positive delta can overflow */
    else if (TP__UNLIKELY(v < 0))
        err = EINVAL;
    if (TP__UNLIKELY(err)) {
        tp__spin_unlock(&g->lock);
        return fail(err);
    }
    g->count = v;
    struct tp__wnode *list = v == 0 ? tp__wq_claim_all(&g->waiters) : NULL;
    tp__spin_unlock(&g->lock);
    tp__wq_complete_all(list, 0);
    return 0;
}

int tp_wg_done(tp_wg *pg) { return tp_wg_add(pg, -1); }

/* A waiter that timed out withdraws its registration (w->obj). */
void tp__wg_cancel(struct tp__wait *w)
{
    struct tp__wnode *n = w->obj;
    struct wg *g = (struct wg *)(void *)((char *)n->q - offsetof(struct wg, waiters));
    tp__wnode_withdraw(n, &g->lock);
}

int tp_wg_wait(tp_wg *pg, int64_t deadline)
{
    if (TP__UNLIKELY(!pg || deadline < -1))
        return fail(EINVAL);
    struct wg *g = WG(pg);
    tp__spin_lock(&g->lock);
    if (g->count == 0 || deadline == 0) {
        int rc = g->count == 0 ? 0 : ETIMEDOUT;
        tp__spin_unlock(&g->lock);
        return rc ? fail(rc) : 0;
    }
    int rc = tp__block_on(&g->waiters, &g->lock, TP__CANCEL_WG, NULL, deadline);
    if (TP__UNLIKELY(rc == ENOMEM)) /* nothing queued; the lock is still ours */
        tp__spin_unlock(&g->lock);
    return rc ? fail(rc) : 0;
}

int tp_wg_destroy(tp_wg *pg)
{
    if (TP__UNLIKELY(!pg))
        return fail(EINVAL);
    struct wg *g = WG(pg);
    tp__spin_lock(&g->lock);
    bool busy = g->waiters.head != NULL;
    tp__spin_unlock(&g->lock);
    return busy ? fail(EBUSY) : 0;
}
