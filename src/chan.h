/* chan.h -- the channel's layout, shared by chan.c and select.c.  Never installed. */
#ifndef TP_CHAN_H
#define TP_CHAN_H

#include "tp_internal.h"

/* An unbuffered channel is this header alone; a buffered one is followed by its ring
   (struct tp__chan_ring), in the same allocation.  Programs with very many tasks tend
   to give each its own unbuffered channel, so the header is kept to what every channel
   needs. */
struct tp_chan {
    tp__spin lock;             /* the lock every thread can take (see "Biased locks") */
    tp__spin busy;             /* the bias owner's lock; before a bias, its streak count */
    _Atomic uint8_t bias;      /* TP__BIAS_* state */
    uint8_t flags;             /* TP__CHAN_* */
    uint32_t esz;              /* element size */
    struct tp__wqueue sendq;   /* blocked senders, FIFO */
    struct tp__wqueue recvq;   /* blocked receivers, FIFO */
};

/* Positions are byte offsets into buf, not element indices: the operations then add
   esz and wrap, where an index needed a multiply and a wrapped sum to find its slot
   (W5: ~10 instructions fewer an operation). */
struct tp__chan_ring {
    uint64_t size;             /* cap * esz: bytes of buf */
    uint64_t head;             /* offset of the oldest buffered element */
    uint64_t tail;             /* offset the next element goes to */
    uint32_t cap;              /* capacity in elements (> 0) */
    uint32_t count;            /* buffered elements */
    char buf[];                /* cap * esz bytes */
};

#define TP__CHAN_CLOSED 1u
#define TP__CHAN_BUFFERED 2u /* capacity > 0: the ring follows */

_Static_assert(sizeof(struct tp_chan) % 8 == 0, "the ring must follow the header aligned");
#if defined(__x86_64__) && !TP_ASAN && !TP_TSAN
/* glibc hands out (request + 8) rounded up to 16 bytes: an unbuffered channel of 24
   bytes is a 32-byte chunk, 25 a 48-byte one.  Benchmark W1 has a million of them. */
_Static_assert(sizeof(struct tp_chan) <= 24, "tp_chan grew past a malloc chunk boundary");
#endif

static inline struct tp__chan_ring *tp__chan_ring(tp_chan *ch)
{
    return (struct tp__chan_ring *)(void *)(ch + 1);
}

/* ------------------------------------------------------------- biased locks ---- *
 *
 * A channel whose operations all come from one worker does not need an atomic
 * read-modify-write per operation, and that atomic was most of the cost of a buffered
 * operation (about 7 of its 11 ns here).  So after TP__BIAS_AFTER consecutive locks by
 * one worker, a channel is biased to it: that worker then locks by storing 1 in `busy`
 * and checking that the bias still holds, plain loads and stores.
 *
 * Any other thread takes `lock` as before and, finding the channel biased, revokes the
 * bias: it marks the channel revoked, has every CPU running the process execute a
 * memory barrier (membarrier(2)), and waits for `busy` to be 0.  The barrier is the
 * other half of the owner's store-then-load (an asymmetric Dekker handshake): after
 * it, either the owner's busy = 1 is visible to the revoker, which waits, or the owner's
 * check will see the mark and it takes `lock` instead.  A revoked channel stays revoked,
 * so a channel costs at most one membarrier (~2 us here) in its life, after at least
 * TP__BIAS_AFTER operations.  bias.c hands out the worker ids and revokes.
 *
 * `bias`: 0 no candidate; an id (1..62): the streak's worker, `busy` counting its
 * locks; TP__BIAS_ON | id: biased to that worker; with TP__BIAS_REVOKED as well:
 * revoked (the id stays, so that its owner can tell which lock it holds).  Off under
 * ThreadSanitizer, which does not know the barrier's ordering and would report the
 * owner's plain accesses as races. */
#if TP_TSAN
#define TP__CHAN_BIAS 0
#else
#define TP__CHAN_BIAS 1
#endif
#define TP__BIAS_ID 0x3fu
#define TP__BIAS_ON 0x40u
#define TP__BIAS_REVOKED 0x80u
#define TP__BIAS_AFTER 128u

