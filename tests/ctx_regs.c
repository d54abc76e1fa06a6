/* ctx_regs.c -- what the context switch (src/switch_<arch>.S) must preserve, checked on
 * the machine it runs on.  A plain program, no Check framework: exit 0 = pass, 1 = fail,
 * 77 = skipped (an architecture it has no probe for).  Run: tests/ctx_regs [rounds]
 *
 *  1. Registers.  Two tasks on a one-worker pool ping-pong over two unbuffered channels,
 *     so each parks at least once per round and the other runs on the same shared stack
 *     in between.  Around every park, an assembly probe loads distinctive per-task,
 *     per-round values into every callee-saved register and the floating-point control
 *     state (AArch64: x19-x28, d8-d15, FPCR; x86_64: rbx, rbp, r12-r15, MXCSR control
 *     bits, x87 control word), calls the parking function, and stores what it finds
 *     afterwards.  Any value not carried across the switch shows up as the other task's
 *     or the scheduler's.
 *  2. Deep stacks.  Each probe runs at the bottom of a recursion of 2 KiB frames (16 of
 *     them for one task, 1..16, varying, for the other), each frame holding a pointer to
 *     itself, a pointer to its parent's frame and a filled buffer, all checked after the
 *     park: the copied segment must come back byte for byte, at the same addresses.
 *  3. A fresh task.  With the workers' own threads created under a non-default FP
 *     control state, a new task must still start with the defaults, on a 16-byte
 *     aligned stack, and DWARF unwinding from it must end cleanly at the entry
 *     trampoline (its CFI marks the return address undefined).
 *  4. The same after a task that finished with non-default FP controls.
 */
#include "config.h"

#include <errno.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <threadplex.h>
#include <unwind.h>
#if HAVE_VALGRIND
#include <valgrind/valgrind.h>
#endif

#define NSLOT 20
#define DEPTH 16
#define FRAME_BYTES 2048

/* probe(fn, arg, in, out): load in[] into the callee-saved registers and the FP control
   state, call fn(arg), store those registers into out[], restore the caller's values.
   Slots -- AArch64: 0-9 x19-x28, 10-17 d8-d15, 18 FPCR.  x86_64: 0 rbx, 1 rbp, 2-5
   r12-r15, 6 MXCSR, 7 x87 control word. */
void ctx_regs_probe(void (*fn)(void *), void *arg, const uint64_t *in, uint64_t *out);

#if defined(__aarch64__)
#define NREG 19
__asm__(".text\n"
        ".p2align 4\n"
        ".globl ctx_regs_probe\n"
        ".type ctx_regs_probe, %function\n"
        "ctx_regs_probe:\n"
        "    hint #34\n" /* bti c, in case the program is built with BTI */
        "    stp x29, x30, [sp, #-176]!\n"
        "    mov x29, sp\n"
        "    stp x19, x20, [sp, #16]\n"
        "    stp x21, x22, [sp, #32]\n"
        "    stp x23, x24, [sp, #48]\n"
        "    stp x25, x26, [sp, #64]\n"
        "    stp x27, x28, [sp, #80]\n"
        "    stp d8, d9, [sp, #96]\n"
        "    stp d10, d11, [sp, #112]\n"
        "    stp d12, d13, [sp, #128]\n"
        "    stp d14, d15, [sp, #144]\n"
        "    mrs x9, fpcr\n"
        "    stp x9, x3, [sp, #160]\n"
        "    mov x9, x0\n"
        "    mov x0, x1\n"
        "    ldp x19, x20, [x2, #0]\n"
        "    ldp x21, x22, [x2, #16]\n"
        "    ldp x23, x24, [x2, #32]\n"
        "    ldp x25, x26, [x2, #48]\n"
        "    ldp x27, x28, [x2, #64]\n"
        "    ldp d8, d9, [x2, #80]\n"
        "    ldp d10, d11, [x2, #96]\n"
        "    ldp d12, d13, [x2, #112]\n"
        "    ldp d14, d15, [x2, #128]\n"
        "    ldr x10, [x2, #144]\n"
        "    msr fpcr, x10\n"
        "    blr x9\n"
        "    ldr x3, [sp, #168]\n"
        "    stp x19, x20, [x3, #0]\n"
        "    stp x21, x22, [x3, #16]\n"
        "    stp x23, x24, [x3, #32]\n"
        "    stp x25, x26, [x3, #48]\n"
        "    stp x27, x28, [x3, #64]\n"
        "    stp d8, d9, [x3, #80]\n"
        "    stp d10, d11, [x3, #96]\n"
        "    stp d12, d13, [x3, #112]\n"
        "    stp d14, d15, [x3, #128]\n"
        "    mrs x10, fpcr\n"
        "    str x10, [x3, #144]\n"
        "    ldr x9, [sp, #160]\n"
        "    msr fpcr, x9\n"
        "    ldp x19, x20, [sp, #16]\n"
        "    ldp x21, x22, [sp, #32]\n"
        "    ldp x23, x24, [sp, #48]\n"
        "    ldp x25, x26, [sp, #64]\n"
        "    ldp x27, x28, [sp, #80]\n"
        "    ldp d8, d9, [sp, #96]\n"
        "    ldp d10, d11, [sp, #112]\n"
        "    ldp d12, d13, [sp, #128]\n"
        "    ldp d14, d15, [sp, #144]\n"
        "    ldp x29, x30, [sp], #176\n"
        "    ret\n"
        ".size ctx_regs_probe, .-ctx_regs_probe\n");

