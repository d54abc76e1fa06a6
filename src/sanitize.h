/* sanitize.h -- tell AddressSanitizer, ThreadSanitizer and valgrind about stack switches.
 *
 * The sanitizers track "the stack" of each thread.  Tasks run on a shared stack that the
 * thread switches to and from by hand, so each switch is announced:
 *  - ASan: __sanitizer_start_switch_fiber() before, __sanitizer_finish_switch_fiber()
 *    after, so it knows the bounds of the stack in use (for no-return unpoisoning and
 *    fake stacks).
 *  - TSan: every task is a TSan fiber; __tsan_switch_to_fiber() before each switch keeps
 *    its shadow call stacks apart and orders what the two sides did.
 * In normal builds every hook compiles to nothing.
 */
#ifndef TP_SANITIZE_H
#define TP_SANITIZE_H

#ifndef __has_feature
#define __has_feature(x) 0
#endif

#if defined(__SANITIZE_ADDRESS__) || __has_feature(address_sanitizer)
#define TP_ASAN 1
#else
#define TP_ASAN 0
#endif

#if defined(__SANITIZE_THREAD__) || __has_feature(thread_sanitizer)
#define TP_TSAN 1
#else
#define TP_TSAN 0
#endif

#include <stddef.h>

#if TP_ASAN
void __sanitizer_start_switch_fiber(void **fake_stack_save, const void *bottom, size_t size);
void __sanitizer_finish_switch_fiber(void *fake_stack_save, const void **bottom_old,
                                     size_t *size_old);
void __asan_unpoison_memory_region(void const volatile *addr, size_t size);
#define TP__ASAN_UNPOISON(p, n) __asan_unpoison_memory_region((p), (n))
#else
#define TP__ASAN_UNPOISON(p, n) ((void)(p), (void)(n))
#endif

#if TP_TSAN
void *__tsan_get_current_fiber(void);
void *__tsan_create_fiber(unsigned flags);
void __tsan_destroy_fiber(void *fiber);
void __tsan_switch_to_fiber(void *fiber, unsigned flags);
#endif

#endif
