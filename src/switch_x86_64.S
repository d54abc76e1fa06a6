/* switch_x86_64.S -- context switch for x86_64 (System V ABI).
 *
 * A context is a stack pointer that points at a resume address: continuing a context is
 * "load its stack pointer, pop the address, jump there".  Whatever else must survive is
 * below that address on the stack being left, put there by the code that switched out,
 * so it travels with the task's live segment when that segment is copied out and back.
 *
 * There are three ways out of a context, all leaving the same shape at the saved stack
 * pointer, a resume address, so any can continue any other; each continues the other
 * with %rdi still holding its own save_sp argument, which the continued side returns:
 * that is how a resumed task finds its worker (ctx.h).
 *  - A task on its way to park switches with an inline sequence (ctx.h, tp__ctx_park)
 *    that tells the compiler every register but %rsp and %rbp is destroyed: the
 *    compiler then keeps in the blocking function's own frame only the values it still
 *    needs, instead of a switch routine pushing six registers the function's prologue
 *    has typically just pushed (for its caller) as well.  That takes 40 bytes off every
 *    parked task's saved segment and off every copy; the FP control words are kept
 *    only when they are not the defaults (8 more).
 *  - The scheduler switches into a task with another inline sequence (tp__ctx_resume),
 *    without a call, for the CPU's return predictor: see ctx.h.
 *  - A finishing task calls tp__ctx_switch below, which pushes the six callee-saved
 *    registers like any switch routine (its context is never continued).
 *
 * tp__ctx_switch's frame, below the caller's stack pointer (64 bytes):
 *
 *   sp+56  return address      pushed by the `call` into tp__ctx_switch
 *   sp+48  %rbp                callee-saved (frame pointer when one is used)
 *   sp+40  %rbx                callee-saved
 *   sp+32  %r12
 *   sp+24  %r13
 *   sp+16  %r14
 *   sp+8   %r15
 *   sp+0   resume address      .Lresume below
 *
 * The FP controls (MXCSR's control bits, the x87 control word) are callee-saved too,
 * but the scheduler, which this routine would return to, keeps the defaults instead of
 * saving them: a worker sets them before its scheduler first runs, and puts them back
 * whenever a task leaves it others (sched.c).  The tasks it continues expect exactly
 * that (ctx.h).
 *
 * Caller-saved registers (%rax, %rcx, %rdx, %rsi, %rdi, %r8-%r11, all vector
 * registers) are dead across a call, so they are not saved.  The direction flag is clear
 * at every call by the ABI.  The jump into a context is an indirect `jmp`, not a `ret`:
 * a `ret` that matches no `call` would leave the CPU's return predictor off by one for
 * every return after it.  And tp__ctx_switch returns with a jump as well: its `call`
 * was made in another context, and whoever continues it comes from a third, so the
 * return predictor's top entry would be that one's, and a `ret` mispredicted (about
 * 15-20 cycles; when the scheduler still switched with this routine, that was on every
 * switch: W2 129 -> 103 ns with the jump).  (`notrack`: with indirect-branch tracking
 * the target is a return address, not a landing pad.)
 */
#include "ctx.h"

#if defined(__x86_64__)

#if defined(__CET__)
#define LANDING endbr64
#define NOTRACK notrack
#else
#define LANDING
#define NOTRACK
#endif

    .text

/* void **tp__ctx_switch(void **save_sp, void *new_sp) */
    .globl  tp__ctx_switch
    .hidden tp__ctx_switch
    .type   tp__ctx_switch, @function
    .p2align 4
tp__ctx_switch:
    .cfi_startproc
    LANDING
    pushq   %rbp
    .cfi_adjust_cfa_offset 8
    pushq   %rbx
    .cfi_adjust_cfa_offset 8
    pushq   %r12
    .cfi_adjust_cfa_offset 8
    pushq   %r13
    .cfi_adjust_cfa_offset 8
    pushq   %r14
    .cfi_adjust_cfa_offset 8
    pushq   %r15
    .cfi_adjust_cfa_offset 8
    leaq    .Lresume(%rip), %rax
    pushq   %rax
    movq    %rsp, (%rdi)        /* the old context is complete */
    movq    %rsi, %rsp          /* now on the new context's stack */
    popq    %rax
    jmpq    *%rax
