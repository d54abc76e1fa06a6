/* tp_internal.h -- what the files of src/ share.  Never installed.
 *
 * The moving parts:
 *  - a pool owns N workers; each worker is a pthread with one shared stack (stack.c),
 *    a ready queue (an rbtree keyed by priority, FIFO among equals), a FIFO of tasks that
 *    have never run (any worker may steal those), a timer rbtree keyed by deadline, and
 *    an epoll set it sleeps in (sched.c, timer.c);
 *  - a task is a control block on the heap plus, while parked, a heap copy of its live
 *    stack segment (task.c, stack.c);
 *  - a blocked party (task or plain thread) is described by a struct tp__wait; objects
 *    that can be waited on (channels, mutexes, ...) queue struct tp__wnode registrations
 *    pointing at it (wait.c).  Whoever "claims" a wait first completes it, which is how
 *    a timeout, a close and a matching operation racing each other agree on one outcome.
 */
#ifndef TP_INTERNAL_H
#define TP_INTERNAL_H

#include "config.h"

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "threadplex.h"
#include "rbtree.h"
#include "readyq.h"
#include "sanitize.h"
#include "ctx.h"

/* Branch hints.  On the channel and switch paths they are about layout more than
   prediction: those paths run a few hundred instructions at four or more a cycle here,
   and every taken branch ends a fetch block, so the case that a task takes on every
   operation is laid out straight through.  Hints on the rendezvous and park paths took
   W2 from 63 to 35 taken branches a round trip and 39 to 31 ns; on the buffered fast
   path, see ring_put_inline in chan.c. */
#define TP__LIKELY(x) __builtin_expect(!!(x), 1)
#define TP__UNLIKELY(x) __builtin_expect(!!(x), 0)
#define TP__CACHELINE 64
/* Shared stacks ("slots") per worker, at most and by default (stack.c). */
#define TP__SLOTS TP_POOL_MAX_STACKS
_Static_assert(TP__SLOTS <= 32, "a worker's slot_free has a bit per slot");
/* For the entry points of the operations programs make millions of times a second.
   Their fast paths are a few dozen instructions; where those fall relative to 64-byte
   boundaries changed channel throughput by up to 12 % between builds that differed
   only elsewhere (benchmark W5).  Starting them on a boundary makes it the same in
   every build, and `hot` puts them first in the library's code (.text.hot), where code
   added elsewhere does not move them (it still moved W5 by 3-5 % without). */
#define TP__HOT __attribute__((aligned(64), hot))
/* Thread-local variables of the library.  The default model for a shared library calls
   __tls_get_addr on every access (about 40 instructions, several times per switch);
   initial-exec is a plain %fs-relative load.  Its cost is a few bytes of the static TLS
   space glibc keeps spare for libraries loaded with dlopen. */
#define TP__TLS __thread __attribute__((tls_model("initial-exec")))

/* Always-on check of an internal invariant (never of caller input): file:line, abort. */
#define TP__ASSERT(cond)                                                                   \
    do {                                                                                   \
        if (TP__UNLIKELY(!(cond)))                                                         \
            tp__panic(__FILE__, __LINE__, #cond);                                          \
    } while (0)
__attribute__((noreturn, cold)) void tp__panic(const char *file, int line, const char *what);

/* Fault injection for tests: every allocation goes through tp__malloc/tp__realloc so a
   test can make the Nth one fail (tp__fail_alloc_at, see tests/). */
void *tp__malloc(size_t n);
void *tp__calloc(size_t n, size_t size);
void *tp__calloc_aligned(size_t n, size_t size, size_t align); /* free() it */
void *tp__realloc(void *p, size_t n);
extern _Atomic long tp__alloc_countdown; /* >0: fail when it reaches 0; <=0: never */

/* ------------------------------------------------------------------- spinlock ---- */

/* Critical sections are a few dozen instructions, so a spinlock beats a mutex; after a
   while the waiter yields the CPU, because a plain thread holding it may be preempted.
   One byte: it sits beside other small fields (a channel's flags, a task's state). */
typedef struct {
    atomic_uchar v;
} tp__spin;

void tp__spin_lock_slow(tp__spin *s);

static inline void tp__spin_init(tp__spin *s) { atomic_init(&s->v, 0); }

static inline void tp__spin_lock(tp__spin *s)
{
    if (TP__LIKELY(!atomic_exchange_explicit(&s->v, 1, memory_order_acquire)))
        return;
    tp__spin_lock_slow(s);
}

static inline void tp__spin_unlock(tp__spin *s)
{
    atomic_store_explicit(&s->v, 0, memory_order_release);
}

static inline void tp__cpu_relax(void)
{
#if defined(__x86_64__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ volatile("yield");
#endif
}

/* The i-th round of waiting for another thread to let go: spin briefly, then yield the
   CPU, because the holder may be a preempted plain thread. */
static inline void tp__backoff(unsigned i)
{
    if (i < 128)
        tp__cpu_relax();
    else
        sched_yield();
}

/* Single-writer statistics counter: only its worker writes it, anyone may read it. */
typedef _Atomic uint64_t tp__counter;
static inline void tp__count(tp__counter *c, int64_t d)
{
    atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + (uint64_t)d,
                          memory_order_relaxed);
}

