/*
 * threadplex.h -- copy-stack coroutines on a pool of worker threads.
 *
 * Every task runs on one of its worker's few large shared stacks, many tasks to a stack.
 * When a task blocks and another needs its stack, the worker copies the task's live stack
 * segment (stack pointer to top) into a heap buffer and copies it back to the same
 * addresses when the task resumes.
 *
 * THE RULE OF COPY-STACK: a pointer into a task's stack is valid only while that task
 * runs.  Never hand another task or thread a pointer to your locals (a tp_spawn argument,
 * a pointer stored in a shared structure) and then block: while you are parked, your
 * locals live in a heap copy and the addresses hold another task's frames.  Passing
 * pointers to your own locals *into* threadplex calls (elem, result, ...) is fine.
 *
 * Errors: functions return -1 (or NULL) and set errno.  Deadlines are absolute times in
 * milliseconds on the clock of tp_now(); -1 waits forever, 0 does not block.
 */
#ifndef THREADPLEX_H
#define THREADPLEX_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---------------------------------------------------------------- version / ABI ---- */

/* The one place the version lives: configure.ac, libtool and threadplex.pc read it. */
#define TP_VERSION_MAJOR 0
#define TP_VERSION_MINOR 1
#define TP_VERSION_PATCH 0
/* libtool -version-info current:revision:age */
#define TP_ABI_CURRENT  0
#define TP_ABI_REVISION 0
#define TP_ABI_AGE      0

#define TP_VERSION ((TP_VERSION_MAJOR * 10000) + (TP_VERSION_MINOR * 100) + TP_VERSION_PATCH)

/* The library's version as "MAJOR.MINOR.PATCH" (may differ from the header's). */
const char *tp_version(void);

/* ------------------------------------------------------------------------ pool ---- */

typedef struct tp_pool tp_pool; /* opaque: a set of worker pthreads */
typedef struct tp_task tp_task; /* opaque: one coroutine */
typedef struct tp_chan tp_chan; /* opaque: one channel */

typedef struct tp_pool_attr {
    unsigned workers;  /* worker pthreads; 0 = one per online CPU */
    size_t stack_size; /* bytes of each worker's shared stack; 0 = default (1 MiB) */
    unsigned stacks;   /* shared stacks per worker, at most TP_POOL_MAX_STACKS; 0 = that
                          many.  1: every task of a worker runs on the one stack */
} tp_pool_attr;
#define TP_POOL_MAX_STACKS 16

/* Start a pool.  attr NULL = defaults.  EINVAL: absurd attributes; ENOMEM; EAGAIN:
   a worker thread could not be started. */
tp_pool *tp_pool_create(const tp_pool_attr *attr);
/* Plain thread only: block until every task spawned into the pool has finished. */
int tp_pool_wait(tp_pool *pool);
/* tp_pool_wait, then stop the workers and free everything the pool owns. */
int tp_pool_destroy(tp_pool *pool);

/* ----------------------------------------------------------------------- tasks ---- */

/* Start fn(arg) as a task.  pool NULL inside a task = the caller's pool.  EINVAL when
   arg points into a worker's shared stack (always a bug under copy-stack). */
tp_task *tp_spawn(tp_pool *pool, void *(*fn)(void *), void *arg);
/* Wait for task to finish, store its result, free it.  ETIMEDOUT at the deadline. */
int tp_join(tp_task *task, void **result, int64_t deadline);
/* Let task free itself when it finishes; it can no longer be joined. */
int tp_detach(tp_task *task);
/* End the calling task as if its function returned result (no-op outside a task). */
void tp_exit(void *result);
/* The calling task, or NULL in a plain thread. */
tp_task *tp_self(void);
/* A task's unique, nonzero id. */
uint64_t tp_id(const tp_task *task);
/* Let other ready tasks of the worker run (in a plain thread: sched_yield). */
int tp_yield(void);
/* Milliseconds on a monotonic clock: the clock of every deadline. */
int64_t tp_now(void);
/* Park the task (sleep the thread) until deadline. */
int tp_sleep(int64_t deadline);

/* -------------------------------------------------------------------- channels ---- */

/* A channel of elem_size-byte values; capacity 0 = unbuffered (rendezvous). */
tp_chan *tp_chan_create(size_t elem_size, size_t capacity);
int tp_chan_send(tp_chan *ch, const void *elem, int64_t deadline);
int tp_chan_recv(tp_chan *ch, void *elem, int64_t deadline);
/* Wake every waiter; later sends fail EPIPE; receivers drain the buffer, then EPIPE. */
int tp_chan_close(tp_chan *ch);
/* Free the channel; EBUSY while a task or thread is blocked on it. */
int tp_chan_destroy(tp_chan *ch);

