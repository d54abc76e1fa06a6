/* stack.c -- the shared stacks of a worker and the copy-stack mechanism.
 *
 * A worker has up to TP__SLOTS shared stacks ("slots") in one mapping; slot s is the
 * slot_len bytes at map + (s << slot_shift) (addresses grow upwards):
 *
 *   slot base                 lo                                            hi
 *   | guard (PROT_NONE) ...   | a task's frames grow down from hi ...        |
 *
 * A task gets a slot when it first runs and keeps it for life: its frames' addresses
 * are that slot's.  Several tasks share each slot; whose frames are on it is
 * w->slot_owner[s].  A running task's frames occupy [its sp, hi).  When it switches out,
 * the switch stores whatever registers must survive below (or, on x86_64, partly in)
 * its frames and records the new sp (ctx.h), so the byte range [t->sp, hi) is the
 * task's entire state: every frame it has, plus the registers.  Nothing below t->sp is
 * live (the library does not use the x86_64 red zone), and nothing above hi belongs to
 * it.  That range is what tp__stack_save() copies out and tp__stack_restore() copies
 * back to the same addresses, so pointers from the task's frames into its own frames
 * stay valid -- all of it but its top TP__CTX_TOP bytes (x86_64: the return address of
 * the call into the task's function), which are the same for every task and are written
 * back rather than saved.
 *
 * Copies are lazy: the worker copies a task out only when another task needs its slot
 * (a task that parks and is the next to run there costs no copy at all), so a worker
 * whose tasks fit in its slots -- a ping-pong pair, a pipeline of a dozen stages --
 * copies nothing, and one with thousands copies as if it had one stack.  The copying
 * runs in the scheduler, on the worker pthread's own stack, never on a shared one.  So
 * a started task's bytes are in its save buffer exactly when it is not its slot's
 * owner, and there are hi - TP__CTX_TOP - t->sp of them: the control block records
 * neither the length nor the slot.
 */
#include "tp_internal.h"

#include <signal.h>
#include <sys/mman.h>
#include <unistd.h>
#if HAVE_VALGRIND
#include <valgrind/memcheck.h>
#include <valgrind/valgrind.h>
#endif

/* A saved buffer this much larger than needed is shrunk (a task that once went deep
   does not keep its deep buffer forever). */
#define TP__SHRINK_MIN 4096

static size_t page_size(void)
{
    static size_t ps;
    if (!ps)
        ps = (size_t)sysconf(_SC_PAGESIZE);
    return ps;
}

/* n slots 1 << shift bytes apart, each slot_len bytes (<= 1 << shift) with its guard
   band at the bottom. */
static int map_slots(struct tp__worker *w, unsigned n, unsigned shift, size_t slot_len)
{
    size_t len = ((size_t)(n - 1) << shift) + slot_len;
    /* MAP_NORESERVE: only the pages a task actually touches cost memory. */
    char *map = mmap(NULL, len, PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_STACK, -1, 0);
    if (map == MAP_FAILED)
        return -1;
    for (unsigned s = 0; s < n; s++) {
        if (mprotect(map + ((size_t)s << shift), TP__GUARD, PROT_NONE) < 0) {
            munmap(map, len);
            return -1;
        }
    }
    w->map = map;
    w->map_len = len;
    w->slot_shift = shift;
    w->slot_len = slot_len;
    w->nslots = n;
    w->slot_free = (uint32_t)(((uint64_t)1 << n) - 1);
    for (unsigned s = 0; s < n; s++)
        w->slot_top[s] = tp__slot_top(w, s);
#if HAVE_VALGRIND
    for (unsigned s = 0; s < n; s++)
        w->valgrind_id[s] = VALGRIND_STACK_REGISTER(tp__slot_lo(w, s), tp__slot_hi(w, s));
#endif
    return 0;
}

/* The address space one worker's slots may take before it gets fewer of them (a pool
   of 1 GiB stacks gets two; of the default 1 MiB, TP__SLOTS in 32 MiB). */
#define TP__SLOTS_SPACE ((size_t)4 << 30)

/* Each slot holds at least `size` bytes of stack above its guard; slots are a power of
   two apart, so that finding a task's slot from its stack pointer is a subtraction and
   a shift (the slack is more stack, and costs only address space).  Fewer slots where
   the address space is short (RLIMIT_AS, strict overcommit, the mapping count); last,
   one stack of just the size asked, as before there were slots, so that a pool that
   fits with one stack per worker still fits. */
