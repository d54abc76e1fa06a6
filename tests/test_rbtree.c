/* test_rbtree.c -- the intrusive red-black tree behind every ready queue and timer queue:
 * red-black invariants after every operation, in-order = key order, FIFO among equal
 * keys, the cached leftmost node, and random insert/remove against a sorted reference;
 * and the ready queue built on it (readyq.h): random pushes and pops against a
 * reference ordered by (priority, push order), with the levels and their tree checked
 * every 53 operations; and a timer node at the end of a save buffer that must grow at
 * copy-out, which has to move with the buffer and stay in its timer tree. */
#include "tp_test.h"
#include "../src/tp_internal.h" /* (rbtree.h, readyq.h, and the timer node of stack.c) */

#include <stdbool.h>
#include <string.h>

struct item {
    struct tp__rbnode node;
    int64_t key;
    unsigned seq; /* insertion order, for the FIFO check */
};

/* Returns the black height of n; fails the test on any red-black violation. */
static int check_node(const struct tp__rbnode *n, const struct tp__rbnode *parent)
{
    if (!n)
        return 1;
    ck_assert_ptr_eq((void *)(n->pc & ~(uintptr_t)1), (void *)parent);
    int red = !(n->pc & 1);
    if (red) {
        ck_assert(!n->l || (n->l->pc & 1));
        ck_assert(!n->r || (n->r->pc & 1));
    }
    if (n->l)
        ck_assert(n->l->key <= n->key);
    if (n->r)
        ck_assert(n->r->key >= n->key);
    int hl = check_node(n->l, n), hr = check_node(n->r, n);
    ck_assert_int_eq(hl, hr);
    return hl + !red;
}

static void check_tree(const struct tp__rbtree *t, size_t expect_n)
{
    ck_assert_uint_eq(t->n, expect_n);
    if (t->root)
        ck_assert(t->root->pc & 1); /* root is black */
    check_node(t->root, NULL);
    const struct tp__rbnode *m = t->root;
    while (m && m->l)
        m = m->l;
    ck_assert_ptr_eq(t->first, m);
}

START_TEST(test_fifo_among_equals)
{
    struct tp__rbtree t;
    tp__rb_init(&t);
    struct item it[300];
    for (unsigned i = 0; i < 300; i++) {
        it[i].key = (int64_t)(i % 3); /* keys 0,1,2 repeated */
        it[i].seq = i;
        tp__rb_insert(&t, &it[i].node, it[i].key);
        check_tree(&t, i + 1);
    }
    /* Take the minimum repeatedly: keys ascend, and within a key insertion order holds. */
    int64_t last_key = -1;
    unsigned last_seq = 0;
    for (unsigned i = 0; i < 300; i++) {
        struct item *m = (struct item *)t.first;
        ck_assert(m->key >= last_key);
        if (m->key == last_key)
            ck_assert_uint_gt(m->seq, last_seq);
        last_key = m->key;
        last_seq = m->seq;
        tp__rb_remove(&t, &m->node);
        ck_assert(!tp__rb_linked(&m->node));
        check_tree(&t, 299 - i);
    }
    ck_assert_ptr_null(t.root);
}
END_TEST

