/* sched.c -- the worker loop: ready queue, fresh tasks, stealing, switching, sleeping.
 *
 * Each worker chooses its next task from three places:
 *  - `next`: the task most recently spawned by a task of this worker.  Running it soon
 *    makes spawn-then-wait code (fork/join) run depth first, like a call, which keeps
 *    the number of simultaneously parked tasks small.
 *  - `ready`: tasks that were parked here and have been woken, an rbtree keyed by the
 *    task's priority (lower first), FIFO among equal priorities, so none starves.
 *  - never-run tasks: a FIFO of those spawned from plain threads and a deque of those
 *    spawned by this worker's tasks (see fresh_push).  Only these may change worker: an
 *    idle worker steals them.  A task that has run stays on its worker for life, because its
 *    saved segment is valid only at that worker's stack addresses.
 * The worker alternates between woken tasks and new ones when it has both.  A worker
 * whose ready tree is long hands the tasks its tasks spawn to an idle worker instead
 * (see share_target).
 *
 * Parking: the task reserves room for its segment, drops the lock that guards its
 * registration, and switches to the scheduler context, which runs on the pthread's own
 * stack -- or, when the next task's frames are on their stack, straight to that task
 * (tp__hand_over).  A waker on another thread may push it on the ready queue before it
 * has switched out; that is harmless, since only this worker can pick it: the scheduler
 * after the switch, or the parking task itself choosing its successor, in which case
 * it simply carries on.
 *
 * Waking: a task woken by its own worker's thread goes straight into the ready tree,
 * which only that thread touches; one woken from anywhere else is pushed onto the
 * worker's lock-free inbox, which the worker drains into the tree before each choice.
 *
 * Sleeping: a worker with nothing to do spins briefly, then announces `sleeping` and
 * sleeps in epoll_wait on its own epoll set (an eventfd now; sockets later), with the
 * earliest timer as timeout.  Wakers push first and test `sleeping` second; the worker
 * sets `sleeping` first and tests the queues second (both sequentially consistent), so
 * one of them always sees the other.
 */
#include "park.h"
#if HAVE_VALGRIND
#include <valgrind/memcheck.h>
#endif

#include <sched.h>
#include <time.h>
#include <sys/epoll.h>
#include <unistd.h>

TP__TLS struct tp__worker *tp__self_worker;

/* How long an idle worker spins before it sleeps in the kernel.  Waking a sleeping thread
   costs tens of microseconds (more in a VM); a partner that answers within this window is
   caught without one.  Measured in time, because a pause instruction takes anywhere from
   a few to 140 cycles depending on the CPU. */
#define TP__SPIN_NS 100000

/* How long the oldest never-run task of a worker's deque must have waited there before
   another worker steals it (see steal_fresh).  Short against the spin above, so a
   backlog is taken by a worker that is still spinning. */
#define TP__STEAL_AGE_NS 20000

/* A worker with this many woken tasks waiting is overloaded, and hands new tasks to an
   idle worker until it has fewer than TP__SHARE_OFF (see share_target). */
#define TP__SHARE_ON 64
#define TP__SHARE_OFF 16

static int64_t now_ns(void);

/* ------------------------------------------------------------- sanitizer hooks ---- */

static inline void san_enter_task(struct tp__worker *w, tp_task *t)
{
#if TP_ASAN
    san_switch_to_task(w, &w->asan_fake, t);
#else
    san_switch_to_task(w, NULL, t);
#endif
}

static inline void san_back_in_sched(struct tp__worker *w)
{
    (void)w;
#if TP_ASAN
    __sanitizer_finish_switch_fiber(w->asan_fake, NULL, NULL);
#endif
}

/* --------------------------------------------------------------- ready queues ---- */

#define TASK_OF_RQL(n) ((tp_task *)((char *)(n) - offsetof(struct tp_task, rql)))

void tp__worker_kick(struct tp__worker *w)
{
    if (atomic_load(&w->sleeping) && atomic_exchange(&w->sleeping, 0)) {
        uint64_t one = 1;
        (void)!write(w->evfd, &one, sizeof one);
    }
}

