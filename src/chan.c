/* chan.c -- channels: a ring buffer plus two FIFO queues of blocked parties.
 *
 * Invariants, all under ch->lock:
 *  - receivers wait only when the buffer is empty; senders wait only when it is full
 *    (for an unbuffered channel: always, until a receiver comes);
 *  - a waiting receiver is served directly by the next send; a receive that empties a
 *    slot moves the first waiting sender's value into the buffer, so values leave in
 *    the order their sends completed;
 *  - a value for a parked task is written into its registration (values up to a
 *    pointer's size: see tp__chan_value) or a heap copy, never into its stack, which may
 *    be copied away (the copy-stack rule).
 * Every waiter is completed by whoever wins its claim (tp__wait_claim), so a timeout,
 * a close and a matching operation never both happen to one waiter.
 */
#include "chan.h"
#include "park.h"

/* Element sizes and capacities are 32-bit (smaller channels, and no one needs four
   billion slots); larger requests, or a buffer over 2^40 bytes, are EINVAL.  Sizes in
   range that the machine cannot provide are ENOMEM. */
#define TP__CHAN_MAX ((size_t)1 << 40)

tp_chan *tp_chan_create(size_t esz, size_t cap)
{
    if (TP__UNLIKELY(esz == 0 || esz > UINT32_MAX || cap > UINT32_MAX ||
                     cap > TP__CHAN_MAX / esz)) {
        errno = EINVAL;
        return NULL;
    }
    tp_chan *ch = tp__malloc(sizeof *ch + (cap ? sizeof(struct tp__chan_ring) + esz * cap : 0));
    if (TP__UNLIKELY(!ch)) {
        errno = ENOMEM;
        return NULL;
    }
    tp__spin_init(&ch->lock);
    tp__spin_init(&ch->busy);
    atomic_init(&ch->bias, 0);
    ch->flags = cap ? TP__CHAN_BUFFERED : 0;
    ch->esz = (uint32_t)esz;
    ch->sendq.head = ch->recvq.head = NULL;
    if (cap) {
        struct tp__chan_ring *ring = tp__chan_ring(ch);
        ring->size = esz * cap;
        ring->head = ring->tail = 0;
        ring->cap = (uint32_t)cap;
        ring->count = 0;
    }
    return ch;
}

/* Out of line: a parked frame's error path then keeps nothing across the call. */
static __attribute__((noinline)) int fail(int err)
{
    errno = err;
    return -1;
}

#define CHAN_OF(q, member) ((tp_chan *)(void *)((char *)(q) - offsetof(tp_chan, member)))

/* A party's registration: a task's is its control block's node (its w->obj is free for
   w->dest), a plain thread's is w->obj. */
static struct tp__wnode *registration(struct tp__wait *w)
{
    if (tp__wait_is_task(w))
        return &tp__wait_task(w)->node;
    return w->obj;
}

/* A party that timed out withdraws its registration. */
void tp__chan_cancel_send(struct tp__wait *w)
{
    struct tp__wnode *n = registration(w);
    tp__chan_withdraw(CHAN_OF(n->q, sendq), n);
}

void tp__chan_cancel_recv(struct tp__wait *w)
{
    struct tp__wnode *n = registration(w);
    tp__chan_withdraw(CHAN_OF(n->q, recvq), n);
}

/* Fill in a wait and its one registration (n->val already set) and queue it on q. */
static inline void enqueue(tp_chan *ch, struct tp__wqueue *q, struct tp__wait *w,
                           struct tp__wnode *n, tp_task *self, int64_t deadline)
{
    tp__wait_enqueue(w, n, self, q,
                     q == &ch->sendq ? TP__CANCEL_CHAN_SEND : TP__CANCEL_CHAN_RECV, deadline);
}

/* A task's side of blocking on q except the switch, out of line: the frame that
   switches (sp) stays in the task's saved segment for as long as it is parked, copied
   on every switch, so it should hold only what it needs after waking.  0 with the lock
   released, or ENOMEM with nothing queued (and the lock released too).  Which lock is
   held (see tp__chan_held) is found here, not passed down: one argument more in the
   frames that switch made send_wait's parked frame 16 bytes bigger. */
static __attribute__((noinline)) int task_enqueue(tp_chan *ch, struct tp__wqueue *q,
                                                  tp_task *self, int64_t deadline, char *sp,
                                                  void *dest)
{
    tp__spin *held = tp__chan_held(ch);
    enqueue(ch, q, &self->wait, &self->node, self, deadline);
    self->wait.dest = dest;
    if (TP__UNLIKELY(tp__park_arm(self, held, deadline, sp) < 0)) {
        tp__wq_remove(q, &self->node);
        tp__spin_unlock(held);
        return ENOMEM;
    }
    return 0;
}