/* bias.c */
extern TP__TLS uint8_t tp__bias_id; /* this worker's id; 0: a plain thread, or no id */
bool tp__bias_enabled(void);         /* membarrier is there: workers take ids */
void tp__chan_bias_grant(tp_chan *ch, unsigned id);
void tp__chan_bias_revoke(tp_chan *ch);

/* Under `lock`: count the streak, bias the channel at its end, or revoke the bias of a
   channel biased to another thread. */
static inline void tp__chan_bias_note(tp_chan *ch)
{
    unsigned st = atomic_load_explicit(&ch->bias, memory_order_relaxed);
    if (st & TP__BIAS_REVOKED)
        return;
    if (TP__UNLIKELY(st & TP__BIAS_ON)) {
        tp__chan_bias_revoke(ch);
        return;
    }
    unsigned id = tp__bias_id;
    if (st != id) { /* a new streak (plain threads, id 0, just end the last one) */
        atomic_store_explicit(&ch->bias, (uint8_t)id, memory_order_relaxed);
        atomic_store_explicit(&ch->busy.v, 0, memory_order_relaxed);
        return;
    }
    if (!id)
        return;
    unsigned n = atomic_load_explicit(&ch->busy.v, memory_order_relaxed) + 1u;
    if (n < TP__BIAS_AFTER)
        atomic_store_explicit(&ch->busy.v, (uint8_t)n, memory_order_relaxed);
    else
        tp__chan_bias_grant(ch, id);
}

/* The owner's lock: true if the calling thread owns ch's bias and now holds `busy`. */
static inline bool tp__chan_lock_biased(tp_chan *ch)
{
#if TP__CHAN_BIAS
    uint8_t mine = (uint8_t)(TP__BIAS_ON | tp__bias_id); /* (no state is ON with id 0) */
    if (TP__LIKELY(atomic_load_explicit(&ch->bias, memory_order_relaxed) == mine)) {
        atomic_store_explicit(&ch->busy.v, 1, memory_order_relaxed);
        atomic_signal_fence(memory_order_seq_cst); /* the store, then the check */
        if (TP__LIKELY(atomic_load_explicit(&ch->bias, memory_order_acquire) == mine))
            return true;
        atomic_store_explicit(&ch->busy.v, 0, memory_order_release); /* being revoked */
    }
#endif
    return false;
}

/* Everybody else's lock (and the owner's once the bias is revoked). */
static inline tp__spin *tp__chan_lock_shared(tp_chan *ch)
{
    tp__spin_lock(&ch->lock);
#if TP__CHAN_BIAS
    tp__chan_bias_note(ch);
#endif
    return &ch->lock;
}

/* Lock ch; returns the lock taken, for tp__spin_unlock (or for code that releases a
   lock it is handed: a park). */
static inline tp__spin *tp__chan_lock(tp_chan *ch)
{
    return tp__chan_lock_biased(ch) ? &ch->busy : tp__chan_lock_shared(ch);
}

/* The lock the calling thread holds on ch (it must hold one): `busy` only ever
   changes in its owner's hands, and the owner holds it exactly when busy is 1. */
static inline tp__spin *tp__chan_held(tp_chan *ch)
{
#if TP__CHAN_BIAS
    unsigned st = atomic_load_explicit(&ch->bias, memory_order_relaxed);
    if ((st & (TP__BIAS_ON | TP__BIAS_ID)) == (TP__BIAS_ON | tp__bias_id) &&
        atomic_load_explicit(&ch->busy.v, memory_order_relaxed))
        return &ch->busy;
#endif
    return &ch->lock;
}

/* Take registration n (on one of ch's queues) off its queue unless its completer
   already has: false if it had (a timed-out party, or a select case, uses that). */
static inline bool tp__chan_withdraw(tp_chan *ch, struct tp__wnode *n)
{
    tp__spin *held = tp__chan_lock(ch);
    bool queued = tp__wq_queued(n);
    if (queued)
        tp__wq_remove(n->q, n);
    tp__spin_unlock(held);
    return queued;
}

/* Advance a ring offset by one element of esz bytes. */
static inline uint64_t tp__chan_next(struct tp__chan_ring *r, uint64_t off, uint32_t esz)
{
    off += esz;
    return off & -(uint64_t)(off != r->size); /* 0 at the end: no branch to lay out */
}