int tp__stack_create(struct tp__worker *w, size_t size, unsigned nslots)
{
    size_t ps = page_size();
    size = (size + ps - 1) & ~(ps - 1);
    unsigned shift = 12;
    while (((size_t)1 << shift) < size + TP__GUARD) /* (size <= TP__MAX_STACK: pool.c) */
        shift++;
    unsigned n = nslots;
    while (n > 1 && ((size_t)n << shift) > TP__SLOTS_SPACE)
        n /= 2;
    for (; n > 1; n /= 2)
        if (map_slots(w, n, shift, (size_t)1 << shift) == 0)
            return 0;
    if (map_slots(w, 1, shift, size + TP__GUARD) == 0) /* (one needs no slack) */
        return 0;
    w->map = NULL;
    errno = ENOMEM;
    return -1;
}

/* On the worker's own thread, before it runs anything: fault in the top page of each
   slot, where a task's first frames go (and on the worker's NUMA node).  A first touch
   costs ~2.5 us on this VM, and a worker's first tasks each start on a fresh slot: ten
   tasks spawned together took ~30 us to start, long enough for an idle worker to steal
   one of them (see steal_fresh in sched.c), which split W5's pipeline over two CPUs and
   made it 12x slower in most runs (11 of 12 here; 20 of 20 runs stay on one worker
   now).  The cost: a page per slot, 64 KiB per worker. */
void tp__stack_touch(struct tp__worker *w)
{
    for (unsigned s = 0; s < w->nslots; s++)
        *(volatile char *)(w->slot_top[s] - 1) = 0;
}

void tp__stack_destroy(struct tp__worker *w)
{
    if (!w->map)
        return;
#if HAVE_VALGRIND
    for (unsigned s = 0; s < w->nslots; s++)
        VALGRIND_STACK_DEREGISTER(w->valgrind_id[s]);
#endif
    munmap(w->map, w->map_len);
    w->map = NULL;
}

/* Copy in.  The resumed task pops its registers and return addresses from the lowest
   of these bytes a few instructions later, and a load can take its value from a store
   still in flight only if one store contains it: after memcpy's 32- and 64-byte vector
   stores the 8-byte pops waited for the stores to reach the cache.  So the bottom
   TP__COPY_NEAR bytes go last, in 16-byte moves (W4 0.94, t2 0.90); the rest, which
   the task reads only after returning that far, goes first, by memcpy (fastest for
   kilobytes: a deep segment, W6, took 1.27x as long in 16-byte moves).  len is a
   multiple of 8, as every stack pointer is. */
#define TP__COPY_NEAR 128
static inline void copy_in(char *dst, const char *src, size_t len)
{
    size_t near = len;
    if (len > 2 * TP__COPY_NEAR) {
        near = TP__COPY_NEAR;
        memcpy(dst + near, src + near, len - near);
    }
    size_t i = 0;
    for (; i + 16 <= near; i += 16)
        memcpy(dst + i, src + i, 16);
    if (i < near)
        memcpy(dst + i, src + i, 8);
}

/* The room tp__stack_reserve makes: a save buffer that can hold the segment from sp
   (and the timer node of a timed park), so that the later copy-out (done lazily by the
   scheduler, where no error can be returned) cannot fail.  Shrinks a buffer that is far
   larger than needed. */
int tp__stack_reserve_room(tp_task *t, char *sp, bool timed, bool keep_fp)
{
    struct tp__worker *w = t->worker;
    /* Rounded up to a size malloc hands out whole: its chunks are multiples of 16
       bytes with an 8-byte header, so 16k+8 bytes fill one (glibc; elsewhere harmless).
       The slack absorbs small variations of depth without a realloc.  (The task runs,
       so it is in no timer tree: save_cap has no TP__SAVE_TIMED.) */
    size_t need = (size_t)(w->run_top - TP__CTX_TOP - sp) + TP__CTX_PARK_FRAME(keep_fp) +
                  (timed ? sizeof(struct tp__tnode) : 0);
    need = ((need + 8 + 15) & ~(size_t)15) - 8;
    if (TP__LIKELY(need <= t->save_cap &&
                   !(t->save_cap > TP__SHRINK_MIN && need * 4 < t->save_cap)))
        return 0;
    char *p = tp__realloc(t->save, need);
    if (TP__UNLIKELY(!p)) {
        if (need <= t->save_cap)
            return 0; /* only a shrink failed: keep the big buffer */
        errno = ENOMEM;
        return -1;
    }
    tp__count(&w->st_saved_cap, (int64_t)need - (int64_t)t->save_cap);
    t->save = p;
    t->save_cap = (uint32_t)need;
    return 0;
}