/* Block the calling task on q, with the lock held and self->node.val set; dest is kept
   in its wait record (w->dest) for after the wake-up.  Returns the task (found again
   through its worker: see tp__to_scheduler) with the outcome in its wait.status, or
   NULL (ENOMEM, nothing queued); the lock is released.  Always inlined: the switch must
   be in the frame whose stack pointer task_enqueue reserved for. */
static inline __attribute__((always_inline)) tp_task *block_task(tp_chan *ch,
                                                                 struct tp__wqueue *q,
                                                                 tp_task *self,
                                                                 int64_t deadline, void *dest)
{
    if (TP__UNLIKELY(task_enqueue(ch, q, self, deadline, tp__ctx_sp(), dest)))
        return NULL;
    return tp__to_scheduler(self->worker, self, true);
}

/* block_task's outcome as an errno (0: done). */
static inline int block_status(const tp_task *self)
{
    return self ? self->wait.status : ENOMEM;
}

/* A task's value larger than a pointer waits in a heap copy (its stack may be copied
   away while it is parked).  Lock held; returns 0 or an errno, with the lock released. */
static __attribute__((noinline)) int block_task_large(tp_chan *ch, struct tp__wqueue *q,
                                                      tp_task *self, void *elem,
                                                      int64_t deadline)
{
    uint32_t esz = ch->esz;
    bool send = q == &ch->sendq;
    void *buf = tp__malloc(esz);
    if (TP__UNLIKELY(!buf)) {
        tp__spin_unlock(tp__chan_held(ch));
        return ENOMEM;
    }
    if (send)
        memcpy(buf, elem, esz);
    self->node.val = buf;
    int rc = block_status(block_task(ch, q, self, deadline, NULL));
    if (rc == 0 && !send)
        memcpy(elem, buf, esz);
    free(buf);
    return rc;
}

/* A plain thread's wait records live in this frame: its stack does not move, so a
   value larger than a pointer goes straight from and to elem.  Kept out of the task
   path, whose frames are copied on every switch while it is parked. */
static __attribute__((noinline)) int block_thread(tp_chan *ch, struct tp__wqueue *q,
                                                  void *elem, int64_t deadline)
{
    struct tp__wait w;
    struct tp__wnode n;
    uint32_t esz = ch->esz;
    bool send = q == &ch->sendq, carried = esz <= sizeof n.val;
    if (!carried)
        n.val = elem;
    else if (send)
        memcpy(&n.val, elem, esz);
    enqueue(ch, q, &w, &n, NULL, deadline);
    int rc = tp__wait_block(&w, &ch->lock, deadline); /* (threads never own a bias) */
    if (rc == 0 && carried && !send)
        memcpy(elem, &n.val, esz);
    return rc;
}

/* The blocking halves of send and receive, entered with the lock held.  They are
   separate functions, reached by tail calls, so that the frame of tp_chan_send/recv is
   not part of a parked task's live segment: only this small frame is.  A task with a
   value up to a pointer's size -- the common case -- carries it in its registration
   (see tp__chan_value); the other cases have frames of their own. */
static __attribute__((noinline)) TP__PARK_RETURN int send_wait(tp_chan *ch, const void *elem,
                                                                int64_t deadline)
{
    tp_task *self = tp__current();
    uint32_t esz = ch->esz;
    int rc;
    if (!self) {
        rc = block_thread(ch, &ch->sendq, (void *)elem, deadline);
    } else if (esz > sizeof self->node.val) {
        rc = block_task_large(ch, &ch->sendq, self, (void *)elem, deadline);
    } else {
        tp__chan_copy(&self->node.val, elem, esz);
        rc = block_status(block_task(ch, &ch->sendq, self, deadline, NULL));
    }
    return rc ? fail(rc) : 0;
}

static __attribute__((noinline)) int recv_wait_other(tp_chan *ch, void *elem, int64_t deadline)
{
    tp_task *self = tp__current();
    int rc = self ? block_task_large(ch, &ch->recvq, self, elem, deadline)
                  : block_thread(ch, &ch->recvq, elem, deadline);
    return rc ? fail(rc) : 0;
}

/* The frame of a task parked in tp_chan_recv, the commonest way to park.  It keeps
   nothing across the switch: elem waits in the wait record, the element size in the
   control block, and the task is found again through its worker.  So the frame holds
   only the return address and the five callee-saved registers the switch clobbers (and
   the park sequence the sixth, %rbp): 48 bytes on x86_64 (was 64, with elem in %rbp and
   an alignment slot). */