/* From any thread but w's own: push onto w's inbox.  Sequentially consistent, because
   the sleep protocol needs "push, then look at `sleeping`" (see the top of the file). */
static void inbox_push(struct tp__worker *w, tp_task *t)
{
    tp_task *head = atomic_load_explicit(&w->inbox, memory_order_relaxed);
    do
        t->inbox_next = head;
    while (!atomic_compare_exchange_weak(&w->inbox, &head, t));
}

/* On w's thread: move everything in the inbox into the ready tree, oldest first.  (The
   inbox is nearly always empty: the check is inline, in drain_inbox.) */
static __attribute__((noinline)) void drain_inbox_slow(struct tp__worker *w)
{
    tp_task *t = atomic_exchange_explicit(&w->inbox, NULL, memory_order_acquire);
    tp_task *fifo = NULL;
    while (t) { /* reverse the newest-first stack */
        tp_task *next = t->inbox_next;
        t->inbox_next = fifo;
        fifo = t;
        t = next;
    }
    while (fifo) {
        tp_task *next = fifo->inbox_next;
        tp__ready_local(w, fifo);
        fifo = next;
    }
}

static inline void drain_inbox(struct tp__worker *w)
{
    if (atomic_load_explicit(&w->inbox, memory_order_relaxed))
        drain_inbox_slow(w);
}

/* A wake-up from this worker's own thread costs no atomic operation at all; one from
   elsewhere is a compare-and-swap, plus a write to the eventfd if the worker sleeps. */
void tp__wake_remote(tp_task *t)
{
    struct tp__worker *w = t->worker; /* t may run (and be freed) once it is queued */
    atomic_fetch_add_explicit(&w->st_rwoken, 1, memory_order_relaxed);
    /* Once t is queued it may run, finish, and let tp_pool_destroy free w: announce
       ourselves first, so that destroy waits until we no longer touch w. */
    atomic_fetch_add(&w->wakers, 1);
    inbox_push(w, t);
    tp__worker_kick(w);
    atomic_fetch_sub_explicit(&w->wakers, 1, memory_order_release);
}

/* Never-run tasks wait in two lists, both under w->lock, linked through ll.l (towards
   the newer end) and ll.r (towards the older end):
    - inject: tasks spawned from plain threads, taken oldest first (FIFO, fair);
    - deque: tasks spawned by this worker's tasks.  The worker takes the newest, so
      spawn-then-join code runs depth first, like calls, and the number of parked tasks
      stays proportional to the depth; thieves take the oldest, which in divide-and-
      conquer code is the largest piece of work.  (The classic work-stealing order.) */
static void list_push(tp_task **head, tp_task **tail, tp_task *t)
{
    t->ll.l = NULL;
    t->ll.r = *tail;
    if (*tail)
        (*tail)->ll.l = t;
    else
        *head = t;
    *tail = t;
}

static tp_task *list_pop_head(tp_task **head, tp_task **tail)
{
    tp_task *t = *head;
    if (!t)
        return NULL;
    *head = t->ll.l;
    if (*head)
        (*head)->ll.r = NULL;
    else
        *tail = NULL;
    return t;
}

static tp_task *list_pop_tail(tp_task **head, tp_task **tail)
{
    tp_task *t = *tail;
    if (!t)
        return NULL;
    *tail = t->ll.r;
    if (*tail)
        (*tail)->ll.l = NULL;
    else
        *head = NULL;
    return t;
}

static void fresh_push(struct tp__worker *w, tp_task *t, bool from_task)
{
    tp__spin_lock(&w->lock);
    if (from_task)
        list_push(&w->deque_head, &w->deque_tail, t);
    else
        list_push(&w->inject_head, &w->inject_tail, t);
    atomic_fetch_add(&w->nfresh, 1);
    tp__spin_unlock(&w->lock);
}

/* By the owner: the newest of its own first, alternating with the injected FIFO so
   neither can starve the other.  (Mostly there are none: the check is inline, in
   fresh_take.) */
