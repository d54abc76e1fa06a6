/* select.c -- tp_select: complete exactly one of several channel operations.
 *
 * Every pass holds the locks of all the channels involved at once, taken in ascending
 * address order with each channel locked once however often it appears.  One order for
 * everybody means two selects cannot deadlock; holding them all makes "nothing is ready,
 * so register everywhere" atomic against every other channel operation, so no value can
 * slip past between the check and the registration.
 *
 *  1. Try the cases in a fresh uniformly random order; the first that can complete at
 *     once does.  A try that fails has no effect, so the first ready case of a random
 *     permutation is a uniformly random choice among the ready cases (fairness).
 *  2. If none is ready, queue one node per case on its channel, all pointing at the
 *     caller's one wait, and block.  Whoever claims that wait first -- a matching send
 *     or receive, a close, the deadline -- decides which case completes, and only that
 *     one: other parties skip nodes whose wait is already claimed.  Once awake, the
 *     caller unqueues the nodes still queued, each under its channel's lock, and only
 *     then frees them, so no other party can be looking at them any more.
 *
 * Copy-stack: while a task is parked, other threads read its nodes and write the value
 * it receives, so nodes and value buffers live in one heap block (struct reg), never on
 * the task's stack.  Values up to a pointer's size travel in the nodes themselves (see
 * tp__chan_value); a plain thread's stack does not move, so its larger values go
 * straight to and from the caller's elem.  The stack-save buffer is reserved before any
 * node is visible, so the task can always park once it has registered.
 */
#include "chan.h"

#include <limits.h>

/* Up to this many cases, the caller's scratch arrays live on its stack. */
#define SMALL 16

/* What other threads may touch while the caller blocks: heap memory. */
struct reg {
    size_t n;
    struct reg_case {
        struct tp__wnode node;
        tp_chan *ch;         /* whose lock guards the node's queue */
    } c[];                   /* one per case; then (tasks only) buffers for the values
                                larger than a pointer */
};

/* The caller's private working state (never touched by others). */
struct sel {
    tp_case *cases;
    size_t n;
    tp_chan **chans;  /* the distinct channels, ascending address: the lock order */
    size_t nchans;
    uint32_t *order;  /* a permutation of the case indexes, reshuffled on each try */
    tp_chan *chans_small[SMALL];
    uint32_t order_small[SMALL];
};

static int fail(int err)
{
    errno = err;
    return -1;
}

/* ---------------------------------------------------------------- randomness ---- */

/* xorshift64 per thread: cheap, and no shared cache line between selecting threads.
   A task always runs on the same worker thread, so it always sees the same state. */
static TP__TLS uint64_t rng_state;
static atomic_uint_fast64_t rng_seeds;

static uint64_t rng_seed(void)
{
    /* splitmix64 of a per-call counter and this thread's address: distinct per thread */
    uint64_t z = atomic_fetch_add(&rng_seeds, 0x9E3779B97F4A7C15ull) ^
                 (uint64_t)(uintptr_t)&rng_state;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    return z ? z : 1;
}

/* Uniform in [0, bound), bound >= 1 (multiply-shift: bias below 2^-32). */
static uint32_t rng_below(uint32_t bound)
{
    uint64_t x = rng_state;
    if (TP__UNLIKELY(!x))
        x = rng_seed();
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    rng_state = x;
    return (uint32_t)(((x >> 32) * (uint64_t)bound) >> 32);
}

/* --------------------------------------------------------------- the caller ---- */

static int check_args(const tp_case *cases, size_t n, int64_t deadline)
{
    if (TP__UNLIKELY(!cases || deadline < -1 || n > INT_MAX || (n == 0 && deadline < 0)))
        return EINVAL;
    for (size_t i = 0; i < n; i++) {
        const tp_case *c = &cases[i];
        if (TP__UNLIKELY(!c->ch || !c->elem || (c->op != TP_SEND && c->op != TP_RECV)))
            return EINVAL;
    }
    return 0;
}

static int chan_cmp(const void *a, const void *b)
{
    uintptr_t x = (uintptr_t) * (tp_chan *const *)a, y = (uintptr_t) * (tp_chan *const *)b;
    return x < y ? -1 : x > y;
}

