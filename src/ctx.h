/* ctx.h -- the one interface between the portable code and the per-architecture switch
 * routine (src/switch_<arch>.S, chosen by configure).
 *
 * A context is a saved stack pointer.  The switch pushes the callee-saved registers onto
 * the stack it leaves and stores the stack pointer; switching back pops them.  So the
 * whole state of a parked task is the byte range [saved sp, stack top): exactly what the
 * copy-stack code moves.
 */
#ifndef TP_CTX_H
#define TP_CTX_H

/* Save the current context's stack pointer in *save_sp and continue the context whose
   stack pointer is new_sp.  Returns when some other context switches back to *save_sp. */
void tp__ctx_switch(void **save_sp, void *new_sp);

/* Prepare a context that will call fn(arg) on the stack ending at top (16-byte aligned).
   Returns its stack pointer; fn must never return. */
void *tp__ctx_init(void *top, void (*fn)(void *), void *arg);

/* Bytes the switch keeps below a caller's stack pointer (return address + registers). */
#if defined(__x86_64__)
#define TP__CTX_FRAME 64
#elif defined(__aarch64__)
#define TP__CTX_FRAME 176
#else
#error "threadplex: no context switch routine for this architecture"
#endif

/* The caller's current stack pointer (approximately: within this inline's frame). */
static inline char *tp__ctx_sp(void)
{
    char *sp;
#if defined(__x86_64__)
    __asm__ volatile("movq %%rsp, %0" : "=r"(sp));
#elif defined(__aarch64__)
    __asm__ volatile("mov %0, sp" : "=r"(sp));
#endif
    return sp;
}

#endif