static __attribute__((noinline)) TP__PARK_RETURN int recv_wait(tp_chan *ch, void *elem,
                                                                int64_t deadline)
{
    tp_task *self = tp__current();
    uint32_t esz = ch->esz;
    if (!self || esz > sizeof self->node.val)
        return recv_wait_other(ch, elem, deadline);
    self->recv_esz = (uint8_t)esz;
    self = block_task(ch, &ch->recvq, self, deadline, elem);
    int rc = block_status(self);
    if (TP__UNLIKELY(rc))
        return fail(rc);
    esz = self->recv_esz;
    if (esz > sizeof self->node.val)
        __builtin_unreachable(); /* (set above): lets the copy stay a few moves */
    /* where whoever completed us left the value */
    tp__chan_copy(self->wait.dest, &self->node.val, esz);
    return 0;
}

/* After a try: unlock, wake whoever the operation completed, report. */
static inline int finish(tp__spin *held, struct tp__wnode *wake, int rc)
{
    tp__spin_unlock(held);
    if (wake)
        tp__wait_complete_inline(wake->w, 0);
    return rc ? fail(rc) : 0;
}

/* A channel biased to us has only this worker's tasks for parties, and a waiter's node
   is nearly always the start of its control block (else the fetch is merely wasted),
   whose wake-up reads the rest of the block: fetch that alongside the node's line,
   not after it.  (Not for a shared channel: lines of a task on another CPU, fetched
   early, only bounce once more: W3 lost 8 % that way.) */
static inline void prefetch_waiter(tp_chan *ch, tp__spin *held, struct tp__wqueue *q)
{
    struct tp__wnode *n = q->head;
    if (held == &ch->busy && n) {
        __builtin_prefetch((char *)n + 64);
        __builtin_prefetch((char *)n + 128);
    }
}

/* The rest of tp_chan_send/recv once the lock is held (or, _shared, taken here), out of
   line and reached by tail calls, so that the commonest case of all -- a buffered
   channel biased to the caller with room (or a value) in its ring and nobody waiting --
   runs whole in tp_chan_send/recv without a call, saving no registers. */
static __attribute__((noinline)) int send_locked(tp_chan *ch, tp__spin *held,
                                                 const void *elem, int64_t deadline)
{
    struct tp__wnode *wake = NULL;
    prefetch_waiter(ch, held, &ch->recvq);
    int rc = tp__chan_try_send(ch, elem, &wake);
    if (rc != EAGAIN)
        return finish(held, wake, rc);
    if (deadline == 0)
        return finish(held, NULL, ETIMEDOUT);
    return send_wait(ch, elem, deadline); /* a tail call: this frame is gone */
}

static __attribute__((noinline)) int send_shared(tp_chan *ch, const void *elem,
                                                 int64_t deadline)
{
    return send_locked(ch, tp__chan_lock_shared(ch), elem, deadline);
}

static __attribute__((noinline)) int recv_locked(tp_chan *ch, tp__spin *held, void *elem,
                                                 int64_t deadline)
{
    struct tp__wnode *wake = NULL;
    prefetch_waiter(ch, held, &ch->sendq);
    int rc = tp__chan_try_recv(ch, elem, &wake);
    if (rc != EAGAIN)
        return finish(held, wake, rc);
    if (deadline == 0)
        return finish(held, NULL, ETIMEDOUT);
    return recv_wait(ch, elem, deadline); /* a tail call: this frame is gone */
}

static __attribute__((noinline)) int recv_shared(tp_chan *ch, void *elem, int64_t deadline)
{
    return recv_locked(ch, tp__chan_lock_shared(ch), elem, deadline);
}

/* ------------------------------------------------ a worker's own rendezvous ---- *
 *
 * An unbuffered channel biased to the caller's worker, used without a deadline: two
 * tasks of one worker talking (benchmark W2 does nothing else, the prime sieve's
 * filters little else).  The general path runs through send_locked/recv_locked, the
 * wait functions and task_enqueue, each frame saving registers and finding again what
 * the one before knew: which lock is held, that there is no deadline, that the caller
 * is a task.  These do the same for this case in two frames at most: one that decides
 * (no register saved), and, to block, one that parks (the parked frame, the same size
 * as recv_wait's, returning like it with TP__PARK_RETURN).  The rules are
 * tp__chan_try_send/recv's; everything else goes the general way.  W2: 783 -> 618
 * instructions a round trip, 54 -> 40 ns; W4 (t1) 0.90-0.97. */

