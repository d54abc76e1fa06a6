/* park.h -- the task side of a switch, inlined where a task blocks.
 *
 * Every frame between a task's function and the switch is part of the live segment that
 * is copied out and back on every park.  Inlining the park into the blocking call (a
 * channel operation, say) removes one whole frame from every parked task.  The stack
 * pointer measured for tp__stack_reserve() must be the one the switch saves, so the
 * measurement and the switch are in the same (always inlined) function body.
 */
#ifndef TP_PARK_H
#define TP_PARK_H

#include "tp_internal.h"

static inline __attribute__((always_inline)) void san_leave_task(struct tp__worker *w, tp_task *t, bool exiting)
{
    (void)w;
    (void)t;
    (void)exiting;
#if TP_ASAN
    __sanitizer_start_switch_fiber(exiting ? NULL : &t->asan_fake, w->sched_stack_lo,
                                   w->sched_stack_size);
#endif
#if TP_TSAN
    __tsan_switch_to_fiber(w->tsan_sched_fiber, 0);
#endif
}

/* Before a switch into task n, on its own stack, from the scheduler (fake: the
   scheduler's ASan fake-stack slot) or from a task switching straight to it (that
   task's). */
static inline __attribute__((always_inline)) void san_switch_to_task(struct tp__worker *w,
                                                                    void **fake, tp_task *n)
{
    (void)w;
    (void)fake;
    (void)n;
#if TP_ASAN
    unsigned s = tp__slot_of(w, n->sp);
    __sanitizer_start_switch_fiber(fake, tp__slot_lo(w, s),
                                   (size_t)(tp__slot_hi(w, s) - tp__slot_lo(w, s)));
#endif
#if TP_TSAN
    __tsan_switch_to_fiber(n->tsan_fiber, 0);
#endif
}

static inline __attribute__((always_inline)) void san_back_in_task(tp_task *t)
{
    (void)t;
#if TP_ASAN
    __sanitizer_finish_switch_fiber(t->asan_fake, NULL, NULL);
#endif
}

/* The task side of a switch.  Always inlined into its caller so that the stack pointer
   the caller measured for tp__stack_reserve is the one the switch saves.  Returns the
   task (t), found again through the worker whose scheduler (or one of whose tasks: see
   tp__ctx_park_to) continued it: a value kept across the switch would be a stack slot in
   the parked segment, and a callee-saved register the compiler keeps one in is one
   more.  A park (hand_over: armed by tp__park_arm) may go straight to the next task,
   see tp__hand_over. */
static inline __attribute__((always_inline)) tp_task *tp__to_scheduler(struct tp__worker *w,
                                                                       tp_task *t,
                                                                       bool hand_over)
{
    void **cont;
    tp_task *n = NULL;
#if TP__CTX_DIRECT
    if (hand_over) /* the park's own choice (tp__park_arm), made out of this frame */
        n = w->direct;
#else
    (void)hand_over;
#endif
    if (n == t)
        return t; /* woken while it was parking: carry on */
    if (n) {
#if TP__CTX_DIRECT
#if TP_ASAN
        san_switch_to_task(w, &t->asan_fake, n);
#else
        san_switch_to_task(w, NULL, n);
#endif
        cont = tp__ctx_park_to(&t->sp, n->sp, &w->sched_sp);
#endif
    } else {
        san_leave_task(w, t, false);
        cont = tp__ctx_park(&t->sp, w->sched_sp, w->park_fp);
    }
    w = (struct tp__worker *)(void *)((char *)cont - offsetof(struct tp__worker, sched_sp));
    san_back_in_task(w->current);
    return w->current;
}

static inline __attribute__((always_inline)) int tp__park_here(tp_task *t, tp__spin *held,
                                                              int64_t deadline)
{
    if (TP__UNLIKELY(tp__park_prepare(t, held, deadline, tp__ctx_sp()) < 0))
        return -1;
    tp__to_scheduler(t->worker, t, true);
    return 0; /* (its waker counted it unparked and took it out of the timer tree) */
}

#endif
