/* ctx.h -- the one interface between the portable code and the per-architecture switch
 * routine (src/switch_<arch>.S, chosen by configure).
 *
 * A context is a saved stack pointer.  Everything that must survive a switch is stored
 * below it, on the stack being left, so the whole state of a parked task is the byte
 * range [saved sp, stack top): exactly what the copy-stack code moves.
 */
#ifndef TP_CTX_H
#define TP_CTX_H

/* x86_64: the MXCSR and x87 control word a task starts with (all exceptions masked,
   round to nearest; double-extended precision).  Also read by switch_x86_64.S. */
#define TP__CTX_MXCSR_DEFAULT 0x1f80
#define TP__CTX_FPCW_DEFAULT 0x037f

#ifndef __ASSEMBLER__

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Save the current context's stack pointer in *save_sp and continue the context whose
   stack pointer is new_sp.  Returns when some other context switches back to *save_sp,
   with the save_sp that context passed to its switch: a task, which only its worker's
   scheduler continues, finds that worker this way (&w->sched_sp) without keeping
   anything across the switch. */
void **tp__ctx_switch(void **save_sp, void *new_sp);

/* Prepare a context that will call fn(arg) on the stack ending at top (16-byte aligned),
   then done(fn's result); done must never return.  fn's frame is the first below top,
   with no frame of ours in between: a task's function is called directly, so that
   every parked task's saved segment holds nothing of the runtime's under it but the
   return address.  Returns the context's stack pointer. */
void *tp__ctx_init(void *top, void *(*fn)(void *), void *arg, void (*done)(void *));

/* tp__ctx_park(save_sp, new_sp, keep_fp): the same as tp__ctx_switch (and returns the
   same), for a task on its way to the scheduler, and always inlined.  keep_fp is
   !tp__ctx_fp_is_default() as the task's stack reservation measured it, with nothing
   but the library running since (nothing that changes the FP controls), and
   TP__CTX_PARK_FRAME(keep_fp) is the number of bytes the park keeps below the stack
   pointer of the function it is inlined into.
   x86_64: an inline sequence (see switch_x86_64.S for why) that saves only %rbp and its
   resume address, plus the MXCSR and x87 control word when they are not the defaults a
   task starts with, and declares every other register clobbered, so the compiler saves
   in its own frame just what is live.  Which of the two it did is in the resume address
   it leaves, so nothing else records it.  The defaults are what nearly every task runs
   with, and 8 bytes less of every parked segment is, for a deep parked task (benchmark
   W6), the step to the next smaller malloc chunk.  The sequence pushes below %rsp, so
   it must not be inlined into a function that uses the red zone: the library is built
   with -mno-red-zone (configure.ac).  Elsewhere: tp__ctx_switch.
   TP__CTX_TOP is how many bytes at the top of every task's stack hold the same value
   for every task, and are left out of the saved segments (stack.c writes them back). */
#if defined(__x86_64__)
/* The return address of the call to the task's function in tp__ctx_entry. */
#define TP__CTX_TOP 8
extern const char tp__ctx_fn_return[];
/* The FP controls a task starts with, for the park to load (switch_x86_64.S). */
extern const uint32_t tp__ctx_fp_default[2];
/* Whether the caller's FP controls are the defaults (MXCSR's status flags, bits 0-5,
   are not preserved by the ABI and do not count).
   Both are stored to memory, here below the stack pointer, moved down for the purpose
   and back: a slot in the caller's frame instead made the frame of every park (which
   stays in the parked segment) 16 to 32 bytes bigger.  Each is loaded on its own: one
   load of both would wait for the two stores to reach the cache (a store-forwarding
   stall: W2 ran 6 % slower that way). */
static inline __attribute__((always_inline)) bool tp__ctx_fp_is_default(void)
{
    uint32_t mxcsr, cw;
    __asm__ volatile("subq $8, %%rsp\n\t"
                     "stmxcsr (%%rsp)\n\t"
                     "fnstcw 4(%%rsp)\n\t"
                     "movl (%%rsp), %0\n\t"
                     "movzwl 4(%%rsp), %1\n\t"
                     "addq $8, %%rsp"
                     : "=r"(mxcsr), "=r"(cw));
    return (mxcsr & ~0x3fu) == TP__CTX_MXCSR_DEFAULT && cw == TP__CTX_FPCW_DEFAULT;
}
#define TP__CTX_PARK_FRAME(keep_fp) ((keep_fp) ? 24u : 16u)
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
/* Everything an inline switch destroys: all registers but %rsp, %rbp (which it saves
   itself), %rdi, %rsi and %rax (its operands), and %rcx, which one of them also uses. */