static __attribute__((noinline)) tp_task *fresh_take_locked(struct tp__worker *w)
{
    tp_task *t;
    tp__spin_lock(&w->lock);
    if ((w->turn & 2) && (t = list_pop_head(&w->inject_head, &w->inject_tail)))
        ;
    else if ((t = list_pop_tail(&w->deque_head, &w->deque_tail)))
        ;
    else
        t = list_pop_head(&w->inject_head, &w->inject_tail);
    if (t)
        atomic_fetch_sub(&w->nfresh, 1);
    tp__spin_unlock(&w->lock);
    return t;
}

static inline tp_task *fresh_take(struct tp__worker *w)
{
    if (!atomic_load_explicit(&w->nfresh, memory_order_relaxed))
        return NULL;
    return fresh_take_locked(w);
}

/* A thief's patience: true once `t` has been the candidate recorded in (*seen, *since)
   for TP__STEAL_AGE_NS; a new candidate starts the clock again. */
static bool aged(tp_task **seen, int64_t *since, tp_task *t, int64_t now)
{
    if (t != *seen) {
        *seen = t;
        *since = now;
        return false;
    }
    return now - *since >= TP__STEAL_AGE_NS;
}

/* By a thief at time `now`: the oldest injected task at once (a plain thread's work has
   no home yet), else the oldest of the victim's deque once it has been the oldest for
   TP__STEAL_AGE_NS.  A task spawned a moment ago by a task of the victim is usually
   about to run there, next to the tasks it talks to; taking it would put a producer and
   its consumers on two CPUs, and every message between them would then cross caches
   (a pipeline of tiny items runs several times slower split than on one worker).  A
   backlog that persists is real spare work, and then stealing it is right. */
static tp_task *steal_fresh(struct tp__worker *v, int64_t now)
{
    if (!atomic_load_explicit(&v->nfresh, memory_order_relaxed))
        return NULL;
    tp__spin_lock(&v->lock);
    tp_task *t = list_pop_head(&v->inject_head, &v->inject_tail);
    if (!t && v->deque_head && aged(&v->deque_seen, &v->deque_seen_ns, v->deque_head, now))
        t = list_pop_head(&v->deque_head, &v->deque_tail);
    if (t)
        atomic_fetch_sub(&v->nfresh, 1);
    tp__spin_unlock(&v->lock);
    return t;
}

/* The next task to run, and a head start on the memory the next ones will touch.  With
   thousands of tasks ready (the prime sieve has such a wave) each is in memory nobody
   has touched since it was queued, and its first steps waited on misses one after the
   other: its saved stack, then the channel it waits on again.  So the ready queue
   carries each task's save buffer as the hint of the entry before it, and the buffer of
   the task after this one is fetched while this one runs; this one's last wait queue
   (node.q, left intact by the queue links, and for a task that loops on a channel the
   one it will lock next) is fetched while its stack is copied in.  Prefetches never
   fault, so a stale node.q (a task whose last wait was something else, or a freed
   channel) costs a useless fetch at most.  W4 t1 0.89, t2 0.90 with them. */
static inline __attribute__((always_inline)) tp_task *ready_pop(struct tp__worker *w)
{
    const void *hint;
    struct tp__rqlink *l = tp__rq_pop(&w->ready, &hint);
    if (hint) { /* three lines: all of a parked segment of up to 129 bytes, at any alignment */
        __builtin_prefetch(hint);
        __builtin_prefetch((const char *)hint + 64);
        __builtin_prefetch((const char *)hint + 128);
    }
    if (!l)
        return NULL;
    tp_task *t = TASK_OF_RQL(l);
    __builtin_prefetch(t->node.q);
    return t;
}

/* ------------------------------------------------- finished, not yet released ---- */

/* A task that finished before anyone joined or detached it waits on its worker's `done`
   list until tp_join/tp_detach releases it, or tp_pool_destroy frees it, linked through
   ll (its result stays in arg). */
void tp__done_add(struct tp__worker *w, tp_task *t)
{
    tp__spin_lock(&w->lock);
    t->ll.l = w->done;
    t->ll.r = NULL;
    if (w->done)
        w->done->ll.r = t;
    w->done = t;
    tp__spin_unlock(&w->lock);
}