/* Where a blocked party's value is: a value no larger than a pointer travels in its
   registration (n->val holds the bytes themselves), so that a blocked task needs no
   buffer for it; a larger one is in the memory n->val points to. */
static inline void *tp__chan_value(struct tp__wnode *n, uint32_t esz)
{
    return TP__LIKELY(esz <= sizeof n->val) ? (void *)&n->val : n->val;
}

/* Copy one element.  The sizes channels mostly carry are inline moves; for those a call
   to memcpy (through the PLT, with its size dispatch) cost more than the copy. */
static inline void tp__chan_copy(void *dst, const void *src, uint32_t esz)
{
    if (TP__LIKELY(esz == 8)) { /* pointers, the commonest: laid out straight through */
        memcpy(dst, src, 8);
        return;
    }
    switch (esz) {
    case 4:
        memcpy(dst, src, 4);
        break;
    case 16:
        memcpy(dst, src, 16);
        break;
    default:
        memcpy(dst, src, esz);
    }
}

/* Append a copy of elem (esz bytes) to ring r, which has room; its channel locked. */
static inline void tp__chan_ring_put_n(struct tp__chan_ring *r, const void *elem,
                                       uint32_t esz)
{
    uint64_t at = r->tail; /* (the copy may alias r: read it, write it, then copy) */
    r->tail = tp__chan_next(r, at, esz);
    r->count++;
    tp__chan_copy(r->buf + at, elem, esz);
}

/* Move the oldest element (esz bytes) of ring r, which is not empty, to elem. */
static inline void tp__chan_ring_take_n(struct tp__chan_ring *r, void *elem, uint32_t esz)
{
    uint64_t at = r->head;
    r->head = tp__chan_next(r, at, esz);
    r->count--;
    tp__chan_copy(elem, r->buf + at, esz);
}

/* The same for ch's ring: put returns false if it is full. */
static inline bool tp__chan_ring_put(tp_chan *ch, const void *elem)
{
    struct tp__chan_ring *ring = tp__chan_ring(ch);
    if (ring->count == ring->cap)
        return false;
    tp__chan_ring_put_n(ring, elem, ch->esz);
    return true;
}

static inline void tp__chan_ring_take(tp_chan *ch, void *elem)
{
    tp__chan_ring_take_n(tp__chan_ring(ch), elem, ch->esz);
}

/* The channel rules, once, for tp_chan_send/recv and tp_select.  Called with ch locked
   (tp__chan_lock); return 0 (done), EPIPE (closed) or EAGAIN (would block: nothing changed).  A
   party that must be woken is left in *wake, to be completed after unlocking. */
static inline int tp__chan_try_send(tp_chan *ch, const void *elem, struct tp__wnode **wake)
{
    if (TP__UNLIKELY(ch->flags & TP__CHAN_CLOSED))
        return EPIPE;
    struct tp__wnode *r = tp__wq_claim_first(&ch->recvq);
    if (r) { /* a receiver is waiting: hand the value over directly */
        tp__chan_copy(tp__chan_value(r, ch->esz), elem, ch->esz);
        *wake = r;
        return 0;
    }
    if ((ch->flags & TP__CHAN_BUFFERED) && tp__chan_ring_put(ch, elem))
        return 0;
    return EAGAIN;
}

static inline int tp__chan_try_recv(tp_chan *ch, void *elem, struct tp__wnode **wake)
{
    struct tp__wnode *s;
    struct tp__chan_ring *ring = tp__chan_ring(ch);
    if ((ch->flags & TP__CHAN_BUFFERED) && ring->count) {
        tp__chan_ring_take(ch, elem);
        s = tp__wq_claim_first(&ch->sendq);
        if (s) /* a sender was waiting for this slot: its value joins the buffer */
            tp__chan_ring_put(ch, tp__chan_value(s, ch->esz));
        *wake = s;
        return 0;
    }
    if ((s = tp__wq_claim_first(&ch->sendq))) { /* rendezvous */
        tp__chan_copy(elem, tp__chan_value(s, ch->esz), ch->esz);
        *wake = s;
        return 0;
    }
    return ch->flags & TP__CHAN_CLOSED ? EPIPE : EAGAIN;
}

#endif