static const char *const reg_name[NREG] = {
    "x19", "x20", "x21", "x22", "x23", "x24", "x25", "x26", "x27", "x28",
    "d8",  "d9",  "d10", "d11", "d12", "d13", "d14", "d15", "FPCR"};

/* FPCR patterns: rounding mode, flush-to-zero, default NaN, alternative half precision
   -- fields every implementation has (trap enables and FZ16 may read as zero). */
#define FPCR_RMODE(m) ((uint64_t)(m) << 22)
#define FPCR_FZ (1u << 24)
#define FPCR_DN (1u << 25)
#define FPCR_AHP (1u << 26)
static uint64_t fp_pattern(int who, uint64_t round, int slot)
{
    (void)slot;
    return who == 0 ? FPCR_RMODE(3) | FPCR_FZ | (round & 1 ? FPCR_DN : 0)
                    : FPCR_RMODE(1 + (round & 1)) | FPCR_AHP;
}
static uint64_t fp_mask(int slot)
{
    (void)slot;
    return ~(uint64_t)0;
}
static int is_fp_slot(int slot) { return slot == 18; }

static uint64_t fp_get(int slot)
{
    uint64_t v;
    (void)slot;
    __asm__ volatile("mrs %0, fpcr" : "=r"(v));
    return v;
}
static void fp_set_nondefault(void)
{
    uint64_t v = FPCR_RMODE(2) | FPCR_FZ;
    __asm__ volatile("msr fpcr, %0" : : "r"(v));
}
static void fp_set_default(void) { __asm__ volatile("msr fpcr, %0" : : "r"((uint64_t)0)); }
#define FP_NSLOTS 1
static const int fp_slots[FP_NSLOTS] = {18};
static const uint64_t fp_default[FP_NSLOTS] = {0};

static char *stack_pointer(void)
{
    char *sp;
    __asm__ volatile("mov %0, sp" : "=r"(sp));
    return sp;
}

#elif defined(__x86_64__)
#define NREG 8
__asm__(".text\n"
        ".p2align 4\n"
        ".globl ctx_regs_probe\n"
        ".type ctx_regs_probe, @function\n"
        "ctx_regs_probe:\n"
        "    pushq %rbp\n"
        "    pushq %rbx\n"
        "    pushq %r12\n"
        "    pushq %r13\n"
        "    pushq %r14\n"
        "    pushq %r15\n"
        "    subq $24, %rsp\n" /* 16-byte aligned again for the call below */
        "    stmxcsr (%rsp)\n"
        "    fnstcw 4(%rsp)\n"
        "    movq %rcx, 8(%rsp)\n"
        "    movq %rdi, %rax\n"
        "    movq %rsi, %rdi\n"
        "    movq 0(%rdx), %rbx\n"
        "    movq 8(%rdx), %rbp\n"
        "    movq 16(%rdx), %r12\n"
        "    movq 24(%rdx), %r13\n"
        "    movq 32(%rdx), %r14\n"
        "    movq 40(%rdx), %r15\n"
        "    ldmxcsr 48(%rdx)\n"
        "    fldcw 56(%rdx)\n"
        "    callq *%rax\n"
        "    movq 8(%rsp), %rcx\n"
        "    movq %rbx, 0(%rcx)\n"
        "    movq %rbp, 8(%rcx)\n"
        "    movq %r12, 16(%rcx)\n"
        "    movq %r13, 24(%rcx)\n"
        "    movq %r14, 32(%rcx)\n"
        "    movq %r15, 40(%rcx)\n"
        "    stmxcsr 48(%rcx)\n"
        "    fnstcw 56(%rcx)\n"
        "    ldmxcsr (%rsp)\n"
        "    fldcw 4(%rsp)\n"
        "    addq $24, %rsp\n"
        "    popq %r15\n"
        "    popq %r14\n"
        "    popq %r13\n"
        "    popq %r12\n"
        "    popq %rbx\n"
        "    popq %rbp\n"
        "    ret\n"
        ".size ctx_regs_probe, .-ctx_regs_probe\n");