void tp__done_remove(tp_task *t)
{
    struct tp__worker *w = t->worker;
    tp__spin_lock(&w->lock);
    if (t->ll.r)
        t->ll.r->ll.l = t->ll.l;
    else
        w->done = t->ll.l;
    if (t->ll.l)
        t->ll.l->ll.r = t->ll.r;
    tp__spin_unlock(&w->lock);
}

/* tp_pool_destroy, after the worker thread has stopped. */
void tp__done_free_all(struct tp__worker *w)
{
    while (w->done) {
        tp_task *t = w->done;
        w->done = t->ll.l;
        free(t);
    }
}

/* Wake one sleeping worker other than `self` so that it can steal new work. */
static void wake_idle_worker(tp_pool *pool, struct tp__worker *self)
{
    if (!atomic_load(&pool->sleepers))
        return;
    for (unsigned i = 0; i < pool->nworkers; i++) {
        struct tp__worker *v = &pool->workers[i];
        if (v != self && atomic_load(&v->sleeping)) {
            tp__worker_kick(v);
            return;
        }
    }
}

/* On w's thread, spawning: the worker that should start a new task instead of w, or
   NULL.  A worker with a long ready queue hands its tasks' new tasks to a worker that was
   idle when the overload began, and keeps doing so (to that same worker) until its own
   queue is short again.  The hysteresis is what makes it work for pipelines that grow,
   like the prime sieve: the tasks spawned during one overload form a contiguous stretch
   of the pipeline on the other worker, so values cross between the CPUs only where a
   stretch ends.  Handing them out one by one to whichever worker happened to be idle
   would alternate workers along the pipeline and make every step a cross-CPU wake-up.
   While the spawner is not overloaded its new tasks stay with it (runnext), next to the
   tasks they talk to. */
static struct tp__worker *share_target(struct tp__worker *w)
{
    if (w->ready.n < TP__SHARE_OFF) {
        w->share = NULL;
        return NULL;
    }
    if (w->share || w->ready.n < TP__SHARE_ON)
        return w->share;
    tp_pool *pool = w->pool;
    for (unsigned i = 1; i < pool->nworkers; i++) {
        struct tp__worker *v = &pool->workers[(w->index + i) % pool->nworkers];
        if (atomic_load_explicit(&v->idle, memory_order_relaxed))
            return w->share = v;
    }
    return NULL;
}

/* From a thread other than w's: queue a never-run task on w's FIFO of injected tasks
   and interrupt w's sleep. */
static void place_on(struct tp__worker *w, tp_task *t)
{
    atomic_fetch_add(&w->wakers, 1); /* see tp__wake */
    fresh_push(w, t, false);
    tp__worker_kick(w);
    atomic_fetch_sub_explicit(&w->wakers, 1, memory_order_release);
}

void tp__place_new(tp_pool *pool, tp_task *t)
{
    struct tp__worker *self = tp__self_worker, *to;
    if (self && self->pool == pool && self->current) {
        if (TP__UNLIKELY(pool->nworkers > 1 && (to = share_target(self)))) {
            place_on(to, t);
            return;
        }
        /* Spawned by a task: it runs here next (runnext), which keeps producers and
           consumers together.  Only when that displaces an earlier child is there a
           backlog worth waking an idle worker for. */
        t = atomic_exchange(&self->next, t);
        if (!t)
            return;
        fresh_push(self, t, true);
        wake_idle_worker(pool, self);
        return;
    }
    place_on(&pool->workers[atomic_fetch_add(&pool->rr, 1) % pool->nworkers], t);
}

static tp_task *take_next(struct tp__worker *w)
{
    if (!atomic_load_explicit(&w->next, memory_order_relaxed))
        return NULL;
    return atomic_exchange(&w->next, NULL);
}

/* A never-run task: the runnext one, else one of the lists. */
static inline tp_task *take_new(struct tp__worker *w)
{
    tp_task *t = take_next(w);
    return t ? t : fresh_take(w);
}

/* Woken tasks and new ones by turns, so that neither starves the other.  (The ready
   queue is popped in one place: inline, as is the rest, in both of pick's callers.) */
static inline __attribute__((always_inline)) tp_task *pick(struct tp__worker *w)
{
    tp_task *t;
    drain_inbox(w);
    bool woken_first = w->turn++ & 1;
    if (!woken_first && (t = take_new(w)))
        return t;
    if ((t = ready_pop(w)) || !woken_first)
        return t;
    return take_new(w);
}

