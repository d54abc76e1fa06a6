/* sync.c -- mutexes and condition variables for tasks and plain threads alike.
 *
 * Both are a spinlock and a FIFO of blocked parties (struct tp__wnode, see wait.c).
 *
 * Mutex: `owner` names the holder -- the task pointer for a task, the address of a
 * thread-local byte for a plain thread (unique among live threads, and never equal to a
 * task control block).  Unlock hands ownership straight to the first waiter and only
 * then wakes it, so a party that arrives meanwhile finds the mutex taken and queues
 * behind: strict FIFO, no barging, no thundering herd.  Mutex waits have no deadline,
 * so nothing but an unlock ever claims a mutex waiter.
 *
 * Condition: a waiter queues on the condition *before* it releases the mutex, so a
 * signal sent by whoever takes the mutex next cannot miss it.  Only signal, broadcast
 * and the deadline claim a condition waiter; whoever wins the claim decides between
 * 0 and ETIMEDOUT, which is why there are no spurious wake-ups.  Every outcome then
 * re-acquires the mutex, which cannot fail: a task reserves its stack-save buffer
 * before it releases anything (tp__park_reserve).
 *
 * Lock order: a condition's lock and a mutex's lock are never held together.
 */
#include "tp_internal.h"

/* ----------------------------------------------------------- shared helpers ---- */

__attribute__((noinline)) int tp__park_reserve(tp_task *t, bool timed)
{
    /* Measured here, one call below the caller: every park the caller makes later goes
       through a few more frames, which TP__PARK_MARGIN covers. */
    return tp__stack_reserve(t, tp__ctx_sp() - TP__PARK_MARGIN, timed);
}

/* Fill w and n (the caller's registration, carrying val) and queue n on q. */
static void queue_self(struct tp__wait *w, struct tp__wnode *n, tp_task *self,
                       struct tp__wqueue *q, enum tp__cancel cancel, void *val,
                       int64_t deadline)
{
    n->val = val;
    tp__wait_enqueue(w, n, self, q, cancel, deadline);
}

/* A plain thread's registration lives in this frame: its stack stays put.  Kept out of
   the task path so that a parked task's live segment (copied on every switch) does not
   carry these unused records. */
static __attribute__((noinline)) int block_thread(struct tp__wqueue *q, tp__spin *lock,
                                                  enum tp__cancel cancel, void *val,
                                                  int64_t deadline)
{
    struct tp__wait w;
    struct tp__wnode n;
    queue_self(&w, &n, NULL, q, cancel, val, deadline);
    return tp__wait_block(&w, lock, deadline); /* a thread cannot fail with ENOMEM */
}

int tp__block_on(struct tp__wqueue *q, tp__spin *lock, enum tp__cancel cancel, void *val,
                 int64_t deadline)
{
    tp_task *self = tp__current();
    if (!self)
        return block_thread(q, lock, cancel, val, deadline);
    /* A task's registration lives in its control block: its stack may be copied away
       while others look at the node. */
    queue_self(&self->wait, &self->node, self, q, cancel, val, deadline);
    int rc = tp__wait_block(&self->wait, lock, deadline);
    if (TP__UNLIKELY(rc == ENOMEM)) /* nothing parked; the lock is still ours */
        tp__wq_remove(q, &self->node);
    return rc;
}

static int fail(int err)
{
    errno = err;
    return -1;
}

/* ------------------------------------------------------------------- mutexes ---- */

struct mutex {
    tp__spin lock;             /* guards owner and waiters */
    void *owner;               /* identity of the holder; NULL when free */
    struct tp__wqueue waiters; /* blocked lockers, FIFO; node->val = their identity */
};
_Static_assert(sizeof(struct mutex) <= sizeof(tp_mutex), "tp_mutex is too small");
_Static_assert(_Alignof(struct mutex) <= _Alignof(tp_mutex), "tp_mutex is misaligned");

#define MUTEX(m) ((struct mutex *)(void *)(m)->tp_private_)

/* Its address is what names a plain thread as a mutex owner. */
static TP__TLS char thread_token;

static void *identity(tp_task *self)
{
    return self ? (void *)self : (void *)&thread_token;
}

/* Take m for the caller (self, identified by id); 0, EDEADLK or ENOMEM. */
static int acquire(struct mutex *m, tp_task *self)
{
    void *id = identity(self);
    tp__spin_lock(&m->lock);
    if (TP__LIKELY(!m->owner)) {
        m->owner = id;
        tp__spin_unlock(&m->lock);
        return 0;
    }
    if (TP__UNLIKELY(m->owner == id)) {
        tp__spin_unlock(&m->lock);
        return EDEADLK;
    }
    /* When this returns 0 the unlocker has already made us the owner.  (No deadline,
       so nothing is ever cancelled.) */
    int rc = tp__block_on(&m->waiters, &m->lock, TP__CANCEL_NONE, id, -1);
    if (TP__UNLIKELY(rc == ENOMEM))
        tp__spin_unlock(&m->lock);
    return rc;
}

/* Give m up (or hand it to the first waiter); 0 or EPERM. */
static int release(struct mutex *m, void *id)
{
    tp__spin_lock(&m->lock);
    if (TP__UNLIKELY(m->owner != id)) {
        tp__spin_unlock(&m->lock);
        return EPERM;
    }
    struct tp__wnode *n = tp__wq_claim_first(&m->waiters);
    m->owner = n ? n->val : NULL;
    tp__spin_unlock(&m->lock);
    if (n)
        tp__wait_complete(n->w, 0);
    return 0;
}

static bool holds(struct mutex *m, void *id)
{
    tp__spin_lock(&m->lock);
    bool mine = m->owner == id;
    tp__spin_unlock(&m->lock);
    return mine;
}

