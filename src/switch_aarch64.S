/* switch_aarch64.S -- context switch for AArch64 (AAPCS64, Linux).
 *
 * A context is just a stack pointer: everything the switch must preserve is stored on the
 * stack being left, below the caller's sp, so it travels with the task's live segment
 * when that segment is copied out and back.  AArch64 has no push and `bl` leaves the
 * return address in x30, so unlike x86_64 nothing is on the stack at entry: the switch
 * allocates the whole frame itself, in one step (sp stays 16-byte aligned throughout and
 * nothing is ever written below sp, so a signal arriving mid-switch is harmless).  The
 * frame below the saved stack pointer is 176 bytes (TP__CTX_FRAME in ctx.h):
 *
 *   sp+168  x30 (lr)         the return address (AAPCS64 has none on the stack); a new
 *                            task's tp__ctx_entry.  Signed with the caller's sp as
 *                            modifier when built with -mbranch-protection=pac-ret
 *   sp+160  x29 (fp)         callee-saved frame pointer; 0 for a new task, which ends
 *                            frame-pointer walks.  (x29/x30 sit just below the caller's
 *                            sp, where an ordinary prologue puts its frame record.)
 *   sp+152  (padding)        zero; keeps the frame a multiple of 16 bytes
 *   sp+144  FPCR             its RMode, FZ, FZ16, DN, AHP and trap-enable fields are
 *                            preserved across calls by the ABI (the counterpart of x86's
 *                            MXCSR control bits and x87 control word)
 *   sp+136  d15              \
 *   sp+128  d14               |
 *   sp+120  d13               |  callee-saved: the low 64 bits of v8-v15 (AAPCS64; the
 *   sp+112  d12               |  upper 64 bits, and all of SVE z8-z15 beyond them,
 *   sp+104  d11               |  are caller-saved under the base procedure call standard)
 *   sp+96   d10               |
 *   sp+88   d9                |
 *   sp+80   d8               /
 *   sp+72   x28              \
 *   sp+64   x27               |
 *   sp+56   x26               |
 *   sp+48   x25               |  callee-saved
 *   sp+40   x24               |
 *   sp+32   x23               |
 *   sp+24   x22               |
 *   sp+16   x21              /
 *   sp+8    x20              callee-saved; a new task's argument
 *   sp+0    x19              callee-saved; a new task's entry function
 *
 * sp itself is stored through the first argument.  Not saved: x0-x17 and all of v0-v31
 * beyond d8-d15 (caller-saved, dead across a call); x18 (a temporary on Linux; code
 * that reserves it, such as ShadowCallStack, is not supported); FPSR (cumulative
 * exception flags, not preserved by the ABI); NZCV (not preserved).  Not supported: a
 * task that parks with SME state live (streaming mode, ZA, a pending TPIDR2_EL0 lazy
 * save) -- TPIDR2_EL0 would keep pointing into a stack segment that is copied away --
 * and the Guarded Control Stack, which copy-stack switching cannot keep consistent
 * (this file never claims GCS in its GNU property note, so the link drops it).
 */
#if defined(__aarch64__)

/* Branch protection, when the C code is built with -mbranch-protection=...: a `bti c`
   landing pad at each global entry, pointer authentication of the saved return address,
   and the GNU property note that lets the link keep BTI/PAC marking for the library (one
   unmarked object would silently turn it off for the whole library).  All of these are
   hint-space instructions: NOPs on cores without the features. */
#if defined(__ARM_FEATURE_BTI_DEFAULT) && __ARM_FEATURE_BTI_DEFAULT == 1
#define TP_BTI_C hint #34 /* bti c */
#define TP_PROP_BTI 1
#else
#define TP_BTI_C
#define TP_PROP_BTI 0
#endif