static uint64_t rng_next(uint64_t *s)
{
    uint64_t x = *s;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return *s = x;
}

/* A victim's runnext task is usually about to run there (its spawner is about to
   block), so the same patience applies to it as to the deque (see steal_fresh). */
static tp_task *steal_next(struct tp__worker *w, struct tp__worker *v, int64_t now)
{
    tp_task *n = atomic_load_explicit(&v->next, memory_order_relaxed);
    if (!n || !aged(&w->seen_next, &w->seen_next_ns, n, now))
        return NULL;
    w->seen_next = NULL;
    return atomic_compare_exchange_strong(&v->next, &n, NULL) ? n : NULL;
}

/* Take a never-run task from another worker: the oldest of its queues, else its runnext
   task if that has been waiting (see steal_next). */
static tp_task *steal(struct tp__worker *w)
{
    tp_pool *pool = w->pool;
    unsigned n = pool->nworkers;
    if (n < 2)
        return NULL;
    unsigned start = (unsigned)(rng_next(&w->rng) % n);
    int64_t now = now_ns();
    for (unsigned i = 0; i < n; i++) {
        struct tp__worker *v = &pool->workers[(start + i) % n];
        if (v == w)
            continue;
        tp_task *t = steal_fresh(v, now);
        if (!t)
            t = steal_next(w, v, now);
        if (t) {
            tp__count(&w->st_steals, 1);
            return t;
        }
    }
    return NULL;
}

/* ------------------------------------------------------------------ switching ---- */

/* Give slot s (its top: top) to t: its owner o, if any, is copied out.  (A slot's owner
   is never the running task, and never one that finished: run() frees a finished
   task's slot.) */
static inline void take_slot(struct tp__worker *w, unsigned s, char *top, tp_task *o,
                             tp_task *t)
{
    if (o)
        tp__stack_save(w, o, top);
    w->slot_owner[s] = t;
}

/* A slot for a task's first run: a free one if there is one; else the last slot, which
   all tasks beyond the first few share.  (Putting them where the last task ran spread
   the prime sieve's thousands of filters over every slot: each switch then copied out
   a task that had left the caches, and W4 ran 1.2x as long; all in one slot, as with a
   single stack, they copy out the task that just parked, and the filters that got
   slots of their own, the busiest, copy nothing.) */
static inline unsigned fresh_slot(struct tp__worker *w)
{
    if (w->slot_free) {
        unsigned s = (unsigned)__builtin_ctz(w->slot_free);
        w->slot_free &= ~(1u << s);
        return s;
    }
    return w->nslots - 1;
}

/* Run t until it switches back.  The lazy copy: only when t is not the task whose frames
   are on its slot does the slot's owner get copied out and t copied in. */