/* ---------------------------------------------------------------------- select ---- */

enum { TP_SEND = 1, TP_RECV = 2 };

typedef struct tp_case {
    tp_chan *ch; /* in: the channel */
    int op;      /* in: TP_SEND or TP_RECV */
    void *elem;  /* in: value to send / where to store the value received */
    int err;     /* out: 0, or EPIPE when that channel was closed */
} tp_case;

/* Complete exactly one case, chosen uniformly at random among the ready ones; returns
   its index and sets that case's err (0, or EPIPE: its channel was closed -- a send, or
   a receive with nothing left to drain).  No other case's err is written.  Cases may
   name the same channel more than once.  -1/ETIMEDOUT at the deadline (at once for 0).
   n == 0 with a deadline just sleeps until it.  EINVAL: cases NULL, n == 0 with deadline
   -1, n > INT_MAX, a case with a NULL channel or elem or a bad op, a deadline below -1.
   ENOMEM. */
int tp_select(tp_case *cases, size_t n, int64_t deadline);

/* ------------------------------------------------------------------------ sync ---- */

/* The layouts are public only so that mutexes, conditions and wait groups can live
   inside your own structures; touch them only through the functions below.  A tp_mutex,
   tp_cond or tp_wg that tasks may wait on must not live on a task's stack. */
typedef struct tp_mutex {
    void *tp_private_[6];
} tp_mutex;

typedef struct tp_cond {
    void *tp_private_[4];
} tp_cond;

/* A mutex owned by a task or a plain thread; not recursive.  Unlock hands it straight
   to the longest waiter (FIFO, no barging).  A task may park while holding it.
   lock: EDEADLK when the caller already holds it, ENOMEM when a task could not park.
   unlock: EPERM when the caller does not hold it.  destroy: EBUSY while it is held or
   has waiters.  All: EINVAL for NULL. */
int tp_mutex_init(tp_mutex *m);
int tp_mutex_lock(tp_mutex *m);
int tp_mutex_unlock(tp_mutex *m);
int tp_mutex_destroy(tp_mutex *m);

/* A condition variable without spurious wake-ups: tp_cond_wait returns 0 only after a
   signal or broadcast, -1/ETIMEDOUT at the deadline, and in both cases (and for ENOMEM)
   holds m again before it returns.  Signal wakes the longest waiter, broadcast all.
   wait: EPERM when the caller does not hold m, EINVAL for a deadline below -1,
   ENOMEM (m still held, nothing released) when a task could not park.
   destroy: EBUSY while a party waits. */
int tp_cond_init(tp_cond *c);
int tp_cond_wait(tp_cond *c, tp_mutex *m, int64_t deadline);
int tp_cond_signal(tp_cond *c);
int tp_cond_broadcast(tp_cond *c);
int tp_cond_destroy(tp_cond *c);

/* ----------------------------------------------------------------- wait groups ---- */

/* A counter that parties wait to see reach zero (fan-out / fan-in). */
typedef struct tp_wg {
    void *tp_private_[4];
} tp_wg;

int tp_wg_init(tp_wg *wg);
/* Add delta (may be negative) to the counter; reaching zero releases every waiter.
   EINVAL (counter unchanged) when it would go below zero, EOVERFLOW above INT64_MAX. */
int tp_wg_add(tp_wg *wg, int64_t delta);
/* tp_wg_add(wg, -1). */
int tp_wg_done(tp_wg *wg);
/* Return once the counter is zero (at once if it is); -1/ETIMEDOUT at the deadline. */
int tp_wg_wait(tp_wg *wg, int64_t deadline);
/* EBUSY while a party waits. */
int tp_wg_destroy(tp_wg *wg);

/* ----------------------------------------------------------------------- stats ---- */

typedef struct tp_stats {
    uint64_t tasks_live;     /* spawned and not yet finished */
    uint64_t tasks_parked;   /* blocked in any threadplex wait */
    uint64_t saved_bytes;    /* bytes now held in saved stack segments */
    uint64_t switches;       /* context switches since the pool was created */
    uint64_t copied_bytes;   /* stack bytes copied out and in since creation */
    uint64_t workers;        /* worker threads of the pool */
    uint64_t saved_capacity; /* bytes allocated for saved segments (>= saved_bytes) */
    uint64_t tasks_spawned;  /* tasks spawned since creation */
    uint64_t steals;         /* not-yet-started tasks taken by another worker */
    uint64_t sleeps;         /* times a worker went to sleep in the kernel */
} tp_stats;

int tp_pool_stats(tp_pool *pool, tp_stats *out);

#ifdef __cplusplus
}
#endif

#endif /* THREADPLEX_H */
