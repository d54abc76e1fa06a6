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

/* The i-th buffered element (0 = oldest). */
static inline char *tp__chan_slot(tp_chan *ch, uint32_t i)
{
    size_t k = (size_t)ch->head + i;
    if (k >= ch->cap)
        k -= ch->cap;
    return ch->buf + k * (size_t)ch->esz;
}

#endif