/* The reservation measured the stack pointer a little above the switch (possible in
   unoptimised builds): grow the buffer now, where failing has no caller to report to.
   A timer node at its end moves with it, out of the timer tree and back. */
static __attribute__((noinline)) void grow(struct tp__worker *w, tp_task *t, size_t len)
{
    bool timed = t->save_cap & TP__SAVE_TIMED;
    int64_t deadline = 0;
    if (timed) {
        deadline = tp__timer_node(t)->rb.key;
        tp__timer_remove(w, t);
    }
    size_t cap = len + (timed ? sizeof(struct tp__tnode) : 0);
    char *p = tp__realloc(t->save, cap);
    TP__ASSERT(p != NULL);
    tp__count(&w->st_saved_cap, (int64_t)cap - (int64_t)t->save_cap);
    t->save = p;
    t->save_cap = (uint32_t)cap;
    if (timed)
        tp__timer_add(w, t, deadline);
}

/* Copy out: the bytes [t->sp, top - TP__CTX_TOP), which are all the task's frames and
   the registers its switch pushed (see the top of this file); top is its slot's. */
void tp__stack_save(struct tp__worker *w, tp_task *t, char *top)
{
    size_t len = (size_t)(top - TP__CTX_TOP - (char *)t->sp);
    size_t room = t->save_cap & TP__SAVE_TIMED ? (size_t)((char *)tp__timer_node(t) - t->save)
                                               : t->save_cap; /* (the node ends the buffer) */
    if (TP__UNLIKELY(len > room))
        grow(w, t, len);
    /* Under ASan the segment holds redzones of the task's frames; they are not ours
       to check and will not describe the next task's frames at these addresses. */
    TP__ASAN_UNPOISON(t->sp, len);
    memcpy(t->save, t->sp, len);
    tp__count(&w->st_copied, (int64_t)len);
    tp__count(&w->st_saved, (int64_t)len);
}

/* Copy in: put the segment back at exactly the addresses it came from. */
void tp__stack_restore(struct tp__worker *w, tp_task *t, char *top)
{
    char *hi = top - TP__CTX_TOP;
    size_t len = (size_t)(hi - (char *)t->sp);
    TP__ASAN_UNPOISON(t->sp, len + TP__CTX_TOP);
#if HAVE_VALGRIND
    /* memcheck marked the shared stack below the last task's stack pointer
       inaccessible; these bytes are about to become the resumed task's frames. */
    VALGRIND_MAKE_MEM_UNDEFINED(t->sp, len + TP__CTX_TOP);
#endif
    TP__ASSERT(len % 8 == 0);
    copy_in(t->sp, t->save, len);
#if TP__CTX_TOP
    /* Since it was saved, tasks that started or finished here wrote other values there. */
    const void *ret = tp__ctx_fn_return;
    memcpy(hi, &ret, sizeof ret);
#endif
    tp__count(&w->st_copied, (int64_t)len);
    tp__count(&w->st_saved, -(int64_t)len);
}

/* A finished task gives back its buffer.  Nothing of it is saved: it ran last, so its
   (dead) frames are the ones on the stack. */
void tp__stack_release(struct tp__worker *w, tp_task *t)
{
    tp__count(&w->st_saved_cap, -(int64_t)t->save_cap);
    free(t->save);
    t->save = NULL;
    t->save_cap = 0;
}

/* ------------------------------------------------- which addresses are stacks ---- */

/* Every live pool's mappings (guard included), for tp_spawn's argument check.  The
   min/max pair answers "certainly not a stack" without the lock, which is nearly always. */
struct range {
    uintptr_t lo, hi;
};
static pthread_rwlock_t reg_lock = PTHREAD_RWLOCK_INITIALIZER;
static struct range *reg;
static size_t reg_n;
static atomic_uintptr_t reg_min = UINTPTR_MAX, reg_max = 0;

static void reg_bounds(void)
{
    uintptr_t lo = UINTPTR_MAX, hi = 0;
    for (size_t i = 0; i < reg_n; i++) {
        lo = reg[i].lo < lo ? reg[i].lo : lo;
        hi = reg[i].hi > hi ? reg[i].hi : hi;
    }
    atomic_store(&reg_min, lo);
    atomic_store(&reg_max, hi);
}