/* --------------------------------------------------------------------- waits ---- */

struct tp__wait;
typedef void tp__cancel_fn(struct tp__wait *w);

/* How a wait that timed out withdraws its registrations.  A byte in the wait rather
   than a function pointer: every parked task carries a wait, and 7 bytes less of it is
   what lets the control block fit a smaller malloc chunk.  tp__wait_cancel (wait.c)
   calls the function of the object kind. */
enum tp__cancel {
    TP__CANCEL_NONE,      /* nothing to withdraw: no deadline, or no registration */
    TP__CANCEL_CHAN_SEND, /* chan.c */
    TP__CANCEL_CHAN_RECV, /* chan.c */
    TP__CANCEL_COND,      /* sync.c */
    TP__CANCEL_WG,        /* wg.c */
    TP__CANCEL_SELECT,    /* select.c */
    TP__CANCEL_JOIN,      /* task.c */
};
tp__cancel_fn tp__chan_cancel_send, tp__chan_cancel_recv, tp__cond_cancel, tp__wg_cancel,
    tp__select_cancel, tp__join_cancel;

/* Bits of tp__wait.state. */
#define TP__WAIT_CLAIMED 1u /* someone has decided the outcome (never set when SOLE) */
#define TP__WAIT_WOKEN 2u   /* plain thread: the outcome is recorded (it sleeps on this word) */
#define TP__WAIT_TASK 4u    /* set at init: the wait is a task's, tp_task.wait */
#define TP__WAIT_SOLE 8u    /* set at enqueue when there is no deadline: only holders of
                               the lock of the one queue it is on can complete it, so
                               it is claimed without a CAS (see tp__wait_claim) */

/* One blocked party.  A task's lives in its control block; a plain thread's on its own
   stack (a thread's stack does not move).  Registrations point here. */
struct tp__wait {
    atomic_uint state;      /* TP__WAIT_* bits */
    int16_t status;         /* errno of the outcome: 0, EPIPE, ETIMEDOUT, ... */
    uint8_t cancel;         /* enum tp__cancel: withdraws the registrations after a
                               timeout */
    union {
        void *obj;          /* what cancel works on (the registration, select state...) */
        void *dest;         /* a task parked in tp_chan_recv: where its value goes.  A
                               task's channel wait needs no obj: its registration is its
                               control block's node (see chan.c) */
    };
};

/* One registration of a wait on a wait queue (channel senders, mutex waiters, ...).  The
   lock that guards the queue is not stored: whoever withdraws a registration knows the
   object (see the cancel functions). */
struct tp__wnode {
    struct tp__wnode *next;        /* in the queue (circular) */
    struct tp__wnode *prev;        /* NULL when not queued */
    struct tp__wait *w;            /* the blocked party */
    void *val;                     /* what the party brings: a channel value or where it
                                      lands (see tp__chan_value), a mutex owner, ... */
    struct tp__wqueue *q;          /* the queue it is (or was) in */
};

/* A FIFO of registrations: a circular list, so one pointer (the tail is head->prev). */
struct tp__wqueue {
    struct tp__wnode *head;
};