static const char *const reg_name[NREG] = {"rbx", "rbp", "r12", "r13",
                                           "r14", "r15", "MXCSR", "x87 CW"};

/* MXCSR: bits 0-5 are status flags (not preserved by the ABI, not compared); the rest
   are controls: DAZ, exception masks, rounding, flush-to-zero.  x87 CW: rounding and
   precision control, exception masks (bit 6 reads as 1).  Every third round task 1
   runs with the default controls (and the inexact flag raised), which a park keeps in
   a shorter frame and does not restore at all (the scheduler resuming it runs with
   them): it must still get them back after task 0's other values, on a worker created
   by a thread with non-default ones (see main). */
static uint64_t fp_pattern(int who, uint64_t round, int slot)
{
    if (who == 1 && round % 3 == 2)
        return slot == 6 ? 0x1f80 | 0x20 : 0x037f;
    if (slot == 6)
        return who == 0 ? 0x1f80 | (3u << 13) | 0x8000 | (round & 1 ? 0x40 : 0)
                        : 0x1f80 | ((1u + (round & 1)) << 13);
    return who == 0 ? 0x0c7f | (round & 1 ? 0x0300 : 0x0200) : 0x047f | (round & 1 ? 0x0800 : 0);
}
static uint64_t fp_mask(int slot) { return slot == 6 ? 0xffc0 : 0xffff; }
static int is_fp_slot(int slot) { return slot >= 6; }

static uint64_t fp_get(int slot)
{
    uint32_t m = 0;
    uint16_t cw = 0;
    if (slot == 6) {
        __asm__ volatile("stmxcsr %0" : "=m"(m));
        return m;
    }
    __asm__ volatile("fnstcw %0" : "=m"(cw));
    return cw;
}
static void fp_set_nondefault(void)
{
    uint32_t m = 0x1f80 | (2u << 13) | 0x8000;
    uint16_t cw = 0x0e7f;
    __asm__ volatile("ldmxcsr %0" : : "m"(m));
    __asm__ volatile("fldcw %0" : : "m"(cw));
}
static void fp_set_default(void)
{
    uint32_t m = 0x1f80;
    uint16_t cw = 0x037f;
    __asm__ volatile("ldmxcsr %0" : : "m"(m));
    __asm__ volatile("fldcw %0" : : "m"(cw));
}
#define FP_NSLOTS 2
static const int fp_slots[FP_NSLOTS] = {6, 7};
static const uint64_t fp_default[FP_NSLOTS] = {0x1f80, 0x037f};

static char *stack_pointer(void)
{
    char *sp;
    __asm__ volatile("movq %%rsp, %0" : "=r"(sp));
    return sp;
}

#else
int main(void)
{
    puts("ctx_regs: SKIP (no register probe for this architecture)");
    return 77;
}
#define CTX_REGS_SKIP 1
#endif

#ifndef CTX_REGS_SKIP

static tp_chan *ab, *ba; /* task 0 -> task 1, task 1 -> task 0 */
static unsigned long failures;
static unsigned long rounds = 1000;

static void fail(const char *what, int who, uint64_t round, uint64_t want, uint64_t got)
{
    if (failures++ < 20)
        fprintf(stderr, "ctx_regs: task %d round %" PRIu64 ": %s: want %#" PRIx64
                        ", got %#" PRIx64 "\n",
                who, round, what, want, got);
}

static void fail_fresh(const char *what, uint64_t want, uint64_t got)
{
    if (failures++ < 20)
        fprintf(stderr, "ctx_regs: fresh task: %s: want %#" PRIx64 ", got %#" PRIx64 "\n",
                what, want, got);
}

struct side {
    int who;       /* 0 or 1 */
    uint64_t round;
    int chan_err;  /* set by the parking function (runs with the probe's registers) */
};

/* Called by the probe with the distinctive register values loaded: park at least once.
   Task 0 sends then receives; task 1 receives then sends.  With unbuffered channels
   whichever arrives first parks, and the other runs in between on the same stack. */
static void park_fn(void *arg)
{
    struct side *s = arg;
    uint64_t v = s->round, got = 0;
    if (s->who == 0) {
        if (tp_chan_send(ab, &v, -1) < 0 || tp_chan_recv(ba, &got, -1) < 0)
            s->chan_err = errno ? errno : -1;
    } else {
        if (tp_chan_recv(ab, &got, -1) < 0 || tp_chan_send(ba, &v, -1) < 0)
            s->chan_err = errno ? errno : -1;
    }
    if (!s->chan_err && got != v)
        s->chan_err = -2; /* the two tasks fell out of step */
}