#if defined(__ARM_FEATURE_PAC_DEFAULT) && (__ARM_FEATURE_PAC_DEFAULT & 3)
#if __ARM_FEATURE_PAC_DEFAULT & 1
#define TP_SIGN_LR hint #25     /* paciasp: sign x30, modifier sp, key A */
#define TP_AUTH_LR hint #29     /* autiasp */
#define TP_SIGN_1716 hint #8    /* pacia1716: sign x17, modifier x16, key A */
#else
#define TP_SIGN_LR hint #27     /* pacibsp: key B */
#define TP_AUTH_LR hint #31     /* autibsp */
#define TP_SIGN_1716 hint #10   /* pacib1716 */
#endif
#define TP_CFI_RA_SIGNED .cfi_negate_ra_state
#define TP_PROP_PAC 2
#else
#define TP_SIGN_LR
#define TP_AUTH_LR
#define TP_SIGN_1716
#define TP_CFI_RA_SIGNED
#define TP_PROP_PAC 0
#endif

#define TP_FRAME 176            /* TP__CTX_FRAME in ctx.h */

    .text

/* void **tp__ctx_switch(void **save_sp, void *new_sp): returns with x0 as the continuer
   left it, its own save_sp (ctx.h); nothing here writes x0 after the store through it. */
    .globl  tp__ctx_switch
    .hidden tp__ctx_switch
    .type   tp__ctx_switch, %function
    .p2align 4