static inline void tp__wait_init_as(struct tp__wait *w, tp_task *self, unsigned bits)
{
    atomic_store_explicit(&w->state, (self ? TP__WAIT_TASK : 0) | bits, memory_order_relaxed);
    w->status = 0;
    w->cancel = TP__CANCEL_NONE;
    w->obj = NULL;
}
static inline void tp__wait_init(struct tp__wait *w, tp_task *self)
{
    tp__wait_init_as(w, self, 0);
}
/* Decide the outcome; true for exactly one caller. */
static inline bool tp__wait_claim(struct tp__wait *w)
{
    /* A wait with one registration and no deadline has no timer and no other object to
       race with: its claimers all hold the lock of its queue, as we do, and whoever
       claims it unqueues it under that lock, so while it is queued it is open and
       nobody needs to be told that it is no longer.  That saves a locked
       compare-and-swap on a line that is usually the waiter's and cold: a miss the
       processor cannot overlap with anything. */
    unsigned st = atomic_load_explicit(&w->state, memory_order_relaxed);
    if (st & TP__WAIT_SOLE)
        return true;
    /* The TASK bit never changes: this is "open -> claimed". */
    unsigned open = st & TP__WAIT_TASK;
    return atomic_compare_exchange_strong_explicit(&w->state, &open, open | TP__WAIT_CLAIMED,
                                                   memory_order_acq_rel, memory_order_acquire);
}
/* After a successful claim: record the outcome and wake the party.  (Inline, as
   tp__wait_complete_inline, where a channel operation completes a waiter.) */
void tp__wait_complete(struct tp__wait *w, int status);
/* After a successful claim by the waiting side (a timeout): withdraw its registrations. */
void tp__wait_cancel(struct tp__wait *w);
/* Block the caller (task or thread) until its wait is completed or the deadline passes.
   `held` (may be NULL) is released once the caller can no longer miss a wake-up.
   Returns the outcome's status (ETIMEDOUT after a timeout, ENOMEM when the task's stack
   could not be saved, in which case `held` is still held and nothing was parked). */
int tp__wait_block(struct tp__wait *w, tp__spin *held, int64_t deadline);

static inline void tp__wq_remove_inline(struct tp__wqueue *q, struct tp__wnode *n)
{
    if (TP__LIKELY(n->next == n)) { /* the only one: the commonest */
        q->head = NULL;
    } else {
        n->prev->next = n->next;
        n->next->prev = n->prev;
        if (q->head == n)
            q->head = n->next;
    }
    n->prev = NULL; /* not queued */
}
void tp__wq_remove(struct tp__wqueue *q, struct tp__wnode *n); /* the same, out of line */
static inline bool tp__wq_queued(const struct tp__wnode *n) { return n->prev != NULL; }
/* The first registration whose wait we manage to claim (removed), or NULL.  Entries
   whose wait was claimed by someone else are left for their claimer to remove.  Inline
   when the queue is empty (a buffered channel asks on every operation) or its first
   wait can have no other claimer (TP__WAIT_SOLE: the rendezvous of a channel operation
   without a deadline). */
struct tp__wnode *tp__wq_claim_scan(struct tp__wqueue *q); /* q not empty */
/* Take n, the first of q, if its wait can have no other claimer (TP__WAIT_SOLE). */
static inline bool tp__wq_take_sole(struct tp__wqueue *q, struct tp__wnode *n)
{
    if (!(atomic_load_explicit(&n->w->state, memory_order_relaxed) & TP__WAIT_SOLE))
        return false;
    tp__wq_remove_inline(q, n);
    return true;
}
static inline struct tp__wnode *tp__wq_claim_first(struct tp__wqueue *q)
{
    struct tp__wnode *n = q->head;
    if (!n)
        return NULL;
    return tp__wq_take_sole(q, n) ? n : tp__wq_claim_scan(q);
}
/* Queue n at the tail of q (the caller holds the lock that guards q). */
static inline void tp__wnode_queue(struct tp__wnode *n, struct tp__wqueue *q)
{
    struct tp__wnode *head = q->head;
    n->q = q;
    if (!head) {
        n->next = n->prev = q->head = n;
        return;
    }
    n->next = head;
    n->prev = head->prev;
    head->prev->next = n;
    head->prev = n;
}
/* A party with one registration: initialise w (self: the task, NULL for a plain thread),
   link w and n, and queue n on q (lock held).  cancel (an enum tp__cancel; NONE
   without a deadline) withdraws n after a timeout; w->obj = n.  n->val is the caller's
   to set.  deadline is the party's (-1: none). */
static inline void tp__wait_enqueue(struct tp__wait *w, struct tp__wnode *n, tp_task *self,
                                    struct tp__wqueue *q, enum tp__cancel cancel,
                                    int64_t deadline)
{
    /* Without a deadline no timer can complete w: only holders of q's lock can. */
    tp__wait_init_as(w, self, deadline < 0 ? TP__WAIT_SOLE : 0);
    w->cancel = cancel;
    w->obj = n;
    n->w = w;
    tp__wnode_queue(n, q);
}
/* For a cancel function: unqueue n, whose queue `lock` guards, unless its completer has. */
void tp__wnode_withdraw(struct tp__wnode *n, tp__spin *lock);

