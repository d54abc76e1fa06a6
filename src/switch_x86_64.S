/* switch_x86_64.S -- context switch for x86_64 (System V ABI).
 *
 * A context is just a stack pointer: everything the switch must preserve is pushed onto
 * the stack being left, so it travels with the task's live segment when that segment is
 * copied out and back.  The frame below the saved stack pointer is 64 bytes
 * (TP__CTX_FRAME in ctx.h):
 *
 *   sp+56  return address      pushed by the `call` into tp__ctx_switch
 *   sp+48  %rbp                callee-saved (frame pointer when one is used)
 *   sp+40  %rbx                callee-saved
 *   sp+32  %r12                callee-saved; a new task's argument
 *   sp+24  %r13                callee-saved; a new task's entry function
 *   sp+16  %r14                callee-saved
 *   sp+8   %r15                callee-saved
 *   sp+4   x87 control word    callee-saved per the ABI (rounding, precision)
 *   sp+0   MXCSR               control bits are callee-saved per the ABI (SSE rounding,
 *                              flush-to-zero); the status flags ride along harmlessly
 *
 * %rsp itself is stored through the first argument.  Caller-saved registers (%rax,
 * %rcx, %rdx, %rsi, %rdi, %r8-%r11, all vector registers) are dead across a call, so
 * they are not saved.  The direction flag is clear at every call by the ABI.
 */
#if defined(__x86_64__)

    .text

/* void tp__ctx_switch(void **save_sp, void *new_sp) */
    .globl  tp__ctx_switch
    .hidden tp__ctx_switch
    .type   tp__ctx_switch, @function
    .p2align 4
tp__ctx_switch:
    .cfi_startproc
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
    subq    $8, %rsp
    .cfi_adjust_cfa_offset 8
    stmxcsr (%rsp)
    fnstcw  4(%rsp)
    movq    %rsp, (%rdi)        /* the old context is complete */
    movq    %rsi, %rsp          /* now on the new context's stack */
    ldmxcsr (%rsp)
    fldcw   4(%rsp)
    addq    $8, %rsp
    popq    %r15
    popq    %r14
    popq    %r13
    popq    %r12
    popq    %rbx
    popq    %rbp
    ret
    .cfi_endproc
    .size   tp__ctx_switch, .-tp__ctx_switch

/* void *tp__ctx_init(void *top, void (*fn)(void *), void *arg)
 * Builds, just below the 16-byte aligned `top`, a frame that tp__ctx_switch can switch
 * to: it "returns" into tp__ctx_entry with fn in %r13 and arg in %r12, default MXCSR
 * (0x1f80: all exceptions masked, round to nearest) and x87 control word (0x037f).
 * Returns the stack pointer of that context. */
    .globl  tp__ctx_init
    .hidden tp__ctx_init
    .type   tp__ctx_init, @function
    .p2align 4
tp__ctx_init:
    .cfi_startproc
    leaq    -64(%rdi), %rax
    movl    $0x1f80, (%rax)
    movl    $0x037f, 4(%rax)
    movq    $0, 8(%rax)         /* r15 */
    movq    $0, 16(%rax)        /* r14 */
    movq    %rsi, 24(%rax)      /* r13 = fn */
    movq    %rdx, 32(%rax)      /* r12 = arg */
    movq    $0, 40(%rax)        /* rbx */
    movq    $0, 48(%rax)        /* rbp = 0 ends frame-pointer walks */
    leaq    tp__ctx_entry(%rip), %rcx
    movq    %rcx, 56(%rax)
    ret
    .cfi_endproc
    .size   tp__ctx_init, .-tp__ctx_init

/* First code a new context runs, with %rsp == top (16-byte aligned), so the call below
 * enters fn with the ABI's alignment.  fn never returns. */
    .type   tp__ctx_entry, @function
    .p2align 4
tp__ctx_entry:
    .cfi_startproc
    .cfi_undefined rip          /* outermost frame: debuggers stop unwinding here */
    movq    %r12, %rdi
    callq   *%r13
    ud2
    .cfi_endproc
    .size   tp__ctx_entry, .-tp__ctx_entry

#endif

/* The library never needs an executable stack. */
    .section .note.GNU-stack, "", @progbits