static void run(struct tp__worker *w, tp_task *t)
{
    unsigned s;
    char *top;
    if (t->sp) {
        /* Most often t's slot is the one the last task ran in, whose owner and top are
           at hand: the copy-out need not wait on the chain of loads from t's stack
           pointer to its slot's owner (a few cycles on every copying switch: with it,
           W2 and W4 on one slot ran 4-8 % slower than the single-stack scheduler). */
        unsigned g = w->last_slot;
        tp_task *o = w->last_owner;
        top = w->run_top;
        s = tp__slot_of(w, t->sp);
        if (TP__UNLIKELY(s != g)) {
            __asm__("" : "+r"(s)); /* (a branch, not a conditional move) */
            o = w->slot_owner[s];
            top = w->slot_top[s];
        }
        if (o != t) {
            take_slot(w, s, top, o, t);
            tp__stack_restore(w, t, top);
        }
    } else {
        s = fresh_slot(w);
        top = w->slot_top[s];
        take_slot(w, s, top, w->slot_owner[s], t);
        w->started++;
        t->worker = w; /* replaces t->pool, which is w->pool */
#if HAVE_VALGRIND
        VALGRIND_MAKE_MEM_UNDEFINED(top - 256, 256); /* its first frame */
#endif
#if TP_ASAN
        t->sp = tp__ctx_init(top, tp__task_entry, t, tp__task_return);
#else
        /* Its function is the bottom frame (see tp__ctx_init): nothing of ours sits
           under it in the segment copied on every switch. */
        void *(*fn)(void *) = t->fn;
        t->save = NULL; /* shares its word with fn */
        t->sp = tp__ctx_init(top, fn, t->arg, tp__task_return);
#endif
#if TP_TSAN
        t->tsan_fiber = __tsan_create_fiber(0);
#endif
    }
    w->last_slot = s;
    w->run_top = top;
    w->last_owner = t;
    w->current = t;
    san_enter_task(w, t);
    tp__ctx_resume(&w->sched_sp, t->sp);
    san_back_in_sched(w);
    /* Whoever switched back: t may have handed over to other tasks (tp__hand_over). */
    t = w->current;
    s = w->last_slot;
    if (TP__UNLIKELY(w->park_fp)) /* t parked with FP controls of its own: see ctx.h */
        tp__ctx_fp_set_default();
    w->current = NULL;
    tp__count(&w->st_switches, 1);
    if (w->why == TP__SW_YIELD) {
        tp__ready_local(w, t);
    } else if (w->why == TP__SW_EXIT) {
        /* It may have finished with FP controls of its own (see ctx.h).  Tested here,
           not before it switched: a local there would stay poisoned under ASan on a
           stack that is never unwound. */
        if (!tp__ctx_fp_is_default())
            tp__ctx_fp_set_default();
        w->slot_owner[s] = NULL; /* its frames are dead: nothing to copy out */
        w->last_owner = NULL;
        w->slot_free |= 1u << s;
        w->started--;
        tp__task_finish(w, t);
    }
}

/* On the stack of t, which is about to park (its registration armed, the lock of its
   queue maybe still held: see park_biased in chan.c): the task it should switch to
   directly, with no scheduler in between; t itself if it has been woken meanwhile (it
   carries on); or NULL, to switch to the scheduler.  The choice is the scheduler's
   (pick), made here.  A direct switch is only for a task whose frames are still on its
   stack (no copy: copying must run on a stack that is neither's) and only while no
   timer is pending (the scheduler fires them between tasks).  A task that cannot be
   switched to directly is handed to the scheduler, which runs it next.  A switch
   through the scheduler is two context switches and a pass of its loop: going direct,
   W2 took 0.92 of the time and W5 (t1) had 1.03 times the throughput. */
static inline tp_task *hand_over_pick(struct tp__worker *w, tp_task *t)
{
    if (w->timers.n)
        return NULL;
    tp_task *n = pick(w);
    if (!n || n == t)
        return n;
    if (TP__LIKELY(n->sp)) {
        unsigned s = tp__slot_of(w, n->sp);
        if (TP__LIKELY(w->slot_owner[s] == n)) {
            tp__count(&w->st_switches, 1);
            w->last_slot = s;
            w->run_top = w->slot_top[s];
            w->last_owner = n;
            w->current = n;
            return n;
        }
    }
    w->handoff = n;
    return NULL;
}

/* The choice, stored in w->direct: a caller that read it from our return value would
   keep w in a register across the call, one more in the parked frame. */
__attribute__((noinline)) void tp__hand_over(struct tp__worker *w, tp_task *t)
{
    w->direct = hand_over_pick(w, t);
}

__attribute__((noinline)) int tp__park_prepare(tp_task *t, tp__spin *held, int64_t deadline,
                                               char *sp)
{
    return tp__park_arm(t, held, deadline, sp);
}

__attribute__((noinline)) int tp__park(tp_task *t, tp__spin *held, int64_t deadline)
{
    return tp__park_here(t, held, deadline);
}

__attribute__((noinline)) int tp__yield_task(tp_task *t)
{
    struct tp__worker *w = t->worker;
    if (!w->ready.n && !atomic_load_explicit(&w->inbox, memory_order_relaxed) &&
        !atomic_load_explicit(&w->nfresh, memory_order_relaxed) &&
        !atomic_load_explicit(&w->next, memory_order_relaxed) &&
        (!w->timers.first || w->timers.first->key > tp_now()))
        return 0; /* nobody else to run (nor a timer due): it would come straight back */
    if (TP__UNLIKELY(tp__stack_reserve(t, tp__ctx_sp(), false) < 0))
        return -1;
    w->why = TP__SW_YIELD;
    tp__to_scheduler(w, t, false);
    return 0;
}

