/* rbtree.h -- intrusive red-black tree keyed by a signed 64-bit integer.
 *
 * Equal keys are inserted after the existing ones, so in-order traversal (and therefore
 * "take the first node") is FIFO among equals.  Rotations keep in-order position, so the
 * property survives rebalancing.  The leftmost node is cached: peeking at the minimum,
 * which is what both the ready queue and the timer queue do all the time, is O(1).
 */
#ifndef TP_RBTREE_H
#define TP_RBTREE_H

#include <stddef.h>
#include <stdint.h>

struct tp__rbnode {
    uintptr_t pc;           /* parent pointer | colour bit (1 = black); TP__RB_UNLINKED when out */
    struct tp__rbnode *l;   /* left child */
    struct tp__rbnode *r;   /* right child */
    int64_t key;            /* ordering key, set by insert */
};

struct tp__rbtree {
    struct tp__rbnode *root;  /* NULL when empty */
    struct tp__rbnode *first; /* leftmost node: the next to take */
    size_t n;                 /* number of nodes */
};

/* A node that is in no tree.  Parent pointers are aligned and the colour bit is bit 0,
   so the value 2 can never be a linked node's pc. */
#define TP__RB_UNLINKED ((uintptr_t)2)

static inline void tp__rb_node_init(struct tp__rbnode *n) { n->pc = TP__RB_UNLINKED; }
static inline int tp__rb_linked(const struct tp__rbnode *n) { return n->pc != TP__RB_UNLINKED; }
static inline void tp__rb_init(struct tp__rbtree *t) { t->root = t->first = NULL; t->n = 0; }

/* Insert and remove.  The one-node cases are inline: a ready queue with a single task
   does them all the time; the _slow halves (rbtree.c) take a tree that is not empty,
   and a node that is not the only one. */
void tp__rb_insert_slow(struct tp__rbtree *t, struct tp__rbnode *n, int64_t key);
void tp__rb_remove_slow(struct tp__rbtree *t, struct tp__rbnode *n);

static inline void tp__rb_insert(struct tp__rbtree *t, struct tp__rbnode *n, int64_t key)
{
    if (t->root) {
        tp__rb_insert_slow(t, n, key);
        return;
    }
    n->key = key;
    n->l = n->r = NULL;
    n->pc = 1; /* black: the root */
    t->root = t->first = n;
    t->n = 1;
}
static inline void tp__rb_remove(struct tp__rbtree *t, struct tp__rbnode *n)
{
    if (n != t->root || n->l || n->r) {
        tp__rb_remove_slow(t, n);
        return;
    }
    t->root = t->first = NULL;
    t->n = 0;
    n->pc = TP__RB_UNLINKED;
}
struct tp__rbnode *tp__rb_next(const struct tp__rbnode *n);

#endif