static uint64_t pattern(int who, uint64_t round, int slot)
{
    if (is_fp_slot(slot))
        return fp_pattern(who, round, slot);
    /* Distinct per task, round and register; never zero, never a small integer. */
    return ((uint64_t)(0xA5u + (unsigned)who * 0x11u) << 56) | ((uint64_t)slot << 48) |
           ((round * 0x9E3779B97F4A7C15ull) & 0x0000ffffffffffffull) | 1;
}

/* Valgrind keeps one FP control state of its own (rounding only: no flush-to-zero, no
   x87 precision control), so under it the FP control slots say nothing about us. */
static int fp_checked = 1;

static void probe_once(struct side *s)
{
    uint64_t in[NSLOT] = {0}, out[NSLOT] = {0};
    for (int i = 0; i < NREG; i++)
        in[i] = pattern(s->who, s->round, i);
    s->chan_err = 0;
    ctx_regs_probe(park_fn, s, in, out);
    if (s->chan_err)
        fail("channel operation failed", s->who, s->round, 0, (uint64_t)s->chan_err);
    for (int i = 0; i < NREG; i++) {
        uint64_t m = fp_mask(i);
        if (is_fp_slot(i) && !fp_checked)
            continue;
        if ((in[i] & m) != (out[i] & m))
            fail(reg_name[i], s->who, s->round, in[i] & m, out[i] & m);
    }
}

/* One 2 KiB frame of the recursion: a pointer to itself, to its parent's frame, and a
   buffer whose contents depend on task, round and depth. */
struct deep {
    struct deep *self;
    struct deep *up;
    uint64_t tag;
    unsigned char fill[FRAME_BYTES - 3 * sizeof(uint64_t)];
};

static uint64_t tag_of(const struct side *s, int depth)
{
    return ((uint64_t)s->who << 60) ^ (s->round << 8) ^ (uint64_t)depth ^ 0x5D5D000000000000ull;
}

static __attribute__((noinline)) void descend(struct side *s, struct deep *up, int depth)
{
    struct deep d;
    d.self = &d;
    d.up = up;
    d.tag = tag_of(s, depth);
    for (size_t i = 0; i < sizeof d.fill; i++)
        d.fill[i] = (unsigned char)((d.tag >> (8 * (i & 7))) ^ i);
    __asm__ volatile("" : : "r"(&d) : "memory"); /* d really is in memory now */
    if (depth > 1)
        descend(s, &d, depth - 1);
    else
        probe_once(s);
    __asm__ volatile("" : : "r"(&d) : "memory"); /* and must be read back from it */
    if (d.self != &d)
        fail("frame self-pointer", s->who, s->round, (uintptr_t)&d, (uintptr_t)d.self);
    if (d.up != up)
        fail("frame parent pointer", s->who, s->round, (uintptr_t)up, (uintptr_t)d.up);
    if (up && up->tag != tag_of(s, depth + 1))
        fail("parent frame through pointer", s->who, s->round, tag_of(s, depth + 1), up->tag);
    if (d.tag != tag_of(s, depth))
        fail("frame tag", s->who, s->round, tag_of(s, depth), d.tag);
    for (size_t i = 0; i < sizeof d.fill; i++) {
        unsigned char want = (unsigned char)((d.tag >> (8 * (i & 7))) ^ i);
        if (d.fill[i] != want) {
            fail("frame contents", s->who, s->round, want, d.fill[i]);
            break;
        }
    }
}

static void *pingpong(void *arg)
{
    struct side s = {.who = (int)(intptr_t)arg};
    for (uint64_t r = 0; r < rounds; r++) {
        s.round = r;
        descend(&s, NULL, s.who == 0 ? DEPTH : 1 + (int)(r % DEPTH));
    }
    return NULL;
}

/* ------------------------------------------------------------------ fresh task ---- */

static struct {
    uint64_t fp[FP_NSLOTS];
    uintptr_t misalign;
    int unwind_rc, unwind_frames;
} fresh;

static _Unwind_Reason_Code count_frame(struct _Unwind_Context *uc, void *arg)
{
    (void)uc;
    int *n = arg;
    return ++*n > 64 ? _URC_NORMAL_STOP : _URC_NO_REASON;
}

