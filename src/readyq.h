/* readyq.h -- a worker's ready queue: lowest priority value first, FIFO among equals.
 *
 * An rbtree of priority levels, each level a FIFO.  The levels' tree nodes belong to
 * the queue, one per possible priority, not to the entries: an entry is only a link
 * (two words that the control block overlays on memory that is dead while the task is
 * ready, see tp_internal.h), so a task carries no tree node of its own.  (A plain
 * rbtree of tasks walked log2(n) nodes of tasks that would not run for a long time on
 * every insert: with thousands of tasks ready, as in the prime sieve, each was a cache
 * miss, and the tree took a third of the sieve's time.)
 *
 * Two tasks that take turns, each waking the other just before it parks, take the
 * queue from empty to one entry and back on every switch.  For them:
 *  - a queue of one entry keeps it out of the levels, in `solo`, which the next pop
 *    takes with one load; a second entry puts it in its level first, so the order is
 *    the same;
 *  - a level that empties stays in the tree until a pop finds it in the way of another
 *    level: with the usual single priority the tree keeps its one node for good.
 * Together: W2 0.945 of the time, W4 unchanged (a solo entry alone cost the sieve 2-4 %,
 * for the tree insert and removal that every second entry then took).
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

#define TP__RQ_LIKELY(x) __builtin_expect(!!(x), 1)

/* Priorities are int8_t: one level for each. */
#define TP__RQ_LEVELS 256

struct tp__rqlevel {
    struct tp__rbnode node;   /* in the queue's tree while the level has entries (and
                                 maybe for a while after) */
    struct tp__rqlink *head;  /* oldest entry */
    struct tp__rqlink *tail;  /* newest entry */
};

struct tp__readyq {
    struct tp__rqlink *solo;    /* the only entry, out of the levels; else NULL */
    int8_t solo_prio;           /* its priority */
    struct tp__rbtree levels;   /* the non-empty levels (and some emptied), by priority */
    size_t n;                   /* entries queued, solo included */
    struct tp__rqlevel *lv;     /* TP__RQ_LEVELS of them, by priority + 128 (kept apart:
                                   the worker's hot fields stay on a few lines) */
};

static inline void tp__rq_init(struct tp__readyq *q, struct tp__rqlevel *lv)
{
    tp__rb_init(&q->levels);
    q->solo = NULL;
    q->n = 0;
    q->lv = lv;
    for (int i = 0; i < TP__RQ_LEVELS; i++) {
        tp__rb_node_init(&q->lv[i].node);
        q->lv[i].head = q->lv[i].tail = NULL;
    }
}

/* Queue e at the end of its priority level (hint: see tp__rq_push). */
static inline void tp__rq_push_level(struct tp__readyq *q, struct tp__rqlink *e, int8_t prio,
                                     const void *hint)
{
    struct tp__rqlevel *lv = &q->lv[prio + 128];
    e->next = NULL;
    if (lv->head) {
        lv->tail->next = e;
        lv->tail->next_hint = hint;
        lv->tail = e;
        return;
    }
    lv->head = lv->tail = e;
    if (!tp__rb_linked(&lv->node))
        tp__rb_insert(&q->levels, &lv->node, prio);
}

/* Queue e after every entry of its priority and before those of greater values.  hint:
   memory the caller will want soon after popping e, handed back by the pop before
   (tp__rq_pop). */
static inline void tp__rq_push(struct tp__readyq *q, struct tp__rqlink *e, int8_t prio,
                               const void *hint)
{
    if (!q->n++) { /* (nothing is popped before it: its hint is not needed) */
        q->solo = e;
        q->solo_prio = prio;
        return;
    }
    if (q->solo) {
        tp__rq_push_level(q, q->solo, q->solo_prio, NULL);
        q->solo = NULL;
    }
    tp__rq_push_level(q, e, prio, hint);
}

/* The first entry of the lowest level, removed; NULL when empty.  *hint is the hint
   pushed with the entry after it in its level, probably the next to be popped (NULL if
   there is none): a moment to have that memory fetched. */
static inline struct tp__rqlink *tp__rq_pop(struct tp__readyq *q, const void **hint)
{
    struct tp__rqlevel *lv;
    struct tp__rqlink *e;
    *hint = NULL;
    if (q->solo) {
        e = q->solo;
        q->solo = NULL;
        q->n = 0;
        return e;
    }
    if (!q->n)
        return NULL;
    for (;;) { /* (some level has an entry: the loop ends) */
        lv = (struct tp__rqlevel *)(void *)((char *)q->levels.first -
                                            offsetof(struct tp__rqlevel, node));
        if (TP__RQ_LIKELY((e = lv->head) != NULL))
            break;
        tp__rb_remove(&q->levels, &lv->node); /* an emptied level in the way */
    }
    q->n--;
    lv->head = e->next;
    if (lv->head)
        *hint = e->next_hint;
    return e;
}

#endif