void tp__exit_task(tp_task *t)
{
    struct tp__worker *w = t->worker;
    w->why = TP__SW_EXIT;
    san_leave_task(w, t, true);
    tp__ctx_switch(&w->dead_sp, w->sched_sp);
    tp__panic(__FILE__, __LINE__, "a finished task was resumed");
}

/* -------------------------------------------------------------------- the loop ---- */

static bool has_work(struct tp__worker *w)
{
    if (w->ready.n || atomic_load(&w->inbox) || atomic_load(&w->nfresh))
        return true;
    tp_pool *pool = w->pool;
    for (unsigned i = 0; i < pool->nworkers; i++)
        if (atomic_load(&pool->workers[i].nfresh) || atomic_load(&pool->workers[i].next))
            return true;
    return atomic_load(&pool->stopping) != 0;
}

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void idle(struct tp__worker *w, int64_t deadline)
{
    tp_pool *pool = w->pool;
    int64_t give_up = now_ns() + TP__SPIN_NS;
    for (unsigned i = 1;; i++) {
        if (atomic_load_explicit(&w->inbox, memory_order_relaxed))
            return;
        if ((i & 63) == 0) {
            if (has_work(w))
                return;
            if (now_ns() > give_up)
                break;
        }
        tp__cpu_relax();
    }
    atomic_store(&w->sleeping, 1);
    atomic_fetch_add(&pool->sleepers, 1);
    if (!has_work(w)) {
        int timeout = -1;
        if (deadline >= 0) {
            int64_t d = deadline - tp_now();
            timeout = d < 0 ? 0 : (d > INT32_MAX ? INT32_MAX : (int)d);
        }
        struct epoll_event ev[8];
        int n = epoll_wait(w->epfd, ev, 8, timeout);
        for (int i = 0; i < n; i++) {
            if (ev[i].data.ptr == NULL) {
                uint64_t v;
                (void)!read(w->evfd, &v, sizeof v);
            }
        }
        tp__count(&w->st_sleeps, 1);
    }
    atomic_store(&w->sleeping, 0);
    atomic_fetch_sub(&pool->sleepers, 1);
}

static void worker_init_sanitizers(struct tp__worker *w)
{
    (void)w;
#if TP_TSAN
    w->tsan_sched_fiber = __tsan_get_current_fiber();
#endif
#if TP_ASAN
    pthread_attr_t a;
    void *lo = NULL;
    size_t sz = 0;
    if (pthread_getattr_np(pthread_self(), &a) == 0) {
        pthread_attr_getstack(&a, &lo, &sz);
        pthread_attr_destroy(&a);
    }
    w->sched_stack_lo = lo;
    w->sched_stack_size = sz;
#endif
}

void *tp__worker_main(void *arg)
{
    struct tp__worker *w = arg;
    tp_pool *pool = w->pool;
    tp__self_worker = w;
    tp__ctx_fp_set_default(); /* what the scheduler must run with: see ctx.h */
    tp__bias_worker_start();
    tp__altstack_setup(w);
    tp__stack_touch(w);
    worker_init_sanitizers(w);
    for (;;) {
        int64_t deadline = -1;
        if (w->timers.n)
            deadline = tp__timer_fire(w, tp_now());
        tp_task *t = w->handoff;
        w->handoff = NULL;
        if (!t)
            t = pick(w);
        if (!t)
            t = steal(w);
        if (t) {
            run(w, t);
            continue;
        }
        if (atomic_load(&pool->stopping) && !w->timers.n)
            break;
        atomic_store_explicit(&w->idle, 1, memory_order_relaxed);
        idle(w, deadline);
        atomic_store_explicit(&w->idle, 0, memory_order_relaxed);
    }
    tp__altstack_teardown(w);
    tp__bias_worker_stop();
    tp__self_worker = NULL;
    return NULL;
}
