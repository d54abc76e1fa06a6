/* rbtree.c -- intrusive red-black tree (see rbtree.h).
 *
 * Classic algorithm with parent pointers and NULL leaves; the colour lives in bit 0 of
 * the parent pointer so a node is four words.  Used by every worker for its ready queue
 * (key: priority, see readyq.h) and its timer queue (key: deadline).
 */
#include "rbtree.h"

typedef struct tp__rbnode node;
typedef struct tp__rbtree tree;

enum { RED = 0, BLACK = 1 };

static inline node *parent(const node *n) { return (node *)(n->pc & ~(uintptr_t)1); }
static inline int color(const node *n) { return n ? (int)(n->pc & 1) : BLACK; }
static inline void set_parent(node *n, node *p) { n->pc = (uintptr_t)p | (n->pc & 1); }
static inline void set_color(node *n, int c) { n->pc = (n->pc & ~(uintptr_t)1) | (uintptr_t)c; }

/* Make v take u's place under u's parent. */
static void replace_child(tree *t, node *u, node *v)
{
    node *p = parent(u);
    if (!p)
        t->root = v;
    else if (p->l == u)
        p->l = v;
    else
        p->r = v;
    if (v)
        set_parent(v, p);
}

static void rotate_left(tree *t, node *x)
{
    node *y = x->r;
    x->r = y->l;
    if (y->l)
        set_parent(y->l, x);
    replace_child(t, x, y);
    y->l = x;
    set_parent(x, y);
}

static void rotate_right(tree *t, node *x)
{
    node *y = x->l;
    x->l = y->r;
    if (y->r)
        set_parent(y->r, x);
    replace_child(t, x, y);
    y->r = x;
    set_parent(x, y);
}

static void insert_fixup(tree *t, node *z)
{
    node *p, *g, *u;
    while ((p = parent(z)) && color(p) == RED) {
        g = parent(p); /* p is red, so it is not the root */
        int left = (p == g->l);
        u = left ? g->r : g->l;
        if (color(u) == RED) {
            set_color(p, BLACK);
            set_color(u, BLACK);
            set_color(g, RED);
            z = g;
            continue;
        }
        if (z == (left ? p->r : p->l)) {
            if (left)
                rotate_left(t, p);
            else
                rotate_right(t, p);
            z = p;
            p = parent(z);
        }
        set_color(p, BLACK);
        set_color(g, RED);
        if (left)
            rotate_right(t, g);
        else
            rotate_left(t, g);
    }
    set_color(t->root, BLACK);
}

void tp__rb_insert_slow(tree *t, node *n, int64_t key)
{
    n->key = key;
    n->l = n->r = NULL;
    node *p = NULL, **link = &t->root;
    int leftmost = 1;
    while (*link) {
        p = *link;
        if (key < p->key) {
            link = &p->l;
        } else { /* equal keys go right: FIFO among equals */
            link = &p->r;
            leftmost = 0;
        }
    }
    n->pc = (uintptr_t)p; /* red */
    *link = n;
    if (leftmost)
        t->first = n;
    t->n++;
    insert_fixup(t, n);
}

node *tp__rb_next(const node *n)
{
    if (n->r) {
        n = n->r;
        while (n->l)
            n = n->l;
        return (node *)n;
    }
    node *p = parent(n);
    while (p && n == p->r) {
        n = p;
        p = parent(p);
    }
    return p;
}

/* x (possibly NULL) under parent xp is "doubly black": restore the black heights. */
static void remove_fixup(tree *t, node *x, node *xp)
{
    while (x != t->root && color(x) == BLACK) {
        int left = (x == xp->l);
        node *w = left ? xp->r : xp->l; /* x's deficit means w exists */
        if (color(w) == RED) {
            set_color(w, BLACK);
            set_color(xp, RED);
            if (left)
                rotate_left(t, xp);
            else
                rotate_right(t, xp);
            w = left ? xp->r : xp->l;
        }
        if (color(w->l) == BLACK && color(w->r) == BLACK) {
            set_color(w, RED);
            x = xp;
            xp = parent(x);
            continue;
        }
        if (color(left ? w->r : w->l) == BLACK) {
            set_color(left ? w->l : w->r, BLACK);
            set_color(w, RED);
            if (left)
                rotate_right(t, w);
            else
                rotate_left(t, w);
            w = left ? xp->r : xp->l;
        }
        set_color(w, color(xp));
        set_color(xp, BLACK);
        set_color(left ? w->r : w->l, BLACK);
        if (left)
            rotate_left(t, xp);
        else
            rotate_right(t, xp);
        x = t->root;
        break;
    }
    if (x)
        set_color(x, BLACK);
}

void tp__rb_remove_slow(tree *t, node *z)
{
    node *x, *xp, *y;
    int removed_color = color(z);
    if (t->first == z)
        t->first = tp__rb_next(z);
    t->n--;
    if (!z->l || !z->r) {
        x = z->l ? z->l : z->r;
        xp = parent(z);
        replace_child(t, z, x);
    } else {
        y = z->r; /* successor: leftmost of the right subtree */
        while (y->l)
            y = y->l;
        removed_color = color(y);
        x = y->r;
        if (parent(y) == z) {
            xp = y;
        } else {
            xp = parent(y);
            replace_child(t, y, x);
            y->r = z->r;
            set_parent(y->r, y);
        }
        replace_child(t, z, y);
        y->l = z->l;
        set_parent(y->l, y);
        set_color(y, color(z));
    }
    if (removed_color == BLACK)
        remove_fixup(t, x, xp);
    z->pc = TP__RB_UNLINKED;
}