/* Build the lock order and the identity permutation; -1/ENOMEM. */
static int sel_init(struct sel *s, tp_case *cases, size_t n)
{
    s->cases = cases;
    s->n = n;
    s->chans = s->chans_small;
    s->order = s->order_small;
    if (n > SMALL) {
        s->chans = tp__malloc(n * sizeof *s->chans);
        s->order = tp__malloc(n * sizeof *s->order);
        if (TP__UNLIKELY(!s->chans || !s->order)) {
            free(s->chans);
            free(s->order);
            return -1;
        }
    }
    for (size_t i = 0; i < n; i++) {
        s->chans[i] = cases[i].ch;
        s->order[i] = (uint32_t)i;
    }
    qsort(s->chans, n, sizeof *s->chans, chan_cmp);
    size_t k = 1; /* drop duplicates: a spinlock taken twice would deadlock */
    for (size_t i = 1; i < n; i++)
        if (s->chans[i] != s->chans[k - 1])
            s->chans[k++] = s->chans[i];
    s->nchans = k;
    return 0;
}

static void sel_fini(struct sel *s)
{
    if (s->chans != s->chans_small) {
        free(s->chans);
        free(s->order);
    }
}

static void lock_all(struct sel *s)
{
    for (size_t i = 0; i < s->nchans; i++)
        tp__chan_lock(s->chans[i]);
}

static void unlock_all(struct sel *s)
{
    for (size_t i = s->nchans; i-- > 0;)
        tp__spin_unlock(tp__chan_held(s->chans[i]));
}

/* Under all the locks: complete the first ready case of a random permutation (lazy
   Fisher-Yates: only as many draws as cases tried).  Its index, or -1. */
static int try_cases(struct sel *s, struct tp__wnode **wake)
{
    *wake = NULL;
    for (size_t k = 0; k < s->n; k++) {
        size_t j = k + rng_below((uint32_t)(s->n - k));
        uint32_t i = s->order[j];
        s->order[j] = s->order[k];
        s->order[k] = i;
        tp_case *c = &s->cases[i];
        int rc = c->op == TP_SEND ? tp__chan_try_send(c->ch, c->elem, wake)
                                  : tp__chan_try_recv(c->ch, c->elem, wake);
        if (rc != EAGAIN) {
            c->err = rc;
            return (int)i;
        }
    }
    return -1;
}

/* ------------------------------------------------------------ registrations ---- */

#define ALIGN16(x) (((size_t)(x) + 15) & ~(size_t)15) /* (size_t first: esz is 32-bit) */

/* Bytes of heap buffer case c needs: a task's value larger than a pointer (a send's
   buffer holds a copy of its value: the task's elem may be copied away). */
static size_t buffer_size(const tp_case *c, tp_task *self)
{
    return self && c->ch->esz > sizeof(void *) ? ALIGN16(c->ch->esz) : 0;
}

/* The heap block for n nodes plus their buffers.  NULL on overflow or ENOMEM. */
static struct reg *reg_new(struct sel *s, tp_task *self)
{
    size_t size = ALIGN16(sizeof(struct reg) + s->n * sizeof(struct reg_case));
    for (size_t i = 0; i < s->n; i++)
        if (__builtin_add_overflow(size, buffer_size(&s->cases[i], self), &size))
            return NULL;
    struct reg *r = tp__malloc(size);
    if (TP__UNLIKELY(!r))
        return NULL;
    r->n = s->n;
    char *buf = (char *)r + ALIGN16(sizeof(struct reg) + s->n * sizeof(struct reg_case));
    for (size_t i = 0; i < s->n; i++) {
        tp_case *c = &s->cases[i];
        struct tp__wnode *n = &r->c[i].node;
        r->c[i].ch = c->ch;
        n->val = c->elem;
        if (buffer_size(c, self)) {
            n->val = buf;
            buf += buffer_size(c, self);
        }
        if (c->op == TP_SEND)
            memcpy(tp__chan_value(n, c->ch->esz), c->elem, c->ch->esz);
    }
    return r;
}