int tp_mutex_init(tp_mutex *pm)
{
    if (TP__UNLIKELY(!pm))
        return fail(EINVAL);
    memset(pm, 0, sizeof *pm); /* free, no waiters */
    tp__spin_init(&MUTEX(pm)->lock);
    return 0;
}

int tp_mutex_lock(tp_mutex *pm)
{
    if (TP__UNLIKELY(!pm))
        return fail(EINVAL);
    int rc = acquire(MUTEX(pm), tp__current());
    return rc ? fail(rc) : 0;
}

int tp_mutex_unlock(tp_mutex *pm)
{
    if (TP__UNLIKELY(!pm))
        return fail(EINVAL);
    int rc = release(MUTEX(pm), identity(tp__current()));
    return rc ? fail(rc) : 0;
}

int tp_mutex_destroy(tp_mutex *pm)
{
    if (TP__UNLIKELY(!pm))
        return fail(EINVAL);
    struct mutex *m = MUTEX(pm);
    tp__spin_lock(&m->lock);
    bool busy = m->owner || m->waiters.head;
    tp__spin_unlock(&m->lock);
    return busy ? fail(EBUSY) : 0;
}

/* ---------------------------------------------------------------- conditions ---- */

struct cond {
    tp__spin lock;             /* guards waiters */
    struct tp__wqueue waiters; /* blocked in tp_cond_wait, FIFO */
};
_Static_assert(sizeof(struct cond) <= sizeof(tp_cond), "tp_cond is too small");
_Static_assert(_Alignof(struct cond) <= _Alignof(tp_cond), "tp_cond is misaligned");

#define COND(c) ((struct cond *)(void *)(c)->tp_private_)

int tp_cond_init(tp_cond *pc)
{
    if (TP__UNLIKELY(!pc))
        return fail(EINVAL);
    memset(pc, 0, sizeof *pc); /* no waiters */
    tp__spin_init(&COND(pc)->lock);
    return 0;
}

/* A waiter that timed out withdraws its registration (w->obj). */
void tp__cond_cancel(struct tp__wait *w)
{
    struct tp__wnode *n = w->obj;
    struct cond *c = (struct cond *)(void *)((char *)n->q - offsetof(struct cond, waiters));
    tp__wnode_withdraw(n, &c->lock);
}

/* Queue on c (w and n are the caller's registration), release m, block; 0 or
   ETIMEDOUT.  The caller holds m. */
static int cond_block(struct cond *c, struct mutex *m, struct tp__wait *w,
                      struct tp__wnode *n, tp_task *self, int64_t deadline)
{
    tp__spin_lock(&c->lock);
    queue_self(w, n, self, &c->waiters, TP__CANCEL_COND, NULL, deadline);
    tp__spin_unlock(&c->lock);
    int released = release(m, identity(self));
    TP__ASSERT(released == 0); /* the caller checked that it holds m */
    /* A signal may complete w before we block: the block then returns at once. */
    int rc = tp__wait_block(w, NULL, deadline);
    TP__ASSERT(rc == 0 || rc == ETIMEDOUT); /* ENOMEM ruled out by tp__park_reserve */
    return rc;
}

/* A plain thread's registration, in its own (unmoving) frame. */
static __attribute__((noinline)) int cond_block_thread(struct cond *c, struct mutex *m,
                                                       int64_t deadline)
{
    struct tp__wait w;
    struct tp__wnode n;
    return cond_block(c, m, &w, &n, NULL, deadline);
}

int tp_cond_wait(tp_cond *pc, tp_mutex *pm, int64_t deadline)
{
    if (TP__UNLIKELY(!pc || !pm || deadline < -1))
        return fail(EINVAL);
    struct mutex *m = MUTEX(pm);
    tp_task *self = tp__current();
    if (TP__UNLIKELY(!holds(m, identity(self))))
        return fail(EPERM);
    if (deadline == 0) /* no signal can arrive without blocking */
        return fail(ETIMEDOUT);
    /* Reserve now, while failing still leaves everything as it was: after the mutex is
       released the re-acquire below must not fail. */
    if (self && TP__UNLIKELY(tp__park_reserve(self, deadline >= 0) < 0))
        return fail(ENOMEM);
    int rc = self ? cond_block(COND(pc), m, &self->wait, &self->node, self, deadline)
                  : cond_block_thread(COND(pc), m, deadline);
    int relocked = acquire(m, self);
    TP__ASSERT(relocked == 0);
    return rc ? fail(rc) : 0;
}

int tp_cond_signal(tp_cond *pc)
{
    if (TP__UNLIKELY(!pc))
        return fail(EINVAL);
    struct cond *c = COND(pc);
    tp__spin_lock(&c->lock);
    /* Skips a waiter whose deadline has already claimed it: that one times out. */
    struct tp__wnode *n = tp__wq_claim_first(&c->waiters);
    tp__spin_unlock(&c->lock);
    if (n)
        tp__wait_complete(n->w, 0);
    return 0;
}

int tp_cond_broadcast(tp_cond *pc)
{
    if (TP__UNLIKELY(!pc))
        return fail(EINVAL);
    struct cond *c = COND(pc);
    tp__spin_lock(&c->lock);
    struct tp__wnode *list = tp__wq_claim_all(&c->waiters);
    tp__spin_unlock(&c->lock);
    tp__wq_complete_all(list, 0);
    return 0;
}

int tp_cond_destroy(tp_cond *pc)
{
    if (TP__UNLIKELY(!pc))
        return fail(EINVAL);
    struct cond *c = COND(pc);
    tp__spin_lock(&c->lock);
    bool busy = c->waiters.head != NULL;
    tp__spin_unlock(&c->lock);
    return busy ? fail(EBUSY) : 0;
}