.Lresume:                       /* here with %rsp at the %r15 slot */
    .cfi_def_cfa_offset 56
    LANDING
    popq    %r15
    .cfi_adjust_cfa_offset -8
    popq    %r14
    .cfi_adjust_cfa_offset -8
    popq    %r13
    .cfi_adjust_cfa_offset -8
    popq    %r12
    .cfi_adjust_cfa_offset -8
    popq    %rbx
    .cfi_adjust_cfa_offset -8
    popq    %rbp
    .cfi_adjust_cfa_offset -8
    movq    %rdi, %rax          /* the continuer's save_sp (ctx.h) */
    popq    %rcx                /* return with a jump: see above */
    .cfi_adjust_cfa_offset -8
    .cfi_register rip, rcx
    NOTRACK jmpq *%rcx
    .cfi_endproc
    .size   tp__ctx_switch, .-tp__ctx_switch

/* void *tp__ctx_init(void *top, void *(*fn)(void *), void *arg, void (*done)(void *))
 * Builds, just below the 16-byte aligned `top`, a context that continues in
 * tp__ctx_entry, which calls fn(arg), then done(result):
 *
 *   top-8  done   top-16 fn   top-24 arg   top-32 (unused)   top-40 resume
 *
 * The task starts with the FP controls of the scheduler that continues it, which are
 * the defaults (see tp__ctx_switch).  The unused word keeps fn's call 16-byte aligned.
 *
 * Returns that context's stack pointer, top-40. */
    .globl  tp__ctx_init
    .hidden tp__ctx_init
    .type   tp__ctx_init, @function
    .p2align 4
tp__ctx_init:
    .cfi_startproc
    LANDING
    leaq    -40(%rdi), %rax
    leaq    tp__ctx_entry(%rip), %r8
    movq    %r8, (%rax)
    movq    %rdx, 16(%rax)
    movq    %rsi, 24(%rax)
    movq    %rcx, 32(%rax)
    ret
    .cfi_endproc
    .size   tp__ctx_init, .-tp__ctx_init

/* First code a new context runs, with %rsp at top-32.  fn is called from %rsp == top
 * (16-byte aligned, the ABI's alignment at a call), so its return address is the only
 * word of ours under its frame.  done waits in %rbx, which fn preserves like any
 * callee-saved register (in its own frame, if it uses %rbx at all); done never returns. */
    .type   tp__ctx_entry, @function
    .p2align 4
tp__ctx_entry:
    .cfi_startproc
    .cfi_undefined rip          /* outermost frame: debuggers stop unwinding here */
    LANDING
    movq    8(%rsp), %rdi
    movq    16(%rsp), %rax
    movq    24(%rsp), %rbx
    addq    $32, %rsp
    xorl    %ebp, %ebp          /* ends frame-pointer walks */
    callq   *%rax
    .globl  tp__ctx_fn_return   /* the word under every task's stack top: see ctx.h */
    .hidden tp__ctx_fn_return
tp__ctx_fn_return:
    movq    %rax, %rdi
    callq   *%rbx
    ud2
    .cfi_endproc
    .size   tp__ctx_entry, .-tp__ctx_entry

/* __x86_return_thunk: how the functions that park a task return (TP__PARK_RETURN,
 * ctx.h).  GCC's function_return("thunk-extern") makes every `ret` of such a function a
 * jump here, and this returns with a jump.  A `ret` right after a switch is predicted
 * to go where the task that switched out was called from, not where the task switched
 * in was: ping and pong of benchmark W2 mispredicted it on every switch, ~45 cycles
 * each.  An indirect jump is predicted from the recent branch history, which tells the
 * two apart.  It leaves the return predictor one entry deeper, so returns further up
 * the task's chain are predicted one entry off: ctx.h says where that is worth it. */
    .text
    .globl  __x86_return_thunk
    .hidden __x86_return_thunk
    .type   __x86_return_thunk, @function
    .p2align 4
__x86_return_thunk:
    .cfi_startproc
    popq    %rcx
    .cfi_adjust_cfa_offset -8
    .cfi_register rip, rcx
    NOTRACK jmpq *%rcx
    .cfi_endproc
    .size   __x86_return_thunk, .-__x86_return_thunk

/* The FP controls a task starts with and the scheduler runs with (ctx.h): MXCSR, then
   x87 control word. */
    .section .rodata
    .p2align 3
    .globl  tp__ctx_fp_default
    .hidden tp__ctx_fp_default
    .type   tp__ctx_fp_default, @object
tp__ctx_fp_default:
    .long   TP__CTX_MXCSR_DEFAULT, TP__CTX_FPCW_DEFAULT
    .size   tp__ctx_fp_default, 8

#endif

/* The library never needs an executable stack. */
    .section .note.GNU-stack, "", @progbits