/* Block the calling task (of this worker, lock `busy` held) on q with no deadline: the
   whole of task_enqueue and block_task, in the caller's frame.  Returns as block_task.
   The lock is released after the arm, not by it, and found again from the registration
   then: kept in a register across the arm's calls, ch (or q) cost the parked frame
   16 bytes (a sixth register saved, and the alignment). */
static inline __attribute__((always_inline)) tp_task *
park_biased(tp_chan *ch, struct tp__wqueue *q, tp_task *self, void *dest)
{
    bool send = q == &ch->sendq;
    enqueue(ch, q, &self->wait, &self->node, self, -1);
    self->wait.dest = dest;
    int rc = tp__park_arm(self, NULL, -1, tp__ctx_sp());
    q = self->node.q;
    ch = send ? CHAN_OF(q, sendq) : CHAN_OF(q, recvq);
    if (TP__UNLIKELY(rc < 0))
        tp__wq_remove_inline(q, &self->node); /* (a call here would need ch kept) */
    tp__spin_unlock(&ch->busy);
    if (TP__UNLIKELY(rc < 0))
        return NULL;
    return tp__to_scheduler(self->worker, self, true);
}

static __attribute__((noinline)) TP__PARK_RETURN int send_park(tp_chan *ch,
                                                                const void *elem)
{
    tp_task *self = tp__current();
    uint32_t esz = ch->esz;
    if (TP__UNLIKELY(!self || esz > sizeof self->node.val))
        return send_wait(ch, elem, -1);
    tp__chan_copy(&self->node.val, elem, esz);
    int rc = block_status(park_biased(ch, &ch->sendq, self, NULL));
    return rc ? fail(rc) : 0;
}

static __attribute__((noinline)) TP__PARK_RETURN int recv_park(tp_chan *ch, void *elem)
{
    tp_task *self = tp__current();
    uint32_t esz = ch->esz;
    if (TP__UNLIKELY(!self || esz > sizeof self->node.val))
        return recv_wait_other(ch, elem, -1);
    self->recv_esz = (uint8_t)esz;
    self = park_biased(ch, &ch->recvq, self, elem);
    int rc = block_status(self);
    if (TP__UNLIKELY(rc))
        return fail(rc);
    esz = self->recv_esz;
    if (esz > sizeof self->node.val)
        __builtin_unreachable(); /* (as in recv_wait) */
    tp__chan_copy(self->wait.dest, &self->node.val, esz);
    return 0;
}

/* tp_chan_send/recv on an open unbuffered channel biased to the caller, `busy` held.
   A waiter taken without a claim (tp__wq_take_sole) has no deadline: no timer tree to
   take a task out of when it is woken.  Elements of sizes that tp__chan_copy moves
   without a call only: with a call to memcpy in them, these would save registers for
   it on every operation. */
static inline bool copy_is_inline(uint32_t esz)
{
    return TP__LIKELY(esz == 8) || esz == 4 || esz == 16; /* (8 straight through) */
}

static inline void copy_inline(void *dst, const void *src, uint32_t esz)
{
    if (!copy_is_inline(esz))
        __builtin_unreachable();
    tp__chan_copy(dst, src, esz);
}

static __attribute__((noinline)) int send_biased(tp_chan *ch, const void *elem,
                                                 int64_t deadline)
{
    struct tp__wnode *r = ch->recvq.head;
    if (r) {
        prefetch_waiter(ch, &ch->busy, &ch->recvq);
        if (TP__LIKELY(copy_is_inline(ch->esz) && tp__wq_take_sole(&ch->recvq, r))) {
            copy_inline(tp__chan_value(r, ch->esz), elem, ch->esz);
            tp__spin_unlock(&ch->busy);
            tp__wait_complete_as(r->w, 0, true);
            return 0;
        }
    } else if (TP__LIKELY(deadline == -1)) {
        return send_park(ch, elem);
    }
    return send_locked(ch, &ch->busy, elem, deadline);
}

static __attribute__((noinline)) int recv_biased(tp_chan *ch, void *elem, int64_t deadline)
{
    struct tp__wnode *s = ch->sendq.head;
    if (s) {
        prefetch_waiter(ch, &ch->busy, &ch->sendq);
        if (TP__LIKELY(copy_is_inline(ch->esz) && tp__wq_take_sole(&ch->sendq, s))) {
            copy_inline(elem, tp__chan_value(s, ch->esz), ch->esz);
            tp__spin_unlock(&ch->busy);
            tp__wait_complete_as(s->w, 0, true);
            return 0;
        }
    } else if (TP__LIKELY(deadline == -1)) {
        return recv_park(ch, elem);
    }
    return recv_locked(ch, &ch->busy, elem, deadline);
}