/* --------------------------------------------------------------------- tasks ---- */

/* Bits of tp_task.flags, both guarded by tp_task.lock. */
#define TP__TASK_DONE 1u     /* finished; its result is valid */
#define TP__TASK_DETACHED 2u /* freed by the runtime when it finishes */

/* The control block.  Kept small: with a million parked tasks every word is 8 MB.
 *
 * `node` shares its memory with fields that are never needed while it is in use.  The
 * node is in use from the moment the task queues it in a wait until the wait is
 * completed, and whoever completes a wait is done with the node (it has unqueued it and
 * read its w and val) before it wakes the task.  So:
 *  - `inbox_next` is needed only between a wake-up from another thread and the worker's
 *    drain of its inbox, when the task's wait is already complete;
 *  - `rql` is needed only while the task is in its worker's ready queue, after that
 *    drain (which reads inbox_next before it queues the task);
 *  - `arg` is the argument until the task starts and its result once it has finished;
 *    the node, the inbox and the ready queue are used only in between, and so is `ll`,
 *    the link of the lists of never-run and of finished tasks, which leaves arg alone.
 * They overlay node.next, node.prev (the "not queued" mark, which nobody reads once the
 * wait is complete) and node.w, and leave alone node.val, which carries a received value
 * to the task until it resumes (see chan.c), and node.q, the queue of its last wait,
 * which the scheduler prefetches when it picks the task (see ready_pop).  The wait
 * record is not overlaid: wakers write its status before the wake, and the task reads
 * it after.
 *
 * A task parked with a deadline sits in its worker's timer tree through a node kept at
 * the end of its save buffer (struct tp__tnode, see timer.c), which the park reserves
 * room for; the control block itself has no tree node. */
struct tp_task {
    /* --- what a waker on another thread touches, together (fewer cache lines to move
       between CPUs per wake-up): the registration, the wait and the worker --- */
    union {                    /* (see above) */
        struct tp__wnode node; /* its registration for single-object waits */
        tp_task *inbox_next;   /* link in a worker's inbox of remote wake-ups */
        struct tp__rqlink rql; /* its link in the ready queue */
        void *arg;             /* its argument, then its result */
        struct {
            void *arg_;        /* (arg) */
            tp_task *l, *r;    /* its neighbours (sched.c) */
        } ll;                  /* in a list of never-run or of finished tasks */
    };
    struct tp__wait wait;      /* this task's own wait, when blocked */
    union {
        tp_pool *pool;             /* the pool it was spawned into, until it starts */
        struct tp__worker *worker; /* then: its worker, for life (worker->pool) */
    };
    /* --- the rest --- */
    void *sp;                  /* saved stack pointer; NULL before the first run */
    union {                    /* (fields never needed at the same time share a word) */
        void *(*fn)(void *);   /* entry function, until the task starts */
        char *save;            /* then: heap copy of the live segment [sp, top) */
    };
    uint64_t id;               /* unique, nonzero */
    struct tp__wait *joiner;   /* the one party waiting in tp_join */
    uint32_t save_cap;         /* bytes allocated for save, | TP__SAVE_TIMED (how many
                                  are saved follows from sp: see stack.c) */
    tp__spin lock;             /* guards flags and joiner against the finisher */
    uint8_t flags;             /* TP__TASK_* */
    int8_t prio;               /* ready-queue key: lower runs first */
    uint8_t recv_esz;          /* tp_chan_recv while parked: bytes to take from node.val
                                  (kept here, not in the parked frame: see chan.c) */
#if TP_TSAN
    void *tsan_fiber;
#endif
#if TP_ASAN
    void *asan_fake;
#endif
};

#if defined(__x86_64__) && !TP_ASAN && !TP_TSAN
/* glibc hands out (request + 8) rounded up to 16 bytes: 104 is a 112-byte chunk, 105 a
   128-byte one.  At a million parked tasks (benchmark W1) that step is 16 MB. */
_Static_assert(sizeof(struct tp_task) <= 104, "tp_task grew past a malloc chunk boundary");
#endif