static void *fresh_task(void *arg)
{
    (void)arg;
    for (int i = 0; i < FP_NSLOTS; i++)
        fresh.fp[i] = fp_get(fp_slots[i]);
#if defined(__aarch64__)
    fresh.misalign = (uintptr_t)stack_pointer() & 15; /* sp is 16-aligned at every point */
#else
    /* rbp after the push in the prologue: 16-aligned iff rsp was at the call into us. */
    fresh.misalign = (uintptr_t)__builtin_frame_address(0) & 15;
    (void)stack_pointer;
#endif
    fresh.unwind_rc = _Unwind_Backtrace(count_frame, &fresh.unwind_frames);
    return NULL;
}

static void *finish_nondefault(void *arg)
{
    (void)arg;
    /* A park with the defaults first, so that nothing left from the parks of parts 1-2
       (with other controls) makes the worker reset them anyway. */
    if (tp_sleep(tp_now() + 1) < 0)
        perror("ctx_regs: tp_sleep");
    fp_set_nondefault();
    return NULL;
}

int main(int argc, char **argv)
{
    if (argc > 1)
        rounds = strtoul(argv[1], NULL, 10);
#if HAVE_VALGRIND
    if (RUNNING_ON_VALGRIND) {
        fp_checked = 0;
        puts("ctx_regs: under valgrind, which does not emulate the FP control state: "
             "its slots are not compared");
    }
#endif

    /* Workers inherit the creating thread's FP control state: make it a non-default one,
       so that a fresh task seeing the defaults proves tp__ctx_init set them. */
    fp_set_nondefault();
    tp_pool_attr attr = {.workers = 1, .stack_size = 0};
    tp_pool *pool = tp_pool_create(&attr);
    fp_set_default();
    ab = tp_chan_create(sizeof(uint64_t), 0);
    ba = tp_chan_create(sizeof(uint64_t), 0);
    if (!pool || !ab || !ba) {
        perror("ctx_regs: setup");
        return 1;
    }

    /* 1 and 2: registers and deep stacks across parks. */
    tp_task *t0 = tp_spawn(pool, pingpong, (void *)(intptr_t)0);
    tp_task *t1 = tp_spawn(pool, pingpong, (void *)(intptr_t)1);
    if (!t0 || !t1 || tp_join(t0, NULL, -1) < 0 || tp_join(t1, NULL, -1) < 0) {
        perror("ctx_regs: tasks");
        return 1;
    }

    /* 3: a fresh task. */
    tp_task *tf = tp_spawn(pool, fresh_task, NULL);
    if (!tf || tp_join(tf, NULL, -1) < 0) {
        perror("ctx_regs: fresh task");
        return 1;
    }
    for (int i = 0; i < FP_NSLOTS && fp_checked; i++)
        if (fresh.fp[i] != fp_default[i])
            fail_fresh(reg_name[fp_slots[i]], fp_default[i], fresh.fp[i]);

    /* 4: a task that finishes with other FP controls must not hand them on to the next
       one its worker starts. */
    memset(&fresh, 0, sizeof fresh);
    tp_task *tn = tp_spawn(pool, finish_nondefault, NULL);
    tf = tn && tp_join(tn, NULL, -1) == 0 ? tp_spawn(pool, fresh_task, NULL) : NULL;
    if (!tf || tp_join(tf, NULL, -1) < 0) {
        perror("ctx_regs: task after a non-default finish");
        return 1;
    }
    for (int i = 0; i < FP_NSLOTS && fp_checked; i++)
        if (fresh.fp[i] != fp_default[i])
            fail_fresh(reg_name[fp_slots[i]], fp_default[i], fresh.fp[i]);
    if (fresh.misalign)
        fail_fresh("stack pointer mod 16", 0, fresh.misalign);
    if (fresh.unwind_rc != _URC_END_OF_STACK)
        fail_fresh("_Unwind_Backtrace reason (5 = END_OF_STACK)", _URC_END_OF_STACK,
                   (uint64_t)fresh.unwind_rc);
    else if (fresh.unwind_frames > 8)
        fail_fresh("frames unwound", 8, (uint64_t)fresh.unwind_frames);

    tp_chan_destroy(ab);
    tp_chan_destroy(ba);
    tp_pool_destroy(pool);
    if (failures) {
        fprintf(stderr, "ctx_regs: FAIL (%lu mismatches)\n", failures);
        return 1;
    }
    printf("ctx_regs: OK (%lu rounds x 2 tasks: %d callee-saved/FP-control slots, "
           "%d x %d-byte frames; fresh task: %s, aligned, unwinds in %d frames)\n",
           rounds, NREG, DEPTH, FRAME_BYTES,
           fp_checked ? "default FP control" : "FP control not compared",
           fresh.unwind_frames);
    return 0;
}

#endif