int tp__stack_register(tp_pool *pool)
{
    pthread_rwlock_wrlock(&reg_lock);
    struct range *r = tp__realloc(reg, (reg_n + pool->nworkers) * sizeof *r);
    if (!r) {
        pthread_rwlock_unlock(&reg_lock);
        errno = ENOMEM;
        return -1;
    }
    reg = r;
    for (unsigned i = 0; i < pool->nworkers; i++) {
        struct tp__worker *w = &pool->workers[i];
        reg[reg_n++] = (struct range){(uintptr_t)w->map, (uintptr_t)w->map + w->map_len};
    }
    reg_bounds();
    pthread_rwlock_unlock(&reg_lock);
    return 0;
}

void tp__stack_unregister(tp_pool *pool)
{
    pthread_rwlock_wrlock(&reg_lock);
    for (unsigned i = 0; i < pool->nworkers; i++) {
        uintptr_t lo = (uintptr_t)pool->workers[i].map;
        for (size_t j = 0; j < reg_n; j++) {
            if (reg[j].lo == lo) {
                reg[j] = reg[--reg_n];
                break;
            }
        }
    }
    reg_bounds();
    pthread_rwlock_unlock(&reg_lock);
}

bool tp__on_shared_stack(const void *p)
{
    uintptr_t a = (uintptr_t)p;
    if (TP__LIKELY(a < atomic_load_explicit(&reg_min, memory_order_relaxed) ||
                   a >= atomic_load_explicit(&reg_max, memory_order_relaxed)))
        return false;
    bool hit = false;
    pthread_rwlock_rdlock(&reg_lock);
    for (size_t i = 0; i < reg_n && !hit; i++)
        hit = a >= reg[i].lo && a < reg[i].hi;
    pthread_rwlock_unlock(&reg_lock);
    return hit;
}

/* ------------------------------------------------------- overflow detection ---- */

/* A task that runs past the bottom of the shared stack faults in the guard band.  The
   fault handler runs on a per-worker alternate stack (the faulting stack is unusable),
   names the task and aborts: silent corruption of another task's saved state is the one
   outcome we must never allow.  Faults that are not ours go to the previous handler. */
static struct sigaction prev_segv;
static pthread_once_t segv_once = PTHREAD_ONCE_INIT;

static size_t fmt_u64(char *out, uint64_t v)
{
    char tmp[24];
    size_t n = 0, i = 0;
    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    while (n)
        out[i++] = tmp[--n];
    return i;
}

static void say(const char *s) { (void)!write(2, s, strlen(s)); }

static void segv_handler(int sig, siginfo_t *si, void *uc)
{
    struct tp__worker *w = tp__self_worker;
    char *a = si->si_addr;
    (void)uc;
    if (w && a >= w->map && a < w->map + w->map_len &&
        ((size_t)(a - w->map) & (((size_t)1 << w->slot_shift) - 1)) < TP__GUARD) {
        char num[24];
        say("threadplex: stack overflow: task ");
        (void)!write(2, num, w->current ? fmt_u64(num, w->current->id) : 0);
        say(" ran past the bottom of worker ");
        (void)!write(2, num, fmt_u64(num, w->index));
        say("'s shared stack (");
        (void)!write(2, num, fmt_u64(num, (uint64_t)(w->slot_len - TP__GUARD)));
        say(" bytes; raise tp_pool_attr.stack_size); aborting\n");
        signal(SIGABRT, SIG_DFL);
        abort();
    }
    /* Not a shared-stack overflow: let the previous disposition handle the re-fault. */
    sigaction(sig, &prev_segv, NULL);
}

static void install_segv(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = segv_handler;
    sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGSEGV, &sa, &prev_segv);
}

int tp__altstack_setup(struct tp__worker *w)
{
    pthread_once(&segv_once, install_segv);
    size_t sz = 64 * 1024;
    w->altstack = mmap(NULL, sz, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (w->altstack == MAP_FAILED) {
        w->altstack = NULL;
        return -1;
    }
    stack_t ss = {.ss_sp = w->altstack, .ss_size = sz, .ss_flags = 0};
    return sigaltstack(&ss, NULL);
}

void tp__altstack_teardown(struct tp__worker *w)
{
    if (!w->altstack)
        return;
    stack_t ss = {.ss_flags = SS_DISABLE};
    sigaltstack(&ss, NULL);
    munmap(w->altstack, 64 * 1024);
    w->altstack = NULL;
}