/* Whether w is a task's own wait (else a plain thread's), and that task. */
static inline bool tp__wait_is_task(struct tp__wait *w)
{
    return atomic_load_explicit(&w->state, memory_order_relaxed) & TP__WAIT_TASK;
}
static inline tp_task *tp__wait_task(struct tp__wait *w)
{
    return (tp_task *)((char *)w - offsetof(struct tp_task, wait));
}

/* -------------------------------------------------------------------- worker ---- */

enum tp__switch_reason { TP__SW_PARK, TP__SW_YIELD, TP__SW_EXIT };

/* Cache-line aligned, so that one worker's hot fields never share a line with its
   neighbour's in the pool's array (false sharing made every switch on one worker evict a
   line the other was using). */
struct __attribute__((aligned(TP__CACHELINE))) tp__worker {
    /* --- what a waker and this worker both write: the inbox and the sleep flag, one
       cache line.  On two busy workers trading messages it moves between the CPUs on
       every wake-up, and this worker polls it while it spins, so nothing else a waker
       writes may be on it: each extra locked operation there could cost a transfer --- */
    _Atomic(tp_task *) inbox;    /* tasks woken by other threads: lock-free stack, newest
                                    first, linked through inbox_next; drained into
                                    `ready` by the worker */
    atomic_int sleeping;         /* 1 while in (or about to enter) epoll_wait */
    int epfd;                    /* epoll set the worker sleeps in */

    /* --- written only by wakers (and read by this worker rarely): a line that stays in
       the cache of a waker that keeps waking tasks here --- */
    _Alignas(TP__CACHELINE)
    atomic_int wakers;           /* other threads between queueing a task here and kicking
                                    this worker: tp_pool_destroy waits for 0 */
    int evfd;                    /* eventfd that wakes the worker */
    _Atomic uint64_t st_rwoken;  /* statistics: tasks woken by other threads */

    /* --- touched by other threads spawning and stealing --- */
    _Alignas(TP__CACHELINE)
    tp__spin lock;               /* guards the two queues of never-run tasks below */
    tp_task *inject_head;        /* spawned from plain threads: FIFO */
    tp_task *inject_tail;
    tp_task *deque_head;         /* spawned by tasks here: the worker takes the newest */
    tp_task *deque_tail;         /* (depth first), thieves the oldest (biggest subtree) */
    tp_task *deque_seen;         /* the oldest deque task as thieves last saw it, and */
    int64_t deque_seen_ns;       /* since when (thief's clock): see steal_fresh() */
    atomic_size_t nfresh;        /* never-run tasks in both, readable without the lock */
    _Atomic(tp_task *) next;     /* runnext: last task spawned here; idle workers may take it */

    /* --- worker-local --- */
    _Alignas(TP__CACHELINE)
    tp_pool *pool;
    unsigned index;
    pthread_t thread;
    char *map;                   /* mmap'ed region: nslots x (guard + stack), stack.c */
    size_t map_len;
    unsigned slot_shift;         /* slot s starts at map + (s << slot_shift) */
    size_t slot_len;             /* and is this long: 1 << slot_shift, or less for a
                                    worker with one slot of just the size asked */
    unsigned nslots;             /* shared stacks of this worker, 1..TP__SLOTS */
    unsigned last_slot;          /* the slot the last task ran in, */
    char *run_top;               /* where its frames start (tp__slot_top): the running
                                    task's segment ends there, */
    tp_task *last_owner;         /* and slot_owner[last_slot] (NULL: it finished) */
    uint32_t slot_free;          /* bit i: no task's frames occupy slot i */
    unsigned started;            /* tasks started here and not finished */
    struct tp__worker *share;    /* while this worker is overloaded: the idle worker that
                                    gets its tasks' new tasks (see tp__place_new) */
    atomic_int idle;             /* 1 while it has nothing to run (spinning or asleep); read
                                    by others only when they become overloaded, so it
                                    lives here, not on the line wakers write */
    tp_task *current;            /* task running now, NULL in the scheduler */
    tp_task *handoff;            /* picked by a parking task for the scheduler to run
                                    next (see tp__hand_over) */
    tp_task *direct;             /* the task a parking task switches to directly (NULL:
                                    to the scheduler; itself: none, it was woken) */
    struct tp__readyq ready;     /* woken tasks by (prio, FIFO); only this thread touches it */
    void *sched_sp;              /* scheduler context (on the pthread's own stack) */
    void *dead_sp;               /* where a finished task's last switch saves its sp */
    enum tp__switch_reason why;  /* why the current task switched out */
    bool park_fp;                /* the parking task's FP controls are not the defaults:
                                    tp__stack_reserve measured it, the park keeps them */
    struct tp__rbtree timers;    /* parked tasks with a deadline, by deadline */
    unsigned turn;               /* alternates ready vs fresh so neither starves */
    uint64_t rng;                /* xorshift state (steal victims, select) */
    tp_task *seen_next;          /* a victim's runnext seen on the last steal attempt, */
    int64_t seen_next_ns;        /* and since when (see steal_next) */
    tp_task *slot_owner[TP__SLOTS]; /* the task whose frames occupy each slot, or NULL */
    char *slot_top[TP__SLOTS];   /* where a task's frames start in each (tp__slot_top) */
    void *altstack;              /* sigaltstack for the overflow handler */
#if TP_TSAN
    void *tsan_sched_fiber;
#endif
#if TP_ASAN
    void *asan_fake;             /* the scheduler's fake stack while a task runs */
    const void *sched_stack_lo;  /* the pthread stack the scheduler runs on */
    size_t sched_stack_size;
#endif
#if HAVE_VALGRIND
    unsigned valgrind_id[TP__SLOTS];
#endif
    /* statistics, single writer */
    tp_task *done;               /* finished tasks nobody joined or detached yet, linked
                                    through ll, under `lock`: freed by
                                    tp_pool_destroy if still there */
    /* tasks parked here = st_parked - st_woken - st_rwoken (woken is not parked) */
    tp__counter st_spawned;      /* tasks spawned by this worker's tasks */
    _Atomic uint64_t st_finished; /* tasks that finished here (release: see tp__pool_live) */
    tp__counter st_switches, st_copied, st_saved, st_saved_cap, st_parked, st_woken, st_steals,
        st_sleeps;
    struct tp__rqlevel rq_levels[TP__RQ_LEVELS]; /* ready's levels (readyq.h) */
};

