/* readyq.h -- a worker's ready queue: lowest priority value first, FIFO among equals.
 *
 * An rbtree of priority levels, each level a FIFO of tasks.  Only a level's oldest task
 * is in the tree (its node stands for the level); the others hang off it in a singly
 * linked list.  With the usual single priority the tree has one node, so a push touches
 * the level's head and its newest task and a pop the task taken and the one after it --
 * the tasks about to run anyway.  A plain rbtree of tasks walked log2(n) nodes of tasks
 * that would not run for a long time on every insert: with thousands of tasks ready
 * (the prime sieve has a wave of them) each of those was a cache miss, and the tree
 * took a third of the sieve's time.
 */
#ifndef TP_READYQ_H
#define TP_READYQ_H

#include <stddef.h>

#include "rbtree.h"

struct tp__rqnode {
    struct tp__rbnode level;  /* in the tree while this node heads its level */
    struct tp__rqnode *next;  /* the next in this level's FIFO, NULL at the end */
    struct tp__rqnode *tail;  /* the level's newest node (kept in the head only) */
};

struct tp__readyq {
    struct tp__rbtree levels; /* keyed by priority */
    size_t n;                 /* nodes queued, all levels */
};

static inline void tp__rq_init(struct tp__readyq *q)
{
    tp__rb_init(&q->levels);
    q->n = 0;
}

#define TP__RQ_HEAD(x) ((struct tp__rqnode *)((char *)(x) - offsetof(struct tp__rqnode, level)))

/* The level for prio, or NULL.  There are as many levels as distinct priorities in use:
   almost always one. */
static inline struct tp__rqnode *tp__rq_level(const struct tp__readyq *q, int prio)
{
    struct tp__rbnode *x = q->levels.root;
    while (x) {
        if (prio < x->key)
            x = x->l;
        else if (prio > x->key)
            x = x->r;
        else
            return TP__RQ_HEAD(x);
    }
    return NULL;
}

static inline void tp__rq_push(struct tp__readyq *q, struct tp__rqnode *n, int prio)
{
    struct tp__rqnode *head = tp__rq_level(q, prio);
    n->next = NULL;
    q->n++;
    if (head) {
        head->tail->next = n;
        head->tail = n;
        return;
    }
    n->tail = n;
    tp__rb_insert(&q->levels, &n->level, prio);
}

/* The first node of the lowest level, removed; NULL when empty. */
static inline struct tp__rqnode *tp__rq_pop(struct tp__readyq *q)
{
    struct tp__rbnode *first = q->levels.first;
    if (!first)
        return NULL;
    struct tp__rqnode *head = TP__RQ_HEAD(first), *next = head->next;
    q->n--;
    if (next) { /* the level goes on: its next node takes the head's place in the tree */
        next->tail = head->tail;
        tp__rb_replace(&q->levels, &head->level, &next->level);
    } else {
        tp__rb_remove(&q->levels, &head->level);
    }
    return head;
}

#endif