#define TP__CTX_CLOBBERS "rcx", TP__CTX_CLOBBERS_BUT_RCX
#define TP__CTX_CLOBBERS_BUT_RCX                                                           \
    "rbx", "rdx", "r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15", "memory",          \
        "cc", "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", "xmm8",      \
        "xmm9", "xmm10", "xmm11", "xmm12", "xmm13", "xmm14", "xmm15", "st", "st(1)",       \
        "st(2)", "st(3)", "st(4)", "st(5)", "st(6)", "st(7)", "mm0", "mm1", "mm2", "mm3",  \
        "mm4", "mm5", "mm6", "mm7" TP__CTX_CLOBBER_AVX512
/* Put the calling thread's FP controls to the defaults.  The scheduler -- the only
   context that continues a task -- always runs with them, so that a task that parked
   with them, or a new one, needs to load nothing: a worker sets them before its
   scheduler first runs (its creator may have had others, which it inherits), the
   scheduler again after a task that parked with others (w->park_fp) or finished with
   them (sched.c).  tp__ctx_switch then keeps none. */
static inline void tp__ctx_fp_set_default(void)
{
    __asm__ volatile("ldmxcsr %0\n\t"
                     "fldcw %1"
                     :
                     : "m"(tp__ctx_fp_default[0]), "m"(tp__ctx_fp_default[1]));
}
/* Either shape has the resume address at the saved stack pointer:
 *   default FP controls:  sp+8 %rbp                      sp+0 resume at 1
 *   others:               sp+16 %rbp  sp+8 MXCSR, x87 CW  sp+0 resume at 2
 * The first comes back with the scheduler's controls, which are the defaults (see
 * tp__ctx_fp_set_default): loading them again cost an ldmxcsr and an fldcw, both slow,
 * on every resume.  The second loads its own (and the scheduler, seeing park_fp, puts
 * the defaults back after it parks again). */
static inline __attribute__((always_inline)) void **tp__ctx_park(void **save_sp,
                                                                void *new_sp, bool keep_fp)
{
    unsigned long rax = keep_fp;
    __asm__ volatile("pushq %%rbp\n\t"
                     "testl %%eax, %%eax\n\t"
                     "leaq 1f(%%rip), %%rax\n\t"
                     "jz 3f\n\t"
                     "subq $8, %%rsp\n\t"
                     "stmxcsr (%%rsp)\n\t"
                     "fnstcw 4(%%rsp)\n\t"
                     "leaq 2f(%%rip), %%rax\n"
                     "3:\n\t"
                     "pushq %%rax\n\t"
                     "movq %%rsp, (%0)\n\t"
                     "movq %1, %%rsp\n\t"
                     "popq %%rax\n\t"
                     "jmpq *%%rax\n"
                     "2:\n\t" TP__CTX_LANDING
                     "ldmxcsr (%%rsp)\n\t"
                     "fldcw 4(%%rsp)\n\t"
                     "addq $8, %%rsp\n\t"
                     "jmp 4f\n"
                     "1:\n\t" TP__CTX_LANDING
                     "4:\n\t"
                     "popq %%rbp"
                     : "+D"(save_sp), "+S"(new_sp), "+a"(rax)
                     :
                     : TP__CTX_CLOBBERS);
    return save_sp; /* (%rdi as tp__ctx_switch left it: its continuer's save_sp) */
}
/* tp__ctx_park_to(save_sp, new_sp, cont): a task's switch straight into another parked
   task of its worker, with no scheduler in between (see tp__hand_over, sched.c): the
   same as tp__ctx_park with the default FP controls (the only case it is used for), but
   the task it continues returns from its own park with `cont` (&w->sched_sp), as if the
   scheduler had continued it, and so finds its worker.  Returns like tp__ctx_park. */
