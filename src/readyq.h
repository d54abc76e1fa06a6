/* readyq.h -- a worker's ready queue: lowest priority value first, FIFO among equals.
 *
 * An rbtree of priority levels, each level a FIFO.  The levels' tree nodes belong to
 * the queue, one per possible priority, not to the entries: an entry is only a link
 * (two words that the control block overlays on memory that is dead while the task is
 * ready, see tp_internal.h), so a task carries no tree node of its own.  With the usual
 * single priority the tree has one node, which stays in it while the level has entries:
 * a push touches the level and its newest entry, a pop the level and the entry taken.
 * (A plain rbtree of tasks walked log2(n) nodes of tasks that would not run for a long
 * time on every insert: with thousands of tasks ready, as in the prime sieve, each was
 * a cache miss, and the tree took a third of the sieve's time.)
 */
#ifndef TP_READYQ_H
#define TP_READYQ_H

#include <stddef.h>
#include <stdint.h>

#include "rbtree.h"

struct tp__rqlink {
    struct tp__rqlink *next;  /* the next entry of its level, NULL at the end */
    const void *next_hint;    /* the hint pushed with `next` (see tp__rq_pop) */
};

/* Priorities are int8_t: one level for each. */
#define TP__RQ_LEVELS 256

struct tp__rqlevel {
    struct tp__rbnode node;   /* in the queue's tree while the level has entries */
    struct tp__rqlink *head;  /* oldest entry */
    struct tp__rqlink *tail;  /* newest entry */
};

struct tp__readyq {
    struct tp__rbtree levels;   /* the non-empty levels, keyed by priority */
    size_t n;                   /* entries queued, all levels */
    struct tp__rqlevel *lv;     /* TP__RQ_LEVELS of them, by priority + 128 (kept apart:
                                   the worker's hot fields stay on a few lines) */
};

static inline void tp__rq_init(struct tp__readyq *q, struct tp__rqlevel *lv)
{
    tp__rb_init(&q->levels);
    q->n = 0;
    q->lv = lv;
    for (int i = 0; i < TP__RQ_LEVELS; i++) {
        tp__rb_node_init(&q->lv[i].node);
        q->lv[i].head = q->lv[i].tail = NULL;
    }
}

/* Queue e at the end of its priority level.  hint: memory the caller will want soon
   after popping e, handed back by the pop before (tp__rq_pop). */
static inline void tp__rq_push(struct tp__readyq *q, struct tp__rqlink *e, int8_t prio,
                               const void *hint)
{
    struct tp__rqlevel *lv = &q->lv[prio + 128];
    e->next = NULL;
    q->n++;
    if (lv->head) {
        lv->tail->next = e;
        lv->tail->next_hint = hint;
        lv->tail = e;
        return;
    }
    lv->head = lv->tail = e;
    tp__rb_insert(&q->levels, &lv->node, prio);
}

/* The first entry of the lowest level, removed; NULL when empty.  *hint is the hint
   pushed with the entry after it in its level, probably the next to be popped (NULL if
   there is none): a moment to have that memory fetched. */
static inline struct tp__rqlink *tp__rq_pop(struct tp__readyq *q, const void **hint)
{
    struct tp__rbnode *first = q->levels.first;
    *hint = NULL;
    if (!first)
        return NULL;
    struct tp__rqlevel *lv = (struct tp__rqlevel *)(void *)((char *)first -
                                                            offsetof(struct tp__rqlevel, node));
    struct tp__rqlink *e = lv->head;
    q->n--;
    lv->head = e->next;
    if (lv->head)
        *hint = e->next_hint;
    else
        tp__rb_remove(&q->levels, &lv->node);
    return e;
}

#endif