struct tp_pool {
    unsigned nworkers;
    size_t stack_size;
    unsigned stacks;              /* slots per worker asked for (tp_pool_attr.stacks) */
    struct tp__worker *workers;   /* array of nworkers */
    atomic_uint rr;               /* round robin for spawns from plain threads */
    atomic_int sleepers;          /* workers asleep: spawners wake one to steal */
    atomic_int stopping;          /* set by tp_pool_destroy */
    atomic_uint_fast64_t spawned; /* spawned by anyone but this pool's tasks (the workers
                                     count their own tasks' spawns: see tp__pool_live) */
    pthread_mutex_t idle_mu;      /* tp_pool_wait sleeps here until no task is alive */
    pthread_cond_t idle_cv;
    atomic_int waiters;           /* threads in tp_pool_wait (changed under idle_mu) */
};

/* bias.c: a worker thread claims an id for biased channel locks (see chan.h) at its
   start, and gives it back after its last channel operation. */
void tp__bias_worker_start(void);
void tp__bias_worker_stop(void);

/* The worker the calling thread is, or NULL for a plain thread. */
extern TP__TLS struct tp__worker *tp__self_worker;

static inline tp_task *tp__current(void)
{
    struct tp__worker *w = tp__self_worker;
    return w ? w->current : NULL;
}

/* timer.c.  A task parked with a deadline is in its worker's timer tree through this
   node, at the end of its save buffer (room the park reserves: see tp__park_arm), and
   TP__SAVE_TIMED is set in its save_cap meanwhile. */
struct tp__tnode {
    struct tp__rbnode rb;      /* in the timer tree, keyed by deadline */
    tp_task *task;
};
#define TP__SAVE_TIMED 0x80000000u
static inline struct tp__tnode *tp__timer_node(tp_task *t)
{
    return (struct tp__tnode *)(void *)(t->save + (t->save_cap & ~TP__SAVE_TIMED) -
                                        sizeof(struct tp__tnode));
}
int64_t tp__timer_fire(struct tp__worker *w, int64_t now);
void tp__timer_add(struct tp__worker *w, tp_task *t, int64_t deadline);
void tp__timer_remove(struct tp__worker *w, tp_task *t);

/* A worker's slots (stack.c): slot s is the slot_len bytes from map + (s <<
   slot_shift), a PROT_NONE guard band at its bottom, the task's frames growing down
   from its top.  A started task's slot is the one its stack pointer is in. */