/* Under all the locks: make every node visible, pointing at w. */
static void reg_queue(struct sel *s, struct reg *r, struct tp__wait *w)
{
    for (size_t i = 0; i < s->n; i++) {
        tp_chan *ch = s->cases[i].ch;
        struct tp__wnode *n = &r->c[i].node;
        n->w = w;
        tp__wnode_queue(n, s->cases[i].op == TP_SEND ? &ch->sendq : &ch->recvq);
    }
}

/* Unqueue whatever is still queued, one channel lock at a time.  Idempotent: it runs
   as the wait's cancel (timeout) and again after every wake-up.  Returns the case whose
   node was no longer queued (-1: none): after a wake-up that was not a timeout, the
   one whose completer claimed the wait and unqueued the node. */
static int reg_withdraw(struct reg *r)
{
    int done = -1;
    for (size_t i = 0; i < r->n; i++) {
        struct reg_case *c = &r->c[i];
        if (!tp__chan_withdraw(c->ch, &c->node))
            done = (int)i;
    }
    return done;
}

void tp__select_cancel(struct tp__wait *w) { reg_withdraw(w->obj); }

/* Register everywhere with wait w (the caller holds all the locks, which this
   releases), block, withdraw.  The completed case's index, or -ETIMEDOUT. */
static int block(struct sel *s, struct reg *r, struct tp__wait *w, tp_task *self,
                 int64_t deadline)
{
    tp__wait_init(w, self);
    w->cancel = TP__CANCEL_SELECT;
    w->obj = r;
    reg_queue(s, r, w);
    unlock_all(s);
    /* Anyone may complete w from here on, even before we block: the block then
       returns at once.  It cannot fail: the stack-save buffer is reserved. */
    int status = tp__wait_block(w, NULL, deadline);
    int i = reg_withdraw(r);
    if (status == ETIMEDOUT)
        return -ETIMEDOUT;
    TP__ASSERT(i >= 0 && (status == 0 || status == EPIPE));
    tp_case *c = &s->cases[i];
    void *val = tp__chan_value(&r->c[i].node, c->ch->esz);
    if (status == 0 && c->op == TP_RECV && val != c->elem)
        memcpy(c->elem, val, c->ch->esz);
    c->err = status;
    return i;
}

/* A plain thread's wait lives in this frame (its stack stays put); kept out of the task
   path, whose frames are copied on every switch while it is parked. */
static __attribute__((noinline)) int block_thread(struct sel *s, struct reg *r,
                                                  int64_t deadline)
{
    struct tp__wait w;
    return block(s, r, &w, NULL, deadline);
}

/* Try, and if nothing is ready and the deadline allows, register and block.  The
   heap block is prepared outside the locks, after a first try has failed, and the
   try is repeated under the locks that then register it. */
static int run(struct sel *s, int64_t deadline)
{
    tp_task *self = tp__current();
    struct reg *r = NULL;
    for (;;) {
        lock_all(s);
        struct tp__wnode *wake;
        int i = try_cases(s, &wake);
        if (i >= 0 || deadline == 0) {
            unlock_all(s);
            if (wake)
                tp__wait_complete(wake->w, 0);
            free(r);
            return i >= 0 ? i : -ETIMEDOUT;
        }
        if (r)
            break;
        unlock_all(s);
        r = reg_new(s, self);
        if (TP__UNLIKELY(!r))
            return -ENOMEM;
        if (self && TP__UNLIKELY(tp__park_reserve(self, deadline >= 0) < 0)) {
            free(r);
            return -ENOMEM;
        }
    }
    int rc = self ? block(s, r, &self->wait, self, deadline) : block_thread(s, r, deadline);
    free(r);
    return rc;
}

int tp_select(tp_case *cases, size_t n, int64_t deadline)
{
    int err = check_args(cases, n, deadline);
    if (TP__UNLIKELY(err))
        return fail(err);
    if (n == 0) /* nothing can complete: sleep until the deadline */
        return tp_sleep(deadline) < 0 ? -1 : fail(ETIMEDOUT);
    if (deadline > 0 && deadline <= tp_now())
        deadline = 0; /* already past: one try, as for 0 */
    struct sel s;
    if (TP__UNLIKELY(sel_init(&s, cases, n) < 0))
        return fail(ENOMEM);
    int rc = run(&s, deadline);
    sel_fini(&s);
    return rc < 0 ? fail(-rc) : rc;
}
