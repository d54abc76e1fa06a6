/* readyq.h -- a worker's ready queue: lowest priority value first, FIFO among equals.
 *
 * An rbtree of priority levels, each level a FIFO.  Only a level's oldest entry is in
 * the tree (its rbtree node stands for the level); the others hang off it in a singly
 * linked list.  With the usual single priority the tree has one node, so a push touches
 * the level's head and its newest entry and a pop the entry taken and the one after it
 * -- the tasks about to run anyway.  A plain rbtree of tasks walked log2(n) nodes of
 * tasks that would not run for a long time on every insert: with thousands of tasks
 * ready (the prime sieve has a wave of them) each of those was a cache miss, and the
 * tree took a third of the sieve's time.
 *
 * An entry is an rbtree node plus a link at a fixed distance from it (the queue's
 * link_off), so that the two can sit in different fields of the control block, each
 * where it shares memory with something dead while the task is ready (tp_internal.h).
 */
#ifndef TP_READYQ_H
#define TP_READYQ_H

#include <stddef.h>

#include "rbtree.h"

struct tp__rqlink {
    struct tp__rbnode *next;  /* the next entry of this level, NULL at the end */
    struct tp__rbnode *tail;  /* the level's newest entry (kept in the head only) */
    const void *next_hint;    /* the hint pushed with `next` (see tp__rq_pop) */
};

struct tp__readyq {
    struct tp__rbtree levels; /* the heads, keyed by priority */
    size_t n;                 /* entries queued, all levels */
    ptrdiff_t link_off;       /* an entry's link is this many bytes from its node */
};

static inline void tp__rq_init(struct tp__readyq *q, ptrdiff_t link_off)
{
    tp__rb_init(&q->levels);
    q->n = 0;
    q->link_off = link_off;
}

static inline struct tp__rqlink *tp__rq_link(const struct tp__readyq *q, struct tp__rbnode *e)
{
    return (struct tp__rqlink *)((char *)e + q->link_off);
}

/* The head of the level for prio, or NULL.  There are as many levels as distinct
   priorities queued: almost always one. */
static inline struct tp__rbnode *tp__rq_level(const struct tp__readyq *q, int prio)
{
    struct tp__rbnode *x = q->levels.root;
    while (x && x->key != prio)
        x = prio < x->key ? x->l : x->r;
    return x;
}

/* Queue e (an rbtree node in no tree) at the end of its priority level.  hint: memory
   the caller will want soon after popping e, handed back by the pop before (tp__rq_pop). */
static inline void tp__rq_push(struct tp__readyq *q, struct tp__rbnode *e, int prio,
                               const void *hint)
{
    struct tp__rbnode *head = tp__rq_level(q, prio);
    tp__rq_link(q, e)->next = NULL;
    q->n++;
    if (head) {
        struct tp__rqlink *hl = tp__rq_link(q, head);
        struct tp__rqlink *tl = tp__rq_link(q, hl->tail);
        tl->next = e;
        tl->next_hint = hint;
        hl->tail = e;
        return;
    }
    tp__rq_link(q, e)->tail = e;
    tp__rb_insert(&q->levels, e, prio);
}

/* The first entry of the lowest level, removed (in no tree); NULL when empty.  *hint is
   the hint pushed with the entry after it in its level, probably the next to be popped
   (NULL if there is none): a moment to have that memory fetched. */
static inline struct tp__rbnode *tp__rq_pop(struct tp__readyq *q, const void **hint)
{
    struct tp__rbnode *head = q->levels.first;
    *hint = NULL;
    if (!head)
        return NULL;
    struct tp__rqlink *hl = tp__rq_link(q, head);
    struct tp__rbnode *next = hl->next;
    q->n--;
    if (next) { /* the level goes on: its next entry takes the head's place in the tree */
        *hint = hl->next_hint;
        tp__rq_link(q, next)->tail = hl->tail;
        tp__rb_replace(&q->levels, head, next);
    } else {
        tp__rb_remove(&q->levels, head);
    }
    return head;
}

#endif