#define TP__CTX_DIRECT 1
static inline __attribute__((always_inline)) void **tp__ctx_park_to(void **save_sp,
                                                                   void *new_sp, void **cont)
{
    __asm__ volatile("pushq %%rbp\n\t"
                     "leaq 1f(%%rip), %%rax\n\t"
                     "pushq %%rax\n\t"
                     "movq %%rsp, (%2)\n\t"
                     "movq %1, %%rsp\n\t"
                     "popq %%rax\n\t"
                     "jmpq *%%rax\n"
                     "1:\n\t" TP__CTX_LANDING
                     "popq %%rbp"
                     : "+D"(cont), "+S"(new_sp), "+c"(save_sp)
                     :
                     : "rax", TP__CTX_CLOBBERS_BUT_RCX);
    return cont; /* (%rdi as its continuer left it) */
}
/* tp__ctx_resume(save_sp, new_sp): the scheduler's switch into a task, the same as
   tp__ctx_switch but inline, with no call.  A call would leave its return address on
   top of the CPU's return predictor, and the task's first return after it resumes
   (out of the function it parked in) would be predicted to go there.  Without one the
   top entry is still the return the task before pushed when it called the function it
   parked in: the right prediction whenever both parked at the same call site, as
   tasks running the same code do (the prime sieve's filters: W4 0.72).  The FP controls need no saving:
   the scheduler runs with the defaults (tp__ctx_fp_set_default). */
static inline __attribute__((always_inline)) void tp__ctx_resume(void **save_sp, void *new_sp)
{
    __asm__ volatile("pushq %%rbp\n\t"
                     "leaq 1f(%%rip), %%rax\n\t"
                     "pushq %%rax\n\t"
                     "movq %%rsp, (%0)\n\t"
                     "movq %1, %%rsp\n\t"
                     "popq %%rax\n\t"
                     "jmpq *%%rax\n"
                     "1:\n\t" TP__CTX_LANDING
                     "popq %%rbp"
                     : "+D"(save_sp), "+S"(new_sp)
                     :
                     : "rax", TP__CTX_CLOBBERS);
}
#elif defined(__aarch64__)
#define TP__CTX_TOP 0 /* the task function's return address is in x30, saved in its frame */
/* The switch keeps FPCR in its frame (see switch_aarch64.S) whatever its value. */
static inline bool tp__ctx_fp_is_default(void) { return true; }
static inline void tp__ctx_fp_set_default(void) {}
#define TP__CTX_PARK_FRAME(keep_fp) ((void)(keep_fp), 176u) /* tp__ctx_switch's frame */
static inline __attribute__((always_inline)) void **tp__ctx_park(void **save_sp,
                                                                void *new_sp, bool keep_fp)
{
    (void)keep_fp;
    return tp__ctx_switch(save_sp, new_sp);
}
static inline void tp__ctx_resume(void **save_sp, void *new_sp)
{
    tp__ctx_switch(save_sp, new_sp);
}
#define TP__CTX_DIRECT 0 /* no tp__ctx_park_to: tasks always switch through the scheduler */
#else
#error "threadplex: no context switch routine for this architecture"
#endif

/* TP__PARK_RETURN: for a function that parks a task with one of the inline switches
   above and returns straight to the library's caller (chan.c's, which the public
   calls reach by tail calls).  Its first return after the task is continued follows a
   switch from another task, and the return predictor's top entry is still where that
   task's own call came from: a misprediction (~45 cycles here) on every switch between
   tasks that called from different places (ping and pong of benchmark W2 took 71 ns a
   round trip with it, 50 without).  x86_64, with a compiler that has the attribute
   (GCC 8 on; Clang 14 has not): such a function returns through __x86_return_thunk
   (switch_x86_64.S) with an indirect jump instead, which is predicted from the branch
   history.  The jump leaves that entry on the predictor's stack, so every return above
   it in the task's chain is predicted one entry off.  Not for parks under more of the
   library's frames, then (tp__park, under tp_join and the locks): tasks that run the
   same code, as fork-join tasks do, had every one of those returns right, and lost
   6-8 % (benchmark W7) with the jump.  Elsewhere: a plain return. */
#if defined(__x86_64__) && defined(__has_attribute)
#if __has_attribute(function_return)
#define TP__PARK_RETURN __attribute__((function_return("thunk-extern")))
#endif
#endif
#ifndef TP__PARK_RETURN
#define TP__PARK_RETURN
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

#endif /* !__ASSEMBLER__ */

#endif
