/* ctx.h -- the one interface between the portable code and the per-architecture switch
 * routine (src/switch_<arch>.S, chosen by configure).
 *
 * A context is a saved stack pointer.  Everything that must survive a switch is stored
 * below it, on the stack being left, so the whole state of a parked task is the byte
 * range [saved sp, stack top): exactly what the copy-stack code moves.
 */
#ifndef TP_CTX_H
#define TP_CTX_H

/* Save the current context's stack pointer in *save_sp and continue the context whose
   stack pointer is new_sp.  Returns when some other context switches back to *save_sp. */
void tp__ctx_switch(void **save_sp, void *new_sp);

/* Prepare a context that will call fn(arg) on the stack ending at top (16-byte aligned),
   then done(fn's result); done must never return.  fn's frame is the first below top,
   with no frame of ours in between: a task's function is called directly, so that
   every parked task's saved segment holds nothing of the runtime's under it but the
   return address.  Returns the context's stack pointer. */
void *tp__ctx_init(void *top, void *(*fn)(void *), void *arg, void (*done)(void *));

/* tp__ctx_park(save_sp, new_sp): the same as tp__ctx_switch, for a task on its way to
   the scheduler, and always inlined.  TP__CTX_PARK_FRAME is the number of bytes it keeps
   below the stack pointer of the function it is inlined into.
   x86_64: an inline sequence (see switch_x86_64.S for why) that saves only %rbp, the
   MXCSR and x87 control word and its resume address, and declares every other register
   clobbered, so the compiler saves in its own frame just what is live.  The sequence
   pushes below %rsp, so it must not be inlined into a function that uses the red zone:
   the library is built with -mno-red-zone (configure.ac).  Elsewhere: tp__ctx_switch. */
#if defined(__x86_64__)
#define TP__CTX_PARK_FRAME 24
#if defined(__CET__)
#define TP__CTX_LANDING "endbr64\n\t"
#else
#define TP__CTX_LANDING ""
#endif
#if defined(__AVX512F__)
#define TP__CTX_CLOBBER_AVX512                                                             \
    , "xmm16", "xmm17", "xmm18", "xmm19", "xmm20", "xmm21", "xmm22", "xmm23", "xmm24",     \
        "xmm25", "xmm26", "xmm27", "xmm28", "xmm29", "xmm30", "xmm31", "k1", "k2", "k3",   \
        "k4", "k5", "k6", "k7"
#else
#define TP__CTX_CLOBBER_AVX512
#endif
static inline __attribute__((always_inline)) void tp__ctx_park(void **save_sp, void *new_sp)
{
    __asm__ volatile("pushq %%rbp\n\t"
                     "subq $8, %%rsp\n\t"
                     "stmxcsr (%%rsp)\n\t"
                     "fnstcw 4(%%rsp)\n\t"
                     "leaq 1f(%%rip), %%rax\n\t"
                     "pushq %%rax\n\t"
                     "movq %%rsp, (%0)\n\t"
                     "movq %1, %%rsp\n\t"
                     "popq %%rax\n\t"
                     "jmpq *%%rax\n"
                     "1:\n\t" TP__CTX_LANDING
                     "ldmxcsr (%%rsp)\n\t"
                     "fldcw 4(%%rsp)\n\t"
                     "addq $8, %%rsp\n\t"
                     "popq %%rbp"
                     : "+D"(save_sp), "+S"(new_sp)
                     :
                     : "rax", "rbx", "rcx", "rdx", "r8", "r9", "r10", "r11", "r12", "r13",
                       "r14", "r15", "memory", "cc", "xmm0", "xmm1", "xmm2", "xmm3", "xmm4",
                       "xmm5", "xmm6", "xmm7", "xmm8", "xmm9", "xmm10", "xmm11", "xmm12",
                       "xmm13", "xmm14", "xmm15", "st", "st(1)", "st(2)", "st(3)", "st(4)",
                       "st(5)", "st(6)", "st(7)", "mm0", "mm1", "mm2", "mm3", "mm4", "mm5",
                       "mm6", "mm7" TP__CTX_CLOBBER_AVX512);
}
#elif defined(__aarch64__)
#define TP__CTX_PARK_FRAME 176 /* tp__ctx_switch's frame: see switch_aarch64.S */
static inline __attribute__((always_inline)) void tp__ctx_park(void **save_sp, void *new_sp)
{
    tp__ctx_switch(save_sp, new_sp);
}
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
