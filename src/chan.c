/* chan.c -- channels: a ring buffer plus two FIFO queues of blocked parties.
 *
 * Invariants, all under ch->lock:
 *  - receivers wait only when the buffer is empty; senders wait only when it is full
 *    (for an unbuffered channel: always, until a receiver comes);
 *  - a waiting receiver is served directly by the next send; a receive that empties a
 *    slot moves the first waiting sender's value into the buffer, so values leave in
 *    the order their sends completed;
 *  - a value for a parked task is written into the task's own buffer (t->inl or a heap
 *    copy), never into its stack, which may be copied away (the copy-stack rule).
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
    tp_chan *ch = tp__malloc(sizeof *ch + esz * cap);
    if (TP__UNLIKELY(!ch)) {
        errno = ENOMEM;
        return NULL;
    }
    tp__spin_init(&ch->lock);
    ch->closed = false;
    ch->esz = (uint32_t)esz;
    ch->cap = (uint32_t)cap;
    ch->head = ch->count = 0;
    ch->sendq.head = ch->sendq.tail = NULL;
    ch->recvq.head = ch->recvq.tail = NULL;
    return ch;
}

/* Where a blocked party's value lives: a plain thread's own memory is stable, a task's
   stack is not, so a task gets a buffer in its control block (or on the heap). */
static void *wait_buffer(tp_task *self, void *elem, size_t esz)
{
    if (!self)
        return elem;
    if (esz <= sizeof self->inl)
        return self->inl;
    return tp__malloc(esz);
}

static void drop_buffer(tp_task *self, void *buf)
{
    if (self && buf != self->inl)
        free(buf);
}

static int fail(int err)
{
    errno = err;
    return -1;
}

/* Block on q with the lock held; returns 0 or an errno.  Tasks and threads take separate
   paths on purpose: the thread's wait records live in its own frame, and keeping them out
   of the task path keeps a parked task's live stack segment (which is copied on every
   switch) down to a few words per frame. */
static inline __attribute__((always_inline)) int block_task(tp_chan *ch, struct tp__wqueue *q,
                                                            tp_task *self, void *val,
                                                            int64_t deadline)
{
    struct tp__wait *w = &self->wait;
    struct tp__wnode *n = &self->node;
    tp__wait_init(w, self);
    w->cancel = tp__wnode_cancel;
    w->obj = n;
    n->w = w;
    n->val = val;
    n->index = 0;
    tp__wnode_queue(n, q, &ch->lock);
    if (TP__UNLIKELY(tp__park_here(self, &ch->lock, deadline) < 0)) {
        tp__wq_remove(q, n); /* nothing was parked; the lock is still ours */
        tp__spin_unlock(&ch->lock);
        return ENOMEM;
    }
    return w->status;
}

static __attribute__((noinline)) int block_thread(tp_chan *ch, struct tp__wqueue *q, void *val,
                                                  int64_t deadline)
{
    struct tp__wait w;
    struct tp__wnode n;
    tp__wait_init(&w, NULL);
    w.cancel = tp__wnode_cancel;
    w.obj = &n;
    n.w = &w;
    n.val = val;
    n.index = 0;
    tp__wnode_queue(&n, q, &ch->lock);
    return tp__wait_block(&w, &ch->lock, deadline);
}

static inline int block_on(tp_chan *ch, struct tp__wqueue *q, tp_task *self, void *val,
                           int64_t deadline)
{
    if (self)
        return block_task(ch, q, self, val, deadline);
    return block_thread(ch, q, val, deadline);
}

/* The blocking halves of send and receive, entered with the lock held.  They are
   separate functions, reached by tail calls, so that the frame of tp_chan_send/recv is
   not part of a parked task's live segment: only this small frame is. */
static __attribute__((noinline)) int send_wait(tp_chan *ch, const void *elem, int64_t deadline)
{
    tp_task *self = tp__current();
    void *val = wait_buffer(self, (void *)elem, ch->esz);
    if (TP__UNLIKELY(!val)) {
        tp__spin_unlock(&ch->lock);
        return fail(ENOMEM);
    }
    if (val != elem)
        memcpy(val, elem, ch->esz);
    int rc = block_on(ch, &ch->sendq, self, val, deadline);
    drop_buffer(self, val);
    return rc ? fail(rc) : 0;
}

static __attribute__((noinline)) int recv_wait(tp_chan *ch, void *elem, int64_t deadline)
{
    tp_task *self = tp__current();
    uint32_t esz = ch->esz;
    void *val = wait_buffer(self, elem, esz);
    if (TP__UNLIKELY(!val)) {
        tp__spin_unlock(&ch->lock);
        return fail(ENOMEM);
    }
    int rc = block_on(ch, &ch->recvq, self, val, deadline);
    if (rc == 0 && val != elem)
        memcpy(elem, val, esz);
    drop_buffer(self, val);
    return rc ? fail(rc) : 0;
}

/* After a try: unlock, wake whoever the operation completed, report. */
static inline int finish(tp_chan *ch, struct tp__wnode *wake, int rc)
{
    tp__spin_unlock(&ch->lock);
    if (wake)
        tp__wait_complete(wake->w, 0, wake->index);
    return rc ? fail(rc) : 0;
}

int tp_chan_send(tp_chan *ch, const void *elem, int64_t deadline)
{
    if (TP__UNLIKELY(!ch || !elem || deadline < -1))
        return fail(EINVAL);
    struct tp__wnode *wake = NULL;
    tp__spin_lock(&ch->lock);
    int rc = tp__chan_try_send(ch, elem, &wake);
    if (rc != EAGAIN)
        return finish(ch, wake, rc);
    if (deadline == 0)
        return finish(ch, NULL, ETIMEDOUT);
    return send_wait(ch, elem, deadline); /* a tail call: this frame is gone */
}

int tp_chan_recv(tp_chan *ch, void *elem, int64_t deadline)
{
    if (TP__UNLIKELY(!ch || !elem || deadline < -1))
        return fail(EINVAL);
    struct tp__wnode *wake = NULL;
    tp__spin_lock(&ch->lock);
    int rc = tp__chan_try_recv(ch, elem, &wake);
    if (rc != EAGAIN)
        return finish(ch, wake, rc);
    if (deadline == 0)
        return finish(ch, NULL, ETIMEDOUT);
    return recv_wait(ch, elem, deadline); /* a tail call: this frame is gone */
}

int tp_chan_close(tp_chan *ch)
{
    if (TP__UNLIKELY(!ch))
        return fail(EINVAL);
    tp__spin_lock(&ch->lock);
    if (ch->closed) {
        tp__spin_unlock(&ch->lock);
        return fail(EPIPE);
    }
    ch->closed = true;
    struct tp__wnode *senders = tp__wq_claim_all(&ch->sendq);
    struct tp__wnode *receivers = tp__wq_claim_all(&ch->recvq);
    tp__spin_unlock(&ch->lock);
    tp__wq_complete_all(senders, EPIPE);
    tp__wq_complete_all(receivers, EPIPE);
    return 0;
}

int tp_chan_destroy(tp_chan *ch)
{
    if (TP__UNLIKELY(!ch))
        return fail(EINVAL);
    tp__spin_lock(&ch->lock);
    bool busy = ch->sendq.head || ch->recvq.head;
    tp__spin_unlock(&ch->lock);
    if (busy)
        return fail(EBUSY);
    free(ch);
    return 0;
}
