/* chan.h -- the channel's layout, shared by chan.c and select.c.  Never installed. */
#ifndef TP_CHAN_H
#define TP_CHAN_H

#include "tp_internal.h"

/* An unbuffered channel is this header alone; a buffered one is followed by its ring
   (struct tp__chan_ring), in the same allocation.  Programs with very many tasks tend
   to give each its own unbuffered channel, so the header is kept to what every channel
   needs. */
struct tp_chan {
    tp__spin lock;
    bool closed;
    bool buffered;             /* capacity > 0: the ring follows */
    uint32_t esz;              /* element size */
    struct tp__wqueue sendq;   /* blocked senders, FIFO */
    struct tp__wqueue recvq;   /* blocked receivers, FIFO */
};

struct tp__chan_ring {
    uint32_t cap;              /* capacity in elements (> 0) */
    uint32_t head;             /* index of the oldest buffered element */
    uint32_t count;            /* buffered elements */
    uint32_t unused_;          /* (keeps buf 8-byte aligned) */
    char buf[];                /* cap * esz bytes */
};

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

/* The i-th buffered element (0 = oldest) of ring r, elements of esz bytes. */
static inline char *tp__chan_slot(struct tp__chan_ring *r, uint32_t esz, uint32_t i)
{
    size_t k = (size_t)r->head + i;
    if (k >= r->cap)
        k -= r->cap;
    return r->buf + k * (size_t)esz;
}

/* Where a blocked party's value is: a value no larger than a pointer travels in its
   registration (n->val holds the bytes themselves), so that a blocked task needs no
   buffer for it; a larger one is in the memory n->val points to. */
static inline void *tp__chan_value(struct tp__wnode *n, uint32_t esz)
{
    return esz <= sizeof n->val ? (void *)&n->val : n->val;
}

/* Copy one element.  The sizes channels mostly carry are inline moves; for those a call
   to memcpy (through the PLT, with its size dispatch) cost more than the copy. */
static inline void tp__chan_copy(void *dst, const void *src, uint32_t esz)
{
    switch (esz) {
    case 8:
        memcpy(dst, src, 8);
        break;
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

/* The channel rules, once, for tp_chan_send/recv and tp_select.  Called with ch->lock
   held; return 0 (done), EPIPE (closed) or EAGAIN (would block: nothing changed).  A
   party that must be woken is left in *wake, to be completed after unlocking. */
static inline int tp__chan_try_send(tp_chan *ch, const void *elem, struct tp__wnode **wake)
{
    if (TP__UNLIKELY(ch->closed))
        return EPIPE;
    struct tp__wnode *r = tp__wq_claim_first(&ch->recvq);
    if (r) { /* a receiver is waiting: hand the value over directly */
        tp__chan_copy(tp__chan_value(r, ch->esz), elem, ch->esz);
        *wake = r;
        return 0;
    }
    if (ch->buffered) {
        struct tp__chan_ring *ring = tp__chan_ring(ch);
        if (ring->count < ring->cap) {
            tp__chan_copy(tp__chan_slot(ring, ch->esz, ring->count++), elem, ch->esz);
            return 0;
        }
    }
    return EAGAIN;
}

static inline int tp__chan_try_recv(tp_chan *ch, void *elem, struct tp__wnode **wake)
{
    struct tp__wnode *s;
    struct tp__chan_ring *ring = tp__chan_ring(ch);
    if (ch->buffered && ring->count) {
        uint32_t esz = ch->esz;
        tp__chan_copy(elem, tp__chan_slot(ring, esz, 0), esz);
        ring->head = ring->head + 1 == ring->cap ? 0 : ring->head + 1;
        ring->count--;
        s = tp__wq_claim_first(&ch->sendq);
        if (s) /* a sender was waiting for this slot: its value joins the buffer */
            tp__chan_copy(tp__chan_slot(ring, esz, ring->count++), tp__chan_value(s, esz), esz);
        *wake = s;
        return 0;
    }
    if ((s = tp__wq_claim_first(&ch->sendq))) { /* rendezvous */
        tp__chan_copy(elem, tp__chan_value(s, ch->esz), ch->esz);
        *wake = s;
        return 0;
    }
    return ch->closed ? EPIPE : EAGAIN;
}

#endif