#define TP__GUARD (64 * 1024)
static inline unsigned tp__slot_of(const struct tp__worker *w, const void *p)
{
    return (unsigned)((size_t)((const char *)p - w->map) >> w->slot_shift);
}
static inline char *tp__slot_lo(const struct tp__worker *w, unsigned s)
{
    return w->map + ((size_t)s << w->slot_shift) + TP__GUARD;
}
static inline char *tp__slot_hi(const struct tp__worker *w, unsigned s)
{
    return w->map + ((size_t)s << w->slot_shift) + w->slot_len;
}
/* Where a task's frames start in slot s: a little below the slot's top, by a different
   amount in each slot.  The slots are a power of two apart, so their tops would all fall
   in the same sets of the CPU caches: sixteen tasks' hottest lines competing for the
   eight to twelve ways of one set of a level-1 cache. */
#define TP__SLOT_COLOR 256
static inline char *tp__slot_top(const struct tp__worker *w, unsigned s)
{
    return tp__slot_hi(w, s) - (size_t)s * TP__SLOT_COLOR;
}

/* sched.c */
void *tp__worker_main(void *arg);
/* Make t ready on w, from w's own thread (a task of w, or w's scheduler).  A task that
   parked with a deadline is still in the timer tree: only this thread may take it out.
   untimed: t is known to have parked without one (constant where inlined). */
static inline __attribute__((always_inline)) void tp__ready_local_as(struct tp__worker *w,
                                                                    tp_task *t, bool untimed)
{
    if (!untimed && (t->save_cap & TP__SAVE_TIMED))
        tp__timer_remove(w, t);
    tp__rq_push(&w->ready, &t->rql, t->prio, t->sp ? t->save : NULL); /* (see ready_pop) */
}
static inline void tp__ready_local(struct tp__worker *w, tp_task *t)
{
    tp__ready_local_as(w, t, false);
}
void tp__wake_remote(tp_task *t);
/* Make a parked task ready, from anywhere.  From its own worker's thread it is a push
   on the ready queue, inline: two tasks of a worker talking over a channel do it on
   every exchange. */
static inline __attribute__((always_inline)) void tp__wake_as(tp_task *t, bool untimed)
{
    struct tp__worker *w = t->worker; /* t may run (and be freed) once it is queued */
    if (TP__LIKELY(w == tp__self_worker)) {
        tp__count(&w->st_woken, 1);
        tp__ready_local_as(w, t, untimed);
        return;
    }
    tp__wake_remote(t);
}
static inline void tp__wake(tp_task *t) { tp__wake_as(t, false); }
/* wait.c: tp__wait_complete for a plain thread's wait. */
void tp__wait_wake_thread(struct tp__wait *w);
/* untimed: w is known to have no deadline (a TP__WAIT_SOLE wait, say). */
static inline __attribute__((always_inline)) void tp__wait_complete_as(struct tp__wait *w,
                                                                      int status, bool untimed)
{
    w->status = status;
    if (tp__wait_is_task(w))
        tp__wake_as(tp__wait_task(w), untimed);
    else
        tp__wait_wake_thread(w);
}
static inline void tp__wait_complete_inline(struct tp__wait *w, int status)
{
    tp__wait_complete_as(w, status, false);
}
void tp__place_new(tp_pool *pool, tp_task *t);
int tp__park(tp_task *t, tp__spin *held, int64_t deadline);
int tp__yield_task(tp_task *t);
__attribute__((noreturn)) void tp__exit_task(tp_task *t);
void tp__worker_kick(struct tp__worker *w); /* interrupt its sleep */

void tp__done_add(struct tp__worker *w, tp_task *t);
void tp__done_remove(tp_task *t);
void tp__done_free_all(struct tp__worker *w);

/* stack.c */
int tp__stack_create(struct tp__worker *w, size_t size, unsigned nslots);
void tp__stack_destroy(struct tp__worker *w);
void tp__stack_touch(struct tp__worker *w);
int tp__stack_reserve_room(tp_task *t, char *sp, bool timed, bool keep_fp);
/* Called by the running task just before it switches out, with the stack pointer it
   will switch at (sp); timed: the park has a deadline.  Records whether its FP controls
   are its own (w->park_fp, see ctx.h), and makes sure that its frames can be copied out
   later, where no error can be reported: 0, or -1/ENOMEM.  A task whose slot is its own
   for life (not the last slot, which all tasks beyond the first few share: see
   fresh_slot in sched.c) is never copied out, so only a timed park, whose timer node
   lives in the save buffer, needs room then; checked inline, as a ping-pong pair parks
   this way on every switch. */