tp__ctx_switch:
    .cfi_startproc
    TP_BTI_C
    TP_SIGN_LR                  /* modifier: sp == the caller's sp == the CFA */
    TP_CFI_RA_SIGNED
    stp     x19, x20, [sp, #-TP_FRAME]!     /* allocate and store in one instruction */
    .cfi_def_cfa_offset TP_FRAME
    stp     x21, x22, [sp, #16]
    stp     x23, x24, [sp, #32]
    stp     x25, x26, [sp, #48]
    stp     x27, x28, [sp, #64]
    stp     d8, d9, [sp, #80]
    stp     d10, d11, [sp, #96]
    stp     d12, d13, [sp, #112]
    stp     d14, d15, [sp, #128]
    mrs     x9, fpcr
    stp     x9, xzr, [sp, #144]
    stp     x29, x30, [sp, #160]
    .cfi_offset x19, -176
    .cfi_offset x20, -168
    .cfi_offset x21, -160
    .cfi_offset x22, -152
    .cfi_offset x23, -144
    .cfi_offset x24, -136
    .cfi_offset x25, -128
    .cfi_offset x26, -120
    .cfi_offset x27, -112
    .cfi_offset x28, -104
    .cfi_offset d8, -96
    .cfi_offset d9, -88
    .cfi_offset d10, -80
    .cfi_offset d11, -72
    .cfi_offset d12, -64
    .cfi_offset d13, -56
    .cfi_offset d14, -48
    .cfi_offset d15, -40
    .cfi_offset x29, -16
    .cfi_offset x30, -8
    mov     x9, sp
    str     x9, [x0]            /* the old context is complete */
    mov     sp, x1              /* now on the new context's stack (same frame layout) */
    ldr     x9, [sp, #144]
    mrs     x10, fpcr
    cmp     x9, x10
    b.eq    1f                  /* writing FPCR can stall the pipeline: skip when equal */
    msr     fpcr, x9
1:
    ldp     d8, d9, [sp, #80]
    ldp     d10, d11, [sp, #96]
    ldp     d12, d13, [sp, #112]
    ldp     d14, d15, [sp, #128]
    ldp     x21, x22, [sp, #16]
    ldp     x23, x24, [sp, #32]
    ldp     x25, x26, [sp, #48]
    ldp     x27, x28, [sp, #64]
    ldp     x29, x30, [sp, #160]
    ldp     x19, x20, [sp], #TP_FRAME       /* restore and free in one instruction */
    .cfi_def_cfa_offset 0
    TP_AUTH_LR                  /* sp is this context's caller's sp again */
    TP_CFI_RA_SIGNED
    ret
    .cfi_endproc
    .size   tp__ctx_switch, .-tp__ctx_switch

/* void *tp__ctx_init(void *top, void *(*fn)(void *), void *arg, void (*done)(void *))
 * Builds, just below the 16-byte aligned `top`, a frame that tp__ctx_switch can switch
 * to: it "returns" into tp__ctx_entry with sp == top, fn in x19, arg in x20, done in
 * x21, x29 == 0,
 * every other callee-saved register zero and FPCR 0 (round to nearest, no flush-to-zero,
 * no default NaN, no traps: the value a Linux process starts with).  Returns the stack
 * pointer of that context. */
    .globl  tp__ctx_init
    .hidden tp__ctx_init
    .type   tp__ctx_init, %function
    .p2align 4
tp__ctx_init:
    .cfi_startproc
    TP_BTI_C
    sub     x4, x0, #TP_FRAME
    stp     x1, x2, [x4, #0]    /* x19 = fn, x20 = arg */
    stp     x3, xzr, [x4, #16]  /* x21 = done, x22 */
    stp     xzr, xzr, [x4, #32] /* x23, x24 */
    stp     xzr, xzr, [x4, #48] /* x25, x26 */
    stp     xzr, xzr, [x4, #64] /* x27, x28 */
    stp     xzr, xzr, [x4, #80] /* d8, d9 */
    stp     xzr, xzr, [x4, #96] /* d10, d11 */
    stp     xzr, xzr, [x4, #112] /* d12, d13 */
    stp     xzr, xzr, [x4, #128] /* d14, d15 */
    stp     xzr, xzr, [x4, #144] /* FPCR = 0, padding */
    adr     x17, tp__ctx_entry
    mov     x16, x0             /* the switch authenticates x30 with sp == top */
    TP_SIGN_1716
    stp     xzr, x17, [x4, #160] /* x29 = 0 ends frame-pointer walks; x30 = entry */
    mov     x0, x4
    ret
    .cfi_endproc
    .size   tp__ctx_init, .-tp__ctx_init

/* First code a new context runs (reached by the switch's `ret`, so it needs no BTI
 * landing pad), with sp == top (16-byte aligned) and x29 == 0: fn's frame record links
 * to a null frame, so frame-pointer unwinders stop after this one, and the CFI below
 * tells DWARF unwinders there is no caller.  fn's result goes to done (x21, which fn
 * preserves as a callee-saved register); done never returns. */
    .type   tp__ctx_entry, %function
    .p2align 4
tp__ctx_entry:
    .cfi_startproc
    .cfi_undefined x30          /* outermost frame: debuggers stop unwinding here */
    mov     x0, x20
    blr     x19
    blr     x21
    brk     #0x3e8              /* done returned: trap (SIGTRAP) rather than run on */
    .cfi_endproc
    .size   tp__ctx_entry, .-tp__ctx_entry

#if TP_PROP_BTI || TP_PROP_PAC
/* ELF for the Arm 64-bit Architecture: NT_GNU_PROPERTY_TYPE_0 carrying
   GNU_PROPERTY_AARCH64_FEATURE_1_AND (BTI = bit 0, PAC = bit 1; never GCS). */
    .pushsection .note.gnu.property, "a"
    .p2align 3
    .word   4                   /* n_namesz: "GNU\0" */
    .word   16                  /* n_descsz */
    .word   5                   /* n_type: NT_GNU_PROPERTY_TYPE_0 */
    .asciz  "GNU"
    .word   0xc0000000          /* pr_type: GNU_PROPERTY_AARCH64_FEATURE_1_AND */
    .word   4                   /* pr_datasz */
    .word   TP_PROP_BTI | TP_PROP_PAC
    .word   0                   /* padding to 8 bytes */
    .popsection
#endif

#endif

/* The library never needs an executable stack. */
    .section .note.GNU-stack, "", %progbits