/* The buffered fast path: an element of a size tp__chan_copy moves inline, put in or
   taken from the ring of a channel whose lock is held; false for other sizes (or a
   full ring), which go the general way.  With a call to memcpy in them, tp_chan_send
   and tp_chan_recv would save registers for it on every call.
   The path is laid out straight through, its one taken branch the return (the
   TP__LIKELYs here, in tp_chan_send/recv and in tp__chan_lock_biased).  W5 is bound
   by taken branches more than by instructions: 14 % fewer instructions gained it 2 %,
   then four fewer taken branches an operation 29 %. */
static inline bool ring_put_inline(tp_chan *ch, const void *elem)
{
    struct tp__chan_ring *ring = tp__chan_ring(ch);
    uint32_t esz = ch->esz;
    if (ring->count == ring->cap)
        return false;
    if (TP__LIKELY(esz == 8)) /* pointers, the commonest: laid out straight through */
        tp__chan_ring_put_n(ring, elem, 8);
    else if (esz == 4)
        tp__chan_ring_put_n(ring, elem, 4);
    else if (esz == 16)
        tp__chan_ring_put_n(ring, elem, 16);
    else
        return false;
    return true;
}

static inline bool ring_take_inline(tp_chan *ch, void *elem)
{
    struct tp__chan_ring *ring = tp__chan_ring(ch);
    uint32_t esz = ch->esz;
    if (TP__LIKELY(esz == 8))
        tp__chan_ring_take_n(ring, elem, 8);
    else if (esz == 4)
        tp__chan_ring_take_n(ring, elem, 4);
    else if (esz == 16)
        tp__chan_ring_take_n(ring, elem, 16);
    else
        return false;
    return true;
}

TP__HOT int tp_chan_send(tp_chan *ch, const void *elem, int64_t deadline)
{
    if (TP__UNLIKELY(!ch || !elem || deadline < -1))
        return fail(EINVAL);
    if (TP__UNLIKELY(!tp__chan_lock_biased(ch)))
        return send_shared(ch, elem, deadline);
    /* flags: buffered and not closed */
    if (TP__LIKELY(ch->flags == TP__CHAN_BUFFERED && !ch->recvq.head) &&
        ring_put_inline(ch, elem)) {
        tp__spin_unlock(&ch->busy);
        return 0;
    }
    if (TP__LIKELY(ch->flags == 0)) /* unbuffered and open */
        return send_biased(ch, elem, deadline);
    return send_locked(ch, &ch->busy, elem, deadline);
}

TP__HOT int tp_chan_recv(tp_chan *ch, void *elem, int64_t deadline)
{
    if (TP__UNLIKELY(!ch || !elem || deadline < -1))
        return fail(EINVAL);
    if (TP__UNLIKELY(!tp__chan_lock_biased(ch)))
        return recv_shared(ch, elem, deadline);
    if (TP__LIKELY((ch->flags & TP__CHAN_BUFFERED) && tp__chan_ring(ch)->count &&
                   !ch->sendq.head) &&
        ring_take_inline(ch, elem)) {
        tp__spin_unlock(&ch->busy);
        return 0;
    }
    if (TP__LIKELY(ch->flags == 0))
        return recv_biased(ch, elem, deadline);
    return recv_locked(ch, &ch->busy, elem, deadline);
}

int tp_chan_close(tp_chan *ch)
{
    if (TP__UNLIKELY(!ch))
        return fail(EINVAL);
    tp__spin *held = tp__chan_lock(ch);
    if (ch->flags & TP__CHAN_CLOSED) {
        tp__spin_unlock(held);
        return fail(EPIPE);
    }
    ch->flags |= TP__CHAN_CLOSED;
    struct tp__wnode *senders = tp__wq_claim_all(&ch->sendq);
    struct tp__wnode *receivers = tp__wq_claim_all(&ch->recvq);
    tp__spin_unlock(held);
    tp__wq_complete_all(senders, EPIPE);
    tp__wq_complete_all(receivers, EPIPE);
    return 0;
}

int tp_chan_destroy(tp_chan *ch)
{
    if (TP__UNLIKELY(!ch))
        return fail(EINVAL);
    tp__spin *held = tp__chan_lock(ch);
    bool busy = ch->sendq.head || ch->recvq.head;
    tp__spin_unlock(held);
    if (busy)
        return fail(EBUSY);
    free(ch);
    return 0;
}
