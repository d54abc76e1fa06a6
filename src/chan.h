/* chan.h -- the channel's layout, shared by chan.c and select.c.  Never installed. */
#ifndef TP_CHAN_H
#define TP_CHAN_H

#include "tp_internal.h"

struct tp_chan {
    tp__spin lock;
    bool closed;
    uint32_t esz;              /* element size */
    uint32_t cap;              /* buffer capacity in elements (0: rendezvous) */
    uint32_t head;             /* index of the oldest buffered element */
    uint32_t count;            /* buffered elements */
    struct tp__wqueue sendq;   /* blocked senders, FIFO */
    struct tp__wqueue recvq;   /* blocked receivers, FIFO */
    char buf[];                /* cap * esz bytes */
};

#if defined(__x86_64__) && !TP_ASAN && !TP_TSAN
/* glibc hands out (request + 8) rounded up to 16 bytes: an unbuffered channel of 40
   bytes is a 48-byte chunk, 41 a 64-byte one.  Benchmark W1 has a million of them. */
_Static_assert(sizeof(struct tp_chan) <= 40, "tp_chan grew past a malloc chunk boundary");
#endif

/* The i-th buffered element (0 = oldest). */
static inline char *tp__chan_slot(tp_chan *ch, uint32_t i)
{
    size_t k = (size_t)ch->head + i;
    if (k >= ch->cap)
        k -= ch->cap;
    return ch->buf + k * (size_t)ch->esz;
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
    if (ch->count < ch->cap) {
        tp__chan_copy(tp__chan_slot(ch, ch->count++), elem, ch->esz);
        return 0;
    }
    return EAGAIN;
}

static inline int tp__chan_try_recv(tp_chan *ch, void *elem, struct tp__wnode **wake)
{
    struct tp__wnode *s;
    if (ch->count) {
        tp__chan_copy(elem, tp__chan_slot(ch, 0), ch->esz);
        ch->head = ch->head + 1 == ch->cap ? 0 : ch->head + 1;
        ch->count--;
        s = tp__wq_claim_first(&ch->sendq);
        if (s) /* a sender was waiting for this slot: its value joins the buffer */
            tp__chan_copy(tp__chan_slot(ch, ch->count++), tp__chan_value(s, ch->esz), ch->esz);
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