static uint64_t rng = 88172645463325252ull;
static uint64_t rnd(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

START_TEST(test_random_against_reference)
{
    enum { N = 2000 };
    static struct item it[N];
    struct tp__rbtree t;
    tp__rb_init(&t);
    size_t n = 0;
    for (unsigned i = 0; i < N; i++)
        tp__rb_node_init(&it[i].node);
    for (unsigned round = 0; round < 20000; round++) {
        struct item *x = &it[rnd() % N];
        if (tp__rb_linked(&x->node)) {
            tp__rb_remove(&t, &x->node);
            n--;
        } else {
            x->key = (int64_t)(rnd() % 500) - 250;
            tp__rb_insert(&t, &x->node, x->key);
            n++;
        }
        if (round % 97 == 0)
            check_tree(&t, n);
    }
    check_tree(&t, n);
    /* In-order traversal visits exactly the linked items, sorted. */
    size_t seen = 0;
    int64_t prev = INT64_MIN;
    for (struct tp__rbnode *p = t.first; p; p = tp__rb_next(p)) {
        ck_assert(p->key >= prev);
        prev = p->key;
        seen++;
    }
    ck_assert_uint_eq(seen, n);
}
END_TEST

/* An entry is its link alone, as in the control block. */
struct rqitem {
    struct tp__rqlink link;
    int prio;
    unsigned seq;   /* push order */
    bool queued;
};

/* The queued item a correct queue pops next: lowest prio, then lowest seq. */
static struct rqitem *rq_expected(struct rqitem *it, unsigned n)
{
    struct rqitem *best = NULL;
    for (unsigned i = 0; i < n; i++)
        if (it[i].queued &&
            (!best || it[i].prio < best->prio || (it[i].prio == best->prio && it[i].seq < best->seq)))
            best = &it[i];
    return best;
}

/* A single item may be the queue's solo entry, out of every level.  Otherwise the
   levels of the priorities queued are in the tree, each keyed by its priority, with its
   oldest item at the head and its newest at the tail; the others are empty (an emptied
   level may stay in the tree until it is in a pop's way). */
static void rq_check(struct tp__readyq *q, struct rqitem *it, unsigned n)
{
    size_t queued = 0, levels = 0;
    struct rqitem *one = NULL;
    for (unsigned i = 0; i < n; i++) {
        queued += it[i].queued;
        if (it[i].queued)
            one = &it[i];
    }
    if (q->solo) {
        ck_assert_uint_eq(queued, 1);
        ck_assert_ptr_eq(q->solo, &one->link);
        ck_assert_int_eq(q->solo_prio, one->prio);
        one->queued = false; /* (for the levels' check below: all empty) */
    }
    for (int p = -128; p < 128; p++) {
        struct tp__rqlevel *lv = &q->lv[p + 128];
        struct rqitem *oldest = NULL, *newest = NULL;
        for (unsigned i = 0; i < n; i++) {
            if (!it[i].queued || it[i].prio != p)
                continue;
            if (!oldest || it[i].seq < oldest->seq)
                oldest = &it[i];
            if (!newest || it[i].seq > newest->seq)
                newest = &it[i];
        }
        if (tp__rb_linked(&lv->node)) {
            levels++;
            ck_assert_int_eq(lv->node.key, p);
        }
        if (!oldest) {
            ck_assert_ptr_null(lv->head);
            continue;
        }
        ck_assert(tp__rb_linked(&lv->node));
        ck_assert_ptr_eq(lv->head, &oldest->link);
        ck_assert_ptr_eq(lv->tail, &newest->link);
    }
    ck_assert_uint_eq(q->n, queued);
    check_tree(&q->levels, levels);
    if (q->solo)
        one->queued = true;
}

START_TEST(test_readyq_against_reference)
{
    enum { N = 400 };
    static struct rqitem it[N];
    static struct tp__rqlevel lv[TP__RQ_LEVELS];
    struct tp__readyq q;
    tp__rq_init(&q, lv);
    unsigned seq = 0;
    for (unsigned i = 0; i < N; i++)
        it[i].queued = false;
    for (unsigned round = 0; round < 20000; round++) {
        /* Phases that mostly push, then mostly pop, so the queue fills and drains. */
        bool push = rnd() % 100 < ((round / 1000) % 2 ? 25u : 75u);
        struct rqitem *x = &it[rnd() % N];
        if (push && !x->queued) {
            x->prio = (int)(rnd() % 5) - 2;
            x->seq = seq++;
            x->queued = true;
            tp__rq_push(&q, &x->link, (int8_t)x->prio, &x->seq); /* each item's hint: its seq */
        } else if (!push) {
            struct rqitem *want = rq_expected(it, N);
            const void *hint;
            struct tp__rqlink *got = tp__rq_pop(&q, &hint);
            ck_assert_ptr_eq(got, want ? &want->link : NULL);
            if (want) {
                want->queued = false;
                /* the hint is that of the popped item's successor in its level */
                struct rqitem *succ = NULL;
                for (unsigned i = 0; i < N; i++)
                    if (it[i].queued && it[i].prio == want->prio &&
                        (!succ || it[i].seq < succ->seq))
                        succ = &it[i];
                ck_assert_ptr_eq(hint, succ ? &succ->seq : NULL);
            } else {
                ck_assert_ptr_null(hint);
            }
        }
        if (round % 53 == 0)
            rq_check(&q, it, N);
    }
    const void *hint;
    while (tp__rq_pop(&q, &hint))
        ;
    ck_assert_uint_eq(q.n, 0);
    for (int i = 0; i < TP__RQ_LEVELS; i++) /* (emptied levels may stay in the tree) */
        ck_assert_ptr_null(lv[i].head);
}
END_TEST

/* A task parked with a deadline is in the timer tree through a node at the end of its
   save buffer (timer.c).  If the copy-out finds the segment longer than the park
   reserved for (stack.c: possible when the stack pointer was measured above the
   switch), the buffer grows and may move: the node must go with it, still in the tree
   at its deadline, among the nodes of other tasks. */
START_TEST(test_timer_node_follows_grown_save_buffer)
{
    static char stack[8192] __attribute__((aligned(16)));
    struct tp__worker *w = aligned_alloc(_Alignof(struct tp__worker), sizeof *w);
    ck_assert_ptr_nonnull(w);
    memset(w, 0, sizeof *w);
    tp__rb_init(&w->timers);
    w->run_top = stack + sizeof stack; /* the tasks below "run" there */
    char *top = stack + sizeof stack - TP__CTX_TOP;
    tp_task *t[3];
    const int64_t deadline[3] = {2000, 1000, 3000};
    for (int i = 0; i < 3; i++) {
        t[i] = calloc(1, sizeof *t[i]);
        ck_assert_ptr_nonnull(t[i]);
        t[i]->worker = w;
        t[i]->sp = top - 96;
        ck_assert_int_eq(tp__stack_reserve(t[i], t[i]->sp, true), 0);
        tp__timer_add(w, t[i], deadline[i]);
    }
    check_tree(&w->timers, 3);
    /* task 0 switched 4 KB deeper than its park measured */
    t[0]->sp = top - 4096 - 96;
    for (char *p = t[0]->sp; p < top; p++)
        *p = (char)(uintptr_t)p;
    tp__stack_save(w, t[0], w->run_top);
    ck_assert(t[0]->save_cap & TP__SAVE_TIMED);
    ck_assert_uint_ge((t[0]->save_cap & ~TP__SAVE_TIMED) - sizeof(struct tp__tnode), 4096 + 96);
    ck_assert_int_eq(memcmp(t[0]->save, t[0]->sp, 4096 + 96), 0);
    check_tree(&w->timers, 3);
    for (int i = 0; i < 3; i++) { /* each node where its task's buffer now ends, in order */
        struct tp__tnode *n = tp__timer_node(t[i]);
        ck_assert_ptr_eq(n->task, t[i]);
        ck_assert_int_eq(n->rb.key, deadline[i]);
        ck_assert(tp__rb_linked(&n->rb));
    }
    ck_assert_ptr_eq(w->timers.first, &tp__timer_node(t[1])->rb);
    ck_assert_ptr_eq(tp__rb_next(w->timers.first), &tp__timer_node(t[0])->rb);
    for (int i = 0; i < 3; i++) {
        tp__timer_remove(w, t[i]);
        ck_assert(!(t[i]->save_cap & TP__SAVE_TIMED));
        free(t[i]->save);
        free(t[i]);
    }
    check_tree(&w->timers, 0);
    free(w);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("rbtree");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, test_fifo_among_equals);
    tcase_add_test(tc, test_random_against_reference);
    tcase_add_test(tc, test_readyq_against_reference);
    tcase_add_test(tc, test_timer_node_follows_grown_save_buffer);
    suite_add_tcase(s, tc);
    return test_run(s);
}