static inline int tp__stack_reserve(tp_task *t, char *sp, bool timed)
{
    struct tp__worker *w = t->worker;
    bool keep_fp = !tp__ctx_fp_is_default();
    w->park_fp = keep_fp;
    if (TP__LIKELY(!timed && w->last_slot + 1 < w->nslots))
        return 0;
    return tp__stack_reserve_room(t, sp, timed, keep_fp);
}
void tp__stack_save(struct tp__worker *w, tp_task *t, char *top);
void tp__stack_restore(struct tp__worker *w, tp_task *t, char *top);
void tp__stack_release(struct tp__worker *w, tp_task *t);
bool tp__on_shared_stack(const void *p);
int tp__stack_register(tp_pool *pool);
void tp__stack_unregister(tp_pool *pool);
int tp__altstack_setup(struct tp__worker *w);
void tp__altstack_teardown(struct tp__worker *w);

/* task.c */
#if TP_ASAN
void *tp__task_entry(void *arg);
#endif
__attribute__((noreturn)) void tp__task_return(void *result);
void tp__task_finish(struct tp__worker *w, tp_task *t);

int tp__deadline_check(int64_t deadline);
void tp__thread_futex_wait(atomic_uint *word, unsigned expect, int64_t deadline);
void tp__thread_futex_wake(atomic_uint *word);

/* sched.c, the task side of parking */
void tp__hand_over(struct tp__worker *w, tp_task *t);
/* Everything a park does but the switch: reserve room for t's segment (sp: where t will
   switch), arm the deadline, release `held`.  -1/ENOMEM with `held` still held and
   nothing armed.  The frame that then switches keeps only what it needs after waking
   (it is part of the task's saved segment for as long as it is parked), so this runs
   out of line: tp__park_prepare, or this inline copy in a function that is out of line
   already. */
static inline int tp__park_arm(tp_task *t, tp__spin *held, int64_t deadline, char *sp)
{
    if (TP__UNLIKELY(tp__stack_reserve(t, sp, deadline >= 0) < 0))
        return -1;
    struct tp__worker *w = t->worker; /* (loaded after that call, not kept across it) */
    if (deadline >= 0)
        tp__timer_add(w, t, deadline);
    tp__count(&w->st_parked, 1);
    if (held)
        tp__spin_unlock(held);
    w->why = TP__SW_PARK;
#if TP__CTX_DIRECT
    /* Chosen here, in the caller's frame, not in the park's: a call there cost the
       parked segment of tp_chan_recv 16 bytes (W6 5103 -> 5117 B per task).  Only
       tried while all of the worker's tasks can have a stack of their own: with more,
       the next task nearly always needs a copy, and trying cost the prime sieve (W4)
       and W1 6 %. */
    if (TP__LIKELY(!w->park_fp && w->started <= w->nslots))
        tp__hand_over(w, t); /* (sets w->direct: nothing here is needed after the call) */
    else
        w->direct = NULL;
#endif
    return 0;
}
int tp__park_prepare(tp_task *t, tp__spin *held, int64_t deadline, char *sp);

/* pool.c */
void tp__pool_task_done(struct tp__worker *w);
uint64_t tp__pool_live(tp_pool *pool);

/* sync.c: blocking helpers shared by select.c, sync.c and wg.c */
/* Room a parked task needs below the caller of tp__park_reserve for the calls that
   lead to tp__park. */
#define TP__PARK_MARGIN 1024
/* Reserve t's stack-save buffer for a park a little deeper than the caller, so that a
   later tp__wait_block cannot fail with ENOMEM; timed: with room for the timer node
   of a park with a deadline.  -1/ENOMEM. */
int tp__park_reserve(tp_task *t, bool timed);
/* Queue the caller (task or thread) on q, guarded by lock, which the caller holds, and
   block until completed or the deadline; val is stored in the node, cancel (which may
   be TP__CANCEL_NONE without a deadline) withdraws it after a timeout.  Returns the
   status (0, ETIMEDOUT, ...) with lock released; ENOMEM: nothing queued, lock still
   held. */
int tp__block_on(struct tp__wqueue *q, tp__spin *lock, enum tp__cancel cancel, void *val,
                 int64_t deadline);
/* Claim every waiter of q, unqueue them, chain them through `next` (under q's lock). */
struct tp__wnode *tp__wq_claim_all(struct tp__wqueue *q);
/* Complete every wait of a tp__wq_claim_all chain (after dropping the lock). */
void tp__wq_complete_all(struct tp__wnode *list, int status);

#endif
