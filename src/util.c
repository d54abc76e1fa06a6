/* util.c -- allocation (with the fault-injection hook), spinlock slow path, panics,
 * version. */
#include "tp_internal.h"

#include <sched.h>
#include <unistd.h>

/* Tests set this to N > 0 to make the Nth allocation from now fail (ENOMEM paths). */
_Atomic long tp__alloc_countdown;

static inline bool alloc_fails(void)
{
    if (TP__LIKELY(atomic_load_explicit(&tp__alloc_countdown, memory_order_relaxed) <= 0))
        return false;
    return atomic_fetch_sub(&tp__alloc_countdown, 1) == 1;
}

void *tp__malloc(size_t n) { return alloc_fails() ? NULL : malloc(n); }
void *tp__calloc(size_t n, size_t size) { return alloc_fails() ? NULL : calloc(n, size); }
void *tp__realloc(void *p, size_t n) { return alloc_fails() ? NULL : realloc(p, n); }

void *tp__calloc_aligned(size_t n, size_t size, size_t align)
{
    void *p;
    if (alloc_fails() || (size && n > SIZE_MAX / size) || posix_memalign(&p, align, n * size))
        return NULL;
    return memset(p, 0, n * size);
}

void tp__spin_lock_slow(tp__spin *s)
{
    for (unsigned i = 0;; i++) {
        if (!atomic_load_explicit(&s->v, memory_order_relaxed) &&
            !atomic_exchange_explicit(&s->v, 1, memory_order_acquire))
            return;
        tp__backoff(i);
    }
}

void tp__panic(const char *file, int line, const char *what)
{
    fprintf(stderr, "threadplex: internal error at %s:%d: %s\n", file, line, what);
    abort();
}

const char *tp_version(void) { return PACKAGE_VERSION; }
